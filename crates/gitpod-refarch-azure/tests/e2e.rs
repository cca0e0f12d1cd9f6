//! The Azure provider's cluster domain end to end (foundation, network, cluster
//! identity, AKS, node pools), with `azure_core`'s pipeline and `azure_identity`'s
//! client-secret credential, against the project's stateful **fake** of Azure Resource
//! Manager and Entra ID (`gitpod-refarch-fake-azure`: no emulator of the Azure control
//! plane exists). The other domains run on the core's simulation, so these tests see
//! only the ARM calls of the cluster domain. The fake records every call; the tests
//! read what it recorded and what it holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::{RetryPolicy, TokioClock, WaitPolicy};
use gitpod_refarch::provider::{ClusterProvider, Inputs, Progress};
use gitpod_refarch::resource::{ClusterResource, Desired};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::ReferenceArchitecture;
use gitpod_refarch::state::{MemoryStateStore, StateStore as _};
use gitpod_refarch::{Engine, ErrorKind, Providers, Secret};
use gitpod_refarch_azure::{AzureConfig, AzureProvider};
use gitpod_refarch_fake_azure::{
    CallKind, FakeAzure, FakeConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    DEFAULT_SUBSCRIPTION, DEFAULT_TENANT,
};
use serde_json::Value;

const RG: &str = "gp";

fn spec() -> ReferenceArchitecture {
    let s = ReferenceArchitecture::from_yaml(&format!(
        "cloud: azure\nname: gp\ndomain: gitpod.example.com\nazure:\n  \
         subscriptionId: {DEFAULT_SUBSCRIPTION}\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n  \
         server: https://acme-v02.api.letsencrypt.org/directory\n"
    ))
    .unwrap();
    s.validate().unwrap();
    s
}

fn fast_retry() -> RetryPolicy {
    let mut r = RetryPolicy::default();
    r.initial_backoff = Duration::from_millis(5);
    r.max_backoff = Duration::from_millis(50);
    r.max_attempts = 30;
    r.budget = Duration::from_secs(30);
    r
}

fn config(s: &ReferenceArchitecture, url: &str) -> AzureConfig {
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

/// An engine whose cluster domain is Azure, the rest the simulation (whose database
/// needs a network of its own, made here).
async fn engine(
    p: Arc<AzureProvider>,
    store: Arc<MemoryStateStore>,
    s: &ReferenceArchitecture,
) -> Engine {
    let sim = Arc::new(SimCloud::new(
        Arc::new(TokioClock::new()),
        LatencyProfile::instant(),
    ));
    let network = gitpod_refarch::plan::graph(s)
        .into_iter()
        .find_map(|n| match n.desired {
            Desired::Network(d) => Some(ClusterResource::Network(d)),
            _ => None,
        })
        .unwrap();
    let mut step = ClusterProvider::ensure(&*sim, &network, &Inputs::default())
        .await
        .unwrap();
    while let Progress::Pending(op) = step {
        step = ClusterProvider::poll(&*sim, &op).await.unwrap();
    }
    let providers = Providers::builder()
        .cluster(p)
        .dns(sim.clone())
        .object_store(sim.clone())
        .registry(sim.clone())
        .database(sim)
        .build()
        .unwrap();
    let mut retry = fast_retry();
    retry.propagation_budget = Duration::from_secs(60);
    let mut wait = WaitPolicy::default();
    wait.min_delay = Duration::from_millis(2);
    wait.max_delay = Duration::from_millis(20);
    wait.timeout = Duration::from_secs(60);
    Engine::builder(providers)
        .state(store)
        .retry(retry)
        .wait(wait)
        .build()
        .unwrap()
}

fn rg_id() -> String {
    format!("/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{RG}")
}

/// The fake's resource with this id, whatever the case of its segments.
fn resource(f: &FakeAzure, id: &str) -> Option<Value> {
    f.resource(id).or_else(|| {
        f.resources()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(id))
            .map(|(_, v)| v)
    })
}

