//! `issuer`: the DNS-01 solver's Secret (or cert-manager's workload identity) and the
//! ClusterIssuer `gitpod-issuer`. A solver that is not the DNS identity's current one
//! (another `dns01` block, other credentials in its Secret, or cert-manager's objects
//! without the identity's annotation or label) is drift.
//!
//! # cert-manager's workload identity
//!
//! With GKE Workload Identity and with Azure DNS, cert-manager's controller acts as a
//! cloud identity instead of reading a key from a Secret
//! ([`objects::cert_manager_identity`]):
//!
//! - GKE: its ServiceAccount annotated `iam.gke.io/gcp-service-account`;
//! - Azure: its ServiceAccount `cert-manager` annotated
//!   `azure.workload.identity/client-id` = the solver's `cert_manager_client_id` (the
//!   identity federated with `system:serviceaccount:cert-manager:cert-manager`), and
//!   the controller Deployment's pod template labelled
//!   `azure.workload.identity/use: "true"`, so that AKS's webhook projects the token
//!   into its pods. The ClusterIssuer names the same client id
//!   (`azureDNS.managedIdentity.clientID`); cert-manager's namespace holds no solver
//!   Secret.
//!
//! These are patches of the objects the cert-manager release made (helm or the
//! manifest), not objects of their own, and they are made **here**, not by the
//! `cert-manager` resource: only the issuer knows the solver (it depends on the DNS
//! identity; cert-manager depends only on cluster access and the services pool, and
//! with a certificate of one's own there is no issuer and no DNS-01 at all). Each
//! patch is a partial server-side apply with a field manager of its own
//! ([`api::IDENTITY_FIELD_MANAGER`]), so that neither a manifest re-apply (manager
//! `gitpod-refarch`) nor a `helm upgrade` removes it, and it is applied only when the
//! live object lacks it: the ServiceAccount first, then the label (which rolls the
//! controller out, its new pods admitted with the annotation in place). `observe`
//! compares the annotation and label, so a re-apply writes nothing and a lost one is
//! drift. A reinstall of cert-manager (namespace deleted) loses them too; the next
//! observation of the issuer reports that.

use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress};
use gitpod_refarch::resource::{DnsSolver, IssuerSpec, ResourceId, ResourceKind};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde_json::Value;

use crate::api;
use crate::certmanager;
use crate::context::{
    absent_kind, condition_message, done, output, pending, secret_drift, solver, still_pending,
    str_at, Context, NO_SOLVER_DRIFT,
};
use crate::objects::{self, CERT_MANAGER};

/// The prefix of its operation ids (`issuer/<name>`).
pub(crate) const OPERATION: &str = "issuer";

/// cert-manager's namespace (the cert-manager resource's name).
fn cert_manager_namespace(inputs: &Inputs) -> String {
    inputs
        .outputs()
        .keys()
        .find(|k| k.kind == ResourceKind::CertManager)
        .map(|k| k.name.clone())
        .unwrap_or_else(|| CERT_MANAGER.to_string())
}

/// One read: the ClusterIssuer's ACME settings; drift when its solver is not the DNS
/// identity's current one.
pub(crate) async fn observe(
    ctx: &Context<'_>,
    s: &IssuerSpec,
    inputs: &Inputs,
) -> Result<Option<Observed<IssuerSpec>>> {
    let Some(live) = api::get(
        ctx.client,
        "cert-manager.io/v1",
        "ClusterIssuer",
        None,
        &s.name,
    )
    .await?
    else {
        return Ok(None);
    };
    let mut actual = s.clone();
    actual.email = str_at(&live, "/spec/acme/email").into();
    actual.server = str_at(&live, "/spec/acme/server").into();
    actual.account_key_secret = str_at(&live, "/spec/acme/privateKeySecretRef/name").into();
    let drift = match solver(inputs) {
        Ok(solver) => solver_drift(ctx, &live, &solver, inputs).await?,
        Err(_) => Some(NO_SOLVER_DRIFT.into()),
    };
    Ok(Some(
        Observed::ready(actual, output(vec![api::describe(&live)])).with_drift_if(drift),
    ))
}

/// Why the ClusterIssuer `live` does not use the solver the DNS identity reports now,
/// or the solver's Secret does not hold its current credentials (`None`: both current).
async fn solver_drift(
    ctx: &Context<'_>,
    live: &Value,
    solver: &DnsSolver,
    inputs: &Inputs,
) -> Result<Option<String>> {
    let wanted = gitpod_refarch::installer::dns01_solver(solver);
    if live.pointer("/spec/acme/solvers/0/dns01") != Some(&wanted) {
        return Ok(Some(format!(
            "the DNS-01 solver of ClusterIssuer {} is not the one the DNS identity reports",
            str_at(live, "/metadata/name")
        )));
    }
    let cm_ns = cert_manager_namespace(inputs);
    if let Some(secret) = objects::solver_secret(solver, &cm_ns)? {
        if let Some(why) = secret_drift(ctx, &secret).await? {
            return Ok(Some(format!(
                "the DNS-01 solver's credentials are not the DNS identity's current ones: {why}"
            )));
        }
    }
    for patch in objects::cert_manager_identity(solver, &cm_ns)? {
        if let Some(why) = identity_drift(ctx, &patch).await? {
            return Ok(Some(format!(
                "cert-manager is not set up for the DNS identity's workload identity: {why}"
            )));
        }
    }
    Ok(None)
}

