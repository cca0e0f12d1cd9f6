//! The storage checks of `verify`, on what the installer renders: the
//! `objectStorage.s3` block, `metadata.region`, and the keys of the secret it names
//! (`storage-s3`: `accessKeyId`, `secretAccessKey`). Whichever provider made them
//! (S3 on AWS, an S3-compatible server), these are the credentials Gitpod gets.
//!
//! - `storage.bucket`: `HeadBucket` with Gitpod's key.
//! - `storage.put-get-delete`: put a small object under `gitpod-refarch-verify/`,
//!   read it back equal, find it by listing, delete it.

use std::time::Instant;

use gitpod_refarch::verify::{Check, Part, VerifyContext};
use gitpod_refarch::Secret;
use serde_json::Value;

use super::client::{parse_endpoint, s3_client, ClientSettings, Endpoint, Failure};
use crate::reach::Reach;

const BUCKET: &str = "storage.bucket";
const PUT_GET_DELETE: &str = "storage.put-get-delete";
/// The prefix of the probe objects.
const PREFIX: &str = "gitpod-refarch-verify/";

/// What the bundle says Gitpod will use.
struct Target {
    endpoint: Endpoint,
    bucket: String,
    region: String,
    access_key_id: String,
    secret_access_key: Secret,
    secret_name: String,
}

/// Both checks skipped with the same reason.
fn skip_both(reason: &str) -> Vec<Check> {
    vec![
        Check::skipped(BUCKET, Part::Storage, reason),
        Check::skipped(PUT_GET_DELETE, Part::Storage, reason),
    ]
}

/// `storage.bucket` failed on the bundle itself; the probe does not run.
fn bundle_fail(summary: String, fix: &str) -> Vec<Check> {
    vec![
        Check::fail(
            BUCKET,
            Part::Storage,
            summary,
            "Gitpod's installer would get this config",
        )
        .fix(fix),
        Check::skipped(PUT_GET_DELETE, Part::Storage, "storage.bucket did not pass"),
    ]
}

/// Read the target from the bundle, or the checks to report instead.
fn target(ctx: &VerifyContext<'_>) -> std::result::Result<Target, Vec<Check>> {
    let config = &ctx.bundle.config;
    let os = &config["objectStorage"];
    let s3 = match os.get("s3") {
        Some(s3 @ Value::Object(_)) => s3,
        _ => {
            let reason = if os["inCluster"] == Value::Bool(true) {
                "object storage is Gitpod's in-cluster MinIO: there is nothing to reach from here"
            } else if os.get("cloudStorage").is_some() {
                "object storage is Google Cloud Storage: the S3 checks do not apply"
            } else if os.get("azure").is_some() {
                "object storage is Azure Blob: the S3 checks do not apply"
            } else {
                return Err(bundle_fail(
                    "the installer config has no objectStorage.s3, cloudStorage, azure or inCluster".into(),
                    "re-run apply so the installer config is rendered from the outputs",
                ));
            };
            return Err(skip_both(reason));
        }
    };
    let Some(raw_endpoint) = s3["endpoint"].as_str() else {
        return Err(bundle_fail(
            "objectStorage.s3.endpoint is missing".into(),
            "re-run apply so the installer config is rendered from the outputs",
        ));
    };
    let Some(bucket) = s3["bucket"].as_str() else {
        return Err(skip_both(
            "objectStorage.s3 has no bucket (one bucket per user): only single-bucket mode is checked",
        ));
    };
    let insecure = s3["allowInsecureConnection"].as_bool().unwrap_or(false);
    let scheme = if insecure { "http" } else { "https" };
    let endpoint = match parse_endpoint(&format!("{scheme}://{raw_endpoint}")) {
        Ok(e) => e,
        Err(e) => {
            return Err(bundle_fail(
                format!(
                    "objectStorage.s3.endpoint '{raw_endpoint}' is not host[:port]: {}",
                    e.message()
                ),
                "objectStorage.s3.endpoint must be host[:port] without a scheme (allowInsecureConnection says http)",
            ))
        }
    };
    let region = config["metadata"]["region"]
        .as_str()
        .filter(|r| !r.is_empty())
        .unwrap_or("us-east-1")
        .to_string();
    let secret_name = s3["credentials"]["name"]
        .as_str()
        .unwrap_or("storage-s3")
        .to_string();
    let Some(secret) = ctx.bundle.secret(&secret_name) else {
        return Err(bundle_fail(
            format!("the secret {secret_name} named by objectStorage.s3.credentials is not in the bundle"),
            "re-run apply so the secrets are rendered from the outputs",
        ));
    };
    let (Some(id), Some(key)) = (
        secret.data.get("accessKeyId"),
        secret.data.get("secretAccessKey"),
    ) else {
        return Err(bundle_fail(
            format!("the secret {secret_name} lacks accessKeyId or secretAccessKey"),
            "re-run apply so the secrets are rendered with the keys Gitpod's installer requires",
        ));
    };
    Ok(Target {
        endpoint,
        bucket: bucket.to_string(),
        region,
        access_key_id: id.expose().clone(),
        secret_access_key: key.clone(),
        secret_name,
    })
}

