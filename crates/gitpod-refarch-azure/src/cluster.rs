//! The AKS cluster `aks-N` (DNS prefix `N`).
//!
//! As the issue and the guide ask:
//!
//! - the spec's Kubernetes version, auto-upgrade channel `none` (the version is
//!   frozen), node OS channel `NodeImage` (or `Unmanaged`,
//!   [`AzureConfig::node_os_upgrade`](crate::AzureConfig::node_os_upgrade));
//! - Azure CNI in overlay mode with Calico network policy, pods and services in the
//!   spec's ranges ([`NetworkPlugin::Kubenet`] for parity with Gitpod's old Terraform);
//!   outbound through the standard load balancer;
//! - the OIDC issuer and Workload Identity on (the DNS identities federate with it);
//! - Entra ID integration managed by AKS with Azure RBAC for Kubernetes, local accounts
//!   off (no admin kubeconfig exists), Kubernetes RBAC on;
//! - the control plane runs as the user-assigned identity `id-N-cluster`
//!   ([`crate::identity`]), which gets Network Contributor on the VNet first;
//! - the `services` pool is the system pool, created inline (its settings as in
//!   [`crate::nodepool`]): AKS cannot exist without a system pool, and creating it
//!   inline saves a serial pool operation;
//! - the Standard tier (the uptime SLA of a production control plane).
//!
//! Once the cluster runs, the deployer (the identity this runs as, its object id from
//! the ARM token unless configured) gets *Azure Kubernetes Service RBAC Cluster Admin*
//! on it, so the in-cluster bootstrap can use its Entra ID token
//! ([`crate::access`]). The output's endpoint and CA come from
//! `listClusterUserCredential`'s kubeconfig, as `az aks get-credentials` takes them:
//! its `server` (`https://<fqdn>:443` when it names none) and its
//! `certificate-authority-data` (empty if it has none). Reading it is a `POST`, so [`observe`] reports no output: the engine uses
//! the recorded one, and a re-apply sends no POST.
//!
//! [`observe`] compares the cluster-level settings and reports what differs as drift;
//! [`ensure`] then writes the cluster again with the pools exactly as they are (a
//! cluster PUT never changes a pool: [`crate::nodepool`] does, through the agentPools
//! API).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use base64::Engine as _;
use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{ClusterSpec, NodePoolSpec, Output, ResourceId, ResourceKind};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arm::is_busy;
use crate::config::NetworkPlugin;
use crate::context::{
    absent_if_foreign, cluster_identity_name, cluster_name, pool_name, tags_of, Context, AKS_API,
    AKS_RBAC_CLUSTER_ADMIN,
};
use crate::identity;
use crate::nodepool::{pool_properties, version_matches, AgentPoolProperties};

/// A managed cluster (the fields this provider writes or reads).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedCluster {
    /// Location.
    pub location: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The control plane's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ManagedIdentityRef>,
    /// The tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<ClusterSku>,
    /// Properties.
    #[serde(default)]
    pub properties: ClusterProperties,
}

/// `identity` of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentityRef {
    /// `UserAssigned`.
    #[serde(rename = "type")]
    pub identity_type: String,
    /// The identities' ids (the values are read-only ids; written empty).
    #[serde(default)]
    pub user_assigned_identities: BTreeMap<String, Value>,
}

/// `sku` of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSku {
    /// `Base`.
    pub name: String,
    /// `Free`, `Standard` or `Premium`.
    pub tier: String,
}

/// `properties` of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterProperties {
    /// The version asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// The version running (read-only).
    #[serde(default, skip_serializing)]
    pub current_kubernetes_version: Option<String>,
    /// DNS prefix of the API server's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_prefix: Option<String>,
    /// Kubernetes RBAC.
    #[serde(
        default,
        rename = "enableRBAC",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_rbac: Option<bool>,
    /// No local (certificate) accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_local_accounts: Option<bool>,
    /// Entra ID integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad_profile: Option<AadProfile>,
    /// The OIDC issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_issuer_profile: Option<OidcIssuerProfile>,
    /// Workload Identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_profile: Option<SecurityProfile>,
    /// Upgrade channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_upgrade_profile: Option<AutoUpgradeProfile>,
    /// Networking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<NetworkProfile>,
    /// The pools (only the system pool at creation; as they are on a rewrite).
    #[serde(default)]
    pub agent_pool_profiles: Vec<AgentPoolProfile>,
    /// The API server's name (read-only).
    #[serde(default, skip_serializing)]
    pub fqdn: Option<String>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

