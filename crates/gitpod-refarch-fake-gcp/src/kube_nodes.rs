//! The nodes of GKE node pools, published to the Kubernetes fake that stands in for
//! the clusters' API server ([`crate::FakeConfig::kube_endpoint`]) through its
//! fake-only admin endpoint `PUT`/`DELETE {endpoint}/fake-kube/nodepools/{id}`.
//!
//! After every request the fake compares the node pools it holds with what it last
//! published and sends the difference: a pool gets nodes once it is `RUNNING` (its
//! create operation is done), keeps them while it is updated or deleted, and loses
//! them when it (or its cluster) is removed. The nodes carry GKE's labels
//! (`cloud.google.com/gke-nodepool`, `cloud.google.com/machine-family`, ...), the
//! pool's `config.labels` and its `config.taints` (GKE's effect names mapped to
//! Kubernetes': `NO_SCHEDULE` -> `NoSchedule`), and there are `initialNodeCount`
//! nodes per zone (within the autoscaling bounds when autoscaling is on). A failed
//! publish does not fail the GCP call: it is logged to stderr and retried after the
//! next request.

use std::collections::BTreeMap;

use gitpod_refarch_fake_kube::{DesiredNodePools, NodePoolPublisher};
use serde_json::{json, Value};

use crate::state::{s, State};

/// Publishes node pools' nodes to the kube fake through its admin client.
pub(crate) struct Publisher(NodePoolPublisher);

