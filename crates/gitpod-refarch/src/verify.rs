//! `verify`: check every part as Gitpod will use it, with the credentials Gitpod will
//! get, and report each check as pass, fail or skipped, with the reason and the fix.
//!
//! The core only defines the vocabulary: a [`Verifier`] (implemented where the IO
//! lives: the self-managed crate checks the database, registry, storage and DNS
//! server; the bootstrap checks the cluster; the simulated cloud checks its own
//! in-memory parts) receives a [`VerifyContext`] (the spec, the outputs of the last
//! apply, and the installer bundle rendered from them, i.e. the exact secrets Gitpod
//! gets) and returns [`Check`]s. A verifier never returns an error: a failure is a
//! check with [`CheckStatus::Fail`], and a part it cannot reach from where it runs is
//! [`CheckStatus::Skipped`] with the reason, never a false pass.
//!
//! [`VerifyReport`] prints as a table for people and serializes to JSON for machines
//! (the ids are stable: `database.explicit-defaults-for-timestamp`, `registry.push`,
//! `cluster.node-labels.workspaces`, ...).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::installer::InstallerBundle;
use crate::outputs::Outputs;
use crate::spec::ReferenceArchitecture;

/// The part of the installation a check looks at.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// The MySQL database Gitpod uses.
    Database,
    /// The OCI registry for workspace images.
    Registry,
    /// Object storage for workspace content.
    Storage,
    /// The DNS zone, its delegation and the Gitpod records.
    Dns,
    /// The Kubernetes cluster: nodes, cert-manager, the certificate, the secrets.
    Cluster,
}

impl Part {
    /// Every part, in report order.
    pub const ALL: [Part; 5] = [
        Part::Cluster,
        Part::Dns,
        Part::Database,
        Part::Registry,
        Part::Storage,
    ];

    /// `database`, `registry`, `storage`, `dns`, `cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Database => "database",
            Part::Registry => "registry",
            Part::Storage => "storage",
            Part::Dns => "dns",
            Part::Cluster => "cluster",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one check.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Checked, and it works as Gitpod will use it.
    Pass,
    /// Checked, and it does not: see the reason and the fix.
    Fail,
    /// Not checked (not applied yet, not reachable from here, no verifier): the
    /// reason says why. Never a pass in disguise.
    Skipped,
}

impl CheckStatus {
    /// `pass`, `fail`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "fail",
            CheckStatus::Skipped => "skipped",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a check ran.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Vantage {
    /// From the process running the SDK.
    Local,
    /// Inside the cluster (a short-lived Job, or the API server's view).
    InCluster,
    /// Against the simulated cloud (no real part exists).
    Simulated,
}

/// One check and its outcome. Build it with [`Check::pass`], [`Check::fail`] or
/// [`Check::skipped`], then [`Check::fix`], [`Check::from`] and [`Check::took`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Stable id: `<part>.<what>` (`database.connect`, `cluster.node-labels.services`).
    pub id: String,
    /// The part it looks at.
    pub part: Part,
    /// The outcome.
    pub status: CheckStatus,
    /// What was found, in one line (no secret values).
    pub summary: String,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What to do about a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Where it ran.
    pub from: Vantage,
    /// How long it took (milliseconds).
    pub duration_ms: u64,
}

impl Check {
    fn new(id: impl Into<String>, part: Part, status: CheckStatus, summary: String) -> Self {
        Check {
            id: id.into(),
            part,
            status,
            summary,
            reason: None,
            fix: None,
            from: Vantage::Local,
            duration_ms: 0,
        }
    }

    /// A passed check.
    pub fn pass(id: impl Into<String>, part: Part, summary: impl Into<String>) -> Self {
        Check::new(id, part, CheckStatus::Pass, summary.into())
    }

    /// A failed check: `summary` says what is wrong, `reason` why it matters to
    /// Gitpod (add the fix with [`Check::fix`]).
    pub fn fail(
        id: impl Into<String>,
        part: Part,
        summary: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        let mut c = Check::new(id, part, CheckStatus::Fail, summary.into());
        c.reason = Some(reason.into());
        c
    }

    /// A check that did not run, and why.
    pub fn skipped(id: impl Into<String>, part: Part, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let mut c = Check::new(id, part, CheckStatus::Skipped, format!("skipped: {reason}"));
        c.reason = Some(reason);
        c
    }

    /// What to do about it.
    #[must_use]
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// Where it ran (default [`Vantage::Local`]).
    #[must_use]
    pub fn from(mut self, from: Vantage) -> Self {
        self.from = from;
        self
    }

    /// How long it took.
    #[must_use]
    pub fn took(mut self, d: Duration) -> Self {
        self.duration_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.status == CheckStatus::Pass
    }

    /// Whether it failed.
    pub fn failed(&self) -> bool {
        self.status == CheckStatus::Fail
    }
}

/// Everything a [`Verifier`] may look at. Secret values are in `bundle`'s secrets
/// (exactly what Gitpod's installer receives) and in `outputs`; a verifier must not
/// put them in a [`Check`].
#[non_exhaustive]
pub struct VerifyContext<'a> {
    /// The spec (validated).
    pub spec: &'a ReferenceArchitecture,
    /// The outputs recorded by the last apply.
    pub outputs: &'a Outputs,
    /// The installer config and secrets rendered from `outputs`.
    pub bundle: &'a InstallerBundle,
    /// Run checks that need to run inside the cluster (a short-lived Job) instead of
    /// reporting them skipped when the part is not reachable from here.
    pub in_cluster: bool,
}

