//! One budget of concurrent cloud calls per cloud account, shared by every
//! installation of that account.
//!
//! Fifty installations in one AWS account share its API rate limits: each
//! reconcile's engine takes the account's [`Budget`], so at most the account's
//! limit of provider calls run at once across all of them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use gitpod_refarch::engine::Budget;

/// The budgets of the accounts seen so far, made on first use with the account's
/// limit. Cheap to clone (the clones share the budgets).
#[derive(Debug, Clone)]
pub struct Budgets {
    default_limit: usize,
    limits: Arc<BTreeMap<String, usize>>,
    budgets: Arc<Mutex<BTreeMap<String, Arc<Budget>>>>,
}

impl Budgets {
    /// Budgets of `default_limit` concurrent calls (at least 1) per account.
    pub fn new(default_limit: usize) -> Self {
        Budgets {
            default_limit: default_limit.max(1),
            limits: Arc::new(BTreeMap::new()),
            budgets: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// Give `account` (`<cloud>:<id>`) its own limit instead of the default. Takes
    /// effect for budgets made after this call.
    #[must_use]
    pub fn with_limit(mut self, account: impl Into<String>, limit: usize) -> Self {
        Arc::make_mut(&mut self.limits).insert(account.into(), limit.max(1));
        self
    }

    /// The limit of an account without its own.
    pub fn default_limit(&self) -> usize {
        self.default_limit
    }

    /// The limit `account` gets.
    pub fn limit_of(&self, account: &str) -> usize {
        self.limits
            .get(account)
            .copied()
            .unwrap_or(self.default_limit)
    }

    /// The budget of `account`, made on first use.
    pub fn get(&self, account: &str) -> Arc<Budget> {
        let mut map = match self.budgets.lock() {
            Ok(m) => m,
            // A panic elsewhere while holding the map leaves it usable.
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(account.to_string())
            .or_insert_with(|| Budget::new(account, self.limit_of(account)))
            .clone()
    }

    /// The budget of `account` if one was made.
    pub fn peek(&self, account: &str) -> Option<Arc<Budget>> {
        let map = match self.budgets.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(account).cloned()
    }

    /// The accounts with a budget.
    pub fn accounts(&self) -> Vec<String> {
        let map = match self.budgets.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.keys().cloned().collect()
    }
}

impl Default for Budgets {
    /// Eight concurrent calls per account.
    fn default() -> Self {
        Budgets::new(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_budget_per_account_with_its_limit() {
        let b = Budgets::new(3).with_limit("aws:1", 5);
        let a1 = b.get("aws:1");
        let a2 = b.get("aws:1");
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_eq!(a1.limit(), 5);
        assert_eq!(b.get("sim:x").limit(), 3);
        assert!(b.peek("gcp:none").is_none());
        assert_eq!(b.accounts(), vec!["aws:1".to_string(), "sim:x".to_string()]);
        let clone = b.clone();
        assert!(Arc::ptr_eq(&clone.get("sim:x"), &b.get("sim:x")));
    }
}
