//! One place per in-cluster resource: how it is observed, ensured, deleted and
//! waited for. Every `ensure` first checks whether the cluster already matches, so a
//! second apply (or the round after a wait) changes nothing.
//!
//! Operation ids: `cert-manager/<ns>`, `external-dns/<ns>`, `issuer/<name>`,
//! `certificate/<ns>/<name>`, `namespace-gone/<ns>` (teardown).

use std::collections::BTreeMap;
use std::sync::Mutex;

use gitpod_refarch::installer::render_secrets;
use gitpod_refarch::outputs::Outputs;
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress, ENCRYPTION_KEY};
use gitpod_refarch::resource::{
    CertManagerSpec, CertificateSpec, Desired, DnsSolver, ExternalDnsSpec, IssuerSpec, Output,
    ResourceId, ResourceKind,
};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde_json::Value;

use crate::api;
use crate::certmanager::{self, CertManagerSource, Readiness};
use crate::objects::{self, CERT_MANAGER, EXTERNAL_DNS};
use crate::BootstrapConfig;

/// What a certificate wait checks besides the certificate: the zone and the name
/// servers its parent must delegate to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertWatch {
    /// The zone (`gitpod.example.com`).
    pub zone: String,
    /// The zone's name servers (from the DNS zone's output).
    pub name_servers: Vec<String>,
}

/// What each step works with.
pub(crate) struct Ctx<'a> {
    pub(crate) client: &'a kube::Client,
    pub(crate) config: &'a BootstrapConfig,
    pub(crate) watches: &'a Mutex<BTreeMap<String, CertWatch>>,
}

fn done(objects: Vec<String>) -> Progress {
    Progress::Done(Some(Output::InCluster { objects }))
}

fn output(objects: Vec<String>) -> Option<Output> {
    Some(Output::InCluster { objects })
}

fn pending(ctx: &Ctx<'_>, id: ResourceId, op: String, message: Option<String>) -> Operation {
    let mut o = Operation::new(op, id).poll_after(ctx.config.poll_interval);
    o.message = message;
    o
}

