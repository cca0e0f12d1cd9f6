//! CRDs becoming Established, the cert-manager webhook, Certificates and ACME challenges.

use std::time::{Duration, Instant};

use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::{Api, Client, Discovery};
use serde_json::{json, Value};

use crate::{api_error, apply, apply_json, client, deployment, eventually, namespace};

/// A minimal v1 CRD that accepts any content.
fn crd(group: &str, plural: &str, kind: &str, scope: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List")},
            "scope": scope,
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
            }],
        },
    })
}

fn dynamic(client: &Client, group: &str, kind: &str, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

async fn apply_dynamic(api: &Api<DynamicObject>, obj: Value) -> kube::Result<DynamicObject> {
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let o: DynamicObject = serde_json::from_value(obj).unwrap();
    api.patch(&name, &apply(), &Patch::Apply(&o)).await
}

fn cluster_issuer() -> Value {
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "gitpod-issuer"},
        "spec": {"acme": {
            "server": "https://acme.example.invalid/directory",
            "email": "ops@example.com",
            "privateKeySecretRef": {"name": "issuer-account-key"},
            "solvers": [{"dns01": {"cloudDNS": {"project": "p"}}}],
        }},
    })
}

fn certificate() -> Value {
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "https-certificates", "namespace": "gitpod"},
        "spec": {
            "secretName": "https-certificates",
            "issuerRef": {"name": "gitpod-issuer", "kind": "ClusterIssuer"},
            "dnsNames": ["gitpod.example.com", "*.gitpod.example.com"],
        },
    })
}

