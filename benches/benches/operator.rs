//! Fleet benchmark of the Kubernetes controller: N `GitpodInstallation`s on the
//! simulated cloud, reconciled by the operator binary (`gitpod-refarch-operator run
//! --cloud sim`) in its own process against the Kubernetes fake (in this process).
//!
//! One run: a fresh fake with the CRD, N installations created (distinct names,
//! domains and GCP projects), one watch on them, then the controller started; the time
//! is from the controller's start until every installation has `Ready=True` (seen on
//! that one watch). At that moment the controller's peak resident set (`VmHWM` of
//! `/proc/<pid>/status`, Linux) is read, and the fake's request counters (reset just
//! before the controller starts, the bench's own watch requests taken out) give the
//! API calls per installation. The simulated cloud runs the realistic latency profile
//! scaled so that one installation takes a few seconds of real time. The ratio of N
//! installations to one measures the controller's parallelism as long as waiting
//! dominates, as it does on a real cloud (one installation ~16 minutes). At the
//! default 1/300, 1,000 installations need about 7 CPU-seconds between the
//! controller and the fake on a 2-core machine, about one one-installation run per
//! core: that row measures CPU too. `GITPOD_REFARCH_FLEET_SCALE=0.01` (one
//! installation ~10 s) keeps the waiting dominant.
//!
//! - `cargo test -p gitpod-refarch-benches --bench operator` (criterion's test mode,
//!   CI's smoke run): N = 1 and N = 10, once each.
//! - `cargo bench -p gitpod-refarch-benches --bench operator`: N = 1, 100 and 1000,
//!   criterion timings (10 samples each).
//! - `cargo bench -p gitpod-refarch-benches --bench operator -- --fleet 1,100,1000`:
//!   one run of each N, no criterion, the table only.
//!
//! Every mode prints the table (N, time, ratio to N = 1, peak RSS, API calls per
//! installation) and writes it to `target/criterion/operator-fleet.json`.
//!
//! The operator binary: `GITPOD_REFARCH_OPERATOR_BIN` if set; else
//! `target/<profile>/gitpod-refarch-operator`, built with `cargo build` first when
//! running as a real bench (a no-op when up to date) or when it is missing.
//! `GITPOD_REFARCH_FLEET_SCALE` overrides the latency scale, and
//! `GITPOD_REFARCH_FLEET_ARGS` adds flags to the controller's command line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unused_must_use
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use futures::{StreamExt, TryStreamExt};
use gitpod_refarch_fake_kube::{Counts, FakeConfig, FakeKube};
use gitpod_refarch_operator::crd::GitpodInstallation;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::json;

/// Real-time fraction of the realistic cloud durations: the reference installation's
/// ~990 s critical path takes ~3.3 s.
const SCALE: f64 = 1.0 / 300.0;
/// Namespace of the installations.
const NAMESPACE: &str = "default";
/// A run that takes longer than this failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(1800);

/// What one run measured.
#[derive(Debug, Clone)]
struct Run {
    n: usize,
    wall: Duration,
    peak_rss_kib: Option<u64>,
    cpu_s: Option<f64>,
    /// CPU time of this process (the fake, the bench) during the run.
    fake_cpu_s: Option<f64>,
    /// The controller's calls (the bench's own taken out).
    calls: Counts,
}

impl Run {
    fn controller_calls(&self) -> u64 {
        self.calls.reads + self.calls.mutating
    }
}

fn scale() -> f64 {
    std::env::var("GITPOD_REFARCH_FLEET_SCALE")
        .ok()
        .map(|s| {
            s.parse::<f64>()
                .unwrap_or_else(|_| panic!("GITPOD_REFARCH_FLEET_SCALE={s:?} is not a number"))
        })
        .unwrap_or(SCALE)
}

/// `target/<profile>` of this bench executable (`target/<profile>/deps/operator-*`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .expect("bench executable outside target/<profile>/deps")
        .to_path_buf()
}

