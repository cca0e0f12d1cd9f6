//! `gitpod-refarch`: plan, apply, destroy and inspect the Gitpod single-cluster
//! reference architecture.
//!
//! With `--cloud sim` (the default) it runs on the simulated cloud, whose resources
//! persist in the state directory between invocations, so `apply`, `apply` again and
//! `destroy` behave as they would against a real account.
//!
//! `--state` is a directory, an S3 or GCS object, or a Kubernetes Secret; every run
//! that writes takes the state's lock, and `state show|lock|break-lock` inspect it.

mod cost_report;
mod state_backend;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use cost_report::{load_catalog, PlanCost};
use gitpod_refarch::engine::{Clock, Event, EventSink, TokioClock, VerifyOptions};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::state::{LockRequest, StateStore};
use gitpod_refarch::verify::{Check, Part, VerifyContext};
use gitpod_refarch::{
    ClusterProvider, Database, DnsProvider, Engine, ErrorKind, ObjectStore, Providers,
    ReferenceArchitecture, Registry, Verifier,
};
#[cfg(feature = "aws")]
use gitpod_refarch_aws::{AwsConfig, AwsProvider};
#[cfg(feature = "azure")]
use gitpod_refarch_azure::{AzureConfig, AzureProvider};
#[cfg(feature = "gcp")]
use gitpod_refarch_gcp::{GcpConfig, GcpProvider};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use state_backend::{Reach, SimSynced, StateArg};

const DEFAULT_SPEC: &str = include_str!("../specs/reference.yaml");

const AFTER_HELP: &str = "\
Environment:
  GITPOD_REFARCH_LOG  Log filter for stderr, in tracing's EnvFilter syntax (for example
                      `info` or `gitpod_refarch=debug,kube=warn`); read first
  RUST_LOG            The same filter, used when GITPOD_REFARCH_LOG is not set
                      (default: errors only)

Confirmation:
  apply and destroy against a real cloud (gcp, aws) show the plan and ask for `yes` on a
  terminal; --yes skips the question. Without a terminal they refuse unless --yes is
  given. The simulated cloud (--cloud sim) never asks.

Shared state (--state):
  DIR                          state.json in DIR (the default, .gitpod-refarch)
  s3://BUCKET/KEY              an S3 object, written with server-side encryption; the
                               lock is the object KEY.lock. Credentials, region and
                               endpoint as the AWS CLI finds them (AWS_PROFILE,
                               AWS_REGION, AWS_ENDPOINT_URL_S3), or --state-endpoint
  gs://BUCKET/OBJECT           a Cloud Storage object (Application Default
                               Credentials); the lock is OBJECT.lock
  kubernetes://NAMESPACE/NAME  the Secret NAME (key state.json) in NAMESPACE of the
                               cluster kubectl uses (KUBECONFIG); the lock is the
                               Lease NAME-lock
  apply and destroy hold the state's lock for the whole run: a second writer is
  refused with the holder's name (user@host (pid N)) and the lock's id. If that run
  died, `gitpod-refarch state break-lock ID` removes its lock (only with the exact
  id). With --cloud sim and a URL, the simulated cloud stays on this machine in
  --sim-dir (default .gitpod-refarch).

Exit codes:
  0  success
  1  failure (a step, a check or a call failed)
  2  usage error (flags, spec, --state URL), nothing was done
  3  verify --strict: a check was skipped
  4  the state is locked by another run (the message names it)
  5  the state changed since this plan was made (plan again)";

