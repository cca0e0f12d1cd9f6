//! How to reach Azure: the subscription, tenant, resource group and region, the
//! credentials (any `azure_identity` credential), an endpoint override for a local
//! fake of Azure Resource Manager, and the clock, retry policy and poll interval of the
//! provider's own loops.
//!
//! Credentials, in the order [`AzureConfig::for_spec`] and [`AzureConfig::new`] pick
//! them from the environment (each only when asked for a token, so building a
//! configuration makes no call):
//!
//! 1. a service principal's client secret: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
//!    `AZURE_CLIENT_SECRET`;
//! 2. Entra Workload Identity: `AZURE_FEDERATED_TOKEN_FILE` (with `AZURE_TENANT_ID`
//!    and `AZURE_CLIENT_ID`, as the AKS webhook sets them);
//! 3. otherwise the developer tools (`az login`, then `azd auth login`), and last the
//!    managed identity of the Azure VM this runs on (the user-assigned one named by
//!    `AZURE_CLIENT_ID` when set).
//!
//! [`AzureConfig::credential`] and [`AzureConfig::client_secret`] replace that choice.
//!
//! With [`AzureConfig::endpoint_url`] every ARM call goes to that URL (a local fake),
//! and a client secret is exchanged at the same URL (`<url>/<tenant>/oauth2/v2.0/token`).
//! Tokens are always asked for ARM's audience, `https://management.azure.com/.default`
//! ([`AzureConfig::arm_audience`] for a sovereign cloud), as the fake requires too. A plain-`http` endpoint is
//! accepted only on the loopback interface: `azure_core` and `azure_identity` send
//! tokens over `https` only, so requests are built for `https://<host:port>` and the
//! transport alone ([`crate::transport::LoopbackTransport`]) sends them over plain HTTP to
//! that one loopback address.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, RetryOptions};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use gitpod_refarch::engine::{Clock, RetryPolicy, TokioClock};
use gitpod_refarch::resource::{Desired, NetworkSpec, NodePoolSpec};
use gitpod_refarch::spec::{PoolRole, ReferenceArchitecture};
use gitpod_refarch::{Error, ErrorKind, Result, Secret};

use crate::transport::{transport_for, Endpoint};

/// The public cloud's Azure Resource Manager endpoint.
pub const ARM_ENDPOINT: &str = "https://management.azure.com";

/// The AKS network plugin.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkPlugin {
    /// Azure CNI in overlay mode with Calico network policy (the default): pods get
    /// addresses from the spec's pod range, outside the VNet.
    Overlay,
    /// kubenet with Calico, as Gitpod's own Terraform did (retired by Azure on
    /// 2028-03-31; kept for parity).
    Kubenet,
}

/// The node OS upgrade channel of the AKS cluster (the Kubernetes version itself is
/// never upgraded by Azure: the upgrade channel is always `none`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOsUpgrade {
    /// Weekly node images (the default).
    NodeImage,
    /// The OS's own unattended upgrades, no node image changes.
    Unmanaged,
}

impl NodeOsUpgrade {
    /// The ARM value (`NodeImage`, `Unmanaged`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeOsUpgrade::NodeImage => "NodeImage",
            NodeOsUpgrade::Unmanaged => "Unmanaged",
        }
    }
}

/// Which credential ARM calls (and AKS tokens) use.
#[non_exhaustive]
#[derive(Clone)]
pub enum AzureCredential {
    /// Chosen from the environment when first used (see the module docs).
    FromEnvironment,
    /// A service principal's client secret.
    ClientSecret {
        /// The tenant.
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// The secret.
        secret: Secret,
    },
    /// Any `azure_identity` (or own) credential.
    Token(Arc<dyn TokenCredential>),
}

impl fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureCredential::FromEnvironment => f.write_str("FromEnvironment"),
            AzureCredential::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("secret", &"<redacted>")
                .finish(),
            AzureCredential::Token(t) => f.debug_tuple("Token").field(t).finish(),
        }
    }
}

