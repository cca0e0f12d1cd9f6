//! The store contract: generations, compare-and-swap saves and the run lock.

use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::State;
use crate::error::{Error, ErrorKind, Result};

/// The version of a stored state, opaque to the engine: a counter for the file and
/// memory stores, S3's ETag, GCS's object generation, a Secret's `resourceVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Generation(String);

impl Generation {
    /// A generation from the backend's own version string.
    pub fn new(version: impl Into<String>) -> Self {
        Generation(version.into())
    }

    /// The backend's version string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A state as loaded, with the generation a save must name to replace it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The state.
    pub state: State,
    /// Its generation.
    pub generation: Generation,
}

impl Stored {
    /// A loaded state and its generation.
    pub fn new(state: State, generation: Generation) -> Self {
        Stored { state, generation }
    }
}

/// Who asks for the lock, and for what.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    /// Who holds it, as a person reads it (`alice@laptop (pid 4242)`,
    /// `controller gitpod-refarch-operator-7d9c/default/eu-1`).
    pub owner: String,
    /// What for (`apply`, `destroy`).
    pub operation: String,
}

impl LockRequest {
    /// A request by `owner` for `operation`.
    pub fn new(owner: impl Into<String>, operation: impl Into<String>) -> Self {
        LockRequest {
            owner: owner.into(),
            operation: operation.into(),
        }
    }

    /// The default owner of this process: `user@host (pid N)`.
    pub fn this_process() -> String {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_else(|| "localhost".into());
        format!("{user}@{host} (pid {})", std::process::id())
    }
}

/// A held lock, as stored next to the state.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    /// A random id: unlocking and breaking name it, so nobody removes a lock taken
    /// after the one they looked at.
    pub id: String,
    /// Who holds it.
    pub owner: String,
    /// What for.
    pub operation: String,
    /// When it was taken, seconds since the Unix epoch (UTC).
    pub created_unix: u64,
}

impl LockInfo {
    /// A new lock for `request`, taken now, with a fresh id.
    pub fn for_request(request: &LockRequest) -> Self {
        let created_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let id: String = (0..8)
            .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
            .collect();
        LockInfo {
            id,
            owner: request.owner.clone(),
            operation: request.operation.clone(),
            created_unix,
        }
    }

    /// When it was taken, as `YYYY-MM-DD HH:MM:SS UTC`.
    pub fn created_utc(&self) -> String {
        utc(self.created_unix)
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "held by {} for {} since {} (lock id {})",
            self.owner,
            self.operation,
            self.created_utc(),
            self.id
        )
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the epoch (civil-from-days).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        (rem % 3_600) / 60,
        rem % 60
    )
}

/// The error a second writer gets: who holds the lock, since when, and how to break
/// a stale one.
pub fn locked_error(location: &str, held: &LockInfo) -> Error {
    Error::new(
        ErrorKind::StateLocked,
        format!(
            "the state at {location} is locked: {held}. Wait for that run to finish; if it \
             died, break the lock on purpose with `gitpod-refarch state break-lock {}`",
            held.id
        ),
    )
}

/// The error of a save over a generation that is no longer current.
pub fn changed_error(location: &str) -> Error {
    Error::new(
        ErrorKind::StateChanged,
        format!(
            "the state at {location} changed since it was read (another writer); nothing \
             was written. Plan again"
        ),
    )
}

