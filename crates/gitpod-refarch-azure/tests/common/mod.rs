//! What the whole-column tests share: the spec, the provider configuration for the
//! ARM **fake** (`gitpod-refarch-fake-azure`, not Azure), the Kubernetes fake with the
//! in-cluster bootstrap, engines with short policies, and readers of what the fakes
//! recorded (ARM calls by kind, the measured critical path of a run).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitpod_refarch::engine::{Event, EventSink, RetryPolicy, WaitPolicy};
use gitpod_refarch::plan::Plan;
use gitpod_refarch::resource::ResourceId;
use gitpod_refarch::spec::{PoolRole, RecordsTarget, ReferenceArchitecture, Taint};
use gitpod_refarch::state::MemoryStateStore;
use gitpod_refarch::{Engine, Providers, Secret};
use gitpod_refarch_azure::{AzureConfig, AzureProvider};
use gitpod_refarch_bootstrap::{BootstrapConfig, CertManagerSource, KubeBootstrap, Manifest};
use gitpod_refarch_fake_azure::{
    Call, CallKind, FakeAzure, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SUBSCRIPTION,
    DEFAULT_TENANT,
};
use gitpod_refarch_fake_kube::{FakeConfig as KubeConfig, FakeKube};
use serde_json::Value;

/// The installation (and resource group) name.
pub const NAME: &str = "gp";
/// The subscription the fake knows.
pub const SUB: &str = DEFAULT_SUBSCRIPTION;
/// The records target of the spec.
pub const TARGET_IP: &str = "203.0.113.10";

/// The guide's Azure column for installation `gp`: defaults (General Purpose MySQL
/// with zone-redundant HA, `Standard_D16_v4` workspace pools), an IPv4 records target,
/// a taint on each workspace pool, and MySQL 8.0 (whose
/// `explicit_defaults_for_timestamp` defaults to ON, so the provider must write it).
pub fn spec() -> ReferenceArchitecture {
    let mut s = ReferenceArchitecture::from_yaml(&format!(
        "cloud: azure\nname: {NAME}\ndomain: gitpod.example.com\nazure:\n  \
         subscriptionId: {SUB}\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n  \
         server: https://acme-v02.api.letsencrypt.org/directory\n"
    ))
    .unwrap();
    s.dns
        .set_records_target(Some(RecordsTarget::Ipv4(TARGET_IP.into())));
    if let Some(db) = s.database.cloud_mut() {
        db.mysql_version = "8.0".into();
    }
    for (role, value) in [
        (PoolRole::RegularWorkspaces, "regular"),
        (PoolRole::HeadlessWorkspaces, "headless"),
    ] {
        s.node_pools.get_mut(role).taints =
            vec![Taint::new("gitpod.io/workload", value, "NoSchedule")];
    }
    s.validate().unwrap();
    s
}

/// Short backoffs, a budget that a 20 % fault rate cannot exhaust.
pub fn fast_retry() -> RetryPolicy {
    let mut r = RetryPolicy::default();
    r.initial_backoff = Duration::from_millis(5);
    r.max_backoff = Duration::from_millis(50);
    r.max_attempts = 40;
    r.budget = Duration::from_secs(60);
    r.propagation_budget = Duration::from_secs(60);
    r
}

/// The provider configuration for the fake at `url`, with the fake's client secret.
pub fn config(s: &ReferenceArchitecture, url: &str) -> AzureConfig {
    AzureConfig::for_spec(s)
        .unwrap()
        .endpoint_url(url)
        .client_secret(
            DEFAULT_TENANT,
            DEFAULT_CLIENT_ID,
            Secret::new(DEFAULT_CLIENT_SECRET.to_string()),
        )
        .poll_interval(Duration::from_millis(5))
        .retry(fast_retry())
}

