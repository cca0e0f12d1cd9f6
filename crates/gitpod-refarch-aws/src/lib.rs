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
//!
//! Every resource is found by deterministic name or by the tag
//! `gitpod-installation=<name>` before anything is created: the SDK never relies on
//! an "already exists" error (moto, for one, silently duplicates hosted zones).

/// Kubernetes API tokens for EKS clusters (presigned STS `GetCallerIdentity`).
pub mod access;
pub mod cluster;
pub mod database;
pub mod dns;
pub(crate) mod error;
pub mod foundation;
pub mod iam;
pub mod identity;
pub mod network;
pub mod nodegroup;
pub mod registry;
pub mod storage;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress, ProviderInfo};
use gitpod_refarch::resource::{Desired, ResourceId, ResourceKind};
use gitpod_refarch::spec::ReferenceArchitecture;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};

/// How to reach AWS.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct AwsConfig {
    /// Region (the spec's `cluster.region`).
    pub region: String,
    /// Endpoint override for every service (moto or another emulator). Forces S3
    /// path-style addressing.
    pub endpoint_url: Option<String>,
    /// Refuse to run unless the credentials belong to this account.
    pub expected_account: Option<String>,
    /// Attempts per SDK call, first included (the engine retries above this).
    pub max_attempts: u32,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one attempt.
    pub attempt_timeout: Duration,
    /// How often pending EKS/RDS operations are polled.
    pub poll_interval: Duration,
    /// Static credentials (access key id, secret) instead of the standard chain.
    pub static_credentials: Option<(String, Secret)>,
    /// First backoff of the SDK's own retries.
    pub initial_backoff: Duration,
}

impl AwsConfig {
    /// Settings for `region` with the standard credential chain.
    pub fn new(region: impl Into<String>) -> Self {
        AwsConfig {
            region: region.into(),
            endpoint_url: None,
            expected_account: None,
            max_attempts: 3,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(20),
            static_credentials: None,
            initial_backoff: Duration::from_millis(200),
        }
    }

    /// Settings from a spec: its region and expected account.
    pub fn for_spec(spec: &ReferenceArchitecture) -> Self {
        let mut c = Self::new(spec.cluster.region.clone());
        c.expected_account = spec.aws.as_ref().and_then(|a| a.account_id.clone());
        c
    }

    /// Send every call to `url` (moto, LocalStack).
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Use these credentials instead of the standard chain.
    #[must_use]
    pub fn static_credentials(mut self, access_key_id: impl Into<String>, secret: Secret) -> Self {
        self.static_credentials = Some((access_key_id.into(), secret));
        self
    }

    /// Attempts per SDK call.
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// First backoff of the SDK's own retries.
    #[must_use]
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// Poll interval for pending operations.
    #[must_use]
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Load the SDK configuration (no call is made).
    pub async fn load(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(self.max_attempts)
                    .with_initial_backoff(self.initial_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.connect_timeout)
                    .operation_attempt_timeout(self.attempt_timeout)
                    .build(),
            );
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some((id, secret)) = &self.static_credentials {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                id.clone(),
                secret.expose().clone(),
                None,
                None,
                "gitpod-refarch-static",
            ));
        }
        loader.load().await
    }
}

/// The SDK clients, shared by every resource module.
#[derive(Debug, Clone)]
pub struct Clients {
    /// EC2 (VPC).
    pub ec2: aws_sdk_ec2::Client,
    /// EKS.
    pub eks: aws_sdk_eks::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// RDS.
    pub rds: aws_sdk_rds::Client,
    /// Route53.
    pub route53: aws_sdk_route53::Client,
    /// S3 (path-style when an endpoint is overridden).
    pub s3: aws_sdk_s3::Client,
    /// ECR.
    pub ecr: aws_sdk_ecr::Client,
    /// STS.
    pub sts: aws_sdk_sts::Client,
}

/// Facts every module needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// Clients.
    pub clients: Clients,
    /// Region.
    pub region: String,
    /// Account id.
    pub account: String,
    /// Caller ARN (granted cluster admin).
    pub caller_arn: String,
    /// Endpoint override, if any.
    pub endpoint_url: Option<String>,
    /// Poll interval for pending operations.
    pub poll_interval: Duration,
}

impl Context {
    /// The S3 endpoint host Gitpod should use.
    pub fn s3_endpoint(&self) -> String {
        match &self.endpoint_url {
            Some(url) => url
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            None => format!("s3.{}.amazonaws.com", self.region),
        }
    }

    /// An operation to poll after the configured interval.
    pub fn op(&self, id: impl Into<String>, resource: &ResourceId) -> Operation {
        Operation::new(id, resource.clone()).poll_after(self.poll_interval)
    }
}

