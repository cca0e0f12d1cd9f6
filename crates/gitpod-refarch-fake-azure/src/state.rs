//! The fake's in-memory state: every resource by its lower-cased ARM id, the
//! operation registry, provider registrations, known principals, issued tokens, the
//! call log and the counters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::lro::Op;
use crate::{Call, Counts, FakeConfig};

/// A change applied to the resource store, immediately or when an operation ends.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    /// Insert or replace the resource with this id.
    Insert(String, Value),
    /// Deep-merge an object into the resource with this id (if it exists).
    Merge(String, Value),
    /// Remove the resource with this id and everything under it.
    RemoveTree(String),
}

/// A provider namespace's registration in one subscription.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    /// `NotRegistered`, `Registering` or `Registered`.
    pub state: &'static str,
    /// Provider reads left before `Registering` turns `Registered`.
    pub reads_left: u32,
}

/// A principal (object id) role assignments may name.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// Role assignment attempts still answered `PrincipalNotFound` (replication delay).
    pub not_found_left: u32,
    /// `ServicePrincipal` for everything the fake knows.
    pub kind: &'static str,
}

/// An access token the token endpoint issued.
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub aud: String,
    pub exp: u64,
}

/// Everything the fake remembers. One `Mutex` guards it.
pub(crate) struct State {
    pub config: FakeConfig,
    pub base_url: String,
    pub rng: StdRng,
    /// Resources by lower-cased ARM id.
    pub res: BTreeMap<String, Value>,
    /// Creation order of the resources (children are listed in it, as ARM does).
    pub created: BTreeMap<String, u64>,
    /// Operations by id.
    pub ops: BTreeMap<String, Op>,
    /// Provider registrations by (lower subscription, lower namespace).
    pub registrations: BTreeMap<(String, String), Registration>,
    /// Known principals by lower-cased object id.
    pub principals: BTreeMap<String, Principal>,
    /// Issued tokens.
    pub tokens: BTreeMap<String, TokenInfo>,
    /// Identities (lower id) with a federated credential write in flight.
    pub fic_writing: BTreeSet<String>,
    /// Federated credential writes still answered 409 (configured).
    pub fic_conflicts_left: u32,
    /// New role assignments (lower id) still left out of lists, with how many more.
    pub role_list_hidden: BTreeMap<String, u32>,
    pub calls: Vec<Call>,
    pub counts: Counts,
    pub seq: u64,
    /// Successful mutating calls left before the fake freezes.
    pub freeze_after: Option<u64>,
}