/// The provider for the fake at `url`.
pub async fn provider(s: &ReferenceArchitecture, url: &str) -> Arc<AzureProvider> {
    Arc::new(AzureProvider::connect(config(s, url)).await.unwrap())
}

/// An engine over `providers` with short retry and wait policies, optionally with an
/// event sink.
pub fn engine_for(
    providers: Providers,
    store: Arc<MemoryStateStore>,
    events: Option<EventSink>,
) -> Engine {
    let mut wait = WaitPolicy::default();
    wait.min_delay = Duration::from_millis(2);
    wait.max_delay = Duration::from_millis(20);
    wait.timeout = Duration::from_secs(120);
    let mut b = Engine::builder(providers)
        .state(store)
        .retry(fast_retry())
        .wait(wait);
    if let Some(sink) = events {
        b = b.on_event(sink);
    }
    b.build().unwrap()
}

/// Every domain on Azure, nothing inside the cluster.
pub fn engine(p: Arc<AzureProvider>, store: Arc<MemoryStateStore>) -> Engine {
    engine_for(Providers::all(p), store, None)
}

/// The cert-manager test manifest of the bootstrap's tests, with its sha256.
pub fn manifest() -> CertManagerSource {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../gitpod-refarch-bootstrap/tests/data/cert-manager-test.yaml");
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .unwrap();
    let sha = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    CertManagerSource::Manifest(Manifest::new(format!("file://{}", path.display()), sha))
}

/// The Kubernetes fake with short readiness delays.
pub async fn kube() -> FakeKube {
    let ms = Duration::from_millis;
    FakeKube::start(
        KubeConfig::default()
            .with_crd_established_delay(ms(20))
            .with_deployment_ready_delay(ms(20))
            .with_webhook_ready_delay(ms(40))
            .with_certificate_ready_delay(ms(20))
            .with_namespace_delete_delay(ms(20))
            .with_lb_delete_delay(ms(50)),
    )
    .await
    .unwrap()
}

/// Every domain on Azure and the in-cluster bootstrap, whose AKS tokens come from the
/// provider (Entra ID on the fake).
pub fn engine_with_bootstrap(
    p: Arc<AzureProvider>,
    store: Arc<MemoryStateStore>,
    events: Option<EventSink>,
) -> Engine {
    let bootstrap = KubeBootstrap::new(
        BootstrapConfig::new(p.clone())
            .cert_manager(manifest())
            .delegation(None)
            .poll_interval(Duration::from_millis(5)),
    );
    engine_for(
        Providers::all(p).with_in_cluster(Arc::new(bootstrap)),
        store,
        events,
    )
}

/// `/subscriptions/S/resourceGroups/gp`.
pub fn rg_id() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{NAME}")
}

/// The ARM id of `type_/name` in the resource group (`type_` with its namespace).
pub fn rid(type_: &str, name: &str) -> String {
    format!("{}/providers/{type_}/{name}", rg_id())
}

/// The fake's resource with this id; panics naming it when absent.
pub fn must(f: &FakeAzure, id: &str) -> Value {
    f.resource(id)
        .unwrap_or_else(|| panic!("the fake holds no {id}"))
}

/// The ids the fake holds whose (lower-cased) id contains `needle`.
pub fn ids_with(f: &FakeAzure, needle: &str) -> Vec<String> {
    let needle = needle.to_ascii_lowercase();
    f.resources()
        .into_keys()
        .filter(|k| k.to_ascii_lowercase().contains(&needle))
        .collect()
}

/// The mutating calls recorded, as `VERB path`.
pub fn mutating(f: &FakeAzure) -> Vec<String> {
    f.calls()
        .into_iter()
        .filter(|c| c.kind == CallKind::Mutate)
        .map(|c| format!("{} {}", c.http_method, c.path))
        .collect()
}

/// Successful mutating calls recorded (what `freeze_after_mutating` counts; once the
/// `n`th is recorded, the fake is frozen).
pub fn successful_mutations(f: &FakeAzure) -> u64 {
    f.calls()
        .iter()
        .filter(|c| c.kind == CallKind::Mutate && c.status < 300)
        .count() as u64
}

