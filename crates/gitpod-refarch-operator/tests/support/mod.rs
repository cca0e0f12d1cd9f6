//! What the controller tests share: the Kubernetes fake with the CRD installed, a
//! client for it, the controller running in-process, installations, waits on
//! their status (watches, no sleeps), and moto for the AWS test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::{RetryPolicy, WaitPolicy};
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use gitpod_refarch_operator::controller::{self, Context, OperatorConfig};
use gitpod_refarch_operator::crd::{Condition, GitpodInstallation};
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::CustomResourceExt;
use serde_json::{json, Value};

/// The namespace the tests use.
pub const NS: &str = "default";

/// The longest any wait may take before the test fails (a hang guard, not a timing
/// assertion).
pub const GUARD: Duration = Duration::from_secs(120);

/// The Kubernetes fake with the `GitpodInstallation` CRD established.
pub struct Cluster {
    pub fake: FakeKube,
    pub client: kube::Client,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let fake = FakeKube::start(
            FakeConfig::default()
                .with_crd_established_delay(Duration::from_millis(20))
                .with_namespace_delete_delay(Duration::from_millis(20)),
        )
        .await
        .expect("fake-kube starts");
        let client = kube_client(&fake);
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd = GitpodInstallation::crd();
        let name = crd.metadata.name.clone().unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
        guard(await_condition(
            crds,
            &name,
            conditions::is_crd_established(),
        ))
        .await
        .unwrap();
        Cluster { fake, client }
    }

    pub fn installations(&self) -> Api<GitpodInstallation> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn secrets(&self) -> Api<KubeSecret> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Run the controller in the background until the returned handle is dropped.
    pub fn spawn(&self, ctx: Arc<Context>) -> Running {
        Running(tokio::spawn(controller::run_with(ctx)))
    }

    /// Create a Secret with these string keys.
    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let s = KubeSecret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NS.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        self.secrets()
            .create(&PostParams::default(), &s)
            .await
            .unwrap();
    }

    pub async fn create(&self, obj: &GitpodInstallation) -> GitpodInstallation {
        self.installations()
            .create(&PostParams::default(), obj)
            .await
            .unwrap()
    }

    /// The Events (`events.k8s.io/v1`) about installation `name`, as (reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), NS);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.regarding.as_ref().and_then(|r| r.kind.as_deref())
                        == Some("GitpodInstallation")
            })
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }
}

/// The controller task; aborted (its future dropped) when this is dropped.
pub struct Running(pub tokio::task::JoinHandle<gitpod_refarch::Result<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A kube-rs client for the fake: its https URL, trusting its CA.
pub fn kube_client(fake: &FakeKube) -> kube::Client {
    kube::Client::try_from(kube_config(fake)).unwrap()
}

/// The kube-rs configuration of the fake: its https URL, trusting its CA.
pub fn kube_config(fake: &FakeKube) -> kube::Config {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    // Both ring and aws-lc-rs are in the build (the AWS SDK): name the provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    config.root_cert = Some(
        CertificateDer::pem_slice_iter(fake.ca_pem().as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect(),
    );
    config
}

/// Fail the test if `f` takes longer than [`GUARD`] (it hangs).
pub async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f)
        .await
        .expect("the wait did not end: the controller never got there")
}

/// Replica `replica-1` watching [`NS`], with short backoffs, retries and waits for a
/// cloud that answers at once (moto, the GCP and Azure fakes).
pub fn fast_cloud_config() -> OperatorConfig {
    OperatorConfig::new("replica-1")
        .namespace(Some(NS.into()))
        .backoff(Duration::from_millis(200), Duration::from_secs(2))
        .engine(|b| b.retry(RetryPolicy::local()).wait(WaitPolicy::local()))
}

/// The CLI-style spec (YAML) of a simulated installation named `name`.
pub fn sim_spec_yaml(name: &str) -> String {
    format!(
        "cloud: gcp\nname: {name}\ndomain: {name}.example.com\ngcp:\n  project: gitpod-e2e\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n"
    )
}

/// A `GitpodInstallation` named `name` with the spec `yaml` (as the CLI's file) and
/// the `operator` block `operator`.
pub fn installation(name: &str, yaml: &str, operator: Value) -> GitpodInstallation {
    let mut spec: Value = serde_yaml_ng::from_str(yaml).unwrap();
    spec["operator"] = operator;
    serde_json::from_value(json!({
        "apiVersion": "refarch.gitpod.io/v1alpha1",
        "kind": "GitpodInstallation",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }))
    .unwrap()
}

pub fn condition<'a>(obj: &'a GitpodInstallation, type_: &str) -> Option<&'a Condition> {
    obj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn is_true(obj: &GitpodInstallation, type_: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c.status == "True")
}

/// Wait until `pred` holds for installation `name` (through a watch).
pub async fn wait_for(
    api: &Api<GitpodInstallation>,
    name: &str,
    pred: impl Fn(&GitpodInstallation) -> bool,
) -> GitpodInstallation {
    guard(await_condition(
        api.clone(),
        name,
        move |o: Option<&GitpodInstallation>| o.is_some_and(&pred),
    ))
    .await
    .unwrap()
    .unwrap()
}

/// Wait until installation `name` is Ready for its current generation.
pub async fn wait_ready(api: &Api<GitpodInstallation>, name: &str) -> GitpodInstallation {
    wait_for(api, name, |o| {
        is_true(o, "Ready")
            && o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation
    })
    .await
}

/// Wait until installation `name` is Degraded with `reason`.
pub async fn wait_degraded(
    api: &Api<GitpodInstallation>,
    name: &str,
    reason: &str,
) -> GitpodInstallation {
    let reason = reason.to_string();
    wait_for(api, name, move |o| {
        condition(o, "Degraded").is_some_and(|c| c.status == "True" && c.reason == reason)
    })
    .await
}

/// Wait until the object with this uid is gone.
pub async fn wait_gone(api: &Api<GitpodInstallation>, name: &str, uid: &str) {
    guard(await_condition(
        api.clone(),
        name,
        conditions::is_deleted(uid),
    ))
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------
// moto
// ---------------------------------------------------------------------------

/// A `moto_server` on a free port of 127.0.0.1, killed on drop.
pub struct Moto {
    pub url: String,
    child: tokio::process::Child,
}

impl Moto {
    /// Start it and wait until it answers (a connect loop: the server gives no other
    /// signal that it listens).
    pub async fn start() -> Moto {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server on PATH (scripts/test.sh installs moto[server])");
        let mut moto = Moto {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        guard(async {
            loop {
                if let Ok(Some(status)) = moto.child.try_wait() {
                    panic!("moto_server exited early: {status}");
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// An AWS factory for `moto`: its endpoint, a short poll, no in-cluster bootstrap
/// (moto's EKS clusters have no API server behind them).
#[cfg(feature = "aws")]
pub fn moto_factory(moto: &Moto) -> Arc<gitpod_refarch_operator::factory::AwsFactory> {
    Arc::new(
        gitpod_refarch_operator::factory::AwsFactory::new()
            .endpoint_url(moto.url.clone())
            .poll_interval(Duration::from_millis(50))
            .in_cluster(false),
    )
}

impl Moto {
    /// Turn on moto's IAM authentication: from then on every key moto does not know
    /// (all of them, in a fresh moto) is refused.
    pub async fn enable_auth(&self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.url.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "POST /moto-api/reset-auth HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\n0"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        guard(stream.read_to_end(&mut answer)).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
