//! The controller in-process on the simulated cloud, against the Kubernetes fake
//! (real HTTPS on 127.0.0.1): installations become Ready with what the CLI makes,
//! converge on edits, are destroyed or retained on delete, degrade with a reason on
//! bad credentials or a CLI's lock, and share an account's budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::TokioClock;
use gitpod_refarch::resource::{Desired, Output, ResourceId, ResourceKind};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::ReferenceArchitecture;
use gitpod_refarch::state::{LockRequest, StateStore};
use gitpod_refarch::{Engine, Providers};
use gitpod_refarch_bootstrap::KubeStateStore;
use gitpod_refarch_operator::controller::{Context, OperatorConfig, FINALIZER};
use gitpod_refarch_operator::factory::{SimFactory, SIM_FAIL_CREDENTIALS};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use support::*;

const ACCOUNT: &str = "sim:default";

fn config() -> OperatorConfig {
    OperatorConfig::new("replica-1")
        .namespace(Some(NS.into()))
        .backoff(Duration::from_millis(100), Duration::from_secs(2))
        .locked_retry(Duration::from_millis(300))
}

type Resources = BTreeMap<ResourceId, Desired>;

fn resources(sim: &SimCloud) -> Resources {
    sim.resources()
        .into_iter()
        .map(|id| {
            let d = sim.get(&id).unwrap();
            (id, d)
        })
        .collect()
}

