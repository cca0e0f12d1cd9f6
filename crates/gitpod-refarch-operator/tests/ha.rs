//! Two controller replicas in process, electing a leader on a Lease of the Kubernetes
//! fake (real HTTPS on 127.0.0.1), on one simulated cloud whose operations take long
//! enough to kill the leader mid-apply: the follower takes over, breaks the dead
//! replica's state lock, resumes from the journal to `Ready`, and the cloud holds
//! exactly what one apply makes, nothing twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::TokioClock;
use gitpod_refarch::sim::LatencyProfile;
use gitpod_refarch::state::StateStore;
use gitpod_refarch::Engine;
use gitpod_refarch_bootstrap::KubeStateStore;
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use gitpod_refarch_operator::controller::{self, OperatorConfig};
use gitpod_refarch_operator::crd::GitpodInstallation;
use gitpod_refarch_operator::factory::{ProviderFactory, SimFactory};
use gitpod_refarch_operator::leader::{run_as_leader, LeaderConfig};
use gitpod_refarch_operator::manifests;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};

const NS: &str = "default";

fn client_for(fake: &FakeKube) -> kube::Client {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    config.root_cert = Some(
        CertificateDer::pem_slice_iter(fake.ca_pem().as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect(),
    );
    kube::Client::try_from(config).unwrap()
}

async fn install_crd(client: &kube::Client) {
    let crd: CustomResourceDefinition =
        serde_json::from_value(manifests::crd_object().unwrap()).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.create(&PostParams::default(), &crd).await.unwrap();
    let name = crd.metadata.name.clone().unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .unwrap()
    .unwrap();
}

/// One replica: the controller, run only while it leads.
fn replica(
    client: kube::Client,
    factory: Arc<SimFactory>,
    identity: &str,
) -> tokio::task::JoinHandle<gitpod_refarch::Result<()>> {
    let lease = LeaderConfig::new(NS, "gitpod-refarch-operator", identity)
        .with_lease_duration(Duration::from_secs(3))
        .with_renew_deadline(Duration::from_secs(2))
        .with_retry_period(Duration::from_millis(150));
    let config = OperatorConfig::new(identity)
        .namespace(Some(NS.to_string()))
        .backoff(Duration::from_millis(200), Duration::from_secs(2))
        .locked_retry(Duration::from_millis(500));
    let c = client.clone();
    tokio::spawn(run_as_leader(client, lease, move || {
        let factory: Arc<dyn ProviderFactory> = factory.clone();
        controller::run(c.clone(), factory, config.clone())
    }))
}

fn example() -> GitpodInstallation {
    serde_json::from_value(manifests::example_object(NS)).unwrap()
}

/// What one uninterrupted apply of the same spec makes, on a cloud of its own.
async fn one_apply(gpi: &GitpodInstallation) -> BTreeSet<String> {
    let spec = controller::parse_spec(
        gpi,
        &gitpod_refarch_operator::sources::SecretSources::none(),
    )
    .unwrap();
    let factory = SimFactory::default();
    let providers = factory
        .providers(&spec, None, &gitpod_refarch::secret::ProcessSources)
        .await
        .unwrap();
    let engine = Engine::builder(providers).build().unwrap();
    let report = engine
        .apply_spec(&spec)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert!(!report.changed.is_empty());
    let sims = factory.sims();
    assert_eq!(sims.len(), 1);
    let sim = sims.values().next().unwrap();
    sim.resources().iter().map(|id| id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_resumes_a_killed_leaders_apply() {
    let fake = FakeKube::start(
        FakeConfig::default()
            .with_crd_established_delay(Duration::from_millis(20))
            .with_deployment_ready_delay(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let client = client_for(&fake);
    install_crd(&client).await;

    // GKE ~6 min and Cloud SQL ~8 min become ~2.4 s and ~3.2 s: long enough to kill
    // the leader in the middle.
    let factory = Arc::new(SimFactory::new(
        Arc::new(TokioClock::new()),
        LatencyProfile::realistic().scaled(1.0 / 150.0),
    ));
    let mut replicas = std::collections::BTreeMap::new();
    for id in ["replica-a", "replica-b"] {
        replicas.insert(id, replica(client.clone(), factory.clone(), id));
    }

    let gpi = example();
    let name = gpi.metadata.name.clone().unwrap();
    let api: Api<GitpodInstallation> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &gpi).await.unwrap();

    // Mid-apply: the leader holds the state lock and the cloud has some of the
    // resources, not yet the installation's Ready.
    let store = KubeStateStore::new(client.clone(), NS, controller::state_secret_name(&name));
    let (lock, leader) = loop {
        let lock = store.current_lock().await.unwrap();
        let made = factory
            .sims()
            .values()
            .map(|s| s.resources().len())
            .sum::<usize>();
        if let Some(lock) = lock {
            if made > 0 {
                let leader = lock
                    .owner
                    .strip_prefix(controller::LOCK_OWNER_PREFIX)
                    .unwrap_or_else(|| panic!("lock not the controller's: {lock}"))
                    .to_string();
                break (lock, leader);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let made_before = factory.sims().values().next().unwrap().resources().len();
    let expected = one_apply(&gpi).await;
    assert!(
        made_before < expected.len(),
        "the apply was not mid-way ({made_before} of {})",
        expected.len()
    );
    let follower = if leader == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let holder = |l: Lease| l.spec.unwrap().holder_identity.unwrap_or_default();
    assert_eq!(
        holder(leases.get("gitpod-refarch-operator").await.unwrap()),
        leader
    );

    // Killed: no release of the Lease, no unlock of the state.
    replicas.remove(leader.as_str()).unwrap().abort();
    let kept = store
        .current_lock()
        .await
        .unwrap()
        .expect("the dead leader's lock stays");
    assert_eq!(kept.id, lock.id);
    assert_eq!(kept.owner, format!("controller {leader}"));

    // The follower leads, breaks the lock, resumes, and the installation is Ready.
    let ready = await_condition(api.clone(), &name, |o: Option<&GitpodInstallation>| {
        o.and_then(|o| o.status.as_ref())
            .is_some_and(|s| s.phase.as_deref() == Some("Ready"))
    });
    let done = tokio::time::timeout(Duration::from_secs(120), ready)
        .await
        .expect("not Ready within 120 s")
        .unwrap()
        .unwrap();
    let status = done.status.unwrap();
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"));
    assert_eq!(
        holder(leases.get("gitpod-refarch-operator").await.unwrap()),
        follower
    );
    assert!(
        store.current_lock().await.unwrap().is_none(),
        "unlocked at the end"
    );

    // The follower broke the dead replica's lock (an Event says so).
    let events: Vec<serde_json::Value> = fake
        .objects("events")
        .into_iter()
        .chain(fake.objects("events.events.k8s.io"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "BrokeStaleLock" && e.to_string().contains(&lock.id)),
        "no BrokeStaleLock Event naming lock {}: {events:#?}",
        lock.id
    );

    // One cloud, nothing twice, exactly what one apply makes.
    let sims = factory.sims();
    assert_eq!(sims.len(), 1);
    let sim = sims.values().next().unwrap();
    assert!(
        sim.duplicates().is_empty(),
        "duplicates: {:?}",
        sim.duplicates()
    );
    let made: BTreeSet<String> = sim.resources().iter().map(|id| id.to_string()).collect();
    assert_eq!(made, expected);

    // The state's journal names only resources of the apply (the dead leader's
    // unfinished intent stays in it, next to the follower's finished ones).
    let stored = store.load().await.unwrap().expect("state saved");
    assert!(stored.state.journal.iter().any(|e| e.done));
    for entry in &stored.state.journal {
        assert!(
            expected.contains(&entry.resource.to_string()),
            "{}",
            entry.resource
        );
    }

    for r in replicas.into_values() {
        r.abort();
    }
    fake.shutdown().await;
}
