//! The object storage the installation makes, used the way Gitpod uses it.
//!
//! The reference architecture is applied with the GCP provider on the project's GCP
//! fake; the storage output (project, region, the `obj-sa-<name>` key) and the
//! installer bundle rendered from it are then used against a real storage server,
//! [`gcp-storage-emulator`](https://pypi.org/project/gcp-storage-emulator/), over the
//! GCS **JSON API**, as Gitpod's content service does for its per-user buckets: create
//! a bucket in the configured project, upload an object, read it back, delete the
//! object and the bucket, and list to see that it is gone.
//!
//! **The emulator does not check credentials**: it accepts any request, with or
//! without a token. This test therefore proves the installer's storage settings (the
//! project and key Gitpod is given, and that the key is a live key of the storage
//! account) and the API flow; it proves nothing about IAM (whether the account's roles
//! allow these calls). The roles themselves are checked in `e2e.rs`.
//!
//! The emulator is a Python program, pinned in `scripts/test.sh`
//! (`python3 -m pip install gcp-storage-emulator==2026.7.19`). This test fails, and does not skip, when
//! it is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitpod_refarch::resource::StorageOutput;
use gitpod_refarch::state::MemoryStateStore;
use gitpod_refarch_fake_gcp::{FakeConfig, FakeGcp};
use gitpod_refarch_gcp::GcpProvider;
use serde_json::{json, Value};

mod common;

use common::{config, engine, spec, PROJECT, REGION};
const MISSING: &str = "gcp-storage-emulator is not installed: install it as scripts/test.sh does \
     (python3 -m pip install gcp-storage-emulator==2026.7.19) or run scripts/test.sh";

