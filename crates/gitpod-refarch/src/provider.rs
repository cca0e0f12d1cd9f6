//! The provider-neutral traits a cloud crate implements (five for the cloud, one
//! for the cluster's inside, one for cluster tokens), and the values they
//! exchange with the engine.
//!
//! Every trait has the same three verbs over the resources of its [`Domain`]:
//!
//! - `observe`: one read; what exists now (`None` if nothing), in the same shape as
//!   [`Desired`] so the planner can diff it, plus its outputs where they can be read.
//!   It receives the desired state when the spec has one: fields a cloud cannot report
//!   (an AWS account has no labels) are copied from it, and so never show drift.
//! - `ensure`: make the resource match `desired` (create or update). Must be
//!   idempotent by *lookup before create* (deterministic name or tag), never by
//!   trusting a create error. May return a pending [`Operation`]: the engine polls it
//!   until done, then calls `ensure` again, until `ensure` returns `Done` with outputs
//!   (so a resource built in phases converges one phase per call).
//! - `delete`: remove it; deleting something absent succeeds. Like `ensure`, it is
//!   called again after each pending operation until it returns `Done`.
//!
//! and `poll` for operations they returned. Any mix of implementations composes: the
//! engine routes each resource to the trait of its [`ResourceKind::domain`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::resource::{Desired, Domain, Output, ResourceId, ResourceKind};
use crate::secret::Secret;

/// What a provider says about itself.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    /// A short name (`gke`, `eks`, `route53`, `sim`).
    pub name: String,
    /// Operations on a cluster and its node pools must not overlap (GKE, AKS): the
    /// planner puts them in one serial lane.
    pub serial_cluster_operations: bool,
}

impl ProviderInfo {
    /// Info with the given name and no constraints.
    pub fn new(name: impl Into<String>) -> Self {
        ProviderInfo {
            name: name.into(),
            serial_cluster_operations: false,
        }
    }

    /// Declare that cluster and node-pool operations must be serialised.
    #[must_use]
    pub fn with_serial_cluster_operations(mut self, serial: bool) -> Self {
        self.serial_cluster_operations = serial;
        self
    }
}

/// An in-flight long-running operation.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// The provider's operation id or URL.
    pub id: String,
    /// The resource it concerns.
    pub resource: ResourceId,
    /// When to poll next, if the provider knows (Retry-After, estimates).
    pub poll_after: Option<Duration>,
    /// Percent done, if known.
    pub percent: Option<u8>,
    /// A status message, if any.
    pub message: Option<String>,
}

impl Operation {
    /// A new operation.
    pub fn new(id: impl Into<String>, resource: ResourceId) -> Self {
        Operation {
            id: id.into(),
            resource,
            poll_after: None,
            percent: None,
            message: None,
        }
    }

    /// Set the poll hint.
    #[must_use]
    pub fn poll_after(mut self, d: Duration) -> Self {
        self.poll_after = Some(d);
        self
    }
}

/// The result of `ensure`, `delete` or `poll`.
#[must_use]
#[derive(Debug, Clone)]
pub enum Progress {
    /// Finished; for ensure, the resource's outputs.
    Done(Option<Output>),
    /// Still running: poll this operation.
    Pending(Operation),
}

/// What `observe` found.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct Observed {
    /// The resource as it exists, in the shape of [`Desired`].
    pub actual: Desired,
    /// Its outputs, if the provider can read them all (not for secrets it cannot read back).
    pub output: Option<Output>,
    /// An operation still running on it (a create or delete started by an earlier run).
    pub pending: Option<Operation>,
}

impl Observed {
    /// A resource that exists and is ready.
    pub fn ready(actual: Desired, output: Option<Output>) -> Self {
        Observed {
            actual,
            output,
            pending: None,
        }
    }

    /// A resource with an operation in flight.
    pub fn pending(actual: Desired, op: Operation) -> Self {
        Observed {
            actual,
            output: None,
            pending: Some(op),
        }
    }
}

/// What `ensure` receives besides the desired state: the outputs of the resources it
/// depends on, and secrets the engine generated and saved before the call.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    outputs: BTreeMap<ResourceId, Output>,
    secrets: BTreeMap<String, Secret>,
}

/// The key of the generated database password in [`Inputs::secret`].
pub const DATABASE_PASSWORD: &str = "database-password";

/// The key of Gitpod's database encryption key in [`Inputs::secret`] (generated and
/// saved by the engine before the Gitpod namespace's secrets are applied).
pub const ENCRYPTION_KEY: &str = crate::state::ENCRYPTION_KEY;

