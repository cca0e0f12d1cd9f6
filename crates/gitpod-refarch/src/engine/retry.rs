//! Retry and wait policies, as data.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::Clock;
use crate::error::{Error, ErrorKind, Result};

/// How failed calls are retried. The class of an error decides *whether*
/// ([`ErrorKind::is_retryable`]); this decides *how long*.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// First backoff.
    pub initial_backoff: Duration,
    /// Backoff cap.
    pub max_backoff: Duration,
    /// Growth factor per attempt.
    pub multiplier: f64,
    /// Randomise each delay to 50-100% ("equal jitter"), so parallel runs spread out.
    pub jitter: bool,
    /// Attempts per call, first included.
    pub max_attempts: u32,
    /// Total time one call may spend retrying throttling and transient errors.
    pub budget: Duration,
    /// Total time for propagation delays and operation-in-progress conflicts, which
    /// are expected to last longer (IAM propagation, another cluster operation).
    pub propagation_budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: true,
            max_attempts: 12,
            budget: Duration::from_secs(5 * 60),
            propagation_budget: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// For a cloud that answers at once: a local emulator or fake (moto, the project's
    /// GCP, Azure and Kubernetes fakes) in tests and demos. Backoffs of 5 to 200 ms,
    /// 40 attempts, a minute's budget for each class of error.
    pub fn local() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(200),
            max_attempts: 40,
            budget: Duration::from_secs(60),
            propagation_budget: Duration::from_secs(60),
            ..Default::default()
        }
    }

    /// The delay before attempt `attempt + 1` (attempt counts from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(30) as i32);
        let base = self.initial_backoff.as_secs_f64() * exp;
        let capped = base.min(self.max_backoff.as_secs_f64());
        let secs = if self.jitter {
            capped * rand::rng().random_range(0.5..=1.0)
        } else {
            capped
        };
        Duration::from_secs_f64(secs)
    }

    /// The total retry time allowed for an error class.
    pub fn budget_for(&self, kind: ErrorKind) -> Duration {
        match kind {
            ErrorKind::PropagationDelay | ErrorKind::OperationInProgress => self.propagation_budget,
            _ => self.budget,
        }
    }

    /// Attempts allowed for an error class (propagation waits are bounded by time).
    pub fn attempts_for(&self, kind: ErrorKind) -> u32 {
        match kind {
            ErrorKind::PropagationDelay | ErrorKind::OperationInProgress => {
                self.max_attempts.max(1) * 4
            }
            _ => self.max_attempts.max(1),
        }
    }
}

impl RetryPolicy {
    /// Call `f` until it succeeds, fails with an error whose class is not retryable
    /// ([`Error::is_retryable`]), or the class's attempts or time budget run out,
    /// sleeping on `clock` between attempts. `on_retry` hears each retry (attempt,
    /// delay, error) before the sleep.
    ///
    /// This is the one retry loop of the SDK: the engine retries every provider call
    /// with it, and a provider that must retry inside one call (one of thirty
    /// Kubernetes writes, an IAM policy's read-modify-write) uses it too, with the
    /// engine's clock, so virtual time and the policy apply there as well.
    pub async fn run<T, F, Fut>(
        &self,
        clock: &dyn Clock,
        f: F,
        on_retry: impl FnMut(u32, Duration, &Error),
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_when(clock, Error::is_retryable, f, on_retry).await
    }

    /// [`RetryPolicy::run`], retrying the errors `retryable` accepts (for example a
    /// policy write that lost an etag race, which is a conflict everywhere else).
    pub async fn run_when<T, F, Fut>(
        &self,
        clock: &dyn Clock,
        retryable: impl Fn(&Error) -> bool,
        mut f: F,
        mut on_retry: impl FnMut(u32, Duration, &Error),
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = clock.now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let kind = e.kind();
                    let delay = self.delay(attempt);
                    let spent = clock.now().saturating_sub(start);
                    if !retryable(&e)
                        || attempt >= self.attempts_for(kind)
                        || spent + delay > self.budget_for(kind)
                    {
                        return Err(e);
                    }
                    on_retry(attempt, delay, &e);
                    clock.sleep(delay).await;
                }
            }
        }
    }
}

