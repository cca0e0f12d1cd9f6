//! A bring-your-own certificate through the engine against the Kubernetes fake: no
//! issuer or Certificate, the `kubernetes.io/tls` Secret written from the PEM files in
//! the Gitpod namespace, a re-apply that writes nothing, a removed Secret repaired,
//! and no key material in plans, events or the config.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use gitpod_refarch::engine::TokioClock;
use gitpod_refarch::resource::{Domain, ResourceId, ResourceKind};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::ReferenceArchitecture;
use gitpod_refarch::state::MemoryStateStore;
use gitpod_refarch::tls::TlsCertificate;
use gitpod_refarch_bootstrap::{BootstrapConfig, KubeBootstrap};
use gitpod_refarch_fake_kube::FakeKube;

fn tls(file: &str) -> String {
    format!(
        "{}/../gitpod-refarch/tests/data/tls/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn byo_spec() -> ReferenceArchitecture {
    let s = ReferenceArchitecture::from_yaml(&format!(
        "cloud: gcp\nname: {NAME}\ndomain: gitpod.example.com\ngcp:\n  project: gitpod-e2e\n\
         certificates:\n  issuer: bringYourOwn\n  secretName: https-certificates\n  \
         certificateFile: {}\n  keyFile: {}\n",
        tls("chain.pem"),
        tls("leaf.key")
    ))
    .unwrap();
    s.validate().unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byo_certificate_is_written_as_a_tls_secret_and_kept_in_sync() {
    let spec = byo_spec();
    let fake = FakeKube::start(fake_config()).await.unwrap();
    let sim = Arc::new(
        SimCloud::new(Arc::new(TokioClock::new()), LatencyProfile::instant())
            .with_cluster_endpoint(fake.url(), fake.ca_pem()),
    );
    let creds = TestCredentials::new(Some(Duration::from_secs(3600)));
    let tls_cert = TlsCertificate::from_spec(&spec)
        .unwrap()
        .expect("files given");
    let bootstrap = KubeBootstrap::new(
        BootstrapConfig::new(creds)
            .cert_manager(manifest())
            .delegation(None)
            .poll_interval(Duration::from_millis(10))
            .tls_certificate(tls_cert),
    );
    let store = Arc::new(MemoryStateStore::default());
    let events = Events::default();
    let engine = engine_for(sim.clone(), bootstrap, store, events.clone());

    let plan = engine.plan(&spec).await.unwrap();
    let report = engine.apply(&plan).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let inside: Vec<ResourceKind> = report
        .changed
        .iter()
        .map(|id| id.kind)
        .filter(|k| k.domain() == Domain::InCluster)
        .collect();
    assert!(!inside.contains(&ResourceKind::Issuer), "{inside:?}");
    assert!(!inside.contains(&ResourceKind::Certificate), "{inside:?}");
    assert!(
        inside.contains(&ResourceKind::GitpodNamespace),
        "{inside:?}"
    );
    assert!(fake
        .object("clusterissuers", None, "gitpod-issuer")
        .is_none());
    assert!(fake
        .object("certificates", Some("gitpod"), "https-certificates")
        .is_none());

    // The Secret, typed, holding the files' bytes.
    let chain = std::fs::read_to_string(tls("chain.pem")).unwrap();
    let key = std::fs::read_to_string(tls("leaf.key")).unwrap();
    let live = fake
        .object("secrets", Some("gitpod"), "https-certificates")
        .expect("the TLS secret");
    assert_eq!(live["type"], "kubernetes.io/tls");
    let wanted = std::collections::BTreeMap::from([
        ("tls.crt".to_string(), gitpod_refarch::Secret::new(chain)),
        (
            "tls.key".to_string(),
            gitpod_refarch::Secret::new(key.clone()),
        ),
    ]);
    assert!(gitpod_refarch_bootstrap::objects::secret_matches(
        &live, &wanted
    ));

    // Re-apply: nothing to do, no write.
    fake.reset_calls();
    let again = engine.plan(&spec).await.unwrap();
    assert!(!again.has_changes(), "{again}");
    assert_eq!(fake.counts().mutating, 0, "{:?}", fake.counts());

    // The Secret removed by hand: planned as an update of the namespace's secrets, repaired.
    let client = kube_client(&fake);
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, "gitpod")
        .delete("https-certificates", &Default::default())
        .await
        .unwrap();
    let drift = engine.plan(&spec).await.unwrap();
    let ns = ResourceId::new(ResourceKind::GitpodNamespace, "gitpod");
    assert!(
        drift.steps().iter().any(|s| s.id == ns),
        "the missing secret is not planned:\n{drift}"
    );
    let repaired = engine.apply(&drift).await.unwrap();
    assert!(repaired.failed.is_empty(), "{:?}", repaired.failed);
    assert!(fake
        .object("secrets", Some("gitpod"), "https-certificates")
        .is_some());

    // The installer config names the Secret; no key material anywhere it could print.
    let bundle = engine.installer_bundle(&spec).await.unwrap();
    assert_eq!(
        bundle.config["certificate"],
        serde_json::json!({"kind": "secret", "name": "https-certificates"})
    );
    let line = key.lines().nth(1).unwrap();
    let shown = format!(
        "{}\n{plan}\n{drift}\n{:?}\n{:?}",
        bundle.config_yaml().unwrap(),
        events.lock().unwrap(),
        report
    );
    assert!(!shown.contains(line), "key material shown");

    let gone = engine.destroy(&spec).await.unwrap();
    assert!(gone.failed.is_empty(), "{:?}", gone.failed);
    assert!(fake.object("namespaces", None, "gitpod").is_none());
}
