//! The `fake-gcp` binary: prints its URL first, serves, exits 0 on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_binary_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-gcp"))
        .args([
            "--port",
            "0",
            "--polls",
            "1",
            "--project",
            "p",
            "--project",
            "q",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let c = common::Client::new(url);
    assert_eq!(c.get("/v3/projects/q").await["projectId"], "q");
    assert_eq!(c.call("GET", "/v3/projects/p-none", None).await.0, 403);

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
            panic!("fake-gcp did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
