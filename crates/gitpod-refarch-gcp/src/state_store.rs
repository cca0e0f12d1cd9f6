//! [`GcsStateStore`]: the engine's state in a Cloud Storage object, `gs://BUCKET/OBJECT`,
//! shared safely by many writers through GCS's generation preconditions.
//!
//! - **Generation**: the object's `generation`. [`load`](StateStore::load) reads the
//!   metadata, then the content with `ifGenerationMatch` of that generation (a write in
//!   between is seen and the read is done again), so a state always comes with its own
//!   generation.
//! - **Save** is a single upload with `ifGenerationMatch`: `0` (only if absent) when
//!   nothing was stored, else the generation loaded. GCS refuses a stale one with 412:
//!   [`changed_error`], nothing written. An upload replaces the whole object
//!   atomically: a reader sees the old or the new state, never a mix.
//! - **Lock**: the object `OBJECT.lock` holding the [`LockInfo`] as JSON, created with
//!   `ifGenerationMatch=0`; when it exists the 412 leads to reading it and
//!   [`locked_error`] naming its holder. Unlock and break read it, check the id, and
//!   delete it with `ifGenerationMatch` of the generation read, so a lock taken in
//!   between by someone else is never removed.
//! - **Encryption**: GCS encrypts every object at rest, always (Google-managed keys).
//!   With [`GcsStoreConfig::kms_key_name`] the state is encrypted with that Cloud KMS
//!   key instead (CMEK; the bucket's service agent needs `roles/cloudkms.cryptoKeyEncrypterDecrypter`
//!   on it). The state JSON holds secrets in clear: give the bucket uniform
//!   bucket-level access and grant `roles/storage.objectUser` on it only to who runs
//!   the SDK. Object contents are never logged.
//! - **Bucket**: it must exist (create it with
//!   `gcloud storage buckets create gs://BUCKET --location=REGION --uniform-bucket-level-access`;
//!   object versioning is not needed). A missing bucket is
//!   [`ErrorKind::Precondition`].
//!
//! The client is a small typed client of the GCS JSON API on `reqwest` (the one the
//! Google clients already build), with tokens from `google-cloud-auth`: whole-object
//! reads, simple uploads (`uploadType=media`) and deletes, each with its precondition.
//! Calls are not retried here: a failure is returned with its kind
//! ([`ErrorKind::Transient`], [`ErrorKind::Throttled`], ...) for the caller to decide.

use std::time::Duration;

use async_trait::async_trait;
use gitpod_refarch::state::{
    changed_error, locked_error, Generation, LockInfo, LockRequest, State, StateStore, Stored,
};
use gitpod_refarch::{Error, ErrorKind, Result};
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use serde_json::Value;

use crate::config::{GcpConfig, GcpCredentials};

/// Google's Cloud Storage endpoint.
pub const GCS_ENDPOINT: &str = "https://storage.googleapis.com";

/// How many times a read or a lock is tried again when the object changes under it.
const ATTEMPTS: usize = 5;

/// How to reach Cloud Storage for a [`GcsStateStore`]: the credentials, an endpoint
/// override for a local server, an optional Cloud KMS key, the request timeout.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct GcsStoreConfig {
    /// Send every call to this URL (a local fake or emulator) instead of
    /// [`GCS_ENDPOINT`].
    pub endpoint_url: Option<String>,
    /// The credentials (default: Application Default Credentials).
    pub credentials: GcpCredentials,
    /// Encrypt the state objects with this Cloud KMS key
    /// (`projects/P/locations/L/keyRings/R/cryptoKeys/K`) instead of Google-managed keys.
    pub kms_key_name: Option<String>,
    /// The longest one call may take (default 60 s).
    pub timeout: Duration,
}

impl Default for GcsStoreConfig {
    fn default() -> Self {
        GcsStoreConfig {
            endpoint_url: None,
            credentials: GcpCredentials::ApplicationDefault,
            kms_key_name: None,
            timeout: Duration::from_secs(60),
        }
    }
}

