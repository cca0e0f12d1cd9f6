//! AKS tokens from a client secret, against a local server that plays the Entra ID
//! token endpoint.
//!
//! `azure_identity` only accepts `https` authority hosts, and this crate does not
//! loosen that. The tests use the SDK's supported seam instead: the pipeline's
//! transport (`ClientOptions::transport`). The credential is built for the `https`
//! authority host [`AUTHORITY`], and the test transport checks each request's `https`
//! URL, then sends it with the SDK's own reqwest client to the local plain-HTTP server
//! on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use azure_core::http::{
    new_http_client, AsyncRawResponse, ClientOptions, HttpClient, Request, RetryOptions, Transport,
};
use gitpod_refarch::provider::ClusterCredentials;
use gitpod_refarch::resource::Output;
use gitpod_refarch::{ErrorKind, Secret};
use gitpod_refarch_azure::access::AKS_SCOPE;
use gitpod_refarch_azure::AksCredentials;

/// The authority host the credential is configured with (never resolved).
const AUTHORITY: &str = "https://login.aks-test.invalid";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "0b1d2c3e-4f50-6172-8394-a5b6c7d8e9f0";
const CLIENT_SECRET: &str = "s3cr3t~value/with+signs&more=";

/// One request the fake token endpoint received.
#[derive(Debug, Clone)]
struct Seen {
    tenant: String,
    form: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Endpoint {
    seen: Arc<Mutex<Vec<Seen>>>,
    status: StatusCode,
    body: &'static str,
}

async fn token(
    State(endpoint): State<Endpoint>,
    Path(tenant): Path<String>,
    body: String,
) -> Response {
    let form = form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    endpoint.seen.lock().unwrap().push(Seen { tenant, form });
    (
        endpoint.status,
        [("content-type", "application/json; charset=utf-8")],
        endpoint.body,
    )
        .into_response()
}

/// A local token endpoint answering every request with `status` and `body`.
async fn serve(status: StatusCode, body: &'static str) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .with_state(Endpoint {
            seen: seen.clone(),
            status,
            body,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// Sends the SDK's `https` requests for [`AUTHORITY`] to a local plain-HTTP server.
#[derive(Debug)]
struct Loopback {
    to: SocketAddr,
    client: Arc<dyn HttpClient>,
    urls: Mutex<Vec<String>>,
}

#[async_trait]
impl HttpClient for Loopback {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let url = request.url().clone();
        self.urls.lock().unwrap().push(url.to_string());
        assert_eq!(url.scheme(), "https", "{url}");
        assert_eq!(url.host_str(), Some("login.aks-test.invalid"), "{url}");
        let mut local = request.clone();
        let target = local.url_mut();
        target.set_scheme("http").unwrap();
        target.set_host(Some("127.0.0.1")).unwrap();
        target.set_port(Some(self.to.port())).unwrap();
        self.client.execute_request(&local).await
    }
}

/// Client-secret credentials for AKS whose requests go to `to`, without retries.
fn credentials(to: SocketAddr) -> (AksCredentials, Arc<Loopback>) {
    let loopback = Arc::new(Loopback {
        to,
        client: new_http_client(None),
        urls: Mutex::new(Vec::new()),
    });
    let options = ClientOptions {
        transport: Some(Transport::new(loopback.clone())),
        retry: RetryOptions::none(),
        ..Default::default()
    };
    let aks = AksCredentials::client_secret_with_options(
        TENANT,
        CLIENT_ID,
        Secret::new(CLIENT_SECRET.to_string()),
        Some(AUTHORITY.to_string()),
        options,
    )
    .unwrap();
    (aks, loopback)
}

fn cluster() -> Output {
    Output::Cluster {
        name: "gitpod".into(),
        endpoint: "https://gitpod-dns-1a2b3c4d.hcp.westeurope.azmk8s.io:443".into(),
        ca_certificate_pem: String::new(),
    }
}

const TOKEN_ANSWER: &str = r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"aks-test-token"}"#;

#[tokio::test]
async fn a_client_secret_gets_an_aks_token() {
    let (addr, seen) = serve(StatusCode::OK, TOKEN_ANSWER).await;
    let (aks, loopback) = credentials(addr);

    let before = SystemTime::now();
    let t = aks.cluster_token(&cluster()).await.unwrap();
    let after = SystemTime::now();

    assert_eq!(t.token.as_ref().unwrap().expose(), "aks-test-token");
    assert!(t.user.is_none());
    let expires = t.expires_at.unwrap();
    let lifetime = Duration::from_secs(3599);
    assert!(
        expires >= before + lifetime - Duration::from_secs(1)
            && expires <= after + lifetime + Duration::from_secs(1),
        "{expires:?} not within [{before:?}, {after:?}] + 3599 s"
    );

    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r.tenant, TENANT);
    assert_eq!(r.field("grant_type"), Some("client_credentials"));
    assert_eq!(r.field("client_id"), Some(CLIENT_ID));
    assert_eq!(r.field("client_secret"), Some(CLIENT_SECRET));
    assert_eq!(
        r.field("scope"),
        Some("6dae42f8-4368-4678-94ff-3960e28e3630/.default")
    );
    assert_eq!(r.field("scope"), Some(AKS_SCOPE));
    assert_eq!(
        loopback.urls.lock().unwrap().as_slice(),
        [format!("{AUTHORITY}/{TENANT}/oauth2/v2.0/token")]
    );

    // A second ask within the token's life is answered from azure_identity's cache.
    let again = aks.cluster_token(&cluster()).await.unwrap();
    assert_eq!(again.token.as_ref().unwrap().expose(), "aks-test-token");
    assert_eq!(seen.lock().unwrap().len(), 1);

    // The token is redacted when printed.
    assert!(!format!("{t:?}").contains("aks-test-token"));
}

