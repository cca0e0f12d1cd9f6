//! `SelfManaged::for_spec`: from a spec's `provider: selfManaged` parts to providers,
//! with secrets read from environment variables and files, CA files read, and every
//! failure naming the spec field (never the value). No server is contacted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use gitpod_refarch::spec::{Cloud, ReferenceArchitecture};
use gitpod_refarch::verify::Part;
use gitpod_refarch::{ErrorKind, Verifier as _};
use gitpod_refarch_selfmanaged::{DatabaseTlsMode, SelfManaged, TsigAlgorithm};

const CA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../gitpod-refarch/tests/data/tls/ca.crt"
);
const TSIG: &str = "2bQ3d5hJ4TqGx4pYpZQ0h1o0mI3Wz3p8F0oQXc8nF1A=";

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gitpod-refarch-selfmanaged-spec-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn env() {
    std::env::set_var("SMS_TEST_DB_PASSWORD", "db-pw-0b7e");
    std::env::set_var("SMS_TEST_REGISTRY_PASSWORD", "reg-pw-44a1");
    std::env::set_var("SMS_TEST_S3_KEY_ID", "AKIASPECTEST");
}

/// The four parts self-managed; the S3 secret and the TSIG secret from files.
fn spec(dir: &Path, registry_url: &str, storage_endpoint: &str) -> ReferenceArchitecture {
    env();
    let tsig = dir.join("tsig.key");
    std::fs::write(&tsig, format!("{TSIG}\n")).unwrap();
    let s3 = dir.join("s3-secret");
    std::fs::write(&s3, "s3-secret-from-file\n").unwrap();
    ReferenceArchitecture::from_yaml(&format!(
        r#"cloud: aws
name: gp
domain: gitpod.example.com
certificates: {{email: ops@example.com}}
database:
  provider: selfManaged
  host: db.corp.example.com
  port: 3307
  adminUsername: root
  adminPassword: {{env: SMS_TEST_DB_PASSWORD}}
  tls: {{mode: verifyCa, caFile: {CA}}}
  allowServerChanges: true
  deletionProtection: true
dns:
  provider: selfManaged
  zone: example.com
  server: 192.0.2.53:53
  clusterServer: 10.0.0.53:53
  tsigKeyName: gitpod-refarch.
  tsigAlgorithm: hmac-sha512
  tsigSecret: {{file: {tsig}}}
registry:
  provider: selfManaged
  url: {registry_url}
  username: robot$push
  password: {{env: SMS_TEST_REGISTRY_PASSWORD}}
  caFile: {CA}
storage:
  provider: selfManaged
  endpoint: {storage_endpoint}
  region: eu-central-1
  bucket: gitpod-data
  accessKeyId: {{env: SMS_TEST_S3_KEY_ID}}
  secretAccessKey: {{file: {s3}}}
  createBucket: false
  pathStyle: false
"#,
        tsig = tsig.display(),
        s3 = s3.display(),
    ))
    .unwrap()
}

#[test]
fn every_part_is_built_from_the_spec_with_its_secrets() {
    let dir = scratch("all");
    let s = spec(
        &dir,
        "https://harbor.corp.example.com/gitpod",
        "https://minio.corp.example.com:9000",
    );
    s.validate().unwrap();
    let sm = SelfManaged::for_spec(&s).unwrap();
    assert!(!sm.is_empty());
    let ca = std::fs::read_to_string(CA).unwrap();

    let db = sm.database.as_ref().unwrap();
    let c = db.config();
    assert_eq!((c.host.as_str(), c.port), ("db.corp.example.com", 3307));
    assert_eq!(c.admin_username, "root");
    assert_eq!(c.admin_password.expose(), "db-pw-0b7e");
    assert_eq!(c.tls, DatabaseTlsMode::VerifyCa);
    assert_eq!(c.ca_pem.as_deref(), Some(ca.as_str()));
    assert!(c.allow_server_changes && c.deletion_protection);

    let dns = sm.dns.as_ref().unwrap();
    let c = dns.config();
    assert_eq!(c.zone, "example.com");
    assert_eq!(c.server, "192.0.2.53:53");
    assert_eq!(c.cluster_server.as_deref(), Some("10.0.0.53:53"));
    assert_eq!(c.tsig_key_name, "gitpod-refarch.");
    assert_eq!(c.tsig_algorithm, TsigAlgorithm::HmacSha512);
    assert_eq!(c.tsig_secret.expose(), TSIG, "trimmed");

    let reg = sm.registry.as_ref().unwrap();
    let c = reg.config();
    assert_eq!(c.url, "harbor.corp.example.com/gitpod");
    assert!(!c.insecure_http);
    assert_eq!(c.username, "robot$push");
    assert_eq!(c.password.expose(), "reg-pw-44a1");
    assert_eq!(c.ca_pem.as_deref(), Some(ca.as_str()));

    let st = sm.storage.as_ref().unwrap();
    let c = st.config();
    assert_eq!(c.endpoint, "https://minio.corp.example.com:9000");
    assert_eq!(c.region, "eu-central-1");
    assert_eq!(c.bucket, "gitpod-data");
    assert_eq!(c.access_key_id, "AKIASPECTEST");
    assert_eq!(c.secret_access_key.expose(), "s3-secret-from-file");
    assert!(!c.create_bucket && !c.path_style);

    // No secret value in Debug.
    let debug = format!("{sm:?}");
    for value in ["db-pw-0b7e", "reg-pw-44a1", "s3-secret-from-file", TSIG] {
        assert!(!debug.contains(value), "{value} in {debug}");
    }

    // The verifier checks the four parts as self-managed, DNS included.
    let v = sm.verifier();
    let parts = v.parts();
    for p in [Part::Database, Part::Registry, Part::Storage, Part::Dns] {
        assert!(parts.contains(&p), "{parts:?}");
    }
    let debug = format!("{v:?}");
    for p in ["Database", "Registry", "Storage", "Dns"] {
        assert!(debug.contains(p), "{debug}");
    }
}

