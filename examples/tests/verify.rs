//! `gitpod-refarch verify` as a user runs it, on the simulated cloud.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
        .current_dir(dir)
        .args(["--time-scale", "0"])
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
fn verify_after_apply_passes_with_a_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["apply"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = run(dir.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.starts_with("PART "), "{table}");
    assert!(table.contains("database.connect"), "{table}");
    assert!(table.contains("registry.auth"), "{table}");
    assert!(table.contains(" 0 failed, 0 skipped"), "{table}");
    assert!(!table.contains("fail "), "{table}");

    // --strict changes nothing when every check ran.
    let o = run(dir.path(), &["--json", "verify", "--strict"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("stdout is one JSON report");
    assert_eq!(v["ok"], true);
    assert_eq!(v["installation"], "gitpod");
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.len() > 15, "{v}");
    assert!(checks
        .iter()
        .all(|c| c["status"] == "pass" && c["from"] == "simulated"));
    for part in ["cluster", "dns", "database", "registry", "storage"] {
        assert!(checks.iter().any(|c| c["part"] == part), "no {part} check");
    }

    // A part lost behind the SDK's back: verify fails (exit 1) naming the check.
    let file = dir.path().join(".gitpod-refarch/sim-cloud.json");
    let mut sim: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let before = sim.len();
    sim.retain(|r| r["id"]["kind"] != "registry");
    assert_eq!(sim.len(), before - 1);
    std::fs::write(&file, serde_json::to_string(&sim).unwrap()).unwrap();
    let o = run(dir.path(), &["--json", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let failed: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["registry.registry", "registry.auth"], "{v}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("2 check(s) failed"),
        "{}",
        text(&o)
    );
}

#[test]
fn verify_before_apply_skips_every_part_and_strict_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        table.matches("not applied yet (run apply)").count(),
        5,
        "{table}"
    );
    assert!(
        table.contains("ok: 0 passed, 0 failed, 5 skipped"),
        "{table}"
    );

    let o = run(dir.path(), &["--json", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] == "skipped"));

    let o = run(dir.path(), &["verify", "--strict"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("5 check(s) skipped"), "{}", text(&o));
    // Nothing was created: verify only reads.
    assert!(!dir.path().join(".gitpod-refarch/sim-cloud.json").exists());
}

#[test]
fn verify_with_an_invalid_spec_exits_2_naming_the_field_and_makes_no_call() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "cloud: gcp\nname: gp\ndomain: gitpod.example.com\n\
         gcp:\n  project: my-project-123\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n  \
         server: https://acme-v02.api.letsencrypt.org/directory\n\
         nodePools:\n  services:\n    minNodes: 9\n",
    )
    .unwrap();
    // Nothing listens on port 1: a call would fail with "cannot reach" instead.
    let o = Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
        .current_dir(dir.path())
        .args(["--cloud", "gcp", "--endpoint", "http://127.0.0.1:1"])
        .args(["--spec", "bad.yaml", "verify"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("nodePools.services.minNodes"), "{t}");
    assert!(
        !t.contains("cannot reach") && !t.contains("127.0.0.1"),
        "{t}"
    );
    assert!(!dir.path().join(".gitpod-refarch").exists());

    let o = run(dir.path(), &["verify", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
