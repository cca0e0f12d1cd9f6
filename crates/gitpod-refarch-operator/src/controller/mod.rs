//! The reconciler: observe, plan, apply per installation; finalizer; status; Events.
//!
//! [`run`] watches `GitpodInstallation`s (in one namespace or all) and reconciles
//! each one as the CLI would run it:
//!
//! 1. The finalizer [`FINALIZER`] is added before anything is made.
//! 2. The credentials Secret (`operator.credentialsSecret`) is read. `spec` (minus
//!    `operator`) is read as the CLI reads its spec file and validated, with its
//!    references (`{env: ..}`, `{file: ..}`, CA and certificate files) answered by that
//!    Secret ([`SecretSources`], if its annotation allows the installation), never by
//!    the controller's environment or disk. A problem only the Secret can fix is
//!    `Degraded` with reason `Credentials` and retried with backoff; any other is
//!    `Degraded` with reason `InvalidSpec` and the problems' field paths, and waits
//!    for the resource to change.
//! 3. The [`ProviderFactory`] builds the providers (bad credentials fail here; the
//!    self-managed parts from the same Secret) and names the account whose
//!    [`Budget`](gitpod_refarch::engine::Budget) the engine shares.
//! 4. The engine keeps its state in the Secret `<name>-state` (the bootstrap crate's
//!    `KubeStateStore`), locked for each run as `controller <identity>`.
//! 5. Plan (`Planned` condition, the plan in short); with changes, `Progressing`
//!    and apply; then `Ready` with the name servers, the outputs that are not secret,
//!    and the installer bundle in the Secret `operator.installerSecret` (default
//!    `<name>-installer`, owned by the resource). Requeued after the resync period
//!    to repair drift.
//! 6. A failure is `Degraded` with the error's kind as the reason, retried with a
//!    per-object exponential backoff. A state locked by another controller replica
//!    (a dead one: the caller holds leadership) is broken and the run retried at
//!    once; locked by anyone else (the CLI) it is `Degraded` with reason
//!    `StateLocked` naming the holder, and retried after [`OperatorConfig::locked_retry`].
//! 7. On delete, `deletionPolicy: Retain` leaves everything; `Delete` destroys.
//!    Resources kept by deletion protection are named in an Event and the state
//!    Secret stays; otherwise the state Secret goes too. A failed destroy keeps the
//!    finalizer and is retried.
//!
//! Credentials never reach logs, Events or the status.

pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gitpod_refarch::secret::SecretSource;
use gitpod_refarch::state::{LockInfo, StateStore};
use gitpod_refarch::validate::validate_with;
use gitpod_refarch::{Engine, EngineBuilder, Error, ErrorKind, ReferenceArchitecture, Result};
use gitpod_refarch_bootstrap::api::kube_error;
use gitpod_refarch_bootstrap::KubeStateStore;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Error as FinalizerError, Event as FinalizerEvent};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};

use crate::budgets::Budgets;
use crate::crd::{DeletionPolicy, GitpodInstallation};
use crate::factory::{Credentials, ProviderFactory};
use crate::sources::{allows, SecretSources, REFERENCES_ANNOTATION};
use status::StatusWriter;

/// How many Event recorders the controller spreads its installations over. A
/// recorder keeps the Events of the last minutes to count repeats into series, and
/// scans that whole cache on every publish: with 1,000 installations on one
/// recorder, that scan alone was about 1 % of the controller's CPU (`perf`).
const RECORDER_SHARDS: usize = 16;

/// The finalizer that holds a deleted installation until its cleanup ran.
pub const FINALIZER: &str = "refarch.gitpod.io/cleanup";
/// The controller's name: Events' reporting controller, the field manager of what it
/// writes.
pub const CONTROLLER_NAME: &str = "gitpod-refarch-operator";
/// How the controller names itself as a state lock's owner (`controller <identity>`).
pub const LOCK_OWNER_PREFIX: &str = "controller ";

/// Builds the state store of one installation: `(client, namespace, secret name)`
/// (the Secret is `<resource name>-state`).
pub type StateStoreFactory =
    Arc<dyn Fn(kube::Client, &str, &str) -> Arc<dyn StateStore> + Send + Sync>;

/// Adjusts the engine of each reconcile (retry and wait policies, a clock, events).
pub type EngineHook = Arc<dyn Fn(EngineBuilder) -> EngineBuilder + Send + Sync>;

