//! Nodes of simulated node pools: core `v1` Node objects that look like a cloud's
//! (GKE's or AKS's, as the caller names and labels them), published by
//! [`crate::FakeKube::set_node_pool`] or by the fake-only admin endpoint
//! `PUT /fake-kube/nodepools/{pool}` (and removed by `DELETE`), which is how a cloud
//! fake running in another process publishes the nodes of the pools it manages.
//!
//! The admin endpoint lives outside `/api` and `/apis`: no Kubernetes client reaches
//! it, and a real API server has nothing like it. It takes no credentials.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::store::{meta_mut, now_rfc3339, Key, Store};

/// A taint of a pool's nodes (`spec.taints`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeTaint {
    /// The taint key.
    pub key: String,
    /// The taint value (may be empty).
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl NodeTaint {
    /// A taint `key=value:effect`.
    pub fn new(
        key: impl Into<String>,
        value: impl Into<String>,
        effect: impl Into<String>,
    ) -> Self {
        NodeTaint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        }
    }
}

/// How the nodes of a pool are named after [`NodePool::name_prefix`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum NameSuffix {
    /// Four random lowercase letters and digits, as a GKE instance group names its
    /// VMs (`gke-CLUSTER-POOL-1a2b3c4d-x7k2`).
    #[default]
    Random,
    /// The instance index as six base-36 digits, as an AKS scale set names its
    /// instances (`aks-POOL-12345678-vmss000000`, `...vmss00000a`).
    Index,
}

/// The nodes a pool should have. Build it with [`NodePool::new`] and the `with_*`
/// setters; the admin endpoint takes the same fields as camelCase JSON
/// (`{"count": 3, "labels": {..}, "taints": [{"key","value","effect"}],
/// "machineType": "e2-standard-4", "zones": ["europe-west1-b"], "namePrefix": "..",
/// "nameSuffix": "random"|"index"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct NodePool {
    /// How many nodes (in all zones together).
    pub count: u32,
    /// Labels every node carries besides the well-known ones the fake sets
    /// (`kubernetes.io/hostname`, `kubernetes.io/os`, `kubernetes.io/arch`,
    /// `node.kubernetes.io/instance-type`, `topology.kubernetes.io/region` and
    /// `zone`, and their `beta.`/`failure-domain.` forms).
    pub labels: BTreeMap<String, String>,
    /// The nodes' `spec.taints`.
    pub taints: Vec<NodeTaint>,
    /// The machine type (`node.kubernetes.io/instance-type`; capacity is derived
    /// from it: `e2-standard-4` is 4 CPUs and 16 GiB, `Standard_D4s_v3` 4 and 16).
    pub machine_type: String,
    /// The zones the nodes are spread over, round robin (none: no zone labels).
    pub zones: Vec<String>,
    /// One zone (used when `zones` is empty).
    pub zone: String,
    /// The region (default: the zone without its last `-` part).
    pub region: String,
    /// The start of every node name (default `POOL-`).
    pub name_prefix: String,
    /// What follows the prefix.
    pub name_suffix: NameSuffix,
    /// `status.nodeInfo.kubeletVersion` (default `v1.34.0`).
    pub kubelet_version: String,
    /// `status.nodeInfo.osImage` (default `Ubuntu 22.04.5 LTS`).
    pub os_image: String,
    /// `spec.providerID`, with `{zone}` and `{name}` replaced (default: none).
    pub provider_id: String,
    /// `status.capacity.pods` (default 110).
    pub max_pods: u32,
}

