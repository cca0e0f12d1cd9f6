//! moto (`moto_server`, the AWS API emulator) as an S3-compatible server: one
//! private process per test, on a free port of 127.0.0.1, killed on drop. Found on
//! `PATH` as the AWS crate's tests find it (`scripts/test.sh` installs
//! `moto[server]`).
//!
//! IAM enforcement: moto checks signatures and IAM policies only after its first
//! `INITIAL_NO_AUTH_ACTION_COUNT` service requests (an exact count, process-wide),
//! so a test that needs it starts its own process with
//! [`Moto::start_enforcing_iam_after`] and makes exactly that many setup calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long [`Moto::start`] waits for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A `moto_server` child process, killed on drop.
pub struct Moto {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The port.
    pub port: u16,
    log: PathBuf,
    child: Child,
}

/// The keys moto accepts while it does not enforce IAM.
pub const TEST_KEY_ID: &str = "testing";
/// Their secret (meaningless to moto without IAM enforcement).
pub const TEST_SECRET: &str = "moto-test-secret-not-checked";

impl Moto {
    /// A moto that accepts any key.
    pub async fn start() -> Moto {
        Moto::spawn(None).await
    }

    /// A moto that serves the first `n` service requests without any check and
    /// then enforces signatures and IAM policies on every request.
    pub async fn start_enforcing_iam_after(n: u32) -> Moto {
        Moto::spawn(Some(n)).await
    }

    async fn spawn(no_auth_count: Option<u32>) -> Moto {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("gitpod-refarch-selfmanaged-moto-{port}.log"));
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create moto log {}: {e}", log.display()));
        let err = out.try_clone().expect("clone moto log handle");
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        if let Some(n) = no_auth_count {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "moto_server not found: run scripts/test.sh (it installs moto[server]), or `python3 -m pip install 'moto[server]'`"
            ),
            Err(e) => panic!("cannot start moto_server: {e}"),
        };
        let mut moto = Moto {
            url: format!("http://127.0.0.1:{port}"),
            port,
            log,
            child,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto_server exited early ({status}); log:\n{}",
                    moto.log_tail()
                );
            }
            // `/moto-api/` is not a service request: it does not count.
            if probe(port).await {
                return moto;
            }
            if Instant::now() > deadline {
                panic!(
                    "moto_server did not answer on {} within {START_TIMEOUT:?}; log:\n{}",
                    moto.url,
                    moto.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last 4 KiB of moto's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// An S3 client with the test keys, path style (to look at the server's state
    /// independently of the provider under test).
    pub fn s3(&self, key_id: &str, secret: &str) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .endpoint_url(&self.url)
                .force_path_style(true)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    key_id, secret, None, None, "test",
                ))
                .build(),
        )
    }

    /// An IAM client with the test keys.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::Config::builder()
                .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
                .region(aws_sdk_iam::config::Region::new("us-east-1"))
                .endpoint_url(&self.url)
                .credentials_provider(aws_sdk_iam::config::Credentials::new(
                    TEST_KEY_ID,
                    TEST_SECRET,
                    None,
                    None,
                    "test",
                ))
                .build(),
        )
    }

    /// Three setup requests: an IAM user `name` with an inline policy allowing
    /// `actions` on `bucket` and its objects, and an access key (id, secret).
    pub async fn user_with_key(
        &self,
        name: &str,
        bucket: &str,
        actions: &[&str],
    ) -> (String, String) {
        let iam = self.iam();
        iam.create_user()
            .user_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateUser {name}: {e:?}\n{}", self.log_tail()));
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": actions,
                "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            }],
        });
        iam.put_user_policy()
            .user_name(name)
            .policy_name(format!("{name}-s3"))
            .policy_document(policy.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutUserPolicy {name}: {e:?}\n{}", self.log_tail()));
        let key = iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateAccessKey {name}: {e:?}\n{}", self.log_tail()));
        let key = key.access_key().expect("an access key");
        (
            key.access_key_id().to_string(),
            key.secret_access_key().to_string(),
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if self.child.start_kill().is_ok() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Whether `GET /moto-api/` answers 200.
async fn probe(port: u16) -> bool {
    let call = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(
            format!(
                "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        std::io::Result::Ok(buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), call).await,
        Ok(Ok(true))
    )
}
