//! The fake driven by kube-rs as an ordinary client (one test binary: kube is heavy
//! to link).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cert_manager;
mod crud;
mod faults;
mod fidelity;
mod load_balancer;
mod standalone;

use std::future::Future;
use std::time::{Duration, Instant};

use gitpod_refarch_fake_kube::FakeKube;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

/// A kube-rs client for a base URL, without authentication.
pub fn client_for(url: &str) -> Client {
    // When the workspace builds kube with rustls and both ring and aws-lc-rs are
    // enabled (the cloud SDKs), rustls needs a process-wide provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
}

/// A kube-rs client for the fake.
pub fn client(fake: &FakeKube) -> Client {
    client_for(&fake.url())
}

/// The field manager the SDK uses.
pub fn apply() -> PatchParams {
    PatchParams::apply("gitpod-refarch")
}

/// Server-side apply of a typed object built from JSON.
pub async fn apply_json<K>(api: &Api<K>, obj: Value) -> kube::Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let typed: K = serde_json::from_value(obj).unwrap();
    api.patch(&name, &apply(), &Patch::Apply(&typed)).await
}

/// The `kube::Error::Api` of a result, or a panic.
pub fn api_error<T: std::fmt::Debug>(r: kube::Result<T>) -> kube::core::ErrorResponse {
    match r {
        Err(kube::Error::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Poll `f` until it yields `Some`, for at most 5 s.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A namespace object.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A minimal Deployment.
pub fn deployment(ns: &str, name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": format!("example.invalid/{name}:1")}]},
            },
        },
    })
}