impl State {
    pub(crate) fn new(config: FakeConfig, base_url: String) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        let mut state = State {
            base_url,
            rng,
            res: BTreeMap::new(),
            created: BTreeMap::new(),
            ops: BTreeMap::new(),
            registrations: BTreeMap::new(),
            principals: BTreeMap::new(),
            tokens: BTreeMap::new(),
            fic_writing: BTreeSet::new(),
            fic_conflicts_left: config.fic_conflicts,
            role_list_hidden: BTreeMap::new(),
            calls: Vec::new(),
            counts: Counts::default(),
            seq: 0,
            freeze_after: None,
            config,
        };
        for (client_id, _) in state.config.clients.clone() {
            let oid = client_object_id(&client_id);
            state.principals.insert(
                oid,
                Principal {
                    not_found_left: 0,
                    kind: "ServicePrincipal",
                },
            );
        }
        for p in state.config.principals.clone() {
            state.principals.insert(
                p.to_ascii_lowercase(),
                Principal {
                    not_found_left: 0,
                    kind: "ServicePrincipal",
                },
            );
        }
        state
    }

    /// Next value of a process-wide sequence.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// `n` random lowercase hex digits.
    pub(crate) fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.rng.random_range(0..16usize)]))
            .collect()
    }

    /// A random GUID.
    pub(crate) fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-a{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }

    /// Register a new principal (an identity's object id), subject to the configured
    /// replication delay.
    pub(crate) fn add_principal(&mut self, object_id: &str) {
        let left = self.config.principal_not_found_attempts;
        self.principals
            .entry(object_id.to_ascii_lowercase())
            .or_insert(Principal {
                not_found_left: left,
                kind: "ServicePrincipal",
            });
    }

    /// The resource with this id (case-insensitive).
    pub(crate) fn get(&self, id: &str) -> Option<&Value> {
        self.res.get(&id.to_ascii_lowercase())
    }

    /// True when a resource with this id exists.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.res.contains_key(&id.to_ascii_lowercase())
    }

    /// Apply one effect.
    pub(crate) fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Insert(id, v) => {
                let key = id.to_ascii_lowercase();
                if !self.created.contains_key(&key) {
                    let n = self.next_seq();
                    self.created.insert(key.clone(), n);
                }
                self.res.insert(key, v);
            }
            Effect::Merge(id, patch) => {
                if let Some(target) = self.res.get_mut(&id.to_ascii_lowercase()) {
                    deep_merge(target, &patch);
                }
            }
            Effect::RemoveTree(id) => {
                let key = id.to_ascii_lowercase();
                let prefix = format!("{key}/");
                self.res.retain(|k, _| k != &key && !k.starts_with(&prefix));
                self.created
                    .retain(|k, _| k != &key && !k.starts_with(&prefix));
            }
        }
    }

    /// Direct children of `parent_id` of the (lower-case) child type `ty`, in
    /// creation order.
    pub(crate) fn children(&self, parent_id: &str, ty: &str) -> Vec<Value> {
        let prefix = format!("{}/{}/", parent_id.to_ascii_lowercase(), ty);
        let mut found: Vec<(u64, Value)> = self
            .res
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .map(|(k, v)| (self.created.get(k).copied().unwrap_or(0), v.clone()))
            .collect();
        found.sort_by_key(|(n, _)| *n);
        found.into_iter().map(|(_, v)| v).collect()
    }

    /// Every resource whose id matches `pred`.
    pub(crate) fn find(&self, pred: impl Fn(&str, &Value) -> bool) -> Vec<Value> {
        self.res
            .iter()
            .filter(|(k, v)| pred(k, v))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The deterministic object id of a client (app registration) id.
pub(crate) fn client_object_id(client_id: &str) -> String {
    det_uuid(&format!("oid:{}", client_id.to_ascii_lowercase()))
}

/// A GUID derived from a string (FNV-1a, two lanes): stable across runs.
pub(crate) fn det_uuid(seed: &str) -> String {
    let lane = |offset: u64| {
        let mut h = offset;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    let (a, b) = (lane(0xcbf2_9ce4_8422_2325), lane(0x8422_2325_cbf2_9ce4));
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-5{}-9{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Now as RFC 3339 with 7 fractional digits and `Z`, as ARM writes times.
pub(crate) fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let frac = d.subsec_nanos() / 100;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{frac:07}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A string field of a JSON object ("" when missing).
pub(crate) fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// A string at a JSON pointer ("" when missing).
pub(crate) fn ptr<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Deep-merge `patch` into `target`: objects merge recursively, anything else replaces.
pub(crate) fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Is `s` a GUID (8-4-4-4-12 hex)?
pub(crate) fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Check a string against a simple character-class rule: first char in `first`,
/// the rest in `rest`, total length in `min..=max`.
pub(crate) fn name_ok(
    s: &str,
    min: usize,
    max: usize,
    first: impl Fn(char) -> bool,
    rest: impl Fn(char) -> bool,
) -> bool {
    let n = s.chars().count();
    let mut chars = s.chars();
    n >= min && n <= max && chars.next().is_some_and(first) && chars.all(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert!(is_guid("befefa01-2a29-4197-83a8-272ff33ce314"));
        assert!(!is_guid("befefa01-2a29-4197-83a8"));
        let a = det_uuid("x");
        assert!(is_guid(&a), "{a}");
        assert_eq!(a, det_uuid("x"));
        assert_ne!(a, det_uuid("y"));
        assert!(now_rfc3339().ends_with('Z'));
        assert!(name_ok(
            "abc",
            1,
            3,
            |c| c.is_ascii_lowercase(),
            |c| c.is_ascii_alphanumeric()
        ));
        assert!(!name_ok("1bc", 1, 3, |c| c.is_ascii_lowercase(), |_| true));
    }
}
