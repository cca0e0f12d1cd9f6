//! kubectl, a client nobody here wrote, runs the guide's steps against the fake with
//! its default flags (`scripts/kubectl-suite.sh`): client-side validation with the
//! fake's `/openapi/v2`, secrets, annotations, CRDs and `wait`, the guide's
//! ClusterIssuer, server-side apply, `get --watch`, `diff`, `delete`.
//!
//! The kubectl is `$GITPOD_REFARCH_KUBECTL`, else Debian's unpacked by scripts/test.sh
//! under `~/.cache/gitpod-refarch/kubernetes-client`, else `kubectl` on `PATH`
//! (scripts/test.sh installs Debian's `kubernetes-client`, 1.20 on Debian 12, and
//! points the variable at it). Without one the test fails, unless
//! `GITPOD_REFARCH_SKIP_KUBECTL=1`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};

/// The kubectl to run, or why there is none.
fn kubectl() -> Result<PathBuf, String> {
    if let Some(k) = std::env::var_os("GITPOD_REFARCH_KUBECTL") {
        let k = PathBuf::from(k);
        return if k.is_file() {
            Ok(k)
        } else {
            Err(format!(
                "GITPOD_REFARCH_KUBECTL={} does not exist",
                k.display()
            ))
        };
    }
    // Where scripts/test.sh unpacks Debian's package when another package owns
    // /usr/bin/kubectl.
    if let Some(home) = std::env::var_os("HOME") {
        let unpacked =
            Path::new(&home).join(".cache/gitpod-refarch/kubernetes-client/usr/bin/kubectl");
        if unpacked.is_file() {
            return Ok(unpacked);
        }
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|k| k.is_file())
        .ok_or_else(|| {
            "kubectl is not installed (no GITPOD_REFARCH_KUBECTL, no kubectl on PATH)".into()
        })
}

/// A kubeconfig for the fake: its https URL and its CA, as `gcloud container clusters
/// get-credentials` writes one, and a bearer token the fake does not check (kubectl
/// 1.20 prompts for a password on an https cluster without any credentials).
fn kubeconfig(fake: &FakeKube) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(fake.ca_pem());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake-kube\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\ncontexts:\n- name: fake-kube\n  context:\n    cluster: fake-kube\n    user: fake-kube\ncurrent-context: fake-kube\nusers:\n- name: fake-kube\n  user:\n    token: not-checked-by-the-fake\n",
        fake.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_the_guides_steps_with_default_flags() {
    let kubectl = match kubectl() {
        Ok(k) => k,
        Err(why) if std::env::var("GITPOD_REFARCH_SKIP_KUBECTL").as_deref() == Ok("1") => {
            eprintln!("skipped (GITPOD_REFARCH_SKIP_KUBECTL=1): {why}");
            return;
        }
        Err(why) => panic!(
            "{why}: install Debian's kubernetes-client (scripts/test.sh does) and/or set \
             GITPOD_REFARCH_KUBECTL, or set GITPOD_REFARCH_SKIP_KUBECTL=1 to skip this test"
        ),
    };
    let fake = FakeKube::start(
        FakeConfig::default()
            .with_crd_established_delay(Duration::from_millis(50))
            .with_deployment_ready_delay(Duration::from_millis(50))
            .with_webhook_ready_delay(Duration::from_millis(200))
            .with_namespace_delete_delay(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "fake-kube-kubectl-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kubeconfig");
    std::fs::write(&config, kubeconfig(&fake)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kubectl-suite.sh");
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("bash")
            .arg(&script)
            .arg(&config)
            .env("KUBECTL", &kubectl)
            // kubectl's discovery cache lives under $HOME/.kube/cache: keep this run's
            // (a fresh fake per run, same host:port possible) out of the user's.
            .env("HOME", &dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the kubectl suite took more than 300 s")
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "scripts/kubectl-suite.sh failed with {} ({}):\n{stdout}\n{stderr}",
        out.status,
        kubectl.display()
    );
    // kubectl validated with the fake's OpenAPI document, fetched as protobuf.
    let protobuf = fake.calls().into_iter().any(|c| {
        c.path == "/openapi/v2"
            && c.status == 200
            && c.response["mediaType"]
                .as_str()
                .is_some_and(|m| m.contains("protobuf"))
    });
    assert!(protobuf, "kubectl never fetched /openapi/v2 as protobuf");
    fake.shutdown().await;
}

/// GET `path` (JSON).
async fn get_json(client: &kube::Client, path: &str) -> serde_json::Value {
    let req = axum::http::Request::get(path).body(Vec::new()).unwrap();
    serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap()
}

#[tokio::test]
async fn openapi_documents_describe_the_served_kinds() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    use kube::Api;

    let fake = FakeKube::start(
        FakeConfig::default().with_crd_established_delay(Duration::from_millis(10)),
    )
    .await
    .unwrap();
    let client = crate::client(&fake);

    // v2: the built-ins from the Kubernetes schemas, each kind with its GVK.
    let v2 = get_json(&client, "/openapi/v2").await;
    assert_eq!(v2["swagger"], "2.0");
    let defs = &v2["definitions"];
    assert_eq!(
        defs["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    assert_eq!(
        defs["io.k8s.api.core.v1.Container"]["properties"]["imagePullPolicy"]["type"],
        "string"
    );
    // The patch operation lists dryRun (kubectl diff looks for it).
    let patch = &v2["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "dryRun"));

    // A CRD's schema is published once it is Established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "size": {"type": "integer"},
                    "labels": {"type": "object", "nullable": true, "additionalProperties": {"type": "string"}},
                }}},
            }}}],
        },
    }))
    .unwrap();
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("test"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    crate::eventually("the widget schema in /openapi/v2", || {
        let client = client.clone();
        async move {
            let v2 = get_json(&client, "/openapi/v2").await;
            v2["definitions"].get("com.example.v1.Widget").cloned()
        }
    })
    .await;
    let v2 = get_json(&client, "/openapi/v2").await;
    let widget = &v2["definitions"]["com.example.v1.Widget"];
    assert_eq!(
        widget["properties"]["spec"]["properties"]["size"]["type"],
        "integer"
    );
    // Nullable values lose their type in v2 (kubectl 1.20 could not read it).
    assert!(widget["properties"]["spec"]["properties"]["labels"]
        .get("type")
        .is_none());
    assert_eq!(
        widget["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );

    // v3: one document per group version, found through the discovery document.
    let v3 = get_json(&client, "/openapi/v3").await;
    for gv in ["api/v1", "apis/apps/v1", "apis/example.com/v1"] {
        let url = v3["paths"][gv]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
    }
    let url = v3["paths"]["apis/example.com/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = get_json(&client, &url).await;
    assert_eq!(doc["openapi"], "3.0.0");
    let widget = &doc["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(
        widget["properties"]["spec"]["properties"]["labels"]["nullable"],
        true
    );
    assert!(doc["components"]["schemas"]
        .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        .is_some());
    assert!(doc["paths"]
        .get("/apis/example.com/v1/namespaces/{namespace}/widgets/{name}")
        .is_some());
    let core = get_json(&client, "/openapi/v3/api/v1").await;
    assert!(core["components"]["schemas"]
        .get("io.k8s.api.core.v1.Secret")
        .is_some());
    fake.shutdown().await;
}
