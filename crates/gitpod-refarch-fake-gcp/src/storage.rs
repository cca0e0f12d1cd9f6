//! A strict subset of the Cloud Storage **JSON API** (`storage.v1`): buckets and
//! whole objects with generation preconditions, as GCS answers them.
//!
//! Served:
//!
//! - `storage.buckets.insert` `POST /storage/v1/b?project=P` (body `{"name": ...}`),
//!   `storage.buckets.get` `GET /storage/v1/b/B`, `storage.buckets.delete`
//!   `DELETE /storage/v1/b/B` (only when empty, 409 otherwise).
//! - `storage.objects.insert` `POST /upload/storage/v1/b/B/o?uploadType=media&name=N`
//!   (raw body) or `uploadType=multipart` (`multipart/related`: the JSON metadata, then
//!   the content); `kmsKeyName` is stored and echoed.
//! - `storage.objects.get` `GET /storage/v1/b/B/o/N` (metadata; `?alt=media`: the
//!   content, also at `GET /download/storage/v1/b/B/o/N?alt=media`, with GCS's
//!   `x-goog-generation`, `x-goog-metageneration`, `x-goog-hash` headers).
//! - `storage.objects.delete` `DELETE /storage/v1/b/B/o/N`.
//!
//! Object names are one URL-encoded path segment (`a%2Fb` is the object `a/b`).
//! Every object call honours `ifGenerationMatch` (`0`: only if there is no live
//! object), `ifGenerationNotMatch`, `ifMetagenerationMatch` and
//! `ifMetagenerationNotMatch`: a failed condition is 412 `conditionNotMet` (on a read,
//! a failed `...NotMatch` is 304 Not Modified, as GCS does) and nothing changes. A
//! missing bucket or object is 404 `notFound` worded as GCS words it. Generations are
//! strictly increasing across the whole fake (microseconds since the epoch, bumped
//! past the last one handed out); an object's metageneration starts at 1 (the fake has
//! no metadata patch, so it stays there). Errors have GCS's JSON API shape:
//! `{"error": {"code", "message", "errors": [{"message", "domain", "reason", ...}]}}`.
//!
//! Not served: listing, resumable uploads, versioned buckets, ACLs, metadata patches,
//! compose and copy. Like the rest of the fake there is no authentication. Calls are
//! recorded ([`crate::FakeGcp::calls`]) without object contents: an upload's recorded
//! request body is its metadata (or nothing), a download's response body `null`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};
use serde_json::{json, Value};

use crate::routes::{parse_query, percent_decode};
use crate::state::{b64, now_rfc3339};
use crate::{Call, CallKind, Shared};

/// The buckets and their objects.
#[derive(Default)]
pub(crate) struct Storage {
    buckets: BTreeMap<String, Bucket>,
    /// The last generation handed out.
    last_generation: i64,
}

struct Bucket {
    meta: Value,
    objects: BTreeMap<String, Object>,
}

struct Object {
    data: Vec<u8>,
    generation: i64,
    metageneration: i64,
    meta: Value,
}

/// An answer: status, JSON body or raw bytes, extra headers.
struct Answer {
    status: u16,
    json: Value,
    media: Option<(Vec<u8>, String)>,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, json: Value) -> Self {
        Answer {
            status,
            json,
            media: None,
            headers: Vec::new(),
        }
    }
}

