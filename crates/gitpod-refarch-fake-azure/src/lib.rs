//! A **fake** of Azure Resource Manager (ARM) and of the Entra ID token endpoint, for
//! the resources gitpod-refarch uses: a stateful, in-memory HTTP server answering the
//! REST paths, JSON shapes, status codes and long-running-operation headers of the
//! official ARM APIs at pinned api-versions. It is **not Azure**: it is for tests and
//! local runs.
//!
//! ```no_run
//! use gitpod_refarch_fake_azure::{FakeAzure, FakeConfig};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let fake = FakeAzure::start(FakeConfig::default().with_polls_to_finish(1)).await?;
//! // ARM base URL and Entra authority are the same server.
//! let (arm, authority) = (fake.url(), fake.authority_url());
//! # let _ = (arm, authority);
//! // ... drive the SDK ...
//! println!("{} mutating calls", fake.counts().mutating);
//! fake.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # What it serves (api-version in brackets; any other is a 400)
//!
//! - Entra ID: `POST /{tenant}/oauth2/v2.0/token` (client credentials; JWT-shaped
//!   tokens with `oid`, `tid`, `appid`, `aud`, `exp`) and the OpenID configuration.
//!   ARM calls need a bearer token it issued for `https://management.azure.com`.
//! - Microsoft.Resources \[2025-04-01\]: resource groups (PUT/GET/HEAD/DELETE as a
//!   `Location` LRO that deletes everything inside), list; providers GET, list, register.
//! - Microsoft.Network \[2025-05-01\]: virtualNetworks with inline subnets, subnets.
//! - Microsoft.ContainerService \[2026-08-01\]: managedClusters, agentPools,
//!   listClusterUserCredential / listClusterAdminCredential. A cluster's `fqdn` has
//!   AKS's shape (`{dnsPrefix}-{hex}.hcp.{region}.azmk8s.io`); the credentials'
//!   kubeconfig names the API server as `server` with its
//!   `certificate-authority-data`: with [`FakeConfig::kube_endpoint`] and
//!   [`FakeConfig::kube_ca_pem`], the Kubernetes fake's `https://` URL and CA (as
//!   `az aks get-credentials` would write them), else `https://{fqdn}:443` and a
//!   PEM-shaped CA that is not a certificate.
//! - Microsoft.Network \[2018-05-01\]: dnsZones and record sets; \[2024-06-01\]:
//!   privateDnsZones and virtualNetworkLinks.
//! - Microsoft.ManagedIdentity \[2024-11-30\]: userAssignedIdentities,
//!   federatedIdentityCredentials.
//! - Microsoft.Authorization \[2022-04-01\]: roleAssignments at any scope, list with
//!   `$filter`.
//! - Microsoft.ContainerRegistry \[2025-11-01\]: checkNameAvailability, registries,
//!   scopeMaps, tokens, generateCredentials, listCredentials.
//! - Microsoft.DBforMySQL \[2024-12-30\]: checkNameAvailability (with and without
//!   location), flexibleServers, databases, configurations, firewallRules.
//!
//! # Rules it models
//!
//! Namespaces start `NotRegistered` (409 `MissingSubscriptionRegistration`); AKS's
//! per-cluster operation lock (409 `OperationNotAllowed`) and the Network RP's
//! per-VNet lock (409 `AnotherOperationInProgress`); pools only via agentPools once a
//! cluster exists; `InUseSubnetCannotBeDeleted`; `RoleAssignmentExists` (and role
//! assignment lists that lag behind writes: [`FakeConfig::role_list_delay`]);
//! `PrincipalNotFound` for new principals ([`FakeConfig::principal_not_found_attempts`]);
//! federated credential limits and concurrent writes; global registry and server
//! names; MySQL's delegated subnet and private DNS zone rules; secrets never in GET.
//!
//! # Nodes
//!
//! With a Kubernetes fake configured ([`FakeConfig::kube_endpoint`], trusted through
//! [`FakeConfig::kube_ca_pem`]), the nodes of every AKS agent pool (inline
//! `agentPoolProfiles` of the cluster PUT and the agentPools API alike) are published
//! to it through its fake-only admin endpoint (`PUT`/`DELETE
//! {endpoint}/fake-kube/nodepools/aks.SUB.RG.CLUSTER.POOL`) before the call that
//! changed them is answered: once the pool's create operation succeeded, again after
//! a scale or label change, and gone when the pool or its cluster is deleted. There
//! are `count` nodes (clamped to `minCount`..`maxCount` with autoscaling), named as a
//! scale set names its instances (`aks-POOL-NNNNNNNN-vmss000000`, then `...000001`),
//! spread over `availabilityZones` (`LOCATION-1`; zone `0` without zones), labelled as
//! AKS labels them (`kubernetes.azure.com/agentpool`, `agentpool`,
//! `kubernetes.azure.com/mode: system|user`, `kubernetes.azure.com/cluster`,
//! `kubernetes.azure.com/os-sku`, ...) plus `nodeLabels`, with `nodeTaints`
//! (`key=value:Effect`) as taints and the pool's version as kubelet version. A publish
//! that fails never fails the ARM call: it is logged to stderr and retried after the
//! next request.
//!
//! # How it differs from Azure (known gaps)
//!
//! - Nodes (see above): no cluster autoscaler, no surge upgrades (the kubelet version
//!   of existing nodes changes at once), no `providerID`, every cluster's nodes go to
//!   the one Kubernetes fake, and a node deleted in Kubernetes is not recreated until
//!   the pool changes.
//! - Only the paths above exist; others are 404/400 in ARM's shape. No paging, no
//!   PATCH except MySQL configurations, no `If-Match` except on DNS.
//! - Validation is shallow beyond the rules listed: most nested settings are stored
//!   and echoed; read-only fields are invented (ids, IPs, FQDNs, versions).
//! - Error codes for some refusals are invented where Azure's exact code is not
//!   documented (listed in each module's docs).
//! - Operations finish only by polling (or by time with [`FakeConfig::time_scale`]);
//!   a GET of the target resource (or of the resource the operation locks) counts as a poll.
//! - No RBAC enforcement: every valid token may do everything; role assignments are
//!   stored, never evaluated. Tokens are not signed.
//! - Entra replication delay is modelled even when `principalType` is sent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

