//! `S3CompatibleStorage` and the storage checks of `verify` against a real
//! S3-compatible server (moto, one process per test), with the official AWS SDK.
//!
//! The checks read what `gitpod_refarch::installer::render` makes of the outputs,
//! exactly as `verify` does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use gitpod_refarch::installer::{self, InstallerBundle};
use gitpod_refarch::outputs::Outputs;
use gitpod_refarch::provider::{Inputs, ObjectStore, Progress};
use gitpod_refarch::resource::{
    DatabaseEndpoint, ObjectStorageSpec, Output, RegistryOutput, ResourceId, ResourceKind,
    StorageOutput,
};
use gitpod_refarch::spec::Cloud;
use gitpod_refarch::verify::{Check, CheckStatus, Part, VerifyContext};
use gitpod_refarch::{ErrorKind, ReferenceArchitecture, Secret, Verifier};
use gitpod_refarch_selfmanaged::storage::OWNER_TAG;
use gitpod_refarch_selfmanaged::{DataPlaneVerifier, S3CompatibleStorage, StorageConfig};
use support::moto::{Moto, TEST_KEY_ID, TEST_SECRET};

const INSTALLATION: &str = "gp";

fn config(endpoint: &str, bucket: &str, key: &str, secret: &str) -> StorageConfig {
    StorageConfig::new(endpoint, bucket, key, Secret::new(secret.to_string()))
}

fn provider(moto: &Moto, bucket: &str) -> S3CompatibleStorage {
    S3CompatibleStorage::new(config(&moto.url, bucket, TEST_KEY_ID, TEST_SECRET))
}

/// The desired state the plan gives a self-managed store.
fn desired(cfg: &StorageConfig) -> ObjectStorageSpec {
    serde_json::from_value(serde_json::json!({
        "name": INSTALLATION,
        "region": cfg.region,
        "bucket": cfg.bucket,
        "versioning": false,
        "endpoint": cfg.endpoint,
        "labels": {"gitpod-installation": INSTALLATION},
    }))
    .unwrap()
}

async fn ensure(p: &S3CompatibleStorage) -> gitpod_refarch::Result<Output> {
    match p.ensure(&desired(p.config()), &Inputs::default()).await? {
        Progress::Done(Some(o)) => Ok(o),
        other => panic!("ensure did not finish with outputs: {other:?}"),
    }
}

async fn delete(p: &S3CompatibleStorage) -> gitpod_refarch::Result<()> {
    match p.delete(&desired(p.config())).await? {
        Progress::Done(_) => Ok(()),
        other => panic!("delete did not finish: {other:?}"),
    }
}

fn storage_output(o: &Output) -> StorageOutput {
    match o {
        Output::ObjectStorage(s) => s.clone(),
        other => panic!("not a storage output: {other:?}"),
    }
}

async fn bucket_exists(s3: &aws_sdk_s3::Client, bucket: &str) -> bool {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => true,
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => false,
        Err(e) => panic!("HeadBucket {bucket}: {e:?}"),
    }
}

async fn keys_in(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    s3.list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

fn spec() -> ReferenceArchitecture {
    ReferenceArchitecture::builder(Cloud::Aws)
        .name(INSTALLATION)
        .domain("gitpod.example.com")
        .acme_email("ops@example.com")
        .build()
        .expect("valid spec")
}

/// Outputs with `storage` and a database and registry nobody listens for.
fn outputs(storage: StorageOutput) -> Outputs {
    let mut m = BTreeMap::new();
    m.insert(
        ResourceId::new(ResourceKind::DatabaseInstance, INSTALLATION),
        Output::DatabaseInstance {
            instance: "db".into(),
            endpoint: DatabaseEndpoint::Host {
                host: "127.0.0.1".into(),
                port: 9,
                ca_certificate_pem: None,
            },
        },
    );
    m.insert(
        ResourceId::new(ResourceKind::Database, "gitpod"),
        Output::Database {
            database: "gitpod".into(),
            username: "gitpod".into(),
            password: Secret::new("db-password-not-used".into()),
            client_credentials: None,
        },
    );
    m.insert(
        ResourceId::new(ResourceKind::ObjectStorage, INSTALLATION),
        Output::ObjectStorage(storage),
    );
    m.insert(
        ResourceId::new(ResourceKind::Registry, INSTALLATION),
        Output::Registry(RegistryOutput::External {
            url: "127.0.0.1:9/gitpod".into(),
            server: "127.0.0.1:9".into(),
            username: "u".into(),
            password: Secret::new("registry-password-not-used".into()),
        }),
    );
    Outputs::new(m)
}

fn render(outputs: &Outputs) -> InstallerBundle {
    installer::render(&spec(), outputs, &Secret::generate_base64_key(32)).unwrap()
}

/// The storage checks of `verify` on the bundle rendered from `storage`.
async fn storage_checks(storage: StorageOutput) -> Vec<Check> {
    let spec = spec();
    let outputs = outputs(storage);
    let bundle = render(&outputs);
    let ctx = VerifyContext::new(&spec, &outputs, &bundle);
    let v = DataPlaneVerifier::new()
        .self_managed(Part::Storage)
        .timeout(Duration::from_secs(5));
    let checks: Vec<Check> = v
        .verify(&ctx)
        .await
        .into_iter()
        .filter(|c| c.part == Part::Storage)
        .collect();
    let ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["storage.bucket", "storage.put-get-delete"],
        "{checks:#?}"
    );
    checks
}