/// `aadProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AadProfile {
    /// AKS-managed Entra ID.
    #[serde(default)]
    pub managed: bool,
    /// Azure RBAC for Kubernetes authorization.
    #[serde(default, rename = "enableAzureRBAC")]
    pub enable_azure_rbac: bool,
}

/// `oidcIssuerProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcIssuerProfile {
    /// On.
    #[serde(default)]
    pub enabled: bool,
    /// The issuer URL (read-only): the issuer of the federated credentials.
    #[serde(default, rename = "issuerURL", skip_serializing)]
    pub issuer_url: Option<String>,
}

/// `securityProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityProfile {
    /// Workload Identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<Enabled>,
}

/// `{enabled}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Enabled {
    /// On.
    #[serde(default)]
    pub enabled: bool,
}

/// `autoUpgradeProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoUpgradeProfile {
    /// `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_channel: Option<String>,
    /// `NodeImage` or `Unmanaged`.
    #[serde(
        default,
        rename = "nodeOSUpgradeChannel",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_os_upgrade_channel: Option<String>,
}

/// `networkProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// `azure` or `kubenet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_plugin: Option<String>,
    /// `overlay` with `azure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_plugin_mode: Option<String>,
    /// `calico`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<String>,
    /// The pods' range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// The services' range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    /// The cluster DNS service's address (the tenth of the services' range).
    #[serde(
        default,
        rename = "dnsServiceIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub dns_service_ip: Option<String>,
    /// `loadBalancer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_type: Option<String>,
    /// `standard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_sku: Option<String>,
}

/// An inline pool: a name and the agent pool's properties.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentPoolProfile {
    /// The pool's name.
    pub name: String,
    /// Its properties.
    #[serde(flatten)]
    pub properties: AgentPoolProperties,
}

/// `listClusterUserCredential`'s answer.
#[derive(Debug, Clone, Default, Deserialize)]
struct Credentials {
    #[serde(default)]
    kubeconfigs: Vec<Kubeconfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    value: String,
}

/// The tenth address of a range (AKS's cluster DNS service address).
pub fn dns_service_ip(service_cidr: &str) -> Result<String> {
    let bad = || Error::invalid_input(format!("'{service_cidr}' is not an IPv4 service range"));
    let (ip, len) = service_cidr.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    if len > 28 {
        return Err(bad());
    }
    let base = u32::from(ip) & (u32::MAX << (32 - len));
    Ok(Ipv4Addr::from(base + 10).to_string())
}

/// The network profile the configuration and the spec's ranges ask for.
pub fn network_profile(c: &Context) -> Result<NetworkProfile> {
    let n = c.network_spec().ok_or_else(|| {
        Error::new(
            ErrorKind::Precondition,
            "the network's pod and service ranges are not known: build the provider with \
             AzureConfig::for_spec, or let the engine observe the network first",
        )
    })?;
    let (plugin, mode) = match c.config.network_plugin {
        NetworkPlugin::Overlay => ("azure", Some("overlay".to_string())),
        NetworkPlugin::Kubenet => ("kubenet", None),
    };
    Ok(NetworkProfile {
        network_plugin: Some(plugin.into()),
        network_plugin_mode: mode,
        network_policy: Some("calico".into()),
        pod_cidr: n.pod_cidr.clone(),
        dns_service_ip: Some(dns_service_ip(&n.service_cidr)?),
        service_cidr: Some(n.service_cidr),
        outbound_type: Some("loadBalancer".into()),
        load_balancer_sku: Some("standard".into()),
    })
}