impl Inputs {
    /// Inputs from dependency outputs and engine secrets.
    pub fn new(outputs: BTreeMap<ResourceId, Output>, secrets: BTreeMap<String, Secret>) -> Self {
        Inputs { outputs, secrets }
    }

    /// Record an output (the engine does, for operations that finished).
    pub fn insert(&mut self, id: ResourceId, output: Output) {
        self.outputs.insert(id, output);
    }

    /// The output of a dependency, or of the resource itself when earlier runs (or a
    /// finished operation) reported one.
    pub fn get(&self, id: &ResourceId) -> Option<&Output> {
        self.outputs.get(id)
    }

    /// All outputs known to this step.
    pub fn outputs(&self) -> &BTreeMap<ResourceId, Output> {
        &self.outputs
    }

    /// The first dependency output of `kind`.
    pub fn of_kind(&self, kind: ResourceKind) -> Result<&Output> {
        self.outputs
            .iter()
            .find(|(id, _)| id.kind == kind)
            .map(|(_, o)| o)
            .ok_or_else(|| Error::internal(format!("no {} output among the inputs", kind.as_str())))
    }

    /// A secret generated by the engine (for example [`DATABASE_PASSWORD`]).
    pub fn secret(&self, key: &str) -> Result<&Secret> {
        self.secrets.get(key).ok_or_else(|| {
            Error::internal(format!("secret '{key}' was not provided by the engine"))
        })
    }
}

/// Account preparation, network, cluster identity, cluster and node pools.
#[async_trait]
pub trait ClusterProvider: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists (`desired`: the spec's state for it, if any).
    async fn observe(&self, id: &ResourceId, desired: Option<&Desired>)
        -> Result<Option<Observed>>;
    /// Create or update to match.
    async fn ensure(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success); `desired` as in `observe`.
    async fn delete(&self, id: &ResourceId, desired: Option<&Desired>) -> Result<Progress>;
    /// Poll an operation this provider returned.
    async fn poll(&self, op: &Operation) -> Result<Progress>;
}

/// The DNS zone, the DNS identity and the Gitpod records.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists (`desired`: the spec's state for it, if any).
    async fn observe(&self, id: &ResourceId, desired: Option<&Desired>)
        -> Result<Option<Observed>>;
    /// Create or update to match.
    async fn ensure(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success); `desired` as in `observe`.
    async fn delete(&self, id: &ResourceId, desired: Option<&Desired>) -> Result<Progress>;
    /// Poll an operation this provider returned.
    async fn poll(&self, op: &Operation) -> Result<Progress>;
}

/// Object storage and its credentials.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists (`desired`: the spec's state for it, if any).
    async fn observe(&self, id: &ResourceId, desired: Option<&Desired>)
        -> Result<Option<Observed>>;
    /// Create or update to match.
    async fn ensure(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success); `desired` as in `observe`.
    async fn delete(&self, id: &ResourceId, desired: Option<&Desired>) -> Result<Progress>;
    /// Poll an operation this provider returned.
    async fn poll(&self, op: &Operation) -> Result<Progress>;
}

/// The OCI registry and its push credentials.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists (`desired`: the spec's state for it, if any).
    async fn observe(&self, id: &ResourceId, desired: Option<&Desired>)
        -> Result<Option<Observed>>;
    /// Create or update to match.
    async fn ensure(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success); `desired` as in `observe`.
    async fn delete(&self, id: &ResourceId, desired: Option<&Desired>) -> Result<Progress>;
    /// Poll an operation this provider returned.
    async fn poll(&self, op: &Operation) -> Result<Progress>;
}

/// The MySQL instance, the `gitpod` database and its user.
#[async_trait]
pub trait Database: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists (`desired`: the spec's state for it, if any).
    async fn observe(&self, id: &ResourceId, desired: Option<&Desired>)
        -> Result<Option<Observed>>;
    /// Create or update to match. For [`Desired::DatabaseInstance`] (admin user) and
    /// [`Desired::Database`] (dedicated user) the password is
    /// `inputs.secret(DATABASE_PASSWORD)`, generated and saved by the engine first.
    async fn ensure(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success); `desired` as in `observe`.
    async fn delete(&self, id: &ResourceId, desired: Option<&Desired>) -> Result<Progress>;
    /// Poll an operation this provider returned.
    async fn poll(&self, op: &Operation) -> Result<Progress>;
}