fn check<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks.iter().find(|c| c.id == id).unwrap()
}

/// No secret in any Debug, error, check or JSON of a check.
fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into: {text}");
    }
}

#[tokio::test]
async fn ensure_creates_and_tags_the_bucket_once_and_reapply_writes_nothing() {
    let moto = Moto::start().await;
    let admin = moto.s3(TEST_KEY_ID, TEST_SECRET);
    let p = provider(&moto, "gp-created");
    let d = desired(p.config());

    assert!(p.observe(&d).await.unwrap().is_none());
    assert_eq!(p.write_requests(), 0, "observe must not write");

    let out = ensure(&p).await.unwrap();
    match storage_output(&out) {
        StorageOutput::S3 {
            endpoint,
            region,
            bucket,
            access_key_id,
            secret_access_key,
            allow_insecure_connection,
        } => {
            assert_eq!(endpoint, format!("127.0.0.1:{}", moto.port));
            assert_eq!(region, "us-east-1");
            assert_eq!(bucket, "gp-created");
            assert_eq!(access_key_id, TEST_KEY_ID);
            assert_eq!(secret_access_key.expose(), TEST_SECRET);
            assert!(allow_insecure_connection, "the endpoint is http://");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.write_requests(), 2, "CreateBucket and PutBucketTagging");
    assert!(bucket_exists(&admin, "gp-created").await);
    let tags = admin
        .get_bucket_tagging()
        .bucket("gp-created")
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_set()
            .iter()
            .any(|t| t.key() == OWNER_TAG && t.value() == INSTALLATION),
        "{tags:?}"
    );

    // Re-apply: observe finds it ready with the same outputs; ensure writes nothing.
    let seen = p.observe(&d).await.unwrap().expect("the bucket exists");
    assert_eq!(seen.actual, d);
    assert!(seen.drift.is_empty());
    assert_eq!(seen.output.as_ref(), Some(&out));
    assert_eq!(ensure(&p).await.unwrap(), out);
    assert_eq!(p.write_requests(), 2, "a re-apply sent a write");

    // Another region: the LocationConstraint is sent (omitted only for us-east-1).
    let mut cfg = config(&moto.url, "gp-eu", TEST_KEY_ID, TEST_SECRET);
    cfg.region = "eu-west-1".into();
    let eu = S3CompatibleStorage::new(cfg);
    ensure(&eu).await.unwrap();
    let loc = admin
        .get_bucket_location()
        .bucket("gp-eu")
        .send()
        .await
        .unwrap();
    assert_eq!(
        loc.location_constraint().map(|l| l.as_str()),
        Some("eu-west-1")
    );

    assert_no_secret(&format!("{p:?} {eu:?} {out:?}"), &[TEST_SECRET]);
}

