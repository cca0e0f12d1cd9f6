//! The engine: observe, plan, apply and destroy in one pass.
//!
//! [`Engine::apply`] walks the plan's dependency graph with bounded concurrency.
//! A step starts as soon as the steps it depends on are done (no phases, no
//! barriers); steps sharing a lane (a GKE cluster and its pools) never overlap.
//! Each call is retried by error class within the [`RetryPolicy`] budgets; pending
//! operations are polled under the [`WaitPolicy`]. Generated secrets are saved to
//! the [`StateStore`] *before* the call that uses them, outputs after each step (those
//! that hold no secret may wait for the next write, due once
//! [`Config::persist_interval`] has passed), so a run stopped anywhere resumes by
//! observing and adopting. Intents are journalled with
//! the step's next save, except for kinds the next run would not otherwise read
//! (`ResourceKind::intent_stored_before_call`: DNS records), saved before the call.
//! Saves are group-committed: what steps change while a save is in flight is written
//! by the next one, and a step is done only once a save holding it is stored.
//!
//! A run holds the store's lock from its first save to its last (a second writer is
//! refused with the holder's name), refuses a plan made from a state that has since
//! changed, and saves over the generation it read, so two writers never interleave.
//! A [`Budget`] shared by many engines bounds their concurrent cloud calls.
//!
//! Cancellation ([`Engine::cancel`]) is graceful: no new step starts, in-flight ones
//! finish (or time out). Dropping the future is the forceful second stage; the
//! journal makes the next run converge.

mod budget;
mod clock;
mod events;
mod retry;
mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

pub use budget::{Budget, BudgetPermit};
pub use clock::Clock;
#[cfg(feature = "tokio")]
pub use clock::TokioClock;
pub use events::{channel, Event, EventSink};
pub use retry::{RetryPolicy, WaitPolicy};
pub use verify::VerifyOptions;

use crate::error::{Error, ErrorKind, Result};
use crate::installer::{self, InstallerBundle};
use crate::outputs::Outputs;
use crate::plan::{self, Action, Mode, Plan, Snapshot};
use crate::provider::{Inputs, Operation, Progress, Providers};
use crate::resource::{Desired, Domain, GeneratedSecret, Output, ResourceId};
use crate::secret::{ProcessSources, Sources};
use crate::spec::ReferenceArchitecture;
use crate::state::{
    Generation, LockInfo, LockRequest, MemoryStateStore, State, StateStore, ENCRYPTION_KEY,
};

/// Engine settings.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Steps running at once (default 8; 1 runs strictly serially).
    pub concurrency: usize,
    /// Reads at once while observing (default 8).
    pub observe_concurrency: usize,
    /// Retries.
    pub retry: RetryPolicy,
    /// Operation polling.
    pub wait: WaitPolicy,
    /// Execute plans that replace resources disruptively.
    pub allow_disruptive: bool,
    /// How long outputs that hold no secret may wait before they are written (default
    /// zero: every step is written before it is reported done).
    ///
    /// Above zero, a step whose outputs hold no secret (ids, endpoints, name servers:
    /// what the next run's observation reads again) is written by the next save that
    /// is due anyway, or by its own once this long has passed since the last write
    /// (checked as steps finish: during one long operation nothing is written).
    /// Generated secrets, outputs that hold a secret ([`Output::has_secret`]: keys,
    /// passwords), intents stored before their call and deletions are still written
    /// before the run goes on, and the run's end writes everything. A run stopped
    /// in between loses only what the next one observes again. Terraform's remote
    /// backends persist every 20 seconds the same way; a controller running many
    /// installations writes its state Secrets less often.
    pub persist_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            concurrency: 8,
            observe_concurrency: 8,
            retry: RetryPolicy::default(),
            wait: WaitPolicy::default(),
            allow_disruptive: false,
            persist_interval: Duration::ZERO,
        }
    }
}

/// Builds an [`Engine`].
#[must_use]
pub struct EngineBuilder {
    providers: Providers,
    state: Option<Arc<dyn StateStore>>,
    clock: Option<Arc<dyn Clock>>,
    config: Config,
    events: Option<EventSink>,
    budget: Option<Arc<Budget>>,
    lock_owner: Option<String>,
    sources: Option<Arc<dyn Sources>>,
}

impl EngineBuilder {
    /// Where the secrets and files a spec names (`{env: ..}`, `{file: ..}`,
    /// certificate and CA files) are read to validate it (default: the process's
    /// environment and files, [`ProcessSources`]). A controller passes the
    /// installation's own store, so that a spec never reads the controller's.
    pub fn sources(mut self, sources: Arc<dyn Sources>) -> Self {
        self.sources = Some(sources);
        self
    }

