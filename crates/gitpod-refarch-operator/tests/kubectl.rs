//! The "done means", end to end with programs nobody here wrote driving them:
//! the operator **binary** (`run --cloud sim`) against the Kubernetes fake (in
//! process, real HTTPS on 127.0.0.1) through a kubeconfig, and Debian's `kubectl`
//! applying `deploy/operator/crd.yaml` and `deploy/operator/example.yaml`, waiting for
//! `Ready`, listing with the printer columns, deleting through the finalizer.
//!
//! Plus: the CLI and the controller refuse to run on one state at once. The CLI
//! (`gitpod-refarch`, package `gitpod-refarch-examples`) is another package's binary,
//! which this package's tests cannot build or locate, so this is checked at the
//! library level the CLI uses: an `Engine` on the same `KubeStateStore` with another
//! lock owner is refused while the running operator binary holds the lock, naming
//! `controller <identity>`.
//!
//! The kubectl is `$GITPOD_REFARCH_KUBECTL`, else Debian's unpacked by scripts/test.sh
//! under `~/.cache/gitpod-refarch/kubernetes-client`, else `kubectl` on `PATH`.
//! Without one the test fails, unless `GITPOD_REFARCH_SKIP_KUBECTL=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use gitpod_refarch::state::StateStore;
use gitpod_refarch::{Engine, ErrorKind};
use gitpod_refarch_bootstrap::KubeStateStore;
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use gitpod_refarch_operator::controller;
use gitpod_refarch_operator::crd::GitpodInstallation;
use gitpod_refarch_operator::factory::{ProviderFactory, SimFactory};

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

/// A kubeconfig for the fake: its https URL, its CA, a token the fake does not check
/// (kubectl 1.20 prompts for a password on an https cluster without credentials).
fn kubeconfig(fake: &FakeKube) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(fake.ca_pem());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake-kube\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\ncontexts:\n- name: fake-kube\n  context:\n    cluster: fake-kube\n    user: fake-kube\ncurrent-context: fake-kube\nusers:\n- name: fake-kube\n  user:\n    token: not-checked-by-the-fake\n",
        fake.url()
    )
}

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/operator")
        .join(file)
}

/// The example's namespace and name, as the committed file says.
fn example_key() -> (String, String) {
    let text = std::fs::read_to_string(deploy("example.yaml")).unwrap();
    let v: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    (
        v["metadata"]["namespace"].as_str().unwrap().to_string(),
        v["metadata"]["name"].as_str().unwrap().to_string(),
    )
}

/// A fake, a kubeconfig for it, a scratch HOME for kubectl's cache, and the operator
/// binary running against it.
struct Cluster {
    fake: FakeKube,
    dir: PathBuf,
    config: PathBuf,
    kubectl: PathBuf,
    operator: tokio::process::Child,
    identity: String,
}

impl Cluster {
    async fn start(kubectl: PathBuf, identity: &str, extra: &[&str]) -> Cluster {
        let fake = FakeKube::start(
            FakeConfig::default()
                .with_crd_established_delay(Duration::from_millis(50))
                .with_deployment_ready_delay(Duration::from_millis(50))
                .with_namespace_delete_delay(Duration::from_millis(50)),
        )
        .await
        .unwrap();
        let dir = std::env::temp_dir().join(format!(
            "operator-kubectl-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("kubeconfig");
        std::fs::write(&config, kubeconfig(&fake)).unwrap();
        let log = std::fs::File::create(dir.join("operator.log")).unwrap();
        let operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_gitpod-refarch-operator"))
            .arg("run")
            .args(["--cloud", "sim", "--identity", identity])
            .args(["--leader-election", "--lease-namespace", "default"])
            .args([
                "--lease-duration",
                "3",
                "--renew-deadline",
                "2",
                "--retry-period",
                "0.2",
            ])
            .args(extra)
            .arg("--kubeconfig")
            .arg(&config)
            .env("RUST_LOG", "info")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Cluster {
            fake,
            dir,
            config,
            kubectl,
            operator,
            identity: identity.to_string(),
        }
    }

    fn operator_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("operator.log")).unwrap_or_default()
    }

