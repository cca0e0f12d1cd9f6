//! A **fake** of the Google Cloud control-plane APIs that gitpod-refarch uses: a
//! stateful, in-memory HTTP server answering the exact REST paths and JSON of the
//! official Google APIs (GKE, Cloud SQL Admin, Cloud DNS, IAM, Resource Manager,
//! Service Usage, Cloud Billing, Artifact Registry, Compute networks), built from
//! their public discovery documents. It is **not GCP**: it is for tests and local runs.
//!
//! ```no_run
//! use gitpod_refarch_fake_gcp::{FakeConfig, FakeGcp};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let fake = FakeGcp::start(FakeConfig::default().with_polls_to_finish(1)).await?;
//! // Point every official client at it: `.with_endpoint(fake.url())`.
//! let url = fake.url();
//! # let _ = url;
//! // ... drive the SDK ...
//! assert!(fake.resource("projects/p/locations/europe-west1/clusters/gitpod").is_none());
//! println!("{} mutating calls", fake.counts().mutating);
//! fake.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! One base URL serves every API (they do not collide: Compute lives under
//! `/compute/v1/`, Cloud DNS under `/dns/v1/`, Resource Manager under `/v3/` and
//! `/v1/projects`, Cloud SQL Admin under `/v1/projects/P/instances` and
//! `/sql/v1beta4/`). Long running operations of every API share one registry keyed by
//! full operation name, and each is answered in its own API's Operation shape (paths
//! two APIs share, `/v1/operations/X` of Service Usage and Resource Manager v1 and
//! `/v1/projects/P/locations/L/operations/X` of GKE and Artifact Registry, are told
//! apart by the registry). An operation is `DONE` on its Nth get
//! ([`FakeConfig::polls_to_finish`]) or after a wall-time delay
//! ([`FakeConfig::op_delay`]); its effects (a cluster turning `RUNNING`, a deleted
//! instance disappearing) happen at that moment. Compute's `operations.wait` waits:
//! it answers once the operation is done (observing it, or waiting out its delay), or
//! after [`FakeConfig::wait_timeout`] (GCP: 2 minutes) with the operation still running.
//!
//! # What it serves
//!
//! Besides each resource's life cycle, the guide's `gcloud` surface: Resource Manager
//! v1 (`projects.create`/`get`, `getIamPolicy`/`setIamPolicy`, on the same projects and
//! policies as v3, answered in v1's `Project` shape), Cloud SQL Admin `v1beta4` (the
//! same handlers as v1), Service Usage `services/X:enable` next to `batchEnable`, GKE
//! and Cloud SQL operation lists, Compute's aggregated subnetwork list. And the
//! catalogues it validates against, each one data table in `src/catalog.rs`: GKE
//! `serverConfig` (valid master and node versions, release channels with their default
//! and valid versions), Compute `machineTypes` per zone (list and get; regions and their
//! zones), Cloud SQL `tiers.list` and `flags.list` (each flag's type, allowed values or
//! range and database versions).
//!
//! # Resource names
//!
//! [`FakeGcp::resource`] and [`FakeGcp::resources`] use full resource names, keyed by
//! project **id**: `projects/p` (the project), `projects/p:iamPolicy`,
//! `projects/p/billingInfo`, `projects/p/services/container.googleapis.com` (enabled
//! services only), `projects/p/serviceAccounts/EMAIL`, `.../keys/KEYID`,
//! `projects/p/serviceAccounts/EMAIL:iamPolicy` (the account's own policy, once set;
//! [`FakeGcp::service_account_iam_policy`] answers as `getIamPolicy` does),
//! `projects/p/global/networks/N`, `projects/p/regions/R/subnetworks/S`,
//! `projects/p/locations/L/clusters/C`, `.../clusters/C/nodePools/NP`,
//! `projects/p/instances/I`, `.../databases/D`, `.../users/NAME@HOST` (or
//! `.../users/NAME` without a host), `projects/p/managedZones/Z`,
//! `.../managedZones/Z/rrsets/NAME/TYPE`, `projects/p/locations/L/repositories/R` and
//! `...repositories/R:iamPolicy`. Operations and DNS changes are not resources.
//!
//! # Cluster endpoints
//!
//! A GKE cluster reports its `endpoint` as GKE does, a bare address without a scheme,
//! and `masterAuth.clusterCaCertificate` as the base64 of a PEM. With
//! [`FakeConfig::kube_endpoint`] these are the Kubernetes fake's address
//! (`127.0.0.1:PORT`) and [`FakeConfig::kube_ca_pem`], so clients reach it over HTTPS
//! checking its certificate; without, an invented public IP and a PEM-shaped CA that
//! is not a certificate.
//!
//! # Nodes
//!
//! With a Kubernetes fake configured ([`FakeConfig::kube_endpoint`], trusted through
//! [`FakeConfig::kube_ca_pem`]), the nodes of every GKE node pool are published to
//! it through its fake-only admin endpoint (`PUT`/`DELETE
//! {endpoint}/fake-kube/nodepools/gke.PROJECT.LOCATION.CLUSTER.POOL`) before the call
//! that changed them is answered: once the pool's create operation is done (the
//! cluster's default pool included), again after a resize (`setSize`,
//! `setAutoscaling`, `update`) or relabel, and gone when the pool or its cluster is
//! deleted. There are `initialNodeCount` nodes per zone of the pool's `locations`
//! (clamped to the autoscaling bounds when autoscaling is on), named
//! `gke-CLUSTER-POOL-HASH-XXXX` (the hash of the pool's instance group URL), labelled
//! as GKE labels them (`cloud.google.com/gke-nodepool`,
//! `cloud.google.com/machine-family`, `cloud.google.com/gke-os-distribution`,
//! `cloud.google.com/gke-boot-disk`, `cloud.google.com/gke-max-pods-per-node`, ...)
//! plus `config.labels`, with `config.taints` (`NO_SCHEDULE` -> `NoSchedule`,
//! `PREFER_NO_SCHEDULE` -> `PreferNoSchedule`, `NO_EXECUTE` -> `NoExecute`; names or
//! enum numbers), `providerID` `gce://PROJECT/ZONE/NAME` and the pool's version as
//! kubelet version. A publish that fails (the Kubernetes fake is down) never fails the
//! GCP call: it is logged to stderr and retried after the next request.
//!
//! # How it differs from GCP (known gaps)
//!
//! - Nodes (see above): no cluster autoscaler (a pool never grows past its initial
//!   count on its own), no surge or node-by-node upgrades (an upgrade changes the
//!   kubelet version of the existing nodes at once), every cluster's nodes go to the
//!   one Kubernetes fake, and a node deleted in Kubernetes is not recreated until the
//!   pool changes.
//! - Only the methods in [`METHODS`] exist; anything else is a 404 in Google's shape.
//! - No authentication: any or no `Authorization` header is accepted.
//! - No paging: lists answer everything at once, `pageToken`/`maxResults` are ignored;
//!   list filters are ignored except Service Usage's `state:ENABLED` and Cloud DNS's
//!   `name`/`type`.
//! - Enums are answered as strings; enum values a client sent (the official Rust
//!   clients send integers with `$alt=json;enum-encoding=int`) are stored and echoed as
//!   sent.
//! - An operation finishes only when polled (or, with `op_delay`, when its time has
//!   come at any request); reading the target resource does not advance it.
//! - Field validation: names, required fields, the conflicts listed below and these
//!   catalogue checks (400 `INVALID_ARGUMENT`, worded like GCP's):
//!   - GKE versions against `serverConfig`: `initialClusterVersion` and
//!     `desiredMasterVersion` must be valid master versions (`-`/none is the default,
//!     of the channel when enrolled; `latest` the newest; `1.33` or `1.33.5` the newest
//!     patch; a full version as listed), and in the cluster's release channel when it
//!     has one (`Master version "X" is unsupported.`); node pool versions must be
//!     valid node versions not newer than the control plane (`-`/`latest`/none: the
//!     control plane's version). The catalogue is fixed (1.30 to 1.35): it looks like
//!     today's GKE but does not move, and every location offers the same versions.
//!   - Node machine types against the machine-type catalogue (the same in every zone
//!     of a known region; GCP's zones differ in the families they have).
//!   - Cloud SQL tiers (the listed tiers and `db-custom-CPUS-MB` within Cloud SQL's
//!     limits), database flags on insert and patch (an unknown flag, a value outside
//!     its type, values or range, a flag of another database version or a flag set
//!     twice: "Invalid Flag Name or Value: ...", reason `invalidFlagValue`; about a
//!     dozen MySQL and PostgreSQL flags are known, so real flags outside that list are
//!     refused too) and, on MySQL 5.x, `utf8mb4_0900_*` collations.
//!   - References across APIs: the network and subnetwork a cluster names (top level
//!     or `networkConfig`) must exist in Compute, the subnetwork in the cluster's
//!     region and on that network, and the secondary ranges named by its
//!     `ipAllocationPolicy` must be ranges of that subnetwork; the network named
//!     `default` is taken to exist (the fake does not create it, GCP does with the
//!     Compute API). A Cloud SQL private IP network must exist (the private services
//!     access connection GCP also requires is not modelled). `createSubnetwork` is
//!     stored but creates no subnetwork.
//!
//!   Most other nested settings are stored and echoed without checks, and output-only
//!   fields are invented (IP addresses, certificates, ids, versions). Cluster and pool
//!   locations are not checked against the zone catalogue; a master downgrade is not
//!   refused.
//! - GKE release channels: a cluster created without `releaseChannel` is enrolled in
//!   `REGULAR` (GKE's default); `{"channel": "UNSPECIFIED"}` (or `{}`) is no channel.
//!   With a channel, node pools must have auto-upgrade and auto-repair on (cluster and
//!   pool create, `setManagement`, enrolling by `update`): 400 otherwise.
//! - Cloud SQL databases report the engine's defaults: MySQL 5.7 `utf8`/`utf8_general_ci`
//!   (a charset alone gets `CHARSET_general_ci`), 8.0 `utf8mb4`/`utf8mb4_0900_ai_ci`,
//!   PostgreSQL `UTF8`/`en_US.UTF8`.
//! - Conflicts modelled: GKE's one operation per cluster (400 `FAILED_PRECONDITION`),
//!   Cloud SQL's one operation per instance (409) and no reuse of a deleted instance
//!   name (409), Resource Manager, Artifact Registry and service account policy etags
//!   (409 `ABORTED`; etags are compared as decoded bytes, so standard and URL-safe
//!   base64, padded or not, are the same etag),
//!   duplicates (409), Compute networks in use by subnetworks (400
//!   `resourceInUseByAnotherResource`), non-empty DNS zones (400 `containerNotEmpty`).
//! - Service Usage knows no service catalogue: any name with a dot can be enabled; a
//!   service is `DISABLED` until enabled, and `list` only shows enabled services.
//!   `services/X:disable` and Service Usage's `operations.list` are not served.
//! - Operation lists (GKE, Cloud SQL) answer every operation the fake still knows
//!   (operations are never forgotten); their filters other than Cloud SQL's `instance`
//!   are ignored.
//! - Passwords and keys are not stored (a created key's private key is a fake PEM).
//! - Cloud DNS changes are `done` at once; DNS has no operations.
//! - Deleting a service account leaves its IAM bindings in place (as GCP does, minus the
//!   `deleted:` prefix); its own policy goes with it.
//! - Service account policies: any role is accepted (GCP refuses roles that do not
//!   apply to service accounts); Workload Identity members
//!   (`serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA]`) are checked for shape and
//!   refused with 400 "Identity Pool does not exist" until a GKE cluster with that
//!   workload pool exists in the fake (GCP: in the project); `updateMask` is ignored
//!   (the whole policy is replaced).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

