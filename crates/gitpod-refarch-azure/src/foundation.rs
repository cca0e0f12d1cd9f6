//! Account preparation: the resource providers, the globally unique names, and the
//! resource group.
//!
//! [`ensure`] goes in this order, one phase per call, so that nothing is created
//! before every check has passed:
//!
//! 1. The resource group, if it exists, must be tagged for this installation; else
//!    [`ErrorKind::Conflict`] naming `azure.resourceGroup`.
//! 2. The six resource providers ([`REQUIRED_PROVIDERS`]) are registered with the
//!    subscription (`POST …/providers/<ns>/register`, which is idempotent); while any
//!    is `Registering` the step is pending on an operation that reads them again,
//!    failing with [`ErrorKind::Timeout`] after
//!    [`AzureConfig::registration_timeout`](crate::AzureConfig::registration_timeout).
//! 3. The registry and MySQL server names, which are global, are checked with the
//!    `checkNameAvailability` APIs (a name that already exists as ours in the resource
//!    group is skipped): a taken name is [`ErrorKind::Conflict`] naming
//!    `azure.registryName` / `azure.databaseServerName`.
//! 4. The resource group is created (or re-tagged) with the installation's tags.
//!
//! [`delete`] deletes the resource group (a long-running operation that takes what is
//! still in it) only when it is tagged for this installation: a group that is not is
//! never deleted. The providers stay registered (other things may use them).

use std::collections::BTreeMap;
use std::time::Duration;

use gitpod_refarch::provider::{Observed, Operation, Progress};
use gitpod_refarch::resource::{FoundationSpec, Output, ResourceId, ResourceKind};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arm::is_busy;
use crate::context::{absent_if_foreign, tags_of, Context, ACR_API, MYSQL_API, RESOURCES_API};

/// The resource providers the installation needs.
pub const REQUIRED_PROVIDERS: [&str; 6] = [
    "Microsoft.ContainerService",
    "Microsoft.Network",
    "Microsoft.Compute",
    "Microsoft.DBforMySQL",
    "Microsoft.ContainerRegistry",
    "Microsoft.ManagedIdentity",
];

/// A resource group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGroup {
    /// Location.
    pub location: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A resource provider's registration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// Its namespace.
    #[serde(default)]
    pub namespace: String,
    /// `NotRegistered`, `Registering`, `Registered`, `Unregistering`.
    #[serde(default)]
    pub registration_state: String,
}

/// A `checkNameAvailability` request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NameCheck {
    /// The name.
    pub name: String,
    /// The resource type (`Microsoft.ContainerRegistry/registries`, …).
    #[serde(rename = "type")]
    pub resource_type: String,
}

/// A `checkNameAvailability` answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameAvailability {
    /// Whether the name can be had.
    #[serde(default)]
    pub name_available: bool,
    /// Why not (`AlreadyExists`, `Invalid`).
    #[serde(default)]
    pub reason: Option<String>,
    /// ARM's message.
    #[serde(default)]
    pub message: Option<String>,
}

/// The prefix of the operation ids of a registration wait.
pub const REGISTRATION_OP: &str = "providers:";

fn output(c: &Context, installation: &str) -> Output {
    Output::Foundation {
        account: format!("{}/{}", c.subscription, c.resource_group(installation)),
    }
}

/// The resource group of the installation (its body, to see a deletion in progress):
/// `None` when absent, a Conflict naming `azure.resourceGroup` when not ours.
async fn get_group(c: &Context, installation: &str) -> Result<Option<(ResourceGroup, Value)>> {
    let what = format!("resource group {}", c.resource_group(installation));
    c.get_ours(
        &c.rg_path(installation),
        RESOURCES_API,
        installation,
        &what,
        Some("azure.resourceGroup"),
    )
    .await
}

/// The providers that are not `Registered`, with their state.
async fn unregistered(c: &Context) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for ns in REQUIRED_PROVIDERS {
        let p = c
            .arm
            .get::<Provider>(
                &format!("{}/providers/{ns}", c.subscription_path()),
                RESOURCES_API,
            )
            .await?
            .unwrap_or_default();
        if !p.registration_state.eq_ignore_ascii_case("Registered") {
            let state = if p.registration_state.is_empty() {
                "NotRegistered".to_string()
            } else {
                p.registration_state
            };
            out.push((ns.to_string(), state));
        }
    }
    Ok(out)
}