    /// Run kubectl; its status, stdout and stderr.
    async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(
            Duration::from_secs(180),
            tokio::process::Command::new(&self.kubectl)
                .args(args)
                .env("KUBECONFIG", &self.config)
                // kubectl's discovery cache lives under $HOME/.kube/cache: keep this
                // run's (a fresh fake per run, same host:port possible) apart.
                .env("HOME", &self.dir)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("kubectl took more than 180 s")
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        println!("$ kubectl {}\n{stdout}{stderr}", args.join(" "));
        (out.status.success(), stdout, stderr)
    }

    /// kubectl that must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.kubectl(args).await;
        assert!(
            ok,
            "kubectl {} failed:\n{stdout}\n{stderr}\noperator log:\n{}",
            args.join(" "),
            self.operator_log()
        );
        stdout
    }

    /// The CRD and the example's namespace, through kubectl.
    async fn install(&self, ns: &str) {
        let crd = deploy("crd.yaml");
        self.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
        self.ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/gitpodinstallations.refarch.gitpod.io",
        ])
        .await;
        self.ok(&["create", "namespace", ns]).await;
    }

    async fn stop(mut self) {
        let _ = self.operator.start_kill();
        let _ = self.operator.wait().await;
        let _ = std::fs::remove_dir_all(&self.dir);
        self.fake.shutdown().await;
    }
}

fn kubectl_or_skip() -> Option<PathBuf> {
    match kubectl() {
        Ok(k) => Some(k),
        Err(why) if std::env::var("GITPOD_REFARCH_SKIP_KUBECTL").as_deref() == Ok("1") => {
            eprintln!("skipped (GITPOD_REFARCH_SKIP_KUBECTL=1): {why}");
            None
        }
        Err(why) => panic!(
            "{why}: install Debian's kubernetes-client (scripts/test.sh does) and/or set \
             GITPOD_REFARCH_KUBECTL, or set GITPOD_REFARCH_SKIP_KUBECTL=1 to skip this test"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_wait_ready_get_and_delete() {
    let Some(kubectl) = kubectl_or_skip() else {
        return;
    };
    let cluster = Cluster::start(kubectl, "operator-0", &[]).await;
    let (ns, name) = example_key();
    cluster.install(&ns).await;
    let example = deploy("example.yaml");
    cluster
        .ok(&["apply", "-f", example.to_str().unwrap()])
        .await;

    let gpi = format!("gitpodinstallation/{name}");
    cluster
        .ok(&[
            "wait",
            "--for=condition=Ready",
            &gpi,
            "-n",
            &ns,
            "--timeout=120s",
        ])
        .await;

    // What kubectl prints: the CRD's printer columns, by the API server's Table.
    let table = cluster.ok(&["get", "gpi", &name, "-n", &ns]).await;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines.first().map(Vec::as_slice),
        Some(&["NAME", "CLOUD", "DOMAIN", "PHASE", "AGE"][..]),
        "{table}"
    );
    assert_eq!(
        lines.get(1).map(|row| &row[..4]),
        Some(&[name.as_str(), "gcp", "gitpod.example.com", "Ready"][..]),
        "{table}"
    );
    assert!(
        lines[1][4].ends_with('s') || lines[1][4].ends_with('m'),
        "the age is printed as a duration: {table}"
    );

    // What kubectl reads back.
    let phase = cluster
        .ok(&[
            "get",
            "gpi",
            &name,
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.phase} {.spec.cloud} {.spec.domain}",
        ])
        .await;
    assert_eq!(phase.trim(), "Ready gcp gitpod.example.com", "{phase}");

    // What the controller wrote: state, installer bundle, finalizer, lock released.
    let state = controller::state_secret_name(&name);
    assert!(cluster.fake.object("secrets", Some(&ns), &state).is_some());
    let obj = cluster
        .fake
        .object("gitpodinstallations.refarch.gitpod.io", Some(&ns), &name)
        .unwrap();
    assert_eq!(obj["metadata"]["finalizers"][0], controller::FINALIZER);
    let installer = obj["spec"]["operator"]["installerSecret"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{name}-installer"));
    assert!(cluster
        .fake
        .object("secrets", Some(&ns), &installer)
        .is_some());
    assert!(cluster
        .fake
        .object("leases", Some(&ns), &format!("{state}-lock"))
        .is_none());
    // The operator binary led (its Lease).
    let lease = cluster
        .fake
        .object("leases", Some("default"), "gitpod-refarch-operator")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], cluster.identity);

    // Delete: the finalizer runs the destroy, then the resource is gone.
    cluster
        .ok(&["delete", &gpi, "-n", &ns, "--timeout=120s"])
        .await;
    let (found, stdout, stderr) = cluster.kubectl(&["get", &gpi, "-n", &ns]).await;
    assert!(!found, "still there: {stdout}");
    assert!(
        stderr.contains("NotFound") || stderr.contains("not found"),
        "{stderr}"
    );
    assert!(
        cluster.fake.object("secrets", Some(&ns), &state).is_none(),
        "the destroy removed the state Secret"
    );
    cluster.stop().await;
}

