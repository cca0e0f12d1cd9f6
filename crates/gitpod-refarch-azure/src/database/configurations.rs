//! The MySQL server's parameters, through the flexible server's configurations API
//! (Microsoft.DBforMySQL `2024-12-30`), one write per call: every spec flag (values
//! `on`/`off`/`true`/`false` written as Azure's `ON`/`OFF`), and, unless the spec sets
//! them, [`EXPLICIT_DEFAULTS_FOR_TIMESTAMP`] `OFF` (MySQL 8.0 defaults to ON; Gitpod
//! needs OFF) and [`REQUIRE_SECURE_TRANSPORT`] `OFF` (see the TLS note of
//! [`crate::database`]).

use std::collections::BTreeMap;

use gitpod_refarch::provider::Progress;
use gitpod_refarch::resource::{DatabaseInstanceSpec, ResourceId};
use gitpod_refarch::Result;
use serde::Serialize;
use serde_json::Value;

use super::server_path;
use crate::context::{Context, MYSQL_API};

/// The flag Gitpod needs off (MySQL 8.0 defaults to ON).
pub const EXPLICIT_DEFAULTS_FOR_TIMESTAMP: &str = "explicit_defaults_for_timestamp";
/// The flag that makes the server refuse connections without TLS.
pub const REQUIRE_SECURE_TRANSPORT: &str = "require_secure_transport";

/// A flag value as Azure writes it: booleans as `ON`/`OFF`, anything else unchanged.
pub fn azure_value(v: &str) -> String {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" => "ON".into(),
        "off" | "false" => "OFF".into(),
        _ => v.to_string(),
    }
}

/// Whether a server parameter has the wanted value (Azure answers `ON`/`on` alike).
pub(super) fn same_value(found: &str, want: &str) -> bool {
    azure_value(found).eq_ignore_ascii_case(&azure_value(want))
}

/// The spec's spelling of a server value that means the same, else the server's.
fn spec_spelling(found: &str, want: &str) -> String {
    if same_value(found, want) {
        want.to_string()
    } else {
        found.to_string()
    }
}

/// The server parameters to set: the spec's flags, `explicit_defaults_for_timestamp`
/// OFF and `require_secure_transport` OFF unless the spec sets them.
pub fn wanted_configurations(d: &DatabaseInstanceSpec) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = d
        .flags
        .iter()
        .map(|(k, v)| (k.clone(), azure_value(v)))
        .collect();
    for k in [EXPLICIT_DEFAULTS_FOR_TIMESTAMP, REQUIRE_SECURE_TRANSPORT] {
        out.entry(k.to_string())
            .or_insert_with(|| "OFF".to_string());
    }
    out
}

/// A server parameter write.
#[derive(Debug, Serialize)]
struct ConfigurationBody {
    properties: ConfigurationProperties,
}

#[derive(Debug, Serialize)]
struct ConfigurationProperties {
    value: String,
    source: &'static str,
}

fn configuration_body(value: &str) -> ConfigurationBody {
    ConfigurationBody {
        properties: ConfigurationProperties {
            value: value.to_string(),
            source: "user-override",
        },
    }
}

fn configuration_path(c: &Context, installation: &str, name: &str) -> String {
    format!("{}/configurations/{name}", server_path(c, installation))
}

/// The server's values of the wanted parameters.
pub(super) async fn read(
    c: &Context,
    d: &DatabaseInstanceSpec,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for name in wanted_configurations(d).keys() {
        let v: Option<Value> = c
            .arm
            .get(&configuration_path(c, &d.name, name), MYSQL_API)
            .await?;
        if let Some(value) = v
            .as_ref()
            .and_then(|v| v.pointer("/properties/value"))
            .and_then(Value::as_str)
        {
            out.insert(name.clone(), value.to_string());
        }
    }
    Ok(out)
}