/// Controller settings.
#[non_exhaustive]
#[derive(Clone)]
pub struct OperatorConfig {
    /// Who this replica is (lock owner, Events, leader election).
    pub identity: String,
    /// The namespace to watch (`None`: all namespaces).
    pub namespace: Option<String>,
    /// How often a Ready installation is reconciled again, to repair drift (default
    /// 10 minutes).
    pub resync: Duration,
    /// Concurrent cloud calls per account, across its installations (default 8).
    pub account_budget: usize,
    /// Installations reconciled at once (default 1024; 0: no limit). A reconcile
    /// spends most of an apply waiting for cloud operations, and what bounds the load
    /// on a cloud account is its budget of concurrent calls (`account_budget`); this
    /// bounds the controller's memory (an engine per running reconcile, about
    /// 0.16 MiB on the sim). 1,024 lets a fleet of 1,000 run in one wave instead of
    /// two. Measured with 1,000 installations on the sim, release build with
    /// jemalloc, 2 cores, 32 API requests in flight, a 20 s persist interval
    /// (`benches/benches/operator.rs`; the process also holds the 1,000 simulated
    /// clouds): at 1/300 of the real durations (one installation 3.3 s), 1024 6.2 s
    /// and 171 MiB (512: 10.0 s and 118 MiB before the last CPU savings); at 1/100
    /// (one 9.9 s), 1024 12.6 s and 173 MiB.
    pub concurrency: u16,
    /// When a state locked by someone else (the CLI) is tried again (default 30 s).
    pub locked_retry: Duration,
    /// The first retry delay after a failure; it doubles with each failure in a row
    /// (default 5 s).
    pub backoff_base: Duration,
    /// The longest retry delay after failures (default 5 minutes).
    pub backoff_max: Duration,
    /// How long a run's outputs that hold no secret may wait before they are written
    /// to the state Secret (default 20 seconds, as Terraform's remote backends;
    /// [`gitpod_refarch::engine::Config::persist_interval`]). Secrets and a run's end
    /// are always written at once; fewer writes spare the API server.
    pub persist_interval: Duration,
    /// Where an installation's state lives (default: the Secret `<name>-state` in its
    /// namespace, `KubeStateStore`).
    pub state_store: Option<StateStoreFactory>,
    /// Adjusts each reconcile's engine.
    pub engine: Option<EngineHook>,
}

impl std::fmt::Debug for OperatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorConfig")
            .field("identity", &self.identity)
            .field("namespace", &self.namespace)
            .field("resync", &self.resync)
            .field("account_budget", &self.account_budget)
            .field("concurrency", &self.concurrency)
            .field("locked_retry", &self.locked_retry)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("persist_interval", &self.persist_interval)
            .field("state_store", &self.state_store.as_ref().map(|_| "custom"))
            .field("engine", &self.engine.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl OperatorConfig {
    /// Defaults for replica `identity`.
    pub fn new(identity: impl Into<String>) -> Self {
        OperatorConfig {
            identity: identity.into(),
            namespace: None,
            resync: Duration::from_secs(600),
            account_budget: 8,
            concurrency: 1024,
            locked_retry: Duration::from_secs(30),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            persist_interval: Duration::from_secs(20),
            state_store: None,
            engine: None,
        }
    }

    /// Watch only `namespace` (`None`: all).
    #[must_use]
    pub fn namespace(mut self, namespace: Option<String>) -> Self {
        self.namespace = namespace;
        self
    }

    /// The resync period.
    #[must_use]
    pub fn resync(mut self, period: Duration) -> Self {
        self.resync = period;
        self
    }

    /// Concurrent cloud calls per account (at least 1).
    #[must_use]
    pub fn account_budget(mut self, calls: usize) -> Self {
        self.account_budget = calls.max(1);
        self
    }

    /// Installations reconciled at once (0: no limit).
    #[must_use]
    pub fn concurrency(mut self, n: u16) -> Self {
        self.concurrency = n;
        self
    }

    /// When a state locked by someone else is tried again.
    #[must_use]
    pub fn locked_retry(mut self, d: Duration) -> Self {
        self.locked_retry = d;
        self
    }

    /// The retry delays after failures: `base`, doubling, at most `max`.
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max.max(base);
        self
    }

    /// How long outputs that hold no secret may wait before they are written (zero:
    /// after every step).
    #[must_use]
    pub fn persist_interval(mut self, d: Duration) -> Self {
        self.persist_interval = d;
        self
    }

    /// Keep state elsewhere than in `KubeStateStore` (tests).
    #[must_use]
    pub fn state_store(
        mut self,
        f: impl Fn(kube::Client, &str, &str) -> Arc<dyn StateStore> + Send + Sync + 'static,
    ) -> Self {
        self.state_store = Some(Arc::new(f));
        self
    }

    /// Adjust each reconcile's engine (retry and wait policies, clock, events).
    #[must_use]
    pub fn engine(
        mut self,
        f: impl Fn(EngineBuilder) -> EngineBuilder + Send + Sync + 'static,
    ) -> Self {
        self.engine = Some(Arc::new(f));
        self
    }

    /// The state lock owner this replica's runs use (`controller <identity>`).
    pub fn lock_owner(&self) -> String {
        format!("{LOCK_OWNER_PREFIX}{}", self.identity)
    }
}

/// What every reconcile shares: the client, the provider factory, the settings, the
/// per-account budgets, the Event recorders and the failure counts of the backoff.
pub struct Context {
    client: kube::Client,
    factory: Arc<dyn ProviderFactory>,
    config: OperatorConfig,
    budgets: Budgets,
    /// [`RECORDER_SHARDS`] recorders; an installation's Events always go through the
    /// same one.
    recorders: Vec<Recorder>,
    failures: Mutex<HashMap<String, u32>>,
    seen: Mutex<HashMap<String, Seen>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .field("budgets", &self.budgets)
            .finish_non_exhaustive()
    }
}

/// When an installation is reconciled next, unless it changes first.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// After this long (resync, a retry).
    After(Duration),
    /// Only when the resource changes.
    OnChange,
}

impl Next {
    fn action(self) -> Action {
        match self {
            Next::After(d) => Action::requeue(d),
            Next::OnChange => Action::await_change(),
        }
    }
}

