//! [`Engine::verify`]: run every verifier against the outputs of the last apply and the
//! installer bundle rendered from them, and report each check.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

use super::{Engine, Event};
use crate::error::{Error, ErrorKind, Result};
use crate::outputs::Outputs;
use crate::resource::Domain;
use crate::spec::ReferenceArchitecture;
use crate::verify::{Check, Part, Verifier, VerifyContext, VerifyReport};

/// How [`Engine::verify_with`] runs.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Run the checks that need to run inside the cluster instead of reporting a part
    /// unreachable from here as skipped (default false).
    pub in_cluster: bool,
    /// The budget of each verifier (default 120 s); one that has not finished by then
    /// gives a failed `<part>.verifier-timeout` check for each part it covers.
    pub timeout: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            in_cluster: false,
            timeout: Duration::from_secs(120),
        }
    }
}

impl VerifyOptions {
    /// The defaults: local checks only, 120 s per verifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also run in-cluster checks.
    #[must_use]
    pub fn in_cluster(mut self, in_cluster: bool) -> Self {
        self.in_cluster = in_cluster;
        self
    }

    /// The budget of each verifier.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The provider domain whose provider owns `part`.
fn domain_of(part: Part) -> Domain {
    match part {
        Part::Cluster => Domain::Cluster,
        Part::Dns => Domain::Dns,
        Part::Database => Domain::Database,
        Part::Registry => Domain::Registry,
        Part::Storage => Domain::ObjectStore,
    }
}

/// Which installer input a part contributes, when it is missing from `outputs`.
fn missing_output(outputs: &Outputs, part: Part) -> Option<&'static str> {
    match part {
        Part::Database if outputs.database().is_none() => Some("database"),
        Part::Registry if outputs.registry().is_none() => Some("registry"),
        Part::Storage if outputs.storage().is_none() => Some("object storage"),
        _ => None,
    }
}

impl Engine {
    /// [`Engine::verify_with`] with the default [`VerifyOptions`].
    pub async fn verify(&self, spec: &ReferenceArchitecture) -> Result<VerifyReport> {
        self.verify_with(spec, VerifyOptions::default()).await
    }

    /// Check every part as Gitpod will use it, with the credentials in the installer
    /// bundle rendered from the outputs of the last apply.
    ///
    /// An invalid spec, or one whose parts' `provider` disagrees with the providers
    /// routed to them, fails before any call. Without recorded outputs every part is
    /// reported skipped ("not applied yet"); when the bundle cannot be rendered yet
    /// (outputs of an interrupted apply), every part is skipped and the missing output
    /// is named. Otherwise every verifier of the [`crate::Providers`] runs, all at
    /// once, each within [`VerifyOptions::timeout`]; a part no verifier covers gets one
    /// skipped `<part>.verifier` check. Each check is also an [`Event::Checked`],
    /// followed by one [`Event::Verified`].
    ///
    /// Failed checks are in the report ([`VerifyReport::ok`]), not an error. It fails
    /// with [`ErrorKind::Cancelled`] when [`Engine::cancel`] stops it.
    pub async fn verify_with(
        &self,
        spec: &ReferenceArchitecture,
        options: VerifyOptions,
    ) -> Result<VerifyReport> {
        crate::validate::validate_with(spec, self.sources.as_ref())?;
        self.providers.check_choices(spec)?;
        let start = self.clock.now();
        let outputs = self.outputs(&spec.name).await?;
        let mut checks: Vec<Check> = Vec::new();
        if outputs.is_empty() {
            for part in Part::ALL {
                checks.push(self.emit_check(Check::skipped(
                    format!("{part}.applied"),
                    part,
                    "not applied yet (run apply)",
                )));
            }
            return Ok(self.finish(spec, checks, start));
        }
        let bundle = match self.installer_bundle(spec).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::InvalidInput => {
                for part in Part::ALL {
                    let reason = match missing_output(&outputs, part) {
                        Some(what) => format!("no {what} output recorded yet (run apply)"),
                        None => format!(
                            "the installer bundle cannot be rendered yet ({}); run apply",
                            e.message()
                        ),
                    };
                    checks.push(self.emit_check(Check::skipped(
                        format!("{part}.applied"),
                        part,
                        reason,
                    )));
                }
                return Ok(self.finish(spec, checks, start));
            }
            Err(e) => return Err(e),
        };
        let ctx = VerifyContext::new(spec, &outputs, &bundle).with_in_cluster(options.in_cluster);

