//! The in-cluster bootstrap of gitpod-refarch, with kube-rs: what the guide does
//! with `kubectl` and `helm` once the cluster exists, as part of the same apply.
//!
//! ```no_run
//! use std::sync::Arc;
//! use gitpod_refarch::engine::{Clock, TokioClock};
//! use gitpod_refarch::{Engine, Providers, ReferenceArchitecture};
//! use gitpod_refarch_bootstrap::{BootstrapConfig, KubeBootstrap};
//!
//! # async fn demo(
//! #     cloud: Arc<gitpod_refarch::sim::SimCloud>,
//! #     spec: ReferenceArchitecture,
//! # ) -> gitpod_refarch::Result<()> {
//! // One clock for the engine and the bootstrap's per-call retries.
//! let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
//! // `cloud` implements the five cloud traits and `ClusterCredentials` (GKE, EKS, ...):
//! // the bootstrap asks it for a fresh API token whenever the last one is about to expire.
//! let bootstrap = KubeBootstrap::new(BootstrapConfig::new(cloud.clone()).clock(clock.clone()));
//! let providers = Providers::all(cloud).with_in_cluster(Arc::new(bootstrap));
//! let engine = Engine::builder(providers).clock(clock).build()?;
//! let report = engine.apply_spec(&spec).await?;
//! println!("{} changed", report.changed.len());
//! # Ok(())
//! # }
//! ```
//!
//! # What it applies (server-side apply, field manager `gitpod-refarch`)
//!
//! One resource of the core's graph each ([`InClusterResource`]), each in a file of
//! its own under `src/resources/` with its observe, ensure, delete and poll;
//! [`KubeBootstrap`] routes every variant to its file:
//!
//! | resource | objects |
//! |---|---|
//! | `cluster-access` | ClusterRoleBinding `cluster-admin-binding` for the caller (none when the credentials name no user, as on AKS: the rights come from the cloud) |
//! | `cert-manager` | the pinned release (helm, or the manifest checked against its digest) with `--dns01-recursive-nameservers-only` and `--dns01-recursive-nameservers=8.8.8.8:53,1.1.1.1:53`; ready when its CRDs are Established, its Deployments available and its webhook admits a dry-run ClusterIssuer |
//! | `external-dns` | namespace, credentials Secret, ServiceAccount, ClusterRole(Binding), Deployment with the domain filter and `--txt-owner-id` = installation; on Azure DNS the ServiceAccount annotated `azure.workload.identity/client-id`, the pods labelled `azure.workload.identity/use` and an `azure.json` with no credential |
//! | `issuer` | the DNS-01 solver secret (or cert-manager's workload identity: its ServiceAccount's annotation and, on Azure, its controller pods' label, patched with a field manager of their own) and ClusterIssuer `gitpod-issuer` |
//! | `gitpod-namespace` | namespace `gitpod` and the installer's secrets (`database`/`cloudsql`, `storage-*`, registry) |
//! | `certificate` | Certificate `https-certificates`; while it is not Ready, the ACME challenges' state is reported and the zone's delegation is checked ([`delegation`]) |
//!
//! # Drift
//!
//! What the desired state cannot express is reported as
//! [`Observed::drift`](gitpod_refarch::provider::Observed::drift), so the plan shows
//! an update with its reasons and the apply repairs it:
//!
//! - cert-manager installed only in part (a CRD or Deployment missing, say after an
//!   install was stopped half-way);
//! - external-dns's credentials Secret missing or with other data than the DNS
//!   identity's current credentials, or its ServiceAccount or pod template without the
//!   workload identity annotation or label the solver asks for;
//! - the ClusterIssuer's DNS-01 solver not the one the DNS identity reports, the
//!   solver's Secret missing or stale, or cert-manager's ServiceAccount or controller
//!   without the workload identity annotation or label;
//! - the installer's secrets in the Gitpod namespace missing, stale or of another type.
//!
//! The reasons name objects and Secret keys, never secret values.
//!
//! # Teardown
//!
//! Teardown deletes the Gitpod namespace and every `LoadBalancer` Service, and
//! reports done only when they are gone, so the cloud's load balancers are released
//! before the cluster and network are deleted.
//!
//! # Connection and retries
//!
//! Cluster access ([`access`]) builds a [`kube::Client`] from the cluster's output
//! (endpoint, CA) and the cloud's
//! [`ClusterCredentials`](gitpod_refarch::provider::ClusterCredentials); no
//! kubeconfig file is needed, and [`access::write_kubeconfig`] writes one (mode 0600)
//! only on request. Each API call ([`api`]) is retried while it is throttled or fails
//! transiently, with [`BootstrapConfig::retry`] on [`BootstrapConfig::clock`]
//! (default: 4 attempts, 50, 100 and 200 ms apart, on tokio's timer); the engine
//! retries the whole step on top.
//!
//! Errors are the core's [`gitpod_refarch::Error`]: API errors map to its kinds (a
//! webhook that does not answer yet is `PropagationDelay`, a namespace still
//! terminating `OperationInProgress`), and a zone its parent does not delegate to is
//! `Precondition`, with the NS records to add.