impl<'a> VerifyContext<'a> {
    /// A context for `spec` with the outputs of its last apply and their bundle.
    pub fn new(
        spec: &'a ReferenceArchitecture,
        outputs: &'a Outputs,
        bundle: &'a InstallerBundle,
    ) -> Self {
        VerifyContext {
            spec,
            outputs,
            bundle,
            in_cluster: false,
        }
    }

    /// Allow in-cluster checks.
    #[must_use]
    pub fn with_in_cluster(mut self, in_cluster: bool) -> Self {
        self.in_cluster = in_cluster;
        self
    }
}

impl fmt::Debug for VerifyContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyContext")
            .field("installation", &self.spec.name)
            .field("outputs", &self.outputs.all().len())
            .field("in_cluster", &self.in_cluster)
            .finish()
    }
}

/// Checks some parts of an installation. Implementations live where the IO lives.
#[async_trait]
pub trait Verifier: Send + Sync {
    /// A short name for reports and logs (`self-managed`, `cluster`, `sim`).
    fn name(&self) -> &str;
    /// The parts it checks (the engine reports the others as skipped when no
    /// verifier covers them).
    fn parts(&self) -> Vec<Part>;
    /// Run the checks. Never fails: a failure is a [`Check`] with
    /// [`CheckStatus::Fail`].
    async fn verify(&self, ctx: &VerifyContext<'_>) -> Vec<Check>;
}

/// The outcome of `verify`: every check, in part order.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// The installation.
    pub installation: String,
    /// True when no check failed.
    pub ok: bool,
    /// Wall time of the whole verify (milliseconds).
    pub duration_ms: u64,
    /// The checks.
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// A report over `checks` (sorted by part, then kept in the verifiers' order).
    pub fn new(installation: impl Into<String>, mut checks: Vec<Check>, took: Duration) -> Self {
        checks.sort_by_key(|c| {
            Part::ALL
                .iter()
                .position(|p| *p == c.part)
                .unwrap_or(usize::MAX)
        });
        VerifyReport {
            installation: installation.into(),
            ok: !checks.iter().any(Check::failed),
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            checks,
        }
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.failed())
    }

    /// The skipped checks.
    pub fn skipped(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Skipped)
    }

    /// The check with this id.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Counts of (pass, fail, skipped).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |s| self.checks.iter().filter(|c| c.status == s).count();
        (
            n(CheckStatus::Pass),
            n(CheckStatus::Fail),
            n(CheckStatus::Skipped),
        )
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // A plain data struct of strings and numbers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// A table for people: `PART  CHECK  STATUS  DETAIL`, with reason and fix under each
/// failed or skipped check, and a summary line.
impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id_w = self
            .checks
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(
            f,
            "{:<8}  {:<id_w$}  {:<7}  DETAIL",
            "PART", "CHECK", "STATUS"
        )?;
        for c in &self.checks {
            writeln!(
                f,
                "{:<8}  {:<id_w$}  {:<7}  {}",
                c.part.as_str(),
                c.id,
                c.status.as_str(),
                c.summary
            )?;
            if c.status != CheckStatus::Pass {
                if let Some(r) = &c.reason {
                    if c.status == CheckStatus::Fail {
                        writeln!(f, "{:<8}  {:<id_w$}  {:<7}  why: {r}", "", "", "")?;
                    }
                }
                if let Some(x) = &c.fix {
                    writeln!(f, "{:<8}  {:<id_w$}  {:<7}  fix: {x}", "", "", "")?;
                }
            }
        }
        let (p, x, s) = self.counts();
        write!(
            f,
            "{}: {p} passed, {x} failed, {s} skipped in {:.1}s",
            if self.ok { "ok" } else { "FAILED" },
            self.duration_ms as f64 / 1000.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_with_a_failure_is_not_ok_and_prints_the_fix() {
        let r = VerifyReport::new(
            "gp",
            vec![
                Check::pass("registry.push", Part::Registry, "pushed"),
                Check::fail(
                    "database.explicit-defaults-for-timestamp",
                    Part::Database,
                    "ON",
                    "Gitpod's schema needs OFF",
                )
                .fix("SET GLOBAL explicit_defaults_for_timestamp = OFF"),
                Check::skipped("cluster.secrets", Part::Cluster, "no cluster"),
            ],
            Duration::from_millis(1500),
        );
        assert!(!r.ok);
        assert_eq!(r.counts(), (1, 1, 1));
        // part order: cluster, dns, database, registry, storage
        assert_eq!(r.checks[0].part, Part::Cluster);
        assert_eq!(r.checks[1].part, Part::Database);
        let table = r.to_string();
        assert!(table.contains("fix: SET GLOBAL"), "{table}");
        assert!(table.contains("why: Gitpod's schema needs OFF"), "{table}");
        assert!(
            table.ends_with("FAILED: 1 passed, 1 failed, 1 skipped in 1.5s"),
            "{table}"
        );
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][1]["from"], "local");
        assert_eq!(json["checks"][0]["status"], "skipped");
    }

    #[test]
    fn only_skips_and_passes_are_ok() {
        let r = VerifyReport::new(
            "gp",
            vec![Check::skipped(
                "dns.records",
                Part::Dns,
                "no load balancer yet",
            )],
            Duration::ZERO,
        );
        assert!(r.ok);
        assert_eq!(
            r.check("dns.records").map(|c| c.status),
            Some(CheckStatus::Skipped)
        );
    }
}
