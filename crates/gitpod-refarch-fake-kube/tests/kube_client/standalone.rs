//! The `fake-kube` binary: writes its CA to `--ca-file`, prints its https URL first,
//! serves, exits 0 on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::client_for;

#[tokio::test]
async fn the_binary_serves_and_stops_on_sigterm() {
    let ca_file = std::env::temp_dir().join(format!(
        "fake-kube-ca-{}-{}.pem",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-kube"))
        .args([
            "--port",
            "0",
            "--ca-file",
            ca_file.to_str().unwrap(),
            "--namespace-delete-delay-ms",
            "10",
            "--acme-challenges-fail",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = std::fs::read_to_string(&ca_file).unwrap();
    let _ = std::fs::remove_file(&ca_file);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");

    let namespaces: Api<Namespace> = Api::all(client_for(&url, &ca));
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "exit status {exit:?}");
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("fake-kube did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
