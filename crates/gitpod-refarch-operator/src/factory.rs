//! Providers for one installation, built from its spec and credentials, and the cloud
//! account whose budget it shares.
//!
//! - [`SimFactory`]: the in-process simulated cloud (tests, demos, benchmarks).
//! - [`AwsFactory`] (feature `aws`): AWS with the credentials of the installation's
//!   Secret (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
//!   `AWS_SESSION_TOKEN`) or, without one, the controller's own identity (the
//!   standard chain: IRSA, instance profile, environment).
//! - [`GcpFactory`] (feature `gcp`): GCP with the service account key JSON of the
//!   Secret (`GOOGLE_CREDENTIALS`) or, without one, Application Default Credentials
//!   (GKE Workload Identity, the metadata server).
//! - [`AzureFactory`] (feature `azure`): Azure with the service principal of the
//!   Secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`) or, without
//!   one, the controller's own identity (Workload Identity, a managed identity).
//! - [`ByCloud`]: one controller for several clouds, each installation sent to the
//!   factory of its spec's `cloud`.
//!
//! A credentials Secret the installation names must hold every key its cloud needs:
//! one that lacks any (absent or blank) is refused with [`ErrorKind::Credentials`]
//! (naming the keys it lacks and holds, never a value) rather than silently replaced
//! by the controller's own identity, except on AWS, where a Secret with neither key
//! has always meant the controller's identity.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use gitpod_refarch::engine::{Clock, TokioClock};
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress, ProviderInfo, Providers};
use gitpod_refarch::resource::{
    ClusterResource, DatabaseResource, DnsResource, InClusterResource, ObjectStorageSpec,
    RegistrySpec,
};
use gitpod_refarch::secret::Sources;
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::Cloud;
use gitpod_refarch::{
    ClusterBootstrap, ClusterProvider, Database, DnsProvider, Error, ErrorKind, ObjectStore,
    ReferenceArchitecture, Registry, Result, Secret,
};

/// Cloud credentials read from the Secret an installation names (key to value).
pub type Credentials = BTreeMap<String, Secret>;

/// Builds the providers of one installation.
#[async_trait]
pub trait ProviderFactory: Send + Sync {
    /// The providers for `spec`, with the credentials of its Secret (`None`: the
    /// controller's own identity). Bad credentials are an error here (a fail-fast
    /// preflight), so the installation is `Degraded` with the reason. The secrets
    /// and files the spec names (self-managed parts, a brought certificate) are read
    /// from `sources` (the same Secret, [`crate::sources::SecretSources`]), never
    /// from the controller's environment or disk.
    async fn providers(
        &self,
        spec: &ReferenceArchitecture,
        credentials: Option<&Credentials>,
        sources: &dyn Sources,
    ) -> Result<Providers>;

    /// The account (project, subscription) the installation's cloud calls count
    /// against, as `<cloud>:<id>`; installations with the same account share one
    /// budget. Called after [`ProviderFactory::providers`] succeeded for the same
    /// spec and credentials (so a preflight's answer may be used).
    fn account(&self, spec: &ReferenceArchitecture, credentials: Option<&Credentials>) -> String;
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        // Nothing here is left half-updated by a panic: keep going.
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Refuse a spec for another cloud than the factory's, before any call.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn check_cloud(spec: &ReferenceArchitecture, cloud: Cloud) -> Result<()> {
    if spec.cloud == cloud {
        return Ok(());
    }
    Err(Error::invalid_input(format!(
        "this factory runs {} installations; the spec's cloud is {}",
        cloud.as_str(),
        spec.cloud.as_str()
    )))
}

/// Without the `selfmanaged` feature the controller builds no self-managed part:
/// refuse a spec that names one, before any call, rather than let the cloud make
/// what the user runs.
#[cfg(all(
    not(feature = "selfmanaged"),
    any(feature = "aws", feature = "gcp", feature = "azure")
))]
fn refuse_self_managed(spec: &ReferenceArchitecture) -> Result<()> {
    let own: Vec<&str> = [
        ("database", spec.database.is_self_managed()),
        ("dns", spec.dns.is_self_managed()),
        ("registry", spec.registry.is_self_managed()),
        ("storage", spec.storage.is_self_managed()),
    ]
    .into_iter()
    .filter_map(|(part, own)| own.then_some(part))
    .collect();
    if own.is_empty() {
        return Ok(());
    }
    Err(Error::invalid_input(format!(
        "{}: provider selfManaged needs a controller built with the `selfmanaged` \
         feature (on by default)",
        own.iter()
            .map(|p| format!("{p}.provider"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Every part on `cloud` except those the spec names `provider: selfManaged`, which
/// come from `gitpod-refarch-selfmanaged` with their secrets and CA files read from
/// `sources` (the installation's Secret).
#[cfg(all(
    feature = "selfmanaged",
    any(feature = "aws", feature = "gcp", feature = "azure")
))]
fn parts<P>(spec: &ReferenceArchitecture, cloud: Arc<P>, sources: &dyn Sources) -> Result<Providers>
where
    P: ClusterProvider + DnsProvider + ObjectStore + Registry + Database + 'static,
{
    gitpod_refarch_selfmanaged::SelfManaged::for_spec_from(spec, sources)?.providers(cloud)
}

/// Every part on `cloud`; a self-managed part is refused.
#[cfg(all(
    not(feature = "selfmanaged"),
    any(feature = "aws", feature = "gcp", feature = "azure")
))]
fn parts<P>(
    spec: &ReferenceArchitecture,
    cloud: Arc<P>,
    _sources: &dyn Sources,
) -> Result<Providers>
where
    P: ClusterProvider + DnsProvider + ObjectStore + Registry + Database + 'static,
{
    refuse_self_managed(spec)?;
    Ok(Providers::all(cloud))
}