/// What the last reconcile of an installation saw, and until when it holds.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// [`wake_hash`] of the object it reconciled.
    hash: u64,
    /// `None`: until the resource changes.
    until: Option<Instant>,
}

/// The key of one installation (`namespace/name`).
fn key_of(obj: &GitpodInstallation) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

impl Context {
    /// The shared context of a controller.
    pub fn new(
        client: kube::Client,
        factory: Arc<dyn ProviderFactory>,
        config: OperatorConfig,
    ) -> Arc<Self> {
        let budgets = Budgets::new(config.account_budget);
        Self::with_budgets(client, factory, config, budgets)
    }

    /// The shared context of a controller whose installations draw on `budgets`
    /// (shared with another context, or with its own per-account limits).
    pub fn with_budgets(
        client: kube::Client,
        factory: Arc<dyn ProviderFactory>,
        config: OperatorConfig,
        budgets: Budgets,
    ) -> Arc<Self> {
        let recorders = (0..RECORDER_SHARDS)
            .map(|_| {
                Recorder::new(
                    client.clone(),
                    Reporter {
                        controller: CONTROLLER_NAME.into(),
                        instance: Some(config.identity.clone()),
                    },
                )
            })
            .collect();
        Arc::new(Context {
            client,
            factory,
            config,
            budgets,
            recorders,
            failures: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// The settings.
    pub fn config(&self) -> &OperatorConfig {
        &self.config
    }

    /// The per-account budgets.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// The Kubernetes client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        match self.seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Remember when `key`, as `hash` describes it, is due again.
    fn remember(&self, key: &str, hash: u64, next: Next) {
        let until = match next {
            Next::After(d) => Some(Instant::now() + d),
            Next::OnChange => None,
        };
        self.seen().insert(key.to_string(), Seen { hash, until });
    }

    /// If nothing that matters changed since the last reconcile of `key` and it is
    /// not due yet (a wake-up by the controller's own status write), when it is.
    fn not_due(&self, key: &str, hash: u64) -> Option<Action> {
        let seen = *self.seen().get(key)?;
        if seen.hash != hash {
            return None;
        }
        match seen.until {
            None => Some(Action::await_change()),
            Some(t) => {
                let left = t.checked_duration_since(Instant::now())?;
                (!left.is_zero()).then(|| Action::requeue(left))
            }
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        match self.failures.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Publish an Event about `obj`; a failure to publish is logged, never fatal.
    async fn event(&self, obj: &GitpodInstallation, warning: bool, reason: &str, note: String) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(truncate_note(note)),
            action: reason.into(),
            secondary: None,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key_of(obj).hash(&mut h);
        let shard = usize::try_from(h.finish() % RECORDER_SHARDS as u64).unwrap_or(0);
        let Some(recorder) = self.recorders.get(shard) else {
            return;
        };
        if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(installation = %key_of(obj), reason, "cannot publish an Event: {e}");
        }
    }

    fn state_store(&self, namespace: &str, name: &str) -> Arc<dyn StateStore> {
        let secret = state_secret_name(name);
        match &self.config.state_store {
            Some(f) => f(self.client.clone(), namespace, &secret),
            None => Arc::new(KubeStateStore::new(self.client.clone(), namespace, secret)),
        }
    }

    /// The installation's credentials Secret, read once: its values (`None`: it
    /// names none), and the sources its spec's references are read from (the same
    /// Secret, if its [`REFERENCES_ANNOTATION`] lets this installation).
    async fn secret_of(
        &self,
        obj: &GitpodInstallation,
    ) -> (Result<Option<Credentials>>, SecretSources) {
        let Some(name) = &obj.spec.operator.credentials_secret else {
            return (Ok(None), SecretSources::none());
        };
        let ns = obj.namespace().unwrap_or_default();
        let id = format!("{ns}/{name}");
        let api: Api<KubeSecret> = Api::namespaced(self.client.clone(), &ns);
        let secret = match api.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                let e = Error::new(
                    ErrorKind::Credentials,
                    format!(
                        "the credentials Secret {id} (operator.credentialsSecret) does not \
                         exist: create it, or remove the field to use the controller's own \
                         identity"
                    ),
                );
                let reason = format!("the credentials Secret {id} does not exist");
                return (Err(e), SecretSources::unreadable(id, reason));
            }
            Err(e) => {
                let e = kube_error(e, &format!("reading the credentials Secret {id}"));
                let reason = e.chain();
                return (Err(e), SecretSources::unreadable(id, reason));
            }
        };
        let allowed = allows(
            secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REFERENCES_ANNOTATION))
                .map(String::as_str),
            &obj.name_any(),
        );
        let mut out = Credentials::new();
        for (k, v) in secret.data.unwrap_or_default() {
            let Ok(text) = String::from_utf8(v.0) else {
                let message = format!("the key {k} of the credentials Secret {id} is not UTF-8");
                let e = Error::new(ErrorKind::Credentials, message.clone());
                return (Err(e), SecretSources::unreadable(id, message));
            };
            out.insert(k, gitpod_refarch::Secret::new(text));
        }
        for (k, v) in secret.string_data.unwrap_or_default() {
            out.insert(k, gitpod_refarch::Secret::new(v));
        }
        let sources = if allowed {
            SecretSources::new(id, Some(out.clone()))
        } else {
            SecretSources::not_allowed(id, &obj.name_any())
        };
        (Ok(Some(out)), sources)
    }

    /// The engine of one installation.
    async fn engine(
        &self,
        obj: &GitpodInstallation,
        spec: &ReferenceArchitecture,
        credentials: Result<Option<Credentials>>,
        sources: SecretSources,
    ) -> Result<(Engine, String)> {
        let credentials = credentials?;
        let providers = self
            .factory
            .providers(spec, credentials.as_ref(), &sources)
            .await?;
        let account = self.factory.account(spec, credentials.as_ref());
        drop(credentials);
        let ns = obj.namespace().unwrap_or_default();
        let mut b = Engine::builder(providers)
            .sources(Arc::new(sources))
            .state(self.state_store(&ns, &obj.name_any()))
            .lock_owner(self.config.lock_owner())
            .budget(self.budgets.get(&account))
            .persist_interval(self.config.persist_interval)
            .allow_disruptive(obj.spec.operator.allow_disruptive);
        if let Some(hook) = &self.config.engine {
            b = hook(b);
        }
        Ok((b.build()?, account))
    }

    /// After a `StateLocked`: break the lock if a controller replica holds it (the
    /// caller is the leader, so that replica is gone) and return `None` to retry;
    /// else the holder.
    async fn stale_lock(
        &self,
        obj: &GitpodInstallation,
        engine: &Engine,
    ) -> Result<Option<LockInfo>> {
        let store = engine.state_store();
        let Some(lock) = store.current_lock().await? else {
            return Ok(None);
        };
        if !lock.owner.starts_with(LOCK_OWNER_PREFIX) {
            return Ok(Some(lock));
        }
        // A controller holds it, and this replica is the one running: the holder is a
        // replica that died mid-run (or this one's run that was dropped).
        let broken = store.break_lock(&lock.id).await?;
        tracing::info!(installation = %key_of(obj), lock = %broken, "broke a stale controller lock");
        self.event(
            obj,
            false,
            "BrokeStaleLock",
            format!("broke the stale state lock {broken}"),
        )
        .await;
        Ok(None)
    }

    /// Record a failure: `Degraded` with the error's kind, an Event; the error goes
    /// on to the backoff.
    async fn fail(&self, obj: &GitpodInstallation, st: &mut StatusWriter, e: Error) -> Error {
        let reason = reason_of(e.kind());
        let message = e.chain();
        tracing::warn!(installation = %key_of(obj), reason, "reconcile failed: {message}");
        // The Event first: whoever sees `Degraded` finds its Event already there.
        self.event(obj, true, "Failed", format!("{reason}: {message}"))
            .await;
        st.degraded(reason, message);
        if let Err(w) = st.write().await {
            tracing::warn!(installation = %key_of(obj), "cannot write the status: {}", w.chain());
        }
        e
    }

    async fn apply(&self, api: &Api<GitpodInstallation>, obj: &GitpodInstallation) -> Result<Next> {
        let mut st = StatusWriter::new(api.clone(), obj);
        let (credentials, sources) = self.secret_of(obj).await;
        let credentials = match credentials {
            // The Secret could not be read (the API server, not the Secret): retried
            // as that error.
            Err(e) if e.kind() != ErrorKind::Credentials => {
                return Err(self.fail(obj, &mut st, e).await);
            }
            other => other,
        };
        let spec = match parse_spec(obj, &sources) {
            Ok(spec) => spec,
            Err(invalid) if invalid.in_secret => {
                // The fix is in the credentials Secret, which is not watched: retried
                // with backoff.
                st.observed();
                let e = Error::new(ErrorKind::Credentials, invalid.message);
                return Err(self.fail(obj, &mut st, e).await);
            }
            Err(invalid) => {
                st.observed();
                st.degraded("InvalidSpec", invalid.message.clone());
                st.write().await?;
                self.event(obj, true, "InvalidSpec", invalid.message).await;
                // Nothing to retry until the resource changes.
                return Ok(Next::OnChange);
            }
        };
        if obj.status.is_none() {
            st.phase(status::PHASE_PENDING);
        }
        match self
            .apply_spec(obj, &spec, credentials, sources, &mut st)
            .await
        {
            Ok(action) => Ok(action),
            Err(e) => Err(self.fail(obj, &mut st, e).await),
        }
    }

    async fn apply_spec(
        &self,
        obj: &GitpodInstallation,
        spec: &ReferenceArchitecture,
        credentials: Result<Option<Credentials>>,
        sources: SecretSources,
        st: &mut StatusWriter,
    ) -> Result<Next> {
        let (engine, account) = self.engine(obj, spec, credentials, sources).await?;
        tracing::debug!(installation = %key_of(obj), account, "reconciling");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let plan = engine.plan(spec).await?;
            let summary = status::plan_summary(&plan);
            st.plan(&plan);
            st.condition(status::PLANNED, true, "Planned", summary_text(&summary));
            if !plan.has_changes() {
                break;
            }
            st.phase(status::PHASE_APPLYING);
            st.condition(
                status::PROGRESSING,
                true,
                "Applying",
                format!("applying: {}", summary_text(&summary)),
            );
            st.write().await?;
            self.event(obj, false, "Planned", summary_text(&summary))
                .await;
            self.event(
                obj,
                false,
                "Applying",
                format!("applying: {}", summary_text(&summary)),
            )
            .await;
            match engine.apply(&plan).await {
                Ok(report) => {
                    let report = report.into_result()?;
                    self.event(
                        obj,
                        false,
                        "Applied",
                        format!(
                            "{} resource(s) changed, {} unchanged, in {:.1} s",
                            report.changed.len(),
                            report.unchanged.len(),
                            report.elapsed.as_secs_f64()
                        ),
                    )
                    .await;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::StateLocked && attempts < 4 => {
                    if let Some(held) = self.stale_lock(obj, &engine).await? {
                        return self.locked(obj, st, &held).await;
                    }
                }
                // Someone wrote between the plan and the apply (a stale run that was
                // just broken): plan again.
                Err(e) if e.kind() == ErrorKind::StateChanged && attempts < 4 => {}
                Err(e) => return Err(e),
            }
        }

        let (bundle, outputs) = engine.installer_bundle_and_outputs(spec).await?;
        self.write_installer_secret(obj, &bundle).await?;

        st.observed();
        st.outputs(spec, &outputs);
        st.phase(status::PHASE_READY);
        st.condition(
            status::PROGRESSING,
            false,
            "Applied",
            "nothing to apply".into(),
        );
        st.condition(
            status::DEGRADED,
            false,
            "Applied",
            "the last reconcile succeeded".into(),
        );
        st.condition(
            status::READY,
            true,
            "Applied",
            format!(
                "the installation matches generation {}",
                obj.metadata.generation.unwrap_or(0)
            ),
        );
        st.write().await?;
        self.failures().remove(&key_of(obj));
        Ok(Next::After(self.config.resync))
    }

    /// The state is locked by someone who is not a controller: `Degraded`, retried
    /// later.
    async fn locked(
        &self,
        obj: &GitpodInstallation,
        st: &mut StatusWriter,
        held: &LockInfo,
    ) -> Result<Next> {
        let message = format!(
            "the state is locked: {held}; the controller retries in {} s (if that run is \
             dead, break the lock: gitpod-refarch state break-lock {})",
            self.config.locked_retry.as_secs(),
            held.id
        );
        st.degraded("StateLocked", message.clone());
        st.write().await?;
        self.event(obj, true, "StateLocked", message).await;
        Ok(Next::After(self.config.locked_retry))
    }

    async fn write_installer_secret(
        &self,
        obj: &GitpodInstallation,
        bundle: &gitpod_refarch::installer::InstallerBundle,
    ) -> Result<()> {
        let ns = obj.namespace().unwrap_or_default();
        let name = installer_secret_name(obj);
        let mut data = BTreeMap::new();
        data.insert(
            "gitpod.config.yaml".to_string(),
            ByteString(bundle.config_yaml()?.into_bytes()),
        );
        for s in &bundle.secrets {
            data.insert(
                format!("{}.yaml", s.name),
                ByteString(s.to_yaml_exposed()?.into_bytes()),
            );
        }
        if !bundle.cert_manager.is_empty() {
            let mut docs = Vec::new();
            for v in &bundle.cert_manager {
                docs.push(serde_yaml_ng::to_string(v).map_err(|e| {
                    Error::internal("the cert-manager objects do not serialize").with_source(e)
                })?);
            }
            data.insert(
                "cert-manager.yaml".to_string(),
                ByteString(docs.join("---\n").into_bytes()),
            );
        }
        // Owned by the resource (collected with it) unless it is to be retained; an
        // apply without the reference removes one an earlier apply set.
        let owner = match obj.spec.operator.deletion_policy {
            DeletionPolicy::Delete => {
                Some(vec![obj.controller_owner_ref(&()).ok_or_else(|| {
                    Error::internal("the installation has no uid to own its installer Secret")
                })?])
            }
            DeletionPolicy::Retain => None,
        };
        let secret = KubeSecret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                owner_references: owner,
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    CONTROLLER_NAME.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..KubeSecret::default()
        };
        let api: Api<KubeSecret> = Api::namespaced(self.client.clone(), &ns);
        api.patch(
            &name,
            &PatchParams::apply(CONTROLLER_NAME).force(),
            &Patch::Apply(&secret),
        )
        .await
        .map_err(|e| kube_error(e, &format!("writing the installer Secret {ns}/{name}")))?;
        Ok(())
    }

    async fn cleanup(
        &self,
        api: &Api<GitpodInstallation>,
        obj: &GitpodInstallation,
    ) -> Result<Next> {
        let mut st = StatusWriter::new(api.clone(), obj);
        st.phase(status::PHASE_DELETING);
        let ns = obj.namespace().unwrap_or_default();
        let state = state_secret_name(&obj.name_any());
        if obj.spec.operator.deletion_policy == DeletionPolicy::Retain {
            let installer = installer_secret_name(obj);
            let kept = self.keep_installer_secret(obj, &ns, &installer).await;
            self.event(
                obj,
                false,
                "Retained",
                format!(
                    "deletionPolicy is Retain: every cloud resource and the state Secret \
                     {ns}/{state} are left in place; {kept}"
                ),
            )
            .await;
            return Ok(Next::OnChange);
        }
        match self.destroy(obj, &mut st).await {
            Ok(action) => Ok(action),
            Err(e) => Err(self.fail(obj, &mut st, e).await),
        }
    }

    /// On `Retain`: make sure the installer Secret does not go with the resource.
    /// Applies under `Retain` write it without an owner reference; one written before
    /// the policy changed still names the resource, and that reference (only it) is
    /// removed. Never blocks the deletion: what happened is said in the Event.
    async fn keep_installer_secret(
        &self,
        obj: &GitpodInstallation,
        ns: &str,
        installer: &str,
    ) -> String {
        let secrets: Api<KubeSecret> = Api::namespaced(self.client.clone(), ns);
        let uid = obj.uid().unwrap_or_default();
        let current = match secrets.get_opt(installer).await {
            Ok(Some(s)) => s,
            Ok(None) => return format!("there is no installer Secret {ns}/{installer}"),
            Err(e) => {
                let e = kube_error(e, &format!("reading the installer Secret {ns}/{installer}"));
                tracing::warn!(installation = %key_of(obj), "{}", e.chain());
                return format!("the installer Secret could not be kept: {}", e.chain());
            }
        };
        let refs = current.metadata.owner_references.unwrap_or_default();
        if !refs.iter().any(|r| r.uid == uid) {
            return format!("so is the installer Secret {ns}/{installer}");
        }
        let left: Vec<_> = refs.into_iter().filter(|r| r.uid != uid).collect();
        // The resourceVersion makes the merge patch conditional: nothing else's
        // reference is lost to a concurrent change.
        let patch = serde_json::json!({"metadata": {
            "ownerReferences": if left.is_empty() { serde_json::Value::Null } else { serde_json::json!(left) },
            "resourceVersion": current.metadata.resource_version,
        }});
        match secrets
            .patch(installer, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => format!(
                "so is the installer Secret {ns}/{installer}, no longer owned by the resource"
            ),
            Err(e) => {
                let e = kube_error(e, &format!("keeping the installer Secret {ns}/{installer}"));
                tracing::warn!(installation = %key_of(obj), "{}", e.chain());
                format!("the installer Secret could not be kept: {}", e.chain())
            }
        }
    }

    async fn destroy(&self, obj: &GitpodInstallation, st: &mut StatusWriter) -> Result<Next> {
        let ns = obj.namespace().unwrap_or_default();
        let state = state_secret_name(&obj.name_any());
        let (credentials, sources) = self.secret_of(obj).await;
        let spec = match parse_spec(obj, &sources) {
            Ok(spec) => spec,
            Err(invalid) => {
                // Nothing to destroy if nothing was ever stored.
                let store = self.state_store(&ns, &obj.name_any());
                if store.load().await?.is_none() {
                    return Ok(Next::OnChange);
                }
                if invalid.in_secret {
                    return Err(Error::new(
                        ErrorKind::Credentials,
                        format!(
                            "cannot destroy without what the spec reads from the credentials \
                             Secret ({}); restore it, or set operator.deletionPolicy: Retain \
                             to leave everything in place",
                            invalid.message
                        ),
                    ));
                }
                return Err(Error::invalid_input(format!(
                    "cannot destroy with an invalid spec ({}); fix the spec, or set \
                     operator.deletionPolicy: Retain to leave everything in place",
                    invalid.message
                )));
            }
        };
        let engine = match self.engine(obj, &spec, credentials, sources).await {
            Ok((engine, _)) => engine,
            Err(e) => {
                // No providers (a cloud this controller does not run, credentials
                // refused, a part it does not build): if nothing was ever stored,
                // nothing was made, and the resource may go.
                let store = self.state_store(&ns, &obj.name_any());
                if store.load().await?.is_none() {
                    return Ok(Next::OnChange);
                }
                return Err(e);
            }
        };
        st.condition(
            status::PROGRESSING,
            true,
            "Destroying",
            "destroying the installation".into(),
        );
        st.write().await?;
        self.event(
            obj,
            false,
            "Destroying",
            "destroying the installation".into(),
        )
        .await;
        let mut attempts = 0;
        let report = loop {
            attempts += 1;
            match engine.destroy(&spec).await {
                Ok(report) => break report,
                Err(e) if e.kind() == ErrorKind::StateLocked && attempts < 4 => {
                    if let Some(held) = self.stale_lock(obj, &engine).await? {
                        return self.locked(obj, st, &held).await;
                    }
                }
                Err(e) if e.kind() == ErrorKind::StateChanged && attempts < 4 => {}
                Err(e) => return Err(e),
            }
        };
        if !report.failed.is_empty() || !report.skipped.is_empty() || report.cancelled {
            return Err(match report.into_result() {
                Err(e) => e,
                Ok(_) => Error::internal("the destroy did not complete"),
            });
        }
        if !report.retained.is_empty() {
            let names: Vec<String> = report
                .retained
                .iter()
                .map(|(id, why)| format!("{id} ({why})"))
                .collect();
            self.event(
                obj,
                true,
                "Retained",
                format!(
                    "destroyed all but {}; the state Secret {ns}/{state} is kept",
                    names.join(", ")
                ),
            )
            .await;
            return Ok(Next::OnChange);
        }
        let secrets: Api<KubeSecret> = Api::namespaced(self.client.clone(), &ns);
        match secrets.delete(&state, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(r)) if r.code == 404 => {}
            Err(e) => {
                return Err(kube_error(
                    e,
                    &format!("deleting the state Secret {ns}/{state}"),
                ))
            }
        }
        self.event(
            obj,
            false,
            "Destroyed",
            format!(
                "destroyed {} resource(s); the state Secret {ns}/{state} is deleted",
                report.changed.len()
            ),
        )
        .await;
        Ok(Next::OnChange)
    }
}

