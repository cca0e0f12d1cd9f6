//! The three AKS node pools: `services` (the system pool, created inline with the
//! cluster by [`crate::cluster`]) and `regularws`, `headlessws` (user pools, created
//! through the agentPools API). The core's pool names map to AKS's pattern (lower-case
//! letters and digits, at most 12): [`crate::context::pool_name`].
//!
//! Each pool: the spec's VM size (the guide's `Standard_D4_v4` and `Standard_D16_v4`),
//! a `Managed` OS disk of the spec's size (Dv4 sizes have no local disk for an
//! ephemeral one), Ubuntu, the nodes subnet, max pods, the Gitpod node labels, taints
//! (`key=value:Effect`), autoscaling between the spec's bounds (starting at the lower
//! one, at least one node), the Kubernetes version following the cluster's.
//!
//! After creation only the agentPools API changes a pool (a cluster PUT must not): the
//! labels, taints, autoscaling bounds, version and tags in place; the VM size, disk,
//! max pods and subnet cannot change in place. AKS runs one operation per cluster at a
//! time: a `409 OperationNotAllowed` while another runs is
//! [`gitpod_refarch::ErrorKind::OperationInProgress`], retried, never a failure; the
//! provider declares serial cluster operations. The `services` pool is never deleted on
//! its own (AKS refuses to delete the last system pool): it goes with the cluster.

use std::collections::BTreeMap;

use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{Desired, NodePoolSpec, Output};
use gitpod_refarch::spec::{PoolRole, Taint};
use gitpod_refarch::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arm::is_busy;
use crate::context::{pool_name, tags_of, Context, AKS_API, NODES_SUBNET};

/// The properties of an agent pool (the agentPools API's `properties`, and the
/// cluster's inline `agentPoolProfiles[]` with a name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolProperties {
    /// Node count (the autoscaler moves it between the bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// VM size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    /// OS disk size.
    #[serde(
        default,
        rename = "osDiskSizeGB",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_disk_size_gb: Option<u32>,
    /// `Managed` or `Ephemeral`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk_type: Option<String>,
    /// The subnet's id.
    #[serde(
        default,
        rename = "vnetSubnetID",
        skip_serializing_if = "Option::is_none"
    )]
    pub vnet_subnet_id: Option<String>,
    /// Max pods per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<u32>,
    /// `Linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    /// `Ubuntu`.
    #[serde(default, rename = "osSKU", skip_serializing_if = "Option::is_none")]
    pub os_sku: Option<String>,
    /// Autoscaling on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_auto_scaling: Option<bool>,
    /// Lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u32>,
    /// Upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u32>,
    /// `VirtualMachineScaleSets`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub pool_type: Option<String>,
    /// `System` or `User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Kubernetes version of the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator_version: Option<String>,
    /// Node labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_labels: Option<BTreeMap<String, String>>,
    /// Node taints (`key=value:Effect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_taints: Option<Vec<String>>,
    /// Tags of the pool's scale set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub current_orchestrator_version: Option<String>,
}

/// An agent pool (the agentPools API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPool {
    /// Properties.
    #[serde(default)]
    pub properties: AgentPoolProperties,
}

/// A taint as AKS writes it.
pub fn taint_string(t: &Taint) -> String {
    if t.value.is_empty() {
        format!("{}:{}", t.key, t.effect)
    } else {
        format!("{}={}:{}", t.key, t.value, t.effect)
    }
}

/// A taint AKS reports.
pub fn parse_taint(s: &str) -> Taint {
    let (kv, effect) = s.rsplit_once(':').unwrap_or((s, "NoSchedule"));
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    Taint::new(k.to_string(), v.to_string(), effect)
}

/// Whether an AKS version (`1.33.5`) is the spec's (`1.33` or `1.33.5`).
pub fn version_matches(spec: &str, actual: &str) -> bool {
    actual == spec || actual.starts_with(&format!("{spec}."))
}

/// The pool's properties from its spec (`system`: the inline `services` pool).
pub fn pool_properties(c: &Context, d: &NodePoolSpec) -> AgentPoolProperties {
    let system = d.role == PoolRole::Services;
    AgentPoolProperties {
        count: Some(d.min_nodes.max(1).min(d.max_nodes.max(1))),
        vm_size: Some(d.machine_type.clone()),
        os_disk_size_gb: Some(d.disk_size_gb),
        os_disk_type: Some(d.disk_type.clone()),
        vnet_subnet_id: Some(c.subnet_path(&d.cluster, NODES_SUBNET)),
        max_pods: Some(d.max_pods_per_node),
        os_type: Some("Linux".into()),
        os_sku: Some(d.image.clone().unwrap_or_else(|| "Ubuntu".into())),
        enable_auto_scaling: Some(true),
        min_count: Some(d.min_nodes.max(u32::from(system))),
        max_count: Some(d.max_nodes.max(1)),
        pool_type: Some("VirtualMachineScaleSets".into()),
        mode: Some(if system { "System" } else { "User" }.into()),
        orchestrator_version: Some(d.kubernetes_version.clone()),
        node_labels: Some(d.node_labels.clone()),
        node_taints: Some(d.taints.iter().map(taint_string).collect()),
        tags: Some(tags_of(&d.labels, &d.cluster)),
        provisioning_state: None,
        current_orchestrator_version: None,
    }
}