/// The cluster as it should be, with `pools` as its `agentPoolProfiles`.
pub fn desired_cluster(
    c: &Context,
    d: &ClusterSpec,
    pools: Vec<AgentPoolProfile>,
) -> Result<ManagedCluster> {
    let identity_id = c.identity_path(&d.name, &cluster_identity_name(&d.name));
    let mut identities = BTreeMap::new();
    identities.insert(identity_id, Value::Object(Default::default()));
    Ok(ManagedCluster {
        location: c.region.clone(),
        tags: tags_of(&d.labels, &d.name),
        identity: Some(ManagedIdentityRef {
            identity_type: "UserAssigned".into(),
            user_assigned_identities: identities,
        }),
        sku: Some(ClusterSku {
            name: "Base".into(),
            tier: "Standard".into(),
        }),
        properties: ClusterProperties {
            kubernetes_version: Some(d.kubernetes_version.clone()),
            dns_prefix: Some(d.name.clone()),
            enable_rbac: Some(true),
            disable_local_accounts: Some(true),
            aad_profile: Some(AadProfile {
                managed: true,
                enable_azure_rbac: true,
            }),
            oidc_issuer_profile: Some(OidcIssuerProfile {
                enabled: true,
                issuer_url: None,
            }),
            security_profile: Some(SecurityProfile {
                workload_identity: Some(Enabled { enabled: true }),
            }),
            auto_upgrade_profile: Some(AutoUpgradeProfile {
                upgrade_channel: Some(if d.auto_upgrade { "patch" } else { "none" }.into()),
                node_os_upgrade_channel: Some(c.config.node_os_upgrade.as_str().into()),
            }),
            network_profile: Some(network_profile(c)?),
            agent_pool_profiles: pools,
            ..Default::default()
        },
    })
}

/// The inline system pool from the `services` pool's spec.
pub fn system_pool(c: &Context, services: &NodePoolSpec) -> AgentPoolProfile {
    AgentPoolProfile {
        name: pool_name(&services.name),
        properties: pool_properties(c, services),
    }
}

/// The cluster-level settings of `mc` that differ from `want`, in words.
pub fn settings_drift(mc: &ManagedCluster, want: &ManagedCluster) -> Vec<String> {
    let (a, w) = (&mc.properties, &want.properties);
    let mut out = Vec::new();
    let mut check = |differs: bool, what: &str| {
        if differs {
            out.push(what.to_string());
        }
    };
    check(
        a.oidc_issuer_profile.as_ref().map(|p| p.enabled) != Some(true),
        "the OIDC issuer is off",
    );
    check(
        a.security_profile
            .as_ref()
            .and_then(|s| s.workload_identity.as_ref())
            .map(|w| w.enabled)
            != Some(true),
        "Workload Identity is off",
    );
    check(
        a.aad_profile != w.aad_profile,
        "Entra ID integration with Azure RBAC is not on",
    );
    check(
        a.disable_local_accounts != Some(true),
        "local accounts are on",
    );
    check(a.enable_rbac != Some(true), "Kubernetes RBAC is off");
    let channels = |p: &Option<AutoUpgradeProfile>| {
        p.as_ref().map(|p| {
            (
                p.upgrade_channel
                    .clone()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                p.node_os_upgrade_channel
                    .clone()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
            )
        })
    };
    check(
        channels(&a.auto_upgrade_profile) != channels(&w.auto_upgrade_profile),
        "the upgrade channels differ",
    );
    let net = |p: &Option<NetworkProfile>| {
        p.as_ref().map(|p| {
            (
                p.network_plugin.clone(),
                p.network_plugin_mode.clone(),
                p.network_policy.clone(),
                p.pod_cidr.clone(),
                p.service_cidr.clone(),
            )
        })
    };
    check(
        net(&a.network_profile) != net(&w.network_profile),
        "the network profile differs (plugin, policy or ranges)",
    );
    let ids = |i: &Option<ManagedIdentityRef>| -> Option<(String, Vec<String>)> {
        i.as_ref().map(|i| {
            (
                i.identity_type.to_ascii_lowercase(),
                i.user_assigned_identities
                    .keys()
                    .map(|k| k.to_ascii_lowercase())
                    .collect(),
            )
        })
    };
    check(
        ids(&mc.identity) != ids(&want.identity),
        "the control plane does not run as the cluster identity",
    );
    check(mc.tags != want.tags, "its tags differ");
    out
}