#[test]
fn a_plain_http_registry_and_store_are_told_apart_by_their_scheme() {
    let dir = scratch("http");
    let s = spec(
        &dir,
        "http://127.0.0.1:5000/gitpod/",
        "http://127.0.0.1:9000",
    );
    let sm = SelfManaged::for_spec(&s).unwrap();
    let c = sm.registry.as_ref().unwrap().config();
    assert_eq!(c.url, "127.0.0.1:5000/gitpod");
    assert!(c.insecure_http);
    assert_eq!(
        sm.storage.as_ref().unwrap().config().endpoint,
        "http://127.0.0.1:9000"
    );
}

#[test]
fn a_cloud_spec_has_no_self_managed_part() {
    let s = ReferenceArchitecture::defaults(Cloud::Aws);
    let sm = SelfManaged::for_spec(&s).unwrap();
    assert!(sm.is_empty());
    assert!(sm.database.is_none() && sm.dns.is_none());
    assert!(sm.registry.is_none() && sm.storage.is_none());
    assert!(!sm.verifier().parts().contains(&Part::Dns));
}

#[test]
fn a_missing_variable_or_file_fails_with_the_field_path() {
    let dir = scratch("missing");
    let base = spec(
        &dir,
        "harbor.corp.example.com/gitpod",
        "https://s3.example.com",
    );
    type Break = fn(&mut ReferenceArchitecture, &Path);
    let cases: Vec<(&str, &str, Break)> = vec![
        (
            "database.adminPassword",
            "SMS_TEST_UNSET_DB is not set",
            |s, _| {
                s.database.self_managed_mut().unwrap().admin_password =
                    gitpod_refarch::spec::SecretSource::env("SMS_TEST_UNSET_DB")
            },
        ),
        ("dns.tsigSecret", "cannot read", |s, d| {
            s.dns.self_managed_mut().unwrap().tsig_secret =
                gitpod_refarch::spec::SecretSource::file(d.join("gone").display().to_string())
        }),
        (
            "registry.password",
            "SMS_TEST_UNSET_REG is not set",
            |s, _| {
                s.registry.self_managed_mut().unwrap().password =
                    gitpod_refarch::spec::SecretSource::env("SMS_TEST_UNSET_REG")
            },
        ),
        (
            "storage.accessKeyId",
            "SMS_TEST_UNSET_KEY is not set",
            |s, _| {
                s.storage.self_managed_mut().unwrap().access_key_id =
                    gitpod_refarch::spec::SecretSource::env("SMS_TEST_UNSET_KEY")
            },
        ),
        ("storage.secretAccessKey", "cannot read", |s, d| {
            s.storage.self_managed_mut().unwrap().secret_access_key =
                gitpod_refarch::spec::SecretSource::file(d.join("none").display().to_string())
        }),
        ("database.tls.caFile", "cannot read", |s, d| {
            s.database.self_managed_mut().unwrap().tls.ca_file =
                Some(d.join("no-ca.pem").display().to_string())
        }),
        ("registry.caFile", "no CERTIFICATE", |s, d| {
            let f = d.join("junk.pem");
            std::fs::write(&f, "junk").unwrap();
            s.registry.self_managed_mut().unwrap().ca_file = Some(f.display().to_string())
        }),
    ];
    for (field, words, f) in cases {
        let mut s = base.clone();
        f(&mut s, &dir);
        let e = SelfManaged::for_spec(&s).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{field}: {e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("{field}: ")) && text.contains(words),
            "{field}: {text}"
        );
        for value in ["db-pw-0b7e", "reg-pw-44a1", "s3-secret-from-file", TSIG] {
            assert!(!text.contains(value), "{text}");
        }
    }
}