#[tokio::test]
async fn a_rejected_client_is_a_credentials_error() {
    let (addr, seen) = serve(
        StatusCode::UNAUTHORIZED,
        r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#,
    )
    .await;
    let (aks, _) = credentials(addr);
    let err = aks.cluster_token(&cluster()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Credentials, "{}", err.chain());
    assert!(!err.is_retryable());
    let chain = err.chain();
    assert!(chain.contains("AADSTS7000215"), "{chain}");
    assert!(!chain.contains(CLIENT_SECRET), "{chain}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_server_error_is_transient_even_without_a_json_body() {
    let (addr, _) = serve(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").await;
    let (aks, _) = credentials(addr);
    let err = aks.cluster_token(&cluster()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{}", err.chain());

    let (addr, _) = serve(
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":"temporarily_unavailable","error_description":"AADSTS90033: A transient error has occurred.","error_codes":[90033]}"#,
    )
    .await;
    let (aks, _) = credentials(addr);
    let err = aks.cluster_token(&cluster()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{}", err.chain());
    assert!(err.chain().contains("AADSTS90033"), "{}", err.chain());
}

#[tokio::test]
async fn too_many_requests_is_throttled() {
    let (addr, _) = serve(StatusCode::TOO_MANY_REQUESTS, "{}").await;
    let (aks, _) = credentials(addr);
    let err = aks.cluster_token(&cluster()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled, "{}", err.chain());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    // A port nothing listens on any more.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (aks, _) = credentials(addr);
    let err = aks.cluster_token(&cluster()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{}", err.chain());
}

#[tokio::test]
async fn another_output_is_an_internal_error() {
    let (addr, seen) = serve(StatusCode::OK, TOKEN_ANSWER).await;
    let (aks, _) = credentials(addr);
    let err = aks
        .cluster_token(&Output::Foundation {
            account: "subscription".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn debug_does_not_show_the_secret() {
    let aks = AksCredentials::client_secret(
        TENANT,
        CLIENT_ID,
        Secret::new(CLIENT_SECRET.to_string()),
        Some(AUTHORITY.to_string()),
    )
    .unwrap();
    let shown = format!("{aks:?}");
    assert!(!shown.contains(CLIENT_SECRET), "{shown}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains(AKS_SCOPE), "{shown}");
    assert!(shown.contains(CLIENT_ID), "{shown}");
}

#[test]
fn the_authority_host_must_be_https() {
    let err = AksCredentials::client_secret(
        TENANT,
        CLIENT_ID,
        Secret::new(CLIENT_SECRET.to_string()),
        Some("http://127.0.0.1:1".to_string()),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Credentials);
    assert!(err.chain().contains("HTTPS"), "{}", err.chain());
    assert!(!err.chain().contains(CLIENT_SECRET));
}

#[test]
fn malformed_client_secret_settings_are_credentials_errors() {
    let secret = || Secret::new(CLIENT_SECRET.to_string());
    for (tenant, client, secret) in [
        ("not a tenant!", CLIENT_ID, secret()),
        (TENANT, "", secret()),
        (TENANT, CLIENT_ID, Secret::new(String::new())),
    ] {
        let err = AksCredentials::client_secret(tenant, client, secret, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Credentials, "{}", err.chain());
    }
}

#[test]
fn a_legacy_server_application_changes_the_scope() {
    let aks = AksCredentials::client_secret(
        TENANT,
        CLIENT_ID,
        Secret::new(CLIENT_SECRET.to_string()),
        Some(AUTHORITY.to_string()),
    )
    .unwrap()
    .with_server_app_id("11111111-2222-3333-4444-555555555555");
    assert_eq!(aks.scope(), "11111111-2222-3333-4444-555555555555/.default");
}

#[test]
fn workload_identity_needs_its_environment() {
    if [
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
    {
        return; // Running inside a workload-identity pod: nothing to check here.
    }
    let err = AksCredentials::workload_identity().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Credentials, "{}", err.chain());
}

#[test]
fn managed_identity_can_be_built_without_a_call() {
    // Built only: asking it for a token would call the instance metadata service.
    let aks = AksCredentials::managed_identity(Some(CLIENT_ID.to_string())).unwrap();
    assert_eq!(aks.scope(), AKS_SCOPE);
}
