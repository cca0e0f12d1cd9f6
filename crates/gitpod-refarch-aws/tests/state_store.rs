//! The S3 state store against a real moto server: round trips with secrets and
//! server-side encryption, compare-and-swap between writers, the lock object, and two
//! engines on the simulated cloud sharing one store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, ServerSideEncryption,
};
use gitpod_refarch::engine::{Budget, Clock, RetryPolicy, WaitPolicy};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::{Cloud, ReferenceArchitecture};
use gitpod_refarch::state::{Generation, LockInfo, LockRequest, State, StateStore};
use gitpod_refarch::{Engine, ErrorKind, Providers, Secret};
use gitpod_refarch_aws::S3StateStore;
use support::{sdk_config, FaultProxy, Moto};
use tokio::sync::watch;

const BUCKET: &str = "acme-gitpod-state";
const KEY: &str = "prod/eu-1/state.json";
const DB_PASSWORD: &str = "db-pa55word-that-must-stay-secret";

/// moto, an SDK config for it, and the state bucket.
struct Env {
    moto: Moto,
    sdk: aws_config::SdkConfig,
    s3: aws_sdk_s3::Client,
}

async fn env() -> Env {
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.url).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(BUCKET)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .expect("CreateBucket");
    Env { moto, sdk, s3 }
}

impl Env {
    fn store(&self) -> S3StateStore {
        S3StateStore::from_url(&format!("s3://{BUCKET}/{KEY}"), &self.sdk).expect("valid URL")
    }
}

