//! Behaviour of the fake: operations, conflicts, faults, freezing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Client;
use gitpod_refarch_fake_gcp::{CallKind, FakeConfig, FakeGcp};
use serde_json::{json, Value};

async fn start(config: FakeConfig) -> (FakeGcp, Client) {
    let fake = FakeGcp::start(config).await.unwrap();
    let c = Client::new(fake.url());
    (fake, c)
}

fn cluster_body(name: &str) -> Value {
    json!({"cluster": {"name": name, "nodePools": [{"name": "default-pool", "initialNodeCount": 1}]}})
}

#[tokio::test]
async fn an_operation_finishes_on_the_nth_poll() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(3)).await;
    let op = c
        .ok(
            "POST",
            "/v1/projects/p/locations/europe-west1/clusters",
            Some(cluster_body("gitpod")),
        )
        .await;
    assert_eq!(op["status"], "PENDING");
    let path = format!(
        "/v1/projects/p/locations/europe-west1/operations/{}",
        op["name"].as_str().unwrap()
    );
    assert_eq!(c.get(&path).await["status"], "RUNNING");
    assert_eq!(c.get(&path).await["status"], "RUNNING");
    let cluster = fake
        .resource("projects/p/locations/europe-west1/clusters/gitpod")
        .unwrap();
    assert_eq!(cluster["status"], "PROVISIONING");
    let done = c.get(&path).await;
    assert_eq!(done["status"], "DONE");
    assert!(done["endTime"].is_string());
    let cluster = c
        .get("/v1/projects/p/locations/europe-west1/clusters/gitpod")
        .await;
    assert_eq!(cluster["status"], "RUNNING");
    assert_eq!(cluster["nodePools"][0]["name"], "default-pool");
    assert_eq!(cluster["nodePools"][0]["status"], "RUNNING");
    assert!(cluster["masterAuth"]["clusterCaCertificate"].is_string());
    let counts = fake.counts();
    assert_eq!((counts.mutating, counts.polls, counts.reads), (1, 3, 1));
    assert_eq!(
        counts.per_method["container.projects.locations.operations.get"],
        3
    );
    assert_eq!(fake.calls()[0].kind, CallKind::Mutate);
    fake.reset_calls();
    assert_eq!(fake.counts().mutating, 0);
    fake.shutdown().await;
}

#[tokio::test]
async fn zero_polls_means_done_at_once_and_delay_means_wall_time() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(0)).await;
    let op = c
        .ok(
            "POST",
            "/compute/v1/projects/p/global/networks",
            Some(json!({"name": "vpc"})),
        )
        .await;
    assert_eq!(op["status"], "DONE");
    assert!(fake.resource("projects/p/global/networks/vpc").is_some());
    fake.shutdown().await;

    let config = FakeConfig::default().with_op_delay(Some(Duration::from_millis(150)));
    let (fake, c) = start(config).await;
    let op = c
        .ok(
            "POST",
            "/v1/projects/p/services:batchEnable",
            Some(json!({"serviceIds": ["dns.googleapis.com"]})),
        )
        .await;
    let path = format!("/v1/{}", op["name"].as_str().unwrap());
    for _ in 0..5 {
        assert!(c.get(&path).await.get("done").is_none());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let done = c.get(&path).await;
    assert_eq!(done["done"], true);
    assert_eq!(done["response"]["services"][0]["state"], "ENABLED");
    fake.shutdown().await;
}

