//! `gitpod-refarch-operator`: the controller binary.
//!
//! ```text
//! gitpod-refarch-operator run [--namespace NS] [--identity ID] [--leader-election
//!     [--lease-namespace NS] [--lease-name NAME]] [--cloud sim|aws,gcp,azure]
//!     [--aws-endpoint-url URL] [--gcp-endpoint-url URL] [--azure-endpoint-url URL]
//!     [--budget N] [--resync SECONDS] [--state-persist-interval SECONDS]
//!     [--kubeconfig PATH]
//! gitpod-refarch-operator manifests --out DIR [--namespace NS] [--image IMAGE]
//! ```
//!
//! Without a subcommand the flags are `run`'s (the Deployment's `args:
//! ["--leader-election"]`).
//!
//! `run` reconciles `GitpodInstallation`s until SIGTERM or Ctrl-C, then stops its
//! work and, with leader election, releases the Lease so another replica takes over
//! at once. Logs go to stderr (`--log-format json` for JSON lines; `RUST_LOG` filters,
//! default `info`).

/// With feature `jemalloc` (default): fewer bytes per live object and less CPU in
/// malloc than glibc's allocator for the controller's many small, short-lived
/// allocations (measured in `benches/benches/operator.rs`).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use gitpod_refarch::{Error, ErrorKind, Result};
use gitpod_refarch_operator::controller::{self, OperatorConfig};
use gitpod_refarch_operator::factory::{ByCloud, ProviderFactory, SimFactory};
use gitpod_refarch_operator::leader::{run_as_leader_until, LeaderConfig};

/// The Kubernetes controller of gitpod-refarch (`GitpodInstallation` resources).
#[derive(Debug, Parser)]
#[command(
    name = "gitpod-refarch-operator",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
    /// `run`'s flags, when no subcommand is given.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

// Parsed once at start: the size of `run`'s flags costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Reconcile GitpodInstallations until SIGTERM.
    Run(RunArgs),
    /// Write the deployment manifests (CRD, RBAC, Deployment, example) into a
    /// directory.
    Manifests {
        /// The directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The namespace the controller is deployed in.
        #[arg(long, default_value = gitpod_refarch_operator::manifests::DEFAULT_NAMESPACE)]
        namespace: String,
        /// The controller's image.
        #[arg(long, default_value = gitpod_refarch_operator::manifests::DEFAULT_IMAGE)]
        image: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CloudArg {
    /// The in-process simulated cloud (demos, tests).
    Sim,
    /// Amazon Web Services.
    Aws,
    /// Google Cloud.
    Gcp,
    /// Microsoft Azure.
    Azure,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// This replica's identity: state lock owner `controller <identity>`, Events,
    /// leader election (default: `$POD_NAME`, else the host name).
    #[arg(long)]
    identity: Option<String>,
    /// Elect a leader among replicas on a Lease; only the leader reconciles.
    #[arg(long)]
    leader_election: bool,
    /// Namespace of the Lease (default: `$POD_NAMESPACE`, else the service account's
    /// namespace, else the watched namespace, else `default`).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "gitpod-refarch-operator")]
    lease_name: String,
    /// Lease duration, seconds: how long a silent leader keeps the Lease.
    #[arg(long, default_value_t = 15.0)]
    lease_duration: f64,
    /// Renew deadline, seconds: a leader that cannot renew for this long stops.
    #[arg(long, default_value_t = 10.0)]
    renew_deadline: f64,
    /// Retry period, seconds: how often candidates try and the leader renews.
    #[arg(long, default_value_t = 2.0)]
    retry_period: f64,
    /// Which clouds the controller runs installations on, comma-separated; each
    /// installation goes to its spec's `cloud`, and one on a cloud not listed is
    /// Degraded. `sim` runs every installation on the simulated cloud. Default: every
    /// cloud of this build (aws, gcp, azure).
    #[arg(long, value_enum, value_delimiter = ',')]
    cloud: Vec<CloudArg>,
    /// Send every AWS call to this endpoint (moto, LocalStack).
    #[arg(long)]
    aws_endpoint_url: Option<String>,
    /// Send every GCP call to this endpoint (a local fake, with anonymous credentials
    /// unless the installation's Secret holds a key).
    #[arg(long)]
    gcp_endpoint_url: Option<String>,
    /// Send every ARM call and Entra token request to this endpoint (a local fake).
    #[arg(long)]
    azure_endpoint_url: Option<String>,
    /// With `--cloud sim`: operations take the realistic cloud durations times FACTOR
    /// (`0.0033`: an installation's ~16 minutes in ~3 seconds); default: at once.
    #[arg(long, value_name = "FACTOR")]
    sim_latency_scale: Option<f64>,
    /// Concurrent cloud calls per account, across its installations.
    #[arg(long, default_value_t = 8)]
    budget: usize,
    /// Installations reconciled at once (0: no limit); bounds the controller's memory,
    /// while the budget bounds cloud calls.
    #[arg(long, default_value_t = 1024)]
    concurrency: u16,
    /// Kubernetes API requests in flight at most (0: no limit); more wait for a free
    /// slot. Leader election has its own connection, outside this limit.
    #[arg(long, default_value_t = gitpod_refarch_operator::client::DEFAULT_MAX_IN_FLIGHT)]
    api_concurrency: usize,
    /// Seconds a run's outputs that hold no secret may wait before they are written to
    /// the state Secret (0: after every step); secrets and a run's end are written at
    /// once.
    #[arg(long, default_value_t = 20.0, value_name = "SECONDS")]
    state_persist_interval: f64,
    /// Seconds between reconciles of a Ready installation (drift repair).
    #[arg(long, default_value_t = 600)]
    resync: u64,
    /// Kubeconfig to use (default: in-cluster, else `$KUBECONFIG`, else
    /// `~/.kube/config`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Run(args)) => run(args).await,
            None => run(cli.run).await,
            Some(Command::Manifests {
                out,
                namespace,
                image,
            }) => gitpod_refarch_operator::manifests::write_all(&out, &namespace, &image),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(kind = %e.kind(), "{}", e.chain());
            eprintln!("error: {}", e.chain());
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::EnvFilter;
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    // With RUST_LOG, its directives (per target and span). Without, a plain level:
    // decided once per call site, where an EnvFilter checks its span directives on
    // every poll of an instrumented future (2-3 % of the CPU of a fleet's reconciles).
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| EnvFilter::try_new(v).unwrap_or_else(|_| EnvFilter::new("info")));
    let _ = match (directives, format) {
        (Some(filter), LogFormat::Text) => builder.with_env_filter(filter).try_init(),
        (Some(filter), LogFormat::Json) => builder.json().with_env_filter(filter).try_init(),
        (None, LogFormat::Text) => builder.with_max_level(LevelFilter::INFO).try_init(),
        (None, LogFormat::Json) => builder.json().with_max_level(LevelFilter::INFO).try_init(),
    };
}

