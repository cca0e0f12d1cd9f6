//! The `GitpodInstallation` custom resource: the SDK's spec plus an `operator` block,
//! and the status the controller writes.
//!
//! Group `refarch.gitpod.io`, version `v1alpha1`, namespaced, short name `gpi`.
//!
//! The schema of `spec` is generated from the SDK's own types
//! ([`gitpod_refarch::ReferenceArchitecture`], feature `schema`) and rewritten into a
//! Kubernetes structural schema by [`spec_schema`]: every field of the SDK's spec is
//! there with its type and description, but only `cloud` is required, because the SDK's
//! loader merges the resource over the chosen cloud's defaults (a field left out takes
//! the default; the loader and `validate` report what is still missing, with its path).
//! `deploy/operator/crd.yaml` is this CRD ([`crate::manifests::crd_yaml`]).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired installation: every key but `operator` is the SDK's spec, exactly as in
/// the CLI's spec file (per-cloud defaults fill what is left out).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "refarch.gitpod.io",
    version = "v1alpha1",
    kind = "GitpodInstallation",
    plural = "gitpodinstallations",
    shortname = "gpi",
    namespaced,
    status = "GitpodInstallationStatus",
    printcolumn = r#"{"name":"Cloud","type":"string","jsonPath":".spec.cloud"}"#,
    printcolumn = r#"{"name":"Domain","type":"string","jsonPath":".spec.domain"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct GitpodInstallationSpec {
    /// The SDK's spec (`name`, `cloud`, `domain`, `cluster`, ...), as the CLI reads it.
    #[serde(flatten)]
    pub architecture: serde_json::Map<String, serde_json::Value>,
    /// How the controller runs this installation.
    #[serde(default)]
    pub operator: OperatorSettings,
}

/// How the controller runs one installation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorSettings {
    /// A Secret in the resource's namespace with the cloud credentials, by cloud:
    /// AWS `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (optional
    /// `AWS_SESSION_TOKEN`); GCP `GOOGLE_CREDENTIALS` (a service account key JSON);
    /// Azure `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET`. Absent:
    /// the controller's own workload identity. It also answers the spec's references
    /// (self-managed parts' secrets, CA and certificate files): `{env: NAME}` is the
    /// key NAME, `{file: NAME}` and `caFile: NAME` the key NAME, if its annotation
    /// `refarch.gitpod.io/spec-references` lists this installation (or is `*`); the
    /// controller never reads its own environment or disk for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// The Secret (in the resource's namespace) that receives the installer bundle:
    /// `gitpod.config.yaml` and the secrets Gitpod needs. Default `<name>-installer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installer_secret: Option<String>,
    /// What deleting the resource does to the cloud resources.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Apply plans that replace resources disruptively (default: refused, `Degraded`).
    #[serde(default)]
    pub allow_disruptive: bool,
}

/// What deleting a `GitpodInstallation` does to what it made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Destroy the installation (deletion protection respected: a protected database
    /// is retained and named in an Event).
    #[default]
    Delete,
    /// Leave every cloud resource, the state Secret and the installer Secret (no
    /// longer owned by the resource) in place.
    Retain,
}

/// What the controller observed and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitpodInstallationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Planning`, `Applying`, `Ready`, `Degraded`, `Deleting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Planned`, `Progressing`, `Ready`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last plan, in short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
    /// The name servers the parent domain must delegate to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_servers: Vec<String>,
    /// Outputs that are not secret (cluster endpoint, database host, bucket, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}

/// One condition, as Kubernetes conventions shape it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Planned`, `Progressing`, `Ready` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// What a person reads.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` it was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A plan in short.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// Resources to create.
    pub create: u32,
    /// Resources to update in place.
    pub update: u32,
    /// Resources to replace.
    pub replace: u32,
    /// Resources to delete.
    pub delete: u32,
    /// Resources that need nothing.
    pub unchanged: u32,
    /// The state generation the plan was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_generation: Option<String>,
}