/// The policy of the ARM client's own retries ([`AzureConfig::retry`]) by default:
/// throttling (429) and transient failures (5xx, network) up to 6 attempts in all,
/// after 1 s, doubling to at most 20 s, with jitter, within 2 minutes; a longer
/// `Retry-After` is honoured.
pub fn default_retry() -> RetryPolicy {
    let mut p = RetryPolicy::default();
    p.initial_backoff = Duration::from_secs(1);
    p.max_backoff = Duration::from_secs(20);
    p.multiplier = 2.0;
    p.jitter = true;
    p.max_attempts = 6;
    p.budget = Duration::from_secs(120);
    p
}

/// How to reach Azure, and the subscription-level choices of the spec.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// The subscription id (a UUID).
    pub subscription_id: String,
    /// Region (the spec's `cluster.region`, an ARM location such as `northeurope`).
    pub region: String,
    /// The Entra tenant; read from the token's `tid` claim when not given.
    pub tenant_id: Option<String>,
    /// The resource group; the installation name when not given.
    pub resource_group: Option<String>,
    /// The container registry's name (`azure.registryName`), else derived.
    pub registry_name: Option<String>,
    /// The MySQL flexible server's name (`azure.databaseServerName`), else derived.
    pub database_server_name: Option<String>,
    /// Send every ARM call to this URL (a local fake) instead of [`ARM_ENDPOINT`].
    pub endpoint_url: Option<String>,
    /// The Entra authority host for a client secret; the endpoint override when set,
    /// else `AZURE_AUTHORITY_HOST` or the public cloud.
    pub authority_host: Option<String>,
    /// The audience of ARM tokens; [`ARM_ENDPOINT`] when not given.
    pub audience: Option<String>,
    /// The credential.
    pub credential: AzureCredential,
    /// The object id of the identity that deploys (it gets AKS RBAC Cluster Admin on
    /// the cluster); read from the token's `oid` claim when not given.
    pub deployer_principal_id: Option<String>,
    /// The AKS network plugin.
    pub network_plugin: NetworkPlugin,
    /// The AKS node OS upgrade channel.
    pub node_os_upgrade: NodeOsUpgrade,
    /// How often pending operations are polled when ARM gives no `Retry-After`.
    pub poll_interval: Duration,
    /// How long resource provider registration may take before it is an error.
    pub registration_timeout: Duration,
    /// The clock the provider's own loops sleep on (give the engine's, so that virtual
    /// time applies there too). Default: tokio's.
    pub clock: Arc<dyn Clock>,
    /// The policy of the ARM client's own retries of throttled and transient calls.
    /// Default: [`default_retry`].
    pub retry: RetryPolicy,
    /// The spec's network (pod and service ranges), for the AKS network profile; the
    /// network the engine last observed wins.
    pub(crate) network_hint: Option<NetworkSpec>,
    /// The spec's `services` pool, created inline with the cluster; the pool the engine
    /// last observed wins.
    pub(crate) services_pool_hint: Option<NodePoolSpec>,
}

impl AzureConfig {
    /// Settings for `subscription_id` in `region`, credentials from the environment.
    pub fn new(subscription_id: impl Into<String>, region: impl Into<String>) -> Self {
        AzureConfig {
            subscription_id: subscription_id.into(),
            region: region.into(),
            tenant_id: None,
            resource_group: None,
            registry_name: None,
            database_server_name: None,
            endpoint_url: None,
            authority_host: None,
            audience: None,
            credential: AzureCredential::FromEnvironment,
            deployer_principal_id: None,
            network_plugin: NetworkPlugin::Overlay,
            node_os_upgrade: NodeOsUpgrade::NodeImage,
            poll_interval: Duration::from_secs(10),
            registration_timeout: Duration::from_secs(15 * 60),
            clock: Arc::new(TokioClock::new()),
            retry: default_retry(),
            network_hint: None,
            services_pool_hint: None,
        }
    }