fn truncate_note(mut s: String) -> String {
    // Events' notes are at most 1 kB.
    if s.len() > 1000 {
        let mut end = 1000;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The name of the state Secret of the installation resource `name`.
pub fn state_secret_name(name: &str) -> String {
    format!("{name}-state")
}

/// The name of the Secret that receives the installation's installer bundle.
pub fn installer_secret_name(obj: &GitpodInstallation) -> String {
    obj.spec
        .operator
        .installer_secret
        .clone()
        .unwrap_or_else(|| format!("{}-installer", obj.name_any()))
}

fn summary_text(s: &crate::crd::PlanSummary) -> String {
    format!(
        "{} to create, {} to update, {} to replace, {} to delete, {} unchanged",
        s.create, s.update, s.replace, s.delete, s.unchanged
    )
}

/// The condition reason for an error kind (CamelCase).
pub fn reason_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "InvalidInput",
        ErrorKind::NotFound => "NotFound",
        ErrorKind::Conflict => "Conflict",
        ErrorKind::OperationInProgress => "OperationInProgress",
        ErrorKind::Throttled => "Throttled",
        ErrorKind::Transient => "Transient",
        ErrorKind::PropagationDelay => "PropagationDelay",
        ErrorKind::Permission => "Permission",
        ErrorKind::Credentials => "Credentials",
        ErrorKind::OperationFailed => "OperationFailed",
        ErrorKind::Timeout => "Timeout",
        ErrorKind::Cancelled => "Cancelled",
        ErrorKind::State => "State",
        ErrorKind::StateLocked => "StateLocked",
        ErrorKind::StateChanged => "StateChanged",
        ErrorKind::Precondition => "Precondition",
        ErrorKind::Internal => "Internal",
        _ => "Error",
    }
}

