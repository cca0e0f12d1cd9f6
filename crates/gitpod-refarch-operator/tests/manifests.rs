//! The committed deployment manifests (`deploy/operator/`): equal to what
//! `gitpod_refarch_operator::manifests` generates, valid against Kubernetes' own
//! schemas (`scripts/validate-k8s.mjs`, the npm package `kubernetes-models`, installed
//! by `scripts/install-k8s-models.sh`), and accepted by `kubectl apply
//! --dry-run=server -f deploy/operator/` against the Kubernetes fake.
//!
//! Regenerate the files after a change with
//! `cargo run -p gitpod-refarch-operator -- manifests --out deploy/operator`, or with
//! `GITPOD_REFARCH_WRITE_MANIFESTS=1 cargo test -p gitpod-refarch-operator --test manifests`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use gitpod_refarch_operator::manifests::{self, DEFAULT_IMAGE, DEFAULT_NAMESPACE, FILES};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/operator")
}

fn objects_of(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            use serde::Deserialize as _;
            Value::deserialize(d).unwrap()
        })
        .collect()
}

#[test]
fn the_committed_files_equal_the_generated_ones() {
    if std::env::var("GITPOD_REFARCH_WRITE_MANIFESTS").as_deref() == Ok("1") {
        manifests::write_all(&deploy_dir(), DEFAULT_NAMESPACE, DEFAULT_IMAGE).unwrap();
    }
    let files = manifests::files(DEFAULT_NAMESPACE, DEFAULT_IMAGE).unwrap();
    assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), FILES);
    for (name, generated) in files {
        let path = deploy_dir().join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} differs from the generated manifest: run \
             `cargo run -p gitpod-refarch-operator -- manifests --out deploy/operator` \
             (or GITPOD_REFARCH_WRITE_MANIFESTS=1 cargo test -p gitpod-refarch-operator \
             --test manifests)",
            path.display()
        );
    }
    // `all` is the three install files in one stream.
    let all = manifests::all(DEFAULT_NAMESPACE, DEFAULT_IMAGE).unwrap();
    let n = serde_yaml_ng::Deserializer::from_str(&all).count();
    assert_eq!(n, 1 + 5 + 1);
}

#[test]
fn rbac_is_least_privilege_and_the_deployment_hardened() {
    let rbac = objects_of("rbac.yaml");
    let kinds: Vec<&str> = rbac.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding"
        ]
    );
    let rules = |o: &Value| -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        o["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    strings(&r["apiGroups"]),
                    strings(&r["resources"]),
                    strings(&r["verbs"]),
                )
            })
            .collect()
    };
    let text = serde_json::to_string(&rbac).unwrap();
    assert!(!text.contains('*'), "no wildcards: {text}");
    let cluster = rules(&rbac[1]);
    let has = |rules: &[(Vec<String>, Vec<String>, Vec<String>)], group: &str, res: &str| {
        rules
            .iter()
            .find(|r| r.0.iter().any(|g| g == group) && r.1.iter().any(|x| x == res))
            .map(|r| r.2.join(","))
    };
    assert_eq!(
        has(&cluster, "refarch.gitpod.io", "gitpodinstallations").unwrap(),
        "get,list,watch,patch,update"
    );
    assert_eq!(
        has(&cluster, "refarch.gitpod.io", "gitpodinstallations/status").unwrap(),
        "patch,update"
    );
    assert_eq!(
        has(
            &cluster,
            "refarch.gitpod.io",
            "gitpodinstallations/finalizers"
        )
        .unwrap(),
        "update"
    );
    assert_eq!(has(&cluster, "", "events").unwrap(), "create,patch");
    assert_eq!(
        has(&cluster, "events.k8s.io", "events").unwrap(),
        "create,patch"
    );
    assert_eq!(
        has(&cluster, "", "secrets").unwrap(),
        "get,list,watch,create,update,patch,delete"
    );
    assert!(has(&cluster, "coordination.k8s.io", "leases").is_none());
    let role = &rbac[3];
    assert_eq!(role["metadata"]["namespace"], DEFAULT_NAMESPACE);
    assert_eq!(
        has(&rules(role), "coordination.k8s.io", "leases").unwrap(),
        "get,create,update,delete"
    );
    for binding in [&rbac[2], &rbac[4]] {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": manifests::NAME, "namespace": DEFAULT_NAMESPACE}])
        );
    }

    let d = &objects_of("deployment.yaml")[0];
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], manifests::NAME);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], DEFAULT_IMAGE);
    assert_eq!(c["args"], json!(["--leader-election"]));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
}