#[tokio::test]
async fn destroy_deletes_only_the_created_empty_bucket() {
    let moto = Moto::start().await;
    let admin = moto.s3(TEST_KEY_ID, TEST_SECRET);

    // Created by the SDK, then used: destroy refuses and names it.
    let mine = provider(&moto, "gp-mine");
    ensure(&mine).await.unwrap();
    admin
        .put_object()
        .bucket("gp-mine")
        .key("workspaces/ws-1/backup.tar")
        .body(b"user data".to_vec().into())
        .send()
        .await
        .unwrap();
    let err = delete(&mine).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Precondition, "{err}");
    assert!(err.message().contains("gp-mine"), "{err}");
    assert!(err.message().contains("not empty"), "{err}");
    assert!(
        err.message().contains("workspaces/ws-1/backup.tar"),
        "{err}"
    );
    assert_eq!(
        keys_in(&admin, "gp-mine").await,
        ["workspaces/ws-1/backup.tar"]
    );

    // Emptied: destroy deletes it; absent is success.
    admin
        .delete_object()
        .bucket("gp-mine")
        .key("workspaces/ws-1/backup.tar")
        .send()
        .await
        .unwrap();
    delete(&mine).await.unwrap();
    assert!(!bucket_exists(&admin, "gp-mine").await);
    delete(&mine).await.unwrap();

    // Pre-existing buckets (one with objects, one empty): used, never touched.
    for (bucket, object) in [("team-data", Some("keep/me.txt")), ("team-empty", None)] {
        admin.create_bucket().bucket(bucket).send().await.unwrap();
        if let Some(k) = object {
            admin
                .put_object()
                .bucket(bucket)
                .key(k)
                .body(b"theirs".to_vec().into())
                .send()
                .await
                .unwrap();
        }
        let p = provider(&moto, bucket);
        let seen = p.observe(&desired(p.config())).await.unwrap();
        assert!(seen.is_some_and(|o| o.output.is_some()));
        ensure(&p).await.unwrap();
        assert_eq!(
            p.write_requests(),
            0,
            "{bucket}: ensure wrote to an existing bucket"
        );
        delete(&p).await.unwrap();
        assert_eq!(
            p.write_requests(),
            0,
            "{bucket}: destroy wrote to a bucket it did not create"
        );
        assert!(bucket_exists(&admin, bucket).await, "{bucket} was deleted");
        let want: Vec<String> = object.iter().map(|k| k.to_string()).collect();
        assert_eq!(keys_in(&admin, bucket).await, want);
    }

    // A bucket created for another installation is not this one's to delete.
    let theirs = provider(&moto, "gp-theirs");
    let mut d = desired(theirs.config());
    d.name = "someone-else".into();
    let done = theirs.ensure(&d, &Inputs::default()).await.unwrap();
    assert!(matches!(done, Progress::Done(Some(_))));
    delete(&theirs).await.unwrap();
    assert!(bucket_exists(&admin, "gp-theirs").await);
}

#[tokio::test]
async fn an_absent_bucket_with_create_bucket_false_is_a_precondition() {
    let moto = Moto::start().await;
    let admin = moto.s3(TEST_KEY_ID, TEST_SECRET);
    let mut cfg = config(&moto.url, "gp-absent", TEST_KEY_ID, TEST_SECRET);
    cfg.create_bucket = false;
    let p = S3CompatibleStorage::new(cfg);
    assert!(p.observe(&desired(p.config())).await.unwrap().is_none());
    let err = ensure(&p).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Precondition, "{err}");
    assert!(
        err.message().contains(&format!(
            "bucket gp-absent does not exist on {} and createBucket is false",
            moto.url
        )),
        "{err}"
    );
    assert_eq!(p.write_requests(), 0);
    assert!(!bucket_exists(&admin, "gp-absent").await);
}

