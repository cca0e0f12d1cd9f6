//! Shared state through the binary: two writers at once, a stale lock, breaking it,
//! `state show` without secrets, the state in S3 (moto), and bad `--state` URLs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Simulated durations for a run that must still be going when the test looks at it
/// (six minutes of cluster become 3.6 s); the test also stops the process to look.
const SLOW: &str = "0.01";
/// Simulated durations for runs nobody watches.
const FAST: &str = "0.0002";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gitpod-refarch")
}

fn cli(dir: &Path, time_scale: &str) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .args(["--time-scale", time_scale])
        .env_remove("GITPOD_REFARCH_LOG")
        .env_remove("RUST_LOG");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cli(dir, FAST).args(args).output().expect("runs")
}

fn spawn(mut c: Command) -> Child {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Send a signal to a process this test started.
fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} failed");
}

/// Wait until `read` returns something (the lock appearing), or the child ends.
fn await_lock<T>(child: &mut Child, mut read: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(v) = read() {
            return v;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before its lock was seen");
        }
        assert!(Instant::now() < deadline, "no lock appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lock file of a directory state, once complete (a JSON document with an id).
fn lock_file(state_dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(state_dir.join("state.json.lock")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["id"].as_str()?;
    Some(v)
}

/// The plan's steps that would change something (none: the installation matches).
fn changes(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = extra.to_vec();
    args.extend(["plan", "--plan-json"]);
    let o = run(dir, &args);
    assert!(o.status.success(), "{}", text(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"]["type"] != "no-op")
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn two_applies_at_once_one_wins_the_other_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join(".gitpod-refarch");
    let mut first = spawn({
        let mut c = cli(dir.path(), SLOW);
        c.arg("apply");
        c
    });
    let lock = await_lock(&mut first, || lock_file(&state_dir));
    let owner = lock["owner"].as_str().unwrap().to_string();
    assert!(
        owner.ends_with(&format!("(pid {})", first.id())),
        "lock owner {owner}"
    );
    assert_eq!(lock["operation"], "apply");
    // Held still while the second writer tries.
    signal(&first, "STOP");
    let second = cli(dir.path(), SLOW).arg("apply").output().unwrap();
    signal(&first, "CONT");
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", text(&first));

    assert_eq!(second.status.code(), Some(4), "{}", text(&second));
    let t = text(&second);
    assert!(t.contains("locked"), "{t}");
    assert!(t.contains(&owner), "{t}");
    assert!(t.contains(lock["id"].as_str().unwrap()), "{t}");
    assert!(t.contains("gitpod-refarch state break-lock"), "{t}");
    assert!(!t.contains("applied:"), "{t}");

    // The winner's cloud and state agree; nobody holds the lock.
    assert!(lock_file(&state_dir).is_none());
    assert_eq!(changes(dir.path(), &[]), Vec::<String>::new());
    let o = run(dir.path(), &["state", "lock"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("is not locked"), "{}", text(&o));
}

#[test]
fn a_killed_apply_leaves_a_lock_that_only_its_exact_id_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join(".gitpod-refarch");
    let mut victim = spawn({
        let mut c = cli(dir.path(), SLOW);
        c.arg("apply");
        c
    });
    let lock = await_lock(&mut victim, || lock_file(&state_dir));
    let id = lock["id"].as_str().unwrap().to_string();
    let pid = victim.id();
    // Stopped mid-run (it still holds the lock), then killed without a chance to
    // clean up.
    signal(&victim, "STOP");
    assert!(victim.try_wait().unwrap().is_none());
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert_eq!(lock_file(&state_dir).unwrap()["id"], id.as_str());

    let o = run(dir.path(), &["apply"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("locked"), "{t}");
    assert!(t.contains(&format!("(pid {pid})")), "{t}");
    assert!(t.contains(&format!("state break-lock {id}")), "{t}");

    let o = run(dir.path(), &["--json", "state", "lock"]);
    assert!(o.status.success(), "{}", text(&o));
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["lock"]["id"], id.as_str());

    // Not without the exact id.
    let o = run(dir.path(), &["state", "break-lock", "0123456789abcdef"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&id),
        "the refusal names the lock held: {}",
        text(&o)
    );
    let o = run(dir.path(), &["state", "break-lock"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(lock_file(&state_dir).unwrap()["id"], id.as_str());

    let o = run(dir.path(), &["state", "break-lock", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("broke the lock"), "{t}");
    assert!(
        t.contains(&id) && t.contains(&format!("(pid {pid})")),
        "{t}"
    );
    assert!(lock_file(&state_dir).is_none());

    let o = run(dir.path(), &["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(changes(dir.path(), &[]), Vec::<String>::new());
}

/// Every secret value in a state file: the engine's secrets and the secret fields of
/// the outputs (keys, passwords, tokens).
fn secrets_in(state: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, secret: bool, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if secret && s.len() >= 8 => out.push(s.clone()),
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let k = k.to_ascii_lowercase();
                    let named = [
                        "password",
                        "secret",
                        "token",
                        "credential",
                        "privatekey",
                        "key",
                    ]
                    .iter()
                    .any(|w| k.contains(w))
                        && !k.ends_with("id")
                        && !k.contains("ids");
                    walk(v, secret || named, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, secret, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&state["secrets"], true, &mut out);
    walk(&state["outputs"], false, &mut out);
    out
}

#[test]
fn state_show_lists_resources_and_secret_names_never_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".gitpod-refarch/state.json")).unwrap(),
    )
    .unwrap();
    let secrets = secrets_in(&file);
    // The encryption key, the database password and the keys the outputs carry.
    assert!(secrets.len() >= 3, "{secrets:?}");
    let names: Vec<&String> = file["secrets"].as_object().unwrap().keys().collect();
    assert!(!names.is_empty());
    let resources = file["outputs"].as_array().unwrap();

    let shown = run(dir.path(), &["state", "show"]);
    assert!(shown.status.success(), "{}", text(&shown));
    let shown_json = run(dir.path(), &["--json", "state", "show"]);
    assert!(shown_json.status.success(), "{}", text(&shown_json));
    for out in [text(&shown), text(&shown_json)] {
        for s in &secrets {
            assert!(
                !out.contains(s.as_str()),
                "a secret value was printed:\n{out}"
            );
        }
        for n in &names {
            assert!(out.contains(n.as_str()), "secret name {n} missing:\n{out}");
        }
    }
    let t = text(&shown);
    assert!(t.contains("installation: gitpod"), "{t}");
    assert!(t.contains("lock:         none"), "{t}");
    let v: serde_json::Value = serde_json::from_slice(&shown_json.stdout).unwrap();
    assert_eq!(v["installation"], file["installation"]);
    assert_eq!(v["generation"], file["generation"].to_string().as_str());
    assert_eq!(v["lock"], serde_json::Value::Null);
    let listed = v["resources"].as_array().unwrap();
    assert_eq!(listed.len(), resources.len());
    for r in listed {
        // Id and kind, nothing else.
        assert_eq!(r.as_object().unwrap().len(), 2, "{r}");
        let id = r["id"].as_str().unwrap();
        assert!(t.contains(id), "{id} missing from the table:\n{t}");
    }
}

#[test]
fn bad_state_urls_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (url, says) in [
        ("s3://", "s3://BUCKET/KEY"),
        ("s3://bucket-only", "s3://BUCKET/KEY"),
        ("gs:///x", "gs://BUCKET/OBJECT"),
        ("kubernetes://ns", "kubernetes://NAMESPACE/NAME"),
        ("ftp://host/state", "unknown backend"),
    ] {
        for cmd in [&["apply"][..], &["state", "show"][..]] {
            let o = run(dir.path(), &[&["--state", url][..], cmd].concat());
            assert_eq!(o.status.code(), Some(2), "{url}: {}", text(&o));
            let t = text(&o);
            assert!(t.contains(url) && t.contains(says), "{url}: {t}");
        }
    }
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "written: {left:?}");
}

#[test]
fn help_documents_the_state_backends_sim_dir_and_exit_codes() {
    let o = Command::new(bin()).arg("--help").output().unwrap();
    let t = text(&o);
    for s in [
        "s3://BUCKET/KEY",
        "gs://BUCKET/OBJECT",
        "kubernetes://NAMESPACE/NAME",
        "--sim-dir",
        "state break-lock",
        "4  the state is locked",
        "5  the state changed since this plan was made",
    ] {
        assert!(t.contains(s), "{s} missing from --help:\n{t}");
    }
}

/// A `moto_server` on a free port, killed on drop.
#[cfg(feature = "aws")]
struct Moto(Child, String);

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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server not found: run scripts/test.sh (it installs moto[server])");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
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
fn state_in_s3_on_moto_is_encrypted_and_locked_against_a_second_writer() {
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = rt.block_on(async {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&moto.1)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket()
            .bucket("refarch-state")
            .send()
            .await
            .unwrap();
        s3
    });
    // The object's metadata, if it exists.
    let head = |key: &str| {
        rt.block_on(s3.head_object().bucket("refarch-state").key(key).send())
            .ok()
    };
    let url = "s3://refarch-state/gitpod/state.json";
    let dir = tempfile::tempdir().unwrap();
    let with_s3 = |time_scale: &str| {
        let mut c = cli(dir.path(), time_scale);
        c.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .args(["--state", url, "--state-endpoint", &moto.1]);
        c
    };

    let mut first = spawn({
        let mut c = with_s3(SLOW);
        c.arg("apply");
        c
    });
    let first_pid = first.id();
    await_lock(&mut first, || head("gitpod/state.json.lock"));
    signal(&first, "STOP");
    let second = with_s3(SLOW).arg("apply").output().unwrap();
    signal(&first, "CONT");
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(second.status.code(), Some(4), "{}", text(&second));
    let t = text(&second);
    assert!(t.contains("locked"), "{t}");
    assert!(t.contains(&format!("(pid {first_pid})")), "{t}");
    assert!(t.contains(url), "{t}");

    // The state is in S3, encrypted at rest; the simulated cloud stayed here.
    let object = head("gitpod/state.json").unwrap();
    assert_eq!(
        object.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256)
    );
    assert!(head("gitpod/state.json.lock").is_none(), "lock left behind");
    assert!(dir.path().join(".gitpod-refarch/sim-cloud.json").exists());
    assert!(!dir.path().join(".gitpod-refarch/state.json").exists());

    let o = with_s3(FAST)
        .args(["plan", "--plan-json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changed: Vec<&serde_json::Value> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"]["type"] != "no-op")
        .collect();
    assert!(changed.is_empty(), "{changed:?}");

    let o = with_s3(FAST).args(["state", "show"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(url), "{}", text(&o));
    assert!(text(&o).contains("installation: gitpod"), "{}", text(&o));
}
