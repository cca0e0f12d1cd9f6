//! Injected faults and the freeze.

use std::time::Duration;

use axum::http::Request;
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::client::Body;
use kube::Api;

use crate::{api_error, apply_json, client, namespace};

#[tokio::test]
async fn every_call_fails_at_rate_one() {
    let fake = FakeKube::start(FakeConfig::default().with_fault_rate(1.0).with_seed(7))
        .await
        .unwrap();
    let client = client(&fake);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let e = api_error(namespaces.list(&ListParams::default()).await);
        match e.code {
            429 => assert_eq!(e.reason, "TooManyRequests"),
            503 => assert_eq!(e.reason, "ServiceUnavailable"),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(e.status, "Failure");
        codes.insert(e.code);
    }
    assert_eq!(codes.into_iter().collect::<Vec<_>>(), vec![429, 503]);
    assert!(apply_json(&namespaces, namespace("x")).await.is_err());
    // Raw: a Status body, and Retry-After on 429.
    let mut seen_retry_after = false;
    for _ in 0..20 {
        let req = Request::builder()
            .uri("/api/v1/namespaces")
            .body(Body::empty())
            .unwrap();
        let resp = client.send(req).await.unwrap();
        let code = resp.status().as_u16();
        let retry = resp.headers().get("retry-after").cloned();
        let body: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect_bytes().await.unwrap()).unwrap();
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["code"], code);
        if code == 429 {
            assert_eq!(retry.unwrap(), "1");
            seen_retry_after = true;
        }
    }
    assert!(seen_retry_after);
    let counts = fake.counts();
    assert_eq!(counts.faults, 41);
    assert_eq!(counts.reads, 40);
    assert_eq!(counts.mutating, 1);
    assert!(fake.object("namespaces", None, "x").is_none());
    assert!(fake.calls().iter().all(|c| c.fault));

    fake.set_fault_rate(0.0);
    assert!(namespaces.list(&ListParams::default()).await.is_ok());
    fake.shutdown().await;
}

#[tokio::test]
async fn freeze_after_a_mutating_call() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    fake.freeze_after_mutating(1);
    apply_json(&namespaces, namespace("a")).await.unwrap();
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        apply_json(&namespaces, namespace("b")),
    )
    .await;
    assert!(hung.is_err(), "the second call hangs while frozen");
    let pending = tokio::spawn({
        let namespaces = namespaces.clone();
        async move { apply_json(&namespaces, namespace("c")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.unfreeze();
    let e = api_error(pending.await.unwrap());
    assert_eq!(e.code, 503);
    assert!(fake.object("namespaces", None, "b").is_none());
    assert!(fake.object("namespaces", None, "c").is_none());
    assert!(fake.object("namespaces", None, "a").is_some());
    assert_eq!(fake.counts().of("apply", "namespaces"), 1);
    fake.shutdown().await;
}
