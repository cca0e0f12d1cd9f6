//! The simulated cloud: an in-memory implementation of all five provider traits.
//!
//! It behaves like a cloud where it matters to the engine and to your tests:
//!
//! - **stateful**: resources persist across engine runs (and, with
//!   [`SimCloud::to_json`], across processes); creates and deletes are long-running
//!   operations that finish after the [`LatencyProfile`]'s duration on the injected
//!   [`Clock`];
//! - **strict about order**: a node pool needs a ready cluster, a network in use
//!   cannot be deleted, a serial cluster rejects a second operation with
//!   [`ErrorKind::OperationInProgress`];
//! - **unforgiving like moto**: a create never checks for an existing resource, so a
//!   provider (here, the sim's own `ensure`) must look up first, and a lost response
//!   followed by a blind create would leave a duplicate that [`SimCloud::duplicates`]
//!   reports;
//! - **faulty on demand** ([`Faults`]): an error rate by kind, applied before the
//!   effect or after it (a lost response), a permanent failure at the k-th mutating
//!   call, and a crash (the call never returns) at the k-th mutating call;
//! - **counted** ([`CallCounts`]): reads, polls and mutating calls, by kind.
//!
//! Secrets it issues (keys, passwords) cannot be read back by `observe`, as on real
//! clouds, so the engine's state store is exercised too.

mod verify;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use futures::task::AtomicWaker;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::engine::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::provider::{Inputs, Observed, Operation, Progress, ProviderInfo, DATABASE_PASSWORD};
use crate::resource::*;
use crate::secret::{expose_in, Secret};
use crate::spec::RegistryMode;

/// How long each kind of operation takes.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyProfile {
    create: BTreeMap<ResourceKind, Duration>,
    delete: BTreeMap<ResourceKind, Duration>,
    /// Duration of an in-place update, as a fraction of the create duration.
    pub update_fraction: f64,
}

impl LatencyProfile {
    /// Everything completes at once (still as an operation to poll).
    pub fn instant() -> Self {
        LatencyProfile {
            create: BTreeMap::new(),
            delete: BTreeMap::new(),
            update_fraction: 0.5,
        }
    }

    /// Realistic cloud durations (`critical-path.md`): APIs ~1 min, GKE cluster
    /// ~6 min, node pool ~3 min, Cloud SQL ~8 min, DNS, IAM and buckets seconds.
    pub fn realistic() -> Self {
        use ResourceKind::*;
        let s = Duration::from_secs;
        let create = BTreeMap::from([
            (Foundation, s(60)),
            (Network, s(30)),
            (ClusterIdentity, s(5)),
            (Cluster, s(360)),
            (NodePool, s(180)),
            (DnsZone, s(5)),
            (DnsIdentity, s(5)),
            (DnsRecords, s(5)),
            (ObjectStorage, s(5)),
            (Registry, s(10)),
            (DatabaseInstance, s(480)),
            (Database, s(20)),
        ]);
        let delete = BTreeMap::from([
            (Foundation, s(10)),
            (Network, s(60)),
            (ClusterIdentity, s(5)),
            (Cluster, s(300)),
            (NodePool, s(150)),
            (DnsZone, s(5)),
            (DnsIdentity, s(5)),
            (DnsRecords, s(5)),
            (ObjectStorage, s(5)),
            (Registry, s(5)),
            (DatabaseInstance, s(300)),
            (Database, s(10)),
        ]);
        LatencyProfile {
            create,
            delete,
            update_fraction: 0.5,
        }
    }

    /// Every duration multiplied by `factor` (`1.0 / 600.0`: six minutes become 0.6 s).
    #[must_use]
    pub fn scaled(mut self, factor: f64) -> Self {
        let f = |d: &mut Duration| *d = Duration::from_secs_f64(d.as_secs_f64() * factor.max(0.0));
        self.create.values_mut().for_each(f);
        self.delete.values_mut().for_each(f);
        self
    }

    /// Set the create duration of a kind.
    #[must_use]
    pub fn with_create(mut self, kind: ResourceKind, d: Duration) -> Self {
        self.create.insert(kind, d);
        self
    }

    /// Create duration.
    pub fn create(&self, kind: ResourceKind) -> Duration {
        self.create.get(&kind).copied().unwrap_or_default()
    }

    /// Delete duration.
    pub fn delete(&self, kind: ResourceKind) -> Duration {
        self.delete.get(&kind).copied().unwrap_or_default()
    }

    /// Update duration.
    pub fn update(&self, kind: ResourceKind) -> Duration {
        Duration::from_secs_f64(self.create(kind).as_secs_f64() * self.update_fraction)
    }
}

