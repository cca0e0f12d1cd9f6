//! How to reach AWS: region, endpoint override, credentials, the SDK's own retries
//! and timeouts, and the clock and retry policy of the provider's own waits.

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use gitpod_refarch::engine::{Clock, RetryPolicy, TokioClock};
use gitpod_refarch::spec::ReferenceArchitecture;
use gitpod_refarch::Secret;

/// How to reach AWS.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// Region (the spec's `cluster.region`).
    pub region: String,
    /// Endpoint override for every service (moto or another emulator). Forces S3
    /// path-style addressing.
    pub endpoint_url: Option<String>,
    /// Refuse to run unless the credentials belong to this account.
    pub expected_account: Option<String>,
    /// Attempts per SDK call, first included (the engine retries above this).
    pub max_attempts: u32,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one attempt.
    pub attempt_timeout: Duration,
    /// How often pending EKS/RDS operations are polled.
    pub poll_interval: Duration,
    /// Static credentials (access key id, secret) instead of the standard chain.
    pub static_credentials: Option<(String, Secret)>,
    /// The session token of temporary static credentials (STS, SSO).
    pub session_token: Option<Secret>,
    /// First backoff of the SDK's own retries.
    pub initial_backoff: Duration,
    /// The clock the provider's own waits sleep on (the engine's, in tests on
    /// virtual time).
    pub clock: Arc<dyn Clock>,
    /// Retries inside one step (a new ECR key that is not accepted yet).
    pub retry: RetryPolicy,
}

impl AwsConfig {
    /// Settings for `region` with the standard credential chain.
    pub fn new(region: impl Into<String>) -> Self {
        AwsConfig {
            region: region.into(),
            endpoint_url: None,
            expected_account: None,
            max_attempts: 3,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(20),
            static_credentials: None,
            session_token: None,
            initial_backoff: Duration::from_millis(200),
            clock: Arc::new(TokioClock::new()),
            retry: key_propagation_policy(),
        }
    }

    /// Settings from a spec: its region and expected account.
    pub fn for_spec(spec: &ReferenceArchitecture) -> Self {
        let mut c = Self::new(spec.cluster.region.clone());
        c.expected_account = spec.aws.as_ref().and_then(|a| a.account_id.clone());
        c
    }

    /// Send every call to `url` (moto, LocalStack).
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Use these credentials instead of the standard chain.
    #[must_use]
    pub fn static_credentials(mut self, access_key_id: impl Into<String>, secret: Secret) -> Self {
        self.static_credentials = Some((access_key_id.into(), secret));
        self
    }

    /// The session token that goes with temporary [`AwsConfig::static_credentials`]
    /// (STS `AssumeRole`, IAM Identity Center); used only with them.
    #[must_use]
    pub fn session_token(mut self, token: Secret) -> Self {
        self.session_token = Some(token);
        self
    }

    /// Attempts per SDK call.
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// First backoff of the SDK's own retries.
    #[must_use]
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// Poll interval for pending operations.
    #[must_use]
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// The clock the provider's own waits use (pass the engine's).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The retry policy of waits inside one step.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Load the SDK configuration (no call is made).
    pub async fn load(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(self.max_attempts)
                    .with_initial_backoff(self.initial_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.connect_timeout)
                    .operation_attempt_timeout(self.attempt_timeout)
                    .build(),
            );
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some((id, secret)) = &self.static_credentials {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                id.clone(),
                secret.expose().clone(),
                self.session_token.as_ref().map(|t| t.expose().clone()),
                None,
                "gitpod-refarch-static",
            ));
        }
        loader.load().await
    }
}

/// A new IAM access key takes seconds to be accepted: 12 attempts, 250 ms growing
/// linearly-ish (doubling, capped at 3 s), about 20 s in all.
fn key_propagation_policy() -> RetryPolicy {
    let mut p = RetryPolicy::default();
    p.initial_backoff = Duration::from_millis(250);
    p.max_backoff = Duration::from_secs(3);
    p.multiplier = 2.0;
    p.jitter = false;
    p.max_attempts = 12;
    p.budget = Duration::from_secs(60);
    p.propagation_budget = Duration::from_secs(60);
    p
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aws_credential_types::provider::ProvideCredentials;

    async fn credentials(config: &AwsConfig) -> aws_credential_types::Credentials {
        let sdk = config.load().await;
        sdk.credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn static_credentials_carry_the_session_token() {
        let config = AwsConfig::new("eu-west-1")
            .static_credentials("ASIAEXAMPLE", Secret::new("secret".into()))
            .session_token(Secret::new("the-token".into()));
        let debug = format!("{config:?}");
        assert!(!debug.contains("the-token"), "{debug}");
        let creds = credentials(&config).await;
        assert_eq!(creds.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(creds.session_token(), Some("the-token"));

        let long_lived = AwsConfig::new("eu-west-1")
            .static_credentials("AKIAEXAMPLE", Secret::new("secret".into()));
        assert_eq!(credentials(&long_lived).await.session_token(), None);
    }
}
