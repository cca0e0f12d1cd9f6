//! End-to-end behaviour of the engine on the simulated cloud, on virtual time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unused_must_use
)]

mod common;

use std::time::Duration;

use common::{spec, Harness};
use gitpod_refarch::engine::Event;
use gitpod_refarch::plan::{self, Action, Effect};
use gitpod_refarch::resource::{Desired, ResourceId, ResourceKind};
use gitpod_refarch::sim::{Faults, LatencyProfile};
use gitpod_refarch::spec::{Cloud, PoolRole, RecordsTarget};
use gitpod_refarch::state::StateStore as _;
use gitpod_refarch::ErrorKind;

fn all_ids(s: &gitpod_refarch::ReferenceArchitecture) -> Vec<ResourceId> {
    let mut v: Vec<ResourceId> = plan::graph(s).iter().map(|n| n.id()).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<ResourceId>) -> Vec<ResourceId> {
    v.sort();
    v
}

/// Mutating calls of one clean apply (the number of steps to fail or crash at).
async fn mutations_of_clean_apply(s: &gitpod_refarch::ReferenceArchitecture) -> u64 {
    let h = Harness::new(LatencyProfile::realistic());
    h.engine()
        .apply_spec(s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    h.sim.counts().mutating
}

#[tokio::test(start_paused = true)]
async fn apply_creates_everything_and_reapply_makes_no_mutating_call() {
    let s = spec(Cloud::Gcp);
    let h = Harness::new(LatencyProfile::realistic());
    let engine = h.engine();
    let plan = engine.plan(&s).await.unwrap();
    assert!(
        plan.steps().iter().all(|st| st.action == Action::Create),
        "{plan}"
    );
    let report = engine.apply(&plan).await.unwrap().into_result().unwrap();
    assert_eq!(sorted(report.changed.clone()), all_ids(&s));
    assert_eq!(sorted(h.sim.resources()), all_ids(&s));
    assert!(h.sim.duplicates().is_empty());
    assert_eq!(report.outputs.name_servers().map(<[String]>::len), Some(4));
    assert!(report
        .outputs
        .cluster()
        .is_some_and(|c| c.endpoint.starts_with("https://")));

    // A new process: same cloud, same state.
    h.sim.reset_counts();
    let engine = h.engine();
    let plan = engine.plan(&s).await.unwrap();
    assert!(!plan.has_changes(), "{plan}");
    let report = engine.apply(&plan).await.unwrap().into_result().unwrap();
    assert!(report.changed.is_empty());
    let c = h.sim.counts();
    assert_eq!(c.mutating, 0, "{c:?}");
    assert_eq!(c.polls, 0);
    // Exactly one read per resource.
    assert_eq!(c.reads, plan::graph(&s).len() as u64, "{c:?}");
    // Outputs with secrets come from state, complete.
    assert!(report.outputs.database().is_some());
    assert!(report.outputs.storage().is_some());
}

#[tokio::test(start_paused = true)]
async fn running_every_step_twice_changes_nothing_the_second_time() {
    // Execute the same all-create plan twice: every ensure runs again on an existing
    // resource and must adopt it (lookup before create).
    let s = spec(Cloud::Aws);
    let h = Harness::new(LatencyProfile::realistic());
    let engine = h.engine();
    let plan = engine.plan(&s).await.unwrap();
    engine.apply(&plan).await.unwrap().into_result().unwrap();
    let first = h.sim.counts().mutating;
    // The same plan again is refused: the state moved on since it was made.
    let stale = engine.apply(&plan).await.unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::StateChanged, "{stale}");
    assert!(
        stale.message().contains("since this plan was made"),
        "{stale}"
    );
    assert_eq!(h.sim.counts().mutating, first, "a refused plan made calls");
    // The same all-create plan over the current state (the planner is pure: a
    // snapshot that observed nothing), so every ensure meets an existing resource.
    let mut snap = engine.observe(&s).await.unwrap();
    snap.observed.values_mut().for_each(|o| *o = None);
    snap.stored_outputs.clear();
    let again = plan::plan(&s, &snap).unwrap();
    assert_eq!(again.steps().len(), plan.steps().len());
    engine.apply(&again).await.unwrap().into_result().unwrap();
    assert_eq!(h.sim.counts().mutating, first, "second execution mutated");
    assert!(h.sim.duplicates().is_empty());
    assert!(!engine.plan(&s).await.unwrap().has_changes());
}