/// The keys that a credentials Secret lacks (absent or blank), as an error naming
/// them and the keys it holds (names only: a value is never shown).
#[cfg(any(feature = "gcp", feature = "azure"))]
fn missing_keys(credentials: &Credentials, need: &[&str], own_identity: &str) -> Error {
    let lacking: Vec<&str> = need
        .iter()
        .copied()
        .filter(|k| value(credentials, k).is_none())
        .collect();
    let held: Vec<&str> = credentials.keys().map(String::as_str).collect();
    Error::new(
        ErrorKind::Credentials,
        format!(
            "the credentials Secret lacks {} (absent or blank); it needs {} and holds [{}] \
             (or name no Secret, for {})",
            lacking.join(", "),
            need.join(", "),
            held.join(", "),
            own_identity
        ),
    )
}

/// A value of a credentials Secret, trimmed (a trailing newline from `echo` or
/// `--from-file` is not part of it); `None` when absent or empty.
#[cfg(any(feature = "gcp", feature = "azure"))]
fn value(credentials: &Credentials, key: &str) -> Option<String> {
    credentials
        .get(key)
        .map(|s| s.expose().trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Every part on `cloud` or self-managed ([`parts`]), with the in-cluster bootstrap
/// (cert-manager, external-dns, issuer, certificate) and its cluster verifier when
/// `in_cluster`, reaching the cluster with the cloud's credentials; a brought
/// certificate's files are read from `sources`.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn cloud_providers<P>(
    spec: &ReferenceArchitecture,
    cloud: Arc<P>,
    in_cluster: bool,
    sources: &dyn Sources,
) -> Result<Providers>
where
    P: ClusterProvider
        + DnsProvider
        + ObjectStore
        + Registry
        + Database
        + gitpod_refarch::ClusterCredentials
        + 'static,
{
    let providers = parts(spec, cloud.clone(), sources)?;
    if !in_cluster {
        return Ok(providers);
    }
    let mut bootstrap = gitpod_refarch_bootstrap::BootstrapConfig::new(cloud);
    if let Some(tls) = gitpod_refarch::tls::TlsCertificate::from_spec_from(spec, sources)? {
        bootstrap = bootstrap.tls_certificate(tls);
    }
    bootstrap.validate()?;
    Ok(providers
        .with_verifier(Arc::new(gitpod_refarch_bootstrap::ClusterVerifier::new(
            bootstrap.clone(),
        )))
        .with_in_cluster(Arc::new(gitpod_refarch_bootstrap::KubeBootstrap::new(
            bootstrap,
        ))))
}

#[cfg(all(test, any(feature = "aws", feature = "gcp", feature = "azure")))]
mod shared_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn self_managed_spec() -> ReferenceArchitecture {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/specs/self-managed.yaml");
        ReferenceArchitecture::from_path(&path).unwrap()
    }

    #[test]
    fn a_spec_for_another_cloud_is_refused() {
        let e = check_cloud(&self_managed_spec(), Cloud::Azure).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[cfg(not(feature = "selfmanaged"))]
    #[test]
    fn self_managed_parts_are_refused_by_name_before_any_call() {
        let e = refuse_self_managed(&self_managed_spec()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .contains("database.provider, dns.provider, registry.provider, storage.provider"),
            "{e}"
        );
        assert!(refuse_self_managed(&ReferenceArchitecture::defaults(Cloud::Gcp)).is_ok());
    }

    #[cfg(feature = "selfmanaged")]
    #[test]
    fn self_managed_parts_are_built_from_the_installations_secret_only() {
        use crate::sources::SecretSources;
        let spec = self_managed_spec();
        let cloud = Arc::new(SimCloud::new(
            Arc::new(TokioClock::new()),
            LatencyProfile::instant(),
        ));
        let keys = [
            "GITPOD_DB_ADMIN_PASSWORD",
            "GITPOD_DNS_TSIG_SECRET",
            "GITPOD_REGISTRY_PASSWORD",
            "GITPOD_S3_ACCESS_KEY_ID",
            "GITPOD_S3_SECRET_ACCESS_KEY",
        ];
        let secret = |skip: &str| -> Credentials {
            keys.iter()
                .filter(|k| **k != skip)
                .map(|k| (k.to_string(), Secret::new("c2VjcmV0Cg==".into())))
                .collect()
        };
        let all = SecretSources::new("ns/creds", Some(secret("")));
        let providers = parts(&spec, cloud.clone(), &all).unwrap();
        let routed = format!("{providers:?}");
        let sim = format!("{:?}", Providers::all(cloud.clone()));
        assert_ne!(routed, sim, "the self-managed parts are not the sim's");
        assert_eq!(providers.verifiers().len(), 1);
        // One key missing: refused at its field, naming the Secret and the key.
        let lacking = SecretSources::new("ns/creds", Some(secret("GITPOD_DB_ADMIN_PASSWORD")));
        let e = parts(&spec, cloud.clone(), &lacking).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string().contains(
                "database.adminPassword: env GITPOD_DB_ADMIN_PASSWORD: the credentials \
                 Secret ns/creds has no key GITPOD_DB_ADMIN_PASSWORD"
            ),
            "{e}"
        );
        // A cloud-only spec needs nothing from the Secret.
        let gcp = ReferenceArchitecture::defaults(Cloud::Gcp);
        let none = SecretSources::none();
        assert_eq!(
            format!("{:?}", parts(&gcp, cloud.clone(), &none).unwrap()),
            sim
        );
    }
}