mod artifactregistry;
mod billing;
mod catalog;
mod compute;
mod container;
pub mod discovery;
mod dns;
mod error;
mod iam;
mod kube_nodes;
mod ops;
mod resourcemanager;
mod routes;
mod serviceusage;
mod sql;
mod state;
mod storage;

use error::{ApiError, ApiResult};
pub use routes::match_path;
use state::State;

const N_ROUTES: usize = routes::ROUTES.len();
const METHOD_ARRAY: [&str; N_ROUTES + 1] = {
    let mut a = [""; N_ROUTES + 1];
    let mut i = 0;
    while i < N_ROUTES {
        a[i] = routes::ROUTES[i].id;
        i += 1;
    }
    a[N_ROUTES] = "artifactregistry.projects.locations.operations.get";
    a
};

/// The discovery method id of every method the fake implements.
pub const METHODS: &[&str] = &METHOD_ARRAY;

/// How the fake behaves. Build it with [`FakeConfig::default`] and the `with_*` setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FakeConfig {
    /// A long-running operation is `DONE` on the Nth get of it (default 2; 0 = done at once).
    pub polls_to_finish: u32,
    /// If set, an operation is `DONE` only once this much wall time has passed
    /// (instead of counting polls).
    pub op_delay: Option<Duration>,
    /// Fraction (0.0..=1.0) of calls answered 429 `RESOURCE_EXHAUSTED` or 503
    /// `UNAVAILABLE` before any effect.
    pub fault_rate: f64,
    /// An `operationType` (e.g. `CREATE_CLUSTER`, `CREATE`, `insert`) or a discovery
    /// method id (e.g. `sql.instances.insert`) whose operations end with an error.
    /// Longrunning APIs use the types `CREATE_PROJECT`, `BATCH_ENABLE`,
    /// `CREATE_REPOSITORY` and `DELETE_REPOSITORY`.
    pub fail_operation: Option<String>,
    /// Seed of every random choice (ids, IPs, faults).
    pub seed: u64,
    /// Projects that exist at start, with an owner policy and billing enabled (default `["p"]`).
    pub projects: Vec<String>,
    /// Port on 127.0.0.1 (default 0: any free port).
    pub port: u16,
    /// If set, a Kubernetes fake stands in for every GKE cluster's API server: its
    /// URL (`https://127.0.0.1:PORT`, or a bare `127.0.0.1:PORT`). Clusters report it
    /// in GKE's shape, a bare address without a scheme, as `endpoint`.
    pub kube_endpoint: Option<String>,
    /// The PEM of the CA the Kubernetes fake's certificate chains to; clusters report
    /// it base64-encoded as `masterAuth.clusterCaCertificate`, as GKE does.
    pub kube_ca_pem: Option<String>,
    /// The longest a Compute `operations.wait` blocks before answering an operation
    /// that is still running (default 120 s, as GCP).
    pub wait_timeout: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            polls_to_finish: 2,
            op_delay: None,
            fault_rate: 0.0,
            fail_operation: None,
            seed: 0,
            projects: vec!["p".to_string()],
            port: 0,
            kube_endpoint: None,
            kube_ca_pem: None,
            wait_timeout: Duration::from_secs(120),
        }
    }
}