#[tokio::test(start_paused = true)]
async fn a_failure_at_every_step_then_a_rerun_converges() {
    let s = spec(Cloud::Gcp);
    let n = mutations_of_clean_apply(&s).await;
    assert!(n >= 13, "{n}");
    for k in 1..=n {
        let h = Harness::new(LatencyProfile::realistic());
        h.sim.set_faults(Faults::fail_at(k));
        let report = h.engine().apply_spec(&s).await.unwrap();
        assert!(!report.is_success(), "k={k}: expected a failure");
        assert_eq!(report.failed.len(), 1, "k={k}");
        assert_eq!(report.failed[0].1.kind(), ErrorKind::Permission);
        h.sim.set_faults(Faults::none());
        let report = h.engine().apply_spec(&s).await.unwrap();
        assert!(
            report.is_success(),
            "k={k}: rerun failed: {:?}",
            report.failed
        );
        assert!(h.sim.duplicates().is_empty(), "k={k}");
        assert_eq!(sorted(h.sim.resources()), all_ids(&s), "k={k}");
        assert!(!h.engine().plan(&s).await.unwrap().has_changes(), "k={k}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_step_then_a_resume_converges() {
    let s = spec(Cloud::Gcp);
    let n = mutations_of_clean_apply(&s).await;
    for k in 1..=n {
        let h = Harness::new(LatencyProfile::realistic());
        h.sim.set_faults(Faults::crash_at(k));
        {
            let engine = h.engine();
            let s2 = s.clone();
            tokio::select! {
                r = engine.apply_spec(&s2) => panic!("k={k}: the run finished despite the crash: {:?}", r.map(|r| r.changed)),
                () = h.sim.crashed() => {}
            }
            // The engine and its in-flight futures are dropped here, like a killed process.
        }
        // The killed run's lock stays (as a killed process leaves it): broken on purpose.
        let held = h
            .store
            .current_lock()
            .await
            .unwrap()
            .expect("the killed run's lock");
        assert_eq!(held.operation, "apply");
        h.store.break_lock(&held.id).await.unwrap();
        h.sim.set_faults(Faults::none());
        let report = h.engine().apply_spec(&s).await.unwrap();
        assert!(
            report.is_success(),
            "k={k}: resume failed: {:?}",
            report.failed
        );
        assert!(h.sim.duplicates().is_empty(), "k={k}");
        assert_eq!(sorted(h.sim.resources()), all_ids(&s), "k={k}");
        assert!(!h.engine().plan(&s).await.unwrap().has_changes(), "k={k}");
        // The database password survived the crash: the user's password equals state's.
        let out = h.engine().outputs("gp").await.unwrap();
        assert!(out.database().is_some(), "k={k}");
    }
}

#[tokio::test(start_paused = true)]
async fn twenty_percent_transient_faults_still_converge_without_duplicates() {
    for seed in [1u64, 2, 3, 4, 5] {
        let s = spec(Cloud::Azure);
        let h = Harness::new(LatencyProfile::realistic());
        h.sim.set_faults(Faults::random(0.2, seed));
        let report = h.engine().apply_spec(&s).await.unwrap();
        assert!(report.is_success(), "seed {seed}: {:?}", report.failed);
        assert!(h.sim.duplicates().is_empty(), "seed {seed}");
        assert_eq!(sorted(h.sim.resources()), all_ids(&s));
        assert!(
            h.sim.counts().injected_errors > 0,
            "seed {seed}: no fault was injected"
        );
        assert!(h
            .events()
            .iter()
            .any(|e| matches!(e, Event::Retrying { .. })));
        let report = h.engine().destroy(&s).await.unwrap();
        assert!(
            report.is_success(),
            "seed {seed}: destroy: {:?}",
            report.failed
        );
        assert!(
            h.sim.resources().is_empty(),
            "seed {seed}: left {:?}",
            h.sim.resources()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn destroy_removes_everything_in_reverse_order_and_is_safe_to_repeat() {
    let s = spec(Cloud::Aws);
    let h = Harness::new(LatencyProfile::realistic());
    h.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let plan = h.engine().plan_destroy(&s).await.unwrap();
    let pos = |k: ResourceKind| plan.steps().iter().position(|st| st.id.kind == k).unwrap();
    assert!(pos(ResourceKind::NodePool) < pos(ResourceKind::Cluster));
    assert!(pos(ResourceKind::Cluster) < pos(ResourceKind::Network));
    assert!(pos(ResourceKind::Database) < pos(ResourceKind::DatabaseInstance));
    let report = h
        .engine()
        .apply(&plan)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert!(report.not_removed().is_empty());
    assert!(h.sim.resources().is_empty(), "{:?}", h.sim.resources());
    // The sim refuses out-of-order deletes, so success above proves the order was honoured.
    h.sim.reset_counts();
    let again = h.engine().destroy(&s).await.unwrap().into_result().unwrap();
    assert!(again.changed.is_empty());
    assert_eq!(h.sim.counts().mutating, 0);
}

#[tokio::test(start_paused = true)]
async fn drift_shows_up_as_an_update_and_apply_repairs_it() {
    let s = spec(Cloud::Gcp);
    let h = Harness::new(LatencyProfile::instant());
    h.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let pool = ResourceId::new(ResourceKind::NodePool, "regular-ws");
    assert!(h.sim.tamper(&pool, |d| {
        if let Desired::NodePool(p) = d {
            p.max_nodes = 7;
        }
    }));
    let plan = h.engine().plan(&s).await.unwrap();
    match &plan.step(&pool).unwrap().action {
        Action::Update { changes, .. } => {
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0].path, "maxNodes");
            assert_eq!(changes[0].from, 7);
            assert_eq!(changes[0].to, 50);
            assert_eq!(changes[0].effect, Effect::Update);
        }
        other => panic!("expected an update, got {other:?}"),
    }
    assert!(plan.to_string().contains("maxNodes: 7 -> 50"), "{plan}");
    h.engine()
        .apply(&plan)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert!(!h.engine().plan(&s).await.unwrap().has_changes());
}

#[tokio::test(start_paused = true)]
async fn disruptive_replacement_is_refused_before_any_call_unless_allowed() {
    let mut s = spec(Cloud::Gcp);
    let h = Harness::new(LatencyProfile::instant());
    h.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    s.node_pools
        .get_mut(PoolRole::HeadlessWorkspaces)
        .machine_type = "n2d-standard-32".into();
    let plan = h.engine().plan(&s).await.unwrap();
    let id = ResourceId::new(ResourceKind::NodePool, "headless-ws");
    assert!(matches!(
        plan.step(&id).unwrap().action,
        Action::Replace {
            disruptive: true,
            ..
        }
    ));
    h.sim.reset_counts();
    let err = h.engine().apply(&plan).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.resource(), Some(&id));
    assert_eq!(h.sim.counts().mutating, 0);
    let engine = h.engine_with(|b| b.allow_disruptive(true));
    engine.apply(&plan).await.unwrap().into_result().unwrap();
    match h.sim.get(&id) {
        Some(Desired::NodePool(p)) => assert_eq!(p.machine_type, "n2d-standard-32"),
        other => panic!("{other:?}"),
    }
    assert!(h.sim.duplicates().is_empty());
}

#[tokio::test(start_paused = true)]
async fn wall_time_equals_the_critical_path_and_serial_lanes_avoid_conflicts() {
    let s = spec(Cloud::Gcp);
    let profile = LatencyProfile::realistic();
    let h = Harness::new(profile.clone());
    let report = h
        .engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    // foundation -> network -> cluster -> three pools, one after another on a serial
    // cluster lane; everything else runs beside it.
    let cp = profile.create(ResourceKind::Foundation)
        + profile.create(ResourceKind::Network)
        + profile.create(ResourceKind::Cluster)
        + profile.create(ResourceKind::NodePool) * 3;
    let elapsed = report.elapsed;
    assert!(elapsed >= cp, "{elapsed:?} < {cp:?}");
    assert!(
        elapsed.as_secs_f64() <= cp.as_secs_f64() * 1.02,
        "{elapsed:?} vs {cp:?}"
    );
    assert_eq!(h.sim.counts().conflicts, 0);

    // Strictly serial: the sum of all steps.
    let h2 = Harness::new(profile.clone());
    let serial = h2
        .engine_with(|b| b.concurrency(1))
        .apply_spec(&s)
        .await
        .unwrap();
    assert!(
        serial.elapsed > elapsed + Duration::from_secs(500),
        "{:?}",
        serial.elapsed
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_dependency_skips_its_dependents_and_independent_work_completes() {
    let s = spec(Cloud::Aws);
    let h = Harness::new(LatencyProfile::instant());
    // The network is the second mutating call with concurrency 1 (after the foundation).
    h.sim.set_faults(Faults::fail_at(2));
    let report = h
        .engine_with(|b| b.concurrency(1))
        .apply_spec(&s)
        .await
        .unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0.kind, ResourceKind::Network);
    let skipped: Vec<ResourceKind> = report.skipped.iter().map(|id| id.kind).collect();
    for k in [
        ResourceKind::Cluster,
        ResourceKind::NodePool,
        ResourceKind::DatabaseInstance,
        ResourceKind::Database,
    ] {
        assert!(skipped.contains(&k), "{k:?} not skipped: {skipped:?}");
    }
    let changed: Vec<ResourceKind> = report.changed.iter().map(|id| id.kind).collect();
    for k in [
        ResourceKind::DnsZone,
        ResourceKind::ObjectStorage,
        ResourceKind::Registry,
        ResourceKind::ClusterIdentity,
    ] {
        assert!(changed.contains(&k), "{k:?} not done: {changed:?}");
    }
    assert!(report.into_result().is_err());
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_scheduling_lets_in_flight_finish_and_a_rerun_converges() {
    let s = spec(Cloud::Gcp);
    let h = Harness::new(LatencyProfile::realistic());
    let engine = std::sync::Arc::new(h.engine());
    let e2 = engine.clone();
    let s2 = s.clone();
    let run = tokio::spawn(async move { e2.apply_spec(&s2).await });
    // Cancel while the cluster is being created.
    tokio::time::sleep(Duration::from_secs(120)).await;
    engine.cancel();
    let report = run.await.unwrap().unwrap();
    assert!(report.cancelled);
    assert!(!report.skipped.is_empty());
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    // In-flight operations were allowed to finish: nothing is left half-created.
    let rerun = h.engine().apply_spec(&s).await.unwrap();
    assert!(rerun.is_success());
    assert!(h.sim.duplicates().is_empty());
    assert!(!h.engine().plan(&s).await.unwrap().has_changes());
}

#[tokio::test(start_paused = true)]
async fn deletion_protection_retains_the_database_and_what_it_needs() {
    let mut s = spec(Cloud::Aws);
    s.database.cloud_mut().unwrap().deletion_protection = true;
    let h = Harness::new(LatencyProfile::instant());
    h.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let report = h.engine().destroy(&s).await.unwrap();
    let retained: Vec<ResourceKind> = report.retained.iter().map(|(id, _)| id.kind).collect();
    assert!(retained.contains(&ResourceKind::DatabaseInstance));
    assert!(retained.contains(&ResourceKind::Network));
    assert!(retained.contains(&ResourceKind::Foundation));
    let left: Vec<ResourceKind> = h.sim.resources().iter().map(|id| id.kind).collect();
    assert!(!left.contains(&ResourceKind::Cluster));
    assert!(!left.contains(&ResourceKind::Database));
    assert!(left.contains(&ResourceKind::DatabaseInstance));
    assert!(!report.not_removed().is_empty());
}

#[tokio::test(start_paused = true)]
async fn records_are_created_with_a_target_and_deleted_when_it_is_removed() {
    let mut s = spec(Cloud::Gcp);
    s.dns
        .set_records_target(Some(RecordsTarget::Ipv4("203.0.113.10".into())));
    let h = Harness::new(LatencyProfile::instant());
    h.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let rec = ResourceId::new(ResourceKind::DnsRecords, "gitpod.example.com");
    match h.sim.get(&rec) {
        Some(Desired::DnsRecords(r)) => {
            assert_eq!(
                r.names,
                vec![
                    "gitpod.example.com",
                    "*.gitpod.example.com",
                    "*.ws.gitpod.example.com"
                ]
            )
        }
        other => panic!("{other:?}"),
    }
    s.dns.set_records_target(None);
    let plan = h.engine().plan(&s).await.unwrap();
    assert_eq!(plan.step(&rec).unwrap().action, Action::Delete);
    h.engine()
        .apply(&plan)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert!(h.sim.get(&rec).is_none());
}

#[tokio::test(start_paused = true)]
async fn providers_from_different_clouds_compose() {
    use gitpod_refarch::sim::SimCloud;
    use std::sync::Arc;
    let s = spec(Cloud::Aws);
    let h = Harness::new(LatencyProfile::instant());
    let dns = Arc::new(SimCloud::new(h.clock.clone(), LatencyProfile::instant()));
    let providers = gitpod_refarch::Providers::builder()
        .cluster(h.sim.clone())
        .dns(dns.clone())
        .object_store(h.sim.clone())
        .registry(h.sim.clone())
        .database(h.sim.clone())
        .build()
        .unwrap();
    let engine = gitpod_refarch::Engine::builder(providers)
        .clock(h.clock.clone())
        .state(h.store.clone())
        .build()
        .unwrap();
    engine.apply_spec(&s).await.unwrap().into_result().unwrap();
    let dns_kinds: Vec<ResourceKind> = dns.resources().iter().map(|id| id.kind).collect();
    assert_eq!(
        dns_kinds,
        vec![ResourceKind::DnsZone, ResourceKind::DnsIdentity]
    );
    assert!(h
        .sim
        .resources()
        .iter()
        .all(|id| id.kind.domain() != gitpod_refarch::resource::Domain::Dns));
    engine.destroy(&s).await.unwrap().into_result().unwrap();
    assert!(dns.resources().is_empty() && h.sim.resources().is_empty());
}

#[tokio::test(start_paused = true)]
async fn lost_credentials_are_reissued_and_the_password_is_kept() {
    let s = spec(Cloud::Gcp);
    let h = Harness::new(LatencyProfile::instant());
    h.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let before = h.engine().installer_bundle(&s).await.unwrap();
    // Lose the stored outputs (not the generated secrets).
    let loaded = gitpod_refarch::state::StateStore::load(h.store.as_ref())
        .await
        .unwrap()
        .unwrap();
    let mut st = loaded.state;
    st.outputs
        .retain(|id, _| id.kind != ResourceKind::DnsIdentity);
    gitpod_refarch::state::StateStore::save(h.store.as_ref(), &st, Some(&loaded.generation))
        .await
        .unwrap();
    let plan = h.engine().plan(&s).await.unwrap();
    let id = ResourceId::new(ResourceKind::DnsIdentity, "gp");
    assert!(
        matches!(
            &plan.step(&id).unwrap().action,
            Action::Update { reasons, .. } if !reasons.is_empty()
        ),
        "{plan}"
    );
    h.engine()
        .apply(&plan)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert!(h
        .engine()
        .outputs("gp")
        .await
        .unwrap()
        .dns_credentials()
        .is_some());
    let after = h.engine().installer_bundle(&s).await.unwrap();
    assert_eq!(
        before.secret("database").unwrap().data,
        after.secret("database").unwrap().data
    );
}

#[tokio::test(start_paused = true)]
async fn state_of_another_installation_is_refused() {
    let s = spec(Cloud::Gcp);
    let h = Harness::new(LatencyProfile::instant());
    h.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let mut other = s.clone();
    other.name = "other".into();
    h.sim.reset_counts();
    let err = h.engine().plan(&other).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::State);
    assert_eq!(h.sim.counts().reads, 0);
}

#[tokio::test(start_paused = true)]
async fn a_kubernetes_upgrade_updates_the_cluster_then_its_pools_in_place() {
    let mut s = spec(Cloud::Gcp);
    s.cluster.kubernetes_version = "1.32".into();
    let h = Harness::new(LatencyProfile::realistic());
    h.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    s.cluster.kubernetes_version = "1.33".into();
    let plan = h.engine().plan(&s).await.unwrap();
    let updated: Vec<ResourceKind> = plan
        .steps()
        .iter()
        .filter(|st| matches!(st.action, Action::Update { .. }))
        .map(|st| st.id.kind)
        .collect();
    assert_eq!(
        updated
            .iter()
            .filter(|k| **k == ResourceKind::Cluster)
            .count(),
        1,
        "{plan}"
    );
    assert_eq!(
        updated
            .iter()
            .filter(|k| **k == ResourceKind::NodePool)
            .count(),
        3,
        "{plan}"
    );
    assert!(plan.disruptive_steps().next().is_none(), "{plan}");
    h.engine()
        .apply(&plan)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    // The pools started only after the cluster's update was done.
    let events = h.events();
    let done_at = |k: ResourceKind| {
        events
            .iter()
            .rposition(|e| matches!(e, Event::StepDone { resource, .. } if resource.kind == k))
    };
    let started_at = |k: ResourceKind| {
        events
            .iter()
            .rposition(|e| matches!(e, Event::StepStarted { resource, .. } if resource.kind == k))
    };
    assert!(done_at(ResourceKind::Cluster) < started_at(ResourceKind::NodePool));
    match h
        .sim
        .get(&ResourceId::new(ResourceKind::NodePool, "services"))
    {
        Some(Desired::NodePool(p)) => assert_eq!(p.kubernetes_version, "1.33"),
        other => panic!("{other:?}"),
    }
    assert!(!h.engine().plan(&s).await.unwrap().has_changes());
}

#[tokio::test(start_paused = true)]
async fn outputs_read_by_the_plan_reach_the_state_without_a_step() {
    use gitpod_refarch::state::StateStore as _;
    // An operation that finished while no process watched it: the resource exists with
    // its outputs, but the state never heard of them.
    let s = spec(Cloud::Azure);
    let h = Harness::new(LatencyProfile::instant());
    assert!(h.engine().apply_spec(&s).await.unwrap().is_success());
    let network = ResourceId::new(ResourceKind::Network, "gp");
    let loaded = h.store.load().await.unwrap().unwrap();
    let mut state = loaded.state;
    assert!(state.outputs.remove(&network).is_some());
    h.store
        .save(&state, Some(&loaded.generation))
        .await
        .unwrap();
    assert!(h
        .engine()
        .outputs("gp")
        .await
        .unwrap()
        .all()
        .get(&network)
        .is_none());

    let plan = h.engine().plan(&s).await.unwrap();
    assert!(!plan.has_changes(), "the network needs nothing");
    h.sim.reset_counts();
    assert!(h.engine().apply(&plan).await.unwrap().is_success());
    assert_eq!(h.sim.counts().mutating, 0);
    assert!(
        h.engine()
            .outputs("gp")
            .await
            .unwrap()
            .all()
            .get(&network)
            .is_some(),
        "the network's outputs are in the state again"
    );
    // Nothing more to save on the next run.
    let saves = h.store.saves();
    let plan = h.engine().plan(&s).await.unwrap();
    h.engine().apply(&plan).await.unwrap();
    assert_eq!(h.store.saves(), saves);
}

/// A memory store whose saves take `delay` (a remote store under load) and fail once
/// `ok` saves were made (a backend gone away).
struct TestStore {
    inner: gitpod_refarch::state::MemoryStateStore,
    delay: Duration,
    ok: std::sync::atomic::AtomicUsize,
    loads: std::sync::atomic::AtomicUsize,
}

impl TestStore {
    fn new(delay: Duration, ok: usize) -> Self {
        TestStore {
            inner: gitpod_refarch::state::MemoryStateStore::new(),
            delay,
            ok: std::sync::atomic::AtomicUsize::new(ok),
            loads: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl gitpod_refarch::state::StateStore for TestStore {
    fn location(&self) -> String {
        "test".into()
    }
    async fn load(&self) -> gitpod_refarch::Result<Option<gitpod_refarch::state::Stored>> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.load().await
    }
    async fn save(
        &self,
        state: &gitpod_refarch::state::State,
        expected: Option<&gitpod_refarch::state::Generation>,
    ) -> gitpod_refarch::Result<gitpod_refarch::state::Generation> {
        use std::sync::atomic::Ordering;
        tokio::time::sleep(self.delay).await;
        if self
            .ok
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(gitpod_refarch::Error::new(
                ErrorKind::State,
                "the state backend is gone",
            ));
        }
        self.inner.save(state, expected).await
    }
    async fn lock(
        &self,
        request: &gitpod_refarch::state::LockRequest,
    ) -> gitpod_refarch::Result<gitpod_refarch::state::LockInfo> {
        self.inner.lock(request).await
    }
    async fn unlock(&self, lock: &gitpod_refarch::state::LockInfo) -> gitpod_refarch::Result<()> {
        self.inner.unlock(lock).await
    }
    async fn current_lock(
        &self,
    ) -> gitpod_refarch::Result<Option<gitpod_refarch::state::LockInfo>> {
        self.inner.current_lock().await
    }
    async fn break_lock(
        &self,
        id: &str,
    ) -> gitpod_refarch::Result<gitpod_refarch::state::LockInfo> {
        self.inner.break_lock(id).await
    }
}

/// The bundle and the outputs a controller reports after each reconcile come from one
/// read of the state, and match what the two separate calls return.
#[tokio::test(start_paused = true)]
async fn the_bundle_and_the_outputs_come_from_one_read_of_the_state() {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    let s = spec(Cloud::Gcp);
    let h = Harness::new(LatencyProfile::instant());
    let store = Arc::new(TestStore::new(Duration::ZERO, usize::MAX));
    let engine = h.engine_with(|b| b.state(store.clone()));
    engine.apply_spec(&s).await.unwrap().into_result().unwrap();

    store.loads.store(0, Ordering::SeqCst);
    let (bundle, outputs) = engine.installer_bundle_and_outputs(&s).await.unwrap();
    assert_eq!(store.loads.load(Ordering::SeqCst), 1);

    assert_eq!(outputs, engine.outputs("gp").await.unwrap());
    assert!(outputs.dns_credentials().is_some());
    let alone = engine.installer_bundle(&s).await.unwrap();
    assert_eq!(bundle.config_yaml().unwrap(), alone.config_yaml().unwrap());
    assert_eq!(bundle.secrets, alone.secrets);
    assert!(!bundle.secrets.is_empty());
}

/// Concurrent steps share state writes (group commit) when the store is slow, and a
/// step is reported done only once a write holding its outputs and its finished
/// intent is stored.
#[tokio::test(start_paused = true)]
async fn slow_store_saves_are_shared_and_every_done_step_is_durable() {
    use std::sync::{Arc, Mutex};
    let s = spec(Cloud::Gcp);

    // The same apply on an instant store: one write per change.
    let fast = Harness::new(LatencyProfile::instant());
    fast.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let one_write_per_change = fast.store.saves();

    let h = Harness::new(LatencyProfile::instant());
    let store = Arc::new(TestStore::new(Duration::from_millis(300), usize::MAX));
    let not_durable: Arc<Mutex<Vec<String>>> = Arc::default();
    let (seen, probe) = (not_durable.clone(), store.clone());
    let sink: gitpod_refarch::engine::EventSink = Arc::new(move |e: &Event| {
        if let Event::StepDone { resource, .. } = e {
            let stored = probe.inner.snapshot().unwrap_or_default();
            let output = stored.outputs.contains_key(resource);
            let intent_done = stored
                .journal
                .iter()
                .rev()
                .find(|j| &j.resource == resource)
                .is_some_and(|j| j.done);
            if !(output && intent_done) {
                seen.lock().unwrap().push(resource.to_string());
            }
        }
    });
    let engine = h.engine_with(|b| b.state(store.clone()).on_event(sink));
    let report = engine.apply_spec(&s).await.unwrap().into_result().unwrap();
    assert!(!report.changed.is_empty());
    assert_eq!(not_durable.lock().unwrap().as_slice(), &[] as &[String]);
    let shared = store.inner.saves();
    assert!(
        shared < one_write_per_change,
        "{shared} writes on the slow store, {one_write_per_change} on the instant one"
    );
    // Nothing was lost: every output of the instant run is in the slow run's state.
    let a = fast.store.snapshot().unwrap();
    let b = store.inner.snapshot().unwrap();
    assert_eq!(
        a.outputs.keys().collect::<Vec<_>>(),
        b.outputs.keys().collect::<Vec<_>>()
    );
    assert!(b.journal.iter().all(|j| j.done));
    // And a second run converges with nothing to do.
    let plan = engine.plan(&s).await.unwrap();
    assert!(plan.steps().iter().all(|st| !st.action.is_mutating()));
}

/// A run killed at any mutating call of an installation with DNS records, resumed
/// with a spec that no longer wants the records: the records' intent was stored
/// before their call, so the resume finds them and removes them; nothing leaks.
#[tokio::test(start_paused = true)]
async fn a_crash_anywhere_then_dropping_the_records_leaves_no_records() {
    let mut s = spec(Cloud::Gcp);
    s.dns
        .set_records_target(Some(RecordsTarget::Ipv4("203.0.113.10".into())));
    let n = mutations_of_clean_apply(&s).await;
    let rec = ResourceId::new(ResourceKind::DnsRecords, "gitpod.example.com");
    let mut killed_with_records = 0;
    for k in 1..=n {
        let h = Harness::new(LatencyProfile::realistic());
        h.sim.set_faults(Faults::crash_at(k));
        {
            let engine = h.engine();
            tokio::select! {
                r = engine.apply_spec(&s) => panic!("k={k}: finished despite the crash: {:?}", r.map(|r| r.changed)),
                () = h.sim.crashed() => {}
            }
        }
        if h.sim.get(&rec).is_some() {
            killed_with_records += 1;
        }
        let held = h.store.current_lock().await.unwrap().expect("lock");
        h.store.break_lock(&held.id).await.unwrap();
        h.sim.set_faults(Faults::none());
        let mut without = s.clone();
        without.dns.set_records_target(None);
        let report = h.engine().apply_spec(&without).await.unwrap();
        assert!(report.is_success(), "k={k}: {:?}", report.failed);
        assert!(h.sim.get(&rec).is_none(), "k={k}: the records leaked");
        assert!(h.sim.duplicates().is_empty(), "k={k}");
        assert_eq!(sorted(h.sim.resources()), all_ids(&without), "k={k}");
    }
    assert!(
        killed_with_records > 0,
        "no crash came after the records were made"
    );
}

/// The store failing mid-run: the steps whose saves fail are reported failed (with
/// the store's error), the run's report is kept, and the next run with a working
/// store converges.
#[tokio::test(start_paused = true)]
async fn a_store_that_fails_mid_run_fails_its_steps_and_keeps_the_report() {
    let s = spec(Cloud::Gcp);
    let h = Harness::new(LatencyProfile::instant());
    let store = std::sync::Arc::new(TestStore::new(Duration::ZERO, 3));
    let report = h
        .engine_with(|b| b.state(store.clone()))
        .apply_spec(&s)
        .await
        .expect("a report, not an error");
    assert!(!report.failed.is_empty());
    assert!(report
        .failed
        .iter()
        .all(|(_, e)| e.chain().contains("the state backend is gone")));
    // The backend is back: the next run adopts what the failed one made.
    store
        .ok
        .store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
    let report = h
        .engine_with(|b| b.state(store.clone()))
        .apply_spec(&s)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failed);
    assert!(h.sim.duplicates().is_empty());
    assert!(!h
        .engine_with(|b| b.state(store.clone()))
        .plan(&s)
        .await
        .unwrap()
        .has_changes());
}

/// With a persist interval, a step whose outputs hold no secret is written with the
/// next save instead of its own: fewer writes, every output that holds a secret
/// stored before its step is reported done, the same state at the end, and a second
/// run with nothing to do.
#[tokio::test(start_paused = true)]
async fn a_persist_interval_writes_less_and_stores_secrets_at_once() {
    use std::sync::{Arc, Mutex};
    let s = spec(Cloud::Gcp);
    let every = Harness::new(LatencyProfile::realistic());
    every
        .engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let every_step = every.store.saves();

    let h = Harness::new(LatencyProfile::realistic());
    // (resource, whether its output was stored when it was reported done)
    let at_done: Arc<Mutex<Vec<(ResourceId, bool)>>> = Arc::default();
    let (seen, probe) = (at_done.clone(), h.store.clone());
    let sink: gitpod_refarch::engine::EventSink = Arc::new(move |e: &Event| {
        if let Event::StepDone { resource, .. } = e {
            let stored = probe
                .snapshot()
                .is_some_and(|st| st.outputs.contains_key(resource));
            seen.lock().unwrap().push((resource.clone(), stored));
        }
    });
    let engine = h.engine_with(|b| b.persist_interval(Duration::from_secs(3600)).on_event(sink));
    let report = engine.apply_spec(&s).await.unwrap().into_result().unwrap();
    let fewer = h.store.saves();
    assert!(
        fewer < every_step,
        "{fewer} writes with the interval, {every_step} after every step"
    );
    let end = h.store.snapshot().unwrap();
    let a = every.store.snapshot().unwrap();
    assert_eq!(
        a.outputs.keys().collect::<Vec<_>>(),
        end.outputs.keys().collect::<Vec<_>>()
    );
    assert!(end.journal.iter().all(|j| j.done));
    let at_done = at_done.lock().unwrap().clone();
    assert_eq!(at_done.len(), report.changed.len());
    let mut with_secret = 0;
    let mut waited = 0;
    for (id, stored) in &at_done {
        if end.outputs[id].has_secret() {
            with_secret += 1;
            assert!(stored, "{id} holds a secret and was not stored when done");
        } else if !stored {
            waited += 1;
        }
    }
    assert!(with_secret > 0 && waited > 0, "{at_done:?}");
    let plan = engine.plan(&s).await.unwrap();
    assert!(plan.steps().iter().all(|st| !st.action.is_mutating()));
}

/// A run with a persist interval killed at any mutating call resumes with no
/// duplicate and converges: what it had not written yet, the next run observes. The
/// crashes do hit states that the interval left behind (more made resources missing
/// from the stored outputs than when every step is written).
#[tokio::test(start_paused = true)]
async fn a_crash_anywhere_with_a_persist_interval_resumes_without_duplicates() {
    let s = spec(Cloud::Gcp);
    let n = mutations_of_clean_apply(&s).await;
    let mut unwritten = [0usize; 2];
    for k in 1..=n {
        for (i, interval) in [Duration::ZERO, Duration::from_secs(3600)]
            .into_iter()
            .enumerate()
        {
            let h = Harness::new(LatencyProfile::realistic());
            h.sim.set_faults(Faults::crash_at(k));
            {
                let engine = h.engine_with(|b| b.persist_interval(interval));
                tokio::select! {
                    r = engine.apply_spec(&s) => panic!("k={k}: finished despite the crash: {:?}", r.map(|r| r.changed)),
                    () = h.sim.crashed() => {}
                }
            }
            let stored = h.store.snapshot().map(|st| st.outputs).unwrap_or_default();
            unwritten[i] += h
                .sim
                .resources()
                .iter()
                .filter(|id| !stored.contains_key(*id))
                .count();
            let held = h.store.current_lock().await.unwrap().expect("lock");
            h.store.break_lock(&held.id).await.unwrap();
            h.sim.set_faults(Faults::none());
            let report = h
                .engine_with(|b| b.persist_interval(interval))
                .apply_spec(&s)
                .await
                .unwrap();
            assert!(report.is_success(), "k={k}: {:?}", report.failed);
            assert!(h.sim.duplicates().is_empty(), "k={k}");
            assert_eq!(sorted(h.sim.resources()), all_ids(&s), "k={k}");
            assert!(
                !h.engine().plan(&s).await.unwrap().has_changes(),
                "k={k}: a third run has changes"
            );
        }
    }
    assert!(
        unwritten[1] > unwritten[0],
        "made but not stored at the crashes: {} with the interval, {} without",
        unwritten[1],
        unwritten[0]
    );
}
