//! The in-cluster bootstrap of gitpod-refarch, with kube-rs: what the guide does
//! with `kubectl` and `helm` once the cluster exists, as part of the same apply.
//!
//! ```no_run
//! use std::sync::Arc;
//! use gitpod_refarch::{Engine, Providers, ReferenceArchitecture};
//! use gitpod_refarch_bootstrap::{BootstrapConfig, KubeBootstrap};
//!
//! # async fn demo(
//! #     cloud: Arc<gitpod_refarch::sim::SimCloud>,
//! #     spec: ReferenceArchitecture,
//! # ) -> gitpod_refarch::Result<()> {
//! // `cloud` implements the five cloud traits and `ClusterCredentials` (GKE, EKS, ...):
//! // the bootstrap asks it for a fresh API token whenever the last one is about to expire.
//! let bootstrap = KubeBootstrap::new(BootstrapConfig::new(cloud.clone()));
//! let providers = Providers::all(cloud).with_in_cluster(Arc::new(bootstrap));
//! let engine = Engine::builder(providers).build()?;
//! let report = engine.apply_spec(&spec).await?;
//! println!("{} changed", report.changed.len());
//! # Ok(())
//! # }
//! ```
//!
//! # What it applies (server-side apply, field manager `gitpod-refarch`)
//!
//! One resource of the core's graph each (see [`steps`]):
//!
//! | resource | objects |
//! |---|---|
//! | `cluster-access` | ClusterRoleBinding `cluster-admin-binding` for the caller |
//! | `cert-manager` | the pinned release (helm, or the manifest checked against its digest) with `--dns01-recursive-nameservers-only` and `--dns01-recursive-nameservers=8.8.8.8:53,1.1.1.1:53`; ready when its CRDs are Established, its Deployments available and its webhook admits a dry-run ClusterIssuer |
//! | `external-dns` | namespace, credentials Secret, ServiceAccount, ClusterRole(Binding), Deployment with the domain filter and `--txt-owner-id` = installation |
//! | `issuer` | the DNS-01 solver secret (or the Workload Identity annotation) and ClusterIssuer `gitpod-issuer` |
//! | `gitpod-namespace` | namespace `gitpod` and the installer's secrets (`database`/`cloudsql`, `storage-*`, registry) |
//! | `certificate` | Certificate `https-certificates`; while it is not Ready, the ACME challenges' state is reported and the zone's delegation is checked ([`delegation`]) |
//!
//! Teardown deletes the Gitpod namespace and every `LoadBalancer` Service, and
//! reports done only when they are gone, so the cloud's load balancers are released
//! before the cluster and network are deleted.
//!
//! Cluster access ([`access`]) builds a [`kube::Client`] from the cluster's output
//! (endpoint, CA) and the cloud's [`ClusterCredentials`]; no kubeconfig file is
//! needed, and [`access::write_kubeconfig`] writes one (mode 0600) only on request.
//!
//! Errors are the core's [`gitpod_refarch::Error`]: API errors map to its kinds (a
//! webhook that does not answer yet is `PropagationDelay`, a namespace still
//! terminating `OperationInProgress`), and a zone its parent does not delegate to is
//! `Precondition`, with the NS records to add.

pub mod access;
pub mod api;
pub mod certmanager;
pub mod delegation;
pub mod objects;
pub mod steps;
pub mod tls_secret;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitpod_refarch::provider::{
    ClusterBootstrap, ClusterCredentials, Inputs, Observed, Operation, Progress, ProviderInfo,
};
use gitpod_refarch::resource::{Desired, ResourceId, ResourceKind};
use gitpod_refarch::{Error, Result};

pub use certmanager::{CertManagerSource, Manifest};
pub use delegation::{Delegation, DelegationCheck};

/// The cache key of a client given with [`KubeBootstrap::with_client`].
const FIXED: &str = "<given client>";

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

    /// Check the settings with no IO (a malformed manifest URL or digest); call it
    /// before an apply to fail before any cloud call.
    pub fn validate(&self) -> Result<()> {
        if let CertManagerSource::Manifest(m) = &self.cert_manager {
            m.validate()?;
        }
        Ok(())
    }
}

/// The [`ClusterBootstrap`] on kube-rs.
pub struct KubeBootstrap {
    config: BootstrapConfig,
    client: tokio::sync::Mutex<Option<(String, kube::Client)>>,
    /// What a certificate wait needs besides the client: the zone and its name servers.
    watches: Mutex<BTreeMap<String, steps::CertWatch>>,
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

    /// A client for the cluster among `inputs` (`None`: there is no cluster).
    async fn client(&self, inputs: &Inputs) -> Result<Option<kube::Client>> {
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
        let c = access::connect(cluster, self.config.credentials.clone()).await?;
        *cached = Some((endpoint, c.clone()));
        Ok(Some(c))
    }

    /// Use `client` for every call instead of connecting from the cluster's outputs
    /// (a client you built yourself, or a mock in tests). Without a cluster output the
    /// bootstrap still reports nothing and deletes nothing.
    #[must_use]
    pub fn with_client(self, client: kube::Client) -> Self {
        KubeBootstrap {
            client: tokio::sync::Mutex::new(Some((FIXED.into(), client))),
            ..self
        }
    }

    async fn cached_client(&self) -> Result<kube::Client> {
        self.client
            .lock()
            .await
            .as_ref()
            .map(|(_, c)| c.clone())
            .ok_or_else(|| Error::internal("poll before any cluster connection"))
    }

    fn ctx<'a>(&'a self, client: &'a kube::Client) -> steps::Ctx<'a> {
        steps::Ctx {
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
        _id: &ResourceId,
        desired: Option<&Desired>,
        inputs: &Inputs,
    ) -> Result<Option<Observed>> {
        let (Some(client), Some(desired)) = (self.client(inputs).await?, desired) else {
            return Ok(None);
        };
        steps::observe(&self.ctx(&client), desired, inputs).await
    }

    async fn ensure(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress> {
        let client = self
            .client(inputs)
            .await?
            .ok_or_else(|| Error::internal("no cluster output: the cluster must exist first"))?;
        steps::ensure(&self.ctx(&client), desired, inputs).await
    }

    async fn delete(
        &self,
        id: &ResourceId,
        desired: Option<&Desired>,
        inputs: &Inputs,
    ) -> Result<Progress> {
        let (Some(client), Some(desired)) = (self.client(inputs).await?, desired) else {
            return Ok(Progress::Done(None));
        };
        if &desired.id() != id {
            return Err(Error::internal(format!(
                "delete of {id} with the state of another resource"
            )));
        }
        steps::delete(&self.ctx(&client), desired).await
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        let client = self.cached_client().await?;
        steps::poll(&self.ctx(&client), op).await
    }
}
