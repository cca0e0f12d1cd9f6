//! The ARM client against a scripted local server: the bearer token, `Retry-After`,
//! the two long-running-operation styles and their terminal states, and the refusal to
//! send the token to another host.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::{Duration as AzDuration, OffsetDateTime};
use gitpod_refarch::engine::RetryPolicy;
use gitpod_refarch::ErrorKind;
use gitpod_refarch_azure::arm::{Arm, Lro};
use gitpod_refarch_azure::AzureConfig;
use serde_json::{json, Value};

#[derive(Debug)]
struct Static;

#[async_trait]
impl TokenCredential for Static {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://management.azure.com/.default"]);
        Ok(AccessToken::new(
            "arm-test-token",
            OffsetDateTime::now_utc() + AzDuration::hours(1),
        ))
    }
}

/// One scripted answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, Value);

/// One request received: method, path and query, `Authorization`, when.
type Seen = (String, String, Option<String>, Instant);

#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn answer(State(s): State<Script>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    s.seen.lock().unwrap().push((
        method.to_string(),
        uri.to_string(),
        headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
        Instant::now(),
    ));
    let (status, hs, body) = s.answers.lock().unwrap().pop_front().unwrap_or((
        500,
        vec![],
        json!({"error": {"code": "NoScript", "message": "none"}}),
    ));
    let mut r = (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response();
    for (k, v) in hs {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

async fn serve(answers: Vec<Answer>) -> (String, Script) {
    let script = Script::default();
    script.answers.lock().unwrap().extend(answers);
    let app = Router::new().fallback(answer).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, script)
}

fn arm(url: &str) -> Arm {
    let mut retry = RetryPolicy::default();
    retry.initial_backoff = Duration::from_millis(10);
    retry.max_backoff = Duration::from_millis(20);
    retry.jitter = false;
    retry.max_attempts = 4;
    let config = AzureConfig::new("00000000-0000-0000-0000-000000000001", "northeurope")
        .endpoint_url(url)
        .credential(Arc::new(Static))
        .retry(retry)
        .poll_interval(Duration::from_millis(1));
    Arm::new(&config, Arc::new(Static)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_waits_as_long_as_retry_after_asks_and_sends_the_token() {
    let (url, script) = serve(vec![
        (
            429,
            vec![("retry-after", "1".into())],
            json!({"error": {"code": "TooManyRequests", "message": "slow down"}}),
        ),
        (
            503,
            vec![],
            json!({"error": {"code": "ServiceUnavailable", "message": "later"}}),
        ),
        (200, vec![], json!({"location": "northeurope", "tags": {}})),
    ])
    .await;
    let a = arm(&url);
    let got: Option<Value> = a
        .get("/subscriptions/s/resourcegroups/gp", "2025-04-01")
        .await
        .unwrap();
    assert_eq!(got.unwrap()["location"], "northeurope");
    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (_, uri, auth, _) in &seen {
        assert_eq!(
            uri,
            "/subscriptions/s/resourcegroups/gp?api-version=2025-04-01"
        );
        assert_eq!(auth.as_deref(), Some("Bearer arm-test-token"));
    }
    // The policy's own first delay is 10 ms; Retry-After asked for a second.
    let waited = seen[1].3 - seen[0].3;
    assert!(waited >= Duration::from_millis(990), "{waited:?}");
    // Without Retry-After, the policy's delay only.
    let second = seen[2].3 - seen[1].3;
    assert!(second < Duration::from_millis(900), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_operation_is_polled_to_its_failure_with_arms_code() {
    let (url, script) = serve(vec![]).await;
    let op = format!("{url}/subscriptions/s/providers/Microsoft.ContainerService/locations/ne/operations/1?api-version=2026-08-01");
    script.answers.lock().unwrap().extend([
        (
            201,
            vec![
                ("azure-asyncoperation", op.clone()),
                ("retry-after", "0".into()),
            ],
            json!({"properties": {"provisioningState": "Creating"}}),
        ),
        (200, vec![], json!({"status": "InProgress"})),
        (
            200,
            vec![],
            json!({"status": "Failed", "error": {"code": "ControlPlaneAddOnsNotReady", "message": "add-ons not ready"}}),
        ),
    ]);
    let a = arm(&url);
    let lro = a
        .put(
            "/subscriptions/s/x",
            "2026-08-01",
            &json!({"location": "ne"}),
        )
        .await
        .unwrap();
    let Lro::Pending(id, hint) = lro else {
        panic!("{lro:?}")
    };
    assert_eq!(id, format!("async:{op}"));
    assert_eq!(hint, Some(Duration::ZERO));
    assert!(matches!(a.poll(&id).await.unwrap(), Lro::Pending(..)));
    let e = a.poll(&id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OperationFailed);
    assert!(
        e.message()
            .contains("ControlPlaneAddOnsNotReady: add-ons not ready"),
        "{e}"
    );
    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].1.starts_with(
        "/subscriptions/s/providers/Microsoft.ContainerService/locations/ne/operations/1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_operation_ends_with_its_body_and_foreign_urls_are_refused() {
    let (url, script) = serve(vec![]).await;
    let loc = format!("{url}/subscriptions/s/operationResults/9?api-version=2024-12-30");
    script.answers.lock().unwrap().extend([
        (202, vec![("location", loc.clone())], Value::Null),
        (202, vec![("location", loc.clone())], Value::Null),
        (
            200,
            vec![],
            json!({"name": "gitpod", "properties": {"charset": "utf8mb4"}}),
        ),
    ]);
    let a = arm(&url);
    let lro = a
        .put("/subscriptions/s/db", "2024-12-30", &json!({}))
        .await
        .unwrap();
    assert_eq!(lro, Lro::Pending(format!("location:{loc}"), None));
    let id = format!("location:{loc}");
    assert!(matches!(a.poll(&id).await.unwrap(), Lro::Pending(..)));
    let done = a.poll(&id).await.unwrap();
    assert_eq!(
        done.body::<Value>().unwrap().unwrap()["properties"]["charset"],
        "utf8mb4"
    );
    // An operation URL on another host never gets the token.
    let before = script.seen.lock().unwrap().len();
    let e = a
        .poll("async:https://elsewhere.example/op/1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert_eq!(script.seen.lock().unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_is_none_on_read_and_done_on_delete() {
    let nf = || {
        (
            404,
            vec![],
            json!({"error": {"code": "ResourceNotFound", "message": "no"}}),
        )
    };
    let (url, _) = serve(vec![nf(), nf()]).await;
    let a = arm(&url);
    assert_eq!(
        a.get::<Value>("/subscriptions/s/x", "v").await.unwrap(),
        None
    );
    assert_eq!(
        a.delete("/subscriptions/s/x", "v").await.unwrap(),
        Lro::Done(None)
    );
}
