//! What the bootstrap tests share: a spec, test credentials that count and expire,
//! the test cert-manager manifest, and an engine whose cloud is the simulated one
//! with its cluster endpoint pointing at the Kubernetes fake.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gitpod_refarch::engine::{Event, RetryPolicy, TokioClock, WaitPolicy};
use gitpod_refarch::provider::{AccessToken, ClusterCredentials};
use gitpod_refarch::resource::{CertManagerSpec, Output};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::ReferenceArchitecture;
use gitpod_refarch::state::MemoryStateStore;
use gitpod_refarch::{Engine, Providers, Secret};
use gitpod_refarch_bootstrap::{BootstrapConfig, CertManagerSource, KubeBootstrap, Manifest};
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};

/// The installation's name.
pub const NAME: &str = "gp";
/// The user the test credentials name.
pub const USER: &str = "ops@example.com";

/// A GCP-shaped spec with an ACME issuer.
pub fn spec() -> ReferenceArchitecture {
    let s = ReferenceArchitecture::from_yaml(&format!(
        "cloud: gcp\nname: {NAME}\ndomain: gitpod.example.com\ngcp:\n  project: gitpod-e2e\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n  \
         server: https://acme-staging-v02.api.letsencrypt.org/directory\n"
    ))
    .unwrap();
    s.validate().unwrap();
    s
}

/// Credentials that hand out `token-N`, valid for `lifetime`, and count the calls.
#[derive(Debug)]
pub struct TestCredentials {
    pub calls: AtomicU64,
    pub lifetime: Option<Duration>,
}

impl TestCredentials {
    pub fn new(lifetime: Option<Duration>) -> Arc<Self> {
        Arc::new(TestCredentials {
            calls: AtomicU64::new(0),
            lifetime,
        })
    }
}

#[async_trait::async_trait]
impl ClusterCredentials for TestCredentials {
    async fn cluster_token(&self, cluster: &Output) -> gitpod_refarch::Result<AccessToken> {
        assert!(matches!(cluster, Output::Cluster { .. }));
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(AccessToken::bearer(
            Secret::new(format!("token-{n}")),
            self.lifetime.map(|l| SystemTime::now() + l),
        )
        .with_user(USER))
    }
}

/// The test stand-in for the cert-manager release manifest.
pub fn manifest_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/cert-manager-test.yaml")
}

/// Its SHA-256 (computed here with the system's `sha256sum`, independently of the
/// crate's own hashing).
pub fn manifest_sha256() -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(manifest_path())
        .output()
        .expect("sha256sum");
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The manifest source with its true digest.
pub fn manifest() -> CertManagerSource {
    CertManagerSource::Manifest(Manifest::new(
        format!("file://{}", manifest_path().display()),
        manifest_sha256(),
    ))
}

/// A fake with short delays for everything it simulates.
pub fn fake_config() -> FakeConfig {
    FakeConfig::default()
        .with_crd_established_delay(Duration::from_millis(30))
        .with_deployment_ready_delay(Duration::from_millis(30))
        .with_webhook_ready_delay(Duration::from_millis(80))
        .with_certificate_ready_delay(Duration::from_millis(50))
        .with_namespace_delete_delay(Duration::from_millis(30))
        .with_lb_provision_delay(Duration::from_millis(10))
        .with_lb_delete_delay(Duration::from_millis(200))
}

/// A kube-rs client for the fake as a user's kubeconfig would make it: its https URL,
/// trusting its CA; no authentication.
pub fn kube_client(fake: &FakeKube) -> kube::Client {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    // A plain kube-rs client needs a process-wide rustls provider when the workspace
    // enables both ring and aws-lc-rs (the bootstrap itself names ring explicitly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    config.root_cert = Some(
        CertificateDer::pem_slice_iter(fake.ca_pem().as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect(),
    );
    kube::Client::try_from(config).unwrap()
}

/// One installation: the fake, the simulated cloud, the engine and its state.
pub struct Setup {
    pub fake: FakeKube,
    pub sim: Arc<SimCloud>,
    pub creds: Arc<TestCredentials>,
    pub store: Arc<MemoryStateStore>,
    pub events: Events,
    pub engine: Engine,
}

pub type Events = Arc<std::sync::Mutex<Vec<Event>>>;

pub fn engine_for(
    sim: Arc<SimCloud>,
    bootstrap: KubeBootstrap,
    store: Arc<MemoryStateStore>,
    events: Events,
) -> Engine {
    engine_with(
        Providers::all(sim).with_in_cluster(Arc::new(bootstrap)),
        store,
        events,
    )
}

