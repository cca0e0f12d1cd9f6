//! `fake-gcp`: run the GCP fake as a standalone server on 127.0.0.1.
//!
//! Prints its base URL as the first line of stdout, keeps state in memory and stops
//! cleanly (exit code 0) on SIGTERM or SIGINT.

use std::io::Write as _;
use std::time::Duration;

use clap::Parser;
use gitpod_refarch_fake_gcp::{FakeConfig, FakeGcp};

/// A stateful, in-memory fake of the GCP APIs gitpod-refarch uses. Not GCP.
#[derive(Debug, Parser)]
#[command(name = "fake-gcp", version)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// A long-running operation is DONE on the Nth get of it.
    #[arg(long, default_value_t = 2)]
    polls: u32,
    /// Instead of counting polls, an operation is DONE after this many milliseconds.
    #[arg(long)]
    op_delay_ms: Option<u64>,
    /// Fraction of calls answered 429 or 503 before any effect.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// An operationType or method id whose operations end with an error.
    #[arg(long)]
    fail_operation: Option<String>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A project that exists at start (repeatable; default: p).
    #[arg(long = "project")]
    projects: Vec<String>,
    /// Every GKE cluster's API server is the Kubernetes fake at this URL (reported
    /// as GKE does: a bare address). Needs --kube-ca-file.
    #[arg(long, requires = "kube_ca_file")]
    kube_endpoint: Option<String>,
    /// PEM file of the CA the Kubernetes fake's certificate chains to (fake-kube
    /// --ca-file): reported as the clusters' masterAuth.clusterCaCertificate.
    #[arg(long, value_name = "PATH", requires = "kube_endpoint")]
    kube_ca_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fault_rate) {
        eprintln!("fake-gcp: --fault-rate must be between 0 and 1");
        std::process::exit(2);
    }
    let mut config = FakeConfig::default()
        .with_port(args.port)
        .with_polls_to_finish(args.polls)
        .with_op_delay(args.op_delay_ms.map(Duration::from_millis))
        .with_fault_rate(args.fault_rate)
        .with_fail_operation(args.fail_operation)
        .with_seed(args.seed)
        .with_kube_endpoint(args.kube_endpoint);
    if let Some(path) = &args.kube_ca_file {
        match std::fs::read_to_string(path) {
            Ok(pem) => config = config.with_kube_ca_pem(Some(pem)),
            Err(e) => {
                eprintln!(
                    "fake-gcp: cannot read --kube-ca-file {}: {e}",
                    path.display()
                );
                std::process::exit(2);
            }
        }
    }
    if !args.projects.is_empty() {
        config = config.with_projects(args.projects);
    }
    let fake = FakeGcp::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", fake.url())?;
        out.flush()?;
    }
    wait_for_signal().await?;
    fake.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