/// The spec of a pool as it exists (fields AKS does not report are the desired ones).
pub fn actual(d: &NodePoolSpec, p: &AgentPoolProperties) -> NodePoolSpec {
    let mut a = d.clone();
    if let Some(v) = &p.vm_size {
        a.machine_type = v.clone();
    }
    if let Some(v) = &p.os_disk_type {
        a.disk_type = v.clone();
    }
    if let Some(v) = p.os_disk_size_gb {
        a.disk_size_gb = v;
    }
    if let Some(v) = p.max_pods {
        a.max_pods_per_node = v;
    }
    if p.enable_auto_scaling == Some(true) {
        a.min_nodes = p.min_count.unwrap_or_default();
        a.max_nodes = p.max_count.unwrap_or_default();
    } else {
        let n = p.count.unwrap_or_default();
        (a.min_nodes, a.max_nodes) = (n, n);
    }
    a.node_labels = p.node_labels.clone().unwrap_or_default();
    a.taints = p
        .node_taints
        .iter()
        .flatten()
        .map(|t| parse_taint(t))
        .collect();
    if d.image.is_some() {
        a.image = p.os_sku.clone();
    }
    let version = p
        .current_orchestrator_version
        .as_deref()
        .or(p.orchestrator_version.as_deref())
        .unwrap_or_default();
    if !version_matches(&d.kubernetes_version, version) {
        a.kubernetes_version = version.to_string();
    }
    if let Some(tags) = &p.tags {
        if *tags != tags_of(&d.labels, &d.cluster) {
            a.labels = tags.clone();
        }
    }
    a
}

/// What cannot change in place, in words.
fn immutable_changes(d: &NodePoolSpec, a: &NodePoolSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.machine_type != d.machine_type {
        out.push("machine type");
    }
    if a.disk_type != d.disk_type {
        out.push("disk type");
    }
    if a.disk_size_gb != d.disk_size_gb {
        out.push("disk size");
    }
    if a.max_pods_per_node != d.max_pods_per_node {
        out.push("max pods");
    }
    out
}

/// `…/managedClusters/aks-N/agentPools/<pool>`.
pub fn pool_path(c: &Context, d: &NodePoolSpec) -> String {
    format!(
        "{}/agentPools/{}",
        c.cluster_path(&d.cluster),
        pool_name(&d.name)
    )
}

async fn get(c: &Context, d: &NodePoolSpec) -> Result<Option<(AgentPool, Value)>> {
    let Some(raw) = c.arm.get::<Value>(&pool_path(c, d), AKS_API).await? else {
        return Ok(None);
    };
    Ok(Some((crate::arm::from_value(raw.clone())?, raw)))
}

fn output(d: &NodePoolSpec) -> Output {
    Output::NodePool {
        name: pool_name(&d.name),
    }
}

fn remember(c: &Context, d: &NodePoolSpec) {
    if d.role == PoolRole::Services {
        c.saw_services_pool(d);
    }
}

/// The pool as it exists; a pool with an operation running is reported with a watch.
pub async fn observe(c: &Context, d: &NodePoolSpec) -> Result<Option<Observed<NodePoolSpec>>> {
    remember(c, d);
    let Some((p, raw)) = get(c, d).await? else {
        return Ok(None);
    };
    let a = actual(d, &p.properties);
    if is_busy(&raw) {
        let id = Desired::NodePool(d.clone()).id();
        let w = crate::arm::watch_id(&pool_path(c, d), AKS_API);
        return Ok(Some(Observed::pending(a, c.op(w, &id, None))));
    }
    Ok(Some(Observed::ready(a, Some(output(d)))))
}

/// Create the pool, or bring its in-place settings in line (one PUT).
pub async fn ensure(c: &Context, d: &NodePoolSpec, _inputs: &Inputs) -> Result<Progress> {
    remember(c, d);
    let id = Desired::NodePool(d.clone()).id();
    let path = pool_path(c, d);
    let body = match get(c, d).await? {
        None => AgentPool {
            properties: pool_properties(c, d),
        },
        Some((_, raw)) if is_busy(&raw) => return Ok(c.watch(&id, &path, AKS_API)),
        Some((p, _)) => {
            let a = actual(d, &p.properties);
            let fixed = immutable_changes(d, &a);
            if !fixed.is_empty() {
                return Err(Error::invalid_input(format!(
                    "node pool {}: {} cannot change in place; replace the pool",
                    pool_name(&d.name),
                    fixed.join(", ")
                ))
                .with_resource(id));
            }
            let failed = p
                .properties
                .provisioning_state
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("Failed"));
            if a == *d && !failed {
                return Ok(Progress::Done(Some(output(d))));
            }
            // In place: the desired settings, at the current size within the bounds.
            let mut props = pool_properties(c, d);
            props.count = p.properties.count.map(|n| {
                n.clamp(
                    d.min_nodes.max(1).min(d.max_nodes.max(1)),
                    d.max_nodes.max(1),
                )
            });
            AgentPool { properties: props }
        }
    };
    let lro = c.arm.put(&path, AKS_API, &body).await?;
    Ok(c.pending(&id, &lro)
        .unwrap_or_else(|| c.watch(&id, &path, AKS_API)))
}

