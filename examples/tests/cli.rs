//! The example binary end to end, as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
        .current_dir(dir)
        .args(["--time-scale", "0.0002"])
        .args(args)
        .output()
        .expect("runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn apply_reapply_outputs_and_destroy_on_the_simulated_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("delegate gitpod.example.com to:"),
        "{}",
        text(&o)
    );
    let config = std::fs::read_to_string(dir.path().join("out/gitpod.config.yaml")).unwrap();
    assert!(config.contains("domain: gitpod.example.com"), "{config}");
    assert!(dir.path().join("out/secrets/database.yaml").exists());

    let o = run(dir.path(), &["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no changes"), "{}", text(&o));

    let o = run(dir.path(), &["outputs"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["nameServers"].as_array().map(Vec::len), Some(4));

    let o = run(dir.path(), &["--json", "destroy"]);
    assert!(o.status.success(), "{}", text(&o));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().any(|e| e["event"] == "step-done"));
    assert_eq!(events.last().unwrap()["event"], "run-finished");
    let sim = std::fs::read_to_string(dir.path().join(".gitpod-refarch/sim-cloud.json")).unwrap();
    let left: Vec<serde_json::Value> = serde_json::from_str(&sim).unwrap();
    assert!(left.is_empty(), "{sim}");
}

#[cfg(feature = "gcp")]
#[test]
fn a_malformed_manifest_digest_fails_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/gitpod-refarch-bootstrap/tests/data/cert-manager-test.yaml"
    );
    // Nothing listens on port 1: a call would fail with "cannot reach" instead.
    let o = Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
        .current_dir(dir.path())
        .args(["--cloud", "gcp", "--endpoint", "http://127.0.0.1:1"])
        .args([
            "--cert-manager-manifest",
            manifest,
            "--cert-manager-sha256",
            "abc",
        ])
        .arg("plan")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("not 64 hexadecimal digits"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("cannot reach"), "{}", text(&o));
}

