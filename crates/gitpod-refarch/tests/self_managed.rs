//! Self-managed parts in the spec: `provider: selfManaged` for the database, DNS,
//! storage and registry; loading and merging over the cloud's defaults, validation
//! with field paths (secrets loaded from the environment and files), the plan of a
//! fully self-managed spec, and the engine's refusal of a provider that does not match.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use gitpod_refarch::engine::{Clock, TokioClock};
use gitpod_refarch::plan::{self, diff, Effect, Snapshot};
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress, ProviderInfo};
use gitpod_refarch::resource::{DatabaseResource, Desired, ResourceId, ResourceKind};
use gitpod_refarch::secret::Sources;
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::{
    Cloud, DatabaseChoice, DatabaseTlsMode, RecordsTarget, ReferenceArchitecture, RegistryMode,
    SecretSource, SelfManagedDatabaseSettings, SelfManagedDnsSettings, SelfManagedRegistrySettings,
    SelfManagedStorageSettings, TsigAlgorithm,
};
use gitpod_refarch::validate::{validate_with, ValidationErrors};
use gitpod_refarch::{async_trait, Database, Engine, ErrorKind, Providers};

/// A fresh directory for this test's secret files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gitpod-refarch-self-managed-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &std::path::Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

const CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls/ca.crt");
/// A TSIG secret as `tsig-keygen` prints it (base64 of 32 bytes).
const TSIG: &str = "2bQ3d5hJ4TqGx4pYpZQ0h1o0mI3Wz3p8F0oQXc8nF1A=";

/// The environment variables the specs below name (set once, unique to this file).
fn env() {
    std::env::set_var("SM_TEST_DB_ADMIN_PASSWORD", "db-admin-pw-7f3a");
    std::env::set_var("SM_TEST_REGISTRY_PASSWORD", "registry-pw-91c2");
    std::env::set_var("SM_TEST_S3_KEY_ID", "AKIAEXAMPLE");
    std::env::set_var("SM_TEST_S3_SECRET", "s3-secret-5d1e");
    std::env::set_var("SM_TEST_EMPTY", "");
}

/// An AWS cluster with the four parts self-managed, as YAML.
fn yaml(dir: &std::path::Path) -> String {
    env();
    let tsig = write(dir, "tsig.key", &format!("{TSIG}\n"));
    format!(
        r#"cloud: aws
name: gp
domain: gitpod.example.com
certificates: {{email: ops@example.com}}
database:
  provider: selfManaged
  host: db.corp.example.com
  adminUsername: root
  adminPassword: {{env: SM_TEST_DB_ADMIN_PASSWORD}}
  tls: {{mode: verifyIdentity, caFile: {CA}}}
dns:
  provider: selfManaged
  zone: example.com
  server: 192.0.2.53:53
  clusterServer: 10.0.0.53:53
  tsigKeyName: gitpod-refarch.
  tsigAlgorithm: hmac-sha512
  tsigSecret: {{file: {tsig}}}
  recordsTarget: {{ipv4: 203.0.113.10}}
registry:
  provider: selfManaged
  url: https://harbor.corp.example.com/gitpod
  username: robot$gitpod-push
  password: {{env: SM_TEST_REGISTRY_PASSWORD}}
  caFile: {CA}
storage:
  provider: selfManaged
  endpoint: https://minio.corp.example.com:9000
  bucket: gitpod-data
  accessKeyId: {{env: SM_TEST_S3_KEY_ID}}
  secretAccessKey: {{env: SM_TEST_S3_SECRET}}
"#
    )
}

fn self_managed_spec(test: &str) -> ReferenceArchitecture {
    let dir = scratch(test);
    ReferenceArchitecture::from_yaml(&yaml(&dir)).unwrap()
}

