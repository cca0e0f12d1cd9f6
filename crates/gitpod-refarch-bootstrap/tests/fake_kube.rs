//! The in-cluster bootstrap through the engine, against the Kubernetes **fake**
//! (`gitpod-refarch-fake-kube`, in process, real HTTPS on 127.0.0.1): the cloud part
//! is the simulated cloud, whose cluster endpoint is the fake's address and CA.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use gitpod_refarch::engine::Event;
use gitpod_refarch::installer::render_secrets;
use gitpod_refarch::provider::ENCRYPTION_KEY;
use gitpod_refarch::resource::{ResourceId, ResourceKind};
use gitpod_refarch::state::StateStore;
use gitpod_refarch::ErrorKind;
use gitpod_refarch_bootstrap::{CertManagerSource, Manifest};
use serde_json::{json, Value};

fn in_cluster(kind: ResourceKind) -> bool {
    kind.domain() == gitpod_refarch::resource::Domain::InCluster
}

fn args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reapply_and_destroy_with_load_balancers() {
    let s = Setup::start(fake_config(), manifest()).await;
    let spec = spec();

    // Apply: the cloud, then everything inside the cluster.
    let report = s.engine.apply_spec(&spec).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let inside: BTreeSet<ResourceKind> = report
        .changed
        .iter()
        .map(|id| id.kind)
        .filter(|k| in_cluster(*k))
        .collect();
    assert_eq!(inside.len(), 6, "{inside:?}");

    let f = &s.fake;
    // The cluster-admin binding for the caller the credentials name.
    let crb = f
        .object("clusterrolebindings", None, "cluster-admin-binding")
        .unwrap();
    assert_eq!(crb["roleRef"]["name"], "cluster-admin");
    assert_eq!(crb["subjects"][0]["name"], USER);
    assert_eq!(
        crb["metadata"]["managedFields"][0]["manager"],
        "gitpod-refarch"
    );
    // cert-manager with the guide's flags, its CRDs Established, its webhook ready.
    let controller = f
        .object("deployments", Some("cert-manager"), "cert-manager")
        .unwrap();
    let a = args(&controller);
    assert!(a.contains(&"--dns01-recursive-nameservers-only".to_string()));
    assert!(a.contains(&"--dns01-recursive-nameservers=8.8.8.8:53,1.1.1.1:53".to_string()));
    assert!(
        a.contains(&"--max-concurrent-challenges=60".to_string()),
        "kept: {a:?}"
    );
    assert!(f.webhook_ready());
    for crd in gitpod_refarch_bootstrap::objects::CERT_MANAGER_CRDS {
        let c = f.object("customresourcedefinitions", None, crd).unwrap();
        assert!(c["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True"));
    }
    // external-dns for the zone, owned by this installation.
    let edns = f
        .object("deployments", Some("external-dns"), "external-dns")
        .unwrap();
    let a = args(&edns);
    assert!(a.contains(&"--domain-filter=gitpod.example.com".to_string()));
    assert!(a.contains(&format!("--txt-owner-id={NAME}")));
    assert!(a.contains(&"--provider=rfc2136".to_string()), "{a:?}");
    assert!(f.object("clusterroles", None, "external-dns").is_some());
    // The issuer with the solver the DNS provider reported, and its secret.
    let issuer = f.object("clusterissuers", None, "gitpod-issuer").unwrap();
    assert_eq!(issuer["spec"]["acme"]["email"], "ops@example.com");
    assert_eq!(
        issuer["spec"]["acme"]["privateKeySecretRef"]["name"],
        "issuer-account-key"
    );
    let rfc = &issuer["spec"]["acme"]["solvers"][0]["dns01"]["rfc2136"];
    assert_eq!(rfc["tsigSecretSecretRef"]["name"], "rfc2136-tsig");
    assert!(f
        .object("secrets", Some("cert-manager"), "rfc2136-tsig")
        .is_some());
    // The Gitpod namespace with exactly the installer's secrets, and the certificate.
    let state = s.store.load().await.unwrap().unwrap().state;
    let outputs = gitpod_refarch::outputs::Outputs::new(state.outputs.clone());
    let wanted = render_secrets(&outputs, state.secrets.get(ENCRYPTION_KEY).unwrap()).unwrap();
    assert!(wanted.len() >= 3);
    for m in &wanted {
        let live = f.object("secrets", Some("gitpod"), &m.name).unwrap();
        assert!(
            gitpod_refarch_bootstrap::objects::secret_matches(&live, &m.data),
            "{}",
            m.name
        );
        assert_eq!(live["type"], m.type_.as_str());
    }
    let cert = f
        .object("certificates", Some("gitpod"), "https-certificates")
        .unwrap();
    assert_eq!(
        cert["spec"]["dnsNames"],
        json!([
            "gitpod.example.com",
            "*.gitpod.example.com",
            "*.ws.gitpod.example.com"
        ])
    );
    assert!(f
        .object("secrets", Some("gitpod"), "https-certificates")
        .is_some());
    // The bundle's encryption key is the one the secrets carry.
    let bundle = s.engine.installer_bundle(&spec).await.unwrap();
    let db = bundle.secret("database").unwrap();
    assert!(gitpod_refarch_bootstrap::objects::secret_matches(
        &f.object("secrets", Some("gitpod"), "database").unwrap(),
        &db.data
    ));

    let c = s.fake.counts();
    println!(
        "apply: {} reads, {} writes to the API server, {} token fetches, {:?}",
        c.reads,
        c.mutating,
        s.creds.calls.load(std::sync::atomic::Ordering::SeqCst),
        report.elapsed
    );

    // Re-apply: nothing to do, not one mutating call to the cluster.
    s.fake.reset_calls();
    let plan = s.engine.plan(&spec).await.unwrap();
    assert!(!plan.has_changes(), "{plan}");
    let again = s.engine.apply(&plan).await.unwrap();
    assert!(again.changed.is_empty());
    assert_eq!(s.fake.counts().mutating, 0, "{:?}", s.fake.counts());
    println!(
        "re-apply: {} reads, 0 writes, {:?}",
        s.fake.counts().reads,
        again.elapsed
    );

    // Gitpod's proxy would make a LoadBalancer Service; destroy must release it first.
    let client = kube_client(&s.fake);
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "proxy", "namespace": "gitpod"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]},
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Service>::namespaced(client, "gitpod")
        .create(&Default::default(), &svc)
        .await
        .unwrap();
    assert_eq!(s.fake.cloud_load_balancers(), 1);

    s.events.lock().unwrap().clear();
    s.fake.reset_calls();
    let gone = s.engine.destroy(&spec).await.unwrap();
    let c = s.fake.counts();
    println!(
        "destroy: {} reads, {} writes, {:?}",
        c.reads, c.mutating, gone.elapsed
    );
    assert!(gone.failed.is_empty(), "{:?}", gone.failed);
    assert_eq!(s.fake.cloud_load_balancers(), 0);
    for ns in ["gitpod", "cert-manager", "external-dns"] {
        assert!(s.fake.object("namespaces", None, ns).is_none(), "{ns}");
    }
    assert!(s.sim.resources().is_empty(), "{:?}", s.sim.resources());
    // The cluster's delete started only after the Gitpod namespace (and with it the
    // load balancer) was gone; that step waited for the load balancer's release.
    let ev = s.events.lock().unwrap().clone();
    let pos = |f: &dyn Fn(&Event) -> bool| ev.iter().position(f).unwrap();
    let ns_id = ResourceId::new(ResourceKind::GitpodNamespace, "gitpod");
    let ns_done = pos(&|e| matches!(e, Event::StepDone { resource, .. } if *resource == ns_id));
    let cluster_started = pos(
        &|e| matches!(e, Event::StepStarted { resource, .. } if resource.kind == ResourceKind::Cluster),
    );
    assert!(ns_done < cluster_started);
    let waited = ev.iter().find_map(|e| match e {
        Event::StepDone {
            resource, elapsed, ..
        } if *resource == ns_id => Some(*elapsed),
        _ => None,
    });
    assert!(waited.unwrap() >= Duration::from_millis(200), "{waited:?}");
    s.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_with_the_wrong_digest_applies_nothing_and_a_rerun_converges() {
    let wrong = CertManagerSource::Manifest(Manifest::new(
        format!("file://{}", manifest_path().display()),
        "0".repeat(64),
    ));
    let s = Setup::start(fake_config(), wrong).await;
    let spec = spec();
    let report = s.engine.apply_spec(&spec).await.unwrap();
    let (id, err) = report
        .failed
        .iter()
        .find(|(id, _)| id.kind == ResourceKind::CertManager)
        .expect("cert-manager fails");
    assert_eq!(id.name, "cert-manager");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message().contains(&manifest_sha256()),
        "{}",
        err.message()
    );
    assert!(err.message().contains(&"0".repeat(64)));
    // Nothing of the manifest reached the cluster; what needs cert-manager was skipped.
    assert!(s.fake.objects("customresourcedefinitions").is_empty());
    assert!(report
        .skipped
        .iter()
        .any(|id| id.kind == ResourceKind::Issuer));
    assert!(report
        .skipped
        .iter()
        .any(|id| id.kind == ResourceKind::Certificate));

    // The same state with the right manifest converges.
    let fixed = engine_for(
        s.sim.clone(),
        bootstrap(s.creds.clone(), manifest()),
        s.store.clone(),
        Events::default(),
    );
    let report = fixed.apply_spec(&spec).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(!fixed.plan(&spec).await.unwrap().has_changes());
    s.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_acme_challenge_is_reported_not_hung_on() {
    let s = Setup::start(
        fake_config()
            .with_acme_challenges_fail("Waiting for DNS-01 challenge propagation: NS not found"),
        manifest(),
    )
    .await;
    let mut wait = gitpod_refarch::engine::WaitPolicy::default();
    wait.min_delay = Duration::from_millis(5);
    wait.max_delay = Duration::from_millis(20);
    wait.timeout = Duration::from_millis(600);
    let engine = gitpod_refarch::Engine::builder(
        gitpod_refarch::Providers::all(s.sim.clone())
            .with_in_cluster(std::sync::Arc::new(bootstrap(s.creds.clone(), manifest()))),
    )
    .clock(std::sync::Arc::new(
        gitpod_refarch::engine::TokioClock::new(),
    ))
    .state(s.store.clone())
    .wait(wait)
    .build()
    .unwrap();
    let report = engine.apply_spec(&spec()).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    let (id, err) = &report.failed[0];
    assert_eq!(id.kind, ResourceKind::Certificate);
    assert_eq!(err.kind(), ErrorKind::Timeout);
    // The error says what the ACME challenge is stuck on.
    assert!(err.message().contains("NS not found"), "{}", err.message());
    assert!(err.message().contains("challenge for"), "{}", err.message());
    s.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_from_the_api_server_are_retried_to_convergence() {
    let s = Setup::start(fake_config().with_seed(7), manifest()).await;
    s.fake.set_fault_rate(0.2);
    let spec = spec();
    let report = s.engine.apply_spec(&spec).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(s.fake.counts().faults > 5, "{:?}", s.fake.counts());
    s.fake.set_fault_rate(0.0);
    assert!(!s.engine.plan(&spec).await.unwrap().has_changes());
    s.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_stopped_after_any_cluster_write_resumes() {
    let spec = spec();
    // Count the mutating calls of a whole apply once.
    let probe = Setup::start(fake_config(), manifest()).await;
    let probed = probe.engine.apply_spec(&spec).await.unwrap();
    assert!(probed.failed.is_empty(), "{:?}", probed.failed);
    let total = probe.fake.counts().mutating;
    probe.fake.shutdown().await;
    assert!(total > 25, "{total}");

    // Every write of the apply: a kill after each one (inside the cert-manager
    // manifest too) must resume.
    for k in 0..total {
        let s = Setup::start(fake_config(), manifest()).await;
        s.fake.freeze_after_mutating(k);
        // After k writes every request hangs: stop the apply there, as if killed.
        let frozen = async {
            while s.fake.counts().mutating < k {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tokio::select! {
            r = s.engine.apply_spec(&spec) => panic!("k={k}: finished while frozen: {:?}", r.map(|r| r.failed)),
            () = frozen => {}
        }
        // The killed run's lock stays (as a killed process leaves it): broken on purpose.
        let held = s
            .store
            .current_lock()
            .await
            .unwrap()
            .expect("the killed run's lock");
        assert_eq!(held.operation, "apply");
        s.store.break_lock(&held.id).await.unwrap();
        s.fake.unfreeze();
        let second = s.engine.apply_spec(&spec).await.unwrap();
        assert!(second.failed.is_empty(), "k={k}: {:?}", second.failed);
        s.fake.reset_calls();
        let third = s.engine.apply_spec(&spec).await.unwrap();
        assert!(third.changed.is_empty(), "k={k}: {:?}", third.changed);
        assert_eq!(s.fake.counts().mutating, 0, "k={k}");
        s.fake.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_credentials_in_the_cluster_are_planned_and_repaired() {
    let s = Setup::start(fake_config(), manifest()).await;
    let spec = spec();
    let report = s.engine.apply_spec(&spec).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // Someone edits the solver's secret, external-dns's secret and a Gitpod secret.
    let client = kube_client(&s.fake);
    for (ns, name, key) in [
        ("cert-manager", "rfc2136-tsig", "tsig-secret-key"),
        ("external-dns", "external-dns", "tsig-secret"),
        ("gitpod", "database", "password"),
    ] {
        let stale = json!({"data": {key: "c3RhbGU="}});
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&stale),
            )
            .await
            .unwrap();
    }
    let plan = s.engine.plan(&spec).await.unwrap();
    let changed: BTreeSet<ResourceKind> = plan
        .steps()
        .iter()
        .filter(|st| st.action.is_mutating())
        .map(|st| st.id.kind)
        .collect();
    assert_eq!(
        changed,
        BTreeSet::from([
            ResourceKind::Issuer,
            ResourceKind::ExternalDns,
            ResourceKind::GitpodNamespace
        ]),
        "{plan}"
    );
    // Each is an update with the drift's reason, naming the Secret and key (never a
    // value, stale or current).
    let printed = plan.to_string();
    for st in plan.steps().iter().filter(|st| st.action.is_mutating()) {
        assert!(
            matches!(&st.action, gitpod_refarch::plan::Action::Update { reasons, .. } if !reasons.is_empty()),
            "{plan}"
        );
    }
    for named in [
        "Secret cert-manager/rfc2136-tsig differs in tsig-secret-key",
        "Secret external-dns/external-dns differs in tsig-secret",
        "Secret gitpod/database differs in password",
    ] {
        assert!(printed.contains(named), "{named}: {plan}");
    }
    assert!(
        !printed.contains("c3RhbGU=") && !printed.contains("stale"),
        "{plan}"
    );
    let fixed = s.engine.apply(&plan).await.unwrap();
    assert!(fixed.failed.is_empty(), "{:?}", fixed.failed);
    assert!(!s.engine.plan(&spec).await.unwrap().has_changes());
    s.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_condition_of_an_older_generation_is_not_accepted() {
    let s = Setup::start(fake_config(), manifest()).await;
    let spec = spec();
    let report = s.engine.apply_spec(&spec).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // Someone edits the ClusterIssuer; cert-manager (the fake) takes its time to
    // reconcile a change, keeping the Ready condition of the older generation.
    let delay = Duration::from_millis(700);
    s.fake.set_issuer_ready_delay(delay);
    let client = kube_client(&s.fake);
    let ar = kube::api::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "ClusterIssuer",
    ));
    let issuers: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(client, &ar);
    issuers
        .patch(
            "gitpod-issuer",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&json!({"spec": {"acme": {"email": "someone@example.com"}}})),
        )
        .await
        .unwrap();
    let plan = s.engine.plan(&spec).await.unwrap();
    assert!(
        plan.steps()
            .iter()
            .any(|st| st.id.kind == ResourceKind::Issuer && st.action.is_mutating()),
        "{plan}"
    );
    // The repair re-applies the issuer and waits until cert-manager has reconciled
    // that generation, not only until some Ready=True is there.
    let started = std::time::Instant::now();
    let fixed = s.engine.apply(&plan).await.unwrap();
    assert!(fixed.failed.is_empty(), "{:?}", fixed.failed);
    assert!(started.elapsed() >= delay / 2, "{:?}", started.elapsed());
    let live = s
        .fake
        .object("clusterissuers", None, "gitpod-issuer")
        .unwrap();
    let ready = live["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "True", "{live}");
    assert_eq!(
        ready["observedGeneration"], live["metadata"]["generation"],
        "{live}"
    );
    s.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_ca_is_checked_and_plain_http_is_refused_at_once() {
    use gitpod_refarch::engine::TokioClock;
    use gitpod_refarch::sim::{LatencyProfile, SimCloud};
    use gitpod_refarch::state::MemoryStateStore;
    use gitpod_refarch_fake_kube::FakeKube;
    use std::sync::Arc;

    let fake = FakeKube::start(fake_config()).await.unwrap();
    let other = FakeKube::start(fake_config()).await.unwrap();
    for (endpoint, ca, says) in [
        // Another cluster's CA: the server's certificate does not chain to it.
        (fake.url(), other.ca_pem(), "certificate"),
        // A bare address (GKE's shape) with the wrong CA: the same.
        (fake.address(), other.ca_pem(), "certificate"),
        // Plain HTTP is never a way to the API server, whatever the CA.
        (
            format!("http://{}", fake.address()),
            fake.ca_pem(),
            "plain HTTP",
        ),
    ] {
        let sim = Arc::new(
            SimCloud::new(Arc::new(TokioClock::new()), LatencyProfile::instant())
                .with_cluster_endpoint(endpoint.clone(), ca),
        );
        let engine = engine_for(
            sim,
            bootstrap(TestCredentials::new(None), manifest()),
            Arc::new(MemoryStateStore::default()),
            Events::default(),
        );
        let started = std::time::Instant::now();
        let report = engine.apply_spec(&spec()).await.unwrap();
        assert!(!report.failed.is_empty(), "{endpoint}: nothing failed");
        for (id, err) in &report.failed {
            assert!(in_cluster(id.kind), "{endpoint}: {id} failed: {err}");
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidInput,
                "{endpoint}: {}",
                err.chain()
            );
            assert!(err.chain().contains(says), "{endpoint}: {}", err.chain());
        }
        // Not retried for the engine's budget: a wrong CA or scheme never heals.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{endpoint}: took {:?}",
            started.elapsed()
        );
    }
    // No request got through to the API server.
    assert_eq!(fake.counts().reads + fake.counts().mutating, 0);
    fake.shutdown().await;
    other.shutdown().await;
}
