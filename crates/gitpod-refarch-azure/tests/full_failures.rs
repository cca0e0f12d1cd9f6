//! Failure modes of the whole Azure column, every domain on the Azure provider,
//! against the project's ARM **fake** (`gitpod-refarch-fake-azure`, not Azure): a
//! 20 % rate of injected 429/500/503, a process killed after every mutating ARM call
//! and resumed, operations of someone else holding the cluster's and the server's
//! locks (409), a role assignment that already exists under another name, identities
//! Entra ID has not replicated yet, resource providers that are not registered or
//! never finish registering, globally taken registry and server names, and a resource
//! group that is not this installation's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../gitpod-refarch-fake-azure/tests/model_check/mod.rs"]
mod model_check;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use gitpod_refarch::resource::ResourceKind;
use gitpod_refarch::spec::{PoolRole, ReferenceArchitecture};
use gitpod_refarch::state::{MemoryStateStore, StateStore as _};
use gitpod_refarch::{Engine, Error, ErrorKind};
use gitpod_refarch_azure::context::{
    derived_database_server_name, derived_registry_name, role_assignment_name, AKS_API,
    AKS_RBAC_CLUSTER_ADMIN, AUTHORIZATION_API, MYSQL_API,
};
use gitpod_refarch_azure::{AzureProvider, REQUIRED_PROVIDERS};
use gitpod_refarch_fake_azure::{FakeAzure, FakeConfig, DEFAULT_CLIENT_ID};
use serde_json::{json, Value};

/// The error an apply ends with: its observation's, or its first failed step's.
async fn apply_error(e: &Engine, s: &ReferenceArchitecture) -> Error {
    match e.apply_spec(s).await {
        Ok(report) => report.into_result().unwrap_err(),
        Err(err) => err,
    }
}

/// A fresh fake and an engine over the Azure provider for every domain.
async fn column(cfg: FakeConfig) -> (FakeAzure, Engine) {
    let f = FakeAzure::start(cfg).await.unwrap();
    let e = engine(
        provider(&spec(), &f.url()).await,
        Arc::new(MemoryStateStore::new()),
    );
    (f, e)
}

/// A second apply writes nothing, and a destroy leaves nothing.
async fn settled_then_destroyed(f: &FakeAzure, e: &Engine, s: &ReferenceArchitecture, what: &str) {
    f.reset_calls();
    let again = e.apply_spec(s).await.unwrap();
    assert!(again.is_success(), "{what}: {:#?}", again.failed);
    assert!(again.changed.is_empty(), "{what}: {:?}", again.changed);
    assert_eq!(mutating(f), Vec::<String>::new(), "{what}");
    let gone = e.destroy(s).await.unwrap();
    assert!(gone.is_success(), "{what}: {:#?}", gone.failed);
    assert_eq!(
        f.resources().into_keys().collect::<Vec<_>>(),
        Vec::<String>::new(),
        "{what}"
    );
}

/// Every call the fake recorded (the provider's retries and the fake's refusals
/// included) agrees with the official models; skipped as the fake's own model tests
/// are when the models file is absent and not asked for.
fn models_agree(f: &FakeAzure, what: &str) {
    if let Some(models) = model_check::load_or_skip(what) {
        let report = model_check::validate_calls(&models, &f.calls());
        assert!(report.errors.is_empty(), "{what}: {}", report.text());
    }
}

