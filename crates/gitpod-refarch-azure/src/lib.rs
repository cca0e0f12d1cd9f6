//! Azure provider for `gitpod-refarch`: the reference architecture on Azure through
//! Azure Resource Manager, with a small typed ARM client of its own ([`arm`]) on the
//! official `azure_core` pipeline and `azure_identity` credentials.
//!
//! ```no_run
//! use std::sync::Arc;
//! use gitpod_refarch::{Engine, Providers, spec::ReferenceArchitecture};
//! use gitpod_refarch_azure::{AzureConfig, AzureProvider};
//!
//! # async fn run() -> Result<(), gitpod_refarch::Error> {
//! let spec = ReferenceArchitecture::from_yaml(
//!     "cloud: azure\nname: gitpod\ndomain: gitpod.example.com\nazure:\n  \
//!      subscriptionId: 00000000-0000-0000-0000-000000000000\n\
//!      certificates:\n  issuer: acme\n  email: ops@example.com\n  \
//!      server: https://acme-v02.api.letsencrypt.org/directory\n",
//! )?;
//! spec.validate()?;
//! // Credentials from the environment (a client secret, Workload Identity, `az login`
//! // or a managed identity); fails fast if they are unusable or ARM cannot be reached.
//! let azure = AzureProvider::connect(AzureConfig::for_spec(&spec)?).await?;
//! let engine = Engine::builder(Providers::all(Arc::new(azure))).build()?;
//! engine.apply_spec(&spec).await?.into_result()?;
//! # Ok(()) }
//! ```
//!
//! Where each resource lives:
//!
//! | module | resources |
//! |---|---|
//! | [`foundation`] | the six resource providers registered, the global names checked, the resource group |
//! | [`network`] | the VNet `vnet-<name>` with the `nodes` subnet and the `mysql` subnet delegated to MySQL |
//! | [`identity`] | the cluster identity `id-<name>-cluster` with Network Contributor on the VNet; the identity and role helpers |
//! | [`cluster`] | AKS `aks-<name>`: Azure CNI overlay + Calico, OIDC issuer, Workload Identity, Entra ID with Azure RBAC, no local accounts, the `services` system pool inline; AKS RBAC Cluster Admin for the deployer |
//! | [`nodepool`] | the pools `services`, `regularws`, `headlessws` with their labels, taints and bounds |
//! | [`dns`] | the Azure DNS zone; the records ([`dns::records`]); the cert-manager and external-dns identities federated with the cluster ([`dns::identity`]) |
//! | [`registry`] | ACR Standard with a push-only scope-map token |
//! | [`database`] | the MySQL flexible server in the delegated subnet; in its own files its private DNS zone and VNet link ([`database::private_dns`]), its server parameters ([`database::configurations`]) and the `gitpod` database ([`database::gitpod_db`]) |
//! | [`storage`] | nothing in Azure: Gitpod's in-cluster object storage |
//!
//! [`config`] holds the configuration and credentials ([`AzureConfig`]), [`context`]
//! what every resource module shares ([`Context`]: the ARM client, the names, the
//! tags, the ownership-checked read, the operation constructors, and the provider's own
//! state), [`arm`] the ARM client, written once, with its error mapping
//! ([`arm::error`]), its long-running-operation poller ([`arm::lro`]) and its endpoint
//! and loopback transport ([`transport`]), and [`access`] the Entra ID tokens
//! for the AKS API server ([`AksCredentials`]). This file only routes each resource of
//! the five provider traits to its module.
//!
//! Every resource is found by its deterministic name before anything is created, and
//! carries the tag [`gitpod_refarch::plan::INSTALLATION_LABEL`] with the installation
//! name. A same-named resource without it is never adopted or deleted: that step fails
//! with [`ErrorKind::Conflict`] (a resource group not tagged for this installation is
//! never deleted).
//!
//! `azure_core` and `azure_identity` are re-exported, so a caller that builds its own
//! [`TokenCredential`](azure_core::credentials::TokenCredential) for
//! [`AzureConfig::credential`] uses the same versions as this crate.

pub mod access;
pub mod arm;
pub mod cluster;
pub mod config;
pub mod context;
pub mod database;
pub mod dns;
pub mod foundation;
pub mod identity;
pub mod network;
pub mod nodepool;
pub mod registry;
pub mod storage;
pub mod transport;