/// Where state lives between runs, shared safely by many writers.
///
/// A store versions what it holds: [`load`](StateStore::load) returns the state and
/// its [`Generation`], and [`save`](StateStore::save) replaces it only if the stored
/// generation is still the one named (`None`: only if nothing is stored yet),
/// atomically: a reader sees the old or the new state, never a mix. The run lock is
/// separate from the state so that it can be inspected and broken without touching
/// what it guards.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Where the state lives, for messages (`/home/a/.gitpod/state.json`,
    /// `s3://bucket/key`, `kubernetes://ns/name`).
    fn location(&self) -> String;

    /// Load the state and its generation, `None` if there is none yet.
    async fn load(&self) -> Result<Option<Stored>>;

    /// Save `state` if the stored generation is `expected` (`None`: nothing stored);
    /// returns the new generation. Otherwise nothing is written and the error is
    /// [`ErrorKind::StateChanged`].
    async fn save(&self, state: &State, expected: Option<&Generation>) -> Result<Generation>;

    /// Take the run lock. A lock already held is an [`ErrorKind::StateLocked`] error
    /// naming its holder ([`locked_error`]).
    async fn lock(&self, request: &LockRequest) -> Result<LockInfo>;

    /// Release a lock this writer took (a lock with another id is left alone and is an
    /// error).
    async fn unlock(&self, lock: &LockInfo) -> Result<()>;

    /// The lock held now, if any.
    async fn current_lock(&self) -> Result<Option<LockInfo>>;

    /// Break the lock with this id on purpose (its holder died); returns what it was.
    /// No lock, or a lock with another id, is an error and nothing is removed.
    async fn break_lock(&self, id: &str) -> Result<LockInfo>;
}

/// The errors of `break_lock` when the id does not match what is held.
pub(crate) fn break_mismatch(location: &str, held: Option<&LockInfo>, id: &str) -> Error {
    match held {
        None => Error::new(
            ErrorKind::NotFound,
            format!("the state at {location} is not locked (no lock {id} to break)"),
        ),
        Some(h) => Error::new(
            ErrorKind::Conflict,
            format!(
                "the state at {location} is locked with another id: {h}; nothing was \
                 broken (name that id to break it)"
            ),
        ),
    }
}

/// State in memory (tests, embedding with your own persistence).
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    inner: Mutex<MemoryInner>,
    saves: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct MemoryInner {
    state: Option<(State, u64)>,
    lock: Option<LockInfo>,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what is stored.
    pub fn snapshot(&self) -> Option<State> {
        self.inner
            .lock()
            .map(|g| g.state.as_ref().map(|(s, _)| s.clone()))
            .unwrap_or(None)
    }

    /// How many times `save` succeeded.
    pub fn saves(&self) -> usize {
        self.saves.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn inner(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>> {
        self.inner
            .lock()
            .map_err(|_| Error::new(ErrorKind::State, "state lock poisoned"))
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    fn location(&self) -> String {
        "memory".into()
    }

    async fn load(&self) -> Result<Option<Stored>> {
        Ok(self
            .inner()?
            .state
            .as_ref()
            .map(|(s, g)| Stored::new(s.clone(), Generation::new(g.to_string()))))
    }

    async fn save(&self, state: &State, expected: Option<&Generation>) -> Result<Generation> {
        let mut g = self.inner()?;
        let current = g
            .state
            .as_ref()
            .map(|(_, n)| Generation::new(n.to_string()));
        if current.as_ref() != expected {
            return Err(changed_error("memory"));
        }
        let next = g.state.as_ref().map_or(1, |(_, n)| n + 1);
        g.state = Some((state.clone(), next));
        self.saves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Generation::new(next.to_string()))
    }

    async fn lock(&self, request: &LockRequest) -> Result<LockInfo> {
        let mut g = self.inner()?;
        if let Some(held) = &g.lock {
            return Err(locked_error("memory", held));
        }
        let info = LockInfo::for_request(request);
        g.lock = Some(info.clone());
        Ok(info)
    }

    async fn unlock(&self, lock: &LockInfo) -> Result<()> {
        let mut g = self.inner()?;
        match &g.lock {
            Some(h) if h.id == lock.id => {
                g.lock = None;
                Ok(())
            }
            other => Err(break_mismatch("memory", other.as_ref(), &lock.id)),
        }
    }

    async fn current_lock(&self) -> Result<Option<LockInfo>> {
        Ok(self.inner()?.lock.clone())
    }

    async fn break_lock(&self, id: &str) -> Result<LockInfo> {
        let mut g = self.inner()?;
        match g.lock.take() {
            Some(h) if h.id == id => Ok(h),
            other => {
                let e = break_mismatch("memory", other.as_ref(), id);
                g.lock = other;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_994_096), "2026-11-29 23:14:56 UTC");
    }
}
