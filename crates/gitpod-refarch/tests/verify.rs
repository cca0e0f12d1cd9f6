//! `Engine::verify` on the simulated cloud (which is also a `Verifier`), on virtual time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unused_must_use
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{spec, Harness};
use gitpod_refarch::engine::{Event, VerifyOptions};
use gitpod_refarch::resource::ResourceKind;
use gitpod_refarch::sim::LatencyProfile;
use gitpod_refarch::spec::Cloud;
use gitpod_refarch::verify::{Check, CheckStatus, Part, Vantage, Verifier, VerifyContext};
use gitpod_refarch::{Engine, ErrorKind, Providers, VerifyReport};

/// An engine over the harness' cloud and state, with the sim as its verifier.
fn verifying(h: &Harness) -> Engine {
    h.engine_with(|_| {
        Engine::builder(
            Providers::all(h.sim.clone())
                .with_in_cluster(h.sim.clone())
                .with_verifier(h.sim.clone()),
        )
        .clock(h.clock.clone())
        .state(h.store.clone())
        .on_event({
            let events = h.events.clone();
            Arc::new(move |e: &Event| events.lock().unwrap().push(e.clone()))
        })
    })
}

async fn applied(h: &Harness) {
    let s = spec(Cloud::Gcp);
    h.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
}

fn statuses(r: &VerifyReport) -> Vec<(String, CheckStatus)> {
    r.checks.iter().map(|c| (c.id.clone(), c.status)).collect()
}