use async_trait::async_trait;
use gitpod_refarch::provider::{
    AccessToken, ClusterCredentials, ClusterProvider, Database, DnsProvider, Inputs, ObjectStore,
    Observed, Operation, Progress, ProviderInfo, Registry,
};
use gitpod_refarch::resource::{
    ClusterResource, DatabaseResource, DnsResource, ObjectStorageSpec, Output, RegistrySpec,
};
use gitpod_refarch::{Error, ErrorKind, Result};

pub use access::AksCredentials;
pub use azure_core;
pub use azure_identity;
pub use config::{
    default_retry, AzureConfig, AzureCredential, NetworkPlugin, NodeOsUpgrade, ARM_ENDPOINT,
};
pub use context::{is_ours, tags_of, Context};
pub use foundation::REQUIRED_PROVIDERS;

/// The Azure provider: implements all five cloud traits, and AKS tokens
/// ([`ClusterCredentials`]).
#[derive(Debug, Clone)]
pub struct AzureProvider {
    ctx: Context,
    aks: AksCredentials,
}

impl AzureProvider {
    /// Check the configuration, build the credential and the ARM client, and read the
    /// resource group once (without retries).
    ///
    /// Fails fast, before any change, with [`ErrorKind::InvalidInput`] for a bad
    /// subscription id, region or endpoint, [`ErrorKind::Credentials`] for missing or
    /// rejected credentials, [`ErrorKind::Transient`] naming the endpoint when ARM
    /// cannot be reached, and [`ErrorKind::Permission`] when the subscription cannot be
    /// read with these credentials.
    pub async fn connect(config: AzureConfig) -> Result<Self> {
        let ctx = Context::new(config)?;
        let where_ = ctx.arm.endpoint().url.to_string();
        // One cheap read that needs the subscription and a token: the registration of
        // the first required provider.
        let probe = format!(
            "{}/providers/{}",
            ctx.subscription_path(),
            foundation::REQUIRED_PROVIDERS[0]
        );
        match ctx
            .arm
            .get_once::<serde_json::Value>(&probe, context::RESOURCES_API)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(Error::new(
                    ErrorKind::Permission,
                    format!(
                        "subscription {} does not exist or these credentials cannot read it",
                        ctx.subscription
                    ),
                ))
            }
            Err(e) if e.kind() == ErrorKind::Transient => {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!(
                        "cannot reach Azure Resource Manager at {where_}: {}",
                        e.message()
                    ),
                )
                .with_source(e))
            }
            Err(e) => return Err(e),
        }
        let aks = AksCredentials::new(ctx.arm.credential());
        Ok(AzureProvider { ctx, aks })
    }

    /// The shared context (ARM client, subscription, region).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// AKS runs one operation per cluster at a time.
    fn provider_info() -> ProviderInfo {
        ProviderInfo::new("azure").with_serial_cluster_operations(true)
    }

    /// Poll an operation any module returned.
    async fn poll_op(&self, op: &Operation) -> Result<Progress> {
        if op.id.starts_with(foundation::REGISTRATION_OP) {
            return foundation::poll_registration(&self.ctx, op).await;
        }
        match self.ctx.arm.poll(&op.id).await {
            Ok(arm::Lro::Done(_)) => Ok(Progress::Done(None)),
            Ok(lro) => Ok(self
                .ctx
                .pending(&op.resource, &lro)
                .unwrap_or(Progress::Done(None))),
            Err(e) => Err(e.with_resource(op.resource.clone())),
        }
    }
}

/// Wrap the typed observation of one resource module into its trait's type.
fn typed<S, T>(o: Option<Observed<S>>, f: impl FnOnce(S) -> T) -> Option<Observed<T>> {
    o.map(|o| o.map(f))
}

#[async_trait]
impl ClusterProvider for AzureProvider {
    fn info(&self) -> ProviderInfo {
        Self::provider_info()
    }

    async fn observe(
        &self,
        resource: &ClusterResource,
    ) -> Result<Option<Observed<ClusterResource>>> {
        let c = &self.ctx;
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
        match resource {
            ClusterResource::Foundation(d) => foundation::delete(c, d).await,
            ClusterResource::Network(d) => network::delete(c, d).await,
            ClusterResource::ClusterIdentity(d) => identity::delete(c, d).await,
            ClusterResource::Cluster(d) => cluster::delete(c, d).await,
            ClusterResource::NodePool(d) => nodepool::delete(c, d).await,
        }
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_op(op).await
    }
}