pub(crate) async fn checks(ctx: &VerifyContext<'_>, reach: &Reach) -> Vec<Check> {
    let t = match target(ctx) {
        Ok(t) => t,
        Err(checks) => return checks,
    };
    // AWS itself: virtual-hosted style; any other server: path style.
    let path_style = !t
        .endpoint
        .host_port
        .split(':')
        .next()
        .unwrap_or_default()
        .ends_with(".amazonaws.com");
    let s3 = s3_client(ClientSettings {
        url: &t.endpoint.url,
        region: &t.region,
        path_style,
        access_key_id: &t.access_key_id,
        secret_access_key: &t.secret_access_key,
        timeout: reach.timeout,
        max_attempts: 2,
        counter: None,
    });
    let start = Instant::now();
    let bucket = bucket_check(&t, &s3, reach).await.took(start.elapsed());
    if !bucket.passed() {
        return vec![
            bucket,
            Check::skipped(PUT_GET_DELETE, Part::Storage, "storage.bucket did not pass"),
        ];
    }
    let start = Instant::now();
    let probe = probe_check(&t, &s3, reach).await.took(start.elapsed());
    vec![bucket, probe]
}

fn where_(t: &Target) -> String {
    format!("{} on {}", t.bucket, t.endpoint.url)
}

async fn bucket_check(t: &Target, s3: &aws_sdk_s3::Client, reach: &Reach) -> Check {
    let b = &t.bucket;
    let key = &t.access_key_id;
    let e = match s3.head_bucket().bucket(b).send().await {
        Ok(_) => {
            return Check::pass(
                BUCKET,
                Part::Storage,
                format!(
                    "bucket {} answers to the key in {} (access key {key})",
                    where_(t),
                    t.secret_name
                ),
            )
        }
        Err(e) => Failure::of(&e),
    };
    match e.status() {
        None => reach.unreachable(
            BUCKET,
            Part::Storage,
            &format!("the S3 endpoint {}", t.endpoint.url),
            e.describe(),
        ),
        Some(404) => Check::fail(
            BUCKET,
            Part::Storage,
            format!("bucket {} does not exist", where_(t)),
            "Gitpod stores workspace backups in this bucket (single-bucket mode)",
        )
        .fix(format!(
            "create bucket {b} on {}, or run apply with storage.createBucket: true",
            t.endpoint.url
        )),
        Some(403) => {
            // HEAD has no body: one list tells a refused key from a missing grant.
            let diag = match s3.list_objects_v2().bucket(b).max_keys(1).send().await {
                Ok(_) => None,
                Err(e) => Some(Failure::of(&e)),
            };
            match diag {
                Some(d) if d.status().is_none() => reach.unreachable(
                    BUCKET,
                    Part::Storage,
                    &format!("the S3 endpoint {}", t.endpoint.url),
                    d.describe(),
                ),
                Some(d) if d.is_credentials() => Check::fail(
                    BUCKET,
                    Part::Storage,
                    format!(
                        "{} does not accept the access key {key} in {} ({})",
                        t.endpoint.url,
                        t.secret_name,
                        d.describe()
                    ),
                    "Gitpod would fail every workspace backup and restore",
                )
                .fix(format!(
                    "put a valid access key id and secret in {} (correct storage.accessKeyId / storage.secretAccessKey and re-run apply)",
                    t.secret_name
                )),
                d => Check::fail(
                    BUCKET,
                    Part::Storage,
                    format!(
                        "the access key {key} in {} may not read bucket {} ({})",
                        t.secret_name,
                        where_(t),
                        d.map(|d| d.describe()).unwrap_or_else(|| "403".into())
                    ),
                    "Gitpod lists, reads and writes workspace backups in this bucket",
                )
                .fix(format!(
                    "grant the key s3:ListBucket on bucket {b} (and s3:PutObject, GetObject, DeleteObject on its objects)"
                )),
            }
        }
        Some(_) => Check::fail(
            BUCKET,
            Part::Storage,
            format!("HeadBucket on {} failed: {}", where_(t), e.describe()),
            "Gitpod stores workspace backups in this bucket (single-bucket mode)",
        )
        .fix("check the endpoint, region and bucket in the installer config"),
    }
}

