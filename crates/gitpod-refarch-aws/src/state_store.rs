//! State in an S3 object: compare-and-swap on the ETag with conditional writes, a lock
//! object next to it, encrypted at rest.

use std::fmt::Display;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use gitpod_refarch::state::{
    changed_error, locked_error, Generation, LockInfo, LockRequest, State, StateStore, Stored,
};
use gitpod_refarch::{Error, ErrorKind, Result};

use crate::error::from_sdk;

/// The longest key S3 accepts, in bytes.
const MAX_KEY: usize = 1024;
/// The user metadata naming the save that wrote the state object (`x-amz-meta-…`).
const WRITE_ID: &str = "gitpod-refarch-write-id";
/// The suffix of the lock object's key.
const LOCK_SUFFIX: &str = ".lock";

/// The state of an installation in one S3 object (`s3://bucket/key`), shared safely by
/// many writers.
///
/// - Every save is a conditional `PutObject`: `If-Match` the ETag that was loaded, or
///   `If-None-Match: *` for the first save, so a writer that read an older state gets
///   [`ErrorKind::StateChanged`] and nothing is written. The [`Generation`] is the
///   object's ETag. Each save tags the object with a random write id (user metadata),
///   so a save retried by the SDK after its first attempt landed is recognised as its
///   own, not reported as a conflict.
/// - The run lock is the object `<key>.lock` (the [`LockInfo`] as JSON), created with
///   `If-None-Match: *`; unlocking and breaking check the lock's id and delete it with
///   `If-Match` its ETag, so a lock taken in between is never removed.
/// - Every write asks for server-side encryption: SSE-S3 (`AES256`) by default, SSE-KMS
///   with [`kms_key_id`](S3StateStore::kms_key_id). The state holds secrets in clear
///   inside the object: the bucket should be private, and its contents are never
///   logged.
/// - The bucket must exist (a missing one is [`ErrorKind::Precondition`]): the store
///   never creates buckets. Versioning on the bucket keeps earlier states.
///
/// The credentials need `s3:GetObject`, `s3:PutObject` and `s3:DeleteObject` on
/// `arn:aws:s3:::bucket/key*` (and `kms:GenerateDataKey`/`kms:Decrypt` on the key with
/// SSE-KMS).
///
/// ```no_run
/// use gitpod_refarch::state::StateStore as _;
/// use gitpod_refarch_aws::S3StateStore;
///
/// # async fn run() -> Result<(), gitpod_refarch::Error> {
/// let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let store = S3StateStore::from_url("s3://acme-gitpod-state/prod/state.json", &sdk)?
///     .kms_key_id(Some("alias/gitpod-state".into()));
/// assert_eq!(store.location(), "s3://acme-gitpod-state/prod/state.json");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct S3StateStore {
    client: Client,
    bucket: String,
    key: String,
    kms_key_id: Option<String>,
}

impl S3StateStore {
    /// A store at `s3://bucket/key` with this client (SSE-S3 encryption).
    ///
    /// The names are not checked here ([`from_url`](Self::from_url) checks them); a
    /// client for an endpoint other than AWS's usually needs `force_path_style(true)`.
    pub fn new(client: Client, bucket: impl Into<String>, key: impl Into<String>) -> Self {
        S3StateStore {
            client,
            bucket: bucket.into(),
            key: key.into(),
            kms_key_id: None,
        }
    }

    /// A store for `s3://bucket/key`, with a client from `sdk` (path-style addressing
    /// when `sdk` has an endpoint override, as emulators need).
    ///
    /// Fails with [`ErrorKind::InvalidInput`] saying what is wrong when the URL is not
    /// `s3://`, the bucket name is not a valid S3 bucket name, or the key is empty or
    /// too long. Nothing is called.
    pub fn from_url(url: &str, sdk: &aws_config::SdkConfig) -> Result<Self> {
        let (bucket, key) = parse_url(url)?;
        let mut conf = aws_sdk_s3::config::Builder::from(sdk);
        if sdk.endpoint_url().is_some() {
            conf = conf.force_path_style(true);
        }
        Ok(Self::new(Client::from_conf(conf.build()), bucket, key))
    }

