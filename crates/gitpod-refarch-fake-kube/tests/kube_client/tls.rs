//! The fake serves HTTPS only, with a certificate signed by a CA generated at start:
//! a client that trusts that CA gets through (by IP and by `localhost`), a client that
//! trusts another CA is refused for the certificate, and plain HTTP gets no answer.

use std::time::Duration;

use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{client, client_for, config_for};

/// The error and its sources, one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[tokio::test]
async fn https_with_the_generated_ca() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let url = fake.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert_eq!(url, format!("https://{}", fake.address()));
    assert_eq!(fake.address(), fake.addr().to_string());
    let ca = fake.ca_pem();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");

    let ns: Api<Namespace> = Api::all(client(&fake));
    assert!(ns.get("default").await.is_ok());

    // The certificate names `localhost` too.
    let by_name = format!("https://localhost:{}", fake.addr().port());
    let ns: Api<Namespace> = Api::all(client_for(&by_name, &ca));
    assert!(ns.get("kube-system").await.is_ok());
    fake.shutdown().await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let other = FakeKube::start(FakeConfig::default()).await.unwrap();
    assert_ne!(fake.ca_pem(), other.ca_pem(), "each fake has its own CA");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let wrong = Client::try_from(config_for(&fake.url(), &other.ca_pem())).unwrap();
    let ns: Api<Namespace> = Api::all(wrong);
    let err = ns.get("default").await.unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains("invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
    // Nothing reached the fake.
    assert_eq!(fake.counts().reads, 0);
    fake.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn plain_http_gets_no_http_answer() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();

    // A kube client pointed at http:// fails.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = format!("http://{}", fake.address());
    let ns: Api<Namespace> =
        Api::all(Client::try_from(kube::Config::new(plain.parse().unwrap())).unwrap());
    let err = tokio::time::timeout(Duration::from_secs(15), ns.get("default"))
        .await
        .expect("a plain-HTTP request must fail, not hang");
    assert!(err.is_err(), "plain HTTP must fail: {err:?}");

    // On the wire: an HTTP/1.1 request gets no HTTP response (a TLS alert or a close).
    let mut tcp = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    tcp.write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut answer))
        .await
        .expect("the server must close the connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(fake.counts().reads, 0, "no request was served");
    fake.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let addr = fake.addr();
    let ns: Api<Namespace> = Api::all(client(&fake));
    assert!(ns.get("default").await.is_ok());
    tokio::time::timeout(Duration::from_secs(10), fake.shutdown())
        .await
        .expect("graceful shutdown finishes");
    // The accept loop is gone with the server: nothing listens any more.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "{addr} still accepts connections after shutdown");
}