// ---------------------------------------------------------------------------
// Several clouds
// ---------------------------------------------------------------------------

/// One controller for several clouds: each installation goes to the factory of its
/// spec's `cloud`; a cloud with no factory is refused with
/// [`ErrorKind::InvalidInput`], so that installation is `Degraded` and the others go
/// on.
///
/// ```
/// use std::sync::Arc;
/// use gitpod_refarch::spec::Cloud;
/// use gitpod_refarch_operator::factory::{ByCloud, SimFactory};
///
/// // AWS installations go to the simulated cloud; others are refused.
/// let factory = ByCloud::new().with(Cloud::Aws, Arc::new(SimFactory::default()));
/// assert_eq!(factory.clouds(), vec![Cloud::Aws]);
/// ```
#[derive(Default)]
pub struct ByCloud {
    factories: Vec<(Cloud, Arc<dyn ProviderFactory>)>,
}

impl std::fmt::Debug for ByCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByCloud")
            .field("clouds", &self.clouds())
            .finish()
    }
}

impl ByCloud {
    /// No cloud yet.
    pub fn new() -> Self {
        ByCloud::default()
    }

    /// Installations on `cloud` go to `factory` (replacing an earlier one).
    #[must_use]
    pub fn with(mut self, cloud: Cloud, factory: Arc<dyn ProviderFactory>) -> Self {
        self.factories.retain(|(c, _)| *c != cloud);
        self.factories.push((cloud, factory));
        self
    }

    /// The clouds with a factory, in the order given.
    pub fn clouds(&self) -> Vec<Cloud> {
        self.factories.iter().map(|(c, _)| *c).collect()
    }

    fn get(&self, cloud: Cloud) -> Result<&Arc<dyn ProviderFactory>> {
        self.factories
            .iter()
            .find(|(c, _)| *c == cloud)
            .map(|(_, f)| f)
            .ok_or_else(|| {
                let have: Vec<&str> = self.factories.iter().map(|(c, _)| c.as_str()).collect();
                Error::invalid_input(format!(
                    "this controller runs installations on [{}]; the spec's cloud is {} \
                     (add it to the controller's --cloud list)",
                    have.join(", "),
                    cloud.as_str()
                ))
            })
    }
}

#[async_trait]
impl ProviderFactory for ByCloud {
    async fn providers(
        &self,
        spec: &ReferenceArchitecture,
        credentials: Option<&Credentials>,
        sources: &dyn Sources,
    ) -> Result<Providers> {
        self.get(spec.cloud)?
            .providers(spec, credentials, sources)
            .await
    }

    fn account(&self, spec: &ReferenceArchitecture, credentials: Option<&Credentials>) -> String {
        match self.get(spec.cloud) {
            Ok(f) => f.account(spec, credentials),
            // Not reached after a successful `providers`; a name of its own anyway.
            Err(_) => format!("{}:unsupported", spec.cloud.as_str()),
        }
    }
}

// ---------------------------------------------------------------------------
// The simulated cloud
// ---------------------------------------------------------------------------

/// The credentials key that makes [`SimFactory::providers`] fail with
/// [`ErrorKind::Credentials`] (any value), as a cloud rejecting bad keys would.
pub const SIM_FAIL_CREDENTIALS: &str = "SIM_FAIL_CREDENTIALS";

/// The credentials key naming the simulated account (default `default`): the
/// account is `sim:<value>`.
pub const SIM_ACCOUNT: &str = "SIM_ACCOUNT";

/// Every installation on the in-process simulated cloud (tests, demos, benchmarks).
///
/// The account of an installation is `sim:<SIM_ACCOUNT>` from its credentials
/// (`sim:default` without). Each installation of an account gets its own
/// [`SimCloud`], kept for the factory's life and shared by every reconcile of that
/// installation: the simulated cloud models one installation's world (its node
/// pools are named `services`, `regular-ws`..., its dependency checks span the whole
/// world), so two installations in one `SimCloud` would collide. The account still
/// groups them for the budget. [`SimFactory::sim`] hands a test the cloud of one
/// installation to inspect.
pub struct SimFactory {
    clock: Arc<dyn Clock>,
    profile: LatencyProfile,
    in_cluster: bool,
    call_latency: Duration,
    failing: Mutex<BTreeSet<String>>,
    sims: Mutex<BTreeMap<(String, String), Arc<SimCloud>>>,
}