impl NodePool {
    /// A pool of `count` nodes.
    pub fn new(count: u32) -> Self {
        NodePool {
            count,
            ..NodePool::default()
        }
    }
    /// Add a label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
    /// Add a taint.
    pub fn with_taint(mut self, taint: NodeTaint) -> Self {
        self.taints.push(taint);
        self
    }
    /// Set [`NodePool::machine_type`].
    pub fn with_machine_type(mut self, machine_type: impl Into<String>) -> Self {
        self.machine_type = machine_type.into();
        self
    }
    /// Set [`NodePool::zones`].
    pub fn with_zones<I, S>(mut self, zones: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.zones = zones.into_iter().map(Into::into).collect();
        self
    }
    /// Set [`NodePool::region`].
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }
    /// Set [`NodePool::name_prefix`] and [`NodePool::name_suffix`].
    pub fn with_names(mut self, prefix: impl Into<String>, suffix: NameSuffix) -> Self {
        self.name_prefix = prefix.into();
        self.name_suffix = suffix;
        self
    }
    /// Set [`NodePool::kubelet_version`].
    pub fn with_kubelet_version(mut self, version: impl Into<String>) -> Self {
        self.kubelet_version = version.into();
        self
    }
    /// Set [`NodePool::os_image`].
    pub fn with_os_image(mut self, image: impl Into<String>) -> Self {
        self.os_image = image.into();
        self
    }
    /// Set [`NodePool::provider_id`].
    pub fn with_provider_id(mut self, template: impl Into<String>) -> Self {
        self.provider_id = template.into();
        self
    }
    /// Set [`NodePool::max_pods`].
    pub fn with_max_pods(mut self, n: u32) -> Self {
        self.max_pods = n;
        self
    }

    fn effective_zones(&self) -> Vec<String> {
        if !self.zones.is_empty() {
            self.zones.clone()
        } else if !self.zone.is_empty() {
            vec![self.zone.clone()]
        } else {
            Vec::new()
        }
    }
}

/// A node pool the fake refused (bad name, count, taint or label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePoolError(pub String);

impl std::fmt::Display for NodePoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NodePoolError {}

/// One pool's state: its spec and the names of the nodes it made.
#[derive(Debug, Clone)]
pub(crate) struct PoolState {
    spec: NodePool,
    nodes: Vec<(String, String)>,
    next_index: u64,
}

/// Every pool, and the counter for node addresses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pools {
    pools: BTreeMap<String, PoolState>,
    next_node: u32,
}

const MAX_NODES: u32 = 1000;
const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn node_key(name: &str) -> Key {
    Store::key("", "nodes", "", name)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A label key: `[prefix/]name`, name 1..63 of alphanumerics, `-`, `_`, `.`.
fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    let prefix_ok =
        prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(is_dns_label));
    name_ok && prefix_ok
}

fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

fn validate(pool: &str, spec: &NodePool) -> Result<(), NodePoolError> {
    let bad = |m: String| Err(NodePoolError(m));
    if pool.is_empty()
        || pool.len() > 253
        || !pool
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return bad(format!(
            "node pool id {pool:?} must be 1..253 letters, digits, '-', '_' or '.'"
        ));
    }
    if spec.count > MAX_NODES {
        return bad(format!(
            "node pool {pool}: count {} is more than the fake's limit of {MAX_NODES}",
            spec.count
        ));
    }
    for (k, v) in &spec.labels {
        if !is_label_key(k) || !is_label_value(v) {
            return bad(format!("node pool {pool}: invalid label {k}={v}"));
        }
    }
    for t in &spec.taints {
        if !is_label_key(&t.key) || !is_label_value(&t.value) {
            return bad(format!(
                "node pool {pool}: invalid taint {}={}",
                t.key, t.value
            ));
        }
        if !EFFECTS.contains(&t.effect.as_str()) {
            return bad(format!(
                "node pool {pool}: taint {} has effect {:?}; supported values: {}",
                t.key,
                t.effect,
                EFFECTS.join(", ")
            ));
        }
    }
    let prefix = if spec.name_prefix.is_empty() {
        format!("{pool}-")
    } else {
        spec.name_prefix.clone()
    };
    let sample = format!("{prefix}000000");
    if sample.len() > 253 || !sample.split('.').all(is_dns_label) {
        return bad(format!(
            "node pool {pool}: name prefix {prefix:?} does not make valid node names"
        ));
    }
    Ok(())
}