    /// Encrypt with SSE-KMS under this key (id, ARN or `alias/...`); `None` (the
    /// default) is SSE-S3 (`AES256`).
    #[must_use]
    pub fn kms_key_id(mut self, key_id: Option<String>) -> Self {
        self.kms_key_id = key_id;
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The state object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lock object's key: `<key>.lock`.
    pub fn lock_key(&self) -> String {
        format!("{}{LOCK_SUFFIX}", self.key)
    }

    fn lock_location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.lock_key())
    }

    /// A `PutObject` of `body` at `key`, with the encryption asked for.
    fn put(
        &self,
        key: String,
        body: Vec<u8>,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        match &self.kms_key_id {
            Some(k) => put
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k),
            None => put.server_side_encryption(ServerSideEncryption::Aes256),
        }
    }

    /// An SDK error as the core's, with a missing bucket as a precondition and a hint
    /// on the permissions needed.
    fn sdk_error<E>(&self, err: SdkError<E, HttpResponse>, what: impl Display) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if err.code() == Some("NoSuchBucket") {
            return Error::new(
                ErrorKind::Precondition,
                format!(
                    "the state bucket {} does not exist: create the bucket first (private, \
                     ideally versioned); the state store never creates buckets",
                    self.bucket
                ),
            )
            .with_source(err);
        }
        let e = from_sdk(err, what);
        if e.kind() == ErrorKind::Permission {
            return Error::new(
                ErrorKind::Permission,
                format!(
                    "{}; the state store needs s3:GetObject, s3:PutObject and \
                     s3:DeleteObject on arn:aws:s3:::{}/{}*{}",
                    e.message(),
                    self.bucket,
                    self.key,
                    if self.kms_key_id.is_some() {
                        " and kms:GenerateDataKey, kms:Decrypt on the KMS key"
                    } else {
                        ""
                    }
                ),
            )
            .with_source(e);
        }
        e
    }

    /// The bytes and ETag of an object, `None` if it does not exist.
    async fn get(&self, key: &str, location: &str) -> Result<Option<(Vec<u8>, Generation)>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.sdk_error(e, format!("reading {location}"))),
        };
        let etag = out
            .e_tag()
            .filter(|t| !t.is_empty())
            .map(Generation::new)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::State,
                    format!("S3 returned {location} without an ETag; cannot compare-and-swap"),
                )
            })?;
        let body = out.body.collect().await.map_err(|e| {
            Error::new(
                ErrorKind::Transient,
                format!("reading {location}: the download broke off"),
            )
            .with_source(e)
        })?;
        Ok(Some((body.to_vec(), etag)))
    }

    /// The state object's ETag if the object is the one written with `write_id`.
    async fn written_by(&self, write_id: &str) -> Result<Option<Generation>> {
        let head = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
        {
            Ok(head) => head,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => return Ok(None),
            Err(e) => return Err(self.sdk_error(e, format!("reading {}", self.location()))),
        };
        let ours = head
            .metadata()
            .and_then(|m| m.get(WRITE_ID))
            .is_some_and(|id| id == write_id);
        Ok(head
            .e_tag()
            .filter(|t| ours && !t.is_empty())
            .map(Generation::new))
    }

    /// The lock and its ETag, `None` if not locked.
    async fn read_lock(&self) -> Result<Option<(LockInfo, Generation)>> {
        let location = self.lock_location();
        let Some((body, etag)) = self.get(&self.lock_key(), &location).await? else {
            return Ok(None);
        };
        let info = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::State,
                format!(
                    "the lock object {location} is not valid; delete it by hand if no run \
                     holds it"
                ),
            )
            .with_source(e)
        })?;
        Ok(Some((info, etag)))
    }

    /// Delete the lock if it still is the one with `id` (and ETag), else say what is
    /// held.
    async fn remove_lock(&self, id: &str) -> Result<LockInfo> {
        let location = self.location();
        let (held, etag) = match self.read_lock().await? {
            Some((h, etag)) if h.id == id => (h, etag),
            other => return Err(mismatch(&location, other.map(|(h, _)| h).as_ref(), id)),
        };
        let deleted = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.lock_key())
            .if_match(etag.as_str())
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(held),
            // Replaced or removed since it was read: whatever is there now is not ours.
            Err(e) if is_precondition_failed(&e) || is_not_found(&e) => {
                let now = self.read_lock().await?.map(|(h, _)| h);
                Err(mismatch(&location, now.as_ref(), id))
            }
            Err(e) => Err(self.sdk_error(e, format!("deleting {}", self.lock_location()))),
        }
    }
}