#[derive(Parser)]
#[command(
    name = "gitpod-refarch",
    version,
    about = "Provision the Gitpod single-cluster reference architecture",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Spec file (YAML or JSON); the embedded reference spec if omitted.
    #[arg(long, global = true)]
    spec: Option<PathBuf>,
    /// Where resources are made.
    #[arg(long, global = true, value_enum, default_value_t = CloudArg::Sim)]
    cloud: CloudArg,
    /// API endpoint override for emulators and fakes (moto, the GCP and Azure fakes).
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// Where the state lives: a directory (state.json, and sim-cloud.json for the
    /// simulated cloud), s3://BUCKET/KEY, gs://BUCKET/OBJECT or
    /// kubernetes://NAMESPACE/NAME (see "Shared state" below).
    #[arg(
        long,
        global = true,
        default_value = ".gitpod-refarch",
        value_name = "DIR|URL",
        value_parser = StateArg::parse
    )]
    state: StateArg,
    /// Simulated cloud: the directory of sim-cloud.json (default: the --state
    /// directory, or .gitpod-refarch when --state is a URL).
    #[arg(long, global = true, value_name = "DIR")]
    sim_dir: Option<PathBuf>,
    /// API endpoint of the state backend, for emulators (an S3 or GCS fake); default:
    /// --endpoint with --cloud aws and s3:// or --cloud gcp and gs://, else the SDK's.
    #[arg(long, global = true, value_name = "URL")]
    state_endpoint: Option<String>,
    /// Print events as JSON lines on stdout instead of progress bars.
    #[arg(long, global = true)]
    json: bool,
    /// Simulated cloud: real-time fraction of the realistic durations (0 = instant).
    #[arg(long, global = true, default_value_t = 0.002)]
    time_scale: f64,
    /// Stop at the cloud resources: do not bootstrap the inside of the cluster
    /// (cert-manager, external-dns, issuer, Gitpod namespace and secrets, certificate).
    #[arg(long, global = true)]
    no_in_cluster: bool,
    /// Install cert-manager from this release manifest (a file or URL) instead of the
    /// pinned one (or helm); needs --cert-manager-sha256.
    #[arg(long, global = true, requires = "cert_manager_sha256")]
    cert_manager_manifest: Option<String>,
    /// The SHA-256 the --cert-manager-manifest must have.
    #[arg(long, global = true, requires = "cert_manager_manifest")]
    cert_manager_sha256: Option<String>,
    /// Do not check the zone's NS delegation while waiting for the certificate.
    #[arg(long, global = true)]
    no_delegation_check: bool,
    /// apply/destroy on a real cloud: do not ask for confirmation (needed without a terminal).
    #[arg(long, short = 'y', global = true)]
    yes: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CloudArg {
    Sim,
    Gcp,
    Aws,
    Azure,
}

