//! What every resource module shares: the [`Context`] (the ARM client, subscription,
//! region, configuration), the pinned api-versions and built-in role ids, the names
//! derived from the installation name, the resource-id helpers, the ownership tags and
//! the reads that honour them ([`Context::get_ours`], [`absent_if_foreign`]), the
//! constructors of the engine operations the resource modules return, and the state a
//! provider keeps between calls (per provider, never process-wide).
//!
//! ## Names (installation `N`, subscription `S`, resource group `RG`)
//!
//! | what | name |
//! |---|---|
//! | resource group | `azure.resourceGroup`, else `N` |
//! | VNet, its subnets | `vnet-N`; `nodes`, `mysql` |
//! | cluster identity | `id-N-cluster` |
//! | AKS cluster | `aks-N` (DNS prefix `N`) |
//! | node pools | the core's pool name without `-`, at most 12 characters (`services`, `regularws`, `headlessws`) |
//! | DNS identities | `id-N-cert-manager`, `id-N-external-dns` |
//! | registry | `azure.registryName`, else `N`'s letters and digits + 8 hex digits of sha256(`S/RG/N`) |
//! | MySQL server | `azure.databaseServerName`, else `mysql-N-` + the same 8 hex digits |
//! | MySQL private DNS zone | `N.private.mysql.database.azure.com` |
//! | role assignments | a GUID from sha256(`scope|roleDefinitionId|principalId`), lower-cased |
//!
//! Every resource that takes tags carries [`INSTALLATION_LABEL`]` = N` (plus the spec's
//! labels); a same-named resource without it is never adopted or deleted
//! ([`foreign`]). (The tag name has no `/`: Azure refuses `/` in tag names.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Operation, Progress};
use gitpod_refarch::resource::{NetworkSpec, NodePoolSpec, ResourceId};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::arm::{Arm, Lro, TokenClaims};
use crate::config::AzureConfig;

/// Microsoft.Resources (resource groups, providers).
pub const RESOURCES_API: &str = "2025-04-01";
/// Microsoft.Network virtual networks and subnets.
pub const NETWORK_API: &str = "2025-05-01";
/// Microsoft.ContainerService managed clusters and agent pools.
pub const AKS_API: &str = "2026-08-01";
/// Microsoft.Network DNS zones and record sets.
pub const DNS_API: &str = "2018-05-01";
/// Microsoft.Network private DNS zones and virtual network links.
pub const PRIVATE_DNS_API: &str = "2024-06-01";
/// Microsoft.ManagedIdentity identities and federated identity credentials.
pub const MSI_API: &str = "2024-11-30";
/// Microsoft.Authorization role assignments.
pub const AUTHORIZATION_API: &str = "2022-04-01";
/// Microsoft.ContainerRegistry.
pub const ACR_API: &str = "2025-11-01";
/// Microsoft.DBforMySQL flexible servers.
pub const MYSQL_API: &str = "2024-12-30";

/// Built-in role: DNS Zone Contributor.
pub const DNS_ZONE_CONTRIBUTOR: &str = "befefa01-2a29-4197-83a8-272ff33ce314";
/// Built-in role: Network Contributor.
pub const NETWORK_CONTRIBUTOR: &str = "4d97b98b-1d4f-4787-a291-c67834d212e7";
/// Built-in role: Azure Kubernetes Service RBAC Cluster Admin.
pub const AKS_RBAC_CLUSTER_ADMIN: &str = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b";
/// Built-in role: AcrPull.
pub const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";

/// The node subnet's name.
pub const NODES_SUBNET: &str = "nodes";
/// The MySQL subnet's name (delegated to `Microsoft.DBforMySQL/flexibleServers`).
pub const MYSQL_SUBNET: &str = "mysql";

/// `vnet-N`.
pub fn vnet_name(installation: &str) -> String {
    format!("vnet-{installation}")
}

/// `id-N-cluster`.
pub fn cluster_identity_name(installation: &str) -> String {
    format!("id-{installation}-cluster")
}