fn error(code: u16, reason: &str, message: &str) -> Answer {
    Answer::json(
        code,
        json!({"error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }}),
    )
}

fn condition_not_met() -> Answer {
    let message = "At least one of the pre-conditions you specified did not hold.";
    Answer::json(
        412,
        json!({"error": {
            "code": 412,
            "message": message,
            "errors": [{
                "message": message,
                "domain": "global",
                "reason": "conditionNotMet",
                "locationType": "header",
                "location": "If-Match",
            }],
        }}),
    )
}

fn no_bucket() -> Answer {
    error(404, "notFound", "The specified bucket does not exist.")
}

fn no_object(bucket: &str, name: &str) -> Answer {
    error(404, "notFound", &format!("No such object: {bucket}/{name}"))
}

/// Which storage method a request is, with its bucket and object (decoded).
fn route(verb: &Method, path: &str) -> Option<(&'static str, String, String)> {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let name = |from: usize| percent_decode(&seg[from..].join("/"));
    match (verb.as_str(), seg.as_slice()) {
        ("POST", ["storage", "v1", "b"]) => {
            Some(("storage.buckets.insert", String::new(), String::new()))
        }
        ("GET", ["storage", "v1", "b", b]) => {
            Some(("storage.buckets.get", percent_decode(b), String::new()))
        }
        ("DELETE", ["storage", "v1", "b", b]) => {
            Some(("storage.buckets.delete", percent_decode(b), String::new()))
        }
        ("POST", ["upload", "storage", "v1", "b", b, "o"]) => {
            Some(("storage.objects.insert", percent_decode(b), String::new()))
        }
        ("GET", ["storage", "v1", "b", b, "o", _, ..]) => {
            Some(("storage.objects.get", percent_decode(b), name(5)))
        }
        ("GET", ["download", "storage", "v1", "b", b, "o", _, ..]) => {
            Some(("storage.objects.get", percent_decode(b), name(6)))
        }
        ("DELETE", ["storage", "v1", "b", b, "o", _, ..]) => {
            Some(("storage.objects.delete", percent_decode(b), name(5)))
        }
        _ => None,
    }
}

/// True for the paths this module owns (`/storage/v1/`, `/upload/storage/v1/`,
/// `/download/storage/v1/`).
pub(crate) fn owns(path: &str) -> bool {
    [
        "/storage/v1/",
        "/upload/storage/v1/",
        "/download/storage/v1/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
        || path == "/storage/v1/b"
}

/// Serve one storage request and record it.
pub(crate) fn serve(
    shared: &Shared,
    verb: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let query = parse_query(query.unwrap_or(""));
    let (method, kind, answer, recorded_request) = match route(verb, path) {
        None => (
            "unknown",
            CallKind::Read,
            error(
                404,
                "notFound",
                &format!("The requested URL {path} was not found on this server (fake-gcp serves only the storage methods in src/storage.rs)."),
            ),
            None,
        ),
        Some((method, bucket, object)) => {
            let q = Query(&query);
            let mut storage = shared.storage.lock().unwrap_or_else(|e| e.into_inner());
            let (answer, recorded) = match method {
                "storage.buckets.insert" => {
                    let project = q.get("project").map(str::to_string);
                    let known = project.as_deref().map(|p| {
                        let st = shared.lock();
                        st.project_id(p).map(|id| (id.clone(), st.project_number(&id)))
                    });
                    let parsed = serde_json::from_slice::<Value>(body).ok();
                    let a = insert_bucket(&mut storage, project.as_deref(), known.flatten(), parsed.as_ref());
                    (a, parsed)
                }
                "storage.buckets.get" => (
                    match storage.buckets.get(&bucket) {
                        Some(b) => Answer::json(200, b.meta.clone()),
                        None => no_bucket(),
                    },
                    None,
                ),
                "storage.buckets.delete" => (delete_bucket(&mut storage, &bucket), None),
                "storage.objects.insert" => insert_object(&mut storage, &bucket, &q, headers, body),
                "storage.objects.get" => (get_object(&storage, &bucket, &object, &q), None),
                _ => (delete_object(&mut storage, &bucket, &object, &q), None),
            };
            let kind = if method.ends_with(".get") {
                CallKind::Read
            } else {
                CallKind::Mutate
            };
            (method, kind, answer, recorded)
        }
    };
    record(
        shared,
        method,
        kind,
        verb,
        path,
        query,
        recorded_request,
        &answer,
    );
    respond(answer)
}

struct Query<'a>(&'a [(String, String)]);

impl Query<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// An int64 precondition parameter: `Err` with GCS's 400 when it is not a number.
    fn int(&self, name: &str) -> Result<Option<i64>, Answer> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                error(
                    400,
                    "invalid",
                    &format!("Invalid value for {name}: {v:?} is not an integer."),
                )
            }),
        }
    }
}

