//! [`Providers`]: one implementation of each trait, and the routing of each resource
//! to the trait of its domain.

use std::sync::Arc;

use super::{
    ClusterBootstrap, ClusterProvider, Database, DnsProvider, Inputs, ObjectStore, Observed,
    Operation, Progress, ProviderInfo, Registry,
};
use crate::error::{Error, Result};
use crate::resource::{Desired, Domain, Routed};
use crate::verify::Verifier;

/// One implementation of each trait; they may come from different clouds.
///
/// Build it with [`Providers::builder`] (any mix) or [`Providers::all`] (one value
/// implementing the five cloud traits).
#[derive(Clone)]
pub struct Providers {
    cluster: Arc<dyn ClusterProvider>,
    dns: Arc<dyn DnsProvider>,
    object_store: Arc<dyn ObjectStore>,
    registry: Arc<dyn Registry>,
    database: Arc<dyn Database>,
    in_cluster: Option<Arc<dyn ClusterBootstrap>>,
    verifiers: Vec<Arc<dyn Verifier>>,
}

/// Builds [`Providers`] from one implementation per trait.
#[must_use]
#[derive(Default)]
pub struct ProvidersBuilder {
    cluster: Option<Arc<dyn ClusterProvider>>,
    dns: Option<Arc<dyn DnsProvider>>,
    object_store: Option<Arc<dyn ObjectStore>>,
    registry: Option<Arc<dyn Registry>>,
    database: Option<Arc<dyn Database>>,
    in_cluster: Option<Arc<dyn ClusterBootstrap>>,
    verifiers: Vec<Arc<dyn Verifier>>,
}

impl ProvidersBuilder {
    /// Account, network, cluster identity, cluster and node pools.
    pub fn cluster(mut self, p: Arc<dyn ClusterProvider>) -> Self {
        self.cluster = Some(p);
        self
    }

    /// The DNS zone, its identity and the records.
    pub fn dns(mut self, p: Arc<dyn DnsProvider>) -> Self {
        self.dns = Some(p);
        self
    }

    /// Object storage.
    pub fn object_store(mut self, p: Arc<dyn ObjectStore>) -> Self {
        self.object_store = Some(p);
        self
    }

    /// The registry.
    pub fn registry(mut self, p: Arc<dyn Registry>) -> Self {
        self.registry = Some(p);
        self
    }

    /// The database.
    pub fn database(mut self, p: Arc<dyn Database>) -> Self {
        self.database = Some(p);
        self
    }

    /// The inside of the cluster (optional: without it an apply stops at the cloud
    /// resources).
    pub fn in_cluster(mut self, p: Arc<dyn ClusterBootstrap>) -> Self {
        self.in_cluster = Some(p);
        self
    }

    /// Add a [`Verifier`] for `verify` (any number; each checks the parts it names).
    pub fn verifier(mut self, v: Arc<dyn Verifier>) -> Self {
        self.verifiers.push(v);
        self
    }

    /// Build; fails with [`crate::ErrorKind::InvalidInput`] naming each missing trait.
    pub fn build(self) -> Result<Providers> {
        let missing: Vec<&str> = [
            ("cluster", self.cluster.is_none()),
            ("dns", self.dns.is_none()),
            ("object_store", self.object_store.is_none()),
            ("registry", self.registry.is_none()),
            ("database", self.database.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect();
        match (
            self.cluster,
            self.dns,
            self.object_store,
            self.registry,
            self.database,
        ) {
            (Some(cluster), Some(dns), Some(object_store), Some(registry), Some(database)) => {
                Ok(Providers {
                    cluster,
                    dns,
                    object_store,
                    registry,
                    database,
                    in_cluster: self.in_cluster,
                    verifiers: self.verifiers,
                })
            }
            _ => Err(Error::invalid_input(format!(
                "Providers::builder: no provider for {}",
                missing.join(", ")
            ))),
        }
    }
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
    /// Start with no provider; set each with the builder's methods.
    pub fn builder() -> ProvidersBuilder {
        ProvidersBuilder::default()
    }

    /// Use one value implementing all five cloud traits (a simulated or
    /// single-cloud provider).
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
            verifiers: Vec::new(),
        }
    }

    /// Also bootstrap the cluster's inside with `bootstrap` (cert-manager,
    /// external-dns, issuer, Gitpod namespace and secrets, certificate).
    #[must_use]
    pub fn with_in_cluster(mut self, bootstrap: Arc<dyn ClusterBootstrap>) -> Self {
        self.in_cluster = Some(bootstrap);
        self
    }