mod acr;
mod aks;
mod aks_pools;
mod authorization;
mod config;
mod dns;
mod error;
mod kube_nodes;
mod lro;
mod msi;
mod mysql;
mod mysql_config;
mod network;
mod privatedns;
mod process;
mod resources;
mod routes;
mod state;
mod token;

pub use config::{
    FakeConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SUBSCRIPTION, DEFAULT_TENANT,
};
use state::State;

/// How a call is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum CallKind {
    /// GET, HEAD, and POST actions that change nothing (`list*`, `checkNameAvailability`).
    Read,
    /// A call that changes (or tries to change) state.
    Mutate,
    /// A GET of an operation URL.
    Poll,
    /// A call to the Entra ID endpoints.
    Token,
}

/// One recorded call. Secrets are redacted in the recorded bodies
/// (`administratorLoginPassword`, `client_secret`, `access_token`, password values,
/// kubeconfigs); the HTTP answer itself carries them.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Call {
    /// How it is counted.
    pub kind: CallKind,
    /// HTTP verb.
    pub http_method: String,
    /// The request path as sent (not decoded).
    pub path: String,
    /// The `api-version` query parameter, if sent.
    pub api_version: Option<String>,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Resource type, e.g. `Microsoft.ContainerService/managedClusters/agentPools`.
    pub resource_type: String,
    /// The request body (JSON; the token endpoint's form as an object).
    pub request_body: Option<Value>,
    /// HTTP status answered.
    pub status: u16,
    /// The response body (`Value::Null` when empty).
    pub response_body: Value,
    /// Response headers of interest: `Location`, `Azure-AsyncOperation`,
    /// `Retry-After`, `WWW-Authenticate`.
    pub response_headers: Vec<(String, String)>,
    /// True when the answer was an injected fault.
    pub fault: bool,
}