/// How the object a workload identity patch is for stands on the server.
enum Patched {
    /// The object does not exist (cert-manager is not, or only partly, installed).
    Missing,
    /// It lacks these annotations or labels of the patch (or holds other values).
    Lacks(Vec<String>),
    /// It carries every annotation and label of the patch.
    Carries,
}

/// Read the object `patch` applies to and compare.
async fn patched(ctx: &Context<'_>, patch: &Value) -> Result<Patched> {
    let live = api::get(
        ctx.client,
        str_at(patch, "/apiVersion"),
        str_at(patch, "/kind"),
        patch.pointer("/metadata/namespace").and_then(Value::as_str),
        str_at(patch, "/metadata/name"),
    )
    .await?;
    Ok(match live {
        None => Patched::Missing,
        Some(live) => {
            let missing = objects::metadata_differs(&live, patch);
            if missing.is_empty() {
                Patched::Carries
            } else {
                Patched::Lacks(missing)
            }
        }
    })
}

/// Why the object `patch` applies to does not carry it (`None`: it does).
async fn identity_drift(ctx: &Context<'_>, patch: &Value) -> Result<Option<String>> {
    let what = api::describe(patch);
    Ok(match patched(ctx, patch).await? {
        Patched::Missing => Some(format!("{what} is missing")),
        Patched::Lacks(keys) => Some(format!("{what} lacks {}", keys.join(", "))),
        Patched::Carries => None,
    })
}

/// Apply the solver's Secret (or cert-manager's workload identity, where it is
/// missing) and the ClusterIssuer, then wait until the ACME account is registered.
pub(crate) async fn ensure(
    ctx: &Context<'_>,
    s: &IssuerSpec,
    inputs: &Inputs,
    id: ResourceId,
) -> Result<Progress> {
    let c = ctx.client;
    let solver = &solver(inputs)?;
    let cm_ns = cert_manager_namespace(inputs);
    let mut wanted = Vec::new();
    if let Some(secret) = objects::solver_secret(solver, &cm_ns)? {
        api::apply(c, &secret).await?;
        wanted.push(secret);
    }
    // In order (the ServiceAccount before the pod label), each only when missing.
    for patch in objects::cert_manager_identity(solver, &cm_ns)? {
        match patched(ctx, &patch).await? {
            Patched::Carries => {}
            Patched::Lacks(_) => {
                api::apply_as(c, &patch, api::IDENTITY_FIELD_MANAGER).await?;
            }
            // A partial object cannot create it: that is the cert-manager step's.
            Patched::Missing => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{} is missing: cert-manager is not fully installed, so its workload \
                         identity cannot be set up (the cert-manager step installs it again)",
                        api::describe(&patch)
                    ),
                ))
            }
        }
        wanted.push(patch);
    }
    let issuer = objects::issuer(s, Some(solver));
    api::apply(c, &issuer).await?;
    wanted.push(issuer);
    let live = api::get(c, "cert-manager.io/v1", "ClusterIssuer", None, &s.name).await?;
    if live.is_some_and(|l| certmanager::current_condition(&l, "Ready")) {
        return Ok(done(wanted.iter().map(api::describe).collect()));
    }
    Ok(Progress::Pending(pending(
        ctx,
        id,
        format!("{OPERATION}/{}", s.name),
        Some("the ACME account is not registered yet".into()),
    )))
}

/// Remove the ClusterIssuer (absent, or its CRD gone, is success).
pub(crate) async fn delete(ctx: &Context<'_>, s: &IssuerSpec) -> Result<Progress> {
    api::delete(
        ctx.client,
        "cert-manager.io/v1",
        "ClusterIssuer",
        None,
        &s.name,
    )
    .await
    .or_else(absent_kind)?;
    Ok(Progress::Done(None))
}

/// Poll the wait for the ClusterIssuer `name` to be Ready.
pub(crate) async fn poll(ctx: &Context<'_>, op: &Operation, name: &str) -> Result<Progress> {
    let i = api::get(
        ctx.client,
        "cert-manager.io/v1",
        "ClusterIssuer",
        None,
        name,
    )
    .await?;
    match i {
        Some(i) if certmanager::current_condition(&i, "Ready") => Ok(Progress::Done(None)),
        Some(i) => Ok(still_pending(
            ctx,
            op,
            format!(
                "ClusterIssuer {name} is not Ready: {}",
                condition_message(&i, "Ready")
            ),
        )),
        None => Err(Error::new(
            ErrorKind::NotFound,
            format!("ClusterIssuer {name} disappeared"),
        )),
    }
}
