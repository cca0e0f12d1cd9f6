//! The delegation check against a real `named` (Debian's bind9), authoritative for three
//! parent zones on 127.0.0.1 and a random port:
//!
//! - `example.test.` delegates `gitpod.example.test.` to `ns-cloud-a{1..4}.googledomains.com.`,
//! - `other.test.` delegates nothing (it has an A record for `gitpod.other.test.`),
//! - `wrong.test.` delegates `gitpod.wrong.test.` to a1, a2, b3 and b4.
//!
//! Needs `named` and `named-checkconf`/`named-checkzone`:
//! `apt-get install -y --no-install-recommends bind9 bind9-utils` (the tests fail, they do
//! not skip, without them). `named` runs as the current user (root in CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gitpod_refarch::ErrorKind;
use gitpod_refarch_bootstrap::{Delegation, DelegationCheck};

const APT: &str = "apt-get install -y --no-install-recommends bind9 bind9-utils";

/// A `named` process and its temporary directory, both removed on drop.
struct Named {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (nobody listens on it afterwards).
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    if Command::new(name).arg("-v").output().is_ok() {
        return PathBuf::from(name);
    }
    panic!("`{name}` (bind9) is not installed; install it with: {APT}");
}

const NAMESERVERS: [&str; 4] = [
    "ns-cloud-a1.googledomains.com.",
    "ns-cloud-a2.googledomains.com.",
    "ns-cloud-a3.googledomains.com.",
    "ns-cloud-a4.googledomains.com.",
];

fn zone_file(origin: &str, body: &str) -> String {
    format!(
        "$ORIGIN {origin}.\n$TTL 300\n\
         @ IN SOA ns1.{origin}. hostmaster.{origin}. 1 3600 600 86400 300\n\
         @ IN NS ns1.{origin}.\n\
         ns1 IN A 127.0.0.1\n\
         {body}"
    )
}

