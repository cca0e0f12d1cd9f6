//! The official Azure Python management clients (`azure-mgmt-*`, installed by
//! `scripts/install-azure-clients.sh`) drive the Azure fake through every resource's
//! life cycle (`scripts/azure-python-clients.py`): an independent client nobody here
//! wrote, with its own serializers and LRO poller. Every call they made is then
//! validated against the same packages' models (`tests/model_check`).
//!
//! Skips (with a message) only when `GITPOD_REFARCH_AZURE_MODELS` is unset and the
//! clients are not installed; `scripts/test.sh` sets the variable, so there a missing
//! install fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod model_check;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitpod_refarch_fake_azure::{
    FakeAzure, FakeConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SUBSCRIPTION,
    DEFAULT_TENANT,
};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/azure-python-clients.py")
}

fn clients_installed() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import azure.mgmt.containerservice, azure.mgmt.network, azure.mgmt.mysqlflexibleservers, azure.mgmt.containerregistry, azure.mgmt.resource.resources, azure.mgmt.msi, azure.mgmt.authorization, azure.mgmt.dns, azure.mgmt.privatedns",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Run the script against `url`; returns (success, stdout, stderr).
fn run_script(url: String, prefix: &str, timeout: Duration) -> (bool, String, String) {
    let mut child = Command::new("python3")
        .arg(script())
        .env("AZURE_FAKE_URL", url)
        .env("AZURE_FAKE_SUBSCRIPTION", DEFAULT_SUBSCRIPTION)
        .env("AZURE_FAKE_TENANT", DEFAULT_TENANT)
        .env("AZURE_FAKE_CLIENT_ID", DEFAULT_CLIENT_ID)
        .env("AZURE_FAKE_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
        .env("AZURE_FAKE_PREFIX", prefix)
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
async fn the_official_python_clients_drive_every_resource_life_cycle() {
    let required = std::env::var_os(model_check::ENV).is_some();
    if !clients_installed() {
        assert!(
            !required,
            "{} is set but the azure-mgmt-* Python clients are not installed: run scripts/install-azure-clients.sh",
            model_check::ENV
        );
        eprintln!(
            "SKIPPED the_official_python_clients_drive_every_resource_life_cycle: the azure-mgmt-* clients are not installed (scripts/install-azure-clients.sh) and {} is unset",
            model_check::ENV
        );
        return;
    }
    let fake = FakeAzure::start(
        FakeConfig::default()
            .with_polls_to_finish(2)
            .with_principal_not_found_attempts(1),
    )
    .await
    .unwrap();
    let url = fake.url();
    let (ok, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_script(url, "py", Duration::from_secs(300)))
            .await
            .unwrap();
    eprintln!("{stdout}");
    assert!(
        ok,
        "scripts/azure-python-clients.py failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("all resource life cycles passed"),
        "{stdout}"
    );
    let calls = fake.calls();
    if let Some(dump) = std::env::var_os("GITPOD_REFARCH_AZURE_CALLS_DUMP") {
        // For reading what was validated: every recorded call as JSON.
        std::fs::write(dump, serde_json::to_string_pretty(&calls).unwrap()).unwrap();
    }
    assert!(
        calls
            .iter()
            .any(|c| c.response_headers.iter().any(|(h, _)| {
                h.eq_ignore_ascii_case("azure-asyncoperation") || h.eq_ignore_ascii_case("location")
            })),
        "the clients never met a long-running operation"
    );
    assert!(
        fake.resources().is_empty(),
        "left in the fake after the clients deleted everything: {:?}",
        fake.resources().keys().collect::<Vec<_>>()
    );

    // The official clients' own traffic, and the fake's answers to it, against the models.
    if let Some(models) = model_check::load_or_skip(
        "the_official_python_clients_drive_every_resource_life_cycle (model check)",
    ) {
        let report = model_check::validate_calls(&models, &calls);
        eprintln!("{} calls: {}", calls.len(), report.text());
        assert!(
            report.errors.is_empty(),
            "{} mismatches with the official models:\n{}",
            report.errors.len(),
            report.text()
        );
    }
    fake.shutdown().await;
}
