//! The bootstrap's settings: where cluster tokens come from, how cert-manager is
//! installed, the delegation check, poll hints, and how one API call is retried (with
//! which clock).

use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::{Clock, RetryPolicy, TokioClock};
use gitpod_refarch::provider::ClusterCredentials;
use gitpod_refarch::Result;

use crate::api;
use crate::certmanager::CertManagerSource;
use crate::delegation::DelegationCheck;

/// Settings of the bootstrap.
#[non_exhaustive]
#[derive(Clone)]
pub struct BootstrapConfig {
    /// Where cluster tokens come from (the cloud provider that made the cluster).
    pub credentials: Arc<dyn ClusterCredentials>,
    /// How cert-manager is installed (default: helm if present, else the pinned manifest).
    pub cert_manager: CertManagerSource,
    /// The delegation check run while the certificate is not ready (`None`: skip it).
    pub delegation: Option<DelegationCheck>,
    /// The poll hint of the operations it returns.
    pub poll_interval: Duration,
    /// The clock the retries of one API call sleep on (default: tokio's timer). Give
    /// it the engine's clock, so virtual time in tests applies here too.
    pub clock: Arc<dyn Clock>,
    /// How one API call is retried while it is throttled (429) or fails transiently
    /// (5xx, server unreachable); the engine retries the whole step on top. Default:
    /// [`api::call_retry_policy`] (4 attempts, 50, 100 and 200 ms apart).
    pub retry: RetryPolicy,
    /// A bring-your-own certificate to write as its `kubernetes.io/tls` Secret in the
    /// Gitpod namespace (the `gitpod-namespace` step); `None`: cert-manager issues it,
    /// or the Secret already exists.
    pub tls_certificate: Option<gitpod_refarch::tls::TlsCertificate>,
}

impl std::fmt::Debug for BootstrapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapConfig")
            .field("cert_manager", &self.cert_manager)
            .field("delegation", &self.delegation.is_some())
            .field("poll_interval", &self.poll_interval)
            .field("clock", &self.clock)
            .field("retry", &self.retry)
            .field("tls_certificate", &self.tls_certificate)
            .finish_non_exhaustive()
    }
}

impl BootstrapConfig {
    /// Defaults, with tokens from `credentials`.
    pub fn new(credentials: Arc<dyn ClusterCredentials>) -> Self {
        BootstrapConfig {
            credentials,
            cert_manager: CertManagerSource::Auto,
            delegation: Some(DelegationCheck::new()),
            poll_interval: Duration::from_secs(5),
            clock: Arc::new(TokioClock::new()),
            retry: api::call_retry_policy(),
            tls_certificate: None,
        }
    }

    /// Write this bring-your-own certificate to its Secret in the Gitpod namespace
    /// ([`gitpod_refarch::tls::TlsCertificate::from_spec`] reads the spec's files).
    #[must_use]
    pub fn tls_certificate(mut self, tls: gitpod_refarch::tls::TlsCertificate) -> Self {
        self.tls_certificate = Some(tls);
        self
    }

    /// How cert-manager is installed.
    #[must_use]
    pub fn cert_manager(mut self, source: CertManagerSource) -> Self {
        self.cert_manager = source;
        self
    }

    /// The delegation check (`None` to skip it).
    #[must_use]
    pub fn delegation(mut self, check: Option<DelegationCheck>) -> Self {
        self.delegation = check;
        self
    }

    /// The poll hint of returned operations.
    #[must_use]
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// The clock the retries of one API call sleep on (the engine's, so a paused or
    /// simulated clock applies to them too).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How one API call is retried while it is throttled or fails transiently (other
    /// errors are returned at once: the engine decides about them).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Check the settings with no IO (a malformed manifest URL or digest); call it
    /// before an apply to fail before any cloud call.
    pub fn validate(&self) -> Result<()> {
        if let CertManagerSource::Manifest(m) = &self.cert_manager {
            m.validate()?;
        }
        Ok(())
    }
}
