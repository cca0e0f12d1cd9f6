//! `verify` for the cluster and the DNS: [`ClusterVerifier`] reads the API server as
//! `gitpod-installer validate cluster` does (Kubernetes version, kernels, container
//! runtime, the node labels Gitpod schedules by), checks what the bootstrap made
//! (cert-manager and the `gitpod-issuer` ClusterIssuer, the `https-certificates`
//! Certificate and its expiry, the installer's secrets with exactly their keys), and
//! asks the DNS whether the zone is delegated and the Gitpod names point at the
//! proxy's load balancer.
//!
//! It never writes to the cluster (the only call with a body is cert-manager's
//! webhook probe, a server-side dry run) and never puts a secret value in a check:
//! secrets are compared by their keys.
//!
//! | id | what |
//! |---|---|
//! | `cluster.connect` | the API server answers with the cloud's token |
//! | `cluster.kubernetes-version` | the server and every kubelet are Kubernetes >= 1.21 |
//! | `cluster.nodes` | every node runs Linux >= 5.4 and containerd |
//! | `cluster.node-labels.<pool>` | some node carries each of the pool's Gitpod labels = `true` |
//! | `cluster.cert-manager` | cert-manager ready; ClusterIssuer `gitpod-issuer` Ready with the spec's ACME server |
//! | `cluster.certificate` | Certificate `https-certificates` Ready for exactly the three names; its TLS Secret's certificate not expired nor expiring soon |
//! | `cluster.secrets` | every installer secret exists in namespace `gitpod` with exactly its keys |
//! | `dns.delegation` | the parent zone delegates to the zone's name servers |
//! | `dns.records` | DOMAIN, `*.DOMAIN` and `*.ws.DOMAIN` resolve to the proxy's load balancer |
//!
//! Checks that read the API server report [`Vantage::InCluster`]; the DNS checks run
//! from here ([`Vantage::Local`]) through the [`DelegationCheck`]'s resolvers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use gitpod_refarch::installer::{CERTIFICATE_NAME, GITPOD_NAMESPACE, ISSUER_NAME};
use gitpod_refarch::resource::{Output, ResourceKind};
use gitpod_refarch::spec::{CertificateSettings, PoolRole, ReferenceArchitecture};
use gitpod_refarch::verify::{Check, Part, Vantage, Verifier, VerifyContext};
use gitpod_refarch::{Error, ErrorKind};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::api::{self, KubeApi};
use crate::certmanager::{self, Readiness};
use crate::config::BootstrapConfig;
use crate::context::condition_message;
use crate::delegation::{Delegation, DelegationCheck};
use crate::objects::CERT_MANAGER;

/// The oldest Kubernetes Gitpod's installer accepts (`validate cluster`).
pub const MIN_KUBERNETES: (u64, u64) = (1, 21);
/// The oldest Linux kernel Gitpod's installer accepts on a node (`validate cluster`).
pub const MIN_KERNEL: (u64, u64) = (5, 4);
/// A certificate expiring within this long fails `cluster.certificate` (default of
/// [`ClusterVerifier::renew_within`]): cert-manager renews 30 days ahead, so a
/// certificate this close to its end is one it failed to renew.
pub const RENEW_WITHIN: Duration = Duration::from_secs(7 * 86_400);
/// The label of the names `dns.records` resolves for `*.DOMAIN` and `*.ws.DOMAIN`.
pub const PROBE_LABEL: &str = "gitpod-refarch-verify";
/// The Service whose load balancer the Gitpod names point at.
pub const PROXY_SERVICE: &str = "proxy";

const NO_CLUSTER: &str = "no cluster yet (run apply)";
const NOT_CONNECTED: &str = "the API server is not reachable (see cluster.connect)";
const NO_JOBS: &str = "in-cluster checks need batch/v1 Jobs (not implemented yet)";
const NOT_INSTALLED: &str = "Gitpod is not installed yet (no proxy load balancer)";

/// The `cluster` [`Verifier`]: parts [`Part::Cluster`] and [`Part::Dns`]. Build it
/// with the same [`BootstrapConfig`] as the [`KubeBootstrap`](crate::KubeBootstrap)
/// (tokens from the cloud's `ClusterCredentials`, the per-call retries and clock).
pub struct ClusterVerifier {
    config: BootstrapConfig,
    delegation: DelegationCheck,
    /// False when the config turned the delegation check off (`--no-delegation-check`).
    check_delegation: bool,
    client: Option<kube::Client>,
    renew_within: Duration,
}

impl std::fmt::Debug for ClusterVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterVerifier")
            .field("config", &self.config)
            .field("delegation", &self.delegation)
            .field("given_client", &self.client.is_some())
            .field("renew_within", &self.renew_within)
            .finish()
    }
}

impl ClusterVerifier {
    /// A verifier connecting as the bootstrap does. The DNS checks use the config's
    /// delegation check; a config without one (the check turned off) skips
    /// `dns.delegation`, and `dns.records` then uses the system resolvers.
    pub fn new(config: BootstrapConfig) -> Self {
        let check_delegation = config.delegation.is_some();
        let delegation = config.delegation.clone().unwrap_or_default();
        ClusterVerifier {
            config,
            delegation,
            check_delegation,
            client: None,
            renew_within: RENEW_WITHIN,
        }
    }