#[tokio::test]
async fn a_bad_config_is_refused_before_any_request() {
    // A closed port: a request would be a transport error, not InvalidInput.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{closed}");
    let ok = || config(&url, "gitpod", "AKIDEXAMPLE", "bad-config-secret");
    let mut cases: Vec<(StorageConfig, &str)> = Vec::new();
    let mut c = ok();
    c.endpoint = "minio.corp:9000".into();
    cases.push((c, "storage.endpoint"));
    let mut c = ok();
    c.endpoint = "https://minio.corp:9000/gitpod".into();
    cases.push((c, "storage.endpoint"));
    let mut c = ok();
    c.bucket = "Not_A_Bucket".into();
    cases.push((c, "storage.bucket"));
    let mut c = ok();
    c.region = String::new();
    cases.push((c, "storage.region"));
    let mut c = ok();
    c.access_key_id = " ".into();
    cases.push((c, "storage.accessKeyId"));
    let mut c = ok();
    c.secret_access_key = Secret::new(String::new());
    cases.push((c, "storage.secretAccessKey"));
    let mut c = ok();
    c.ca_pem = Some("-----BEGIN CERTIFICATE-----\n".into());
    cases.push((c, "storage.caFile"));
    for (cfg, field) in cases {
        let p = S3CompatibleStorage::new(cfg);
        let d = desired(p.config());
        let errs = [
            p.observe(&d).await.err(),
            p.ensure(&d, &Inputs::default()).await.err(),
            p.delete(&d).await.err(),
        ];
        for e in errs {
            let e = e.unwrap_or_else(|| panic!("{field}: accepted"));
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{field}: {e}");
            assert!(e.message().contains(field), "{field}: {e}");
            assert_no_secret(&format!("{e} {e:?} {}", e.chain()), &["bad-config-secret"]);
        }
        assert_eq!(p.write_requests(), 0);
    }
    let p = S3CompatibleStorage::new(ok());
    let mut d = desired(p.config());
    d.bucket = Some("another".into());
    let e = p.observe(&d).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    // The same config, valid: the closed port is a retryable transport error.
    let e = p.observe(&desired(p.config())).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn verify_passes_on_the_bundle_the_installer_renders() {
    let moto = Moto::start().await;
    let admin = moto.s3(TEST_KEY_ID, TEST_SECRET);
    let p = provider(&moto, "gp-verify");
    let storage = storage_output(&ensure(&p).await.unwrap());

    // What the installer gets: host:port without a scheme, http allowed.
    let bundle = render(&outputs(storage.clone()));
    let s3 = &bundle.config["objectStorage"]["s3"];
    assert_eq!(s3["endpoint"], format!("127.0.0.1:{}", moto.port));
    assert_eq!(s3["bucket"], "gp-verify");
    assert_eq!(s3["allowInsecureConnection"], true);
    assert_eq!(s3["credentials"]["name"], "storage-s3");
    assert_eq!(bundle.config["metadata"]["region"], "us-east-1");
    let secret = bundle.secret("storage-s3").unwrap();
    assert_eq!(secret.data["accessKeyId"].expose(), TEST_KEY_ID);
    assert_eq!(secret.data["secretAccessKey"].expose(), TEST_SECRET);

    let checks = storage_checks(storage.clone()).await;
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Pass, "{c:#?}");
    }
    assert!(check(&checks, "storage.put-get-delete")
        .summary
        .contains("gitpod-refarch-verify/"));
    let left: Vec<String> = keys_in(&admin, "gp-verify").await;
    assert!(left.is_empty(), "the probe left {left:?}");

    // A bucket that is not there.
    let StorageOutput::S3 {
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        ..
    } = storage.clone()
    else {
        panic!()
    };
    let missing = StorageOutput::S3 {
        endpoint: endpoint.clone(),
        region: region.clone(),
        bucket: "gp-not-there".into(),
        access_key_id: access_key_id.clone(),
        secret_access_key: secret_access_key.clone(),
        allow_insecure_connection: true,
    };
    let checks = storage_checks(missing).await;
    let b = check(&checks, "storage.bucket");
    assert_eq!(b.status, CheckStatus::Fail, "{b:#?}");
    assert!(
        b.fix
            .as_deref()
            .unwrap()
            .contains("create bucket gp-not-there"),
        "{b:#?}"
    );
    assert_eq!(
        check(&checks, "storage.put-get-delete").status,
        CheckStatus::Skipped
    );

    // An endpoint rendered with its scheme breaks Gitpod's contract: fail, no call.
    let schemed = StorageOutput::S3 {
        endpoint: moto.url.clone(),
        region: region.clone(),
        bucket: "gp-verify".into(),
        access_key_id: access_key_id.clone(),
        secret_access_key: secret_access_key.clone(),
        allow_insecure_connection: true,
    };
    let checks = storage_checks(schemed).await;
    let b = check(&checks, "storage.bucket");
    assert_eq!(b.status, CheckStatus::Fail, "{b:#?}");
    assert!(b.summary.contains("not host[:port]"), "{b:#?}");

    // Not S3: skipped with the reason.
    let gcs = StorageOutput::Gcs {
        project: "p".into(),
        region: "europe-west1".into(),
        service_account_json: Secret::new("{}".into()),
    };
    for c in storage_checks(gcs).await {
        assert_eq!(c.status, CheckStatus::Skipped, "{c:#?}");
        assert!(c.summary.contains("Google Cloud Storage"), "{c:#?}");
    }
    let in_cluster = StorageOutput::InCluster {
        region: "westeurope".into(),
    };
    for c in storage_checks(in_cluster).await {
        assert_eq!(c.status, CheckStatus::Skipped, "{c:#?}");
        assert!(c.summary.contains("in-cluster"), "{c:#?}");
    }
}

/// The number of setup requests in `iam_enforced_read_only_key_and_wrong_secret`:
/// CreateBucket, then CreateUser, PutUserPolicy and CreateAccessKey for two users.
const IAM_SETUP_REQUESTS: u32 = 7;