impl FakeConfig {
    /// Set [`FakeConfig::polls_to_finish`].
    pub fn with_polls_to_finish(mut self, n: u32) -> Self {
        self.polls_to_finish = n;
        self
    }
    /// Set [`FakeConfig::op_delay`].
    pub fn with_op_delay(mut self, delay: Option<Duration>) -> Self {
        self.op_delay = delay;
        self
    }
    /// Set [`FakeConfig::fault_rate`].
    pub fn with_fault_rate(mut self, rate: f64) -> Self {
        self.fault_rate = rate;
        self
    }
    /// Set [`FakeConfig::fail_operation`].
    pub fn with_fail_operation(mut self, op: Option<String>) -> Self {
        self.fail_operation = op;
        self
    }
    /// Set [`FakeConfig::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Set [`FakeConfig::projects`].
    pub fn with_projects<I, S>(mut self, projects: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.projects = projects.into_iter().map(Into::into).collect();
        self
    }
    /// Set [`FakeConfig::port`].
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Set [`FakeConfig::wait_timeout`].
    pub fn with_wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }
    /// Set [`FakeConfig::kube_endpoint`].
    pub fn with_kube_endpoint(mut self, url: Option<String>) -> Self {
        self.kube_endpoint = url;
        self
    }
    /// Set [`FakeConfig::kube_ca_pem`].
    pub fn with_kube_ca_pem(mut self, pem: Option<String>) -> Self {
        self.kube_ca_pem = pem;
        self
    }
    /// Set [`FakeConfig::kube_endpoint`] and [`FakeConfig::kube_ca_pem`]: a Kubernetes
    /// fake at `url` whose certificate chains to `ca_pem` answers for every cluster.
    pub fn with_kube(mut self, url: impl Into<String>, ca_pem: impl Into<String>) -> Self {
        self.kube_endpoint = Some(url.into());
        self.kube_ca_pem = Some(ca_pem.into());
        self
    }
}