/// A failed probe step: unreachable per `reach`, else a failure with `fix`.
fn step_fail(
    t: &Target,
    reach: &Reach,
    step: &str,
    f: &Failure,
    leftover: Option<&str>,
    fix: String,
) -> Check {
    if f.status().is_none() {
        return reach.unreachable(
            PUT_GET_DELETE,
            Part::Storage,
            &format!("the S3 endpoint {}", t.endpoint.url),
            f.describe(),
        );
    }
    let mut summary = format!("{step} in bucket {} failed: {}", where_(t), f.describe());
    if let Some(k) = leftover {
        summary.push_str(&format!("; the probe object {k} may be left behind"));
    }
    Check::fail(
        PUT_GET_DELETE,
        Part::Storage,
        summary,
        "Gitpod writes, reads, lists and deletes workspace backups with this key",
    )
    .fix(fix)
}

fn write_fix(bucket: &str) -> String {
    format!(
        "the key in storage-s3 cannot write to bucket {bucket}: grant s3:PutObject, GetObject, DeleteObject, ListBucket on it"
    )
}

async fn probe_check(t: &Target, s3: &aws_sdk_s3::Client, reach: &Reach) -> Check {
    let b = &t.bucket;
    let nonce: u64 = rand::random();
    let key = format!("{PREFIX}{nonce:016x}");
    let body = format!("gitpod-refarch verify probe {nonce:016x}\n").into_bytes();

    if let Err(e) = s3
        .put_object()
        .bucket(b)
        .key(&key)
        .body(body.clone().into())
        .content_type("text/plain")
        .send()
        .await
    {
        let f = Failure::of(&e);
        return step_fail(
            t,
            reach,
            &format!("PutObject {key}"),
            &f,
            None,
            write_fix(b),
        );
    }

    // Read back, then list; whatever happens, try to delete.
    let mut problem: Option<Check> = None;
    match s3.get_object().bucket(b).key(&key).send().await {
        Ok(out) => match out.body.collect().await.map(|d| d.to_vec()) {
            Ok(data) if data == body => {}
            Ok(_) => {
                problem = Some(
                    Check::fail(
                        PUT_GET_DELETE,
                        Part::Storage,
                        format!("GetObject {key} in bucket {} returned other bytes than were put", where_(t)),
                        "Gitpod would restore corrupted workspace backups",
                    )
                    .fix("check what sits between here and the endpoint (a proxy or gateway rewriting objects)"),
                )
            }
            Err(e) => {
                problem = Some(reach.unreachable(
                    PUT_GET_DELETE,
                    Part::Storage,
                    &format!("the S3 endpoint {}", t.endpoint.url),
                    e,
                ))
            }
        },
        Err(e) => {
            problem = Some(step_fail(
                t,
                reach,
                &format!("GetObject {key}"),
                &Failure::of(&e),
                None,
                format!("grant the key in storage-s3 s3:GetObject on bucket {b}"),
            ))
        }
    }
    if problem.is_none() {
        // The prefix without its '/': moto 5.2.1 miscomputes the signature of a
        // query value holding an encoded '/' (SignatureDoesNotMatch), real S3 does not.
        let list_prefix = PREFIX.trim_end_matches('/');
        match s3
            .list_objects_v2()
            .bucket(b)
            .prefix(list_prefix)
            .send()
            .await
        {
            Ok(out) if out.contents().iter().any(|o| o.key() == Some(key.as_str())) => {}
            Ok(_) => {
                problem = Some(
                    Check::fail(
                        PUT_GET_DELETE,
                        Part::Storage,
                        format!(
                            "ListObjectsV2 in bucket {} does not show {key} just written",
                            where_(t)
                        ),
                        "Gitpod finds workspace backups by listing",
                    )
                    .fix("use a server with read-after-write consistent listings"),
                )
            }
            Err(e) => {
                problem = Some(step_fail(
                    t,
                    reach,
                    &format!("ListObjectsV2 {PREFIX}"),
                    &Failure::of(&e),
                    None,
                    format!("grant the key in storage-s3 s3:ListBucket on bucket {b}"),
                ))
            }
        }
    }
    let deleted = s3.delete_object().bucket(b).key(&key).send().await;
    if let Some(p) = problem {
        let p = match &deleted {
            Ok(_) => p,
            Err(_) => {
                let mut p = p;
                p.summary
                    .push_str(&format!("; the probe object {key} could not be deleted"));
                p
            }
        };
        return p;
    }
    if let Err(e) = deleted {
        return step_fail(
            t,
            reach,
            &format!("DeleteObject {key}"),
            &Failure::of(&e),
            Some(&key),
            format!(
                "grant the key in storage-s3 s3:DeleteObject on bucket {b}, and delete {key} by hand"
            ),
        );
    }
    Check::pass(
        PUT_GET_DELETE,
        Part::Storage,
        format!(
            "put, read back, listed and deleted {key} in bucket {} with the key in {}",
            where_(t),
            t.secret_name
        ),
    )
}
