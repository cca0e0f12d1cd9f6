//! Leader election on a `coordination.k8s.io/v1` Lease, as Kubernetes' own
//! controllers do it (client-go's `leaderelection` algorithm).
//!
//! - A candidate takes the Lease when it is free (no holder: never held, or released)
//!   or when its record has not changed for a whole lease duration, measured on the
//!   candidate's own clock from the moment it last saw the record change (so clocks
//!   need not agree across machines).
//! - Every write is a compare-and-swap: a `PUT` carrying the `resourceVersion` that was
//!   read, so of two candidates only one wins; the other's write is refused with 409.
//! - A candidate tries every retry period plus a random part of up to 1.2 times it
//!   ([`ACQUIRE_JITTER`], as client-go), so replicas do not try in lockstep.
//! - The leader renews every retry period; when it cannot renew within the renew
//!   deadline (shorter than the lease duration, so it gives up before anyone may take
//!   over), or sees another holder, it has lost: [`run_as_leader`] drops its work at
//!   once and becomes a candidate again.
//! - `leaseTransitions` counts the changes of holder; a clean stop releases the Lease
//!   (no holder), so a follower takes over at its next try instead of after a lease
//!   duration.
//!
//! No crate on crates.io fits here: `kube-leader-election` 0.44 needs kube 4, and
//! `kube-lease-manager` (0.10 is the last for kube 2) counts durations in whole
//! seconds and detects conflicts through server-side apply field ownership rather than
//! a `resourceVersion` compare-and-swap.

use std::future::Future;
use std::time::{Duration, Instant};

use gitpod_refarch::{Error, ErrorKind, Result};
use gitpod_refarch_bootstrap::api::kube_error;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

/// Where and how to elect a leader.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity (unique among the replicas: the pod name).
    pub identity: String,
    /// How long a Lease whose record does not change stays the holder's (default 15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership
    /// (default 10 s; less than `lease_duration`).
    pub renew_deadline: Duration,
    /// How often a candidate tries to acquire and the leader renews (default 2 s;
    /// less than `renew_deadline`).
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// The Lease `namespace/name`, candidate `identity`, with client-go's default
    /// durations (15 s lease, 10 s renew deadline, 2 s retry period).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Set the lease duration.
    pub fn with_lease_duration(mut self, d: Duration) -> Self {
        self.lease_duration = d;
        self
    }

    /// Set the renew deadline.
    pub fn with_renew_deadline(mut self, d: Duration) -> Self {
        self.renew_deadline = d;
        self
    }

    /// Set the retry period.
    pub fn with_retry_period(mut self, d: Duration) -> Self {
        self.retry_period = d;
        self
    }

    /// Refuse durations that would let two leaders overlap.
    pub fn validate(&self) -> Result<()> {
        if self.identity.is_empty() || self.name.is_empty() || self.namespace.is_empty() {
            return Err(Error::invalid_input(
                "leader election needs a Lease namespace, a Lease name and an identity",
            ));
        }
        if self.retry_period.is_zero()
            || self.retry_period >= self.renew_deadline
            || self.renew_deadline >= self.lease_duration
        {
            return Err(Error::invalid_input(format!(
                "leader election needs 0 < retry period ({:?}) < renew deadline ({:?}) < lease duration ({:?})",
                self.retry_period, self.renew_deadline, self.lease_duration
            )));
        }
        Ok(())
    }
}

/// The Lease record last seen and when (on this candidate's clock) it last changed.
#[derive(Debug, Clone)]
struct Observed {
    lease: Lease,
    changed_at: Instant,
}

/// One candidate for the leadership of one Lease. [`run_as_leader`] is the usual way
/// to use it.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    observed: Option<Observed>,
    last_renew: Option<Instant>,
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::chrono::Utc::now())
}

fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