        let verifiers: Vec<Arc<dyn Verifier>> = self.providers.verifiers().to_vec();
        let mut running: FuturesUnordered<_> = verifiers
            .iter()
            .map(|v| {
                let ctx = &ctx;
                let timeout = options.timeout;
                async move {
                    let work = v.verify(ctx);
                    let limit = self.clock.sleep(timeout);
                    futures::pin_mut!(work);
                    match futures::future::select(work, limit).await {
                        futures::future::Either::Left((checks, _)) => checks,
                        futures::future::Either::Right(_) => v
                            .parts()
                            .into_iter()
                            .map(|part| timed_out(v.name(), part, timeout))
                            .collect(),
                    }
                }
            })
            .collect();
        loop {
            let next = {
                let cancelled = self.cancel.cancelled();
                futures::pin_mut!(cancelled);
                match futures::future::select(running.next(), cancelled).await {
                    futures::future::Either::Left((next, _)) => next,
                    futures::future::Either::Right(_) => {
                        return Err(Error::new(
                            ErrorKind::Cancelled,
                            format!(
                                "verify was cancelled with {} verifier(s) still running",
                                running.len()
                            ),
                        ))
                    }
                }
            };
            let Some(done) = next else { break };
            checks.extend(done.into_iter().map(|c| self.emit_check(c)));
        }
        drop(running);

        let covered: BTreeSet<Part> = verifiers.iter().flat_map(|v| v.parts()).collect();
        for part in Part::ALL {
            if !covered.contains(&part) {
                let provider = self.providers.info(domain_of(part)).name;
                checks.push(self.emit_check(Check::skipped(
                    format!("{part}.verifier"),
                    part,
                    format!("no verifier for {part} (provider {provider})"),
                )));
            }
        }
        Ok(self.finish(spec, checks, start))
    }

    fn emit_check(&self, c: Check) -> Check {
        self.emit(Event::Checked {
            id: c.id.clone(),
            part: c.part,
            status: c.status,
            summary: c.summary.clone(),
        });
        c
    }

    fn finish(
        &self,
        spec: &ReferenceArchitecture,
        checks: Vec<Check>,
        start: Duration,
    ) -> VerifyReport {
        let elapsed = self.clock.now().saturating_sub(start);
        let report = VerifyReport::new(spec.name.clone(), checks, elapsed);
        let (passed, failed, skipped) = report.counts();
        self.emit(Event::Verified {
            installation: report.installation.clone(),
            ok: report.ok,
            passed,
            failed,
            skipped,
            elapsed,
        });
        report
    }
}

fn timed_out(verifier: &str, part: Part, timeout: Duration) -> Check {
    Check::fail(
        format!("{part}.verifier-timeout"),
        part,
        format!(
            "the {verifier} verifier did not finish within {:.1}s",
            timeout.as_secs_f64()
        ),
        format!("its {part} checks did not complete, so nothing is known about {part}"),
    )
    .fix(format!(
        "check that {part} answers from here, or give verify more time"
    ))
    .took(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::CheckStatus;

    #[test]
    fn options_default_to_local_checks_and_two_minutes() {
        let o = VerifyOptions::new();
        assert!(!o.in_cluster);
        assert_eq!(o.timeout, Duration::from_secs(120));
        let o = o.in_cluster(true).timeout(Duration::from_secs(5));
        assert!(o.in_cluster);
        assert_eq!(o.timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_timeout_is_a_failure_with_a_fix() {
        let c = timed_out("slow", Part::Database, Duration::from_secs(3));
        assert_eq!(c.id, "database.verifier-timeout");
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.fix.is_some());
        assert_eq!(c.duration_ms, 3000);
    }
}