impl GcsStoreConfig {
    /// Google's endpoint with Application Default Credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Send every call to `url` (a local server), with anonymous credentials.
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self.credentials = GcpCredentials::Anonymous;
        self
    }

    /// Use these credentials.
    #[must_use]
    pub fn credentials(mut self, c: GcpCredentials) -> Self {
        self.credentials = c;
        self
    }

    /// Encrypt with this Cloud KMS key (CMEK), or with Google-managed keys (`None`).
    #[must_use]
    pub fn kms_key_name(mut self, key: Option<String>) -> Self {
        self.kms_key_name = key;
        self
    }

    /// The longest one call may take.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The same credentials and endpoint as the provider's configuration.
    pub fn from_gcp_config(config: &GcpConfig) -> Self {
        GcsStoreConfig {
            endpoint_url: config.endpoint_url.clone(),
            credentials: config.credentials.clone(),
            ..Self::default()
        }
    }
}

/// The engine's state in a Cloud Storage object (see the [module docs](self)).
pub struct GcsStateStore {
    http: reqwest::Client,
    base: String,
    bucket: String,
    object: String,
    credentials: Credentials,
    kms_key_name: Option<String>,
}

impl std::fmt::Debug for GcsStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStateStore")
            .field("location", &self.location())
            .field("endpoint", &self.base)
            .finish_non_exhaustive()
    }
}

/// What a conditional write or delete found.
enum Outcome<T> {
    Done(T),
    /// 412: the precondition did not hold; nothing changed.
    ConditionNotMet,
    /// 404 of the object (a delete).
    Missing,
}

