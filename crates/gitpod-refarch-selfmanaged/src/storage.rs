//! S3-compatible storage (MinIO, Ceph RGW, AWS S3 from another cloud) as the
//! `ObjectStore` provider, with the official AWS SDK pointed at the endpoint.
//!
//! - `observe`: `HeadBucket`. The bucket exists → ready, with the installer's
//!   `objectStorage.s3` outputs (the keys are the config's, so nothing needs to be
//!   read back). A 403 is told apart with one read: a key the server does not accept
//!   is `Credentials`, a key without the permission `Permission`; both name the
//!   access key id, never the secret.
//! - `ensure`: nothing when the bucket exists (a re-apply sends no write). When it
//!   does not: `CreateBucket` if `create_bucket` (no `LocationConstraint` for
//!   `us-east-1`), then `PutBucketTagging` with `gitpod-refarch/installation=<name>`,
//!   the record that the SDK created it; otherwise `Precondition`.
//! - `delete`: only a bucket tagged for this installation, and only when it is
//!   empty; a non-empty one is a `Precondition` naming it (user data is never
//!   deleted). A bucket the SDK did not create is left alone.
//!
//! The endpoint's scheme decides `allowInsecureConnection` (`http://` → true); the
//! installer gets `host[:port]` without the scheme. A private CA (`ca_pem`) is not
//! supported yet: the SDK trusts the system's roots.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, Tag, Tagging};
use gitpod_refarch::provider::{Inputs, ObjectStore, Observed, Operation, Progress, ProviderInfo};
use gitpod_refarch::resource::{ObjectStorageSpec, Output, StorageOutput};
use gitpod_refarch::{Error, ErrorKind, Result, Secret};

mod checks;
mod client;

pub(crate) use checks::checks;
use client::{check_bucket, check_region, parse_endpoint, s3_client, ClientSettings, Endpoint};
use client::{Failure, WriteCounter};

/// The bucket tag that records that the SDK created the bucket, and for which
/// installation: destroy deletes only a bucket with this tag.
pub const OWNER_TAG: &str = "gitpod-refarch/installation";

/// The budget of one request attempt of the provider.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The endpoint, the bucket and the keys Gitpod uses.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// `https://minio.corp.example.com:9000` (`http://` only for a private network:
    /// the installer then gets `allowInsecureConnection: true`).
    pub endpoint: String,
    /// Region (`us-east-1` for most S3-compatible servers).
    pub region: String,
    /// The bucket (single-bucket mode).
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Create the bucket when it does not exist (and delete it on destroy if it was
    /// created by the SDK and is empty).
    pub create_bucket: bool,
    /// Path-style addressing (`endpoint/bucket/key`), as most S3-compatible servers
    /// want.
    pub path_style: bool,
    /// A private CA (PEM) for the endpoint's certificate. Not supported yet: a
    /// config with one is refused (`InvalidInput`) before any call.
    pub ca_pem: Option<String>,
}

impl StorageConfig {
    /// A config for `bucket` on `endpoint` with these keys, and the defaults of the
    /// spec: region `us-east-1`, `create_bucket` and `path_style` on, no private CA.
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: Secret,
    ) -> Self {
        StorageConfig {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            access_key_id: access_key_id.into(),
            secret_access_key,
            create_bucket: true,
            path_style: true,
            ca_pem: None,
        }
    }
}

/// The `ObjectStore` provider on an S3-compatible endpoint.
pub struct S3CompatibleStorage {
    config: StorageConfig,
    writes: Arc<WriteCounter>,
    client: OnceLock<aws_sdk_s3::Client>,
}

impl fmt::Debug for S3CompatibleStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3CompatibleStorage")
            .field("config", &self.config)
            .field("write_requests", &self.writes.get())
            .finish()
    }
}

impl S3CompatibleStorage {
    /// A provider for the endpoint and bucket in `config`. Nothing is checked or
    /// called here: a bad config is an `InvalidInput` from the first verb, before
    /// any request.
    pub fn new(config: StorageConfig) -> Self {
        S3CompatibleStorage {
            config,
            writes: Arc::new(WriteCounter::default()),
            client: OnceLock::new(),
        }
    }

    /// Its config.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// How many requests that may change state (any method but GET and HEAD) this
    /// provider has sent, retries included: a re-apply must not add any.
    pub fn write_requests(&self) -> u64 {
        self.writes.get()
    }

