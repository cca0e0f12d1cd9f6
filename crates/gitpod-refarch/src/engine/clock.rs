//! Injected time: the engine and the simulated cloud read time and sleep only
//! through [`Clock`], so tests run on virtual time.

use std::fmt::Debug;
use std::time::Duration;

use futures::future::BoxFuture;

/// A monotonic clock with sleep.
pub trait Clock: Send + Sync + Debug {
    /// Time since the clock's start.
    fn now(&self) -> Duration;
    /// A future that completes after `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// [`Clock`] on tokio's timer. Under `tokio::time::pause()` (or
/// `#[tokio::test(start_paused = true)]`) time is virtual and auto-advances when every
/// task is idle, so tests of hour-long cloud operations finish in milliseconds.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

#[cfg(feature = "tokio")]
impl TokioClock {
    /// A clock starting now.
    pub fn new() -> Self {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

#[cfg(feature = "tokio")]
impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "tokio")]
impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}