/// The CLI and the controller never run on one state at once: while the operator
/// binary applies (a slow simulated cloud), an engine with another owner on the same
/// state Secret is refused with `StateLocked`, naming `controller <identity>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_is_refused_while_the_controller_holds_the_state() {
    let Some(kubectl) = kubectl_or_skip() else {
        return;
    };
    // ~16 minutes of realistic cloud operations in ~10 s.
    let cluster = Cluster::start(kubectl, "operator-1", &["--sim-latency-scale", "0.01"]).await;
    let (ns, name) = example_key();
    cluster.install(&ns).await;
    let example = deploy("example.yaml");
    cluster
        .ok(&["apply", "-f", example.to_str().unwrap()])
        .await;

    let client = {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::CertificateDer;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = kube::Config::new(cluster.fake.url().parse().unwrap());
        config.root_cert = Some(
            CertificateDer::pem_slice_iter(cluster.fake.ca_pem().as_bytes())
                .map(|c| c.unwrap().to_vec())
                .collect(),
        );
        kube::Client::try_from(config).unwrap()
    };
    let url = format!("kubernetes://{ns}/{}", controller::state_secret_name(&name));
    let store = KubeStateStore::from_url(&url, client.clone()).unwrap();
    let held = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if let Some(lock) = store.current_lock().await.unwrap() {
                return lock;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the controller never locked {url}:\n{}",
            cluster.operator_log()
        )
    });
    assert_eq!(held.owner, "controller operator-1");

    // The CLI's engine: same state, another owner.
    let api: kube::Api<GitpodInstallation> = kube::Api::namespaced(client.clone(), &ns);
    let gpi = api.get(&name).await.unwrap();
    let spec = controller::parse_spec(
        &gpi,
        &gitpod_refarch_operator::sources::SecretSources::none(),
    )
    .unwrap();
    let providers = SimFactory::default()
        .providers(&spec, None, &gitpod_refarch::secret::ProcessSources)
        .await
        .unwrap();
    let engine = Engine::builder(providers)
        .state(std::sync::Arc::new(
            KubeStateStore::from_url(&url, client.clone()).unwrap(),
        ))
        .lock_owner("alice@laptop (gitpod-refarch apply)")
        .build()
        .unwrap();
    let err = engine.apply_spec(&spec).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StateLocked, "{}", err.chain());
    assert!(
        err.message().contains("controller operator-1"),
        "{}",
        err.message()
    );
    assert!(err.message().contains(&held.id), "{}", err.message());
    // The controller's lock is untouched, and its run goes on to Ready.
    assert_eq!(
        store.current_lock().await.unwrap().map(|l| l.id),
        Some(held.id.clone())
    );
    cluster
        .ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("gitpodinstallation/{name}"),
            "-n",
            &ns,
            "--timeout=120s",
        ])
        .await;
    assert!(store.current_lock().await.unwrap().is_none());
    cluster.stop().await;
}
