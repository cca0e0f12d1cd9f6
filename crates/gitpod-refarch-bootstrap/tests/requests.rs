//! Exact requests, step by step, with kube's `tower-test` mock in place of an API
//! server: method, path, query and body of every call, in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::*;
use gitpod_refarch::provider::{ClusterBootstrap, Inputs, Progress};
use gitpod_refarch::resource::{DnsSolver, InClusterResource, Output, ResourceId, ResourceKind};
use gitpod_refarch::{ReferenceArchitecture, Secret};
use gitpod_refarch_bootstrap::{BootstrapConfig, KubeBootstrap};
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use tower_test::mock::Handle;

type Mock = Handle<Request<Body>, Response<Body>>;

fn bootstrap() -> (KubeBootstrap, Mock) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let b = KubeBootstrap::new(BootstrapConfig::new(TestCredentials::new(None)).delegation(None))
        .with_client(client);
    (b, handle)
}

fn desired(spec: &ReferenceArchitecture, kind: ResourceKind) -> InClusterResource {
    let d = gitpod_refarch::plan::graph(spec)
        .into_iter()
        .map(|n| n.desired)
        .find(|d| d.kind() == kind)
        .unwrap();
    InClusterResource::try_from(d).unwrap()
}

fn inputs(solver: Option<DnsSolver>) -> Inputs {
    let mut outputs = BTreeMap::from([(
        ResourceId::new(ResourceKind::Cluster, NAME),
        Output::Cluster {
            name: NAME.into(),
            endpoint: "https://127.0.0.1:1".into(),
            ca_certificate_pem: String::new(),
        },
    )]);
    if let Some(s) = solver {
        let out = Output::DnsIdentity {
            principal: "p".into(),
            credentials: None,
            solver: Some(s),
        };
        outputs.insert(ResourceId::new(ResourceKind::DnsIdentity, NAME), out);
    }
    Inputs::new(outputs, BTreeMap::new())
}

/// The next request: method, path, query pairs (sorted) and JSON body.
async fn next(
    h: &mut Mock,
) -> (
    Method,
    String,
    Vec<(String, String)>,
    Value,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    let (req, send) = h.next_request().await.expect("a request");
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut query: Vec<(String, String)> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    query.sort();
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (method, path, query, body, send)
}

fn reply(send: tower_test::mock::SendResponse<Response<Body>>, status: u16, body: Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn apply_query() -> Vec<(String, String)> {
    vec![
        ("fieldManager".into(), "gitpod-refarch".into()),
        ("force".into(), "true".into()),
    ]
}

#[tokio::test]
async fn cluster_access_applies_one_binding_for_the_caller() {
    let (b, mut h) = bootstrap();
    let d = desired(&spec(), ResourceKind::ClusterAccess);
    let server = tokio::spawn(async move {
        let (m, path, q, body, send) = next(&mut h).await;
        assert_eq!(m, Method::PATCH);
        assert_eq!(
            path,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin-binding"
        );
        assert_eq!(q, apply_query());
        assert_eq!(
            body,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "cluster-admin-binding", "labels": {"app.kubernetes.io/managed-by": "gitpod-refarch"}},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
            })
        );
        reply(send, 200, body);
        h
    });
    let p = b.ensure(&d, &inputs(None)).await.unwrap();
    let mut h = server.await.unwrap();
    assert!(
        matches!(p, Progress::Done(Some(Output::InCluster { ref objects })) if objects == &["ClusterRoleBinding/cluster-admin-binding"])
    );
    // Nothing else was sent.
    tokio::task::yield_now().await;
    assert!(futures_poll_none(&mut h).await);
}

/// No further request is pending.
async fn futures_poll_none(h: &mut Mock) -> bool {
    tokio::time::timeout(std::time::Duration::from_millis(50), h.next_request())
        .await
        .is_err()
}

