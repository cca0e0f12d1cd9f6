//! `external-dns`: its namespace, credentials Secret, ServiceAccount, ClusterRole(Binding)
//! and Deployment with the domain filter and `--txt-owner-id` = installation. A
//! credentials Secret that is not the DNS identity's current one is drift.

use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress};
use gitpod_refarch::resource::{DnsSolver, ExternalDnsSpec, ResourceId};
use gitpod_refarch::Result;
use serde_json::Value;

use crate::api;
use crate::certmanager;
use crate::context::{
    done, output, pending, secret_drift, solver, still_pending, str_at, Context, NO_SOLVER_DRIFT,
};
use crate::objects::{self, EXTERNAL_DNS};
use crate::teardown;

/// The prefix of its operation ids (`external-dns/<ns>`).
pub(crate) const OPERATION: &str = "external-dns";

const RBAC: &str = "rbac.authorization.k8s.io/v1";

/// One read: the Deployment's image and flags; drift when the credentials Secret is
/// not the solver's current one.
pub(crate) async fn observe(
    ctx: &Context<'_>,
    s: &ExternalDnsSpec,
    inputs: &Inputs,
) -> Result<Option<Observed<ExternalDnsSpec>>> {
    let Some(live) = api::get(
        ctx.client,
        "apps/v1",
        "Deployment",
        Some(&s.namespace),
        EXTERNAL_DNS,
    )
    .await?
    else {
        return Ok(None);
    };
    let actual = objects::external_dns_actual(&live, s);
    let drift = match solver(inputs) {
        Ok(solver) => credentials_drift(ctx, s, &solver).await?,
        Err(_) => Some(NO_SOLVER_DRIFT.into()),
    };
    Ok(Some(
        Observed::ready(actual, output(vec![api::describe(&live)])).with_drift_if(drift),
    ))
}

/// Why external-dns's credentials Secret does not hold what the solver gives now
/// (`None`: it does).
async fn credentials_drift(
    ctx: &Context<'_>,
    s: &ExternalDnsSpec,
    solver: &DnsSolver,
) -> Result<Option<String>> {
    for o in objects::external_dns_objects(s, solver)? {
        if o["kind"] == "Secret" {
            if let Some(why) = secret_drift(ctx, &o).await? {
                return Ok(Some(format!(
                    "the external-dns credentials are not the DNS identity's current ones: {why}"
                )));
            }
        }
    }
    Ok(None)
}

/// Apply every object when one differs, then wait until the Deployment is available.
pub(crate) async fn ensure(
    ctx: &Context<'_>,
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
            (Some("Deployment"), Some(l)) => &objects::external_dns_actual(&l, s) == s,
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
        format!("{OPERATION}/{}", s.namespace),
        Some("external-dns is not available yet".into()),
    )))
}

/// Remove the cluster-wide RBAC objects and the namespace; `Pending` until it is gone.
pub(crate) async fn delete(
    ctx: &Context<'_>,
    s: &ExternalDnsSpec,
    id: ResourceId,
) -> Result<Progress> {
    api::delete(ctx.client, RBAC, "ClusterRoleBinding", None, EXTERNAL_DNS).await?;
    api::delete(ctx.client, RBAC, "ClusterRole", None, EXTERNAL_DNS).await?;
    teardown::delete_namespace(ctx, id, &s.namespace).await
}

/// Poll the wait for external-dns in `ns` to be available.
pub(crate) async fn poll(ctx: &Context<'_>, op: &Operation, ns: &str) -> Result<Progress> {
    let d = api::get(ctx.client, "apps/v1", "Deployment", Some(ns), EXTERNAL_DNS).await?;
    if d.is_some_and(|d| certmanager::condition(&d, "Available")) {
        Ok(Progress::Done(None))
    } else {
        Ok(still_pending(
            ctx,
            op,
            "external-dns is not available yet".into(),
        ))
    }
}
