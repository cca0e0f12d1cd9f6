//! The fake's in-memory state: every resource by its full resource name, the
//! operation registry, the call log and the counters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::ops::Op;
use crate::{Call, Counts, FakeConfig};

/// A change applied to the resource store, immediately or when an operation ends.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    /// Insert or replace `key`.
    Insert(String, Value),
    /// Shallow-merge the fields of an object into `key` (if it exists).
    Merge(String, Value),
    /// Remove `key` and everything under it (`key/...` and `key:...`).
    Remove(String),
    /// Append a value to the array field of `key` (creating it).
    Push(String, &'static str, Value),
    /// Remove a value from the array field of `key` (dropping the field when empty).
    Pull(String, &'static str, Value),
}

/// Everything the fake remembers. One `Mutex` guards it.
pub(crate) struct State {
    pub config: FakeConfig,
    pub rng: StdRng,
    /// Resources by full resource name (see the crate docs for the naming).
    pub res: BTreeMap<String, Value>,
    /// Operations by full operation name.
    pub ops: BTreeMap<String, Op>,
    /// Cloud DNS changes per zone key.
    pub dns_changes: BTreeMap<String, Vec<Value>>,
    /// Cloud SQL instance names used before, per project: `projects/p/instances/i`.
    pub sql_used_names: BTreeSet<String>,
    /// Project id → project number.
    pub project_numbers: BTreeMap<String, u64>,
    pub calls: Vec<Call>,
    pub counts: Counts,
    pub seq: u64,
    /// Successful mutating calls left before the fake freezes.
    pub freeze_after: Option<u64>,
}

impl State {
    pub(crate) fn new(config: FakeConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        let projects = config.projects.clone();
        let mut state = State {
            config,
            rng,
            res: BTreeMap::new(),
            ops: BTreeMap::new(),
            dns_changes: BTreeMap::new(),
            sql_used_names: BTreeSet::new(),
            project_numbers: BTreeMap::new(),
            calls: Vec::new(),
            counts: Counts::default(),
            seq: 0,
            freeze_after: None,
        };
        for p in projects {
            let project = crate::resourcemanager::new_project(&mut state, &p, &json!({}));
            for effect in crate::resourcemanager::project_effects(&mut state, &p, project, true) {
                state.apply(effect);
            }
        }
        state
    }

    /// Next value of a process-wide sequence (ids, operation numbers).
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

    /// A random UUID (version 4 layout).
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

    /// A random decimal id of `digits` digits (no leading zero), as a string.
    pub(crate) fn numeric_id(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        s.push(char::from(b'1' + self.rng.random_range(0..9u8)));
        for _ in 1..digits {
            s.push(char::from(b'0' + self.rng.random_range(0..10u8)));
        }
        s
    }

    /// Base64 of `n` random bytes (etags).
    pub(crate) fn b64_random(&mut self, n: usize) -> String {
        let bytes: Vec<u8> = (0..n).map(|_| self.rng.random::<u8>()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// A random public-looking IPv4 address.
    pub(crate) fn ip(&mut self, first: u8) -> String {
        format!(
            "{first}.{}.{}.{}",
            self.rng.random_range(1..255u8),
            self.rng.random_range(1..255u8),
            self.rng.random_range(2..255u8)
        )
    }

    /// The project id for an id or a number, if the project exists.
    pub(crate) fn project_id(&self, id_or_number: &str) -> Option<String> {
        if self.res.contains_key(&format!("projects/{id_or_number}")) {
            return Some(id_or_number.to_string());
        }
        let number: u64 = id_or_number.parse().ok()?;
        self.project_numbers
            .iter()
            .find(|(id, n)| **n == number && self.res.contains_key(&format!("projects/{id}")))
            .map(|(id, _)| id.clone())
    }

    /// The project id, or GCP's 403 for a project that does not exist (or is not yours).
    pub(crate) fn require_project(&self, id_or_number: &str) -> Result<String, ApiError> {
        self.project_id(id_or_number).ok_or_else(|| {
            ApiError::permission_denied(format!(
                "Permission denied on resource project {id_or_number} (or it may not exist)."
            ))
        })
    }

    /// The number of a known project (0 when unknown).
    pub(crate) fn project_number(&self, id: &str) -> u64 {
        self.project_numbers.get(id).copied().unwrap_or(0)
    }

    /// Apply one effect to the resource store.
    pub(crate) fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Insert(key, value) => {
                self.res.insert(key, value);
            }
            Effect::Merge(key, patch) => {
                if let (Some(Value::Object(target)), Value::Object(patch)) =
                    (self.res.get_mut(&key), patch)
                {
                    for (k, v) in patch {
                        if v.is_null() {
                            target.remove(&k);
                        } else {
                            target.insert(k, v);
                        }
                    }
                }
            }
            Effect::Remove(key) => {
                let slash = format!("{key}/");
                let colon = format!("{key}:");
                self.res
                    .retain(|k, _| k != &key && !k.starts_with(&slash) && !k.starts_with(&colon));
                self.dns_changes.remove(&key);
            }
            Effect::Push(key, field, value) => {
                if let Some(Value::Object(target)) = self.res.get_mut(&key) {
                    match target.get_mut(field) {
                        Some(Value::Array(items)) => items.push(value),
                        _ => {
                            target.insert(field.to_string(), Value::Array(vec![value]));
                        }
                    }
                }
            }
            Effect::Pull(key, field, value) => {
                if let Some(Value::Object(target)) = self.res.get_mut(&key) {
                    if let Some(Value::Array(items)) = target.get_mut(field) {
                        items.retain(|v| v != &value);
                        if items.is_empty() {
                            target.remove(field);
                        }
                    }
                }
            }
        }
    }

    /// Resources whose key starts with `prefix` and has no further `/` after it.
    pub(crate) fn children(&self, prefix: &str) -> Vec<(String, Value)> {
        self.res
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/') && !k[prefix.len()..].contains(':'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Now as RFC 3339 with milliseconds and `Z`, e.g. `2024-05-01T12:00:00.123Z`.
pub(crate) fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// A time as RFC 3339 with milliseconds and `Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Milliseconds since the epoch.
pub(crate) fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
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

/// Base64 (standard alphabet) of bytes.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// True when `s` is an RFC 1035 label of at most `max` characters: `[a-z]([-a-z0-9]*[a-z0-9])?`.
pub(crate) fn is_rfc1035(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.last() != Some(&b'-')
}

/// A string field of a JSON object ("" when missing).
pub(crate) fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_709_294_400_123);
        assert_eq!(rfc3339(t), "2024-03-01T12:00:00.123Z");
    }

    #[test]
    fn rfc1035() {
        assert!(is_rfc1035("gitpod-1", 63));
        assert!(!is_rfc1035("1abc", 63));
        assert!(!is_rfc1035("abc-", 63));
        assert!(!is_rfc1035("Abc", 63));
    }
}