/// Why [`parse_spec`] refused a resource's spec.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSpec {
    /// Every problem with its field path under `spec.`, in one line.
    pub message: String,
    /// Whether every problem is at a reference (a secret's `env`/`file`, a
    /// certificate or CA file) that the credentials Secret answered or must answer
    /// ([`SecretSources::answered`]: a missing or empty key, a Secret that does not
    /// exist or does not allow the installation, a value it holds): the fix is in
    /// the Secret, not the resource, so the controller retries with backoff instead
    /// of waiting for the resource to change.
    pub in_secret: bool,
}

impl std::fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The SDK spec of the resource, loaded as the CLI loads its spec file and
/// validated, with the secrets and files it names read from `sources` (the
/// installation's credentials Secret, [`SecretSources`]), never from the
/// controller's environment or disk; on failure, every problem with its field path
/// under `spec.`.
pub fn parse_spec(
    obj: &GitpodInstallation,
    sources: &SecretSources,
) -> std::result::Result<ReferenceArchitecture, InvalidSpec> {
    let text = serde_json::to_string(&obj.spec.architecture).map_err(|e| InvalidSpec {
        message: format!("the spec does not serialize: {e}"),
        in_secret: false,
    })?;
    let (problems, referenced) = match ReferenceArchitecture::from_json(&text) {
        Ok(spec) => match validate_with(&spec, sources) {
            Ok(()) => return Ok(spec),
            Err(v) => {
                let answered = sources.answered();
                let fields: Vec<&'static str> = spec
                    .references()
                    .into_iter()
                    .filter(|r| match &r.source {
                        SecretSource::Env(key) | SecretSource::File(key) => answered.contains(key),
                        _ => false,
                    })
                    .map(|r| r.field)
                    .collect();
                (v, fields)
            }
        },
        Err(v) => (v, Vec::new()),
    };
    let in_secret = problems
        .problems()
        .iter()
        .all(|p| referenced.contains(&p.path.as_str()));
    let list: Vec<String> = problems
        .problems()
        .iter()
        .map(|p| {
            if p.path.is_empty() {
                format!("spec: {}", p.message)
            } else {
                format!("spec.{}: {}", p.path, p.message)
            }
        })
        .collect();
    Err(InvalidSpec {
        message: format!(
            "invalid spec ({} problem(s)): {}",
            list.len(),
            list.join("; ")
        ),
        in_secret: in_secret && !list.is_empty(),
    })
}