impl std::fmt::Debug for SimFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFactory")
            .field("profile", &self.profile)
            .field("in_cluster", &self.in_cluster)
            .field("call_latency", &self.call_latency)
            .field("failing", &*guard(&self.failing))
            .field(
                "installations",
                &guard(&self.sims).keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for SimFactory {
    /// Operations finish at once (still as operations to poll), calls take no time,
    /// the in-cluster part is simulated too.
    fn default() -> Self {
        SimFactory::new(Arc::new(TokioClock::new()), LatencyProfile::instant())
    }
}

impl SimFactory {
    /// Simulated clouds on `clock` whose operations take `profile`'s durations.
    pub fn new(clock: Arc<dyn Clock>, profile: LatencyProfile) -> Self {
        SimFactory {
            clock,
            profile,
            in_cluster: true,
            call_latency: Duration::ZERO,
            failing: Mutex::new(BTreeSet::new()),
            sims: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether the inside of the cluster is simulated too (default true), as the
    /// CLI's `--cloud sim` does unless `--no-in-cluster`.
    #[must_use]
    pub fn in_cluster(mut self, on: bool) -> Self {
        self.in_cluster = on;
        self
    }

    /// How long each provider call takes (default zero), like a real API's round
    /// trip: calls then overlap, so budgets and concurrency show.
    #[must_use]
    pub fn call_latency(mut self, latency: Duration) -> Self {
        self.call_latency = latency;
        self
    }

    /// From now on, the credentials of installation `name` (the spec's `name`) are
    /// rejected (or accepted again with `fail = false`).
    pub fn set_failing_credentials(&self, name: &str, fail: bool) {
        let mut f = guard(&self.failing);
        if fail {
            f.insert(name.to_string());
        } else {
            f.remove(name);
        }
    }

    /// The simulated cloud of installation `name` in `account` (`sim:<id>`), once a
    /// reconcile made it.
    pub fn sim(&self, account: &str, name: &str) -> Option<Arc<SimCloud>> {
        guard(&self.sims)
            .get(&(account.to_string(), name.to_string()))
            .cloned()
    }

    /// The simulated clouds made so far: `(account, installation)` to cloud.
    pub fn sims(&self) -> BTreeMap<(String, String), Arc<SimCloud>> {
        guard(&self.sims).clone()
    }

    fn account_id(credentials: Option<&Credentials>) -> String {
        let id = credentials
            .and_then(|c| c.get(SIM_ACCOUNT))
            .map(|s| s.expose().trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string());
        format!("sim:{id}")
    }
}

#[async_trait]
impl ProviderFactory for SimFactory {
    async fn providers(
        &self,
        spec: &ReferenceArchitecture,
        credentials: Option<&Credentials>,
        _sources: &dyn Sources,
    ) -> Result<Providers> {
        let rejected = credentials.is_some_and(|c| c.contains_key(SIM_FAIL_CREDENTIALS))
            || guard(&self.failing).contains(&spec.name);
        if rejected {
            return Err(Error::new(
                ErrorKind::Credentials,
                "the simulated cloud rejected the credentials; fix the Secret named by \
                 operator.credentialsSecret",
            ));
        }
        let account = Self::account_id(credentials);
        let sim = guard(&self.sims)
            .entry((account, spec.name.clone()))
            .or_insert_with(|| Arc::new(SimCloud::new(self.clock.clone(), self.profile.clone())))
            .clone();
        if self.call_latency.is_zero() {
            let providers = Providers::all(sim.clone());
            return Ok(if self.in_cluster {
                providers.with_in_cluster(sim)
            } else {
                providers
            });
        }
        let slow = Arc::new(Slow {
            inner: sim,
            latency: self.call_latency,
        });
        let providers = Providers::all(slow.clone());
        Ok(if self.in_cluster {
            providers.with_in_cluster(slow)
        } else {
            providers
        })
    }

    fn account(&self, _spec: &ReferenceArchitecture, credentials: Option<&Credentials>) -> String {
        Self::account_id(credentials)
    }
}

/// The simulated cloud with a delay before every call.
struct Slow {
    inner: Arc<SimCloud>,
    latency: Duration,
}

impl Slow {
    async fn pause(&self) {
        tokio::time::sleep(self.latency).await;
    }
}

/// Delegate one cloud trait to the simulated cloud, pausing first.
macro_rules! slow_cloud_trait {
    ($trait:ident, $res:ty) => {
        #[async_trait]
        impl $trait for Slow {
            fn info(&self) -> ProviderInfo {
                $trait::info(&*self.inner)
            }
            async fn observe(&self, r: &$res) -> Result<Option<Observed<$res>>> {
                self.pause().await;
                $trait::observe(&*self.inner, r).await
            }
            async fn ensure(&self, r: &$res, inputs: &Inputs) -> Result<Progress> {
                self.pause().await;
                $trait::ensure(&*self.inner, r, inputs).await
            }
            async fn delete(&self, r: &$res) -> Result<Progress> {
                self.pause().await;
                $trait::delete(&*self.inner, r).await
            }
            async fn poll(&self, op: &Operation) -> Result<Progress> {
                self.pause().await;
                $trait::poll(&*self.inner, op).await
            }
        }
    };
}

slow_cloud_trait!(ClusterProvider, ClusterResource);
slow_cloud_trait!(DnsProvider, DnsResource);
slow_cloud_trait!(ObjectStore, ObjectStorageSpec);
slow_cloud_trait!(Registry, RegistrySpec);
slow_cloud_trait!(Database, DatabaseResource);

#[async_trait]
impl ClusterBootstrap for Slow {
    fn info(&self) -> ProviderInfo {
        ClusterBootstrap::info(&*self.inner)
    }
    async fn observe(
        &self,
        r: &InClusterResource,
        inputs: &Inputs,
    ) -> Result<Option<Observed<InClusterResource>>> {
        self.pause().await;
        ClusterBootstrap::observe(&*self.inner, r, inputs).await
    }
    async fn ensure(&self, r: &InClusterResource, inputs: &Inputs) -> Result<Progress> {
        self.pause().await;
        ClusterBootstrap::ensure(&*self.inner, r, inputs).await
    }
    async fn delete(&self, r: &InClusterResource, inputs: &Inputs) -> Result<Progress> {
        self.pause().await;
        ClusterBootstrap::delete(&*self.inner, r, inputs).await
    }
    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.pause().await;
        ClusterBootstrap::poll(&*self.inner, op).await
    }
}

// ---------------------------------------------------------------------------
// AWS
// ---------------------------------------------------------------------------

#[cfg(feature = "aws")]
pub use aws::{AwsFactory, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN};

#[cfg(feature = "aws")]
mod aws {
    use super::*;
    use gitpod_refarch_aws::{AwsConfig, AwsProvider};

    /// The credentials key of the access key id.
    pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    /// The credentials key of the secret access key.
    pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    /// The credentials key of the session token (temporary credentials).
    pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

    /// Installations on AWS.
    ///
    /// With a credentials Secret the provider signs with its keys; without one it uses
    /// the standard chain (the controller's IRSA role, instance profile or
    /// environment). [`AwsProvider::connect`] checks the credentials with one STS
    /// call, so bad keys fail the reconcile at once with [`ErrorKind::Credentials`].
    /// The account is `aws:<account id>` as STS answered (`aws:<access key id>` until
    /// a connect succeeded, `aws:default` for the controller's own identity).
    pub struct AwsFactory {
        endpoint_url: Option<String>,
        poll_interval: Option<Duration>,
        in_cluster: bool,
        /// Access key id (or `""` for the default chain) to the account STS named.
        accounts: Mutex<BTreeMap<String, String>>,
    }

    impl std::fmt::Debug for AwsFactory {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("AwsFactory")
                .field("endpoint_url", &self.endpoint_url)
                .field("poll_interval", &self.poll_interval)
                .field("in_cluster", &self.in_cluster)
                .finish_non_exhaustive()
        }
    }

    impl Default for AwsFactory {
        fn default() -> Self {
            AwsFactory::new()
        }
    }

    impl AwsFactory {
        /// Real AWS, with the in-cluster bootstrap.
        pub fn new() -> Self {
            AwsFactory {
                endpoint_url: None,
                poll_interval: None,
                in_cluster: true,
                accounts: Mutex::new(BTreeMap::new()),
            }
        }

        /// Send every call to `url` (moto, LocalStack).
        #[must_use]
        pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
            self.endpoint_url = Some(url.into());
            self
        }

        /// How often pending EKS/RDS operations are polled (emulators answer at once).
        #[must_use]
        pub fn poll_interval(mut self, d: Duration) -> Self {
            self.poll_interval = Some(d);
            self
        }

        /// Whether the inside of the EKS cluster is bootstrapped too (cert-manager,
        /// external-dns, issuer, certificate; default true). Off against an emulator
        /// whose clusters have no API server.
        #[must_use]
        pub fn in_cluster(mut self, on: bool) -> Self {
            self.in_cluster = on;
            self
        }

        fn key_id(credentials: Option<&Credentials>) -> String {
            credentials
                .and_then(|c| c.get(AWS_ACCESS_KEY_ID))
                .map(|s| s.expose().trim().to_string())
                .unwrap_or_default()
        }

        fn config(
            &self,
            spec: &ReferenceArchitecture,
            credentials: Option<&Credentials>,
        ) -> Result<AwsConfig> {
            let mut config = AwsConfig::for_spec(spec);
            if let Some(url) = &self.endpoint_url {
                config = config.endpoint_url(url.clone());
            }
            if let Some(d) = self.poll_interval {
                config = config.poll_interval(d);
            }
            let Some(creds) = credentials else {
                return Ok(config);
            };
            let id = creds.get(AWS_ACCESS_KEY_ID);
            let secret = creds.get(AWS_SECRET_ACCESS_KEY);
            match (id, secret) {
                (Some(id), Some(secret)) => {
                    config = config.static_credentials(
                        id.expose().trim(),
                        Secret::new(secret.expose().trim().to_string()),
                    );
                }
                (None, None) => {}
                _ => {
                    return Err(Error::new(
                        ErrorKind::Credentials,
                        format!(
                            "the credentials Secret must hold both {AWS_ACCESS_KEY_ID} and \
                             {AWS_SECRET_ACCESS_KEY} (or neither, for the controller's own \
                             identity)"
                        ),
                    ))
                }
            }
            if let Some(token) = creds.get(AWS_SESSION_TOKEN) {
                if id.is_none() {
                    // A token alone signs nothing: refuse rather than fall back to the
                    // controller's own identity.
                    return Err(Error::new(
                        ErrorKind::Credentials,
                        format!(
                            "the credentials Secret holds {AWS_SESSION_TOKEN} without \
                             {AWS_ACCESS_KEY_ID} and {AWS_SECRET_ACCESS_KEY}"
                        ),
                    ));
                }
                config = config.session_token(Secret::new(token.expose().trim().to_string()));
            }
            Ok(config)
        }
    }

    #[async_trait]
    impl ProviderFactory for AwsFactory {
        async fn providers(
            &self,
            spec: &ReferenceArchitecture,
            credentials: Option<&Credentials>,
            sources: &dyn Sources,
        ) -> Result<Providers> {
            check_cloud(spec, Cloud::Aws)?;
            let config = self.config(spec, credentials)?;
            let aws = Arc::new(AwsProvider::connect(config).await?);
            guard(&self.accounts).insert(Self::key_id(credentials), aws.context().account.clone());
            cloud_providers(spec, aws, self.in_cluster, sources)
        }

        fn account(
            &self,
            _spec: &ReferenceArchitecture,
            credentials: Option<&Credentials>,
        ) -> String {
            let key = Self::key_id(credentials);
            if let Some(account) = guard(&self.accounts).get(&key) {
                return format!("aws:{account}");
            }
            if key.is_empty() {
                "aws:default".to_string()
            } else {
                format!("aws:{key}")
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]
        use super::*;

        fn creds(pairs: &[(&str, &str)]) -> Credentials {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Secret::new(v.to_string())))
                .collect()
        }

        #[test]
        fn temporary_keys_carry_their_session_token() {
            let spec = ReferenceArchitecture::defaults(Cloud::Aws);
            let f = AwsFactory::new();
            let c = f
                .config(
                    &spec,
                    Some(&creds(&[
                        (AWS_ACCESS_KEY_ID, "ASIAEXAMPLE"),
                        (AWS_SECRET_ACCESS_KEY, "s"),
                        (AWS_SESSION_TOKEN, "tok\n"),
                    ])),
                )
                .unwrap();
            assert_eq!(
                c.static_credentials.as_ref().map(|(id, _)| id.as_str()),
                Some("ASIAEXAMPLE")
            );
            assert_eq!(
                c.session_token.as_ref().map(|t| t.expose().as_str()),
                Some("tok")
            );

            let long_lived = f
                .config(
                    &spec,
                    Some(&creds(&[
                        (AWS_ACCESS_KEY_ID, "AKIA"),
                        (AWS_SECRET_ACCESS_KEY, "s"),
                    ])),
                )
                .unwrap();
            assert!(long_lived.session_token.is_none());

            let e = f
                .config(&spec, Some(&creds(&[(AWS_SESSION_TOKEN, "tok")])))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Credentials);
            assert!(e.to_string().contains(AWS_SESSION_TOKEN), "{e}");
            assert!(!e.to_string().contains("tok\""), "{e}");
        }
    }
}

