//! The few Kubernetes API calls the bootstrap makes, over JSON objects: server-side
//! apply with field manager `gitpod-refarch`, get, list, delete; and the mapping of
//! API errors to the core's [`ErrorKind`]s.

use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::{Clock, RetryPolicy};
use gitpod_refarch::{Error, ErrorKind, Result};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

/// Attempts per API call for throttling and transient failures (the engine retries
/// the whole step on top; this keeps a step of many calls from starting over for one
/// 429).
pub const CALL_ATTEMPTS: u32 = 4;

/// The default retries of one API call: up to [`CALL_ATTEMPTS`] attempts while it is
/// throttled or fails transiently, backing off 50, 100, 200 ms (no jitter).
pub fn call_retry_policy() -> RetryPolicy {
    let mut p = RetryPolicy::default();
    p.initial_backoff = Duration::from_millis(50);
    p.multiplier = 2.0;
    p.jitter = false;
    p.max_attempts = CALL_ATTEMPTS;
    p
}

/// A Kubernetes client with the retries of each of its calls: which policy, and the
/// clock they sleep on. Every function of this module takes one.
#[derive(Clone)]
pub struct KubeApi {
    client: kube::Client,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi")
            .field("clock", &self.clock)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl KubeApi {
    /// Calls through `client`, each retried by `retry` on `clock` while it is throttled
    /// or fails transiently.
    pub fn new(client: kube::Client, clock: Arc<dyn Clock>, retry: RetryPolicy) -> Self {
        KubeApi {
            client,
            clock,
            retry,
        }
    }

    /// The kube-rs client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Run `f` while it fails with a throttling or transient error, as the policy
    /// allows (other classes, such as a webhook not answering yet, are the caller's).
    async fn retried<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.retry
            .run_when(
                self.clock.as_ref(),
                |e| matches!(e.kind(), ErrorKind::Throttled | ErrorKind::Transient),
                f,
                |attempt, delay, e| {
                    tracing::debug!(
                        attempt,
                        ?delay,
                        "Kubernetes API call retried: {}",
                        e.message()
                    );
                },
            )
            .await
    }
}

/// The field manager of every server-side apply of a whole object.
pub const FIELD_MANAGER: &str = "gitpod-refarch";

/// The field manager of the workload identity patches of objects another installer
/// made (cert-manager's ServiceAccount and controller, see
/// [`crate::objects::cert_manager_identity`]). A manager of their own, so that the
/// partial object does not take [`FIELD_MANAGER`]'s place: under one manager the
/// server would remove every field of the release manifest the patch leaves out.
pub const IDENTITY_FIELD_MANAGER: &str = "gitpod-refarch-workload-identity";

/// The kinds the bootstrap (and a cert-manager release manifest) may contain:
/// `(apiVersion, kind, plural, namespaced)`.
const KINDS: &[(&str, &str, &str, bool)] = &[
    ("v1", "Namespace", "namespaces", false),
    ("v1", "Secret", "secrets", true),
    ("v1", "ConfigMap", "configmaps", true),
    ("v1", "Service", "services", true),
    ("v1", "ServiceAccount", "serviceaccounts", true),
    ("apps/v1", "Deployment", "deployments", true),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    ("rbac.authorization.k8s.io/v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
    ),
    (
        "cert-manager.io/v1",
        "ClusterIssuer",
        "clusterissuers",
        false,
    ),
    ("cert-manager.io/v1", "Issuer", "issuers", true),
    ("cert-manager.io/v1", "Certificate", "certificates", true),
    ("acme.cert-manager.io/v1", "Challenge", "challenges", true),
];