/// (CPUs, memory in MiB) of a machine type, as the clouds size them (roughly).
fn machine_shape(mt: &str) -> (u32, u64) {
    match mt {
        "e2-micro" => return (2, 1024),
        "e2-small" => return (2, 2048),
        "e2-medium" => return (2, 4096),
        "f1-micro" => return (1, 614),
        "g1-small" => return (1, 1740),
        _ => {}
    }
    // GCE: FAMILY-KIND-N.
    let parts: Vec<&str> = mt.split('-').collect();
    if let [_, kind, n] = parts.as_slice() {
        if let Ok(cpus) = n.parse::<u32>() {
            let per_cpu = match *kind {
                "highmem" => 8192,
                "highcpu" => 1024,
                _ => 4096,
            };
            return (cpus, u64::from(cpus) * per_cpu);
        }
    }
    // Azure: Standard_<family letters><vCPUs><features>_<version>.
    if let Some(rest) = mt.strip_prefix("Standard_") {
        let family: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
        let digits: String = rest[family.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(cpus) = digits.parse::<u32>() {
            let per_cpu = match family.chars().next() {
                Some('E' | 'M') => 8192,
                Some('F') => 2048,
                _ => 4096,
            };
            return (cpus, u64::from(cpus) * per_cpu);
        }
    }
    (2, 8192)
}

fn region_of(spec: &NodePool, zone: &str) -> String {
    if !spec.region.is_empty() {
        return spec.region.clone();
    }
    match zone.rsplit_once('-') {
        Some((region, _)) => region.to_string(),
        None => zone.to_string(),
    }
}

/// The labels the fake sets on a node of `spec` (well-known and the pool's).
fn labels(spec: &NodePool, name: &str, zone: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        l.insert(k.to_string(), v.to_string());
    };
    put("kubernetes.io/hostname", name);
    put("kubernetes.io/os", "linux");
    put("kubernetes.io/arch", "amd64");
    put("beta.kubernetes.io/os", "linux");
    put("beta.kubernetes.io/arch", "amd64");
    if !spec.machine_type.is_empty() {
        put("node.kubernetes.io/instance-type", &spec.machine_type);
        put("beta.kubernetes.io/instance-type", &spec.machine_type);
    }
    if !zone.is_empty() {
        let region = region_of(spec, zone);
        put("topology.kubernetes.io/region", &region);
        put("topology.kubernetes.io/zone", zone);
        put("failure-domain.beta.kubernetes.io/region", &region);
        put("failure-domain.beta.kubernetes.io/zone", zone);
    } else if !spec.region.is_empty() {
        put("topology.kubernetes.io/region", &spec.region);
    }
    for (k, v) in &spec.labels {
        l.insert(k.clone(), v.clone());
    }
    l
}

fn taints(spec: &NodePool) -> Vec<Value> {
    spec.taints
        .iter()
        .map(|t| {
            let mut v = json!({"key": t.key, "effect": t.effect});
            if !t.value.is_empty() {
                v["value"] = json!(t.value);
            }
            v
        })
        .collect()
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": kind,
        "status": status,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    })
}

/// `n` random hex digits.
fn hex(st: &mut Store, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[st.rng.random_range(0..16usize)]))
        .collect()
}

/// A new Node object (without server metadata).
fn render(st: &mut Store, spec: &NodePool, name: &str, zone: &str) -> Value {
    let n = st.nodes.next_node;
    st.nodes.next_node = n.wrapping_add(1);
    let (cpus, mem_mib) = machine_shape(&spec.machine_type);
    let mem_ki = mem_mib * 1024;
    // Kubelet and system reservations, roughly as the clouds set them.
    let alloc_cpu = (u64::from(cpus) * 1000).saturating_sub(60 + 10 * u64::from(cpus));
    let alloc_mem = mem_ki - mem_ki / 8 - 100 * 1024;
    let max_pods = if spec.max_pods == 0 {
        110
    } else {
        spec.max_pods
    };
    let now = now_rfc3339();
    let ip = format!("10.128.{}.{}", (n / 250) % 256, n % 250 + 2);
    let pod_cidr = format!("10.{}.{}.0/24", 64 + (n / 256) % 64, n % 256);
    let kubelet = if spec.kubelet_version.is_empty() {
        "v1.34.0".to_string()
    } else {
        spec.kubelet_version.clone()
    };
    let os_image = if spec.os_image.is_empty() {
        "Ubuntu 22.04.5 LTS".to_string()
    } else {
        spec.os_image.clone()
    };
    let (machine_id, system_uuid, boot_id) = (hex(st, 32), st.uid(), st.uid());
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels(spec, name, zone),
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": pod_cidr,
            "podCIDRs": [pod_cidr],
        },
        "status": {
            "capacity": {
                "cpu": cpus.to_string(),
                "memory": format!("{mem_ki}Ki"),
                "pods": max_pods.to_string(),
                "ephemeral-storage": "98831908Ki",
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
            },
            "allocatable": {
                "cpu": format!("{alloc_cpu}m"),
                "memory": format!("{alloc_mem}Ki"),
                "pods": max_pods.to_string(),
                "ephemeral-storage": "47060071478",
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
            },
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", &now),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", &now),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", &now),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", &now),
            ],
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": machine_id,
                "systemUUID": system_uuid,
                "bootID": boot_id,
                "kernelVersion": "6.8.0-1015-fake",
                "osImage": os_image,
                "containerRuntimeVersion": "containerd://1.7.28",
                "kubeletVersion": kubelet,
                "kubeProxyVersion": kubelet,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    });
    let t = taints(spec);
    if !t.is_empty() {
        node["spec"]["taints"] = Value::Array(t);
    }
    if !spec.provider_id.is_empty() {
        node["spec"]["providerID"] = json!(spec
            .provider_id
            .replace("{zone}", zone)
            .replace("{name}", name));
    }
    node
}