/// What is inside the Kubernetes cluster: the cluster-admin binding, cert-manager,
/// external-dns, the issuer, the Gitpod namespace with its secrets, the certificate.
///
/// The same verbs as the cloud traits, but `observe` and `delete` also receive the
/// outputs known so far (the cluster's endpoint and CA, the DNS solver): an
/// implementation connects to the cluster from them. Without a
/// [`ResourceKind::Cluster`] output it must report absent resources (`observe`) and
/// succeed (`delete`) without any call: there is no cluster to look into.
#[async_trait]
pub trait ClusterBootstrap: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists.
    async fn observe(
        &self,
        id: &ResourceId,
        desired: Option<&Desired>,
        inputs: &Inputs,
    ) -> Result<Option<Observed>>;
    /// Create or update to match.
    async fn ensure(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success).
    async fn delete(
        &self,
        id: &ResourceId,
        desired: Option<&Desired>,
        inputs: &Inputs,
    ) -> Result<Progress>;
    /// Poll an operation this implementation returned.
    async fn poll(&self, op: &Operation) -> Result<Progress>;
}

/// A bearer token for a Kubernetes API server, and when it stops working.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The token (`Authorization: Bearer ...`); `None` for a server without
    /// authentication (a local fake).
    pub token: Option<Secret>,
    /// When it expires, if it does; callers refresh before then.
    pub expires_at: Option<std::time::SystemTime>,
    /// The user name the cluster knows the caller by (for the cluster-admin binding),
    /// if the cloud can tell.
    pub user: Option<String>,
}

impl AccessToken {
    /// A token that expires at `expires_at` (if given).
    pub fn bearer(token: Secret, expires_at: Option<std::time::SystemTime>) -> Self {
        AccessToken {
            token: Some(token),
            expires_at,
            user: None,
        }
    }

    /// No authentication at all.
    pub fn anonymous() -> Self {
        AccessToken {
            token: None,
            expires_at: None,
            user: None,
        }
    }

    /// Set the user name the cluster knows the caller by.
    #[must_use]
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
}

/// A cloud's way of getting a Kubernetes API token for a cluster it made: GKE's
/// OAuth token from Application Default Credentials, EKS's presigned STS
/// `GetCallerIdentity`, AKS's Entra ID token. No CLI, no kubeconfig file.
#[async_trait]
pub trait ClusterCredentials: Send + Sync {
    /// A fresh token for the cluster whose [`Output::Cluster`] is given.
    async fn cluster_token(&self, cluster: &Output) -> Result<AccessToken>;
}

/// One implementation of each trait; they may come from different clouds.
#[derive(Clone)]
pub struct Providers {
    /// Cluster and account.
    pub cluster: Arc<dyn ClusterProvider>,
    /// DNS.
    pub dns: Arc<dyn DnsProvider>,
    /// Object storage.
    pub object_store: Arc<dyn ObjectStore>,
    /// Registry.
    pub registry: Arc<dyn Registry>,
    /// Database.
    pub database: Arc<dyn Database>,
    /// What goes inside the cluster; `None` stops an apply at the cloud resources.
    pub in_cluster: Option<Arc<dyn ClusterBootstrap>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("cluster", &self.cluster.info().name)
            .field("dns", &self.dns.info().name)
            .field("object_store", &self.object_store.info().name)
            .field("registry", &self.registry.info().name)
            .field("database", &self.database.info().name)
            .field(
                "in_cluster",
                &self.in_cluster.as_ref().map(|b| b.info().name),
            )
            .finish()
    }
}

impl Providers {
    /// Use one value implementing all five traits (a simulated or single-cloud provider).
    pub fn all<P>(p: Arc<P>) -> Self
    where
        P: ClusterProvider + DnsProvider + ObjectStore + Registry + Database + 'static,
    {
        Providers {
            cluster: p.clone(),
            dns: p.clone(),
            object_store: p.clone(),
            registry: p.clone(),
            database: p,
            in_cluster: None,
        }
    }

    /// Also bootstrap the cluster's inside with `bootstrap` (cert-manager,
    /// external-dns, issuer, Gitpod namespace and secrets, certificate).
    #[must_use]
    pub fn with_in_cluster(mut self, bootstrap: Arc<dyn ClusterBootstrap>) -> Self {
        self.in_cluster = Some(bootstrap);
        self
    }

    fn bootstrap(&self) -> Result<&Arc<dyn ClusterBootstrap>> {
        self.in_cluster
            .as_ref()
            .ok_or_else(|| Error::internal("no in-cluster bootstrap is configured"))
    }

    pub(crate) fn info(&self, domain: Domain) -> ProviderInfo {
        match domain {
            Domain::Cluster => self.cluster.info(),
            Domain::Dns => self.dns.info(),
            Domain::ObjectStore => self.object_store.info(),
            Domain::Registry => self.registry.info(),
            Domain::Database => self.database.info(),
            Domain::InCluster => self
                .in_cluster
                .as_ref()
                .map(|b| b.info())
                .unwrap_or_else(|| ProviderInfo::new("none")),
        }
    }

