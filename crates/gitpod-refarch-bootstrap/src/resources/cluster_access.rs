//! `cluster-access`: the ClusterRoleBinding `cluster-admin-binding` for the caller the
//! cloud's credentials name (none when they name no user).
//!
//! When the credentials name no user ([`AccessToken::user`] is `None`) no binding is
//! made and nothing is missing: the caller's rights in the cluster come from the cloud,
//! not from a Kubernetes binding the bootstrap could write. This is the AKS case: the
//! token's subject is an Entra object id, which AKS maps to a Kubernetes user name of
//! its own choosing, and with Azure RBAC for Kubernetes authorization the deployer's
//! rights are the ARM role assignment (*Azure Kubernetes Service RBAC Cluster Admin*
//! on the cluster) the cloud provider makes; a `User` binding for a guessed name would
//! grant nothing, or grant it to someone else. A binding found from an earlier run is
//! reported and left alone (`delete` removes it).
//!
//! [`AccessToken::user`]: gitpod_refarch::provider::AccessToken::user

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
        tracing::info!(
            binding = %s.binding,
            "the cloud's credentials name no Kubernetes user: no cluster-admin binding is \
             made, the caller's rights in the cluster come from the cloud (on AKS, the \
             Azure RBAC role assignment)"
        );
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