    /// Check the config (no IO) and return the endpoint and the client.
    fn prepare(
        &self,
        desired: Option<&ObjectStorageSpec>,
    ) -> Result<(Endpoint, &aws_sdk_s3::Client)> {
        let c = &self.config;
        let ep = parse_endpoint(&c.endpoint)?;
        check_bucket(&c.bucket)?;
        check_region(&c.region)?;
        if c.access_key_id.trim().is_empty() || c.access_key_id.chars().any(char::is_whitespace) {
            return Err(Error::invalid_input(
                "storage.accessKeyId: empty or contains whitespace",
            ));
        }
        if c.secret_access_key.expose().is_empty() {
            return Err(Error::invalid_input("storage.secretAccessKey: empty"));
        }
        if c.ca_pem.is_some() {
            return Err(Error::invalid_input(
                "storage.caFile: a private CA for the S3 endpoint is not supported yet; add the CA to this machine's trust store (the SDK trusts the system's roots) and leave caFile unset",
            ));
        }
        if let Some(d) = desired {
            if let Some(b) = &d.bucket {
                if *b != c.bucket {
                    return Err(Error::invalid_input(format!(
                        "storage.bucket: the plan names bucket '{b}' but the provider was built for '{}'",
                        c.bucket
                    )));
                }
            }
            if let Some(e) = &d.endpoint {
                if parse_endpoint(e)? != ep {
                    return Err(Error::invalid_input(format!(
                        "storage.endpoint: the plan names '{e}' but the provider was built for '{}'",
                        c.endpoint
                    )));
                }
            }
        }
        let client = self.client.get_or_init(|| {
            s3_client(ClientSettings {
                url: &ep.url,
                region: &c.region,
                path_style: c.path_style,
                access_key_id: &c.access_key_id,
                secret_access_key: &c.secret_access_key,
                timeout: ATTEMPT_TIMEOUT,
                max_attempts: 3,
                counter: Some(self.writes.clone()),
            })
        });
        Ok((ep, client))
    }

    fn error(&self, f: Failure, what: &str, ep: &Endpoint) -> Error {
        f.into_error(what, &self.config.access_key_id, &ep.url)
    }