#[tokio::test]
async fn the_issuer_applies_the_solver_secret_then_the_cluster_issuer_and_checks_it() {
    let (b, mut h) = bootstrap();
    let d = desired(&spec(), ResourceKind::Issuer);
    let solver = DnsSolver::CloudDns {
        project: "gitpod-e2e".into(),
        service_account: "dns-sa-gp@gitpod-e2e.iam.gserviceaccount.com".into(),
        key: Some(Secret::new("{\"k\":1}".into())),
    };
    let server = tokio::spawn(async move {
        let (m, path, q, body, send) = next(&mut h).await;
        assert_eq!(
            (m, path.as_str()),
            (
                Method::PATCH,
                "/api/v1/namespaces/cert-manager/secrets/clouddns-dns01-solver"
            )
        );
        assert_eq!(q, apply_query());
        // `{"k":1}` in base64, under the key the guide uses.
        assert_eq!(body["data"], json!({"key.json": "eyJrIjoxfQ=="}));
        assert_eq!(body["type"], "Opaque");
        reply(send, 200, body);

        let (m, path, q, body, send) = next(&mut h).await;
        assert_eq!(
            (m, path.as_str()),
            (
                Method::PATCH,
                "/apis/cert-manager.io/v1/clusterissuers/gitpod-issuer"
            )
        );
        assert_eq!(q, apply_query());
        assert_eq!(
            body,
            json!({
                "apiVersion": "cert-manager.io/v1",
                "kind": "ClusterIssuer",
                "metadata": {"name": "gitpod-issuer"},
                "spec": {"acme": {
                    "email": "ops@example.com",
                    "server": "https://acme-staging-v02.api.letsencrypt.org/directory",
                    "privateKeySecretRef": {"name": "issuer-account-key"},
                    "solvers": [{"dns01": {"cloudDNS": {
                        "project": "gitpod-e2e",
                        "serviceAccountSecretRef": {"name": "clouddns-dns01-solver", "key": "key.json"},
                    }}}],
                }},
            })
        );
        reply(send, 200, body.clone());

        let (m, path, _, _, send) = next(&mut h).await;
        assert_eq!(
            (m, path.as_str()),
            (
                Method::GET,
                "/apis/cert-manager.io/v1/clusterissuers/gitpod-issuer"
            )
        );
        let mut ready = body;
        ready["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
        reply(send, 200, ready);
        h
    });
    let p = b.ensure(&d, &inputs(Some(solver))).await.unwrap();
    let mut h = server.await.unwrap();
    assert!(matches!(p, Progress::Done(Some(_))), "{p:?}");
    assert!(futures_poll_none(&mut h).await);
}

#[tokio::test]
async fn teardown_deletes_load_balancers_and_the_namespace_and_waits_for_both() {
    let (b, mut h) = bootstrap();
    let d = desired(&spec(), ResourceKind::GitpodNamespace);
    let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "proxy", "namespace": "gitpod"}, "spec": {"type": "LoadBalancer"}});
    let server = tokio::spawn(async move {
        let (m, path, q, _, send) = next(&mut h).await;
        assert_eq!((m, path.as_str()), (Method::GET, "/api/v1/services"));
        assert_eq!(
            q,
            vec![("fieldSelector".into(), "spec.type%3DLoadBalancer".into())]
        );
        reply(
            send,
            200,
            json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": [lb]}),
        );

        let (m, path, _, _, send) = next(&mut h).await;
        assert_eq!(
            (m, path.as_str()),
            (Method::DELETE, "/api/v1/namespaces/gitpod/services/proxy")
        );
        reply(
            send,
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        );

        let (m, path, _, _, send) = next(&mut h).await;
        assert_eq!(
            (m, path.as_str()),
            (Method::DELETE, "/api/v1/namespaces/gitpod")
        );
        reply(
            send,
            200,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gitpod", "deletionTimestamp": "2026-11-24T00:00:00Z"}}),
        );

        // Still terminating: the step reports an operation to poll.
        let (m, path, _, _, send) = next(&mut h).await;
        assert_eq!(
            (m, path.as_str()),
            (Method::GET, "/api/v1/namespaces/gitpod")
        );
        reply(
            send,
            200,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gitpod"}}),
        );
        h
    });
    let p = b.delete(&d, &inputs(None)).await.unwrap();
    let mut h = server.await.unwrap();
    let Progress::Pending(op) = p else {
        panic!("the teardown must wait: {p:?}")
    };
    assert_eq!(op.id, "namespace-gone/gitpod");

    // The namespace is gone, but the load balancer is still being released.
    let server = tokio::spawn(async move {
        let (_, path, _, _, send) = next(&mut h).await;
        assert_eq!(path, "/api/v1/namespaces/gitpod");
        reply(send, 404, not_found());
        let (_, path, _, _, send) = next(&mut h).await;
        assert_eq!(path, "/api/v1/services");
        let lingering = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "proxy", "namespace": "gitpod", "deletionTimestamp": "2026-11-24T00:00:00Z"}, "spec": {"type": "LoadBalancer"}});
        reply(
            send,
            200,
            json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": [lingering]}),
        );
        h
    });
    let p = b.poll(&op).await.unwrap();
    let mut h = server.await.unwrap();
    let Progress::Pending(op) = p else {
        panic!("must wait for the load balancer: {p:?}")
    };
    assert!(
        op.message
            .as_deref()
            .unwrap_or("")
            .contains("Service/gitpod/proxy"),
        "{op:?}"
    );

    // Both gone: done.
    let server = tokio::spawn(async move {
        let (_, _, _, _, send) = next(&mut h).await;
        reply(send, 404, not_found());
        let (_, _, _, _, send) = next(&mut h).await;
        reply(
            send,
            200,
            json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": []}),
        );
        h
    });
    let p = b.poll(&op).await.unwrap();
    let mut h = server.await.unwrap();
    assert!(matches!(p, Progress::Done(None)), "{p:?}");
    assert!(futures_poll_none(&mut h).await);
}

