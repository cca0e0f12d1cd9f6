//! The whole Azure column end to end: every domain on the Azure provider against the
//! project's ARM **fake** (`gitpod-refarch-fake-azure`, not Azure: no emulator of the
//! Azure control plane exists), and the in-cluster bootstrap against the Kubernetes
//! fake, which the ARM fake reports as the AKS cluster's API server.
//!
//! One apply from nothing, every setting read back from the fake's state and from the
//! cluster's API, a re-apply with no mutating ARM call and no Kubernetes write, a
//! destroy that leaves nothing; every call of such a run checked against the official
//! `azure-mgmt-*` models; and one apply with realistic (scaled) operation times,
//! compared with its critical path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
// The fake's own validator of recorded calls against the official models (H2's, shared
// as a file: it needs nothing the fake's library does not export).
#[path = "../../gitpod-refarch-fake-azure/tests/model_check/mod.rs"]
mod model_check;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::state::MemoryStateStore;
use gitpod_refarch_azure::context::{
    derived_database_server_name, derived_registry_name, AKS_RBAC_CLUSTER_ADMIN,
    DNS_ZONE_CONTRIBUTOR, NETWORK_CONTRIBUTOR,
};
use gitpod_refarch_azure::REQUIRED_PROVIDERS;
use gitpod_refarch_fake_azure::{
    Call, CallKind, FakeAzure, FakeConfig, DEFAULT_CLIENT_ID, DEFAULT_TENANT,
};
use gitpod_refarch_fake_kube::FakeKube;
use serde_json::{json, Value};

