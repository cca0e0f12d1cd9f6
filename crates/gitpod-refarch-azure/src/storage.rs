//! Object storage on Azure: Gitpod's in-cluster object storage, and no Azure resource.
//!
//! Gitpod's installer has no Azure Blob support any more. Its Azure path was MinIO in
//! *Azure gateway* mode; MinIO removed that gateway and Gitpod removed the installer's
//! `objectStorage.azure` on 2023-02-01. The installer at HEAD accepts only `inCluster`,
//! `s3` (AWS S3 only: its `endpoint` is no longer used) and `cloudStorage` (GCS).
//!
//! So this module makes **no cloud call at all**: it reports
//! [`StorageOutput::InCluster`], which the installer renders as
//! `objectStorage.inCluster: true` (MinIO on a persistent volume of the cluster's
//! default storage class, an Azure managed disk on AKS). There is nothing to create or
//! delete. A user who wants external object storage mixes providers: an S3 or
//! GCS [`gitpod_refarch::provider::ObjectStore`] next to the Azure cluster, through the
//! same traits.

use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{ObjectStorageSpec, Output, StorageOutput};
use gitpod_refarch::Result;

use crate::context::Context;

/// The output: in-cluster storage in the spec's region (the installer's
/// `metadata.region`).
pub fn output(d: &ObjectStorageSpec) -> Output {
    Output::ObjectStorage(StorageOutput::InCluster {
        region: d.region.clone(),
    })
}

/// Always there, exactly as desired, with its output: there is no Azure resource
/// behind it, so an apply never has anything to do here (the engine records the
/// output it read in its state).
pub async fn observe(
    _c: &Context,
    d: &ObjectStorageSpec,
) -> Result<Option<Observed<ObjectStorageSpec>>> {
    Ok(Some(Observed::ready(d.clone(), Some(output(d)))))
}

/// Nothing to create: report the in-cluster storage.
pub async fn ensure(_c: &Context, d: &ObjectStorageSpec, _inputs: &Inputs) -> Result<Progress> {
    Ok(Progress::Done(Some(output(d))))
}

/// Nothing to delete: MinIO's volume goes with the cluster.
pub async fn delete(_c: &Context, _d: &ObjectStorageSpec) -> Result<Progress> {
    Ok(Progress::Done(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_cluster_storage_in_the_specs_region_and_nothing_secret() {
        let spec: ObjectStorageSpec = serde_json::from_value(serde_json::json!({
            "name": "gp", "region": "northeurope", "bucket": null,
            "versioning": false, "labels": {}
        }))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let out = output(&spec);
        assert_eq!(
            out,
            Output::ObjectStorage(StorageOutput::InCluster {
                region: "northeurope".into()
            })
        );
        // The installer renders `inCluster: true` from this variant, with no secret.
        assert!(!out.has_secret());
        assert_eq!(
            serde_json::to_value(&out).unwrap_or_default(),
            serde_json::json!({"kind": "object-storage", "type": "inCluster", "region": "northeurope"})
        );
    }
}
