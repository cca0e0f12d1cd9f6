//! MySQL Flexible Server on the fake: names, VNet integration rules, the Location
//! LRO, secrets, databases and server parameters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use gitpod_refarch_fake_azure::FakeConfig;
use serde_json::{json, Value};

const PASSWORD: &str = "Sup3r-Secret-Pw!";

fn server_path(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.DBforMySQL/flexibleServers/{name}",
        rg_path("rg-a")
    )
}

fn server_body(subnet: &str, zone: &str) -> Value {
    json!({"location": "westeurope", "sku": {"name": "Standard_D2ds_v4", "tier": "GeneralPurpose"},
        "properties": {"administratorLogin": "gitpod", "administratorLoginPassword": PASSWORD, "version": "8.0.21",
            "storage": {"storageSizeGB": 32}, "network": {"delegatedSubnetResourceId": subnet, "privateDnsZoneResourceId": zone}}})
}

/// RG, VNet with a plain and a delegated subnet, and two private zones.
async fn network(c: &Client) -> (String, String, String, String) {
    c.rg("rg-a").await;
    let vnet = format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet-a",
        rg_path("rg-a")
    );
    c.put_done(&q(&vnet, NET), json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.2.0.0/16"]}, "subnets": [
        {"name": "nodes", "properties": {"addressPrefix": "10.2.0.0/20"}},
        {"name": "mysql", "properties": {"addressPrefix": "10.2.16.0/24", "delegations": [{"name": "mysql", "properties": {"serviceName": "Microsoft.DBforMySQL/flexibleServers"}}]}}]}})).await;
    let zone = |n: &str| {
        format!(
            "{}/providers/Microsoft.Network/privateDnsZones/{n}",
            rg_path("rg-a")
        )
    };
    let good = zone("a.private.mysql.database.azure.com");
    let bad = zone("mysql-a.mysql.database.azure.com");
    for z in [&good, &bad] {
        c.put_done(&q(z, PDNS), json!({"location": "global"})).await;
    }
    (
        format!("{vnet}/subnets/nodes"),
        format!("{vnet}/subnets/mysql"),
        good,
        bad,
    )
}

