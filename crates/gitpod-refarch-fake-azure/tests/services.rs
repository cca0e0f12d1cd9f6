//! AKS, DNS and private DNS on the fake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::*;
use gitpod_refarch_fake_azure::FakeConfig;
use serde_json::{json, Value};

fn aks_path(rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ContainerService/managedClusters/{name}",
        rg_path(rg)
    )
}

fn cluster_body() -> Value {
    json!({"location": "westeurope", "identity": {"type": "SystemAssigned"}, "properties": {
        "dnsPrefix": "gitpod", "kubernetesVersion": "1.33",
        "agentPoolProfiles": [{"name": "services", "mode": "System", "count": 1, "vmSize": "Standard_D4_v4",
            "nodeLabels": {"gitpod.io/workload_meta": "true"}}],
        "networkProfile": {"networkPlugin": "azure", "networkPluginMode": "overlay", "networkPolicy": "calico"},
        "oidcIssuerProfile": {"enabled": true},
        "securityProfile": {"workloadIdentity": {"enabled": true}},
        "autoUpgradeProfile": {"upgradeChannel": "none", "nodeOSUpgradeChannel": "NodeImage"},
    }})
}

/// The CA of the Kubernetes fake that stands in for the clusters (PEM-shaped).
const KUBE_CA: &str = "-----BEGIN CERTIFICATE-----\nZmFrZS1rdWJlIENB\n-----END CERTIFICATE-----\n";