/// The four preconditions.
struct Conditions {
    gen_match: Option<i64>,
    gen_not_match: Option<i64>,
    meta_match: Option<i64>,
    meta_not_match: Option<i64>,
}

impl Conditions {
    fn parse(q: &Query<'_>) -> Result<Self, Answer> {
        Ok(Conditions {
            gen_match: q.int("ifGenerationMatch")?,
            gen_not_match: q.int("ifGenerationNotMatch")?,
            meta_match: q.int("ifMetagenerationMatch")?,
            meta_not_match: q.int("ifMetagenerationNotMatch")?,
        })
    }

    /// Check against the live object (`None`: none). `read`: a failed `NotMatch` is
    /// 304 rather than 412.
    fn check(&self, live: Option<(i64, i64)>, read: bool) -> Result<(), Answer> {
        let not_modified = || {
            if read {
                Answer::json(304, Value::Null)
            } else {
                condition_not_met()
            }
        };
        match live {
            None => {
                // Only a write can meet a condition on an absent object: generation 0.
                if self.gen_match.is_some_and(|g| g != 0) || self.meta_match.is_some() {
                    return Err(condition_not_met());
                }
            }
            Some((generation, metageneration)) => {
                if self.gen_match.is_some_and(|g| g != generation) {
                    return Err(condition_not_met());
                }
                if self.meta_match.is_some_and(|m| m != metageneration) {
                    return Err(condition_not_met());
                }
                if self.gen_not_match == Some(generation) {
                    return Err(not_modified());
                }
                if self.meta_not_match == Some(metageneration) {
                    return Err(not_modified());
                }
            }
        }
        Ok(())
    }
}

fn valid_bucket_name(name: &str) -> bool {
    let ok_chars = name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.'));
    let edge = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let max = if name.contains('.') { 222 } else { 63 };
    (3..=max).contains(&name.len())
        && ok_chars
        && edge(name.bytes().next())
        && edge(name.bytes().last())
        && !name.starts_with("goog")
        && !name.contains("..")
}

fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1024
        && !name.contains(['\r', '\n'])
        && name != "."
        && name != ".."
        && !name.starts_with(".well-known/acme-challenge/")
}

fn insert_bucket(
    storage: &mut Storage,
    project: Option<&str>,
    known: Option<(String, u64)>,
    body: Option<&Value>,
) -> Answer {
    let Some(project) = project else {
        return error(400, "required", "Required parameter: project");
    };
    let Some((_, number)) = known else {
        return error(400, "invalid", &format!("Unknown project id: {project}"));
    };
    let Some(name) = body.and_then(|b| b.get("name")).and_then(Value::as_str) else {
        return error(400, "required", "Required");
    };
    if !valid_bucket_name(name) {
        return error(400, "invalid", &format!("Invalid bucket name: '{name}'"));
    }
    if storage.buckets.contains_key(name) {
        return error(
            409,
            "conflict",
            "Your previous request to create the named bucket succeeded and you already own it.",
        );
    }
    let now = now_rfc3339();
    let location = body
        .and_then(|b| b.get("location"))
        .and_then(Value::as_str)
        .unwrap_or("US")
        .to_ascii_uppercase();
    let location_type = if ["US", "EU", "ASIA"].contains(&location.as_str()) {
        "multi-region"
    } else {
        "region"
    };
    let meta = json!({
        "kind": "storage#bucket",
        "selfLink": format!("https://www.googleapis.com/storage/v1/b/{name}"),
        "id": name,
        "name": name,
        "projectNumber": number.to_string(),
        "generation": next_generation(storage).to_string(),
        "metageneration": "1",
        "location": location,
        "locationType": location_type,
        "storageClass": "STANDARD",
        "etag": "CAE=",
        "timeCreated": now,
        "updated": now,
        "iamConfiguration": {
            "uniformBucketLevelAccess": {"enabled": true},
            "publicAccessPrevention": "inherited",
        },
    });
    storage.buckets.insert(
        name.to_string(),
        Bucket {
            meta: meta.clone(),
            objects: BTreeMap::new(),
        },
    );
    Answer::json(200, meta)
}

