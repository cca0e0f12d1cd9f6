//! How a verify check treats a part it cannot reach: a failure for a part the SDK
//! reached during apply, skipped (with the reason) for a cloud-managed part in a
//! private network. Never a false pass.

use std::fmt::Display;
use std::time::Duration;

use gitpod_refarch::verify::{Check, Part};

/// How a check treats a part it cannot reach.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reach {
    /// The SDK itself reached the part during apply (a self-managed part): a transport
    /// failure is a failure. Otherwise (a cloud-managed part in a private network) it
    /// is skipped with the reason, never a false pass.
    pub(crate) expect_reachable: bool,
    /// The budget of each network step.
    pub(crate) timeout: Duration,
}

impl Reach {
    /// The check for a part that did not answer: fail or skipped, per `expect_reachable`.
    pub(crate) fn unreachable(&self, id: &str, part: Part, what: &str, err: impl Display) -> Check {
        if self.expect_reachable {
            Check::fail(
                id,
                part,
                format!("{what} is not reachable: {err}"),
                "the SDK reached it during apply, so Gitpod's pods may not either",
            )
            .fix(format!(
                "check that {what} is up and reachable from here and from the cluster"
            ))
        } else {
            Check::skipped(
                id,
                part,
                format!("{what} is not reachable from here ({err})"),
            )
            .fix("run `verify --in-cluster`, or from a machine inside the network")
        }
    }
}