/// The spec of the cluster as it exists (what AKS does not report is the desired).
fn actual(d: &ClusterSpec, mc: &ManagedCluster) -> ClusterSpec {
    let mut a = d.clone();
    let p = &mc.properties;
    let version = p
        .current_kubernetes_version
        .as_deref()
        .or(p.kubernetes_version.as_deref())
        .unwrap_or_default();
    if !version_matches(&d.kubernetes_version, version) {
        a.kubernetes_version = version.to_string();
    }
    if let Some(policy) = p
        .network_profile
        .as_ref()
        .and_then(|n| n.network_policy.clone())
    {
        a.network_policy = policy;
    }
    a.auto_upgrade = p
        .auto_upgrade_profile
        .as_ref()
        .and_then(|u| u.upgrade_channel.as_deref())
        .is_some_and(|ch| !ch.eq_ignore_ascii_case("none"));
    if mc.tags != tags_of(&d.labels, &d.name) {
        a.labels = mc.tags.clone();
    }
    a
}

/// The cluster of `installation` as ARM reports it (with its raw body): `None` when
/// absent, [`foreign`](crate::context::foreign) when not tagged ours. [`crate::dns`] reads the OIDC issuer here.
pub async fn get(c: &Context, installation: &str) -> Result<Option<(ManagedCluster, Value)>> {
    let what = format!("AKS cluster {}", cluster_name(installation));
    c.get_ours(
        &c.cluster_path(installation),
        AKS_API,
        installation,
        &what,
        None,
    )
    .await
}

/// The cluster's OIDC issuer URL, once it has one.
pub async fn oidc_issuer(c: &Context, installation: &str) -> Result<Option<String>> {
    Ok(get(c, installation).await?.and_then(|(mc, _)| {
        mc.properties
            .oidc_issuer_profile
            .and_then(|o| o.issuer_url)
            .filter(|u| !u.is_empty())
    }))
}

fn cluster_id(d: &ClusterSpec) -> ResourceId {
    ResourceId::new(ResourceKind::Cluster, d.name.clone())
}

/// The cluster as it exists; settings that differ and a deployer without AKS RBAC
/// Cluster Admin are drift. No output (see the module docs).
pub async fn observe(c: &Context, d: &ClusterSpec) -> Result<Option<Observed<ClusterSpec>>> {
    let Some((mc, raw)) = get(c, &d.name).await? else {
        return Ok(None);
    };
    let a = actual(d, &mc);
    let path = c.cluster_path(&d.name);
    if is_busy(&raw) {
        let w = crate::arm::watch_id(&path, AKS_API);
        return Ok(Some(Observed::pending(a, c.op(w, &cluster_id(d), None))));
    }
    let want = desired_cluster(c, d, Vec::new())?;
    let mut o = Observed::ready(a, None);
    o.drift = settings_drift(&mc, &want);
    if failed(&mc) {
        o.drift.push("the cluster is in the Failed state".into());
    }
    let deployer = c.deployer_principal_id().await?;
    if identity::find_role(c, &path, AKS_RBAC_CLUSTER_ADMIN, &deployer)
        .await?
        .is_none()
    {
        o.drift
            .push("the deployer has no AKS RBAC Cluster Admin on the cluster".into());
    }
    Ok(Some(o))
}

fn failed(mc: &ManagedCluster) -> bool {
    mc.properties
        .provisioning_state
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("Failed"))
}

/// The PEM of a kubeconfig's `certificate-authority-data` (empty when it has none).
pub fn ca_of_kubeconfig(kubeconfig: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .map(|v| v.trim().trim_matches('"'))
        .and_then(|v| b64.decode(v).ok())
        .and_then(|pem| String::from_utf8(pem).ok())
        .unwrap_or_default()
}