fn delete_bucket(storage: &mut Storage, bucket: &str) -> Answer {
    match storage.buckets.get(bucket) {
        None => no_bucket(),
        Some(b) if !b.objects.is_empty() => error(
            409,
            "conflict",
            "The bucket you tried to delete is not empty.",
        ),
        Some(_) => {
            storage.buckets.remove(bucket);
            Answer::json(204, Value::Null)
        }
    }
}

/// A new generation: microseconds since the epoch, past every earlier one.
fn next_generation(storage: &mut Storage) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    storage.last_generation = now.max(storage.last_generation + 1);
    storage.last_generation
}

/// CRC32C (Castagnoli) of `data`, as GCS reports it: base64 of the big-endian value.
fn crc32c(data: &[u8]) -> String {
    const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    b64(CASTAGNOLI.checksum(data).to_be_bytes())
}

fn md5_hash(data: &[u8]) -> String {
    b64(Md5::digest(data))
}

/// The media and metadata of an upload: `(name from metadata, content type, kmsKeyName, content)`.
type Upload = (
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<u8>,
    Option<Value>,
);

fn parse_upload(q: &Query<'_>, headers: &HeaderMap, body: &Bytes) -> Result<Upload, Answer> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match q.get("uploadType") {
        Some("media") => Ok((
            None,
            (!content_type.is_empty()).then_some(content_type),
            None,
            body.to_vec(),
            None,
        )),
        Some("multipart") => {
            let boundary = content_type
                .split(';')
                .map(str::trim)
                .find_map(|p| p.strip_prefix("boundary="))
                .map(|b| b.trim_matches('"').to_string())
                .filter(|b| content_type.starts_with("multipart/related") && !b.is_empty())
                .ok_or_else(|| {
                    error(
                        400,
                        "invalid",
                        "Content-Type must be multipart/related with a boundary for uploadType=multipart.",
                    )
                })?;
            let parts = multipart_parts(body, &boundary)
                .ok_or_else(|| error(400, "invalid", "Malformed multipart body."))?;
            let [(_, meta), (media_headers, media)] = parts.as_slice() else {
                return Err(error(
                    400,
                    "invalid",
                    "A multipart upload has exactly two parts: the metadata and the media.",
                ));
            };
            let meta: Value = serde_json::from_slice(meta).map_err(|e| {
                error(
                    400,
                    "parseError",
                    &format!("Invalid JSON payload received. {e}"),
                )
            })?;
            let name = meta.get("name").and_then(Value::as_str).map(str::to_string);
            let media_type = meta
                .get("contentType")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    media_headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                        .map(|(_, v)| v.clone())
                });
            let kms = meta
                .get("kmsKeyName")
                .and_then(Value::as_str)
                .map(str::to_string);
            Ok((name, media_type, kms, media.clone(), Some(meta)))
        }
        Some(other) => Err(error(
            400,
            "invalid",
            &format!("uploadType={other} is not served by the fake (media and multipart are)."),
        )),
        None => Err(error(
            400,
            "invalid",
            "Upload requests must include an uploadType URL parameter.",
        )),
    }
}

/// The parts of a `multipart/related` body: (headers, content) each.
type Part = (Vec<(String, String)>, Vec<u8>);

fn multipart_parts(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let find = |from: usize| {
        body.get(from..)?
            .windows(d.len())
            .position(|w| w == d)
            .map(|p| p + from)
    };
    let mut at = find(0)? + d.len();
    let mut parts = Vec::new();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Some(parts);
        }
        let start = at
            + if body.get(at..at + 2) == Some(b"\r\n") {
                2
            } else {
                1
            };
        let next = find(start)?;
        let mut end = next;
        if body.get(end.saturating_sub(2)..end) == Some(b"\r\n") {
            end -= 2;
        } else if body.get(end.saturating_sub(1)..end) == Some(b"\n") {
            end -= 1;
        }
        let part = body.get(start..end)?;
        let (head, content) = match part.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(p) => (&part[..p], &part[p + 4..]),
            None => {
                let p = part.windows(2).position(|w| w == b"\n\n")?;
                (&part[..p], &part[p + 2..])
            }
        };
        let headers = String::from_utf8_lossy(head)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        parts.push((headers, content.to_vec()));
        at = next + d.len();
    }
}