fn identity(flag: Option<String>) -> String {
    flag.filter(|s| !s.is_empty())
        .or_else(|| std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| format!("gitpod-refarch-operator-{}", std::process::id()))
}

fn lease_namespace(flag: Option<String>, watched: Option<&str>) -> String {
    flag.filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| watched.map(str::to_string))
        .unwrap_or_else(|| "default".to_string())
}

fn seconds(what: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Error::invalid_input(format!("--{what} must be a positive number of seconds"))
        })
}

async fn kube_config(kubeconfig: Option<&Path>) -> Result<kube::Config> {
    // kube-rs needs a process-wide rustls provider when the build enables both ring
    // and aws-lc-rs; ring is the workspace's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("cannot read the kubeconfig {}: {e}", path.display()),
                )
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("the kubeconfig {} is not usable: {e}", path.display()),
                    )
                })?
        }
        None => kube::Config::infer().await.map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "no Kubernetes configuration: not in a cluster, and no usable $KUBECONFIG \
                     or ~/.kube/config ({e}); pass --kubeconfig"
                ),
            )
        })?,
    };
    Ok(config)
}

fn factory(args: &RunArgs) -> Result<Arc<dyn ProviderFactory>> {
    let clouds: Vec<CloudArg> = if args.cloud.is_empty() {
        vec![CloudArg::Aws, CloudArg::Gcp, CloudArg::Azure]
    } else {
        args.cloud.clone()
    };
    let endpoints = [
        ("--aws-endpoint-url", CloudArg::Aws, &args.aws_endpoint_url),
        ("--gcp-endpoint-url", CloudArg::Gcp, &args.gcp_endpoint_url),
        (
            "--azure-endpoint-url",
            CloudArg::Azure,
            &args.azure_endpoint_url,
        ),
    ];
    for (flag, cloud, url) in endpoints {
        if url.is_some() && !clouds.contains(&cloud) {
            return Err(Error::invalid_input(format!(
                "{flag} is for a controller of that cloud (--cloud {})",
                cloud_name(cloud)
            )));
        }
    }
    if clouds.contains(&CloudArg::Sim) {
        if clouds.len() > 1 {
            return Err(Error::invalid_input(
                "--cloud sim runs every installation on the simulated cloud; it does not \
                 mix with other clouds",
            ));
        }
        return Ok(Arc::new(match args.sim_latency_scale {
            None => SimFactory::default(),
            Some(f) if f.is_finite() && f >= 0.0 => SimFactory::new(
                Arc::new(gitpod_refarch::engine::TokioClock::new()),
                gitpod_refarch::sim::LatencyProfile::realistic().scaled(f),
            ),
            Some(_) => {
                return Err(Error::invalid_input(
                    "--sim-latency-scale must be a number >= 0",
                ))
            }
        }));
    }
    if args.sim_latency_scale.is_some() {
        return Err(Error::invalid_input(
            "--sim-latency-scale is for --cloud sim",
        ));
    }
    let mut by_cloud = ByCloud::new();
    for cloud in clouds {
        by_cloud = match cloud {
            CloudArg::Sim => by_cloud,
            #[cfg(feature = "aws")]
            CloudArg::Aws => {
                let mut f = gitpod_refarch_operator::factory::AwsFactory::new();
                if let Some(url) = &args.aws_endpoint_url {
                    f = f.endpoint_url(url.clone());
                }
                by_cloud.with(gitpod_refarch::spec::Cloud::Aws, Arc::new(f))
            }
            #[cfg(feature = "gcp")]
            CloudArg::Gcp => {
                let mut f = gitpod_refarch_operator::factory::GcpFactory::new();
                if let Some(url) = &args.gcp_endpoint_url {
                    f = f.endpoint_url(url.clone());
                }
                by_cloud.with(gitpod_refarch::spec::Cloud::Gcp, Arc::new(f))
            }
            #[cfg(feature = "azure")]
            CloudArg::Azure => {
                let mut f = gitpod_refarch_operator::factory::AzureFactory::new();
                if let Some(url) = &args.azure_endpoint_url {
                    f = f.endpoint_url(url.clone());
                }
                by_cloud.with(gitpod_refarch::spec::Cloud::Azure, Arc::new(f))
            }
            #[allow(unreachable_patterns)]
            other => {
                // Named on purpose but not built in: refuse rather than run without it.
                if !args.cloud.is_empty() {
                    return Err(Error::invalid_input(format!(
                        "this build has no {} support (feature `{}`)",
                        cloud_name(other),
                        cloud_name(other)
                    )));
                }
                by_cloud
            }
        };
    }
    if by_cloud.clouds().is_empty() {
        return Err(Error::invalid_input(
            "this build has no cloud but the simulated one: use --cloud sim",
        ));
    }
    Ok(Arc::new(by_cloud))
}

