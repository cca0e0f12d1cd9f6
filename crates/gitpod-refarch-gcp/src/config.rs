//! How to reach GCP: the project and region, the credentials, an endpoint override
//! for a local fake, the clients' own retries, and the clock and retry policy of the
//! provider's own retry loops.

use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::{Clock, RetryPolicy, TokioClock};
use gitpod_refarch::spec::ReferenceArchitecture;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use google_cloud_auth::credentials::Credentials;

/// Which credentials the clients use.
#[non_exhaustive]
#[derive(Clone, PartialEq)]
pub enum GcpCredentials {
    /// Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
    /// user credentials, the metadata server, workload identity federation).
    ApplicationDefault,
    /// A service-account key JSON.
    ServiceAccountKey(Secret),
    /// No credentials at all: only for a local fake of the APIs.
    Anonymous,
}

impl std::fmt::Debug for GcpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GcpCredentials::ApplicationDefault => f.write_str("ApplicationDefault"),
            GcpCredentials::ServiceAccountKey(_) => f.write_str("ServiceAccountKey(<redacted>)"),
            GcpCredentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Where workspace images go.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcpRegistry {
    /// An Artifact Registry Docker repository in the region (the default).
    ArtifactRegistry,
    /// The legacy `gcr.io` host (Container Registry is retired; existing users only).
    Gcr,
}

/// The policy of the provider's own retry loops ([`GcpConfig::retry`]) by default:
/// the IAM policy read-modify-write retries a write that lost an etag race up to 8
/// times in all, after 50 ms, growing to at most 400 ms, without jitter.
pub fn default_retry() -> RetryPolicy {
    let mut p = RetryPolicy::default();
    p.initial_backoff = Duration::from_millis(50);
    p.max_backoff = Duration::from_millis(400);
    p.multiplier = 1.5;
    p.jitter = false;
    p.max_attempts = 8;
    p
}

/// How to reach GCP, and the project-level choices of the spec.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct GcpConfig {
    /// The project id.
    pub project: String,
    /// Region (the spec's `cluster.region`).
    pub region: String,
    /// Create the project if it does not exist.
    pub create_project: bool,
    /// Billing account to link (`XXXXXX-XXXXXX-XXXXXX`).
    pub billing_account: Option<String>,
    /// Use Workload Identity for external-dns and cert-manager instead of a DNS key.
    pub workload_identity: bool,
    /// Send every call to this URL (a local fake) instead of the Google endpoints.
    pub endpoint_url: Option<String>,
    /// The credentials.
    pub credentials: GcpCredentials,
    /// How often pending operations are polled.
    pub poll_interval: Duration,
    /// The registry flavour.
    pub registry: GcpRegistry,
    /// Attempts per call, first included, for what the clients retry themselves
    /// (idempotent calls and failures before the request was sent); the engine
    /// retries above this by error class.
    pub max_attempts: u32,
    /// First backoff of the clients' own retries.
    pub initial_backoff: Duration,
    /// The clock the provider's own retry loops sleep on (give the engine's, so that
    /// virtual time applies there too). Default: tokio's.
    pub clock: Arc<dyn Clock>,
    /// The policy of the provider's own retry loops inside one call (the IAM
    /// policy's read-modify-write after an etag conflict). Default: [`default_retry`].
    pub retry: RetryPolicy,
}

impl PartialEq for GcpConfig {
    /// Equal settings and the same clock.
    fn eq(&self, other: &Self) -> bool {
        self.project == other.project
            && self.region == other.region
            && self.create_project == other.create_project
            && self.billing_account == other.billing_account
            && self.workload_identity == other.workload_identity
            && self.endpoint_url == other.endpoint_url
            && self.credentials == other.credentials
            && self.poll_interval == other.poll_interval
            && self.registry == other.registry
            && self.max_attempts == other.max_attempts
            && self.initial_backoff == other.initial_backoff
            && Arc::ptr_eq(&self.clock, &other.clock)
            && self.retry == other.retry
    }
}

impl GcpConfig {
    /// Settings for `project` in `region` with Application Default Credentials.
    pub fn new(project: impl Into<String>, region: impl Into<String>) -> Self {
        GcpConfig {
            project: project.into(),
            region: region.into(),
            create_project: false,
            billing_account: None,
            workload_identity: false,
            endpoint_url: None,
            credentials: GcpCredentials::ApplicationDefault,
            poll_interval: Duration::from_secs(10),
            registry: GcpRegistry::ArtifactRegistry,
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            clock: Arc::new(TokioClock::new()),
            retry: default_retry(),
        }
    }

