//! GCP provider for `gitpod-refarch`: the reference architecture on Google Cloud with
//! Google's official Rust clients (googleapis/google-cloud-rust).
//!
//! ```no_run
//! use std::sync::Arc;
//! use gitpod_refarch::{Engine, Providers, spec::ReferenceArchitecture};
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
//! [`config`] holds the configuration and credentials ([`GcpConfig`]), [`context`]
//! the clients and what every resource module shares ([`Context`], the ownership
//! marks, the operation constructors), [`iam`] the service-account, key and
//! IAM-policy helpers, and [`ops`] the pollers of the four kinds of long-running
//! operation (GKE, Cloud SQL, Compute, and `google.longrunning`), written once. This
//! file only routes each resource of the five provider traits to its module.
//!
//! Every resource is found by its deterministic name (labels or a description mark it
//! as this installation's) before anything is created. A same-named resource that is
//! not marked as ours is never adopted or deleted: that step fails with
//! [`ErrorKind::Conflict`].

/// Kubernetes API tokens for GKE clusters (the credentials' access token).
pub mod access;
pub mod cluster;
pub mod config;
pub mod context;
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
pub mod state_store;
pub mod storage;

use async_trait::async_trait;
use gitpod_refarch::provider::{
    AccessToken, ClusterCredentials, ClusterProvider, Database, DnsProvider, Inputs, ObjectStore,
    Observed, Operation, Progress, ProviderInfo, Registry,
};
use gitpod_refarch::resource::{
    ClusterResource, DatabaseResource, DnsResource, ObjectStorageSpec, Output, RegistrySpec,
};
use gitpod_refarch::{Error, ErrorKind, Result};

pub use config::{default_retry, GcpConfig, GcpCredentials, GcpRegistry};
pub use context::{foreign, is_ours, labels_of, ownership_mark, Clients, Context};
pub use foundation::REQUIRED_APIS;
pub use state_store::{GcsStateStore, GcsStoreConfig};

/// The GCP provider: implements all five cloud traits, and GKE tokens
/// ([`ClusterCredentials`]).
#[derive(Debug, Clone)]
pub struct GcpProvider {
    ctx: Context,
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
        let ctx = Context::new(config).await?;
        let config = &ctx.config;
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
        Ok(GcpProvider { ctx })
    }

    /// The shared context (clients, project, region).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// GKE runs one operation per cluster at a time.
    fn provider_info() -> ProviderInfo {
        ProviderInfo::new("gcp").with_serial_cluster_operations(true)
    }

    /// Until the project exists (`gcp.createProject`), nothing in it does: GCP answers
    /// 403 for anything in a project that does not exist.
    fn in_missing_project(&self) -> bool {
        !self.ctx.project_exists()
    }
}

/// Wrap the typed observation of one resource module into its trait's type.
fn typed<S, T>(o: Option<Observed<S>>, f: impl FnOnce(S) -> T) -> Option<Observed<T>> {
    o.map(|o| o.map(f))
}

#[async_trait]
impl ClusterProvider for GcpProvider {
    fn info(&self) -> ProviderInfo {
        Self::provider_info()
    }

    async fn observe(
        &self,
        resource: &ClusterResource,
    ) -> Result<Option<Observed<ClusterResource>>> {
        let c = &self.ctx;
        if !matches!(resource, ClusterResource::Foundation(_)) && self.in_missing_project() {
            return Ok(None);
        }
        Ok(match resource {
            ClusterResource::Foundation(d) => typed(
                foundation::observe(c, d).await?,
                ClusterResource::Foundation,
            ),
            ClusterResource::Network(d) => {
                typed(network::observe(c, d).await?, ClusterResource::Network)
            }
            ClusterResource::ClusterIdentity(d) => typed(
                identity::observe(c, d).await?,
                ClusterResource::ClusterIdentity,
            ),
            ClusterResource::Cluster(d) => {
                typed(cluster::observe(c, d).await?, ClusterResource::Cluster)
            }
            ClusterResource::NodePool(d) => {
                typed(nodepool::observe(c, d).await?, ClusterResource::NodePool)
            }
        })
    }

    async fn ensure(&self, resource: &ClusterResource, inputs: &Inputs) -> Result<Progress> {
        let c = &self.ctx;
        match resource {
            ClusterResource::Foundation(d) => foundation::ensure(c, d).await,
            ClusterResource::Network(d) => network::ensure(c, d).await,
            ClusterResource::ClusterIdentity(d) => identity::ensure(c, d).await,
            ClusterResource::Cluster(d) => cluster::ensure(c, d, inputs).await,
            ClusterResource::NodePool(d) => nodepool::ensure(c, d, inputs).await,
        }
    }

    async fn delete(&self, resource: &ClusterResource) -> Result<Progress> {
        let c = &self.ctx;
        if self.in_missing_project() {
            return Ok(Progress::Done(None));
        }
        match resource {
            // The project and its APIs stay: other things may live in the project.
            ClusterResource::Foundation(_) => Ok(Progress::Done(None)),
            ClusterResource::Network(d) => network::delete(c, d).await,
            ClusterResource::ClusterIdentity(d) => identity::delete(c, &d.name).await,
            ClusterResource::Cluster(d) => cluster::delete(c, d).await,
            ClusterResource::NodePool(d) => nodepool::delete(c, d).await,
        }
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        ops::poll(&self.ctx, op).await
    }
}