/// Injected faults.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability that a call fails with a retryable error.
    pub error_rate: f64,
    /// Of those failures, the share that happens *after* a mutation took effect (the
    /// response is lost).
    pub lost_response_share: f64,
    /// The kinds drawn for injected errors.
    pub error_kinds: Vec<ErrorKind>,
    /// Fail the k-th mutating call (from 1) with a permanent error, before its effect.
    pub fail_at_mutation: Option<u64>,
    /// At the k-th mutating call (from 1), apply the effect and never return, as if
    /// the process was killed; [`SimCloud::crashed`] then completes.
    pub crash_at_mutation: Option<u64>,
    /// Seed of the fault RNG (runs are reproducible).
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_rate: 0.0,
            lost_response_share: 0.5,
            error_kinds: vec![ErrorKind::Throttled, ErrorKind::Transient],
            fail_at_mutation: None,
            crash_at_mutation: None,
            seed: 7,
        }
    }
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Fail the k-th mutating call (from 1) permanently.
    pub fn fail_at(k: u64) -> Self {
        Faults {
            fail_at_mutation: Some(k),
            ..Default::default()
        }
    }

    /// Crash (never return) at the k-th mutating call (from 1).
    pub fn crash_at(k: u64) -> Self {
        Faults {
            crash_at_mutation: Some(k),
            ..Default::default()
        }
    }

    /// Retryable errors on a share of calls.
    pub fn random(error_rate: f64, seed: u64) -> Self {
        Faults {
            error_rate,
            seed,
            ..Default::default()
        }
    }
}

/// Calls made, by class and kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    /// `observe` and lookups inside `ensure`.
    pub reads: u64,
    /// `poll`.
    pub polls: u64,
    /// Calls that changed (or would have changed) something.
    pub mutating: u64,
    /// Injected errors returned.
    pub injected_errors: u64,
    /// Operation-in-progress rejections.
    pub conflicts: u64,
    /// Reads by kind.
    pub reads_by_kind: BTreeMap<ResourceKind, u64>,
    /// Mutating calls by kind.
    pub mutating_by_kind: BTreeMap<ResourceKind, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimResource {
    uid: u64,
    id: ResourceId,
    actual: Desired,
    output: Output,
    /// Set while a create/update runs.
    busy_until: Option<Duration>,
    /// Set while a delete runs.
    deleting_until: Option<Duration>,
}

#[derive(Debug, Default)]
struct World {
    resources: Vec<SimResource>,
    next_uid: u64,
}

#[derive(Debug)]
struct CrashSignal {
    fired: AtomicBool,
    waker: AtomicWaker,
}

/// The simulated cloud. Cheap to share (`Arc`); implements all five traits.
#[derive(Debug)]
pub struct SimCloud {
    clock: Arc<dyn Clock>,
    profile: LatencyProfile,
    serial_cluster: bool,
    world: Mutex<World>,
    faults: Mutex<(Faults, StdRng)>,
    counts: Mutex<CallCounts>,
    mutations: AtomicU64,
    crash: CrashSignal,
    /// The cluster's API server and the PEM of its CA, when a local Kubernetes fake
    /// answers for it.
    cluster_endpoint: Option<(String, String)>,
}

enum Gate {
    Go,
    Crash,
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::internal("simulated cloud lock poisoned"))
}

impl SimCloud {
    /// A simulated cloud on `clock` with `profile`.
    pub fn new(clock: Arc<dyn Clock>, profile: LatencyProfile) -> Self {
        let faults = Faults::none();
        let rng = StdRng::seed_from_u64(faults.seed);
        SimCloud {
            clock,
            profile,
            serial_cluster: true,
            world: Mutex::new(World::default()),
            faults: Mutex::new((faults, rng)),
            counts: Mutex::new(CallCounts::default()),
            mutations: AtomicU64::new(0),
            crash: CrashSignal {
                fired: AtomicBool::new(false),
                waker: AtomicWaker::new(),
            },
            cluster_endpoint: None,
        }
    }

    /// Report `url` (an `https://` URL, or a bare `host:port` as GKE reports it) as
    /// the cluster's API server, with `ca_certificate_pem` the PEM of the CA that
    /// signed its certificate (a local Kubernetes fake's), so an in-cluster bootstrap
    /// can run against it over TLS.
    #[must_use]
    pub fn with_cluster_endpoint(
        mut self,
        url: impl Into<String>,
        ca_certificate_pem: impl Into<String>,
    ) -> Self {
        self.cluster_endpoint = Some((url.into(), ca_certificate_pem.into()));
        self
    }