/// `s3://bucket/key` into its bucket and key, or what is wrong with it.
fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        Error::invalid_input(format!(
            "'{url}' is not an S3 URL: expected s3://BUCKET/KEY"
        ))
    })?;
    let (bucket, key) = rest.split_once('/').ok_or_else(|| {
        Error::invalid_input(format!(
            "'{url}' has no object key: expected s3://BUCKET/KEY (for example \
             s3://{rest}/gitpod/state.json)"
        ))
    })?;
    if let Some(why) = bucket_problem(bucket) {
        return Err(Error::invalid_input(format!(
            "'{url}': '{bucket}' is not a valid S3 bucket name: {why}"
        )));
    }
    if key.is_empty() {
        return Err(Error::invalid_input(format!(
            "'{url}' has an empty object key: expected s3://BUCKET/KEY (for example \
             s3://{bucket}/gitpod/state.json)"
        )));
    }
    if key.len() + LOCK_SUFFIX.len() > MAX_KEY {
        return Err(Error::invalid_input(format!(
            "'{url}': the object key is {} bytes long; at most {} are allowed (the lock \
             object adds '{LOCK_SUFFIX}' to it)",
            key.len(),
            MAX_KEY - LOCK_SUFFIX.len()
        )));
    }
    if key.ends_with('/') {
        return Err(Error::invalid_input(format!(
            "'{url}' names a folder, not an object: add a file name (for example \
             {url}state.json)"
        )));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// A fresh id for one save: unique, not secret (the std hasher's random keys, the time
/// and the process).
fn write_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    format!("{:016x}{:x}", h.finish(), nanos)
}