/// The DNS-01 solver the DNS identity reported (the core's `Outputs::dns_solver`).
fn solver(inputs: &Inputs) -> Result<DnsSolver> {
    Outputs::new(inputs.outputs().clone())
        .dns_solver()
        .cloned()
        .ok_or_else(|| {
            Error::invalid_input(
                "the DNS provider reported no DNS-01 solver for the zone: external-dns and the \
                 issuer cannot be configured",
            )
        })
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// One read of what exists.
pub(crate) async fn observe(
    ctx: &Ctx<'_>,
    desired: &Desired,
    inputs: &Inputs,
) -> Result<Option<Observed>> {
    let c = ctx.client;
    let id = desired.id();
    match desired {
        Desired::ClusterAccess(s) => {
            let live = api::get(
                c,
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                &s.binding,
            )
            .await?;
            if let Some(l) = live {
                return Ok(Some(Observed::ready(
                    desired.clone(),
                    output(vec![api::describe(&l)]),
                )));
            }
            // Credentials that name no user need no binding: nothing is missing.
            let cluster = inputs.of_kind(ResourceKind::Cluster)?;
            let token = ctx.config.credentials.cluster_token(cluster).await?;
            Ok(token
                .user
                .is_none()
                .then(|| Observed::ready(desired.clone(), output(vec![]))))
        }
        Desired::CertManager(s) => {
            let Some(live) =
                api::get(c, "apps/v1", "Deployment", Some(&s.namespace), CERT_MANAGER).await?
            else {
                return Ok(None);
            };
            let actual = Desired::CertManager(cert_manager_actual(s, &live));
            match certmanager::readiness(c, &s.namespace, false).await? {
                Readiness::Starting(why) => Ok(Some(Observed::pending(
                    actual,
                    pending(ctx, id, format!("cert-manager/{}", s.namespace), Some(why)),
                ))),
                Readiness::Missing(_) => {
                    let mut partial = cert_manager_actual(s, &live);
                    partial.complete = false;
                    Ok(Some(Observed::ready(
                        Desired::CertManager(partial),
                        output(vec![api::describe(&live)]),
                    )))
                }
                Readiness::Ready => Ok(Some(Observed::ready(
                    actual,
                    output(vec![api::describe(&live)]),
                ))),
            }
        }
        Desired::ExternalDns(s) => {
            let Some(live) =
                api::get(c, "apps/v1", "Deployment", Some(&s.namespace), EXTERNAL_DNS).await?
            else {
                return Ok(None);
            };
            let mut actual = objects::external_dns_actual(&live, s);
            actual.credentials_in_sync = match solver(inputs) {
                Ok(solver) => external_dns_credentials_in_sync(ctx, s, &solver).await?,
                Err(_) => false,
            };
            Ok(Some(Observed::ready(
                Desired::ExternalDns(actual),
                output(vec![api::describe(&live)]),
            )))
        }
        Desired::Issuer(s) => {
            let Some(live) =
                api::get(c, "cert-manager.io/v1", "ClusterIssuer", None, &s.name).await?
            else {
                return Ok(None);
            };
            let mut actual = s.clone();
            actual.email = str_at(&live, "/spec/acme/email").into();
            actual.server = str_at(&live, "/spec/acme/server").into();
            actual.account_key_secret = str_at(&live, "/spec/acme/privateKeySecretRef/name").into();
            actual.solver_in_sync = match solver(inputs) {
                Ok(solver) => issuer_solver_in_sync(ctx, &live, &solver, inputs).await?,
                Err(_) => false,
            };
            Ok(Some(Observed::ready(
                Desired::Issuer(actual),
                output(vec![api::describe(&live)]),
            )))
        }
        Desired::GitpodNamespace(s) => {
            let Some(ns) = api::get(c, "v1", "Namespace", None, &s.namespace).await? else {
                return Ok(None);
            };
            if ns.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(Some(Observed::pending(
                    desired.clone(),
                    pending(
                        ctx,
                        id,
                        format!("namespace-gone/{}", s.namespace),
                        Some("terminating".into()),
                    ),
                )));
            }
            let mut actual = s.clone();
            actual.secrets_in_sync = secrets_in_sync(ctx, &s.namespace, inputs).await?
                && match &ctx.config.tls_certificate {
                    Some(t) => crate::tls_secret::in_sync(c, t, &s.namespace).await?,
                    None => true,
                };
            Ok(Some(Observed::ready(
                Desired::GitpodNamespace(actual),
                output(vec![api::describe(&ns)]),
            )))
        }
        Desired::Certificate(s) => {
            let Some(live) = api::get(
                c,
                "cert-manager.io/v1",
                "Certificate",
                Some(&s.namespace),
                &s.name,
            )
            .await?
            else {
                return Ok(None);
            };
            let actual = Desired::Certificate(certificate_actual(s, &live));
            if certmanager::condition(&live, "Ready") {
                return Ok(Some(Observed::ready(
                    actual,
                    output(vec![api::describe(&live)]),
                )));
            }
            let op = watch_certificate(ctx, s, inputs);
            Ok(Some(Observed::pending(
                actual,
                pending(ctx, id, op, Some("not Ready".into())),
            )))
        }
        _ => Err(Error::internal(format!(
            "{id} is not an in-cluster resource"
        ))),
    }
}

