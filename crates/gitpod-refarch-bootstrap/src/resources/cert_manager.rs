//! `cert-manager`: the pinned release (helm, or the manifest checked against its
//! digest) with the guide's recursive name servers; ready when its CRDs are
//! Established, its Deployments available and its webhook admits a dry-run
//! ClusterIssuer (see [`crate::certmanager`]). An install stopped half-way is drift,
//! and is installed again.

use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress};
use gitpod_refarch::resource::{CertManagerSpec, ResourceId, ResourceKind};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde_json::Value;

use crate::api;
use crate::certmanager::{self, CertManagerSource, Readiness};
use crate::context::{done, output, pending, still_pending, str_at, Context};
use crate::objects::{self, CERT_MANAGER};
use crate::teardown;

/// The prefix of its operation ids (`cert-manager/<ns>`).
pub(crate) const OPERATION: &str = "cert-manager";

fn operation(ns: &str) -> String {
    format!("{OPERATION}/{ns}")
}

/// The version and flags of the controller `live`.
fn actual(s: &CertManagerSpec, live: &Value) -> CertManagerSpec {
    let mut a = s.clone();
    a.version = str_at(live, "/metadata/labels/app.kubernetes.io~1version").into();
    a.recursive_nameservers = objects::recursive_nameservers(live);
    a
}

/// One read: the controller's version and flags; drift when a part of the release
/// is missing.
pub(crate) async fn observe(
    ctx: &Context<'_>,
    s: &CertManagerSpec,
    id: ResourceId,
) -> Result<Option<Observed<CertManagerSpec>>> {
    let c = ctx.client;
    let Some(live) = api::get(c, "apps/v1", "Deployment", Some(&s.namespace), CERT_MANAGER).await?
    else {
        return Ok(None);
    };
    let a = actual(s, &live);
    match certmanager::readiness(c, &s.namespace, false).await? {
        Readiness::Starting(why) => Ok(Some(Observed::pending(
            a,
            pending(ctx, id, operation(&s.namespace), Some(why)),
        ))),
        Readiness::Missing(why) => Ok(Some(
            Observed::ready(a, output(vec![api::describe(&live)]))
                .with_drift(format!("cert-manager is installed only in part: {why}")),
        )),
        Readiness::Ready => Ok(Some(Observed::ready(a, output(vec![api::describe(&live)])))),
    }
}

/// Install (when absent, another version, or stopped half-way), then wait until ready.
pub(crate) async fn ensure(
    ctx: &Context<'_>,
    s: &CertManagerSpec,
    inputs: &Inputs,
    id: ResourceId,
) -> Result<Progress> {
    let c = ctx.client;
    let live = api::get(c, "apps/v1", "Deployment", Some(&s.namespace), CERT_MANAGER).await?;
    let installed = live.as_ref().is_some_and(|l| &actual(s, l) == s);
    let mut state = if installed {
        certmanager::readiness(c, &s.namespace, true).await?
    } else {
        Readiness::Missing("not installed".into())
    };
    // Not installed, another version, or an install stopped half-way: (re)install.
    if let Readiness::Missing(_) = state {
        install(ctx, s, inputs).await?;
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
            operation(&s.namespace),
            Some(why),
        ))),
    }
}

/// Install the release: helm, or the digest-checked manifest.
async fn install(ctx: &Context<'_>, s: &CertManagerSpec, inputs: &Inputs) -> Result<()> {
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
            certmanager::apply_manifest(ctx.client, &objs).await?;
        }
        CertManagerSource::Auto => {
            return Err(Error::internal("cert-manager source not resolved"));
        }
    }
    Ok(())
}

/// Remove the CRDs, the webhook configurations and the namespace; `Pending` until the
/// namespace is gone.
pub(crate) async fn delete(
    ctx: &Context<'_>,
    s: &CertManagerSpec,
    id: ResourceId,
) -> Result<Progress> {
    let c = ctx.client;
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
    teardown::delete_namespace(ctx, id, &s.namespace).await
}

/// Poll the wait for cert-manager in `ns`: done when ready, or when a part is missing
/// (`ensure` then installs again).
pub(crate) async fn poll(ctx: &Context<'_>, op: &Operation, ns: &str) -> Result<Progress> {
    match certmanager::readiness(ctx.client, ns, true).await? {
        Readiness::Ready | Readiness::Missing(_) => Ok(Progress::Done(None)),
        Readiness::Starting(why) => Ok(still_pending(ctx, op, why)),
    }
}