#[derive(Subcommand)]
enum Command {
    /// Show what apply would do.
    Plan {
        /// Print the plan as JSON.
        #[arg(long)]
        plan_json: bool,
        /// Print the resolved spec (with defaults) too.
        #[arg(long)]
        show_spec: bool,
        /// Print the monthly cost per item (the total is always printed).
        #[arg(long)]
        cost: bool,
        /// Price with this catalog (YAML, the shape of the shipped ones) instead of
        /// the shipped catalog of the spec's cloud and region.
        #[arg(long, value_name = "FILE")]
        catalog: Option<PathBuf>,
        /// Flag a catalog whose oldest price is older than this many days.
        #[arg(long, value_name = "DAYS", default_value_t = 180)]
        catalog_max_age: i64,
    },
    /// Make the installation match the spec, then write the installer config and secrets.
    Apply {
        /// Directory for gitpod.config.yaml and secrets/ (secrets are mode 0600).
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Allow replacements that stop workloads or lose data.
        #[arg(long)]
        allow_disruptive: bool,
        /// Steps at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Remove everything the installation created.
    Destroy,
    /// Print the recorded outputs (no secret values).
    Outputs,
    /// Check every part as Gitpod will use it, with the credentials of the installer
    /// bundle: a table of checks (PART, CHECK, STATUS, DETAIL), or the report as JSON
    /// with --json. Exit code 0 when nothing failed, 1 when a check failed, 3 with
    /// --strict when a check was skipped, 2 for a usage error.
    Verify {
        /// Also run the checks that must run inside the cluster, instead of reporting
        /// parts unreachable from here as skipped.
        #[arg(long)]
        in_cluster: bool,
        /// Exit with 3 when any check was skipped (not run).
        #[arg(long)]
        strict: bool,
        /// Seconds each verifier may take.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Inspect the shared state and its lock, or break a stale lock (no spec or
    /// cloud needed; never prints a secret value).
    State {
        #[command(subcommand)]
        action: StateCommand,
    },
}

#[derive(Subcommand)]
enum StateCommand {
    /// The installation, the state's generation, its resources (id and kind), the
    /// names of its secrets (never their values) and the lock holder if any.
    Show,
    /// The current lock: who holds it, for what, since when, and its id.
    Lock,
    /// Remove the lock of a run that died. Needs the lock's exact id (from the
    /// "locked" error or `state lock`), so that a newer lock is never removed.
    BreakLock {
        /// The id of the lock to break.
        id: String,
    },
}

fn load_spec(path: Option<&Path>) -> Result<ReferenceArchitecture, String> {
    // A file is read through the size-limited loader (at most 1 MiB + 1 byte).
    let (parsed, name) = match path {
        Some(p) => (ReferenceArchitecture::from_path(p), p.display().to_string()),
        None => (
            ReferenceArchitecture::from_yaml(DEFAULT_SPEC),
            "the embedded reference spec".to_string(),
        ),
    };
    let spec = parsed.map_err(|e| format!("{name}: {e}"))?;
    spec.validate().map_err(|e| format!("{name}: {e}"))?;
    for w in gitpod_refarch::tls::check_spec(&spec, std::time::SystemTime::now()).warnings {
        eprintln!("warning: {}: {}", w.path, w.message);
    }
    Ok(spec)
}

/// Whether a mutating command on `cloud` needs the user's confirmation, refused
/// outright (before any call) when there is no terminal to ask on and no `--yes`.
fn needs_confirmation(cli: &Cli) -> Result<bool, String> {
    use std::io::IsTerminal as _;
    let mutating = matches!(cli.command, Command::Apply { .. } | Command::Destroy);
    if !mutating || cli.yes || cli.cloud == CloudArg::Sim {
        return Ok(false);
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            "apply and destroy change real infrastructure: there is no terminal to confirm on, \
             so pass --yes to proceed without a question"
                .into(),
        );
    }
    Ok(true)
}

/// Ask on the terminal, as `terraform apply` does: only `yes` proceeds.
fn confirm(question: &str) -> Result<(), String> {
    use std::io::Write as _;
    eprint!("{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err("cancelled: nothing was changed".into())
    }
}

/// Renders events as progress bars (stderr) or JSON lines (stdout).
fn event_sink(json: bool) -> EventSink {
    if json {
        return Arc::new(|e: &Event| {
            if let Ok(line) = serde_json::to_string(e) {
                println!("{line}");
            }
        });
    }
    let multi = MultiProgress::new();
    let bars: Mutex<std::collections::BTreeMap<String, ProgressBar>> =
        Mutex::new(Default::default());
    let style = ProgressStyle::with_template("{spinner} {prefix:<34} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    Arc::new(move |e: &Event| {
        let Ok(mut bars) = bars.lock() else { return };
        match e {
            Event::StepStarted { resource, action } => {
                let pb = multi.add(ProgressBar::new_spinner());
                pb.set_style(style.clone());
                pb.set_prefix(resource.to_string());
                pb.set_message(format!("{action}…"));
                pb.enable_steady_tick(Duration::from_millis(120));
                bars.insert(resource.to_string(), pb);
            }
            Event::Progress {
                resource,
                message,
                percent,
                ..
            } => {
                if let Some(pb) = bars.get(&resource.to_string()) {
                    let pct = percent.map(|p| format!(" {p}%")).unwrap_or_default();
                    pb.set_message(format!(
                        "waiting{pct} {}",
                        message.clone().unwrap_or_default()
                    ));
                }
            }
            Event::Retrying {
                resource,
                kind,
                attempt,
                ..
            } => {
                if let Some(pb) = bars.get(&resource.to_string()) {
                    pb.set_message(format!("retrying ({kind}, attempt {attempt})"));
                }
            }
            Event::StepDone {
                resource,
                action,
                elapsed,
            } => {
                if let Some(pb) = bars.get(&resource.to_string()) {
                    pb.finish_with_message(format!("✓ {action} ({:.1}s)", elapsed.as_secs_f64()));
                }
            }
            Event::StepFailed {
                resource, message, ..
            } => {
                if let Some(pb) = bars.get(&resource.to_string()) {
                    pb.abandon_with_message(format!("✗ {message}"));
                }
            }
            Event::StepSkipped { resource, reason } => {
                let _ = multi.println(format!("  skipped {resource}: {reason}"));
            }
            _ => {}
        }
    })
}

struct Setup {
    engine: Engine,
}

/// The directory of the simulated cloud's file.
fn sim_dir(cli: &Cli) -> PathBuf {
    cli.sim_dir
        .clone()
        .or_else(|| cli.state.dir().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from(".gitpod-refarch"))
}

/// The store `--state` names (nothing read yet); a bad or unavailable backend is a
/// usage error.
async fn open_state(cli: &Cli) -> Result<Arc<dyn StateStore>, (u8, String)> {
    let same_cloud = matches!(
        (&cli.state, cli.cloud),
        (StateArg::S3 { .. }, CloudArg::Aws) | (StateArg::Gcs { .. }, CloudArg::Gcp)
    );
    let reach = Reach {
        endpoint: cli
            .state_endpoint
            .clone()
            .or_else(|| cli.endpoint.clone().filter(|_| same_cloud)),
    };
    state_backend::open(&cli.state, &reach)
        .await
        .map_err(|e| (exit_code(&e), e.chain()))
}