/// Answers with this status and ARM error code.
fn answered(f: &FakeAzure, status: u16, code: &str) -> usize {
    f.calls()
        .iter()
        .filter(|c| c.status == status && c.response_body["error"]["code"] == code)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn injected_throttling_and_server_errors_converge_without_duplicates() {
    let k = kube().await;
    let f = FakeAzure::start(
        FakeConfig::default()
            .with_kube(k.url(), k.ca_pem())
            .with_seed(11)
            .with_throttle_retry_after_secs(0),
    )
    .await
    .unwrap();
    let s = spec();
    let e = engine_with_bootstrap(
        provider(&s, &f.url()).await,
        Arc::new(MemoryStateStore::new()),
        None,
    );
    f.reset_calls();
    f.set_fault_rate(0.2);
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    eprintln!("{}", arm_calls_line("apply with 20 % faults", &f.calls()));
    let counts = f.counts();
    assert!(counts.faults >= 10, "{counts:?}");
    for code in [
        "TooManyRequests",
        "InternalServerError",
        "ServiceUnavailable",
    ] {
        assert!(
            f.calls()
                .iter()
                .any(|c| c.fault && c.response_body["error"]["code"] == code),
            "no injected {code}"
        );
    }
    // Every resource once: no duplicate from a retried write.
    assert_eq!(inventory(&f), expected_inventory());
    models_agree(&f, "injected faults");
    f.set_fault_rate(0.0);
    k.reset_calls();
    f.reset_calls();
    let again = e.apply_spec(&s).await.unwrap();
    assert!(again.changed.is_empty(), "{:?}", again.changed);
    assert_eq!(mutating(&f), Vec::<String>::new());
    assert_eq!(k.counts().mutating, 0, "{:?}", k.counts());
    f.set_fault_rate(0.2);
    let gone = e.destroy(&s).await.unwrap();
    assert!(gone.is_success(), "{:#?}", gone.failed);
    f.set_fault_rate(0.0);
    assert_eq!(
        f.resources().into_keys().collect::<Vec<_>>(),
        Vec::<String>::new()
    );
    f.shutdown().await;
    k.shutdown().await;
}

/// Kill the apply right after its `k`th successful mutating call (the fake freezes: no
/// further request is answered, the apply's future is dropped), then resume with a
/// new provider and engine on the same state store.
async fn killed_after(k: u64) {
    let s = spec();
    let f = FakeAzure::start(FakeConfig::default().with_seed(k))
        .await
        .unwrap();
    let store = Arc::new(MemoryStateStore::new());
    {
        let e = engine(provider(&s, &f.url()).await, store.clone());
        f.reset_calls();
        f.freeze_after_mutating(k);
        let run = e.apply_spec(&s);
        tokio::pin!(run);
        let frozen = async {
            while successful_mutations(&f) < k {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::select! {
            r = &mut run => panic!("k={k}: the apply ended before the kill: {:?}", r.map(|r| r.failed)),
            () = frozen => {}
        }
    }
    // The killed run's lock stays (as a killed process leaves it): broken on purpose.
    let held = store
        .current_lock()
        .await
        .unwrap()
        .expect("the killed run's lock");
    assert_eq!(held.operation, "apply");
    store.break_lock(&held.id).await.unwrap();
    f.unfreeze();
    let e = engine(provider(&s, &f.url()).await, store);
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "k={k}: {:#?}", report.failed);
    assert_eq!(inventory(&f), expected_inventory(), "k={k}");
    settled_then_destroyed(&f, &e, &s, &format!("k={k}")).await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_apply_killed_after_every_mutating_call_resumes_converges_and_then_writes_nothing() {
    // How many successful mutating calls a whole apply makes.
    let (f, e) = column(FakeConfig::default()).await;
    f.reset_calls();
    assert!(e.apply_spec(&spec()).await.unwrap().is_success());
    let total = successful_mutations(&f);
    assert!(total >= 30, "{total}");
    f.shutdown().await;
    // Every one of them, six at a time.
    let mut failures = Vec::new();
    let ks: Vec<u64> = (1..=total).collect();
    for batch in ks.chunks(6) {
        let mut set = tokio::task::JoinSet::new();
        for &k in batch {
            set.spawn(killed_after(k));
        }
        while let Some(r) = set.join_next().await {
            if let Err(e) = r {
                failures.push(e.to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("killed and resumed after each of {total} mutating calls");
}

/// Someone else's long-running operation, waited for by its own client.
async fn outside_operation(f: &FakeAzure, path: &str, body: Value) -> tokio::task::JoinHandle<()> {
    let (status, answer) = arm_http(f, "PUT", path, Some(body)).await;
    assert!(status < 300, "{status}: {answer}");
    let url = answer["@azure-asyncoperation"]
        .as_str()
        .or(answer["@location"].as_str())
        .unwrap()
        .to_string();
    let (base, token) = (f.url(), f.token_for(DEFAULT_CLIENT_ID).unwrap());
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if status != 202 && v["status"] != "InProgress" {
                return;
            }
        }
        panic!("the outside operation at {base} never finished");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_in_progress_on_the_cluster_and_the_server_are_waited_for() {
    let (f, e) = column(FakeConfig::default().with_polls_to_finish(1)).await;
    let mut s = spec();
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    // Someone adds a pool of their own, which holds the cluster, and writes a server
    // parameter, which holds the MySQL server; neither shows on what the provider
    // reads. Each finishes after 40 polls (its own client's, and reads of the pool,
    // the cluster or the server).
    f.reset_calls();
    f.set_polls_to_finish(40);
    let aks = rid("Microsoft.ContainerService/managedClusters", "aks-gp");
    let (_, services) = arm_http(
        &f,
        "GET",
        &format!("{aks}/agentPools/services?api-version={AKS_API}"),
        None,
    )
    .await;
    let mut extra = services["properties"].clone();
    extra["mode"] = json!("User");
    extra["nodeLabels"] = json!({});
    let cluster_op = outside_operation(
        &f,
        &format!("{aks}/agentPools/extra?api-version={AKS_API}"),
        json!({"properties": extra}),
    )
    .await;
    let server = rid(
        "Microsoft.DBforMySQL/flexibleServers",
        &derived_database_server_name(SUB, NAME, NAME),
    );
    let server_op = outside_operation(
        &f,
        &format!("{server}/configurations/wait_timeout?api-version={MYSQL_API}"),
        json!({"properties": {"value": "3600", "source": "user-override"}}),
    )
    .await;
    // Meanwhile the spec asks for a larger headless pool and another server parameter.
    s.node_pools.get_mut(PoolRole::HeadlessWorkspaces).max_nodes = 60;
    s.database
        .cloud_mut()
        .unwrap()
        .flags
        .insert("innodb_lock_wait_timeout".into(), "120".into());
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    assert!(
        answered(&f, 409, "OperationNotAllowed") >= 1,
        "the cluster was busy"
    );
    assert!(
        answered(&f, 409, "AnotherOperationInProgress") >= 1,
        "the server was busy"
    );
    models_agree(&f, "operations in progress");
    cluster_op.await.unwrap();
    server_op.await.unwrap();
    assert_eq!(
        must(&f, &format!("{aks}/agentPools/headlessws"))["properties"]["maxCount"],
        60
    );
    let flag = must(
        &f,
        &format!("{server}/configurations/innodb_lock_wait_timeout"),
    );
    assert_eq!(flag["properties"]["value"], "120");
    settled_then_destroyed(&f, &e, &s, "after 409").await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_role_assignment_that_exists_under_another_name_is_adopted() {
    // Role assignment lists lag behind writes (as ARM's do): the provider, which lists
    // before it writes, meets `RoleAssignmentExists`.
    let (f, e) = column(FakeConfig::default().with_polls_to_finish(1)).await;
    let s = spec();
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    let aks = rid("Microsoft.ContainerService/managedClusters", "aks-gp");
    let deployer = FakeAzure::client_object_id(DEFAULT_CLIENT_ID);
    let role_id = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{AKS_RBAC_CLUSTER_ADMIN}"
    );
    let assignment = |name: &str| {
        format!("{aks}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={AUTHORIZATION_API}")
    };
    // Someone replaced the deployer's AKS RBAC Cluster Admin with the same grant under
    // another name.
    let ours = role_assignment_name(&aks, &role_id, &deployer);
    assert_eq!(
        arm_http(&f, "DELETE", &assignment(&ours), None).await.0,
        200
    );
    f.set_role_list_delay(3);
    let theirs = "3f2a6c1e-8b7d-4e5f-9a0b-1c2d3e4f5a6b";
    let body = json!({"properties": {"roleDefinitionId": role_id, "principalId": deployer, "principalType": "ServicePrincipal"}});
    assert_eq!(
        arm_http(&f, "PUT", &assignment(theirs), Some(body)).await.0,
        201
    );
    f.reset_calls();
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    assert!(
        answered(&f, 409, "RoleAssignmentExists") >= 1,
        "the provider met the conflict"
    );
    models_agree(&f, "RoleAssignmentExists");
    let writes: Vec<String> = f
        .calls()
        .iter()
        .filter(|c| c.http_method == "PUT" && c.status < 300)
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "nothing was written");
    let grants: Vec<String> = ids_with(
        &f,
        &format!("{aks}/providers/Microsoft.Authorization/roleAssignments/"),
    );
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert!(grants[0].ends_with(theirs), "{grants:?}");
    assert_eq!(inventory(&f), expected_inventory());
    // The adopted assignment goes with the rest.
    settled_then_destroyed(&f, &e, &s, "adopted").await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_identities_not_yet_visible_to_role_assignments_are_waited_for() {
    let (f, e) = column(FakeConfig::default().with_principal_not_found_attempts(3)).await;
    let s = spec();
    f.reset_calls();
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    // Three new identities (the cluster's, cert-manager's, external-dns's), each refused
    // three times before Entra ID "replicated" it.
    assert_eq!(answered(&f, 400, "PrincipalNotFound"), 9);
    models_agree(&f, "PrincipalNotFound");
    assert_eq!(inventory(&f), expected_inventory());
    settled_then_destroyed(&f, &e, &s, "PrincipalNotFound").await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn providers_are_registered_first_and_one_that_never_finishes_is_a_clear_timeout() {
    let f = FakeAzure::start(FakeConfig::default().with_registration_reads(u32::MAX))
        .await
        .unwrap();
    let s = spec();
    let p = AzureProvider::connect(
        config(&s, &f.url()).registration_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let e = engine(Arc::new(p), Arc::new(MemoryStateStore::new()));
    f.reset_calls();
    let err = apply_error(&e, &s).await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(
        err.resource().map(|r| r.kind),
        Some(ResourceKind::Foundation),
        "{err}"
    );
    let msg = err.message();
    assert!(msg.contains("not registered"), "{msg}");
    for ns in REQUIRED_PROVIDERS {
        assert!(msg.contains(ns), "{ns}: {msg}");
        assert_eq!(f.registration_state(SUB, ns), "Registering");
    }
    // Only the six registrations were asked for; nothing was created.
    let writes = mutating(&f);
    assert_eq!(writes.len(), 6, "{writes:#?}");
    assert!(writes
        .iter()
        .all(|w| w.starts_with("POST ") && w.ends_with("/register")));
    assert!(f.resources().is_empty());
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn taken_global_names_are_conflicts_naming_the_field_before_anything_is_created() {
    let registry = derived_registry_name(SUB, NAME, NAME);
    let server = derived_database_server_name(SUB, NAME, NAME);
    for (cfg, field) in [
        (
            FakeConfig::default().with_taken_registry_names([registry.clone()]),
            "azure.registryName",
        ),
        (
            FakeConfig::default().with_taken_server_names([server.clone()]),
            "azure.databaseServerName",
        ),
    ] {
        let (f, e) = column(cfg.with_polls_to_finish(1)).await;
        let mut s = spec();
        f.reset_calls();
        let err = apply_error(&e, &s).await;
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.message().contains(field), "{field}: {err}");
        let writes = mutating(&f);
        assert!(
            writes
                .iter()
                .all(|w| w.starts_with("POST ") && w.ends_with("/register")),
            "{field}: {writes:#?}"
        );
        assert!(
            f.resources().is_empty(),
            "{field}: {:?}",
            f.resources().keys()
        );
        // Another name in the spec gets past it.
        let z = s.azure.as_mut().unwrap();
        if field == "azure.registryName" {
            z.registry_name = Some("gpregistryelsewhere".into());
        } else {
            z.database_server_name = Some("mysql-gp-elsewhere".into());
        }
        s.validate().unwrap();
        let e = engine(
            provider(&s, &f.url()).await,
            Arc::new(MemoryStateStore::new()),
        );
        let report = e.apply_spec(&s).await.unwrap();
        assert!(report.is_success(), "{field}: {:#?}", report.failed);
        let renamed = if field == "azure.registryName" {
            rid(
                "Microsoft.ContainerRegistry/registries",
                "gpregistryelsewhere",
            )
        } else {
            rid("Microsoft.DBforMySQL/flexibleServers", "mysql-gp-elsewhere")
        };
        assert!(f.resource(&renamed).is_some(), "{renamed}");
        f.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resource_group_not_tagged_for_the_installation_is_never_deleted() {
    // Someone else's group with the installation's name, and a network in it.
    let (f, e) = column(
        FakeConfig::default()
            .with_providers_registered(true)
            .with_polls_to_finish(0),
    )
    .await;
    let s = spec();
    let rg = format!("{}?api-version=2025-04-01", rg_id());
    let theirs = json!({"location": "northeurope", "tags": {"owner": "someone"}});
    assert!(arm_http(&f, "PUT", &rg, Some(theirs.clone())).await.0 < 300);
    let vnet = format!(
        "{}?api-version=2025-05-01",
        rid("Microsoft.Network/virtualNetworks", "vnet-gp")
    );
    let net = json!({"location": "northeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.9.0.0/16"]}}});
    assert!(arm_http(&f, "PUT", &vnet, Some(net)).await.0 < 300);
    let before = f.resources();
    f.reset_calls();
    let err = apply_error(&e, &s).await;
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // The group's refusal names `azure.resourceGroup`; the network's (observed at the
    // same time) names the VNet: either way, nothing foreign is adopted.
    assert!(err.message().contains("is not tagged"), "{err}");
    if let Ok(report) = e.destroy(&s).await {
        assert!(report.changed.is_empty(), "{:?}", report.changed);
    }
    assert_eq!(mutating(&f), Vec::<String>::new());
    assert_eq!(f.resources(), before);

    // A group that was ours and lost its tag: its resources may go, the group stays.
    let (f, e) = column(FakeConfig::default().with_polls_to_finish(1)).await;
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    assert!(arm_http(&f, "PUT", &rg, Some(theirs)).await.0 < 300);
    f.reset_calls();
    let _ = e.destroy(&s).await;
    let rg_deletes: Vec<String> = mutating(&f)
        .into_iter()
        .filter(|w| w.eq_ignore_ascii_case(&format!("DELETE {}", rg_id())))
        .collect();
    assert_eq!(rg_deletes, Vec::<String>::new());
    assert_eq!(must(&f, &rg_id())["tags"], json!({"owner": "someone"}));
    f.shutdown().await;
}