#[tokio::test]
async fn duplicates_are_409() {
    let (fake, c) = start(FakeConfig::default()).await;
    let sa = json!({"accountId": "gitpod-sa"});
    c.ok("POST", "/v1/projects/p/serviceAccounts", Some(sa.clone()))
        .await;
    let (status, body) = c
        .call("POST", "/v1/projects/p/serviceAccounts", Some(sa))
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["status"], "ALREADY_EXISTS");
    let zone = json!({"name": "z", "dnsName": "example.com.", "description": ""});
    c.ok(
        "POST",
        "/dns/v1/projects/p/managedZones",
        Some(zone.clone()),
    )
    .await;
    let (status, body) = c
        .call("POST", "/dns/v1/projects/p/managedZones", Some(zone))
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["errors"][0]["reason"], "alreadyExists");
    assert_eq!(
        fake.resources()
            .keys()
            .filter(|k| k.starts_with("projects/p/managedZones/z/rrsets/"))
            .count(),
        2
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn a_stale_policy_etag_is_aborted_and_a_missing_one_overwrites() {
    let (fake, c) = start(FakeConfig::default()).await;
    let policy = c
        .ok("POST", "/v3/projects/p:getIamPolicy", Some(json!({})))
        .await;
    let mut next = policy.clone();
    next["bindings"] = json!([{"role": "roles/dns.admin", "members": ["user:x@example.com"]}]);
    let written = c
        .ok(
            "POST",
            "/v3/projects/p:setIamPolicy",
            Some(json!({"policy": next})),
        )
        .await;
    assert_ne!(written["etag"], policy["etag"]);
    let (status, body) = c
        .call(
            "POST",
            "/v3/projects/p:setIamPolicy",
            Some(json!({"policy": next})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["status"], "ABORTED");
    let mut blind = next.clone();
    blind.as_object_mut().unwrap().remove("etag");
    c.ok(
        "POST",
        "/v3/projects/p:setIamPolicy",
        Some(json!({"policy": blind})),
    )
    .await;
    assert_eq!(
        fake.project_iam_policy("p").unwrap()["bindings"][0]["role"],
        "roles/dns.admin"
    );
    // Bindings of service accounts that do not exist are refused, as GCP does.
    let ghost = json!({"policy": {"bindings": [{"role": "roles/dns.admin", "members": ["serviceAccount:ghost-sa@p.iam.gserviceaccount.com"]}]}});
    assert_eq!(
        c.call("POST", "/v3/projects/p:setIamPolicy", Some(ghost))
            .await
            .0,
        400
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn policy_etags_are_compared_as_bytes_whatever_the_base64_alphabet() {
    use base64::Engine as _;
    let (fake, c) = start(FakeConfig::default()).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // Try several policy versions so that some etag has `+` or `/` in it.
    let mut alphabet_seen = false;
    for i in 0..24 {
        let policy = c
            .ok("POST", "/v3/projects/p:getIamPolicy", Some(json!({})))
            .await;
        let etag = policy["etag"].as_str().unwrap();
        alphabet_seen |= etag.contains(['+', '/']);
        // gcloud re-encodes the etag URL-safe and unpadded: the same bytes.
        let reencoded = url_safe.encode(b64.decode(etag).unwrap());
        assert_ne!(reencoded, etag);
        let mut next = policy.clone();
        next["etag"] = json!(reencoded);
        next["bindings"] =
            json!([{"role": format!("roles/r{i}"), "members": ["user:x@example.com"]}]);
        let (status, body) = c
            .call(
                "POST",
                "/v3/projects/p:setIamPolicy",
                Some(json!({"policy": next})),
            )
            .await;
        assert_eq!(status, 200, "etag {etag} as {reencoded}: {body}");
        // The old etag, in either alphabet, is now stale.
        let (status, _) = c
            .call(
                "POST",
                "/v3/projects/p:setIamPolicy",
                Some(json!({"policy": next})),
            )
            .await;
        assert_eq!(status, 409);
    }
    assert!(alphabet_seen, "no etag exercised the alphabet difference");
    fake.shutdown().await;
}

#[tokio::test]
async fn service_account_policies_check_etags_and_go_with_the_account() {
    let (fake, c) = start(FakeConfig::default()).await;
    let email = "gitpod-dns@p.iam.gserviceaccount.com";
    let path = format!("/v1/projects/p/serviceAccounts/{email}");
    // No account: 404 for both methods, and no policy to read.
    let (status, body) = c
        .call("POST", &format!("{path}:getIamPolicy"), Some(json!({})))
        .await;
    assert_eq!(
        (status, body["error"]["status"].clone()),
        (404, json!("NOT_FOUND"))
    );
    let (status, _) = c
        .call(
            "POST",
            &format!("{path}:setIamPolicy"),
            Some(json!({"policy": {}})),
        )
        .await;
    assert_eq!(status, 404);
    assert!(fake.service_account_iam_policy("p", email).is_none());

    let sa = c
        .ok(
            "POST",
            "/v1/projects/p/serviceAccounts",
            Some(json!({"accountId": "gitpod-dns"})),
        )
        .await;
    // A new account has GCP's empty policy.
    let empty = c
        .ok("POST", &format!("{path}:getIamPolicy"), Some(json!({})))
        .await;
    assert_eq!(empty, json!({"etag": "ACAB"}));
    assert_eq!(
        fake.service_account_iam_policy("p", email),
        Some(empty.clone())
    );
    let (status, _) = c
        .call(
            "POST",
            &format!("{path}:getIamPolicy?options.requestedPolicyVersion=2"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 400);

    // A Workload Identity binding with the current etag is written.
    let ksa = "serviceAccount:p.svc.id.goog[cert-manager/cert-manager]";
    let wi = json!({"role": "roles/iam.workloadIdentityUser", "members": [ksa]});
    // The pool exists only once a GKE cluster with Workload Identity does, as on GCP.
    let (status, body) = c
        .call(
            "POST",
            &format!("{path}:setIamPolicy"),
            Some(json!({"policy": {"bindings": [wi.clone()]}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Identity Pool does not exist"));
    c.ok(
        "POST",
        "/v1/projects/p/locations/europe-west1/clusters",
        Some(json!({"cluster": {"name": "wi", "initialNodeCount": 1,
            "workloadIdentityConfig": {"workloadPool": "p.svc.id.goog"}}})),
    )
    .await;
    let written = c
        .ok(
            "POST",
            &format!("{path}:setIamPolicy"),
            Some(json!({"policy": {"etag": "ACAB", "bindings": [wi]}})),
        )
        .await;
    assert_ne!(written["etag"], "ACAB");
    assert_eq!(written["bindings"][0]["members"][0], ksa);
    // Read back by unique id through project `-`, and through the helper.
    let by_id = c
        .ok(
            "POST",
            &format!(
                "/v1/projects/-/serviceAccounts/{}:getIamPolicy",
                sa["uniqueId"].as_str().unwrap()
            ),
            Some(json!({})),
        )
        .await;
    assert_eq!(by_id, written);
    assert_eq!(
        fake.service_account_iam_policy("p", email),
        Some(written.clone())
    );
    assert_eq!(
        fake.resource(&format!("projects/p/serviceAccounts/{email}:iamPolicy")),
        Some(written.clone())
    );
    // The policy is not an account: lists and gets are unchanged.
    let list = c.get("/v1/projects/p/serviceAccounts").await;
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1);

    // A stale etag is a 409 ABORTED and changes nothing; no etag overwrites.
    let (status, body) = c
        .call(
            "POST",
            &format!("{path}:setIamPolicy"),
            Some(json!({"policy": {"etag": "ACAB", "bindings": []}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["status"].clone()),
        (409, json!("ABORTED"))
    );
    assert_eq!(fake.service_account_iam_policy("p", email), Some(written));
    let viewer = json!({"role": "roles/iam.serviceAccountUser", "members": ["user:a@example.com"]});
    c.ok(
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({"policy": {"bindings": [viewer]}})),
    )
    .await;
    let now = fake.service_account_iam_policy("p", email).unwrap();
    assert_eq!(now["bindings"].as_array().unwrap().len(), 1);
    assert_eq!(now["bindings"][0]["role"], "roles/iam.serviceAccountUser");

    // Malformed Workload Identity members and unknown accounts are refused.
    for member in [
        "serviceAccount:p.svc.id.goog[cert-manager]",
        "serviceAccount:p.svc.id.goog[/ksa]",
        "serviceAccount:p.svc.id.goog",
        "serviceAccount:ghost-sa@p.iam.gserviceaccount.com",
    ] {
        let bad = json!({"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}});
        let (status, body) = c
            .call("POST", &format!("{path}:setIamPolicy"), Some(bad))
            .await;
        assert_eq!(status, 400, "{member}: {body}");
    }

    // Deleting the account deletes its policy; a new account of that name starts empty.
    c.ok("DELETE", &path, None).await;
    assert!(fake.service_account_iam_policy("p", email).is_none());
    assert!(fake
        .resource(&format!("projects/p/serviceAccounts/{email}:iamPolicy"))
        .is_none());
    c.ok(
        "POST",
        "/v1/projects/p/serviceAccounts",
        Some(json!({"accountId": "gitpod-dns"})),
    )
    .await;
    assert_eq!(
        fake.service_account_iam_policy("p", email),
        Some(json!({"etag": "ACAB"}))
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn unknown_projects_are_403_and_projects_can_be_created() {
    let (fake, c) = start(
        FakeConfig::default()
            .with_projects(Vec::<String>::new())
            .with_polls_to_finish(1),
    )
    .await;
    let (status, body) = c.call("GET", "/v3/projects/p", None).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        c.call("GET", "/v1/projects/p/serviceAccounts", None)
            .await
            .0,
        403
    );
    let op = c
        .ok(
            "POST",
            "/v3/projects",
            Some(json!({"projectId": "p-gitpod"})),
        )
        .await;
    let done = c
        .get(&format!("/v3/{}", op["name"].as_str().unwrap()))
        .await;
    assert_eq!(
        done["response"]["@type"],
        "type.googleapis.com/google.cloud.resourcemanager.v3.Project"
    );
    let number = done["response"]["name"]
        .as_str()
        .unwrap()
        .trim_start_matches("projects/")
        .to_string();
    assert_eq!(
        c.get(&format!("/v3/projects/{number}")).await["projectId"],
        "p-gitpod"
    );
    assert!(fake.resource("projects/p-gitpod").is_some());
    fake.shutdown().await;
}

#[tokio::test]
async fn gke_runs_one_operation_per_cluster() {
    let (fake, c) = start(FakeConfig::default()).await;
    let base = "/v1/projects/p/locations/europe-west1/clusters";
    let op = c.ok("POST", base, Some(cluster_body("gitpod"))).await;
    let name = op["name"].as_str().unwrap().to_string();
    let (status, body) = c
        .call(
            "POST",
            &format!("{base}/gitpod/nodePools"),
            Some(json!({"nodePool": {"name": "np", "initialNodeCount": 1}})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "FAILED_PRECONDITION");
    let msg = body["error"]["message"].as_str().unwrap();
    assert_eq!(
        msg,
        format!("Operation {name} is currently creating cluster gitpod. Please wait and try again once it is done.")
    );
    assert_eq!(
        c.call("DELETE", &format!("{base}/gitpod"), None).await.0,
        400
    );
    // Another cluster is not blocked.
    c.ok("POST", base, Some(cluster_body("other"))).await;
    c.wait(&format!(
        "/v1/projects/p/locations/europe-west1/operations/{name}"
    ))
    .await;
    c.ok(
        "POST",
        &format!("{base}/gitpod/nodePools"),
        Some(json!({"nodePool": {"name": "np", "initialNodeCount": 1}})),
    )
    .await;
    let (status, body) = c
        .call(
            "POST",
            &format!("{base}/gitpod/nodePools/default-pool:setSize"),
            Some(json!({"nodeCount": 3})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("creating node pool np in cluster gitpod"));
    fake.shutdown().await;
}

#[tokio::test]
async fn a_failed_operation_ends_with_an_error() {
    let config = FakeConfig::default()
        .with_polls_to_finish(1)
        .with_fail_operation(Some("CREATE_CLUSTER".into()));
    let (fake, c) = start(config).await;
    let op = c
        .ok(
            "POST",
            "/v1/projects/p/locations/europe-west1/clusters",
            Some(cluster_body("gitpod")),
        )
        .await;
    let done = c
        .get(&format!(
            "/v1/projects/p/locations/europe-west1/operations/{}",
            op["name"].as_str().unwrap()
        ))
        .await;
    assert_eq!(done["status"], "DONE");
    assert_eq!(done["error"]["code"], 13);
    assert_eq!(
        fake.resource("projects/p/locations/europe-west1/clusters/gitpod")
            .unwrap()["status"],
        "ERROR"
    );
    fake.set_fail_operation(Some("sql.instances.insert".into()));
    let op = c
        .ok(
            "POST",
            "/v1/projects/p/instances",
            Some(json!({"name": "db", "settings": {"tier": "db-f1-micro"}})),
        )
        .await;
    let done = c
        .get(&format!(
            "/v1/projects/p/operations/{}",
            op["name"].as_str().unwrap()
        ))
        .await;
    assert_eq!(done["error"]["errors"][0]["code"], "INTERNAL_ERROR");
    fake.shutdown().await;
}

#[tokio::test]
async fn cloud_sql_serialises_operations_and_never_reuses_a_name() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(1)).await;
    let body =
        json!({"name": "sql-x", "region": "europe-west1", "settings": {"tier": "db-f1-micro"}});
    let op = c
        .ok("POST", "/v1/projects/p/instances", Some(body.clone()))
        .await;
    let (status, err) = c
        .call(
            "PATCH",
            "/v1/projects/p/instances/sql-x",
            Some(json!({"settings": {"tier": "db-g1-small"}})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["errors"][0]["reason"], "operationInProgress");
    c.get(&format!(
        "/v1/projects/p/operations/{}",
        op["name"].as_str().unwrap()
    ))
    .await;
    let inst = fake.resource("projects/p/instances/sql-x").unwrap();
    assert_eq!(inst["state"], "RUNNABLE");
    assert_eq!(inst["settings"]["dataDiskSizeGb"], "10");
    assert!(fake
        .resource("projects/p/instances/sql-x/users/root@%")
        .is_some());
    let op = c.ok("DELETE", "/v1/projects/p/instances/sql-x", None).await;
    c.get(&format!(
        "/v1/projects/p/operations/{}",
        op["name"].as_str().unwrap()
    ))
    .await;
    assert!(fake
        .resources()
        .keys()
        .all(|k| !k.starts_with("projects/p/instances/")));
    let (status, err) = c.call("POST", "/v1/projects/p/instances", Some(body)).await;
    assert_eq!(status, 409);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("reuse the name"));
    fake.shutdown().await;
}

#[tokio::test]
async fn mysql_5_7_databases_have_5_7_collations() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(0)).await;
    // 6 is MYSQL_5_7 as the official Rust clients send it.
    for (instance, version) in [("old", json!("MYSQL_5_7")), ("old-int", json!(6))] {
        c.ok(
            "POST",
            "/v1/projects/p/instances",
            Some(
                json!({"name": instance, "region": "europe-west1", "databaseVersion": version,
                "settings": {"tier": "db-n1-standard-2"}}),
            ),
        )
        .await;
        let ikey = format!("projects/p/instances/{instance}");
        let system = fake.resource(&format!("{ikey}/databases/mysql")).unwrap();
        assert_eq!(
            (&system["charset"], &system["collation"]),
            (&json!("utf8"), &json!("utf8_general_ci"))
        );
        let path = format!("/v1/projects/p/instances/{instance}/databases");
        c.ok(
            "POST",
            &path,
            Some(json!({"name": "gitpod", "charset": "utf8mb4"})),
        )
        .await;
        let db = fake.resource(&format!("{ikey}/databases/gitpod")).unwrap();
        assert_eq!(db["collation"], "utf8mb4_general_ci");
        let (status, err) = c
            .call(
                "POST",
                &path,
                Some(
                    json!({"name": "new", "charset": "utf8mb4", "collation": "utf8mb4_0900_ai_ci"}),
                ),
            )
            .await;
        assert_eq!(status, 400, "{err}");
        assert!(fake.resource(&format!("{ikey}/databases/new")).is_none());
    }
    // MySQL 8.0 keeps its own default.
    c.ok(
        "POST",
        "/v1/projects/p/instances",
        Some(
            json!({"name": "new", "region": "europe-west1", "databaseVersion": "MYSQL_8_0",
            "settings": {"tier": "db-n1-standard-2"}}),
        ),
    )
    .await;
    c.ok(
        "POST",
        "/v1/projects/p/instances/new/databases",
        Some(json!({"name": "gitpod"})),
    )
    .await;
    let db = fake
        .resource("projects/p/instances/new/databases/gitpod")
        .unwrap();
    assert_eq!(
        (&db["charset"], &db["collation"]),
        (&json!("utf8mb4"), &json!("utf8mb4_0900_ai_ci"))
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn node_auto_upgrade_can_be_off_only_without_a_release_channel() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(0)).await;
    let base = "/v1/projects/p/locations/europe-west1/clusters";
    let manual = json!({"autoUpgrade": false, "autoRepair": true});
    let pool = |name: &str, management: &Value| json!({"name": name, "initialNodeCount": 1, "management": management});
    // No releaseChannel means REGULAR (GKE's default), and so does an explicit channel,
    // by name or by number: auto-upgrade off is a 400 and nothing is stored.
    for rc in [
        None,
        Some(json!({"channel": "STABLE"})),
        Some(json!({"channel": 2})),
    ] {
        let mut cluster = json!({"name": "chan", "nodePools": [pool("np", &manual)]});
        if let Some(rc) = rc {
            cluster["releaseChannel"] = rc;
        }
        let (status, err) = c
            .call("POST", base, Some(json!({"cluster": cluster})))
            .await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        assert!(fake
            .resource("projects/p/locations/europe-west1/clusters/chan")
            .is_none());
    }
    // Auto-repair off is refused on a channel too.
    let no_repair = json!({"autoUpgrade": true});
    let (status, _) = c
        .call(
            "POST",
            base,
            Some(json!({"cluster": {"name": "chan", "nodePools": [pool("np", &no_repair)]}})),
        )
        .await;
    assert_eq!(status, 400);
    // Without a channel, auto-upgrade off is accepted ({} is UNSPECIFIED, as the
    // official Rust client sends it).
    for (name, rc) in [
        ("none", json!({"channel": "UNSPECIFIED"})),
        ("empty", json!({})),
    ] {
        c.ok(
            "POST",
            base,
            Some(json!({"cluster": {"name": name, "releaseChannel": rc,
                "nodePools": [pool("np", &manual)]}})),
        )
        .await;
        let np = fake
            .resource(&format!(
                "projects/p/locations/europe-west1/clusters/{name}/nodePools/np"
            ))
            .unwrap();
        assert_eq!(np["management"]["autoUpgrade"], false);
    }
    // A channel cluster refuses manual pools later, by create and by setManagement.
    c.ok(
        "POST",
        base,
        Some(json!({"cluster": {"name": "chan", "nodePools": [pool("np", &json!({"autoUpgrade": true, "autoRepair": true}))]}})),
    )
    .await;
    let (status, _) = c
        .call(
            "POST",
            &format!("{base}/chan/nodePools"),
            Some(json!({"nodePool": pool("manual", &manual)})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = c
        .call(
            "POST",
            &format!("{base}/chan/nodePools/np:setManagement"),
            Some(json!({"management": manual})),
        )
        .await;
    assert_eq!(status, 400);
    // Enrolling a cluster that has a manual pool is refused.
    let (status, _) = c
        .call(
            "PUT",
            &format!("{base}/none"),
            Some(json!({"update": {"desiredReleaseChannel": {"channel": "REGULAR"}}})),
        )
        .await;
    assert_eq!(status, 400);
    fake.shutdown().await;
}

#[tokio::test]
async fn unknown_machine_types_and_sql_tiers_are_400() {
    let (fake, c) = start(FakeConfig::default().with_polls_to_finish(0)).await;
    let base = "/v1/projects/p/locations/europe-west1/clusters";
    let cluster = |mt: &str| {
        json!({"cluster": {"name": "mt", "nodePools": [{"name": "np", "initialNodeCount": 1,
            "config": {"machineType": mt}}]}})
    };
    for bad in [
        "n2d-standard-5",
        "n9-standard-4",
        "e2-huge",
        "n2d-standard-1",
    ] {
        let (status, err) = c.call("POST", base, Some(cluster(bad))).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    assert!(fake
        .resource("projects/p/locations/europe-west1/clusters/mt")
        .is_none());
    c.ok("POST", base, Some(cluster("n2d-standard-4"))).await;
    for (verb, path, body) in [
        (
            "POST",
            format!("{base}/mt/nodePools"),
            json!({"nodePool": {"name": "big", "initialNodeCount": 1, "config": {"machineType": "n2d-standard-17"}}}),
        ),
        (
            "PUT",
            format!("{base}/mt/nodePools/np"),
            json!({"machineType": "n2d-giant-16"}),
        ),
    ] {
        let (status, err) = c.call(verb, &path, Some(body)).await;
        assert_eq!(status, 400, "{verb} {path}: {err}");
    }
    c.ok(
        "POST",
        &format!("{base}/mt/nodePools"),
        Some(json!({"nodePool": {"name": "big", "initialNodeCount": 1, "config": {"machineType": "n2d-standard-16"}}})),
    )
    .await;

    let instance = |name: &str, tier: &str| json!({"name": name, "region": "europe-west1", "settings": {"tier": tier}});
    for bad in [
        "db-n1-standard-3",
        "db-nope",
        "db-custom-2-100",
        "db-custom-3-8192",
    ] {
        let (status, err) = c
            .call(
                "POST",
                "/v1/projects/p/instances",
                Some(instance("sql-bad", bad)),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("Tier"));
    }
    assert!(fake.resource("projects/p/instances/sql-bad").is_none());
    for (i, good) in ["db-n1-standard-2", "db-custom-2-4096", "db-f1-micro"]
        .iter()
        .enumerate()
    {
        c.ok(
            "POST",
            "/v1/projects/p/instances",
            Some(instance(&format!("sql-{i}"), good)),
        )
        .await;
    }
    let (status, _) = c
        .call(
            "PATCH",
            "/v1/projects/p/instances/sql-0",
            Some(json!({"settings": {"tier": "db-n1-standard-5"}})),
        )
        .await;
    assert_eq!(status, 400);
    fake.shutdown().await;
}

#[tokio::test]
async fn faults_are_429_or_503_before_any_effect() {
    let (fake, c) = start(FakeConfig::default().with_fault_rate(1.0).with_seed(7)).await;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let (status, body) = c
            .call(
                "POST",
                "/v1/projects/p/serviceAccounts",
                Some(json!({"accountId": format!("account-{i}")})),
            )
            .await;
        assert!(status == 429 || status == 503, "{status}");
        let expected = if status == 429 {
            "RESOURCE_EXHAUSTED"
        } else {
            "UNAVAILABLE"
        };
        assert_eq!(body["error"]["status"], expected);
        assert_eq!(body["error"]["code"], status);
        seen.insert(status);
    }
    assert_eq!(seen.len(), 2);
    assert!(fake
        .resources()
        .keys()
        .all(|k| !k.contains("/serviceAccounts/")));
    let counts = fake.counts();
    assert_eq!((counts.faults, counts.mutating, counts.errors), (20, 20, 0));
    fake.set_fault_rate(0.0);
    c.ok(
        "POST",
        "/v1/projects/p/serviceAccounts",
        Some(json!({"accountId": "account-ok"})),
    )
    .await;
    fake.shutdown().await;
}

#[tokio::test]
async fn freeze_hangs_every_request_after_n_mutations() {
    let (fake, c) = start(FakeConfig::default()).await;
    fake.freeze_after_mutating(2);
    c.ok(
        "POST",
        "/v1/projects/p/serviceAccounts",
        Some(json!({"accountId": "account-1"})),
    )
    .await;
    c.get("/v1/projects/p/serviceAccounts").await;
    c.ok(
        "POST",
        "/v1/projects/p/serviceAccounts",
        Some(json!({"accountId": "account-2"})),
    )
    .await;
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        c.call("GET", "/v1/projects/p/serviceAccounts", None),
    )
    .await;
    assert!(hung.is_err(), "a request answered while frozen");
    let hung = tokio::time::timeout(
        Duration::from_millis(200),
        c.call(
            "POST",
            "/v1/projects/p/serviceAccounts",
            Some(json!({"accountId": "account-3"})),
        ),
    )
    .await;
    assert!(hung.is_err());
    assert!(fake
        .resource("projects/p/serviceAccounts/account-3@p.iam.gserviceaccount.com")
        .is_none());
    assert_eq!(fake.counts().mutating, 2);
    fake.unfreeze();
    c.get("/v1/projects/p/serviceAccounts").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(fake
        .resource("projects/p/serviceAccounts/account-3@p.iam.gserviceaccount.com")
        .is_none());
    assert_eq!(fake.counts().mutating, 2);
    // Freezing at once.
    fake.freeze_after_mutating(0);
    let hung = tokio::time::timeout(
        Duration::from_millis(100),
        c.call("GET", "/v3/projects/p", None),
    )
    .await;
    assert!(hung.is_err());
    fake.unfreeze();
    fake.shutdown().await;
}
