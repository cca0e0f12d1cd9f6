//! S3 object storage: a bucket with versioning, default encryption (SSE-S3) and all
//! public access blocked, and a user whose inline policy reaches that bucket only
//! (not `AmazonS3FullAccess`). Its access key is the installer's `storage-s3` secret.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, Delete,
    ObjectIdentifier, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};
use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{
    ObjectStorageSpec, Output, ResourceId, ResourceKind, StorageOutput,
};
use gitpod_refarch::{Error, ErrorKind, Result, Secret};

use crate::context::{tags_of, Context};
use crate::error::{found, Ctx};
use crate::iam;

/// The tag recording the versioning the SDK last set (see [`versioning_on`]).
const VERSIONING_TAG: &str = "gitpod-refarch/versioning";

fn build_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::internal("an S3 request could not be built").with_source(e)
}

/// The bucket of the installation.
pub fn bucket_name(c: &Context, d: &ObjectStorageSpec) -> String {
    d.bucket
        .clone()
        .unwrap_or_else(|| format!("{}-gitpod-{}-{}", d.name, c.account, c.region))
}

fn user_name(name: &str) -> String {
    format!("{name}-storage")
}

/// A policy for one bucket and its objects.
pub fn bucket_policy(bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
             "Resource": [format!("arn:aws:s3:::{bucket}")]},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
             "Resource": [format!("arn:aws:s3:::{bucket}/*")]}
        ]
    })
}

/// Who a bucket belongs to, as far as its tags say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Tagged for this installation.
    Ours,
    /// No installation tag at all (a run stopped between create and tag).
    Untagged,
    /// Tagged for another installation.
    Theirs,
}

/// A bucket's tags (`None` when it has none).
async fn bucket_tags(
    c: &Context,
    bucket: &str,
) -> Result<Option<aws_sdk_s3::operation::get_bucket_tagging::GetBucketTaggingOutput>> {
    found(
        c.clients
            .s3
            .get_bucket_tagging()
            .bucket(bucket)
            .send()
            .await
            .ctx(format!("reading tags of {bucket}")),
    )
}

/// Whether the bucket exists, and whose it is.
pub async fn bucket_owner(
    c: &Context,
    bucket: &str,
    installation: &str,
) -> Result<Option<Ownership>> {
    let head = c
        .clients
        .s3
        .head_bucket()
        .bucket(bucket)
        .send()
        .await
        .ctx(format!("reading bucket {bucket}"));
    match head {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        // S3 answers 403 without a code when another account owns the name.
        Err(e) if e.kind() == ErrorKind::Credentials => {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("bucket name {bucket} is taken by another account; set storage.bucket"),
            )
            .with_source(e))
        }
        Err(e) => return Err(e),
    }
    let tags = bucket_tags(c, bucket).await?;
    let label = tags.as_ref().and_then(|t| {
        t.tag_set()
            .iter()
            .find(|t| t.key() == INSTALLATION_LABEL)
            .map(|t| t.value().to_string())
    });
    Ok(Some(match label {
        Some(v) if v == installation => Ownership::Ours,
        Some(_) => Ownership::Theirs,
        None => Ownership::Untagged,
    }))
}

/// Whether versioning is on. An S3 emulator whose `GetBucketVersioning` answer the
/// SDK cannot parse (moto 5.2.1 answers 200 with another root element) falls back to
/// the tag the SDK wrote when it last set versioning.
async fn versioning_on(c: &Context, bucket: &str) -> Result<bool> {
    match c
        .clients
        .s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(v) => Ok(v.status() == Some(&BucketVersioningStatus::Enabled)),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 200) => {
            tracing::warn!(
                bucket,
                "GetBucketVersioning answer unreadable; using the recorded setting"
            );
            let tags = bucket_tags(c, bucket).await?;
            Ok(tags.is_some_and(|t| {
                t.tag_set()
                    .iter()
                    .any(|t| t.key() == VERSIONING_TAG && t.value() == "on")
            }))
        }
        Err(e) => Err(crate::error::from_sdk(
            e,
            format!("reading versioning of {bucket}"),
        )),
    }
}

async fn put_tags(c: &Context, bucket: &str, tags: &BTreeMap<String, String>) -> Result<()> {
    let tag_set: std::result::Result<Vec<Tag>, _> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    c.clients
        .s3
        .put_bucket_tagging()
        .bucket(bucket)
        .tagging(
            Tagging::builder()
                .set_tag_set(Some(tag_set.map_err(build_err)?))
                .build()
                .map_err(build_err)?,
        )
        .send()
        .await
        .ctx(format!("tagging bucket {bucket}"))?;
    Ok(())
}

/// Block public access and turn on default encryption (idempotent puts).
async fn harden(c: &Context, bucket: &str) -> Result<()> {
    let s3 = &c.clients.s3;
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .ctx(format!("blocking public access to {bucket}"))?;
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(build_err)?;
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(by_default)
                        .build(),
                )
                .build()
                .map_err(build_err)?,
        )
        .send()
        .await
        .ctx(format!("encrypting bucket {bucket}"))?;
    Ok(())
}