    /// Whether cluster and node-pool operations must not overlap (default true, like
    /// GKE and AKS); when true a second one is rejected with `OperationInProgress`.
    #[must_use]
    pub fn with_serial_cluster_operations(mut self, serial: bool) -> Self {
        self.serial_cluster = serial;
        self
    }

    /// Replace the faults (and reseed).
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.faults.lock() {
            let rng = StdRng::seed_from_u64(faults.seed);
            *f = (faults, rng);
        }
    }

    /// The calls made so far.
    pub fn counts(&self) -> CallCounts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Reset the call counts.
    pub fn reset_counts(&self) {
        if let Ok(mut c) = self.counts.lock() {
            *c = CallCounts::default();
        }
    }

    /// Resources that exist (including ones being created or deleted).
    pub fn resources(&self) -> Vec<ResourceId> {
        self.world
            .lock()
            .map(|w| w.resources.iter().map(|r| r.id.clone()).collect())
            .unwrap_or_default()
    }

    /// The state of a resource as the cloud holds it.
    pub fn get(&self, id: &ResourceId) -> Option<Desired> {
        let w = self.world.lock().ok()?;
        w.resources
            .iter()
            .find(|r| &r.id == id)
            .map(|r| r.actual.clone())
    }

    /// Ids that exist more than once (a provider created blindly).
    pub fn duplicates(&self) -> Vec<ResourceId> {
        let ids = self.resources();
        let mut seen = std::collections::BTreeSet::new();
        let mut dups = std::collections::BTreeSet::new();
        for id in ids {
            if !seen.insert(id.clone()) {
                dups.insert(id);
            }
        }
        dups.into_iter().collect()
    }

    /// Change a resource behind the SDK's back (drift).
    pub fn tamper(&self, id: &ResourceId, f: impl FnOnce(&mut Desired)) -> bool {
        let Ok(mut w) = self.world.lock() else {
            return false;
        };
        match w.resources.iter_mut().find(|r| &r.id == id) {
            Some(r) => {
                f(&mut r.actual);
                true
            }
            None => false,
        }
    }

    /// Completes when a crash fault has fired.
    pub fn crashed(&self) -> impl std::future::Future<Output = ()> + '_ {
        futures::future::poll_fn(move |cx| {
            self.crash.waker.register(cx.waker());
            if self.crash.fired.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// The cloud's resources as JSON (secrets in clear), settling running operations.
    pub fn to_json(&self) -> Result<String> {
        let mut w = lock(&self.world)?;
        let now = self.clock.now();
        Self::settle(&mut w, now);
        for r in &mut w.resources {
            r.busy_until = None;
        }
        w.resources.retain(|r| r.deleting_until.is_none());
        expose_in(|| serde_json::to_string_pretty(&w.resources))
            .map_err(|e| Error::internal("simulated cloud does not serialize").with_source(e))
    }

    /// Restore resources saved by [`SimCloud::to_json`].
    pub fn load_json(&self, text: &str) -> Result<()> {
        let resources: Vec<SimResource> = serde_json::from_str(text).map_err(|e| {
            Error::new(ErrorKind::State, "the simulated cloud file is not valid").with_source(e)
        })?;
        let mut w = lock(&self.world)?;
        w.next_uid = resources.iter().map(|r| r.uid + 1).max().unwrap_or(0);
        w.resources = resources;
        Ok(())
    }

    fn settle(w: &mut World, now: Duration) {
        w.resources
            .retain(|r| r.deleting_until.is_none_or(|t| t > now));
        for r in &mut w.resources {
            if r.busy_until.is_some_and(|t| t <= now) {
                r.busy_until = None;
            }
        }
    }

    fn count_read(&self, kind: ResourceKind, poll: bool) {
        if let Ok(mut c) = self.counts.lock() {
            if poll {
                c.polls += 1;
            } else {
                c.reads += 1;
                *c.reads_by_kind.entry(kind).or_default() += 1;
            }
        }
    }

    fn count_mutation(&self, kind: ResourceKind) {
        if let Ok(mut c) = self.counts.lock() {
            c.mutating += 1;
            *c.mutating_by_kind.entry(kind).or_default() += 1;
        }
    }

    /// Draw a fault for a call. `Some(before)` means fail; `before` says whether the
    /// failure comes before the effect.
    fn draw(&self) -> Option<(bool, ErrorKind)> {
        let mut g = self.faults.lock().ok()?;
        let (f, rng) = &mut *g;
        if f.error_rate <= 0.0
            || f.error_kinds.is_empty()
            || !rng.random_bool(f.error_rate.min(1.0))
        {
            return None;
        }
        let before = !rng.random_bool(f.lost_response_share.clamp(0.0, 1.0));
        let kind = f.error_kinds[rng.random_range(0..f.error_kinds.len())];
        Some((before, kind))
    }

    fn injected(&self, kind: ErrorKind, id: &ResourceId, when: &str) -> Error {
        if let Ok(mut c) = self.counts.lock() {
            c.injected_errors += 1;
        }
        Error::new(kind, format!("injected {kind} fault ({when})")).with_resource(id.clone())
    }

    /// Count a mutating call and apply the permanent-failure and crash faults.
    fn mutation_gate(&self, id: &ResourceId) -> Result<Gate> {
        let n = self.mutations.fetch_add(1, Ordering::SeqCst) + 1;
        let (fail, crash) = {
            let g = lock(&self.faults)?;
            (
                g.0.fail_at_mutation == Some(n),
                g.0.crash_at_mutation == Some(n),
            )
        };
        if fail {
            self.count_mutation(id.kind);
            return Err(Error::new(
                ErrorKind::Permission,
                format!("injected permanent failure at mutating call {n}"),
            )
            .with_resource(id.clone()));
        }
        Ok(if crash { Gate::Crash } else { Gate::Go })
    }

    async fn crash_now(&self) -> Result<Progress> {
        self.crash.fired.store(true, Ordering::SeqCst);
        self.crash.waker.wake();
        futures::future::pending::<()>().await;
        Err(Error::internal("unreachable: crashed call returned"))
    }

    fn op_for(&self, r: &SimResource, until: Duration, now: Duration, what: &str) -> Operation {
        Operation::new(format!("sim-op-{what}-{}", r.uid), r.id.clone())
            .poll_after(until.saturating_sub(now))
    }

    fn observe_impl(&self, id: &ResourceId) -> Result<Option<Observed>> {
        self.count_read(id.kind, false);
        if let Some((_, kind)) = self.draw() {
            return Err(self.injected(kind, id, "read"));
        }
        let now = self.clock.now();
        let mut w = lock(&self.world)?;
        Self::settle(&mut w, now);
        let Some(r) = w.resources.iter().find(|r| &r.id == id) else {
            return Ok(None);
        };
        if let Some(t) = r.busy_until {
            return Ok(Some(Observed::pending(
                r.actual.clone(),
                self.op_for(r, t, now, "ensure"),
            )));
        }
        if let Some(t) = r.deleting_until {
            return Ok(Some(Observed::pending(
                r.actual.clone(),
                self.op_for(r, t, now, "delete"),
            )));
        }
        let output = (!r.output.has_secret()).then(|| r.output.clone());
        Ok(Some(Observed::ready(r.actual.clone(), output)))
    }

    /// Check that what `desired` needs exists and is ready, as a cloud would.
    fn check_dependencies(
        &self,
        w: &World,
        desired: &Desired,
        inputs: &Inputs,
        now: Duration,
    ) -> Result<()> {
        let need: Vec<ResourceKind> = match desired {
            Desired::Cluster(_) => vec![ResourceKind::Network, ResourceKind::ClusterIdentity],
            Desired::NodePool(_) => vec![ResourceKind::Cluster],
            Desired::DnsIdentity(_) | Desired::DnsRecords(_) => vec![ResourceKind::DnsZone],
            Desired::DatabaseInstance(_) => vec![ResourceKind::Network],
            Desired::Database(_) => vec![ResourceKind::DatabaseInstance],
            d if d.kind().domain() == crate::resource::Domain::InCluster => {
                vec![ResourceKind::Cluster]
            }
            _ => vec![],
        };
        for kind in need {
            inputs.of_kind(kind)?;
            let ready = w.resources.iter().any(|r| {
                r.id.kind == kind
                    && r.busy_until.is_none_or(|t| t <= now)
                    && r.deleting_until.is_none()
            });
            if !ready {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("failed precondition: the {} is not ready", kind.as_str()),
                )
                .with_resource(desired.id()));
            }
        }
        Ok(())
    }

    fn cluster_busy(&self, w: &World, now: Duration, except: &ResourceId) -> bool {
        self.serial_cluster
            && w.resources.iter().any(|r| {
                matches!(r.id.kind, ResourceKind::Cluster | ResourceKind::NodePool)
                    && &r.id != except
                    && (r.busy_until.is_some_and(|t| t > now)
                        || r.deleting_until.is_some_and(|t| t > now))
            })
    }

    fn make_output(&self, desired: &Desired, inputs: &Inputs) -> Result<Output> {
        let key = || {
            Secret::new(format!(
                "{{\"type\":\"sim_key\",\"private_key\":\"{}\"}}",
                Secret::generate_password(40).expose()
            ))
        };
        Ok(match desired {
            Desired::Foundation(s) => Output::Foundation {
                account: format!("sim-{}", s.installation),
            },
            Desired::Network(s) => Output::Network {
                network_id: format!("net-{}", s.name),
                subnet_ids: vec![
                    format!("subnet-{}-a", s.name),
                    format!("subnet-{}-b", s.name),
                ],
            },
            Desired::ClusterIdentity(s) => Output::ClusterIdentity {
                principal: format!("cluster-{}@iam.sim.invalid", s.name),
            },
            Desired::Cluster(s) => match &self.cluster_endpoint {
                Some((url, ca)) => Output::Cluster {
                    name: s.name.clone(),
                    endpoint: url.clone(),
                    ca_certificate_pem: ca.clone(),
                },
                None => Output::Cluster {
                    name: s.name.clone(),
                    endpoint: format!("https://{}.k8s.sim.invalid", s.name),
                    ca_certificate_pem:
                        "-----BEGIN CERTIFICATE-----\nU0lNVUxBVEVEIENB\n-----END CERTIFICATE-----\n"
                            .into(),
                },
            },
            Desired::NodePool(s) => Output::NodePool {
                name: format!("{}-{}", s.cluster, s.name),
            },
            Desired::DnsZone(s) => Output::DnsZone {
                zone_id: format!("zone-{}", s.name),
                name_servers: (1..=4).map(|i| format!("ns{i}.dns.sim.invalid")).collect(),
            },
            Desired::DnsIdentity(s) => {
                let key = key();
                Output::DnsIdentity {
                    principal: format!("dns-{}@iam.sim.invalid", s.name),
                    credentials: Some(key.clone()),
                    solver: Some(DnsSolver::Rfc2136 {
                        nameserver: "ns1.dns.sim.invalid:53".into(),
                        tsig_key_name: format!("dns-{}", s.name),
                        tsig_algorithm: "HMACSHA256".into(),
                        tsig_secret: key,
                    }),
                }
            }
            Desired::ClusterAccess(s) => Output::InCluster {
                objects: vec![format!("ClusterRoleBinding/{}", s.binding)],
            },
            Desired::CertManager(s) => Output::InCluster {
                objects: vec![format!("Namespace/{}", s.namespace)],
            },
            Desired::ExternalDns(s) => Output::InCluster {
                objects: vec![format!("Deployment/{}/external-dns", s.namespace)],
            },
            Desired::Issuer(s) => Output::InCluster {
                objects: vec![format!("ClusterIssuer/{}", s.name)],
            },
            Desired::GitpodNamespace(s) => {
                let outputs = crate::outputs::Outputs::new(inputs.outputs().clone());
                let key = inputs.secret(crate::provider::ENCRYPTION_KEY)?;
                let secrets = crate::installer::render_secrets(&outputs, key)?;
                Output::InCluster {
                    objects: secrets
                        .iter()
                        .map(|m| format!("Secret/{}/{}", s.namespace, m.name))
                        .collect(),
                }
            }
            Desired::Certificate(s) => Output::InCluster {
                objects: vec![format!("Certificate/{}/{}", s.namespace, s.name)],
            },
            Desired::DnsRecords(s) => Output::DnsRecords {
                names: s.names.clone(),
            },
            Desired::ObjectStorage(s) => Output::ObjectStorage(StorageOutput::S3 {
                endpoint: "storage.sim.invalid".into(),
                region: s.region.clone(),
                bucket: s
                    .bucket
                    .clone()
                    .unwrap_or_else(|| format!("{}-gitpod", s.name)),
                access_key_id: format!(
                    "SIMAK{}",
                    Secret::generate_password(12).expose().to_ascii_uppercase()
                ),
                secret_access_key: Secret::generate_password(40),
                allow_insecure_connection: false,
            }),
            Desired::Registry(s) => Output::Registry(match s.mode {
                RegistryMode::Managed => RegistryOutput::External {
                    url: format!("registry.sim.invalid/{}/{}", s.name, s.repository),
                    server: "registry.sim.invalid".into(),
                    username: "_json_key".into(),
                    password: key(),
                },
                _ => RegistryOutput::InClusterS3 {
                    bucket: format!("{}-registry", s.name),
                    region: s.region.clone(),
                    endpoint: "storage.sim.invalid".into(),
                    access_key_id: format!(
                        "SIMAK{}",
                        Secret::generate_password(12).expose().to_ascii_uppercase()
                    ),
                    secret_access_key: Secret::generate_password(40),
                },
            }),
            Desired::DatabaseInstance(s) => Output::DatabaseInstance {
                instance: format!("{}-mysql", s.name),
                endpoint: DatabaseEndpoint::Host {
                    host: format!("{}-mysql.db.sim.invalid", s.name),
                    port: 3306,
                    ca_certificate_pem: None,
                },
            },
            Desired::Database(s) => Output::Database {
                database: s.database_name.clone(),
                username: s.username.clone(),
                password: inputs.secret(DATABASE_PASSWORD)?.clone(),
                client_credentials: None,
            },
        })
    }

    async fn ensure_impl(&self, desired: &Desired, inputs: &Inputs) -> Result<Progress> {
        match self.ensure_sync(desired, inputs)? {
            (_, true) => self.crash_now().await,
            (p, false) => Ok(p),
        }
    }

    async fn delete_impl(&self, id: &ResourceId) -> Result<Progress> {
        match self.delete_sync(id)? {
            (_, true) => self.crash_now().await,
            (p, false) => Ok(p),
        }
    }

    /// Returns the progress and whether the call "crashed".
    fn ensure_sync(&self, desired: &Desired, inputs: &Inputs) -> Result<(Progress, bool)> {
        let id = desired.id();
        let fault = self.draw();
        if let Some((true, kind)) = fault {
            return Err(self.injected(kind, &id, "before the effect"));
        }
        let now = self.clock.now();
        let (progress, mutated) = {
            self.count_read(id.kind, false); // the lookup
            let mut w = lock(&self.world)?;
            Self::settle(&mut w, now);
            let existing = w.resources.iter().position(|r| r.id == id);
            match existing {
                Some(i)
                    if w.resources[i].busy_until.is_some()
                        || w.resources[i].deleting_until.is_some() =>
                {
                    let r = &w.resources[i];
                    let (t, what) = match (r.busy_until, r.deleting_until) {
                        (Some(t), _) => (t, "ensure"),
                        (_, Some(t)) => (t, "delete"),
                        _ => (now, "ensure"),
                    };
                    if what == "delete" {
                        return Err(Error::new(
                            ErrorKind::OperationInProgress,
                            "the resource is being deleted",
                        )
                        .with_resource(id));
                    }
                    (Progress::Pending(self.op_for(r, t, now, "ensure")), false)
                }
                Some(i)
                    if w.resources[i].actual == *desired
                        && !(w.resources[i].output.has_secret() && inputs.get(&id).is_none()) =>
                {
                    (Progress::Done(Some(w.resources[i].output.clone())), false)
                }
                other => {
                    self.check_dependencies(&w, desired, inputs, now)?;
                    if matches!(id.kind, ResourceKind::Cluster | ResourceKind::NodePool)
                        && self.cluster_busy(&w, now, &id)
                    {
                        if let Ok(mut c) = self.counts.lock() {
                            c.conflicts += 1;
                        }
                        return Err(Error::new(
                            ErrorKind::OperationInProgress,
                            "another operation is running on the cluster",
                        )
                        .with_resource(id));
                    }
                    let gate = self.mutation_gate(&id)?;
                    self.count_mutation(id.kind);
                    let output = self.make_output(desired, inputs)?;
                    let duration = match other {
                        Some(_) => self.profile.update(id.kind),
                        None => self.profile.create(id.kind),
                    };
                    let until = (duration > Duration::ZERO).then_some(now + duration);
                    let idx = match other {
                        Some(i) => {
                            let r = &mut w.resources[i];
                            r.actual = desired.clone();
                            r.output = output;
                            r.busy_until = until;
                            i
                        }
                        None => {
                            let uid = w.next_uid;
                            w.next_uid += 1;
                            w.resources.push(SimResource {
                                uid,
                                id: id.clone(),
                                actual: desired.clone(),
                                output,
                                busy_until: until,
                                deleting_until: None,
                            });
                            w.resources.len() - 1
                        }
                    };
                    let r = &w.resources[idx];
                    let p = match until {
                        Some(t) => Progress::Pending(self.op_for(r, t, now, "ensure")),
                        None => Progress::Done(Some(r.output.clone())),
                    };
                    if let Gate::Crash = gate {
                        return Ok((p, true));
                    }
                    (p, true)
                }
            }
        };
        if let Some((false, kind)) = fault {
            if mutated {
                return Err(self.injected(kind, &id, "after the effect: response lost"));
            }
        }
        Ok((progress, false))
    }

    fn delete_sync(&self, id: &ResourceId) -> Result<(Progress, bool)> {
        let fault = self.draw();
        if let Some((true, kind)) = fault {
            return Err(self.injected(kind, id, "before the effect"));
        }
        let now = self.clock.now();
        let progress = {
            self.count_read(id.kind, false);
            let mut w = lock(&self.world)?;
            Self::settle(&mut w, now);
            let Some(i) = w.resources.iter().position(|r| &r.id == id) else {
                return Ok((Progress::Done(None), false));
            };
            if let Some(t) = w.resources[i].deleting_until {
                return Ok((
                    Progress::Pending(self.op_for(&w.resources[i], t, now, "delete")),
                    false,
                ));
            }
            if let Desired::DatabaseInstance(d) = &w.resources[i].actual {
                if d.deletion_protection {
                    return Err(Error::new(ErrorKind::Conflict, "deletion protection is on")
                        .with_resource(id.clone()));
                }
            }
            // Whatever depends on this must be gone first.
            let blockers: Vec<ResourceKind> = match id.kind {
                ResourceKind::Network => {
                    vec![ResourceKind::Cluster, ResourceKind::DatabaseInstance]
                }
                ResourceKind::Cluster => vec![ResourceKind::NodePool],
                ResourceKind::DnsZone => vec![ResourceKind::DnsRecords],
                ResourceKind::DatabaseInstance => vec![ResourceKind::Database],
                _ => vec![],
            };
            if let Some(b) = w.resources.iter().find(|r| blockers.contains(&r.id.kind)) {
                return Err(
                    Error::new(ErrorKind::Conflict, format!("still in use by {}", b.id))
                        .with_resource(id.clone()),
                );
            }
            if matches!(id.kind, ResourceKind::Cluster | ResourceKind::NodePool)
                && self.cluster_busy(&w, now, id)
            {
                if let Ok(mut c) = self.counts.lock() {
                    c.conflicts += 1;
                }
                return Err(Error::new(
                    ErrorKind::OperationInProgress,
                    "another operation is running on the cluster",
                )
                .with_resource(id.clone()));
            }
            let gate = self.mutation_gate(id)?;
            self.count_mutation(id.kind);
            let d = self.profile.delete(id.kind);
            let p = if d > Duration::ZERO {
                w.resources[i].deleting_until = Some(now + d);
                Progress::Pending(self.op_for(&w.resources[i], now + d, now, "delete"))
            } else {
                w.resources.remove(i);
                Progress::Done(None)
            };
            if let Gate::Crash = gate {
                return Ok((p, true));
            }
            p
        };
        if let Some((false, kind)) = fault {
            return Err(self.injected(kind, id, "after the effect: response lost"));
        }
        Ok((progress, false))
    }

    fn poll_impl(&self, op: &Operation) -> Result<Progress> {
        self.count_read(op.resource.kind, true);
        if let Some((_, kind)) = self.draw() {
            return Err(self.injected(kind, &op.resource, "poll"));
        }
        let now = self.clock.now();
        let mut w = lock(&self.world)?;
        Self::settle(&mut w, now);
        let r = w.resources.iter().find(|r| r.id == op.resource);
        let deleting = op.id.starts_with("sim-op-delete");
        Ok(match (r, deleting) {
            (None, true) => Progress::Done(None),
            (None, false) => {
                return Err(Error::new(
                    ErrorKind::OperationFailed,
                    format!("operation {}: the resource disappeared", op.id),
                )
                .with_resource(op.resource.clone()))
            }
            (Some(r), true) => match r.deleting_until {
                Some(t) => Progress::Pending(self.op_for(r, t, now, "delete")),
                None => Progress::Done(None),
            },
            (Some(r), false) => match r.busy_until {
                Some(t) => Progress::Pending(self.op_for(r, t, now, "ensure")),
                None => Progress::Done(Some(r.output.clone())),
            },
        })
    }
}