    /// The delegation check (its resolvers also resolve the Gitpod names for
    /// `dns.records`); tests point it at a local name server.
    #[must_use]
    pub fn delegation(mut self, check: DelegationCheck) -> Self {
        self.delegation = check;
        self.check_delegation = true;
        self
    }

    /// Use `client` instead of connecting from the cluster's output (which must
    /// still exist: without it every cluster check is skipped).
    #[must_use]
    pub fn with_client(mut self, client: kube::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Fail `cluster.certificate` when the certificate expires within `d` (default
    /// [`RENEW_WITHIN`], 7 days).
    #[must_use]
    pub fn renew_within(mut self, d: Duration) -> Self {
        self.renew_within = d;
        self
    }

    async fn connect(&self, cluster: &Output) -> gitpod_refarch::Result<KubeApi> {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => crate::access::connect(cluster, self.config.credentials.clone()).await?,
        };
        Ok(KubeApi::new(
            client,
            self.config.clock.clone(),
            self.config.retry.clone(),
        ))
    }
}

#[async_trait::async_trait]
impl Verifier for ClusterVerifier {
    fn name(&self) -> &str {
        "cluster"
    }

    fn parts(&self) -> Vec<Part> {
        vec![Part::Cluster, Part::Dns]
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Vec<Check> {
        let (cluster, delegation) = futures::join!(self.cluster(ctx), self.delegation_check(ctx));
        let mut checks = cluster;
        checks.insert(
            checks
                .iter()
                .position(|c| c.part == Part::Dns)
                .unwrap_or(checks.len()),
            delegation,
        );
        if ctx.in_cluster {
            checks.push(Check::skipped(
                "database.in-cluster",
                Part::Database,
                NO_JOBS,
            ));
        }
        checks
    }
}

/// The ids of the checks that need the API server, in report order.
fn cluster_ids() -> Vec<String> {
    let mut ids = vec![
        "cluster.connect".to_string(),
        "cluster.kubernetes-version".into(),
        "cluster.nodes".into(),
    ];
    ids.extend(
        PoolRole::ALL
            .iter()
            .map(|r| format!("cluster.node-labels.{}", r.short_name())),
    );
    ids.extend([
        "cluster.cert-manager".to_string(),
        "cluster.certificate".into(),
        "cluster.secrets".into(),
    ]);
    ids
}

fn in_cluster(c: Check, started: Instant) -> Check {
    c.from(Vantage::InCluster).took(started.elapsed())
}

/// A failed API call as a failed check, with a fix by the error's kind.
fn api_failure(id: &str, what: &str, e: &Error) -> Check {
    let fix = match e.kind() {
        ErrorKind::Credentials => {
            "the API server refused the cloud's token: check the cloud credentials this runs with"
        }
        ErrorKind::Permission => {
            "the caller lacks a permission: run apply (it binds the caller to cluster-admin)"
        }
        ErrorKind::Transient | ErrorKind::Throttled => {
            "the API server did not answer: check that it is reachable from here, then verify again"
        }
        _ => "see the reason; run apply if the object should exist",
    };
    Check::fail(
        id,
        Part::Cluster,
        format!("cannot read {what}"),
        e.message(),
    )
    .fix(fix)
}

impl ClusterVerifier {
    /// Every check that needs the API server (`dns.records` included).
    async fn cluster(&self, ctx: &VerifyContext<'_>) -> Vec<Check> {
        let cluster = ctx
            .outputs
            .all()
            .iter()
            .find(|(id, _)| id.kind == ResourceKind::Cluster)
            .map(|(_, o)| o);
        let skip_all = |first: Option<Check>, reason: &str| {
            let mut out: Vec<Check> = first.into_iter().collect();
            for id in cluster_ids() {
                if out.iter().any(|c| c.id == id) {
                    continue;
                }
                out.push(Check::skipped(id, Part::Cluster, reason).from(Vantage::InCluster));
            }
            out.push(Check::skipped("dns.records", Part::Dns, reason));
            out
        };
        let Some(cluster) = cluster else {
            return skip_all(None, NO_CLUSTER);
        };
        let started = Instant::now();
        let api = match self.connect(cluster).await {
            Ok(a) => a,
            Err(e) => {
                let c = Check::fail(
                    "cluster.connect",
                    Part::Cluster,
                    "cannot make a client for the cluster's API server",
                    e.message(),
                )
                .fix("check the cluster's endpoint and CA in the state (run apply) and the cloud credentials");
                return skip_all(Some(in_cluster(c, started)), NOT_CONNECTED);
            }
        };
        let (connect, version) = connect_check(&api, started).await;
        if !connect.passed() {
            return skip_all(Some(connect), NOT_CONNECTED);
        }
        let mut out = vec![connect];

        let started = Instant::now();
        let nodes = Api::<Node>::all(api.client().clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| api::kube_error(e, "list Node"))
            .map(|l| l.items);
        out.push(in_cluster(
            version_check(version.as_deref(), &nodes),
            started,
        ));
        out.push(in_cluster(nodes_check(&nodes), started));
        out.extend(self.labels_checks(ctx.spec, &api).await);
        let started = Instant::now();
        out.push(in_cluster(
            cert_manager_check(ctx.spec, &api).await,
            started,
        ));
        let started = Instant::now();
        out.push(in_cluster(
            self.certificate_check(ctx.spec, &api).await,
            started,
        ));
        let started = Instant::now();
        out.push(in_cluster(secrets_check(ctx, &api).await, started));
        out.push(self.records_check(ctx.spec, &api).await);
        out
    }