#[tokio::test]
async fn servers_check_names_network_and_never_return_the_password() {
    let config = FakeConfig::default()
        .with_providers_registered(true)
        .with_polls_to_finish(2)
        .with_taken_server_names(["taken"]);
    let (fake, c) = start(config).await;
    let (nodes, delegated, zone, bad_zone) = network(&c).await;
    for path in [
        format!("/subscriptions/{SUB}/providers/Microsoft.DBforMySQL/locations/westeurope/checkNameAvailability"),
        format!("/subscriptions/{SUB}/providers/Microsoft.DBforMySQL/checkNameAvailability"),
    ] {
        let r = c.ok("POST", &q(&path, MYSQL), Some(json!({"name": "taken", "type": "Microsoft.DBforMySQL/flexibleServers"}))).await;
        assert_eq!(r.body["nameAvailable"], false);
        assert_eq!(r.body["message"], "Specified server name is already used.");
        let r = c.ok("POST", &q(&path, MYSQL), Some(json!({"name": "mysql-a", "type": "Microsoft.DBforMySQL/flexibleServers"}))).await;
        assert_eq!(r.body["nameAvailable"], true);
    }
    let server = q(&server_path("mysql-a"), MYSQL);
    let r = c
        .call(
            "PUT",
            &q(&server_path("taken"), MYSQL),
            Some(server_body(&delegated, &zone)),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "NameAlreadyExists"));
    let r = c
        .call("PUT", &server, Some(server_body(&nodes, &zone)))
        .await;
    assert_eq!((r.status, r.code()), (400, "SubnetNotDelegated"));
    let r = c
        .call("PUT", &server, Some(server_body(&delegated, &bad_zone)))
        .await;
    assert_eq!((r.status, r.code()), (400, "PrivateDnsZoneNameNotValid"));
    let mut burst = server_body(&delegated, &zone);
    burst["sku"] = json!({"name": "Standard_B1ms", "tier": "Burstable"});
    burst["properties"]["highAvailability"] = json!({"mode": "ZoneRedundant"});
    assert_eq!(c.call("PUT", &server, Some(burst)).await.status, 400);
    let mut weak = server_body(&delegated, &zone);
    weak["properties"]["administratorLoginPassword"] = json!("short");
    assert_eq!(c.call("PUT", &server, Some(weak)).await.status, 400);

    // Create: 202 + Location; the result URL answers the server.
    let r = c
        .ok("PUT", &server, Some(server_body(&delegated, &zone)))
        .await;
    assert_eq!(r.status, 202);
    assert!(r.header("azure-asyncoperation").is_none());
    assert!(r.header("retry-after").is_some());
    let loc = r.header("location").unwrap();
    let busy = c
        .call(
            "PUT",
            &q(
                &format!("{}/databases/gitpod", server_path("mysql-a")),
                MYSQL,
            ),
            Some(json!({"properties": {}})),
        )
        .await;
    assert_eq!(busy.status, 409);
    assert_eq!(c.call("GET", &loc, None).await.status, 202);
    let done = c.wait_location(&loc).await;
    assert_eq!(done.status, 200);
    let s = &done.body;
    assert_eq!(s["properties"]["state"], "Ready");
    assert!(s["properties"].get("provisioningState").is_none());
    assert_eq!(
        s["properties"]["fullyQualifiedDomainName"],
        "mysql-a.mysql.database.azure.com"
    );
    assert_eq!(
        s["properties"]["network"]["publicNetworkAccess"],
        "Disabled"
    );
    // The password is in no answer and in no record.
    let got = c.get(&server).await;
    assert!(!got.to_string().contains(PASSWORD));
    assert!(got["properties"]
        .get("administratorLoginPassword")
        .is_none());
    assert!(fake
        .calls()
        .iter()
        .all(|k| !format!("{:?}{}", k.request_body, k.response_body).contains(PASSWORD)));
    assert!(!format!("{:?}", fake.resources()).contains(PASSWORD));
    // The name is now taken everywhere.
    let check = q(
        &format!("/subscriptions/{SUB}/providers/Microsoft.DBforMySQL/checkNameAvailability"),
        MYSQL,
    );
    assert_eq!(
        c.ok("POST", &check, Some(json!({"name": "mysql-a"})))
            .await
            .body["nameAvailable"],
        false
    );
    // Network mode is immutable; firewall rules need public access.
    let mut public = server_body("", "");
    public["properties"]["network"] =
        json!({"delegatedSubnetResourceId": "", "publicNetworkAccess": "Enabled"});
    assert_eq!(c.call("PUT", &server, Some(public)).await.status, 400);
    let fw = q(
        &format!("{}/firewallRules/all", server_path("mysql-a")),
        MYSQL,
    );
    assert_eq!(
        c.call(
            "PUT",
            &fw,
            Some(json!({"properties": {"startIpAddress": "0.0.0.0", "endIpAddress": "0.0.0.0"}}))
        )
        .await
        .status,
        400
    );

    // Delete: both headers, children go too.
    let r = c.ok("DELETE", &server, None).await;
    assert!(r.header("azure-asyncoperation").is_some() && r.header("location").is_some());
    assert_eq!(
        c.wait_location(&r.header("location").unwrap()).await.status,
        204
    );
    assert_eq!(c.call("GET", &server, None).await.status, 404);
    fake.shutdown().await;
}