/// The schema of `spec`: [`spec_schema`].
impl JsonSchema for GitpodInstallationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GitpodInstallationSpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // `spec_schema` always returns an object, which is a schema.
        schemars::Schema::try_from(spec_schema())
            .unwrap_or_else(|_| schemars::json_schema!({"type": "object"}))
    }
}

/// The structural schema of a `GitpodInstallation`'s `spec`: the SDK's
/// [`ReferenceArchitecture`](gitpod_refarch::ReferenceArchitecture) and the `operator`
/// block ([`OperatorSettings`]).
///
/// Generated from the types (schemars, feature `schema` of the SDK) and rewritten for
/// Kubernetes: subschemas inlined (no `$ref`), `null` alternatives as `nullable`, a
/// choice between variants (`provider: cloud | selfManaged`, `issuer`) as one object
/// holding every variant's fields with the tag's values enumerated, an externally
/// tagged value (`{env: NAME}` or `{file: PATH}`, `{ipv4: ...}` or `{hostname: ...}`)
/// with a `oneOf` of `required` (exactly one key), no `default` (the loader's per-cloud
/// defaults apply, which the API server must not pre-empt) and no
/// `additionalProperties: false` (the API server refuses unknown fields itself, or
/// prunes them). Only `cloud` is required at the top: the loader merges everything
/// else over the cloud's defaults, so no field under the top is required either, except
/// inside lists and maps (a list replaces the default's whole, so each taint needs its
/// `key` and `effect`).
pub fn spec_schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let architecture = generator
        .root_schema_for::<gitpod_refarch::ReferenceArchitecture>()
        .to_value();
    let operator = generator.root_schema_for::<OperatorSettings>().to_value();
    let mut spec = structural(architecture, true);
    if let serde_json::Value::Object(o) = &mut spec {
        o.insert(
            "description".into(),
            "The SDK's spec (the CLI's spec file: `name`, `cloud`, `domain`, `cluster`, ...; \
             fields left out take the cloud's defaults) and `operator`, how the controller \
             runs it."
                .into(),
        );
        o.insert("required".into(), serde_json::json!(["cloud"]));
        if let Some(serde_json::Value::Object(properties)) = o.get_mut("properties") {
            let mut operator = structural(operator, true);
            if let serde_json::Value::Object(op) = &mut operator {
                op.insert(
                    "description".into(),
                    "How the controller runs this installation.".into(),
                );
            }
            properties.insert("operator".into(), operator);
        }
    }
    spec
}

/// Keywords a CRD schema does not take, or that would change what the SDK reads.
const DROPPED: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "default",
    "examples",
    "example",
    "readOnly",
    "writeOnly",
    "deprecated",
];