/// `aks-N`.
pub fn cluster_name(installation: &str) -> String {
    format!("aks-{installation}")
}

/// The AKS pool name of a core pool name: lower-case letters and digits only, at most
/// 12 characters (`regular-ws` → `regularws`).
pub fn pool_name(core_name: &str) -> String {
    core_name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect()
}

/// `id-N-<controller>` (`cert-manager`, `external-dns`).
pub fn dns_identity_name(installation: &str, controller: &str) -> String {
    format!("id-{installation}-{controller}")
}

/// `N.private.mysql.database.azure.com`.
pub fn mysql_private_zone_name(installation: &str) -> String {
    format!("{installation}.private.mysql.database.azure.com")
}

/// 8 hex digits of sha256(`S/RG/N`): what makes the derived global names unique.
pub fn name_suffix(subscription: &str, resource_group: &str, installation: &str) -> String {
    let d = Sha256::digest(format!("{subscription}/{resource_group}/{installation}").as_bytes());
    hex(&d[..4])
}

/// The derived registry name: `N`'s letters and digits (lower-cased, at most 42) and
/// the suffix; 5-50 characters.
pub fn derived_registry_name(
    subscription: &str,
    resource_group: &str,
    installation: &str,
) -> String {
    let base: String = installation
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(42)
        .collect();
    format!(
        "{base}{}",
        name_suffix(subscription, resource_group, installation)
    )
}