/// Create or complete a private, encrypted bucket tagged for the installation.
///
/// `adoptable`: the name is derived from the installation, account and region, so an
/// untagged bucket of that name in this account is one a stopped run created (a bucket
/// of another account answers 403, and one tagged for another installation is refused).
pub async fn ensure_bucket(
    c: &Context,
    bucket: &str,
    installation: &str,
    tags: &BTreeMap<String, String>,
    versioning: bool,
    adoptable: bool,
) -> Result<()> {
    let s3 = &c.clients.s3;
    let mut tags = tags.clone();
    match bucket_owner(c, bucket, installation).await? {
        Some(Ownership::Ours) => {}
        Some(Ownership::Untagged) if adoptable => {
            put_tags(c, bucket, &tags).await?;
            harden(c, bucket).await?;
        }
        Some(_) => {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "bucket {bucket} exists but does not belong to installation {installation}"
                ),
            ))
        }
        None => {
            let mut req = s3.create_bucket().bucket(bucket);
            if c.region != "us-east-1" {
                req = req.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(c.region.as_str()))
                        .build(),
                );
            }
            req.send().await.ctx(format!("creating bucket {bucket}"))?;
            put_tags(c, bucket, &tags).await?;
            harden(c, bucket).await?;
        }
    }
    if versioning != versioning_on(c, bucket).await? {
        let status = if versioning {
            BucketVersioningStatus::Enabled
        } else {
            BucketVersioningStatus::Suspended
        };
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .ctx(format!("setting versioning of {bucket}"))?;
        tags.insert(
            VERSIONING_TAG.into(),
            if versioning { "on" } else { "off" }.into(),
        );
        put_tags(c, bucket, &tags).await?;
    }
    Ok(())
}

/// Empty (every version) and delete a bucket of this installation. Absent is fine.
pub async fn delete_bucket(c: &Context, bucket: &str, installation: &str) -> Result<()> {
    let s3 = &c.clients.s3;
    match bucket_owner(c, bucket, installation).await? {
        None => return Ok(()),
        Some(Ownership::Theirs) => {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "bucket {bucket} does not belong to installation {installation}; left in place"
                ),
            ))
        }
        Some(Ownership::Ours | Ownership::Untagged) => {}
    }
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .ctx(format!("listing objects of {bucket}"))?;
        let mut ids = Vec::new();
        for v in page.versions() {
            ids.push(
                ObjectIdentifier::builder()
                    .key(v.key().unwrap_or_default())
                    .set_version_id(v.version_id().map(str::to_string))
                    .build()
                    .map_err(build_err)?,
            );
        }
        for m in page.delete_markers() {
            ids.push(
                ObjectIdentifier::builder()
                    .key(m.key().unwrap_or_default())
                    .set_version_id(m.version_id().map(str::to_string))
                    .build()
                    .map_err(build_err)?,
            );
        }
        if ids.is_empty() {
            break;
        }
        let out = s3
            .delete_objects()
            .bucket(bucket)
            .delete(
                Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await
            .ctx(format!("emptying {bucket}"))?;
        if let Some(e) = out.errors().first() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "cannot delete {} from {bucket}: {}",
                    e.key().unwrap_or_default(),
                    e.message().unwrap_or_default()
                ),
            ));
        }
    }
    found(
        s3.delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .ctx(format!("deleting bucket {bucket}")),
    )?;
    Ok(())
}

/// The bucket and its user.
pub async fn observe(
    c: &Context,
    d: &ObjectStorageSpec,
) -> Result<Option<Observed<ObjectStorageSpec>>> {
    let bucket = bucket_name(c, d);
    if bucket_owner(c, &bucket, &d.name).await? != Some(Ownership::Ours) {
        return Ok(None);
    }
    let mut actual = d.clone();
    actual.region = c.region.clone();
    actual.versioning = versioning_on(c, &bucket).await?;
    if !iam::user_is_ours(c, &user_name(&d.name), &d.name).await? {
        actual
            .labels
            .insert("gitpod-refarch/incomplete".into(), "user".into());
    }
    // The user's key cannot be read back: outputs come from state.
    Ok(Some(Observed::ready(actual, None)))
}

/// Create or update the bucket and its user; issue a key unless state holds one.
pub async fn ensure(c: &Context, d: &ObjectStorageSpec, inputs: &Inputs) -> Result<Progress> {
    let bucket = bucket_name(c, d);
    let tags = tags_of(&d.labels, &d.name);
    ensure_bucket(c, &bucket, &d.name, &tags, d.versioning, d.bucket.is_none()).await?;
    // Credentials from state are reused only for the same bucket.
    let own = inputs
        .get(&ResourceId::new(ResourceKind::ObjectStorage, d.name.clone()))
        .filter(|o| matches!(o, Output::ObjectStorage(StorageOutput::S3 { bucket: b, .. }) if *b == bucket))
        .cloned();
    let key = iam::ensure_user(
        c,
        &user_name(&d.name),
        &bucket_policy(&bucket),
        &tags,
        own.is_none(),
    )
    .await?;
    let out = match (key, own) {
        (Some((id, secret)), _) => Output::ObjectStorage(storage_output(c, &bucket, id, secret)),
        (None, Some(o)) => o,
        (None, None) => return Err(Error::internal("no storage credentials")),
    };
    Ok(Progress::Done(Some(out)))
}

fn storage_output(
    c: &Context,
    bucket: &str,
    access_key_id: String,
    secret_access_key: Secret,
) -> StorageOutput {
    StorageOutput::S3 {
        endpoint: c.s3_endpoint(),
        region: c.region.clone(),
        bucket: bucket.to_string(),
        access_key_id,
        secret_access_key,
        // An endpoint override over plain HTTP (an S3-compatible server on a private
        // network, or moto) is what Gitpod will reach too: say so to the installer.
        allow_insecure_connection: c
            .endpoint_url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://")),
    }
}

/// Delete the user, then empty and delete the bucket.
pub async fn delete(c: &Context, d: &ObjectStorageSpec) -> Result<Progress> {
    iam::delete_user(c, &user_name(&d.name), &d.name).await?;
    delete_bucket(c, &bucket_name(c, d), &d.name).await?;
    Ok(Progress::Done(None))
}