impl SimCloud {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("sim").with_serial_cluster_operations(self.serial_cluster)
    }

    /// Observe `id` as the trait's own type (a stored resource always has the kind of
    /// its id, so the conversion cannot fail for a world the sim built itself).
    fn observe_as<S: TryFrom<Desired>>(&self, id: &ResourceId) -> Result<Option<Observed<S>>> {
        Ok(self.observe_impl(id)?.and_then(|o| {
            let Observed {
                actual,
                output,
                pending,
                drift,
            } = o;
            S::try_from(actual).ok().map(|actual| Observed {
                actual,
                output,
                pending,
                drift,
            })
        }))
    }
}

#[async_trait]
impl crate::provider::ClusterProvider for SimCloud {
    fn info(&self) -> ProviderInfo {
        SimCloud::info(self)
    }
    async fn observe(&self, r: &ClusterResource) -> Result<Option<Observed<ClusterResource>>> {
        self.observe_as(&r.id())
    }
    async fn ensure(&self, r: &ClusterResource, inputs: &Inputs) -> Result<Progress> {
        self.ensure_impl(&r.clone().into(), inputs).await
    }
    async fn delete(&self, r: &ClusterResource) -> Result<Progress> {
        self.delete_impl(&r.id()).await
    }
    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_impl(op)
    }
}

