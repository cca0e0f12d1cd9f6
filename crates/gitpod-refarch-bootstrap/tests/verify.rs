//! `verify` of the cluster and the DNS ([`ClusterVerifier`]) after the bootstrap
//! applied on the Kubernetes **fake** (in process, real HTTPS on 127.0.0.1), with the
//! node pools of the spec published as Nodes, and a real `named` (Debian's bind9) as
//! the parent zone and the zone itself where a DNS check is asserted.
//!
//! Needs `named` and `named-checkconf`/`named-checkzone`:
//! `apt-get install -y --no-install-recommends bind9 bind9-utils` (the tests fail, they
//! do not skip, without them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use gitpod_refarch::outputs::Outputs;
use gitpod_refarch::resource::ResourceKind;
use gitpod_refarch::spec::{PoolRole, ReferenceArchitecture};
use gitpod_refarch::verify::{CheckStatus, Vantage, Verifier, VerifyContext, VerifyReport};
use gitpod_refarch_bootstrap::{BootstrapConfig, ClusterVerifier, DelegationCheck};
use gitpod_refarch_fake_kube::{FakeKube, NodePool};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

const APT: &str = "apt-get install -y --no-install-recommends bind9 bind9-utils";

/// The checks that read the API server, in report order.
const CLUSTER_IDS: [&str; 9] = [
    "cluster.connect",
    "cluster.kubernetes-version",
    "cluster.nodes",
    "cluster.node-labels.services",
    "cluster.node-labels.regular-ws",
    "cluster.node-labels.headless-ws",
    "cluster.cert-manager",
    "cluster.certificate",
    "cluster.secrets",
];

// ---- named ----------------------------------------------------------------------

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

/// A port free for both UDP and TCP on 127.0.0.1.
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
    panic!("`{name}` (bind9) is not installed; install it with: {APT}");
}

