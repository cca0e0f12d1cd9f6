//! Drives every resource type of the Azure fake through its life cycle over plain HTTP
//! (the requests the provider sends, with realistic bodies), then validates every
//! recorded request and answer against the official `azure-mgmt-*` models
//! (`scripts/fetch-azure-models.sh`). Also proves the validator can fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod model_check;

use gitpod_refarch_fake_azure::{
    FakeAzure, FakeConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SUBSCRIPTION,
    DEFAULT_TENANT,
};
use model_check::{Exchange, Models};
use serde_json::{json, Value};

const LOC: &str = "westeurope";
const RG: &str = "rg-models";

/// A bare ARM client: bearer token, `api-version`, LRO polling as the provider does it.
struct Arm {
    http: reqwest::Client,
    base: String,
    token: String,
}

struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

impl Arm {
    async fn new(base: String) -> Arm {
        let http = reqwest::Client::new();
        let form = format!(
            "grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
        );
        let resp = http
            .post(format!("{base}/{DEFAULT_TENANT}/oauth2/v2.0/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "token endpoint");
        let v: Value = resp.json().await.unwrap();
        let token = v["access_token"].as_str().unwrap().to_string();
        Arm { http, base, token }
    }

    async fn raw(&self, verb: &str, url: &str, body: Option<&Value>) -> Answer {
        let method = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(&self.token)
            .header("accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{verb} {url}: answer is not JSON ({e}): {text}"))
        };
        Answer {
            status,
            body,
            headers,
        }
    }

    async fn call(&self, verb: &str, path: &str, api: &str, body: Option<&Value>) -> Answer {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{sep}api-version={api}", self.base);
        self.raw(verb, &url, body).await
    }

    /// Follow an LRO answer to its end; returns the final status.
    async fn finish(&self, what: &str, first: &Answer) {
        if let Some(url) = first.header("azure-asyncoperation") {
            for _ in 0..20 {
                let a = self.raw("GET", &url, None).await;
                assert_eq!(a.status, 200, "{what}: polling {url}: {}", a.body);
                match a.body["status"].as_str() {
                    Some("Succeeded") => return,
                    Some("Failed") | Some("Canceled") => panic!("{what}: {}", a.body),
                    _ => {}
                }
            }
            panic!("{what}: {url} never finished");
        }
        if let Some(url) = first.header("location") {
            for _ in 0..20 {
                let a = self.raw("GET", &url, None).await;
                match a.status {
                    202 => continue,
                    200 | 201 | 204 => return,
                    s => panic!("{what}: polling {url}: {s} {}", a.body),
                }
            }
            panic!("{what}: {url} never finished");
        }
    }

    /// A write that must succeed (synchronously or as an LRO).
    async fn write(&self, verb: &str, path: &str, api: &str, body: Option<&Value>) -> Answer {
        let a = self.call(verb, path, api, body).await;
        assert!(a.status < 300, "{verb} {path}: {} {}", a.status, a.body);
        self.finish(&format!("{verb} {path}"), &a).await;
        a
    }

    async fn put(&self, path: &str, api: &str, body: Value) -> Value {
        self.write("PUT", path, api, Some(&body)).await;
        self.get(path, api).await
    }

    async fn get(&self, path: &str, api: &str) -> Value {
        let a = self.call("GET", path, api, None).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.body);
        a.body
    }

    async fn delete(&self, path: &str, api: &str) {
        self.write("DELETE", path, api, None).await;
        let gone = self.call("GET", path, api, None).await;
        assert_eq!(gone.status, 404, "GET {path} after DELETE: {}", gone.body);
    }
}

fn tags() -> Value {
    json!({"gitpod-refarch/installation": "models"})
}