    /// Settings from a spec's `azure` section, name and region.
    pub fn for_spec(spec: &ReferenceArchitecture) -> Result<Self> {
        let z = spec.azure.as_ref().ok_or_else(|| {
            Error::invalid_input("the spec has no azure section (azure.subscriptionId is required)")
        })?;
        let mut c = Self::new(z.subscription_id.clone(), spec.cluster.region.clone());
        c.resource_group = Some(
            z.resource_group
                .clone()
                .unwrap_or_else(|| spec.name.clone()),
        );
        c.registry_name = z.registry_name.clone();
        c.database_server_name = z.database_server_name.clone();
        for node in gitpod_refarch::plan::graph(spec) {
            match node.desired {
                Desired::Network(n) => c.network_hint = Some(n),
                Desired::NodePool(p) if p.role == PoolRole::Services => {
                    c.services_pool_hint = Some(p)
                }
                _ => {}
            }
        }
        Ok(c)
    }

    /// The tenant.
    #[must_use]
    pub fn tenant_id(mut self, tenant: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant.into());
        self
    }

    /// The resource group.
    #[must_use]
    pub fn resource_group(mut self, rg: impl Into<String>) -> Self {
        self.resource_group = Some(rg.into());
        self
    }

    /// Send every ARM call to `url` (a local fake); see the module docs.
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into().trim_end_matches('/').to_string());
        self
    }

    /// The Entra authority host for a client secret.
    #[must_use]
    pub fn authority_host(mut self, url: impl Into<String>) -> Self {
        self.authority_host = Some(url.into().trim_end_matches('/').to_string());
        self
    }

    /// Use this credential.
    #[must_use]
    pub fn credential(mut self, credential: Arc<dyn TokenCredential>) -> Self {
        self.credential = AzureCredential::Token(credential);
        self
    }

    /// Use a service principal's client secret.
    #[must_use]
    pub fn client_secret(
        mut self,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        secret: Secret,
    ) -> Self {
        let tenant_id = tenant_id.into();
        self.tenant_id.get_or_insert_with(|| tenant_id.clone());
        self.credential = AzureCredential::ClientSecret {
            tenant_id,
            client_id: client_id.into(),
            secret,
        };
        self
    }

    /// The deployer's object id (else read from the token).
    #[must_use]
    pub fn deployer_principal_id(mut self, id: impl Into<String>) -> Self {
        self.deployer_principal_id = Some(id.into());
        self
    }

    /// The clock of the provider's own loops (pass the engine's).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The policy of the ARM client's own retries.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Poll interval for pending operations without `Retry-After`.
    #[must_use]
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// How long provider registration may take.
    #[must_use]
    pub fn registration_timeout(mut self, d: Duration) -> Self {
        self.registration_timeout = d;
        self
    }

    /// The AKS network plugin.
    #[must_use]
    pub fn network_plugin(mut self, p: NetworkPlugin) -> Self {
        self.network_plugin = p;
        self
    }

    /// The AKS node OS upgrade channel.
    #[must_use]
    pub fn node_os_upgrade(mut self, u: NodeOsUpgrade) -> Self {
        self.node_os_upgrade = u;
        self
    }

    /// The ARM base URL calls go to.
    pub fn arm_endpoint(&self) -> &str {
        self.endpoint_url.as_deref().unwrap_or(ARM_ENDPOINT)
    }

    /// The audience of ARM tokens (a sovereign cloud's ARM, such as
    /// `https://management.usgovcloudapi.net`).
    #[must_use]
    pub fn arm_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The scope ARM tokens are asked for: `<audience>/.default`.
    pub fn arm_scope(&self) -> String {
        let aud = self.audience.as_deref().unwrap_or(ARM_ENDPOINT);
        format!("{}/.default", aud.trim_end_matches('/'))
    }

    /// Refuse a bad subscription, region or endpoint before any call.
    pub(crate) fn check(&self) -> Result<()> {
        if !is_uuid(&self.subscription_id) {
            return Err(Error::invalid_input(format!(
                "'{}' is not a subscription id (a UUID)",
                self.subscription_id
            )));
        }
        if let Some(t) = &self.tenant_id {
            if !is_uuid(t) && !t.contains('.') {
                return Err(Error::invalid_input(format!(
                    "'{t}' is not a tenant id (a UUID or a domain)"
                )));
            }
        }
        if self.region.is_empty()
            || !self
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(Error::invalid_input(format!(
                "'{}' is not an Azure region (lower-case letters and digits, e.g. northeurope)",
                self.region
            )));
        }
        for url in [&self.endpoint_url, &self.authority_host]
            .into_iter()
            .flatten()
        {
            crate::transport::Endpoint::parse(url)?;
        }
        Ok(())
    }
}