    /// Also check parts with `verifier` in `verify`.
    #[must_use]
    pub fn with_verifier(mut self, verifier: Arc<dyn Verifier>) -> Self {
        self.verifiers.push(verifier);
        self
    }

    /// The verifiers `verify` runs.
    pub fn verifiers(&self) -> &[Arc<dyn Verifier>] {
        &self.verifiers
    }

    /// Whether an in-cluster bootstrap takes part.
    pub fn has_in_cluster(&self) -> bool {
        self.in_cluster.is_some()
    }

    fn bootstrap(&self) -> Result<&Arc<dyn ClusterBootstrap>> {
        self.in_cluster
            .as_ref()
            .ok_or_else(|| Error::internal("no in-cluster bootstrap is configured"))
    }

    /// Refuse a spec whose parts' `provider` (`cloud` or `selfManaged`) disagrees with
    /// the provider each part is routed to ([`ProviderInfo::self_managed`]), with
    /// [`crate::ErrorKind::InvalidInput`] naming each such part. Called by the engine
    /// before any call.
    pub fn check_choices(&self, spec: &crate::spec::ReferenceArchitecture) -> Result<()> {
        let parts = [
            (
                "database",
                "database",
                spec.database.is_self_managed(),
                self.database.info(),
            ),
            ("dns", "DNS", spec.dns.is_self_managed(), self.dns.info()),
            (
                "storage",
                "object store",
                spec.storage.is_self_managed(),
                self.object_store.info(),
            ),
            (
                "registry",
                "registry",
                spec.registry.is_self_managed(),
                self.registry.info(),
            ),
        ];
        let mut wrong = Vec::new();
        for (field, part, wants_self_managed, info) in parts {
            match (wants_self_managed, info.self_managed) {
                (true, false) => wrong.push(format!(
                    "{field}.provider is selfManaged but the {part} provider \"{}\" is not a \
                     self-managed provider (use gitpod_refarch_selfmanaged::SelfManaged::for_spec)",
                    info.name
                )),
                (false, true) => wrong.push(format!(
                    "{field}.provider is cloud but the {part} provider \"{}\" is a self-managed \
                     provider (set {field}.provider: selfManaged or use the cloud's provider)",
                    info.name
                )),
                _ => {}
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_input(wrong.join("; ")))
        }
    }

    /// The constraints of the provider that owns `domain`.
    pub fn info(&self, domain: Domain) -> ProviderInfo {
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
        desired: &Desired,
        inputs: &Inputs,
    ) -> Result<Option<Observed>> {
        fn up<S: Into<Desired>>(o: Option<Observed<S>>) -> Option<Observed> {
            o.map(|o| o.map(Into::into))
        }
        Ok(match desired.clone().route() {
            Routed::Cluster(r) => up(self.cluster.observe(&r).await?),
            Routed::Dns(r) => up(self.dns.observe(&r).await?),
            Routed::ObjectStore(r) => up(self.object_store.observe(&r).await?),
            Routed::Registry(r) => up(self.registry.observe(&r).await?),
            Routed::Database(r) => up(self.database.observe(&r).await?),
            Routed::InCluster(r) => up(self.bootstrap()?.observe(&r, inputs).await?),
        })
    }

    pub(crate) async fn ensure(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress> {
        match desired.clone().route() {
            Routed::Cluster(r) => self.cluster.ensure(&r, inputs).await,
            Routed::Dns(r) => self.dns.ensure(&r, inputs).await,
            Routed::ObjectStore(r) => self.object_store.ensure(&r, inputs).await,
            Routed::Registry(r) => self.registry.ensure(&r, inputs).await,
            Routed::Database(r) => self.database.ensure(&r, inputs).await,
            Routed::InCluster(r) => self.bootstrap()?.ensure(&r, inputs).await,
        }
    }

    pub(crate) async fn delete(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress> {
        match desired.clone().route() {
            Routed::Cluster(r) => self.cluster.delete(&r).await,
            Routed::Dns(r) => self.dns.delete(&r).await,
            Routed::ObjectStore(r) => self.object_store.delete(&r).await,
            Routed::Registry(r) => self.registry.delete(&r).await,
            Routed::Database(r) => self.database.delete(&r).await,
            Routed::InCluster(r) => self.bootstrap()?.delete(&r, inputs).await,
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