async fn setup(
    cli: &Cli,
    spec: &ReferenceArchitecture,
    store: Arc<dyn StateStore>,
    concurrency: usize,
    allow_disruptive: bool,
) -> Result<Setup, String> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let mut store = store;
    let providers = match cli.cloud {
        CloudArg::Sim => {
            if cli.endpoint.is_some() {
                return Err(
                    "--endpoint points cloud clients at an emulator; the simulated cloud has none"
                        .into(),
                );
            }
            let profile = if cli.time_scale > 0.0 {
                LatencyProfile::realistic().scaled(cli.time_scale)
            } else {
                LatencyProfile::instant()
            };
            let sim = Arc::new(SimCloud::new(clock.clone(), profile));
            // The simulated cloud is saved with the state, under the run's lock.
            let synced = SimSynced::new(store, sim.clone(), sim_dir(cli).join("sim-cloud.json"));
            synced.load_sim().map_err(|e| e.chain())?;
            store = Arc::new(synced);
            // The simulated cloud checks the parts it provides; the self-managed
            // ones get the data-plane verifier.
            let own = self_managed_parts(spec);
            let sim_parts: Vec<Part> = Part::ALL.into_iter().filter(|p| !own.contains(p)).collect();
            let providers = mix(spec, sim.clone(), false)?
                .with_verifier(Arc::new(OnlyParts(sim.clone(), sim_parts)));
            if cli.no_in_cluster {
                providers
            } else {
                providers.with_in_cluster(sim)
            }
        }
        #[cfg(not(feature = "gcp"))]
        CloudArg::Gcp => {
            return Err("this binary was built without the `gcp` feature (scripts/run.sh builds the simulated cloud only); use cargo run -p gitpod-refarch-examples".into());
        }
        #[cfg(feature = "gcp")]
        CloudArg::Gcp => {
            if spec.cloud != gitpod_refarch::spec::Cloud::Gcp {
                return Err(format!(
                    "the spec is for {}, not gcp (set cloud: gcp)",
                    spec.cloud
                ));
            }
            let mut config = GcpConfig::for_spec(spec).map_err(|e| e.chain())?;
            if let Some(url) = &cli.endpoint {
                // A local fake (anonymous credentials); it answers quickly: poll often.
                config = config
                    .endpoint_url(url.clone())
                    .poll_interval(Duration::from_millis(100));
            }
            manifest_flag(cli)?; // bad flags fail before any call
            let gcp = Arc::new(GcpProvider::connect(config).await.map_err(|e| e.chain())?);
            with_bootstrap(cli, spec, mix(spec, gcp.clone(), true)?, gcp)?
        }
        #[cfg(not(feature = "aws"))]
        CloudArg::Aws => {
            let _ = spec;
            return Err("this binary was built without the `aws` feature (scripts/run.sh builds the simulated cloud only); use cargo run -p gitpod-refarch-examples".into());
        }
        #[cfg(feature = "aws")]
        CloudArg::Aws => {
            if spec.cloud != gitpod_refarch::spec::Cloud::Aws {
                return Err(format!(
                    "the spec is for {}, not aws (set cloud: aws)",
                    spec.cloud
                ));
            }
            let mut config = AwsConfig::for_spec(spec);
            if let Some(url) = &cli.endpoint {
                // Emulators answer at once: poll often.
                config = config
                    .endpoint_url(url.clone())
                    .poll_interval(Duration::from_millis(200));
            }
            manifest_flag(cli)?; // bad flags fail before any call
            let aws = Arc::new(AwsProvider::connect(config).await.map_err(|e| e.chain())?);
            with_bootstrap(cli, spec, mix(spec, aws.clone(), true)?, aws)?
        }
        #[cfg(not(feature = "azure"))]
        CloudArg::Azure => {
            let _ = spec;
            return Err("this binary was built without the `azure` feature (scripts/run.sh builds the simulated cloud only); use cargo run -p gitpod-refarch-examples".into());
        }
        #[cfg(feature = "azure")]
        CloudArg::Azure => {
            if spec.cloud != gitpod_refarch::spec::Cloud::Azure {
                return Err(format!(
                    "the spec is for {}, not azure (set cloud: azure)",
                    spec.cloud
                ));
            }
            // Credentials from the environment (AZURE_TENANT_ID, AZURE_CLIENT_ID and
            // AZURE_CLIENT_SECRET, workload identity, managed identity or the Azure CLI).
            let mut config = AzureConfig::for_spec(spec)
                .map_err(|e| e.chain())?
                .clock(clock.clone());
            if let Some(url) = &cli.endpoint {
                // A local fake: ARM and its Entra token endpoint at one URL; poll often.
                config = config
                    .endpoint_url(url.clone())
                    .poll_interval(Duration::from_millis(100));
            }
            manifest_flag(cli)?; // bad flags fail before any call
            let azure = Arc::new(
                AzureProvider::connect(config)
                    .await
                    .map_err(|e| e.chain())?,
            );
            with_bootstrap(cli, spec, mix(spec, azure.clone(), true)?, azure)?
        }
    };
    let mut builder = Engine::builder(providers)
        .clock(clock)
        .state(store)
        .lock_owner(LockRequest::this_process())
        .concurrency(concurrency)
        .allow_disruptive(allow_disruptive);
    // `verify --json` prints one JSON report on stdout, not the event lines.
    if !(cli.json && matches!(cli.command, Command::Verify { .. })) {
        builder = builder.on_event(event_sink(cli.json));
    }
    let engine = builder.build().map_err(|e| e.chain())?;
    Ok(Setup { engine })
}