/// An engine on `providers` (with their in-cluster bootstrap) with the tests' fast
/// retries and waits.
pub fn engine_with(providers: Providers, store: Arc<MemoryStateStore>, events: Events) -> Engine {
    let mut retry = RetryPolicy::default();
    retry.initial_backoff = Duration::from_millis(5);
    retry.max_backoff = Duration::from_millis(50);
    retry.max_attempts = 40;
    retry.budget = Duration::from_secs(30);
    retry.propagation_budget = Duration::from_secs(30);
    let mut wait = WaitPolicy::default();
    wait.min_delay = Duration::from_millis(5);
    wait.max_delay = Duration::from_millis(20);
    wait.timeout = Duration::from_secs(10);
    Engine::builder(providers)
        .clock(Arc::new(TokioClock::new()))
        .state(store)
        .retry(retry)
        .wait(wait)
        .on_event(Arc::new(move |e: &Event| {
            events.lock().unwrap().push(e.clone())
        }))
        .build()
        .unwrap()
}

impl Setup {
    pub async fn start(fake: FakeConfig, source: CertManagerSource) -> Setup {
        let fake = FakeKube::start(fake).await.unwrap();
        let sim = Arc::new(
            // GKE's shape (the spec is GCP's): a bare address and the cluster's CA.
            SimCloud::new(Arc::new(TokioClock::new()), LatencyProfile::instant())
                .with_cluster_endpoint(fake.address(), fake.ca_pem()),
        );
        let creds = TestCredentials::new(Some(Duration::from_secs(3600)));
        let store = Arc::new(MemoryStateStore::default());
        let events = Events::default();
        let engine = engine_for(
            sim.clone(),
            bootstrap(creds.clone(), source),
            store.clone(),
            events.clone(),
        );
        Setup {
            fake,
            sim,
            creds,
            store,
            events,
            engine,
        }
    }
}

/// A bootstrap with `creds`, `source`, no delegation check and fast polls.
pub fn bootstrap(creds: Arc<TestCredentials>, source: CertManagerSource) -> KubeBootstrap {
    KubeBootstrap::new(
        BootstrapConfig::new(creds)
            .cert_manager(source)
            .delegation(None)
            .poll_interval(Duration::from_millis(10)),
    )
}

/// The test manifest's objects as the bootstrap applies them for `spec`.
pub fn manifest_objects(spec: &CertManagerSpec) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(manifest_path()).unwrap();
    gitpod_refarch_bootstrap::objects::cert_manager_objects(&text, spec).unwrap()
}

/// `patch` merged over `base` as two server-side apply managers' fields combine:
/// objects recursively, anything else replaced.
pub fn merged(base: &serde_json::Value, patch: &serde_json::Value) -> serde_json::Value {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            let mut out = b.clone();
            for (k, v) in p {
                let m = match b.get(k) {
                    Some(bv) => merged(bv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), m);
            }
            serde_json::Value::Object(out)
        }
        _ => patch.clone(),
    }
}

/// A partial object (a workload identity patch) as the server holds it once applied
/// over the release manifest's object of the same kind, namespace and name (the
/// patch itself when the manifest has no such object).
pub fn over_manifest(spec: &CertManagerSpec, patch: &serde_json::Value) -> serde_json::Value {
    let same = |o: &&serde_json::Value| {
        ["/kind", "/metadata/namespace", "/metadata/name"]
            .iter()
            .all(|p| o.pointer(p) == patch.pointer(p))
    };
    match manifest_objects(spec).iter().find(same) {
        Some(base) => merged(base, patch),
        None => patch.clone(),
    }
}

/// The repository root.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run the schema validator (`scripts/validate-k8s.mjs`, the npm packages
/// `kubernetes-models` and `@kubernetes-models/cert-manager`) on `objects`; (exit
/// code, stdout).
pub fn validate(objects: &[serde_json::Value], name: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("gitpod-refarch-schemas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(objects).unwrap()).unwrap();
    let out = std::process::Command::new("node")
        .arg(repo_root().join("scripts/validate-k8s.mjs"))
        .arg(&file)
        .output()
        .expect("node is needed: the test command installs it with the npm packages");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(
        code, 2,
        "the schema packages are missing: run scripts/install-k8s-models.sh ({stderr})"
    );
    assert_ne!(code, 3, "validator usage error: {stderr}");
    (code, stdout)
}