// ---------------------------------------------------------------------------
// GCP
// ---------------------------------------------------------------------------

#[cfg(feature = "gcp")]
pub use gcp::{GcpFactory, GOOGLE_CREDENTIALS};

#[cfg(feature = "gcp")]
mod gcp {
    use super::*;
    use gitpod_refarch_gcp::{GcpConfig, GcpCredentials, GcpProvider};

    /// The credentials key of a service account key JSON (the name Terraform's
    /// Google provider reads the same JSON from).
    pub const GOOGLE_CREDENTIALS: &str = "GOOGLE_CREDENTIALS";

    /// Installations on GCP.
    ///
    /// With a credentials Secret the clients use its service account key
    /// ([`GOOGLE_CREDENTIALS`]); without one, Application Default Credentials (the
    /// controller's GKE Workload Identity or the metadata server).
    /// [`GcpProvider::connect`] parses the key and reads the project once, so a key
    /// that is not a usable service account key fails the reconcile at once with
    /// [`ErrorKind::Credentials`], and one that cannot read the project with
    /// [`ErrorKind::Permission`]. The account is `gcp:<project>`: installations in
    /// one project share its budget.
    #[derive(Debug, Clone)]
    pub struct GcpFactory {
        endpoint_url: Option<String>,
        poll_interval: Option<Duration>,
        in_cluster: bool,
    }

