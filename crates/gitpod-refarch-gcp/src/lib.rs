//! GCP provider for `gitpod-refarch`: the reference architecture on Google Cloud with
//! Google's official Rust clients (googleapis/google-cloud-rust).
//!
//! ```no_run
//! use std::sync::Arc;
//! use gitpod_refarch::{Engine, Providers, spec::{Cloud, ReferenceArchitecture}};
//! use gitpod_refarch_gcp::{GcpConfig, GcpProvider};
//!
//! # async fn run() -> Result<(), gitpod_refarch::Error> {
//! let spec = ReferenceArchitecture::from_yaml(
//!     "cloud: gcp\nname: gitpod\ndomain: gitpod.example.com\ngcp:\n  project: my-project\n\
//!      certificates:\n  issuer: acme\n  email: ops@example.com\n  \
//!      server: https://acme-v02.api.letsencrypt.org/directory\n",
//! )?;
//! spec.validate()?;
//! // Application Default Credentials; fails fast if they are missing or the project
//! // cannot be read.
//! let gcp = GcpProvider::connect(GcpConfig::for_spec(&spec)?).await?;
//! let engine = Engine::builder(Providers::all(Arc::new(gcp))).build()?;
//! engine.apply_spec(&spec).await?.into_result()?;
//! # Ok(()) }
//! ```
//!
//! It follows the guide, step by step. Where each resource lives:
//!
//! | module | resources |
//! |---|---|
//! | [`foundation`] | the project (created on request), its billing link, the APIs |
//! | [`network`] | the VPC `vpc-<name>` and subnetwork `subnet-<name>` with pod and service ranges |
//! | [`identity`] | the node service account `gke-sa-<name>` and its four project roles |
//! | [`cluster`] | the regional GKE cluster (Calico, NodeLocalDNS, no auto-upgrade), default pool removed |
//! | [`nodepool`] | the three node pools with their labels |
//! | [`dns`] | the Cloud DNS zone, the DNS service account (`roles/dns.admin`) and its key, the records |
//! | [`storage`] | the storage service account (`roles/storage.admin`, `roles/storage.objectAdmin`) and its key |
//! | [`registry`] | the Artifact Registry Docker repository and a push-only service account |
//! | [`database`] | the Cloud SQL MySQL instance, database `gitpod`, user `gitpod`, the `cloudsql.client` account |
//!
//! [`iam`] holds the service-account, key and IAM-policy helpers they share, and
//! [`ops`] the pollers of the four kinds of long-running operation (GKE, Cloud SQL,
//! Compute, and `google.longrunning`), written once.
//!
//! Every resource is found by its deterministic name (labels or a description mark it
//! as this installation's) before anything is created. A same-named resource that is
//! not marked as ours is never adopted or deleted: that step fails with
//! [`ErrorKind::Conflict`].

/// Kubernetes API tokens for GKE clusters (the credentials' access token).
pub mod access;
pub mod cluster;
pub mod database;
pub mod dns;
pub(crate) mod error;
pub mod foundation;
pub mod iam;
pub mod identity;
pub mod network;
pub mod nodepool;
pub mod ops;
pub mod registry;
pub mod storage;

use std::collections::BTreeMap;
use std::time::Duration;

use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress, ProviderInfo};
use gitpod_refarch::resource::{Desired, ResourceId, ResourceKind};
use gitpod_refarch::spec::ReferenceArchitecture;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use google_cloud_auth::credentials::Credentials;

/// The APIs the guide enables before anything else.
pub const REQUIRED_APIS: [&str; 8] = [
    "artifactregistry.googleapis.com",
    "containerregistry.googleapis.com",
    "iam.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "dns.googleapis.com",
    "sqladmin.googleapis.com",
    "cloudbilling.googleapis.com",
];

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

/// How to reach GCP, and the project-level choices of the spec.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
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

    fn check(&self) -> Result<()> {
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

    fn build_credentials(&self) -> Result<Credentials> {
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
                creds::service_account::Builder::new(json)
                    .build()
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Credentials,
                            "the service-account key is not usable",
                        )
                        .with_source(e)
                    })
            }
        }
    }
}