/// The operator binary to run (built first when `build`, or when missing).
fn operator_binary(build: bool) -> PathBuf {
    if let Some(p) = std::env::var_os("GITPOD_REFARCH_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    let dir = profile_dir();
    let bin = dir.join(format!(
        "gitpod-refarch-operator{}",
        std::env::consts::EXE_SUFFIX
    ));
    if build || !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "-p",
            "gitpod-refarch-operator",
            "--bin",
            "gitpod-refarch-operator",
        ]);
        if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        eprintln!("building the operator binary: {cmd:?}");
        let status = cmd.status().expect("cannot run cargo");
        assert!(status.success(), "building the operator failed: {status}");
    }
    assert!(
        bin.exists(),
        "no operator binary at {} (set GITPOD_REFARCH_OPERATOR_BIN)",
        bin.display()
    );
    bin
}

/// A scratch directory for one run (kubeconfig, CA, controller log).
fn scratch_dir(n: usize) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "gitpod-refarch-fleet-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A kubeconfig for the fake (its URL, trusting its CA file), namespace `default`.
fn write_kubeconfig(dir: &Path, fake: &FakeKube) -> PathBuf {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, fake.ca_pem()).unwrap();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {
            "server": fake.url(),
            "certificate-authority": ca.display().to_string(),
        }}],
        "users": [{"name": "bench", "user": {"token": "bench"}}],
        "contexts": [{"name": "fake", "context": {
            "cluster": "fake", "user": "bench", "namespace": NAMESPACE,
        }}],
        "current-context": "fake",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

async fn client_for(kubeconfig: &Path) -> Client {
    // Workspace builds enable both ring and aws-lc-rs in rustls: choose one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Installation `i`: the GCP reference spec with its own name, domain and project (a
/// fleet is one installation per customer account, so no two share a budget).
fn installation(i: usize) -> GitpodInstallation {
    let name = format!("gp{i:04}");
    serde_json::from_value(json!({
        "apiVersion": "refarch.gitpod.io/v1alpha1",
        "kind": "GitpodInstallation",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "cloud": "gcp",
            "name": name,
            "domain": format!("{name}.example.com"),
            "gcp": {"project": format!("gitpod-bench-{i:04}")},
            "certificates": {"issuer": "acme", "email": "ops@example.com"},
        },
    }))
    .unwrap()
}

fn condition(gpi: &GitpodInstallation, type_: &str) -> Option<(bool, String)> {
    gpi.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status == "True", format!("{}: {}", c.reason, c.message)))
    })
}