/// Reads and mutating calls of one resource type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TypeCounts {
    /// Read calls.
    pub reads: u64,
    /// Mutating calls.
    pub mutating: u64,
}

/// Call counters, whatever the status (injected faults included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counts {
    /// Read calls.
    pub reads: u64,
    /// Mutating calls.
    pub mutating: u64,
    /// Operation polls.
    pub polls: u64,
    /// Token endpoint calls.
    pub tokens: u64,
    /// Injected 429/500/503 answers.
    pub faults: u64,
    /// Non-2xx answers that were not injected.
    pub errors: u64,
    /// Per resource type.
    pub per_type: BTreeMap<String, TypeCounts>,
}

/// A parsed request handed to a provider module.
pub(crate) struct Req {
    pub verb: String,
    pub route: routes::Route,
    pub query: Vec<(String, String)>,
    pub body: Value,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
}

impl Req {
    /// A query parameter (case-insensitive name).
    pub(crate) fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer from a provider module.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
    /// Hold the answer this long, then clear this identity's write marker.
    pub hold: Option<(Duration, String)>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
            hold: None,
        }
    }
    pub(crate) fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            headers: Vec::new(),
            hold: None,
        }
    }
    pub(crate) fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Reply {
        self.headers.extend(headers);
        self
    }
}