    async fn labels_checks(&self, spec: &ReferenceArchitecture, api: &KubeApi) -> Vec<Check> {
        let nodes = Api::<Node>::all(api.client().clone());
        // One label selector per label, as the installer's affinity check does.
        let mut counts: BTreeMap<&str, Result<usize, (ErrorKind, String)>> = BTreeMap::new();
        let mut out = Vec::new();
        for role in PoolRole::ALL {
            let started = Instant::now();
            let id = format!("cluster.node-labels.{}", role.short_name());
            let pool = spec.node_pools.get(role);
            let field = format!("nodePools.{}.labels", role.field());
            let mut missing = Vec::new();
            let mut error = None;
            let mut least = usize::MAX;
            for &label in role.required_labels() {
                if !counts.contains_key(label) {
                    let n = nodes
                        .list(&ListParams::default().labels(&format!("{label}=true")))
                        .await
                        .map(|l| l.items.len())
                        .map_err(|e| {
                            let e = api::kube_error(e, "list Node");
                            (e.kind(), e.message().to_string())
                        });
                    counts.insert(label, n);
                }
                match counts.get(label) {
                    Some(Ok(0)) => missing.push(label),
                    Some(Ok(n)) => least = least.min(*n),
                    Some(Err((kind, message))) => error = Some(Error::new(*kind, message.clone())),
                    None => {}
                }
            }
            let labels = role.required_labels().join(", ");
            let check = if let Some(e) = error {
                api_failure(&id, "the nodes", &e)
            } else if missing.len() == role.required_labels().len() && pool.min_nodes == 0 {
                Check::skipped(
                    id,
                    Part::Cluster,
                    format!(
                        "no node of the {} pool runs now (minNodes 0): its labels are checked once one does",
                        role.short_name()
                    ),
                )
            } else if missing.is_empty() {
                Check::pass(
                    id,
                    Part::Cluster,
                    format!("{labels} = true on {least} node(s) or more"),
                )
            } else {
                let in_spec: Vec<&str> = missing
                    .iter()
                    .copied()
                    .filter(|l| pool.labels.get(*l).map(String::as_str) == Some("true"))
                    .collect();
                let list = missing
                    .iter()
                    .map(|l| format!("{l}=true"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let fix = if in_spec.len() == missing.len() {
                    format!(
                        "the spec's {field} has {list} but no node carries it: run apply so the {} node pool gets it (or add it to the node pool's labels in the cloud)",
                        role.short_name()
                    )
                } else {
                    format!(
                        "add {} to {field} in the spec and run apply (the {} node pool's labels)",
                        missing
                            .iter()
                            .map(|l| format!("`{l}: \"true\"`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        role.short_name()
                    )
                };
                Check::fail(
                    id,
                    Part::Cluster,
                    format!("no node carries {list} (pool {})", role.short_name()),
                    "Gitpod schedules its pods only on nodes with these labels: they would stay Pending",
                )
                .fix(fix)
            };
            out.push(in_cluster(check, started));
        }
        out
    }

    async fn certificate_check(&self, spec: &ReferenceArchitecture, api: &KubeApi) -> Check {
        const ID: &str = "cluster.certificate";
        let wanted: BTreeSet<String> = spec.gitpod_dns_names().into_iter().collect();
        let secret_name = match &spec.certificates {
            CertificateSettings::BringYourOwn { secret_name, .. } => secret_name.clone(),
            _ => {
                let cert = match api::get(
                    api,
                    "cert-manager.io/v1",
                    "Certificate",
                    Some(GITPOD_NAMESPACE),
                    CERTIFICATE_NAME,
                )
                .await
                {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        return Check::fail(
                            ID,
                            Part::Cluster,
                            format!("Certificate {GITPOD_NAMESPACE}/{CERTIFICATE_NAME} is missing"),
                            "Gitpod's proxy serves this certificate",
                        )
                        .fix("run apply (its certificate step makes it)")
                    }
                    Err(e) => return api_failure(ID, "the Certificate", &e),
                };
                let names: BTreeSet<String> = cert
                    .pointer("/spec/dnsNames")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect();
                if names != wanted {
                    let absent: Vec<&String> = wanted.difference(&names).collect();
                    let extra: Vec<&String> = names.difference(&wanted).collect();
                    return Check::fail(
                        ID,
                        Part::Cluster,
                        format!(
                            "Certificate {CERTIFICATE_NAME} names {} (lacks: {}; extra: {})",
                            join(names.iter()),
                            join(absent.into_iter()),
                            join(extra.into_iter())
                        ),
                        format!("Gitpod needs exactly {}", join(wanted.iter())),
                    )
                    .fix("run apply (the certificate step sets the three names)");
                }
                if !certmanager::current_condition(&cert, "Ready") {
                    return Check::fail(
                        ID,
                        Part::Cluster,
                        format!(
                            "Certificate {GITPOD_NAMESPACE}/{CERTIFICATE_NAME} is not Ready: {}",
                            condition_message(&cert, "Ready")
                        ),
                        "Gitpod's proxy has no valid certificate until it is issued",
                    )
                    .fix(format!(
                        "see why it is not issued: `kubectl -n {GITPOD_NAMESPACE} describe certificate {CERTIFICATE_NAME}` and `kubectl -n {GITPOD_NAMESPACE} get challenges`; a DNS-01 challenge needs the zone delegated (dns.delegation)"
                    ));
                }
                cert.pointer("/spec/secretName")
                    .and_then(Value::as_str)
                    .unwrap_or(CERTIFICATE_NAME)
                    .to_string()
            }
        };
        let secret = match api::get(api, "v1", "Secret", Some(GITPOD_NAMESPACE), &secret_name).await
        {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Check::fail(
                    ID,
                    Part::Cluster,
                    format!("the TLS Secret {GITPOD_NAMESPACE}/{secret_name} is missing"),
                    "Gitpod's proxy reads its certificate from it",
                )
                .fix(match &spec.certificates {
                    CertificateSettings::BringYourOwn { .. } => format!(
                        "create the kubernetes.io/tls Secret {secret_name} in namespace {GITPOD_NAMESPACE} (or give certificates.certificateFile and keyFile and run apply)"
                    ),
                    _ => "run apply; cert-manager writes it when it issues the certificate".into(),
                })
            }
            Err(e) => return api_failure(ID, "the TLS Secret", &e),
        };
        let not_after = secret
            .pointer("/data/tls.crt")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or_else(|| "no tls.crt".to_string())
            .and_then(|pem| leaf_not_after(&pem));
        let not_after = match not_after {
            Ok(t) => t,
            Err(why) => {
                return Check::fail(
                    ID,
                    Part::Cluster,
                    format!("the TLS Secret {GITPOD_NAMESPACE}/{secret_name} holds no readable certificate: {why}"),
                    "Gitpod's proxy cannot serve it",
                )
                .fix("replace the Secret's tls.crt with the certificate chain (PEM, leaf first)")
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let left = not_after - now;
        let when = rfc3339(not_after);
        let renew = match &spec.certificates {
            CertificateSettings::BringYourOwn { .. } => format!(
                "renew the certificate and replace the Secret {secret_name} (or update certificates.certificateFile/keyFile and run apply)"
            ),
            _ => format!(
                "cert-manager renews 30 days ahead: see why it did not (`kubectl -n {GITPOD_NAMESPACE} describe certificate {CERTIFICATE_NAME}`), then renew it (`cmctl renew -n {GITPOD_NAMESPACE} {CERTIFICATE_NAME}`)"
            ),
        };
        if left <= 0 {
            return Check::fail(
                ID,
                Part::Cluster,
                format!("the certificate in {secret_name} expired on {when}"),
                "browsers and Gitpod's clients refuse an expired certificate",
            )
            .fix(renew);
        }
        let within = self.renew_within.as_secs() as i64;
        if left < within {
            return Check::fail(
                ID,
                Part::Cluster,
                format!(
                    "the certificate in {secret_name} expires on {when}, in {}",
                    human(left)
                ),
                format!("it expires within {} and was not renewed", human(within)),
            )
            .fix(renew);
        }
        let what = match &spec.certificates {
            CertificateSettings::BringYourOwn { .. } => {
                format!("Secret {secret_name} (bring your own)")
            }
            _ => format!(
                "Certificate {CERTIFICATE_NAME} Ready for {}",
                join(wanted.iter())
            ),
        };
        Check::pass(
            ID,
            Part::Cluster,
            format!("{what}; expires {when} (in {})", human(left)),
        )
    }

    /// `dns.records`: the Gitpod names resolve to the proxy's load balancer.
    async fn records_check(&self, spec: &ReferenceArchitecture, api: &KubeApi) -> Check {
        const ID: &str = "dns.records";
        let started = Instant::now();
        let svc = match api::get(api, "v1", "Service", Some(GITPOD_NAMESPACE), PROXY_SERVICE).await
        {
            Ok(Some(s)) => s,
            Ok(None) => return Check::skipped(ID, Part::Dns, NOT_INSTALLED),
            Err(e) => {
                let mut c = api_failure(ID, "the proxy Service", &e);
                c.part = Part::Dns;
                return c.took(started.elapsed());
            }
        };
        let ingress = svc
            .pointer("/status/loadBalancer/ingress/0")
            .cloned()
            .unwrap_or(Value::Null);
        let ip = ingress.get("ip").and_then(Value::as_str).unwrap_or("");
        let host = ingress
            .get("hostname")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (target, lb): (String, gitpod_refarch::Result<Vec<IpAddr>>) = if !ip.is_empty() {
            match ip.parse::<IpAddr>() {
                Ok(a) => (ip.to_string(), Ok(vec![a])),
                Err(_) => {
                    return Check::fail(
                        ID,
                        Part::Dns,
                        format!("the proxy's load balancer address {ip:?} is not an IP address"),
                        "the records cannot be compared with it",
                    )
                    .fix("check the proxy Service's status")
                }
            }
        } else if !host.is_empty() {
            (host.to_string(), self.delegation.addresses(host).await)
        } else {
            return Check::skipped(ID, Part::Dns, NOT_INSTALLED);
        };
        let lb = match lb {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => {
                return Check::fail(
                    ID,
                    Part::Dns,
                    format!("the proxy's load balancer {target} does not resolve"),
                    "the Gitpod names cannot point at it",
                )
                .fix("check the load balancer in the cloud")
                .took(started.elapsed())
            }
            Err(e) => {
                return Check::fail(
                    ID,
                    Part::Dns,
                    format!("cannot resolve the proxy's load balancer {target}"),
                    e.message(),
                )
                .fix("check the resolvers this runs with")
                .took(started.elapsed())
            }
        };
        let names = [
            (spec.domain.clone(), spec.domain.clone()),
            (
                format!("*.{}", spec.domain),
                format!("{PROBE_LABEL}.{}", spec.domain),
            ),
            (
                format!("*.ws.{}", spec.domain),
                format!("{PROBE_LABEL}.ws.{}", spec.domain),
            ),
        ];
        let mut wrong = Vec::new();
        let mut unreachable = 0;
        for (record, probe) in &names {
            match self.delegation.addresses(probe).await {
                Ok(found) if found.iter().any(|a| lb.contains(a)) => {}
                Ok(found) if found.is_empty() => {
                    wrong.push(format!("{record} ({probe}) does not resolve"))
                }
                Ok(found) => wrong.push(format!(
                    "{record} ({probe}) resolves to {}",
                    join(found.iter())
                )),
                Err(e) => {
                    if e.kind() == ErrorKind::Transient {
                        unreachable += 1;
                    }
                    wrong.push(format!("{record} ({probe}): {}", e.message()));
                }
            }
        }
        if unreachable == names.len() {
            // No resolver answered: nothing is known about the records.
            return Check::skipped(
                ID,
                Part::Dns,
                format!("the DNS cannot be asked from here: {}", wrong.join("; ")),
            )
            .took(started.elapsed());
        }
        let check = if wrong.is_empty() {
            Check::pass(
                ID,
                Part::Dns,
                format!(
                    "{}, *.{} and *.ws.{} resolve to the proxy's load balancer {target}",
                    spec.domain, spec.domain, spec.domain
                ),
            )
        } else {
            Check::fail(
                ID,
                Part::Dns,
                format!(
                    "{}; the proxy's load balancer is {target}",
                    wrong.join("; ")
                ),
                "users and workspaces reach Gitpod through these names",
            )
            .fix(format!(
                "external-dns writes these records from the proxy Service: see `kubectl -n external-dns logs deploy/external-dns`; or point {}, *.{} and *.ws.{} at {target} yourself",
                spec.domain, spec.domain, spec.domain
            ))
        };
        check.took(started.elapsed())
    }

    /// `dns.delegation`: the parent zone delegates the zone to its name servers.
    async fn delegation_check(&self, ctx: &VerifyContext<'_>) -> Check {
        const ID: &str = "dns.delegation";
        let started = Instant::now();
        let zone = ctx.spec.zone_dns_name();
        if !self.check_delegation {
            return Check::skipped(
                ID,
                Part::Dns,
                "the delegation check is turned off (--no-delegation-check)",
            );
        }
        let Some(ns) = ctx.outputs.name_servers().filter(|n| !n.is_empty()) else {
            return Check::skipped(
                ID,
                Part::Dns,
                "no name servers for the zone yet (run apply)",
            );
        };
        let check = match self.delegation.check(zone, ns).await {
            Ok(d @ Delegation::Delegated { .. }) => Check::pass(ID, Part::Dns, d.to_string()),
            Ok(d) => {
                let mut fix = format!("add NS records for {zone} at the parent: {}", ns.join(", "));
                if !d.records_to_remove().is_empty() {
                    fix.push_str(&format!("; remove: {}", d.records_to_remove().join(", ")));
                }
                let summary = match &d {
                    Delegation::NotDelegated { parent, .. } => {
                        format!("{zone} is not delegated: its parent zone {parent} has no NS records for it")
                    }
                    _ => format!(
                        "{zone} is delegated by {} to other name servers",
                        d.parent()
                    ),
                };
                Check::fail(
                    ID,
                    Part::Dns,
                    summary,
                    "nothing in the zone is visible to the world: Gitpod's names do not resolve and DNS-01 certificates cannot issue",
                )
                .fix(fix)
            }
            Err(e) if e.kind() == ErrorKind::Transient => Check::skipped(
                ID,
                Part::Dns,
                format!("the DNS cannot be asked from here: {}", e.message()),
            ),
            // The walk up the public tree did not complete (no resolver answered, no
            // parent found from here): not a finding about the zone, so not a failure,
            // and never a pass.
            Err(e) => Check::skipped(
                ID,
                Part::Dns,
                format!(
                    "the delegation of {zone} could not be checked from here: {}",
                    e.message()
                ),
            )
            .fix(format!(
                "run verify where public DNS answers; the parent must hold NS records for {zone}: {}",
                ns.join(", ")
            )),
        };
        check.took(started.elapsed())
    }
}

/// `cluster.connect` (and the server's `gitVersion` when it answers).
async fn connect_check(api: &KubeApi, started: Instant) -> (Check, Option<String>) {
    const ID: &str = "cluster.connect";
    let version = match api.client().apiserver_version().await {
        Ok(v) => v.git_version,
        Err(e) => {
            let e = api::kube_error(e, "GET /version");
            return (
                in_cluster(api_failure(ID, "the API server's version", &e), started),
                None,
            );
        }
    };
    // `/version` is open to anyone: a list shows the token is accepted.
    let listed = Api::<Namespace>::all(api.client().clone())
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|e| api::kube_error(e, "list Namespace"));
    let c = match listed {
        Ok(_) => Check::pass(
            ID,
            Part::Cluster,
            format!("the API server ({version}) accepts the cloud's token"),
        ),
        Err(e) => api_failure(ID, "namespaces with the cloud's token", &e),
    };
    (in_cluster(c, started), Some(version))
}

/// `major.minor.patch` of a version string (`v1.34.0-gke.1`, `6.8.0-1015-gcp`,
/// `5.10.0+`): the leading numbers.
fn numbers(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.trim().trim_start_matches('v');
    let mut it = v
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u64>().ok());
    let major = it.next()??;
    let minor = it.next()??;
    let patch = it.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

fn at_least(v: &str, min: (u64, u64)) -> bool {
    numbers(v).is_some_and(|(a, b, _)| (a, b) >= min)
}

fn node_name(n: &Node) -> String {
    n.metadata.name.clone().unwrap_or_default()
}

fn node_info(n: &Node) -> Option<&k8s_openapi::api::core::v1::NodeSystemInfo> {
    n.status.as_ref().and_then(|s| s.node_info.as_ref())
}

/// `cluster.kubernetes-version`: the server and every kubelet >= 1.21.
fn version_check(server: Option<&str>, nodes: &gitpod_refarch::Result<Vec<Node>>) -> Check {
    const ID: &str = "cluster.kubernetes-version";
    let min = format!("{}.{}", MIN_KUBERNETES.0, MIN_KUBERNETES.1);
    let server = server.unwrap_or("");
    let nodes = match nodes {
        Ok(n) => n,
        Err(e) => return api_failure(ID, "the nodes", e),
    };
    let mut old = Vec::new();
    if !at_least(server, MIN_KUBERNETES) {
        old.push(format!("the API server is {server:?}"));
    }
    let mut kubelets = BTreeSet::new();
    for n in nodes {
        let v = node_info(n)
            .map(|i| i.kubelet_version.as_str())
            .unwrap_or("");
        if !at_least(v, MIN_KUBERNETES) {
            old.push(format!("node {} runs kubelet {v:?}", node_name(n)));
        }
        kubelets.insert(v.to_string());
    }
    if old.is_empty() {
        Check::pass(
            ID,
            Part::Cluster,
            format!(
                "server {server}, kubelets {} (>= {min})",
                if kubelets.is_empty() {
                    "none".to_string()
                } else {
                    join(kubelets.iter())
                }
            ),
        )
    } else {
        Check::fail(
            ID,
            Part::Cluster,
            short_list(&old),
            format!("Gitpod needs Kubernetes {min} or newer"),
        )
        .fix(format!(
            "upgrade the cluster and its node pools to Kubernetes >= {min} (cluster.kubernetesVersion in the spec, then apply)"
        ))
    }
}

/// `cluster.nodes`: every node has a Linux kernel >= 5.4 and runs containerd.
fn nodes_check(nodes: &gitpod_refarch::Result<Vec<Node>>) -> Check {
    const ID: &str = "cluster.nodes";
    let min = format!("{}.{}", MIN_KERNEL.0, MIN_KERNEL.1);
    let nodes = match nodes {
        Ok(n) => n,
        Err(e) => return api_failure(ID, "the nodes", e),
    };
    if nodes.is_empty() {
        return Check::fail(
            ID,
            Part::Cluster,
            "no node is registered",
            "Gitpod's pods have nowhere to run",
        )
        .fix("check the cluster's node pools in the cloud (their minimum size and health)");
    }
    let mut bad = Vec::new();
    let mut kernels = BTreeSet::new();
    let mut runtimes = BTreeSet::new();
    for n in nodes {
        let name = node_name(n);
        let Some(info) = node_info(n) else {
            bad.push(format!("node {name} reports no nodeInfo"));
            continue;
        };
        let kernel = info.kernel_version.trim_end_matches('+');
        if !at_least(kernel, MIN_KERNEL) {
            bad.push(format!("node {name} has kernel {:?}", info.kernel_version));
        }
        if !info.container_runtime_version.contains("containerd") {
            bad.push(format!(
                "node {name} runs {:?}, not containerd",
                info.container_runtime_version
            ));
        }
        kernels.insert(info.kernel_version.clone());
        runtimes.insert(info.container_runtime_version.clone());
    }
    if bad.is_empty() {
        Check::pass(
            ID,
            Part::Cluster,
            format!(
                "{} node(s): kernel {}, {}",
                nodes.len(),
                join(kernels.iter()),
                join(runtimes.iter())
            ),
        )
    } else {
        Check::fail(
            ID,
            Part::Cluster,
            short_list(&bad),
            format!("Gitpod's workspaces need Linux >= {min} and containerd on every node"),
        )
        .fix("use a node image with Linux >= 5.4 and containerd (nodePools.<pool>.image in the spec, e.g. UBUNTU_CONTAINERD on GKE), then apply")
    }
}

/// `cluster.cert-manager`: installed and ready, and `gitpod-issuer` Ready with the
/// spec's ACME server and a solver.
async fn cert_manager_check(spec: &ReferenceArchitecture, api: &KubeApi) -> Check {
    const ID: &str = "cluster.cert-manager";
    let server = match &spec.certificates {
        CertificateSettings::Acme { server, .. } => server,
        _ => {
            return Check::skipped(
                ID,
                Part::Cluster,
                "the spec brings its own certificate: cert-manager is not used",
            )
        }
    };
    let ns = CERT_MANAGER;
    match certmanager::readiness(api, ns, true).await {
        Ok(Readiness::Ready) => {}
        Ok(Readiness::Starting(why) | Readiness::Missing(why)) => {
            return Check::fail(
                ID,
                Part::Cluster,
                format!("cert-manager is not ready: {why}"),
                "the certificate cannot be issued or renewed",
            )
            .fix(format!(
                "run apply (it installs cert-manager and waits for it); see `kubectl -n {ns} get deploy,pods`"
            ))
        }
        Err(e) => return api_failure(ID, "cert-manager", &e),
    }
    let issuer = match api::get(
        api,
        "cert-manager.io/v1",
        "ClusterIssuer",
        None,
        ISSUER_NAME,
    )
    .await
    {
        Ok(Some(i)) => i,
        Ok(None) => {
            return Check::fail(
                ID,
                Part::Cluster,
                format!("ClusterIssuer {ISSUER_NAME} is missing"),
                "the certificate is issued by it",
            )
            .fix("run apply (its issuer step makes it)")
        }
        Err(e) => return api_failure(ID, "the ClusterIssuer", &e),
    };
    let live_server = issuer
        .pointer("/spec/acme/server")
        .and_then(Value::as_str)
        .unwrap_or("");
    let solvers = issuer
        .pointer("/spec/acme/solvers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if live_server != server.as_str() || solvers == 0 {
        return Check::fail(
            ID,
            Part::Cluster,
            format!(
                "ClusterIssuer {ISSUER_NAME} uses ACME server {live_server:?} with {solvers} solver(s); the spec says {server}"
            ),
            "certificates would come from elsewhere, or not at all",
        )
        .fix("run apply (the issuer step sets the server and the DNS-01 solver)");
    }
    if !certmanager::current_condition(&issuer, "Ready") {
        return Check::fail(
            ID,
            Part::Cluster,
            format!(
                "ClusterIssuer {ISSUER_NAME} is not Ready: {}",
                condition_message(&issuer, "Ready")
            ),
            "it cannot issue the certificate",
        )
        .fix(format!(
            "see `kubectl describe clusterissuer {ISSUER_NAME}` (the ACME account registration)"
        ));
    }
    Check::pass(
        ID,
        Part::Cluster,
        format!("cert-manager ready (CRDs, Deployments, webhook); ClusterIssuer {ISSUER_NAME} Ready with ACME {server}"),
    )
}

/// `cluster.secrets`: each installer secret in the Gitpod namespace with exactly its
/// keys (key sets only: values are never read into a check).
async fn secrets_check(ctx: &VerifyContext<'_>, api: &KubeApi) -> Check {
    const ID: &str = "cluster.secrets";
    let mut wrong = Vec::new();
    let mut ok = Vec::new();
    for m in &ctx.bundle.secrets {
        let live = match api::get(api, "v1", "Secret", Some(&m.namespace), &m.name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                wrong.push(format!("Secret {}/{} is missing", m.namespace, m.name));
                continue;
            }
            Err(e) => return api_failure(ID, "the installer's secrets", &e),
        };
        let have: BTreeSet<&str> = live
            .get("data")
            .and_then(Value::as_object)
            .map(|d| d.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let want: BTreeSet<&str> = m.data.keys().map(String::as_str).collect();
        let lacks: Vec<&&str> = want.difference(&have).collect();
        let extra: Vec<&&str> = have.difference(&want).collect();
        if !lacks.is_empty() {
            wrong.push(format!(
                "Secret {}/{} lacks key {}",
                m.namespace,
                m.name,
                join(lacks.into_iter())
            ));
        }
        if !extra.is_empty() {
            wrong.push(format!(
                "Secret {}/{} has unexpected key {}",
                m.namespace,
                m.name,
                join(extra.into_iter())
            ));
        }
        let type_ = live.get("type").and_then(Value::as_str).unwrap_or("Opaque");
        if type_ != m.type_ {
            wrong.push(format!(
                "Secret {}/{} is of type {type_}, not {}",
                m.namespace, m.name, m.type_
            ));
        }
        ok.push(m.name.as_str());
    }
    if wrong.is_empty() {
        Check::pass(
            ID,
            Part::Cluster,
            format!(
                "{} secret(s) in {GITPOD_NAMESPACE} with the installer's keys: {}",
                ok.len(),
                ok.join(", ")
            ),
        )
    } else {
        Check::fail(
            ID,
            Part::Cluster,
            wrong.join("; "),
            "Gitpod's installer requires these secrets with exactly these keys",
        )
        .fix(
            "run apply (the gitpod-namespace step writes the installer's secrets from the outputs)",
        )
    }
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The first few items, and how many more.
fn short_list(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > SHOWN {
        s.push_str(&format!(" (and {} more)", items.len() - SHOWN));
    }
    s
}

/// `3 days 4 h`, `89 days`.
fn human(secs: i64) -> String {
    let days = secs / 86_400;
    let hours = (secs % 86_400) / 3_600;
    match (days, hours) {
        (0, h) => format!("{h} h"),
        (d, 0) => format!("{d} days"),
        (d, h) => format!("{d} days {h} h"),
    }
}

// ---- The leaf certificate's notAfter, from its DER (X.509: RFC 5280 4.1) ----

/// One DER element: (tag, contents, the rest after it).
fn der(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let bad = || "malformed DER".to_string();
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Seconds since the epoch of a UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`).
fn der_time(tag: u8, v: &[u8]) -> Result<i64, String> {
    let s = std::str::from_utf8(v).map_err(|_| "bad time".to_string())?;
    let s = s.strip_suffix('Z').ok_or("time not in UTC")?;
    let num = |t: &str| t.parse::<i64>().map_err(|_| format!("bad time {s:?}"));
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy = num(&s[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (num(&s[..4])?, &s[4..]),
        _ => return Err(format!("unsupported time {s:?}")),
    };
    let (month, day) = (num(&rest[..2])?, num(&rest[2..4])?);
    let (h, m, sec) = (num(&rest[4..6])?, num(&rest[6..8])?, num(&rest[8..10])?);
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3_600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        (rem % 3_600) / 60,
        rem % 60
    )
}

/// The `notAfter` (seconds since the epoch) of the first certificate of a PEM chain.
fn leaf_not_after(pem: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "tls.crt is not PEM".to_string())?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = text.find(begin).ok_or("tls.crt has no CERTIFICATE block")? + begin.len();
    let end = text[start..]
        .find("-----END CERTIFICATE-----")
        .ok_or("tls.crt has an unterminated CERTIFICATE block")?;
    let b64: String = text[start..start + end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der_bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the CERTIFICATE block is not base64".to_string())?;
    let not_a_cert = |_| "the first certificate is not X.509 DER".to_string();
    let (_, cert, _) = der(&der_bytes).map_err(not_a_cert)?;
    let (_, tbs, _) = der(cert).map_err(not_a_cert)?;
    let (tag, _, mut rest) = der(tbs).map_err(not_a_cert)?;
    if tag == 0xa0 {
        // [0] version, then the serial number.
        rest = der(rest).map_err(not_a_cert)?.2;
    }
    // signature algorithm, issuer, then validity.
    let rest = der(rest).map_err(not_a_cert)?.2;
    let rest = der(rest).map_err(not_a_cert)?.2;
    let (_, validity, _) = der(rest).map_err(not_a_cert)?;
    let (_, _, after) = der(validity).map_err(not_a_cert)?;
    let (tag, v, _) = der(after).map_err(not_a_cert)?;
    der_time(tag, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(at_least("v1.34.0-fake-kube", MIN_KUBERNETES));
        assert!(at_least("v1.21.0", MIN_KUBERNETES));
        assert!(at_least("v1.29.0-eks-5e0fdde", MIN_KUBERNETES));
        assert!(!at_least("v1.20.15", MIN_KUBERNETES));
        assert!(!at_least("", MIN_KUBERNETES));
        assert!(at_least("6.8.0-1015-fake", MIN_KERNEL));
        assert!(at_least("5.4.0", MIN_KERNEL));
        assert!(!at_least("4.19.0-26-amd64", MIN_KERNEL));
        assert!(at_least("5.10.0+", MIN_KERNEL));
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let t = days_from_civil(2026, 11, 29) * 86_400 + 20 * 3600 + 10 * 60 + 22;
        assert_eq!(rfc3339(t), "2026-11-29T20:10:22Z");
        assert_eq!(der_time(0x17, b"261129201022Z"), Ok(t));
        assert_eq!(der_time(0x18, b"20261129201022Z"), Ok(t));
        assert!(der_time(0x17, b"2611292010Z").is_err());
    }

    #[test]
    fn a_certificate_that_is_not_one_is_refused() {
        assert!(leaf_not_after(b"not pem").is_err());
        assert!(leaf_not_after(
            b"-----BEGIN CERTIFICATE-----\nMIIBfakeAAAA\n-----END CERTIFICATE-----\n"
        )
        .is_err());
    }
}