/// The parts the spec names `provider: selfManaged`.
fn self_managed_parts(spec: &ReferenceArchitecture) -> Vec<Part> {
    [
        (Part::Database, spec.database.is_self_managed()),
        (Part::Dns, spec.dns.is_self_managed()),
        (Part::Registry, spec.registry.is_self_managed()),
        (Part::Storage, spec.storage.is_self_managed()),
    ]
    .into_iter()
    .filter_map(|(part, own)| own.then_some(part))
    .collect()
}

/// `cloud` for every part except those the spec names `provider: selfManaged`, which
/// come from `gitpod-refarch-selfmanaged` (secrets loaded from the environment or the
/// files the spec names, before any call); with the data-plane verifier for those
/// parts, or, when `data_plane` is set, for the cloud's parts too.
#[cfg(feature = "selfmanaged")]
fn mix<P>(
    spec: &ReferenceArchitecture,
    cloud: Arc<P>,
    data_plane: bool,
) -> Result<Providers, String>
where
    P: ClusterProvider + DnsProvider + ObjectStore + Registry + Database + 'static,
{
    use gitpod_refarch_selfmanaged::{DataPlaneVerifier, SelfManaged};
    let own = SelfManaged::for_spec(spec).map_err(|e| e.chain())?;
    if own.is_empty() {
        let providers = Providers::all(cloud);
        return Ok(if data_plane {
            providers.with_verifier(Arc::new(DataPlaneVerifier::new()))
        } else {
            providers
        });
    }
    own.providers(cloud).map_err(|e| e.chain())
}

/// Without the `selfmanaged` feature: `cloud` for every part, and no self-managed part.
#[cfg(not(feature = "selfmanaged"))]
fn mix<P>(
    spec: &ReferenceArchitecture,
    cloud: Arc<P>,
    _data_plane: bool,
) -> Result<Providers, String>
where
    P: ClusterProvider + DnsProvider + ObjectStore + Registry + Database + 'static,
{
    if let Some(part) = self_managed_parts(spec).first() {
        return Err(format!(
            "{part}.provider is selfManaged, but this binary was built without the \
             `selfmanaged` feature; use cargo run -p gitpod-refarch-examples"
        ));
    }
    Ok(Providers::all(cloud))
}

/// A verifier limited to some parts (the simulated cloud's, when others are
/// self-managed).
struct OnlyParts<V>(Arc<V>, Vec<Part>);

#[gitpod_refarch::async_trait]
impl<V: Verifier + 'static> Verifier for OnlyParts<V> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn parts(&self) -> Vec<Part> {
        self.1.clone()
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Vec<Check> {
        if self.1.is_empty() {
            return Vec::new();
        }
        let mut checks = self.0.verify(ctx).await;
        checks.retain(|c| self.1.contains(&c.part));
        checks
    }
}