/// The official clients, one per API, shared by every resource module.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Resource Manager v3 (projects, project IAM policy).
    pub projects: google_cloud_resourcemanager_v3::client::Projects,
    /// Cloud Billing v1.
    pub billing: google_cloud_billing_v1::client::CloudBilling,
    /// Service Usage v1.
    pub services: google_cloud_api_serviceusage_v1::client::ServiceUsage,
    /// IAM admin v1 (service accounts, keys).
    pub iam: google_cloud_iam_admin_v1::client::Iam,
    /// Compute v1 networks.
    pub networks: google_cloud_compute_v1::client::Networks,
    /// Compute v1 subnetworks.
    pub subnetworks: google_cloud_compute_v1::client::Subnetworks,
    /// Compute v1 global operations.
    pub global_operations: google_cloud_compute_v1::client::GlobalOperations,
    /// Compute v1 region operations.
    pub region_operations: google_cloud_compute_v1::client::RegionOperations,
    /// GKE.
    pub gke: google_cloud_container_v1::client::ClusterManager,
    /// Cloud DNS managed zones.
    pub zones: google_cloud_dns_v1::client::ManagedZones,
    /// Cloud DNS record sets.
    pub rrsets: google_cloud_dns_v1::client::ResourceRecordSets,
    /// Artifact Registry.
    pub registry: google_cloud_artifactregistry_v1::client::ArtifactRegistry,
    /// Cloud SQL instances.
    pub sql_instances: google_cloud_sql_v1::client::SqlInstancesService,
    /// Cloud SQL operations.
    pub sql_operations: google_cloud_sql_v1::client::SqlOperationsService,
    /// Cloud SQL databases.
    pub sql_databases: google_cloud_sql_v1::client::SqlDatabasesService,
    /// Cloud SQL users.
    pub sql_users: google_cloud_sql_v1::client::SqlUsersService,
}

macro_rules! build_client {
    ($ty:ty, $endpoint:expr, $creds:expr, $retry:expr, $backoff:expr) => {{
        let mut b = <$ty>::builder()
            .with_credentials($creds.clone())
            .with_retry_policy($retry())
            .with_backoff_policy($backoff()?);
        if let Some(url) = $endpoint {
            b = b.with_endpoint(url.clone());
        }
        b.build().await.map_err(|e| {
            Error::new(
                ErrorKind::Credentials,
                format!("cannot build the {} client", stringify!($ty)),
            )
            .with_source(e)
        })?
    }};
}

impl Clients {
    async fn new(config: &GcpConfig, creds: &Credentials) -> Result<Self> {
        use google_cloud_compute_v1::client as compute;
        use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
        let endpoint = config.endpoint_url.as_ref();
        let retry = || {
            Aip194Strict
                .with_time_limit(Duration::from_secs(60))
                .with_attempt_limit(config.max_attempts)
        };
        let backoff = || {
            google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
                .with_initial_delay(config.initial_backoff)
                .with_maximum_delay(Duration::from_secs(10))
                .build()
                .map_err(|e| {
                    Error::invalid_input("the backoff settings are invalid").with_source(e)
                })
        };
        Ok(Clients {
            projects: build_client!(
                google_cloud_resourcemanager_v3::client::Projects,
                endpoint,
                creds,
                retry,
                backoff
            ),
            billing: build_client!(
                google_cloud_billing_v1::client::CloudBilling,
                endpoint,
                creds,
                retry,
                backoff
            ),
            services: build_client!(
                google_cloud_api_serviceusage_v1::client::ServiceUsage,
                endpoint,
                creds,
                retry,
                backoff
            ),
            iam: build_client!(
                google_cloud_iam_admin_v1::client::Iam,
                endpoint,
                creds,
                retry,
                backoff
            ),
            networks: build_client!(compute::Networks, endpoint, creds, retry, backoff),
            subnetworks: build_client!(compute::Subnetworks, endpoint, creds, retry, backoff),
            global_operations: build_client!(
                compute::GlobalOperations,
                endpoint,
                creds,
                retry,
                backoff
            ),
            region_operations: build_client!(
                compute::RegionOperations,
                endpoint,
                creds,
                retry,
                backoff
            ),
            gke: build_client!(
                google_cloud_container_v1::client::ClusterManager,
                endpoint,
                creds,
                retry,
                backoff
            ),
            zones: build_client!(
                google_cloud_dns_v1::client::ManagedZones,
                endpoint,
                creds,
                retry,
                backoff
            ),
            rrsets: build_client!(
                google_cloud_dns_v1::client::ResourceRecordSets,
                endpoint,
                creds,
                retry,
                backoff
            ),
            registry: build_client!(
                google_cloud_artifactregistry_v1::client::ArtifactRegistry,
                endpoint,
                creds,
                retry,
                backoff
            ),
            sql_instances: build_client!(
                google_cloud_sql_v1::client::SqlInstancesService,
                endpoint,
                creds,
                retry,
                backoff
            ),
            sql_operations: build_client!(
                google_cloud_sql_v1::client::SqlOperationsService,
                endpoint,
                creds,
                retry,
                backoff
            ),
            sql_databases: build_client!(
                google_cloud_sql_v1::client::SqlDatabasesService,
                endpoint,
                creds,
                retry,
                backoff
            ),
            sql_users: build_client!(
                google_cloud_sql_v1::client::SqlUsersService,
                endpoint,
                creds,
                retry,
                backoff
            ),
        })
    }
}