/// `named` authoritative for `zones` (origin, records after the SOA and NS of
/// `ns1.<origin>` = 127.0.0.1 ... or the given apex NS set) on 127.0.0.1.
fn start_named(zones: &[(String, String)]) -> Named {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let (named, checkconf, checkzone) = (
        tool("named"),
        tool("named-checkconf"),
        tool("named-checkzone"),
    );
    let port = free_port();
    let dir = std::env::temp_dir().join(format!(
        "gitpod-refarch-verify-bind9-{}-{}-{port}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let mut conf = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
         session-keyfile \"{d}/session.key\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  \
         listen-on-v6 {{ none; }};\n  recursion no;\n  allow-query {{ any; }};\n  \
         dnssec-validation no;\n}};\ncontrols {{ }};\n"
    );
    for (origin, body) in zones {
        let file = dir.join(format!("{origin}.zone"));
        std::fs::write(
            &file,
            format!(
                "$ORIGIN {origin}.\n$TTL 300\n@ IN SOA ns1.{origin}. hostmaster.{origin}. 1 3600 600 86400 300\n{body}"
            ),
        )
        .unwrap();
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
    assert!(out.status.success(), "named-checkconf: {out:?}");
    let mut child = Command::new(&named)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "-n", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start named: {e}; install it with: {APT}"));
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

/// The parent zone `example.com` (its own server `ns1` = 127.0.0.1), delegating
/// `gitpod.example.com` to `name_servers` or not at all.
fn parent_zone(name_servers: Option<&[String]>) -> (String, String) {
    let mut body = String::from("@ IN NS ns1.example.com.\nns1 IN A 127.0.0.1\n");
    for ns in name_servers.unwrap_or_default() {
        body.push_str(&format!("gitpod IN NS {}.\n", ns.trim_end_matches('.')));
    }
    ("example.com".into(), body)
}

/// The zone `gitpod.example.com` itself, served by `name_servers`, with DOMAIN,
/// `*.DOMAIN` and `*.ws.DOMAIN` at `ip`.
fn gitpod_zone(name_servers: &[String], ip: &str) -> (String, String) {
    let mut body = String::new();
    for ns in name_servers {
        body.push_str(&format!("@ IN NS {}.\n", ns.trim_end_matches('.')));
    }
    body.push_str(&format!("@ IN A {ip}\n* IN A {ip}\n*.ws IN A {ip}\n"));
    ("gitpod.example.com".into(), body)
}

fn dns_of(named: &Named) -> DelegationCheck {
    DelegationCheck::new()
        .name_servers([SocketAddr::from(([127, 0, 0, 1], named.port))])
        .authoritative_port(named.port)
        .timeout(Duration::from_millis(500))
        .attempts(2)
}

/// Resolvers nobody listens on: the DNS checks cannot ask anything (skipped).
fn no_dns() -> DelegationCheck {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    DelegationCheck::new()
        .name_servers([SocketAddr::from(([127, 0, 0, 1], port))])
        .authoritative_port(port)
        .timeout(Duration::from_millis(100))
        .attempts(1)
}

// ---- the installation ---------------------------------------------------------------

/// The spec's three node pools published as the fake's Nodes, two nodes each, with
/// the pool's labels (`labels` overrides one pool's).
fn publish_pools(fake: &FakeKube, spec: &ReferenceArchitecture) {
    for role in PoolRole::ALL {
        publish_pool(fake, spec, role, None);
    }
}

fn publish_pool(
    fake: &FakeKube,
    spec: &ReferenceArchitecture,
    role: PoolRole,
    without: Option<&str>,
) {
    let mut pool = NodePool::new(2);
    for (k, v) in &spec.node_pools.get(role).labels {
        if Some(k.as_str()) != without {
            pool = pool.with_label(k, v);
        }
    }
    fake.set_node_pool(role.short_name(), pool).unwrap();
}

/// An applied installation with its node pools published.
async fn applied() -> (Setup, ReferenceArchitecture) {
    let s = Setup::start(fake_config(), manifest()).await;
    let spec = spec();
    let report = s.engine.apply_spec(&spec).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    publish_pools(&s.fake, &spec);
    (s, spec)
}

fn verifier(s: &Setup, dns: DelegationCheck) -> ClusterVerifier {
    ClusterVerifier::new(BootstrapConfig::new(s.creds.clone()).delegation(None)).delegation(dns)
}

fn outputs(s: &Setup) -> Outputs {
    Outputs::new(s.store.snapshot().expect("state saved").outputs)
}

async fn run_with(
    s: &Setup,
    spec: &ReferenceArchitecture,
    outputs: &Outputs,
    v: &ClusterVerifier,
) -> VerifyReport {
    let bundle = s.engine.installer_bundle(spec).await.unwrap();
    let ctx = VerifyContext::new(spec, outputs, &bundle);
    let started = Instant::now();
    let checks = v.verify(&ctx).await;
    let report = VerifyReport::new(&spec.name, checks, started.elapsed());
    println!("{report}\n");
    // Never a secret value in a check.
    let json = report.to_json();
    for m in &bundle.secrets {
        for (k, v) in &m.data {
            if v.expose().len() >= 8 {
                assert!(!json.contains(v.expose()), "{}/{k} leaked", m.name);
            }
        }
    }
    report
}

async fn run(s: &Setup, spec: &ReferenceArchitecture, v: &ClusterVerifier) -> VerifyReport {
    run_with(s, spec, &outputs(s), v).await
}

fn failed(r: &VerifyReport) -> Vec<&str> {
    r.failures().map(|c| c.id.as_str()).collect()
}

fn status(r: &VerifyReport, id: &str) -> CheckStatus {
    r.check(id)
        .unwrap_or_else(|| panic!("no {id} in\n{r}"))
        .status
}

/// Every cluster check passes; the DNS checks are skipped (no resolver answers, no
/// proxy Service).
fn assert_cluster_green(r: &VerifyReport) {
    for id in CLUSTER_IDS {
        assert_eq!(status(r, id), CheckStatus::Pass, "{id}:\n{r}");
        assert_eq!(r.check(id).unwrap().from, Vantage::InCluster, "{id}");
    }
}

/// The proxy's LoadBalancer Service, as Gitpod's installer makes it; its address.
async fn install_proxy(fake: &FakeKube) -> String {
    let client = kube_client(fake);
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "proxy", "namespace": "gitpod"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "gitpod")
        .create(&Default::default(), &svc)
        .await
        .unwrap();
    for _ in 0..200 {
        let live = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "gitpod")
            .get("proxy")
            .await
            .unwrap();
        let ip = live
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .and_then(|i| i.first().and_then(|i| i.ip.clone()));
        if let Some(ip) = ip {
            return ip;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the proxy Service got no load balancer address");
}

// ---- tests ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_apply_every_check_passes_and_an_expiring_certificate_fails() {
    let (s, spec) = applied().await;
    let ip = install_proxy(&s.fake).await;
    let ns: Vec<String> = outputs(&s).name_servers().unwrap().to_vec();
    let named = start_named(&[parent_zone(Some(&ns)), gitpod_zone(&ns, &ip)]);
    let v = verifier(&s, dns_of(&named));

    let r = run(&s, &spec, &v).await;
    assert!(r.ok, "{r}");
    assert_cluster_green(&r);
    for id in ["dns.delegation", "dns.records"] {
        assert_eq!(status(&r, id), CheckStatus::Pass, "{id}:\n{r}");
    }
    assert_eq!(r.checks.len(), CLUSTER_IDS.len() + 2, "{r}");
    assert!(r.check("dns.records").unwrap().summary.contains(&ip), "{r}");
    // The expiry shown is the certificate's own, as its status reports it.
    let cert = s
        .fake
        .object("certificates", Some("gitpod"), "https-certificates")
        .unwrap();
    let not_after = cert["status"]["notAfter"].as_str().unwrap();
    let summary = &r.check("cluster.certificate").unwrap().summary;
    assert!(summary.contains(not_after), "{summary} vs {not_after}");
    assert!(summary.contains("*.ws.gitpod.example.com"), "{summary}");

    // The same certificate against a 91-day renewal window: it fails, with the fix.
    let strict = verifier(&s, dns_of(&named)).renew_within(Duration::from_secs(91 * 86_400));
    let r = run(&s, &spec, &strict).await;
    assert_eq!(failed(&r), ["cluster.certificate"], "{r}");
    let c = r.check("cluster.certificate").unwrap();
    assert!(c.summary.contains(not_after), "{}", c.summary);
    assert!(c.fix.as_deref().unwrap().contains("cmctl renew"), "{c:?}");

    // The zone points the Gitpod names elsewhere: `dns.records` fails naming both.
    let elsewhere = start_named(&[parent_zone(Some(&ns)), gitpod_zone(&ns, "192.0.2.7")]);
    let r = run(&s, &spec, &verifier(&s, dns_of(&elsewhere))).await;
    assert_eq!(failed(&r), ["dns.records"], "{r}");
    let c = r.check("dns.records").unwrap();
    assert!(c.summary.contains("resolves to 192.0.2.7"), "{c:?}");
    assert!(c.summary.contains(&ip), "{c:?}");
    assert!(c.fix.as_deref().unwrap().contains("external-dns"), "{c:?}");

    // In-cluster checks are asked for: the database Job is honestly not done.
    let bundle = s.engine.installer_bundle(&spec).await.unwrap();
    let o = outputs(&s);
    let ctx = VerifyContext::new(&spec, &o, &bundle).with_in_cluster(true);
    let checks = v.verify(&ctx).await;
    let db = checks
        .iter()
        .find(|c| c.id == "database.in-cluster")
        .unwrap();
    assert_eq!(db.status, CheckStatus::Skipped);
    assert!(db.summary.contains("batch/v1 Jobs"), "{db:?}");
    s.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_pool_without_a_gitpod_label_fails_only_its_check() {
    let (s, spec) = applied().await;
    let v = verifier(&s, no_dns());
    let r = run(&s, &spec, &v).await;
    assert_cluster_green(&r);
    assert!(failed(&r).is_empty(), "{r}");
    // No resolver answers and Gitpod is not installed: skipped, never passed.
    assert_eq!(status(&r, "dns.delegation"), CheckStatus::Skipped, "{r}");
    let records = r.check("dns.records").unwrap();
    assert_eq!(records.status, CheckStatus::Skipped);
    assert!(
        records.summary.contains("no proxy load balancer"),
        "{records:?}"
    );

    // The regular workspace pool loses `gitpod.io/workload_workspace_regular`.
    let label = "gitpod.io/workload_workspace_regular";
    publish_pool(&s.fake, &spec, PoolRole::RegularWorkspaces, Some(label));
    let r = run(&s, &spec, &v).await;
    assert_eq!(failed(&r), ["cluster.node-labels.regular-ws"], "{r}");
    let c = r.check("cluster.node-labels.regular-ws").unwrap();
    assert!(c.summary.contains(&format!("{label}=true")), "{c:?}");
    assert!(c.summary.contains("regular-ws"), "{c:?}");
    let fix = c.fix.as_deref().unwrap();
    assert!(fix.contains("nodePools.regularWorkspaces.labels"), "{fix}");
    assert!(fix.contains("run apply"), "{fix}");

    // Back, and a node with an old kubelet, an old kernel and Docker: the version and
    // node checks fail naming it.
    publish_pool(&s.fake, &spec, PoolRole::RegularWorkspaces, None);
    let node = s.fake.objects("nodes")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    Api::<k8s_openapi::api::core::v1::Node>::all(kube_client(&s.fake))
        .patch_status(
            &node,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"nodeInfo": {
                "kernelVersion": "4.19.0-26-amd64",
                "containerRuntimeVersion": "docker://20.10.24",
                "kubeletVersion": "v1.20.15",
            }}})),
        )
        .await
        .unwrap();
    let r = run(&s, &spec, &v).await;
    assert_eq!(
        failed(&r),
        ["cluster.kubernetes-version", "cluster.nodes"],
        "{r}"
    );
    let c = r.check("cluster.kubernetes-version").unwrap();
    assert!(
        c.summary
            .contains(&format!("node {node} runs kubelet \"v1.20.15\"")),
        "{c:?}"
    );
    let c = r.check("cluster.nodes").unwrap();
    assert!(c.summary.contains(&node), "{c:?}");
    assert!(c.summary.contains("4.19.0-26-amd64"), "{c:?}");
    assert!(c.summary.contains("not containerd"), "{c:?}");
    s.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_without_a_key_and_a_certificate_not_ready_fail() {
    let (s, spec) = applied().await;
    let v = verifier(&s, no_dns());
    assert_cluster_green(&run(&s, &spec, &v).await);
    let client = kube_client(&s.fake);

    // The database Secret loses `password`: `cluster.secrets` names it, not its value.
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), "gitpod")
        .patch(
            "database",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"password": null}})),
        )
        .await
        .unwrap();
    let r = run(&s, &spec, &v).await;
    assert_eq!(failed(&r), ["cluster.secrets"], "{r}");
    let c = r.check("cluster.secrets").unwrap();
    assert!(
        c.summary
            .contains("Secret gitpod/database lacks key password"),
        "{c:?}"
    );
    assert!(c.fix.as_deref().unwrap().contains("run apply"), "{c:?}");

    // Apply repairs it.
    let again = s.engine.apply_spec(&spec).await.unwrap();
    assert!(again.failed.is_empty(), "{:?}", again.failed);
    assert_cluster_green(&run(&s, &spec, &v).await);

    // The Certificate changes and its ACME challenge fails: not Ready.
    s.fake
        .set_acme_challenges_fail(Some("DNS record not yet propagated".into()));
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate");
    let certs = Api::<DynamicObject>::namespaced_with(
        client,
        "gitpod",
        &ApiResource::from_gvk_with_plural(&gvk, "certificates"),
    );
    certs
        .patch(
            "https-certificates",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewBefore": "720h"}})),
        )
        .await
        .unwrap();
    let r = run(&s, &spec, &v).await;
    assert_eq!(failed(&r), ["cluster.certificate"], "{r}");
    let c = r.check("cluster.certificate").unwrap();
    assert!(c.summary.contains("is not Ready"), "{c:?}");
    assert!(c.fix.as_deref().unwrap().contains("challenges"), "{c:?}");
    s.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cluster_the_cluster_checks_are_skipped_and_a_missing_delegation_fails() {
    let (s, spec) = applied().await;
    // The parent zone without NS records for gitpod.example.com.
    let named = start_named(&[parent_zone(None)]);
    let v = verifier(&s, dns_of(&named));
    let mut all = outputs(&s).all().clone();
    all.retain(|id, _| id.kind != ResourceKind::Cluster);
    let no_cluster = Outputs::new(all);

    let r = run_with(&s, &spec, &no_cluster, &v).await;
    for id in CLUSTER_IDS.iter().copied().chain(["dns.records"]) {
        let c = r.check(id).unwrap_or_else(|| panic!("{id} missing:\n{r}"));
        assert_eq!(c.status, CheckStatus::Skipped, "{id}:\n{r}");
        assert!(c.summary.contains("no cluster yet (run apply)"), "{c:?}");
    }
    assert_eq!(failed(&r), ["dns.delegation"], "{r}");
    let c = r.check("dns.delegation").unwrap();
    assert!(c.summary.contains("not delegated"), "{c:?}");
    let ns = outputs(&s).name_servers().unwrap().to_vec();
    let fix = c.fix.as_deref().unwrap();
    assert!(
        fix.starts_with("add NS records for gitpod.example.com at the parent: "),
        "{fix}"
    );
    for n in &ns {
        assert!(fix.contains(n.as_str()), "{n} not in {fix}");
    }
    assert!(s.fake.counts().reads > 0);
    s.fake.shutdown().await;
}