#[test]
fn each_choice_loads_with_its_defaults_and_round_trips() {
    let s = self_managed_spec("round-trip");
    s.validate().unwrap();
    let db = s.database.self_managed().unwrap();
    assert_eq!(db.port, 3306);
    assert_eq!(db.database_name, "gitpod");
    assert_eq!(db.username, "gitpod");
    assert_eq!(db.tls.mode, DatabaseTlsMode::VerifyIdentity);
    assert!(!db.allow_server_changes && !db.deletion_protection);
    assert_eq!(
        db.admin_password,
        SecretSource::env("SM_TEST_DB_ADMIN_PASSWORD")
    );
    let dns = s.dns.self_managed().unwrap();
    assert_eq!(dns.tsig_algorithm, TsigAlgorithm::HmacSha512);
    assert_eq!(dns.cluster_server.as_deref(), Some("10.0.0.53:53"));
    assert_eq!(s.zone_dns_name(), "example.com");
    let st = s.storage.self_managed().unwrap();
    assert_eq!(st.region, "us-east-1");
    assert!(st.create_bucket && st.path_style);
    assert_eq!(st.ca_file, None);
    let r = s.registry.self_managed().unwrap();
    assert_eq!(r.url_without_scheme(), "harbor.corp.example.com/gitpod");
    assert!(!r.insecure_http());
    // YAML and JSON round trips, each choice included.
    let back = ReferenceArchitecture::from_yaml(&s.to_yaml().unwrap()).unwrap();
    assert_eq!(back, s);
    let back = ReferenceArchitecture::from_json(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    let yaml = s.to_yaml().unwrap();
    assert!(yaml.contains("provider: selfManaged"), "{yaml}");
    assert!(yaml.contains("env: SM_TEST_DB_ADMIN_PASSWORD"), "{yaml}");
    // No secret value is in the spec, its YAML or its Debug.
    for value in [
        "db-admin-pw-7f3a",
        "registry-pw-91c2",
        "s3-secret-5d1e",
        TSIG,
    ] {
        assert!(!yaml.contains(value));
        assert!(!format!("{s:?}").contains(value));
    }
    // The cloud default stays the default.
    let cloud = ReferenceArchitecture::defaults(Cloud::Aws);
    assert!(!cloud.database.is_self_managed() && cloud.database.cloud().is_some());
    let yaml = cloud.to_yaml().unwrap();
    assert!(yaml.contains("provider: cloud"), "{yaml}");
    assert_eq!(ReferenceArchitecture::from_yaml(&yaml).unwrap(), cloud);
}

#[test]
fn a_self_managed_block_replaces_the_cloud_default_and_a_cloud_block_completes_it() {
    let s = ReferenceArchitecture::from_yaml(
        "cloud: gcp\ndatabase: {provider: selfManaged, host: db, adminUsername: root, adminPassword: {file: pw}}\n",
    )
    .unwrap();
    assert_eq!(
        s.database,
        DatabaseChoice::SelfManaged(SelfManagedDatabaseSettings::new(
            "db",
            "root",
            SecretSource::file("pw")
        ))
    );
    // Without a provider (or with `cloud`), the cloud's defaults are completed.
    for text in [
        "cloud: aws\ndatabase: {tier: db.r5.large}\n",
        "cloud: aws\ndatabase: {provider: cloud, tier: db.r5.large}\n",
    ] {
        let s = ReferenceArchitecture::from_yaml(text).unwrap();
        let db = s.database.cloud().unwrap();
        assert_eq!(db.tier, "db.r5.large");
        assert_eq!(db.storage_gb, 20);
        assert_eq!(db.mysql_version, "5.7");
    }
    // The cloud's fields do not mix into a self-managed block, and vice versa.
    let e = ReferenceArchitecture::from_yaml(
        "cloud: aws\ndatabase: {provider: selfManaged, host: db, adminUsername: root, adminPassword: {env: X}, tier: db.m5.large}\n",
    )
    .unwrap_err();
    assert!(e.problems()[0].message.contains("tier"), "{e}");
    assert_eq!(e.problems()[0].path, "database.tier", "{e}");
    let e = ReferenceArchitecture::from_yaml("cloud: aws\ndatabase: {host: db}\n").unwrap_err();
    assert!(e.problems()[0].message.contains("host"), "{e}");
    // Errors inside a choice keep their full path.
    let e = ReferenceArchitecture::from_yaml(
        "cloud: aws\ndatabase: {provider: selfManaged, host: db, port: lots, adminUsername: root, adminPassword: {env: X}}\n",
    )
    .unwrap_err();
    assert_eq!(e.problems()[0].path, "database.port", "{e}");
    let e =
        ReferenceArchitecture::from_yaml("cloud: gcp\ndatabase:\n  storageGb: lots\n").unwrap_err();
    assert_eq!(e.problems()[0].path, "database.storageGb", "{e}");
    let e = ReferenceArchitecture::from_yaml(
        "cloud: aws\ndns: {provider: selfManaged, zone: example.com, server: '192.0.2.53:53', tsigKeyName: k., tsigAlgorithm: hmac-md5, tsigSecret: {env: X}}\n",
    )
    .unwrap_err();
    assert_eq!(e.problems()[0].path, "dns.tsigAlgorithm", "{e}");
    let e = ReferenceArchitecture::from_yaml(
        "cloud: aws\nregistry: {provider: selfManaged, url: r.example.com/g, username: u, password: {vault: x}}\n",
    )
    .unwrap_err();
    assert_eq!(e.problems()[0].path, "registry.password", "{e}");
    let e =
        ReferenceArchitecture::from_yaml("cloud: aws\nstorage: {provider: onPrem}\n").unwrap_err();
    assert_eq!(e.problems()[0].path, "storage.provider", "{e}");
    let e = ReferenceArchitecture::from_yaml(
        "cloud: aws\nstorage: {provider: selfManaged, endpoint: 'https://s3', accessKeyId: {env: A}, secretAccessKey: {env: B}}\n",
    )
    .unwrap_err();
    assert_eq!(e.problems()[0].path, "storage", "{e}");
    assert!(e.problems()[0].message.contains("bucket"), "{e}");
}

#[test]
fn the_builder_sets_each_part() {
    env();
    let dir = scratch("builder");
    let tsig = write(&dir, "tsig.key", TSIG);
    let spec = ReferenceArchitecture::builder(Cloud::Aws)
        .name("gp")
        .domain("gitpod.example.com")
        .acme_email("ops@example.com")
        .records_target(RecordsTarget::Ipv4("203.0.113.10".into()))
        .self_managed_database(SelfManagedDatabaseSettings::new(
            "db.corp.example.com",
            "root",
            SecretSource::env("SM_TEST_DB_ADMIN_PASSWORD"),
        ))
        .self_managed_dns(SelfManagedDnsSettings::new(
            "gitpod.example.com",
            "192.0.2.53:53",
            "gitpod-refarch.",
            SecretSource::file(tsig),
        ))
        .self_managed_registry(SelfManagedRegistrySettings::new(
            "http://127.0.0.1:5000/gitpod",
            "push",
            SecretSource::env("SM_TEST_REGISTRY_PASSWORD"),
        ))
        .self_managed_storage(SelfManagedStorageSettings::new(
            "http://127.0.0.1:9000",
            "gitpod",
            SecretSource::env("SM_TEST_S3_KEY_ID"),
            SecretSource::env("SM_TEST_S3_SECRET"),
        ))
        // Changing the cloud database's settings does nothing now.
        .database(|d| d.tier = "nonsense".into())
        .build()
        .unwrap();
    assert!(spec.database.is_self_managed() && spec.dns.is_self_managed());
    assert!(spec.registry.is_self_managed() && spec.storage.is_self_managed());
    // The records target set before is kept.
    assert!(spec.dns.records_target().is_some());
    let warnings = gitpod_refarch::validate::warnings(&spec);
    assert!(
        warnings.iter().any(|w| w.path == "storage.endpoint"),
        "{warnings:?}"
    );
    // A loopback plain-HTTP registry is not worth a warning.
    assert!(!warnings.iter().any(|w| w.path == "registry.url"));
    assert!(!warnings.iter().any(|w| w.path.starts_with("database.")));
}

/// Apply `f` to the valid self-managed spec and return its problems.
fn problems(
    test: &str,
    f: impl FnOnce(&mut ReferenceArchitecture, &std::path::Path),
) -> ValidationErrors {
    let dir = scratch(test);
    let mut s = ReferenceArchitecture::from_yaml(&yaml(&dir)).unwrap();
    s.validate().unwrap();
    f(&mut s, &dir);
    s.validate().expect_err("must be refused")
}

fn db(s: &mut ReferenceArchitecture) -> &mut SelfManagedDatabaseSettings {
    s.database.self_managed_mut().unwrap()
}
fn dns(s: &mut ReferenceArchitecture) -> &mut SelfManagedDnsSettings {
    s.dns.self_managed_mut().unwrap()
}
fn storage(s: &mut ReferenceArchitecture) -> &mut SelfManagedStorageSettings {
    s.storage.self_managed_mut().unwrap()
}
fn registry(s: &mut ReferenceArchitecture) -> &mut SelfManagedRegistrySettings {
    s.registry.self_managed_mut().unwrap()
}

type Mutation = Box<dyn FnOnce(&mut ReferenceArchitecture, &std::path::Path)>;

#[test]
fn each_problem_is_reported_at_its_field_before_any_call() {
    let cases: Vec<(&str, &str, Mutation)> = vec![
        (
            "database.host",
            "required",
            Box::new(|s, _| db(s).host = String::new()),
        ),
        (
            "database.host",
            "port",
            Box::new(|s, _| db(s).host = "db.corp:3306".into()),
        ),
        (
            "database.host",
            "scheme",
            Box::new(|s, _| db(s).host = "mysql://db.corp".into()),
        ),
        (
            "database.host",
            "label",
            Box::new(|s, _| db(s).host = "db_1.corp".into()),
        ),
        ("database.port", "65535", Box::new(|s, _| db(s).port = 0)),
        (
            "database.adminUsername",
            "required",
            Box::new(|s, _| db(s).admin_username = String::new()),
        ),
        (
            "database.adminPassword",
            "SM_TEST_UNSET_VARIABLE is not set",
            Box::new(|s, _| db(s).admin_password = SecretSource::env("SM_TEST_UNSET_VARIABLE")),
        ),
        (
            "database.adminPassword",
            "SM_TEST_EMPTY is empty",
            Box::new(|s, _| db(s).admin_password = SecretSource::env("SM_TEST_EMPTY")),
        ),
        (
            "database.adminPassword",
            "cannot read",
            Box::new(|s, d| {
                db(s).admin_password = SecretSource::file(d.join("missing").display().to_string())
            }),
        ),
        (
            "database.adminPassword",
            "is empty",
            Box::new(|s, d| db(s).admin_password = SecretSource::file(write(d, "blank", " \n"))),
        ),
        (
            "database.adminPassword",
            "larger than 64 KiB",
            Box::new(|s, d| {
                db(s).admin_password = SecretSource::file(write(d, "big", &"x".repeat(70_000)))
            }),
        ),
        (
            "database.tls.caFile",
            "no CERTIFICATE",
            Box::new(|s, d| db(s).tls.ca_file = Some(write(d, "not-a-ca.pem", "hello\n"))),
        ),
        (
            "database.tls.caFile",
            "cannot read",
            Box::new(|s, d| db(s).tls.ca_file = Some(d.join("nope.pem").display().to_string())),
        ),
        (
            "database.tls.caFile",
            "disabled",
            Box::new(|s, _| db(s).tls.mode = DatabaseTlsMode::Disabled),
        ),
        (
            "database.username",
            "adminUsername",
            Box::new(|s, _| db(s).username = "ROOT".into()),
        ),
        (
            "database.username",
            "1-32",
            Box::new(|s, _| db(s).username = "git-pod".into()),
        ),
        (
            "database.databaseName",
            "1-64",
            Box::new(|s, _| db(s).database_name = "git pod".into()),
        ),
        (
            "dns.server",
            "no port",
            Box::new(|s, _| dns(s).server = "192.0.2.53".into()),
        ),
        (
            "dns.server",
            "65535",
            Box::new(|s, _| dns(s).server = "192.0.2.53:0".into()),
        ),
        (
            "dns.server",
            "65535",
            Box::new(|s, _| dns(s).server = "192.0.2.53:65536".into()),
        ),
        (
            "dns.server",
            "required",
            Box::new(|s, _| dns(s).server = String::new()),
        ),
        (
            "dns.server",
            "brackets",
            Box::new(|s, _| dns(s).server = "2001:db8::1:53".into()),
        ),
        (
            "dns.clusterServer",
            "65535",
            Box::new(|s, _| dns(s).cluster_server = Some("ns:x".into())),
        ),
        (
            "dns.tsigKeyName",
            "not a DNS name",
            Box::new(|s, _| dns(s).tsig_key_name = "gitpod key".into()),
        ),
        (
            "dns.tsigKeyName",
            "required",
            Box::new(|s, _| dns(s).tsig_key_name = String::new()),
        ),
        (
            "dns.tsigSecret",
            "not base64",
            Box::new(|s, d| {
                dns(s).tsig_secret = SecretSource::file(write(d, "bad.key", "not*base64!"))
            }),
        ),
        (
            "dns.tsigSecret",
            "SM_TEST_UNSET_TSIG is not set",
            Box::new(|s, _| dns(s).tsig_secret = SecretSource::env("SM_TEST_UNSET_TSIG")),
        ),
        (
            "dns.zone",
            "not inside zone",
            Box::new(|s, _| dns(s).zone = "example.org".into()),
        ),
        (
            "dns.zone",
            "label",
            Box::new(|s, _| dns(s).zone = "exa mple.com".into()),
        ),
        (
            "dns.recordsTarget.hostname",
            "zone apex",
            Box::new(|s, _| {
                dns(s).zone = "gitpod.example.com".into();
                dns(s).records_target = Some(RecordsTarget::Hostname("lb.example.net".into()));
            }),
        ),
        (
            "dns.recordsTarget.ipv4",
            "not an IPv4",
            Box::new(|s, _| dns(s).records_target = Some(RecordsTarget::Ipv4("1.2.3".into()))),
        ),
        (
            "registry.url",
            "required",
            Box::new(|s, _| registry(s).url = String::new()),
        ),
        (
            "registry.url",
            "only http",
            Box::new(|s, _| registry(s).url = "ftp://r.example.com/g".into()),
        ),
        (
            "registry.url",
            "path component",
            Box::new(|s, _| registry(s).url = "r.example.com/Gitpod".into()),
        ),
        (
            "registry.url",
            "65535",
            Box::new(|s, _| registry(s).url = "r.example.com:99999/g".into()),
        ),
        (
            "registry.url",
            "credentials",
            Box::new(|s, _| registry(s).url = "u:p@r.example.com/g".into()),
        ),
        (
            "registry.username",
            "required",
            Box::new(|s, _| registry(s).username = String::new()),
        ),
        (
            "registry.password",
            "SM_TEST_UNSET_REGISTRY is not set",
            Box::new(|s, _| registry(s).password = SecretSource::env("SM_TEST_UNSET_REGISTRY")),
        ),
        (
            "registry.caFile",
            "cannot read",
            Box::new(|s, d| registry(s).ca_file = Some(d.join("no-ca.pem").display().to_string())),
        ),
        (
            "storage.endpoint",
            "not a URL",
            Box::new(|s, _| storage(s).endpoint = "minio.corp:9000".into()),
        ),
        (
            "storage.endpoint",
            "scheme",
            Box::new(|s, _| storage(s).endpoint = "ftp://minio.corp".into()),
        ),
        (
            "storage.endpoint",
            "path",
            Box::new(|s, _| storage(s).endpoint = "https://minio.corp/gitpod".into()),
        ),
        (
            "storage.endpoint",
            "credentials",
            Box::new(|s, _| storage(s).endpoint = "https://a:b@minio.corp".into()),
        ),
        (
            "storage.endpoint",
            "required",
            Box::new(|s, _| storage(s).endpoint = String::new()),
        ),
        (
            "storage.bucket",
            "3-63",
            Box::new(|s, _| storage(s).bucket = "Gitpod_Bucket".into()),
        ),
        (
            "storage.bucket",
            "start and end",
            Box::new(|s, _| storage(s).bucket = "-gitpod".into()),
        ),
        (
            "storage.bucket",
            "not allowed",
            Box::new(|s, _| storage(s).bucket = "192.168.1.1".into()),
        ),
        (
            "storage.region",
            "lower-case",
            Box::new(|s, _| storage(s).region = String::new()),
        ),
        (
            "storage.accessKeyId",
            "SM_TEST_UNSET_KEY is not set",
            Box::new(|s, _| storage(s).access_key_id = SecretSource::env("SM_TEST_UNSET_KEY")),
        ),
        (
            "storage.secretAccessKey",
            "cannot read",
            Box::new(|s, d| {
                storage(s).secret_access_key =
                    SecretSource::file(d.join("none").display().to_string())
            }),
        ),
        (
            "storage.caFile",
            "no CERTIFICATE",
            Box::new(|s, d| storage(s).ca_file = Some(write(d, "empty.pem", "\n"))),
        ),
    ];
    for (i, (path, words, f)) in cases.into_iter().enumerate() {
        let e = problems(&format!("case-{i}"), f);
        assert!(
            e.problems()
                .iter()
                .any(|p| p.path == path && p.message.contains(words)),
            "case {i}: wanted '{words}' at {path}, got {e}"
        );
    }
}

#[test]
fn valid_forms_are_accepted() {
    let ok: Vec<Mutation> = vec![
        Box::new(|s, _| db(s).host = "10.0.0.5".into()),
        Box::new(|s, _| db(s).host = "2001:db8::5".into()),
        Box::new(|s, _| db(s).host = "mysql".into()),
        Box::new(|s, _| dns(s).server = "[2001:db8::53]:53".into()),
        Box::new(|s, _| dns(s).server = "ns1.corp.example.com:5353".into()),
        Box::new(|s, _| dns(s).tsig_key_name = "gitpod-refarch".into()),
        Box::new(|s, _| dns(s).zone = "gitpod.example.com".into()),
        Box::new(|s, _| registry(s).url = "http://127.0.0.1:5000/gitpod/ws".into()),
        Box::new(|s, _| registry(s).url = "registry.local:5000".into()),
        Box::new(|s, _| storage(s).endpoint = "http://10.0.0.9:9000/".into()),
        Box::new(|s, _| storage(s).bucket = "gitpod.data".into()),
    ];
    for (i, f) in ok.into_iter().enumerate() {
        let dir = scratch(&format!("ok-{i}"));
        let mut s = ReferenceArchitecture::from_yaml(&yaml(&dir)).unwrap();
        f(&mut s, &dir);
        s.validate()
            .unwrap_or_else(|e| panic!("case {i} refused: {e}"));
    }
}

#[test]
fn no_problem_quotes_a_secret_value() {
    let e = problems("no-leak", |s, d| {
        // A file secret that is not base64: the message names the field, not the text.
        dns(s).tsig_secret = SecretSource::file(write(d, "k", "hunter2-not-base64!"));
        db(s).admin_password = SecretSource::env("SM_TEST_EMPTY");
    });
    let text = e.to_string();
    assert!(e.has_path("dns.tsigSecret") && e.has_path("database.adminPassword"));
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn secret_sources_load_trimmed_values_and_print_only_their_source() {
    env();
    let dir = scratch("sources");
    let f = write(&dir, "pw", "  s3cr3t-value \n");
    let v = SecretSource::file(&f).load("x.y").unwrap();
    assert_eq!(v.expose(), "s3cr3t-value");
    assert!(!format!("{v:?}{v}").contains("s3cr3t"));
    let e = SecretSource::env("SM_TEST_S3_SECRET").load("a.b").unwrap();
    assert_eq!(e.expose(), "s3-secret-5d1e");
    let p = SecretSource::env("SM_TEST_NOT_THERE")
        .load("a.b")
        .unwrap_err();
    assert_eq!(p.path, "a.b");
    // Not UTF-8.
    let bin = dir.join("bin");
    std::fs::write(&bin, [0xff, 0xfe, 0x00]).unwrap();
    let p = SecretSource::file(bin.display().to_string())
        .load("a.b")
        .unwrap_err();
    assert!(p.message.contains("not UTF-8"), "{p}");
    assert_eq!(SecretSource::file(&f).to_string(), format!("file {f}"));
}

fn node(nodes: &[plan::Node], kind: ResourceKind) -> plan::Node {
    nodes
        .iter()
        .find(|n| n.id().kind == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind:?}"))
}

#[test]
fn a_fully_self_managed_plan_names_the_servers_and_keeps_the_ids() {
    let s = self_managed_spec("plan");
    let cloud = {
        let mut c = s.clone();
        let d = ReferenceArchitecture::defaults(Cloud::Aws);
        c.database = d.database;
        c.dns = d.dns;
        c.storage = d.storage;
        c.registry = d.registry;
        c
    };
    let nodes = plan::graph(&s);
    // Same resources and ids as a cloud spec (records aside: the cloud spec has none).
    let ids = |n: &[plan::Node]| -> Vec<ResourceId> {
        n.iter()
            .map(plan::Node::id)
            .filter(|i| i.kind != ResourceKind::DnsRecords)
            .collect()
    };
    assert_eq!(ids(&nodes), ids(&plan::graph(&cloud)));

    let inst = node(&nodes, ResourceKind::DatabaseInstance);
    assert!(inst.depends_on.is_empty(), "{:?}", inst.depends_on);
    let Desired::DatabaseInstance(d) = &inst.desired else {
        panic!()
    };
    assert_eq!(d.server.as_deref(), Some("db.corp.example.com:3306"));
    assert_eq!(d.admin_username, "root");
    assert_eq!(
        (d.tier.as_str(), d.mysql_version.as_str(), d.storage_gb),
        ("", "", 0)
    );
    assert!(d.flags.is_empty() && !d.high_availability && !d.backups_enabled);
    assert_eq!(
        inst.desired.summary(),
        "existing MySQL at db.corp.example.com:3306"
    );
    let database = node(&nodes, ResourceKind::Database);
    assert_eq!(database.depends_on, vec![inst.id()]);

    let zone = node(&nodes, ResourceKind::DnsZone);
    let Desired::DnsZone(z) = &zone.desired else {
        panic!()
    };
    assert_eq!(z.server.as_deref(), Some("192.0.2.53:53"));
    assert_eq!(z.dns_name, "example.com");
    assert_eq!(
        zone.desired.summary(),
        "zone example.com on 192.0.2.53:53 (RFC 2136)"
    );
    let records = node(&nodes, ResourceKind::DnsRecords);
    assert_eq!(records.depends_on, vec![zone.id()]);

    let reg = node(&nodes, ResourceKind::Registry);
    let Desired::Registry(r) = &reg.desired else {
        panic!()
    };
    assert_eq!(r.url.as_deref(), Some("harbor.corp.example.com/gitpod"));
    assert_eq!(r.mode, RegistryMode::Managed);
    assert!(reg
        .desired
        .summary()
        .contains("harbor.corp.example.com/gitpod"));

    let st = node(&nodes, ResourceKind::ObjectStorage);
    let Desired::ObjectStorage(o) = &st.desired else {
        panic!()
    };
    assert_eq!(
        o.endpoint.as_deref(),
        Some("https://minio.corp.example.com:9000")
    );
    assert_eq!(o.bucket.as_deref(), Some("gitpod-data"));
    assert_eq!(o.region, "us-east-1");
    assert!(st.desired.summary().contains("minio.corp.example.com:9000"));

    // The cloud parts keep their fields empty.
    for n in plan::graph(&cloud) {
        match n.desired {
            Desired::DatabaseInstance(d) => assert!(d.server.is_none()),
            Desired::DnsZone(z) => assert!(z.server.is_none()),
            Desired::Registry(r) => assert!(r.url.is_none()),
            Desired::ObjectStorage(o) => assert!(o.endpoint.is_none()),
            _ => {}
        }
    }

    // The plan prints the summaries; nothing secret.
    let p = plan::plan(&s, &Snapshot::default()).unwrap();
    let text = p.to_string();
    assert!(
        text.contains("existing MySQL at db.corp.example.com:3306"),
        "{text}"
    );
    for value in [
        "db-admin-pw-7f3a",
        "registry-pw-91c2",
        "s3-secret-5d1e",
        TSIG,
    ] {
        assert!(!text.contains(value) && !p.to_json().unwrap().contains(value));
    }
}

#[test]
fn another_server_is_a_replacement() {
    let s = self_managed_spec("replace");
    let nodes = plan::graph(&s);
    let mut other = s.clone();
    db(&mut other).host = "db2.corp.example.com".into();
    dns(&mut other).server = "192.0.2.54:53".into();
    registry(&mut other).url = "harbor2.corp.example.com/gitpod".into();
    storage(&mut other).endpoint = "https://minio2.corp.example.com".into();
    let moved = plan::graph(&other);
    for (kind, field) in [
        (ResourceKind::DatabaseInstance, "server"),
        (ResourceKind::DnsZone, "server"),
        (ResourceKind::Registry, "url"),
        (ResourceKind::ObjectStorage, "endpoint"),
    ] {
        let changes = diff(&node(&moved, kind).desired, &node(&nodes, kind).desired);
        let c = changes
            .iter()
            .find(|c| c.path == field)
            .unwrap_or_else(|| panic!("{kind:?}: {changes:?}"));
        assert_eq!(c.effect, Effect::Replace, "{kind:?}");
    }
    // As a plan: the instance exists on the old server, the spec names another.
    let mut snap = Snapshot::default();
    for n in &nodes {
        snap.observed
            .insert(n.id(), Some(Observed::ready(n.desired.clone(), None)));
    }
    let p = plan::plan(&other, &snap).unwrap();
    let id = node(&nodes, ResourceKind::DatabaseInstance).id();
    assert!(
        matches!(p.step(&id).unwrap().action, plan::Action::Replace { .. }),
        "{p}"
    );
}

#[test]
fn deletion_protection_on_an_existing_server_keeps_the_database() {
    let mut s = self_managed_spec("protect");
    db(&mut s).deletion_protection = true;
    let mut snap = Snapshot::default();
    for n in plan::graph(&s) {
        snap.observed
            .insert(n.id(), Some(Observed::ready(n.desired, None)));
    }
    let p = plan::plan_destroy(&s, &snap).unwrap();
    for kind in [ResourceKind::DatabaseInstance, ResourceKind::Database] {
        let id = node(&plan::graph(&s), kind).id();
        assert!(
            matches!(p.step(&id).unwrap().action, plan::Action::Retain { .. }),
            "{kind:?}: {p}"
        );
    }
    // Nothing else is held back for it (no network dependency).
    let net = ResourceId::new(ResourceKind::Network, "gp");
    assert!(
        matches!(p.step(&net).unwrap().action, plan::Action::Delete),
        "{p}"
    );
}

/// The sim's database, declared self-managed (everything else delegated).
struct LabelledSelfManaged(Arc<SimCloud>);

#[async_trait]
impl Database for LabelledSelfManaged {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("labelled-self-managed").with_self_managed(true)
    }
    async fn observe(
        &self,
        r: &DatabaseResource,
    ) -> gitpod_refarch::Result<Option<Observed<DatabaseResource>>> {
        Database::observe(&*self.0, r).await
    }
    async fn ensure(
        &self,
        r: &DatabaseResource,
        inputs: &Inputs,
    ) -> gitpod_refarch::Result<Progress> {
        Database::ensure(&*self.0, r, inputs).await
    }
    async fn delete(&self, r: &DatabaseResource) -> gitpod_refarch::Result<Progress> {
        Database::delete(&*self.0, r).await
    }
    async fn poll(&self, op: &Operation) -> gitpod_refarch::Result<Progress> {
        Database::poll(&*self.0, op).await
    }
}

/// The simulated cloud for every part but the database, which goes to a provider
/// that calls itself self-managed.
fn self_managed_database(sim: &Arc<SimCloud>) -> Providers {
    Providers::builder()
        .cluster(sim.clone())
        .dns(sim.clone())
        .object_store(sim.clone())
        .registry(sim.clone())
        .database(Arc::new(LabelledSelfManaged(sim.clone())))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_engine_refuses_a_part_routed_to_the_wrong_kind_of_provider() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let sim = Arc::new(SimCloud::new(clock.clone(), LatencyProfile::instant()));
    let engine = Engine::builder(Providers::all(sim.clone()))
        .clock(clock.clone())
        .build()
        .unwrap();
    // Self-managed parts, cloud providers.
    let s = self_managed_spec("mismatch");
    for result in [engine.plan(&s).await, engine.plan_destroy(&s).await] {
        let e = result.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let text = e.to_string();
        assert!(
            text.contains(
                "database.provider is selfManaged but the database provider \"sim\" is not a self-managed provider"
            ),
            "{text}"
        );
        for part in ["dns.provider", "storage.provider", "registry.provider"] {
            assert!(text.contains(part), "{text}");
        }
    }
    assert!(engine.apply_spec(&s).await.is_err());
    assert!(engine.destroy(&s).await.is_err());
    // Not a single call reached the sim.
    let n = sim.counts();
    assert_eq!((n.reads, n.mutating, n.polls), (0, 0, 0), "{n:?}");

    // The other way round: a cloud database routed to a self-managed provider.
    let engine = Engine::builder(self_managed_database(&sim))
        .clock(clock)
        .build()
        .unwrap();
    let mut cloud = ReferenceArchitecture::builder(Cloud::Aws)
        .name("gp")
        .domain("gitpod.example.com")
        .acme_email("ops@example.com")
        .build()
        .unwrap();
    let e = engine.plan(&cloud).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains(
            "database.provider is cloud but the database provider \"labelled-self-managed\" is a self-managed provider"
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("dns.provider"), "{e}");
    // Matching choices plan.
    env();
    cloud.database = SelfManagedDatabaseSettings::new(
        "db.corp.example.com",
        "root",
        SecretSource::env("SM_TEST_DB_ADMIN_PASSWORD"),
    )
    .into();
    let p = engine.plan(&cloud).await.unwrap();
    assert!(p.has_changes());
}

#[test]
fn the_example_spec_loads_and_validates_with_its_variables() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/specs/self-managed.yaml"
    );
    let s = ReferenceArchitecture::from_path(std::path::Path::new(path)).unwrap();
    assert!(s.database.is_self_managed() && s.dns.is_self_managed());
    assert!(s.registry.is_self_managed() && s.storage.is_self_managed());
    let vars = [
        ("GITPOD_DB_ADMIN_PASSWORD", "example-db-password"),
        ("GITPOD_DNS_TSIG_SECRET", TSIG),
        ("GITPOD_REGISTRY_PASSWORD", "example-registry-password"),
        ("GITPOD_S3_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("GITPOD_S3_SECRET_ACCESS_KEY", "example-s3-secret"),
    ];
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    s.validate().unwrap();
    std::env::remove_var("GITPOD_REGISTRY_PASSWORD");
    let e = s.validate().unwrap_err();
    assert!(e.has_path("registry.password"), "{e}");
}