    /// Share a budget of concurrent cloud calls with other engines (of the same cloud
    /// account); default: no limit beyond [`Config::concurrency`].
    pub fn budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Who holds the state's lock during a run, as the second writer will read it
    /// (default: `user@host (pid N)`).
    pub fn lock_owner(mut self, owner: impl Into<String>) -> Self {
        self.lock_owner = Some(owner.into());
        self
    }

    /// Where state lives (default: in memory).
    pub fn state(mut self, store: Arc<dyn StateStore>) -> Self {
        self.state = Some(store);
        self
    }

    /// The clock (default: [`TokioClock`] with the `tokio` feature).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// All settings at once.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Steps running at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// The retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// The wait policy.
    pub fn wait(mut self, wait: WaitPolicy) -> Self {
        self.config.wait = wait;
        self
    }

    /// Allow disruptive replacements.
    pub fn allow_disruptive(mut self, allow: bool) -> Self {
        self.config.allow_disruptive = allow;
        self
    }

    /// How long outputs that hold no secret may wait before they are written
    /// ([`Config::persist_interval`]; default zero: every step).
    pub fn persist_interval(mut self, interval: Duration) -> Self {
        self.config.persist_interval = interval;
        self
    }

    /// Receive events.
    pub fn on_event(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// Build. Fails without a clock when the `tokio` feature is off.
    pub fn build(self) -> Result<Engine> {
        let clock = match self.clock {
            Some(c) => c,
            None => default_clock()?,
        };
        Ok(Engine {
            providers: self.providers,
            state: self
                .state
                .unwrap_or_else(|| Arc::new(MemoryStateStore::new())),
            clock,
            config: self.config,
            events: self.events,
            cancel: CancellationToken::new(),
            budget: self.budget,
            lock_owner: self.lock_owner.unwrap_or_else(LockRequest::this_process),
            sources: self.sources.unwrap_or_else(|| Arc::new(ProcessSources)),
        })
    }
}

#[cfg(feature = "tokio")]
fn default_clock() -> Result<Arc<dyn Clock>> {
    Ok(Arc::new(TokioClock::new()))
}

#[cfg(not(feature = "tokio"))]
fn default_clock() -> Result<Arc<dyn Clock>> {
    Err(Error::invalid_input(
        "no clock: enable the `tokio` feature or call EngineBuilder::clock",
    ))
}

/// The plan/apply/destroy engine for one set of providers and one state store.
pub struct Engine {
    providers: Providers,
    state: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    config: Config,
    events: Option<EventSink>,
    cancel: CancellationToken,
    budget: Option<Arc<Budget>>,
    lock_owner: String,
    sources: Arc<dyn Sources>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("providers", &self.providers)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a run did.
#[must_use]
#[non_exhaustive]
#[derive(Debug)]
pub struct RunReport {
    /// Apply or destroy.
    pub mode: Mode,
    /// Steps that changed something.
    pub changed: Vec<ResourceId>,
    /// Steps that needed nothing.
    pub unchanged: Vec<ResourceId>,
    /// Steps that failed, with why.
    pub failed: Vec<(ResourceId, Error)>,
    /// Steps not run (dependency failed or run cancelled).
    pub skipped: Vec<ResourceId>,
    /// Resources left in place on purpose (destroy with deletion protection).
    pub retained: Vec<(ResourceId, String)>,
    /// Whether the run was cancelled.
    pub cancelled: bool,
    /// Outputs of every resource known after the run.
    pub outputs: Outputs,
    /// Wall time.
    pub elapsed: Duration,
}

impl RunReport {
    /// Whether every step succeeded and nothing was skipped.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && !self.cancelled
    }

    /// Resources a destroy could not remove (failed, skipped or retained).
    pub fn not_removed(&self) -> Vec<ResourceId> {
        self.failed
            .iter()
            .map(|(id, _)| id.clone())
            .chain(self.skipped.iter().cloned())
            .chain(self.retained.iter().map(|(id, _)| id.clone()))
            .collect()
    }