/// The server's values of the spec's flags, in the spec's spelling where they mean the
/// same (the instance's observed `flags`), and the drift of the parameters the spec's
/// shape cannot say (those it does not set), in words.
pub(super) fn observed(
    d: &DatabaseInstanceSpec,
    found: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let flags = d
        .flags
        .iter()
        .filter_map(|(k, want)| found.get(k).map(|v| (k.clone(), spec_spelling(v, want))))
        .collect();
    let mut drift = Vec::new();
    for (k, v) in &wanted_configurations(d) {
        if d.flags.contains_key(k) {
            continue;
        }
        match found.get(k) {
            Some(f) if same_value(f, v) => {}
            Some(f) => drift.push(format!("server parameter {k} is {f}, not {v}")),
            None => drift.push(format!("server parameter {k} is not {v}")),
        }
    }
    (flags, drift)
}

/// Write the first wanted parameter that differs from `found` (one per call): the
/// progress to return while it is written, `None` once all are as wanted.
pub(super) async fn ensure(
    c: &Context,
    d: &DatabaseInstanceSpec,
    rid: &ResourceId,
    found: &BTreeMap<String, String>,
) -> Result<Option<Progress>> {
    for (k, v) in &wanted_configurations(d) {
        if found.get(k).is_some_and(|f| same_value(f, v)) {
            continue;
        }
        let lro = c
            .arm
            .put(
                &configuration_path(c, &d.name, k),
                MYSQL_API,
                &configuration_body(v),
            )
            .await?;
        if let Some(p) = c.pending(rid, &lro) {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    use crate::database::tests::spec;

    #[test]
    fn flags_are_written_as_azure_expects_with_tls_and_timestamps_off() {
        let d = spec(
            json!({"flags": {"explicit_defaults_for_timestamp": "off", "sql_mode": "ANSI", "event_scheduler": "true"}}),
        );
        assert_eq!(
            wanted_configurations(&d),
            BTreeMap::from([
                ("event_scheduler".to_string(), "ON".to_string()),
                (
                    "explicit_defaults_for_timestamp".to_string(),
                    "OFF".to_string()
                ),
                ("require_secure_transport".to_string(), "OFF".to_string()),
                ("sql_mode".to_string(), "ANSI".to_string()),
            ])
        );
        // Always OFF for timestamps, even when the spec has no flags.
        let bare = spec(json!({"flags": {}}));
        assert_eq!(
            wanted_configurations(&bare)["explicit_defaults_for_timestamp"],
            "OFF"
        );
        assert!(same_value("off", "OFF") && same_value("ON", "true") && !same_value("ON", "off"));
        assert_eq!(spec_spelling("OFF", "off"), "off");
        assert_eq!(spec_spelling("ON", "off"), "ON");
        assert_eq!(
            serde_json::to_value(configuration_body("OFF")).unwrap(),
            json!({"properties": {"value": "OFF", "source": "user-override"}})
        );
    }

    #[test]
    fn observed_flags_keep_the_spec_spelling_and_other_parameters_drift() {
        let d = spec(json!({"flags": {"explicit_defaults_for_timestamp": "off"}}));
        let found = BTreeMap::from([
            (
                EXPLICIT_DEFAULTS_FOR_TIMESTAMP.to_string(),
                "OFF".to_string(),
            ),
            (REQUIRE_SECURE_TRANSPORT.to_string(), "ON".to_string()),
        ]);
        let (flags, drift) = observed(&d, &found);
        assert_eq!(
            flags,
            BTreeMap::from([(
                EXPLICIT_DEFAULTS_FOR_TIMESTAMP.to_string(),
                "off".to_string()
            )])
        );
        assert_eq!(
            drift,
            vec!["server parameter require_secure_transport is ON, not OFF".to_string()]
        );
        let (_, missing) = observed(&d, &BTreeMap::new());
        assert_eq!(
            missing,
            vec!["server parameter require_secure_transport is not OFF".to_string()]
        );
    }
}