/// Every operation the provider uses; the life cycle below must exercise each.
const USED: &[&str] = &[
    "resource.ResourceGroups.create_or_update",
    "resource.ResourceGroups.get",
    "resource.ResourceGroups.check_existence",
    "resource.ResourceGroups.begin_delete",
    "resource.Providers.register",
    "resource.Providers.get",
    "network.VirtualNetworks.begin_create_or_update",
    "network.VirtualNetworks.get",
    "network.VirtualNetworks.begin_delete",
    "network.Subnets.get",
    "containerservice.ManagedClusters.begin_create_or_update",
    "containerservice.ManagedClusters.get",
    "containerservice.ManagedClusters.begin_delete",
    "containerservice.ManagedClusters.list_cluster_user_credentials",
    "containerservice.AgentPools.begin_create_or_update",
    "containerservice.AgentPools.get",
    "containerservice.AgentPools.begin_delete",
    "containerservice.AgentPools.list",
    "dns.Zones.create_or_update",
    "dns.Zones.get",
    "dns.Zones.begin_delete",
    "dns.RecordSets.create_or_update",
    "dns.RecordSets.get",
    "dns.RecordSets.delete",
    "privatedns.PrivateZones.begin_create_or_update",
    "privatedns.PrivateZones.get",
    "privatedns.PrivateZones.begin_delete",
    "privatedns.VirtualNetworkLinks.begin_create_or_update",
    "privatedns.VirtualNetworkLinks.get",
    "privatedns.VirtualNetworkLinks.begin_delete",
    "msi.UserAssignedIdentities.create_or_update",
    "msi.UserAssignedIdentities.get",
    "msi.UserAssignedIdentities.delete",
    "msi.FederatedIdentityCredentials.create_or_update",
    "msi.FederatedIdentityCredentials.get",
    "msi.FederatedIdentityCredentials.delete",
    "authorization.RoleAssignments.create",
    "authorization.RoleAssignments.get",
    "authorization.RoleAssignments.delete",
    "authorization.RoleAssignments.list_for_scope",
    "containerregistry.Registries.check_name_availability",
    "containerregistry.Registries.begin_create",
    "containerregistry.Registries.get",
    "containerregistry.Registries.begin_delete",
    "containerregistry.Registries.begin_generate_credentials",
    "containerregistry.ScopeMaps.begin_create",
    "containerregistry.ScopeMaps.get",
    "containerregistry.ScopeMaps.begin_delete",
    "containerregistry.Tokens.begin_create",
    "containerregistry.Tokens.get",
    "containerregistry.Tokens.begin_delete",
    "mysqlflexibleservers.CheckNameAvailabilityWithoutLocation.execute",
    "mysqlflexibleservers.Servers.begin_create",
    "mysqlflexibleservers.Servers.get",
    "mysqlflexibleservers.Servers.begin_delete",
    "mysqlflexibleservers.Databases.begin_create_or_update",
    "mysqlflexibleservers.Databases.get",
    "mysqlflexibleservers.Databases.begin_delete",
    "mysqlflexibleservers.Configurations.begin_create_or_update",
    "mysqlflexibleservers.Configurations.get",
];