/// Reconcile one installation: the finalizer, then apply or cleanup.
pub async fn reconcile(obj: Arc<GitpodInstallation>, ctx: Arc<Context>) -> Result<Action> {
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::invalid_input("a GitpodInstallation must be namespaced"))?;
    let api: Api<GitpodInstallation> = Api::namespaced(ctx.client.clone(), &ns);
    let key = key_of(&obj);
    let hash = wake_hash(&obj);
    // Woken by its own status write (or early): nothing to do before it is due.
    if let Some(action) = ctx.not_due(&key, hash) {
        return Ok(action);
    }
    let (api_ref, ctx_ref, key_ref) = (&api, &ctx, &key);
    let result = finalizer(&api, FINALIZER, obj, move |event| async move {
        let (next, deleted) = match event {
            FinalizerEvent::Apply(o) => (ctx_ref.apply(api_ref, &o).await?, false),
            FinalizerEvent::Cleanup(o) => (ctx_ref.cleanup(api_ref, &o).await?, true),
        };
        if deleted {
            ctx_ref.seen().remove(key_ref);
            ctx_ref.failures().remove(key_ref);
        } else {
            ctx_ref.remember(key_ref, hash, next);
        }
        Ok::<_, Error>(next.action())
    })
    .await;
    match result {
        Ok(action) => Ok(action),
        Err(FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e)) => Err(e),
        Err(FinalizerError::AddFinalizer(e)) => {
            Err(kube_error(e, &format!("adding the finalizer to {key}")))
        }
        Err(FinalizerError::RemoveFinalizer(e)) => {
            Err(kube_error(e, &format!("removing the finalizer from {key}")))
        }
        Err(e) => Err(Error::internal(format!("finalizer of {key}: {e}"))),
    }
}