/// `--cert-manager-manifest` and `--cert-manager-sha256`, checked with no IO.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn manifest_flag(cli: &Cli) -> Result<Option<gitpod_refarch_bootstrap::Manifest>, String> {
    let (Some(source), Some(sha)) = (&cli.cert_manager_manifest, &cli.cert_manager_sha256) else {
        return Ok(None);
    };
    let url = if source.contains("://") {
        source.clone()
    } else {
        let path = std::fs::canonicalize(source)
            .map_err(|e| format!("--cert-manager-manifest {source}: {e}"))?;
        format!("file://{}", path.display())
    };
    let m = gitpod_refarch_bootstrap::Manifest::new(url, sha.clone());
    m.validate().map_err(|e| e.chain())?;
    Ok(Some(m))
}

/// The in-cluster bootstrap on kube-rs, with tokens from the cloud that made the
/// cluster, unless `--no-in-cluster`.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn with_bootstrap(
    cli: &Cli,
    spec: &ReferenceArchitecture,
    providers: Providers,
    credentials: Arc<dyn gitpod_refarch::ClusterCredentials>,
) -> Result<Providers, String> {
    use gitpod_refarch_bootstrap::{
        BootstrapConfig, CertManagerSource, ClusterVerifier, KubeBootstrap,
    };
    if cli.no_in_cluster {
        return Ok(providers);
    }
    let mut config = BootstrapConfig::new(credentials);
    if let Some(m) = manifest_flag(cli)? {
        config = config.cert_manager(CertManagerSource::Manifest(m));
    }
    if cli.no_delegation_check {
        config = config.delegation(None);
    }
    if cli.endpoint.is_some() {
        config = config.poll_interval(Duration::from_millis(100));
    }
    // Bring-your-own certificate files: the bootstrap writes them to their Secret.
    if let Some(tls) =
        gitpod_refarch::tls::TlsCertificate::from_spec(spec).map_err(|e| e.chain())?
    {
        config = config.tls_certificate(tls);
    }
    config.validate().map_err(|e| e.chain())?;
    // `verify` checks the cluster (and the zone's delegation and records) as the
    // bootstrap connects to it.
    Ok(providers
        .with_verifier(Arc::new(ClusterVerifier::new(config.clone())))
        .with_in_cluster(Arc::new(KubeBootstrap::new(config))))
}

/// Ctrl-C once: stop scheduling, let running operations finish. Twice: exit now.
fn wire_ctrl_c(engine: &Engine) {
    let token = engine.cancellation_token();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ncancelling: waiting for running operations (Ctrl-C again to exit now)");
            token.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}

/// The exit code of an error: 4 locked, 5 changed under a plan, 1 otherwise.
fn exit_code(e: &gitpod_refarch::Error) -> u8 {
    match e.kind() {
        ErrorKind::StateLocked => 4,
        ErrorKind::StateChanged => 5,
        ErrorKind::InvalidInput => 2,
        _ => 1,
    }
}

/// An engine error as the CLI reports it, with its exit code.
fn fail(e: gitpod_refarch::Error) -> (u8, String) {
    let code = match e.kind() {
        ErrorKind::StateLocked | ErrorKind::StateChanged => exit_code(&e),
        _ => 1,
    };
    (code, e.chain())
}