struct Shared {
    state: Mutex<State>,
    frozen: watch::Sender<bool>,
    /// Publishes agent pools' nodes to the kube fake (see `kube_nodes.rs`).
    nodes: kube_nodes::Publisher,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake. Dropping it without [`FakeAzure::shutdown`] leaves the server task
/// running until the runtime ends.
pub struct FakeAzure {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeAzure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAzure")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeAzure {
    /// Bind 127.0.0.1 on [`FakeConfig::port`] and serve in a background task.
    pub async fn start(config: FakeConfig) -> std::io::Result<FakeAzure> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let (frozen, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config, format!("http://{addr}"))),
            frozen,
            nodes: kube_nodes::Publisher::default(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeAzure {
            shared,
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The ARM base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Entra ID authority host (the same server): tokens are at
    /// `{authority_url}/{tenant}/oauth2/v2.0/token`.
    pub fn authority_url(&self) -> String {
        self.url()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The tenant id.
    pub fn tenant_id(&self) -> String {
        self.shared.lock().config.tenant_id.clone()
    }

    /// Issue an ARM token for a known client without the HTTP round trip (for tests
    /// and other clients that take a static bearer token). `None` for an unknown client.
    pub fn token_for(&self, client_id: &str) -> Option<String> {
        let mut st = self.shared.lock();
        let known = st
            .config
            .clients
            .iter()
            .any(|(id, _)| id.eq_ignore_ascii_case(client_id));
        known.then(|| token::mint(&mut st, client_id, "https://management.azure.com").0)
    }

    /// The object id (`oid`) of a client's service principal.
    pub fn client_object_id(client_id: &str) -> String {
        state::client_object_id(client_id)
    }

    /// A stored resource by ARM id (case-insensitive), as stored: AKS pools and VNet
    /// subnets are separate resources (a GET of the parent inlines them).
    pub fn resource(&self, id: &str) -> Option<Value> {
        self.shared.lock().get(id).cloned()
    }

    /// Everything stored, by ARM id.
    pub fn resources(&self) -> BTreeMap<String, Value> {
        self.shared
            .lock()
            .res
            .iter()
            .map(|(k, v)| {
                let id = v
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| k.clone());
                (id, v.clone())
            })
            .collect()
    }

    /// The registration state of a provider namespace in a subscription.
    pub fn registration_state(&self, subscription: &str, namespace: &str) -> String {
        resources::registration_state(&self.shared.lock(), subscription, namespace).to_string()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The counters.
    pub fn counts(&self) -> Counts {
        self.shared.lock().counts.clone()
    }

    /// Forget the recorded calls and zero the counters (state is kept).
    pub fn reset_calls(&self) {
        let mut st = self.shared.lock();
        st.calls.clear();
        st.counts = Counts::default();
    }

    /// Change [`FakeConfig::fault_rate`].
    pub fn set_fault_rate(&self, rate: f64) {
        self.shared.lock().config.fault_rate = rate;
    }

    /// Change [`FakeConfig::polls_to_finish`].
    pub fn set_polls_to_finish(&self, n: u32) {
        self.shared.lock().config.polls_to_finish = n;
    }

    /// Change [`FakeConfig::fail_operation`] (for operations started from now on).
    pub fn set_fail_operation(&self, kind: Option<String>) {
        self.shared.lock().config.fail_operation = kind;
    }

    /// Change [`FakeConfig::principal_not_found_attempts`] (for principals created
    /// from now on).
    pub fn set_principal_not_found_attempts(&self, n: u32) {
        self.shared.lock().config.principal_not_found_attempts = n;
    }

    /// Change [`FakeConfig::role_list_delay`] (for role assignments created from now
    /// on).
    pub fn set_role_list_delay(&self, n: u32) {
        self.shared.lock().config.role_list_delay = n;
    }

    /// The next `n` federated identity credential writes get the concurrency 409.
    pub fn set_fic_conflicts(&self, n: u32) {
        self.shared.lock().fic_conflicts_left = n;
    }

    /// After `n` more successful mutating calls (0: now), every further request hangs
    /// until [`FakeAzure::unfreeze`]: a simulated killed process.
    pub fn freeze_after_mutating(&self, n: u64) {
        if n == 0 {
            self.shared.lock().freeze_after = None;
            self.shared.frozen.send_replace(true);
        } else {
            self.shared.lock().freeze_after = Some(n);
        }
    }

    /// Serve again. Requests that hung while frozen never take effect: they are
    /// answered 503 (and not recorded).
    pub fn unfreeze(&self) {
        self.shared.lock().freeze_after = None;
        self.shared.frozen.send_replace(false);
    }

    /// Stop serving and wait for the server task.
    pub async fn shutdown(mut self) {
        self.shared.frozen.send_replace(false);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut frozen = shared.frozen.subscribe();
    if *frozen.borrow_and_update() {
        // A frozen fake is a killed process: this request never has an effect.
        let _ = frozen.wait_for(|f| !*f).await;
        let e = error::ArmError::new(
            503,
            "ServiceUnavailable",
            "The fake was frozen while this request waited.",
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            e.body().to_string(),
        )
            .into_response();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let input = process::Input {
        verb: method.as_str().to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        authorization: header("authorization"),
        if_match: header("if-match"),
        if_none_match: header("if-none-match"),
        body: body.to_vec(),
    };
    let reply = {
        let mut st = shared.lock();
        let (reply, freeze) = process::process(&mut st, input);
        // Frozen before the lock is released: whoever sees this call recorded sees the
        // fake frozen too (and an `unfreeze` after that is not undone by this call).
        if freeze {
            shared.frozen.send_replace(true);
        }
        reply
    };
    // Agent pools that gained, changed or lost nodes: publish them to the kube fake
    // before answering (a failure is logged, never answered).
    shared.nodes.sync(&shared.state).await;
    if let Some((wait, identity)) = &reply.hold {
        tokio::time::sleep(*wait).await;
        shared.lock().fic_writing.remove(identity);
    }
    let code = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match &reply.body {
        Some(v) if method != Method::HEAD => (
            code,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            v.to_string(),
        )
            .into_response(),
        _ => code.into_response(),
    };
    for (name, value) in &reply.headers {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}
