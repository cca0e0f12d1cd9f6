//! A mixed installation from the CLI, as a platform team runs it: the cluster column on
//! AWS (EKS on a real moto server, without the in-cluster bootstrap: moto's clusters
//! have no API server) and the four parts they already run, each a real server started
//! here: Debian's MariaDB, BIND 9 with a TSIG key, Docker's registry with htpasswd, and
//! S3-compatible storage (moto's S3 again, as "AWS S3 from another cloud"). Apply,
//! verify green, re-apply with no changes, break the database's setting and see
//! `verify` name it with its fix, destroy, and nothing the SDK made is left.
#![cfg(all(feature = "aws", feature = "selfmanaged"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use mixed::ZONE;

#[path = "../../crates/gitpod-refarch-selfmanaged/tests/support/mariadb.rs"]
#[allow(dead_code)]
mod mariadb;
#[path = "../../crates/gitpod-refarch-selfmanaged/tests/support/mixed.rs"]
mod mixed;
#[path = "../../crates/gitpod-refarch-selfmanaged/tests/support/named.rs"]
#[allow(dead_code)]
mod named;
#[path = "../../crates/gitpod-refarch-selfmanaged/tests/support/registry.rs"]
mod registry;

/// A `moto_server` on a free port, killed on drop.
struct Moto(std::process::Child, String);

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

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eks_cluster_with_four_self_managed_parts_applies_verifies_and_destroys() {
    let moto = Moto::start();
    let db = mariadb::MariaDb::start().await;
    let dns = named::start(&[(ZONE, "")]);
    let reg = registry::TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tsig.key"), dns.secret.expose()).unwrap();
    // The registry's url carries `http://`: a plain-HTTP test registry on loopback.
    let spec_text = mixed::spec(
        db.port,
        mariadb::ADMIN,
        &dns.server(),
        named::KEY,
        &reg.base,
        &reg.username,
        &moto.1,
    );
    std::fs::write(dir.path().join("spec.yaml"), &spec_text).unwrap();

    let cli = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
            .current_dir(dir.path())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env("GITPOD_DB_ADMIN_PASSWORD", db.admin_password.expose())
            .env("GITPOD_REGISTRY_PASSWORD", &reg.password)
            .env("GITPOD_S3_ACCESS_KEY_ID", "testing")
            .env("GITPOD_S3_SECRET_ACCESS_KEY", "testing")
            .args([
                "--cloud",
                "aws",
                "--endpoint",
                &moto.1,
                "--spec",
                "spec.yaml",
            ])
            .args(["--no-in-cluster", "--yes"])
            .args(args)
            .output()
            .unwrap()
    };
    let blocking = |args: &'static [&'static str]| {
        let cli = &cli;
        tokio::task::block_in_place(|| cli(args))
    };

    // The plan: the existing server, zone and registry are observed as they are (no
    // change); the database, the records and the bucket are to be made.
    let o = blocking(&["plan"]);
    assert!(o.status.success(), "{}", text(&o));
    let plan = text(&o);
    for line in [
        "database-instance/gp-mixed       no change",
        "dns-zone/gp-mixed                no change",
        "registry/gp-mixed                no change",
        "existing S3-compatible storage at http://127.0.0.1:",
        "database gitpod, user gitpod (generated password)",
    ] {
        assert!(plan.contains(line), "{line}: {plan}");
    }

    let o = blocking(&["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    let secrets = std::fs::read_to_string(dir.path().join("out/secrets/storage-s3.yaml")).unwrap();
    assert!(secrets.contains("accessKeyId"), "{secrets}");
    let config = std::fs::read_to_string(dir.path().join("out/gitpod.config.yaml")).unwrap();
    assert!(config.contains("allowInsecureConnection: true"), "{config}");
    assert!(db.databases().await.contains(&"gitpod".to_string()));

    // Verify: every data-plane check of the four parts passes.
    let o = blocking(&["verify", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let status = |id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no check {id}: {report:#}"))
    };
    for id in [
        "database.connect",
        "database.explicit-defaults-for-timestamp",
        "database.schema",
        "database.create-drop-table",
        "registry.auth",
        "registry.push",
        "registry.pull",
        "storage.bucket",
        "storage.put-get-delete",
        "dns.zone",
        "dns.tsig",
        "dns.records-at-server",
    ] {
        assert_eq!(status(id), "pass", "{id}: {report:#}");
    }
    // No secret value in the report.
    let raw = String::from_utf8_lossy(&o.stdout);
    for s in [
        db.admin_password.expose().as_str(),
        reg.password.as_str(),
        dns.secret.expose().as_str(),
    ] {
        assert!(!raw.contains(s), "a secret in the verify report");
    }

    let o = blocking(&["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no changes"), "{}", text(&o));

    // Break the server's setting behind the SDK's back: verify names it and the fix.
    db.exec("SET GLOBAL explicit_defaults_for_timestamp = ON")
        .await;
    let o = blocking(&["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let table = text(&o);
    assert!(
        table.contains("database.explicit-defaults-for-timestamp"),
        "{table}"
    );
    assert!(table.contains("fix:"), "{table}");
    assert!(table.contains("explicit_defaults_for_timestamp"), "{table}");
    db.exec("SET GLOBAL explicit_defaults_for_timestamp = OFF")
        .await;

    let o = blocking(&["destroy"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!db.databases().await.contains(&"gitpod".to_string()));
    assert!(
        !db.users().await.iter().any(|u| u.starts_with("gitpod@")),
        "{:?}",
        db.users().await
    );
    // moto's bucket list (unsigned GET on the service root) no longer has the bucket.
    let buckets = reqwest::get(&moto.1).await.unwrap().text().await.unwrap();
    assert!(!buckets.contains("gp-mixed-gitpod"), "{buckets}");
    // The records are gone: the next plan creates them again.
    let o = blocking(&["plan"]);
    assert!(text(&o).contains("dns-records"), "{}", text(&o));
}