async fn run(cli: Cli) -> Result<(), (u8, String)> {
    let usage = |e: String| (2u8, e);
    let failed = |e: String| (1u8, e);
    if let Command::State { action } = &cli.command {
        let store = open_state(&cli).await?;
        return state_command(store.as_ref(), action, cli.json).await;
    }
    let spec = load_spec(cli.spec.as_deref()).map_err(usage)?;
    // Refused before any call when no one can be asked.
    let ask = needs_confirmation(&cli).map_err(usage)?;
    let store = open_state(&cli).await?;
    match &cli.command {
        Command::State { .. } => {}
        Command::Plan {
            plan_json,
            show_spec,
            cost,
            catalog,
            catalog_max_age,
        } => {
            // A catalog that does not load is bad input: refused before any call.
            let catalog = match catalog {
                Some(path) => Some(load_catalog(path).map_err(usage)?),
                None => None,
            };
            let setup = setup(&cli, &spec, store, 8, false).await.map_err(usage)?;
            if *show_spec {
                println!("{}", spec.to_yaml().map_err(fail)?);
            }
            let plan = setup.engine.plan(&spec).await.map_err(fail)?;
            let priced = PlanCost::of(&plan, catalog.as_ref(), *catalog_max_age).map_err(usage)?;
            if *plan_json || cli.json {
                let json_fail = |e: serde_json::Error| (1u8, e.to_string());
                let mut v: serde_json::Value =
                    serde_json::from_str(&plan.to_json().map_err(fail)?).map_err(json_fail)?;
                v["cost"] = serde_json::to_value(&priced).map_err(json_fail)?;
                println!("{}", serde_json::to_string_pretty(&v).map_err(json_fail)?);
            } else {
                print!("{plan}");
                print!("{}", priced.summary());
                if *cost {
                    print!("{}", priced.table());
                }
            }
        }
        Command::Apply {
            out,
            allow_disruptive,
            concurrency,
        } => {
            let setup = setup(&cli, &spec, store, *concurrency, *allow_disruptive)
                .await
                .map_err(usage)?;
            wire_ctrl_c(&setup.engine);
            let plan = setup.engine.plan(&spec).await.map_err(fail)?;
            if !cli.json || ask {
                print!("{plan}");
            }
            if ask && plan.has_changes() {
                confirm(&format!(
                    "Apply these changes to {} (installation '{}')?",
                    cli_cloud_name(cli.cloud),
                    spec.name
                ))
                .map_err(usage)?;
            }
            // The lock is taken here: a second writer is refused (exit 4), a plan made
            // before another writer changed the state too (exit 5).
            let report = setup
                .engine
                .apply(&plan)
                .await
                .map_err(|e| (exit_code(&e), e.chain()))?;
            if !report.is_success() {
                let first = report
                    .failed
                    .first()
                    .map(|(_, e)| e.chain())
                    .unwrap_or_else(|| "cancelled".into());
                return Err(failed(format!(
                    "apply incomplete: {} failed, {} skipped ({first}); run apply again to resume",
                    report.failed.len(),
                    report.skipped.len()
                )));
            }
            let bundle = setup.engine.installer_bundle(&spec).await.map_err(fail)?;
            let files = bundle.write_to(out).map_err(fail)?;
            if !cli.json {
                if plan.has_changes() {
                    println!(
                        "applied: {} changed, {} unchanged in {:.1}s",
                        report.changed.len(),
                        report.unchanged.len(),
                        report.elapsed.as_secs_f64()
                    );
                } else {
                    println!("no changes: the installation matches the spec");
                }
                if let Some(ns) = report.outputs.name_servers() {
                    println!("delegate {} to: {}", spec.zone_dns_name(), ns.join(", "));
                }
                println!("wrote {} files to {}", files.len(), out.display());
            }
        }
        Command::Destroy => {
            let setup = setup(&cli, &spec, store, 8, false).await.map_err(usage)?;
            wire_ctrl_c(&setup.engine);
            let result = if ask {
                let plan = setup.engine.plan_destroy(&spec).await.map_err(fail)?;
                print!("{plan}");
                confirm(&format!(
                    "Destroy installation '{}' in {}? This deletes what the plan lists.",
                    spec.name,
                    cli_cloud_name(cli.cloud)
                ))
                .map_err(usage)?;
                setup.engine.apply(&plan).await
            } else {
                setup.engine.destroy(&spec).await
            };
            let report = result.map_err(fail)?;
            let left = report.not_removed();
            if !left.is_empty() {
                let names: Vec<String> = left.iter().map(ToString::to_string).collect();
                return Err(failed(format!("not removed: {}", names.join(", "))));
            }
            if !cli.json {
                println!("destroyed: {} removed", report.changed.len());
            }
        }
        Command::Verify {
            in_cluster,
            strict,
            timeout,
        } => {
            let setup = setup(&cli, &spec, store, 8, false).await.map_err(usage)?;
            wire_ctrl_c(&setup.engine);
            let options = VerifyOptions::new()
                .in_cluster(*in_cluster)
                .timeout(Duration::from_secs(*timeout));
            let report = setup
                .engine
                .verify_with(&spec, options)
                .await
                .map_err(fail)?;
            if cli.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
            let (_, fails, skips) = report.counts();
            if !report.ok {
                return Err(failed(format!("verify: {fails} check(s) failed")));
            }
            if *strict && skips > 0 {
                return Err((3, format!("verify --strict: {skips} check(s) skipped")));
            }
        }
        Command::Outputs => {
            let setup = setup(&cli, &spec, store, 8, false).await.map_err(usage)?;
            let o = setup.engine.outputs(&spec.name).await.map_err(fail)?;
            let view = serde_json::json!({
                "account": o.account(),
                "cluster": o.cluster().map(|c| serde_json::json!({"name": c.name, "endpoint": c.endpoint})),
                "nameServers": o.name_servers(),
                "database": o.database().map(|d| serde_json::json!({"endpoint": d.endpoint, "database": d.database, "username": d.username})),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&view).map_err(|e| failed(e.to_string()))?
            );
        }
    }
    Ok(())
}