impl LeaderElector {
    /// A candidate for `config`'s Lease (checked with [`LeaderConfig::validate`]).
    pub fn new(client: kube::Client, config: LeaderConfig) -> Result<Self> {
        config.validate()?;
        Ok(LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            last_renew: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// The holder as last seen (`None`: free, or not read yet).
    pub fn observed_holder(&self) -> Option<&str> {
        self.observed.as_ref().and_then(|o| holder(&o.lease))
    }

    /// Whether this candidate holds the Lease as far as it knows (last seen as holder
    /// and renewed within the renew deadline).
    pub fn is_leader(&self) -> bool {
        self.observed_holder() == Some(self.config.identity.as_str())
            && self
                .last_renew
                .is_some_and(|t| t.elapsed() < self.config.renew_deadline)
    }

    fn lease_seconds(&self) -> i32 {
        let ms = self.config.lease_duration.as_millis().max(1);
        i32::try_from(ms.div_ceil(1000)).unwrap_or(i32::MAX)
    }

    fn observe(&mut self, lease: Lease) {
        let changed = self.observed.as_ref().is_none_or(|o| {
            o.lease.metadata.resource_version != lease.metadata.resource_version
                || o.lease.spec != lease.spec
        });
        let changed_at = match &self.observed {
            Some(o) if !changed => o.changed_at,
            _ => Instant::now(),
        };
        self.observed = Some(Observed { lease, changed_at });
    }

    /// One try: acquire the Lease if it is free or expired, renew it if it is ours.
    /// `Ok(true)` when this candidate holds it now; `Ok(false)` when another does or
    /// another candidate's write won the compare-and-swap.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let me = self.config.identity.clone();
        let what = format!("Lease {}/{}", self.config.namespace, self.config.name);
        let now = now_micro();
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(l) => l,
            Err(e) => return Err(kube_error(e, &format!("read {what}"))),
        };
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created);
                    self.last_renew = Some(Instant::now());
                    Ok(true)
                }
                Err(kube::Error::Api(r)) if r.code == 409 => Ok(false),
                Err(e) => Err(kube_error(e, &format!("create {what}"))),
            };
        };
        self.observe(current.clone());
        let held_by = holder(&current).map(str::to_string);
        let ours = held_by.as_deref() == Some(me.as_str());
        if let (Some(_), false) = (&held_by, ours) {
            let expired = self
                .observed
                .as_ref()
                .is_some_and(|o| o.changed_at.elapsed() >= self.config.lease_duration);
            if !expired {
                return Ok(false);
            }
        }
        let old = current.spec.clone().unwrap_or_default();
        let spec = if ours {
            LeaseSpec {
                renew_time: Some(now),
                lease_duration_seconds: Some(self.lease_seconds()),
                ..old
            }
        } else {
            LeaseSpec {
                holder_identity: Some(me),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_duration_seconds: Some(self.lease_seconds()),
                lease_transitions: Some(old.lease_transitions.unwrap_or(0).saturating_add(1)),
                ..old
            }
        };
        let mut next = current;
        next.spec = Some(spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                if !ours {
                    tracing::info!(
                        lease = %what,
                        identity = %self.config.identity,
                        previous = held_by.as_deref().unwrap_or(""),
                        "acquired the leadership"
                    );
                }
                self.observe(written);
                self.last_renew = Some(Instant::now());
                Ok(true)
            }
            // Another candidate wrote first (the compare-and-swap lost).
            Err(kube::Error::Api(r)) if r.code == 409 => Ok(false),
            Err(e) => Err(kube_error(e, &format!("write {what}"))),
        }
    }

    /// Try every retry period until this candidate holds the Lease. Errors (the API
    /// server unreachable) are logged and retried.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => tracing::debug!(
                    identity = %self.config.identity,
                    holder = self.observed_holder().unwrap_or(""),
                    "not the leader"
                ),
                Err(e) => tracing::warn!(
                    identity = %self.config.identity,
                    error = %e.chain(),
                    "leader election: cannot acquire the Lease"
                ),
            }
            tokio::time::sleep(jittered(self.config.retry_period, rand::random::<f64>())).await;
        }
    }

    /// Renew every retry period while this candidate is the leader; returns (the
    /// reason) when it is not any more: another holder, or no renewal within the
    /// renew deadline.
    pub async fn hold(&mut self) -> Error {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let since = self.last_renew.unwrap_or_else(Instant::now);
            let left = self.config.renew_deadline.saturating_sub(since.elapsed());
            let outcome = tokio::time::timeout(left, self.try_acquire_or_renew()).await;
            match outcome {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => {
                    if let Some(other) = self
                        .observed_holder()
                        .filter(|h| *h != self.config.identity)
                    {
                        return Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "lost the leadership of Lease {}/{} to {other}",
                                self.config.namespace, self.config.name
                            ),
                        );
                    }
                }
                Ok(Err(e)) => tracing::warn!(
                    identity = %self.config.identity,
                    error = %e.chain(),
                    "leader election: cannot renew the Lease"
                ),
                Err(_) => {}
            }
            if since.elapsed() >= self.config.renew_deadline {
                self.last_renew = None;
                return Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "could not renew Lease {}/{} within the renew deadline ({:?}): gave up the leadership",
                        self.config.namespace, self.config.name, self.config.renew_deadline
                    ),
                );
            }
        }
    }

    /// Give the Lease up (no holder) if this candidate holds it, so another takes
    /// over at once. A Lease someone else holds by now is left alone.
    pub async fn release(&mut self) -> Result<()> {
        let Some(observed) = self.observed.take() else {
            return Ok(());
        };
        self.last_renew = None;
        if holder(&observed.lease) != Some(self.config.identity.as_str()) {
            self.observed = Some(observed);
            return Ok(());
        }
        let mut lease = observed.lease;
        let now = now_micro();
        let old = lease.spec.take().unwrap_or_default();
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..old
        });
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                tracing::info!(identity = %self.config.identity, "released the leadership");
                self.observe(written);
                Ok(())
            }
            // Changed since we last wrote it: no longer ours to release.
            Err(kube::Error::Api(r)) if r.code == 409 || r.code == 404 => Ok(()),
            Err(e) => Err(kube_error(
                e,
                &format!(
                    "release Lease {}/{}",
                    self.config.namespace, self.config.name
                ),
            )),
        }
    }
}