#[tokio::test(start_paused = true)]
async fn after_apply_every_sim_check_passes_and_each_is_an_event() {
    let h = Harness::new(LatencyProfile::realistic());
    applied(&h).await;
    let events_before = h.events().len();
    h.sim.reset_counts();
    let r = verifying(&h).verify(&spec(Cloud::Gcp)).await.unwrap();
    assert!(r.ok, "{r}");
    let (pass, fail, skip) = r.counts();
    assert_eq!((fail, skip), (0, 0), "{r}");
    for id in [
        "cluster.cluster",
        "cluster.node-pool.services",
        "cluster.secrets",
        "dns.dns-zone",
        "database.database-instance",
        "database.secrets",
        "database.connect",
        "storage.credentials",
        "registry.auth",
        "registry.secrets",
    ] {
        assert_eq!(
            r.check(id).map(|c| c.status),
            Some(CheckStatus::Pass),
            "{id}: {r}"
        );
    }
    assert!(r.checks.iter().all(|c| c.from == Vantage::Simulated));
    // Verify reads: no call to the cloud's API at all.
    assert_eq!(h.sim.counts().mutating, 0);

    let events = h.events()[events_before..].to_vec();
    let checked = events
        .iter()
        .filter(|e| matches!(e, Event::Checked { .. }))
        .count();
    assert_eq!(checked, r.checks.len());
    match events.last() {
        Some(Event::Verified {
            ok, passed, failed, ..
        }) => assert_eq!((*ok, *passed, *failed), (true, pass, 0)),
        other => panic!("last event {other:?}"),
    }
    // Summaries and events never hold a secret value of the bundle.
    let bundle = verifying(&h)
        .installer_bundle(&spec(Cloud::Gcp))
        .await
        .unwrap();
    let json = r.to_json();
    let events_json = serde_json::to_string(
        &events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for s in &bundle.secrets {
        for (k, v) in &s.data {
            let v = v.expose();
            if v.len() >= 8 && !["host", "port", "username"].contains(&k.as_str()) {
                assert!(!json.contains(v.as_str()), "{}/{k} in the report", s.name);
                assert!(
                    !events_json.contains(v.as_str()),
                    "{}/{k} in an event",
                    s.name
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn before_apply_and_after_destroy_every_part_is_skipped_not_applied() {
    let h = Harness::new(LatencyProfile::instant());
    let s = spec(Cloud::Gcp);
    let r = verifying(&h).verify(&s).await.unwrap();
    assert!(r.ok);
    assert_eq!(r.counts(), (0, 0, 5), "{r}");
    for part in Part::ALL {
        let c = r.check(&format!("{part}.applied")).unwrap();
        assert_eq!(c.reason.as_deref(), Some("not applied yet (run apply)"));
    }
    assert_eq!(h.sim.counts().reads, 0, "verify before apply made a call");

    applied(&h).await;
    assert!(verifying(&h).verify(&s).await.unwrap().counts().0 > 10);
    h.engine().destroy(&s).await.unwrap().into_result().unwrap();
    let r = verifying(&h).verify(&s).await.unwrap();
    assert_eq!(r.counts(), (0, 0, 5), "{r}");
}

#[tokio::test(start_paused = true)]
async fn a_resource_deleted_behind_the_engines_back_fails_with_its_id() {
    let h = Harness::new(LatencyProfile::instant());
    applied(&h).await;
    let registry = h
        .sim
        .resources()
        .into_iter()
        .find(|id| id.kind == ResourceKind::Registry)
        .unwrap();
    assert!(h.sim.remove(&registry));
    let r = verifying(&h).verify(&spec(Cloud::Gcp)).await.unwrap();
    assert!(!r.ok, "{r}");
    let failed: Vec<&str> = r.failures().map(|c| c.id.as_str()).collect();
    assert_eq!(failed, ["registry.registry", "registry.auth"], "{r}");
    let c = r.check("registry.registry").unwrap();
    assert!(c.summary.contains("does not exist"), "{c:?}");
    assert!(c.fix.as_deref().unwrap().contains("run apply"), "{c:?}");
    // The other parts still pass.
    assert_eq!(
        r.check("database.connect").map(|c| c.status),
        Some(CheckStatus::Pass)
    );
    let table = r.to_string();
    assert!(table.contains("fix: run apply"), "{table}");
    assert!(
        table.ends_with(&format!(
            "FAILED: {} passed, 2 failed, 0 skipped in 0.0s",
            r.counts().0
        )),
        "{table}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_database_deleted_behind_the_engines_back_fails_the_connection_check() {
    let h = Harness::new(LatencyProfile::instant());
    applied(&h).await;
    let db = h
        .sim
        .resources()
        .into_iter()
        .find(|id| id.kind == ResourceKind::Database)
        .unwrap();
    assert!(h.sim.remove(&db));
    let r = verifying(&h).verify(&spec(Cloud::Gcp)).await.unwrap();
    let failed: Vec<&str> = r.failures().map(|c| c.id.as_str()).collect();
    assert_eq!(failed, ["database.database", "database.connect"], "{r}");
    assert!(r
        .check("database.connect")
        .unwrap()
        .summary
        .contains("rejects the bundle's user or password"));
}

#[tokio::test(start_paused = true)]
async fn the_report_serializes_with_stable_ids_and_camel_case() {
    let h = Harness::new(LatencyProfile::instant());
    applied(&h).await;
    let r = verifying(&h).verify(&spec(Cloud::Gcp)).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["installation"], "gp");
    assert!(v["durationMs"].is_u64());
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), r.checks.len());
    // Part order: cluster, dns, database, registry, storage.
    assert_eq!(checks[0]["part"], "cluster");
    assert_eq!(checks.last().unwrap()["part"], "storage");
    for c in checks {
        assert_eq!(c["status"], "pass");
        assert_eq!(c["from"], "simulated");
        assert!(c["durationMs"].is_u64());
        let id = c["id"].as_str().unwrap();
        assert!(
            id.starts_with(&format!("{}.", c["part"].as_str().unwrap())),
            "{id}"
        );
        // A pass has neither a reason nor a fix.
        assert!(c.get("reason").is_none() && c.get("fix").is_none(), "{c}");
    }
    let back: VerifyReport = serde_json::from_value(v).unwrap();
    assert_eq!(statuses(&back), statuses(&r));
}

#[tokio::test(start_paused = true)]
async fn parts_without_a_verifier_are_skipped_naming_the_provider() {
    let h = Harness::new(LatencyProfile::instant());
    applied(&h).await;
    let r = h.engine().verify(&spec(Cloud::Gcp)).await.unwrap();
    assert_eq!(r.counts(), (0, 0, 5), "{r}");
    assert_eq!(
        r.check("database.verifier").unwrap().reason.as_deref(),
        Some("no verifier for database (provider sim)")
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_apply_names_the_missing_output() {
    use gitpod_refarch::state::StateStore;
    let h = Harness::new(LatencyProfile::instant());
    let s = spec(Cloud::Gcp);
    applied(&h).await;
    // The state of an apply stopped before the database: everything else recorded.
    let loaded = h.store.load().await.unwrap().unwrap();
    let mut st = loaded.state;
    st.outputs.retain(|id, _| {
        !matches!(
            id.kind,
            ResourceKind::Database | ResourceKind::DatabaseInstance
        )
    });
    h.store.save(&st, Some(&loaded.generation)).await.unwrap();
    let r = verifying(&h).verify(&s).await.unwrap();
    assert!(r.ok);
    assert_eq!(r.counts(), (0, 0, 5), "{r}");
    assert_eq!(
        r.check("database.applied").unwrap().reason.as_deref(),
        Some("no database output recorded yet (run apply)"),
        "{r}"
    );
    let storage = r.check("storage.applied").unwrap().reason.clone().unwrap();
    assert!(
        storage.contains("cannot be rendered yet (no database output yet: apply first)"),
        "{storage}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_invalid_spec_fails_before_any_call() {
    let h = Harness::new(LatencyProfile::instant());
    applied(&h).await;
    h.sim.reset_counts();
    let mut s = spec(Cloud::Gcp);
    s.name = "Bad_Name".into();
    let e = verifying(&h).verify(&s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.chain().contains("name"), "{}", e.chain());
    assert_eq!(h.sim.counts().reads, 0);
}

/// A verifier that never finishes.
struct Stuck;

#[gitpod_refarch::async_trait]
impl Verifier for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }
    fn parts(&self) -> Vec<Part> {
        vec![Part::Database, Part::Registry]
    }
    async fn verify(&self, _ctx: &VerifyContext<'_>) -> Vec<Check> {
        futures::future::pending::<()>().await;
        Vec::new()
    }
}

#[tokio::test(start_paused = true)]
async fn a_verifier_past_its_timeout_fails_each_of_its_parts_and_others_still_report() {
    let h = Harness::new(LatencyProfile::instant());
    applied(&h).await;
    let engine = h.engine_with(|_| {
        Engine::builder(
            Providers::all(h.sim.clone())
                .with_verifier(Arc::new(Stuck))
                .with_verifier(h.sim.clone()),
        )
        .clock(h.clock.clone())
        .state(h.store.clone())
    });
    let started = h.clock.now();
    let r = engine
        .verify_with(
            &spec(Cloud::Gcp),
            VerifyOptions::new().timeout(Duration::from_secs(7)),
        )
        .await
        .unwrap();
    assert_eq!(h.clock.now() - started, Duration::from_secs(7));
    let failed: Vec<&str> = r.failures().map(|c| c.id.as_str()).collect();
    assert_eq!(
        failed,
        ["database.verifier-timeout", "registry.verifier-timeout"],
        "{r}"
    );
    assert!(r.check("database.connect").unwrap().passed());
    assert_eq!(r.duration_ms, 7000);
}

#[tokio::test(start_paused = true)]
async fn cancelling_stops_verify_with_a_cancelled_error() {
    let h = Harness::new(LatencyProfile::instant());
    applied(&h).await;
    let engine = h.engine_with(|_| {
        Engine::builder(Providers::all(h.sim.clone()).with_verifier(Arc::new(Stuck)))
            .clock(h.clock.clone())
            .state(h.store.clone())
    });
    let token = engine.cancellation_token();
    let clock = h.clock.clone();
    tokio::spawn(async move {
        clock.sleep(Duration::from_secs(2)).await;
        token.cancel();
    });
    let e = engine
        .verify_with(
            &spec(Cloud::Gcp),
            VerifyOptions::new().timeout(Duration::from_secs(600)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{}", e.chain());
}
