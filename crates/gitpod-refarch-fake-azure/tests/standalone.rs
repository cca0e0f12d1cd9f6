//! The `fake-azure` binary: prints its URL first, serves, exits 0 on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_binary_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-azure"))
        .args([
            "--port",
            "0",
            "--polls",
            "1",
            "--client",
            "my-app=my-secret",
            "--tenant",
            "t-1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let http = reqwest::Client::new();
    let token = |secret: &str| {
        http.post(format!("{url}/t-1/oauth2/v2.0/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&client_id=my-app&client_secret={secret}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"))
            .send()
    };
    assert_eq!(token("wrong").await.unwrap().status().as_u16(), 401);
    let body: serde_json::Value = token("my-secret").await.unwrap().json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    let providers = format!(
        "{url}/subscriptions/{}/providers/Microsoft.ContainerService?api-version=2025-04-01",
        gitpod_refarch_fake_azure::DEFAULT_SUBSCRIPTION
    );
    let r = http
        .get(&providers)
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["registrationState"], "NotRegistered");
    assert_eq!(
        http.get(&providers).send().await.unwrap().status().as_u16(),
        401
    );

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
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
            panic!("fake-azure did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