    impl Default for GcpFactory {
        fn default() -> Self {
            GcpFactory::new()
        }
    }

    impl GcpFactory {
        /// Real GCP, with the in-cluster bootstrap.
        pub fn new() -> Self {
            GcpFactory {
                endpoint_url: None,
                poll_interval: None,
                in_cluster: true,
            }
        }

        /// Send every call to `url` (a local fake of the APIs; anonymous unless the
        /// installation's Secret holds a key).
        #[must_use]
        pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
            self.endpoint_url = Some(url.into());
            self
        }

        /// How often pending operations are polled (a fake answers at once).
        #[must_use]
        pub fn poll_interval(mut self, d: Duration) -> Self {
            self.poll_interval = Some(d);
            self
        }

        /// Whether the inside of the GKE cluster is bootstrapped too (default true).
        #[must_use]
        pub fn in_cluster(mut self, on: bool) -> Self {
            self.in_cluster = on;
            self
        }

        /// The provider configuration of `spec` with `credentials`; no IO.
        pub(crate) fn config(
            &self,
            spec: &ReferenceArchitecture,
            credentials: Option<&Credentials>,
        ) -> Result<GcpConfig> {
            let mut config = GcpConfig::for_spec(spec)?;
            if let Some(url) = &self.endpoint_url {
                config = config.endpoint_url(url.clone());
            }
            if let Some(d) = self.poll_interval {
                config = config.poll_interval(d);
            }
            if let Some(creds) = credentials {
                let key = value(creds, GOOGLE_CREDENTIALS).ok_or_else(|| {
                    missing_keys(
                        creds,
                        &[GOOGLE_CREDENTIALS],
                        "the controller's Application Default Credentials",
                    )
                })?;
                config = config.credentials(GcpCredentials::ServiceAccountKey(Secret::new(key)));
            }
            Ok(config)
        }
    }

    #[async_trait]
    impl ProviderFactory for GcpFactory {
        async fn providers(
            &self,
            spec: &ReferenceArchitecture,
            credentials: Option<&Credentials>,
            sources: &dyn Sources,
        ) -> Result<Providers> {
            check_cloud(spec, Cloud::Gcp)?;
            let config = self.config(spec, credentials)?;
            let gcp = Arc::new(GcpProvider::connect(config).await?);
            cloud_providers(spec, gcp, self.in_cluster, sources)
        }

        fn account(
            &self,
            spec: &ReferenceArchitecture,
            _credentials: Option<&Credentials>,
        ) -> String {
            let project = spec.gcp.as_ref().map_or("default", |g| g.project.as_str());
            format!("gcp:{project}")
        }
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]
        use super::*;

        fn spec() -> ReferenceArchitecture {
            ReferenceArchitecture::from_yaml(
                "cloud: gcp\nname: gp\ndomain: gitpod.example.com\ngcp:\n  project: my-project\n\
                 certificates:\n  issuer: acme\n  email: ops@example.com\n",
            )
            .unwrap()
        }

        #[test]
        fn the_secret_key_is_used_and_a_secret_without_one_is_refused() {
            let f = GcpFactory::new();
            let creds: Credentials = [(
                GOOGLE_CREDENTIALS.to_string(),
                Secret::new("{\"type\":\"service_account\"}\n".into()),
            )]
            .into();
            let c = f.config(&spec(), Some(&creds)).unwrap();
            assert_eq!(
                c.credentials,
                GcpCredentials::ServiceAccountKey(Secret::new(
                    "{\"type\":\"service_account\"}".into()
                ))
            );
            assert_eq!(
                f.config(&spec(), None).unwrap().credentials,
                GcpCredentials::ApplicationDefault
            );
            // The key under another name: refused, naming the key held, not its value.
            let wrong: Credentials =
                [("key.json".to_string(), Secret::new("s3cr3t-json".into()))].into();
            let e = f.config(&spec(), Some(&wrong)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Credentials);
            assert!(e.to_string().contains("lacks GOOGLE_CREDENTIALS"), "{e}");
            assert!(e.to_string().contains("[key.json]"), "{e}");
            // Present but blank: lacking too.
            let blank: Credentials =
                [(GOOGLE_CREDENTIALS.to_string(), Secret::new(" \n".into()))].into();
            let e = f.config(&spec(), Some(&blank)).unwrap_err();
            assert!(e.to_string().contains("lacks GOOGLE_CREDENTIALS"), "{e}");
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
            assert_eq!(f.account(&spec(), None), "gcp:my-project");
        }
    }
}