/// More `run` flags for the controller, from `GITPOD_REFARCH_FLEET_ARGS`
/// (whitespace-separated, e.g. `--budget 64`).
fn extra_args() -> Vec<String> {
    std::env::var("GITPOD_REFARCH_FLEET_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// User plus system CPU time of process `pid`, seconds (`/proc/<pid>/stat`, 100 ticks
/// a second); `None` off Linux.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces): utime is the 14th
    // field of the line, stime the 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The controller process: killed when dropped.
struct Controller {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Controller {
    fn start(bin: &Path, kubeconfig: &Path, dir: &Path, scale: f64) -> Controller {
        let log = dir.join("controller.log");
        let err = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(bin)
            .args(["run", "--cloud", "sim", "--identity", "fleet-bench"])
            .arg("--sim-latency-scale")
            .arg(scale.to_string())
            .args(extra_args())
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Controller { child, log }
    }

    /// `VmHWM` (peak resident set) in KiB; `None` off Linux.
    fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The controller's user plus system CPU time, seconds.
    fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.child.id()?)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// One run of `n` installations.
async fn fleet_run(bin: &Path, n: usize, scale: f64) -> Run {
    let fake = FakeKube::start(
        FakeConfig::default()
            .with_crd_established_delay(Duration::ZERO)
            // Enough history per type that the bench's own watch of a
            // 1000-installation run never expires.
            .with_watch_history(50_000)
            // Counters only: the bench reads no call, and a log of every request body
            // would grow with the run.
            .with_call_log(0),
    )
    .await
    .unwrap();
    let dir = scratch_dir(n);
    let kubeconfig = write_kubeconfig(&dir, &fake);
    let client = client_for(&kubeconfig).await;

    // The CRD, Established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = GitpodInstallation::crd();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    kube::runtime::wait::await_condition(
        crds,
        &crd.name_any(),
        kube::runtime::conditions::is_crd_established(),
    )
    .await
    .unwrap();

    // The installations.
    let api: Api<GitpodInstallation> = Api::namespaced(client.clone(), NAMESPACE);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &installation(i)).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();

    // One watch on all of them (from "0": an ADDED per installation first), opened
    // before the counters are reset so that it is not the controller's.
    let mut own_watches = 0u64;
    let params = WatchParams::default().timeout(290);
    let mut events = api.watch(&params, "0").await.unwrap().boxed();
    fake.reset_calls();

    let mut ready = BTreeSet::new();
    let mut last_version = "0".to_string();
    let own_cpu = cpu_seconds(std::process::id());
    let controller = Controller::start(bin, &kubeconfig, &dir, scale);
    let start = Instant::now();
    let outcome = tokio::time::timeout(RUN_TIMEOUT, async {
        while ready.len() < n {
            let event = match events.next().await {
                Some(e) => e.unwrap(),
                None => {
                    // The watch timed out: resume from the last version seen.
                    own_watches += 1;
                    events = api.watch(&params, &last_version).await.unwrap().boxed();
                    continue;
                }
            };
            match event {
                WatchEvent::Added(gpi) | WatchEvent::Modified(gpi) => {
                    if let Some(rv) = gpi.resource_version() {
                        last_version = rv;
                    }
                    if let Some((true, why)) = condition(&gpi, "Degraded") {
                        return Err(format!("{} is Degraded: {why}", gpi.name_any()));
                    }
                    if let Some((true, _)) = condition(&gpi, "Ready") {
                        ready.insert(gpi.name_any());
                    }
                }
                WatchEvent::Deleted(gpi) => {
                    return Err(format!("{} was deleted", gpi.name_any()));
                }
                WatchEvent::Bookmark(b) => last_version = b.metadata.resource_version,
                WatchEvent::Error(e) => return Err(format!("watch error: {e:?}")),
            }
        }
        Ok(())
    })
    .await;
    let wall = start.elapsed();
    let peak_rss_kib = controller.peak_rss_kib();
    let cpu_s = controller.cpu_seconds();
    let fake_cpu_s = cpu_seconds(std::process::id())
        .zip(own_cpu)
        .map(|(b, a)| b - a);
    let mut calls = fake.counts();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("N={n}: {e}\ncontroller log:\n{}", controller.log_tail()),
        Err(_) => panic!(
            "N={n}: {} of {n} Ready after {RUN_TIMEOUT:?}\ncontroller log:\n{}",
            ready.len(),
            controller.log_tail()
        ),
    }
    drop(events);
    drop(controller);
    // The bench's own re-opened watches are not the controller's.
    calls.reads -= own_watches;
    if let Some(w) = calls.per_verb.get_mut("watch gitpodinstallations") {
        *w -= own_watches;
    }
    fake.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        n,
        wall,
        peak_rss_kib,
        cpu_s,
        fake_cpu_s,
        calls,
    }
}

fn median<T: Clone + PartialOrd>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2].clone()
}