#[tokio::test]
async fn aks_clusters_lock_validate_and_serve_the_kube_endpoint() {
    let config = FakeConfig::default()
        .with_providers_registered(true)
        .with_polls_to_finish(2)
        .with_retry_after_secs(5)
        .with_kube("https://127.0.0.1:6443", KUBE_CA);
    let (fake, c) = start(config).await;
    c.rg("rg-a").await;
    let cluster = q(&aks_path("rg-a", "aks-a"), AKS);
    let pool = |n: &str| {
        q(
            &format!("{}/agentPools/{n}", aks_path("rg-a", "aks-a")),
            AKS,
        )
    };

    // Validation before anything is created.
    let mut bad = cluster_body();
    bad["properties"]["oidcIssuerProfile"]["enabled"] = json!(false);
    assert_eq!(c.call("PUT", &cluster, Some(bad)).await.status, 400);
    let mut bad = cluster_body();
    bad["properties"]["networkProfile"]["networkPlugin"] = json!("flannel");
    assert_eq!(c.call("PUT", &cluster, Some(bad)).await.status, 400);
    let mut bad = cluster_body();
    bad["properties"]["disableLocalAccounts"] = json!(true);
    assert_eq!(c.call("PUT", &cluster, Some(bad)).await.status, 400);
    let mut bad = cluster_body();
    bad["properties"]["agentPoolProfiles"][0]["name"] = json!("Services");
    assert_eq!(c.call("PUT", &cluster, Some(bad)).await.status, 400);
    let r = c
        .call(
            "PUT",
            &q(&aks_path("rg-a", "-bad"), AKS),
            Some(cluster_body()),
        )
        .await;
    assert_eq!(r.status, 400);

    let r = c.ok("PUT", &cluster, Some(cluster_body())).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    let op = r.header("azure-asyncoperation").unwrap();
    assert_eq!(r.body["properties"]["provisioningState"], "Creating");
    // Any mutating call on the cluster or its pools meanwhile: 409.
    let busy = c
        .call(
            "PUT",
            &pool("regularws"),
            Some(json!({"properties": {"count": 1, "mode": "User"}})),
        )
        .await;
    assert_eq!((busy.status, busy.code()), (409, "OperationNotAllowed"));
    assert!(busy.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Another operation (Creating) is in progress"));
    assert_eq!(c.call("DELETE", &cluster, None).await.status, 409);
    assert_eq!(c.get(&op).await["status"], "InProgress");
    assert_eq!(c.get(&op).await["status"], "Succeeded");

    let got = c.get(&cluster).await;
    let p = &got["properties"];
    assert_eq!(got["type"], "Microsoft.ContainerService/ManagedClusters");
    assert_eq!(p["provisioningState"], "Succeeded");
    // AKS's shape, even with a Kubernetes fake behind it (its address is in the
    // credentials' kubeconfig).
    let fqdn = p["fqdn"].as_str().unwrap();
    assert!(
        !fqdn.contains("://") && fqdn.contains(".hcp.") && fqdn.ends_with(".azmk8s.io"),
        "{fqdn}"
    );
    assert_eq!(p["currentKubernetesVersion"], "1.33.2");
    assert_eq!(p["powerState"]["code"], "Running");
    assert!(p["oidcIssuerProfile"]["issuerURL"]
        .as_str()
        .unwrap()
        .starts_with("https://westeurope.oic.prod-aks.azure.com/"));
    assert!(p["identityProfile"]["kubeletidentity"]["objectId"].is_string());
    assert!(got["identity"]["principalId"].is_string());
    assert_eq!(p["agentPoolProfiles"][0]["name"], "services");
    assert_eq!(p["agentPoolProfiles"][0]["provisioningState"], "Succeeded");

    // Pools: the spec's name pattern, then the agentPools API.
    for name in ["regular-ws", "1pool", "averyverylongname"] {
        let r = c
            .call(
                "PUT",
                &pool(name),
                Some(json!({"properties": {"count": 1}})),
            )
            .await;
        assert_eq!(r.status, 400, "{name}");
    }
    let r = c.call("PUT", &pool("regularws"), Some(json!({"properties": {"count": 1, "enableAutoScaling": true, "minCount": 2, "maxCount": 1}}))).await;
    assert_eq!(r.status, 400);
    let r = c
        .put_done(
            &pool("regularws"),
            json!({"properties": {"count": 1, "mode": "User", "vmSize": "Standard_D16_v4"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.header("azure-asyncoperation").is_some());
    let r = c
        .call(
            "PUT",
            &pool("regularws"),
            Some(json!({"properties": {"vmSize": "Standard_D8_v4"}})),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "PropertyChangeNotAllowed"));
    assert_eq!(
        c.get(&pool("regularws")).await["properties"]["mode"],
        "User"
    );
    assert_eq!(
        c.get(&q(
            &format!("{}/agentPools", aks_path("rg-a", "aks-a")),
            AKS
        ))
        .await["value"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A cluster PUT may not change pools; omitting them, or repeating them, is fine.
    let r = c.call("PUT", &cluster, Some(cluster_body())).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let mut no_pools = cluster_body();
    no_pools["properties"]
        .as_object_mut()
        .unwrap()
        .remove("agentPoolProfiles");
    let r = c.put_done(&cluster, no_pools).await;
    assert_eq!(r.status, 200);
    let same = c.get(&cluster).await;
    let mut again = cluster_body();
    again["properties"]["agentPoolProfiles"] = same["properties"]["agentPoolProfiles"].clone();
    c.put_done(&cluster, again).await;

    // Credentials.
    let creds = c
        .ok(
            "POST",
            &q(
                &format!("{}/listClusterUserCredential", aks_path("rg-a", "aks-a")),
                AKS,
            ),
            None,
        )
        .await;
    let kubeconfig = base64::engine::general_purpose::STANDARD
        .decode(creds.body["kubeconfigs"][0]["value"].as_str().unwrap())
        .unwrap();
    let kubeconfig = String::from_utf8(kubeconfig).unwrap();
    assert!(
        kubeconfig.contains("server: https://127.0.0.1:6443\n"),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains(&format!(
            "certificate-authority-data: {}\n",
            base64::engine::general_purpose::STANDARD.encode(KUBE_CA)
        )),
        "{kubeconfig}"
    );
    let mut aad = cluster_body();
    aad["properties"]["disableLocalAccounts"] = json!(true);
    aad["properties"]["aadProfile"] = json!({"managed": true, "enableAzureRBAC": true});
    c.put_done(&q(&aks_path("rg-a", "aks-b"), AKS), aad).await;
    let r = c
        .call(
            "POST",
            &q(
                &format!("{}/listClusterAdminCredential", aks_path("rg-a", "aks-b")),
                AKS,
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("disable local accounts"));
    c.ok(
        "POST",
        &q(
            &format!("{}/listClusterUserCredential", aks_path("rg-a", "aks-b")),
            AKS,
        ),
        None,
    )
    .await;

    // Delete: both headers; the pools go with the cluster.
    let r = c.ok("DELETE", &cluster, None).await;
    assert_eq!(r.status, 202);
    assert!(r.header("location").is_some());
    let s = c
        .wait_async(&r.header("azure-asyncoperation").unwrap())
        .await;
    assert_eq!(s["status"], "Succeeded");
    assert_eq!(c.call("GET", &pool("regularws"), None).await.status, 404);
    assert_eq!(c.call("DELETE", &cluster, None).await.status, 204);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_failed_operation_reports_failed() {
    let config = FakeConfig::default()
        .with_providers_registered(true)
        .with_polls_to_finish(1)
        .with_fail_operation(Some("managedClusters.create".into()));
    let (fake, c) = start(config).await;
    c.rg("rg-a").await;
    let r = c
        .ok(
            "PUT",
            &q(&aks_path("rg-a", "aks-a"), AKS),
            Some(cluster_body()),
        )
        .await;
    let s = c
        .wait_async(&r.header("azure-asyncoperation").unwrap())
        .await;
    assert_eq!(s["status"], "Failed");
    assert!(s["error"]["code"].is_string());
    assert_eq!(
        c.get(&q(&aks_path("rg-a", "aks-a"), AKS)).await["properties"]["provisioningState"],
        "Failed"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn dns_zones_and_record_sets() {
    let (fake, c) = ready().await;
    c.rg("rg-a").await;
    let zone = format!(
        "{}/providers/Microsoft.Network/dnsZones/gitpod.example.com",
        rg_path("rg-a")
    );
    let r = c
        .call(
            "PUT",
            &q(&zone, DNS),
            Some(json!({"location": "westeurope"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "LocationNotAvailableForResourceType")
    );
    let r = c
        .ok(
            "PUT",
            &q(&zone, DNS),
            Some(json!({"location": "global", "tags": {"a": "b"}})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.header("azure-asyncoperation").is_none() && r.header("location").is_none());
    let ns = r.body["properties"]["nameServers"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ns.len(), 4);
    assert!(
        ns[0].as_str().unwrap().starts_with("ns1-0")
            && ns[0].as_str().unwrap().ends_with(".azure-dns.com.")
    );
    assert_eq!(r.body["properties"]["numberOfRecordSets"], 2);
    let r = c
        .call("PUT", &q(&zone, DNS), Some(json!({"location": "global"})))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["properties"]["nameServers"], json!(ns));
    let mut put = c
        .http
        .put(format!("{}{}", c.base, q(&zone, DNS)))
        .bearer_auth(c.token.clone().unwrap())
        .header("If-None-Match", "*");
    put = put.json(&json!({"location": "global"}));
    assert_eq!(put.send().await.unwrap().status().as_u16(), 412);

    let a = |rel: &str| q(&format!("{zone}/A/{rel}"), DNS);
    let r = c
        .ok(
            "PUT",
            &a("*.ws"),
            Some(json!({"properties": {"TTL": 300, "ARecords": [{"ipv4Address": "20.1.2.3"}]}})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["type"], "Microsoft.Network/dnszones/A");
    assert_eq!(r.body["properties"]["fqdn"], "*.ws.gitpod.example.com.");
    assert_eq!(r.body["properties"]["TTL"], 300);
    let r = c
        .call(
            "PUT",
            &a("bad"),
            Some(json!({"properties": {"TTL": 300, "ARecords": [{"ipv4Address": "nope"}]}})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .call(
            "PUT",
            &a("bad"),
            Some(json!({"properties": {"CNAMERecord": {"cname": "x."}}})),
        )
        .await;
    assert_eq!(r.status, 400);
    let cname = q(&format!("{zone}/CNAME/*.ws"), DNS);
    let r = c
        .call(
            "PUT",
            &cname,
            Some(json!({"properties": {"TTL": 300, "CNAMERecord": {"cname": "x.example.com"}}})),
        )
        .await;
    assert_eq!(r.status, 400, "CNAME next to an A record");
    c.ok(
        "PUT",
        &q(&format!("{zone}/TXT/_acme"), DNS),
        Some(json!({"properties": {"TTL": 60, "TXTRecords": [{"value": ["token"]}]}})),
    )
    .await;
    let all = c.get(&q(&format!("{zone}/recordsets"), DNS)).await;
    assert_eq!(all["value"].as_array().unwrap().len(), 4);
    assert_eq!(
        c.get(&q(&format!("{zone}/A"), DNS)).await["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.call("DELETE", &q(&format!("{zone}/SOA/@"), DNS), None)
            .await
            .status,
        400
    );
    assert_eq!(c.ok("DELETE", &a("*.ws"), None).await.status, 200);
    assert_eq!(c.call("DELETE", &a("*.ws"), None).await.status, 204);

    let r = c.ok("DELETE", &q(&zone, DNS), None).await;
    assert_eq!(r.status, 202);
    c.wait_location(&r.header("location").unwrap()).await;
    assert!(
        fake.resources()
            .keys()
            .all(|k| !k.to_lowercase().contains("dnszones")),
        "{:?}",
        fake.resources().keys()
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn private_dns_zones_and_links_are_lros() {
    let (fake, c) = ready().await;
    c.rg("rg-a").await;
    let vnet = format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet-a",
        rg_path("rg-a")
    );
    c.put_done(&q(&vnet, NET), json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.2.0.0/16"]}}})).await;
    let zone = format!(
        "{}/providers/Microsoft.Network/privateDnsZones/a.private.mysql.database.azure.com",
        rg_path("rg-a")
    );
    let r = c
        .put_done(&q(&zone, PDNS), json!({"location": "global"}))
        .await;
    assert_eq!(r.status, 201);
    assert!(r.header("azure-asyncoperation").is_some());
    let link = format!("{zone}/virtualNetworkLinks/vnet-a");
    let r = c.call("PUT", &q(&link, PDNS), Some(json!({"location": "global", "properties": {"virtualNetwork": {"id": format!("{vnet}x")}}}))).await;
    assert_eq!(r.status, 400);
    c.put_done(&q(&link, PDNS), json!({"location": "global", "properties": {"virtualNetwork": {"id": vnet}, "registrationEnabled": false}})).await;
    let got = c.get(&q(&link, PDNS)).await;
    assert_eq!(got["properties"]["virtualNetworkLinkState"], "Completed");
    assert_eq!(
        c.get(&q(&zone, PDNS)).await["properties"]["numberOfVirtualNetworkLinks"],
        1
    );
    assert_eq!(c.call("DELETE", &q(&zone, PDNS), None).await.status, 409);
    let r = c.ok("DELETE", &q(&link, PDNS), None).await;
    c.wait_location(&r.header("location").unwrap()).await;
    let r = c.ok("DELETE", &q(&zone, PDNS), None).await;
    c.wait_location(&r.header("location").unwrap()).await;
    assert_eq!(c.call("GET", &q(&zone, PDNS), None).await.status, 404);
    fake.shutdown().await;
}