fn mutating(f: &FakeAzure) -> Vec<String> {
    f.calls()
        .into_iter()
        .filter(|c| c.kind == CallKind::Mutate)
        .map(|c| format!("{} {}", c.http_method, c.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_domain_applies_reapplies_without_writes_and_destroys() {
    let f = FakeAzure::start(FakeConfig::default().with_polls_to_finish(2))
        .await
        .unwrap();
    let s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(AzureProvider::connect(config(&s, &f.url())).await.unwrap());
    let e = engine(p, store.clone(), &s).await;
    f.reset_calls();

    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    // Six registrations, the group, the VNet, the identity, two role assignments, the
    // cluster (its system pool inline) and the two user pools: nothing else is written.
    let writes = mutating(&f);
    assert_eq!(writes.len(), 14, "{writes:#?}");
    assert!(
        !writes
            .iter()
            .any(|w| w.contains("/managedClusters/aks-gp/agentPools/services")),
        "the system pool is created inline: {writes:#?}"
    );

    // Every call carried a pinned api-version (the fake answers 400 otherwise).
    for c in f.calls() {
        if c.kind != CallKind::Token {
            assert!(c.api_version.is_some(), "{} {}", c.http_method, c.path);
        }
    }
    // The providers were registered and the group tagged.
    for ns in gitpod_refarch_azure::REQUIRED_PROVIDERS {
        assert_eq!(f.registration_state(DEFAULT_SUBSCRIPTION, ns), "Registered");
    }
    let rg = resource(&f, &rg_id()).expect("resource group");
    assert_eq!(rg["tags"]["gitpod-installation"], "gp");

    // The VNet with both subnets, MySQL's delegated.
    let vnet = resource(
        &f,
        &format!(
            "{}/providers/Microsoft.Network/virtualNetworks/vnet-gp",
            rg_id()
        ),
    )
    .expect("vnet");
    assert_eq!(
        vnet["properties"]["addressSpace"]["addressPrefixes"],
        serde_json::json!(["10.2.0.0/16"])
    );
    // The fake keeps subnets as resources of their own.
    let subnet = |name: &str| {
        resource(
            &f,
            &format!(
                "{}/providers/Microsoft.Network/virtualNetworks/vnet-gp/subnets/{name}",
                rg_id()
            ),
        )
        .unwrap_or_else(|| panic!("subnet {name}"))
    };
    assert_eq!(
        subnet("nodes")["properties"]["addressPrefix"],
        "10.2.0.0/17"
    );
    let mysql = subnet("mysql");
    assert_eq!(mysql["properties"]["addressPrefix"], "10.2.255.0/24");
    assert_eq!(
        mysql["properties"]["delegations"][0]["properties"]["serviceName"],
        "Microsoft.DBforMySQL/flexibleServers"
    );

    // AKS, as the issue asks.
    let aks = resource(
        &f,
        &format!(
            "{}/providers/Microsoft.ContainerService/managedClusters/aks-gp",
            rg_id()
        ),
    )
    .expect("cluster");
    let ap = &aks["properties"];
    assert_eq!(ap["networkProfile"]["networkPlugin"], "azure");
    assert_eq!(ap["networkProfile"]["networkPluginMode"], "overlay");
    assert_eq!(ap["networkProfile"]["networkPolicy"], "calico");
    assert_eq!(ap["autoUpgradeProfile"]["upgradeChannel"], "none");
    assert_eq!(ap["oidcIssuerProfile"]["enabled"], true);
    assert_eq!(ap["securityProfile"]["workloadIdentity"]["enabled"], true);
    assert_eq!(ap["aadProfile"]["managed"], true);
    assert_eq!(ap["aadProfile"]["enableAzureRBAC"], true);
    assert_eq!(ap["disableLocalAccounts"], true);
    assert_eq!(aks["identity"]["type"], "UserAssigned");

    // The three pools, with the AKS names.
    for (pool, mode) in [
        ("services", "System"),
        ("regularws", "User"),
        ("headlessws", "User"),
    ] {
        let p = resource(
            &f,
            &format!(
                "{}/providers/Microsoft.ContainerService/managedClusters/aks-gp/agentPools/{pool}",
                rg_id()
            ),
        )
        .unwrap_or_else(|| panic!("pool {pool}"));
        assert_eq!(p["properties"]["mode"], mode, "{pool}");
        assert_eq!(p["properties"]["enableAutoScaling"], true, "{pool}");
        assert_eq!(p["properties"]["osDiskType"], "Managed", "{pool}");
    }

    // Role assignments: Network Contributor for the cluster identity, AKS RBAC Cluster
    // Admin for the deployer, each under a deterministic name.
    let roles: Vec<Value> = f
        .resources()
        .into_iter()
        .filter(|(k, _)| k.contains("/roleAssignments/"))
        .map(|(_, v)| v)
        .collect();
    let has = |role: &str| {
        roles.iter().any(|r| {
            r["properties"]["roleDefinitionId"]
                .as_str()
                .unwrap_or_default()
                .ends_with(role)
        })
    };
    assert!(has("4d97b98b-1d4f-4787-a291-c67834d212e7"), "{roles:#?}");
    assert!(has("b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"), "{roles:#?}");

    // The cluster's output.
    let outputs = e.outputs("gp").await.unwrap();
    let cluster = outputs
        .all()
        .get(&gitpod_refarch::resource::ResourceId::new(
            gitpod_refarch::resource::ResourceKind::Cluster,
            "gp",
        ))
        .expect("cluster output");
    match cluster {
        gitpod_refarch::resource::Output::Cluster { name, endpoint, .. } => {
            assert_eq!(name, "aks-gp");
            assert!(endpoint.contains("://"), "{endpoint}");
        }
        other => panic!("{other:?}"),
    }

    // A second apply changes nothing: no mutating ARM call at all.
    f.reset_calls();
    let again = e.apply_spec(&s).await.unwrap();
    assert!(again.is_success(), "{:#?}", again.failed);
    assert!(again.changed.is_empty(), "{:?}", again.changed);
    assert_eq!(mutating(&f), Vec::<String>::new());

    // Destroy leaves nothing of the installation in the fake.
    f.reset_calls();
    let gone = e.destroy(&s).await.unwrap();
    assert!(gone.is_success(), "{:#?}", gone.failed);
    let left: Vec<String> = f
        .resources()
        .into_keys()
        .filter(|k| k.to_ascii_lowercase().contains("/resourcegroups/gp"))
        .collect();
    assert!(left.is_empty(), "{left:#?}");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_an_unreachable_endpoint_fail_fast() {
    let f = FakeAzure::start(FakeConfig::default()).await.unwrap();
    let s = spec();
    let wrong = config(&s, &f.url()).client_secret(
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        Secret::new("not-the-secret".into()),
    );
    let e = AzureProvider::connect(wrong).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
    assert!(!format!("{e:?}").contains("not-the-secret"));
    f.shutdown().await;

    // Nothing listens there: refused at once, not retried for minutes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let t = std::time::Instant::now();
    let e = AzureProvider::connect(config(&s, &url)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_group_not_tagged_for_the_installation_is_never_used() {
    let f = FakeAzure::start(FakeConfig::default().with_polls_to_finish(0))
        .await
        .unwrap();
    let s = spec();
    // Someone else's group with the installation's name.
    let p = AzureProvider::connect(config(&s, &f.url())).await.unwrap();
    p.context()
        .arm
        .put(
            &format!("/subscriptions/{DEFAULT_SUBSCRIPTION}/resourcegroups/{RG}"),
            "2025-04-01",
            &serde_json::json!({"location": "northeurope", "tags": {"owner": "someone"}}),
        )
        .await
        .unwrap();
    let store = Arc::new(MemoryStateStore::new());
    let e = engine(Arc::new(p), store, &s).await;
    // The first read refuses it, before any change.
    let before = f.counts().mutating;
    let err = e.apply_spec(&s).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("azure.resourceGroup"), "{err}");
    // Destroy refuses it too, and leaves it alone.
    assert_eq!(e.destroy(&s).await.unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(f.counts().mutating, before);
    assert!(resource(&f, &rg_id()).is_some());
    f.shutdown().await;
}

/// Everything of the installation the fake still holds.
fn leftovers(f: &FakeAzure) -> Vec<String> {
    f.resources()
        .into_keys()
        .filter(|k| k.to_ascii_lowercase().contains("/resourcegroups/gp"))
        .collect()
}

fn count(f: &FakeAzure, needle: &str) -> usize {
    f.resources()
        .into_keys()
        .filter(|k| {
            k.to_ascii_lowercase()
                .contains(&needle.to_ascii_lowercase())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_throttling_and_failures_converge_without_duplicates() {
    let f = FakeAzure::start(
        FakeConfig::default()
            .with_seed(7)
            .with_throttle_retry_after_secs(0),
    )
    .await
    .unwrap();
    let s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(AzureProvider::connect(config(&s, &f.url())).await.unwrap());
    let e = engine(p, store, &s).await;
    f.set_fault_rate(0.2);
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    assert!(
        f.counts().faults > 5,
        "faults were injected: {:?}",
        f.counts()
    );
    assert_eq!(count(&f, "/managedClusters/aks-gp/agentPools/"), 3);
    assert_eq!(
        count(&f, "/roleAssignments/"),
        2,
        "no duplicate role assignment"
    );
    assert_eq!(count(&f, "/userAssignedIdentities/"), 1);
    let gone = e.destroy(&s).await.unwrap();
    assert!(gone.is_success(), "{:#?}", gone.failed);
    f.set_fault_rate(0.0);
    assert_eq!(leftovers(&f), Vec::<String>::new());
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_after_any_mutating_call_resumes_and_converges() {
    let s = spec();
    // A whole apply of the cluster domain makes 14 mutating calls: six registrations,
    // the group, the VNet, the identity, two role assignments, the cluster, two pools.
    for k in [1u64, 3, 6, 7, 8, 9, 10, 11, 12, 13] {
        let f = FakeAzure::start(FakeConfig::default().with_seed(k))
            .await
            .unwrap();
        let store = Arc::new(MemoryStateStore::new());
        let p = Arc::new(AzureProvider::connect(config(&s, &f.url())).await.unwrap());
        f.freeze_after_mutating(k);
        let e = engine(p.clone(), store.clone(), &s).await;
        // The process "dies": the apply never returns, its future is dropped.
        let killed = tokio::time::timeout(Duration::from_secs(2), e.apply_spec(&s)).await;
        assert!(
            killed.is_err(),
            "k={k}: the apply should hang on the frozen fake"
        );
        drop(e);
        // The killed run's lock stays (as a killed process leaves it): broken on purpose.
        let held = store
            .current_lock()
            .await
            .unwrap()
            .expect("the killed run's lock");
        assert_eq!(held.operation, "apply");
        store.break_lock(&held.id).await.unwrap();
        f.unfreeze();
        let e = engine(p, store, &s).await;
        let report = e.apply_spec(&s).await.unwrap();
        assert!(report.is_success(), "k={k}: {:#?}", report.failed);
        assert_eq!(count(&f, "/roleAssignments/"), 2, "k={k}");
        f.reset_calls();
        let again = e.apply_spec(&s).await.unwrap();
        assert!(again.is_success(), "k={k}");
        assert_eq!(mutating(&f), Vec::<String>::new(), "k={k}");
        let gone = e.destroy(&s).await.unwrap();
        assert!(gone.is_success(), "k={k}: {:#?}", gone.failed);
        assert_eq!(leftovers(&f), Vec::<String>::new(), "k={k}");
        f.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_identity_not_yet_visible_to_role_assignments_is_waited_for() {
    let f = FakeAzure::start(FakeConfig::default().with_principal_not_found_attempts(3))
        .await
        .unwrap();
    let s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(AzureProvider::connect(config(&s, &f.url())).await.unwrap());
    let e = engine(p, store, &s).await;
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let refused = f
        .calls()
        .into_iter()
        .filter(|c| c.status == 400 && c.response_body["error"]["code"] == "PrincipalNotFound")
        .count();
    assert!(refused >= 1, "PrincipalNotFound was answered and retried");
    // Every role assignment request named the principal type.
    for c in f.calls() {
        if c.http_method == "PUT" && c.path.contains("/roleAssignments/") {
            let body = c.request_body.unwrap();
            assert_eq!(body["properties"]["principalType"], "ServicePrincipal");
        }
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cluster_operation_is_in_progress_not_a_failure() {
    let f = FakeAzure::start(FakeConfig::default().with_polls_to_finish(1))
        .await
        .unwrap();
    let s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(AzureProvider::connect(config(&s, &f.url())).await.unwrap());
    let e = engine(p.clone(), store, &s).await;
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    f.set_polls_to_finish(50);
    let arm = &p.context().arm;
    let cluster = format!(
        "{}/providers/Microsoft.ContainerService/managedClusters/aks-gp",
        rg_id()
    );
    let pool: Value = arm
        .get(&format!("{cluster}/agentPools/regularws"), "2026-08-01")
        .await
        .unwrap()
        .unwrap();
    let mut scaled = serde_json::json!({"properties": pool["properties"].clone()});
    scaled["properties"]["maxCount"] = serde_json::json!(7);
    let first = arm
        .put(
            &format!("{cluster}/agentPools/regularws"),
            "2026-08-01",
            &scaled,
        )
        .await
        .unwrap();
    assert!(!first.is_done());
    let second = arm
        .put(
            &format!("{cluster}/agentPools/headlessws"),
            "2026-08-01",
            &scaled,
        )
        .await
        .unwrap_err();
    assert_eq!(second.kind(), ErrorKind::OperationInProgress, "{second}");
    assert!(second.is_retryable());
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_pool_is_updated_through_the_agent_pools_api_only() {
    let f = FakeAzure::start(FakeConfig::default().with_polls_to_finish(1))
        .await
        .unwrap();
    let mut s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(AzureProvider::connect(config(&s, &f.url())).await.unwrap());
    let e = engine(p, store.clone(), &s).await;
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    let roles = gitpod_refarch::spec::PoolRole::HeadlessWorkspaces;
    s.node_pools.get_mut(roles).max_nodes += 3;
    let want = s.node_pools.get(roles).max_nodes;
    f.reset_calls();
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let writes = mutating(&f);
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        writes[0].starts_with("PUT ") && writes[0].contains("/agentPools/headlessws"),
        "{writes:?}"
    );
    let pool = resource(
        &f,
        &format!(
            "{}/providers/Microsoft.ContainerService/managedClusters/aks-gp/agentPools/headlessws",
            rg_id()
        ),
    )
    .unwrap();
    assert_eq!(pool["properties"]["maxCount"], serde_json::json!(want));
    f.shutdown().await;
}