/// The API resource of `apiVersion`/`kind` and whether it is namespaced.
pub fn resource_for(api_version: &str, kind: &str) -> Result<(ApiResource, bool)> {
    let &(_, _, plural, namespaced) = KINDS
        .iter()
        .find(|(v, k, _, _)| *v == api_version && *k == kind)
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "the bootstrap does not know the kind {kind} of {api_version}"
            ))
        })?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Ok((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// `Kind/namespace/name` (or `Kind/name`), for outputs and messages.
pub fn describe(v: &Value) -> String {
    let ns = str_at(v, "/metadata/namespace");
    let name = str_at(v, "/metadata/name");
    if ns.is_empty() {
        format!("{}/{name}", str_at(v, "/kind"))
    } else {
        format!("{}/{ns}/{name}", str_at(v, "/kind"))
    }
}

fn api(
    client: &KubeApi,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
) -> Result<Api<DynamicObject>> {
    let (ar, namespaced) = resource_for(api_version, kind)?;
    Ok(match (namespaced, ns) {
        (true, Some(ns)) => Api::namespaced_with(client.client.clone(), ns, &ar),
        (true, None) => Api::all_with(client.client.clone(), &ar),
        (false, _) => Api::all_with(client.client.clone(), &ar),
    })
}

/// Server-side apply of one object (created when absent); returns what the server has.
pub async fn apply(client: &KubeApi, obj: &Value) -> Result<Value> {
    apply_as(client, obj, FIELD_MANAGER).await
}

/// The same with another field manager (for a partial object:
/// [`IDENTITY_FIELD_MANAGER`]).
pub async fn apply_as(client: &KubeApi, obj: &Value, manager: &str) -> Result<Value> {
    client.retried(|| apply_once(client, obj, manager)).await
}

async fn apply_once(client: &KubeApi, obj: &Value, manager: &str) -> Result<Value> {
    let name = str_at(obj, "/metadata/name");
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
    let a = api(client, str_at(obj, "/apiVersion"), str_at(obj, "/kind"), ns)?;
    let pp = PatchParams::apply(manager).force();
    let out = a
        .patch(name, &pp, &Patch::Apply(obj))
        .await
        .map_err(|e| kube_error(e, &describe(obj)))?;
    serde_json::to_value(out)
        .map_err(|e| Error::internal("object does not serialize").with_source(e))
}

/// The same, as a server-side dry run (`dryRun=All`): nothing is stored. The webhook
/// check uses it.
pub async fn dry_run_create(client: &KubeApi, obj: &Value) -> Result<()> {
    client.retried(|| dry_run_create_once(client, obj)).await
}

async fn dry_run_create_once(client: &KubeApi, obj: &Value) -> Result<()> {
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
    let a = api(client, str_at(obj, "/apiVersion"), str_at(obj, "/kind"), ns)?;
    let o: DynamicObject = serde_json::from_value(obj.clone())
        .map_err(|e| Error::internal("object does not deserialize").with_source(e))?;
    let pp = PostParams {
        dry_run: true,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    match a.create(&pp, &o).await {
        Ok(_) => Ok(()),
        // Already there: admission ran and accepted it.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(kube_error(e, &describe(obj))),
    }
}

/// Read one object; `None` if absent.
pub async fn get(
    client: &KubeApi,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>> {
    let a = api(client, api_version, kind, ns)?;
    let got = client
        .retried(|| async {
            a.get_opt(name)
                .await
                .map_err(|e| kube_error(e, &format!("{kind}/{name}")))
        })
        .await;
    match got {
        Ok(Some(o)) => Ok(Some(serde_json::to_value(o).map_err(|e| {
            Error::internal("object does not serialize").with_source(e)
        })?)),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    }
}

/// List objects (in `ns`, or everywhere), optionally by field selector.
pub async fn list(
    client: &KubeApi,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    field_selector: Option<&str>,
) -> Result<Vec<Value>> {
    let a = api(client, api_version, kind, ns)?;
    let mut lp = ListParams::default();
    if let Some(f) = field_selector {
        lp = lp.fields(f);
    }
    let items = client
        .retried(|| async {
            a.list(&lp)
                .await
                .map_err(|e| kube_error(e, &format!("list {kind}")))
        })
        .await?;
    items
        .items
        .into_iter()
        .map(|o| {
            serde_json::to_value(o)
                .map_err(|e| Error::internal("object does not serialize").with_source(e))
        })
        .collect()
}

/// Delete one object (foreground for namespaces is the server's business); absent is
/// success. Returns whether it existed.
pub async fn delete(
    client: &KubeApi,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<bool> {
    let a = api(client, api_version, kind, ns)?;
    client
        .retried(|| async {
            match a.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
                Err(e) => Err(kube_error(e, &format!("delete {kind}/{name}"))),
            }
        })
        .await
}

/// Whether TLS refused the server's certificate somewhere in `e`'s chain (rustls's
/// error travels inside `io::Error`s).
fn certificate_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<rustls::Error>().is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        }) {
            return true;
        }
        // An `io::Error` hides what it wraps from `source()` (hyper-rustls wraps
        // tokio-rustls's, which wraps rustls's): look inside.
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

/// Map a kube-rs error to the core's error kinds.
pub fn kube_error(e: kube::Error, what: &str) -> Error {
    let (kind, message) = match &e {
        kube::Error::Api(r) => {
            let kind = match r.code {
                400 | 422 => ErrorKind::InvalidInput,
                401 => ErrorKind::Credentials,
                // Writing into a namespace that is still terminating.
                403 if r.message.contains("being terminated") => ErrorKind::OperationInProgress,
                403 => ErrorKind::Permission,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                429 => ErrorKind::Throttled,
                // An admission webhook that does not answer yet (cert-manager's).
                500 if r.message.contains("failed calling webhook") => ErrorKind::PropagationDelay,
                c if c >= 500 => ErrorKind::Transient,
                _ => ErrorKind::Internal,
            };
            (
                kind,
                format!("{what}: {} ({} {})", r.message, r.code, r.reason),
            )
        }
        // The token source failed: keep its own classification.
        kube::Error::Service(b) if b.downcast_ref::<Error>().is_some() => {
            let inner = b.downcast_ref::<Error>();
            (
                inner.map_or(ErrorKind::Credentials, Error::kind),
                format!(
                    "{what}: no cluster token: {}",
                    inner.map_or("", Error::message)
                ),
            )
        }
        // The server's certificate does not chain to the cluster's CA (or names
        // another host): trying again changes nothing.
        kube::Error::HyperError(_) | kube::Error::Service(_) if certificate_refused(&e) => (
            ErrorKind::InvalidInput,
            format!(
                "{what}: the Kubernetes API server's certificate is not valid for the cluster's CA"
            ),
        ),
        kube::Error::HyperError(_) | kube::Error::Service(_) => (
            ErrorKind::Transient,
            format!("{what}: cannot reach the Kubernetes API server"),
        ),
        kube::Error::SerdeError(_) => (
            ErrorKind::Internal,
            format!("{what}: unexpected answer from the Kubernetes API server"),
        ),
        _ => (
            ErrorKind::Internal,
            format!("{what}: Kubernetes client error"),
        ),
    };
    Error::new(kind, message).with_source(e)
}
