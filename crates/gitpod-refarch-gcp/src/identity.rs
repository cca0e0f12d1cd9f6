//! The node service account `gke-sa-<name>` and its project roles, as the guide:
//! `roles/storage.admin`, `roles/logging.logWriter`, `roles/monitoring.metricWriter`,
//! `roles/container.admin`.

use gitpod_refarch::provider::{Observed, Progress};
use gitpod_refarch::resource::{ClusterIdentitySpec, Output};
use gitpod_refarch::Result;

use crate::context::Context;
use crate::iam;

/// The roles of the node service account.
pub const ROLES: [&str; 4] = [
    "roles/storage.admin",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/container.admin",
];

/// `gke-sa-<name>`.
pub fn account_id(installation: &str) -> String {
    format!("gke-sa-{installation}")
}

fn output(c: &Context, installation: &str) -> Output {
    Output::ClusterIdentity {
        principal: iam::email(c, &account_id(installation)),
    }
}

/// The account as it exists; roles it does not hold are its drift.
pub async fn observe(
    c: &Context,
    d: &ClusterIdentitySpec,
) -> Result<Option<Observed<ClusterIdentitySpec>>> {
    let id = account_id(&d.name);
    let Some(drift) = iam::account_drift(c, &id, &d.name, &ROLES).await? else {
        return Ok(None);
    };
    let mut o = Observed::ready(d.clone(), Some(output(c, &d.name)));
    o.drift = drift;
    Ok(Some(o))
}

/// Create the account and grant the roles.
pub async fn ensure(c: &Context, d: &ClusterIdentitySpec) -> Result<Progress> {
    let id = account_id(&d.name);
    iam::ensure_account(c, &id, "Gitpod GKE nodes", &d.name).await?;
    iam::set_project_roles(c, &iam::member(c, &id), &ROLES, true).await?;
    Ok(Progress::Done(Some(output(c, &d.name))))
}

/// Revoke the roles and delete the account.
pub async fn delete(c: &Context, installation: &str) -> Result<Progress> {
    iam::delete_account(c, &account_id(installation), installation, &ROLES).await?;
    Ok(Progress::Done(None))
}