/// Base-36, six digits (AKS scale set instance ids).
fn base36(mut i: u64) -> String {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = b"0123456789abcdefghijklmnopqrstuvwxyz"[(i % 36) as usize];
        i /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn new_name(st: &mut Store, pool: &str, spec: &NodePool, index: u64) -> String {
    let prefix = if spec.name_prefix.is_empty() {
        format!("{pool}-")
    } else {
        spec.name_prefix.clone()
    };
    match spec.name_suffix {
        NameSuffix::Index => format!("{prefix}{}", base36(index)),
        NameSuffix::Random => loop {
            let suffix: String = (0..4)
                .map(|_| {
                    char::from(
                        b"abcdefghijklmnopqrstuvwxyz0123456789"[st.rng.random_range(0..36usize)],
                    )
                })
                .collect();
            let name = format!("{prefix}{suffix}");
            if !st.objects.contains_key(&node_key(&name)) {
                break name;
            }
        },
    }
}

/// Store a node (new or changed), with a fresh resourceVersion.
fn write(st: &mut Store, name: &str, mut node: Value, new: bool) {
    let key = node_key(name);
    if new {
        st.stamp_new(&mut node, false);
    } else {
        let rv = st.next_rv();
        meta_mut(&mut node).insert("resourceVersion".into(), json!(rv));
    }
    st.objects.insert(key, node);
}

/// Bring an existing node in line with a changed pool: the labels and taints the old
/// spec set are replaced by the new spec's; labels, annotations and taints others
/// added are kept.
fn reconcile(st: &mut Store, old: &NodePool, new: &NodePool, name: &str, zone: &str) {
    let key = node_key(name);
    let Some(current) = st.objects.get(&key).cloned() else {
        return;
    };
    let mut node = current.clone();
    let old_labels = labels(old, name, zone);
    let new_labels = labels(new, name, zone);
    let meta = meta_mut(&mut node);
    let mut l: BTreeMap<String, Value> = meta
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default();
    for k in old_labels.keys() {
        l.remove(k);
    }
    for (k, v) in new_labels {
        l.insert(k, json!(v));
    }
    meta.insert("labels".into(), json!(l));
    let old_taints = taints(old);
    let mut t: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    t.retain(|x| !old_taints.contains(x));
    for x in taints(new) {
        if !t.contains(&x) {
            t.push(x);
        }
    }
    if t.is_empty() {
        if let Some(s) = node.get_mut("spec").and_then(Value::as_object_mut) {
            s.remove("taints");
        }
    } else {
        node["spec"]["taints"] = Value::Array(t);
    }
    if new.machine_type != old.machine_type || new.max_pods != old.max_pods {
        // A different machine: capacity follows (the clouds recreate the nodes).
        let fresh = render(st, new, name, zone);
        node["status"]["capacity"] = fresh["status"]["capacity"].clone();
        node["status"]["allocatable"] = fresh["status"]["allocatable"].clone();
    }
    if !new.kubelet_version.is_empty() {
        node["status"]["nodeInfo"]["kubeletVersion"] = json!(new.kubelet_version);
        node["status"]["nodeInfo"]["kubeProxyVersion"] = json!(new.kubelet_version);
    }
    if node != current {
        write(st, name, node, false);
    }
}

/// Create, resize or change a pool; returns the names of its nodes.
pub(crate) fn set_pool(
    st: &mut Store,
    pool: &str,
    spec: NodePool,
) -> Result<Vec<String>, NodePoolError> {
    validate(pool, &spec)?;
    let (old_spec, mut nodes, mut next_index) = match st.nodes.pools.get(pool) {
        Some(p) => (Some(p.spec.clone()), p.nodes.clone(), p.next_index),
        None => (None, Vec::new(), 0),
    };
    // Nodes deleted through the API are gone for good.
    nodes.retain(|(name, _)| st.objects.contains_key(&node_key(name)));
    let count = spec.count as usize;
    while nodes.len() > count {
        if let Some((name, _)) = nodes.pop() {
            crate::controllers::remove_cascade(st, &node_key(&name));
        }
    }
    if let Some(old) = &old_spec {
        for (name, zone) in nodes.clone() {
            reconcile(st, old, &spec, &name, &zone);
        }
    }
    let zones = spec.effective_zones();
    while nodes.len() < count {
        // The zone with the fewest nodes (the first of them).
        let zone = zones
            .iter()
            .min_by_key(|z| nodes.iter().filter(|(_, nz)| nz == *z).count())
            .cloned()
            .unwrap_or_default();
        let name = new_name(st, pool, &spec, next_index);
        next_index += 1;
        let node_key = node_key(&name);
        if st.objects.contains_key(&node_key) {
            // A node of that name exists (made through the API): skip the index.
            continue;
        }
        let node = render(st, &spec, &name, &zone);
        write(st, &name, node, true);
        nodes.push((name, zone));
    }
    let names = nodes.iter().map(|(n, _)| n.clone()).collect();
    st.nodes.pools.insert(
        pool.to_string(),
        PoolState {
            spec,
            nodes,
            next_index,
        },
    );
    Ok(names)
}

/// Remove a pool and its nodes; returns the names of the nodes removed (empty when
/// the pool is unknown).
pub(crate) fn remove_pool(st: &mut Store, pool: &str) -> Vec<String> {
    let Some(p) = st.nodes.pools.remove(pool) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for (name, _) in p.nodes {
        let key = node_key(&name);
        if st.objects.contains_key(&key) {
            crate::controllers::remove_cascade(st, &key);
            removed.push(name);
        }
    }
    removed
}

/// The pools, with their specs.
pub(crate) fn pools(st: &Store) -> BTreeMap<String, NodePool> {
    st.nodes
        .pools
        .iter()
        .map(|(k, v)| (k.clone(), v.spec.clone()))
        .collect()
}

/// The admin endpoint: `Some((status, body))` for a path under `/fake-kube/`.
///
/// - `GET /fake-kube/nodepools`: every pool and its spec.
/// - `PUT /fake-kube/nodepools/{pool}` with a [`NodePool`] as JSON: create, resize or
///   change; answers `{"pool": .., "nodes": [names]}`.
/// - `DELETE /fake-kube/nodepools/{pool}`: remove it and its nodes (200 also when it
///   does not exist); answers `{"pool": .., "removed": [names]}`.
pub(crate) fn admin(st: &mut Store, method: &str, path: &str, body: &[u8]) -> Option<(u16, Value)> {
    let rest = path.strip_prefix("/fake-kube/")?;
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let err = |code: u16, m: String| (code, json!({"error": m}));
    Some(match (method, segs.as_slice()) {
        ("GET", ["nodepools"]) => (200, json!({"pools": pools(st)})),
        ("PUT", ["nodepools", pool]) => match serde_json::from_slice::<NodePool>(body) {
            Err(e) => err(400, format!("the body is not a node pool: {e}")),
            Ok(spec) => match set_pool(st, pool, spec) {
                Ok(nodes) => (200, json!({"pool": pool, "nodes": nodes})),
                Err(e) => err(400, e.0),
            },
        },
        ("DELETE", ["nodepools", pool]) => {
            let removed = remove_pool(st, pool);
            (200, json!({"pool": pool, "removed": removed}))
        }
        (_, ["nodepools"] | ["nodepools", _]) => err(405, format!("{method} is not allowed here")),
        _ => err(404, format!("fake-kube has no admin path {path}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_names() {
        assert_eq!(machine_shape("e2-standard-4"), (4, 16384));
        assert_eq!(machine_shape("n2-highmem-8"), (8, 65536));
        assert_eq!(machine_shape("Standard_D4s_v3"), (4, 16384));
        assert_eq!(machine_shape("Standard_E8s_v5"), (8, 65536));
        assert_eq!(base36(0), "000000");
        assert_eq!(base36(10), "00000a");
        assert_eq!(base36(36), "000010");
        assert!(is_label_key("gitpod.io/workload_meta"));
        assert!(is_label_key("node.kubernetes.io/instance-type"));
        assert!(!is_label_key("bad key"));
        assert!(!is_label_value("-x"));
    }
}