#[async_trait]
impl crate::provider::DnsProvider for SimCloud {
    fn info(&self) -> ProviderInfo {
        SimCloud::info(self)
    }
    async fn observe(&self, r: &DnsResource) -> Result<Option<Observed<DnsResource>>> {
        self.observe_as(&r.id())
    }
    async fn ensure(&self, r: &DnsResource, inputs: &Inputs) -> Result<Progress> {
        self.ensure_impl(&r.clone().into(), inputs).await
    }
    async fn delete(&self, r: &DnsResource) -> Result<Progress> {
        self.delete_impl(&r.id()).await
    }
    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_impl(op)
    }
}

#[async_trait]
impl crate::provider::ObjectStore for SimCloud {
    fn info(&self) -> ProviderInfo {
        SimCloud::info(self)
    }
    async fn observe(&self, s: &ObjectStorageSpec) -> Result<Option<Observed<ObjectStorageSpec>>> {
        self.observe_as(&Desired::ObjectStorage(s.clone()).id())
    }
    async fn ensure(&self, s: &ObjectStorageSpec, inputs: &Inputs) -> Result<Progress> {
        self.ensure_impl(&Desired::ObjectStorage(s.clone()), inputs)
            .await
    }
    async fn delete(&self, s: &ObjectStorageSpec) -> Result<Progress> {
        self.delete_impl(&Desired::ObjectStorage(s.clone()).id())
            .await
    }
    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_impl(op)
    }
}