impl GcsStateStore {
    /// A store for `url` (`gs://BUCKET/OBJECT`; the object name may hold `/`). Checks
    /// the URL, the endpoint and the credentials; makes no call (a missing bucket is
    /// found by the first call).
    pub fn connect(url: &str, config: &GcsStoreConfig) -> Result<Self> {
        let (bucket, object) = parse_url(url)?;
        let base = match &config.endpoint_url {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                u.trim_end_matches('/').to_string()
            }
            Some(u) => {
                return Err(Error::invalid_input(format!(
                    "endpoint '{u}' must start with http:// or https://"
                )))
            }
            None => GCS_ENDPOINT.to_string(),
        };
        // The provider's own credential rules (ADC, key, anonymous).
        let credentials = GcpConfig::new(String::new(), String::new())
            .credentials(config.credentials.clone())
            .build_credentials()?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10).min(config.timeout))
            .build()
            .map_err(|e| Error::internal("cannot build the HTTP client").with_source(e))?;
        Ok(GcsStateStore {
            http,
            base,
            bucket,
            object,
            credentials,
            kms_key_name: config.kms_key_name.clone(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The state object's name.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The lock object's name: `OBJECT.lock`.
    pub fn lock_object(&self) -> String {
        format!("{}.lock", self.object)
    }

    fn gs(&self, name: &str) -> String {
        format!("gs://{}/{name}", self.bucket)
    }

    fn object_url(&self, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            segment(&self.bucket),
            segment(name)
        )
    }

    async fn auth(&self) -> Result<reqwest::header::HeaderMap> {
        match self.credentials.headers(Default::default()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(data),
            Ok(CacheableResource::NotModified) => Err(Error::internal(
                "the credentials answered 'not modified' to a request without an entity tag",
            )),
            Err(e) => {
                let kind = if e.is_transient() {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Credentials
                };
                Err(
                    Error::new(kind, "cannot get a Google access token for Cloud Storage")
                        .with_source(e),
                )
            }
        }
    }

    /// Send with the credentials' headers; (status, body).
    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<(u16, Vec<u8>)> {
        let req = req.headers(self.auth().await?);
        let resp = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Transient
            };
            Error::new(
                kind,
                format!("cannot reach Cloud Storage at {} to {what}", self.base),
            )
            .with_source(e)
        })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| {
            Error::new(
                ErrorKind::Transient,
                format!("Cloud Storage's answer to {what} was cut off"),
            )
            .with_source(e)
        })?;
        Ok((status, body.to_vec()))
    }

    /// The error of an unexpected answer, classified; the message is GCS's own (never
    /// the request's or object's content).
    fn failure(&self, status: u16, body: &[u8], what: &str) -> Error {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str())
            .unwrap_or("")
            .to_string();
        let said = if message.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {message}")
        };
        let bucket = &self.bucket;
        match status {
            404 => Error::new(
                ErrorKind::Precondition,
                format!(
                    "cannot {what}: the bucket gs://{bucket} does not exist ({said}). Create it \
                     first: gcloud storage buckets create gs://{bucket} --location=REGION \
                     --uniform-bucket-level-access"
                ),
            ),
            401 => Error::new(
                ErrorKind::Credentials,
                format!("cannot {what}: the credentials were refused ({said})"),
            ),
            403 => Error::new(
                ErrorKind::Permission,
                format!(
                    "cannot {what}: permission denied ({said}). Grant roles/storage.objectUser \
                     on gs://{bucket} to the identity running this"
                ),
            ),
            429 => Error::new(
                ErrorKind::Throttled,
                format!("cannot {what}: Cloud Storage throttled the call ({said}); try again"),
            ),
            500..=599 => Error::new(
                ErrorKind::Transient,
                format!("cannot {what}: Cloud Storage failed ({said}); try again"),
            ),
            400..=499 => Error::new(
                ErrorKind::InvalidInput,
                format!("cannot {what}: Cloud Storage refused the request ({said})"),
            ),
            _ => Error::internal(format!("cannot {what}: unexpected answer ({said})")),
        }
    }

    /// True when a 404 is about the bucket rather than the object.
    fn bucket_missing(body: &[u8]) -> bool {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        parsed
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str())
            .is_some_and(|m| m.to_ascii_lowercase().contains("bucket does not exist"))
    }

    /// The content and generation of `name`, `None` if there is no such object.
    async fn read(&self, name: &str) -> Result<Option<(Vec<u8>, Generation)>> {
        let what = format!("read {}", self.gs(name));
        for _ in 0..ATTEMPTS {
            let url = self.object_url(name);
            let (status, body) = self.send(self.http.get(&url), &what).await?;
            let generation = match status {
                200 => generation_of(&body).ok_or_else(|| {
                    Error::internal(format!(
                        "cannot {what}: the object's metadata has no generation"
                    ))
                })?,
                404 if Self::bucket_missing(&body) => {
                    return Err(self.failure(status, &body, &what))
                }
                404 => return Ok(None),
                _ => return Err(self.failure(status, &body, &what)),
            };
            let media = self.http.get(with_query(
                &url,
                &[("alt", "media"), ("ifGenerationMatch", generation.as_str())],
            ));
            match self.send(media, &what).await? {
                (200, data) => return Ok(Some((data, generation))),
                // Replaced or deleted between the two reads: look again.
                (412 | 404, _) => continue,
                (status, body) => return Err(self.failure(status, &body, &what)),
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("cannot {what}: it changed {ATTEMPTS} times while being read; try again"),
        ))
    }

    /// Upload `data` as `name` if its generation is `if_generation` (`0`: absent).
    async fn write(
        &self,
        name: &str,
        data: Vec<u8>,
        if_generation: &str,
    ) -> Result<Outcome<Generation>> {
        let what = format!("write {}", self.gs(name));
        let mut query = vec![
            ("uploadType", "media"),
            ("name", name),
            ("ifGenerationMatch", if_generation),
        ];
        if let Some(k) = &self.kms_key_name {
            query.push(("kmsKeyName", k.as_str()));
        }
        let url = format!(
            "{}/upload/storage/v1/b/{}/o",
            self.base,
            segment(&self.bucket)
        );
        let req = self
            .http
            .post(with_query(&url, &query))
            // Not `application/json`: gcp-storage-emulator parses such a media upload as
            // JSON and fails; GCS takes either.
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data);
        match self.send(req, &what).await? {
            (200, body) => generation_of(&body).map(Outcome::Done).ok_or_else(|| {
                Error::internal(format!(
                    "cannot {what}: the upload's answer has no generation"
                ))
            }),
            (412, _) => Ok(Outcome::ConditionNotMet),
            (status, body) => Err(self.failure(status, &body, &what)),
        }
    }

    /// Delete `name` if its generation is `generation`.
    async fn delete(&self, name: &str, generation: &Generation) -> Result<Outcome<()>> {
        let what = format!("delete {}", self.gs(name));
        let req = self.http.delete(with_query(
            &self.object_url(name),
            &[("ifGenerationMatch", generation.as_str())],
        ));
        match self.send(req, &what).await? {
            (200 | 204, _) => Ok(Outcome::Done(())),
            (412, _) => Ok(Outcome::ConditionNotMet),
            (404, body) if !Self::bucket_missing(&body) => Ok(Outcome::Missing),
            (status, body) => Err(self.failure(status, &body, &what)),
        }
    }

    /// The lock held now and its generation.
    async fn read_lock(&self) -> Result<Option<(LockInfo, Generation)>> {
        let name = self.lock_object();
        match self.read(&name).await? {
            None => Ok(None),
            Some((data, generation)) => {
                let info: LockInfo = serde_json::from_slice(&data).map_err(|e| {
                    Error::new(
                        ErrorKind::State,
                        format!(
                            "{} is not a lock this SDK wrote; if no run holds it, delete it \
                             (gcloud storage rm {})",
                            self.gs(&name),
                            self.gs(&name)
                        ),
                    )
                    .with_source(e)
                })?;
                Ok(Some((info, generation)))
            }
        }
    }

    /// Remove the lock with this id (unlock and break share it).
    async fn remove_lock(&self, id: &str) -> Result<LockInfo> {
        let location = self.location();
        let (held, generation) = match self.read_lock().await? {
            Some((h, g)) if h.id == id => (h, g),
            other => return Err(mismatch(&location, other.map(|(h, _)| h).as_ref(), id)),
        };
        match self.delete(&self.lock_object(), &generation).await? {
            Outcome::Done(()) => Ok(held),
            Outcome::ConditionNotMet => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the lock of the state at {location} changed while it was being removed; \
                     nothing was removed. Look at it again (gitpod-refarch state show)"
                ),
            )),
            Outcome::Missing => Err(mismatch(&location, None, id)),
        }
    }
}