/// Facts every module needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// Clients.
    pub clients: Clients,
    /// The project id.
    pub project: String,
    /// Region.
    pub region: String,
    /// The configuration it was built from.
    pub config: GcpConfig,
    /// Database users whose password this process has set (`instance/user`): a user
    /// found without saved outputs gets the saved password once, not on every call.
    pub(crate) passwords_set: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Whether the project exists. Until it does (`gcp.createProject`), every other
    /// resource is absent without a call: GCP answers 403 for anything in a project
    /// that does not exist.
    pub(crate) project_exists: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Context {
    pub(crate) fn project_exists(&self) -> bool {
        self.project_exists
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn set_project_exists(&self) {
        self.project_exists
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Context {
    /// An operation to poll after the configured interval.
    pub fn op(&self, id: impl Into<String>, resource: &ResourceId) -> Operation {
        Operation::new(id, resource.clone()).poll_after(self.config.poll_interval)
    }

    /// `projects/<project>`.
    pub fn project_path(&self) -> String {
        format!("projects/{}", self.project)
    }

    /// `projects/<project>/locations/<region>`.
    pub fn location_path(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.region)
    }
}

/// Labels every resource carries: the installation label plus the spec's labels.
pub fn labels_of(
    labels: &BTreeMap<String, String>,
    installation: &str,
) -> BTreeMap<String, String> {
    let mut t = labels.clone();
    t.insert(INSTALLATION_LABEL.to_string(), installation.to_string());
    t
}

/// Whether `labels` mark a resource as `installation`'s.
pub fn is_ours(labels: &BTreeMap<String, String>, installation: &str) -> bool {
    labels.get(INSTALLATION_LABEL).map(String::as_str) == Some(installation)
}

/// The description that marks label-less resources (service accounts, networks) as ours.
pub fn ownership_mark(installation: &str) -> String {
    format!("Managed by gitpod-refarch for installation {installation}")
}

/// The error for a same-named resource that is not ours.
pub fn foreign(what: &str, installation: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "{what} exists but is not marked as installation '{installation}''s; \
             it is left alone: rename the installation or remove it"
        ),
    )
}

/// The GCP provider: implements all five traits.
#[derive(Debug, Clone)]
pub struct GcpProvider {
    ctx: Context,
    /// The credentials every client uses, built once; [`access`] takes GKE tokens
    /// from them.
    credentials: Credentials,
}