/// The group as it exists; providers not registered yet are its drift.
pub async fn observe(c: &Context, d: &FoundationSpec) -> Result<Option<Observed<FoundationSpec>>> {
    let Some((rg, raw)) = get_group(c, &d.installation).await? else {
        return Ok(None);
    };
    let mut actual = d.clone();
    if rg.tags != tags_of(&d.labels, &d.installation) {
        actual.labels = rg.tags.clone();
    }
    if is_busy(&raw) {
        let id = ResourceId::new(ResourceKind::Foundation, d.installation.clone());
        let w = crate::arm::watch_id(&c.rg_path(&d.installation), RESOURCES_API);
        return Ok(Some(Observed::pending(actual, c.op(w, &id, None))));
    }
    let missing = unregistered(c).await?;
    let drift = (!missing.is_empty()).then(|| {
        format!(
            "resource providers not registered: {}",
            missing
                .iter()
                .map(|(ns, s)| format!("{ns} ({s})"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Ok(Some(
        Observed::ready(actual, Some(output(c, &d.installation))).with_drift_if(drift),
    ))
}

/// The registration wait's operation: its start on the engine's clock and the
/// namespaces.
fn registration_op(
    c: &Context,
    id: &ResourceId,
    started: Duration,
    pending: &[String],
) -> Operation {
    c.op(
        format!(
            "{REGISTRATION_OP}{}:{}",
            started.as_secs(),
            pending.join(",")
        ),
        id,
        None,
    )
}

/// Poll a registration wait: done when every provider is `Registered`.
pub async fn poll_registration(c: &Context, op: &Operation) -> Result<Progress> {
    let started = op
        .id
        .strip_prefix(REGISTRATION_OP)
        .and_then(|r| r.split_once(':'))
        .and_then(|(s, _)| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .ok_or_else(|| Error::internal(format!("not a registration wait: {}", op.id)))?;
    let missing = unregistered(c).await?;
    if missing.is_empty() {
        return Ok(Progress::Done(None));
    }
    let names: Vec<String> = missing.iter().map(|(ns, _)| ns.clone()).collect();
    let elapsed = c.config.clock.now().saturating_sub(started);
    if elapsed > c.config.registration_timeout {
        return Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "resource providers still not registered after {} s: {}",
                elapsed.as_secs(),
                names.join(", ")
            ),
        )
        .with_resource(op.resource.clone()));
    }
    Ok(Progress::Pending(registration_op(
        c,
        &op.resource,
        started,
        &names,
    )))
}

/// Check a global name with `checkNameAvailability` (`path` is the action's path).
async fn check_name(
    c: &Context,
    path: &str,
    api: &str,
    check: &NameCheck,
    field: &str,
) -> Result<()> {
    let answer = c
        .arm
        .post(path, api, Some(check))
        .await?
        .body::<NameAvailability>()?
        .unwrap_or_default();
    if answer.name_available {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Conflict,
        format!(
            "the name '{}' is not available ({}: {}): set {field} to another name",
            check.name,
            answer.reason.as_deref().unwrap_or("taken"),
            answer.message.as_deref().unwrap_or("no message")
        ),
    ))
}

/// Whether `resource_type/name` already exists in the group tagged ours (then its
/// name is ours and not checked); one that is not ours is a Conflict naming `field`.
async fn ours_in_group(
    c: &Context,
    installation: &str,
    resource_type: &str,
    name: &str,
    api: &str,
    field: &str,
) -> Result<bool> {
    let path = c.resource_path(installation, resource_type, name);
    let what = format!("{resource_type} {name}");
    let found = c
        .get_ours::<Value>(&path, api, installation, &what, Some(field))
        .await?;
    Ok(found.is_some())
}

/// Check the registry and MySQL server names (see the module docs).
async fn check_names(c: &Context, installation: &str) -> Result<()> {
    let registry = c.registry_name(installation);
    if !ours_in_group(
        c,
        installation,
        "Microsoft.ContainerRegistry/registries",
        &registry,
        ACR_API,
        "azure.registryName",
    )
    .await?
    {
        check_name(
            c,
            &format!(
                "{}/providers/Microsoft.ContainerRegistry/checkNameAvailability",
                c.subscription_path()
            ),
            ACR_API,
            &NameCheck {
                name: registry,
                resource_type: "Microsoft.ContainerRegistry/registries".into(),
            },
            "azure.registryName",
        )
        .await?;
    }
    let server = c.database_server_name(installation);
    if !ours_in_group(
        c,
        installation,
        "Microsoft.DBforMySQL/flexibleServers",
        &server,
        MYSQL_API,
        "azure.databaseServerName",
    )
    .await?
    {
        check_name(
            c,
            &format!(
                "{}/providers/Microsoft.DBforMySQL/locations/{}/checkNameAvailability",
                c.subscription_path(),
                c.region
            ),
            MYSQL_API,
            &NameCheck {
                name: server,
                resource_type: "Microsoft.DBforMySQL/flexibleServers".into(),
            },
            "azure.databaseServerName",
        )
        .await?;
    }
    Ok(())
}

/// One phase per call (see the module docs).
pub async fn ensure(c: &Context, d: &FoundationSpec) -> Result<Progress> {
    let n = &d.installation;
    let id = ResourceId::new(ResourceKind::Foundation, n.clone());
    let existing = get_group(c, n).await?;
    if let Some((_, raw)) = &existing {
        if is_busy(raw) {
            return Ok(c.watch(&id, &c.rg_path(n), RESOURCES_API));
        }
    }
    let missing = unregistered(c).await?;
    if !missing.is_empty() {
        for (ns, state) in &missing {
            if !state.eq_ignore_ascii_case("Registering") {
                tracing::info!(provider = %ns, "registering the resource provider");
                c.arm
                    .post::<Value>(
                        &format!("{}/providers/{ns}/register", c.subscription_path()),
                        RESOURCES_API,
                        None,
                    )
                    .await?;
            }
        }
        let names: Vec<String> = missing.into_iter().map(|(ns, _)| ns).collect();
        return Ok(Progress::Pending(registration_op(
            c,
            &id,
            c.config.clock.now(),
            &names,
        )));
    }
    check_names(c, n).await?;
    let tags = tags_of(&d.labels, n);
    if existing.as_ref().is_none_or(|(rg, _)| rg.tags != tags) {
        let body = ResourceGroup {
            location: existing
                .as_ref()
                .map_or_else(|| c.region.clone(), |(rg, _)| rg.location.clone()),
            tags,
        };
        c.arm.put(&c.rg_path(n), RESOURCES_API, &body).await?;
    }
    Ok(Progress::Done(Some(output(c, n))))
}

/// Delete the resource group when it is ours (see the module docs).
pub async fn delete(c: &Context, d: &FoundationSpec) -> Result<Progress> {
    let n = &d.installation;
    let id = ResourceId::new(ResourceKind::Foundation, n.clone());
    let Some((_, raw)) = absent_if_foreign(get_group(c, n).await)? else {
        return Ok(Progress::Done(None));
    };
    if is_busy(&raw) {
        return Ok(c.watch(&id, &c.rg_path(n), RESOURCES_API));
    }
    let lro = c.arm.delete(&c.rg_path(n), RESOURCES_API).await?;
    Ok(c.pending(&id, &lro).unwrap_or(Progress::Done(None)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn request_bodies_have_the_wire_names() {
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), "a".to_string());
        assert_eq!(
            serde_json::to_value(ResourceGroup {
                location: "northeurope".into(),
                tags: tags_of(&labels, "gp"),
            })
            .unwrap(),
            json!({"location": "northeurope", "tags": {"gitpod-installation": "gp", "team": "a"}})
        );
        assert_eq!(
            serde_json::to_value(NameCheck {
                name: "gp1234abcd".into(),
                resource_type: "Microsoft.ContainerRegistry/registries".into()
            })
            .unwrap(),
            json!({"name": "gp1234abcd", "type": "Microsoft.ContainerRegistry/registries"})
        );
        let a: NameAvailability = serde_json::from_value(json!({
            "nameAvailable": false, "reason": "AlreadyExists",
            "message": "The registry gp is already in use."
        }))
        .unwrap();
        assert!(!a.name_available);
        let p: Provider = serde_json::from_value(json!({
            "id": "/subscriptions/s/providers/Microsoft.Network",
            "namespace": "Microsoft.Network", "registrationState": "Registering"
        }))
        .unwrap();
        assert_eq!(p.registration_state, "Registering");
    }

    #[test]
    fn registration_waits_carry_their_start() {
        let c = crate::tests::ctx();
        let id = ResourceId::new(ResourceKind::Foundation, "gp");
        let op = registration_op(
            &c,
            &id,
            Duration::from_secs(42),
            &["Microsoft.Compute".into(), "Microsoft.Network".into()],
        );
        assert_eq!(op.id, "providers:42:Microsoft.Compute,Microsoft.Network");
        assert_eq!(REQUIRED_PROVIDERS.len(), 6);
    }
}