fn start_named() -> Named {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let named = tool("named");
    let checkconf = tool("named-checkconf");
    let checkzone = tool("named-checkzone");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!(
        "gitpod-refarch-bind9-{}-{}-{port}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();

    let zones = [
        (
            "example.test",
            "www IN A 127.0.0.2\n\
             gitpod IN NS ns-cloud-a1.googledomains.com.\n\
             gitpod IN NS ns-cloud-a2.googledomains.com.\n\
             gitpod IN NS ns-cloud-a3.googledomains.com.\n\
             gitpod IN NS ns-cloud-a4.googledomains.com.\n",
        ),
        ("other.test", "gitpod IN A 127.0.0.3\n"),
        (
            "wrong.test",
            "gitpod IN NS ns-cloud-a1.googledomains.com.\n\
             gitpod IN NS NS-Cloud-A2.GoogleDomains.com.\n\
             gitpod IN NS ns-cloud-b3.googledomains.com.\n\
             gitpod IN NS ns-cloud-b4.googledomains.com.\n",
        ),
    ];
    let mut conf = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
         session-keyfile \"{d}/session.key\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  \
         listen-on-v6 {{ none; }};\n  recursion no;\n  allow-query {{ any; }};\n  \
         dnssec-validation no;\n}};\ncontrols {{ }};\n"
    );
    for (origin, body) in zones {
        let file = dir.join(format!("{origin}.zone"));
        std::fs::write(&file, zone_file(origin, body)).unwrap();
        conf.push_str(&format!(
            "zone \"{origin}\" {{ type primary; file \"{}\"; }};\n",
            file.display()
        ));
        let out = Command::new(&checkzone)
            .arg(origin)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "named-checkzone {origin}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let conf_path = dir.join("named.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let out = Command::new(&checkconf).arg(&conf_path).output().unwrap();
    assert!(
        out.status.success(),
        "named-checkconf: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(&named)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "-n", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; install it with: {APT}",
                named.display()
            )
        });
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let named = Named { child, dir, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let running = line.trim_end().ends_with(" running");
                log.push(line);
                if running {
                    return named;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("named exited before running:\n{}", log.join("\n"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        assert!(
            Instant::now() < deadline,
            "named not running after 30 s:\n{}",
            log.join("\n")
        );
    }
}

fn check_against(named: &Named) -> DelegationCheck {
    let server = SocketAddr::from(([127, 0, 0, 1], named.port));
    DelegationCheck::new()
        .name_servers([server])
        .authoritative_port(named.port)
        .timeout(Duration::from_millis(500))
        .attempts(2)
}

fn expected() -> Vec<String> {
    NAMESERVERS.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn delegated_zone_is_delegated() {
    let named = start_named();
    // Mixed case and no trailing dots: compared case-insensitively, dot-insensitively.
    let expected: Vec<String> = expected()
        .iter()
        .map(|s| s.trim_end_matches('.').to_uppercase())
        .collect();
    let result = check_against(&named)
        .check("GitPod.Example.Test", &expected)
        .await
        .unwrap();
    assert!(result.is_delegated(), "{result}");
    match &result {
        Delegation::Delegated {
            zone,
            parent,
            name_servers,
            ..
        } => {
            assert_eq!(zone, "gitpod.example.test.");
            assert_eq!(parent, "example.test.");
            assert_eq!(name_servers, &expected_sorted());
        }
        other => panic!("not delegated: {other:?}"),
    }
    assert!(result.records_to_add().is_empty());
    assert!(result.to_string().contains("is delegated"), "{result}");
}

fn expected_sorted() -> Vec<String> {
    let mut v = expected();
    v.sort();
    v
}

#[tokio::test]
async fn deeper_zone_finds_parent_by_walking_up() {
    let named = start_named();
    // `a.b.example.test.`: `b.example.test.` is not a zone, the walk goes up to
    // `example.test.`, which does not delegate it.
    let result = check_against(&named)
        .check("a.b.example.test.", &expected())
        .await
        .unwrap();
    assert_eq!(result.parent(), "example.test.");
    assert!(
        matches!(result, Delegation::NotDelegated { .. }),
        "{result:?}"
    );
}

#[tokio::test]
async fn undelegated_zone_lists_the_four_records_to_add() {
    let named = start_named();
    let result = check_against(&named)
        .check("gitpod.other.test.", &expected())
        .await
        .unwrap();
    assert!(!result.is_delegated());
    let want: Vec<String> = NAMESERVERS
        .iter()
        .map(|ns| format!("gitpod.other.test. NS {ns}"))
        .collect();
    match &result {
        Delegation::NotDelegated {
            zone,
            parent,
            missing,
            ..
        } => {
            assert_eq!(zone, "gitpod.other.test.");
            assert_eq!(parent, "other.test.");
            assert_eq!(missing, &want);
        }
        other => panic!("expected NotDelegated: {other:?}"),
    }
    let shown = result.to_string();
    println!("{shown}");
    assert!(shown.contains("parent zone other.test."), "{shown}");
    for line in &want {
        assert!(shown.contains(line.as_str()), "{shown}");
    }
    // A name that does not exist at all in the parent (NXDOMAIN) is not delegated either.
    let result = check_against(&named)
        .check("nothing.other.test", &expected())
        .await
        .unwrap();
    assert_eq!(result.records_to_add().len(), 4, "{result}");
}

#[tokio::test]
async fn wrong_delegation_says_what_to_add_and_remove() {
    let named = start_named();
    let result = check_against(&named)
        .check("gitpod.wrong.test", &expected())
        .await
        .unwrap();
    assert!(!result.is_delegated());
    match &result {
        Delegation::Mismatch {
            parent,
            found,
            expected: exp,
            to_add,
            to_remove,
            ..
        } => {
            assert_eq!(parent, "wrong.test.");
            assert_eq!(
                found,
                &[
                    "ns-cloud-a1.googledomains.com.",
                    "ns-cloud-a2.googledomains.com.",
                    "ns-cloud-b3.googledomains.com.",
                    "ns-cloud-b4.googledomains.com.",
                ]
            );
            assert_eq!(exp, &expected());
            assert_eq!(
                to_add,
                &[
                    "gitpod.wrong.test. NS ns-cloud-a3.googledomains.com.",
                    "gitpod.wrong.test. NS ns-cloud-a4.googledomains.com.",
                ]
            );
            assert_eq!(
                to_remove,
                &[
                    "gitpod.wrong.test. NS ns-cloud-b3.googledomains.com.",
                    "gitpod.wrong.test. NS ns-cloud-b4.googledomains.com.",
                ]
            );
        }
        other => panic!("expected Mismatch: {other:?}"),
    }
    let shown = result.to_string();
    println!("{shown}");
    assert!(shown.contains("Add these records"), "{shown}");
    assert!(shown.contains("Remove these records"), "{shown}");
}

#[tokio::test]
async fn invalid_input_sends_no_query() {
    // A socket standing in for the resolver: it must receive nothing.
    let spy = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = spy.local_addr().unwrap();
    let check = DelegationCheck::new()
        .name_servers([addr])
        .authoritative_port(addr.port());
    let cases: [(&str, Vec<String>); 7] = [
        ("", expected()),
        ("test", expected()),
        ("gitpod..example.test", expected()),
        ("gitpod_x.example.test", expected()),
        ("-gitpod.example.test", expected()),
        ("gitpod.example.test", vec![]),
        ("gitpod.example.test", vec!["ns one.example.".into()]),
    ];
    for (zone, servers) in cases {
        let err = check.check(zone, &servers).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{zone:?}: {err}");
    }
    let mut buf = [0u8; 512];
    let got = tokio::time::timeout(Duration::from_millis(300), spy.recv_from(&mut buf)).await;
    assert!(got.is_err(), "a query was sent for invalid input");
}

#[tokio::test]
async fn dead_resolver_is_transient_and_named() {
    let port = free_port(); // nobody listens here
    let dead = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let err = DelegationCheck::new()
        .name_servers([dead])
        .timeout(Duration::from_millis(300))
        .attempts(2)
        .check("gitpod.example.test", &expected())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.message().contains(&dead.to_string()), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn silent_resolver_times_out_as_transient() {
    // Receives the queries, never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let err = DelegationCheck::new()
        .name_servers([addr])
        .timeout(Duration::from_millis(200))
        .attempts(2)
        .check("gitpod.example.test", &expected())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.message().contains(&addr.to_string()), "{err}");
    assert!(err.message().contains("no answer within"), "{err}");
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    drop(silent);
}

#[tokio::test]
async fn dead_parent_server_is_transient_and_named() {
    let named = start_named();
    // The resolver works, but the parent's name server (127.0.0.1) is asked on a port
    // nobody listens on.
    let dead_port = free_port();
    let started = Instant::now();
    let err = check_against(&named)
        .authoritative_port(dead_port)
        .timeout(Duration::from_millis(300))
        .check("gitpod.example.test", &expected())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(
        err.message().contains(&format!("127.0.0.1:{dead_port}")),
        "{err}"
    );
    assert!(err.message().contains("ns1.example.test."), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

mod common;

/// The whole apply, with the Kubernetes fake for the cluster and this `named` for the
/// delegation check: the zone `gitpod.other.test` is not delegated by `other.test`, so
/// the certificate step stops before waiting, naming the four NS records to add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelegated_zone_stops_the_certificate_step_with_the_records_to_add() {
    use std::sync::Arc;

    use gitpod_refarch::engine::TokioClock;
    use gitpod_refarch::resource::ResourceKind;
    use gitpod_refarch::sim::{LatencyProfile, SimCloud};
    use gitpod_refarch::state::MemoryStateStore;
    use gitpod_refarch_bootstrap::{BootstrapConfig, KubeBootstrap};
    use gitpod_refarch_fake_kube::FakeKube;

    let named = start_named();
    let fake = FakeKube::start(common::fake_config()).await.unwrap();
    let sim = Arc::new(
        SimCloud::new(Arc::new(TokioClock::new()), LatencyProfile::instant())
            .with_cluster_endpoint(fake.url(), fake.ca_pem()),
    );
    let bootstrap = KubeBootstrap::new(
        BootstrapConfig::new(common::TestCredentials::new(None))
            .cert_manager(common::manifest())
            .delegation(Some(check_against(&named)))
            .poll_interval(Duration::from_millis(10)),
    );
    let engine = common::engine_for(
        sim,
        bootstrap,
        Arc::new(MemoryStateStore::default()),
        common::Events::default(),
    );
    let mut spec = common::spec();
    spec.domain = "gitpod.other.test".into();
    spec.validate().unwrap();

    let report = engine.apply_spec(&spec).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    let (id, err) = &report.failed[0];
    assert_eq!(id.kind, ResourceKind::Certificate);
    assert_eq!(err.kind(), ErrorKind::Precondition, "{}", err.message());
    let m = err.message();
    assert!(m.contains("other.test"), "{m}");
    for i in 1..=4 {
        let line = format!("gitpod.other.test. NS ns{i}.dns.sim.invalid.");
        assert!(m.contains(&line), "missing `{line}` in: {m}");
    }
    // Everything before the certificate is in place; the certificate was applied (so
    // cert-manager can start as soon as the records exist) but not waited for.
    assert!(fake
        .object("certificates", Some("gitpod"), "https-certificates")
        .is_some());
    fake.shutdown().await;
}