#[async_trait]
impl DnsProvider for GcpProvider {
    fn info(&self) -> ProviderInfo {
        Self::provider_info()
    }

    async fn observe(&self, resource: &DnsResource) -> Result<Option<Observed<DnsResource>>> {
        let c = &self.ctx;
        if self.in_missing_project() {
            return Ok(None);
        }
        Ok(match resource {
            DnsResource::Zone(d) => typed(dns::observe_zone(c, d).await?, DnsResource::Zone),
            DnsResource::Identity(d) => {
                typed(dns::observe_identity(c, d).await?, DnsResource::Identity)
            }
            DnsResource::Records(d) => {
                typed(dns::observe_records(c, d).await?, DnsResource::Records)
            }
        })
    }

    async fn ensure(&self, resource: &DnsResource, inputs: &Inputs) -> Result<Progress> {
        let c = &self.ctx;
        match resource {
            DnsResource::Zone(d) => dns::ensure_zone(c, d).await,
            DnsResource::Identity(d) => dns::ensure_identity(c, d, inputs).await,
            DnsResource::Records(d) => dns::ensure_records(c, d).await,
        }
    }

    async fn delete(&self, resource: &DnsResource) -> Result<Progress> {
        let c = &self.ctx;
        if self.in_missing_project() {
            return Ok(Progress::Done(None));
        }
        match resource {
            DnsResource::Zone(d) => dns::delete_zone(c, d).await,
            DnsResource::Identity(d) => dns::delete_identity(c, &d.name).await,
            DnsResource::Records(d) => dns::delete_records(c, d).await,
        }
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        ops::poll(&self.ctx, op).await
    }
}

#[async_trait]
impl ObjectStore for GcpProvider {
    fn info(&self) -> ProviderInfo {
        Self::provider_info()
    }

    async fn observe(
        &self,
        storage: &ObjectStorageSpec,
    ) -> Result<Option<Observed<ObjectStorageSpec>>> {
        if self.in_missing_project() {
            return Ok(None);
        }
        storage::observe(&self.ctx, storage).await
    }

    async fn ensure(&self, storage: &ObjectStorageSpec, inputs: &Inputs) -> Result<Progress> {
        storage::ensure(&self.ctx, storage, inputs).await
    }

    async fn delete(&self, storage: &ObjectStorageSpec) -> Result<Progress> {
        if self.in_missing_project() {
            return Ok(Progress::Done(None));
        }
        storage::delete(&self.ctx, &storage.name).await
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        ops::poll(&self.ctx, op).await
    }
}

#[async_trait]
impl Registry for GcpProvider {
    fn info(&self) -> ProviderInfo {
        Self::provider_info()
    }

    async fn observe(&self, registry: &RegistrySpec) -> Result<Option<Observed<RegistrySpec>>> {
        if self.in_missing_project() {
            return Ok(None);
        }
        registry::observe(&self.ctx, registry).await
    }

    async fn ensure(&self, registry: &RegistrySpec, inputs: &Inputs) -> Result<Progress> {
        registry::ensure(&self.ctx, registry, inputs).await
    }

    async fn delete(&self, registry: &RegistrySpec) -> Result<Progress> {
        if self.in_missing_project() {
            return Ok(Progress::Done(None));
        }
        registry::delete(&self.ctx, registry).await
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        ops::poll(&self.ctx, op).await
    }
}

#[async_trait]
impl Database for GcpProvider {
    fn info(&self) -> ProviderInfo {
        Self::provider_info()
    }

    async fn observe(
        &self,
        resource: &DatabaseResource,
    ) -> Result<Option<Observed<DatabaseResource>>> {
        let c = &self.ctx;
        if self.in_missing_project() {
            return Ok(None);
        }
        Ok(match resource {
            DatabaseResource::Instance(d) => typed(
                database::observe_instance(c, d).await?,
                DatabaseResource::Instance,
            ),
            DatabaseResource::Database(d) => typed(
                database::observe_database(c, d).await?,
                DatabaseResource::Database,
            ),
        })
    }

    async fn ensure(&self, resource: &DatabaseResource, inputs: &Inputs) -> Result<Progress> {
        let c = &self.ctx;
        match resource {
            DatabaseResource::Instance(d) => database::ensure_instance(c, d).await,
            DatabaseResource::Database(d) => database::ensure_database(c, d, inputs).await,
        }
    }

    async fn delete(&self, resource: &DatabaseResource) -> Result<Progress> {
        let c = &self.ctx;
        if self.in_missing_project() {
            return Ok(Progress::Done(None));
        }
        match resource {
            DatabaseResource::Instance(d) => database::delete_instance(c, d).await,
            DatabaseResource::Database(d) => database::delete_database(c, d).await,
        }
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        ops::poll(&self.ctx, op).await
    }
}

#[async_trait]
impl ClusterCredentials for GcpProvider {
    async fn cluster_token(&self, cluster: &Output) -> Result<AccessToken> {
        access::cluster_token(&self.ctx, cluster).await
    }
}
