//! The provider-neutral traits a cloud crate implements (five for the cloud, one
//! for the cluster's inside, one for cluster tokens), and the values they
//! exchange with the engine.
//!
//! Every trait has the same verbs over the resources of its own domain, each a type
//! of its own ([`ClusterResource`], [`DnsResource`], [`ObjectStorageSpec`],
//! [`RegistrySpec`], [`DatabaseResource`], [`InClusterResource`]), so the compiler
//! tells an implementer which kinds reach it:
//!
//! - `observe`: one read; what exists now (`None` if nothing), in the same shape as
//!   the desired state so the planner can diff it, plus its outputs where they can be
//!   read, and [`Observed::drift`] for what the shape cannot say. It receives the
//!   desired state: fields a cloud cannot report (an AWS account has no labels) are
//!   copied from it, and so never show drift.
//! - `ensure`: make the resource match `desired` (create or update). Must be
//!   idempotent by *lookup before create* (deterministic name or tag), never by
//!   trusting a create error. May return a pending [`Operation`]: the engine polls it
//!   until done, then calls `ensure` again, until `ensure` returns `Done` with outputs
//!   (so a resource built in phases converges one phase per call).
//! - `delete`: remove it; deleting something absent succeeds. Like `ensure`, it is
//!   called again after each pending operation until it returns `Done`.
//!
//! and `poll` for operations they returned. Any mix of implementations composes:
//! [`Providers`] routes each resource to the trait of its domain
//! ([`Desired::route`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use gitpod_refarch::{Engine, Providers};
//! use gitpod_refarch::engine::TokioClock;
//! use gitpod_refarch::sim::{LatencyProfile, SimCloud};
//!
//! # fn run() -> Result<(), gitpod_refarch::Error> {
//! let clock = Arc::new(TokioClock::new());
//! let cloud = Arc::new(SimCloud::new(clock.clone(), LatencyProfile::instant()));
//! // Your own DNS: anything that implements `DnsProvider` (here a second simulation).
//! let my_dns = Arc::new(SimCloud::new(clock.clone(), LatencyProfile::instant()));
//! let providers = Providers::builder()
//!     .cluster(cloud.clone())
//!     .dns(my_dns)
//!     .object_store(cloud.clone())
//!     .registry(cloud.clone())
//!     .database(cloud)
//!     .build()?;
//! let engine = Engine::builder(providers).clock(clock).build()?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::resource::{
    ClusterResource, DatabaseResource, Desired, DnsResource, InClusterResource, ObjectStorageSpec,
    Output, RegistrySpec, ResourceId, ResourceKind,
};
use crate::secret::Secret;

mod routing;

pub use routing::{Providers, ProvidersBuilder};

/// What a provider says about itself.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    /// A short name (`gke`, `eks`, `route53`, `sim`).
    pub name: String,
    /// Operations on a cluster and its node pools must not overlap (GKE, AKS): the
    /// planner puts them in one serial lane.
    pub serial_cluster_operations: bool,
    /// It manages a part on a server the platform team runs (`provider: selfManaged`
    /// in the spec), not a cloud service: the engine refuses a spec whose part's
    /// `provider` disagrees with this.
    pub self_managed: bool,
}

impl ProviderInfo {
    /// Info with the given name and no constraints.
    pub fn new(name: impl Into<String>) -> Self {
        ProviderInfo {
            name: name.into(),
            serial_cluster_operations: false,
            self_managed: false,
        }
    }

