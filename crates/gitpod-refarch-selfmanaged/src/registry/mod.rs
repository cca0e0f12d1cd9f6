//! Any OCI registry as the `Registry` provider (Harbor, GitLab, Artifactory, Quay,
//! Docker's distribution, a cloud registry with a robot account): nothing is
//! created, the push credentials are checked.
//!
//! - `observe` and `ensure` sign in (`GET /v2/` with the credentials, following a
//!   Bearer `WWW-Authenticate` challenge to the registry's token service as
//!   `docker login` does) and report [`RegistryOutput::External`] with the URL, the
//!   host, the user and the password. They write nothing, so a re-apply writes
//!   nothing either.
//! - `delete` never touches the registry.
//! - Errors: rejected credentials are `Credentials` (naming the user and the
//!   registry, never the password), no answer is `Transient`, an untrusted
//!   certificate is `InvalidInput` saying to set `registry.caFile`.
//!
//! [`RegistryVerifier`] (and the crate's `DataPlaneVerifier`) runs the `registry.*`
//! checks of `verify` with the credentials in the installer's `container-registry`
//! secret: `registry.auth`, `registry.push` (a tiny image under
//! `<url>/gitpod-refarch-verify:probe-<random>`), `registry.pull` (the manifest and
//! the layer back, digests equal) and `registry.cleanup` (the manifest deleted by
//! digest; a user that may not delete leaves the tag, named in the check, and the
//! check is skipped, not failed).
//!
//! TLS: the system's roots plus `ca_pem`. reqwest's `rustls` feature uses aws-lc-rs
//! unless the process installed a default rustls provider, so no call here panics
//! for a missing provider.

mod http;
mod probe;
mod url;

use std::sync::OnceLock;
use std::time::Duration;

use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress, ProviderInfo};
use gitpod_refarch::resource::{Output, RegistryOutput, RegistrySpec};
use gitpod_refarch::spec::RegistryMode;
use gitpod_refarch::verify::{Check, Part, VerifyContext};
use gitpod_refarch::{async_trait, Error, Registry, Result, Secret, Verifier};

pub use probe::PROBE_REPOSITORY;

use self::url::RegistryUrl;
use crate::reach::Reach;

/// How long one registry request may take to connect (and a third of its budget).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The registry and the credentials Gitpod pushes with.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The image prefix Gitpod pushes under (`harbor.corp.example.com/gitpod`). An
    /// `http://` prefix means plain HTTP (a test registry only).
    pub url: String,
    /// The push user (`robot$gitpod-push`).
    pub username: String,
    /// Its password or token.
    pub password: Secret,
    /// A private CA (PEM) for the registry's certificate.
    pub ca_pem: Option<String>,
    /// Speak plain HTTP (a test registry on 127.0.0.1 only).
    pub insecure_http: bool,
}

impl RegistryConfig {
    /// A config for `url` with the push user; HTTPS (unless `url` starts with
    /// `http://`) with the system's roots.
    pub fn new(url: impl Into<String>, username: impl Into<String>, password: Secret) -> Self {
        RegistryConfig {
            url: url.into(),
            username: username.into(),
            password,
            ca_pem: None,
            insecure_http: false,
        }
    }

    /// Trust this CA (PEM) for the registry's certificate.
    #[must_use]
    pub fn with_ca_pem(mut self, ca_pem: impl Into<String>) -> Self {
        self.ca_pem = Some(ca_pem.into());
        self
    }

    /// Speak plain HTTP.
    #[must_use]
    pub fn with_insecure_http(mut self, insecure_http: bool) -> Self {
        self.insecure_http = insecure_http;
        self
    }

    /// Check the config without any call: the URL is an image prefix, user and
    /// password are set, the CA parses. Errors name the spec field.
    pub fn check(&self) -> Result<()> {
        self.parsed_url().map(|_| ())?;
        if self.username.trim().is_empty() {
            return Err(Error::invalid_input("registry.username: is empty"));
        }
        if self.password.expose().is_empty() {
            return Err(Error::invalid_input("registry.password: is empty"));
        }
        if let Some(pem) = &self.ca_pem {
            http::parse_ca(pem)?;
        }
        Ok(())
    }

    fn parsed_url(&self) -> Result<RegistryUrl> {
        RegistryUrl::parse("registry.url", &self.url, self.insecure_http)
    }
}

/// The `Registry` provider on an existing registry.
pub struct ExistingRegistry {
    config: RegistryConfig,
    client: OnceLock<reqwest::Client>,
}

impl std::fmt::Debug for ExistingRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExistingRegistry")
            .field("config", &self.config)
            .finish()
    }
}

impl ExistingRegistry {
    /// A provider for the registry in `config` (checked on first use; see
    /// [`RegistryConfig::check`] to check it earlier).
    pub fn new(config: RegistryConfig) -> Self {
        ExistingRegistry {
            config,
            client: OnceLock::new(),
        }
    }

