//! `fake-azure`: run the Azure Resource Manager fake as a standalone server on
//! 127.0.0.1. Not Azure.
//!
//! Prints its base URL (ARM and Entra authority) as the first line of stdout, keeps
//! state in memory and stops cleanly (exit code 0) on SIGTERM or SIGINT.

use std::io::Write as _;

use clap::Parser;
use gitpod_refarch_fake_azure::{FakeAzure, FakeConfig, DEFAULT_CLIENT_ID, DEFAULT_TENANT};

/// A stateful, in-memory fake of the Azure Resource Manager APIs gitpod-refarch uses,
/// with an Entra ID token endpoint. Not Azure.
#[derive(Debug, Parser)]
#[command(name = "fake-azure", version)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// A long-running operation finishes on its Nth poll.
    #[arg(long, default_value_t = 2)]
    polls: u32,
    /// Instead of counting polls, operations take their realistic duration times this
    /// factor (e.g. 0.001: AKS create 360 ms).
    #[arg(long)]
    time_scale: Option<f64>,
    /// The Retry-After (seconds) of LRO answers.
    #[arg(long, default_value_t = 0)]
    retry_after: u64,
    /// Fraction of ARM calls answered 429, 500 or 503 before any effect.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// An operation kind (e.g. managedClusters.create) whose operations fail.
    #[arg(long)]
    fail_operation: Option<String>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A subscription that exists (repeatable; default: the built-in one).
    #[arg(long = "subscription")]
    subscriptions: Vec<String>,
    /// The tenant id.
    #[arg(long, default_value = DEFAULT_TENANT)]
    tenant: String,
    /// An extra client as ID=SECRET (repeatable; the default client is always known).
    #[arg(long = "client")]
    clients: Vec<String>,
    /// Accept ARM calls without a bearer token.
    #[arg(long)]
    no_auth: bool,
    /// Every AKS cluster's API server is the Kubernetes fake at this https URL (the
    /// credentials' kubeconfig names it as server). Needs --kube-ca-file.
    #[arg(long, requires = "kube_ca_file")]
    kube_endpoint: Option<String>,
    /// PEM file of the CA the Kubernetes fake's certificate chains to (fake-kube
    /// --ca-file): the kubeconfig's certificate-authority-data.
    #[arg(long, value_name = "PATH", requires = "kube_endpoint")]
    kube_ca_file: Option<std::path::PathBuf>,
    /// Role assignments for a new principal fail this many times first.
    #[arg(long, default_value_t = 0)]
    principal_not_found_attempts: u32,
    /// Start with every provider namespace registered.
    #[arg(long)]
    providers_registered: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fault_rate) {
        eprintln!("fake-azure: --fault-rate must be between 0 and 1");
        std::process::exit(2);
    }
    let mut config = FakeConfig::default()
        .with_port(args.port)
        .with_polls_to_finish(args.polls)
        .with_time_scale(args.time_scale)
        .with_retry_after_secs(args.retry_after)
        .with_fault_rate(args.fault_rate)
        .with_fail_operation(args.fail_operation)
        .with_seed(args.seed)
        .with_tenant(args.tenant)
        .with_require_auth(!args.no_auth)
        .with_kube_endpoint(args.kube_endpoint)
        .with_principal_not_found_attempts(args.principal_not_found_attempts)
        .with_providers_registered(args.providers_registered);
    if let Some(path) = &args.kube_ca_file {
        match std::fs::read_to_string(path) {
            Ok(pem) => config = config.with_kube_ca_pem(Some(pem)),
            Err(e) => {
                eprintln!(
                    "fake-azure: cannot read --kube-ca-file {}: {e}",
                    path.display()
                );
                std::process::exit(2);
            }
        }
    }
    if !args.subscriptions.is_empty() {
        config = config.with_subscriptions(args.subscriptions);
    }
    for c in &args.clients {
        let Some((id, secret)) = c.split_once('=') else {
            eprintln!("fake-azure: --client must be ID=SECRET");
            std::process::exit(2);
        };
        config = config.with_client(id, secret);
    }
    let fake = FakeAzure::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", fake.url())?;
        out.flush()?;
    }
    eprintln!(
        "fake-azure: serving ARM and Entra ID (tenant {}, default client {DEFAULT_CLIENT_ID}) at {}",
        fake.tenant_id(),
        fake.url()
    );
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