/// What a plain `Engine::apply_spec` of the same spec (the CLI's run on the
/// simulated cloud, in-cluster part included) leaves in a fresh cloud.
async fn cli_resources(yaml: &str) -> Resources {
    let spec = ReferenceArchitecture::from_yaml(yaml).unwrap();
    let sim = Arc::new(SimCloud::new(
        Arc::new(TokioClock::new()),
        LatencyProfile::instant(),
    ));
    let engine = Engine::builder(Providers::all(sim.clone()).with_in_cluster(sim.clone()))
        .build()
        .unwrap();
    let _report = engine
        .apply_spec(&spec)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    resources(&sim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_installations_become_ready_with_what_the_cli_makes() {
    let c = Cluster::start().await;
    let factory = Arc::new(SimFactory::default());
    let ctx = Context::new(c.client.clone(), factory.clone(), config());
    let _running = c.spawn(ctx);
    let api = c.installations();
    let names = ["gp-a", "gp-b", "gp-c"];
    for n in names {
        c.create(&installation(n, &sim_spec_yaml(n), json!({})))
            .await;
    }
    for n in names {
        let o = wait_ready(&api, n).await;
        assert!(o.finalizers().iter().any(|f| f == FINALIZER), "{n}");
        let status = o.status.clone().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Ready"), "{n}");
        assert_eq!(status.observed_generation, o.metadata.generation);
        assert_eq!(condition(&o, "Degraded").unwrap().status, "False");
        assert_eq!(condition(&o, "Planned").unwrap().status, "True");
        // The first plan created everything.
        let plan = status.plan.clone().unwrap();
        assert!(plan.create > 0, "{plan:?}");

        // The cloud holds exactly what the CLI makes from the same spec.
        let sim = factory.sim(ACCOUNT, n).expect("a simulated cloud");
        let got = resources(&sim);
        assert_eq!(got, cli_resources(&sim_spec_yaml(n)).await, "{n}");
        assert!(sim.duplicates().is_empty());

        // Name servers from the zone, and the outputs that are not secret.
        let state = KubeStateStore::new(c.client.clone(), NS, format!("{n}-state"))
            .load()
            .await
            .unwrap()
            .expect("the state is stored");
        let zone_ns = state
            .state
            .outputs
            .values()
            .find_map(|o| match o {
                Output::DnsZone { name_servers, .. } => Some(name_servers.clone()),
                _ => None,
            })
            .expect("a zone output");
        assert!(!zone_ns.is_empty());
        assert_eq!(status.name_servers, zone_ns);
        assert_eq!(
            status.outputs.get("domain").map(String::as_str),
            Some(&*format!("{n}.example.com"))
        );
        for key in ["clusterEndpoint", "databaseName", "region"] {
            assert!(
                status.outputs.contains_key(key),
                "{key} in {:?}",
                status.outputs
            );
        }

        // The installer bundle, owned by the resource; the state in its Secret.
        let installer = c.secrets().get(&format!("{n}-installer")).await.unwrap();
        let owner = &installer.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.uid, o.uid().unwrap());
        assert_eq!(owner.kind, "GitpodInstallation");
        let data = installer.data.unwrap();
        let config = String::from_utf8(data["gitpod.config.yaml"].0.clone()).unwrap();
        assert!(config.contains(&format!("{n}.example.com")), "{config}");
        let state = c.secrets().get(&format!("{n}-state")).await.unwrap();
        assert_eq!(state.type_.as_deref(), Some("refarch.gitpod.io/state"));

        let reasons: Vec<String> = c.events(n).await.into_iter().map(|(r, _)| r).collect();
        for r in ["Planned", "Applying", "Applied"] {
            assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
        }
    }
    // Three installations, three worlds.
    assert_eq!(factory.sims().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_pool_converges_with_exactly_that_change() {
    let c = Cluster::start().await;
    let factory = Arc::new(SimFactory::default());
    let _running = c.spawn(Context::new(c.client.clone(), factory.clone(), config()));
    let api = c.installations();
    let yaml = sim_spec_yaml("gp-edit");
    c.create(&installation("gp-edit", &yaml, json!({}))).await;
    let before = wait_ready(&api, "gp-edit").await;
    let sim = factory.sim(ACCOUNT, "gp-edit").unwrap();
    let pool = ResourceId::new(ResourceKind::NodePool, "services");
    let Some(Desired::NodePool(p)) = sim.get(&pool) else {
        panic!("no services pool")
    };
    let new_max = p.max_nodes + 3;
    sim.reset_counts();

    api.patch(
        "gp-edit",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"nodePools": {"services": {"maxNodes": new_max}}}})),
    )
    .await
    .unwrap();
    let after = wait_ready(&api, "gp-edit").await;
    assert!(after.metadata.generation > before.metadata.generation);
    let plan = after.status.unwrap().plan.unwrap();
    assert_eq!(
        (plan.create, plan.update, plan.replace, plan.delete),
        (0, 1, 0, 0)
    );

    // Exactly one mutating call, on the node pool, and the cloud now equals what
    // the CLI makes of the edited spec.
    let counts = sim.counts();
    assert_eq!(
        counts.mutating_by_kind,
        BTreeMap::from([(ResourceKind::NodePool, 1)]),
        "{counts:?}"
    );
    let Some(Desired::NodePool(p)) = sim.get(&pool) else {
        panic!("no services pool")
    };
    assert_eq!(p.max_nodes, new_max);
    let edited = yaml.clone() + &format!("nodePools:\n  services:\n    maxNodes: {new_max}\n");
    assert_eq!(resources(&sim), cli_resources(&edited).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_destroys_everything_and_the_state_secret() {
    let c = Cluster::start().await;
    let factory = Arc::new(SimFactory::default());
    let _running = c.spawn(Context::new(c.client.clone(), factory.clone(), config()));
    let api = c.installations();
    c.create(&installation("gp-del", &sim_spec_yaml("gp-del"), json!({})))
        .await;
    let o = wait_ready(&api, "gp-del").await;
    let sim = factory.sim(ACCOUNT, "gp-del").unwrap();
    assert!(!sim.resources().is_empty());
    assert!(c.secrets().get_opt("gp-del-state").await.unwrap().is_some());
    assert!(c
        .secrets()
        .get_opt("gp-del-installer")
        .await
        .unwrap()
        .is_some());

    api.delete("gp-del", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&api, "gp-del", &o.uid().unwrap()).await;
    assert_eq!(sim.resources(), Vec::<ResourceId>::new());
    assert!(c.secrets().get_opt("gp-del-state").await.unwrap().is_none());
    // The installer Secret goes with its owner (the fake's garbage collector finds
    // the resource by the owner reference's kind, name and uid).
    assert!(c
        .secrets()
        .get_opt("gp-del-installer")
        .await
        .unwrap()
        .is_none());
    let reasons: Vec<String> = c
        .events("gp-del")
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert!(reasons.iter().any(|r| r == "Destroying"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Destroyed"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_the_cloud_resources_and_the_state() {
    let c = Cluster::start().await;
    let factory = Arc::new(SimFactory::default());
    let _running = c.spawn(Context::new(c.client.clone(), factory.clone(), config()));
    let api = c.installations();
    c.create(&installation(
        "gp-keep",
        &sim_spec_yaml("gp-keep"),
        json!({"deletionPolicy": "Retain"}),
    ))
    .await;
    let o = wait_ready(&api, "gp-keep").await;
    // With Retain, the installer Secret is not owned by the resource.
    let installer = c.secrets().get("gp-keep-installer").await.unwrap();
    assert!(
        installer.metadata.owner_references.is_none(),
        "{installer:?}"
    );
    let sim = factory.sim(ACCOUNT, "gp-keep").unwrap();
    let made = resources(&sim);
    assert!(!made.is_empty());

    api.delete("gp-keep", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&api, "gp-keep", &o.uid().unwrap()).await;
    assert_eq!(resources(&sim), made);
    let state = KubeStateStore::new(c.client.clone(), NS, "gp-keep-state");
    let stored = state.load().await.unwrap().expect("the state is kept");
    assert_eq!(stored.state.installation, "gp-keep");
    // So is the installer Secret, no longer owned by the resource.
    let installer = c.secrets().get("gp-keep-installer").await.unwrap();
    assert!(
        installer.metadata.owner_references.is_none(),
        "{installer:?}"
    );
    let events = c.events("gp-keep").await;
    assert!(
        events.iter().any(|(r, n)| r == "Retained"
            && n.contains("gp-keep-state")
            && n.contains("so is the installer Secret")),
        "{events:?}"
    );
    assert!(!events.iter().any(|(r, _)| r == "Destroying"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_degrade_one_installation_while_the_others_become_ready() {
    let c = Cluster::start().await;
    let factory = Arc::new(SimFactory::default());
    let _running = c.spawn(Context::new(c.client.clone(), factory.clone(), config()));
    let api = c.installations();
    c.secret("bad-keys", &[(SIM_FAIL_CREDENTIALS, "s3cr3t-k3y-value")])
        .await;
    c.create(&installation(
        "gp-bad",
        &sim_spec_yaml("gp-bad"),
        json!({"credentialsSecret": "bad-keys"}),
    ))
    .await;
    c.create(&installation(
        "gp-nosecret",
        &sim_spec_yaml("gp-nosecret"),
        json!({"credentialsSecret": "missing"}),
    ))
    .await;
    for n in ["gp-ok1", "gp-ok2"] {
        c.create(&installation(n, &sim_spec_yaml(n), json!({})))
            .await;
    }
    let bad = wait_degraded(&api, "gp-bad", "Credentials").await;
    let status = bad.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Degraded"));
    assert_eq!(condition(&bad, "Ready").unwrap().status, "False");
    assert!(
        condition(&bad, "Degraded")
            .unwrap()
            .message
            .contains("rejected the credentials"),
        "{status:?}"
    );
    let missing = wait_degraded(&api, "gp-nosecret", "Credentials").await;
    assert!(
        condition(&missing, "Degraded")
            .unwrap()
            .message
            .contains("default/missing"),
        "{:?}",
        missing.status
    );
    for n in ["gp-ok1", "gp-ok2"] {
        wait_ready(&api, n).await;
    }
    // No cloud was touched for the rejected ones, and the key is nowhere.
    assert!(factory.sim(ACCOUNT, "gp-bad").is_none());
    let bad = api.get("gp-bad").await.unwrap();
    assert!(!serde_json::to_string(&bad).unwrap().contains("s3cr3t"));
    let events = c.events("gp-bad").await;
    assert!(events.iter().any(|(r, _)| r == "Failed"), "{events:?}");
    assert!(!format!("{events:?}").contains("s3cr3t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_two_bounds_the_calls_of_one_account() {
    let c = Cluster::start().await;
    // Each call takes a little while, so calls of concurrent reconciles overlap.
    let factory = Arc::new(SimFactory::default().call_latency(Duration::from_millis(5)));
    let ctx = Context::new(
        c.client.clone(),
        factory.clone(),
        config().account_budget(2),
    );
    let _running = c.spawn(ctx.clone());
    let api = c.installations();
    let names = ["gp-b1", "gp-b2", "gp-b3"];
    for n in names {
        c.create(&installation(n, &sim_spec_yaml(n), json!({})))
            .await;
    }
    for n in names {
        wait_ready(&api, n).await;
    }
    let budget = ctx.budgets().peek(ACCOUNT).expect("the account's budget");
    assert_eq!(budget.limit(), 2);
    assert!(budget.calls() > 0);
    assert_eq!(budget.in_flight(), 0);
    assert!(budget.peak() <= 2, "peak {}", budget.peak());
    // The bound was reached: the calls did overlap and were held back.
    assert_eq!(budget.peak(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_lock_degrades_with_state_locked_until_it_is_released() {
    let c = Cluster::start().await;
    let factory = Arc::new(SimFactory::default());
    let _running = c.spawn(Context::new(c.client.clone(), factory.clone(), config()));
    let api = c.installations();
    let store = KubeStateStore::new(c.client.clone(), NS, "gp-lock-state");
    let lock = store
        .lock(&LockRequest::new("alice@laptop", "apply"))
        .await
        .unwrap();
    c.create(&installation(
        "gp-lock",
        &sim_spec_yaml("gp-lock"),
        json!({}),
    ))
    .await;
    let o = wait_degraded(&api, "gp-lock", "StateLocked").await;
    let message = &condition(&o, "Degraded").unwrap().message;
    assert!(message.contains("alice@laptop"), "{message}");
    assert!(message.contains(&lock.id), "{message}");
    // The controller left the lock alone and made nothing.
    assert_eq!(store.current_lock().await.unwrap().unwrap().id, lock.id);
    let sim = factory.sim(ACCOUNT, "gp-lock").unwrap();
    assert!(sim.resources().is_empty());

    store.unlock(&lock).await.unwrap();
    wait_ready(&api, "gp-lock").await;
    assert!(!sim.resources().is_empty());
    assert!(store.current_lock().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_controller_lock_is_broken_and_the_run_goes_on() {
    let c = Cluster::start().await;
    let factory = Arc::new(SimFactory::default());
    let _running = c.spawn(Context::new(c.client.clone(), factory.clone(), config()));
    let api = c.installations();
    let store = KubeStateStore::new(c.client.clone(), NS, "gp-stale-state");
    let lock = store
        .lock(&LockRequest::new("controller replica-0", "apply"))
        .await
        .unwrap();
    c.create(&installation(
        "gp-stale",
        &sim_spec_yaml("gp-stale"),
        json!({}),
    ))
    .await;
    wait_ready(&api, "gp-stale").await;
    let events = c.events("gp-stale").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "BrokeStaleLock" && n.contains(&lock.id)),
        "{events:?}"
    );
    assert!(store.current_lock().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_degraded_with_the_field_paths() {
    let c = Cluster::start().await;
    let factory = Arc::new(SimFactory::default());
    let _running = c.spawn(Context::new(c.client.clone(), factory.clone(), config()));
    let api = c.installations();
    let yaml =
        sim_spec_yaml("gp-invalid") + "nodePools:\n  services:\n    minNodes: 9\n    maxNodes: 2\n";
    c.create(&installation("gp-invalid", &yaml, json!({})))
        .await;
    let o = wait_degraded(&api, "gp-invalid", "InvalidSpec").await;
    let message = &condition(&o, "Degraded").unwrap().message;
    assert!(message.contains("spec.nodePools.services"), "{message}");
    assert!(factory.sim(ACCOUNT, "gp-invalid").is_none());

    // Fixed, it converges.
    api.patch(
        "gp-invalid",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"nodePools": {"services": {"minNodes": 1}}}})),
    )
    .await
    .unwrap();
    wait_ready(&api, "gp-invalid").await;
}

/// The controller's client keeps at most its limit of API requests in flight, over as
/// few connections; a client without the limit opens one per concurrent request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_client_limits_requests_in_flight() {
    use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
    use k8s_openapi::api::core::v1::ConfigMap;
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    async fn burst(client: kube::Client) {
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
        let lists = (0..40).map(|_| {
            let api = api.clone();
            async move { api.list(&Default::default()).await.unwrap() }
        });
        futures::future::join_all(lists).await;
    }
    let client = gitpod_refarch_operator::client::limited(kube_config(&fake), 2).unwrap();
    burst(client).await;
    let limited = fake.connections();
    burst(gitpod_refarch_operator::client::unlimited(kube_config(&fake)).unwrap()).await;
    let unlimited = fake.connections() - limited;
    // A slot frees when the answer's headers arrive, a moment before its connection
    // is back in the pool: allow one more connection per slot.
    assert!(
        (1..=4).contains(&limited),
        "40 requests at once through a limit of 2 opened {limited} connections"
    );
    assert!(
        unlimited > 4,
        "without the limit, 40 requests at once opened only {unlimited} connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_changed_to_retain_keeps_the_installer_secret() {
    let c = Cluster::start().await;
    let factory = Arc::new(SimFactory::default());
    let _running = c.spawn(Context::new(c.client.clone(), factory.clone(), config()));
    let api = c.installations();
    c.create(&installation(
        "gp-flip",
        &sim_spec_yaml("gp-flip"),
        json!({}),
    ))
    .await;
    let o = wait_ready(&api, "gp-flip").await;
    let installer = c.secrets().get("gp-flip-installer").await.unwrap();
    assert_eq!(installer.metadata.owner_references.unwrap().len(), 1);

    api.patch(
        "gp-flip",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"operator": {"deletionPolicy": "Retain"}}})),
    )
    .await
    .unwrap();
    wait_ready(&api, "gp-flip").await;
    // The next apply of the installer Secret no longer sets the reference.
    let installer = c.secrets().get("gp-flip-installer").await.unwrap();
    let refs = installer.metadata.owner_references.unwrap_or_default();
    assert!(refs.is_empty(), "{refs:?}");

    api.delete("gp-flip", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&api, "gp-flip", &o.uid().unwrap()).await;
    assert!(c
        .secrets()
        .get_opt("gp-flip-installer")
        .await
        .unwrap()
        .is_some());
    assert!(!factory
        .sim(ACCOUNT, "gp-flip")
        .unwrap()
        .resources()
        .is_empty());
}