    /// Its config.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// What the installer gets: the URL (`http://` kept for plain HTTP), the host,
    /// the user and the password.
    pub fn output(&self) -> Result<RegistryOutput> {
        self.config.check()?;
        let url = self.config.parsed_url()?;
        Ok(RegistryOutput::External {
            url: url.to_config_url(),
            server: url.host.clone(),
            username: self.config.username.clone(),
            password: self.config.password.clone(),
        })
    }

    fn client(&self) -> Result<&reqwest::Client> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let c = http::build_client(self.config.ca_pem.as_deref(), TIMEOUT)?;
        Ok(self.client.get_or_init(|| c))
    }

    /// Sign in to the registry (`GET /v2/`) with the credentials; no write.
    pub async fn sign_in(&self) -> Result<()> {
        self.config.check()?;
        let url = self.config.parsed_url()?;
        let session = http::Session {
            client: self.client()?,
            url: &url,
            username: &self.config.username,
            password: &self.config.password,
        };
        session.ping().await.map(|_| ()).map_err(|f| {
            http::provider_error(f, &url, &self.config.username, self.config.ca_pem.is_some())
        })
    }

    /// `spec` as this provider has it: its `url` is this registry's.
    fn check_spec(&self, spec: &RegistrySpec) -> Result<RegistrySpec> {
        if spec.mode != RegistryMode::Managed {
            return Err(Error::invalid_input(
                "registry.mode: an existing registry needs `managed` (the in-cluster registry is \
                 Gitpod's own)",
            ));
        }
        let mine = self.config.parsed_url()?;
        let mut actual = spec.clone();
        let same = match &spec.url {
            None => true,
            Some(u) => RegistryUrl::parse("registry.url", u, false)
                .map(|theirs| theirs.same_place(&mine))
                .unwrap_or(false),
        };
        if !same {
            actual.url = Some(mine.to_config_url());
        }
        Ok(actual)
    }
}

#[async_trait]
impl Registry for ExistingRegistry {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("oci-registry").with_self_managed(true)
    }

    async fn observe(&self, spec: &RegistrySpec) -> Result<Option<Observed<RegistrySpec>>> {
        let actual = self.check_spec(spec)?;
        let output = self.output()?;
        self.sign_in().await?;
        Ok(Some(Observed::ready(
            actual,
            Some(Output::Registry(output)),
        )))
    }

    async fn ensure(&self, spec: &RegistrySpec, _inputs: &Inputs) -> Result<Progress> {
        let actual = self.check_spec(spec)?;
        if actual.url != spec.url {
            return Err(Error::invalid_input(format!(
                "registry.url: the plan names {}, this provider is configured for {}",
                spec.url.as_deref().unwrap_or("-"),
                actual.url.as_deref().unwrap_or("-"),
            )));
        }
        let output = self.output()?;
        self.sign_in().await?;
        Ok(Progress::Done(Some(Output::Registry(output))))
    }

    /// Not ours: the registry and its images stay.
    async fn delete(&self, _spec: &RegistrySpec) -> Result<Progress> {
        Ok(Progress::Done(None))
    }

    async fn poll(&self, _op: &Operation) -> Result<Progress> {
        Ok(Progress::Done(None))
    }
}

/// The verify checks of this part with a private CA to trust.
pub(crate) async fn checks_with_ca(
    ctx: &VerifyContext<'_>,
    reach: &Reach,
    ca_pem: Option<&str>,
) -> Vec<Check> {
    probe::run(ctx, reach, ca_pem).await
}

/// The `registry.*` checks alone, as a [`Verifier`]: sign in, push, pull, delete
/// with the credentials in the installer's `container-registry` secret, whichever
/// provider made them.
#[derive(Debug, Clone)]
pub struct RegistryVerifier {
    self_managed: bool,
    timeout: Duration,
    ca_pem: Option<String>,
}

impl Default for RegistryVerifier {
    fn default() -> Self {
        RegistryVerifier::new()
    }
}

impl RegistryVerifier {
    /// Checks for a cloud-managed registry (unreachable = skipped), 10 s per step,
    /// the system's roots.
    pub fn new() -> Self {
        RegistryVerifier {
            self_managed: false,
            timeout: TIMEOUT,
            ca_pem: None,
        }
    }

    /// The registry is self-managed: the SDK reached it during apply, so unreachable
    /// is a failure.
    #[must_use]
    pub fn self_managed(mut self, self_managed: bool) -> Self {
        self.self_managed = self_managed;
        self
    }

    /// The budget of each network step.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Trust this CA (PEM) for the registry's certificate.
    #[must_use]
    pub fn ca_pem(mut self, ca_pem: impl Into<String>) -> Self {
        self.ca_pem = Some(ca_pem.into());
        self
    }
}

#[async_trait]
impl Verifier for RegistryVerifier {
    fn name(&self) -> &str {
        "registry"
    }

    fn parts(&self) -> Vec<Part> {
        vec![Part::Registry]
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Vec<Check> {
        let reach = Reach {
            expect_reachable: self.self_managed,
            timeout: self.timeout,
        };
        checks_with_ca(ctx, &reach, self.ca_pem.as_deref()).await
    }
}
