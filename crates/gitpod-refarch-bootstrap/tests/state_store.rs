//! `KubeStateStore` against the Kubernetes fake (`gitpod-refarch-fake-kube`, real
//! HTTPS on 127.0.0.1): the state in a Secret, compare-and-swap on its
//! resourceVersion, the run lock in a Lease; and two engines sharing one store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::kube_client;
use futures::future::BoxFuture;
use gitpod_refarch::engine::{Clock, TokioClock};
use gitpod_refarch::sim::{CallCounts, LatencyProfile, SimCloud};
use gitpod_refarch::state::{LockRequest, State, StateStore};
use gitpod_refarch::{Engine, ErrorKind, Providers, Secret};
use gitpod_refarch_bootstrap::KubeStateStore;
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};

const NS: &str = "default";

async fn setup(name: &str) -> (FakeKube, kube::Client, KubeStateStore) {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = kube_client(&fake);
    let store =
        KubeStateStore::from_url(&format!("kubernetes://{NS}/{name}"), client.clone()).unwrap();
    (fake, client, store)
}

fn state_with(installation: &str, password: &str) -> State {
    let mut s = State::new(installation);
    s.secrets.insert(
        "database-password".into(),
        Secret::new(password.to_string()),
    );
    s
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_secrets_in_a_typed_labelled_secret() {
    let (fake, _client, store) = setup("gp-state").await;
    assert_eq!(store.location(), "kubernetes://default/gp-state");
    assert!(store.load().await.unwrap().is_none());

    let first = state_with("gp", "s3cr3t-one");
    let g1 = store.save(&first, None).await.unwrap();
    let live = fake.object("secrets", Some(NS), "gp-state").unwrap();
    assert_eq!(live["type"], "refarch.gitpod.io/state");
    assert_eq!(
        live["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gitpod-refarch"
    );
    assert_eq!(live["metadata"]["resourceVersion"], g1.as_str());
    // The state JSON, secrets in clear, base64 in `data` as Kubernetes keeps it.
    let data = live["data"]["state.json"].as_str().unwrap();
    assert_eq!(data, b64(&first.to_json_exposed().unwrap()));

    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!(loaded.state, first);
    assert_eq!(loaded.generation, g1);
    assert_eq!(
        loaded.state.secrets["database-password"].expose(),
        "s3cr3t-one"
    );

    // A save naming the current generation replaces it and moves the generation.
    let second = state_with("gp", "s3cr3t-two");
    let g2 = store.save(&second, Some(&g1)).await.unwrap();
    assert_ne!(g1, g2);
    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!(loaded.state, second);
    assert_eq!(loaded.generation, g2);
    // A save naming the old generation, or creating again, is refused, nothing written.
    let third = state_with("gp", "s3cr3t-three");
    let e = store.save(&third, Some(&g1)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
    let e = store.save(&third, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
    assert_eq!(store.load().await.unwrap().unwrap().state, second);
    // No secret value in the store's Debug.
    assert!(!format!("{store:?}").contains("s3cr3t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_of_another_type_is_not_read_as_state() {
    let (_fake, client, store) = setup("other").await;
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, NS);
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "other"},
        "stringData": {"state.json": "{}"},
    }))
    .unwrap();
    api.create(&Default::default(), &s).await.unwrap();
    let e = store.load().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::State, "{e}");
    assert!(e.message().contains("Opaque"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_at_once_one_wins() {
    let (_fake, _client, store) = setup("race").await;
    let store = Arc::new(store);

    // Both create.
    let (a, b) = (state_with("gp", "from-a"), state_with("gp", "from-b"));
    let (sa, sb) = (store.clone(), store.clone());
    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { sa.save(&a, None).await }),
        tokio::spawn(async move { sb.save(&b, None).await })
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let (winner, gen) = match (&ra, &rb) {
        (Ok(g), Err(e)) => {
            assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
            ("from-a", g.clone())
        }
        (Err(e), Ok(g)) => {
            assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
            ("from-b", g.clone())
        }
        other => panic!("exactly one must win: {other:?}"),
    };
    let stored = store.load().await.unwrap().unwrap();
    assert_eq!(stored.generation, gen);
    assert_eq!(stored.state.secrets["database-password"].expose(), winner);

    // Both replace the same generation.
    let (a, b) = (state_with("gp", "again-a"), state_with("gp", "again-b"));
    let (sa, sb) = (store.clone(), store.clone());
    let (ga, gb) = (gen.clone(), gen.clone());
    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { sa.save(&a, Some(&ga)).await }),
        tokio::spawn(async move { sb.save(&b, Some(&gb)).await })
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let (winner, gen) = match (&ra, &rb) {
        (Ok(g), Err(e)) => {
            assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
            ("again-a", g.clone())
        }
        (Err(e), Ok(g)) => {
            assert_eq!(e.kind(), ErrorKind::StateChanged, "{e}");
            ("again-b", g.clone())
        }
        other => panic!("exactly one must win: {other:?}"),
    };
    let stored = store.load().await.unwrap().unwrap();
    assert_eq!(stored.generation, gen);
    assert_eq!(stored.state.secrets["database-password"].expose(), winner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_is_a_lease_and_is_exclusive() {
    let (fake, _client, store) = setup("gp-state").await;
    assert!(store.current_lock().await.unwrap().is_none());

    let held = store
        .lock(&LockRequest::new("alice@laptop (pid 1)", "apply"))
        .await
        .unwrap();
    let lease = fake.object("leases", Some(NS), "gp-state-lock").unwrap();
    assert_eq!(lease["apiVersion"], "coordination.k8s.io/v1");
    assert_eq!(lease["spec"]["holderIdentity"], "alice@laptop (pid 1)");
    assert_eq!(
        lease["metadata"]["annotations"]["refarch.gitpod.io/lock-id"],
        held.id.as_str()
    );
    assert_eq!(
        lease["metadata"]["annotations"]["refarch.gitpod.io/operation"],
        "apply"
    );
    assert_eq!(
        lease["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gitpod-refarch"
    );
    assert!(lease["spec"]["acquireTime"].is_string());
    assert_eq!(store.current_lock().await.unwrap().unwrap(), held);

    // A second taker is refused, told who holds it and how to break it.
    let e = store
        .lock(&LockRequest::new("bob@desk (pid 2)", "destroy"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateLocked, "{e}");
    assert!(e.message().contains("alice@laptop (pid 1)"), "{e}");
    assert!(
        e.message()
            .contains(&format!("gitpod-refarch state break-lock {}", held.id)),
        "{e}"
    );

    // Breaking (or unlocking) with another id is refused and the lock stays.
    let e = store.break_lock("0123456789abcdef").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let mut other = held.clone();
    other.id = "fedcba9876543210".into();
    let e = store.unlock(&other).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(store.current_lock().await.unwrap().unwrap(), held);
    assert!(fake.object("leases", Some(NS), "gp-state-lock").is_some());

    // The right id breaks it; then there is nothing to break.
    let broken = store.break_lock(&held.id).await.unwrap();
    assert_eq!(broken, held);
    assert!(fake.object("leases", Some(NS), "gp-state-lock").is_none());
    assert!(store.current_lock().await.unwrap().is_none());
    let e = store.break_lock(&held.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // Lock and unlock, then it can be taken again.
    let l = store
        .lock(&LockRequest::new("carol", "apply"))
        .await
        .unwrap();
    assert_ne!(l.id, held.id);
    store.unlock(&l).await.unwrap();
    assert!(store.current_lock().await.unwrap().is_none());
    let e = store.unlock(&l).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_does_not_remove_a_lease_replaced_in_between() {
    let (fake, client, store) = setup("gp-state").await;
    let held = store.lock(&LockRequest::new("a", "apply")).await.unwrap();
    // Someone rewrites the Lease with their own lock id (same name).
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client, NS);
    let mut lease = api.get("gp-state-lock").await.unwrap();
    lease
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("refarch.gitpod.io/lock-id".into(), "someone-else".into());
    api.replace("gp-state-lock", &Default::default(), &lease)
        .await
        .unwrap();
    let e = store.unlock(&held).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(fake.object("leases", Some(NS), "gp-state-lock").is_some());
}

#[tokio::test]
async fn bad_urls_and_names_are_refused() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = kube_client(&fake);
    let urls: Vec<String> = [
        "s3://bucket/key",
        "kubernetes://default",
        "kubernetes://default/",
        "kubernetes:///name",
        "kubernetes://Default/name",
        "kubernetes://ns_1/name",
        "kubernetes://-ns/name",
        "kubernetes://default/Name",
        "kubernetes://default/a/b",
        "kubernetes://default/name-",
    ]
    .iter()
    .map(|u| u.to_string())
    .chain([
        format!("kubernetes://{}/name", "n".repeat(64)),
        // A valid subdomain of 249 characters: its Lease name would be too long.
        format!(
            "kubernetes://default/{}",
            std::iter::repeat_n("n".repeat(49), 5)
                .collect::<Vec<_>>()
                .join(".")
        ),
    ])
    .collect();
    for url in &urls {
        let e = KubeStateStore::from_url(url, client.clone()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
    }
    let ok = KubeStateStore::from_url("kubernetes://gitpod/gp.state-1", client.clone()).unwrap();
    assert_eq!(ok.namespace(), "gitpod");
    assert_eq!(ok.name(), "gp.state-1");
    assert_eq!(ok.lock_name(), "gp.state-1-lock");
    let long = format!(
        "{}.{}",
        std::iter::repeat_n("n".repeat(49), 4)
            .collect::<Vec<_>>()
            .join("."),
        "n".repeat(48)
    );
    assert_eq!(long.len(), 248);
    assert!(KubeStateStore::from_url(&format!("kubernetes://default/{long}"), client).is_ok());
}

/// A clock whose sleeps wait until the test opens its gate, then advance its time
/// by what they slept: an engine on it stops at its first wait for an operation.
#[derive(Debug, Clone)]
struct GatedClock {
    millis: Arc<AtomicU64>,
    open: Arc<tokio::sync::watch::Sender<bool>>,
    entered: Arc<tokio::sync::Notify>,
}

impl GatedClock {
    fn new() -> Self {
        GatedClock {
            millis: Arc::new(AtomicU64::new(0)),
            open: Arc::new(tokio::sync::watch::channel(false).0),
            entered: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

impl Clock for GatedClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let me = self.clone();
        Box::pin(async move {
            me.entered.notify_one();
            let mut rx = me.open.subscribe();
            let _ = rx.wait_for(|open| *open).await;
            me.millis
                .fetch_add(u64::try_from(d.as_millis()).unwrap(), Ordering::SeqCst);
        })
    }
}

fn engine(
    sim: Arc<SimCloud>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn StateStore>,
    owner: &str,
) -> Engine {
    Engine::builder(Providers::all(sim.clone()).with_in_cluster(sim))
        .clock(clock)
        .state(store)
        .lock_owner(owner)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_store_one_is_refused_before_any_cloud_call() {
    let (_fake, _client, store) = setup("gp-state").await;
    let store: Arc<dyn StateStore> = Arc::new(store);
    let spec = common::spec();

    // Engine A: realistic durations on a gated clock, so its run waits (holding the
    // lock) until the gate opens.
    let gated = GatedClock::new();
    let clock_a: Arc<dyn Clock> = Arc::new(gated.clone());
    let sim_a = Arc::new(SimCloud::new(clock_a.clone(), LatencyProfile::realistic()));
    let a = engine(sim_a.clone(), clock_a, store.clone(), "engine-a");
    // Engine B: another process on its own cloud view.
    let clock_b: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let sim_b = Arc::new(SimCloud::new(clock_b.clone(), LatencyProfile::instant()));
    let b = engine(sim_b.clone(), clock_b, store.clone(), "engine-b");

    let plan_a = a.plan(&spec).await.unwrap();
    let plan_b = b.plan(&spec).await.unwrap();
    sim_b.reset_counts();

    let run_a = tokio::spawn(async move { a.apply(&plan_a).await });
    // A is waiting for its first operation: it holds the lock.
    gated.entered.notified().await;
    let held = store.current_lock().await.unwrap().unwrap();
    assert_eq!(held.owner, "engine-a");
    assert_eq!(held.operation, "apply");

    let e = b.apply(&plan_b).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateLocked, "{e}");
    assert!(e.message().contains("engine-a"), "{e}");
    assert!(
        e.message()
            .contains(&format!("gitpod-refarch state break-lock {}", held.id)),
        "{e}"
    );
    assert_eq!(sim_b.counts(), CallCounts::default(), "B called the cloud");
    // B left A's lock alone.
    assert_eq!(store.current_lock().await.unwrap().unwrap(), held);

    gated.open.send_replace(true);
    let report = run_a.await.unwrap().unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(sim_a.counts().mutating > 0);
    assert!(store.current_lock().await.unwrap().is_none());
    let stored = store.load().await.unwrap().unwrap();
    assert_eq!(stored.state.installation, common::NAME);
    assert!(!stored.state.outputs.is_empty());
}