#[tokio::test]
async fn without_a_cluster_nothing_is_observed_or_deleted_and_nothing_is_sent() {
    let (b, mut h) = bootstrap();
    let d = desired(&spec(), ResourceKind::CertManager);
    let empty = Inputs::default();
    assert!(b.observe(&d, &empty).await.unwrap().is_none());
    assert!(matches!(
        b.delete(&d, &empty).await.unwrap(),
        Progress::Done(None)
    ));
    assert!(futures_poll_none(&mut h).await);
}

/// A clock that records each sleep and returns at once.
#[derive(Debug, Default)]
struct RecordingClock {
    slept: std::sync::Mutex<Vec<std::time::Duration>>,
}

impl gitpod_refarch::engine::Clock for RecordingClock {
    fn now(&self) -> std::time::Duration {
        self.slept.lock().unwrap().iter().sum()
    }
    fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'static, ()> {
        self.slept.lock().unwrap().push(d);
        Box::pin(async {})
    }
}

fn throttled() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "TooManyRequests", "code": 429, "message": "slow down"})
}

#[tokio::test]
async fn a_throttled_call_is_retried_on_the_injected_clock() {
    use std::time::Duration;
    let clock = std::sync::Arc::new(RecordingClock::default());
    let bootstrap = |clock: std::sync::Arc<RecordingClock>| {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let b = KubeBootstrap::new(
            BootstrapConfig::new(TestCredentials::new(None))
                .delegation(None)
                .clock(clock),
        )
        .with_client(client);
        (b, handle)
    };
    let d = desired(&spec(), ResourceKind::ClusterAccess);

    // Three 429s, then success: three sleeps of 50, 100 and 200 ms on the given clock.
    let (b, mut h) = bootstrap(clock.clone());
    let server = tokio::spawn(async move {
        for _ in 0..3 {
            let (m, _, _, _, send) = next(&mut h).await;
            assert_eq!(m, Method::PATCH);
            reply(send, 429, throttled());
        }
        let (_, _, _, body, send) = next(&mut h).await;
        reply(send, 200, body);
        h
    });
    let p = b.ensure(&d, &inputs(None)).await.unwrap();
    let mut h = server.await.unwrap();
    assert!(matches!(p, Progress::Done(Some(_))), "{p:?}");
    assert!(futures_poll_none(&mut h).await);
    assert_eq!(
        *clock.slept.lock().unwrap(),
        [50, 100, 200].map(Duration::from_millis)
    );

    // Four 429s: the call fails, throttled, after four attempts.
    let clock = std::sync::Arc::new(RecordingClock::default());
    let (b, mut h) = bootstrap(clock.clone());
    let server = tokio::spawn(async move {
        for _ in 0..4 {
            let (_, _, _, _, send) = next(&mut h).await;
            reply(send, 429, throttled());
        }
        h
    });
    let e = b.ensure(&d, &inputs(None)).await.unwrap_err();
    let mut h = server.await.unwrap();
    assert_eq!(e.kind(), gitpod_refarch::ErrorKind::Throttled);
    assert!(futures_poll_none(&mut h).await);
    assert_eq!(clock.slept.lock().unwrap().len(), 3);
}