    /// Settings from a spec's `gcp` section and region.
    pub fn for_spec(spec: &ReferenceArchitecture) -> Result<Self> {
        let g = spec.gcp.as_ref().ok_or_else(|| {
            Error::invalid_input("the spec has no gcp section (gcp.project is required)")
        })?;
        let mut c = Self::new(g.project.clone(), spec.cluster.region.clone());
        c.create_project = g.create_project;
        c.billing_account = g.billing_account.clone();
        c.workload_identity = g.workload_identity;
        Ok(c)
    }

    /// Send every call to `url` (a local fake), with anonymous credentials.
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self.credentials = GcpCredentials::Anonymous;
        self
    }

    /// Use these credentials.
    #[must_use]
    pub fn credentials(mut self, c: GcpCredentials) -> Self {
        self.credentials = c;
        self
    }

    /// Poll interval for pending operations.
    #[must_use]
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Attempts per call of the clients' own retries.
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// First backoff of the clients' own retries.
    #[must_use]
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// Use `gcr.io` instead of Artifact Registry.
    #[must_use]
    pub fn registry(mut self, r: GcpRegistry) -> Self {
        self.registry = r;
        self
    }

    /// The clock of the provider's own retry loops (pass the engine's).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The policy of the provider's own retry loops (see [`GcpConfig::retry`]).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Refuse a bad project id, region, endpoint or project creation without billing,
    /// before any call.
    pub(crate) fn check(&self) -> Result<()> {
        let p = &self.project;
        let ok = (6..=30).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && !p.ends_with('-')
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(Error::invalid_input(format!(
                "'{p}' is not a project id: 6-30 lower-case letters, digits, '-', starting with a letter"
            )));
        }
        if self.region.is_empty() {
            return Err(Error::invalid_input("the GCP region is empty"));
        }
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::invalid_input(format!(
                    "endpoint '{url}' must start with http:// or https://"
                )));
            }
        }
        if self.create_project && self.billing_account.is_none() {
            return Err(Error::invalid_input(
                "creating a project needs gcp.billingAccount",
            ));
        }
        Ok(())
    }

    /// The credentials every client uses.
    pub(crate) fn build_credentials(&self) -> Result<Credentials> {
        use google_cloud_auth::credentials as creds;
        match &self.credentials {
            GcpCredentials::Anonymous => Ok(creds::anonymous::Builder::new().build()),
            GcpCredentials::ApplicationDefault => creds::Builder::default().build().map_err(|e| {
                Error::new(
                    ErrorKind::Credentials,
                    "no Application Default Credentials: set GOOGLE_APPLICATION_CREDENTIALS \
                     or run on a machine with a service account",
                )
                .with_source(e)
            }),
            GcpCredentials::ServiceAccountKey(key) => {
                let json: serde_json::Value = serde_json::from_str(key.expose()).map_err(|_| {
                    Error::new(
                        ErrorKind::Credentials,
                        "the service-account key is not JSON",
                    )
                })?;
                // The parser's error may quote the key's values: it is not kept.
                creds::service_account::Builder::new(json)
                    .build()
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::Credentials,
                            "the service-account key is not usable (a key JSON as \
                             `gcloud iam service-accounts keys create` writes it, with \
                             type, client_email and private_key)",
                        )
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_reaches_debug() {
        let key =
            r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nSEKRIT\n"}"#;
        let c = GcpConfig::new("my-project", "europe-west1").credentials(
            GcpCredentials::ServiceAccountKey(Secret::new(key.to_string())),
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("SEKRIT"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn the_default_retry_is_the_old_policy_loop() {
        // Before: 8 attempts in all, sleeping 50 ms × attempt (1.4 s in all).
        let p = default_retry();
        assert_eq!(p.attempts_for(ErrorKind::Conflict), 8);
        assert_eq!(p.delay(1), Duration::from_millis(50));
        let total: Duration = (1..8).map(|a| p.delay(a)).sum();
        assert!(
            total > Duration::from_millis(1300) && total < Duration::from_millis(1600),
            "{total:?}"
        );
        assert!(p.delay(7) <= Duration::from_millis(400));
    }

    #[test]
    fn bad_configuration_is_refused_before_any_call() {
        for (project, endpoint) in [
            ("Bad_Project", None),
            ("short", None),
            ("ends-with-dash-", None),
            ("good-project", Some("ftp://127.0.0.1:1")),
        ] {
            let mut c = GcpConfig::new(project, "europe-west1");
            if let Some(e) = endpoint {
                c = c.endpoint_url(e);
            }
            assert_eq!(
                c.check().unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{project}"
            );
        }
        let mut c = GcpConfig::new("good-project", "europe-west1");
        c.create_project = true;
        assert_eq!(
            c.check().unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "no billing account"
        );
        let c = GcpConfig::new("good-project", "europe-west1").credentials(
            GcpCredentials::ServiceAccountKey(Secret::new("not json".into())),
        );
        assert_eq!(
            c.build_credentials().unwrap_err().kind(),
            ErrorKind::Credentials
        );
    }
}
