//! The teardown of a namespace, shared by cert-manager, external-dns and the Gitpod
//! namespace: delete it, then wait until it is gone and, for the Gitpod namespace,
//! until every `LoadBalancer` Service is gone too (their cloud load balancers would
//! keep the network from being deleted). Operation id: `namespace-gone/<ns>`.

use gitpod_refarch::provider::{Operation, Progress};
use gitpod_refarch::resource::ResourceId;
use gitpod_refarch::Result;
use serde_json::Value;

use crate::api::{self, KubeApi};
use crate::context::{pending, still_pending, Context};

/// The prefix of the teardown's operation ids.
pub(crate) const OPERATION: &str = "namespace-gone";

/// The operation id of the wait for `ns` to be gone.
pub(crate) fn operation(ns: &str) -> String {
    format!("{OPERATION}/{ns}")
}

/// Every `LoadBalancer` Service, in any namespace.
pub(crate) async fn load_balancers(c: &KubeApi) -> Result<Vec<Value>> {
    api::list(c, "v1", "Service", None, Some("spec.type=LoadBalancer")).await
}

/// Delete the namespace `ns` of resource `id`; `Pending` until it is gone.
pub(crate) async fn delete_namespace(
    ctx: &Context<'_>,
    id: ResourceId,
    ns: &str,
) -> Result<Progress> {
    api::delete(ctx.client, "v1", "Namespace", None, ns).await?;
    match gone(ctx, ns).await? {
        None => Ok(Progress::Done(None)),
        Some(why) => Ok(Progress::Pending(pending(
            ctx,
            id,
            operation(ns),
            Some(why),
        ))),
    }
}

/// Why the teardown of `ns` is not finished (`None`: finished).
async fn gone(ctx: &Context<'_>, ns: &str) -> Result<Option<String>> {
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

/// Poll the wait for the namespace `ns` to be gone.
pub(crate) async fn poll(ctx: &Context<'_>, op: &Operation, ns: &str) -> Result<Progress> {
    match gone(ctx, ns).await? {
        None => Ok(Progress::Done(None)),
        Some(why) => Ok(still_pending(ctx, op, why)),
    }
}