/// Variables and files from a table, as a controller supplies them from its own
/// store instead of the process's environment and disk.
#[derive(Debug, Default)]
struct Table(Vec<(String, String)>);

impl Sources for Table {
    fn env(&self, name: &str) -> Result<String, String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("no {name} in the table"))
    }

    fn file(&self, path: &str, _limit: u64) -> Result<Vec<u8>, String> {
        self.env(path).map(String::into_bytes)
    }
}

#[test]
fn a_spec_lists_its_references_and_validates_them_from_the_sources_given() {
    let s = self_managed_spec("sources");
    let refs = s.references();
    let fields: Vec<&str> = refs.iter().map(|r| r.field).collect();
    assert_eq!(
        fields,
        [
            "database.adminPassword",
            "database.tls.caFile",
            "dns.tsigSecret",
            "storage.accessKeyId",
            "storage.secretAccessKey",
            "registry.password",
            "registry.caFile",
        ]
    );
    assert_eq!(
        refs[0].source,
        SecretSource::env("SM_TEST_DB_ADMIN_PASSWORD")
    );
    assert_eq!(refs[1].source, SecretSource::file(CA));
    // The process has every variable and file: valid.
    s.validate().unwrap();
    // An empty table: each reference is a problem at its field, and nothing else.
    let e = validate_with(&s, &Table::default()).unwrap_err();
    let mut paths: Vec<&str> = e.problems().iter().map(|p| p.path.as_str()).collect();
    let mut expected = fields.clone();
    paths.sort_unstable();
    expected.sort_unstable();
    assert_eq!(paths, expected, "{e}");
    assert!(
        e.to_string()
            .contains("no SM_TEST_DB_ADMIN_PASSWORD in the table"),
        "{e}"
    );
    // The same values from the table, under the names and paths: valid.
    let table = Table(
        refs.iter()
            .map(|r| match &r.source {
                SecretSource::Env(n) => (n.clone(), std::env::var(n).unwrap()),
                SecretSource::File(p) => (p.clone(), std::fs::read_to_string(p).unwrap()),
                other => panic!("{other}"),
            })
            .collect(),
    );
    validate_with(&s, &table).unwrap();
    assert!(plan::plan_with_sources(&s, &Snapshot::default(), &table).is_ok());
    assert!(plan::plan_with_sources(&s, &Snapshot::default(), &Table::default()).is_err());
    // A cloud-only spec names nothing.
    assert!(ReferenceArchitecture::defaults(Cloud::Gcp)
        .references()
        .is_empty());
}