/// How a call is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum CallKind {
    /// A read: get, list, batchGet, getIamPolicy.
    Read,
    /// A call that changes (or tries to change) state.
    Mutate,
    /// A get (or wait) of an operation or a DNS change.
    Poll,
}

/// One recorded call.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Call {
    /// Discovery method id, e.g. `container.projects.locations.clusters.create`
    /// (`unknown` for a path no method serves).
    pub method: String,
    /// How it is counted.
    pub kind: CallKind,
    /// HTTP status answered.
    pub status: u16,
    /// HTTP verb.
    pub http_method: String,
    /// The request path as sent (not decoded).
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// The request body, if any.
    pub request_body: Option<Value>,
    /// The response body (`Value::Null` for an empty 204).
    pub response_body: Value,
    /// True when the answer was an injected fault.
    pub fault: bool,
}

/// Call counters. `reads`, `mutating` and `polls` count every recorded call of that
/// kind, whatever its status (including injected faults); `faults` counts the injected
/// faults and `errors` the other non-2xx answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counts {
    /// Read calls.
    pub reads: u64,
    /// Mutating calls.
    pub mutating: u64,
    /// Operation polls.
    pub polls: u64,
    /// Injected 429/503 answers.
    pub faults: u64,
    /// Non-2xx answers that were not injected.
    pub errors: u64,
    /// Calls per discovery method id.
    pub per_method: BTreeMap<String, u64>,
}

