//! Where the fake answers as a real API server does for clients other than kube-rs:
//! bodies it cannot decode (415), and `metadata.generation` only on the kinds that
//! have one.

use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One raw HTTP/1.1 request (over TLS); (status, body as JSON, or `Null`).
async fn raw(fake: &FakeKube, method: &str, path: &str, ct: &str, body: &[u8]) -> (u16, Value) {
    let mut stream = crate::tls_connect(fake).await;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        fake.addr(),
        body.len()
    );
    if !ct.is_empty() {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (headers, payload) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = headers.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

/// The start of a protobuf-encoded ConfigMap, as kubectl sends built-in kinds: the
/// `k8s\0` magic, then a `runtime.Unknown` message.
const PROTOBUF: &[u8] = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x05\x0a\x03\x0a\x01x";
const PROTOBUF_TYPE: &str = "application/vnd.kubernetes.protobuf";

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

fn assert_415(status: u16, body: &Value) {
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["reason"], "UnsupportedMediaType", "{body}");
    assert_eq!(body["code"], 415, "{body}");
}

#[tokio::test]
async fn bodies_it_cannot_decode_are_415_so_clients_fall_back_to_json() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let cms = "/api/v1/namespaces/default/configmaps";
    // Create, replace, delete options and patch with a protobuf body: 415, no effect.
    let (status, body) = raw(&fake, "POST", cms, PROTOBUF_TYPE, PROTOBUF).await;
    assert_415(status, &body);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("application/json"));
    assert!(fake.object("configmaps", Some("default"), "x").is_none());
    // The client falls back to JSON: created.
    let json_body = serde_json::to_vec(&configmap("x")).unwrap();
    let (status, body) = raw(&fake, "POST", cms, "application/json", &json_body).await;
    assert_eq!(status, 201, "{body}");
    let one = format!("{cms}/x");
    for method in ["PUT", "PATCH", "DELETE"] {
        let (status, body) = raw(&fake, method, &one, PROTOBUF_TYPE, PROTOBUF).await;
        assert_415(status, &body);
    }
    let (status, body) = raw(&fake, "PATCH", &one, "text/plain", b"{}").await;
    assert_415(status, &body);
    assert!(fake.object("configmaps", Some("default"), "x").is_some());
    // YAML and a body without a Content-Type (JSON) are decoded.
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  a: \"2\"\n";
    let (status, body) = raw(&fake, "POST", cms, "application/yaml", yaml).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["a"], "2");
    let json_body = serde_json::to_vec(&configmap("z")).unwrap();
    let (status, body) = raw(&fake, "POST", cms, "", &json_body).await;
    assert_eq!(status, 201, "{body}");
    // The patch types it knows still work.
    let (status, body) = raw(
        &fake,
        "PATCH",
        &one,
        "application/merge-patch+json",
        br#"{"data":{"a":"3"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    fake.shutdown().await;
}

#[tokio::test]
async fn generation_only_on_kinds_that_have_one() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let post = |path: &'static str, obj: Value| {
        let fake = &fake;
        async move {
            let (status, body) = raw(
                fake,
                "POST",
                path,
                "application/json",
                &serde_json::to_vec(&obj).unwrap(),
            )
            .await;
            assert_eq!(status, 201, "{path}: {body}");
            body
        }
    };
    let without = [
        post(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gitpod"}}),
        )
        .await,
        post(
            "/api/v1/namespaces/gitpod/secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}),
        )
        .await,
        post("/api/v1/namespaces/gitpod/configmaps", configmap("c")).await,
        post(
            "/api/v1/namespaces/gitpod/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}),
        )
        .await,
        post(
            "/api/v1/namespaces/gitpod/services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                   "spec": {"ports": [{"port": 80}], "selector": {"app": "a"}}}),
        )
        .await,
        post(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": "crb"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                   "subjects": [{"kind": "User", "name": "me", "apiGroup": "rbac.authorization.k8s.io"}]}),
        )
        .await,
        post(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "cr"}, "rules": []}),
        )
        .await,
    ];
    for obj in &without {
        assert!(obj["metadata"].get("generation").is_none(), "{obj}");
    }
    assert!(
        fake.object("namespaces", None, "default").unwrap()["metadata"]
            .get("generation")
            .is_none()
    );
    // A change of a Secret's data still sets none.
    let (status, body) = raw(
        &fake,
        "PATCH",
        "/api/v1/namespaces/gitpod/secrets/s",
        "application/merge-patch+json",
        br#"{"stringData":{"k":"w"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["metadata"].get("generation").is_none(), "{body}");
    // Kinds with a spec keep theirs, bumped on a change.
    let d = post(
        "/apis/apps/v1/namespaces/gitpod/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                        "template": {"metadata": {"labels": {"app": "d"}},
                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    )
    .await;
    assert_eq!(d["metadata"]["generation"], 1, "{d}");
    let (status, body) = raw(
        &fake,
        "PATCH",
        "/apis/apps/v1/namespaces/gitpod/deployments/d",
        "application/merge-patch+json",
        br#"{"spec":{"replicas":2}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metadata"]["generation"], 2, "{body}");
    fake.shutdown().await;
}