/// Whether external-dns's credentials Secret holds what the solver gives now.
async fn external_dns_credentials_in_sync(
    ctx: &Ctx<'_>,
    s: &ExternalDnsSpec,
    solver: &DnsSolver,
) -> Result<bool> {
    for o in objects::external_dns_objects(s, solver)? {
        if o["kind"] == "Secret" {
            let name = str_at(&o, "/metadata/name");
            let live = api::get(ctx.client, "v1", "Secret", Some(&s.namespace), name).await?;
            if !live.is_some_and(|l| objects::secret_data_matches(&l, &o)) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Whether the ClusterIssuer `live` uses the solver the DNS identity reports now, and
/// the solver's secret holds its current credentials.
async fn issuer_solver_in_sync(
    ctx: &Ctx<'_>,
    live: &Value,
    solver: &DnsSolver,
    inputs: &Inputs,
) -> Result<bool> {
    let wanted = gitpod_refarch::installer::dns01_solver(solver);
    if live.pointer("/spec/acme/solvers/0/dns01") != Some(&wanted) {
        return Ok(false);
    }
    if let Some(secret) = objects::solver_secret(solver, &cert_manager_namespace(inputs))? {
        let ns = secret
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        let name = str_at(&secret, "/metadata/name");
        let live = api::get(ctx.client, "v1", "Secret", ns, name).await?;
        if !live.is_some_and(|l| objects::secret_data_matches(&l, &secret)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// cert-manager's namespace (the cert-manager resource's name).
fn cert_manager_namespace(inputs: &Inputs) -> String {
    inputs
        .outputs()
        .keys()
        .find(|k| k.kind == ResourceKind::CertManager)
        .map(|k| k.name.clone())
        .unwrap_or_else(|| CERT_MANAGER.to_string())
}

/// The version and flags of the controller `live`; `complete` as desired (the
/// observation sets it from the release's parts).
fn cert_manager_actual(s: &CertManagerSpec, live: &Value) -> CertManagerSpec {
    let mut a = s.clone();
    a.version = str_at(live, "/metadata/labels/app.kubernetes.io~1version").into();
    a.recursive_nameservers = objects::recursive_nameservers(live);
    a
}

fn certificate_actual(s: &CertificateSpec, live: &Value) -> CertificateSpec {
    let mut a = s.clone();
    a.dns_names = live
        .pointer("/spec/dnsNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    a.issuer = str_at(live, "/spec/issuerRef/name").into();
    a
}

async fn secrets_in_sync(ctx: &Ctx<'_>, ns: &str, inputs: &Inputs) -> Result<bool> {
    let Ok(key) = inputs.secret(ENCRYPTION_KEY) else {
        return Ok(false);
    };
    let Ok(wanted) = render_secrets(&Outputs::new(inputs.outputs().clone()), key) else {
        return Ok(false);
    };
    for m in wanted {
        let live = api::get(ctx.client, "v1", "Secret", Some(ns), &m.name).await?;
        if !live
            .is_some_and(|l| objects::secret_matches(&l, &m.data) && str_at(&l, "/type") == m.type_)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Register what the certificate wait checks; returns the operation id.
fn watch_certificate(ctx: &Ctx<'_>, s: &CertificateSpec, inputs: &Inputs) -> String {
    let op = format!("certificate/{}/{}", s.namespace, s.name);
    let name_servers = Outputs::new(inputs.outputs().clone())
        .name_servers()
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    if let Ok(mut w) = ctx.watches.lock() {
        w.insert(
            op.clone(),
            CertWatch {
                zone: s.zone_dns_name.clone(),
                name_servers,
            },
        );
    }
    op
}

/// Create or update to match.
pub(crate) async fn ensure(ctx: &Ctx<'_>, desired: &Desired, inputs: &Inputs) -> Result<Progress> {
    let c = ctx.client;
    let id = desired.id();
    match desired {
        Desired::ClusterAccess(s) => {
            let cluster = inputs.of_kind(ResourceKind::Cluster)?;
            let token = ctx.config.credentials.cluster_token(cluster).await?;
            let Some(user) = token.user else {
                tracing::info!(
                    "the cloud does not name the caller: no cluster-admin binding is needed"
                );
                return Ok(done(vec![]));
            };
            let obj = objects::admin_binding(s, &user)?;
            api::apply(c, &obj).await?;
            Ok(done(vec![api::describe(&obj)]))
        }
        Desired::CertManager(s) => ensure_cert_manager(ctx, s, inputs, id).await,
        Desired::ExternalDns(s) => ensure_external_dns(ctx, s, inputs, id).await,
        Desired::Issuer(s) => ensure_issuer(ctx, s, inputs, id).await,
        Desired::GitpodNamespace(s) => {
            let key = inputs.secret(ENCRYPTION_KEY)?;
            let secrets = render_secrets(&Outputs::new(inputs.outputs().clone()), key)?;
            let mut applied = Vec::new();
            let ns = objects::namespace(&s.namespace)?;
            api::apply(c, &ns).await?;
            applied.push(api::describe(&ns));
            for m in &secrets {
                let mut obj = objects::installer_secret(m)?;
                obj["metadata"]["namespace"] = Value::from(s.namespace.as_str());
                api::apply(c, &obj).await?;
                applied.push(api::describe(&obj));
            }
            if let Some(t) = &ctx.config.tls_certificate {
                applied.push(crate::tls_secret::apply(c, t, &s.namespace).await?);
            }
            Ok(done(applied))
        }
        Desired::Certificate(s) => {
            let obj = objects::certificate(s);
            let live = api::get(
                c,
                "cert-manager.io/v1",
                "Certificate",
                Some(&s.namespace),
                &s.name,
            )
            .await?;
            let current = live
                .as_ref()
                .is_some_and(|l| &certificate_actual(s, l) == s);
            if !current {
                api::apply(c, &obj).await?;
            }
            if live
                .as_ref()
                .is_some_and(|l| current && certmanager::condition(l, "Ready"))
            {
                return Ok(done(vec![api::describe(&obj)]));
            }
            let op = watch_certificate(ctx, s, inputs);
            // Before waiting: a zone its parent does not delegate to never validates.
            check_delegation(ctx, &op).await?;
            Ok(Progress::Pending(pending(
                ctx,
                id,
                op,
                Some("waiting for the certificate".into()),
            )))
        }
        _ => Err(Error::internal(format!(
            "{id} is not an in-cluster resource"
        ))),
    }
}

async fn ensure_cert_manager(
    ctx: &Ctx<'_>,
    s: &CertManagerSpec,
    inputs: &Inputs,
    id: ResourceId,
) -> Result<Progress> {
    let c = ctx.client;
    let live = api::get(c, "apps/v1", "Deployment", Some(&s.namespace), CERT_MANAGER).await?;
    let installed = live
        .as_ref()
        .is_some_and(|l| &cert_manager_actual(s, l) == s);
    let mut state = if installed {
        certmanager::readiness(c, &s.namespace, true).await?
    } else {
        Readiness::Missing("not installed".into())
    };
    // Not installed, another version, or an install stopped half-way: (re)install.
    if let Readiness::Missing(_) = state {
        install_cert_manager(ctx, s, inputs).await?;
        state = certmanager::readiness(c, &s.namespace, true).await?;
    }
    match state {
        Readiness::Ready => Ok(done(vec![format!(
            "Deployment/{}/{CERT_MANAGER}",
            s.namespace
        )])),
        Readiness::Starting(why) | Readiness::Missing(why) => Ok(Progress::Pending(pending(
            ctx,
            id,
            format!("cert-manager/{}", s.namespace),
            Some(why),
        ))),
    }
}

/// Install the release: helm, or the digest-checked manifest.
async fn install_cert_manager(ctx: &Ctx<'_>, s: &CertManagerSpec, inputs: &Inputs) -> Result<()> {
    let c = ctx.client;
    match ctx.config.cert_manager.resolve() {
        CertManagerSource::Helm(helm) => {
            let dir = std::env::temp_dir().join(format!("gitpod-refarch-{}", std::process::id()));
            let path = dir.join("kubeconfig");
            let cluster = inputs.of_kind(ResourceKind::Cluster)?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                Error::new(
                    ErrorKind::State,
                    "cannot make a directory for helm's kubeconfig",
                )
                .with_source(e)
            })?;
            crate::access::write_kubeconfig(&path, cluster, ctx.config.credentials.as_ref())
                .await?;
            let r = certmanager::helm_install(&helm, s, &path.to_string_lossy()).await;
            let _ = std::fs::remove_file(&path);
            r?;
        }
        CertManagerSource::Manifest(m) => {
            let text = m.fetch().await?;
            let objs = objects::cert_manager_objects(&text, s)?;
            certmanager::apply_manifest(c, &objs).await?;
        }
        CertManagerSource::Auto => {
            return Err(Error::internal("cert-manager source not resolved"));
        }
    }
    Ok(())
}

async fn ensure_external_dns(
    ctx: &Ctx<'_>,
    s: &ExternalDnsSpec,
    inputs: &Inputs,
    id: ResourceId,
) -> Result<Progress> {
    let c = ctx.client;
    let wanted = objects::external_dns_objects(s, &solver(inputs)?)?;
    let mut in_sync = true;
    for o in &wanted {
        let ns = o.pointer("/metadata/namespace").and_then(Value::as_str);
        let live = api::get(
            c,
            str_at(o, "/apiVersion"),
            str_at(o, "/kind"),
            ns,
            str_at(o, "/metadata/name"),
        )
        .await?;
        in_sync &= match (o["kind"].as_str(), live) {
            (_, None) => false,
            (Some("Deployment"), Some(l)) => {
                let mut actual = objects::external_dns_actual(&l, s);
                actual.credentials_in_sync = true; // the Secret is compared below
                &actual == s
            }
            (Some("Secret"), Some(l)) => objects::secret_data_matches(&l, o),
            _ => true,
        };
    }
    if !in_sync {
        for o in &wanted {
            api::apply(c, o).await?;
        }
    }
    let deployment = api::get(c, "apps/v1", "Deployment", Some(&s.namespace), EXTERNAL_DNS).await?;
    if deployment.is_some_and(|d| certmanager::condition(&d, "Available")) {
        return Ok(done(wanted.iter().map(api::describe).collect()));
    }
    Ok(Progress::Pending(pending(
        ctx,
        id,
        format!("external-dns/{}", s.namespace),
        Some("external-dns is not available yet".into()),
    )))
}

async fn ensure_issuer(
    ctx: &Ctx<'_>,
    s: &IssuerSpec,
    inputs: &Inputs,
    id: ResourceId,
) -> Result<Progress> {
    let c = ctx.client;
    let solver = &solver(inputs)?;
    let cm_ns = cert_manager_namespace(inputs);
    let mut wanted = Vec::new();
    wanted.extend(objects::solver_secret(solver, &cm_ns)?);
    wanted.extend(objects::cert_manager_identity(solver, &cm_ns)?);
    wanted.push(objects::issuer(s, Some(solver)));
    for o in &wanted {
        api::apply(c, o).await?;
    }
    let live = api::get(c, "cert-manager.io/v1", "ClusterIssuer", None, &s.name).await?;
    if live.is_some_and(|l| certmanager::condition(&l, "Ready")) {
        return Ok(done(wanted.iter().map(api::describe).collect()));
    }
    Ok(Progress::Pending(pending(
        ctx,
        id,
        format!("issuer/{}", s.name),
        Some("the ACME account is not registered yet".into()),
    )))
}

/// Remove (absent is success); `Pending` until namespaces and load balancers are gone.
pub(crate) async fn delete(ctx: &Ctx<'_>, desired: &Desired) -> Result<Progress> {
    let c = ctx.client;
    let id = desired.id();
    match desired {
        Desired::ClusterAccess(s) => {
            api::delete(
                c,
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                &s.binding,
            )
            .await?;
            Ok(Progress::Done(None))
        }
        Desired::CertManager(s) => {
            for crd in objects::CERT_MANAGER_CRDS {
                api::delete(
                    c,
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    None,
                    crd,
                )
                .await?;
            }
            for kind in [
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration",
            ] {
                api::delete(
                    c,
                    "admissionregistration.k8s.io/v1",
                    kind,
                    None,
                    objects::CERT_MANAGER_WEBHOOK,
                )
                .await?;
            }
            delete_namespace(ctx, id, &s.namespace).await
        }
        Desired::ExternalDns(s) => {
            api::delete(
                c,
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                EXTERNAL_DNS,
            )
            .await?;
            api::delete(
                c,
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                None,
                EXTERNAL_DNS,
            )
            .await?;
            delete_namespace(ctx, id, &s.namespace).await
        }
        Desired::Issuer(s) => {
            api::delete(c, "cert-manager.io/v1", "ClusterIssuer", None, &s.name)
                .await
                .or_else(absent_kind)?;
            Ok(Progress::Done(None))
        }
        Desired::GitpodNamespace(s) => {
            // Every LoadBalancer Service, anywhere: their cloud load balancers would
            // keep the network from being deleted.
            for svc in load_balancers(c).await? {
                let ns = str_at(&svc, "/metadata/namespace");
                api::delete(c, "v1", "Service", Some(ns), str_at(&svc, "/metadata/name")).await?;
            }
            delete_namespace(ctx, id, &s.namespace).await
        }
        Desired::Certificate(s) => {
            api::delete(
                c,
                "cert-manager.io/v1",
                "Certificate",
                Some(&s.namespace),
                &s.name,
            )
            .await
            .or_else(absent_kind)?;
            api::delete(c, "v1", "Secret", Some(&s.namespace), &s.name).await?;
            Ok(Progress::Done(None))
        }
        _ => Err(Error::internal(format!(
            "{id} is not an in-cluster resource"
        ))),
    }
}

/// Deleting a cert-manager object once its CRD is gone: nothing to do.
fn absent_kind(e: Error) -> Result<bool> {
    if e.kind() == ErrorKind::NotFound {
        Ok(false)
    } else {
        Err(e)
    }
}

async fn load_balancers(c: &kube::Client) -> Result<Vec<Value>> {
    api::list(c, "v1", "Service", None, Some("spec.type=LoadBalancer")).await
}

async fn delete_namespace(ctx: &Ctx<'_>, id: ResourceId, ns: &str) -> Result<Progress> {
    api::delete(ctx.client, "v1", "Namespace", None, ns).await?;
    match gone(ctx, ns).await? {
        None => Ok(Progress::Done(None)),
        Some(why) => Ok(Progress::Pending(pending(
            ctx,
            id,
            format!("namespace-gone/{ns}"),
            Some(why),
        ))),
    }
}

/// Why the teardown of `ns` is not finished (`None`: finished).
async fn gone(ctx: &Ctx<'_>, ns: &str) -> Result<Option<String>> {
    if api::get(ctx.client, "v1", "Namespace", None, ns)
        .await?
        .is_some()
    {
        return Ok(Some(format!("namespace {ns} is terminating")));
    }
    if ns == gitpod_refarch::installer::GITPOD_NAMESPACE {
        let lbs = load_balancers(ctx.client).await?;
        if !lbs.is_empty() {
            let names: Vec<String> = lbs.iter().map(api::describe).collect();
            return Ok(Some(format!(
                "waiting for load balancers to be released: {}",
                names.join(", ")
            )));
        }
    }
    Ok(None)
}

/// Poll an operation this module returned.
pub(crate) async fn poll(ctx: &Ctx<'_>, op: &Operation) -> Result<Progress> {
    let c = ctx.client;
    let next = |message: String| {
        let mut o = op.clone().poll_after(ctx.config.poll_interval);
        o.message = Some(message);
        Ok(Progress::Pending(o))
    };
    let (what, rest) = op.id.split_once('/').unwrap_or((op.id.as_str(), ""));
    match what {
        // Done when ready, or when a part is missing: `ensure` then installs again.
        "cert-manager" => match certmanager::readiness(c, rest, true).await? {
            Readiness::Ready | Readiness::Missing(_) => Ok(Progress::Done(None)),
            Readiness::Starting(why) => next(why),
        },
        "external-dns" => {
            let d = api::get(c, "apps/v1", "Deployment", Some(rest), EXTERNAL_DNS).await?;
            if d.is_some_and(|d| certmanager::condition(&d, "Available")) {
                Ok(Progress::Done(None))
            } else {
                next("external-dns is not available yet".into())
            }
        }
        "issuer" => {
            let i = api::get(c, "cert-manager.io/v1", "ClusterIssuer", None, rest).await?;
            match i {
                Some(i) if certmanager::condition(&i, "Ready") => Ok(Progress::Done(None)),
                Some(i) => next(format!(
                    "ClusterIssuer {rest} is not Ready: {}",
                    condition_message(&i, "Ready")
                )),
                None => Err(Error::new(
                    ErrorKind::NotFound,
                    format!("ClusterIssuer {rest} disappeared"),
                )),
            }
        }
        "namespace-gone" => match gone(ctx, rest).await? {
            None => Ok(Progress::Done(None)),
            Some(why) => next(why),
        },
        "certificate" => poll_certificate(ctx, op, rest).await,
        _ => Err(Error::internal(format!("unknown operation {}", op.id))),
    }
}

fn condition_message(obj: &Value, type_: &str) -> String {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .map(|c| {
            format!("{} {}", str_at(c, "/reason"), str_at(c, "/message"))
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "no status yet".into())
}

async fn poll_certificate(ctx: &Ctx<'_>, op: &Operation, rest: &str) -> Result<Progress> {
    let (ns, name) = rest.split_once('/').unwrap_or(("", rest));
    let c = ctx.client;
    let Some(cert) = api::get(c, "cert-manager.io/v1", "Certificate", Some(ns), name).await? else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("Certificate {rest} disappeared"),
        ));
    };
    if certmanager::condition(&cert, "Ready") {
        return Ok(Progress::Done(None));
    }
    // Say why: the ACME challenges' state, as cert-manager reports it.
    let challenges = api::list(c, "acme.cert-manager.io/v1", "Challenge", Some(ns), None)
        .await
        .or_else(|e| {
            if e.kind() == ErrorKind::NotFound {
                Ok(vec![])
            } else {
                Err(e)
            }
        })?;
    let mut message = format!(
        "Certificate {rest} is not Ready: {}",
        condition_message(&cert, "Ready")
    );
    for ch in &challenges {
        let reason = str_at(ch, "/status/reason");
        let state = str_at(ch, "/status/state");
        message.push_str(&format!(
            "; challenge for {} {}{}",
            str_at(ch, "/spec/dnsName"),
            if state.is_empty() { "pending" } else { state },
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        ));
    }
    if !challenges.is_empty() {
        check_delegation(ctx, &op.id).await?;
    }
    let mut o = op.clone().poll_after(ctx.config.poll_interval);
    o.message = Some(message);
    Ok(Progress::Pending(o))
}

/// Fail with the NS records to add when the parent zone does not delegate to the
/// zone's name servers. A check that cannot run (no network) only warns.
async fn check_delegation(ctx: &Ctx<'_>, op: &str) -> Result<()> {
    let Some(check) = &ctx.config.delegation else {
        return Ok(());
    };
    let watch = ctx.watches.lock().ok().and_then(|w| w.get(op).cloned());
    let Some(watch) = watch.filter(|w| !w.name_servers.is_empty()) else {
        return Ok(());
    };
    match check.check(&watch.zone, &watch.name_servers).await {
        Ok(d) if !d.is_delegated() => Err(Error::new(
            ErrorKind::Precondition,
            format!("the certificate cannot be issued until the zone is delegated: {d}"),
        )),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(zone = %watch.zone, "cannot check the zone's delegation: {}", e.message());
            Ok(())
        }
    }
}
