//! The fake driven by kube-rs as an ordinary client (one test binary: kube is heavy
//! to link).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod cert_manager;
mod crud;
mod faults;
mod fidelity;
mod gc;
mod kubectl;
mod load_balancer;
mod nodes;
mod ssa;
mod standalone;
mod tls;
mod watch;

use std::future::Future;
use std::time::{Duration, Instant};

use gitpod_refarch_fake_kube::FakeKube;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

/// The DER certificates of a PEM bundle.
pub fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        if line == "-----BEGIN CERTIFICATE-----" {
            body = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            let b64 = body.take().expect("END without BEGIN");
            certs.push(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            );
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    assert!(!certs.is_empty(), "no certificate in {pem:?}");
    certs
}

/// The kube-rs configuration for a base URL that trusts the CA `ca_pem` (PEM), as a
/// kubeconfig's `certificate-authority-data` does; no authentication.
pub fn config_for(url: &str, ca_pem: &str) -> kube::Config {
    let mut config = kube::Config::new(url.parse().unwrap());
    config.root_cert = Some(pem_certs(ca_pem));
    config
}

/// A kube-rs client for a base URL that trusts the CA `ca_pem`, without
/// authentication.
pub fn client_for(url: &str, ca_pem: &str) -> Client {
    // When the workspace builds kube with rustls and both ring and aws-lc-rs are
    // enabled (the cloud SDKs), rustls needs a process-wide provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_from(config_for(url, ca_pem)).unwrap()
}

/// A TLS connection to the fake that trusts its CA, for raw HTTP/1.1 requests.
pub async fn tls_connect(
    fake: &FakeKube,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_certs(&fake.ca_pem()) {
        roots.add(CertificateDer::from(der)).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::IpAddress(fake.addr().ip().into()), tcp)
        .await
        .unwrap()
}

/// A kube-rs client for the fake (HTTPS, trusting its CA).
pub fn client(fake: &FakeKube) -> Client {
    client_for(&fake.url(), &fake.ca_pem())
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