fn insert_object(
    storage: &mut Storage,
    bucket: &str,
    q: &Query<'_>,
    headers: &HeaderMap,
    body: &Bytes,
) -> (Answer, Option<Value>) {
    let (meta_name, content_type, meta_kms, data, recorded) = match parse_upload(q, headers, body) {
        Ok(u) => u,
        Err(a) => return (a, None),
    };
    let conditions = match Conditions::parse(q) {
        Ok(c) => c,
        Err(a) => return (a, recorded),
    };
    let Some(name) = q.get("name").map(str::to_string).or(meta_name) else {
        return (error(400, "required", "Required"), recorded);
    };
    if !valid_object_name(&name) {
        return (
            error(
                400,
                "invalid",
                &format!("The specified object name is not valid: {name:?}"),
            ),
            recorded,
        );
    }
    if !storage.buckets.contains_key(bucket) {
        return (no_bucket(), recorded);
    }
    // Checksums the client sent in the metadata must match the content (GCS: 400).
    let sent = |field: &str| {
        recorded
            .as_ref()
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    for (field, label, computed) in [
        ("crc32c", "CRC32C", crc32c(&data)),
        ("md5Hash", "MD5", md5_hash(&data)),
    ] {
        if let Some(given) = sent(field) {
            if given != computed {
                let message = format!(
                    "Provided {label} \"{given}\" doesn't match calculated {label} \"{computed}\"."
                );
                return (error(400, "invalid", &message), recorded);
            }
        }
    }
    let live = storage
        .buckets
        .get(bucket)
        .and_then(|b| b.objects.get(&name))
        .map(|o| (o.generation, o.metageneration));
    if let Err(a) = conditions.check(live, false) {
        return (a, recorded);
    }
    let generation = next_generation(storage);
    // Links point at the server that was asked, as GCS's point at itself.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(
            || "https://storage.googleapis.com".to_string(),
            |h| format!("http://{h}"),
        );
    let kms = q.get("kmsKeyName").map(str::to_string).or(meta_kms);
    let now = now_rfc3339();
    let encoded = segment(&name);
    let mut meta = json!({
        "kind": "storage#object",
        "id": format!("{bucket}/{name}/{generation}"),
        "selfLink": format!("{host}/storage/v1/b/{bucket}/o/{encoded}"),
        "mediaLink": format!("{host}/download/storage/v1/b/{bucket}/o/{encoded}?generation={generation}&alt=media"),
        "name": name,
        "bucket": bucket,
        "generation": generation.to_string(),
        "metageneration": "1",
        "contentType": content_type.unwrap_or_else(|| "application/octet-stream".to_string()),
        "storageClass": "STANDARD",
        "size": data.len().to_string(),
        "md5Hash": md5_hash(&data),
        "crc32c": crc32c(&data),
        "etag": b64(format!("{generation}/1")),
        "timeCreated": now,
        "updated": now,
        "timeStorageClassUpdated": now,
        "timeFinalized": now,
    });
    if let Some(k) = kms {
        meta["kmsKeyName"] = Value::String(k);
    }
    if let Some(b) = storage.buckets.get_mut(bucket) {
        b.objects.insert(
            name,
            Object {
                data,
                generation,
                metageneration: 1,
                meta: meta.clone(),
            },
        );
    }
    (Answer::json(200, meta), recorded)
}