/// How long-running operations are polled.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct WaitPolicy {
    /// First poll delay when the provider gives no hint.
    pub min_delay: Duration,
    /// Longest delay between polls (also caps provider hints).
    pub max_delay: Duration,
    /// Longest wait for one operation.
    pub timeout: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            min_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(90 * 60),
        }
    }
}

impl WaitPolicy {
    /// For a cloud that answers at once (see [`RetryPolicy::local`]): polls every 5 to
    /// 50 ms, at most two minutes per operation.
    pub fn local() -> Self {
        WaitPolicy {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            timeout: Duration::from_secs(120),
        }
    }

    /// Delay before poll number `n` (from 1), honouring a provider hint.
    pub fn delay(&self, n: u32, hint: Option<Duration>) -> Duration {
        match hint {
            Some(h) => h.min(self.max_delay),
            None => {
                let secs =
                    self.min_delay.as_secs_f64() * 1.5f64.powi(n.saturating_sub(1).min(20) as i32);
                Duration::from_secs_f64(secs.min(self.max_delay.as_secs_f64()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            jitter: false,
            ..Default::default()
        };
        assert_eq!(p.delay(1), Duration::from_millis(500));
        assert_eq!(p.delay(2), Duration::from_secs(1));
        assert_eq!(p.delay(30), Duration::from_secs(30));
        let j = RetryPolicy::default();
        for a in 1..10 {
            let d = j.delay(a);
            let full = p.delay(a);
            assert!(d >= full / 2 && d <= full, "{d:?} vs {full:?}");
        }
        assert!(p.budget_for(ErrorKind::PropagationDelay) > p.budget_for(ErrorKind::Throttled));
    }

    #[test]
    fn wait_honours_hints_up_to_the_cap() {
        let w = WaitPolicy::default();
        assert_eq!(
            w.delay(1, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(w.delay(1, Some(Duration::from_secs(500))), w.max_delay);
        assert_eq!(w.delay(1, None), w.min_delay);
        assert!(w.delay(3, None) > w.min_delay);
    }

    #[cfg(feature = "tokio")]
    #[tokio::test(start_paused = true)]
    async fn run_retries_by_class_on_the_injected_clock() {
        use crate::engine::TokioClock;
        let clock = TokioClock::new();
        let p = RetryPolicy {
            jitter: false,
            max_attempts: 5,
            ..Default::default()
        };
        // Two throttled answers, then success: two sleeps of 0.5 s and 1 s.
        let mut calls = 0;
        let mut heard = vec![];
        let start = clock.now();
        let v = p
            .run(
                &clock,
                || {
                    calls += 1;
                    let n = calls;
                    async move {
                        if n < 3 {
                            Err(Error::new(ErrorKind::Throttled, "slow down"))
                        } else {
                            Ok(n)
                        }
                    }
                },
                |attempt, delay, _| heard.push((attempt, delay)),
            )
            .await
            .unwrap();
        assert_eq!(v, 3);
        assert_eq!(
            heard,
            vec![(1, Duration::from_millis(500)), (2, Duration::from_secs(1))]
        );
        assert_eq!(clock.now() - start, Duration::from_millis(1500));
        // A class that is not retryable fails at once; `run_when` can widen the class.
        let mut n = 0;
        let e = p
            .run(
                &clock,
                || {
                    n += 1;
                    async { Err::<(), _>(Error::new(ErrorKind::Conflict, "etag")) }
                },
                |_, _, _| {},
            )
            .await
            .unwrap_err();
        assert_eq!((e.kind(), n), (ErrorKind::Conflict, 1));
        let mut n = 0;
        let e = p
            .run_when(
                &clock,
                |e| e.kind() == ErrorKind::Conflict,
                || {
                    n += 1;
                    async { Err::<(), _>(Error::new(ErrorKind::Conflict, "etag")) }
                },
                |_, _, _| {},
            )
            .await
            .unwrap_err();
        assert_eq!((e.kind(), n), (ErrorKind::Conflict, 5));
    }
}
