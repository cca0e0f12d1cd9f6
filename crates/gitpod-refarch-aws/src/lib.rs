//! AWS provider for `gitpod-refarch`: the reference architecture on AWS with the
//! official AWS SDK for Rust.
//!
//! ```no_run
//! use std::sync::Arc;
//! use gitpod_refarch::{Engine, Providers, spec::{Cloud, ReferenceArchitecture}};
//! use gitpod_refarch_aws::{AwsConfig, AwsProvider};
//!
//! # async fn run() -> Result<(), gitpod_refarch::Error> {
//! let spec = ReferenceArchitecture::builder(Cloud::Aws)
//!     .name("gitpod")
//!     .domain("gitpod.example.com")
//!     .acme_email("ops@example.com")
//!     .build()?;
//! // Credentials from the standard chain (env, profile, SSO, IMDS); fails fast if
//! // they are missing or rejected, or the endpoint cannot be reached.
//! let aws = AwsProvider::connect(AwsConfig::for_spec(&spec)).await?;
//! let engine = Engine::builder(Providers::all(Arc::new(aws))).build()?;
//! engine.apply_spec(&spec).await?.into_result()?;
//! # Ok(()) }
//! ```
//!
//! Where each resource lives: [`foundation`] (account check), [`network`] (VPC,
//! subnets, IGW, NAT, routes, security group), [`identity`] (EKS cluster and node
//! roles), [`cluster`] (EKS cluster and its IRSA OIDC provider), [`nodegroup`]
//! (managed node groups and their launch templates), [`dns`] (Route53 zone, scoped DNS
//! user, records), [`storage`] (S3 bucket and scoped user), [`registry`] (in-cluster
//! registry bucket, or ECR), [`database`] (RDS MySQL with parameter and subnet groups).
//! [`iam`] holds the role/user helpers they share; `error.rs` the error classification.
//! [`S3StateStore`] keeps the engine's state in an S3 object, shared safely by many
//! writers (conditional writes on the ETag, a lock object, SSE encryption).
//!
//! Every resource is found by deterministic name or by the tag
//! `gitpod-installation=<name>` before anything is created: the SDK never relies on
//! an "already exists" error (moto, for one, silently duplicates hosted zones).

/// Kubernetes API tokens for EKS clusters (presigned STS `GetCallerIdentity`).
pub mod access;
pub mod cluster;
mod config;
mod context;
pub mod database;
pub mod dns;
pub(crate) mod error;
pub mod foundation;
pub mod iam;
pub mod identity;
pub mod network;
pub mod nodegroup;
pub mod registry;
mod state_store;
pub mod storage;

use async_trait::async_trait;
use gitpod_refarch::provider::{
    AccessToken, ClusterCredentials, Inputs, Observed, Operation, Progress, ProviderInfo,
};
use gitpod_refarch::resource::{
    ClusterResource, DatabaseResource, DnsResource, ObjectStorageSpec, Output, RegistrySpec,
    ResourceKind,
};
use gitpod_refarch::{ClusterProvider, Database, DnsProvider, ObjectStore, Registry};
use gitpod_refarch::{Error, ErrorKind, Result};

pub use config::AwsConfig;
pub use context::{tags_of, Clients, Context};
pub use state_store::S3StateStore;

/// The AWS provider: implements all five traits.
#[derive(Debug, Clone)]
pub struct AwsProvider {
    ctx: Context,
}