fn get_object(storage: &Storage, bucket: &str, name: &str, q: &Query<'_>) -> Answer {
    let conditions = match Conditions::parse(q) {
        Ok(c) => c,
        Err(a) => return a,
    };
    let Some(b) = storage.buckets.get(bucket) else {
        return no_bucket();
    };
    let Some(o) = b.objects.get(name) else {
        return no_object(bucket, name);
    };
    if let Some(g) = q.int("generation").ok().flatten() {
        if g != o.generation {
            return no_object(bucket, name);
        }
    }
    if let Err(a) = conditions.check(Some((o.generation, o.metageneration)), true) {
        return a;
    }
    if q.get("alt") != Some("media") {
        return Answer::json(200, o.meta.clone());
    }
    let content_type = o
        .meta
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or("application/octet-stream")
        .to_string();
    Answer {
        status: 200,
        json: Value::Null,
        media: Some((o.data.clone(), content_type)),
        headers: vec![
            ("x-goog-generation", o.generation.to_string()),
            ("x-goog-metageneration", o.metageneration.to_string()),
            (
                "x-goog-hash",
                format!("crc32c={},md5={}", crc32c(&o.data), md5_hash(&o.data)),
            ),
            ("x-goog-stored-content-length", o.data.len().to_string()),
            ("x-goog-stored-content-encoding", "identity".to_string()),
            ("x-goog-storage-class", "STANDARD".to_string()),
            ("etag", format!("\"{}\"", hex_md5(&o.data))),
        ],
    }
}

fn hex_md5(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn delete_object(storage: &mut Storage, bucket: &str, name: &str, q: &Query<'_>) -> Answer {
    let conditions = match Conditions::parse(q) {
        Ok(c) => c,
        Err(a) => return a,
    };
    let Some(b) = storage.buckets.get_mut(bucket) else {
        return no_bucket();
    };
    let Some(o) = b.objects.get(name) else {
        return no_object(bucket, name);
    };
    if let Err(a) = conditions.check(Some((o.generation, o.metageneration)), false) {
        return a;
    }
    b.objects.remove(name);
    Answer::json(204, Value::Null)
}

/// An object name as one URL path segment.
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

#[allow(clippy::too_many_arguments)]
fn record(
    shared: &Shared,
    method: &str,
    kind: CallKind,
    verb: &Method,
    path: &str,
    query: Vec<(String, String)>,
    request_body: Option<Value>,
    answer: &Answer,
) {
    let mut st = shared.lock();
    match kind {
        CallKind::Read => st.counts.reads += 1,
        CallKind::Mutate => st.counts.mutating += 1,
        CallKind::Poll => st.counts.polls += 1,
    }
    if answer.status >= 300 {
        st.counts.errors += 1;
    }
    *st.counts.per_method.entry(method.to_string()).or_insert(0) += 1;
    st.calls.push(Call {
        method: method.to_string(),
        kind,
        status: answer.status,
        http_method: verb.to_string(),
        path: path.to_string(),
        query,
        request_body,
        response_body: answer.json.clone(),
        fault: false,
    });
}

fn respond(answer: Answer) -> Response {
    let code = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match answer.media {
        Some((data, content_type)) => {
            let mut r = (code, data).into_response();
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        None if answer.json.is_null() => code.into_response(),
        None => (
            code,
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            answer.json.to_string(),
        )
            .into_response(),
    };
    for (k, v) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            response.headers_mut().append(k, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_gcs() {
        // GCS documents these for the string "hello world" (no newline).
        assert_eq!(crc32c(b"hello world"), "yZRlqg==");
        assert_eq!(md5_hash(b"hello world"), "XrY7u+Ae7tCTyyK7j1rNww==");
    }

    #[test]
    fn multipart_bodies_split() {
        let body = b"--xx\r\ncontent-type: application/json\r\n\r\n{\"name\":\"a\"}\r\n--xx\r\ncontent-type: text/plain\r\n\r\nhi\r\nthere\r\n--xx--\r\n";
        let parts = multipart_parts(body, "xx").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1, b"{\"name\":\"a\"}");
        assert_eq!(parts[1].1, b"hi\r\nthere");
        assert_eq!(parts[1].0[0].1, "text/plain");
    }

    #[test]
    fn bucket_names_follow_gcs_rules() {
        assert!(valid_bucket_name("my-state_1"));
        assert!(!valid_bucket_name("My-State"));
        assert!(!valid_bucket_name("ab"));
        assert!(!valid_bucket_name("-ab"));
        assert!(!valid_bucket_name("goog-x"));
    }
}