impl AzureConfig {
    /// The credential every ARM call and AKS token uses. Makes no call.
    ///
    /// A client secret is exchanged at [`AzureConfig::authority_host`], else at the
    /// endpoint override, else at `AZURE_AUTHORITY_HOST` or the public cloud; the
    /// credentials built here do not retry by themselves (the ARM client does).
    pub(crate) fn build_credential(&self) -> Result<Arc<dyn TokenCredential>> {
        match &self.credential {
            AzureCredential::Token(t) => Ok(t.clone()),
            AzureCredential::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => self.client_secret_credential(tenant_id, client_id, secret),
            AzureCredential::FromEnvironment => {
                let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                match (
                    var("AZURE_TENANT_ID"),
                    var("AZURE_CLIENT_ID"),
                    var("AZURE_CLIENT_SECRET"),
                ) {
                    (Some(t), Some(c), Some(s)) => {
                        return self.client_secret_credential(&t, &c, &Secret::new(s));
                    }
                    (_, _, Some(_)) => return Err(Error::new(
                        ErrorKind::Credentials,
                        "AZURE_CLIENT_SECRET is set without AZURE_TENANT_ID and AZURE_CLIENT_ID",
                    )),
                    _ => {}
                }
                if var("AZURE_FEDERATED_TOKEN_FILE").is_some() {
                    let options = WorkloadIdentityCredentialOptions {
                        credential_options: ClientAssertionCredentialOptions {
                            client_options: self.credential_client_options()?.0,
                        },
                        ..Default::default()
                    };
                    let c = WorkloadIdentityCredential::new(Some(options)).map_err(|e| {
                        credentials_error(
                            "cannot set up the Entra Workload Identity credential (are \
                             AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE set?)",
                            e,
                        )
                    })?;
                    return Ok(c);
                }
                let cli = DeveloperToolsCredential::new(None)
                    .map_err(|e| credentials_error("cannot set up the Azure CLI credential", e))?;
                let mi = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: var("AZURE_CLIENT_ID").map(UserAssignedId::ClientId),
                    ..Default::default()
                }))
                .map_err(|e| {
                    credentials_error("cannot set up the managed identity credential", e)
                })?;
                Ok(Arc::new(FirstOf::new(vec![cli, mi])))
            }
        }
    }

    /// The pipeline options of a credential: no retries, and the loopback transport
    /// with an `https` authority for a plain-HTTP endpoint. Also the authority host.
    fn credential_client_options(&self) -> Result<(ClientOptions, Option<String>)> {
        let authority = self
            .authority_host
            .as_ref()
            .or(self.endpoint_url.as_ref())
            .map(|u| Endpoint::parse(u))
            .transpose()?;
        let mut options = ClientOptions {
            retry: RetryOptions::none(),
            ..Default::default()
        };
        let host = authority.map(|a| {
            options.transport = transport_for(&a);
            a.wire.as_str().trim_end_matches('/').to_string()
        });
        Ok((options, host))
    }

    fn client_secret_credential(
        &self,
        tenant_id: &str,
        client_id: &str,
        secret: &Secret,
    ) -> Result<Arc<dyn TokenCredential>> {
        let (mut options, host) = self.credential_client_options()?;
        if let Some(host) = host {
            let mut custom = azure_core::cloud::CustomConfiguration::default();
            custom.authority_host = host;
            options.cloud = Some(Arc::new(custom.into()));
        }
        let c = ClientSecretCredential::new(
            tenant_id,
            client_id.to_string(),
            azure_core::credentials::Secret::new(secret.expose().clone()),
            Some(ClientSecretCredentialOptions {
                client_options: options,
            }),
        )
        .map_err(|e| credentials_error("cannot set up the Entra ID client-secret credential", e))?;
        Ok(c)
    }
}

fn credentials_error(message: &str, e: azure_core::Error) -> Error {
    Error::new(ErrorKind::Credentials, message).with_source(e)
}

/// The first of several credentials that gives a token, remembered after that (the
/// developer tools, then the managed identity).
#[derive(Debug)]
struct FirstOf {
    sources: Vec<Arc<dyn TokenCredential>>,
    chosen: std::sync::atomic::AtomicUsize,
}

