//! Object storage on GCS, as the guide: no bucket (Gitpod creates one bucket per user
//! at run time), but the storage service account `obj-sa-<name>` with
//! `roles/storage.admin` and `roles/storage.objectAdmin` and its key, for the
//! installer's `objectStorage.cloudStorage` and the `storage-gcp` secret.

use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{
    ObjectStorageSpec, Output, ResourceId, ResourceKind, StorageOutput,
};
use gitpod_refarch::Result;

use crate::context::Context;
use crate::iam;

/// The roles of the storage service account.
pub const ROLES: [&str; 2] = ["roles/storage.admin", "roles/storage.objectAdmin"];

/// `obj-sa-<name>`.
pub fn account_id(installation: &str) -> String {
    format!("obj-sa-{installation}")
}

/// The account as it exists (roles it does not hold are its drift); the key comes
/// from the state store.
pub async fn observe(
    c: &Context,
    d: &ObjectStorageSpec,
) -> Result<Option<Observed<ObjectStorageSpec>>> {
    let id = account_id(&d.name);
    let Some(drift) = iam::account_drift(c, &id, &d.name, &ROLES).await? else {
        return Ok(None);
    };
    let mut o = Observed::ready(d.clone(), None);
    o.drift = drift;
    Ok(Some(o))
}

/// Create the account, grant the roles, make a key when the state store has none.
pub async fn ensure(c: &Context, d: &ObjectStorageSpec, inputs: &Inputs) -> Result<Progress> {
    let id = account_id(&d.name);
    iam::ensure_account(c, &id, "Gitpod object storage", &d.name).await?;
    iam::set_project_roles(c, &iam::member(c, &id), &ROLES, true).await?;
    let own = ResourceId::new(ResourceKind::ObjectStorage, d.name.clone());
    if let Some(known @ Output::ObjectStorage(StorageOutput::Gcs { .. })) = inputs.get(&own) {
        return Ok(Progress::Done(Some(known.clone())));
    }
    let key = iam::create_key(c, &id).await?;
    Ok(Progress::Done(Some(Output::ObjectStorage(
        StorageOutput::Gcs {
            project: c.project.clone(),
            region: d.region.clone(),
            service_account_json: key,
        },
    ))))
}

/// Revoke the roles and delete the account. The per-user buckets Gitpod made are
/// user data and stay.
pub async fn delete(c: &Context, installation: &str) -> Result<Progress> {
    iam::delete_account(c, &account_id(installation), installation, &ROLES).await?;
    Ok(Progress::Done(None))
}
