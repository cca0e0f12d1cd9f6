//! Drives every method of the fake over HTTP, then validates every recorded call
//! against Google's discovery documents (path, verb, query, request and response).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::Client;
use gitpod_refarch_fake_gcp::discovery::{validate_call, Discovery};
use gitpod_refarch_fake_gcp::{FakeConfig, FakeGcp, METHODS};
use serde_json::{json, Value};

fn compute_path(op: &Value) -> String {
    op["selfLink"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://www.googleapis.com")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_matches_its_discovery_document() {
    let discovery = match Discovery::load_default() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let fake = FakeGcp::start(FakeConfig::default()).await.unwrap();
    let c = Client::new(fake.url());

    // Resource Manager
    c.get("/v3/projects/p").await;
    assert_eq!(c.call("GET", "/v3/projects/nope", None).await.0, 403);
    let op = c
        .ok(
            "POST",
            "/v3/projects",
            Some(json!({"projectId": "proj-new", "displayName": "New"})),
        )
        .await;
    let done = c
        .wait(&format!("/v3/{}", op["name"].as_str().unwrap()))
        .await;
    assert_eq!(done["response"]["projectId"], "proj-new");
    assert_eq!(
        c.call(
            "POST",
            "/v3/projects",
            Some(json!({"projectId": "proj-new"}))
        )
        .await
        .0,
        409
    );
    c.get("/v3/projects/proj-new").await;
    let policy = c
        .ok(
            "POST",
            "/v3/projects/p:getIamPolicy",
            Some(json!({"options": {"requestedPolicyVersion": 3}})),
        )
        .await;
    let mut next = policy.clone();
    next["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "roles/viewer", "members": ["user:a@example.com"]}));
    c.ok(
        "POST",
        "/v3/projects/p:setIamPolicy",
        Some(json!({"policy": next})),
    )
    .await;
    let (status, _) = c
        .call(
            "POST",
            "/v3/projects/p:setIamPolicy",
            Some(json!({"policy": next})),
        )
        .await;
    assert_eq!(status, 409);

    // Billing
    c.get("/v1/projects/proj-new/billingInfo").await;
    let b = c
        .ok(
            "PUT",
            "/v1/projects/proj-new/billingInfo",
            Some(json!({"billingAccountName": "billingAccounts/0X0X0X-0X0X0X-0X0X0X"})),
        )
        .await;
    assert_eq!(b["billingEnabled"], true);

    // Service Usage
    let op = c
        .ok(
            "POST",
            "/v1/projects/p/services:batchEnable",
            Some(json!({"serviceIds": ["container.googleapis.com", "sqladmin.googleapis.com"]})),
        )
        .await;
    c.wait(&format!("/v1/{}", op["name"].as_str().unwrap()))
        .await;
    let got = c
        .get("/v1/projects/p/services:batchGet?names=projects/p/services/container.googleapis.com&names=projects/p/services/dns.googleapis.com")
        .await;
    assert_eq!(got["services"][0]["state"], "ENABLED");
    assert_eq!(got["services"][1]["state"], "DISABLED");
    c.get("/v1/projects/p/services/container.googleapis.com")
        .await;
    let list = c.get("/v1/projects/p/services?filter=state:ENABLED").await;
    assert_eq!(list["services"].as_array().unwrap().len(), 2);

    // IAM
    let sa = c
        .ok(
            "POST",
            "/v1/projects/p/serviceAccounts",
            Some(json!({"accountId": "gitpod-dns", "serviceAccount": {"displayName": "DNS"}})),
        )
        .await;
    let email = sa["email"].as_str().unwrap().to_string();
    assert_eq!(
        c.call(
            "POST",
            "/v1/projects/p/serviceAccounts",
            Some(json!({"accountId": "gitpod-dns"}))
        )
        .await
        .0,
        409
    );
    c.get(&format!("/v1/projects/p/serviceAccounts/{email}"))
        .await;
    c.get(&format!(
        "/v1/projects/-/serviceAccounts/{}",
        sa["uniqueId"].as_str().unwrap()
    ))
    .await;
    c.get("/v1/projects/p/serviceAccounts").await;
    let key = c
        .ok(
            "POST",
            &format!("/v1/projects/p/serviceAccounts/{email}/keys"),
            Some(json!({"privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE"})),
        )
        .await;
    c.get(&format!(
        "/v1/projects/p/serviceAccounts/{email}/keys?keyTypes=USER_MANAGED"
    ))
    .await;
    let key_id = key["name"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    c.ok(
        "DELETE",
        &format!("/v1/projects/p/serviceAccounts/{email}/keys/{key_id}"),
        None,
    )
    .await;
    assert_eq!(
        c.call(
            "GET",
            "/v1/projects/p/serviceAccounts/missing@p.iam.gserviceaccount.com",
            None
        )
        .await
        .0,
        404
    );
    // The account's own policy, as google-cloud-iam-admin-v1 sends it: POST with an
    // empty body and the options as query parameters; then a Workload Identity binding.
    let sa_path = format!("/v1/projects/p/serviceAccounts/{email}");
    let policy = c
        .ok(
            "POST",
            &format!("{sa_path}:getIamPolicy?options.requestedPolicyVersion=3"),
            Some(json!({})),
        )
        .await;
    // (The Workload Identity pool exists once a GKE cluster with it does.)
    c.ok(
        "POST",
        "/v1/projects/p/locations/europe-west1/clusters",
        Some(json!({"cluster": {"name": "wi", "initialNodeCount": 1,
            "workloadIdentityConfig": {"workloadPool": "p.svc.id.goog"}}})),
    )
    .await;
    let wi = json!({"policy": {
        "etag": policy["etag"],
        "bindings": [{
            "role": "roles/iam.workloadIdentityUser",
            "members": ["serviceAccount:p.svc.id.goog[gitpod/ws-manager]"],
        }],
    }});
    c.ok("POST", &format!("{sa_path}:setIamPolicy"), Some(wi.clone()))
        .await;
    assert_eq!(
        c.call("POST", &format!("{sa_path}:setIamPolicy"), Some(wi))
            .await
            .0,
        409
    );
    c.ok(
        "POST",
        &format!("{sa_path}:setIamPolicy"),
        Some(json!({"policy": {"bindings": []}, "updateMask": "bindings,etag"})),
    )
    .await;
    assert_eq!(
        c.call(
            "POST",
            "/v1/projects/p/serviceAccounts/missing@p.iam.gserviceaccount.com:getIamPolicy",
            Some(json!({}))
        )
        .await
        .0,
        404
    );
    c.ok(
        "DELETE",
        &format!("/v1/projects/p/serviceAccounts/{email}"),
        None,
    )
    .await;

    // Compute
    let op = c
        .ok("POST", "/compute/v1/projects/p/global/networks", Some(json!({"name": "vpc", "autoCreateSubnetworks": false, "routingConfig": {"routingMode": "REGIONAL"}})))
        .await;
    c.get(&compute_path(&op)).await;
    c.ok("POST", &format!("{}/wait", compute_path(&op)), None)
        .await;
    c.get("/compute/v1/projects/p/global/networks/vpc").await;
    c.get("/compute/v1/projects/p/global/networks").await;
    let op = c
        .ok(
            "POST",
            "/compute/v1/projects/p/regions/europe-west1/subnetworks",
            Some(json!({
                "name": "nodes",
                "network": "projects/p/global/networks/vpc",
                "ipCidrRange": "10.0.0.0/20",
                "privateIpGoogleAccess": true,
                "secondaryIpRanges": [{"rangeName": "pods", "ipCidrRange": "10.4.0.0/14"}],
            })),
        )
        .await;
    c.get(&compute_path(&op)).await;
    c.ok("POST", &format!("{}/wait", compute_path(&op)), None)
        .await;
    c.get("/compute/v1/projects/p/regions/europe-west1/subnetworks/nodes?views=DEFAULT")
        .await;
    c.get("/compute/v1/projects/p/regions/europe-west1/subnetworks")
        .await;
    let (status, body) = c
        .call("DELETE", "/compute/v1/projects/p/global/networks/vpc", None)
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["errors"][0]["reason"],
        "resourceInUseByAnotherResource"
    );
    let op = c
        .ok(
            "DELETE",
            "/compute/v1/projects/p/regions/europe-west1/subnetworks/nodes",
            None,
        )
        .await;
    c.wait(&compute_path(&op)).await;
    let op = c
        .ok("DELETE", "/compute/v1/projects/p/global/networks/vpc", None)
        .await;
    c.wait(&compute_path(&op)).await;
    assert_eq!(
        c.call("GET", "/compute/v1/projects/p/global/networks/vpc", None)
            .await
            .0,
        404
    );

    // GKE
    let base = "/v1/projects/p/locations/europe-west1";
    let op = c
        .ok(
            "POST",
            &format!("{base}/clusters"),
            Some(json!({"cluster": {
                "name": "gitpod",
                "initialClusterVersion": "1.33",
                "releaseChannel": {"channel": "REGULAR"},
                "nodePools": [{"name": "default-pool", "initialNodeCount": 1, "config": {"machineType": "e2-standard-4"}}],
            }})),
        )
        .await;
    let op_path = format!("{base}/operations/{}", op["name"].as_str().unwrap());
    let cl = c.get(&format!("{base}/clusters/gitpod")).await;
    assert_eq!(cl["status"], "PROVISIONING");
    let (status, body) = c
        .call(
            "POST",
            &format!("{base}/clusters/gitpod/nodePools"),
            Some(json!({"nodePool": {"name": "services", "initialNodeCount": 1}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    c.wait(&op_path).await;
    c.get(&format!("{base}/clusters")).await;
    let wait_gke = |op: Value| format!("{base}/operations/{}", op["name"].as_str().unwrap());
    let op = c
        .ok(
            "POST",
            &format!("{base}/clusters/gitpod/nodePools"),
            Some(json!({"nodePool": {"name": "services", "initialNodeCount": 1, "config": {"machineType": "n2d-standard-4", "labels": {"gitpod.io/workload_meta": "true"}}}})),
        )
        .await;
    c.wait(&wait_gke(op)).await;
    c.get(&format!("{base}/clusters/gitpod/nodePools/services"))
        .await;
    c.get(&format!("{base}/clusters/gitpod/nodePools")).await;
    let pool = format!("{base}/clusters/gitpod/nodePools/services");
    let op = c.ok("PUT", &pool, Some(json!({"nodeVersion": "latest", "imageType": "UBUNTU_CONTAINERD", "diskSizeGb": "200"}))).await;
    c.wait(&wait_gke(op)).await;
    let op = c
        .ok(
            "POST",
            &format!("{pool}:setAutoscaling"),
            Some(json!({"autoscaling": {"enabled": true, "minNodeCount": 1, "maxNodeCount": 3}})),
        )
        .await;
    c.wait(&wait_gke(op)).await;
    let op = c
        .ok(
            "POST",
            &format!("{pool}:setManagement"),
            Some(json!({"management": {"autoRepair": true, "autoUpgrade": true}})),
        )
        .await;
    c.wait(&wait_gke(op)).await;
    let op = c
        .ok(
            "POST",
            &format!("{pool}:setSize"),
            Some(json!({"nodeCount": 2})),
        )
        .await;
    c.wait(&wait_gke(op)).await;
    let op = c
        .ok(
            "PUT",
            &format!("{base}/clusters/gitpod"),
            Some(json!({"update": {"desiredMasterVersion": "1.34.1-gke.1829001"}})),
        )
        .await;
    assert_eq!(op["operationType"], "UPGRADE_MASTER");
    c.wait(&wait_gke(op)).await;
    let op = c.ok("DELETE", &pool, None).await;
    c.wait(&wait_gke(op)).await;
    let op = c
        .ok("DELETE", &format!("{base}/clusters/gitpod"), None)
        .await;
    c.wait(&wait_gke(op)).await;
    assert_eq!(
        c.call("GET", &format!("{base}/clusters/gitpod"), None)
            .await
            .0,
        404
    );

    // Cloud SQL
    let sql = "/v1/projects/p/instances";
    let op = c
        .ok(
            "POST",
            sql,
            Some(json!({
                "name": "sql-x",
                "region": "europe-west1",
                "databaseVersion": "MYSQL_8_0",
                "rootPassword": "secret",
                "settings": {
                    "tier": "db-custom-2-4096",
                    "dataDiskSizeGb": "20",
                    "availabilityType": "REGIONAL",
                    "backupConfiguration": {"enabled": true, "binaryLogEnabled": true},
                    "databaseFlags": [{"name": "max_connections", "value": "500"}],
                    "userLabels": {"app": "gitpod"},
                },
            })),
        )
        .await;
    let sql_op = |op: &Value| format!("/v1/projects/p/operations/{}", op["name"].as_str().unwrap());
    let (status, _) = c
        .call(
            "POST",
            &format!("{sql}/sql-x/databases"),
            Some(json!({"name": "gitpod"})),
        )
        .await;
    assert_eq!(status, 409);
    c.wait(&sql_op(&op)).await;
    let inst = c.get(&format!("{sql}/sql-x")).await;
    assert_eq!(inst["state"], "RUNNABLE");
    assert_eq!(inst["connectionName"], "p:europe-west1:sql-x");
    c.get(sql).await;
    let op = c
        .ok(
            "PATCH",
            &format!("{sql}/sql-x"),
            Some(json!({"settings": {"dataDiskSizeGb": "30"}})),
        )
        .await;
    c.wait(&sql_op(&op)).await;
    let op = c
        .ok(
            "POST",
            &format!("{sql}/sql-x/databases"),
            Some(json!({"name": "gitpod", "charset": "utf8mb4"})),
        )
        .await;
    c.wait(&sql_op(&op)).await;
    c.get(&format!("{sql}/sql-x/databases/gitpod")).await;
    c.get(&format!("{sql}/sql-x/databases")).await;
    let op = c
        .ok(
            "POST",
            &format!("{sql}/sql-x/users"),
            Some(json!({"name": "gitpod", "password": "pw", "host": "%"})),
        )
        .await;
    c.wait(&sql_op(&op)).await;
    c.get(&format!("{sql}/sql-x/users")).await;
    c.get(&format!("{sql}/sql-x/users/gitpod?host=%25")).await;
    let op = c
        .ok(
            "PUT",
            &format!("{sql}/sql-x/users?name=gitpod&host=%25"),
            Some(json!({"name": "gitpod", "password": "pw2"})),
        )
        .await;
    c.wait(&sql_op(&op)).await;
    let op = c
        .ok(
            "DELETE",
            &format!("{sql}/sql-x/users?name=gitpod&host=%25"),
            None,
        )
        .await;
    c.wait(&sql_op(&op)).await;
    let op = c
        .ok("DELETE", &format!("{sql}/sql-x/databases/gitpod"), None)
        .await;
    c.wait(&sql_op(&op)).await;
    let op = c.ok("DELETE", &format!("{sql}/sql-x"), None).await;
    c.wait(&sql_op(&op)).await;
    let (status, body) = c
        .call("POST", sql, Some(json!({"name": "sql-x", "region": "europe-west1", "settings": {"tier": "db-f1-micro"}})))
        .await;
    assert_eq!(status, 409, "{body}");

    // Cloud DNS
    let dns = "/dns/v1/projects/p/managedZones";
    let zone = c
        .ok("POST", dns, Some(json!({"name": "gitpod", "dnsName": "gitpod.example.com.", "description": "Gitpod", "visibility": "public"})))
        .await;
    assert_eq!(zone["nameServers"].as_array().unwrap().len(), 4);
    assert_eq!(
        c.call(
            "POST",
            dns,
            Some(json!({"name": "gitpod", "dnsName": "gitpod.example.com."}))
        )
        .await
        .0,
        409
    );
    c.get(&format!("{dns}/gitpod")).await;
    c.get(&format!("{dns}?dnsName=gitpod.example.com.")).await;
    let rr =
        json!({"name": "gitpod.example.com.", "type": "A", "ttl": 300, "rrdatas": ["1.2.3.4"]});
    c.ok("POST", &format!("{dns}/gitpod/rrsets"), Some(rr.clone()))
        .await;
    assert_eq!(
        c.call("POST", &format!("{dns}/gitpod/rrsets"), Some(rr.clone()))
            .await
            .0,
        409
    );
    c.get(&format!("{dns}/gitpod/rrsets/gitpod.example.com./A"))
        .await;
    c.get(&format!(
        "{dns}/gitpod/rrsets?name=gitpod.example.com.&type=A"
    ))
    .await;
    c.ok(
        "PATCH",
        &format!("{dns}/gitpod/rrsets/gitpod.example.com./A"),
        Some(
            json!({"name": "gitpod.example.com.", "type": "A", "ttl": 60, "rrdatas": ["1.2.3.5"]}),
        ),
    )
    .await;
    let change = c
        .ok(
            "POST",
            &format!("{dns}/gitpod/changes"),
            Some(json!({"additions": [{"name": "*.gitpod.example.com.", "type": "A", "ttl": 300, "rrdatas": ["1.2.3.4"]}]})),
        )
        .await;
    c.get(&format!(
        "{dns}/gitpod/changes/{}",
        change["id"].as_str().unwrap()
    ))
    .await;
    let (status, body) = c.call("DELETE", &format!("{dns}/gitpod"), None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["errors"][0]["reason"], "containerNotEmpty");
    c.ok(
        "DELETE",
        &format!("{dns}/gitpod/rrsets/gitpod.example.com./A"),
        None,
    )
    .await;
    c.ok(
        "DELETE",
        &format!("{dns}/gitpod/rrsets/*.gitpod.example.com./A"),
        None,
    )
    .await;
    let (status, _) = c.call("DELETE", &format!("{dns}/gitpod"), None).await;
    assert_eq!(status, 204);

    // Artifact Registry
    let ar = "/v1/projects/p/locations/europe-west1/repositories";
    let op = c
        .ok(
            "POST",
            &format!("{ar}?repositoryId=gitpod"),
            Some(json!({"format": "DOCKER", "description": "Gitpod"})),
        )
        .await;
    let done = c
        .wait(&format!("/v1/{}", op["name"].as_str().unwrap()))
        .await;
    assert_eq!(
        done["response"]["name"],
        "projects/p/locations/europe-west1/repositories/gitpod"
    );
    c.get(&format!("{ar}/gitpod")).await;
    c.get(ar).await;
    let policy = c
        .get(&format!(
            "{ar}/gitpod:getIamPolicy?options.requestedPolicyVersion=3"
        ))
        .await;
    c.ok(
        "POST",
        &format!("{ar}/gitpod:setIamPolicy"),
        Some(json!({"policy": {"etag": policy["etag"], "bindings": [{"role": "roles/artifactregistry.writer", "members": ["user:a@example.com"]}]}})),
    )
    .await;
    let op = c.ok("DELETE", &format!("{ar}/gitpod"), None).await;
    c.wait(&format!("/v1/{}", op["name"].as_str().unwrap()))
        .await;

    // What the guide's gcloud commands use besides: Resource Manager v1 ...
    let op = c
        .ok(
            "POST",
            "/v1/projects",
            Some(json!({"projectId": "proj-v1", "name": "V1", "parent": {"type": "folder", "id": "42"}})),
        )
        .await;
    let done = c
        .wait(&format!("/v1/{}", op["name"].as_str().unwrap()))
        .await;
    assert_eq!(done["response"]["projectId"], "proj-v1");
    c.get("/v1/projects/proj-v1").await;
    let policy = c
        .ok("POST", "/v1/projects/proj-v1:getIamPolicy", Some(json!({})))
        .await;
    c.ok(
        "POST",
        "/v1/projects/proj-v1:setIamPolicy",
        Some(json!({"policy": policy})),
    )
    .await;
    // ... one service at a time ...
    let op = c
        .ok(
            "POST",
            "/v1/projects/p/services/dns.googleapis.com:enable",
            Some(json!({})),
        )
        .await;
    c.wait(&format!("/v1/{}", op["name"].as_str().unwrap()))
        .await;
    // ... the catalogues and operation lists ...
    c.get("/v1/projects/p/locations/europe-west1/serverConfig")
        .await;
    c.get("/v1/projects/p/locations/europe-west1/operations")
        .await;
    c.get("/v1/projects/p/tiers").await;
    c.get("/v1/flags?databaseVersion=MYSQL_5_7").await;
    c.get("/v1/projects/p/operations?instance=sql-x").await;
    c.get("/compute/v1/projects/p/zones/europe-west1-b/machineTypes")
        .await;
    c.get("/compute/v1/projects/p/zones/europe-west1-b/machineTypes/n2d-standard-16")
        .await;
    c.get("/compute/v1/projects/p/aggregated/subnetworks").await;
    // ... and Cloud SQL Admin v1beta4.
    let beta = "/sql/v1beta4/projects/p/instances";
    let op = c
        .ok(
            "POST",
            beta,
            Some(json!({"name": "sql-beta", "region": "europe-west1", "databaseVersion": "MYSQL_5_7",
                "settings": {"tier": "db-n1-standard-2", "databaseFlags": [{"name": "explicit_defaults_for_timestamp", "value": "off"}]}})),
        )
        .await;
    c.wait(&format!(
        "/sql/v1beta4/projects/p/operations/{}",
        op["name"].as_str().unwrap()
    ))
    .await;
    c.get(&format!("{beta}/sql-beta")).await;
    c.get(beta).await;
    c.get("/sql/v1beta4/projects/p/tiers").await;
    c.get("/sql/v1beta4/flags").await;
    c.get("/sql/v1beta4/projects/p/operations").await;
    let (status, _) = c
        .call(
            "PATCH",
            &format!("{beta}/sql-beta"),
            Some(json!({"settings": {"databaseFlags": [{"name": "nope", "value": "1"}]}})),
        )
        .await;
    assert_eq!(status, 400);

    // Unknown paths
    let (status, body) = c.call("GET", "/v1/projects/p/nothing-here", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["status"], "NOT_FOUND");

    // Validate everything that was recorded.
    let calls = fake.calls();
    let mut problems = Vec::new();
    let mut covered = BTreeSet::new();
    for call in &calls {
        covered.insert(call.method.clone());
        for p in validate_call(&discovery, call) {
            problems.push(format!(
                "{} {} -> {}: {p}",
                call.http_method, call.path, call.status
            ));
        }
    }
    let missing: Vec<&&str> = METHODS.iter().filter(|m| !covered.contains(**m)).collect();
    println!(
        "validated {} calls of {} methods ({} implemented) against {} schemas",
        calls.len(),
        covered.len() - usize::from(covered.contains("unknown")),
        METHODS.len(),
        discovery.schemas_checked().len()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(missing.is_empty(), "methods never exercised: {missing:?}");
    for m in METHODS {
        assert!(
            discovery.method(m).is_some(),
            "{m} is not in the discovery documents"
        );
    }
    fake.shutdown().await;
}

#[test]
fn the_validator_rejects_bad_shapes() {
    let d = Discovery::load_default().unwrap_or_else(|e| panic!("{e}"));
    // Unknown property, wrong int64 encoding, bad enum, bad base64.
    let errors = d.validate(
        "container.v1",
        "Operation",
        &json!({"name": "x", "bogus": 1, "status": "NOPE"}),
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    let errors = d.validate("compute.v1", "Network", &json!({"id": 12, "name": "n"}));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let errors = d.validate(
        "cloudresourcemanager.v3",
        "Policy",
        &json!({"etag": "not base64!", "version": 1}),
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    let errors = d.validate(
        "sqladmin.v1",
        "DatabaseInstance",
        &json!({"settings": {"dataDiskSizeGb": "ten"}}),
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    // Enums as numbers (the Rust clients' encoding) are accepted.
    assert!(d
        .validate("container.v1", "Operation", &json!({"status": 3}))
        .is_empty());
    // Routes.
    assert!(!d
        .validate_route(
            "sql.instances.get",
            "POST",
            "/v1/projects/p/instances/i",
            &[]
        )
        .is_empty());
    assert!(!d
        .validate_route("sql.instances.get", "GET", "/v1/projects/p/instances", &[])
        .is_empty());
    assert!(!d
        .validate_route(
            "sql.instances.get",
            "GET",
            "/v1/projects/p/instances/i",
            &[("bogus".into(), "1".into())]
        )
        .is_empty());
    assert!(d
        .validate_route(
            "sql.instances.get",
            "GET",
            "/v1/projects/p/instances/i",
            &[("$alt".into(), "json;enum-encoding=int".into())]
        )
        .is_empty());
}
