//! The fake validates against catalogues as GCP does (GKE `serverConfig`, Compute
//! machine types per zone and networks, Cloud SQL tiers and flags), and serves the
//! API surface the guide's `gcloud` commands use (Resource Manager v1, Cloud SQL
//! Admin v1beta4, `services/X:enable`, operation lists, the aggregated subnetwork
//! list and a Compute `operations.wait` that waits). Every test here fails on the
//! fake before these were added.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::Client;
use gitpod_refarch_fake_gcp::{FakeConfig, FakeGcp};
use serde_json::{json, Value};

const GKE: &str = "/v1/projects/p/locations/europe-west1";

async fn start(config: FakeConfig) -> (FakeGcp, Client) {
    let fake = FakeGcp::start(config).await.unwrap();
    let c = Client::new(fake.url());
    (fake, c)
}

fn error(body: &Value) -> (&str, &str) {
    (
        body["error"]["status"].as_str().unwrap_or(""),
        body["error"]["message"].as_str().unwrap_or(""),
    )
}

/// A cluster without a release channel at `version`.
fn cluster(name: &str, version: &str) -> Value {
    json!({"cluster": {
        "name": name,
        "initialClusterVersion": version,
        "releaseChannel": {"channel": "UNSPECIFIED"},
        "nodePools": [{"name": "default-pool", "initialNodeCount": 1,
            "management": {"autoUpgrade": false, "autoRepair": true}}],
    }})
}