/// Print the table and write it as JSON next to criterion's results.
fn report(runs: &[Run], scale: f64, bin: &Path) {
    let mut by_n: BTreeMap<usize, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        by_n.entry(r.n).or_default().push(r);
    }
    let one = by_n
        .get(&1)
        .map(|rs| median(&rs.iter().map(|r| r.wall.as_secs_f64()).collect::<Vec<_>>()));
    println!(
        "\noperator fleet (sim, realistic latency x{scale:.5}; controller {})",
        bin.display()
    );
    println!(
        "{:>6} {:>5} {:>10} {:>9} {:>14} {:>10} {:>10} {:>12} {:>14}",
        "N",
        "runs",
        "time s",
        "vs N=1",
        "peak RSS MiB",
        "CPU s",
        "fake CPU s",
        "calls/inst",
        "mutating/inst"
    );
    let mut rows = Vec::new();
    for (n, rs) in &by_n {
        let wall = median(&rs.iter().map(|r| r.wall.as_secs_f64()).collect::<Vec<_>>());
        let ratio = one.map(|o| wall / o);
        let rss = rs.iter().filter_map(|r| r.peak_rss_kib).max();
        let per_inst = median(
            &rs.iter()
                .map(|r| r.controller_calls() as f64 / *n as f64)
                .collect::<Vec<_>>(),
        );
        let mutating = median(
            &rs.iter()
                .map(|r| r.calls.mutating as f64 / *n as f64)
                .collect::<Vec<_>>(),
        );
        let rss_mib = rss.map(|k| k as f64 / 1024.0);
        let cpu = rs.last().and_then(|r| r.cpu_s);
        let fake_cpu = rs.last().and_then(|r| r.fake_cpu_s);
        println!(
            "{:>6} {:>5} {:>10.3} {:>9} {:>14} {:>10} {:>10} {:>12.2} {:>14.2}",
            n,
            rs.len(),
            wall,
            ratio.map_or("-".into(), |r| format!("{r:.3}")),
            rss_mib.map_or("-".into(), |m| format!("{m:.1}")),
            cpu.map_or("-".into(), |c| format!("{c:.1}")),
            fake_cpu.map_or("-".into(), |c| format!("{c:.1}")),
            per_inst,
            mutating
        );
        let last = rs.last().map(|r| r.calls.clone()).unwrap_or_default();
        rows.push(json!({
            "n": n,
            "runs": rs.len(),
            "time_s_median": wall,
            "time_s_all": rs.iter().map(|r| r.wall.as_secs_f64()).collect::<Vec<_>>(),
            "ratio_to_one": ratio,
            "peak_rss_mib_max": rss_mib,
            "controller_cpu_s_last_run": cpu,
            "fake_and_bench_cpu_s_last_run": fake_cpu,
            "api_calls_per_installation": per_inst,
            "mutating_calls_per_installation": mutating,
            "last_run_calls": {
                "reads": last.reads,
                "mutating": last.mutating,
                "errors": last.errors,
                "per_verb": last.per_verb,
            },
        }));
    }
    let doc = json!({
        "benchmark": "operator-fleet",
        "latency_scale": scale,
        "controller": bin.display().to_string(),
        "controller_extra_args": extra_args(),
        "goals": {"ratio_1000_to_one_below": 2.0, "peak_rss_mib_below": 200.0},
        "rows": rows,
    });
    let out = profile_dir()
        .parent()
        .map(|t| t.join("criterion"))
        .unwrap_or_else(|| PathBuf::from("target/criterion"));
    let _ = std::fs::create_dir_all(&out);
    let file = out.join("operator-fleet.json");
    match std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()) {
        Ok(()) => println!("written to {}", file.display()),
        Err(e) => eprintln!("cannot write {}: {e}", file.display()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let fleet = args
        .iter()
        .position(|a| a == "--fleet")
        .map(|i| args.get(i + 1).expect("--fleet N[,N...]"));
    let scale = scale();
    let rt = runtime();

    if let Some(list) = fleet {
        // One run of each N, no criterion.
        let sizes: Vec<usize> = list
            .split(',')
            .map(|s| s.trim().parse().expect("--fleet N[,N...]"))
            .collect();
        let bin = operator_binary(true);
        let mut runs = Vec::new();
        for n in sizes {
            let run = rt.block_on(fleet_run(&bin, n, scale));
            eprintln!(
                "N={n}: {:.3} s, peak RSS {:?} KiB, controller CPU {:?} s, {} calls",
                run.wall.as_secs_f64(),
                run.peak_rss_kib,
                run.cpu_s,
                run.controller_calls()
            );
            runs.push(run);
        }
        report(&runs, scale, &bin);
        return;
    }

    // Criterion: the small N in test mode (CI), the fleet as a real bench.
    let sizes: &[usize] = if bench_mode {
        &[1, 100, 1000]
    } else {
        &[1, 10]
    };
    let bin = operator_binary(bench_mode);
    let mut criterion = Criterion::default().configure_from_args();
    let mut runs = Vec::new();
    {
        let mut group = criterion.benchmark_group("operator-fleet");
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(30));
        for &n in sizes {
            group.bench_with_input(BenchmarkId::new("all-ready", n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let run = rt.block_on(fleet_run(&bin, n, scale));
                        total += run.wall;
                        runs.push(run);
                    }
                    total
                })
            });
        }
        group.finish();
    }
    criterion.final_summary();
    report(&runs, scale, &bin);
}
