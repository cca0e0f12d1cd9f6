//! The fake's ARM plumbing: tokens, api-versions, registration, resource groups,
//! VNets, faults, freezing, timing and the call record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use gitpod_refarch_fake_azure::{
    CallKind, FakeAzure, FakeConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT,
};
use serde_json::{json, Value};

async fn token(c: &Client, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('/', "%2F").replace(':', "%3A")))
        .collect::<Vec<_>>()
        .join("&");
    let r = c
        .http
        .post(format!("{}/{tenant}/oauth2/v2.0/token", c.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn the_token_endpoint_issues_jwt_shaped_tokens_that_arm_accepts() {
    let (fake, mut c) = start(FakeConfig::default()).await;
    let form = |secret: &'static str, scope: &'static str| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", secret),
            ("scope", scope),
        ]
    };
    let (status, body) = token(
        &c,
        DEFAULT_TENANT,
        &form(
            DEFAULT_CLIENT_SECRET,
            "https://management.azure.com/.default",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 3000);
    let access = body["access_token"].as_str().unwrap().to_string();
    let parts: Vec<&str> = access.split('.').collect();
    assert_eq!(parts.len(), 3);
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        payload["oid"],
        FakeAzure::client_object_id(DEFAULT_CLIENT_ID)
    );
    assert_eq!(payload["tid"], DEFAULT_TENANT);
    assert_eq!(payload["appid"], DEFAULT_CLIENT_ID);
    assert_eq!(payload["aud"], "https://management.azure.com");
    assert!(payload["exp"].as_u64().unwrap() > payload["iat"].as_u64().unwrap());

    // Wrong secret: Entra's 401 invalid_client; unknown tenant: 400.
    let (status, body) = token(
        &c,
        DEFAULT_TENANT,
        &form("nope", "https://management.azure.com/.default"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("AADSTS7000215"));
    let (status, _) = token(
        &c,
        "other-tenant",
        &form(
            DEFAULT_CLIENT_SECRET,
            "https://management.azure.com/.default",
        ),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = token(
        &c,
        DEFAULT_TENANT,
        &form(DEFAULT_CLIENT_SECRET, "https://management.azure.com"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );

    // The secret never reaches the call record.
    let recorded = fake.calls();
    assert_eq!(recorded[0].kind, CallKind::Token);
    assert_eq!(
        recorded[0].request_body.as_ref().unwrap()["client_secret"],
        "<redacted>"
    );
    assert_eq!(recorded[0].response_body["access_token"], "<redacted>");

    // ARM with the issued token, without one, with a forged one, with a wrong audience.
    c.token = Some(access);
    let providers = format!("/subscriptions/{SUB}/providers?api-version={RES}");
    c.ok("GET", &providers, None).await;
    c.token = None;
    let r = c.call("GET", &providers, None).await;
    assert_eq!((r.status, r.code()), (401, "AuthenticationFailed"));
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    c.token = Some("a.b.c".into());
    let r = c.call("GET", &providers, None).await;
    assert_eq!((r.status, r.code()), (401, "InvalidAuthenticationToken"));
    let (_, aks) = token(
        &c,
        DEFAULT_TENANT,
        &form(
            DEFAULT_CLIENT_SECRET,
            "6dae42f8-4368-4678-94ff-3960e28e3630/.default",
        ),
    )
    .await;
    c.token = Some(aks["access_token"].as_str().unwrap().to_string());
    let r = c.call("GET", &providers, None).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "InvalidAuthenticationTokenAudience")
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn only_the_pinned_api_version_is_served() {
    let (fake, c) = ready().await;
    let rg = rg_path("rg-a");
    let r = c
        .call("PUT", &rg, Some(json!({"location": "westeurope"})))
        .await;
    assert_eq!((r.status, r.code()), (400, "MissingApiVersionParameter"));
    let r = c
        .call(
            "PUT",
            &q(&rg, "2021-04-01"),
            Some(json!({"location": "westeurope"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "InvalidApiVersionParameter"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2025-04-01"));
    assert_eq!(r.body["error"].as_object().unwrap().len(), 2, "{}", r.body);
    // The network api-version is not the DNS one.
    c.rg("rg-a").await;
    let zone = format!("{rg}/providers/Microsoft.Network/dnsZones/example.com");
    let r = c
        .call("PUT", &q(&zone, NET), Some(json!({"location": "global"})))
        .await;
    assert_eq!((r.status, r.code()), (400, "InvalidApiVersionParameter"));
    c.ok("PUT", &q(&zone, DNS), Some(json!({"location": "global"})))
        .await;
    fake.shutdown().await;
}

#[tokio::test]
async fn namespaces_start_unregistered_and_register_over_reads() {
    let (fake, c) = start(FakeConfig::default().with_registration_reads(2)).await;
    c.rg("rg-a").await;
    let vnet = q(
        &format!(
            "{}/providers/Microsoft.Network/virtualNetworks/vnet-a",
            rg_path("rg-a")
        ),
        NET,
    );
    let body = json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.2.0.0/16"]}}});
    let r = c.call("PUT", &vnet, Some(body.clone())).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "MissingSubscriptionRegistration")
    );
    let provider = format!("/subscriptions/{SUB}/providers/Microsoft.Network");
    assert_eq!(
        c.get(&q(&provider, RES)).await["registrationState"],
        "NotRegistered"
    );
    let reg = c
        .ok("POST", &q(&format!("{provider}/register"), RES), None)
        .await;
    assert_eq!(reg.body["registrationState"], "Registering");
    assert_eq!(
        c.get(&q(&provider, RES)).await["registrationState"],
        "Registering"
    );
    let r = c.call("PUT", &vnet, Some(body.clone())).await;
    assert_eq!(r.code(), "MissingSubscriptionRegistration");
    assert_eq!(
        c.get(&q(&provider, RES)).await["registrationState"],
        "Registered"
    );
    c.ok("PUT", &vnet, Some(body)).await;
    assert_eq!(
        fake.registration_state(SUB, "microsoft.network"),
        "Registered"
    );
    assert_eq!(
        fake.registration_state(SUB, "Microsoft.Authorization"),
        "Registered"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn a_resource_group_delete_is_a_location_lro_that_removes_everything() {
    let (fake, c) = start(
        FakeConfig::default()
            .with_providers_registered(true)
            .with_retry_after_secs(3),
    )
    .await;
    let rg = rg_path("rg-a");
    let r = c
        .ok(
            "PUT",
            &q(&rg, RES),
            Some(json!({"location": "West Europe", "tags": {"k": "v"}})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["location"], "westeurope");
    assert_eq!(r.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        c.ok("PUT", &q(&rg, RES), Some(json!({"location": "westeurope"})))
            .await
            .status,
        200
    );
    let r = c
        .call("PUT", &q(&rg, RES), Some(json!({"location": "eastus"})))
        .await;
    assert_eq!((r.status, r.code()), (409, "InvalidResourceGroupLocation"));
    let lower = format!("/subscriptions/{SUB}/resourcegroups/rg-a");
    assert_eq!(c.call("HEAD", &q(&lower, RES), None).await.status, 204);
    assert_eq!(
        c.call("HEAD", &q(&rg_path("none"), RES), None).await.status,
        404
    );
    let r = c.call("GET", &q(&rg_path("none"), RES), None).await;
    assert_eq!((r.status, r.code()), (404, "ResourceGroupNotFound"));
    let id = format!("{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-a");
    c.ok("PUT", &q(&id, MSI), Some(json!({"location": "westeurope"})))
        .await;

    let r = c.ok("DELETE", &q(&rg, RES), None).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("retry-after").as_deref(), Some("3"));
    assert!(r.header("azure-asyncoperation").is_none());
    let loc = r.header("location").unwrap();
    // Writes into a group being deleted are refused.
    let r2 = c
        .call("PUT", &q(&id, MSI), Some(json!({"location": "westeurope"})))
        .await;
    assert_eq!((r2.status, r2.code()), (409, "ResourceGroupBeingDeleted"));
    let first = c.call("GET", &loc, None).await;
    assert_eq!(first.status, 202);
    assert!(first.header("location").is_some());
    let done = c.wait_location(&loc).await;
    assert_eq!(done.status, 204);
    assert_eq!(c.call("GET", &q(&rg, RES), None).await.status, 404);
    assert!(fake.resources().is_empty(), "{:?}", fake.resources().keys());
    fake.shutdown().await;
}

fn vnet_body(subnets: Value) -> Value {
    json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.2.0.0/16"]}, "subnets": subnets}})
}

fn subnets() -> Value {
    json!([
        {"name": "nodes", "properties": {"addressPrefix": "10.2.0.0/20"}},
        {"name": "mysql", "properties": {"addressPrefix": "10.2.16.0/24", "delegations": [
            {"name": "mysql", "properties": {"serviceName": "Microsoft.DBforMySQL/flexibleServers"}}]}},
    ])
}

#[tokio::test]
async fn vnets_refuse_to_drop_subnets_in_use_and_lock_while_updating() {
    let (fake, c) = start(
        FakeConfig::default()
            .with_providers_registered(true)
            .with_polls_to_finish(2),
    )
    .await;
    c.rg("rg-a").await;
    let vnet_id = format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet-a",
        rg_path("rg-a")
    );
    let r = c
        .ok("PUT", &q(&vnet_id, NET), Some(vnet_body(subnets())))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["properties"]["provisioningState"], "Updating");
    assert_eq!(
        r.body["properties"]["subnets"][1]["properties"]["delegations"][0]["properties"]["actions"]
            [0],
        "Microsoft.Network/virtualNetworks/subnets/join/action"
    );
    assert!(r.header("retry-after").is_some());
    let op = r.header("azure-asyncoperation").unwrap();
    // One operation at a time per VNet.
    let busy = c
        .call("PUT", &q(&vnet_id, NET), Some(vnet_body(subnets())))
        .await;
    assert_eq!(
        (busy.status, busy.code()),
        (409, "AnotherOperationInProgress")
    );
    assert_eq!(c.get(&op).await["status"], "InProgress");
    assert_eq!(c.get(&op).await["status"], "Succeeded");
    let got = c.get(&q(&vnet_id, NET)).await;
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
    assert_eq!(got["properties"]["subnets"].as_array().unwrap().len(), 2);

    // Address checks.
    let outside = json!([{"name": "x", "properties": {"addressPrefix": "10.3.0.0/24"}}]);
    let r = c
        .call("PUT", &q(&vnet_id, NET), Some(vnet_body(outside)))
        .await;
    assert_eq!((r.status, r.code()), (400, "NetcfgSubnetRangeOutsideVnet"));
    let overlap = json!([{"name": "x", "properties": {"addressPrefix": "10.2.0.0/24"}}, {"name": "y", "properties": {"addressPrefix": "10.2.0.0/16"}}]);
    let r = c
        .call("PUT", &q(&vnet_id, NET), Some(vnet_body(overlap)))
        .await;
    assert_eq!((r.status, r.code()), (400, "NetcfgSubnetRangesOverlap"));

    // An AKS pool puts the nodes subnet in use.
    let nodes = format!("{vnet_id}/subnets/nodes");
    let cluster = format!(
        "{}/providers/Microsoft.ContainerService/managedClusters/aks-a",
        rg_path("rg-a")
    );
    c.put_done(&q(&cluster, AKS), json!({"location": "westeurope", "properties": {"dnsPrefix": "a",
        "agentPoolProfiles": [{"name": "services", "mode": "System", "count": 1, "vmSize": "Standard_D4_v4", "vnetSubnetID": nodes}]}})).await;
    let only_mysql = json!([subnets()[1].clone()]);
    let r = c
        .call("PUT", &q(&vnet_id, NET), Some(vnet_body(only_mysql)))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "InUseSubnetCannotBeDeleted"),
        "{}",
        r.body
    );
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("agentPools/services"));
    let r = c.call("DELETE", &q(&nodes, NET), None).await;
    assert_eq!((r.status, r.code()), (400, "InUseSubnetCannotBeDeleted"));
    let r = c.call("DELETE", &q(&vnet_id, NET), None).await;
    assert_eq!((r.status, r.code()), (400, "InUseSubnetCannotBeDeleted"));
    // An AKS pool may not use a delegated subnet.
    let pool = format!("{cluster}/agentPools/regularws");
    let r = c
        .call(
            "PUT",
            &q(&pool, AKS),
            Some(json!({"properties": {"vnetSubnetID": format!("{vnet_id}/subnets/mysql")}})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // The full list again is fine; the subnet API deletes an unused subnet (both headers).
    c.put_done(&q(&vnet_id, NET), vnet_body(subnets())).await;
    let r = c
        .ok("DELETE", &q(&format!("{vnet_id}/subnets/mysql"), NET), None)
        .await;
    assert_eq!(r.status, 202);
    assert!(r.header("location").is_some() && r.header("azure-asyncoperation").is_some());
    c.wait_location(&r.header("location").unwrap()).await;
    assert_eq!(
        c.call("GET", &q(&format!("{vnet_id}/subnets/mysql"), NET), None)
            .await
            .status,
        404
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn faults_come_before_any_effect_and_throttling_has_retry_after() {
    let (fake, c) = start(
        FakeConfig::default()
            .with_providers_registered(true)
            .with_fault_rate(1.0)
            .with_seed(7),
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..30 {
        let r = c
            .call(
                "PUT",
                &q(&rg_path(&format!("rg-{i}")), RES),
                Some(json!({"location": "westeurope"})),
            )
            .await;
        assert!(matches!(r.status, 429 | 500 | 503), "{}", r.status);
        if r.status == 429 {
            assert_eq!(r.code(), "TooManyRequests");
            assert_eq!(r.header("retry-after").as_deref(), Some("1"));
        }
        seen.insert(r.status);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(fake.resources().is_empty());
    assert_eq!(fake.counts().faults, 30);
    assert!(fake.calls().iter().all(|c| c.fault));
    fake.set_fault_rate(0.0);
    c.rg("rg-ok").await;
    assert_eq!(fake.resources().len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_frozen_fake_hangs_like_a_killed_process() {
    let (fake, c) = ready().await;
    fake.freeze_after_mutating(1);
    c.rg("rg-a").await;
    let get = q(&rg_path("rg-a"), RES);
    let pending = tokio::time::timeout(Duration::from_millis(200), c.call("GET", &get, None)).await;
    assert!(pending.is_err(), "a frozen fake answered");
    let calls_before = fake.calls().len();
    let hung = tokio::spawn({
        let url = format!("{}{get}", c.base);
        let token = c.token.clone().unwrap();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.unfreeze();
    assert_eq!(hung.await.unwrap(), 503);
    assert_eq!(fake.calls().len(), calls_before);
    assert_eq!(c.get(&get).await["name"], "rg-a");
    fake.shutdown().await;
}

#[tokio::test]
async fn a_time_scale_finishes_operations_by_wall_time() {
    // AKS create is 360 s: at 0.0005 that is 180 ms.
    let (fake, c) = start(
        FakeConfig::default()
            .with_providers_registered(true)
            .with_time_scale(Some(0.0005)),
    )
    .await;
    c.rg("rg-a").await;
    let cluster = q(
        &format!(
            "{}/providers/Microsoft.ContainerService/managedClusters/aks-a",
            rg_path("rg-a")
        ),
        AKS,
    );
    let r = c.ok("PUT", &cluster, Some(json!({"location": "westeurope", "properties": {"agentPoolProfiles": [{"name": "services", "count": 1}]}}))).await;
    let op = r.header("azure-asyncoperation").unwrap();
    for _ in 0..5 {
        assert_eq!(c.get(&op).await["status"], "InProgress");
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        c.get(&cluster).await["properties"]["provisioningState"],
        "Succeeded"
    );
    assert_eq!(c.get(&op).await["status"], "Succeeded");
    fake.shutdown().await;
}

#[tokio::test]
async fn calls_are_recorded_with_bodies_headers_and_counts() {
    let (fake, c) = ready().await;
    c.rg("rg-a").await;
    let vnet_id = format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet-a",
        rg_path("rg-a")
    );
    c.put_done(&q(&vnet_id, NET), vnet_body(subnets())).await;
    c.get(&q(&vnet_id, NET)).await;
    let calls = fake.calls();
    let put = calls
        .iter()
        .find(|k| k.http_method == "PUT" && k.resource_type == "Microsoft.Network/virtualNetworks")
        .unwrap();
    assert_eq!(put.api_version.as_deref(), Some(NET));
    assert_eq!(put.status, 201);
    assert_eq!(
        put.request_body.as_ref().unwrap()["properties"]["subnets"][0]["name"],
        "nodes"
    );
    assert_eq!(
        put.response_body["properties"]["subnets"][0]["name"],
        "nodes"
    );
    assert!(put
        .response_headers
        .iter()
        .any(|(k, _)| k == "Azure-AsyncOperation"));
    let counts = fake.counts();
    assert_eq!(counts.mutating, 2);
    assert_eq!(counts.polls, 1);
    assert_eq!(
        counts.per_type["Microsoft.Network/virtualNetworks"].reads,
        1
    );
    assert_eq!(
        counts.per_type["Microsoft.Network/virtualNetworks"].mutating,
        1
    );
    assert_eq!(
        counts.per_type["Microsoft.Resources/resourceGroups"].mutating,
        1
    );
    let listed = c
        .get(&q(&format!("{}/resources", rg_path("rg-a")), RES))
        .await;
    assert_eq!(listed["value"].as_array().unwrap().len(), 1, "{listed}");
    fake.reset_calls();
    assert!(fake.calls().is_empty());
    assert_eq!(fake.counts().mutating, 0);
    fake.shutdown().await;
}