#[test]
fn the_manifests_match_the_kubernetes_schemas() {
    let mut objects = Vec::new();
    for f in ["crd.yaml", "rbac.yaml", "deployment.yaml"] {
        objects.extend(objects_of(f));
    }
    let dir = std::env::temp_dir().join(format!(
        "gitpod-refarch-operator-schemas-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("manifests.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&objects).unwrap()).unwrap();
    let out = std::process::Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate-k8s.mjs"))
        .arg(&file)
        .output()
        .expect("node is needed: scripts/install-k8s-models.sh installs the packages");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(2),
        "run scripts/install-k8s-models.sh: {stderr}"
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("validated {} objects", objects.len())),
        "{stdout}"
    );
}

fn kubectl() -> Result<PathBuf, String> {
    if let Some(k) = std::env::var_os("GITPOD_REFARCH_KUBECTL") {
        return Ok(PathBuf::from(k));
    }
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
        .ok_or_else(|| "kubectl is not installed".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_dry_run_server_accepts_deploy_operator() {
    let kubectl = match kubectl() {
        Ok(k) => k,
        Err(why) if std::env::var("GITPOD_REFARCH_SKIP_KUBECTL").as_deref() == Ok("1") => {
            eprintln!("skipped (GITPOD_REFARCH_SKIP_KUBECTL=1): {why}");
            return;
        }
        Err(why) => panic!("{why}: set GITPOD_REFARCH_KUBECTL or GITPOD_REFARCH_SKIP_KUBECTL=1"),
    };
    let fake = FakeKube::start(
        FakeConfig::default()
            .with_crd_established_delay(Duration::from_millis(50))
            .with_deployment_ready_delay(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "gitpod-refarch-operator-manifests-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), fake.ca_pem()).unwrap();
    std::fs::write(
        dir.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: not-checked-by-the-fake\n",
            fake.url(),
            dir.join("ca.pem").display()
        ),
    )
    .unwrap();
    let run = |args: Vec<String>| {
        let (kubectl, dir) = (kubectl.clone(), dir.clone());
        async move {
            let out = tokio::time::timeout(
                Duration::from_secs(120),
                tokio::process::Command::new(&kubectl)
                    .args(&args)
                    .env("KUBECONFIG", dir.join("kubeconfig"))
                    .env("HOME", &dir)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .expect("kubectl took more than 120 s")
            .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "kubectl {args:?}: {text}");
            text
        }
    };
    let deploy = deploy_dir();
    // The CRD for real (a dry run does not establish it), and the namespace the
    // manifests expect; then everything in a server-side dry run.
    run(vec![
        "apply".into(),
        "-f".into(),
        deploy.join("crd.yaml").display().to_string(),
    ])
    .await;
    run(vec![
        "wait".into(),
        "--for=condition=Established".into(),
        "--timeout=30s".into(),
        "crd/gitpodinstallations.refarch.gitpod.io".into(),
    ])
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    {
        use rustls::pki_types::pem::PemObject as _;
        config.root_cert = Some(
            rustls::pki_types::CertificateDer::pem_slice_iter(fake.ca_pem().as_bytes())
                .map(|c| c.unwrap().to_vec())
                .collect(),
        );
    }
    let client = kube::Client::try_from(config).unwrap();
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": DEFAULT_NAMESPACE}})).unwrap();
    Api::<Namespace>::all(client)
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let out = run(vec![
        "apply".into(),
        "--dry-run=server".into(),
        "-f".into(),
        deploy.display().to_string(),
    ])
    .await;
    // CRD, 5 RBAC objects, the Deployment and the example.
    assert_eq!(out.matches("(server dry run)").count(), 8, "{out}");
    for name in [
        "serviceaccount/gitpod-refarch-operator",
        "clusterrole.rbac.authorization.k8s.io/gitpod-refarch-operator",
        "deployment.apps/gitpod-refarch-operator",
        "gitpodinstallation.refarch.gitpod.io/gitpod",
    ] {
        assert!(out.contains(name), "{name} missing: {out}");
    }
    // Nothing was created by the dry run.
    assert!(fake
        .object("deployments", Some(DEFAULT_NAMESPACE), manifests::NAME)
        .is_none());
    let _ = std::fs::remove_dir_all(&dir);
    fake.shutdown().await;
}