#[async_trait]
impl DnsProvider for AzureProvider {
    fn info(&self) -> ProviderInfo {
        Self::provider_info()
    }

    async fn observe(&self, resource: &DnsResource) -> Result<Option<Observed<DnsResource>>> {
        dns::observe(&self.ctx, resource).await
    }

    async fn ensure(&self, resource: &DnsResource, inputs: &Inputs) -> Result<Progress> {
        dns::ensure(&self.ctx, resource, inputs).await
    }

    async fn delete(&self, resource: &DnsResource) -> Result<Progress> {
        dns::delete(&self.ctx, resource).await
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_op(op).await
    }
}

#[async_trait]
impl ObjectStore for AzureProvider {
    fn info(&self) -> ProviderInfo {
        Self::provider_info()
    }

    async fn observe(
        &self,
        storage: &ObjectStorageSpec,
    ) -> Result<Option<Observed<ObjectStorageSpec>>> {
        storage::observe(&self.ctx, storage).await
    }

    async fn ensure(&self, storage: &ObjectStorageSpec, inputs: &Inputs) -> Result<Progress> {
        storage::ensure(&self.ctx, storage, inputs).await
    }

    async fn delete(&self, storage: &ObjectStorageSpec) -> Result<Progress> {
        storage::delete(&self.ctx, storage).await
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_op(op).await
    }
}

#[async_trait]
impl Registry for AzureProvider {
    fn info(&self) -> ProviderInfo {
        Self::provider_info()
    }

    async fn observe(&self, registry: &RegistrySpec) -> Result<Option<Observed<RegistrySpec>>> {
        registry::observe(&self.ctx, registry).await
    }

    async fn ensure(&self, registry: &RegistrySpec, inputs: &Inputs) -> Result<Progress> {
        registry::ensure(&self.ctx, registry, inputs).await
    }

    async fn delete(&self, registry: &RegistrySpec) -> Result<Progress> {
        registry::delete(&self.ctx, registry).await
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_op(op).await
    }
}

#[async_trait]
impl Database for AzureProvider {
    fn info(&self) -> ProviderInfo {
        Self::provider_info()
    }

    async fn observe(
        &self,
        resource: &DatabaseResource,
    ) -> Result<Option<Observed<DatabaseResource>>> {
        database::observe(&self.ctx, resource).await
    }

    async fn ensure(&self, resource: &DatabaseResource, inputs: &Inputs) -> Result<Progress> {
        database::ensure(&self.ctx, resource, inputs).await
    }

    async fn delete(&self, resource: &DatabaseResource) -> Result<Progress> {
        database::delete(&self.ctx, resource).await
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_op(op).await
    }
}

#[async_trait]
impl ClusterCredentials for AzureProvider {
    async fn cluster_token(&self, cluster: &Output) -> Result<AccessToken> {
        self.aks.cluster_token(cluster).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! What the unit tests share: a context that makes no call.
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};

    use crate::config::AzureConfig;
    use crate::context::Context;

    /// A credential that never gives a token (unit tests make no call).
    #[derive(Debug)]
    pub(crate) struct NoToken;

    #[async_trait::async_trait]
    impl TokenCredential for NoToken {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "unit tests make no call",
            ))
        }
    }

    /// A configuration for subscription `…0001` in `northeurope`, no spec.
    pub(crate) fn ctx() -> Context {
        let cred: Arc<dyn TokenCredential> = Arc::new(NoToken);
        Context::new(
            AzureConfig::new("00000000-0000-0000-0000-000000000001", "northeurope")
                .credential(cred),
        )
        .unwrap()
    }

    /// The configuration of the Azure defaults' spec named `gp`.
    pub(crate) fn spec_config() -> AzureConfig {
        let mut s = gitpod_refarch::spec::ReferenceArchitecture::defaults(
            gitpod_refarch::spec::Cloud::Azure,
        );
        s.name = "gp".into();
        if let Some(z) = s.azure.as_mut() {
            z.subscription_id = "00000000-0000-0000-0000-000000000001".into();
        }
        let cred: Arc<dyn TokenCredential> = Arc::new(NoToken);
        AzureConfig::for_spec(&s).unwrap().credential(cred)
    }

    /// A context of [`spec_config`].
    pub(crate) fn spec_ctx() -> Context {
        Context::new(spec_config()).unwrap()
    }
}