/// Run `f()` only while this candidate leads: acquire the Lease, run `f()` while
/// renewing it, drop (stop) `f()`'s future the moment the leadership is lost and try
/// again as a candidate (calling `f()` afresh once leader again). Returns when `f()`
/// returns (after releasing the Lease), with its result. Never returns otherwise:
/// see [`run_as_leader_until`] for a graceful stop.
pub async fn run_as_leader<F, Fut>(client: kube::Client, config: LeaderConfig, f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    run_as_leader_until(client, config, std::future::pending::<()>(), f).await
}

/// [`run_as_leader`] until `shutdown` completes: then `f()` is dropped, the Lease
/// released (if held) and the call returns `Ok(())`.
pub async fn run_as_leader_until<F, Fut, S>(
    client: kube::Client,
    config: LeaderConfig,
    shutdown: S,
    mut f: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
    S: Future<Output = ()>,
{
    let mut elector = LeaderElector::new(client, config)?;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = elector.acquire() => {}
            _ = &mut shutdown => return Ok(()),
        }
        tracing::info!(identity = %elector.config.identity, "leading");
        let work = f();
        let result = {
            let mut work = std::pin::pin!(work);
            // `hold` borrows the elector mutably: scope it so `release` can run.
            let hold = elector.hold();
            tokio::select! {
                done = &mut work => Some(done),
                lost = hold => {
                    tracing::warn!(error = %lost.chain(), "stopped leading: work dropped");
                    None
                }
                _ = &mut shutdown => {
                    tracing::info!("shutting down: work dropped");
                    Some(Ok(()))
                }
            }
        };
        match result {
            Some(done) => {
                if let Err(e) = elector.release().await {
                    tracing::warn!(error = %e.chain(), "could not release the Lease");
                }
                return done;
            }
            None => continue,
        }
    }
}

/// How much a candidate's wait between tries may grow at random (client-go's
/// `JitterFactor`): replicas that start together, or all lost a leader at once, do not
/// try in lockstep.
pub const ACQUIRE_JITTER: f64 = 1.2;

/// A candidate's wait before its next try: the retry period plus up to
/// [`ACQUIRE_JITTER`] times it, by `r` in `[0, 1)`.
pub fn jittered(period: Duration, r: f64) -> Duration {
    period.mul_f64(1.0 + ACQUIRE_JITTER * r.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_wait_the_retry_period_plus_up_to_the_jitter() {
        let p = Duration::from_secs(2);
        assert_eq!(jittered(p, 0.0), p);
        assert_eq!(jittered(p, 0.5), Duration::from_millis(3200));
        assert!(jittered(p, 0.999_999) < Duration::from_millis(4400));
        // Out-of-range draws are clamped.
        assert_eq!(jittered(p, -1.0), p);
        assert_eq!(jittered(p, 2.0), Duration::from_millis(4400));
    }
}