/// Delete a user pool; the `services` pool goes with the cluster. Absent is fine.
pub async fn delete(c: &Context, d: &NodePoolSpec) -> Result<Progress> {
    if d.role == PoolRole::Services {
        return Ok(Progress::Done(None));
    }
    let id = Desired::NodePool(d.clone()).id();
    let path = pool_path(c, d);
    match get(c, d).await? {
        None => Ok(Progress::Done(None)),
        Some((_, raw)) if is_busy(&raw) => Ok(c.watch(&id, &path, AKS_API)),
        Some(_) => {
            let lro = c.arm.delete(&path, AKS_API).await?;
            Ok(c.pending(&id, &lro).unwrap_or(Progress::Done(None)))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gitpod_refarch::spec::{Cloud, ReferenceArchitecture};
    use serde_json::json;

    pub(crate) fn pools() -> Vec<NodePoolSpec> {
        let mut s = ReferenceArchitecture::defaults(Cloud::Azure);
        s.name = "gp".into();
        gitpod_refarch::plan::graph(&s)
            .into_iter()
            .filter_map(|n| match n.desired {
                Desired::NodePool(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pool_bodies_follow_the_guide() {
        let c = crate::tests::ctx();
        let ps = pools();
        let regular = ps
            .iter()
            .find(|p| p.role == PoolRole::RegularWorkspaces)
            .unwrap();
        let body = serde_json::to_value(AgentPool {
            properties: pool_properties(&c, regular),
        })
        .unwrap();
        let p = &body["properties"];
        assert_eq!(p["vmSize"], "Standard_D16_v4");
        assert_eq!(p["osDiskType"], "Managed");
        assert_eq!(p["osSKU"], "Ubuntu");
        assert_eq!(p["osType"], "Linux");
        assert_eq!(p["mode"], "User");
        assert_eq!(p["type"], "VirtualMachineScaleSets");
        assert_eq!(p["maxPods"], 110);
        assert_eq!(p["enableAutoScaling"], true);
        assert_eq!(p["osDiskSizeGB"], json!(regular.disk_size_gb));
        assert_eq!(p["minCount"], json!(regular.min_nodes));
        assert_eq!(p["maxCount"], json!(regular.max_nodes));
        assert_eq!(
            p["vnetSubnetID"],
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/gp/providers/Microsoft.Network/virtualNetworks/vnet-gp/subnets/nodes"
        );
        assert_eq!(p["nodeLabels"], json!(regular.node_labels));
        assert_eq!(p["tags"]["gitpod-installation"], "gp");
        assert!(p.get("provisioningState").is_none());
        let services = ps.iter().find(|p| p.role == PoolRole::Services).unwrap();
        let sp = pool_properties(&c, services);
        assert_eq!(sp.mode.as_deref(), Some("System"));
        assert!(sp.min_count.unwrap() >= 1, "a system pool keeps a node");
        assert_eq!(pool_path(&c, regular).rsplit('/').next(), Some("regularws"));
    }

    #[test]
    fn a_pool_read_back_equals_its_spec_and_drift_is_seen() {
        let c = crate::tests::ctx();
        for d in pools() {
            let mut props = pool_properties(&c, &d);
            // What AKS reports: a full version, a state, the same settings.
            props.orchestrator_version = Some(format!("{}.4", d.kubernetes_version));
            props.provisioning_state = Some("Succeeded".into());
            let back: AgentPoolProperties =
                serde_json::from_value(serde_json::to_value(&props).unwrap()).unwrap();
            assert_eq!(actual(&d, &back), d, "{}", d.name);
            let mut changed = back.clone();
            changed.max_count = Some(d.max_nodes + 5);
            changed.node_taints = Some(vec!["gitpod.io/x=y:NoExecute".into()]);
            let a = actual(&d, &changed);
            assert_eq!(a.max_nodes, d.max_nodes + 5);
            assert_eq!(a.taints, vec![Taint::new("gitpod.io/x", "y", "NoExecute")]);
            assert!(immutable_changes(&d, &a).is_empty());
            changed.vm_size = Some("Standard_D2_v4".into());
            assert_eq!(
                immutable_changes(&d, &actual(&d, &changed)),
                vec!["machine type"]
            );
            changed.orchestrator_version = Some("1.99.0".into());
            assert_eq!(actual(&d, &changed).kubernetes_version, "1.99.0");
        }
    }

    #[test]
    fn taints_round_trip() {
        for t in [
            Taint::new("a", "b", "NoSchedule"),
            Taint::new("a", "", "PreferNoSchedule"),
        ] {
            assert_eq!(parse_taint(&taint_string(&t)), t);
        }
        assert_eq!(
            taint_string(&Taint::new("k", "v", "NoSchedule")),
            "k=v:NoSchedule"
        );
        assert!(version_matches("1.33", "1.33.5"));
        assert!(!version_matches("1.3", "1.33.5"));
    }
}