/// The `server` of a kubeconfig's (first) cluster, if it names one.
pub fn server_of_kubeconfig(kubeconfig: &str) -> Option<String> {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|v| !v.is_empty())
}

/// The API server URL of an AKS `fqdn`, as AKS's kubeconfigs name it.
pub fn endpoint_of(fqdn: &str) -> String {
    format!("https://{fqdn}:443")
}

/// The output: endpoint and CA from the user kubeconfig (the endpoint from the fqdn
/// when the kubeconfig names no server).
async fn output(c: &Context, installation: &str, mc: &ManagedCluster) -> Result<Output> {
    let path = format!("{}/listClusterUserCredential", c.cluster_path(installation));
    let creds = c
        .arm
        .post::<Value>(&path, AKS_API, None)
        .await?
        .body::<Credentials>()?
        .unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD;
    let kubeconfig = creds
        .kubeconfigs
        .first()
        .and_then(|k| b64.decode(k.value.trim()).ok())
        .and_then(|k| String::from_utf8(k).ok())
        .unwrap_or_default();
    let ca = ca_of_kubeconfig(&kubeconfig);
    let endpoint = match server_of_kubeconfig(&kubeconfig) {
        Some(server) => server,
        None => {
            let fqdn = mc.properties.fqdn.clone().unwrap_or_default();
            if fqdn.is_empty() {
                return Err(Error::new(
                    ErrorKind::PropagationDelay,
                    format!("AKS cluster {} has no fqdn yet", cluster_name(installation)),
                ));
            }
            endpoint_of(&fqdn)
        }
    };
    Ok(Output::Cluster {
        name: cluster_name(installation),
        endpoint,
        ca_certificate_pem: ca,
    })
}

/// Create the cluster; rewrite it when its settings drift; give the deployer AKS RBAC
/// Cluster Admin; report the endpoint and CA. One operation per call.
pub async fn ensure(c: &Context, d: &ClusterSpec, _inputs: &Inputs) -> Result<Progress> {
    let id = cluster_id(d);
    let n = &d.name;
    let path = c.cluster_path(n);
    let Some((mc, raw)) = get(c, n).await? else {
        let ident = identity::get_identity(c, n, &cluster_identity_name(n))
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::PropagationDelay,
                    format!(
                        "the cluster identity {} does not exist yet",
                        cluster_identity_name(n)
                    ),
                )
            })?;
        identity::grant_network(c, n, &ident.properties.principal_id).await?;
        let services = c.services_pool_spec().ok_or_else(|| {
            Error::new(
                ErrorKind::Precondition,
                "the services pool's settings are not known: build the provider with \
                 AzureConfig::for_spec, or let the engine observe the node pools first",
            )
        })?;
        let body = desired_cluster(c, d, vec![system_pool(c, &services)])?;
        let lro = c.arm.put(&path, AKS_API, &body).await?;
        return Ok(c
            .pending(&id, &lro)
            .unwrap_or_else(|| c.watch(&id, &path, AKS_API)));
    };
    if is_busy(&raw) {
        return Ok(c.watch(&id, &path, AKS_API));
    }
    let want = desired_cluster(c, d, mc.properties.agent_pool_profiles.clone())?;
    let version_differs = actual(d, &mc).kubernetes_version != d.kubernetes_version;
    if version_differs || failed(&mc) || !settings_drift(&mc, &want).is_empty() {
        let lro = c.arm.put(&path, AKS_API, &want).await?;
        return Ok(c
            .pending(&id, &lro)
            .unwrap_or_else(|| c.watch(&id, &path, AKS_API)));
    }
    let deployer = c.deployer_principal_id().await?;
    identity::ensure_role(c, &path, AKS_RBAC_CLUSTER_ADMIN, &deployer, n).await?;
    Ok(Progress::Done(Some(output(c, n, &mc).await?)))
}