fn state_with_secret(installation: &str, name: &str, value: &str) -> State {
    let mut s = State::new(installation);
    s.secrets.insert(name.into(), Secret::new(value.into()));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_secrets_and_encrypts_every_object() {
    let env = env().await;
    let store = env.store();
    assert_eq!(store.location(), format!("s3://{BUCKET}/{KEY}"));
    assert!(store.load().await.unwrap().is_none(), "nothing stored yet");

    let state = state_with_secret("gp", "database-password", DB_PASSWORD);
    let generation = store.save(&state, None).await.unwrap();
    let loaded = store.load().await.unwrap().expect("a stored state");
    assert_eq!(loaded.state, state);
    assert_eq!(
        loaded.state.secrets["database-password"].expose(),
        DB_PASSWORD
    );
    assert_eq!(loaded.generation, generation);
    assert!(!format!("{loaded:?}").contains(DB_PASSWORD));
    assert!(!format!("{store:?}").contains(DB_PASSWORD));

    // SSE-S3 on the state and on the lock object.
    let lock = store
        .lock(&LockRequest::new("alice@laptop", "apply"))
        .await
        .unwrap();
    for key in [KEY.to_string(), format!("{KEY}.lock")] {
        let head = env
            .s3
            .head_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256),
            "{key}"
        );
        assert_eq!(head.content_type(), Some("application/json"), "{key}");
    }
    store.unlock(&lock).await.unwrap();

    // SSE-KMS with the key named; a save over the current generation.
    let kms = env.store().kms_key_id(Some("alias/gitpod-state".into()));
    let next = state_with_secret("gp", "database-password", "rotated-too-secret");
    let g2 = kms.save(&next, Some(&generation)).await.unwrap();
    assert_ne!(g2, generation);
    let head = env
        .s3
        .head_object()
        .bucket(BUCKET)
        .key(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(head.ssekms_key_id(), Some("alias/gitpod-state"));
    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!((loaded.state, loaded.generation), (next, g2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_writers_saving_the_same_generation_exactly_one_wins() {
    let env = env().await;
    let first = env.store();
    first
        .save(&state_with_secret("gp", "k", "initial"), None)
        .await
        .unwrap();

    let (a, b) = (env.store(), env.store());
    let read_a = a.load().await.unwrap().unwrap();
    let read_b = b.load().await.unwrap().unwrap();
    assert_eq!(read_a.generation, read_b.generation);
    let mine_a = state_with_secret("gp", "k", "written-by-a");
    let mine_b = state_with_secret("gp", "k", "written-by-b");
    let (ra, rb) = tokio::join!(
        a.save(&mine_a, Some(&read_a.generation)),
        b.save(&mine_b, Some(&read_b.generation)),
    );
    let (winner, generation, loser) = match (ra, rb) {
        (Ok(g), Err(e)) => (mine_a, g, e),
        (Err(e), Ok(g)) => (mine_b, g, e),
        (ra, rb) => panic!("expected exactly one winner: {ra:?} / {rb:?}"),
    };
    assert_eq!(loser.kind(), ErrorKind::StateChanged, "{loser}");
    assert!(loser.message().contains(KEY), "{loser}");
    assert!(!loser.to_string().contains("written-by"), "{loser}");
    let stored = first.load().await.unwrap().unwrap();
    assert_eq!(stored.state, winner);
    assert_eq!(stored.generation, generation);

    // A first save over an existing state, and a save over an old generation.
    let e = first
        .save(&state_with_secret("gp", "k", "blind"), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
    let e = first
        .save(
            &state_with_secret("gp", "k", "stale"),
            Some(&read_a.generation),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
    // A generation that never existed, and a save after the object was removed.
    let e = first
        .save(&winner, Some(&Generation::new("\"not-an-etag\"")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
    env.s3
        .delete_object()
        .bucket(BUCKET)
        .key(KEY)
        .send()
        .await
        .unwrap();
    let e = first.save(&winner, Some(&generation)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
    assert_eq!(first.load().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_retried_and_recognised_as_its_own() {
    let env = env().await;
    let proxy = FaultProxy::start(&env.moto.url).await;
    let sdk = sdk_config(&proxy.url).await;
    // The frozen attempt times out and the SDK sends the PUT again; that one fails its
    // own condition (the first attempt landed).
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(2))
                    .build(),
            )
            .build(),
    );
    let store = S3StateStore::new(client, BUCKET, KEY);
    let direct = env.store();

    let state = state_with_secret("gp", "k", "first");
    proxy.freeze_at_mutating(1);
    let g1 = store.save(&state, None).await.unwrap();
    assert_eq!(proxy.counts().mutating, 2, "{:?}", proxy.counts());
    let loaded = direct.load().await.unwrap().unwrap();
    assert_eq!((loaded.state, loaded.generation), (state, g1.clone()));

    let next = state_with_secret("gp", "k", "second");
    proxy.reset_counts();
    proxy.freeze_at_mutating(1);
    let g2 = store.save(&next, Some(&g1)).await.unwrap();
    assert_eq!(proxy.counts().mutating, 2, "{:?}", proxy.counts());
    let loaded = direct.load().await.unwrap().unwrap();
    assert_eq!((loaded.state, loaded.generation), (next, g2));

    // The same for the lock: its id says it is ours.
    proxy.reset_counts();
    proxy.freeze_at_mutating(1);
    let held = store
        .lock(&LockRequest::new("alice", "apply"))
        .await
        .unwrap();
    assert_eq!(proxy.counts().mutating, 2, "{:?}", proxy.counts());
    assert_eq!(direct.current_lock().await.unwrap(), Some(held.clone()));
    store.unlock(&held).await.unwrap();
    assert_eq!(direct.current_lock().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_is_exclusive_and_only_its_id_releases_or_breaks_it() {
    let env = env().await;
    let store = env.store();
    assert_eq!(store.current_lock().await.unwrap(), None);
    let held = store
        .lock(&LockRequest::new("alice@laptop (pid 42)", "apply"))
        .await
        .unwrap();
    assert_eq!(store.current_lock().await.unwrap(), Some(held.clone()));

    let e = env
        .store()
        .lock(&LockRequest::new("bob@ci", "destroy"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateLocked, "{e}");
    for part in [
        "alice@laptop (pid 42)",
        "apply",
        held.id.as_str(),
        "break-lock",
    ] {
        assert!(e.message().contains(part), "{part:?} missing from: {e}");
    }
    assert!(e.message().contains(&format!("s3://{BUCKET}/{KEY}")), "{e}");

    // Someone else's lock: not released, not broken.
    let other = LockInfo::for_request(&LockRequest::new("bob@ci", "apply"));
    let e = store.unlock(&other).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let e = store.break_lock("0123456789abcdef").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.message().contains(&held.id), "{e}");
    assert_eq!(store.current_lock().await.unwrap(), Some(held.clone()));

    // The right id breaks it, once.
    let broken = env.store().break_lock(&held.id).await.unwrap();
    assert_eq!(broken, held);
    assert_eq!(store.current_lock().await.unwrap(), None);
    let e = store.break_lock(&held.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = store.unlock(&held).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // Lock and unlock again; an old holder cannot remove the new lock.
    let again = store
        .lock(&LockRequest::new("carol", "apply"))
        .await
        .unwrap();
    assert_ne!(again.id, held.id);
    let e = store.unlock(&held).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    store.unlock(&again).await.unwrap();
    assert_eq!(store.current_lock().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_precondition_and_never_created() {
    let env = env().await;
    let store = S3StateStore::from_url("s3://no-such-state-bucket/state.json", &env.sdk).unwrap();
    let state = state_with_secret("gp", "k", DB_PASSWORD);
    let errors = [
        store.load().await.map(|_| ()).unwrap_err(),
        store.save(&state, None).await.map(|_| ()).unwrap_err(),
        store
            .lock(&LockRequest::new("alice", "apply"))
            .await
            .map(|_| ())
            .unwrap_err(),
        store.current_lock().await.map(|_| ()).unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e.kind(), ErrorKind::Precondition, "{e}");
        assert!(e.message().contains("create the bucket first"), "{e}");
        assert!(e.message().contains("no-such-state-bucket"), "{e}");
        assert!(!e.to_string().contains(DB_PASSWORD), "{e}");
    }
    let buckets = env.s3.list_buckets().send().await.unwrap();
    let names: Vec<&str> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, vec![BUCKET], "the store created a bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_are_refused_with_what_is_wrong() {
    let sdk = sdk_config("http://127.0.0.1:9").await;
    for (url, says) in [
        ("https://acme-gitpod-state/state.json", "not an S3 URL"),
        ("acme-gitpod-state/state.json", "not an S3 URL"),
        ("s3://acme-gitpod-state", "no object key"),
        ("s3://acme-gitpod-state/", "empty object key"),
        ("s3:///state.json", "not a valid S3 bucket name"),
        ("s3://Acme_State/state.json", "not a valid S3 bucket name"),
        ("s3://a/state.json", "3 to 63"),
    ] {
        let e = S3StateStore::from_url(url, &sdk).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
        assert!(e.message().contains(says), "{url}: {e}");
    }
    let ok = S3StateStore::from_url("s3://acme-gitpod-state/a/b.json", &sdk).unwrap();
    assert_eq!(ok.location(), "s3://acme-gitpod-state/a/b.json");
    assert_eq!(ok.lock_key(), "a/b.json.lock");
}

// ---------------------------------------------------------------------------
// Engines on the simulated cloud sharing one S3 store
// ---------------------------------------------------------------------------

/// Virtual time that only moves when someone sleeps, with a gate: while closed, every
/// sleep waits until it opens. A run that has to wait for a cloud operation therefore
/// stops, lock held, until the test lets it go on.
#[derive(Debug, Clone)]
struct GatedClock {
    now_nanos: Arc<AtomicU64>,
    open: Arc<watch::Sender<bool>>,
}

impl GatedClock {
    fn new(open: bool) -> Self {
        GatedClock {
            now_nanos: Arc::new(AtomicU64::new(0)),
            open: Arc::new(watch::Sender::new(open)),
        }
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

impl Clock for GatedClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos.load(Ordering::SeqCst))
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let me = self.clone();
        Box::pin(async move {
            let mut rx = me.open.subscribe();
            if !*rx.borrow_and_update() {
                rx.wait_for(|open| *open).await.expect("the gate is kept");
            }
            let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            me.now_nanos.fetch_add(nanos, Ordering::SeqCst);
            tokio::task::yield_now().await;
        })
    }
}

fn spec() -> ReferenceArchitecture {
    ReferenceArchitecture::builder(Cloud::Aws)
        .name("gp")
        .domain("gitpod.example.com")
        .acme_email("ops@example.com")
        .build()
        .expect("valid spec")
}

/// An engine on `sim` with `clock`, the shared `store`, and its own call budget.
fn engine(
    sim: &Arc<SimCloud>,
    clock: &GatedClock,
    store: &Arc<S3StateStore>,
    owner: &str,
) -> (Engine, Arc<Budget>) {
    let budget = Budget::new(owner, 64);
    let engine = Engine::builder(Providers::all(sim.clone()).with_in_cluster(sim.clone()))
        .clock(Arc::new(clock.clone()))
        .state(store.clone())
        .retry(RetryPolicy::default())
        .wait(WaitPolicy::default())
        .budget(budget.clone())
        .lock_owner(owner)
        .build()
        .expect("engine");
    (engine, budget)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_applying_at_once_one_runs_the_other_is_refused_by_the_lock() {
    let env = env().await;
    let store = Arc::new(env.store());
    let clock = GatedClock::new(false);
    let sim = Arc::new(SimCloud::new(
        Arc::new(clock.clone()),
        LatencyProfile::realistic(),
    ));
    let s = spec();
    let (a, budget_a) = engine(&sim, &clock, &store, "writer-a");
    let (b, budget_b) = engine(&sim, &clock, &store, "writer-b");
    let plan_a = a.plan(&s).await.unwrap();
    let plan_b = b.plan(&s).await.unwrap();
    assert!(plan_a.has_changes() && plan_b.has_changes());
    let planned = (budget_a.calls(), budget_b.calls());

    // Whichever takes the lock first stops at its first wait for the cloud (lock held);
    // the gate opens only once the other one has returned: the refusal names the
    // winner, so the two runs overlapped.
    let run = |engine: &'static str| {
        let (e, p) = if engine == "writer-a" {
            (&a, &plan_a)
        } else {
            (&b, &plan_b)
        };
        let clock = clock.clone();
        async move {
            let r = e.apply(p).await;
            clock.open();
            r
        }
    };
    let (ra, rb) = tokio::join!(run("writer-a"), run("writer-b"));

    let (report, refused, loser_budget, loser_planned, winner) = match (ra, rb) {
        (Ok(r), Err(e)) => (r, e, &budget_b, planned.1, "writer-a"),
        (Err(e), Ok(r)) => (r, e, &budget_a, planned.0, "writer-b"),
        (ra, rb) => panic!(
            "expected one run and one refusal: {:?} / {:?}",
            ra.map(|r| r.is_success()),
            rb.map(|r| r.is_success())
        ),
    };
    let report = report.into_result().expect("the winning run succeeds");
    assert!(
        !report.changed.is_empty(),
        "the winning run created nothing"
    );
    assert_eq!(refused.kind(), ErrorKind::StateLocked, "{refused}");
    assert!(refused.message().contains(winner), "{refused}");
    assert!(refused.message().contains("break-lock"), "{refused}");
    assert_eq!(
        loser_budget.calls(),
        loser_planned,
        "the refused engine made provider calls"
    );

    // Released, saved, and converged.
    assert_eq!(store.current_lock().await.unwrap(), None);
    let stored = store.load().await.unwrap().expect("state saved to S3");
    assert_eq!(stored.state.installation, "gp");
    assert!(!stored.state.outputs.is_empty());
    let (c, _) = engine(&sim, &clock, &store, "writer-c");
    let again = c.plan(&s).await.unwrap();
    assert!(!again.has_changes(), "{again}");
    assert!(sim.duplicates().is_empty(), "{:?}", sim.duplicates());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_made_before_another_apply_changed_the_state_is_refused() {
    let env = env().await;
    let store = Arc::new(env.store());
    let clock = GatedClock::new(true);
    let sim = Arc::new(SimCloud::new(
        Arc::new(clock.clone()),
        LatencyProfile::instant(),
    ));
    let s = spec();
    let (a, budget_a) = engine(&sim, &clock, &store, "writer-a");
    let (b, _) = engine(&sim, &clock, &store, "writer-b");
    let stale = a.plan(&s).await.unwrap();
    let planned = budget_a.calls();
    let report = b.apply_spec(&s).await.unwrap().into_result().unwrap();
    assert!(!report.changed.is_empty());

    let e = a.apply(&stale).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
    assert!(e.message().contains("Plan again"), "{e}");
    assert_eq!(budget_a.calls(), planned, "a refused plan made calls");
    assert_eq!(
        store.current_lock().await.unwrap(),
        None,
        "lock left behind"
    );
    // Planned again, it has nothing to do.
    assert!(!a.plan(&s).await.unwrap().has_changes());
}