/// Tags every resource carries: the installation label plus the spec's labels.
pub fn tags_of(labels: &BTreeMap<String, String>, installation: &str) -> BTreeMap<String, String> {
    let mut t = labels.clone();
    t.insert(INSTALLATION_LABEL.to_string(), installation.to_string());
    t
}

/// The AWS provider: implements all five traits.
#[derive(Debug, Clone)]
pub struct AwsProvider {
    ctx: Context,
    /// The credentials provider of the loaded configuration, for presigning EKS
    /// tokens (see [`access`]).
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
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
            credentials: sdk.credentials_provider(),
            ctx: Context {
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

    async fn observe_any(
        &self,
        id: &ResourceId,
        desired: Option<&Desired>,
    ) -> Result<Option<Observed>> {
        let c = &self.ctx;
        match (id.kind, desired) {
            (ResourceKind::Foundation, Some(Desired::Foundation(d))) => {
                foundation::observe(c, d).await
            }
            (ResourceKind::Network, Some(Desired::Network(d))) => network::observe(c, d).await,
            (ResourceKind::ClusterIdentity, Some(Desired::ClusterIdentity(d))) => {
                identity::observe(c, d).await
            }
            (ResourceKind::Cluster, Some(Desired::Cluster(d))) => cluster::observe(c, d).await,
            (ResourceKind::NodePool, Some(Desired::NodePool(d))) => nodegroup::observe(c, d).await,
            (ResourceKind::DnsZone, Some(Desired::DnsZone(d))) => dns::observe_zone(c, d).await,
            (ResourceKind::DnsIdentity, Some(Desired::DnsIdentity(d))) => {
                dns::observe_identity(c, d).await
            }
            (ResourceKind::DnsRecords, d) => dns::observe_records(c, &id.name, d).await,
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
                "the AWS provider cannot observe {id} without its desired state"
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
            Desired::NodePool(d) => nodegroup::ensure(c, d, inputs).await,
            Desired::DnsZone(d) => dns::ensure_zone(c, d).await,
            Desired::DnsIdentity(d) => dns::ensure_identity(c, d, inputs).await,
            Desired::DnsRecords(d) => dns::ensure_records(c, d, inputs).await,
            Desired::ObjectStorage(d) => storage::ensure(c, d, inputs).await,
            Desired::Registry(d) => registry::ensure(c, d, inputs).await,
            Desired::DatabaseInstance(d) => database::ensure_instance(c, d, inputs).await,
            Desired::Database(d) => database::ensure_database(c, d, inputs).await,
            _ => Err(Error::internal(format!(
                "the AWS provider does not know {}",
                desired.id()
            ))),
        }
    }

    async fn delete_any(&self, id: &ResourceId, desired: Option<&Desired>) -> Result<Progress> {
        let c = &self.ctx;
        let name = id.name.as_str();
        match (id.kind, desired) {
            (ResourceKind::Foundation, _) | (ResourceKind::Database, _) => Ok(Progress::Done(None)),
            (ResourceKind::Network, _) => network::delete(c, name).await,
            (ResourceKind::ClusterIdentity, _) => identity::delete(c, name).await,
            (ResourceKind::Cluster, _) => cluster::delete(c, id).await,
            (ResourceKind::NodePool, Some(Desired::NodePool(d))) => {
                nodegroup::delete(c, id, d).await
            }
            (ResourceKind::DnsZone, Some(Desired::DnsZone(d))) => dns::delete_zone(c, id, d).await,
            (ResourceKind::DnsIdentity, _) => dns::delete_identity(c, name).await,
            (ResourceKind::DnsRecords, d) => dns::delete_records(c, d).await,
            (ResourceKind::ObjectStorage, Some(Desired::ObjectStorage(d))) => {
                storage::delete(c, d).await
            }
            (ResourceKind::Registry, Some(Desired::Registry(d))) => registry::delete(c, d).await,
            (ResourceKind::DatabaseInstance, Some(Desired::DatabaseInstance(d))) => {
                database::delete_instance(c, id, d).await
            }
            _ => Err(Error::internal(format!(
                "the AWS provider cannot delete {id} without its desired state"
            ))),
        }
    }

    async fn poll_any(&self, op: &Operation) -> Result<Progress> {
        let c = &self.ctx;
        match op.resource.kind {
            ResourceKind::Cluster => cluster::poll(c, op).await,
            ResourceKind::NodePool => nodegroup::poll(c, op).await,
            ResourceKind::DatabaseInstance => database::poll(c, op).await,
            ResourceKind::Network => network::poll(c, op).await,
            _ => Ok(Progress::Done(None)),
        }
    }
}

// EKS runs node group operations in parallel.
gitpod_refarch::forward_provider_traits!(AwsProvider, ProviderInfo::new("aws"));