/// Run the whole life cycle against a fake; returns nothing, asserts on the way.
async fn life_cycle(arm: &Arm) {
    let s = DEFAULT_SUBSCRIPTION;
    let rg_path = format!("/subscriptions/{s}/resourcegroups/{RG}");
    let rg = format!("/subscriptions/{s}/resourceGroups/{RG}/providers");
    const RES: &str = "2025-04-01";

    // Foundation: resource group and providers.
    assert_eq!(arm.call("HEAD", &rg_path, RES, None).await.status, 404);
    arm.put(&rg_path, RES, json!({"location": LOC, "tags": tags()}))
        .await;
    assert_eq!(arm.call("HEAD", &rg_path, RES, None).await.status, 204);
    for ns in [
        "Microsoft.ContainerService",
        "Microsoft.Network",
        "Microsoft.Compute",
        "Microsoft.DBforMySQL",
        "Microsoft.ContainerRegistry",
        "Microsoft.ManagedIdentity",
    ] {
        let p = format!("/subscriptions/{s}/providers/{ns}");
        arm.write("POST", &format!("{p}/register"), RES, None).await;
        let mut state = String::new();
        for _ in 0..10 {
            state = arm.get(&p, RES).await["registrationState"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if state == "Registered" {
                break;
            }
        }
        assert_eq!(state, "Registered", "{ns}");
    }

    // Identities.
    const MSI: &str = "2024-11-30";
    let mut principals = Vec::new();
    for name in [
        "id-models-cluster",
        "id-models-cert-manager",
        "id-models-external-dns",
    ] {
        let id = arm
            .put(
                &format!("{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"),
                MSI,
                json!({"location": LOC, "tags": tags()}),
            )
            .await;
        principals.push((
            name,
            id["id"].as_str().unwrap().to_string(),
            id["properties"]["principalId"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }

    // Network.
    const NET: &str = "2025-05-01";
    let vnet_path = format!("{rg}/Microsoft.Network/virtualNetworks/vnet-models");
    let vnet = arm
        .put(
            &vnet_path,
            NET,
            json!({
                "location": LOC,
                "tags": tags(),
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                    "subnets": [
                        {"name": "nodes", "properties": {"addressPrefix": "10.0.0.0/20"}},
                        {"name": "mysql", "properties": {
                            "addressPrefix": "10.0.16.0/24",
                            "delegations": [{"name": "mysql", "properties": {"serviceName": "Microsoft.DBforMySQL/flexibleServers"}}]
                        }}
                    ]
                }
            }),
        )
        .await;
    let vnet_id = vnet["id"].as_str().unwrap().to_string();
    let nodes = arm.get(&format!("{vnet_path}/subnets/nodes"), NET).await;
    let mysql_subnet = arm.get(&format!("{vnet_path}/subnets/mysql"), NET).await;

    // Role assignments: Network Contributor for the cluster identity on the VNet.
    const AUTHZ: &str = "2022-04-01";
    let role = |scope: &str, role: &str, principal: &str, guid: &str| {
        (
            format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}"),
            json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{role}"),
                "principalId": principal,
                "principalType": "ServicePrincipal",
            }}),
        )
    };
    let (ra_net, ra_net_body) = role(
        &vnet_id,
        "4d97b98b-1d4f-4787-a291-c67834d212e7",
        &principals[0].2,
        "2b6f1c3e-7d8a-4e4b-9c2d-0a1b2c3d4e5f",
    );
    arm.put(&ra_net, AUTHZ, ra_net_body.clone()).await;
    // The same assignment again is idempotent; under another name it is RoleAssignmentExists.
    arm.put(&ra_net, AUTHZ, ra_net_body.clone()).await;
    let other = ra_net.replace(
        "2b6f1c3e-7d8a-4e4b-9c2d-0a1b2c3d4e5f",
        "5e0c4f6b-1a2d-4c3e-8f5a-6b7c8d9e0f12",
    );
    let again = arm.call("PUT", &other, AUTHZ, Some(&ra_net_body)).await;
    assert_eq!(again.status, 409, "RoleAssignmentExists: {}", again.body);
    assert_eq!(again.body["error"]["code"], "RoleAssignmentExists");
    arm.get(
        &format!("{vnet_id}/providers/Microsoft.Authorization/roleAssignments?$filter=atScope()"),
        AUTHZ,
    )
    .await;

    // AKS with the system pool inline, then the workspace pools.
    const AKS: &str = "2026-08-01";
    let aks_path = format!("{rg}/Microsoft.ContainerService/managedClusters/aks-models");
    let pool = |mode: &str, vm: &str, workload: &str| {
        json!({
            "count": 1, "vmSize": vm, "osDiskSizeGB": 100, "osDiskType": "Managed",
            "osType": "Linux", "osSKU": "Ubuntu", "type": "VirtualMachineScaleSets", "mode": mode,
            "maxPods": 110, "enableAutoScaling": true, "minCount": 1, "maxCount": 10,
            "vnetSubnetID": nodes["id"], "orchestratorVersion": "1.33",
            "nodeLabels": {"gitpod.io/workload_meta": "true", workload: "true"},
            "nodeTaints": [],
        })
    };
    let mut services = pool("System", "Standard_D4_v4", "gitpod.io/workload_services");
    services["name"] = json!("services");
    let cluster = arm
        .put(
            &aks_path,
            AKS,
            json!({
                "location": LOC,
                "tags": tags(),
                "identity": {"type": "UserAssigned", "userAssignedIdentities": {principals[0].1.clone(): {}}},
                "sku": {"name": "Base", "tier": "Standard"},
                "properties": {
                    "kubernetesVersion": "1.33",
                    "dnsPrefix": "models",
                    "enableRBAC": true,
                    "disableLocalAccounts": true,
                    "supportPlan": "KubernetesOfficial",
                    "agentPoolProfiles": [services],
                    "networkProfile": {
                        "networkPlugin": "azure", "networkPluginMode": "overlay",
                        "networkPolicy": "calico", "networkDataplane": "azure",
                        "podCidr": "192.168.0.0/16", "serviceCidr": "172.16.0.0/16",
                        "dnsServiceIP": "172.16.0.10", "outboundType": "loadBalancer",
                        "loadBalancerSku": "standard"
                    },
                    "autoUpgradeProfile": {"upgradeChannel": "none", "nodeOSUpgradeChannel": "NodeImage"},
                    "oidcIssuerProfile": {"enabled": true},
                    "securityProfile": {"workloadIdentity": {"enabled": true}},
                    "aadProfile": {"managed": true, "enableAzureRBAC": true, "tenantID": DEFAULT_TENANT}
                }
            }),
        )
        .await;
    let issuer = cluster["properties"]["oidcIssuerProfile"]["issuerURL"]
        .as_str()
        .unwrap()
        .to_string();
    for (name, vm, workload) in [
        (
            "regularws",
            "Standard_D16_v4",
            "gitpod.io/workload_workspace_regular",
        ),
        (
            "headlessws",
            "Standard_D16_v4",
            "gitpod.io/workload_workspace_headless",
        ),
    ] {
        arm.put(
            &format!("{aks_path}/agentPools/{name}"),
            AKS,
            json!({"properties": pool("User", vm, workload)}),
        )
        .await;
    }
    arm.get(&format!("{aks_path}/agentPools"), AKS).await;
    let creds = arm
        .write(
            "POST",
            &format!("{aks_path}/listClusterUserCredential"),
            AKS,
            None,
        )
        .await;
    assert!(creds.body["kubeconfigs"][0]["value"].is_string());
    let (ra_admin, ra_admin_body) = role(
        cluster["id"].as_str().unwrap(),
        "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b",
        &principals[0].2,
        "3c7a2d4f-8e9b-4f5c-8d3e-1b2c3d4e5f60",
    );
    arm.put(&ra_admin, AUTHZ, ra_admin_body).await;

    // DNS zone, a record, the DNS identities' credentials and roles.
    const DNS: &str = "2018-05-01";
    let zone_path = format!("{rg}/Microsoft.Network/dnsZones/models.example.com");
    let zone = arm
        .put(
            &zone_path,
            DNS,
            json!({"location": "global", "tags": tags(), "properties": {"zoneType": "Public"}}),
        )
        .await;
    assert!(zone["properties"]["nameServers"].as_array().is_some());
    let rec = format!("{zone_path}/A/www");
    arm.put(
        &rec,
        DNS,
        json!({"properties": {"TTL": 300, "ARecords": [{"ipv4Address": "203.0.113.10"}], "metadata": {"gitpod-refarch-installation": "models"}}}),
    )
    .await;
    arm.delete(&rec, DNS).await;
    let zone_id = zone["id"].as_str().unwrap().to_string();
    for (i, (controller, ns)) in [
        ("cert-manager", "cert-manager"),
        ("external-dns", "external-dns"),
    ]
    .iter()
    .enumerate()
    {
        let (name, _, principal) = &principals[i + 1];
        arm.put(
            &format!("{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/{name}/federatedIdentityCredentials/{controller}"),
            MSI,
            json!({"properties": {
                "issuer": issuer,
                "subject": format!("system:serviceaccount:{ns}:{controller}"),
                "audiences": ["api://AzureADTokenExchange"],
            }}),
        )
        .await;
        let guid = format!("4d8b3e5a-9f0c-4a6d-8e4f-2c3d4e5f607{i}");
        let (ra, body) = role(
            &zone_id,
            "befefa01-2a29-4197-83a8-272ff33ce314",
            principal,
            &guid,
        );
        arm.put(&ra, AUTHZ, body).await;
    }

    // Registry: name check, registry, push-only scope map and token, a password.
    const ACR: &str = "2025-11-01";
    let check = arm
        .write(
            "POST",
            &format!("/subscriptions/{s}/providers/Microsoft.ContainerRegistry/checkNameAvailability"),
            ACR,
            Some(&json!({"name": "modelsabcdef01", "type": "Microsoft.ContainerRegistry/registries"})),
        )
        .await;
    assert_eq!(check.body["nameAvailable"], true);
    let acr_path = format!("{rg}/Microsoft.ContainerRegistry/registries/modelsabcdef01");
    arm.put(
        &acr_path,
        ACR,
        json!({"location": LOC, "tags": tags(), "sku": {"name": "Standard"}, "properties": {"adminUserEnabled": false}}),
    )
    .await;
    let scope_map = arm
        .put(
            &format!("{acr_path}/scopeMaps/gitpod-push"),
            ACR,
            json!({"properties": {"description": "gitpod push", "actions": [
                "repositories/*/content/read", "repositories/*/content/write", "repositories/*/metadata/read"
            ]}}),
        )
        .await;
    let token = arm
        .put(
            &format!("{acr_path}/tokens/gitpod-push"),
            ACR,
            json!({"properties": {"scopeMapId": scope_map["id"], "status": "enabled"}}),
        )
        .await;
    let gen = arm
        .call(
            "POST",
            &format!("{acr_path}/generateCredentials"),
            ACR,
            Some(&json!({"tokenId": token["id"], "name": "password1"})),
        )
        .await;
    assert!(
        gen.status == 200 || gen.status == 202,
        "generateCredentials: {}",
        gen.body
    );
    arm.finish("generateCredentials", &gen).await;

    // Database: name check, private DNS zone + link, server, flag, database.
    const MYSQL: &str = "2024-12-30";
    const PDNS: &str = "2024-06-01";
    let check = arm
        .write(
            "POST",
            &format!("/subscriptions/{s}/providers/Microsoft.DBforMySQL/checkNameAvailability"),
            MYSQL,
            Some(&json!({"name": "mysql-models-abcdef01", "type": "Microsoft.DBforMySQL/flexibleServers"})),
        )
        .await;
    assert_eq!(check.body["nameAvailable"], true);
    let pzone_path =
        format!("{rg}/Microsoft.Network/privateDnsZones/models.private.mysql.database.azure.com");
    let pzone = arm
        .put(
            &pzone_path,
            PDNS,
            json!({"location": "global", "tags": tags()}),
        )
        .await;
    arm.put(
        &format!("{pzone_path}/virtualNetworkLinks/vnet-models"),
        PDNS,
        json!({"location": "global", "tags": tags(), "properties": {"virtualNetwork": {"id": vnet_id}, "registrationEnabled": false}}),
    )
    .await;
    let server_path = format!("{rg}/Microsoft.DBforMySQL/flexibleServers/mysql-models-abcdef01");
    let server = arm
        .put(
            &server_path,
            MYSQL,
            json!({
                "location": LOC,
                "tags": tags(),
                "sku": {"name": "Standard_D2ds_v4", "tier": "GeneralPurpose"},
                "properties": {
                    "administratorLogin": "gitpod",
                    "administratorLoginPassword": "Fake-Passw0rd-For-Tests",
                    "version": "8.0.21",
                    "createMode": "Default",
                    "storage": {"storageSizeGB": 128, "autoGrow": "Enabled"},
                    "backup": {"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"},
                    "highAvailability": {"mode": "ZoneRedundant"},
                    "network": {
                        "delegatedSubnetResourceId": mysql_subnet["id"],
                        "privateDnsZoneResourceId": pzone["id"],
                        "publicNetworkAccess": "Disabled"
                    }
                }
            }),
        )
        .await;
    assert!(server["properties"]
        .get("administratorLoginPassword")
        .is_none());
    let flag = arm
        .put(
            &format!("{server_path}/configurations/explicit_defaults_for_timestamp"),
            MYSQL,
            json!({"properties": {"value": "OFF", "source": "user-override"}}),
        )
        .await;
    assert_eq!(flag["properties"]["value"], "OFF");
    arm.put(
        &format!("{server_path}/databases/gitpod"),
        MYSQL,
        json!({"properties": {"charset": "utf8mb4", "collation": "utf8mb4_unicode_ci"}}),
    )
    .await;

    // Destroy in the provider's order.
    arm.delete(&format!("{server_path}/databases/gitpod"), MYSQL)
        .await;
    arm.delete(&server_path, MYSQL).await;
    arm.delete(
        &format!("{pzone_path}/virtualNetworkLinks/vnet-models"),
        PDNS,
    )
    .await;
    arm.delete(&pzone_path, PDNS).await;
    arm.delete(&format!("{acr_path}/tokens/gitpod-push"), ACR)
        .await;
    arm.delete(&format!("{acr_path}/scopeMaps/gitpod-push"), ACR)
        .await;
    arm.delete(&acr_path, ACR).await;
    arm.delete(&ra_admin, AUTHZ).await;
    arm.delete(&ra_net, AUTHZ).await;
    for (i, controller) in ["cert-manager", "external-dns"].iter().enumerate() {
        let (name, _, _) = &principals[i + 1];
        arm.delete(
            &format!("{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/{name}/federatedIdentityCredentials/{controller}"),
            MSI,
        )
        .await;
    }
    arm.delete(&zone_path, DNS).await;
    for name in ["headlessws", "regularws"] {
        arm.delete(&format!("{aks_path}/agentPools/{name}"), AKS)
            .await;
    }
    arm.delete(&aks_path, AKS).await;
    arm.delete(&vnet_path, NET).await;
    for (name, _, _) in &principals {
        arm.delete(
            &format!("{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"),
            MSI,
        )
        .await;
    }
    arm.write("DELETE", &rg_path, RES, None).await;
    assert_eq!(arm.call("HEAD", &rg_path, RES, None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_a_life_cycle_matches_the_official_models() {
    let Some(models) =
        model_check::load_or_skip("every_call_of_a_life_cycle_matches_the_official_models")
    else {
        return;
    };
    for id in USED {
        assert!(
            models.op(id).is_some(),
            "{id} missing from {}",
            models.path.display()
        );
    }
    let fake = FakeAzure::start(FakeConfig::default().with_polls_to_finish(1))
        .await
        .unwrap();
    let arm = Arm::new(fake.url()).await;
    life_cycle(&arm).await;
    let calls = fake.calls();
    if let Some(dump) = std::env::var_os("GITPOD_REFARCH_AZURE_CALLS_DUMP") {
        // For reading what was validated: every recorded call as JSON.
        std::fs::write(dump, serde_json::to_string_pretty(&calls).unwrap()).unwrap();
    }
    let report = model_check::validate_calls(&models, &calls);
    fake.shutdown().await;
    eprintln!("{} calls: {}", calls.len(), report.text());
    let missing: Vec<&&str> = USED
        .iter()
        .filter(|id| !report.covered.contains(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "operations never exercised: {missing:?}"
    );
    assert!(report.polls > 0, "no LRO was polled");
    assert!(
        report.requests_checked >= 25 && report.responses_checked >= 60,
        "too few bodies checked: {}",
        report.text()
    );
    assert!(
        report.errors.is_empty(),
        "{} mismatches with the official models:\n{}",
        report.errors.len(),
        report.text()
    );
}

fn ex(
    method: &str,
    path: &str,
    api: &str,
    body: Option<Value>,
    status: u16,
    answer: Value,
) -> Exchange {
    Exchange {
        method: method.into(),
        path: path.into(),
        query: vec![("api-version".into(), api.into())],
        request_body: body,
        status,
        response_body: answer,
        response_headers: Vec::new(),
        token: false,
    }
}

fn has(list: &[String], needle: &str) -> bool {
    list.iter().any(|e| e.contains(needle))
}

/// The validator flags wrong requests and answers (so the life-cycle test can fail).
#[test]
fn the_validator_flags_wrong_calls() {
    let Some(models) = model_check::load_or_skip("the_validator_flags_wrong_calls") else {
        return;
    };
    let s = DEFAULT_SUBSCRIPTION;
    let aks = format!("/subscriptions/{s}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c");
    let server = format!("/subscriptions/{s}/resourceGroups/rg/providers/Microsoft.DBforMySQL/flexibleServers/mysql-x");
    let good_cluster = json!({"location": LOC, "properties": {"dnsPrefix": "c", "networkProfile": {"networkPlugin": "azure"}}});
    let answer = json!({"id": aks, "name": "c", "type": "Microsoft.ContainerService/managedClusters", "location": LOC,
        "properties": {"provisioningState": "Succeeded", "dnsPrefix": "c"}});

    // A correct exchange passes (control).
    let ok = models.validate(&[ex("GET", &aks, "2026-08-01", None, 200, answer.clone())]);
    assert!(ok.errors.is_empty(), "{}", ok.text());
    assert!(ok.covered.contains("containerservice.ManagedClusters.get"));

    let mut bad_field = good_cluster.clone();
    bad_field["properties"]["kubernetesVersionX"] = json!("1.33");
    let mut bad_enum = good_cluster.clone();
    bad_enum["properties"]["networkProfile"]["networkPlugin"] = json!("flannel");
    let mut wrong_type = good_cluster.clone();
    wrong_type["properties"]["enableRBAC"] = json!("yes");
    let missing_location = json!({"properties": {"dnsPrefix": "c"}});
    let mut secret_answer = json!({"id": server, "name": "mysql-x", "type": "Microsoft.DBforMySQL/flexibleServers",
        "location": LOC, "properties": {"administratorLogin": "gitpod"}});
    secret_answer["properties"]["administratorLoginPassword"] = json!("hunter2");
    let mut lro_no_header = ex(
        "PUT",
        &aks,
        "2026-08-01",
        Some(good_cluster.clone()),
        201,
        answer.clone(),
    );
    lro_no_header.response_headers = vec![("Retry-After".into(), "0".into())];

    let cases: Vec<(&str, Exchange, &str)> = vec![
        (
            "unknown field",
            ex(
                "PUT",
                &aks,
                "2026-08-01",
                Some(bad_field),
                200,
                answer.clone(),
            ),
            "kubernetesVersionX: not a field",
        ),
        (
            "wrong type",
            ex(
                "PUT",
                &aks,
                "2026-08-01",
                Some(wrong_type),
                200,
                answer.clone(),
            ),
            "expected bool",
        ),
        (
            "missing required",
            ex(
                "PUT",
                &aks,
                "2026-08-01",
                Some(missing_location),
                200,
                answer.clone(),
            ),
            "location: required",
        ),
        (
            "wrong api-version",
            ex("GET", &aks, "2024-01-01", None, 200, answer.clone()),
            "api-version 2024-01-01",
        ),
        (
            "unknown path",
            ex(
                "GET",
                &format!("{aks}/bogus"),
                "2026-08-01",
                None,
                200,
                answer.clone(),
            ),
            "no SDK operation",
        ),
        (
            "wrong method",
            ex(
                "PATCH",
                &format!("{aks}/agentPools/p"),
                "2026-08-01",
                None,
                200,
                answer.clone(),
            ),
            "only with",
        ),
        (
            "status not accepted",
            ex("GET", &aks, "2026-08-01", None, 201, answer.clone()),
            "not among the SDK's",
        ),
        (
            "secret in a GET",
            ex("GET", &server, "2024-12-30", None, 200, secret_answer),
            "secret",
        ),
        (
            "LRO without its header",
            lro_no_header,
            "Azure-AsyncOperation",
        ),
        (
            "error without ARM shape",
            ex(
                "GET",
                &aks,
                "2026-08-01",
                None,
                404,
                json!({"message": "nope"}),
            ),
            "error.code",
        ),
        (
            "unknown answer field",
            ex("GET", &aks, "2026-08-01", None, 200, {
                let mut a = answer.clone();
                a["properties"]["madeUp"] = json!(1);
                a
            }),
            "madeUp: not a field",
        ),
        (
            "answer for another resource",
            ex(
                "GET",
                &format!("{aks}2"),
                "2026-08-01",
                None,
                200,
                answer.clone(),
            ),
            "is not the request path",
        ),
        (
            "query parameter the SDK never sends",
            {
                let mut e = ex("GET", &aks, "2026-08-01", None, 200, answer.clone());
                e.query.push(("$expand".into(), "x".into()));
                e
            },
            "query parameter $expand",
        ),
    ];
    for (what, exchange, needle) in cases {
        let r = models.validate(&[exchange]);
        assert!(
            has(&r.errors, needle),
            "{what}: expected an error containing '{needle}', got:\n{}",
            r.text()
        );
    }

    // An unknown value of an open enum is a warning, not an error.
    let mut bad_enum_ex = ex(
        "PUT",
        &aks,
        "2026-08-01",
        Some(bad_enum),
        200,
        answer.clone(),
    );
    bad_enum_ex.response_headers = vec![];
    let r = models.validate(&[bad_enum_ex]);
    assert!(r.errors.is_empty(), "{}", r.text());
    assert!(has(&r.warnings, "'flannel' is not a known"), "{}", r.text());

    // Polls: an Azure-AsyncOperation URL must answer 200 with a status.
    let mut put = ex("PUT", &aks, "2026-08-01", Some(good_cluster), 201, answer);
    put.response_headers = vec![(
        "Azure-AsyncOperation".into(),
        format!("http://127.0.0.1:1/subscriptions/{s}/providers/Microsoft.ContainerService/locations/{LOC}/operations/op1?api-version=2026-08-01"),
    )];
    let mut poll = ex("GET", &format!("/subscriptions/{s}/providers/Microsoft.ContainerService/locations/{LOC}/operations/op1"), "2026-08-01", None, 200, json!({"state": "Done"}));
    poll.query = vec![("api-version".into(), "2026-08-01".into())];
    let r = models.validate(&[put, poll]);
    assert_eq!(r.polls, 1, "{}", r.text());
    assert!(has(&r.errors, "without `status`"), "{}", r.text());
}

/// A closed enum (none of the pinned models has one: all are open) is an error.
#[test]
fn closed_enums_are_errors() {
    let doc = json!({
        "packages": {},
        "operations": [{"id": "x.Things.create", "method": "PUT", "api_version": "1", "url_template": "/things/{name}",
            "path_params": {"name": {"multi_segment": false, "max_length": 5}}, "query_params": ["api-version"],
            "ok_status_codes": [200], "lro": false, "final_state_via": null, "lro_headers": {},
            "request_model": "x.Thing", "response_model": "x.Thing"}],
        "models": {"x.Thing": {"kind": {"type": "str", "readonly": false, "required": true, "secret": false,
            "enum": {"name": "x.Kind", "values": ["A", "B"], "open": false}}}}
    });
    let path =
        std::env::temp_dir().join(format!("azure-models-closed-{}.json", std::process::id()));
    std::fs::write(&path, doc.to_string()).unwrap();
    let models = Models::load_file(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let r = models.validate(&[ex(
        "PUT",
        "/things/t",
        "1",
        Some(json!({"kind": "C"})),
        200,
        json!({"kind": "A"}),
    )]);
    assert!(has(&r.errors, "'C' is not a x.Kind value"), "{}", r.text());
    let r = models.validate(&[ex(
        "PUT",
        "/things/toolong",
        "1",
        Some(json!({"kind": "A"})),
        200,
        json!({"kind": "A"}),
    )]);
    assert!(has(&r.errors, "longer than 5"), "{}", r.text());
    let r = models.validate(&[ex(
        "PUT",
        "/things/t",
        "1",
        Some(json!({"kind": "a"})),
        200,
        json!({"kind": "B"}),
    )]);
    assert!(r.errors.is_empty(), "{}", r.text());
    assert!(has(&r.warnings, "differs in case"), "{}", r.text());
}