    /// `Ok(self)` on success, else the first failure (or a cancellation error).
    pub fn into_result(mut self) -> Result<Self> {
        if self.is_success() {
            return Ok(self);
        }
        if !self.failed.is_empty() {
            let (_, e) = self.failed.remove(0);
            return Err(e);
        }
        Err(Error::new(
            ErrorKind::Cancelled,
            format!("run stopped with {} step(s) not run", self.skipped.len()),
        ))
    }
}

/// How many operations one `ensure` or `delete` may start in a row.
const MAX_ROUNDS: u32 = 16;

type StepFuture<'a> = Pin<Box<dyn Future<Output = (usize, Result<Option<Output>>)> + Send + 'a>>;

struct Run<'a> {
    engine: &'a Engine,
    /// The state as this run changed it, and the number of changes made to it.
    state: Mutex<(State, u64)>,
    /// The writer: the generation the next save replaces and the number of changes
    /// the last save held. Saves are serialized, and one save writes every change made
    /// before it started (group commit): steps that change the state while a save is
    /// in flight are written together by the next one.
    writer: futures::lock::Mutex<(Option<Generation>, u64)>,
    /// When the last save was stored (the clock's time), for
    /// [`Config::persist_interval`].
    last_write: Mutex<Duration>,
    /// The outputs known so far, shared by the [`Inputs`] of the steps started since
    /// the last insert (an insert copies them only while such a step still runs).
    outputs: Mutex<Arc<BTreeMap<ResourceId, Output>>>,
}

impl Engine {
    /// Start building an engine over these providers.
    pub fn builder(providers: Providers) -> EngineBuilder {
        EngineBuilder {
            providers,
            state: None,
            clock: None,
            config: Config::default(),
            events: None,
            budget: None,
            lock_owner: None,
            sources: None,
        }
    }

    /// Stop scheduling new steps; in-flight ones finish. Idempotent.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The token [`Engine::cancel`] triggers (for wiring to signals).
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The clock the engine uses.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn emit(&self, e: Event) {
        tracing::debug!(event = ?e, "gitpod-refarch");
        if let Some(sink) = &self.events {
            sink(&e);
        }
    }

