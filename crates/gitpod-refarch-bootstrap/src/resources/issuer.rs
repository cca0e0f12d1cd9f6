//! `issuer`: the DNS-01 solver's Secret (or the Workload Identity annotation) and the
//! ClusterIssuer `gitpod-issuer`. A solver that is not the DNS identity's current one
//! (another `dns01` block, or other credentials in its Secret) is drift.

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
    if let Some(secret) = objects::solver_secret(solver, &cert_manager_namespace(inputs))? {
        if let Some(why) = secret_drift(ctx, &secret).await? {
            return Ok(Some(format!(
                "the DNS-01 solver's credentials are not the DNS identity's current ones: {why}"
            )));
        }
    }
    Ok(None)
}

/// Apply the solver's Secret (or identity) and the ClusterIssuer, then wait until the
/// ACME account is registered.
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
        Some(i) if certmanager::condition(&i, "Ready") => Ok(Progress::Done(None)),
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
