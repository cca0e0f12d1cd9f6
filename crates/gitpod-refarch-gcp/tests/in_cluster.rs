//! GKE end to end with the inside of the cluster: the GCP fake reports the Kubernetes
//! fake's address as the cluster's endpoint (bare, as GKE does) with its CA, the
//! bootstrap reaches it over HTTPS trusting that CA, and the bootstrap (kube-rs) gets its tokens
//! from the GCP provider (`ClusterCredentials`; anonymous against the fakes) and its
//! DNS-01 solver and external-dns settings from the Cloud DNS identity's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use gitpod_refarch::resource::Output;
use gitpod_refarch::state::{MemoryStateStore, StateStore};
use gitpod_refarch::{Engine, Providers};
use gitpod_refarch_bootstrap::{BootstrapConfig, CertManagerSource, KubeBootstrap, Manifest};
use gitpod_refarch_fake_gcp::FakeConfig;
use gitpod_refarch_fake_kube::{FakeConfig as KubeConfig, FakeKube};
use gitpod_refarch_gcp::GcpProvider;

fn manifest() -> CertManagerSource {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../gitpod-refarch-bootstrap/tests/data/cert-manager-test.yaml");
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .unwrap();
    let sha = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    CertManagerSource::Manifest(Manifest::new(format!("file://{}", path.display()), sha))
}

async fn kube() -> FakeKube {
    let ms = Duration::from_millis;
    FakeKube::start(
        KubeConfig::default()
            .with_crd_established_delay(ms(20))
            .with_deployment_ready_delay(ms(20))
            .with_webhook_ready_delay(ms(40))
            .with_certificate_ready_delay(ms(20))
            .with_namespace_delete_delay(ms(20))
            .with_lb_delete_delay(ms(50)),
    )
    .await
    .unwrap()
}

