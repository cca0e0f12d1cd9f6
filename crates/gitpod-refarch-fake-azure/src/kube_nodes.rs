//! The nodes of AKS agent pools, published to the Kubernetes fake that stands in for
//! the clusters' API server ([`crate::FakeConfig::kube_endpoint`]) through its
//! fake-only admin endpoint `PUT`/`DELETE {endpoint}/fake-kube/nodepools/{id}`.
//!
//! After every request the fake compares the agent pools it holds (inline
//! `agentPoolProfiles` of a cluster PUT and the agentPools API alike) with what it
//! last published and sends the difference: a pool gets nodes once its create
//! operation succeeded, keeps them (rescaled) while it is updated or deleted, and
//! loses them when it (or its cluster) is removed. The nodes are named as a scale
//! set names its instances (`aks-POOL-12345678-vmss000000`) and carry AKS's labels
//! (`kubernetes.azure.com/agentpool`, `agentpool`, `kubernetes.azure.com/mode`, ...),
//! the pool's `nodeLabels` and its `nodeTaints` (`key=value:Effect`). A failed
//! publish does not fail the ARM call: it is logged to stderr and retried after the
//! next request.

use std::collections::BTreeMap;

use gitpod_refarch_fake_kube::{DesiredNodePools, NodePoolPublisher};
use serde_json::{json, Value};

use crate::state::{ptr, s, State};

/// Publishes node pools' nodes to the kube fake through its admin client.
pub(crate) struct Publisher(NodePoolPublisher);

impl Default for Publisher {
    fn default() -> Self {
        Publisher(NodePoolPublisher::new("fake-azure"))
    }
}

impl Publisher {
    /// Publish the difference between the node pools in `state` and what was last
    /// published (nothing without a kube endpoint).
    pub(crate) async fn sync(&self, state: &std::sync::Mutex<State>) {
        self.0
            .sync(|| {
                let st = state.lock().unwrap_or_else(|e| e.into_inner());
                let endpoint = st.config.kube_endpoint.clone()?;
                Some(DesiredNodePools {
                    endpoint,
                    ca_pem: st.config.kube_ca_pem.clone(),
                    pools: desired(&st),
                })
            })
            .await;
    }
}

/// `key=value:Effect` (or `key:Effect`) as a taint.
fn taint(t: &str) -> Option<Value> {
    let (kv, effect) = t.rsplit_once(':')?;
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    Some(json!({"key": key, "value": value, "effect": effect}))
}

fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_i64)
}

/// A stable eight-digit number for a pool (the number in its scale set's name).
fn vmss_number(id: &str) -> u64 {
    // FNV-1a.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.to_ascii_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    10_000_000 + h % 90_000_000
}

/// The admin body for one agent pool of `cluster`.
fn pool_body(cluster: &Value, pool: &Value) -> Value {
    let name = s(pool, "name");
    let p = pool.get("properties").cloned().unwrap_or_else(|| json!({}));
    let location = s(cluster, "location");
    let mut count = int(p.get("count")).unwrap_or(1).max(0);
    if p.get("enableAutoScaling") == Some(&json!(true)) {
        let min = int(p.get("minCount")).unwrap_or(0).max(0);
        let max = int(p.get("maxCount")).unwrap_or(i64::MAX).max(min);
        count = count.clamp(min, max);
    }
    let zones: Vec<String> = match p.get("availabilityZones").and_then(Value::as_array) {
        Some(z) if !z.is_empty() => z
            .iter()
            .filter_map(Value::as_str)
            .map(|z| format!("{location}-{z}"))
            .collect(),
        // AKS nodes outside availability zones report zone "0".
        _ => vec!["0".to_string()],
    };
    let mode = s(&p, "mode").to_ascii_lowercase();
    let vm_size = s(&p, "vmSize");
    let node_rg = match ptr(cluster, "/properties/nodeResourceGroup") {
        "" => {
            let id = s(cluster, "id");
            let rg = id
                .split('/')
                .skip_while(|seg| !seg.eq_ignore_ascii_case("resourceGroups"))
                .nth(1)
                .unwrap_or("");
            format!("MC_{rg}_{}_{location}", s(cluster, "name"))
        }
        rg => rg.to_string(),
    };
    let mut labels = BTreeMap::new();
    for (k, v) in [
        ("kubernetes.azure.com/agentpool", name.to_string()),
        ("agentpool", name.to_string()),
        ("kubernetes.azure.com/mode", mode),
        ("kubernetes.azure.com/role", "agent".to_string()),
        ("kubernetes.azure.com/cluster", node_rg),
        ("kubernetes.azure.com/os-sku", s(&p, "osSKU").to_string()),
        (
            "kubernetes.azure.com/node-image-version",
            s(&p, "nodeImageVersion").to_string(),
        ),
    ] {
        if !v.is_empty() {
            labels.insert(k.to_string(), json!(v));
        }
    }
    if let Some(Value::Object(l)) = p.get("nodeLabels") {
        for (k, v) in l {
            labels.insert(k.clone(), v.clone());
        }
    }
    let taints: Vec<Value> = p
        .get("nodeTaints")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .filter_map(taint)
                .collect()
        })
        .unwrap_or_default();
    let version = match s(&p, "currentOrchestratorVersion") {
        "" => s(&p, "orchestratorVersion"),
        v => v,
    };
    json!({
        "count": count,
        "labels": labels,
        "taints": taints,
        "machineType": vm_size,
        "zones": zones,
        "region": location,
        "namePrefix": format!("aks-{name}-{}-vmss", vmss_number(s(pool, "id"))),
        "nameSuffix": "index",
        "kubeletVersion": if version.is_empty() { String::new() } else { format!("v{version}") },
        "osImage": "Ubuntu 22.04.5 LTS",
        "maxPods": int(p.get("maxPods")).unwrap_or(110),
    })
}