/// A running `gcp-storage-emulator`, killed on drop.
struct Emulator {
    child: Child,
    url: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Start the emulator in memory on a free port (the `gcp-storage-emulator` script, or
/// `python3 -m gcp_storage_emulator` when the script is not on PATH) and wait until it
/// answers.
async fn start_emulator(http: &reqwest::Client) -> Emulator {
    let port = free_port().to_string();
    let args = [
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--in-memory",
        "--quiet",
    ];
    let spawn = |program: &str, prefix: &[&str]| {
        Command::new(program)
            .args(prefix)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
    };
    let child = match spawn("gcp-storage-emulator", &[]) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match spawn("python3", &["-m", "gcp_storage_emulator"]) {
                Ok(c) => c,
                Err(e) => panic!("{MISSING} (python3: {e})"),
            }
        }
        Err(e) => panic!("{MISSING} ({e})"),
    };
    let mut emulator = Emulator {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = emulator.child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut e) = emulator.child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!("{MISSING}\nthe emulator exited with {status}:\n{stderr}");
        }
        if let Ok(r) = http.get(format!("{}/", emulator.url)).send().await {
            if r.status().is_success() {
                return emulator;
            }
        }
        assert!(
            Instant::now() < deadline,
            "gcp-storage-emulator did not answer on {} within 30 s",
            emulator.url
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Send and return (status, body as JSON or `Null`).
async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An object name as one path segment (`/` and other reserved characters escaped).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitpod_uses_the_storage_output_for_per_user_buckets() {
    let http = reqwest::Client::new();
    let emulator = start_emulator(&http).await;

    // The installation, on the GCP fake.
    let fake = FakeGcp::start(FakeConfig::default().with_projects([PROJECT]))
        .await
        .unwrap();
    let s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(GcpProvider::connect(config(&fake.url())).await.unwrap());
    let e = engine(p, store);
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);

    // The storage output, and what the installer hands Gitpod from it.
    let outputs = e.outputs("gp").await.unwrap();
    let Some(StorageOutput::Gcs {
        project,
        region,
        service_account_json,
        ..
    }) = outputs.storage()
    else {
        panic!("no GCS storage output: {:?}", outputs.storage());
    };
    assert_eq!(project, PROJECT);
    assert_eq!(region, REGION);
    let key: Value = serde_json::from_str(service_account_json.expose()).unwrap();
    let email = format!("obj-sa-gp@{PROJECT}.iam.gserviceaccount.com");
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["client_email"], email.as_str());
    assert_eq!(key["project_id"], PROJECT);
    assert!(key["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    // The key is a live key of the storage account.
    let key_id = key["private_key_id"].as_str().unwrap();
    assert!(fake
        .resource(&format!(
            "projects/{PROJECT}/serviceAccounts/{email}/keys/{key_id}"
        ))
        .is_some());

    let bundle = e.installer_bundle(&s).await.unwrap();
    let gcs = &bundle.config["objectStorage"];
    assert_eq!(gcs["inCluster"], false);
    assert_eq!(gcs["cloudStorage"]["project"], project.as_str());
    assert_eq!(bundle.config["metadata"]["region"], region.as_str());
    let secret = bundle.secret("storage-gcp").unwrap();
    assert_eq!(
        secret.data["service-account.json"].expose(),
        service_account_json.expose()
    );
    fake.shutdown().await;

    // Gitpod's flow, over the GCS JSON API, with the project the installer configured.
    let base = &emulator.url;
    let bucket = "gitpod-user-4b4d2f5e-0c3a-4e61-9b1f-7d3c2a1e9f00";
    let object = "workspaces/amber-lynx-x1y2z3/full.tar";
    let content: Vec<u8> = (0u8..=255).cycle().take(4096 + 17).collect();

    let (status, created) = call(
        http.post(format!("{base}/storage/v1/b"))
            .query(&[("project", project.as_str())])
            .json(&json!({"name": bucket, "location": region})),
    )
    .await;
    assert_eq!(status, 200, "create bucket: {created}");
    assert_eq!(created["name"], bucket);
    let (status, again) = call(
        http.post(format!("{base}/storage/v1/b"))
            .query(&[("project", project.as_str())])
            .json(&json!({"name": bucket})),
    )
    .await;
    assert_eq!(status, 409, "a second create of the bucket: {again}");

    let (status, uploaded) = call(
        http.post(format!("{base}/upload/storage/v1/b/{bucket}/o"))
            .query(&[("uploadType", "media"), ("name", object)])
            .header("content-type", "application/x-tar")
            .body(content.clone()),
    )
    .await;
    assert_eq!(status, 200, "upload: {uploaded}");
    assert_eq!(uploaded["name"], object);
    assert_eq!(uploaded["bucket"], bucket);
    assert_eq!(uploaded["size"], content.len().to_string());

    let (status, listed) = call(http.get(format!("{base}/storage/v1/b/{bucket}/o"))).await;
    assert_eq!(status, 200, "list objects: {listed}");
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(names, [object]);

    let object_url = format!("{base}/storage/v1/b/{bucket}/o/{}", segment(object));
    let r = http
        .get(&object_url)
        .query(&[("alt", "media")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), content.as_slice());

    let (status, body) = call(http.delete(&object_url)).await;
    assert!(
        (200..300).contains(&status),
        "delete object: {status} {body}"
    );
    let (status, _) = call(http.get(&object_url)).await;
    assert_eq!(status, 404, "the deleted object is still there");

    let (status, body) = call(http.delete(format!("{base}/storage/v1/b/{bucket}"))).await;
    assert!(
        (200..300).contains(&status),
        "delete bucket: {status} {body}"
    );
    let (status, listed) = call(
        http.get(format!("{base}/storage/v1/b"))
            .query(&[("project", project.as_str())]),
    )
    .await;
    assert_eq!(status, 200, "list buckets: {listed}");
    let left: Vec<&Value> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["name"] == bucket)
        .collect();
    assert!(
        left.is_empty(),
        "the deleted bucket is still listed: {left:?}"
    );
    let (status, _) = call(http.get(format!("{base}/storage/v1/b/{bucket}"))).await;
    assert_eq!(status, 404, "the deleted bucket still answers");
    drop(emulator);
}