impl AwsProvider {
    /// Load the configuration and check the credentials with one STS call.
    ///
    /// Fails fast, before any other call, with [`ErrorKind::Credentials`] for missing
    /// or rejected credentials, [`ErrorKind::Transient`] naming the endpoint when it
    /// cannot be reached, and [`ErrorKind::InvalidInput`] for the wrong account.
    pub async fn connect(config: AwsConfig) -> Result<Self> {
        if config.region.is_empty() {
            return Err(Error::invalid_input("the AWS region is empty"));
        }
        if let Some(url) = &config.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::invalid_input(format!(
                    "endpoint '{url}' must start with http:// or https://"
                )));
            }
        }
        let sdk = config.load().await;
        let s3_conf = {
            let b = aws_sdk_s3::config::Builder::from(&sdk);
            // Virtual-host addressing cannot work against an emulator's host.
            let b = if config.endpoint_url.is_some() {
                b.force_path_style(true)
            } else {
                b
            };
            b.build()
        };
        let clients = Clients {
            ec2: aws_sdk_ec2::Client::new(&sdk),
            eks: aws_sdk_eks::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            rds: aws_sdk_rds::Client::new(&sdk),
            route53: aws_sdk_route53::Client::new(&sdk),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            ecr: aws_sdk_ecr::Client::new(&sdk),
            sts: aws_sdk_sts::Client::new(&sdk),
        };
        let where_ = config
            .endpoint_url
            .clone()
            .unwrap_or_else(|| format!("AWS in {}", config.region));
        let me = clients
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                let err = error::from_sdk(e, format!("checking credentials against {where_}"));
                match err.kind() {
                    ErrorKind::Transient => Error::new(
                        ErrorKind::Transient,
                        format!("cannot reach {where_}: {}", err.message()),
                    )
                    .with_source(err),
                    _ => err,
                }
            })?;
        let account = me.account().unwrap_or_default().to_string();
        if let Some(expected) = &config.expected_account {
            if expected != &account {
                return Err(Error::invalid_input(format!(
                    "the credentials belong to account {account}, the spec expects {expected}"
                )));
            }
        }
        Ok(AwsProvider {
            ctx: Context {
                credentials: sdk.credentials_provider(),
                clock: config.clock.clone(),
                retry: config.retry.clone(),
                clients,
                region: config.region.clone(),
                account,
                caller_arn: me.arn().unwrap_or_default().to_string(),
                endpoint_url: config.endpoint_url.clone(),
                poll_interval: config.poll_interval,
            },
        })
    }

    /// The shared context (clients, account, region).
    pub fn context(&self) -> &Context {
        &self.ctx
    }
}

// EKS runs node group operations in parallel: no serial lane.
fn info() -> ProviderInfo {
    ProviderInfo::new("aws")
}

#[async_trait]
impl ClusterProvider for AwsProvider {
    fn info(&self) -> ProviderInfo {
        info()
    }

    async fn observe(&self, r: &ClusterResource) -> Result<Option<Observed<ClusterResource>>> {
        let c = &self.ctx;
        Ok(match r {
            ClusterResource::Foundation(d) => lift(
                foundation::observe(c, d).await?,
                ClusterResource::Foundation,
            ),
            ClusterResource::Network(d) => {
                lift(network::observe(c, d).await?, ClusterResource::Network)
            }
            ClusterResource::ClusterIdentity(d) => lift(
                identity::observe(c, d).await?,
                ClusterResource::ClusterIdentity,
            ),
            ClusterResource::Cluster(d) => {
                lift(cluster::observe(c, d).await?, ClusterResource::Cluster)
            }
            ClusterResource::NodePool(d) => {
                lift(nodegroup::observe(c, d).await?, ClusterResource::NodePool)
            }
        })
    }

    async fn ensure(&self, r: &ClusterResource, inputs: &Inputs) -> Result<Progress> {
        let c = &self.ctx;
        match r {
            ClusterResource::Foundation(d) => foundation::ensure(c, d).await,
            ClusterResource::Network(d) => network::ensure(c, d).await,
            ClusterResource::ClusterIdentity(d) => identity::ensure(c, d).await,
            ClusterResource::Cluster(d) => cluster::ensure(c, d, inputs).await,
            ClusterResource::NodePool(d) => nodegroup::ensure(c, d, inputs).await,
        }
    }

    async fn delete(&self, r: &ClusterResource) -> Result<Progress> {
        let c = &self.ctx;
        match r {
            // The account stays.
            ClusterResource::Foundation(_) => Ok(Progress::Done(None)),
            ClusterResource::Network(d) => network::delete(c, &d.name).await,
            ClusterResource::ClusterIdentity(d) => identity::delete(c, &d.name).await,
            ClusterResource::Cluster(_) => cluster::delete(c, &r.id()).await,
            ClusterResource::NodePool(d) => nodegroup::delete(c, &r.id(), d).await,
        }
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        let c = &self.ctx;
        match op.resource.kind {
            ResourceKind::Cluster => cluster::poll(c, op).await,
            ResourceKind::NodePool => nodegroup::poll(c, op).await,
            ResourceKind::Network => network::poll(c, op).await,
            // Foundation and identities finish within their call.
            _ => Ok(Progress::Done(None)),
        }
    }
}

#[async_trait]
impl DnsProvider for AwsProvider {
    fn info(&self) -> ProviderInfo {
        info()
    }