/// Pool id -> admin body, for every agent pool that has nodes now: its create
/// operation succeeded (`Succeeded`, or `Updating`, `Scaling`, `Deleting` after).
pub(crate) fn desired(st: &State) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (key, pool) in &st.res {
        let Some((cluster_key, _)) = key.split_once("/agentpools/") else {
            continue;
        };
        if !key.contains("/providers/microsoft.containerservice/managedclusters/")
            || key[cluster_key.len() + "/agentpools/".len()..].contains('/')
        {
            continue;
        }
        let state = ptr(pool, "/properties/provisioningState");
        if !matches!(state, "Succeeded" | "Updating" | "Scaling" | "Deleting") {
            continue;
        }
        let Some(cluster) = st.res.get(cluster_key) else {
            continue;
        };
        let segs: Vec<&str> = key.split('/').collect();
        // /subscriptions/S/resourcegroups/RG/providers/microsoft.containerservice/managedclusters/C/agentpools/P
        let (sub, rg) = (
            segs.get(2).copied().unwrap_or(""),
            segs.get(4).copied().unwrap_or(""),
        );
        let id = format!(
            "aks.{}.{rg}.{}.{}",
            &sub[..sub.len().min(8)],
            s(cluster, "name").to_ascii_lowercase(),
            s(pool, "name")
        );
        out.insert(id, pool_body(cluster, pool));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let cluster = json!({"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/gp", "name": "gp", "location": "northeurope"});
        let pool = json!({"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/gp/agentPools/regularws", "name": "regularws", "properties": {
            "count": 1, "enableAutoScaling": true, "minCount": 2, "maxCount": 5, "mode": "User",
            "vmSize": "Standard_D16s_v5", "availabilityZones": ["1", "2"],
            "nodeLabels": {"gitpod.io/workload_workspace_regular": "true"},
            "nodeTaints": ["gitpod.io/ws=true:NoSchedule", "only:NoExecute"],
            "currentOrchestratorVersion": "1.33.3",
        }});
        let b = pool_body(&cluster, &pool);
        assert_eq!(b["count"], 2);
        assert_eq!(b["zones"], json!(["northeurope-1", "northeurope-2"]));
        assert_eq!(b["labels"]["kubernetes.azure.com/mode"], "user");
        assert_eq!(b["labels"]["agentpool"], "regularws");
        assert_eq!(
            b["labels"]["kubernetes.azure.com/cluster"],
            "MC_rg_gp_northeurope"
        );
        assert_eq!(
            b["taints"][0],
            json!({"key": "gitpod.io/ws", "value": "true", "effect": "NoSchedule"})
        );
        assert_eq!(
            b["taints"][1],
            json!({"key": "only", "value": "", "effect": "NoExecute"})
        );
        assert_eq!(b["kubeletVersion"], "v1.33.3");
        assert!(b["namePrefix"]
            .as_str()
            .unwrap()
            .starts_with("aks-regularws-"));
    }
}