#[tokio::test]
async fn gke_offers_only_the_versions_of_its_server_config() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(0)).await;
    let sc = c.get(&format!("{GKE}/serverConfig")).await;
    let master: Vec<String> = sc["validMasterVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(master.len() >= 5, "{sc}");
    assert!(sc["validNodeVersions"].as_array().unwrap().len() >= master.len());
    assert!(master.contains(&sc["defaultClusterVersion"].as_str().unwrap().to_string()));
    let channels = sc["channels"].as_array().unwrap();
    for name in ["RAPID", "REGULAR", "STABLE"] {
        let ch = channels.iter().find(|c| c["channel"] == name).unwrap();
        assert!(ch["validVersions"]
            .as_array()
            .unwrap()
            .contains(&ch["defaultVersion"]));
    }

    // The guide's version (1.22) is long gone: GKE answers 400.
    let (status, body) = c
        .call(
            "POST",
            &format!("{GKE}/clusters"),
            Some(cluster("old", "1.22.12-gke.1200")),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error(&body),
        (
            "INVALID_ARGUMENT",
            "Master version \"1.22.12-gke.1200\" is unsupported."
        )
    );
    for bad in ["1.33.99-gke.1", "2.0", "1.3", "banana"] {
        let (status, body) = c
            .call(
                "POST",
                &format!("{GKE}/clusters"),
                Some(cluster("bad", bad)),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert!(fake
        .resource("projects/p/locations/europe-west1/clusters/old")
        .is_none());

    // A minor is the newest patch of it; `-` is the default; a listed version as is.
    let newest_133 = master.iter().find(|v| v.starts_with("1.33.")).unwrap();
    c.ok(
        "POST",
        &format!("{GKE}/clusters"),
        Some(cluster("minor", "1.33")),
    )
    .await;
    let cl = c.get(&format!("{GKE}/clusters/minor")).await;
    assert_eq!(&cl["currentMasterVersion"], newest_133);
    assert_eq!(&cl["nodePools"][0]["version"], newest_133);
    c.ok(
        "POST",
        &format!("{GKE}/clusters"),
        Some(cluster("dash", "-")),
    )
    .await;
    let cl = c.get(&format!("{GKE}/clusters/dash")).await;
    assert_eq!(cl["currentMasterVersion"], sc["defaultClusterVersion"]);
    let listed = master.last().unwrap();
    c.ok(
        "POST",
        &format!("{GKE}/clusters"),
        Some(cluster("listed", listed)),
    )
    .await;
    let cl = c.get(&format!("{GKE}/clusters/listed")).await;
    assert_eq!(&cl["currentMasterVersion"], listed);
    c.ok(
        "POST",
        &format!("{GKE}/clusters"),
        Some(cluster("newest", "latest")),
    )
    .await;
    let cl = c.get(&format!("{GKE}/clusters/newest")).await;
    assert_eq!(&cl["currentMasterVersion"], &master[0]);

    // In a release channel, only that channel's versions.
    let stable = channels.iter().find(|c| c["channel"] == "STABLE").unwrap();
    let mut body = cluster("stable", "1.35");
    body["cluster"]["releaseChannel"] = json!({"channel": "STABLE"});
    body["cluster"]["nodePools"][0]["management"] =
        json!({"autoUpgrade": true, "autoRepair": true});
    let (status, resp) = c
        .call("POST", &format!("{GKE}/clusters"), Some(body.clone()))
        .await;
    assert_eq!(status, 400, "{resp}");
    body["cluster"]["initialClusterVersion"] = json!("");
    c.ok("POST", &format!("{GKE}/clusters"), Some(body)).await;
    let cl = c.get(&format!("{GKE}/clusters/stable")).await;
    assert_eq!(cl["currentMasterVersion"], stable["defaultVersion"]);

    // Node pools: an unknown version, or one newer than the control plane, is a 400.
    let pools = format!("{GKE}/clusters/listed/nodePools");
    let (status, body) = c
        .call(
            "POST",
            &pools,
            Some(
                json!({"nodePool": {"name": "a", "initialNodeCount": 1, "version": "1.40",
                "management": {"autoUpgrade": false, "autoRepair": true}}}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body).1, "Node version \"1.40\" is unsupported.");
    let (status, body) = c
        .call(
            "POST",
            &pools,
            Some(
                json!({"nodePool": {"name": "b", "initialNodeCount": 1, "version": master[0],
                "management": {"autoUpgrade": false, "autoRepair": true}}}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).1.contains("must not be newer"), "{body}");
    // Upgrades: an unknown target is refused, a listed one accepted.
    let (status, body) = c
        .call(
            "PUT",
            &format!("{GKE}/clusters/listed"),
            Some(json!({"update": {"desiredMasterVersion": "1.99.0-gke.1"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    c.ok(
        "PUT",
        &format!("{GKE}/clusters/listed"),
        Some(json!({"update": {"desiredMasterVersion": "1.34"}})),
    )
    .await;
    let cl = c.get(&format!("{GKE}/clusters/listed")).await;
    assert!(cl["currentMasterVersion"]
        .as_str()
        .unwrap()
        .starts_with("1.34."));
    let (status, body) = c
        .call(
            "PUT",
            &format!("{GKE}/clusters/listed/nodePools/default-pool"),
            Some(json!({"nodeVersion": "1.31.0-gke.1"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    fake.shutdown().await;
}

#[tokio::test]
async fn compute_serves_machine_types_per_zone_and_gke_uses_them() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(0)).await;
    let zone = "/compute/v1/projects/p/zones/europe-west1-b/machineTypes";
    let list = c.get(zone).await;
    assert_eq!(list["kind"], "compute#machineTypeList");
    let items = list["items"].as_array().unwrap();
    assert!(items.iter().any(|m| m["name"] == "n2d-standard-16"));
    assert!(items.iter().any(|m| m["name"] == "e2-standard-2"));
    let mt = c.get(&format!("{zone}/n2d-standard-4")).await;
    assert_eq!(
        (mt["guestCpus"].as_i64(), mt["memoryMb"].as_i64()),
        (Some(4), Some(16384))
    );
    assert!(mt["zone"] == "europe-west1-b");
    // europe-west1 has no zone a; no e2 machine has 360 vCPUs.
    let (status, body) = c
        .call(
            "GET",
            "/compute/v1/projects/p/zones/europe-west1-a/machineTypes",
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = c
        .call("GET", &format!("{zone}/e2-standard-360"), None)
        .await;
    assert_eq!(status, 404);
    let (status, body) = c
        .call(
            "POST",
            &format!("{GKE}/clusters"),
            Some(
                json!({"cluster": {"name": "big", "nodePools": [{"name": "p", "initialNodeCount": 1,
                "config": {"machineType": "e2-standard-360"}}]}}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).1.contains("e2-standard-360"), "{body}");
    fake.shutdown().await;
}

#[tokio::test]
async fn cloud_sql_checks_flags_and_tiers_against_its_catalogues() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(0)).await;
    let tiers = c.get("/v1/projects/p/tiers").await;
    assert_eq!(tiers["kind"], "sql#tiersList");
    assert!(tiers["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["tier"] == "db-n1-standard-2" && t["RAM"].is_string()));
    let flags = c.get("/v1/flags?databaseVersion=MYSQL_5_7").await;
    let edft = flags["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "explicit_defaults_for_timestamp")
        .unwrap()
        .clone();
    assert_eq!(edft["type"], "BOOLEAN");
    assert_eq!(edft["appliesTo"], json!(["MYSQL_5_7", "MYSQL_8_0"]));
    let pg = c.get("/v1/flags?databaseVersion=POSTGRES_16").await;
    assert!(!pg["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "explicit_defaults_for_timestamp"));
    let all = c.get("/v1/flags").await;
    assert!(all["items"].as_array().unwrap().len() > pg["items"].as_array().unwrap().len());

    let instance = |name: &str, version: &str, flags: Value| {
        json!({"name": name, "region": "europe-west1", "databaseVersion": version,
            "settings": {"tier": "db-n1-standard-2", "databaseFlags": flags}})
    };
    for (version, flags, what) in [
        (
            "MYSQL_5_7",
            json!([{"name": "no_such_flag", "value": "on"}]),
            "unknown flag",
        ),
        (
            "MYSQL_5_7",
            json!([{"name": "explicit_defaults_for_timestamp", "value": "maybe"}]),
            "bad boolean",
        ),
        (
            "MYSQL_8_0",
            json!([{"name": "max_connections", "value": "-3"}]),
            "integer out of range",
        ),
        (
            "POSTGRES_16",
            json!([{"name": "explicit_defaults_for_timestamp", "value": "off"}]),
            "MySQL flag on PostgreSQL",
        ),
    ] {
        let (status, body) = c
            .call(
                "POST",
                "/v1/projects/p/instances",
                Some(instance("x", version, flags)),
            )
            .await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(
            error(&body).1.starts_with("Invalid Flag Name or Value: "),
            "{what}: {body}"
        );
        assert_eq!(body["error"]["errors"][0]["reason"], "invalidFlagValue");
    }
    assert!(fake.resource("projects/p/instances/x").is_none());
    // The guide's sequence: create, then patch the flag in; a bad patch is refused.
    c.ok(
        "POST",
        "/v1/projects/p/instances",
        Some(instance("db", "MYSQL_5_7", json!([]))),
    )
    .await;
    let (status, body) = c
        .call(
            "PATCH",
            "/v1/projects/p/instances/db",
            Some(json!({"settings": {"databaseFlags": [{"name": "explicit_defaults_for_timestamp", "value": "of"}]}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    c.ok(
        "PATCH",
        "/v1/projects/p/instances/db",
        Some(json!({"settings": {"databaseFlags": [{"name": "explicit_defaults_for_timestamp", "value": "off"}]}})),
    )
    .await;
    let db = c.get("/v1/projects/p/instances/db").await;
    assert_eq!(
        db["settings"]["databaseFlags"],
        json!([{"name": "explicit_defaults_for_timestamp", "value": "off"}])
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn clusters_and_private_instances_need_networks_that_exist_in_compute() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(0)).await;
    let with_net = |name: &str, network: &str, subnetwork: &str| {
        json!({"cluster": {
            "name": name,
            "network": network,
            "subnetwork": subnetwork,
            "ipAllocationPolicy": {"useIpAliases": true,
                "clusterSecondaryRangeName": "pods", "servicesSecondaryRangeName": "services"},
            "nodePools": [{"name": "default-pool", "initialNodeCount": 1}],
        }})
    };
    let (status, body) = c
        .call(
            "POST",
            &format!("{GKE}/clusters"),
            Some(with_net(
                "a",
                "projects/p/global/networks/vpc",
                "projects/p/regions/europe-west1/subnetworks/nodes",
            )),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error(&body),
        ("INVALID_ARGUMENT", "Network \"vpc\" does not exist.")
    );
    c.ok(
        "POST",
        "/compute/v1/projects/p/global/networks",
        Some(json!({"name": "vpc", "autoCreateSubnetworks": false})),
    )
    .await;
    let (status, body) = c
        .call(
            "POST",
            &format!("{GKE}/clusters"),
            Some(with_net(
                "a",
                "projects/p/global/networks/vpc",
                "projects/p/regions/europe-west1/subnetworks/nodes",
            )),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error(&body)
            .1
            .contains("subnetworks/nodes\" does not exist"),
        "{body}"
    );
    c.ok(
        "POST",
        "/compute/v1/projects/p/regions/europe-west1/subnetworks",
        Some(
            json!({"name": "nodes", "network": "global/networks/vpc", "ipCidrRange": "10.0.0.0/20",
            "secondaryIpRanges": [{"rangeName": "pods", "ipCidrRange": "10.4.0.0/14"}]}),
        ),
    )
    .await;
    // The services range is missing from the subnetwork.
    let (status, body) = c
        .call(
            "POST",
            &format!("{GKE}/clusters"),
            Some(with_net(
                "a",
                "projects/p/global/networks/vpc",
                "projects/p/regions/europe-west1/subnetworks/nodes",
            )),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error(&body).1.contains("services_secondary_range_name"),
        "{body}"
    );
    let mut ok = with_net(
        "a",
        "projects/p/global/networks/vpc",
        "projects/p/regions/europe-west1/subnetworks/nodes",
    );
    ok["cluster"]["ipAllocationPolicy"] =
        json!({"useIpAliases": true, "clusterSecondaryRangeName": "pods"});
    c.ok("POST", &format!("{GKE}/clusters"), Some(ok)).await;
    // A subnetwork of another region is not found in the cluster's.
    let (status, _) = c
        .call(
            "POST",
            "/v1/projects/p/locations/us-central1/clusters",
            Some(with_net("b", "vpc", "nodes")),
        )
        .await;
    assert_eq!(status, 400);

    let sql = |network: &str| {
        json!({"name": "db", "region": "europe-west1", "databaseVersion": "MYSQL_8_0",
            "settings": {"tier": "db-f1-micro", "ipConfiguration": {"ipv4Enabled": false, "privateNetwork": network}}})
    };
    let (status, body) = c
        .call(
            "POST",
            "/v1/projects/p/instances",
            Some(sql("projects/p/global/networks/nope")),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).1.contains("does not exist"), "{body}");
    c.ok(
        "POST",
        "/v1/projects/p/instances",
        Some(sql("projects/p/global/networks/vpc")),
    )
    .await;
    fake.shutdown().await;
}

#[tokio::test]
async fn the_guides_api_surface_is_served() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(1)).await;
    // Resource Manager v1 (gcloud projects create / add-iam-policy-binding).
    let op = c
        .ok(
            "POST",
            "/v1/projects",
            Some(json!({"projectId": "gitpod-guide", "name": "Gitpod", "parent": {"type": "organization", "id": "123"}})),
        )
        .await;
    let name = op["name"].as_str().unwrap();
    assert!(name.starts_with("operations/"), "{op}");
    let done = c.get(&format!("/v1/{name}")).await;
    assert_eq!(done["done"], true, "{done}");
    assert_eq!(done["response"]["projectId"], "gitpod-guide");
    assert_eq!(done["response"]["lifecycleState"], "ACTIVE");
    assert_eq!(
        done["response"]["parent"],
        json!({"type": "organization", "id": "123"})
    );
    let v1 = c.get("/v1/projects/gitpod-guide").await;
    assert_eq!(v1["name"], "Gitpod");
    assert!(v1["projectNumber"].as_str().unwrap().parse::<u64>().is_ok());
    let v3 = c.get("/v3/projects/gitpod-guide").await;
    assert_eq!(
        v3["name"],
        format!("projects/{}", v1["projectNumber"].as_str().unwrap())
    );
    let policy = c
        .ok(
            "POST",
            "/v1/projects/gitpod-guide:getIamPolicy",
            Some(json!({})),
        )
        .await;
    let mut next = policy.clone();
    next["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "roles/viewer", "members": ["user:a@example.com"]}));
    c.ok(
        "POST",
        "/v1/projects/gitpod-guide:setIamPolicy",
        Some(json!({"policy": next})),
    )
    .await;
    let v3_policy = c
        .ok(
            "POST",
            "/v3/projects/gitpod-guide:getIamPolicy",
            Some(json!({})),
        )
        .await;
    assert!(v3_policy["bindings"].to_string().contains("roles/viewer"));

    // Service Usage: one service at a time.
    let op = c
        .ok(
            "POST",
            "/v1/projects/p/services/dns.googleapis.com:enable",
            Some(json!({})),
        )
        .await;
    let done = c
        .wait(&format!("/v1/{}", op["name"].as_str().unwrap()))
        .await;
    assert_eq!(done["response"]["service"]["state"], "ENABLED");
    assert_eq!(
        c.get("/v1/projects/p/services/dns.googleapis.com").await["state"],
        "ENABLED"
    );

    // Cloud SQL Admin v1beta4 is v1 under another prefix.
    let op = c
        .ok(
            "POST",
            "/sql/v1beta4/projects/p/instances",
            Some(
                json!({"name": "beta", "region": "europe-west1", "databaseVersion": "MYSQL_5_7",
                "settings": {"tier": "db-n1-standard-2"}}),
            ),
        )
        .await;
    c.wait(&format!(
        "/sql/v1beta4/projects/p/operations/{}",
        op["name"].as_str().unwrap()
    ))
    .await;
    assert_eq!(
        c.get("/v1/projects/p/instances/beta").await["state"],
        "RUNNABLE"
    );
    assert_eq!(
        c.get("/sql/v1beta4/projects/p/instances/beta").await["state"],
        "RUNNABLE"
    );
    let ops = c
        .get("/sql/v1beta4/projects/p/operations?instance=beta")
        .await;
    assert_eq!(ops["kind"], "sql#operationsList");
    assert_eq!(ops["items"][0]["operationType"], "CREATE");
    assert!(c.get("/v1/projects/p/operations?instance=other").await["items"].is_null());

    // GKE's operations list.
    let op = c
        .ok(
            "POST",
            &format!("{GKE}/clusters"),
            Some(json!({"cluster": {"name": "c", "initialNodeCount": 1}})),
        )
        .await;
    let list = c.get(&format!("{GKE}/operations")).await;
    assert_eq!(list["operations"][0]["name"], op["name"]);
    let all = c.get("/v1/projects/p/locations/-/operations").await;
    assert_eq!(all["operations"].as_array().unwrap().len(), 1);

    // Compute's aggregated subnetwork list.
    let op = c
        .ok(
            "POST",
            "/compute/v1/projects/p/global/networks",
            Some(json!({"name": "vpc", "autoCreateSubnetworks": false})),
        )
        .await;
    c.ok(
        "POST",
        &format!(
            "{}/wait",
            op["selfLink"]
                .as_str()
                .unwrap()
                .trim_start_matches("https://www.googleapis.com")
        ),
        None,
    )
    .await;
    let op = c
        .ok(
            "POST",
            "/compute/v1/projects/p/regions/us-central1/subnetworks",
            Some(json!({"name": "s", "network": "global/networks/vpc", "ipCidrRange": "10.0.0.0/20"})),
        )
        .await;
    let waited = c
        .ok(
            "POST",
            &format!(
                "{}/wait",
                op["selfLink"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("https://www.googleapis.com")
            ),
            None,
        )
        .await;
    assert_eq!(waited["status"], "DONE");
    let agg = c.get("/compute/v1/projects/p/aggregated/subnetworks").await;
    assert_eq!(agg["kind"], "compute#subnetworkAggregatedList");
    assert_eq!(
        agg["items"]["regions/us-central1"]["subnetworks"][0]["name"],
        "s"
    );
    assert_eq!(
        agg["items"]["regions/europe-west1"]["warning"]["code"],
        "NO_RESULTS_ON_PAGE"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn compute_operations_wait_waits_for_the_operation() {
    // Wall-time operations: one wait answers DONE, after the operation's time.
    let delay = Duration::from_millis(400);
    let (fake, c) = start(FakeConfig::default().with_op_delay(Some(delay))).await;
    let op = c
        .ok(
            "POST",
            "/compute/v1/projects/p/global/networks",
            Some(json!({"name": "vpc", "autoCreateSubnetworks": false})),
        )
        .await;
    let path = op["selfLink"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://www.googleapis.com")
        .to_string();
    let t = Instant::now();
    let waited = c.ok("POST", &format!("{path}/wait"), None).await;
    assert_eq!(waited["status"], "DONE", "{waited}");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert!(fake.resource("projects/p/global/networks/vpc").is_some());
    assert_eq!(fake.counts().polls, 1, "one wait is one recorded call");
    fake.shutdown().await;

    // Counted polls: one wait is enough too.
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(5)).await;
    let op = c
        .ok(
            "POST",
            "/compute/v1/projects/p/global/networks",
            Some(json!({"name": "vpc", "autoCreateSubnetworks": false})),
        )
        .await;
    let path = op["selfLink"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://www.googleapis.com")
        .to_string();
    let waited = c.ok("POST", &format!("{path}/wait"), None).await;
    assert_eq!(waited["status"], "DONE", "{waited}");
    fake.shutdown().await;

    // An operation that outlasts the wait's timeout is answered still running.
    let (fake, c) = start(
        FakeConfig::default()
            .with_op_delay(Some(Duration::from_secs(30)))
            .with_wait_timeout(Duration::from_millis(200)),
    )
    .await;
    let op = c
        .ok(
            "POST",
            "/compute/v1/projects/p/global/networks",
            Some(json!({"name": "vpc", "autoCreateSubnetworks": false})),
        )
        .await;
    let path = op["selfLink"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://www.googleapis.com")
        .to_string();
    let t = Instant::now();
    let waited = c.ok("POST", &format!("{path}/wait"), None).await;
    assert_ne!(waited["status"], "DONE", "{waited}");
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    fake.shutdown().await;
}