/// A parsed request handed to an API module.
pub(crate) struct Req {
    /// The request path as sent.
    path: String,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Value,
}

impl Req {
    /// A path capture ("" when absent).
    pub(crate) fn p(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
    /// The first value of a query parameter.
    pub(crate) fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// Every value of a repeated query parameter.
    pub(crate) fn q_all(&self, name: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// The request body (`Value::Null` when none).
    pub(crate) fn body(&self) -> &Value {
        &self.body
    }
    /// The request path as sent (not decoded).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }
}

struct Shared {
    state: Mutex<State>,
    frozen: watch::Sender<bool>,
    /// Publishes node pools' nodes to the kube fake (see `kube_nodes.rs`).
    nodes: kube_nodes::Publisher,
    /// Cloud Storage buckets and objects (see `storage.rs`).
    storage: Mutex<storage::Storage>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake. Dropping it without [`FakeGcp::shutdown`] leaves the server task
/// running until the runtime ends.
pub struct FakeGcp {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeGcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGcp")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeGcp {
    /// Bind 127.0.0.1 on [`FakeConfig::port`] and serve in a background task.
    pub async fn start(config: FakeConfig) -> std::io::Result<FakeGcp> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let (frozen, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config)),
            frozen,
            nodes: kube_nodes::Publisher::default(),
            storage: Mutex::default(),
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
        Ok(FakeGcp {
            shared,
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A stored resource by full resource name (see the crate docs), e.g.
    /// `projects/p/instances/sql-x` or `projects/p:iamPolicy`.
    pub fn resource(&self, name: &str) -> Option<Value> {
        self.shared.lock().res.get(name).cloned()
    }

    /// Everything stored, by full resource name.
    pub fn resources(&self) -> BTreeMap<String, Value> {
        self.shared.lock().res.clone()
    }

    /// The IAM policy of a project (by id), as `getIamPolicy` answers it.
    pub fn project_iam_policy(&self, project: &str) -> Option<Value> {
        self.resource(&format!("projects/{project}:iamPolicy"))
    }

    /// The IAM policy of the service account `email` in `project` (id or number), as
    /// `iam.projects.serviceAccounts.getIamPolicy` answers it: `{"etag": "ACAB"}` for an
    /// account whose policy was never set; `None` when the account does not exist.
    pub fn service_account_iam_policy(&self, project: &str, email: &str) -> Option<Value> {
        let st = self.shared.lock();
        let id = st.project_id(project)?;
        let key = format!("projects/{id}/serviceAccounts/{email}");
        if !st.res.contains_key(&key) {
            return None;
        }
        Some(iam::policy_of(&st, &key))
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

    /// Change [`FakeConfig::polls_to_finish`] (for operations polled from now on).
    pub fn set_polls_to_finish(&self, n: u32) {
        self.shared.lock().config.polls_to_finish = n;
    }

    /// Change [`FakeConfig::fail_operation`] (for operations created from now on).
    pub fn set_fail_operation(&self, op: Option<String>) {
        self.shared.lock().config.fail_operation = op;
    }

    /// After `n` more successful mutating calls (0: now), every further request hangs
    /// until [`FakeGcp::unfreeze`]: a simulated killed process.
    pub fn freeze_after_mutating(&self, n: u64) {
        if n == 0 {
            self.shared.lock().freeze_after = None;
            self.shared.frozen.send_replace(true);
        } else {
            self.shared.lock().freeze_after = Some(n);
        }
    }

    /// Serve again. Requests that hung while frozen never take effect: they are
    /// answered 503 `UNAVAILABLE` (and not recorded).
    pub fn unfreeze(&self) {
        self.shared.lock().freeze_after = None;
        self.shared.frozen.send_replace(false);
    }

    /// Stop serving and wait for the server task.
    pub async fn shutdown(mut self) {
        // Release hung requests so the graceful shutdown can finish.
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
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let mut frozen = shared.frozen.subscribe();
    if *frozen.borrow_and_update() {
        return frozen_answer(frozen).await;
    }
    let path = uri.path().to_string();
    if storage::owns(&path) {
        return storage::serve(&shared, &method, &path, uri.query(), &headers, &body);
    }
    if method == Method::POST {
        // Compute's operations.wait blocks until its operation is done (or its time is up).
        if let Some(op) = ops::compute_wait_target(&path) {
            wait_for_operation(&shared, &op).await;
            if *frozen.borrow_and_update() {
                return frozen_answer(frozen).await;
            }
        }
    }
    let query = routes::parse_query(uri.query().unwrap_or(""));
    let request_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => Some(v),
            Err(e) => Some(Value::String(format!("<invalid JSON: {e}>"))),
        }
    };
    let (status, out) = {
        let mut st = shared.lock();
        let (status, out, freeze) = process(&mut st, method.as_str(), &path, query, request_body);
        if freeze {
            shared.frozen.send_replace(true);
        }
        (status, out)
    };
    // Node pools that gained, changed or lost nodes: publish them to the kube fake
    // before answering (a failure is logged, never answered).
    shared.nodes.sync(&shared.state).await;
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if out.is_null() {
        return code.into_response();
    }
    (
        code,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        out.to_string(),
    )
        .into_response()
}

/// A frozen fake is a killed process: this request never has an effect. When the fake
/// is unfrozen (or shut down) it is answered 503, unrecorded; its client has normally
/// given up long before.
async fn frozen_answer(mut frozen: watch::Receiver<bool>) -> Response {
    let _ = frozen.wait_for(|f| !*f).await;
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        ApiError::new(
            503,
            "UNAVAILABLE",
            "backendError",
            "The fake was frozen while this request waited.",
        )
        .body(false)
        .to_string(),
    )
        .into_response()
}

/// What Compute's `operations.wait` does before answering: wait until the operation
/// is done, at most [`FakeConfig::wait_timeout`] (GCP: up to 2 minutes). An operation
/// that finishes on a number of polls is observed until it is done; one that finishes
/// after [`FakeConfig::op_delay`] is waited for. The answer itself is then one poll.
async fn wait_for_operation(shared: &Shared, name: &str) {
    let deadline = {
        let st = shared.lock();
        tokio::time::Instant::now() + st.config.wait_timeout
    };
    let frozen = shared.frozen.subscribe();
    loop {
        let pause = {
            let mut st = shared.lock();
            ops::settle(&mut st);
            match ops::observe(&mut st, name) {
                None => return,
                Some(pause) => pause,
            }
        };
        let now = tokio::time::Instant::now();
        if now >= deadline || *frozen.borrow() {
            return;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
    }
}

/// Handle one request against the state; returns (status, body, freeze now).
fn process(
    st: &mut State,
    verb: &str,
    path: &str,
    query: Vec<(String, String)>,
    request_body: Option<Value>,
) -> (u16, Value, bool) {
    ops::settle(st);
    let found = routes::ROUTES.iter().find_map(|r| {
        if r.verb == verb {
            routes::match_path(r.template, path).map(|caps| (r, caps))
        } else {
            None
        }
    });
    let (mut method, kind) = match &found {
        Some((r, _)) => (r.id, r.kind),
        None => ("unknown", CallKind::Read),
    };
    if method == "container.projects.locations.operations.get" {
        if let Some((_, caps)) = &found {
            let req = Req {
                path: path.to_string(),
                params: caps.clone(),
                query: Vec::new(),
                body: Value::Null,
            };
            if artifactregistry::owns_operation(st, &req) {
                method = "artifactregistry.projects.locations.operations.get";
            }
        }
    }
    if method == "serviceusage.operations.get" {
        // Resource Manager v1's operations share this path.
        if let Some((_, caps)) = &found {
            let id = caps
                .iter()
                .find(|(k, _)| k == "operationsId")
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            if ops::api_of(st, &format!("operations/{id}")) == Some(ops::Api::ResourceManager) {
                method = "cloudresourcemanager.operations.get";
            }
        }
    }
    let legacy =
        method.starts_with("compute.") || method.starts_with("sql.") || method.starts_with("dns.");

    let fault_rate = st.config.fault_rate;
    let fault = fault_rate > 0.0 && st.rng.random::<f64>() < fault_rate;
    let result: ApiResult = if fault {
        if st.rng.random::<bool>() {
            Err(ApiError::new(
                429,
                "RESOURCE_EXHAUSTED",
                "rateLimitExceeded",
                "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' (injected by the fake).",
            ))
        } else {
            Err(ApiError::new(
                503,
                "UNAVAILABLE",
                "backendError",
                "The service is currently unavailable (injected by the fake).",
            ))
        }
    } else {
        match &found {
            None => Err(ApiError::not_found(format!(
                "The requested URL {path} was not found on this server (fake-gcp serves only the methods in METHODS)."
            ))),
            Some((_, caps)) => match &request_body {
                Some(Value::String(bad)) if bad.starts_with("<invalid JSON") => Err(ApiError::invalid(format!(
                    "Invalid JSON payload received. {bad}"
                ))),
                _ => {
                    let req = Req {
                        path: path.to_string(),
                        params: caps.clone(),
                        query: query.clone(),
                        body: request_body.clone().unwrap_or(Value::Null),
                    };
                    dispatch(st, method, &req)
                }
            },
        }
    };
    let (status, out) = match result {
        Ok(v) => (if v.is_null() { 204 } else { 200 }, v),
        Err(e) => (e.http, e.body(legacy)),
    };

    match kind {
        CallKind::Read => st.counts.reads += 1,
        CallKind::Mutate => st.counts.mutating += 1,
        CallKind::Poll => st.counts.polls += 1,
    }
    if fault {
        st.counts.faults += 1;
    } else if status >= 300 {
        st.counts.errors += 1;
    }
    *st.counts.per_method.entry(method.to_string()).or_insert(0) += 1;
    st.calls.push(Call {
        method: method.to_string(),
        kind,
        status,
        http_method: verb.to_string(),
        path: path.to_string(),
        query,
        request_body,
        response_body: out.clone(),
        fault,
    });

    let mut freeze = false;
    if kind == CallKind::Mutate && status < 300 {
        if let Some(left) = st.freeze_after.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                st.freeze_after = None;
                freeze = true;
            }
        }
    }
    (status, out, freeze)
}

fn dispatch(st: &mut State, method: &str, req: &Req) -> ApiResult {
    let api = method.split('.').next().unwrap_or("");
    match api {
        "cloudresourcemanager" => resourcemanager::handle(st, method, req),
        "cloudbilling" => billing::handle(st, method, req),
        "serviceusage" => serviceusage::handle(st, method, req),
        "iam" => iam::handle(st, method, req),
        "compute" => compute::handle(st, method, req),
        "container" => container::handle(st, method, req),
        "sql" => sql::handle(st, method, req),
        "dns" => dns::handle(st, method, req),
        "artifactregistry" => artifactregistry::handle(st, method, req),
        _ => Err(ApiError::not_found(format!(
            "Method {method} is not served by the fake."
        ))),
    }
}

/// An unreachable method inside an API module: answered as a 404 rather than a panic.
pub(crate) fn unserved(method: &str) -> ApiError {
    ApiError::not_found(format!("Method {method} is not served by the fake."))
}