pub mod access;
pub mod api;
pub mod certmanager;
mod config;
mod context;
pub mod delegation;
pub mod objects;
mod resources;
pub mod state_store;
mod teardown;
pub mod tls_secret;
pub mod verify;

use std::collections::BTreeMap;
use std::sync::Mutex;

use gitpod_refarch::provider::{
    ClusterBootstrap, Inputs, Observed, Operation, Progress, ProviderInfo,
};
use gitpod_refarch::resource::{InClusterResource, ResourceKind};
use gitpod_refarch::{Error, Result};

use crate::api::KubeApi;
use crate::context::Context;
use crate::resources::{
    cert_manager, certificate, cluster_access, external_dns, gitpod_namespace, issuer,
};

pub use certmanager::{CertManagerSource, Manifest};
pub use config::BootstrapConfig;
pub use context::CertWatch;
pub use delegation::{Delegation, DelegationCheck};
pub use state_store::KubeStateStore;
pub use verify::ClusterVerifier;

/// The cache key of a client given with [`KubeBootstrap::with_client`].
const FIXED: &str = "<given client>";

/// The [`ClusterBootstrap`] on kube-rs.
pub struct KubeBootstrap {
    config: BootstrapConfig,
    client: tokio::sync::Mutex<Option<(String, KubeApi)>>,
    /// What a certificate wait needs besides the client: the zone and its name servers.
    watches: Mutex<BTreeMap<String, CertWatch>>,
}

impl std::fmt::Debug for KubeBootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeBootstrap")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KubeBootstrap {
    /// A bootstrap with these settings.
    pub fn new(config: BootstrapConfig) -> Self {
        KubeBootstrap {
            config,
            client: tokio::sync::Mutex::new(None),
            watches: Mutex::new(BTreeMap::new()),
        }
    }

    /// `client` with the configured retries of each call.
    fn api(&self, client: kube::Client) -> KubeApi {
        KubeApi::new(client, self.config.clock.clone(), self.config.retry.clone())
    }

    /// A client for the cluster among `inputs` (`None`: there is no cluster).
    async fn connect(&self, inputs: &Inputs) -> Result<Option<KubeApi>> {
        let Ok(cluster) = inputs.of_kind(ResourceKind::Cluster) else {
            return Ok(None);
        };
        let endpoint = access::ClusterEndpoint::from_output(cluster)?.url;
        let mut cached = self.client.lock().await;
        if let Some((url, c)) = cached.as_ref() {
            if *url == endpoint || url == FIXED {
                return Ok(Some(c.clone()));
            }
        }
        let c = self.api(access::connect(cluster, self.config.credentials.clone()).await?);
        *cached = Some((endpoint, c.clone()));
        Ok(Some(c))
    }

    /// Use `client` for every call instead of connecting from the cluster's outputs
    /// (a client you built yourself, or a mock in tests). Without a cluster output the
    /// bootstrap still reports nothing and deletes nothing.
    #[must_use]
    pub fn with_client(self, client: kube::Client) -> Self {
        let api = self.api(client);
        KubeBootstrap {
            client: tokio::sync::Mutex::new(Some((FIXED.into(), api))),
            ..self
        }
    }

    async fn cached_client(&self) -> Result<KubeApi> {
        self.client
            .lock()
            .await
            .as_ref()
            .map(|(_, c)| c.clone())
            .ok_or_else(|| Error::internal("poll before any cluster connection"))
    }

    fn ctx<'a>(&'a self, client: &'a KubeApi) -> Context<'a> {
        Context {
            client,
            config: &self.config,
            watches: &self.watches,
        }
    }
}

