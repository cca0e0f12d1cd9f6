//! `fake-kube`: run the Kubernetes API server fake as a standalone HTTPS server on
//! 127.0.0.1.
//!
//! Writes the PEM of the CA generated at start to `--ca-file` (when given), then prints
//! its base URL (`https://127.0.0.1:PORT`) as the first line of stdout, keeps state in
//! memory and stops cleanly (exit code 0) on SIGTERM or SIGINT.

use std::io::Write as _;
use std::time::Duration;

use clap::Parser;
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube, DEFAULT_ACME_FAILURE};

/// A stateful, in-memory fake of the Kubernetes API server. Not Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "fake-kube", version)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write the PEM of the CA that signed the server's certificate to PATH (written
    /// before the URL is printed), for clients to trust.
    #[arg(long, value_name = "PATH")]
    ca_file: Option<std::path::PathBuf>,
    /// Fraction of calls answered 429 or 503 before any effect.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Milliseconds from a namespace's DELETE to the removal of its contents.
    #[arg(long, default_value_t = 200)]
    namespace_delete_delay_ms: u64,
    /// Milliseconds from a CRD's creation to Established.
    #[arg(long, default_value_t = 300)]
    crd_established_delay_ms: u64,
    /// Milliseconds from a Deployment's change to its ready status.
    #[arg(long, default_value_t = 100)]
    deployment_ready_delay_ms: u64,
    /// Milliseconds from the creation of the cert-manager webhook Deployment to a ready webhook.
    #[arg(long, default_value_t = 500)]
    webhook_ready_delay_ms: u64,
    /// Milliseconds from a LoadBalancer Service's creation to its ingress IP.
    #[arg(long, default_value_t = 100)]
    lb_provision_delay_ms: u64,
    /// Milliseconds from a LoadBalancer Service's DELETE to its disappearance.
    #[arg(long, default_value_t = 300)]
    lb_delete_delay_ms: u64,
    /// Milliseconds from a Certificate's issuer being found to Ready.
    #[arg(long, default_value_t = 200)]
    certificate_ready_delay_ms: u64,
    /// Milliseconds from an Issuer's or ClusterIssuer's change to Ready at its
    /// new generation.
    #[arg(long, default_value_t = 0)]
    issuer_ready_delay_ms: u64,
    /// ACME challenges never succeed; a Challenge shows REASON (or a default one).
    #[arg(long, value_name = "REASON", num_args = 0..=1, default_missing_value = DEFAULT_ACME_FAILURE)]
    acme_challenges_fail: Option<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fault_rate) {
        eprintln!("fake-kube: --fault-rate must be between 0 and 1");
        std::process::exit(2);
    }
    let ms = Duration::from_millis;
    let mut config = FakeConfig::default()
        .with_port(args.port)
        .with_fault_rate(args.fault_rate)
        .with_seed(args.seed)
        .with_namespace_delete_delay(ms(args.namespace_delete_delay_ms))
        .with_crd_established_delay(ms(args.crd_established_delay_ms))
        .with_deployment_ready_delay(ms(args.deployment_ready_delay_ms))
        .with_webhook_ready_delay(ms(args.webhook_ready_delay_ms))
        .with_lb_provision_delay(ms(args.lb_provision_delay_ms))
        .with_lb_delete_delay(ms(args.lb_delete_delay_ms))
        .with_certificate_ready_delay(ms(args.certificate_ready_delay_ms))
        .with_issuer_ready_delay(ms(args.issuer_ready_delay_ms));
    if let Some(reason) = args.acme_challenges_fail {
        config = config.with_acme_challenges_fail(reason);
    }
    let fake = FakeKube::start(config).await?;
    if let Some(path) = &args.ca_file {
        if let Err(e) = std::fs::write(path, fake.ca_pem()) {
            eprintln!("fake-kube: cannot write --ca-file {}: {e}", path.display());
            std::process::exit(2);
        }
    }
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
