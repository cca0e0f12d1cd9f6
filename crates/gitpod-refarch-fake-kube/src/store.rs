//! The in-memory state: objects, resource versions, timers of the simulated
//! controllers, and the call log.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::watches::Objects;
use crate::{Call, Counts, FakeConfig};

/// Where an object lives: group, plural, namespace ("" when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) group: String,
    pub(crate) plural: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// A simulated cloud load balancer of a `type: LoadBalancer` Service.
#[derive(Debug, Clone)]
pub(crate) struct CloudLb {
    pub(crate) ip: String,
    /// When the ingress IP is published on the Service.
    pub(crate) ready_at: Instant,
    /// When it is released (set once the Service is being deleted).
    pub(crate) release_at: Option<Instant>,
}

/// State of the simulated cert-manager for one Certificate (by uid).
#[derive(Debug, Clone)]
pub(crate) struct CertProgress {
    /// The generation being issued and when it will be.
    pub(crate) generation: i64,
    pub(crate) issue_at: Instant,
}

pub(crate) struct Store {
    pub(crate) config: FakeConfig,
    pub(crate) rng: StdRng,
    /// The objects, the resourceVersion counter and the history of changes the
    /// watches are served from: every change goes through it.
    pub(crate) objects: Objects,
    /// CRD uid -> when it becomes Established.
    pub(crate) crd_established_at: HashMap<String, Instant>,
    /// Deployment uid -> (generation, when it becomes ready).
    pub(crate) deployment_ready_at: HashMap<String, (i64, Instant)>,
    /// Namespace name -> when its contents are removed.
    pub(crate) namespace_finalize_at: HashMap<String, Instant>,
    /// Service uid -> its cloud load balancer.
    pub(crate) load_balancers: HashMap<String, CloudLb>,
    /// Certificate uid -> issuance in progress.
    pub(crate) certificates: HashMap<String, CertProgress>,
    /// Issuer or ClusterIssuer uid -> (generation being reconciled, when it is).
    pub(crate) issuers: HashMap<String, (i64, Instant)>,
    pub(crate) next_lb_ip: u32,
    pub(crate) next_cluster_ip: u32,
    pub(crate) next_node_port: u32,
    pub(crate) calls: std::collections::VecDeque<Call>,
    pub(crate) counts: Counts,
    pub(crate) freeze_after: Option<u64>,
    /// Simulated node pools and their nodes (see `nodes.rs`).
    pub(crate) nodes: crate::nodes::Pools,
    /// Owners deleted in the foreground, waiting for their dependents (`gc.rs`).
    pub(crate) foreground: std::collections::BTreeSet<Key>,
}

impl Store {
    /// Keep a call for [`crate::FakeKube::calls`], the oldest dropped past
    /// [`FakeConfig::call_log`].
    pub(crate) fn record(&mut self, call: Call) {
        if self.config.call_log == 0 {
            return;
        }
        if self.calls.len() >= self.config.call_log {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    pub(crate) fn new(config: FakeConfig) -> Store {
        let rng = StdRng::seed_from_u64(config.seed);
        let objects = Objects::new(config.watch_history);
        let mut st = Store {
            config,
            objects,
            rng,
            crd_established_at: HashMap::new(),
            deployment_ready_at: HashMap::new(),
            namespace_finalize_at: HashMap::new(),
            load_balancers: HashMap::new(),
            certificates: HashMap::new(),
            issuers: HashMap::new(),
            next_lb_ip: 1,
            next_cluster_ip: 10,
            next_node_port: 30000,
            calls: std::collections::VecDeque::new(),
            counts: Counts::default(),
            freeze_after: None,
            nodes: crate::nodes::Pools::default(),
            foreground: std::collections::BTreeSet::new(),
        };
        for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            let mut obj = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            st.stamp_new(&mut obj, false);
            st.objects.insert(
                Key {
                    group: String::new(),
                    plural: "namespaces".into(),
                    namespace: String::new(),
                    name: ns.into(),
                },
                obj,
            );
        }
        st
    }

    /// The next resourceVersion.
    pub(crate) fn next_rv(&mut self) -> String {
        self.objects.next_rv().to_string()
    }

    /// A random UUID (version 4 layout).
    pub(crate) fn uid(&mut self) -> String {
        let b: [u8; 16] = self.rng.random();
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    /// Set the server-owned metadata of a new object (`generation`: whether its kind
    /// has a `metadata.generation`, see [`crate::catalog::has_generation`]).
    pub(crate) fn stamp_new(&mut self, obj: &mut Value, generation: bool) {
        let uid = self.uid();
        let rv = self.next_rv();
        let meta = meta_mut(obj);
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if generation {
            meta.insert("generation".into(), json!(1));
        }
    }

    /// Objects of one group/plural, in key order.
    pub(crate) fn list_kind<'a>(
        &'a self,
        group: &'a str,
        plural: &'a str,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.of_type(group, plural).map(|(_, v)| v)
    }

    /// Keys of one group/plural, in order.
    pub(crate) fn keys_of(&self, group: &str, plural: &str) -> Vec<Key> {
        self.objects
            .of_type(group, plural)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// A key for a (group, plural, namespace, name).
    pub(crate) fn key(group: &str, plural: &str, namespace: &str, name: &str) -> Key {
        Key {
            group: group.into(),
            plural: plural.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Forget the side tables of a removed object.
    pub(crate) fn forget(&mut self, obj: &Value) {
        let uid = str_at(obj, "/metadata/uid").to_string();
        self.crd_established_at.remove(&uid);
        self.deployment_ready_at.remove(&uid);
        self.load_balancers.remove(&uid);
        self.certificates.remove(&uid);
        self.issuers.remove(&uid);
    }

    /// Remove an object for good (and its side tables).
    pub(crate) fn remove(&mut self, key: &Key) -> Option<Value> {
        let obj = self.objects.remove(key)?;
        self.forget(&obj);
        Some(obj)
    }
}

/// `metadata` as a mutable map (created if missing or not an object).
pub(crate) fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let m = obj
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
    match m {
        Some(v) => {
            if !v.is_object() {
                *v = json!({});
            }
            match v.as_object_mut() {
                Some(m) => m,
                None => unreachable_map(),
            }
        }
        None => unreachable_map(),
    }
}

fn unreachable_map() -> &'static mut serde_json::Map<String, Value> {
    // Never reached: the value was just made an object. Leak a fresh map rather than
    // panic.
    Box::leak(Box::new(serde_json::Map::new()))
}

/// A string at a JSON pointer ("" when absent).
pub(crate) fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// An integer at a JSON pointer.
pub(crate) fn i64_at(v: &Value, p: &str) -> Option<i64> {
    v.pointer(p).and_then(Value::as_i64)
}

/// Now, as RFC 3339 in UTC with second precision.
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