/// Rewrite one schemars schema into a structural one (see [`spec_schema`]). `merged`:
/// the value is merged over a default by the loader (reached from the top through
/// object properties only), so nothing in it is required.
fn structural(schema: serde_json::Value, merged: bool) -> serde_json::Value {
    use serde_json::Value;
    let Value::Object(mut o) = schema else {
        // `true` (anything): schemars emits it for no type of the spec.
        return serde_json::json!({"x-kubernetes-preserve-unknown-fields": true});
    };
    for k in DROPPED {
        o.remove(*k);
    }
    if o.get("additionalProperties") == Some(&Value::Bool(false)) {
        o.remove("additionalProperties");
    }
    let mut alternatives = Vec::new();
    for k in ["oneOf", "anyOf"] {
        if let Some(Value::Array(a)) = o.remove(k) {
            alternatives.extend(a);
        }
    }
    if let Some(Value::Array(all)) = o.remove("allOf") {
        for a in all {
            union_into(&mut o, structural(a, merged));
        }
    }
    if merged {
        o.remove("required");
    }
    if let Some(Value::Object(properties)) = o.get_mut("properties") {
        for p in properties.values_mut() {
            *p = structural(p.take(), merged);
        }
    }
    if let Some(items) = o.get_mut("items") {
        *items = structural(items.take(), false);
    }
    if let Some(values @ Value::Object(_)) = o.get_mut("additionalProperties") {
        *values = structural(values.take(), false);
    }
    if alternatives.is_empty() {
        return Value::Object(o);
    }
    let is_null = |a: &Value| {
        a.get("type") == Some(&Value::from("null"))
            || (a.get("type").is_none() && a.get("enum") == Some(&serde_json::json!([null])))
    };
    let nullable = alternatives.iter().any(is_null);
    alternatives.retain(|a| !is_null(a));
    // `{key: value}` with exactly one of the keys: an externally tagged enum.
    let single_keys: Vec<Value> = alternatives
        .iter()
        .filter_map(|a| match (a.get("required"), a.get("properties")) {
            (Some(Value::Array(r)), Some(Value::Object(p))) if r.len() == 1 && p.len() == 1 => {
                Some(serde_json::json!({"required": r}))
            }
            _ => None,
        })
        .collect();
    let exactly_one_key = single_keys.len() == alternatives.len() && single_keys.len() > 1;
    for a in alternatives {
        let mut a = structural(a, merged);
        if let Value::Object(m) = &mut a {
            // A variant's description says what the variant is, not the field.
            m.remove("description");
            m.remove("required");
        }
        union_into(&mut o, a);
    }
    if exactly_one_key {
        o.insert("oneOf".into(), Value::Array(single_keys));
    }
    if nullable {
        o.insert("nullable".into(), Value::Bool(true));
    }
    Value::Object(o)
}

/// Add the alternative `alt` to the schema `out`: properties united (a property in
/// both united in turn), enumerated values appended, anything else kept from `out`.
fn union_into(out: &mut serde_json::Map<String, serde_json::Value>, alt: serde_json::Value) {
    use serde_json::Value;
    let Value::Object(alt) = alt else {
        return;
    };
    for (k, v) in alt {
        match (k.as_str(), out.get_mut(&k)) {
            ("enum", Some(Value::Array(values))) => {
                for x in v.as_array().into_iter().flatten() {
                    if !values.contains(x) {
                        values.push(x.clone());
                    }
                }
            }
            ("properties", Some(Value::Object(properties))) => {
                let Value::Object(more) = v else { continue };
                for (name, p) in more {
                    match properties.get_mut(&name) {
                        Some(Value::Object(existing)) if Value::Object(existing.clone()) != p => {
                            union_into(existing, p)
                        }
                        Some(_) => {}
                        None => {
                            properties.insert(name, p);
                        }
                    }
                }
            }
            (_, Some(_)) => {}
            (_, None) => {
                out.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_spec_schema_requires_only_cloud_and_enumerates_the_choices() {
        let s = spec_schema();
        assert_eq!(s["required"], serde_json::json!(["cloud"]));
        let p = &s["properties"];
        assert_eq!(
            p["cloud"]["enum"],
            serde_json::json!(["gcp", "aws", "azure"])
        );
        assert_eq!(
            p["database"]["properties"]["provider"]["enum"],
            serde_json::json!(["cloud", "selfManaged"])
        );
        assert_eq!(
            p["certificates"]["properties"]["issuer"]["enum"],
            serde_json::json!(["acme", "bringYourOwn"])
        );
        assert_eq!(p["gcp"]["nullable"], true);
        assert_eq!(
            p["database"]["properties"]["adminPassword"]["oneOf"],
            serde_json::json!([{"required": ["env"]}, {"required": ["file"]}])
        );
        assert_eq!(
            p["nodePools"]["properties"]["services"]["properties"]["taints"]["items"]["required"],
            serde_json::json!(["key", "effect"])
        );
        assert!(p["operator"]["properties"]["deletionPolicy"]["enum"].is_array());
        let text = s.to_string();
        for word in [
            "$ref",
            "\"default\"",
            "\"title\"",
            "additionalProperties\":false",
        ] {
            assert!(!text.contains(word), "{word} in {text}");
        }
    }
}