    /// The store this engine reads and writes.
    pub fn state_store(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// The state of `installation` and its generation (`None`: nothing stored yet).
    async fn load_state(&self, installation: &str) -> Result<(State, Option<Generation>)> {
        match self.state.load().await? {
            Some(s) if s.state.installation != installation => Err(Error::new(
                ErrorKind::State,
                format!(
                    "the state at {} belongs to installation '{}', not '{installation}'",
                    self.state.location(),
                    s.state.installation
                ),
            )),
            Some(s) => Ok((s.state, Some(s.generation))),
            None => Ok((State::new(installation), None)),
        }
    }

    /// Validate the spec (no call if invalid), then read every resource of the
    /// installation once, concurrently.
    pub async fn observe(&self, spec: &ReferenceArchitecture) -> Result<Snapshot> {
        crate::validate::validate_with(spec, self.sources.as_ref())?;
        let (state, generation) = self.load_state(&spec.name).await?;
        // Desired resources, plus optional ones this installation is known to have
        // made (so that one no longer desired is deleted): one read per resource.
        let desired: BTreeMap<ResourceId, crate::resource::Desired> = plan::graph(spec)
            .into_iter()
            .map(|n| (n.id(), n.desired))
            .collect();
        let context: BTreeMap<ResourceId, crate::resource::Desired> = plan::candidate_ids(spec)
            .into_iter()
            .filter_map(|id| plan::context_for(spec, &id).map(|d| (id, d)))
            .collect();
        let ids: Vec<ResourceId> = plan::candidate_ids(spec)
            .into_iter()
            .filter(|id| {
                desired.contains_key(id)
                    || state.outputs.contains_key(id)
                    || state.journal.iter().any(|j| &j.resource == id && !j.done)
            })
            .collect();
        // Cloud resources first; then, with the cluster's outputs from that
        // observation (or the state), what is inside the cluster.
        let in_cluster = self.providers.has_in_cluster();
        let (inside, cloud): (Vec<ResourceId>, Vec<ResourceId>) = ids
            .into_iter()
            .filter(|id| in_cluster || id.kind.domain() != Domain::InCluster)
            .partition(|id| id.kind.domain() == Domain::InCluster);
        let mut observed = self.read_all(cloud, &context, &Inputs::default()).await?;
        if !inside.is_empty() {
            let known: BTreeMap<ResourceId, Output> = observed
                .iter()
                .filter_map(
                    |(id, o): (&ResourceId, &Option<crate::provider::Observed>)| {
                        let o = o.as_ref()?;
                        o.output
                            .clone()
                            .or_else(|| state.outputs.get(id).cloned())
                            .map(|out| (id.clone(), out))
                    },
                )
                .collect();
            let inputs = Inputs::new(known, state.secrets.clone());
            observed.extend(self.read_all(inside, &context, &inputs).await?);
        }
        Ok(Snapshot {
            observed,
            stored_outputs: state.outputs,
            cluster_provider: Some(self.providers.info(Domain::Cluster)),
            in_cluster,
            state_generation: generation,
        })
    }

    /// One read per id, `observe_concurrency` at a time, each retried by class.
    async fn read_all(
        &self,
        ids: Vec<ResourceId>,
        context: &BTreeMap<ResourceId, crate::resource::Desired>,
        inputs: &Inputs,
    ) -> Result<BTreeMap<ResourceId, Option<crate::provider::Observed>>> {
        let mut observed = BTreeMap::new();
        let mut reads = futures::stream::iter(ids.into_iter().map(|id| async move {
            let r = match context.get(&id) {
                Some(d) => {
                    self.with_retries(&id, || self.providers.observe(d, inputs))
                        .await
                }
                None => {
                    Err(Error::internal("no desired state to observe").with_resource(id.clone()))
                }
            };
            (id, r)
        }))
        .buffer_unordered(self.config.observe_concurrency.max(1));
        while let Some((id, r)) = reads.next().await {
            observed.insert(id, r?);
        }
        Ok(observed)
    }

    /// Observe, then plan an apply.
    pub async fn plan(&self, spec: &ReferenceArchitecture) -> Result<Plan> {
        self.providers.check_choices(spec)?;
        let snapshot = self.observe(spec).await?;
        Ok(plan::plan_with_sources(
            spec,
            &snapshot,
            self.sources.as_ref(),
        )?)
    }

    /// Observe, then plan a destroy.
    pub async fn plan_destroy(&self, spec: &ReferenceArchitecture) -> Result<Plan> {
        self.providers.check_choices(spec)?;
        let snapshot = self.observe(spec).await?;
        Ok(plan::plan_destroy_with_sources(
            spec,
            &snapshot,
            self.sources.as_ref(),
        )?)
    }

    /// Plan and apply in one call; the report's outputs feed [`Engine::installer_bundle`].
    pub async fn apply_spec(&self, spec: &ReferenceArchitecture) -> Result<RunReport> {
        let plan = self.plan(spec).await?;
        self.apply(&plan).await
    }

    /// Plan and execute a destroy. The report lists what could not be removed.
    pub async fn destroy(&self, spec: &ReferenceArchitecture) -> Result<RunReport> {
        let plan = self.plan_destroy(spec).await?;
        self.apply(&plan).await
    }

    /// The outputs recorded in the state store.
    pub async fn outputs(&self, installation: &str) -> Result<Outputs> {
        Ok(Outputs::new(self.load_state(installation).await?.0.outputs))
    }

    /// Render the Gitpod installer config and secrets from the recorded outputs.
    ///
    /// The encryption key is generated from a CSPRNG on first use and kept in the
    /// state store: losing it makes Gitpod's encrypted database fields unreadable.
    /// The key is saved over the generation read (a concurrent writer makes this fail
    /// with [`ErrorKind::StateChanged`], never lose the key).
    pub async fn installer_bundle(&self, spec: &ReferenceArchitecture) -> Result<InstallerBundle> {
        Ok(self.installer_bundle_and_outputs(spec).await?.0)
    }

    /// [`Engine::installer_bundle`] and [`Engine::outputs`] from one read of the
    /// state (a controller that reports both after every reconcile reads once).
    pub async fn installer_bundle_and_outputs(
        &self,
        spec: &ReferenceArchitecture,
    ) -> Result<(InstallerBundle, Outputs)> {
        let (mut state, generation) = self.load_state(&spec.name).await?;
        let key = match state.secrets.get(ENCRYPTION_KEY) {
            Some(k) => k.clone(),
            None => {
                let k = GeneratedSecret::EncryptionKey.generate();
                state.secrets.insert(ENCRYPTION_KEY.into(), k.clone());
                self.state.save(&state, generation.as_ref()).await?;
                k
            }
        };
        let outputs = Outputs::new(state.outputs);
        let bundle = installer::render(spec, &outputs, &key)?;
        Ok((bundle, outputs))
    }

    /// Execute a plan as written.
    ///
    /// Fails before any call if the plan replaces something disruptively and
    /// [`Config::allow_disruptive`] is off, if another run holds the state's lock
    /// ([`ErrorKind::StateLocked`], naming it), if the state changed since the plan was
    /// made ([`ErrorKind::StateChanged`]: plan again), or if the state cannot be read.
    /// The lock is held until the run ends. Step failures do not fail the call: they
    /// are in the [`RunReport`] (see [`RunReport::into_result`]).
    pub async fn apply(&self, plan: &Plan) -> Result<RunReport> {
        if !self.config.allow_disruptive {
            if let Some(s) = plan.disruptive_steps().next() {
                return Err(Error::invalid_input(format!(
                    "the plan replaces {} disruptively; allow disruptive changes to proceed",
                    s.id
                ))
                .with_resource(s.id.clone()));
            }
        }
        let operation = match plan.mode() {
            Mode::Apply => "apply",
            Mode::Destroy => "destroy",
        };
        let lock = self
            .state
            .lock(&LockRequest::new(self.lock_owner.clone(), operation))
            .await?;
        let result = self.apply_locked(plan, &lock).await;
        // Released whatever happened; a release that fails after a good run is the
        // run's error (the next writer would find the lock).
        let released = self.state.unlock(&lock).await;
        match (result, released) {
            (Ok(report), Ok(())) => Ok(report),
            (Ok(_), Err(e)) => Err(e),
            (Err(e), _) => Err(e),
        }
    }

    async fn apply_locked(&self, plan: &Plan, lock: &LockInfo) -> Result<RunReport> {
        let start = self.clock.now();
        let (mut state, mut generation) = self.load_state(plan.installation()).await?;
        if generation != plan.state_generation().cloned() {
            return Err(Error::new(
                ErrorKind::StateChanged,
                format!(
                    "the state at {} changed since this plan was made (generation {} then, \
                     {} now); nothing was applied. Plan again",
                    self.state.location(),
                    plan.state_generation()
                        .map_or_else(|| "none".to_string(), ToString::to_string),
                    generation
                        .as_ref()
                        .map_or_else(|| "none".to_string(), ToString::to_string),
                ),
            ));
        }
        tracing::debug!(lock = %lock, "state locked");
        // Outputs the plan read from resources that need nothing (an operation that
        // finished while no process watched it) go to the state now, so that the
        // installer bundle has them even if no step of this run touches them.
        let unsaved: Vec<(&ResourceId, &Output)> = plan
            .known_outputs()
            .iter()
            .filter(|(id, o)| state.outputs.get(*id) != Some(*o))
            .collect();
        if !unsaved.is_empty() {
            for (id, o) in unsaved {
                state.outputs.insert(id.clone(), o.clone());
            }
            generation = Some(self.state.save(&state, generation.as_ref()).await?);
        }
        let outputs = state.outputs.clone();
        let run = Run {
            engine: self,
            state: Mutex::new((state, 0)),
            writer: futures::lock::Mutex::new((generation, 0)),
            last_write: Mutex::new(self.clock.now()),
            outputs: Mutex::new(Arc::new(outputs)),
        };
        let steps = plan.steps();
        self.emit(Event::RunStarted {
            installation: plan.installation().to_string(),
            mode: match plan.mode() {
                Mode::Apply => "apply".into(),
                Mode::Destroy => "destroy".into(),
            },
            steps: steps.iter().filter(|s| s.action.is_mutating()).count(),
        });

        let in_plan: BTreeSet<&ResourceId> = steps.iter().map(|s| &s.id).collect();
        let mut done: BTreeSet<ResourceId> = BTreeSet::new();
        let mut dead: BTreeSet<ResourceId> = BTreeSet::new();
        let mut started = vec![false; steps.len()];
        let mut busy_lanes: BTreeSet<&str> = BTreeSet::new();
        let mut running: FuturesUnordered<StepFuture<'_>> = FuturesUnordered::new();
        let mut report = RunReport {
            mode: plan.mode(),
            changed: vec![],
            unchanged: vec![],
            failed: vec![],
            skipped: vec![],
            retained: vec![],
            cancelled: false,
            outputs: Outputs::default(),
            elapsed: Duration::ZERO,
        };

        loop {
            let cancelled = self.cancel.is_cancelled();
            // Settle what needs no call, skip what can no longer run, start what is ready.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for (i, step) in steps.iter().enumerate() {
                    if started[i] {
                        continue;
                    }
                    if let Action::Retain { reason } = &step.action {
                        // Left in place on purpose; the planner retained what it needs too.
                        started[i] = true;
                        progressed = true;
                        dead.insert(step.id.clone());
                        report.retained.push((step.id.clone(), reason.clone()));
                        continue;
                    }
                    let deps: Vec<&ResourceId> =
                        step.after.iter().filter(|d| in_plan.contains(d)).collect();
                    if let Some(bad) = deps.iter().find(|d| dead.contains(**d)) {
                        started[i] = true;
                        progressed = true;
                        dead.insert(step.id.clone());
                        self.emit(Event::StepSkipped {
                            resource: step.id.clone(),
                            reason: format!("{bad} did not complete"),
                        });
                        report.skipped.push(step.id.clone());
                        continue;
                    }
                    if !deps.iter().all(|d| done.contains(*d)) {
                        continue;
                    }
                    if step.action == Action::NoOp {
                        started[i] = true;
                        progressed = true;
                        done.insert(step.id.clone());
                        report.unchanged.push(step.id.clone());
                        continue;
                    }
                    if cancelled {
                        continue;
                    }
                    if running.len() >= self.config.concurrency.max(1)
                        || busy_lanes.contains(step.lane.as_str())
                    {
                        continue;
                    }
                    started[i] = true;
                    progressed = true;
                    busy_lanes.insert(step.lane.as_str());
                    let run = &run;
                    running.push(Box::pin(async move { (i, run.execute(step).await) }));
                }
            }
            if running.is_empty() {
                break;
            }
            let next = if cancelled {
                running.next().await
            } else {
                let cancel = self.cancel.cancelled();
                futures::pin_mut!(cancel);
                match futures::future::select(running.next(), cancel).await {
                    futures::future::Either::Left((r, _)) => r,
                    futures::future::Either::Right(_) => continue,
                }
            };
            let Some((i, result)) = next else { break };
            let step = &steps[i];
            busy_lanes.remove(step.lane.as_str());
            match result {
                Ok(_) => {
                    done.insert(step.id.clone());
                    report.changed.push(step.id.clone());
                }
                Err(e) => {
                    self.emit(Event::StepFailed {
                        resource: step.id.clone(),
                        kind: e.kind(),
                        message: e.chain(),
                    });
                    dead.insert(step.id.clone());
                    report.failed.push((step.id.clone(), e));
                }
            }
        }
        report.cancelled = self.cancel.is_cancelled();
        // Whatever never started is reported, never silently dropped.
        for (i, step) in steps.iter().enumerate() {
            if !started[i] {
                let reason = if report.cancelled {
                    "the run was cancelled"
                } else {
                    "its dependencies never completed"
                };
                self.emit(Event::StepSkipped {
                    resource: step.id.clone(),
                    reason: reason.into(),
                });
                report.skipped.push(step.id.clone());
            }
        }
        drop(running);
        // What was only noted (intents, a failed step's journal, outputs that waited
        // for the persist interval) is written once at the end. If that fails after
        // steps failed, their errors say more, and the notes are not needed to resume
        // (the next run observes): the report is kept.
        if let Err(e) = run.flush().await {
            if report.failed.is_empty() {
                return Err(e);
            }
            tracing::warn!(error = %e.chain(), "the journal's last entries were not stored");
        }
        let outputs = run
            .outputs
            .into_inner()
            .map_err(|_| Error::internal("outputs lock poisoned"))?;
        // Every step is done, so nothing else holds them: no copy.
        report.outputs = Outputs::new(Arc::unwrap_or_clone(outputs));
        report.elapsed = self.clock.now().saturating_sub(start);
        self.emit(Event::RunFinished {
            success: report.is_success(),
            elapsed: report.elapsed,
        });
        Ok(report)
    }

    /// Call `f` under the retry policy, attributing errors to `id` and reporting
    /// each retry as an event.
    async fn with_retries<T, F, Fut>(&self, id: &ResourceId, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let attributed = || {
            let fut = f();
            async move {
                // A share of the account's budget for the call itself (not for the
                // backoff between attempts).
                let _permit = match &self.budget {
                    Some(b) => b.acquire().await,
                    None => None,
                };
                fut.await.map_err(|e| {
                    if e.resource().is_none() {
                        e.with_resource(id.clone())
                    } else {
                        e
                    }
                })
            }
        };
        self.config
            .retry
            .run(self.clock.as_ref(), attributed, |attempt, delay, e| {
                let kind = e.kind();
                tracing::info!(resource = %id, attempt, kind = %kind, "retrying: {}", e.message());
                self.emit(Event::Retrying {
                    resource: id.clone(),
                    kind,
                    attempt,
                    delay,
                    message: e.message().to_string(),
                });
            })
            .await
    }

    /// Poll until the operation is done.
    async fn wait(&self, mut op: Operation) -> Result<Option<Output>> {
        let start = self.clock.now();
        let mut n = 0u32;
        loop {
            n += 1;
            if self.clock.now().saturating_sub(start) > self.config.wait.timeout {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "operation {} did not finish within {:?}{}",
                        op.id,
                        self.config.wait.timeout,
                        op.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ),
                )
                .with_resource(op.resource.clone()));
            }
            self.clock
                .sleep(self.config.wait.delay(n, op.poll_after))
                .await;
            let id = op.resource.clone();
            match self.with_retries(&id, || self.providers.poll(&op)).await? {
                Progress::Done(out) => return Ok(out),
                Progress::Pending(next) => {
                    self.emit(Event::Progress {
                        resource: id,
                        operation: next.id.clone(),
                        percent: next.percent,
                        message: next.message.clone(),
                    });
                    op = next;
                }
            }
        }
    }
}