// ---------------------------------------------------------------------------
// Azure
// ---------------------------------------------------------------------------

#[cfg(feature = "azure")]
pub use azure::{AzureFactory, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID};

#[cfg(feature = "azure")]
mod azure {
    use super::*;
    use gitpod_refarch_azure::{AzureConfig, AzureProvider};

    /// The credentials key of the Entra tenant id.
    pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
    /// The credentials key of the service principal's application (client) id.
    pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
    /// The credentials key of the service principal's client secret.
    pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";

    /// Installations on Azure.
    ///
    /// With a credentials Secret the ARM client signs in as its service principal
    /// (all three of [`AZURE_TENANT_ID`], [`AZURE_CLIENT_ID`], [`AZURE_CLIENT_SECRET`],
    /// the names `azure_identity` reads from the environment); without one it uses the
    /// controller's own identity from its environment (Workload Identity, a managed
    /// identity). [`AzureProvider::connect`] gets a token first, so a refused secret
    /// fails the reconcile at once with [`ErrorKind::Credentials`]. The account is
    /// `azure:<subscription id>`: installations in one subscription share its budget.
    #[derive(Debug, Clone)]
    pub struct AzureFactory {
        endpoint_url: Option<String>,
        poll_interval: Option<Duration>,
        in_cluster: bool,
    }