#[tokio::test]
async fn databases_and_server_parameters() {
    let (fake, c) = ready().await;
    let (_, delegated, zone, _) = network(&c).await;
    let server = server_path("mysql-a");
    c.put_done(&q(&server, MYSQL), server_body(&delegated, &zone))
        .await;

    let db = q(&format!("{server}/databases/gitpod"), MYSQL);
    let r = c
        .call(
            "PUT",
            &db,
            Some(json!({"properties": {"charset": "utf8mb4", "collation": "latin1_swedish_ci"}})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .put_done(
            &db,
            json!({"properties": {"charset": "utf8mb4", "collation": "utf8mb4_0900_ai_ci"}}),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        c.get(&db).await["properties"]["collation"],
        "utf8mb4_0900_ai_ci"
    );

    let cfg = |n: &str| q(&format!("{server}/configurations/{n}"), MYSQL);
    let edft = c.get(&cfg("explicit_defaults_for_timestamp")).await;
    assert_eq!(edft["properties"]["value"], "ON");
    assert_eq!(edft["properties"]["defaultValue"], "ON");
    assert_eq!(edft["properties"]["source"], "system-default");
    assert_eq!(
        c.get(&cfg("require_secure_transport")).await["properties"]["value"],
        "ON"
    );
    let r = c.call("GET", &cfg("no_such_parameter"), None).await;
    assert_eq!(r.status, 404);
    let r = c
        .call(
            "PUT",
            &cfg("explicit_defaults_for_timestamp"),
            Some(json!({"properties": {"value": "MAYBE", "source": "user-override"}})),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "InvalidParameterValue"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ON,OFF"));
    let r = c
        .ok(
            "PUT",
            &cfg("explicit_defaults_for_timestamp"),
            Some(json!({"properties": {"value": "OFF", "source": "user-override"}})),
        )
        .await;
    assert_eq!(r.status, 202);
    let done = c.wait_location(&r.header("location").unwrap()).await;
    assert_eq!(done.body["properties"]["value"], "OFF");
    assert_eq!(done.body["properties"]["source"], "user-override");
    assert_eq!(
        c.get(&cfg("explicit_defaults_for_timestamp")).await["properties"]["value"],
        "OFF"
    );
    assert_eq!(
        c.call(
            "PUT",
            &cfg("lower_case_table_names"),
            Some(json!({"properties": {"value": "2"}}))
        )
        .await
        .status,
        400
    );
    let all = c.get(&q(&format!("{server}/configurations"), MYSQL)).await;
    assert!(all["value"].as_array().unwrap().len() >= 10);

    // 5.7 defaults differ.
    let mut old = server_body(&delegated, &zone);
    old["properties"]["version"] = json!("5.7");
    c.put_done(&q(&server_path("mysql-b"), MYSQL), old).await;
    let v57 = c
        .get(&q(
            &format!(
                "{}/configurations/explicit_defaults_for_timestamp",
                server_path("mysql-b")
            ),
            MYSQL,
        ))
        .await;
    assert_eq!(v57["properties"]["value"], "OFF");
    fake.shutdown().await;
}

/// A client killed right after a configuration write never polls its operation URL;
/// reading the server (as a resumed client does) finishes the operation holding the
/// server's lock, as Azure finishes it by itself, so the next write goes through.
#[tokio::test]
async fn reading_the_server_finishes_the_operation_that_locks_it() {
    let (fake, c) = ready().await;
    let (_, delegated, zone, _) = network(&c).await;
    let server = server_path("mysql-a");
    c.put_done(&q(&server, MYSQL), server_body(&delegated, &zone))
        .await;
    fake.set_polls_to_finish(3);
    let r = c
        .ok(
            "PUT",
            &q(
                &format!("{server}/configurations/explicit_defaults_for_timestamp"),
                MYSQL,
            ),
            Some(json!({"properties": {"value": "OFF", "source": "user-override"}})),
        )
        .await;
    assert_eq!(r.status, 202);
    // The operation URL is lost with the process. The server is locked meanwhile.
    let db = q(&format!("{server}/databases/gitpod"), MYSQL);
    let body = json!({"properties": {"charset": "utf8mb4", "collation": "utf8mb4_0900_ai_ci"}});
    let busy = c.call("PUT", &db, Some(body.clone())).await;
    assert_eq!(busy.status, 409, "{}", busy.body);
    // Reading something else does not move it.
    for _ in 0..3 {
        c.get(&q(&rg_path("rg-a"), RES)).await;
    }
    assert_eq!(c.call("PUT", &db, Some(body.clone())).await.status, 409);
    // Reading the server does: the third read finishes it.
    for _ in 0..2 {
        c.get(&q(&server, MYSQL)).await;
    }
    assert_eq!(c.call("PUT", &db, Some(body.clone())).await.status, 409);
    c.get(&q(&server, MYSQL)).await;
    assert_eq!(c.call("PUT", &db, Some(body)).await.status, 202);
    assert_eq!(
        c.get(&q(
            &format!("{server}/configurations/explicit_defaults_for_timestamp"),
            MYSQL
        ))
        .await["properties"]["value"],
        "OFF"
    );
    fake.shutdown().await;
}