#[tokio::test]
async fn the_engine_validates_with_its_sources_not_the_process() {
    env();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let sim = Arc::new(SimCloud::new(clock.clone(), LatencyProfile::instant()));
    let providers = || self_managed_database(&sim);
    let mut spec = ReferenceArchitecture::builder(Cloud::Aws)
        .name("gp")
        .domain("gitpod.example.com")
        .acme_email("ops@example.com")
        .build()
        .unwrap();
    spec.database = SelfManagedDatabaseSettings::new(
        "db.corp.example.com",
        "root",
        SecretSource::env("SM_TEST_DB_ADMIN_PASSWORD"),
    )
    .into();
    // The process has the variable, the engine's sources do not: refused, no call.
    let engine = Engine::builder(providers())
        .clock(clock.clone())
        .sources(Arc::new(Table::default()))
        .build()
        .unwrap();
    for result in [engine.plan(&spec).await, engine.plan_destroy(&spec).await] {
        let e = result.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.chain()
                .contains("database.adminPassword: no SM_TEST_DB_ADMIN_PASSWORD in the table"),
            "{}",
            e.chain()
        );
    }
    let n = sim.counts();
    assert_eq!((n.reads, n.mutating, n.polls), (0, 0, 0), "{n:?}");
    // The sources have it: planned.
    let table = Table(vec![(
        "SM_TEST_DB_ADMIN_PASSWORD".into(),
        "from-the-table".into(),
    )]);
    let engine = Engine::builder(providers())
        .clock(clock)
        .sources(Arc::new(table))
        .build()
        .unwrap();
    assert!(engine.plan(&spec).await.unwrap().has_changes());
}