fn engine_with_bootstrap(p: Arc<GcpProvider>, store: Arc<MemoryStateStore>) -> Engine {
    let bootstrap = KubeBootstrap::new(
        BootstrapConfig::new(p.clone())
            .cert_manager(manifest())
            .delegation(None)
            .poll_interval(Duration::from_millis(5)),
    );
    engine_for(
        Providers::all(p).with_in_cluster(Arc::new(bootstrap)),
        store,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gke_with_cloud_dns_keys_bootstraps_its_cluster_and_tears_it_down() {
    let k = kube().await;
    let g = fake(FakeConfig::default().with_kube(k.url(), k.ca_pem())).await;
    let p = Arc::new(GcpProvider::connect(config(&g.url())).await.unwrap());
    let store = Arc::new(MemoryStateStore::default());
    let engine = engine_with_bootstrap(p, store.clone());
    let spec = spec();

    let report = engine.apply_spec(&spec).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.changed.len(), 20, "{:?}", report.changed);

    // GKE's shape: a bare address and the base64 of the CA's PEM, which the provider
    // turns into an https:// URL that the bootstrap reached with that CA.
    let (_, cluster) = g
        .resources()
        .into_iter()
        .find(|(n, _)| n.contains("/clusters/") && !n.contains("/nodePools/"))
        .unwrap();
    assert_eq!(cluster["endpoint"], k.address());
    assert_eq!(
        cluster["masterAuth"]["clusterCaCertificate"],
        base64::engine::general_purpose::STANDARD.encode(k.ca_pem())
    );
    let state = store.load().await.unwrap().unwrap().state;
    let (endpoint, ca) = state
        .outputs
        .values()
        .find_map(|o| match o {
            Output::Cluster {
                endpoint,
                ca_certificate_pem,
                ..
            } => Some((endpoint.clone(), ca_certificate_pem.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(endpoint, k.url());
    assert_eq!(ca, k.ca_pem());

    // The solver is Cloud DNS in the project, with the DNS service account's key.
    let issuer = k.object("clusterissuers", None, "gitpod-issuer").unwrap();
    let cloud_dns = &issuer["spec"]["acme"]["solvers"][0]["dns01"]["cloudDNS"];
    assert_eq!(cloud_dns["project"], PROJECT);
    assert_eq!(
        cloud_dns["serviceAccountSecretRef"]["name"],
        "clouddns-dns01-solver"
    );
    let state = store.load().await.unwrap().unwrap().state;
    let key = state
        .outputs
        .values()
        .find_map(|o| match o {
            Output::DnsIdentity {
                credentials: Some(c),
                ..
            } => Some(c.expose().clone()),
            _ => None,
        })
        .unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let solver_secret = k
        .object("secrets", Some("cert-manager"), "clouddns-dns01-solver")
        .unwrap();
    assert_eq!(solver_secret["data"]["key.json"], b64(&key));
    // external-dns for Google with the same key, mounted as a file.
    let edns = k
        .object("deployments", Some("external-dns"), "external-dns")
        .unwrap();
    let args = edns["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--provider=google"), "{args}");
    assert!(
        args.contains(&format!("--google-project={PROJECT}")),
        "{args}"
    );
    assert!(args.contains("--txt-owner-id=gp"), "{args}");
    let edns_secret = k
        .object("secrets", Some("external-dns"), "external-dns")
        .unwrap();
    assert_eq!(edns_secret["data"]["credentials.json"], b64(&key));
    // The Cloud SQL secret for the installer, in the Gitpod namespace.
    let cloudsql = k.object("secrets", Some("gitpod"), "cloudsql").unwrap();
    for key in ["credentials.json", "encryptionKeys", "password", "username"] {
        assert!(cloudsql["data"][key].is_string(), "cloudsql lacks {key}");
    }
    // Anonymous credentials name no user: no cluster-admin binding is made.
    assert!(k
        .object("clusterrolebindings", None, "cluster-admin-binding")
        .is_none());

    // Again: nothing to do in the cloud or in the cluster.
    g.reset_calls();
    k.reset_calls();
    let again = engine.apply_spec(&spec).await.unwrap();
    assert!(again.changed.is_empty(), "{:?}", again.changed);
    assert_eq!(g.counts().mutating, 0);
    assert_eq!(k.counts().mutating, 0, "{:?}", k.counts());

    let gone = engine.destroy(&spec).await.unwrap();
    assert!(gone.failed.is_empty(), "{:?}", gone.failed);
    for ns in ["gitpod", "cert-manager", "external-dns"] {
        assert!(k.object("namespaces", None, ns).is_none(), "{ns}");
    }
    assert!(g.resources().keys().all(|n| !n.contains("/clusters/")));
    let plan = engine.plan(&spec).await.unwrap();
    println!("{plan}");
    assert!(plan
        .steps()
        .iter()
        .filter(|s| s.id.kind.domain() == gitpod_refarch::resource::Domain::InCluster)
        .all(|s| s.action.is_mutating()));
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_workload_identity_the_service_accounts_are_annotated_and_no_key_is_stored() {
    let k = kube().await;
    let g = fake(FakeConfig::default().with_kube(k.url(), k.ca_pem())).await;
    let mut cfg = config(&g.url());
    cfg.workload_identity = true;
    let p = Arc::new(GcpProvider::connect(cfg).await.unwrap());
    let engine = engine_with_bootstrap(p, Arc::new(MemoryStateStore::default()));
    let report = engine.apply_spec(&spec()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let email = format!("dns-sa-gp@{PROJECT}.iam.gserviceaccount.com");
    for ns in ["cert-manager", "external-dns"] {
        let sa = k.object("serviceaccounts", Some(ns), ns).unwrap();
        assert_eq!(
            sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
            email.as_str(),
            "{ns}"
        );
    }
    assert!(k
        .object("secrets", Some("cert-manager"), "clouddns-dns01-solver")
        .is_none());
    assert!(k
        .object("secrets", Some("external-dns"), "external-dns")
        .is_none());
    let issuer = k.object("clusterissuers", None, "gitpod-issuer").unwrap();
    let cloud_dns = &issuer["spec"]["acme"]["solvers"][0]["dns01"]["cloudDNS"];
    assert!(
        cloud_dns.get("serviceAccountSecretRef").is_none(),
        "{cloud_dns}"
    );
    k.shutdown().await;
}

/// A bring-your-own certificate on GKE: no issuer, no DNS-01 solver secret, no
/// Certificate; the TLS Secret written from the PEM files; nothing to do again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bring_your_own_certificate_is_written_as_its_tls_secret() {
    let k = kube().await;
    let g = fake(FakeConfig::default().with_kube(k.url(), k.ca_pem())).await;
    let p = Arc::new(GcpProvider::connect(config(&g.url())).await.unwrap());
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gitpod-refarch/tests/data/tls"
    );
    let mut spec = spec();
    spec.certificates = gitpod_refarch::spec::CertificateSettings::bring_your_own_files(
        "https-certificates",
        format!("{data}/chain.pem"),
        format!("{data}/leaf.key"),
    );
    spec.validate().unwrap();
    let tls = gitpod_refarch::tls::TlsCertificate::from_spec(&spec)
        .unwrap()
        .unwrap();
    let bootstrap = KubeBootstrap::new(
        BootstrapConfig::new(p.clone())
            .cert_manager(manifest())
            .delegation(None)
            .poll_interval(Duration::from_millis(5))
            .tls_certificate(tls),
    );
    let engine = engine_for(
        Providers::all(p).with_in_cluster(Arc::new(bootstrap)),
        Arc::new(MemoryStateStore::default()),
    );
    let report = engine.apply_spec(&spec).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(k.object("clusterissuers", None, "gitpod-issuer").is_none());
    assert!(k
        .object("secrets", Some("cert-manager"), "clouddns-dns01-solver")
        .is_none());
    assert!(k
        .object("certificates", Some("gitpod"), "https-certificates")
        .is_none());
    let secret = k
        .object("secrets", Some("gitpod"), "https-certificates")
        .unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let chain = std::fs::read_to_string(format!("{data}/chain.pem")).unwrap();
    assert_eq!(
        secret["data"]["tls.crt"],
        base64::engine::general_purpose::STANDARD.encode(chain)
    );
    assert!(secret["data"]["tls.key"].is_string());
    k.reset_calls();
    let again = engine.apply_spec(&spec).await.unwrap();
    assert!(again.changed.is_empty(), "{:?}", again.changed);
    assert_eq!(k.counts().mutating, 0, "{:?}", k.counts());
    let gone = engine.destroy(&spec).await.unwrap();
    assert!(gone.failed.is_empty(), "{:?}", gone.failed);
    assert!(k.object("namespaces", None, "gitpod").is_none());
    k.shutdown().await;
}

/// The node pools' nodes, as the Kubernetes fake serves them once the GCP fake has
/// published them, carry the Gitpod labels of their pool: checked as `gitpod-installer
/// validate cluster` checks them, a label selector per required label with at least
/// one node each, plus GKE's pool label, the pool's taints (GKE's effect names mapped
/// to Kubernetes') and one node per zone and minimum count. The default pool's nodes
/// go with it, and every node goes with the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pool_has_nodes_with_the_gitpod_labels_the_installer_checks() {
    use gitpod_refarch::spec::{PoolRole, Taint};
    use serde_json::Value;

    let k = kube().await;
    let g = fake(FakeConfig::default().with_kube(k.url(), k.ca_pem())).await;
    let p = Arc::new(GcpProvider::connect(config(&g.url())).await.unwrap());
    let engine = engine_with_bootstrap(p, Arc::new(MemoryStateStore::default()));
    let mut spec = spec();
    spec.node_pools.headless_workspaces.taints.push(Taint::new(
        "gitpod.io/headless",
        "true",
        "PreferNoSchedule",
    ));
    spec.validate().unwrap();
    let report = engine.apply_spec(&spec).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(k.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let nodes = |selector: String| {
        let req = http
            .get(format!("{}/api/v1/nodes", k.url()))
            .query(&[("labelSelector", selector)]);
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let list: Value = resp.json().await.unwrap();
            assert_eq!(list["kind"], "NodeList");
            list["items"].as_array().cloned().unwrap()
        }
    };
    let pools = g.resources();
    let mut total = 0;
    for role in PoolRole::ALL {
        let name = role.short_name();
        let of_pool = nodes(format!("cloud.google.com/gke-nodepool={name}")).await;
        let (_, pool) = pools
            .iter()
            .find(|(k, _)| k.ends_with(&format!("/nodePools/{name}")))
            .unwrap();
        let zones = pool["locations"].as_array().unwrap().len();
        let min = spec.node_pools.get(role).min_nodes.max(1) as usize;
        assert_eq!(of_pool.len(), min * zones, "{name}");
        total += of_pool.len();
        for label in role.required_labels() {
            let with_label = nodes(format!("{label}=true")).await;
            assert!(!with_label.is_empty(), "no node has {label}=true");
            for n in &with_label {
                assert_eq!(
                    n["metadata"]["labels"]["cloud.google.com/gke-nodepool"], name,
                    "{label}"
                );
            }
        }
        for n in &of_pool {
            let labels = &n["metadata"]["labels"];
            let node_name = n["metadata"]["name"].as_str().unwrap();
            assert!(
                node_name.starts_with(&format!("gke-gp-{name}-")),
                "{node_name}"
            );
            assert_eq!(
                labels["node.kubernetes.io/instance-type"],
                spec.node_pools.get(role).machine_type.as_str()
            );
            assert_eq!(labels["topology.kubernetes.io/region"], REGION);
            let ready = n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap();
            assert_eq!(ready["status"], "True");
            let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
            if role == PoolRole::HeadlessWorkspaces {
                assert_eq!(
                    taints,
                    vec![
                        serde_json::json!({"key": "gitpod.io/headless", "value": "true", "effect": "PreferNoSchedule"})
                    ]
                );
            } else {
                assert!(taints.is_empty(), "{name}: {taints:?}");
            }
        }
    }
    // The default pool was removed, and its nodes with it.
    assert!(nodes("cloud.google.com/gke-nodepool=default-pool".into())
        .await
        .is_empty());
    assert_eq!(
        nodes(String::new()).await.len(),
        total,
        "only the pools' nodes"
    );

    // Resized through GKE's setSize, the pool gains nodes (two per zone).
    let (pool_key, pool) = pools
        .iter()
        .find(|(k, _)| k.ends_with("/nodePools/regular-ws"))
        .unwrap();
    let zones = pool["locations"].as_array().unwrap().len();
    let op: Value = http
        .post(format!("{}/v1/{pool_key}:setSize", g.url()))
        .json(&serde_json::json!({"nodeCount": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op_url = format!(
        "{}/v1/projects/{PROJECT}/locations/{REGION}/operations/{}",
        g.url(),
        op["name"].as_str().unwrap()
    );
    for _ in 0..10 {
        let o: Value = http
            .get(&op_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if o["status"] == "DONE" {
            break;
        }
    }
    let regular = nodes("cloud.google.com/gke-nodepool=regular-ws".into()).await;
    assert_eq!(regular.len(), 2 * zones);

    let gone = engine.destroy(&spec).await.unwrap();
    assert!(gone.failed.is_empty(), "{:?}", gone.failed);
    assert!(
        nodes(String::new()).await.is_empty(),
        "the nodes go with the cluster"
    );
    k.shutdown().await;
}
