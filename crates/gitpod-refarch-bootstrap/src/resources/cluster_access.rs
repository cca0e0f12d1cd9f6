//! `cluster-access`: the ClusterRoleBinding `cluster-admin-binding` for the caller the
//! cloud's credentials name (none when they name no user).

use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{ClusterAccessSpec, ResourceKind};
use gitpod_refarch::Result;

use crate::api;
use crate::context::{done, output, Context};
use crate::objects;

const RBAC: &str = "rbac.authorization.k8s.io/v1";

/// One read: the binding, or nothing missing when the credentials name no user.
pub(crate) async fn observe(
    ctx: &Context<'_>,
    s: &ClusterAccessSpec,
    inputs: &Inputs,
) -> Result<Option<Observed<ClusterAccessSpec>>> {
    let live = api::get(ctx.client, RBAC, "ClusterRoleBinding", None, &s.binding).await?;
    if let Some(l) = live {
        return Ok(Some(Observed::ready(
            s.clone(),
            output(vec![api::describe(&l)]),
        )));
    }
    // Credentials that name no user need no binding: nothing is missing.
    let cluster = inputs.of_kind(ResourceKind::Cluster)?;
    let token = ctx.config.credentials.cluster_token(cluster).await?;
    Ok(token
        .user
        .is_none()
        .then(|| Observed::ready(s.clone(), output(vec![]))))
}

/// Bind `cluster-admin` to the caller.
pub(crate) async fn ensure(
    ctx: &Context<'_>,
    s: &ClusterAccessSpec,
    inputs: &Inputs,
) -> Result<Progress> {
    let cluster = inputs.of_kind(ResourceKind::Cluster)?;
    let token = ctx.config.credentials.cluster_token(cluster).await?;
    let Some(user) = token.user else {
        tracing::info!("the cloud does not name the caller: no cluster-admin binding is needed");
        return Ok(done(vec![]));
    };
    let obj = objects::admin_binding(s, &user)?;
    api::apply(ctx.client, &obj).await?;
    Ok(done(vec![api::describe(&obj)]))
}

/// Remove the binding (absent is success).
pub(crate) async fn delete(ctx: &Context<'_>, s: &ClusterAccessSpec) -> Result<Progress> {
    api::delete(ctx.client, RBAC, "ClusterRoleBinding", None, &s.binding).await?;
    Ok(Progress::Done(None))
}