/// `state show|lock|break-lock`: the store only, no spec or cloud.
async fn state_command(
    store: &dyn StateStore,
    action: &StateCommand,
    json: bool,
) -> Result<(), (u8, String)> {
    let location = store.location();
    let print_json = |v: serde_json::Value| -> Result<(), (u8, String)> {
        let text = serde_json::to_string_pretty(&v).map_err(|e| (1u8, e.to_string()))?;
        println!("{text}");
        Ok(())
    };
    match action {
        StateCommand::Show => {
            let stored = store.load().await.map_err(fail)?;
            let lock = store.current_lock().await.map_err(fail)?;
            let Some(stored) = stored else {
                if json {
                    return print_json(serde_json::json!({
                        "location": location,
                        "installation": null,
                        "generation": null,
                        "lock": lock,
                        "resources": [],
                        "secrets": [],
                        "unfinishedIntents": 0,
                    }));
                }
                println!("no state at {location} (nothing applied yet)");
                if let Some(l) = lock {
                    println!("lock: {l}");
                }
                return Ok(());
            };
            let state = &stored.state;
            // Ids and kinds only: an output's fields may be secrets.
            let resources: Vec<(String, String)> = state
                .outputs
                .iter()
                .map(|(id, output)| {
                    let kind = serde_json::to_value(output)
                        .ok()
                        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(String::from))
                        .unwrap_or_else(|| id.kind.as_str().to_string());
                    (id.to_string(), kind)
                })
                .collect();
            let secrets: Vec<&String> = state.secrets.keys().collect();
            let unfinished = state.journal.iter().filter(|j| !j.done).count();
            if json {
                return print_json(serde_json::json!({
                    "location": location,
                    "installation": state.installation,
                    "generation": stored.generation.as_str(),
                    "lock": lock,
                    "resources": resources
                        .iter()
                        .map(|(id, kind)| serde_json::json!({"id": id, "kind": kind}))
                        .collect::<Vec<_>>(),
                    "secrets": secrets,
                    "unfinishedIntents": unfinished,
                }));
            }
            println!("state:        {location}");
            println!("installation: {}", state.installation);
            println!("generation:   {}", stored.generation);
            match &lock {
                Some(l) => println!("lock:         {l}"),
                None => println!("lock:         none"),
            }
            println!("resources:    {}", resources.len());
            let width = resources.iter().map(|(id, _)| id.len()).max().unwrap_or(0);
            for (id, kind) in &resources {
                println!("  {id:<width$}  {kind}");
            }
            let names: Vec<&str> = secrets.iter().map(|s| s.as_str()).collect();
            println!(
                "secrets:      {} (values not shown)",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            );
            if unfinished > 0 {
                println!("unfinished:   {unfinished} intent(s) of an interrupted run (apply resumes them)");
            }
        }
        StateCommand::Lock => {
            let lock = store.current_lock().await.map_err(fail)?;
            if json {
                return print_json(serde_json::json!({ "location": location, "lock": lock }));
            }
            match lock {
                Some(l) => println!("the state at {location} is locked: {l}"),
                None => println!("the state at {location} is not locked"),
            }
        }
        StateCommand::BreakLock { id } => {
            let broken = store.break_lock(id).await.map_err(fail)?;
            if json {
                return print_json(serde_json::json!({ "location": location, "broken": broken }));
            }
            println!("broke the lock on {location}: {broken}");
            println!("the next apply observes every resource first and resumes what that run left");
        }
    }
    Ok(())
}

fn cli_cloud_name(c: CloudArg) -> &'static str {
    match c {
        CloudArg::Sim => "the simulated cloud",
        CloudArg::Gcp => "GCP",
        CloudArg::Aws => "AWS",
        CloudArg::Azure => "Azure",
    }
}

/// The log filter: `GITPOD_REFARCH_LOG`, else the Rust convention `RUST_LOG`; errors
/// only when neither is set.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let directives = ["GITPOD_REFARCH_LOG", "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_default();
    tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::ERROR.into())
        .parse_lossy(directives)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}
