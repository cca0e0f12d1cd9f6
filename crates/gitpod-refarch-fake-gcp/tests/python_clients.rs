//! Google's official discovery-based Python client (`google-api-python-client`,
//! installed by `scripts/install-google-clients.sh`) runs the reference architecture
//! guide's GCP sequence against the fake (`scripts/google-python-clients.py`): an
//! independent client nobody here wrote, built from the same discovery documents.
//! It also checks that the fake refuses what GCP refuses (an unknown Kubernetes
//! version, machine type, tier or database flag, a bad flag value, a missing
//! network). Every call it made, and every answer, is then validated against the
//! discovery documents.
//!
//! A missing client fails the test (run `scripts/install-google-clients.sh`), unless
//! `GITPOD_REFARCH_SKIP_GOOGLE_CLIENTS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitpod_refarch_fake_gcp::discovery::{validate_call, Discovery};
use gitpod_refarch_fake_gcp::{FakeConfig, FakeGcp};

const SKIP: &str = "GITPOD_REFARCH_SKIP_GOOGLE_CLIENTS";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/google-python-clients.py")
}

fn client_installed() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import googleapiclient.discovery, google.auth.credentials",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Run the script against `url`; returns (success, stdout, stderr).
fn run_script(url: String, timeout: Duration) -> (bool, String, String) {
    let mut child = Command::new("python3")
        .arg(script())
        .env("GCP_FAKE_URL", url)
        .env("GCP_FAKE_DISCOVERY_DIR", Discovery::default_dir())
        .env("GCP_FAKE_PROJECT", "gitpod-py")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).ok();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap();
    let mut stderr = err_reader.join().unwrap();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {timeout:?})"));
    }
    (status.is_some_and(|s| s.success()), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_runs_the_guides_sequence() {
    if !client_installed() {
        if std::env::var_os(SKIP).is_some() {
            eprintln!(
                "SKIPPED the_official_python_client_runs_the_guides_sequence: google-api-python-client is not installed and {SKIP} is set"
            );
            return;
        }
        panic!(
            "google-api-python-client is not installed: run scripts/install-google-clients.sh (or set {SKIP} to skip this test)"
        );
    }
    let discovery = Discovery::load_default().unwrap_or_else(|e| panic!("{e}"));
    let fake = FakeGcp::start(FakeConfig::default().with_polls_to_finish(2))
        .await
        .unwrap();
    let url = fake.url();
    let (ok, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_script(url, Duration::from_secs(300)))
            .await
            .unwrap();
    eprintln!("{stdout}");
    assert!(
        ok,
        "scripts/google-python-clients.py failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("guide sequence passed"), "{stdout}");
    for refused in [
        "Kubernetes 1.22.12-gke.1200",
        "network that does not exist",
        "unknown machine type",
        "version GKE does not offer",
        "tier that does not exist",
        "invalid value of a boolean flag",
        "unknown database flag",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("- refused as GCP does (400): ") && l.contains(refused)),
            "not checked: {refused}\n{stdout}"
        );
    }

    // The client's own traffic, and the fake's answers, against the discovery documents.
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c.path.starts_with("/sql/v1beta4/")),
        "the client did not use Cloud SQL Admin v1beta4"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.method == "cloudresourcemanager.operations.get"
                && c.path.starts_with("/v1/operations/")),
        "the client did not poll a Resource Manager v1 operation"
    );
    let mut problems = Vec::new();
    for call in &calls {
        for p in validate_call(&discovery, call) {
            problems.push(format!(
                "{} {} -> {}: {p}",
                call.http_method, call.path, call.status
            ));
        }
    }
    eprintln!(
        "{} calls of the Python client validated against the discovery documents",
        calls.len()
    );
    assert!(
        problems.is_empty(),
        "{} mismatches with the discovery documents:\n{}",
        problems.len(),
        problems.join("\n")
    );
    fake.shutdown().await;
}