impl Default for Publisher {
    fn default() -> Self {
        Publisher(NodePoolPublisher::new("fake-gcp"))
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

/// Kubernetes' name of a GKE taint effect (a name or, from clients that send enums
/// as numbers, its number).
fn effect(v: &Value) -> &'static str {
    match v {
        Value::String(e) if e == "PREFER_NO_SCHEDULE" => "PreferNoSchedule",
        Value::String(e) if e == "NO_EXECUTE" => "NoExecute",
        Value::Number(n) if n.as_i64() == Some(2) => "PreferNoSchedule",
        Value::Number(n) if n.as_i64() == Some(3) => "NoExecute",
        _ => "NoSchedule",
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(x) => x.parse().ok(),
        _ => None,
    }
}

/// The first `n` characters of `s`, without a trailing `-`.
fn cut(s: &str, n: usize) -> &str {
    let end = s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    s[..end].trim_end_matches('-')
}

/// The admin body for one node pool of a cluster.
fn pool_body(project: &str, cluster: &str, pool: &Value) -> Value {
    let name = s(pool, "name");
    let cfg = pool.get("config").cloned().unwrap_or_else(|| json!({}));
    let machine_type = match s(&cfg, "machineType") {
        "" => "e2-medium",
        m => m,
    };
    let zones: Vec<String> = pool
        .get("locations")
        .and_then(Value::as_array)
        .map(|z| {
            z.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut per_zone = int(pool.get("initialNodeCount")).unwrap_or(1).max(0);
    let auto = pool.get("autoscaling").cloned().unwrap_or(Value::Null);
    if auto.get("enabled") == Some(&json!(true)) {
        let min = int(auto.get("minNodeCount")).unwrap_or(0).max(0);
        let max = int(auto.get("maxNodeCount")).unwrap_or(i64::MAX).max(min);
        per_zone = per_zone.clamp(min, max);
    }
    let count = per_zone.saturating_mul(i64::try_from(zones.len().max(1)).unwrap_or(1));
    let max_pods = int(pool.pointer("/maxPodsConstraint/maxPodsPerNode")).unwrap_or(110);
    let image = s(&cfg, "imageType").to_ascii_uppercase();
    let (distribution, os_image) = if image.starts_with("UBUNTU") {
        ("ubuntu", "Ubuntu 22.04.5 LTS")
    } else {
        ("cos", "Container-Optimized OS from Google")
    };
    // The hash GKE puts in the instance group (and so node) names.
    let hash = pool
        .get("instanceGroupUrls")
        .and_then(|u| u.get(0))
        .and_then(Value::as_str)
        .and_then(|u| u.strip_suffix("-grp"))
        .and_then(|u| u.rsplit('-').next())
        .unwrap_or("00000000")
        .to_string();
    let mut labels = BTreeMap::new();
    let family = machine_type.split('-').next().unwrap_or("");
    for (k, v) in [
        ("cloud.google.com/gke-nodepool", name.to_string()),
        ("cloud.google.com/machine-family", family.to_string()),
        ("cloud.google.com/gke-os-distribution", distribution.into()),
        (
            "cloud.google.com/gke-container-runtime",
            "containerd".into(),
        ),
        (
            "cloud.google.com/gke-max-pods-per-node",
            max_pods.to_string(),
        ),
        ("cloud.google.com/gke-provisioning", "standard".into()),
        ("cloud.google.com/gke-stack-type", "IPV4".into()),
        ("cloud.google.com/private-node", "false".into()),
    ] {
        labels.insert(k.to_string(), json!(v));
    }
    if let Some(disk) = cfg.get("diskType").and_then(Value::as_str) {
        labels.insert("cloud.google.com/gke-boot-disk".into(), json!(disk));
    }
    if let Some(Value::Object(l)) = cfg.get("labels") {
        for (k, v) in l {
            labels.insert(k.clone(), v.clone());
        }
    }
    let taints: Vec<Value> = cfg
        .get("taints")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .map(|t| {
                    json!({
                        "key": s(t, "key"),
                        "value": s(t, "value"),
                        "effect": effect(t.get("effect").unwrap_or(&Value::Null)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let version = s(pool, "version");
    json!({
        "count": count,
        "labels": labels,
        "taints": taints,
        "machineType": machine_type,
        "zones": zones,
        "namePrefix": format!("gke-{}-{}-{hash}-", cut(cluster, 20), cut(name, 20)),
        "nameSuffix": "random",
        "kubeletVersion": if version.is_empty() { String::new() } else { format!("v{version}") },
        "osImage": os_image,
        "providerId": format!("gce://{project}/{{zone}}/{{name}}"),
        "maxPods": max_pods,
    })
}

/// Pool id -> admin body, for every node pool that has nodes now: its create
/// operation is done (`RUNNING`, `RECONCILING` while updated, `STOPPING` while
/// deleted).
pub(crate) fn desired(st: &State) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (key, pool) in &st.res {
        let segs: Vec<&str> = key.split('/').collect();
        let ["projects", project, "locations", location, "clusters", cluster, "nodePools", name] =
            segs.as_slice()
        else {
            continue;
        };
        if !matches!(s(pool, "status"), "RUNNING" | "RECONCILING" | "STOPPING") {
            continue;
        }
        let id = format!("gke.{project}.{location}.{cluster}.{name}");
        out.insert(id, pool_body(project, cluster, pool));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let pool = json!({
            "name": "regular-ws",
            "status": "RUNNING",
            "initialNodeCount": 1,
            "autoscaling": {"enabled": true, "minNodeCount": 2, "maxNodeCount": 50},
            "locations": ["europe-west1-b", "europe-west1-c"],
            "version": "1.32.4-gke.1415000",
            "instanceGroupUrls": ["https://www.googleapis.com/compute/v1/projects/p/zones/europe-west1-b/instanceGroupManagers/gke-gp-regular-ws-1a2b3c4d-grp"],
            "config": {
                "machineType": "n2d-standard-16",
                "imageType": "UBUNTU_CONTAINERD",
                "labels": {"gitpod.io/workload_workspace_regular": "true"},
                "taints": [{"key": "a", "value": "b", "effect": "NO_EXECUTE"}, {"key": "c", "value": "d", "effect": 1}],
            },
        });
        let b = pool_body("p", "gp", &pool);
        assert_eq!(b["count"], 4);
        assert_eq!(b["namePrefix"], "gke-gp-regular-ws-1a2b3c4d-");
        assert_eq!(b["labels"]["cloud.google.com/gke-nodepool"], "regular-ws");
        assert_eq!(b["labels"]["cloud.google.com/machine-family"], "n2d");
        assert_eq!(b["labels"]["gitpod.io/workload_workspace_regular"], "true");
        assert_eq!(b["taints"][0]["effect"], "NoExecute");
        assert_eq!(b["taints"][1]["effect"], "NoSchedule");
        assert_eq!(b["kubeletVersion"], "v1.32.4-gke.1415000");
    }
}