    /// Whether the bucket exists (`HeadBucket`; a 403 is diagnosed).
    async fn exists(&self, ep: &Endpoint, s3: &aws_sdk_s3::Client) -> Result<bool> {
        let bucket = &self.config.bucket;
        let what = format!("reading bucket {bucket}");
        match s3.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let f = Failure::of(&e);
                match f.status() {
                    Some(404) => Ok(false),
                    Some(403) => Err(self.diagnose_403(ep, s3, &what).await),
                    _ => Err(self.error(f, &what, ep)),
                }
            }
        }
    }

    /// A HEAD answer has no body: one `ListObjectsV2` tells a refused key from a
    /// missing permission.
    async fn diagnose_403(&self, ep: &Endpoint, s3: &aws_sdk_s3::Client, what: &str) -> Error {
        let bucket = &self.config.bucket;
        let key = &self.config.access_key_id;
        match s3.list_objects_v2().bucket(bucket).max_keys(1).send().await {
            Err(e) => {
                let f = Failure::of(&e);
                if f.is_credentials() {
                    self.error(f, what, ep)
                } else {
                    Error::new(
                        ErrorKind::Permission,
                        format!(
                            "{what}: the access key {key} may not read bucket {bucket} on {} ({}): grant it s3:ListBucket on the bucket",
                            ep.url,
                            f.describe()
                        ),
                    )
                }
            }
            Ok(_) => Error::new(
                ErrorKind::Permission,
                format!(
                    "{what}: {} answers 403 to HeadBucket for the access key {key}: grant it s3:ListBucket on bucket {bucket}",
                    ep.url
                ),
            ),
        }
    }

    /// The installation the bucket was created for, from its tag (`None`: not
    /// created by the SDK, or the server cannot say).
    async fn owner(&self, ep: &Endpoint, s3: &aws_sdk_s3::Client) -> Result<Option<String>> {
        let bucket = &self.config.bucket;
        match s3.get_bucket_tagging().bucket(bucket).send().await {
            Ok(t) => Ok(t
                .tag_set()
                .iter()
                .find(|t| t.key() == OWNER_TAG)
                .map(|t| t.value().to_string())),
            Err(e) => {
                let f = Failure::of(&e);
                match (f.status(), f.code()) {
                    // No tags at all, or a server without tagging: not ours to delete.
                    (Some(404), _) | (Some(501), _) | (_, Some("NoSuchTagSet")) => Ok(None),
                    (Some(403), _) if !f.is_credentials() => {
                        tracing::warn!(
                            bucket = %bucket,
                            "the storage key may not read the bucket's tags: treating the bucket as not created by gitpod-refarch"
                        );
                        Ok(None)
                    }
                    _ => Err(self.error(f, &format!("reading tags of bucket {bucket}"), ep)),
                }
            }
        }
    }

    fn output(&self, ep: &Endpoint) -> Output {
        let c = &self.config;
        Output::ObjectStorage(StorageOutput::S3 {
            endpoint: ep.host_port.clone(),
            region: c.region.clone(),
            bucket: c.bucket.clone(),
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.clone(),
            allow_insecure_connection: ep.insecure,
        })
    }

    async fn create(
        &self,
        ep: &Endpoint,
        s3: &aws_sdk_s3::Client,
        installation: &str,
    ) -> Result<()> {
        let c = &self.config;
        let bucket = &c.bucket;
        let mut req = s3.create_bucket().bucket(bucket);
        if c.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(c.region.as_str()))
                    .build(),
            );
        }
        if let Err(e) = req.send().await {
            let f = Failure::of(&e);
            return match f.code() {
                // Created meanwhile by someone with this key: it exists, but the SDK
                // cannot tell it made it, so it is not tagged (destroy leaves it).
                Some("BucketAlreadyOwnedByYou") => Ok(()),
                Some("BucketAlreadyExists") => Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "bucket name {bucket} is taken on {} by another account: choose another storage.bucket",
                        ep.url
                    ),
                )),
                _ if f.status() == Some(403) && !f.is_credentials() => Err(Error::new(
                    ErrorKind::Permission,
                    format!(
                        "the access key {} may not create bucket {bucket} on {} ({}): create the bucket yourself and set storage.createBucket: false, or grant the key s3:CreateBucket",
                        c.access_key_id,
                        ep.url,
                        f.describe()
                    ),
                )),
                _ => Err(self.error(f, &format!("creating bucket {bucket}"), ep)),
            };
        }
        let tag = Tag::builder()
            .key(OWNER_TAG)
            .value(installation)
            .build()
            .map_err(|e| Error::internal("an S3 tag could not be built").with_source(e))?;
        let tagging = Tagging::builder()
            .tag_set(tag)
            .build()
            .map_err(|e| Error::internal("an S3 tagging could not be built").with_source(e))?;
        if let Err(e) = s3
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send()
            .await
        {
            // The bucket exists; without the tag destroy leaves it in place, which is
            // the safe side. Say so rather than fail a usable bucket.
            tracing::warn!(
                bucket = %bucket,
                error = %Failure::of(&e).describe(),
                "created the bucket but could not tag it: destroy will leave it in place"
            );
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3CompatibleStorage {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("s3-compatible").with_self_managed(true)
    }

    async fn observe(
        &self,
        storage: &ObjectStorageSpec,
    ) -> Result<Option<Observed<ObjectStorageSpec>>> {
        let (ep, s3) = self.prepare(Some(storage))?;
        if !self.exists(&ep, s3).await? {
            return Ok(None);
        }
        // Region, versioning and labels are not managed on an S3-compatible server:
        // the desired state is what exists.
        Ok(Some(Observed::ready(
            storage.clone(),
            Some(self.output(&ep)),
        )))
    }

    async fn ensure(&self, storage: &ObjectStorageSpec, _inputs: &Inputs) -> Result<Progress> {
        let (ep, s3) = self.prepare(Some(storage))?;
        let c = &self.config;
        if !self.exists(&ep, s3).await? {
            if !c.create_bucket {
                return Err(Error::new(
                    ErrorKind::Precondition,
                    format!(
                        "bucket {} does not exist on {} and createBucket is false: create it, or set storage.createBucket: true",
                        c.bucket, ep.url
                    ),
                ));
            }
            self.create(&ep, s3, &storage.name).await?;
        }
        Ok(Progress::Done(Some(self.output(&ep))))
    }

    async fn delete(&self, storage: &ObjectStorageSpec) -> Result<Progress> {
        let (ep, s3) = self.prepare(Some(storage))?;
        let c = &self.config;
        let bucket = &c.bucket;
        if !self.exists(&ep, s3).await? {
            return Ok(Progress::Done(None));
        }
        if self.owner(&ep, s3).await?.as_deref() != Some(storage.name.as_str()) {
            tracing::info!(
                bucket = %bucket,
                endpoint = %ep.url,
                "bucket not created by gitpod-refarch for this installation: left in place"
            );
            return Ok(Progress::Done(None));
        }
        let not_empty = |detail: String| {
            Error::new(
                ErrorKind::Precondition,
                format!(
                    "bucket {bucket} on {} was created for installation {} but is not empty ({detail}); it was left in place: copy what you need, empty it and run destroy again, or delete it yourself",
                    ep.url, storage.name
                ),
            )
        };
        let listed = s3
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.error(Failure::of(&e), &format!("listing bucket {bucket}"), &ep))?;
        if let Some(first) = listed.contents().first() {
            return Err(not_empty(format!(
                "it holds '{}'",
                first.key().unwrap_or_default()
            )));
        }
        match s3.delete_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(Progress::Done(None)),
            Err(e) => {
                let f = Failure::of(&e);
                match (f.status(), f.code()) {
                    (Some(404), _) => Ok(Progress::Done(None)),
                    (_, Some("BucketNotEmpty")) => {
                        Err(not_empty("object versions or uploads remain".into()))
                    }
                    _ => Err(self.error(f, &format!("deleting bucket {bucket}"), &ep)),
                }
            }
        }
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        Err(Error::internal(format!(
            "s3-compatible storage starts no operations (asked to poll '{}')",
            op.id
        )))
    }
}