    /// Declare that the provider manages a self-managed part (`provider: selfManaged`).
    #[must_use]
    pub fn with_self_managed(mut self, self_managed: bool) -> Self {
        self.self_managed = self_managed;
        self
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

/// What `observe` found, in the shape of the trait's own resource type `S`.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct Observed<S = Desired> {
    /// The resource as it exists, in the shape of its desired state.
    pub actual: S,
    /// Its outputs, if the provider can read them all (not for secrets it cannot read back).
    pub output: Option<Output>,
    /// An operation still running on it (a create or delete started by an earlier run).
    pub pending: Option<Operation>,
    /// Why the resource needs an `ensure` although `actual` equals the desired state:
    /// what the desired state cannot express (an install stopped half-way, credentials
    /// in the cluster that are not the current ones). The planner turns each into an
    /// update reason.
    pub drift: Vec<String>,
}

impl<S> Observed<S> {
    /// A resource that exists and is ready.
    pub fn ready(actual: S, output: Option<Output>) -> Self {
        Observed {
            actual,
            output,
            pending: None,
            drift: Vec::new(),
        }
    }

    /// A resource with an operation in flight.
    pub fn pending(actual: S, op: Operation) -> Self {
        Observed {
            actual,
            output: None,
            pending: Some(op),
            drift: Vec::new(),
        }
    }

    /// Add a drift reason (see [`Observed::drift`]).
    #[must_use]
    pub fn with_drift(mut self, reason: impl Into<String>) -> Self {
        self.drift.push(reason.into());
        self
    }

    /// Add a drift reason when `reason` is `Some`.
    #[must_use]
    pub fn with_drift_if(self, reason: Option<String>) -> Self {
        match reason {
            Some(r) => self.with_drift(r),
            None => self,
        }
    }

    /// The same observation with `actual` converted (to [`Desired`], for the planner).
    pub fn map<T>(self, f: impl FnOnce(S) -> T) -> Observed<T> {
        Observed {
            actual: f(self.actual),
            output: self.output,
            pending: self.pending,
            drift: self.drift,
        }
    }
}

/// What `ensure` receives besides the desired state: the outputs of the resources it
/// depends on, and secrets the engine generated and saved before the call.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Shared with the engine's run and the other steps that started from the same
    /// outputs (copied only when one of them inserts).
    outputs: Arc<BTreeMap<ResourceId, Output>>,
    secrets: Arc<BTreeMap<String, Secret>>,
}

pub use crate::resource::{DATABASE_PASSWORD, ENCRYPTION_KEY};

impl Inputs {
    /// Inputs from dependency outputs and engine secrets.
    pub fn new(outputs: BTreeMap<ResourceId, Output>, secrets: BTreeMap<String, Secret>) -> Self {
        Self::shared(Arc::new(outputs), Arc::new(secrets))
    }

    /// Inputs over maps the caller keeps too: a run's steps share one copy of the
    /// outputs instead of one each.
    pub fn shared(
        outputs: Arc<BTreeMap<ResourceId, Output>>,
        secrets: Arc<BTreeMap<String, Secret>>,
    ) -> Self {
        Inputs { outputs, secrets }
    }

    /// Record an output (the engine does, for operations that finished).
    pub fn insert(&mut self, id: ResourceId, output: Output) {
        Arc::make_mut(&mut self.outputs).insert(id, output);
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
///
/// GKE, EKS and AKS implement it in their cloud crates; see the module docs for the
/// contract of each verb.
#[async_trait]
pub trait ClusterProvider: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists (`resource`: the spec's state for it).
    async fn observe(
        &self,
        resource: &ClusterResource,
    ) -> Result<Option<Observed<ClusterResource>>>;
    /// Create or update to match.
    async fn ensure(&self, resource: &ClusterResource, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success).
    async fn delete(&self, resource: &ClusterResource) -> Result<Progress>;
    /// Poll an operation this provider returned.
    async fn poll(&self, op: &Operation) -> Result<Progress>;
}

/// The DNS zone, the DNS identity and the Gitpod records.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists. For [`DnsResource::Records`] the spec may no longer
    /// want them (target `Hostname("")`): report what is there, so it is deleted.
    async fn observe(&self, resource: &DnsResource) -> Result<Option<Observed<DnsResource>>>;
    /// Create or update to match. [`DnsResource::Identity`] reports the
    /// [`crate::resource::DnsSolver`] the in-cluster bootstrap configures.
    async fn ensure(&self, resource: &DnsResource, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success).
    async fn delete(&self, resource: &DnsResource) -> Result<Progress>;
    /// Poll an operation this provider returned.
    async fn poll(&self, op: &Operation) -> Result<Progress>;
}

/// Object storage and its credentials ([`Output::ObjectStorage`]).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists.
    async fn observe(
        &self,
        storage: &ObjectStorageSpec,
    ) -> Result<Option<Observed<ObjectStorageSpec>>>;
    /// Create or update to match.
    async fn ensure(&self, storage: &ObjectStorageSpec, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success).
    async fn delete(&self, storage: &ObjectStorageSpec) -> Result<Progress>;
    /// Poll an operation this provider returned.
    async fn poll(&self, op: &Operation) -> Result<Progress>;
}