impl FirstOf {
    fn new(sources: Vec<Arc<dyn TokenCredential>>) -> Self {
        FirstOf {
            sources,
            chosen: std::sync::atomic::AtomicUsize::new(usize::MAX),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for FirstOf {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        use std::sync::atomic::Ordering;
        if let Some(s) = self.sources.get(self.chosen.load(Ordering::Relaxed)) {
            return s.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            match s.get_token(scopes, options.clone()).await {
                Ok(t) => {
                    self.chosen.store(i, Ordering::Relaxed);
                    return Ok(t);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!(
                "no Azure credentials: set AZURE_TENANT_ID, AZURE_CLIENT_ID and \
                 AZURE_CLIENT_SECRET, or run `az login`, or run with a managed identity ({})",
                failures.join("; ")
            ),
        ))
    }
}

/// Whether `s` is a UUID in its 8-4-4-4-12 hex form.
pub(crate) fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gitpod_refarch::spec::Cloud;

    const SUB: &str = "00000000-0000-0000-0000-000000000001";

    #[test]
    fn a_secret_never_reaches_debug() {
        let c = AzureConfig::new(SUB, "northeurope").client_secret(
            "11111111-1111-1111-1111-111111111111",
            "app",
            Secret::new("SEKRIT".into()),
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("SEKRIT"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert_eq!(
            c.tenant_id.as_deref(),
            Some("11111111-1111-1111-1111-111111111111")
        );
    }

    #[test]
    fn for_spec_takes_the_azure_section() {
        let mut spec = ReferenceArchitecture::defaults(Cloud::Azure);
        spec.name = "gp".into();
        spec.azure.as_mut().unwrap().subscription_id = SUB.into();
        let c = AzureConfig::for_spec(&spec).unwrap();
        assert_eq!(c.resource_group.as_deref(), Some("gp"));
        assert_eq!(c.region, "northeurope");
        // What the cluster needs from the spec and its own spec lacks.
        assert_eq!(
            c.network_hint.as_ref().unwrap().pod_cidr.as_deref(),
            Some("10.244.0.0/16")
        );
        assert_eq!(c.services_pool_hint.as_ref().unwrap().name, "services");
        spec.azure.as_mut().unwrap().resource_group = Some("rg-x".into());
        assert_eq!(
            AzureConfig::for_spec(&spec)
                .unwrap()
                .resource_group
                .as_deref(),
            Some("rg-x")
        );
        let gcp = ReferenceArchitecture::defaults(Cloud::Gcp);
        assert_eq!(
            AzureConfig::for_spec(&gcp).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn the_scope_is_arms_whatever_the_endpoint() {
        let c = AzureConfig::new(SUB, "northeurope");
        assert_eq!(c.arm_scope(), "https://management.azure.com/.default");
        let c = c.endpoint_url("http://127.0.0.1:8080/");
        assert_eq!(c.arm_endpoint(), "http://127.0.0.1:8080");
        assert_eq!(c.arm_scope(), "https://management.azure.com/.default");
        let c = c.arm_audience("https://management.usgovcloudapi.net/");
        assert_eq!(
            c.arm_scope(),
            "https://management.usgovcloudapi.net/.default"
        );
    }

    #[test]
    fn bad_configuration_is_refused_before_any_call() {
        assert!(AzureConfig::new(SUB, "northeurope").check().is_ok());
        for (sub, region, endpoint) in [
            ("not-a-uuid", "northeurope", None),
            (SUB, "North Europe", None),
            (SUB, "northeurope", Some("ftp://127.0.0.1:1")),
            // Plain HTTP only on the loopback interface.
            (SUB, "northeurope", Some("http://example.com")),
        ] {
            let mut c = AzureConfig::new(sub, region);
            if let Some(e) = endpoint {
                c = c.endpoint_url(e);
            }
            assert_eq!(
                c.check().unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{sub} {region} {endpoint:?}"
            );
        }
        assert!(AzureConfig::new(SUB, "northeurope")
            .endpoint_url("http://127.0.0.1:9")
            .check()
            .is_ok());
    }
}