/// A Kubernetes object read over the fake's HTTPS API (trusting its CA), `None` on 404.
async fn kget(k: &FakeKube, path: &str) -> Option<Value> {
    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(k.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = http.get(format!("{}{path}", k.url())).send().await.unwrap();
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    Some(r.json().await.unwrap())
}

fn b64(v: &Value) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// Role assignments of `role` on `scope` (case-insensitive) for `principal`.
fn grants(f: &FakeAzure, scope: &str, role: &str, principal: &str) -> usize {
    f.resources()
        .values()
        .filter(|v| v["type"] == "Microsoft.Authorization/roleAssignments")
        .filter(|v| {
            let p = &v["properties"];
            p["scope"].as_str().unwrap().eq_ignore_ascii_case(scope)
                && p["roleDefinitionId"].as_str().unwrap().ends_with(role)
                && p["principalId"] == principal
        })
        .count()
}

/// Every ARM setting of the column, read back from the fake's state.
fn check_arm(f: &FakeAzure, sent: &[Call]) {
    let tags = json!({ INSTALLATION_LABEL: NAME });
    // Account preparation: the group tagged, the six providers registered by us.
    assert_eq!(must(f, &rg_id())["tags"], tags);
    assert_eq!(must(f, &rg_id())["location"], "northeurope");
    for ns in REQUIRED_PROVIDERS {
        assert_eq!(f.registration_state(SUB, ns), "Registered", "{ns}");
    }
    let registered: BTreeSet<String> = sent
        .iter()
        .filter(|c| c.http_method == "POST" && c.path.ends_with("/register"))
        .map(|c| c.path.rsplit('/').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(registered.len(), 6, "{registered:?}");

    // The VNet with both subnets; MySQL's delegated.
    let vnet_id = rid("Microsoft.Network/virtualNetworks", "vnet-gp");
    let vnet = must(f, &vnet_id);
    assert_eq!(vnet["tags"], tags);
    assert_eq!(
        vnet["properties"]["addressSpace"]["addressPrefixes"],
        json!(["10.2.0.0/16"])
    );
    let nodes_id = format!("{vnet_id}/subnets/nodes");
    let mysql_subnet_id = format!("{vnet_id}/subnets/mysql");
    assert_eq!(
        must(f, &nodes_id)["properties"]["addressPrefix"],
        "10.2.0.0/17"
    );
    let delegated = must(f, &mysql_subnet_id);
    assert_eq!(
        delegated["properties"]["delegations"][0]["properties"]["serviceName"],
        "Microsoft.DBforMySQL/flexibleServers"
    );

    // The cluster identity, Network Contributor on the VNet.
    let identity = |n: &str| {
        must(
            f,
            &rid("Microsoft.ManagedIdentity/userAssignedIdentities", n),
        )
    };
    let cluster_identity = identity("id-gp-cluster");
    assert_eq!(cluster_identity["tags"], tags);
    let cluster_principal = cluster_identity["properties"]["principalId"]
        .as_str()
        .unwrap();
    assert_eq!(
        grants(f, &vnet_id, NETWORK_CONTRIBUTOR, cluster_principal),
        1
    );

    // AKS as the guide's column asks.
    let aks_id = rid("Microsoft.ContainerService/managedClusters", "aks-gp");
    let aks = must(f, &aks_id);
    let ap = &aks["properties"];
    assert!(
        ap["kubernetesVersion"]
            .as_str()
            .unwrap()
            .starts_with("1.33"),
        "{}",
        ap["kubernetesVersion"]
    );
    assert_eq!(ap["dnsPrefix"], NAME);
    assert_eq!(ap["networkProfile"]["networkPlugin"], "azure");
    assert_eq!(ap["networkProfile"]["networkPluginMode"], "overlay");
    assert_eq!(ap["networkProfile"]["networkPolicy"], "calico");
    assert_eq!(ap["autoUpgradeProfile"]["upgradeChannel"], "none");
    assert_eq!(ap["oidcIssuerProfile"]["enabled"], true);
    assert_eq!(ap["securityProfile"]["workloadIdentity"]["enabled"], true);
    assert_eq!(ap["aadProfile"]["managed"], true);
    assert_eq!(ap["aadProfile"]["enableAzureRBAC"], true);
    assert_eq!(ap["disableLocalAccounts"], true);
    assert_eq!(aks["tags"], tags);
    let uai = aks["identity"]["userAssignedIdentities"]
        .as_object()
        .unwrap();
    assert!(
        uai.keys()
            .any(|k| k.eq_ignore_ascii_case(cluster_identity["id"].as_str().unwrap())),
        "{uai:?}"
    );
    // The services pool went inline with the cluster, alone, as the system pool.
    let create = sent
        .iter()
        .find(|c| c.http_method == "PUT" && c.path.ends_with("/managedClusters/aks-gp"))
        .unwrap();
    let inline = &create.request_body.as_ref().unwrap()["properties"]["agentPoolProfiles"];
    assert_eq!(inline.as_array().unwrap().len(), 1, "{inline}");
    assert_eq!(inline[0]["name"], "services");
    assert_eq!(inline[0]["mode"], "System");
    let services_labels = json!({
        "gitpod.io/workload_ide": "true", "gitpod.io/workload_meta": "true",
        "gitpod.io/workload_services": "true", "gitpod.io/workload_workspace_services": "true",
    });
    for (pool, vm, disk, labels, taint, max) in [
        ("services", "Standard_D4_v4", 100, services_labels, None, 4),
        (
            "regularws",
            "Standard_D16_v4",
            512,
            json!({"gitpod.io/workload_workspace_regular": "true"}),
            Some("gitpod.io/workload=regular:NoSchedule"),
            50,
        ),
        (
            "headlessws",
            "Standard_D16_v4",
            512,
            json!({"gitpod.io/workload_workspace_headless": "true"}),
            Some("gitpod.io/workload=headless:NoSchedule"),
            50,
        ),
    ] {
        let p = must(f, &format!("{aks_id}/agentPools/{pool}"))["properties"].clone();
        assert_eq!(
            p["mode"],
            if pool == "services" { "System" } else { "User" }
        );
        assert_eq!(p["vmSize"], vm, "{pool}");
        assert_eq!(p["osDiskType"], "Managed", "{pool}");
        assert_eq!(p["osDiskSizeGB"], disk, "{pool}");
        assert_eq!(p["maxPods"], 110, "{pool}");
        assert_eq!(p["nodeLabels"], labels, "{pool}");
        let taints: Vec<&str> = taint.into_iter().collect();
        assert_eq!(p["nodeTaints"], json!(taints), "{pool}");
        assert_eq!(p["enableAutoScaling"], true, "{pool}");
        assert_eq!(
            (p["minCount"].clone(), p["maxCount"].clone()),
            (json!(1), json!(max))
        );
        assert_eq!(
            p["vnetSubnetID"].as_str().unwrap().to_ascii_lowercase(),
            nodes_id.to_ascii_lowercase()
        );
    }
    // The deployer (the client's service principal) is AKS RBAC Cluster Admin.
    let deployer = FakeAzure::client_object_id(DEFAULT_CLIENT_ID);
    assert_eq!(grants(f, &aks_id, AKS_RBAC_CLUSTER_ADMIN, &deployer), 1);

    // DNS: the zone, its records, the two identities federated with the cluster's
    // issuer, DNS Zone Contributor on the zone only.
    let zone_id = rid("Microsoft.Network/dnsZones", "gitpod.example.com");
    let zone = must(f, &zone_id);
    assert_eq!(zone["tags"], tags);
    assert_eq!(
        zone["properties"]["nameServers"].as_array().unwrap().len(),
        4
    );
    for rec in ["@", "*", "*.ws"] {
        let r = must(f, &format!("{zone_id}/A/{rec}"));
        assert_eq!(
            r["properties"]["ARecords"],
            json!([{"ipv4Address": TARGET_IP}]),
            "{rec}"
        );
        assert_eq!(
            r["properties"]["metadata"][INSTALLATION_LABEL], NAME,
            "{rec}"
        );
    }
    let issuer = ap["oidcIssuerProfile"]["issuerURL"].as_str().unwrap();
    assert!(issuer.starts_with("https://"), "{issuer}");
    for controller in ["cert-manager", "external-dns"] {
        let id = identity(&format!("id-gp-{controller}"));
        assert_eq!(id["tags"], tags);
        let fic = must(
            f,
            &format!(
                "{}/federatedIdentityCredentials/{controller}",
                id["id"].as_str().unwrap()
            ),
        );
        assert_eq!(fic["properties"]["issuer"], issuer, "{controller}");
        assert_eq!(
            fic["properties"]["subject"],
            format!("system:serviceaccount:{controller}:{controller}")
        );
        assert_eq!(
            fic["properties"]["audiences"],
            json!(["api://AzureADTokenExchange"])
        );
        let principal = id["properties"]["principalId"].as_str().unwrap();
        assert_eq!(
            grants(f, &zone_id, DNS_ZONE_CONTRIBUTOR, principal),
            1,
            "{controller}"
        );
        let anywhere = f
            .resources()
            .values()
            .filter(|v| v["properties"]["principalId"] == principal)
            .filter(|v| v["type"] == "Microsoft.Authorization/roleAssignments")
            .count();
        assert_eq!(
            anywhere, 1,
            "{controller} holds the zone role and nothing else"
        );
    }
    let roles = ids_with(f, "/roleAssignments/");
    assert_eq!(roles.len(), 4, "{roles:#?}");

    // ACR Standard, no admin user, the push scope map and its token.
    let registry_id = rid(
        "Microsoft.ContainerRegistry/registries",
        &derived_registry_name(SUB, NAME, NAME),
    );
    let registry = must(f, &registry_id);
    assert_eq!(registry["sku"]["name"], "Standard");
    assert_eq!(registry["properties"]["adminUserEnabled"], false);
    assert_eq!(registry["tags"], tags);
    let scope_map = must(f, &format!("{registry_id}/scopeMaps/gitpod-push"));
    let actions: BTreeSet<&str> = scope_map["properties"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let want: BTreeSet<String> = ["base-images", "workspace-images"]
        .iter()
        .flat_map(|r| {
            ["content/read", "content/write", "metadata/read"]
                .map(|a| format!("repositories/gitpod/{r}/{a}"))
        })
        .collect();
    assert_eq!(actions, want.iter().map(String::as_str).collect());
    let token = must(f, &format!("{registry_id}/tokens/gitpod-push"));
    assert_eq!(token["properties"]["status"], "enabled");
    assert!(token["properties"]["scopeMapId"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case(scope_map["id"].as_str().unwrap()));

    // MySQL flexible server in the delegated subnet, its private zone linked.
    let server_id = rid(
        "Microsoft.DBforMySQL/flexibleServers",
        &derived_database_server_name(SUB, NAME, NAME),
    );
    let server = must(f, &server_id);
    assert_eq!(
        server["sku"],
        json!({"name": "Standard_D2ds_v4", "tier": "GeneralPurpose"})
    );
    assert_eq!(server["tags"], tags);
    let sp = &server["properties"];
    assert_eq!(sp["version"], "8.0.21");
    assert_eq!(sp["administratorLogin"], "gitpod");
    assert_eq!(sp["highAvailability"]["mode"], "ZoneRedundant");
    assert_eq!(sp["backup"]["backupRetentionDays"], 7);
    assert_eq!(sp["backup"]["geoRedundantBackup"], "Disabled");
    assert_eq!(sp["storage"]["storageSizeGB"], 20);
    assert_eq!(sp["storage"]["autoGrow"], "Enabled");
    assert_eq!(sp["network"]["publicNetworkAccess"], "Disabled");
    assert!(sp["network"]["delegatedSubnetResourceId"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case(&mysql_subnet_id));
    let pzone_id = rid(
        "Microsoft.Network/privateDnsZones",
        "gp.private.mysql.database.azure.com",
    );
    assert!(sp["network"]["privateDnsZoneResourceId"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case(&pzone_id));
    let link = must(f, &format!("{pzone_id}/virtualNetworkLinks/vnet-gp"));
    assert!(link["properties"]["virtualNetwork"]["id"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case(&vnet_id));
    assert_eq!(link["properties"]["registrationEnabled"], false);
    for flag in [
        "explicit_defaults_for_timestamp",
        "require_secure_transport",
    ] {
        let c = must(f, &format!("{server_id}/configurations/{flag}"));
        assert_eq!(c["properties"]["value"], "OFF", "{flag}");
    }
    let db = must(f, &format!("{server_id}/databases/gitpod"));
    assert_eq!(db["properties"]["charset"], "utf8mb4");
    assert_eq!(db["properties"]["collation"], "utf8mb4_0900_ai_ci");
}

/// Inside the cluster, over the Kubernetes fake's HTTP API.
async fn check_cluster(k: &FakeKube, f: &FakeAzure) {
    let client_id = |n: &str| {
        must(
            f,
            &rid("Microsoft.ManagedIdentity/userAssignedIdentities", n),
        )["properties"]["clientId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let cm_id = client_id("id-gp-cert-manager");
    let edns_id = client_id("id-gp-external-dns");
    assert_ne!(cm_id, edns_id);
    for (ns, id) in [("cert-manager", &cm_id), ("external-dns", &edns_id)] {
        let sa = kget(k, &format!("/api/v1/namespaces/{ns}/serviceaccounts/{ns}"))
            .await
            .unwrap();
        assert_eq!(
            sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
            **id
        );
        let d = kget(
            k,
            &format!("/apis/apps/v1/namespaces/{ns}/deployments/{ns}"),
        )
        .await
        .unwrap();
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"], "true",
            "{ns}"
        );
    }
    let edns = kget(
        k,
        "/apis/apps/v1/namespaces/external-dns/deployments/external-dns",
    )
    .await
    .unwrap();
    let args: Vec<String> =
        serde_json::from_value(edns["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap();
    for flag in [
        "--provider=azure".to_string(),
        format!("--azure-resource-group={NAME}"),
        format!("--azure-subscription-id={SUB}"),
        format!("--txt-owner-id={NAME}"),
    ] {
        assert!(args.contains(&flag), "{flag}: {args:?}");
    }
    let azure_json: Value = serde_json::from_str(&b64(&kget(
        k,
        "/api/v1/namespaces/external-dns/secrets/external-dns",
    )
    .await
    .unwrap()["data"]["azure.json"]))
    .unwrap();
    assert_eq!(azure_json["tenantId"], DEFAULT_TENANT);
    assert_eq!(azure_json["useWorkloadIdentityExtension"], true);
    let issuer = kget(k, "/apis/cert-manager.io/v1/clusterissuers/gitpod-issuer")
        .await
        .unwrap();
    assert_eq!(
        issuer["spec"]["acme"]["solvers"][0]["dns01"]["azureDNS"],
        json!({
            "subscriptionID": SUB, "resourceGroupName": NAME,
            "hostedZoneName": "gitpod.example.com", "environment": "AzurePublicCloud",
            "managedIdentity": {"clientID": cm_id},
        })
    );
    let cert = kget(
        k,
        "/apis/cert-manager.io/v1/namespaces/gitpod/certificates/https-certificates",
    )
    .await
    .unwrap();
    let ready = cert["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "{cert}");
    // The installer's secrets in the gitpod namespace.
    let server = must(
        f,
        &rid(
            "Microsoft.DBforMySQL/flexibleServers",
            &derived_database_server_name(SUB, NAME, NAME),
        ),
    );
    let fqdn = server["properties"]["fullyQualifiedDomainName"]
        .as_str()
        .unwrap();
    assert!(fqdn.ends_with(".mysql.database.azure.com"), "{fqdn}");
    let db = kget(k, "/api/v1/namespaces/gitpod/secrets/database")
        .await
        .unwrap();
    assert_eq!(b64(&db["data"]["host"]), fqdn);
    assert_eq!(b64(&db["data"]["port"]), "3306");
    assert_eq!(b64(&db["data"]["username"]), "gitpod");
    let reg = kget(k, "/api/v1/namespaces/gitpod/secrets/container-registry")
        .await
        .unwrap();
    assert_eq!(reg["type"], "kubernetes.io/dockerconfigjson");
    let docker: Value = serde_json::from_str(&b64(&reg["data"][".dockerconfigjson"])).unwrap();
    let server = format!("{}.azurecr.io", derived_registry_name(SUB, NAME, NAME));
    let auth = &docker["auths"][&server];
    assert_eq!(auth["username"], "gitpod-push", "{server}");
    assert!(!auth["password"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_azure_column_applies_reads_back_reapplies_without_writes_and_destroys() {
    let k = kube().await;
    let f = FakeAzure::start(FakeConfig::default().with_kube(k.url(), k.ca_pem()))
        .await
        .unwrap();
    let s = spec();
    let e = engine_with_bootstrap(
        provider(&s, &f.url()).await,
        Arc::new(MemoryStateStore::new()),
        None,
    );
    f.reset_calls();
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let sent = f.calls();
    eprintln!("{}", arm_calls_line("apply", &sent));
    for c in &sent {
        if c.kind != CallKind::Token {
            assert!(c.api_version.is_some(), "{} {}", c.http_method, c.path);
        }
    }
    // Exactly the column's resources, each once.
    assert_eq!(inventory(&f), expected_inventory());
    check_arm(&f, &sent);
    check_cluster(&k, &f).await;
    // The installer: object storage in the cluster (no Azure Blob support in Gitpod's
    // installer), the database and registry secrets from the outputs.
    let bundle = e.installer_bundle(&s).await.unwrap();
    assert_eq!(bundle.config["objectStorage"], json!({"inCluster": true}));
    assert_eq!(bundle.config["database"]["inCluster"], false);
    let registry = bundle.secret("container-registry").unwrap();
    assert!(registry.data[".dockerconfigjson"]
        .expose()
        .contains("gitpod-push"));

    // Again: nothing to do in Azure or in the cluster.
    f.reset_calls();
    k.reset_calls();
    let again = e.apply_spec(&s).await.unwrap();
    assert!(again.is_success(), "{:#?}", again.failed);
    assert!(again.changed.is_empty(), "{:?}", again.changed);
    eprintln!("{}", arm_calls_line("re-apply", &f.calls()));
    assert_eq!(mutating(&f), Vec::<String>::new());
    assert_eq!(f.counts().mutating, 0);
    assert_eq!(k.counts().mutating, 0, "{:?}", k.counts());

    // Destroy: nothing left in the fake, the namespaces gone.
    f.reset_calls();
    let gone = e.destroy(&s).await.unwrap();
    assert!(gone.is_success(), "{:#?}", gone.failed);
    eprintln!("{}", arm_calls_line("destroy", &f.calls()));
    // One DELETE per resource: nothing deleted twice.
    let deletes = mutating(&f);
    let distinct: BTreeSet<&String> = deletes.iter().collect();
    assert_eq!(distinct.len(), deletes.len(), "{deletes:#?}");
    let left: Vec<String> = f.resources().into_keys().collect();
    assert_eq!(left, Vec::<String>::new());
    for ns in ["gitpod", "cert-manager", "external-dns"] {
        assert!(
            kget(&k, &format!("/api/v1/namespaces/{ns}"))
                .await
                .is_none(),
            "{ns}"
        );
    }
    // Destroying again changes nothing.
    f.reset_calls();
    let twice = e.destroy(&s).await.unwrap();
    assert!(twice.is_success(), "{:#?}", twice.failed);
    assert_eq!(mutating(&f), Vec::<String>::new());
    f.shutdown().await;
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_arm_call_of_apply_reapply_and_destroy_matches_the_official_models() {
    let Some(models) = model_check::load_or_skip(
        "every_arm_call_of_apply_reapply_and_destroy_matches_the_official_models",
    ) else {
        return;
    };
    let k = kube().await;
    let f = FakeAzure::start(FakeConfig::default().with_kube(k.url(), k.ca_pem()))
        .await
        .unwrap();
    let s = spec();
    let e = engine_with_bootstrap(
        provider(&s, &f.url()).await,
        Arc::new(MemoryStateStore::new()),
        None,
    );
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    assert!(e.destroy(&s).await.unwrap().is_success());
    let calls = f.calls();
    let report = model_check::validate_calls(&models, &calls);
    eprintln!(
        "models: {}",
        report.text().lines().next().unwrap_or_default()
    );
    assert!(report.errors.is_empty(), "{}", report.text());
    // The run wrote and read every kind of resource, and polled both LRO styles.
    assert!(report.requests_checked >= 30, "{}", report.text());
    assert!(report.polls >= 10, "{}", report.text());
    for op in [
        "ManagedClusters.begin_create_or_update",
        "AgentPools.begin_create_or_update",
        "Servers.begin_create",
        "Configurations.begin_create_or_update",
        "Databases.begin_create_or_update",
        "RoleAssignments.create",
        "FederatedIdentityCredentials.create_or_update",
        "Tokens.begin_create",
        "ResourceGroups.begin_delete",
        "Providers.register",
        "Registries.check_name_availability",
        "CheckNameAvailability.execute",
    ] {
        assert!(
            report.covered.iter().any(|c| c.ends_with(op)),
            "{op} not covered: {:?}",
            report.covered
        );
    }
    f.shutdown().await;
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_realistic_operation_times_the_apply_takes_about_its_critical_path() {
    // AKS create about 6 min, a pool 3 min, MySQL about 10 min: scaled by 0.002.
    let k = kube().await;
    let f = FakeAzure::start(
        FakeConfig::default()
            .with_kube(k.url(), k.ca_pem())
            .with_time_scale(Some(0.002)),
    )
    .await
    .unwrap();
    let s = spec();
    let (sink, took) = step_timer();
    let e = engine_with_bootstrap(
        provider(&s, &f.url()).await,
        Arc::new(MemoryStateStore::new()),
        Some(sink),
    );
    let plan = e.plan(&s).await.unwrap();
    let t = Instant::now();
    let report = e.apply(&plan).await.unwrap();
    let wall = t.elapsed();
    assert!(report.is_success(), "{:#?}", report.failed);
    let took = took.lock().unwrap().clone();
    let cp = critical_path(&plan, &took);
    let slowest = took.iter().max_by_key(|(_, d)| **d).unwrap();
    eprintln!(
        "Azure apply: wall {} ms, critical path {} ms ({} steps, longest {} {} ms, serial sum {} ms)",
        wall.as_millis(),
        cp.as_millis(),
        took.len(),
        slowest.0,
        slowest.1.as_millis(),
        took.values().sum::<Duration>().as_millis(),
    );
    // The cluster (6 min) and a pool after it (3 min) are on the critical path.
    assert!(cp >= Duration::from_millis(1000), "{cp:?}");
    assert!(wall >= cp, "{wall:?} < {cp:?}");
    assert!(
        wall.as_secs_f64() < cp.as_secs_f64() * 1.6 + 2.0,
        "wall {wall:?} vs critical path {cp:?}"
    );
    f.shutdown().await;
    k.shutdown().await;
}

/// The agent pools' nodes, as the Kubernetes fake serves them once the Azure fake has
/// published them, carry the Gitpod labels of their pool: checked as `gitpod-installer
/// validate cluster` checks them, a label selector per required label with at least
/// one node each, plus AKS's pool labels and the pool's `nodeTaints`. The inline
/// system pool publishes its nodes like the agentPools API's, and every node goes
/// with the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_agent_pool_has_nodes_with_the_gitpod_labels_the_installer_checks() {
    use gitpod_refarch::spec::PoolRole;

    let k = kube().await;
    let f = FakeAzure::start(FakeConfig::default().with_kube(k.url(), k.ca_pem()))
        .await
        .unwrap();
    let s = spec();
    let e = engine(
        provider(&s, &f.url()).await,
        Arc::new(MemoryStateStore::new()),
    );
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);

    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(k.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let nodes = |selector: String| {
        let selector = selector.replace('/', "%2F").replace('=', "%3D");
        let req = http.get(format!("{}/api/v1/nodes?labelSelector={selector}", k.url()));
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let list: Value = resp.json().await.unwrap();
            assert_eq!(list["kind"], "NodeList");
            list["items"].as_array().cloned().unwrap()
        }
    };
    let mut total = 0;
    for (role, pool, mode, taint) in [
        (PoolRole::Services, "services", "system", None),
        (
            PoolRole::RegularWorkspaces,
            "regularws",
            "user",
            Some(json!({"key": "gitpod.io/workload", "value": "regular", "effect": "NoSchedule"})),
        ),
        (
            PoolRole::HeadlessWorkspaces,
            "headlessws",
            "user",
            Some(json!({"key": "gitpod.io/workload", "value": "headless", "effect": "NoSchedule"})),
        ),
    ] {
        let of_pool = nodes(format!("kubernetes.azure.com/agentpool={pool}")).await;
        assert!(!of_pool.is_empty(), "{pool} has no nodes");
        total += of_pool.len();
        for label in role.required_labels() {
            let with_label = nodes(format!("{label}=true")).await;
            assert!(!with_label.is_empty(), "no node has {label}=true");
            for n in &with_label {
                assert_eq!(n["metadata"]["labels"]["agentpool"], pool, "{label}");
            }
        }
        for n in &of_pool {
            let name = n["metadata"]["name"].as_str().unwrap();
            assert!(name.starts_with(&format!("aks-{pool}-")), "{name}");
            assert!(name[name.len() - 10..].starts_with("vmss"), "{name}");
            let labels = &n["metadata"]["labels"];
            assert_eq!(labels["kubernetes.azure.com/mode"], mode, "{pool}");
            assert_eq!(labels["kubernetes.io/os"], "linux");
            let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
            assert_eq!(
                taints,
                taint.clone().into_iter().collect::<Vec<_>>(),
                "{pool}"
            );
        }
    }
    assert_eq!(
        nodes(String::new()).await.len(),
        total,
        "only the pools' nodes"
    );

    let gone = e.destroy(&s).await.unwrap();
    assert!(gone.is_success(), "{:#?}", gone.failed);
    assert!(
        nodes(String::new()).await.is_empty(),
        "the nodes go with the cluster"
    );
    f.shutdown().await;
    k.shutdown().await;
}