#[test]
fn an_invalid_spec_fails_with_every_problem_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "cloud: aws\nname: Bad_Name\ndomain: example\nnodePools:\n  services:\n    minNodes: 9\n",
    )
    .unwrap();
    let o = run(dir.path(), &["--spec", "bad.yaml", "apply"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    for path in [
        "name:",
        "domain:",
        "nodePools.services.minNodes:",
        "certificates.email:",
    ] {
        assert!(t.contains(path), "missing {path} in {t}");
    }
    assert!(
        !dir.path().join(".gitpod-refarch").exists(),
        "state was written for an invalid spec"
    );
}

#[test]
fn an_unreachable_azure_endpoint_fails_fast_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("azure.yaml"),
        "cloud: azure\nname: gp\ndomain: gitpod.example.com\n\
         azure:\n  subscriptionId: 6b1f3c2e-5d4a-4b3c-9a8f-00000000fa6e\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n  \
         server: https://acme-v02.api.letsencrypt.org/directory\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
        .current_dir(dir.path())
        .env("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-00000000fa6e")
        .env("AZURE_CLIENT_ID", "0b1d2c3e-4f50-4172-8394-00000000fa6e")
        .env("AZURE_CLIENT_SECRET", "not-the-secret")
        .args(["--cloud", "azure", "--endpoint", "http://127.0.0.1:1"])
        .args(["--spec", "azure.yaml", "plan"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("127.0.0.1:1") || t.to_lowercase().contains("connect"),
        "{t}"
    );
    // An azure spec with another cloud's flag is refused before any call.
    let o = run(
        dir.path(),
        &["--cloud", "gcp", "--spec", "azure.yaml", "plan"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("not gcp"), "{}", text(&o));
}

/// A `moto_server` on a free port, killed on drop.
#[cfg(feature = "aws")]
struct Moto(std::process::Child, String);

#[cfg(feature = "aws")]
impl Moto {
    fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server not found: run scripts/test.sh (it installs moto[server])");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Moto(child, format!("http://127.0.0.1:{port}"))
    }
}

#[cfg(feature = "aws")]
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(feature = "aws")]
#[test]
fn the_aws_path_against_moto_applies_reapplies_and_destroys() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/aws.yaml");
    let aws = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
            .current_dir(dir.path())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .args(["--cloud", "aws", "--endpoint", &moto.1, "--spec", spec])
            // moto's EKS clusters have no API server to bootstrap.
            .arg("--no-in-cluster")
            // No terminal to confirm on: apply and destroy need --yes.
            .arg("--yes")
            .args(args)
            .output()
            .unwrap()
    };
    let o = aws(&["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("applied: 12 changed, 1 unchanged"),
        "{}",
        text(&o)
    );
    let config = std::fs::read_to_string(dir.path().join("out/gitpod.config.yaml")).unwrap();
    assert!(config.contains("s3storage"), "{config}");
    // verify on moto: the bucket really is written and read with the bucket-scoped
    // user's key Gitpod gets; RDS's host (moto's, not resolvable) is skipped, never
    // passed; the in-cluster registry and the cluster are not checked from here.
    let o = aws(&["verify", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let status = |id: &str| check_status(&report, id);
    assert_eq!(status("storage.bucket"), "pass", "{report:#}");
    assert_eq!(status("storage.put-get-delete"), "pass", "{report:#}");
    assert_eq!(status("database.connect"), "skipped", "{report:#}");
    let o = aws(&["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no changes"), "{}", text(&o));
    let o = aws(&["destroy"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = aws(&["plan"]);
    assert!(text(&o).contains("12 create, 1 no change"), "{}", text(&o));
    // Wrong cloud for the spec: a clear error before any call.
    let o = Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
        .current_dir(dir.path())
        .args(["--cloud", "aws", "--endpoint", &moto.1, "plan"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("not aws"), "{}", text(&o));
}

/// A standalone fake binary of the workspace (`fake-gcp`, `fake-azure`, `fake-kube`),
/// started on a free port and stopped with SIGTERM (killed on drop).
#[cfg(any(feature = "gcp", feature = "azure"))]
struct FakeProcess {
    child: std::process::Child,
    url: String,
    /// fake-kube's `--ca-file`: the PEM of the CA its certificate chains to.
    ca_file: Option<tempfile::TempPath>,
}

#[cfg(any(feature = "gcp", feature = "azure"))]
impl FakeProcess {
    fn binary(name: &str, package: &str) -> std::path::PathBuf {
        // target/<profile>/deps/cli-<hash> → target/<profile>/<name>
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().unwrap().parent().unwrap().join(name);
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-p", package, "--bin", name])
                .status()
                .unwrap();
            assert!(st.success(), "building {name} failed");
        }
        bin
    }

    fn start(name: &str, package: &str, args: &[&str]) -> FakeProcess {
        use std::io::BufRead as _;
        let mut child = Command::new(Self::binary(name, package))
            .args(["--port", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_string();
        // The Kubernetes fake serves HTTPS only, the cloud fakes plain HTTP.
        let scheme = if name == "fake-kube" { "https" } else { "http" };
        assert!(
            url.starts_with(&format!("{scheme}://127.0.0.1:")),
            "{name} first line: {url:?}"
        );
        FakeProcess {
            child,
            url,
            ca_file: None,
        }
    }

    /// `fake-kube`, its CA written to a temporary file.
    fn start_kube() -> FakeProcess {
        let ca = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let mut kube = Self::start(
            "fake-kube",
            "gitpod-refarch-fake-kube",
            &["--ca-file", ca.to_str().unwrap()],
        );
        kube.ca_file = Some(ca);
        kube
    }

    /// The `--ca-file` of `fake-kube`.
    fn ca_file(&self) -> &str {
        self.ca_file.as_ref().unwrap().to_str().unwrap()
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        self.child.wait().unwrap()
    }
}

#[cfg(any(feature = "gcp", feature = "azure"))]
impl Drop for FakeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on the Kubernetes fake over HTTPS/1.1, trusting its CA: (status, body).
#[cfg(any(feature = "gcp", feature = "azure"))]
fn kube_get(kube: &FakeProcess, path: &str) -> (u16, String) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::{Read as _, Write as _};
    let addr = kube.url.trim_start_matches("https://").to_string();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(kube.ca_file()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let ip: std::net::SocketAddr = addr.parse().unwrap();
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        ServerName::IpAddress(ip.ip().into()),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(ip).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[cfg(feature = "gcp")]
#[test]
fn the_gcp_path_against_the_standalone_fake_applies_reapplies_and_destroys() {
    // The Kubernetes fake stands in for the cluster's API server: the GCP fake reports
    // its address (bare, as GKE does) and its CA for every GKE cluster.
    let kube = FakeProcess::start_kube();
    let fake = FakeProcess::start(
        "fake-gcp",
        "gitpod-refarch-fake-gcp",
        &[
            "--project",
            "gitpod-refarch-demo",
            "--op-delay-ms",
            "20",
            "--kube-endpoint",
            &kube.url,
            "--kube-ca-file",
            kube.ca_file(),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/gitpod-refarch-bootstrap/tests/data/cert-manager-test.yaml"
    );
    let sha = Command::new("sha256sum").arg(manifest).output().unwrap();
    let sha = String::from_utf8(sha.stdout).unwrap()[..64].to_string();
    let gcp = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
            .current_dir(dir.path())
            .args(["--cloud", "gcp", "--endpoint", &fake.url])
            .args([
                "--cert-manager-manifest",
                manifest,
                "--cert-manager-sha256",
                &sha,
            ])
            .arg("--no-delegation-check")
            .arg("--yes")
            .args(args)
            .output()
            .unwrap()
    };
    // The embedded reference spec (GCP), as the README shows.
    let o = gcp(&["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("applied: 19 changed"), "{}", text(&o));
    // Inside the cluster: the certificate is issued, external-dns runs for Cloud DNS.
    let (status, cert) = kube_get(
        &kube,
        "/apis/cert-manager.io/v1/namespaces/gitpod/certificates/https-certificates",
    );
    assert_eq!(status, 200, "{cert}");
    assert!(cert.contains("\"Ready\""), "{cert}");
    let (status, edns) = kube_get(
        &kube,
        "/apis/apps/v1/namespaces/external-dns/deployments/external-dns",
    );
    assert_eq!(status, 200, "{edns}");
    assert!(edns.contains("--provider=google"), "{edns}");
    assert!(
        edns.contains("--google-project=gitpod-refarch-demo"),
        "{edns}"
    );
    let config = std::fs::read_to_string(dir.path().join("out/gitpod.config.yaml")).unwrap();
    assert!(config.contains("cloudSQL"), "{config}");
    assert!(
        config.contains("instance: gitpod-refarch-demo:europe-west1:sql-gitpod-"),
        "{config}"
    );
    assert!(dir.path().join("out/secrets/cloudsql.yaml").exists());
    assert!(dir.path().join("out/secrets/storage-gcp.yaml").exists());
    // verify: the cluster as Gitpod's installer checks it (each pool's nodes and labels,
    // cert-manager, the certificate, the secrets' keys) passes; Cloud SQL, GCS and
    // Artifact Registry are not reachable from here and are skipped, never passed.
    let o = gcp(&["verify", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let status = |id: &str| check_status(&report, id);
    for id in [
        "cluster.connect",
        "cluster.nodes",
        "cluster.node-labels.services",
        "cluster.node-labels.regular-ws",
        "cluster.node-labels.headless-ws",
        "cluster.cert-manager",
        "cluster.certificate",
        "cluster.secrets",
    ] {
        assert_eq!(status(id), "pass", "{id}: {report:#}");
    }
    assert_eq!(status("database.connect"), "skipped", "{report:#}");
    let o = gcp(&["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no changes"), "{}", text(&o));
    let o = gcp(&["destroy"]);
    assert!(o.status.success(), "{}", text(&o));
    for ns in ["gitpod", "cert-manager", "external-dns"] {
        let (status, _) = kube_get(&kube, &format!("/api/v1/namespaces/{ns}"));
        assert_eq!(status, 404, "namespace {ns} is left");
    }
    // Nothing left: every resource but the project preparation is to be created again.
    let o = gcp(&["plan"]);
    assert!(text(&o).contains("18 create, 1 no change"), "{}", text(&o));
    let status = fake.stop();
    assert!(status.success(), "fake-gcp exits 0 on SIGTERM: {status:?}");
    let status = kube.stop();
    assert!(status.success(), "fake-kube exits 0 on SIGTERM: {status:?}");
}

/// The status (`pass`, `fail`, `skipped`) of check `id` in a `verify --json` report.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn check_status(report: &serde_json::Value, id: &str) -> String {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .map(|c| c["status"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no check {id}: {report:#}"))
}

#[test]
fn help_documents_the_log_variables_and_yes() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--help"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    for word in ["GITPOD_REFARCH_LOG", "RUST_LOG", "--yes"] {
        assert!(t.contains(word), "{word} missing from --help:\n{t}");
    }
}

#[test]
fn the_log_filter_comes_from_gitpod_refarch_log_then_rust_log() {
    let dir = tempfile::tempdir().unwrap();
    let plan = |vars: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"));
        c.current_dir(dir.path())
            .env_remove("GITPOD_REFARCH_LOG")
            .env_remove("RUST_LOG")
            .args(["--time-scale", "0", "apply"]);
        for (k, v) in vars {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    // The engine logs every event of an apply at debug level.
    assert!(!plan(&[]).contains("DEBUG"));
    assert!(plan(&[("RUST_LOG", "debug")]).contains("DEBUG"));
    assert!(plan(&[("GITPOD_REFARCH_LOG", "debug")]).contains("DEBUG"));
    // The project's own variable wins.
    assert!(!plan(&[("GITPOD_REFARCH_LOG", "error"), ("RUST_LOG", "debug")]).contains("DEBUG"));
}

#[test]
fn a_byo_certificate_spec_applies_on_the_simulated_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/gitpod-refarch/tests/data/tls"
    );
    std::fs::write(
        dir.path().join("byo.yaml"),
        format!(
            "cloud: aws\nname: gp\ndomain: gitpod.example.com\ncertificates:\n  issuer: bringYourOwn\n  \
             secretName: my-tls\n  certificateFile: {data}/chain.pem\n  keyFile: {data}/leaf.key\n"
        ),
    )
    .unwrap();
    let o = run(dir.path(), &["--spec", "byo.yaml", "apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("issuer"), "{}", text(&o));
    let config = std::fs::read_to_string(dir.path().join("out/gitpod.config.yaml")).unwrap();
    assert!(
        config.contains("certificate:\n  kind: secret\n  name: my-tls"),
        "{config}"
    );
    let key = std::fs::read_to_string(format!("{data}/leaf.key")).unwrap();
    assert!(!text(&o).contains(key.lines().nth(1).unwrap()), "key shown");
    // A key that does not match: exit 2, the path, not the key.
    std::fs::write(
        dir.path().join("bad.yaml"),
        format!(
            "cloud: aws\nname: gp\ndomain: gitpod.example.com\ncertificates:\n  issuer: bringYourOwn\n  \
             secretName: my-tls\n  certificateFile: {data}/chain.pem\n  keyFile: {data}/other.key\n"
        ),
    )
    .unwrap();
    let o = run(dir.path(), &["--spec", "bad.yaml", "plan"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("certificates.keyFile"), "{}", text(&o));
    let other = std::fs::read_to_string(format!("{data}/other.key")).unwrap();
    assert!(
        !text(&o).contains(other.lines().nth(1).unwrap()),
        "key shown"
    );
}

#[test]
fn spec_files_are_read_at_most_one_mebibyte_and_bad_documents_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/zero never ends: refused after 1 MiB + 1 byte.
    let o = run(dir.path(), &["--spec", "/dev/zero", "plan"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("larger than"), "{}", text(&o));
    std::fs::write(
        dir.path().join("dup.yaml"),
        "cloud: aws\nname: gp\ndomain: a.example.com\ndomain: b.example.com\n",
    )
    .unwrap();
    let o = run(dir.path(), &["--spec", "dup.yaml", "apply"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("domain: duplicate key"), "{}", text(&o));
    assert!(
        !dir.path().join(".gitpod-refarch").exists(),
        "state written for a refused spec"
    );
    // A byte order mark is fine.
    std::fs::write(
        dir.path().join("bom.yaml"),
        "\u{feff}cloud: aws\nname: gp\ndomain: gitpod.example.com\ncertificates: {email: ops@example.com}\n",
    )
    .unwrap();
    let o = run(dir.path(), &["--spec", "bom.yaml", "plan"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// apply/destroy on a real cloud without a terminal and without --yes: refused before
/// any call (nothing listens on port 1: a call would say "cannot reach").
#[cfg(any(feature = "aws", feature = "gcp"))]
#[test]
fn real_cloud_apply_and_destroy_without_a_terminal_need_yes() {
    let dir = tempfile::tempdir().unwrap();
    let mut clouds = Vec::new();
    if cfg!(feature = "aws") {
        clouds.push((
            "aws",
            concat!(env!("CARGO_MANIFEST_DIR"), "/specs/aws.yaml").to_string(),
        ));
    }
    if cfg!(feature = "gcp") {
        clouds.push((
            "gcp",
            concat!(env!("CARGO_MANIFEST_DIR"), "/specs/reference.yaml").to_string(),
        ));
    }
    for (cloud, spec) in clouds {
        for cmd in ["apply", "destroy"] {
            let o = Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
                .current_dir(dir.path())
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .args([
                    "--cloud",
                    cloud,
                    "--endpoint",
                    "http://127.0.0.1:1",
                    "--spec",
                    &spec,
                ])
                .arg("--no-in-cluster")
                .arg(cmd)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(2), "{cloud} {cmd}: {}", text(&o));
            assert!(text(&o).contains("--yes"), "{cloud} {cmd}: {}", text(&o));
            assert!(
                !text(&o).contains("cannot reach"),
                "{cloud} {cmd}: {}",
                text(&o)
            );
            assert!(
                !dir.path().join(".gitpod-refarch").exists(),
                "{cloud} {cmd}"
            );
        }
    }
}

/// An invalid spec against a real cloud: exit 2, every problem, no call, no state.
#[cfg(feature = "aws")]
#[test]
fn an_invalid_spec_makes_no_call_to_a_real_cloud() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "cloud: aws\nname: gp\ndomain: gitpod.example.com\ncertificates: {email: mailto:ops@example.com}\n\
         storage: {bucket: sthree-gitpod}\ncluster: {network: {serviceCidr: 10.128.0.0/11}}\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
        .current_dir(dir.path())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .args([
            "--cloud",
            "aws",
            "--endpoint",
            "http://127.0.0.1:1",
            "--spec",
            "bad.yaml",
        ])
        .args(["--no-in-cluster", "--yes", "apply"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    for path in [
        "certificates.email:",
        "storage.bucket:",
        "cluster.network.serviceCidr:",
    ] {
        assert!(text(&o).contains(path), "missing {path}: {}", text(&o));
    }
    assert!(!text(&o).contains("cannot reach"), "{}", text(&o));
    assert!(!dir.path().join(".gitpod-refarch").exists());
}

#[cfg(feature = "azure")]
#[test]
fn the_azure_path_against_the_standalone_fake_applies_reapplies_and_destroys() {
    use gitpod_refarch_fake_azure::{
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SUBSCRIPTION, DEFAULT_TENANT,
    };
    // The Kubernetes fake stands in for the AKS cluster's API server.
    let kube = FakeProcess::start_kube();
    let fake = FakeProcess::start(
        "fake-azure",
        "gitpod-refarch-fake-azure",
        &[
            "--polls",
            "1",
            "--kube-endpoint",
            &kube.url,
            "--kube-ca-file",
            kube.ca_file(),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    // The shipped Azure spec (the fake's default subscription).
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/azure.yaml");
    assert!(std::fs::read_to_string(spec)
        .unwrap()
        .contains(DEFAULT_SUBSCRIPTION));
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/gitpod-refarch-bootstrap/tests/data/cert-manager-test.yaml"
    );
    let sha = Command::new("sha256sum").arg(manifest).output().unwrap();
    let sha = String::from_utf8(sha.stdout).unwrap()[..64].to_string();
    let azure = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
            .current_dir(dir.path())
            .env("AZURE_TENANT_ID", DEFAULT_TENANT)
            .env("AZURE_CLIENT_ID", DEFAULT_CLIENT_ID)
            .env("AZURE_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
            .args(["--cloud", "azure", "--endpoint", &fake.url])
            .args(["--spec", spec])
            .args([
                "--cert-manager-manifest",
                manifest,
                "--cert-manager-sha256",
                &sha,
            ])
            .arg("--no-delegation-check")
            .arg("--yes")
            .args(args)
            .output()
            .unwrap()
    };
    let o = azure(&["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("applied:"), "{}", text(&o));
    // Inside the cluster: the certificate is issued; external-dns and cert-manager run
    // on workload identity, with no credential in the cluster.
    let (status, cert) = kube_get(
        &kube,
        "/apis/cert-manager.io/v1/namespaces/gitpod/certificates/https-certificates",
    );
    assert_eq!(status, 200, "{cert}");
    assert!(cert.contains("\"Ready\""), "{cert}");
    let (status, edns) = kube_get(
        &kube,
        "/apis/apps/v1/namespaces/external-dns/deployments/external-dns",
    );
    assert_eq!(status, 200, "{edns}");
    assert!(edns.contains("--provider=azure"), "{edns}");
    assert!(edns.contains("azure.workload.identity/use"), "{edns}");
    let (status, sa) = kube_get(
        &kube,
        "/api/v1/namespaces/cert-manager/serviceaccounts/cert-manager",
    );
    assert_eq!(status, 200, "{sa}");
    assert!(sa.contains("azure.workload.identity/client-id"), "{sa}");
    let config = std::fs::read_to_string(dir.path().join("out/gitpod.config.yaml")).unwrap();
    assert!(
        config.contains("objectStorage:\n  inCluster: true"),
        "{config}"
    );
    assert!(config.contains(".azurecr.io/gitpod"), "{config}");
    // The database secret names the flexible server (values are base64).
    let db = std::fs::read_to_string(dir.path().join("out/secrets/database.yaml")).unwrap();
    use base64::Engine as _;
    let host = base64::engine::general_purpose::STANDARD.encode("mysql-gitpod-");
    assert!(db.contains(&host[..16]), "{db}");
    assert!(!dir.path().join("out/secrets/storage-azure.yaml").exists());
    // verify: the AKS cluster's pools, cert-manager, certificate and secrets pass; the
    // flexible server's private host and ACR are not reachable from here (skipped).
    let o = azure(&["verify", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let status = |id: &str| check_status(&report, id);
    for id in [
        "cluster.connect",
        "cluster.node-labels.services",
        "cluster.node-labels.regular-ws",
        "cluster.node-labels.headless-ws",
        "cluster.certificate",
        "cluster.secrets",
    ] {
        assert_eq!(status(id), "pass", "{id}: {report:#}");
    }
    assert_eq!(status("database.connect"), "skipped", "{report:#}");
    let o = azure(&["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no changes"), "{}", text(&o));
    let o = azure(&["destroy"]);
    assert!(o.status.success(), "{}", text(&o));
    for ns in ["gitpod", "cert-manager", "external-dns"] {
        let (status, _) = kube_get(&kube, &format!("/api/v1/namespaces/{ns}"));
        assert_eq!(status, 404, "namespace {ns} is left");
    }
    // Nothing left: the plan creates every cloud resource again (the in-cluster object
    // storage has nothing in the cloud to create).
    let o = azure(&["plan"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("18 create, 1 no change"), "{t}");
    let status = fake.stop();
    assert!(
        status.success(),
        "fake-azure exits 0 on SIGTERM: {status:?}"
    );
    let status = kube.stop();
    assert!(status.success(), "fake-kube exits 0 on SIGTERM: {status:?}");
}