#[async_trait::async_trait]
impl ClusterBootstrap for KubeBootstrap {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("kubernetes")
    }

    async fn observe(
        &self,
        resource: &InClusterResource,
        inputs: &Inputs,
    ) -> Result<Option<Observed<InClusterResource>>> {
        use InClusterResource as R;
        let Some(client) = self.connect(inputs).await? else {
            return Ok(None);
        };
        let ctx = &self.ctx(&client);
        let id = resource.id();
        Ok(match resource {
            R::ClusterAccess(s) => cluster_access::observe(ctx, s, inputs)
                .await?
                .map(|o| o.map(R::ClusterAccess)),
            R::CertManager(s) => cert_manager::observe(ctx, s, id)
                .await?
                .map(|o| o.map(R::CertManager)),
            R::ExternalDns(s) => external_dns::observe(ctx, s, inputs)
                .await?
                .map(|o| o.map(R::ExternalDns)),
            R::Issuer(s) => issuer::observe(ctx, s, inputs)
                .await?
                .map(|o| o.map(R::Issuer)),
            R::GitpodNamespace(s) => gitpod_namespace::observe(ctx, s, inputs, id)
                .await?
                .map(|o| o.map(R::GitpodNamespace)),
            R::Certificate(s) => certificate::observe(ctx, s, inputs, id)
                .await?
                .map(|o| o.map(R::Certificate)),
        })
    }

    async fn ensure(&self, resource: &InClusterResource, inputs: &Inputs) -> Result<Progress> {
        use InClusterResource as R;
        let client = self
            .connect(inputs)
            .await?
            .ok_or_else(|| Error::internal("no cluster output: the cluster must exist first"))?;
        let ctx = &self.ctx(&client);
        let id = resource.id();
        match resource {
            R::ClusterAccess(s) => cluster_access::ensure(ctx, s, inputs).await,
            R::CertManager(s) => cert_manager::ensure(ctx, s, inputs, id).await,
            R::ExternalDns(s) => external_dns::ensure(ctx, s, inputs, id).await,
            R::Issuer(s) => issuer::ensure(ctx, s, inputs, id).await,
            R::GitpodNamespace(s) => gitpod_namespace::ensure(ctx, s, inputs).await,
            R::Certificate(s) => certificate::ensure(ctx, s, inputs, id).await,
        }
    }

    async fn delete(&self, resource: &InClusterResource, inputs: &Inputs) -> Result<Progress> {
        use InClusterResource as R;
        let Some(client) = self.connect(inputs).await? else {
            return Ok(Progress::Done(None));
        };
        let ctx = &self.ctx(&client);
        let id = resource.id();
        match resource {
            R::ClusterAccess(s) => cluster_access::delete(ctx, s).await,
            R::CertManager(s) => cert_manager::delete(ctx, s, id).await,
            R::ExternalDns(s) => external_dns::delete(ctx, s, id).await,
            R::Issuer(s) => issuer::delete(ctx, s).await,
            R::GitpodNamespace(s) => gitpod_namespace::delete(ctx, s, id).await,
            R::Certificate(s) => certificate::delete(ctx, s).await,
        }
    }

    /// Routed by the operation id's prefix (`cert-manager/<ns>`, ...; see the
    /// resource files).
    async fn poll(&self, op: &Operation) -> Result<Progress> {
        let client = self.cached_client().await?;
        let ctx = &self.ctx(&client);
        let (what, rest) = op.id.split_once('/').unwrap_or((op.id.as_str(), ""));
        match what {
            cert_manager::OPERATION => cert_manager::poll(ctx, op, rest).await,
            external_dns::OPERATION => external_dns::poll(ctx, op, rest).await,
            issuer::OPERATION => issuer::poll(ctx, op, rest).await,
            certificate::OPERATION => certificate::poll(ctx, op, rest).await,
            teardown::OPERATION => teardown::poll(ctx, op, rest).await,
            _ => Err(Error::internal(format!("unknown operation {}", op.id))),
        }
    }
}
