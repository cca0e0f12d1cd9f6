//! `external-dns`: its namespace, credentials Secret, ServiceAccount, ClusterRole(Binding)
//! and Deployment with the domain filter and `--txt-owner-id` = installation. A
//! credentials Secret that is not the DNS identity's current one is drift, and so is
//! a workload identity annotation or label the solver asks for and the cluster lacks.
//!
//! On Azure (the solver [`DnsSolver::AzureDns`]) external-dns uses Workload Identity:
//! its ServiceAccount is annotated `azure.workload.identity/client-id` = the solver's
//! `external_dns_client_id` (the identity federated with
//! `system:serviceaccount:external-dns:external-dns`), its pod template is labelled
//! `azure.workload.identity/use: "true"`, and the mounted `azure.json` holds
//! `tenantId`, `subscriptionId`, `resourceGroup` and
//! `useWorkloadIdentityExtension: true`, no credential (see
//! [`objects::external_dns_objects`]).

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
/// not the solver's current one, or the ServiceAccount or pod template lacks the
/// solver's workload identity annotation or label.
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
        Ok(solver) => credentials_drift(ctx, s, &solver, &live).await?,
        Err(_) => Some(NO_SOLVER_DRIFT.into()),
    };
    Ok(Some(
        Observed::ready(actual, output(vec![api::describe(&live)])).with_drift_if(drift),
    ))
}

/// Why external-dns's credentials Secret does not hold what the solver gives now, or
/// its ServiceAccount or the Deployment `live` lacks the solver's workload identity
/// annotation or label (`None`: all current).
async fn credentials_drift(
    ctx: &Context<'_>,
    s: &ExternalDnsSpec,
    solver: &DnsSolver,
    live: &Value,
) -> Result<Option<String>> {
    for o in objects::external_dns_objects(s, solver)? {
        let why = match o["kind"].as_str() {
            Some("Secret") => secret_drift(ctx, &o).await?.map(|why| {
                format!(
                    "the external-dns credentials are not the DNS identity's current ones: {why}"
                )
            }),
            Some("ServiceAccount") if has_identity_metadata(&o) => {
                let sa = api::get(
                    ctx.client,
                    "v1",
                    "ServiceAccount",
                    Some(&s.namespace),
                    EXTERNAL_DNS,
                )
                .await?;
                match sa {
                    None => Some(format!(
                        "external-dns is not set up for the DNS identity: ServiceAccount \
                         {}/{EXTERNAL_DNS} is missing",
                        s.namespace
                    )),
                    Some(sa) => lacks(&sa, &o),
                }
            }
            Some("Deployment") => lacks(live, &o),
            _ => None,
        };
        if why.is_some() {
            return Ok(why);
        }
    }
    Ok(None)
}

/// Whether the ServiceAccount `o` carries annotations (a workload identity's).
fn has_identity_metadata(o: &Value) -> bool {
    o.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| !a.is_empty())
}

/// What of the annotations and labels of `wanted` the server's `live` lacks.
fn lacks(live: &Value, wanted: &Value) -> Option<String> {
    let missing = objects::metadata_differs(live, wanted);
    (!missing.is_empty()).then(|| {
        format!(
            "external-dns is not set up for the DNS identity: {} lacks {}",
            api::describe(wanted),
            missing.join(", ")
        )
    })
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
            (Some("Deployment"), Some(l)) => {
                &objects::external_dns_actual(&l, s) == s
                    && objects::metadata_differs(&l, o).is_empty()
            }
            (Some("Secret"), Some(l)) => objects::secret_data_matches(&l, o),
            (Some("ServiceAccount"), Some(l)) => objects::metadata_differs(&l, o).is_empty(),
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