/// The retry of a failed reconcile: the backoff base, doubling with each failure in
/// a row of that installation, at most the maximum.
pub fn error_policy(obj: Arc<GitpodInstallation>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = key_of(&obj);
    let n = {
        let mut failures = ctx.failures();
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
    let delay = ctx
        .config
        .backoff_base
        .saturating_mul(factor)
        .min(ctx.config.backoff_max);
    ctx.remember(&key, wake_hash(&obj), Next::After(delay));
    tracing::info!(installation = %key, failures = n, delay = ?delay, kind = %err.kind(), "retrying after a failure");
    Action::requeue(delay)
}

/// What changes should wake a reconcile: the spec (generation), deletion, the
/// finalizers and the annotations (to ask for a reconcile now); never a status
/// write of the controller's own.
fn wake_hash(obj: &GitpodInstallation) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.generation.hash(&mut h);
    obj.metadata.deletion_timestamp.is_some().hash(&mut h);
    obj.metadata.finalizers.hash(&mut h);
    obj.metadata.annotations.hash(&mut h);
    h.finish()
}

/// What the controller's cache drops from each installation it holds (see
/// [`run_with`]).
fn prune_cached(obj: &mut GitpodInstallation) {
    obj.metadata.managed_fields = None;
    if let Some(annotations) = obj.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// `kubectl apply`'s copy of the object as last applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Run the controller until the watch ends or the future is dropped.
pub async fn run(
    client: kube::Client,
    factory: Arc<dyn ProviderFactory>,
    config: OperatorConfig,
) -> Result<()> {
    run_with(Context::new(client, factory, config)).await
}

/// Run the controller with a context made beforehand (to share its budgets, or to
/// look at them); stops when the future is dropped.
pub async fn run_with(ctx: Arc<Context>) -> Result<()> {
    let api: Api<GitpodInstallation> = match &ctx.config.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    // Fail at once, with what to do, if the resource type is not served.
    api.list(&ListParams::default().limit(1)).await.map_err(|e| {
        kube_error(
            e,
            "listing GitpodInstallations (is the CRD installed? `gitpod-refarch-operator crd | kubectl apply -f -`)",
        )
    })?;
    tracing::info!(identity = %ctx.config.identity, namespace = ?ctx.config.namespace, "controller started");
    // The cache holds every installation for the controller's life: keep it to what
    // a reconcile reads. `metadata.managedFields` (the server-side apply bookkeeping
    // of every status write) was two thirds of each cached object, and `kubectl
    // apply`'s last-applied annotation is a second copy of the spec; neither is read
    // here, and status writes are merge patches that do not send them back.
    let (reader, writer) = reflector::store();
    // As `Controller::new` does, with the pruning: the controller backs off the
    // watch's errors itself.
    let installations = watcher(api, watcher::Config::default())
        .modify(prune_cached)
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(installations, reader)
        .with_config(ControllerConfig::default().concurrency(ctx.config.concurrency))
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            match r {
                Ok((obj, _)) => tracing::debug!(installation = %obj, "reconciled"),
                Err(e) => tracing::debug!("reconcile error: {e}"),
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    #[test]
    fn the_cache_drops_managed_fields_and_the_last_applied_copy_only() {
        let mut obj: GitpodInstallation = serde_json::from_value(serde_json::json!({
            "apiVersion": "refarch.gitpod.io/v1alpha1",
            "kind": "GitpodInstallation",
            "metadata": {
                "name": "gp", "namespace": "default", "generation": 3,
                "finalizers": [FINALIZER],
                "annotations": {
                    LAST_APPLIED: "{\"spec\":{\"cloud\":\"gcp\"}}",
                    "example.com/keep": "yes"
                }
            },
            "spec": {"cloud": "gcp", "domain": "gitpod.example.com"}
        }))
        .unwrap();
        obj.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(CONTROLLER_NAME.into()),
            operation: Some("Update".into()),
            fields_v1: Some(FieldsV1(serde_json::json!({"f:status": {}}))),
            ..ManagedFieldsEntry::default()
        }]);
        let before = obj.clone();
        prune_cached(&mut obj);
        assert!(obj.managed_fields().is_empty());
        assert_eq!(
            obj.annotations().keys().collect::<Vec<_>>(),
            vec!["example.com/keep"]
        );
        // What a reconcile reads is untouched.
        assert_eq!(obj.metadata.finalizers, before.metadata.finalizers);
        assert_eq!(obj.metadata.generation, before.metadata.generation);
        assert_eq!(
            serde_json::to_value(&obj.spec).unwrap(),
            serde_json::to_value(&before.spec).unwrap()
        );
    }
}