impl GcpProvider {
    /// Check the configuration, build the clients and read the project once.
    ///
    /// Fails fast, before any change, with [`ErrorKind::InvalidInput`] for a bad
    /// project id or endpoint, [`ErrorKind::Credentials`] for missing or unusable
    /// credentials, [`ErrorKind::Transient`] naming the endpoint when it cannot be
    /// reached, and [`ErrorKind::Permission`] when the project cannot be read (and is
    /// not to be created).
    pub async fn connect(config: GcpConfig) -> Result<Self> {
        config.check()?;
        let creds = config.build_credentials()?;
        let clients = Clients::new(&config, &creds).await?;
        let ctx = Context {
            clients,
            project: config.project.clone(),
            region: config.region.clone(),
            config: config.clone(),
            passwords_set: Default::default(),
            project_exists: Default::default(),
        };
        let where_ = config
            .endpoint_url
            .clone()
            .unwrap_or_else(|| "Google Cloud".to_string());
        match foundation::get_project(&ctx).await {
            Ok(Some(_)) => ctx.set_project_exists(),
            Ok(None) if config.create_project => {}
            Ok(None) => {
                return Err(Error::new(
                    ErrorKind::Permission,
                    format!(
                        "project '{}' does not exist or these credentials cannot read it \
                         (set gcp.createProject to create it)",
                        config.project
                    ),
                ))
            }
            Err(e) if e.kind() == ErrorKind::Transient => {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!("cannot reach {where_}: {}", e.message()),
                )
                .with_source(e))
            }
            Err(e) => return Err(e),
        }
        Ok(GcpProvider {
            ctx,
            credentials: creds,
        })
    }

    /// The shared context (clients, project, region).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    async fn observe_any(
        &self,
        id: &ResourceId,
        desired: Option<&Desired>,
    ) -> Result<Option<Observed>> {
        let c = &self.ctx;
        if id.kind != ResourceKind::Foundation && !c.project_exists() {
            return Ok(None);
        }
        match (id.kind, desired) {
            (ResourceKind::Foundation, Some(Desired::Foundation(d))) => {
                foundation::observe(c, d).await
            }
            (ResourceKind::Network, Some(Desired::Network(d))) => network::observe(c, d).await,
            (ResourceKind::ClusterIdentity, Some(Desired::ClusterIdentity(d))) => {
                identity::observe(c, d).await
            }
            (ResourceKind::Cluster, Some(Desired::Cluster(d))) => cluster::observe(c, d).await,
            (ResourceKind::NodePool, Some(Desired::NodePool(d))) => nodepool::observe(c, d).await,
            (ResourceKind::DnsZone, Some(Desired::DnsZone(d))) => dns::observe_zone(c, d).await,
            (ResourceKind::DnsIdentity, Some(Desired::DnsIdentity(d))) => {
                dns::observe_identity(c, d).await
            }
            (ResourceKind::DnsRecords, Some(Desired::DnsRecords(d))) => {
                dns::observe_records(c, d).await
            }
            (ResourceKind::ObjectStorage, Some(Desired::ObjectStorage(d))) => {
                storage::observe(c, d).await
            }
            (ResourceKind::Registry, Some(Desired::Registry(d))) => registry::observe(c, d).await,
            (ResourceKind::DatabaseInstance, Some(Desired::DatabaseInstance(d))) => {
                database::observe_instance(c, d).await
            }
            (ResourceKind::Database, Some(Desired::Database(d))) => {
                database::observe_database(c, d).await
            }
            _ => Err(Error::internal(format!(
                "the GCP provider cannot observe {id} without its desired state"
            ))),
        }
    }

    async fn ensure_any(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress> {
        let c = &self.ctx;
        match desired {
            Desired::Foundation(d) => foundation::ensure(c, d).await,
            Desired::Network(d) => network::ensure(c, d).await,
            Desired::ClusterIdentity(d) => identity::ensure(c, d).await,
            Desired::Cluster(d) => cluster::ensure(c, d, inputs).await,
            Desired::NodePool(d) => nodepool::ensure(c, d, inputs).await,
            Desired::DnsZone(d) => dns::ensure_zone(c, d).await,
            Desired::DnsIdentity(d) => dns::ensure_identity(c, d, inputs).await,
            Desired::DnsRecords(d) => dns::ensure_records(c, d).await,
            Desired::ObjectStorage(d) => storage::ensure(c, d, inputs).await,
            Desired::Registry(d) => registry::ensure(c, d, inputs).await,
            Desired::DatabaseInstance(d) => database::ensure_instance(c, d).await,
            Desired::Database(d) => database::ensure_database(c, d, inputs).await,
            _ => Err(Error::internal(format!(
                "the GCP provider does not know {}",
                desired.id()
            ))),
        }
    }

    async fn poll_any(&self, op: &Operation) -> Result<Progress> {
        ops::poll(&self.ctx, op).await
    }

    async fn delete_any(&self, id: &ResourceId, desired: Option<&Desired>) -> Result<Progress> {
        let c = &self.ctx;
        if !c.project_exists() {
            return Ok(Progress::Done(None));
        }
        let name = id.name.as_str();
        match (id.kind, desired) {
            // The project and its APIs stay: other things may live in the project.
            (ResourceKind::Foundation, _) => Ok(Progress::Done(None)),
            (ResourceKind::Network, _) => network::delete(c, id).await,
            (ResourceKind::ClusterIdentity, _) => identity::delete(c, name).await,
            (ResourceKind::Cluster, _) => cluster::delete(c, id).await,
            (ResourceKind::NodePool, Some(Desired::NodePool(d))) => {
                nodepool::delete(c, id, d).await
            }
            (ResourceKind::DnsZone, Some(Desired::DnsZone(d))) => dns::delete_zone(c, d).await,
            (ResourceKind::DnsIdentity, _) => dns::delete_identity(c, name).await,
            (ResourceKind::DnsRecords, Some(Desired::DnsRecords(d))) => {
                dns::delete_records(c, d).await
            }
            (ResourceKind::ObjectStorage, _) => storage::delete(c, name).await,
            (ResourceKind::Registry, Some(Desired::Registry(d))) => {
                registry::delete(c, id, d).await
            }
            (ResourceKind::DatabaseInstance, Some(Desired::DatabaseInstance(d))) => {
                database::delete_instance(c, id, d).await
            }
            (ResourceKind::Database, Some(Desired::Database(d))) => {
                database::delete_database(c, id, d).await
            }
            _ => Err(Error::internal(format!(
                "the GCP provider cannot delete {id} without its desired state"
            ))),
        }
    }
}

// GKE runs one operation per cluster at a time.
gitpod_refarch::forward_provider_traits!(
    GcpProvider,
    ProviderInfo::new("gcp").with_serial_cluster_operations(true)
);

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