impl Run<'_> {
    /// Change the state and return once a save holding the change is done, over the
    /// generation last written (a writer that slipped in makes it fail, never
    /// overwrite). Changes made while another save is in flight are written together
    /// by the next save, so concurrent steps share writes instead of queueing one each.
    async fn save<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R> {
        let (r, mine) = self.change(f)?;
        self.write_upto(mine).await?;
        Ok(r)
    }

    /// Change the state in memory only: the next save writes it. For what a crash
    /// may lose without harm (see [`crate::resource::ResourceKind::intent_stored_before_call`]).
    fn note<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R> {
        self.change(f).map(|(r, _)| r)
    }

    /// Change the state in memory; returns the change's number.
    fn change<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<(R, u64)> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| Error::internal("state lock poisoned"))?;
        let r = f(&mut guard.0);
        guard.1 += 1;
        Ok((r, guard.1))
    }

    /// Write what was only noted, if anything (at the end of a run).
    async fn flush(&self) -> Result<()> {
        let changes = self
            .state
            .lock()
            .map_err(|_| Error::internal("state lock poisoned"))?
            .1;
        self.write_upto(changes).await
    }

    /// Return once a save holding change number `mine` is stored: at once if one
    /// already is, else by writing every change made so far.
    async fn write_upto(&self, mine: u64) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let (generation, written) = &mut *writer;
        if *written >= mine {
            // A save that started after this change already wrote it.
            return Ok(());
        }
        let (snapshot, upto) = {
            let guard = self
                .state
                .lock()
                .map_err(|_| Error::internal("state lock poisoned"))?;
            (guard.0.clone(), guard.1)
        };
        let next = self
            .engine
            .state
            .save(&snapshot, generation.as_ref())
            .await?;
        *generation = Some(next);
        *written = upto;
        *self
            .last_write
            .lock()
            .map_err(|_| Error::internal("write time lock poisoned"))? = self.engine.clock.now();
        Ok(())
    }

    /// Whether a step's outputs that hold no secret are to be written now: always
    /// without a [`Config::persist_interval`], else once it has passed since the last
    /// write.
    fn persist_due(&self) -> Result<bool> {
        let interval = self.engine.config.persist_interval;
        if interval.is_zero() {
            return Ok(true);
        }
        let last = *self
            .last_write
            .lock()
            .map_err(|_| Error::internal("write time lock poisoned"))?;
        Ok(self.engine.clock.now().saturating_sub(last) >= interval)
    }

    async fn inputs(&self) -> Result<Inputs> {
        let outputs = self
            .outputs
            .lock()
            .map_err(|_| Error::internal("outputs lock poisoned"))?
            .clone();
        let secrets = self
            .state
            .lock()
            .map_err(|_| Error::internal("state lock poisoned"))?
            .0
            .secrets
            .clone();
        Ok(Inputs::shared(outputs, Arc::new(secrets)))
    }

    async fn execute(&self, step: &plan::Step) -> Result<Option<Output>> {
        let e = self.engine;
        let started = e.clock.now();
        let word = match &step.action {
            Action::Create => "create",
            Action::Update { .. } => "update",
            Action::Replace { .. } => "replace",
            Action::Await { .. } => "await",
            Action::Delete => "delete",
            Action::NoOp | Action::Retain { .. } => "none",
        };
        e.emit(Event::StepStarted {
            resource: step.id.clone(),
            action: word.into(),
        });
        let result = match &step.action {
            Action::Delete => self
                .delete(&step.id, step.desired.as_ref())
                .await
                .map(|()| None),
            Action::Replace { .. } => {
                self.delete(&step.id, step.desired.as_ref()).await?;
                self.ensure(step).await.map(Some)
            }
            Action::Await { operation } => {
                e.wait(operation.clone()).await?;
                self.ensure(step).await.map(Some)
            }
            _ => self.ensure(step).await.map(Some),
        };
        if result.is_ok() {
            e.emit(Event::StepDone {
                resource: step.id.clone(),
                action: word.into(),
                elapsed: e.clock.now().saturating_sub(started),
            });
        }
        result
    }

    async fn ensure(&self, step: &plan::Step) -> Result<Output> {
        let e = self.engine;
        let desired: &Desired = step.desired.as_ref().ok_or_else(|| {
            Error::internal("an ensure step without desired state").with_resource(step.id.clone())
        })?;
        // Secrets the call needs (the kind's rule) are generated and saved before it.
        let needed = step.id.kind.generated_secrets();
        if !needed.is_empty() {
            self.save(|st| {
                for s in needed {
                    st.secrets
                        .entry(s.key().to_string())
                        .or_insert_with(|| s.generate());
                }
            })
            .await?;
        }
        let record = |st: &mut State| st.record_intent(&step.id, "ensure");
        let seq = if step.id.kind.intent_stored_before_call() {
            self.save(record).await?
        } else {
            self.note(record)?
        };
        let mut inputs = self.inputs().await?;
        // `ensure` until it is done: after each operation it started finishes, it is
        // called again to converge the rest (a NAT gateway, then its routes).
        let mut rounds = 0;
        let out = loop {
            match e
                .with_retries(&step.id, || e.providers.ensure(desired, &inputs))
                .await?
            {
                Progress::Done(out) => break out,
                Progress::Pending(op) => {
                    rounds += 1;
                    if rounds > MAX_ROUNDS {
                        return Err(Error::internal("ensure kept returning new operations")
                            .with_resource(step.id.clone()));
                    }
                    // The provider's own observation reports a pending operation: the
                    // journal's copy is for people, written with the next save.
                    self.note(|st| st.update_intent(seq, Some(op.clone()), false))?;
                    // What the finished operation reported is this resource's output
                    // for the next round (credentials it issued are not issued again).
                    if let Some(reported) = e.wait(op).await? {
                        inputs.insert(step.id.clone(), reported);
                    }
                }
            }
        };
        let out = out.ok_or_else(|| {
            Error::internal("the provider finished ensure without outputs")
                .with_resource(step.id.clone())
        })?;
        Arc::make_mut(
            &mut *self
                .outputs
                .lock()
                .map_err(|_| Error::internal("outputs lock poisoned"))?,
        )
        .insert(step.id.clone(), out.clone());
        let record = |st: &mut State| {
            st.outputs.insert(step.id.clone(), out.clone());
            st.update_intent(seq, None, true);
        };
        // A secret the provider issued cannot be read back: it is stored before the
        // run goes on. What observation reads again may wait (`persist_interval`).
        if out.has_secret() || self.persist_due()? {
            self.save(record).await?;
        } else {
            self.note(record)?;
        }
        Ok(out)
    }

    async fn delete(&self, id: &ResourceId, desired: Option<&Desired>) -> Result<()> {
        let e = self.engine;
        let desired = desired.ok_or_else(|| {
            Error::internal("a delete step without the spec's context").with_resource(id.clone())
        })?;
        let record = |st: &mut State| st.record_intent(id, "delete");
        let seq = if id.kind.intent_stored_before_call() {
            self.save(record).await?
        } else {
            self.note(record)?
        };
        let inputs = self.inputs().await?;
        let mut rounds = 0;
        loop {
            match e
                .with_retries(id, || e.providers.delete(desired, &inputs))
                .await?
            {
                Progress::Done(_) => break,
                Progress::Pending(op) => {
                    rounds += 1;
                    if rounds > MAX_ROUNDS {
                        return Err(Error::internal("delete kept returning new operations")
                            .with_resource(id.clone()));
                    }
                    // The provider's own observation reports a pending operation: the
                    // journal's copy is for people, written with the next save.
                    self.note(|st| st.update_intent(seq, Some(op.clone()), false))?;
                    e.wait(op).await?;
                }
            }
        }
        Arc::make_mut(
            &mut *self
                .outputs
                .lock()
                .map_err(|_| Error::internal("outputs lock poisoned"))?,
        )
        .remove(id);
        self.save(|st| {
            st.outputs.remove(id);
            // Secrets that belong to the resource go with it (the kind's rule).
            for s in id.kind.secrets_released_on_delete() {
                st.secrets.remove(s.key());
            }
            st.update_intent(seq, None, true);
        })
        .await?;
        Ok(())
    }
}
