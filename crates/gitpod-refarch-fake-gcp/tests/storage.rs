//! The fake's Cloud Storage JSON API subset (`src/storage.rs`): strict about
//! generation preconditions, as GCS is.
//!
//! Google's official Python client, `google-cloud-storage` (installed, pinned, by
//! `scripts/install-google-clients.sh`), runs `scripts/google-cloud-storage-client.py`
//! against the fake: an independent client that must see GCS's answers. The plain HTTP
//! tests check the wire shapes (412 and 404 bodies, generations, checksums, encoded
//! names) and every field of the answered resources against the `storage.v1`
//! discovery document (`scripts/fetch-discovery.sh`).
//!
//! A missing client or discovery document fails the test, unless
//! `GITPOD_REFARCH_SKIP_GOOGLE_CLIENTS` is set (then the Python test is skipped).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};

use gitpod_refarch_fake_gcp::discovery::Discovery;
use gitpod_refarch_fake_gcp::{FakeConfig, FakeGcp};
use serde_json::{json, Value};

const SKIP: &str = "GITPOD_REFARCH_SKIP_GOOGLE_CLIENTS";

async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn fake_with_bucket(bucket: &str) -> (FakeGcp, reqwest::Client) {
    let fake = FakeGcp::start(FakeConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let (status, body) = call(
        http.post(format!("{}/storage/v1/b?project=p", fake.url()))
            .json(&json!({ "name": bucket })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (fake, http)
}

fn upload(
    http: &reqwest::Client,
    fake: &FakeGcp,
    bucket: &str,
    name_query: &str,
    extra: &str,
    data: &'static [u8],
) -> reqwest::RequestBuilder {
    http.post(format!(
        "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name_query}{extra}",
        fake.url()
    ))
    .header("content-type", "application/json")
    .body(data)
}

fn assert_gcs_error(body: &Value, code: u16, reason: &str) {
    let e = &body["error"];
    assert_eq!(e["code"], json!(code), "{body}");
    assert!(e["message"].is_string(), "{body}");
    assert_eq!(e["errors"][0]["reason"], json!(reason), "{body}");
    assert_eq!(e["errors"][0]["domain"], json!("global"), "{body}");
}

#[tokio::test]
async fn preconditions_are_enforced_as_gcs_does() {
    let (fake, http) = fake_with_bucket("state-bucket").await;
    let base = fake.url();
    // `a/b.json` as one encoded segment.
    let obj = format!("{base}/storage/v1/b/state-bucket/o/a%2Fb.json");

    let (s, body) = call(http.get(&obj)).await;
    assert_eq!(s, 404);
    assert_gcs_error(&body, 404, "notFound");
    assert_eq!(
        body["error"]["message"],
        "No such object: state-bucket/a/b.json"
    );

    // Only if absent: ifGenerationMatch=0.
    let (s, first) = call(upload(
        &http,
        &fake,
        "state-bucket",
        "a%2Fb.json",
        "&ifGenerationMatch=0",
        b"one",
    ))
    .await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["name"], "a/b.json");
    assert_eq!(first["size"], "3");
    assert_eq!(first["metageneration"], "1");
    let g1: i64 = first["generation"].as_str().unwrap().parse().unwrap();
    let (s, body) = call(upload(
        &http,
        &fake,
        "state-bucket",
        "a%2Fb.json",
        "&ifGenerationMatch=0",
        b"two",
    ))
    .await;
    assert_eq!(s, 412);
    assert_gcs_error(&body, 412, "conditionNotMet");

    // A wrong generation is refused, the right one replaces, generations grow.
    let (s, _) = call(upload(
        &http,
        &fake,
        "state-bucket",
        "a%2Fb.json",
        &format!("&ifGenerationMatch={}", g1 + 1),
        b"x",
    ))
    .await;
    assert_eq!(s, 412);
    let (s, second) = call(upload(
        &http,
        &fake,
        "state-bucket",
        "a%2Fb.json",
        &format!("&ifGenerationMatch={g1}"),
        b"second",
    ))
    .await;
    assert_eq!(s, 200, "{second}");
    let g2: i64 = second["generation"].as_str().unwrap().parse().unwrap();
    assert!(g2 > g1, "{g1} then {g2}");
    assert_ne!(first["etag"], second["etag"]);
    let (s, _) = call(upload(
        &http,
        &fake,
        "state-bucket",
        "a%2Fb.json",
        "&ifGenerationNotMatch=",
        b"x",
    ))
    .await;
    assert_eq!(s, 400, "an empty generation is not a number");
    let (s, _) = call(upload(
        &http,
        &fake,
        "state-bucket",
        "a%2Fb.json",
        &format!("&ifGenerationNotMatch={g2}"),
        b"x",
    ))
    .await;
    assert_eq!(s, 412);
    let (s, _) = call(upload(
        &http,
        &fake,
        "state-bucket",
        "a%2Fb.json",
        "&ifMetagenerationMatch=2",
        b"x",
    ))
    .await;
    assert_eq!(s, 412);
    // Absent object with a non-zero generation: 412, nothing created.
    let (s, _) = call(upload(
        &http,
        &fake,
        "state-bucket",
        "other",
        "&ifGenerationMatch=5",
        b"x",
    ))
    .await;
    assert_eq!(s, 412);
    assert_eq!(
        call(http.get(format!("{base}/storage/v1/b/state-bucket/o/other")))
            .await
            .0,
        404
    );

    // Reads: metadata and content of the current generation; conditions apply.
    let (s, meta) = call(http.get(&obj)).await;
    assert_eq!(s, 200);
    assert_eq!(meta, second);
    let r = http.get(format!("{obj}?alt=media")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-goog-generation"], g2.to_string().as_str());
    let hash = r.headers()["x-goog-hash"].to_str().unwrap().to_string();
    assert!(
        hash.contains(&format!("crc32c={}", second["crc32c"].as_str().unwrap())),
        "{hash}"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"second");
    assert_eq!(
        call(http.get(format!("{obj}?alt=media&ifGenerationMatch={g1}")))
            .await
            .0,
        412
    );
    assert_eq!(
        call(http.get(format!("{obj}?ifGenerationNotMatch={g2}")))
            .await
            .0,
        304
    );
    assert_eq!(
        call(http.get(format!("{obj}?ifGenerationMatch={g2}")))
            .await
            .0,
        200
    );

    // Deletes: wrong generation refused and the object kept, right one deletes.
    let (s, body) = call(http.delete(format!("{obj}?ifGenerationMatch={g1}"))).await;
    assert_eq!(s, 412);
    assert_gcs_error(&body, 412, "conditionNotMet");
    assert_eq!(call(http.get(&obj)).await.0, 200);
    let (s, _) = call(http.delete(format!("{obj}?ifGenerationMatch={g2}"))).await;
    assert_eq!(s, 204);
    let (s, body) = call(http.delete(&obj)).await;
    assert_eq!(s, 404);
    assert_gcs_error(&body, 404, "notFound");

    // A new object after a delete gets a still larger generation.
    let (_, third) = call(upload(
        &http,
        &fake,
        "state-bucket",
        "a%2Fb.json",
        "&ifGenerationMatch=0",
        b"3",
    ))
    .await;
    let g3: i64 = third["generation"].as_str().unwrap().parse().unwrap();
    assert!(g3 > g2);

    let counts = fake.counts();
    assert!(
        counts.per_method["storage.objects.insert"] >= 9,
        "{counts:?}"
    );
    // Contents are never recorded.
    for c in fake.calls() {
        let text = format!("{:?} {}", c.request_body, c.response_body);
        assert!(!text.contains("second"), "{text}");
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn buckets_must_exist_and_be_valid() {
    let fake = FakeGcp::start(FakeConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let base = fake.url();
    let (s, body) = call(upload(&http, &fake, "missing-bucket", "x", "", b"x")).await;
    assert_eq!(s, 404);
    assert_gcs_error(&body, 404, "notFound");
    assert_eq!(
        body["error"]["message"],
        "The specified bucket does not exist."
    );
    assert_eq!(
        call(http.get(format!("{base}/storage/v1/b/missing-bucket/o/x")))
            .await
            .0,
        404
    );
    assert_eq!(
        call(http.get(format!("{base}/storage/v1/b/missing-bucket")))
            .await
            .0,
        404
    );

    let create = |project: &str, body: Value| {
        http.post(format!("{base}/storage/v1/b?project={project}"))
            .json(&body)
    };
    let (s, body) = call(create("p", json!({"name": "Bad_Name"}))).await;
    assert_eq!(s, 400, "{body}");
    assert_gcs_error(&body, 400, "invalid");
    let (s, _) = call(create("nope-project", json!({"name": "good-name"}))).await;
    assert_eq!(s, 400);
    let (s, b) = call(create("p", json!({"name": "good-name"}))).await;
    assert_eq!(s, 200, "{b}");
    let (s, body) = call(create("p", json!({"name": "good-name"}))).await;
    assert_eq!(s, 409);
    assert_gcs_error(&body, 409, "conflict");
    let (s, got) = call(http.get(format!("{base}/storage/v1/b/good-name"))).await;
    assert_eq!((s, &got), (200, &b));
    // Uploads need an upload type.
    let (s, _) = call(
        http.post(format!("{base}/upload/storage/v1/b/good-name/o?name=x"))
            .body("x"),
    )
    .await;
    assert_eq!(s, 400);
    fake.shutdown().await;
}

/// Every property of `value` is in `schema` of the storage.v1 document, with the
/// declared type (int64/uint64 as decimal strings).
fn check_schema(doc: &Value, schema: &str, value: &Value, at: &str, errors: &mut Vec<String>) {
    let props = &doc["schemas"][schema]["properties"];
    let Some(obj) = value.as_object() else {
        errors.push(format!("{at}: not an object"));
        return;
    };
    for (k, v) in obj {
        let Some(p) = props.get(k) else {
            errors.push(format!("{at}.{k}: not a property of {schema}"));
            continue;
        };
        check_prop(doc, p, v, &format!("{at}.{k}"), errors);
    }
}

fn check_prop(doc: &Value, p: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = p["$ref"].as_str() {
        return check_schema(doc, r, v, at, errors);
    }
    match p["type"].as_str() {
        Some("string") => match (v.as_str(), p["format"].as_str()) {
            (None, _) => errors.push(format!("{at}: not a string")),
            (Some(s), Some("int64" | "uint64")) if s.parse::<i128>().is_err() => {
                errors.push(format!("{at}: {s:?} is not a decimal integer"))
            }
            _ => {}
        },
        Some("boolean") if !v.is_boolean() => errors.push(format!("{at}: not a boolean")),
        Some("object") => {
            if let Some(props) = p["properties"].as_object() {
                for (k, inner) in v.as_object().into_iter().flatten() {
                    match props.get(k) {
                        Some(ip) => check_prop(doc, ip, inner, &format!("{at}.{k}"), errors),
                        None => errors.push(format!("{at}.{k}: not a property")),
                    }
                }
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn answers_use_the_discovery_documents_field_names() {
    let path = Discovery::default_dir().join("storage.v1.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}. Run scripts/fetch-discovery.sh", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let (fake, http) = fake_with_bucket("fields-bucket").await;
    let (_, bucket) = call(http.get(format!("{}/storage/v1/b/fields-bucket", fake.url()))).await;
    let (s, object) = call(upload(
        &http,
        &fake,
        "fields-bucket",
        "x",
        "&kmsKeyName=projects/p/locations/global/keyRings/r/cryptoKeys/k",
        b"data",
    ))
    .await;
    assert_eq!(s, 200);
    for f in [
        "md5Hash",
        "crc32c",
        "etag",
        "size",
        "generation",
        "metageneration",
        "kmsKeyName",
    ] {
        assert!(object.get(f).is_some(), "{f} missing: {object}");
    }
    let mut errors = Vec::new();
    check_schema(&doc, "Bucket", &bucket, "bucket", &mut errors);
    check_schema(&doc, "Object", &object, "object", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
    // The paths are the document's.
    let methods = &doc["resources"]["objects"]["methods"];
    assert_eq!(
        methods["insert"]["mediaUpload"]["protocols"]["simple"]["path"],
        "/upload/storage/v1/b/{bucket}/o"
    );
    assert_eq!(methods["get"]["path"], "b/{bucket}/o/{object}");
    assert_eq!(doc["servicePath"], "storage/v1/");
    for p in [
        "ifGenerationMatch",
        "ifGenerationNotMatch",
        "ifMetagenerationMatch",
        "ifMetagenerationNotMatch",
    ] {
        for m in ["insert", "get", "delete"] {
            assert!(methods[m]["parameters"].get(p).is_some(), "{m} has no {p}");
        }
    }
    fake.shutdown().await;
}

fn python_client_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import google.cloud.storage, google.auth.credentials"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_storage_client_sees_gcs_preconditions() {
    if !python_client_installed() {
        if std::env::var_os(SKIP).is_some() {
            eprintln!("SKIPPED: google-cloud-storage is not installed and {SKIP} is set");
            return;
        }
        panic!("google-cloud-storage is not installed: run scripts/install-google-clients.sh (or set {SKIP} to skip this test)");
    }
    let fake = FakeGcp::start(FakeConfig::default()).await.unwrap();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/google-cloud-storage-client.py");
    let url = fake.url();
    // The client's own HTTP timeouts (60 s) bound every call of the script.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("GCP_FAKE_URL", url)
            .env("GCP_FAKE_PROJECT", "p")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("storage sequence passed"), "{stdout}");
    for refused in [
        "a second upload with if_generation_match=0 (412)",
        "a delete naming the wrong generation (412)",
        "an upload to a bucket that does not exist (404)",
    ] {
        assert!(stdout.contains(refused), "missing: {refused}\n{stdout}");
    }
    // The client really sent the preconditions.
    let calls = fake.calls();
    assert!(calls.iter().any(|c| c.method == "storage.objects.insert"
        && c.status == 412
        && c.query
            .iter()
            .any(|(k, v)| k == "ifGenerationMatch" && v == "0")));
    assert!(calls
        .iter()
        .any(|c| c.method == "storage.objects.delete" && c.status == 412));
    fake.shutdown().await;
}