/// The derived MySQL server name: `mysql-N-` (N lower-cased, at most 48) and the
/// suffix; at most 63 characters.
pub fn derived_database_server_name(
    subscription: &str,
    resource_group: &str,
    installation: &str,
) -> String {
    let base: String = installation
        .to_ascii_lowercase()
        .chars()
        .take(48)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string();
    format!(
        "mysql-{base}-{}",
        name_suffix(subscription, resource_group, installation)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The deterministic name of a role assignment: a GUID (version 5 and variant bits
/// set) from sha256 of `scope|roleDefinitionId|principalId`, all lower-cased (ARM ids
/// are case-insensitive).
pub fn role_assignment_name(scope: &str, role_definition_id: &str, principal_id: &str) -> String {
    let input = format!("{scope}|{role_definition_id}|{principal_id}").to_ascii_lowercase();
    let d = Sha256::digest(input.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Tags every resource carries: the spec's labels plus the installation tag.
pub fn tags_of(labels: &BTreeMap<String, String>, installation: &str) -> BTreeMap<String, String> {
    let mut t = labels.clone();
    t.insert(INSTALLATION_LABEL.to_string(), installation.to_string());
    t
}

/// Whether `tags` mark a resource as `installation`'s.
pub fn is_ours(tags: &BTreeMap<String, String>, installation: &str) -> bool {
    tags.get(INSTALLATION_LABEL).map(String::as_str) == Some(installation)
}

/// The tags of an ARM resource body.
pub fn tags_in(body: &Value) -> BTreeMap<String, String> {
    body.get("tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The error for a same-named resource that is not ours; `field` is the spec field
/// that would choose another name, if there is one.
pub fn foreign(what: &str, installation: &str, field: Option<&str>) -> Error {
    let fix = match field {
        Some(f) => format!("set {f} to another name, or tag it"),
        None => "rename the installation, or tag it".to_string(),
    };
    Error::new(
        ErrorKind::Conflict,
        format!(
            "{what} exists but is not tagged {INSTALLATION_LABEL}={installation}; it is left \
             alone: {fix}"
        ),
    )
}

/// A read before a delete: a same-named resource that is not ours (the [`foreign`]
/// conflict) is left alone, so it counts as absent (and is logged); other errors stay.
pub fn absent_if_foreign<T>(read: Result<Option<T>>) -> Result<Option<T>> {
    match read {
        Err(e) if e.kind() == ErrorKind::Conflict => {
            tracing::warn!(error = %e, "left alone: not tagged for this installation");
            Ok(None)
        }
        other => other,
    }
}

/// Facts every module needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The ARM client.
    pub arm: Arm,
    /// The subscription id.
    pub subscription: String,
    /// Region.
    pub region: String,
    /// The configuration it was built from.
    pub config: AzureConfig,
    /// The token's claims, read once.
    claims: Arc<Mutex<Option<TokenClaims>>>,
    /// What the engine last handed over of the network and the `services` pool.
    seen: Arc<Mutex<Seen>>,
    /// The MySQL administrator passwords this provider has set (keys from
    /// [`crate::database::gitpod_db`]: server id and a SHA-256 of the password, never
    /// the password), so that a database without saved outputs resets it once, not on
    /// every call. State of this provider: another provider in the process has its own.
    passwords_set: Arc<Mutex<BTreeSet<String>>>,
}

/// The desired states the cluster needs but its own spec lacks.
#[derive(Debug, Default)]
struct Seen {
    network: Option<NetworkSpec>,
    services_pool: Option<NodePoolSpec>,
}

impl Context {
    /// Check the configuration, build the credential and the ARM client. Makes no call.
    pub fn new(config: AzureConfig) -> Result<Self> {
        config.check()?;
        let credential = config.build_credential()?;
        let arm = Arm::new(&config, credential)?;
        Ok(Context {
            arm,
            subscription: config.subscription_id.clone(),
            region: config.region.clone(),
            config,
            claims: Arc::default(),
            seen: Arc::default(),
            passwords_set: Arc::default(),
        })
    }

    async fn claims(&self) -> Result<TokenClaims> {
        if let Ok(g) = self.claims.lock() {
            if let Some(c) = g.as_ref() {
                return Ok(c.clone());
            }
        }
        let c = self.arm.token_claims().await?;
        if let Ok(mut g) = self.claims.lock() {
            *g = Some(c.clone());
        }
        Ok(c)
    }

    /// The deployer's object id: configured, else the ARM token's `oid`.
    pub async fn deployer_principal_id(&self) -> Result<String> {
        if let Some(id) = &self.config.deployer_principal_id {
            return Ok(id.clone());
        }
        self.claims().await?.object_id.ok_or_else(|| {
            Error::new(
                ErrorKind::Credentials,
                "the ARM token has no oid claim: set the deployer's object id \
                 (AzureConfig::deployer_principal_id)",
            )
        })
    }

    /// The tenant: configured, else the ARM token's `tid`.
    pub async fn tenant_id(&self) -> Result<String> {
        if let Some(t) = &self.config.tenant_id {
            return Ok(t.clone());
        }
        self.claims().await?.tenant_id.ok_or_else(|| {
            Error::new(
                ErrorKind::Credentials,
                "the ARM token has no tid claim: set the tenant (AzureConfig::tenant_id)",
            )
        })
    }

    /// Remember the desired network (its pod and service ranges go into the AKS
    /// network profile).
    pub(crate) fn saw_network(&self, d: &NetworkSpec) {
        if let Ok(mut s) = self.seen.lock() {
            s.network = Some(d.clone());
        }
    }

    /// Remember the desired `services` pool (created inline with the cluster).
    pub(crate) fn saw_services_pool(&self, d: &NodePoolSpec) {
        if let Ok(mut s) = self.seen.lock() {
            s.services_pool = Some(d.clone());
        }
    }

    /// The desired network: the one the engine last handed over, else the spec's.
    pub(crate) fn network_spec(&self) -> Option<NetworkSpec> {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.network.clone())
            .or_else(|| self.config.network_hint.clone())
    }

    /// The desired `services` pool: the one the engine last handed over, else the
    /// spec's.
    pub(crate) fn services_pool_spec(&self) -> Option<NodePoolSpec> {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.services_pool.clone())
            .or_else(|| self.config.services_pool_hint.clone())
    }

    /// Remember that this provider set the password behind `key`.
    pub(crate) fn remember_password_set(&self, key: String) {
        if let Ok(mut s) = self.passwords_set.lock() {
            s.insert(key);
        }
    }

    /// Whether this provider set the password behind `key`.
    pub(crate) fn password_was_set(&self, key: &str) -> bool {
        self.passwords_set
            .lock()
            .map(|s| s.contains(key))
            .unwrap_or(false)
    }

    /// GET the resource at `path` as `T`, with its raw body: `None` when absent, the
    /// [`foreign`] conflict (`what` exists but is not ours; `field` is the spec field
    /// that would choose another name) when its tags do not mark it as
    /// `installation`'s.
    pub async fn get_ours<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        installation: &str,
        what: &str,
        field: Option<&str>,
    ) -> Result<Option<(T, Value)>> {
        let Some(raw) = self.arm.get::<Value>(path, api_version).await? else {
            return Ok(None);
        };
        if !is_ours(&tags_in(&raw), installation) {
            return Err(foreign(what, installation, field));
        }
        Ok(Some((crate::arm::from_value(raw.clone())?, raw)))
    }

    /// The resource group of `installation`.
    pub fn resource_group(&self, installation: &str) -> String {
        self.config
            .resource_group
            .clone()
            .unwrap_or_else(|| installation.to_string())
    }

    /// The registry name of `installation`.
    pub fn registry_name(&self, installation: &str) -> String {
        self.config.registry_name.clone().unwrap_or_else(|| {
            derived_registry_name(
                &self.subscription,
                &self.resource_group(installation),
                installation,
            )
        })
    }

    /// The MySQL flexible server name of `installation`.
    pub fn database_server_name(&self, installation: &str) -> String {
        self.config.database_server_name.clone().unwrap_or_else(|| {
            derived_database_server_name(
                &self.subscription,
                &self.resource_group(installation),
                installation,
            )
        })
    }

    /// `/subscriptions/S`.
    pub fn subscription_path(&self) -> String {
        format!("/subscriptions/{}", self.subscription)
    }

    /// `/subscriptions/S/resourcegroups/RG`.
    pub fn rg_path(&self, installation: &str) -> String {
        format!(
            "{}/resourcegroups/{}",
            self.subscription_path(),
            self.resource_group(installation)
        )
    }

    /// `/subscriptions/S/resourceGroups/RG/providers/<type>/<name>`, for example
    /// `resource_path(n, "Microsoft.Network/virtualNetworks", "vnet-n")`.
    pub fn resource_path(&self, installation: &str, resource_type: &str, name: &str) -> String {
        format!(
            "{}/resourceGroups/{}/providers/{resource_type}/{name}",
            self.subscription_path(),
            self.resource_group(installation)
        )
    }

    /// The VNet's id.
    pub fn vnet_path(&self, installation: &str) -> String {
        self.resource_path(
            installation,
            "Microsoft.Network/virtualNetworks",
            &vnet_name(installation),
        )
    }

    /// A subnet's id.
    pub fn subnet_path(&self, installation: &str, subnet: &str) -> String {
        format!("{}/subnets/{subnet}", self.vnet_path(installation))
    }

    /// The AKS cluster's id.
    pub fn cluster_path(&self, installation: &str) -> String {
        self.resource_path(
            installation,
            "Microsoft.ContainerService/managedClusters",
            &cluster_name(installation),
        )
    }

    /// A user-assigned identity's id.
    pub fn identity_path(&self, installation: &str, name: &str) -> String {
        self.resource_path(
            installation,
            "Microsoft.ManagedIdentity/userAssignedIdentities",
            name,
        )
    }

    /// `/subscriptions/S/providers/Microsoft.Authorization/roleDefinitions/<role>`.
    pub fn role_definition_id(&self, role: &str) -> String {
        format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            self.subscription_path()
        )
    }

    /// `<scope>/providers/Microsoft.Authorization/roleAssignments/<name>`.
    pub fn role_assignment_path(&self, scope: &str, name: &str) -> String {
        format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
    }

    /// An engine operation for ARM operation `id` on `resource`, polled after the
    /// `Retry-After` hint or the configured interval.
    pub fn op(
        &self,
        id: impl Into<String>,
        resource: &ResourceId,
        hint: Option<Duration>,
    ) -> Operation {
        Operation::new(id, resource.clone()).poll_after(hint.unwrap_or(self.config.poll_interval))
    }

    /// The engine operation of a pending [`Lro`]; `None` when it is done.
    pub fn op_for(&self, resource: &ResourceId, lro: &Lro) -> Option<Operation> {
        match lro {
            Lro::Pending(id, hint) => Some(self.op(id.clone(), resource, *hint)),
            Lro::Done(_) => None,
        }
    }

    /// `Progress::Pending` for a pending [`Lro`]; `None` when it is done (the caller
    /// goes on with its next phase).
    pub fn pending(&self, resource: &ResourceId, lro: &Lro) -> Option<Progress> {
        self.op_for(resource, lro).map(Progress::Pending)
    }

    /// `Progress::Pending` that watches a resource until it settles (found busy from an
    /// earlier run).
    pub fn watch(&self, resource: &ResourceId, path: &str, api_version: &str) -> Progress {
        Progress::Pending(self.op(crate::arm::watch_id(path, api_version), resource, None))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const S: &str = "00000000-0000-0000-0000-000000000001";

    #[test]
    fn pool_names_follow_the_aks_pattern() {
        assert_eq!(pool_name("services"), "services");
        assert_eq!(pool_name("regular-ws"), "regularws");
        assert_eq!(pool_name("headless-ws"), "headlessws");
        assert_eq!(pool_name("A-very-long-pool-name"), "averylongpoo");
    }

    #[test]
    fn global_names_are_derived_deterministically() {
        let a = derived_registry_name(S, "gitpod", "gitpod");
        assert_eq!(a, derived_registry_name(S, "gitpod", "gitpod"));
        assert!(a.starts_with("gitpod") && a.len() == 14, "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        // Another subscription or group gives another suffix.
        assert_ne!(a, derived_registry_name(S, "other", "gitpod"));
        assert_ne!(
            a,
            derived_registry_name("00000000-0000-0000-0000-000000000002", "gitpod", "gitpod")
        );
        assert_eq!(&a[6..], name_suffix(S, "gitpod", "gitpod"));
        let long = "a".repeat(60);
        assert_eq!(derived_registry_name(S, "rg", &long).len(), 50);
        let m = derived_database_server_name(S, "gitpod", "my-gitpod");
        assert_eq!(
            m,
            format!("mysql-my-gitpod-{}", name_suffix(S, "gitpod", "my-gitpod"))
        );
        assert!(derived_database_server_name(S, "rg", &long).len() <= 63);
        assert_eq!(
            mysql_private_zone_name("gp"),
            "gp.private.mysql.database.azure.com"
        );
    }

    #[test]
    fn role_assignment_names_are_stable_guids() {
        let scope = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet-gp";
        let role = "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/4d97b98b-1d4f-4787-a291-c67834d212e7";
        let g = role_assignment_name(scope, role, "p-1");
        assert!(crate::config::is_uuid(&g), "{g}");
        assert_eq!(&g[14..15], "5");
        assert!(matches!(&g[19..20], "8" | "9" | "a" | "b"), "{g}");
        assert_eq!(g, role_assignment_name(&scope.to_uppercase(), role, "P-1"));
        assert_ne!(g, role_assignment_name(scope, role, "p-2"));
        assert_ne!(g, role_assignment_name(scope, "other", "p-1"));
    }

    #[test]
    fn tags_mark_ownership() {
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), "infra".to_string());
        let t = tags_of(&labels, "gp");
        assert!(is_ours(&t, "gp"));
        assert!(!is_ours(&t, "other"));
        assert!(!is_ours(&labels, "gp"));
        let body = serde_json::json!({"tags": t});
        assert_eq!(tags_in(&body), t);
        assert!(tags_in(&serde_json::json!({})).is_empty());
        let e = foreign("registry x", "gp", Some("azure.registryName"));
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("azure.registryName"));
    }
}
