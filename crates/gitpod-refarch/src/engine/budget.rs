//! A budget of concurrent cloud calls shared by many engines.
//!
//! Fifty installations in one cloud account (project, subscription) each run their own
//! engine; the account's API rate limits are shared. Give every engine of that account
//! the same [`Budget`] and at most `limit` provider calls (observe, ensure, delete,
//! poll) run at once across all of them; the rest wait their turn instead of being
//! throttled into failure. Waiting for an operation (the sleep between polls) holds no
//! permit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};

/// Concurrent provider calls allowed across every engine holding this budget.
#[derive(Debug)]
pub struct Budget {
    name: String,
    limit: usize,
    semaphore: Semaphore,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
}

/// One call's share of a [`Budget`]; released on drop.
#[derive(Debug)]
pub struct BudgetPermit<'a> {
    budget: &'a Budget,
    _permit: SemaphorePermit<'a>,
}

impl Drop for BudgetPermit<'_> {
    fn drop(&mut self) {
        self.budget.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Budget {
    /// A budget named `name` (the account, for logs) of `limit` calls at once (at
    /// least 1).
    pub fn new(name: impl Into<String>, limit: usize) -> Arc<Self> {
        let limit = limit.max(1);
        Arc::new(Budget {
            name: name.into(),
            limit,
            semaphore: Semaphore::new(limit),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        })
    }

    /// The account it belongs to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls allowed at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The most calls that ran at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }

    /// Calls made under this budget so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }

    /// Wait for a share. `None` only if the budget was closed (it never is).
    pub async fn acquire(&self) -> Option<BudgetPermit<'_>> {
        let permit = self.semaphore.acquire().await.ok()?;
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
        self.calls.fetch_add(1, Ordering::AcqRel);
        Some(BudgetPermit {
            budget: self,
            _permit: permit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_limit_at_once_across_holders() {
        let b = Budget::new("account-1", 3);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let _p = b.acquire().await.expect("open");
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(b.calls(), 20);
        assert_eq!(b.in_flight(), 0);
        assert_eq!(b.peak(), 3, "the limit is reached and never passed");
    }
}