#[async_trait]
impl crate::provider::Registry for SimCloud {
    fn info(&self) -> ProviderInfo {
        SimCloud::info(self)
    }
    async fn observe(&self, s: &RegistrySpec) -> Result<Option<Observed<RegistrySpec>>> {
        self.observe_as(&Desired::Registry(s.clone()).id())
    }
    async fn ensure(&self, s: &RegistrySpec, inputs: &Inputs) -> Result<Progress> {
        self.ensure_impl(&Desired::Registry(s.clone()), inputs)
            .await
    }
    async fn delete(&self, s: &RegistrySpec) -> Result<Progress> {
        self.delete_impl(&Desired::Registry(s.clone()).id()).await
    }
    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_impl(op)
    }
}

#[async_trait]
impl crate::provider::Database for SimCloud {
    fn info(&self) -> ProviderInfo {
        SimCloud::info(self)
    }
    async fn observe(&self, r: &DatabaseResource) -> Result<Option<Observed<DatabaseResource>>> {
        self.observe_as(&r.id())
    }
    async fn ensure(&self, r: &DatabaseResource, inputs: &Inputs) -> Result<Progress> {
        self.ensure_impl(&r.clone().into(), inputs).await
    }
    async fn delete(&self, r: &DatabaseResource) -> Result<Progress> {
        self.delete_impl(&r.id()).await
    }
    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_impl(op)
    }
}

#[async_trait]
impl crate::provider::ClusterBootstrap for SimCloud {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("sim")
    }
    async fn observe(
        &self,
        r: &InClusterResource,
        inputs: &Inputs,
    ) -> Result<Option<Observed<InClusterResource>>> {
        // Nothing to look into without a cluster.
        if inputs.of_kind(ResourceKind::Cluster).is_err() {
            return Ok(None);
        }
        self.observe_as(&r.id())
    }
    async fn ensure(&self, r: &InClusterResource, inputs: &Inputs) -> Result<Progress> {
        self.ensure_impl(&r.clone().into(), inputs).await
    }
    async fn delete(&self, r: &InClusterResource, inputs: &Inputs) -> Result<Progress> {
        if inputs.of_kind(ResourceKind::Cluster).is_err() {
            return Ok(Progress::Done(None));
        }
        self.delete_impl(&r.id()).await
    }
    async fn poll(&self, op: &Operation) -> Result<Progress> {
        self.poll_impl(op)
    }
}

#[async_trait]
impl crate::provider::ClusterCredentials for SimCloud {
    async fn cluster_token(&self, _cluster: &Output) -> Result<crate::provider::AccessToken> {
        Ok(crate::provider::AccessToken::anonymous())
    }
}