/// The errors of unlock and break when the id does not match what is held.
fn mismatch(location: &str, held: Option<&LockInfo>, id: &str) -> Error {
    match held {
        None => Error::new(
            ErrorKind::NotFound,
            format!("the state at {location} is not locked (no lock {id} to remove)"),
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

/// The `generation` of an object resource.
fn generation_of(body: &[u8]) -> Option<Generation> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let g = v.get("generation")?;
    let s = match g {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| Generation::new(s))
}

/// An object or bucket name as one URL path segment.
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `url?k=v&...` with every key and value encoded.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", segment(k), segment(v)))
        .collect();
    format!("{url}?{}", query.join("&"))
}

/// `gs://BUCKET/OBJECT` → (bucket, object), checked against GCS's naming rules.
fn parse_url(url: &str) -> Result<(String, String)> {
    let usage = |why: &str| {
        Error::invalid_input(format!(
            "'{url}' is not a Cloud Storage state location: {why}. Use gs://BUCKET/OBJECT, \
             e.g. gs://my-gitpod-state/installations/gitpod.json"
        ))
    };
    let rest = url
        .strip_prefix("gs://")
        .ok_or_else(|| usage("it does not start with gs://"))?;
    let (bucket, object) = rest
        .split_once('/')
        .ok_or_else(|| usage("it names no object"))?;
    let ok_chars = bucket
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.'));
    let edge = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let max = if bucket.contains('.') { 222 } else { 63 };
    if !((3..=max).contains(&bucket.len())
        && ok_chars
        && edge(bucket.bytes().next())
        && edge(bucket.bytes().last())
        && !bucket.starts_with("goog"))
    {
        return Err(usage(&format!(
            "'{bucket}' is not a bucket name (3-63 lower-case letters, digits, '-', '_', '.', \
             starting and ending with a letter or digit)"
        )));
    }
    // Room for the lock object's `.lock` within GCS's 1024 bytes.
    if object.is_empty()
        || object.ends_with('/')
        || object.len() > 1024 - ".lock".len()
        || object.chars().any(char::is_control)
        || object.split('/').any(|s| s == "." || s == "..")
        || object.starts_with(".well-known/acme-challenge/")
    {
        return Err(usage(&format!(
            "'{object}' is not an object name (non-empty, at most 1019 bytes, no control \
             characters, no '.' or '..' segment, not ending with '/')"
        )));
    }
    Ok((bucket.to_string(), object.to_string()))
}

#[async_trait]
impl StateStore for GcsStateStore {
    fn location(&self) -> String {
        self.gs(&self.object)
    }

    async fn load(&self) -> Result<Option<Stored>> {
        let Some((data, generation)) = self.read(&self.object).await? else {
            return Ok(None);
        };
        let text = String::from_utf8(data).map_err(|_| {
            Error::new(
                ErrorKind::State,
                format!("the state at {} is not UTF-8 text", self.location()),
            )
        })?;
        let state = State::from_json(&text)?;
        Ok(Some(Stored::new(state, generation)))
    }

    async fn save(&self, state: &State, expected: Option<&Generation>) -> Result<Generation> {
        let if_generation = match expected {
            None => "0",
            // A generation GCS never hands out cannot be current.
            Some(g) if g.as_str().is_empty() || !g.as_str().bytes().all(|b| b.is_ascii_digit()) => {
                return Err(changed_error(&self.location()))
            }
            Some(g) => g.as_str(),
        };
        let data = state.to_json_exposed()?.into_bytes();
        match self.write(&self.object, data, if_generation).await? {
            Outcome::Done(g) => Ok(g),
            _ => Err(changed_error(&self.location())),
        }
    }

    async fn lock(&self, request: &LockRequest) -> Result<LockInfo> {
        let info = LockInfo::for_request(request);
        let data = serde_json::to_vec(&info)
            .map_err(|e| Error::internal("cannot encode the lock").with_source(e))?;
        for _ in 0..ATTEMPTS {
            match self.write(&self.lock_object(), data.clone(), "0").await? {
                Outcome::Done(_) => return Ok(info),
                _ => match self.read_lock().await? {
                    Some((held, _)) => return Err(locked_error(&self.location(), &held)),
                    // Released between the two calls: try again.
                    None => continue,
                },
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "the lock of the state at {} kept changing hands; try again",
                self.location()
            ),
        ))
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
    fn urls_are_parsed_and_checked() {
        assert_eq!(
            parse_url("gs://my-state/a/b.json").ok(),
            Some(("my-state".to_string(), "a/b.json".to_string()))
        );
        for bad in [
            "s3://b/k",
            "gs://",
            "gs://bucket",
            "gs://bucket/",
            "gs://Bucket/x",
            "gs://ab/x",
            "gs://-bucket/x",
            "gs://bucket/a/../b",
            "gs://bucket/dir/",
            "gs://bucket/x\ny",
            "/tmp/state",
        ] {
            let e = parse_url(bad).err();
            assert_eq!(e.map(|e| e.kind()), Some(ErrorKind::InvalidInput), "{bad}");
        }
        let long = format!("gs://bucket/{}", "x".repeat(1020));
        assert!(parse_url(&long).is_err());
    }

    #[test]
    fn names_are_one_segment() {
        assert_eq!(segment("a/b c.json"), "a%2Fb%20c.json");
    }

    #[test]
    fn debug_shows_no_credentials() {
        let key = r#"{"type":"service_account","private_key":"SEKRIT"}"#;
        let c = GcsStoreConfig::new().credentials(GcpCredentials::ServiceAccountKey(
            gitpod_refarch::Secret::new(key.to_string()),
        ));
        assert!(!format!("{c:?}").contains("SEKRIT"));
    }
}