    impl Default for AzureFactory {
        fn default() -> Self {
            AzureFactory::new()
        }
    }

    impl AzureFactory {
        /// Real Azure, with the in-cluster bootstrap.
        pub fn new() -> Self {
            AzureFactory {
                endpoint_url: None,
                poll_interval: None,
                in_cluster: true,
            }
        }

        /// Send every ARM call, and the Entra token requests, to `url` (a local fake).
        #[must_use]
        pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
            self.endpoint_url = Some(url.into());
            self
        }

        /// How often pending operations are polled when ARM gives no `Retry-After`.
        #[must_use]
        pub fn poll_interval(mut self, d: Duration) -> Self {
            self.poll_interval = Some(d);
            self
        }

        /// Whether the inside of the AKS cluster is bootstrapped too (default true).
        #[must_use]
        pub fn in_cluster(mut self, on: bool) -> Self {
            self.in_cluster = on;
            self
        }

        /// The provider configuration of `spec` with `credentials`; no IO.
        pub(crate) fn config(
            &self,
            spec: &ReferenceArchitecture,
            credentials: Option<&Credentials>,
        ) -> Result<AzureConfig> {
            let mut config = AzureConfig::for_spec(spec)?;
            if let Some(url) = &self.endpoint_url {
                config = config.endpoint_url(url.clone());
            }
            if let Some(d) = self.poll_interval {
                config = config.poll_interval(d);
            }
            if let Some(creds) = credentials {
                let need = [AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET];
                let (Some(tenant), Some(client), Some(secret)) = (
                    value(creds, AZURE_TENANT_ID),
                    value(creds, AZURE_CLIENT_ID),
                    value(creds, AZURE_CLIENT_SECRET),
                ) else {
                    return Err(missing_keys(
                        creds,
                        &need,
                        "the controller's own identity (Workload Identity, a managed identity)",
                    ));
                };
                config = config.client_secret(tenant, client, Secret::new(secret));
            }
            Ok(config)
        }
    }

    #[async_trait]
    impl ProviderFactory for AzureFactory {
        async fn providers(
            &self,
            spec: &ReferenceArchitecture,
            credentials: Option<&Credentials>,
            sources: &dyn Sources,
        ) -> Result<Providers> {
            check_cloud(spec, Cloud::Azure)?;
            let config = self.config(spec, credentials)?;
            let azure = Arc::new(AzureProvider::connect(config).await?);
            cloud_providers(spec, azure, self.in_cluster, sources)
        }

        fn account(
            &self,
            spec: &ReferenceArchitecture,
            _credentials: Option<&Credentials>,
        ) -> String {
            let sub = spec
                .azure
                .as_ref()
                .map_or("default", |z| z.subscription_id.as_str());
            format!("azure:{sub}")
        }
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used, clippy::panic)]
        use super::*;
        use gitpod_refarch_azure::AzureCredential;

        const SUB: &str = "00000000-0000-0000-0000-000000000001";

        fn spec() -> ReferenceArchitecture {
            ReferenceArchitecture::from_yaml(&format!(
                "cloud: azure\nname: gp\ndomain: gitpod.example.com\nazure:\n  \
                 subscriptionId: {SUB}\n\
                 certificates:\n  issuer: acme\n  email: ops@example.com\n"
            ))
            .unwrap()
        }

        fn creds(pairs: &[(&str, &str)]) -> Credentials {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Secret::new(v.to_string())))
                .collect()
        }

        #[test]
        fn the_service_principal_is_used_and_a_partial_one_is_refused() {
            let f = AzureFactory::new();
            let c = f
                .config(
                    &spec(),
                    Some(&creds(&[
                        (AZURE_TENANT_ID, "t-1"),
                        (AZURE_CLIENT_ID, "c-1\n"),
                        (AZURE_CLIENT_SECRET, "s3cr3t"),
                    ])),
                )
                .unwrap();
            match &c.credential {
                AzureCredential::ClientSecret {
                    tenant_id,
                    client_id,
                    secret,
                } => {
                    assert_eq!(tenant_id, "t-1");
                    assert_eq!(client_id, "c-1");
                    assert_eq!(secret.expose(), "s3cr3t");
                }
                other => panic!("{other:?}"),
            }
            assert!(!format!("{c:?}").contains("s3cr3t"));
            assert!(matches!(
                f.config(&spec(), None).unwrap().credential,
                AzureCredential::FromEnvironment
            ));
            let e = f
                .config(
                    &spec(),
                    Some(&creds(&[
                        (AZURE_CLIENT_ID, "c-1"),
                        (AZURE_CLIENT_SECRET, "s3cr3t"),
                    ])),
                )
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Credentials);
            assert!(e.to_string().contains("lacks AZURE_TENANT_ID ("), "{e}");
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
            assert_eq!(f.account(&spec(), None), format!("azure:{SUB}"));
        }
    }
}