/// The short resource type of a call (`managedClusters/agentPools`, `register`, ...).
fn short_type(c: &Call) -> String {
    if c.path.ends_with("/register") {
        return "providers/register".into();
    }
    let t = c
        .resource_type
        .split_once('/')
        .map_or(c.resource_type.as_str(), |(_, t)| t);
    if t.is_empty() {
        "?".into()
    } else {
        t.to_string()
    }
}

/// ARM calls by kind (reads, mutating, polls, tokens, faults) and the mutating calls
/// by verb and resource type, as one line starting `ARM calls:`.
pub fn arm_calls_line(phase: &str, calls: &[Call]) -> String {
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut writes: BTreeMap<String, usize> = BTreeMap::new();
    let mut faults = 0;
    for c in calls {
        let k = match c.kind {
            CallKind::Read => "reads",
            CallKind::Mutate => "mutating",
            CallKind::Poll => "polls",
            CallKind::Token => "tokens",
        };
        *by_kind.entry(k).or_default() += 1;
        faults += usize::from(c.fault);
        if c.kind == CallKind::Mutate {
            *writes
                .entry(format!("{} {}", c.http_method, short_type(c)))
                .or_default() += 1;
        }
    }
    let kinds = ["reads", "mutating", "polls", "tokens"]
        .iter()
        .map(|k| format!("{k}={}", by_kind.get(k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(" ");
    let writes = writes
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "ARM calls: {phase}: total={} {kinds} faults={faults} | mutating by type: {}",
        calls.len(),
        if writes.is_empty() { "none" } else { &writes }
    )
}

/// An event sink recording how long each step took.
pub fn step_timer() -> (EventSink, Arc<Mutex<BTreeMap<ResourceId, Duration>>>) {
    let took: Arc<Mutex<BTreeMap<ResourceId, Duration>>> = Arc::default();
    let t = took.clone();
    let sink: EventSink = Arc::new(move |e: &Event| {
        if let Event::StepDone {
            resource, elapsed, ..
        } = e
        {
            t.lock().unwrap().insert(resource.clone(), *elapsed);
        }
    });
    (sink, took)
}

/// The longest path through the plan's dependencies and serial lanes, weighted by the
/// measured duration of each step (as the benches weight it by the simulator's
/// profile): the fastest this apply could have been with these step times.
pub fn critical_path(plan: &Plan, took: &BTreeMap<ResourceId, Duration>) -> Duration {
    let mut finish: BTreeMap<ResourceId, Duration> = BTreeMap::new();
    let mut lane_free: BTreeMap<String, Duration> = BTreeMap::new();
    for s in plan.steps() {
        let ready = s
            .after
            .iter()
            .filter_map(|d| finish.get(d))
            .max()
            .copied()
            .unwrap_or_default();
        let start = ready.max(lane_free.get(&s.lane).copied().unwrap_or_default());
        let end = start + took.get(&s.id).copied().unwrap_or_default();
        lane_free.insert(s.lane.clone(), end);
        finish.insert(s.id.clone(), end);
    }
    finish.values().max().copied().unwrap_or_default()
}

/// What the fake holds, relative to the resource group and lower-cased, each role
/// assignment named by its role (its own name is a GUID of the principal), sorted
/// with repeats kept: two of anything shows as two entries.
pub fn inventory(f: &FakeAzure) -> Vec<String> {
    let prefix = rg_id().to_ascii_lowercase();
    let mut all: Vec<String> = f
        .resources()
        .into_iter()
        .map(|(id, v)| {
            let id = id.to_ascii_lowercase();
            let rel = id.strip_prefix(&prefix).map_or(id.clone(), str::to_string);
            match rel.split_once("/providers/microsoft.authorization/roleassignments/") {
                Some((scope, _)) => {
                    let role = v["properties"]["roleDefinitionId"]
                        .as_str()
                        .unwrap_or_default()
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    format!("{scope} role {role}")
                }
                None => rel,
            }
        })
        .collect();
    all.sort();
    all
}

/// [`inventory`] after an apply of [`spec`], in Azure's names.
pub fn expected_inventory() -> Vec<String> {
    use gitpod_refarch_azure::context::{
        derived_database_server_name, derived_registry_name, AKS_RBAC_CLUSTER_ADMIN,
        DNS_ZONE_CONTRIBUTOR, NETWORK_CONTRIBUTOR,
    };
    let registry = format!(
        "/providers/microsoft.containerregistry/registries/{}",
        derived_registry_name(SUB, NAME, NAME)
    );
    let server = format!(
        "/providers/microsoft.dbformysql/flexibleservers/{}",
        derived_database_server_name(SUB, NAME, NAME)
    );
    let aks = "/providers/microsoft.containerservice/managedclusters/aks-gp";
    let zone = "/providers/microsoft.network/dnszones/gitpod.example.com";
    let pzone = "/providers/microsoft.network/privatednszones/gp.private.mysql.database.azure.com";
    let msi = "/providers/microsoft.managedidentity/userassignedidentities";
    let vnet = "/providers/microsoft.network/virtualnetworks/vnet-gp";
    let mut all = vec![
        String::new(),
        registry.clone(),
        format!("{registry}/scopemaps/gitpod-push"),
        format!("{registry}/tokens/gitpod-push"),
        aks.to_string(),
        format!("{aks}/agentpools/headlessws"),
        format!("{aks}/agentpools/regularws"),
        format!("{aks}/agentpools/services"),
        format!("{aks} role {AKS_RBAC_CLUSTER_ADMIN}"),
        server.clone(),
        format!("{server}/configurations/explicit_defaults_for_timestamp"),
        format!("{server}/configurations/require_secure_transport"),
        format!("{server}/databases/gitpod"),
        format!("{msi}/id-gp-cert-manager"),
        format!("{msi}/id-gp-cert-manager/federatedidentitycredentials/cert-manager"),
        format!("{msi}/id-gp-cluster"),
        format!("{msi}/id-gp-external-dns"),
        format!("{msi}/id-gp-external-dns/federatedidentitycredentials/external-dns"),
        format!("{zone} role {DNS_ZONE_CONTRIBUTOR}"),
        format!("{zone} role {DNS_ZONE_CONTRIBUTOR}"),
        zone.to_string(),
        format!("{zone}/a/*"),
        format!("{zone}/a/*.ws"),
        format!("{zone}/a/@"),
        format!("{zone}/ns/@"),
        format!("{zone}/soa/@"),
        pzone.to_string(),
        format!("{pzone}/virtualnetworklinks/vnet-gp"),
        vnet.to_string(),
        format!("{vnet} role {NETWORK_CONTRIBUTOR}"),
        format!("{vnet}/subnets/mysql"),
        format!("{vnet}/subnets/nodes"),
    ];
    all.sort();
    all
}

/// One ARM request to the fake over plain HTTP with a token the fake issued for its
/// client (someone else's tool): the status and the JSON answer.
pub async fn arm_http(
    f: &FakeAzure,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let token = f.token_for(DEFAULT_CLIENT_ID).unwrap();
    let url = if path.starts_with("http") {
        path.to_string()
    } else {
        format!("{}{path}", f.url())
    };
    let mut req = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    // The operation URL, for a caller that waits for its own operation.
    for h in ["azure-asyncoperation", "location"] {
        if let Some(url) = headers.get(h).and_then(|u| u.to_str().ok()) {
            if !v.is_object() {
                v = serde_json::json!({});
            }
            v[format!("@{h}")] = Value::String(url.to_string());
        }
    }
    (status, v)
}