/// The OCI registry and its push credentials ([`Output::Registry`]).
#[async_trait]
pub trait Registry: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists.
    async fn observe(&self, registry: &RegistrySpec) -> Result<Option<Observed<RegistrySpec>>>;
    /// Create or update to match.
    async fn ensure(&self, registry: &RegistrySpec, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success).
    async fn delete(&self, registry: &RegistrySpec) -> Result<Progress>;
    /// Poll an operation this provider returned.
    async fn poll(&self, op: &Operation) -> Result<Progress>;
}

/// The MySQL instance, the `gitpod` database and its user.
#[async_trait]
pub trait Database: Send + Sync {
    /// Name and constraints.
    fn info(&self) -> ProviderInfo;
    /// One read of what exists.
    async fn observe(
        &self,
        resource: &DatabaseResource,
    ) -> Result<Option<Observed<DatabaseResource>>>;
    /// Create or update to match. For both the instance (admin user) and the
    /// database (dedicated user) the password is `inputs.secret(DATABASE_PASSWORD)`,
    /// generated and saved by the engine first.
    async fn ensure(&self, resource: &DatabaseResource, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success).
    async fn delete(&self, resource: &DatabaseResource) -> Result<Progress>;
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
        resource: &InClusterResource,
        inputs: &Inputs,
    ) -> Result<Option<Observed<InClusterResource>>>;
    /// Create or update to match.
    async fn ensure(&self, resource: &InClusterResource, inputs: &Inputs) -> Result<Progress>;
    /// Remove (absent is success).
    async fn delete(&self, resource: &InClusterResource, inputs: &Inputs) -> Result<Progress>;
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

// `Providers`, its builder and the routing by domain live in `routing.rs`.

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::resource::ResourceKind;

    fn foundation(account: &str) -> Output {
        Output::Foundation {
            account: account.into(),
        }
    }

    #[test]
    fn shared_inputs_copy_their_outputs_only_when_one_of_them_inserts() {
        let id = ResourceId::new(ResourceKind::Foundation, "gp");
        let other = ResourceId::new(ResourceKind::Network, "gp");
        let outputs = Arc::new(BTreeMap::from([(id.clone(), foundation("a"))]));
        let secrets = Arc::new(BTreeMap::new());
        let first = Inputs::shared(outputs.clone(), secrets.clone());
        let mut second = Inputs::shared(outputs.clone(), secrets);
        // Shared: one map for the run and both steps.
        assert_eq!(Arc::strong_count(&outputs), 3);
        assert!(std::ptr::eq(first.outputs(), second.outputs()));

        second.insert(other.clone(), foundation("b"));
        // The inserting one got its own copy; the others still see what they had.
        assert_eq!(Arc::strong_count(&outputs), 2);
        assert_eq!(second.get(&other), Some(&foundation("b")));
        assert_eq!(second.get(&id), Some(&foundation("a")));
        assert_eq!(first.get(&other), None);
        assert_eq!(outputs.len(), 1);
    }
}