fn cloud_name(cloud: CloudArg) -> &'static str {
    match cloud {
        CloudArg::Sim => "sim",
        CloudArg::Aws => "aws",
        CloudArg::Gcp => "gcp",
        CloudArg::Azure => "azure",
    }
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stop signal received: stopping");
}

/// The controller, run again after a failure (the CRD not installed yet, the API
/// server unreachable) with a growing delay, until the future is dropped.
async fn controller_loop(
    client: kube::Client,
    factory: Arc<dyn ProviderFactory>,
    config: OperatorConfig,
) -> Result<()> {
    let mut delay = Duration::from_secs(1);
    loop {
        match controller::run(client.clone(), factory.clone(), config.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(kind = %e.kind(), retry_in = ?delay, "controller stopped: {}", e.chain());
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let identity = identity(args.identity.clone());
    let factory = factory(&args)?;
    let persist_interval =
        Duration::try_from_secs_f64(args.state_persist_interval).map_err(|_| {
            Error::invalid_input("--state-persist-interval must be a number of seconds >= 0")
        })?;
    let config = OperatorConfig::new(identity.clone())
        .persist_interval(persist_interval)
        .namespace(args.namespace.clone())
        .resync(Duration::from_secs(args.resync.max(1)))
        .account_budget(args.budget)
        .concurrency(args.concurrency);
    let election = if args.leader_election {
        let c = LeaderConfig::new(
            lease_namespace(args.lease_namespace.clone(), args.namespace.as_deref()),
            args.lease_name.clone(),
            identity.clone(),
        )
        .with_lease_duration(seconds("lease-duration", args.lease_duration)?)
        .with_renew_deadline(seconds("renew-deadline", args.renew_deadline)?)
        .with_retry_period(seconds("retry-period", args.retry_period)?);
        c.validate()?;
        Some(c)
    } else {
        None
    };
    let kube_config = kube_config(args.kubeconfig.as_deref()).await?;
    let client = match args.api_concurrency {
        0 => gitpod_refarch_operator::client::unlimited(kube_config.clone())?,
        n => gitpod_refarch_operator::client::limited(kube_config.clone(), n)?,
    };
    tracing::info!(
        identity = %identity,
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        cloud = ?args.cloud,
        leader_election = args.leader_election,
        "gitpod-refarch-operator starting"
    );
    match election {
        Some(lease) => {
            let lease_client = gitpod_refarch_operator::client::unlimited(kube_config)?;
            run_as_leader_until(lease_client, lease, shutdown_signal(), || {
                controller_loop(client.clone(), factory.clone(), config.clone())
            })
            .await
        }
        None => {
            tokio::select! {
                r = controller_loop(client, factory, config) => r,
                _ = shutdown_signal() => Ok(()),
            }
        }
    }
}