    pub(crate) async fn observe(
        &self,
        id: &ResourceId,
        desired: Option<&Desired>,
        inputs: &Inputs,
    ) -> Result<Option<Observed>> {
        match id.kind.domain() {
            Domain::Cluster => self.cluster.observe(id, desired).await,
            Domain::Dns => self.dns.observe(id, desired).await,
            Domain::ObjectStore => self.object_store.observe(id, desired).await,
            Domain::Registry => self.registry.observe(id, desired).await,
            Domain::Database => self.database.observe(id, desired).await,
            Domain::InCluster => self.bootstrap()?.observe(id, desired, inputs).await,
        }
    }

    pub(crate) async fn ensure(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress> {
        match desired.kind().domain() {
            Domain::Cluster => self.cluster.ensure(desired, inputs).await,
            Domain::Dns => self.dns.ensure(desired, inputs).await,
            Domain::ObjectStore => self.object_store.ensure(desired, inputs).await,
            Domain::Registry => self.registry.ensure(desired, inputs).await,
            Domain::Database => self.database.ensure(desired, inputs).await,
            Domain::InCluster => self.bootstrap()?.ensure(desired, inputs).await,
        }
    }

    pub(crate) async fn delete(
        &self,
        id: &ResourceId,
        desired: Option<&Desired>,
        inputs: &Inputs,
    ) -> Result<Progress> {
        match id.kind.domain() {
            Domain::Cluster => self.cluster.delete(id, desired).await,
            Domain::Dns => self.dns.delete(id, desired).await,
            Domain::ObjectStore => self.object_store.delete(id, desired).await,
            Domain::Registry => self.registry.delete(id, desired).await,
            Domain::Database => self.database.delete(id, desired).await,
            Domain::InCluster => self.bootstrap()?.delete(id, desired, inputs).await,
        }
    }

    pub(crate) async fn poll(&self, op: &Operation) -> Result<Progress> {
        match op.resource.kind.domain() {
            Domain::Cluster => self.cluster.poll(op).await,
            Domain::Dns => self.dns.poll(op).await,
            Domain::ObjectStore => self.object_store.poll(op).await,
            Domain::Registry => self.registry.poll(op).await,
            Domain::Database => self.database.poll(op).await,
            Domain::InCluster => self.bootstrap()?.poll(op).await,
        }
    }
}

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;

/// Implement all five provider traits for a single-cloud provider type by forwarding
/// to its inherent methods `observe_any`, `ensure_any`, `delete_any` and `poll_any`
/// (same signatures as the trait methods), with `info` given as an expression.
///
/// For example `gitpod_refarch::forward_provider_traits!(MyProvider,
/// ProviderInfo::new("mine"));` (the AWS and GCP providers use it).
#[macro_export]
macro_rules! forward_provider_traits {
    ($ty:ty, $info:expr) => {
        $crate::forward_provider_traits!(@one $ty, $info, $crate::provider::ClusterProvider);
        $crate::forward_provider_traits!(@one $ty, $info, $crate::provider::DnsProvider);
        $crate::forward_provider_traits!(@one $ty, $info, $crate::provider::ObjectStore);
        $crate::forward_provider_traits!(@one $ty, $info, $crate::provider::Registry);
        $crate::forward_provider_traits!(@one $ty, $info, $crate::provider::Database);
    };
    (@one $ty:ty, $info:expr, $tr:path) => {
        #[$crate::provider::__async_trait]
        impl $tr for $ty {
            fn info(&self) -> $crate::provider::ProviderInfo {
                $info
            }
            async fn observe(
                &self,
                id: &$crate::resource::ResourceId,
                desired: ::std::option::Option<&$crate::resource::Desired>,
            ) -> $crate::Result<::std::option::Option<$crate::provider::Observed>> {
                self.observe_any(id, desired).await
            }
            async fn ensure(
                &self,
                desired: &$crate::resource::Desired,
                inputs: &$crate::provider::Inputs,
            ) -> $crate::Result<$crate::provider::Progress> {
                self.ensure_any(desired, inputs).await
            }
            async fn delete(
                &self,
                id: &$crate::resource::ResourceId,
                desired: ::std::option::Option<&$crate::resource::Desired>,
            ) -> $crate::Result<$crate::provider::Progress> {
                self.delete_any(id, desired).await
            }
            async fn poll(
                &self,
                op: &$crate::provider::Operation,
            ) -> $crate::Result<$crate::provider::Progress> {
                self.poll_any(op).await
            }
        }
    };
}