fn is_true(obj: &Value, kind: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

/// Apply the CRDs, wait until Established, then install the webhook and wait until a
/// ClusterIssuer is accepted. Returns when cert-manager "works".
async fn install_cert_manager(fake: &FakeKube, client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (group, plural, kind, scope) in [
        (
            "cert-manager.io",
            "clusterissuers",
            "ClusterIssuer",
            "Cluster",
        ),
        (
            "cert-manager.io",
            "certificates",
            "Certificate",
            "Namespaced",
        ),
        (
            "acme.cert-manager.io",
            "challenges",
            "Challenge",
            "Namespaced",
        ),
    ] {
        apply_json(&crds, crd(group, plural, kind, scope))
            .await
            .unwrap();
    }

    // Before Established: the paths 404 and discovery does not show the group.
    let issuers = dynamic(client, "cert-manager.io", "ClusterIssuer", None);
    let e = api_error(issuers.list(&ListParams::default()).await);
    assert_eq!(e.code, 404);
    let d = Discovery::new(client.clone()).run().await.unwrap();
    assert!(!d.has_group("cert-manager.io"));

    for name in [
        "clusterissuers.cert-manager.io",
        "certificates.cert-manager.io",
        "challenges.acme.cert-manager.io",
    ] {
        eventually("CRD Established", || async {
            let c = crds.get(name).await.unwrap();
            let conds = c.status?.conditions?;
            conds
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
    }
    let d = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = d
        .resolve_gvk(&GroupVersionKind::gvk(
            "cert-manager.io",
            "v1",
            "ClusterIssuer",
        ))
        .unwrap();
    assert_eq!(
        (ar.plural.as_str(), caps.scope.clone()),
        ("clusterissuers", Scope::Cluster)
    );
    let (_, caps) = d
        .resolve_gvk(&GroupVersionKind::gvk(
            "cert-manager.io",
            "v1",
            "Certificate",
        ))
        .unwrap();
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(d.has_group("acme.cert-manager.io"));
    assert!(issuers
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());

    // The webhook is down: the API server's error.
    let e = api_error(apply_dynamic(&issuers, cluster_issuer()).await);
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    assert!(
        e.message.starts_with(
            "Internal error occurred: failed calling webhook \"webhook.cert-manager.io\""
        ) && e.message.contains("connection refused"),
        "{}",
        e.message
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    apply_json(&namespaces, namespace("cert-manager"))
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "cert-manager");
    let started = Instant::now();
    apply_json(
        &deployments,
        deployment("cert-manager", "cert-manager-webhook", 1),
    )
    .await
    .unwrap();
    assert!(!fake.webhook_ready());
    let e = api_error(apply_dynamic(&issuers, cluster_issuer()).await);
    assert_eq!(e.code, 500, "still down right after the Deployment exists");
    let issuer = eventually("webhook ready", || async {
        apply_dynamic(&issuers, cluster_issuer()).await.ok()
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(issuer.metadata.name.as_deref(), Some("gitpod-issuer"));
    let webhook = deployments.get("cert-manager-webhook").await.unwrap();
    let status = webhook.status.unwrap();
    assert_eq!(
        (status.ready_replicas, status.available_replicas),
        (Some(1), Some(1))
    );
    assert!(fake.webhook_ready());

    let issuer = eventually("issuer ready", || async {
        let i = issuers.get("gitpod-issuer").await.unwrap();
        let v = serde_json::to_value(&i).unwrap();
        is_true(&v, "Ready").then_some(v)
    })
    .await;
    assert_eq!(
        issuer["status"]["acme"]["lastRegisteredEmail"],
        "ops@example.com"
    );

    apply_json(&namespaces, namespace("gitpod")).await.unwrap();
}

fn config() -> FakeConfig {
    FakeConfig::default()
        .with_crd_established_delay(Duration::from_millis(150))
        .with_webhook_ready_delay(Duration::from_millis(400))
        .with_deployment_ready_delay(Duration::from_millis(20))
        .with_certificate_ready_delay(Duration::from_millis(100))
}

#[tokio::test]
async fn crds_webhook_and_a_certificate_that_becomes_ready() {
    let fake = FakeKube::start(config()).await.unwrap();
    let client = client(&fake);
    install_cert_manager(&fake, &client).await;

    let certs = dynamic(&client, "cert-manager.io", "Certificate", Some("gitpod"));
    apply_dynamic(&certs, certificate()).await.unwrap();
    let cert = eventually("certificate ready", || async {
        let c = serde_json::to_value(certs.get("https-certificates").await.unwrap()).unwrap();
        is_true(&c, "Ready").then_some(c)
    })
    .await;
    assert!(cert["status"]["notAfter"].is_string());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "gitpod");
    let tls = secrets.get("https-certificates").await.unwrap();
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = tls.data.unwrap();
    let crt = String::from_utf8(data["tls.crt"].0.clone()).unwrap();
    let key = String::from_utf8(data["tls.key"].0.clone()).unwrap();
    assert!(crt.starts_with("-----BEGIN CERTIFICATE-----"), "{crt}");
    assert!(key.contains("PRIVATE KEY-----"), "{key}");
    assert_eq!(
        tls.metadata.annotations.unwrap()["cert-manager.io/certificate-name"],
        "https-certificates"
    );
    let challenges = dynamic(&client, "acme.cert-manager.io", "Challenge", Some("gitpod"));
    assert!(challenges
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn failing_acme_challenges_are_visible() {
    let reason =
        "Waiting for DNS-01 challenge propagation: NS ns1.example.invalid. returned REFUSED";
    let fake = FakeKube::start(config().with_acme_challenges_fail(reason))
        .await
        .unwrap();
    let client = client(&fake);
    install_cert_manager(&fake, &client).await;

    let certs = dynamic(&client, "cert-manager.io", "Certificate", Some("gitpod"));
    apply_dynamic(&certs, certificate()).await.unwrap();
    let challenges = dynamic(&client, "acme.cert-manager.io", "Challenge", Some("gitpod"));
    let challenge = eventually("a challenge", || async {
        let list = challenges.list(&ListParams::default()).await.unwrap();
        list.items.into_iter().next()
    })
    .await;
    let c = serde_json::to_value(&challenge).unwrap();
    assert_eq!(c["status"]["presented"], false);
    assert_eq!(c["status"]["reason"], reason);
    assert_eq!(c["spec"]["dnsName"], "gitpod.example.com");
    assert_eq!(c["spec"]["type"], "DNS-01");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cert = serde_json::to_value(certs.get("https-certificates").await.unwrap()).unwrap();
    assert!(!is_true(&cert, "Ready"), "{cert}");
    assert!(fake
        .object("secrets", Some("gitpod"), "https-certificates")
        .is_none());
    fake.shutdown().await;
}

/// The Ready condition of `obj` and `metadata.generation`.
fn ready_at(obj: &Value) -> (Value, Value) {
    let ready = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    (ready, obj["metadata"]["generation"].clone())
}

#[tokio::test]
async fn a_changed_cluster_issuer_is_reconciled_at_its_new_generation() {
    let fake = FakeKube::start(config()).await.unwrap();
    let client = client(&fake);
    install_cert_manager(&fake, &client).await;
    let issuers = dynamic(&client, "cert-manager.io", "ClusterIssuer", None);
    apply_dynamic(&issuers, cluster_issuer()).await.unwrap();
    let live = fake
        .object("clusterissuers", None, "gitpod-issuer")
        .unwrap();
    let (ready, generation) = ready_at(&live);
    assert_eq!(ready["status"], "True", "{live}");
    assert_eq!(ready["observedGeneration"], generation, "{live}");

    // A change of its spec: until cert-manager reconciles it, Ready is the old
    // generation's; then Ready at the new one, with the new account's email.
    fake.set_issuer_ready_delay(Duration::from_millis(300));
    let mut changed = cluster_issuer();
    changed["spec"]["acme"]["email"] = json!("new@example.com");
    let after = apply_dynamic(&issuers, changed).await.unwrap();
    let after = serde_json::to_value(after).unwrap();
    let (stale, new_generation) = ready_at(&after);
    assert_eq!(new_generation, json!(generation.as_i64().unwrap() + 1));
    assert_eq!(stale["observedGeneration"], generation, "{after}");
    let started = Instant::now();
    let live = eventually("the issuer reconciled", || async {
        let i = fake
            .object("clusterissuers", None, "gitpod-issuer")
            .unwrap();
        (ready_at(&i).0["observedGeneration"] == new_generation).then_some(i)
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    let (ready, _) = ready_at(&live);
    assert_eq!(ready["status"], "True", "{live}");
    assert_eq!(
        live["status"]["acme"]["lastRegisteredEmail"], "new@example.com",
        "{live}"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn a_changed_certificate_is_reissued_at_its_new_generation() {
    let fake = FakeKube::start(config()).await.unwrap();
    let client = client(&fake);
    install_cert_manager(&fake, &client).await;
    let certs = dynamic(&client, "cert-manager.io", "Certificate", Some("gitpod"));
    apply_dynamic(&certs, certificate()).await.unwrap();
    eventually("certificate ready", || async {
        let c = fake
            .object("certificates", Some("gitpod"), "https-certificates")
            .unwrap();
        is_true(&c, "Ready").then_some(())
    })
    .await;
    let mut changed = certificate();
    changed["spec"]["dnsNames"] = json!(["gitpod.example.com"]);
    apply_dynamic(&certs, changed).await.unwrap();
    let live = eventually("certificate reissued", || async {
        let c = fake
            .object("certificates", Some("gitpod"), "https-certificates")
            .unwrap();
        let (ready, generation) = ready_at(&c);
        (ready["status"] == "True" && ready["observedGeneration"] == generation).then_some(c)
    })
    .await;
    assert_eq!(live["metadata"]["generation"], 2, "{live}");
    let tls = fake
        .object("secrets", Some("gitpod"), "https-certificates")
        .unwrap();
    assert_eq!(
        tls["metadata"]["annotations"]["cert-manager.io/alt-names"],
        "gitpod.example.com"
    );
    fake.shutdown().await;
}