/// Remove the deployer's role and delete the cluster (its pools go with it). Absent
/// is fine; one not tagged ours stays.
pub async fn delete(c: &Context, d: &ClusterSpec) -> Result<Progress> {
    let id = cluster_id(d);
    let path = c.cluster_path(&d.name);
    let Some((_, raw)) = absent_if_foreign(get(c, &d.name).await)? else {
        return Ok(Progress::Done(None));
    };
    if is_busy(&raw) {
        return Ok(c.watch(&id, &path, AKS_API));
    }
    let deployer = c.deployer_principal_id().await?;
    identity::delete_role(c, &path, AKS_RBAC_CLUSTER_ADMIN, &deployer).await?;
    let lro = c.arm.delete(&path, AKS_API).await?;
    Ok(c.pending(&id, &lro).unwrap_or(Progress::Done(None)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gitpod_refarch::resource::Desired;
    use gitpod_refarch::spec::{Cloud, PoolRole, ReferenceArchitecture};
    use serde_json::json;

    fn spec() -> (ClusterSpec, NodePoolSpec) {
        let mut s = ReferenceArchitecture::defaults(Cloud::Azure);
        s.name = "gp".into();
        let g = gitpod_refarch::plan::graph(&s);
        let cluster = g
            .iter()
            .find_map(|n| match &n.desired {
                Desired::Cluster(c) => Some(c.clone()),
                _ => None,
            })
            .unwrap();
        let services = g
            .iter()
            .find_map(|n| match &n.desired {
                Desired::NodePool(p) if p.role == PoolRole::Services => Some(p.clone()),
                _ => None,
            })
            .unwrap();
        (cluster, services)
    }

    #[test]
    fn the_cluster_body_has_the_issues_settings() {
        let c = crate::tests::spec_ctx();
        let (d, services) = spec();
        let body = serde_json::to_value(
            desired_cluster(&c, &d, vec![system_pool(&c, &services)]).unwrap(),
        )
        .unwrap();
        let p = &body["properties"];
        assert_eq!(p["kubernetesVersion"], json!(d.kubernetes_version));
        assert_eq!(p["dnsPrefix"], "gp");
        assert_eq!(p["enableRBAC"], true);
        assert_eq!(p["disableLocalAccounts"], true);
        assert_eq!(
            p["aadProfile"],
            json!({"managed": true, "enableAzureRBAC": true})
        );
        assert_eq!(p["oidcIssuerProfile"], json!({"enabled": true}));
        assert_eq!(
            p["securityProfile"],
            json!({"workloadIdentity": {"enabled": true}})
        );
        assert_eq!(
            p["autoUpgradeProfile"],
            json!({"upgradeChannel": "none", "nodeOSUpgradeChannel": "NodeImage"})
        );
        assert_eq!(
            p["networkProfile"],
            json!({"networkPlugin": "azure", "networkPluginMode": "overlay", "networkPolicy": "calico",
                   "podCidr": "10.244.0.0/16", "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10",
                   "outboundType": "loadBalancer", "loadBalancerSku": "standard"})
        );
        let pools = p["agentPoolProfiles"].as_array().unwrap();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0]["name"], "services");
        assert_eq!(pools[0]["mode"], "System");
        assert_eq!(pools[0]["vmSize"], "Standard_D4_v4");
        assert_eq!(body["identity"]["type"], "UserAssigned");
        let ids = body["identity"]["userAssignedIdentities"]
            .as_object()
            .unwrap();
        assert_eq!(ids.len(), 1);
        assert!(ids
            .keys()
            .next()
            .unwrap()
            .ends_with("/userAssignedIdentities/id-gp-cluster"));
        assert_eq!(body["sku"], json!({"name": "Base", "tier": "Standard"}));
        assert_eq!(body["tags"]["gitpod-installation"], "gp");
        for ro in ["fqdn", "provisioningState", "currentKubernetesVersion"] {
            assert!(p.get(ro).is_none(), "{ro} is read-only");
        }
    }

    #[test]
    fn kubenet_is_the_parity_option() {
        let mut cfg = crate::tests::spec_config();
        cfg = cfg.network_plugin(NetworkPlugin::Kubenet);
        let c = Context::new(cfg).unwrap();
        let n = network_profile(&c).unwrap();
        assert_eq!(n.network_plugin.as_deref(), Some("kubenet"));
        assert_eq!(n.network_plugin_mode, None);
        assert_eq!(n.network_policy.as_deref(), Some("calico"));
    }

    #[test]
    fn drift_is_reported_by_setting_and_a_round_trip_has_none() {
        let c = crate::tests::spec_ctx();
        let (d, services) = spec();
        let want = desired_cluster(&c, &d, vec![system_pool(&c, &services)]).unwrap();
        // What ARM answers: the same plus read-only fields.
        let mut got = serde_json::to_value(&want).unwrap();
        got["properties"]["provisioningState"] = json!("Succeeded");
        got["properties"]["currentKubernetesVersion"] =
            json!(format!("{}.3", d.kubernetes_version));
        got["properties"]["fqdn"] = json!("gp-abc.hcp.northeurope.azmk8s.io");
        got["properties"]["oidcIssuerProfile"]["issuerURL"] = json!("https://oidc.example/x/");
        got["identity"]["userAssignedIdentities"]
            .as_object_mut()
            .unwrap()
            .values_mut()
            .for_each(|v| *v = json!({"principalId": "p", "clientId": "c"}));
        let mc: ManagedCluster = serde_json::from_value(got.clone()).unwrap();
        assert!(
            settings_drift(&mc, &want).is_empty(),
            "{:?}",
            settings_drift(&mc, &want)
        );
        assert_eq!(actual(&d, &mc), d);
        assert_eq!(
            mc.properties
                .oidc_issuer_profile
                .unwrap()
                .issuer_url
                .as_deref(),
            Some("https://oidc.example/x/")
        );

        let mut off = got.clone();
        off["properties"]["disableLocalAccounts"] = json!(false);
        off["properties"]["securityProfile"]["workloadIdentity"]["enabled"] = json!(false);
        off["properties"]["autoUpgradeProfile"]["upgradeChannel"] = json!("stable");
        off["properties"]["networkProfile"]["networkPolicy"] = json!("azure");
        let mc: ManagedCluster = serde_json::from_value(off).unwrap();
        let drift = settings_drift(&mc, &want);
        assert_eq!(drift.len(), 4, "{drift:?}");
        assert!(drift.contains(&"local accounts are on".to_string()));
        let a = actual(&d, &mc);
        assert!(a.auto_upgrade);
        assert_eq!(a.network_policy, "azure");

        let mut old = got;
        old["properties"]["currentKubernetesVersion"] = json!("1.20.1");
        let mc: ManagedCluster = serde_json::from_value(old).unwrap();
        assert_eq!(actual(&d, &mc).kubernetes_version, "1.20.1");
    }

    #[test]
    fn the_output_comes_from_the_fqdn_and_the_user_kubeconfig() {
        assert_eq!(
            endpoint_of("gp-1.hcp.northeurope.azmk8s.io"),
            "https://gp-1.hcp.northeurope.azmk8s.io:443"
        );
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let b64 = base64::engine::general_purpose::STANDARD;
        let kubeconfig = format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://x:443\n  name: aks-gp\n",
            b64.encode(pem)
        );
        assert_eq!(ca_of_kubeconfig(&kubeconfig), pem);
        assert_eq!(ca_of_kubeconfig("apiVersion: v1\n"), "");
        // The server comes from the kubeconfig, as `az aks get-credentials` takes it.
        assert_eq!(
            server_of_kubeconfig(&kubeconfig).as_deref(),
            Some("https://x:443")
        );
        assert_eq!(
            server_of_kubeconfig("clusters:\n- cluster:\n    server: \"https://127.0.0.1:6443\"\n")
                .as_deref(),
            Some("https://127.0.0.1:6443")
        );
        assert_eq!(server_of_kubeconfig("apiVersion: v1\n"), None);
        assert_eq!(dns_service_ip("10.0.0.0/16").unwrap(), "10.0.0.10");
        assert_eq!(dns_service_ip("172.20.0.0/16").unwrap(), "172.20.0.10");
        assert!(dns_service_ip("10.0.0.0/30").is_err());
    }
}