    async fn observe(&self, r: &DnsResource) -> Result<Option<Observed<DnsResource>>> {
        let c = &self.ctx;
        Ok(match r {
            DnsResource::Zone(d) => lift(dns::observe_zone(c, d).await?, DnsResource::Zone),
            DnsResource::Identity(d) => {
                lift(dns::observe_identity(c, d).await?, DnsResource::Identity)
            }
            DnsResource::Records(d) => {
                lift(dns::observe_records(c, d).await?, DnsResource::Records)
            }
        })
    }

    async fn ensure(&self, r: &DnsResource, inputs: &Inputs) -> Result<Progress> {
        let c = &self.ctx;
        match r {
            DnsResource::Zone(d) => dns::ensure_zone(c, d).await,
            DnsResource::Identity(d) => dns::ensure_identity(c, d, inputs).await,
            DnsResource::Records(d) => dns::ensure_records(c, d, inputs).await,
        }
    }

    async fn delete(&self, r: &DnsResource) -> Result<Progress> {
        let c = &self.ctx;
        match r {
            DnsResource::Zone(d) => dns::delete_zone(c, d).await,
            DnsResource::Identity(d) => dns::delete_identity(c, &d.name).await,
            DnsResource::Records(d) => dns::delete_records(c, d).await,
        }
    }

    async fn poll(&self, _op: &Operation) -> Result<Progress> {
        // Route53 changes are synchronous here.
        Ok(Progress::Done(None))
    }
}

#[async_trait]
impl ObjectStore for AwsProvider {
    fn info(&self) -> ProviderInfo {
        info()
    }

    async fn observe(&self, s: &ObjectStorageSpec) -> Result<Option<Observed<ObjectStorageSpec>>> {
        storage::observe(&self.ctx, s).await
    }

    async fn ensure(&self, s: &ObjectStorageSpec, inputs: &Inputs) -> Result<Progress> {
        storage::ensure(&self.ctx, s, inputs).await
    }

    async fn delete(&self, s: &ObjectStorageSpec) -> Result<Progress> {
        storage::delete(&self.ctx, s).await
    }

    async fn poll(&self, _op: &Operation) -> Result<Progress> {
        Ok(Progress::Done(None))
    }
}

#[async_trait]
impl Registry for AwsProvider {
    fn info(&self) -> ProviderInfo {
        info()
    }

    async fn observe(&self, s: &RegistrySpec) -> Result<Option<Observed<RegistrySpec>>> {
        registry::observe(&self.ctx, s).await
    }

    async fn ensure(&self, s: &RegistrySpec, inputs: &Inputs) -> Result<Progress> {
        registry::ensure(&self.ctx, s, inputs).await
    }

    async fn delete(&self, s: &RegistrySpec) -> Result<Progress> {
        registry::delete(&self.ctx, s).await
    }

    async fn poll(&self, _op: &Operation) -> Result<Progress> {
        Ok(Progress::Done(None))
    }
}

#[async_trait]
impl Database for AwsProvider {
    fn info(&self) -> ProviderInfo {
        info()
    }

    async fn observe(&self, r: &DatabaseResource) -> Result<Option<Observed<DatabaseResource>>> {
        let c = &self.ctx;
        Ok(match r {
            DatabaseResource::Instance(d) => lift(
                database::observe_instance(c, d).await?,
                DatabaseResource::Instance,
            ),
            DatabaseResource::Database(d) => lift(
                database::observe_database(c, d).await?,
                DatabaseResource::Database,
            ),
        })
    }

    async fn ensure(&self, r: &DatabaseResource, inputs: &Inputs) -> Result<Progress> {
        let c = &self.ctx;
        match r {
            DatabaseResource::Instance(d) => database::ensure_instance(c, d, inputs).await,
            DatabaseResource::Database(d) => database::ensure_database(c, d, inputs).await,
        }
    }

    async fn delete(&self, r: &DatabaseResource) -> Result<Progress> {
        match r {
            DatabaseResource::Instance(d) => database::delete_instance(&self.ctx, &r.id(), d).await,
            // The user and database go with the instance.
            DatabaseResource::Database(_) => Ok(Progress::Done(None)),
        }
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        database::poll(&self.ctx, op).await
    }
}

#[async_trait]
impl ClusterCredentials for AwsProvider {
    async fn cluster_token(&self, cluster: &Output) -> Result<AccessToken> {
        access::cluster_token(&self.ctx, cluster).await
    }
}

/// A resource file's observation, in its trait's type.
fn lift<S, T>(o: Option<Observed<S>>, f: impl FnOnce(S) -> T) -> Option<Observed<T>> {
    o.map(|o| o.map(f))
}