/// Why `name` is not a valid bucket name (general purpose bucket rules), if it is not.
fn bucket_problem(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if bytes.len() < 3 || bytes.len() > 63 {
        return Some("it must be 3 to 63 characters long");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
    {
        return Some("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Some("it must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Some("it must not contain two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("it must not look like an IP address");
    }
    None
}

/// The error of unlocking or breaking a lock whose id is not `id`.
fn mismatch(location: &str, held: Option<&LockInfo>, id: &str) -> Error {
    match held {
        None => Error::new(
            ErrorKind::NotFound,
            format!("the state at {location} is not locked (no lock {id} to release)"),
        ),
        Some(h) => Error::new(
            ErrorKind::Conflict,
            format!(
                "the state at {location} is locked with another id: {h}; nothing was \
                 removed (name that id to break it)"
            ),
        ),
    }
}

/// A conditional write lost: 412 `PreconditionFailed`, or 409
/// `ConditionalRequestConflict` (a concurrent conditional write to the same key).
fn is_precondition_failed<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    let status = e.raw_response().map(|r| r.status().as_u16());
    matches!(
        e.code(),
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    ) || status == Some(412)
}

/// 404: the object named by `If-Match` is gone.
fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    let status = e.raw_response().map(|r| r.status().as_u16());
    e.code() == Some("NoSuchKey") || (status == Some(404) && e.code() != Some("NoSuchBucket"))
}

#[async_trait]
impl StateStore for S3StateStore {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn load(&self) -> Result<Option<Stored>> {
        let location = self.location();
        let Some((body, generation)) = self.get(&self.key, &location).await? else {
            return Ok(None);
        };
        let text = String::from_utf8(body).map_err(|e| {
            Error::new(
                ErrorKind::State,
                format!("the state at {location} is not UTF-8 text"),
            )
            .with_source(e)
        })?;
        let state = State::from_json(&text).map_err(|e| {
            Error::new(
                ErrorKind::State,
                format!("the state at {location} is not valid: {}", e.message()),
            )
            .with_source(e)
        })?;
        Ok(Some(Stored::new(state, generation)))
    }

    async fn save(&self, state: &State, expected: Option<&Generation>) -> Result<Generation> {
        let location = self.location();
        let body = state.to_json_exposed()?.into_bytes();
        let write_id = write_id();
        let put = self
            .put(self.key.clone(), body)
            .metadata(WRITE_ID, &write_id);
        let put = match expected {
            Some(g) => put.if_match(g.as_str()),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(out) => out
                .e_tag()
                .filter(|t| !t.is_empty())
                .map(Generation::new)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::State,
                        format!(
                            "S3 stored {location} but returned no ETag; load it again before \
                             the next save"
                        ),
                    )
                }),
            Err(e) if is_precondition_failed(&e) || (expected.is_some() && is_not_found(&e)) => {
                // A retried PUT whose first attempt landed (its answer lost) fails its own
                // condition: the object then carries this write's id.
                match self.written_by(&write_id).await? {
                    Some(etag) => Ok(etag),
                    None => Err(changed_error(&location)),
                }
            }
            Err(e) => Err(self.sdk_error(e, format!("writing {location}"))),
        }
    }

    async fn lock(&self, request: &LockRequest) -> Result<LockInfo> {
        let info = LockInfo::for_request(request);
        let body = serde_json::to_vec_pretty(&info)
            .map_err(|e| Error::internal("lock does not serialize").with_source(e))?;
        let created = self
            .put(self.lock_key(), body)
            .if_none_match("*")
            .send()
            .await;
        match created {
            Ok(_) => Ok(info),
            Err(e) if is_precondition_failed(&e) => match self.read_lock().await? {
                // A retried PUT whose first attempt created it.
                Some((held, _)) if held.id == info.id => Ok(info),
                Some((held, _)) => Err(locked_error(&self.location(), &held)),
                None => Err(Error::new(
                    ErrorKind::StateLocked,
                    format!(
                        "the state at {} was locked and just released; try again",
                        self.location()
                    ),
                )),
            },
            Err(e) => Err(self.sdk_error(e, format!("creating {}", self.lock_location()))),
        }
    }

    async fn unlock(&self, lock: &LockInfo) -> Result<()> {
        self.remove_lock(&lock.id).await.map(|_| ())
    }

    async fn current_lock(&self) -> Result<Option<LockInfo>> {
        Ok(self.read_lock().await?.map(|(h, _)| h))
    }

    async fn break_lock(&self, id: &str) -> Result<LockInfo> {
        self.remove_lock(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_url("s3://my-bucket/a/b/state.json").ok(),
            Some(("my-bucket".to_string(), "a/b/state.json".to_string()))
        );
        for (url, says) in [
            ("gs://b/k", "not an S3 URL"),
            ("my-bucket/state.json", "not an S3 URL"),
            ("s3://my-bucket", "no object key"),
            ("s3://my-bucket/", "empty object key"),
            ("s3://my-bucket/dir/", "names a folder"),
            ("s3://My_Bucket/k", "only lowercase"),
            ("s3://ab/k", "3 to 63"),
            ("s3://-ab/k", "begin and end"),
            ("s3://a..b/k", "adjacent periods"),
            ("s3://192.168.1.1/k", "IP address"),
        ] {
            let e = parse_url(url).err();
            assert!(
                e.as_ref().is_some_and(
                    |e| e.kind() == ErrorKind::InvalidInput && e.message().contains(says)
                ),
                "{url}: {e:?}"
            );
        }
        let long = format!("s3://my-bucket/{}", "k".repeat(MAX_KEY));
        assert!(parse_url(&long).is_err());
    }
}