#[tokio::test]
async fn iam_enforced_read_only_key_and_wrong_secret() {
    let moto = Moto::start_enforcing_iam_after(IAM_SETUP_REQUESTS).await;
    let bucket = "gp-iam";
    let setup = moto.s3(TEST_KEY_ID, TEST_SECRET);
    setup.create_bucket().bucket(bucket).send().await.unwrap();
    // moto authorizes HeadBucket as `s3:HeadBucket` (AWS checks s3:ListBucket):
    // both users get it, so `storage.bucket` passes for each.
    let (ro_id, ro_secret) = moto
        .user_with_key(
            "gitpod-read-only",
            bucket,
            &["s3:HeadBucket", "s3:ListBucket", "s3:GetObject"],
        )
        .await;
    let (rw_id, rw_secret) = moto
        .user_with_key(
            "gitpod-read-write",
            bucket,
            &[
                "s3:HeadBucket",
                "s3:ListBucket",
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
            ],
        )
        .await;
    // From here on moto enforces IAM: the unknown test key is refused.
    let refused = setup.head_bucket().bucket(bucket).send().await;
    assert!(
        refused.is_err(),
        "moto does not enforce IAM after {IAM_SETUP_REQUESTS} requests; log:\n{}",
        moto.log_tail()
    );
    let wrong_secret = "wrong-secret-0123456789abcdefABCDEF";
    let secrets = [ro_secret.as_str(), rw_secret.as_str(), wrong_secret];
    let s3_output = |id: &str, secret: &str| StorageOutput::S3 {
        endpoint: format!("127.0.0.1:{}", moto.port),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        access_key_id: id.into(),
        secret_access_key: Secret::new(secret.into()),
        allow_insecure_connection: true,
    };
    let mut seen = String::new();

    // The provider with the read-write key: the bucket exists, nothing is written.
    let mut cfg = config(&moto.url, bucket, &rw_id, &rw_secret);
    cfg.create_bucket = false;
    let rw = S3CompatibleStorage::new(cfg);
    let out = ensure(&rw).await.unwrap();
    assert_eq!(storage_output(&out), s3_output(&rw_id, &rw_secret));
    assert_eq!(rw.write_requests(), 0);
    seen.push_str(&format!("{rw:?} {out:?}"));

    // verify: the read-write key passes both checks.
    let checks = storage_checks(s3_output(&rw_id, &rw_secret)).await;
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Pass, "{c:#?}\n{}", moto.log_tail());
        seen.push_str(&serde_json::to_string(c).unwrap());
    }

    // The read-only key reads the bucket but cannot write: the probe fails with the fix.
    let checks = storage_checks(s3_output(&ro_id, &ro_secret)).await;
    let b = check(&checks, "storage.bucket");
    assert_eq!(b.status, CheckStatus::Pass, "{b:#?}");
    let probe = check(&checks, "storage.put-get-delete");
    assert_eq!(probe.status, CheckStatus::Fail, "{probe:#?}");
    assert!(probe.summary.contains("PutObject"), "{probe:#?}");
    assert_eq!(
        probe.fix.as_deref(),
        Some("the key in storage-s3 cannot write to bucket gp-iam: grant s3:PutObject, GetObject, DeleteObject, ListBucket on it")
    );
    for c in &checks {
        seen.push_str(&serde_json::to_string(c).unwrap());
    }

    // A wrong secret: storage.bucket fails naming the key id; the probe does not run.
    let checks = storage_checks(s3_output(&ro_id, wrong_secret)).await;
    let b = check(&checks, "storage.bucket");
    assert_eq!(b.status, CheckStatus::Fail, "{b:#?}");
    assert!(b.summary.contains(&ro_id), "{b:#?}");
    assert!(b.summary.contains("SignatureDoesNotMatch"), "{b:#?}");
    assert!(b.fix.as_deref().unwrap().contains("storage-s3"), "{b:#?}");
    assert_eq!(
        check(&checks, "storage.put-get-delete").status,
        CheckStatus::Skipped
    );
    for c in &checks {
        seen.push_str(&serde_json::to_string(c).unwrap());
        seen.push_str(&format!("{c:?}"));
    }

    // The provider with the wrong secret: Credentials, naming the key id.
    let bad = S3CompatibleStorage::new(config(&moto.url, bucket, &ro_id, wrong_secret));
    let e = bad.observe(&desired(bad.config())).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
    assert!(e.message().contains(&ro_id), "{e}");
    seen.push_str(&format!("{e} {e:?} {} {bad:?}", e.chain()));

    // The read-only key may not create a bucket: Permission, naming the key id.
    let ro_new = S3CompatibleStorage::new(config(&moto.url, "gp-iam-new", &ro_id, &ro_secret));
    let e = ensure(&ro_new).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
    assert!(e.message().contains(&ro_id), "{e}");
    seen.push_str(&format!("{e} {e:?} {} {ro_new:?}", e.chain()));

    assert_no_secret(&seen, &secrets);
}
