//! The GCP provider end to end, with Google's official clients, against the project's
//! stateful fake of the GCP control-plane APIs (`gitpod-refarch-fake-gcp`: no GCP
//! emulator exists for GKE, Cloud SQL, Cloud DNS, IAM or Resource Manager). The fake
//! speaks the published REST paths and JSON; these tests read what it recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitpod_refarch::state::{MemoryStateStore, StateStore as _};
use gitpod_refarch::ErrorKind;
use gitpod_refarch_fake_gcp::discovery::{validate_call, Discovery};
use gitpod_refarch_fake_gcp::{FakeConfig, FakeGcp};
use gitpod_refarch_gcp::{GcpConfig, GcpProvider};
use google_cloud_container_v1::model as container;
use google_cloud_sql_v1::model as sql;
use serde_json::Value;

mod common;

use common::{config, engine, fake, spec, PROJECT, REGION};

/// Resources the installation leaves behind (the project, its billing link, APIs and
/// IAM policy stay by design).
fn leftovers(f: &FakeGcp) -> Vec<String> {
    f.resources()
        .into_keys()
        .filter(|k| {
            [
                "/clusters/",
                "/instances/",
                "/managedZones/",
                "/serviceAccounts/",
                "/networks/",
                "/subnetworks/",
                "/repositories/",
            ]
            .iter()
            .any(|p| k.contains(p))
        })
        .collect()
}

fn sql_instances(f: &FakeGcp) -> Vec<(String, Value)> {
    f.resources()
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with(&format!("projects/{PROJECT}/instances/")) && k.matches('/').count() == 3
        })
        .collect()
}

fn bindings(f: &FakeGcp) -> BTreeSet<(String, String)> {
    let p = f.project_iam_policy(PROJECT).unwrap();
    let mut out = BTreeSet::new();
    for b in p["bindings"].as_array().cloned().unwrap_or_default() {
        for m in b["members"].as_array().cloned().unwrap_or_default() {
            out.insert((
                b["role"].as_str().unwrap().to_string(),
                m.as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// The official clients send enums as numbers (`enum-encoding=int`); the fake keeps
/// them as sent. Compare with the client's own enum either way.
fn is_enum(v: &Value, value: Option<i32>, name: Option<&str>) -> bool {
    match v {
        Value::Number(n) => n.as_i64() == value.map(i64::from),
        Value::String(s) => Some(s.as_str()) == name,
        // A zero enum is the default and may be left out.
        Value::Null => value == Some(0),
        _ => false,
    }
}

macro_rules! assert_enum {
    ($v:expr, $e:expr) => {{
        let e = $e;
        assert!(
            is_enum(&$v, e.value(), e.name()),
            "{} is {}, expected {:?}",
            stringify!($v),
            $v,
            e.name()
        );
    }};
}

fn sa(name: &str) -> String {
    format!("serviceAccount:{name}@{PROJECT}.iam.gserviceaccount.com")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_verify_reapply_and_destroy_on_the_fake() {
    let f = fake(FakeConfig::default().with_polls_to_finish(2)).await;
    let s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(GcpProvider::connect(config(&f.url())).await.unwrap());
    let e = engine(p, store.clone());
    f.reset_calls();

    let t = Instant::now();
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let apply_time = t.elapsed();
    let apply = f.counts();
    let mut sent = f.calls();

    // The cluster, as the guide sets it.
    let cl = f
        .resource(&format!(
            "projects/{PROJECT}/locations/{REGION}/clusters/gp"
        ))
        .expect("cluster");
    assert_enum!(
        cl["networkPolicy"]["provider"],
        container::network_policy::Provider::Calico
    );
    assert_eq!(cl["networkPolicy"]["enabled"], true);
    assert_eq!(cl["addonsConfig"]["dnsCacheConfig"]["enabled"], true);
    assert_ne!(
        cl["addonsConfig"]["horizontalPodAutoscaling"]["disabled"],
        true
    );
    assert_enum!(
        cl["networkConfig"]["datapathProvider"],
        container::DatapathProvider::LegacyDatapath
    );
    assert!(
        cl["releaseChannel"].is_object(),
        "a release channel of none is set explicitly"
    );
    assert_eq!(cl["ipAllocationPolicy"]["useIpAliases"], true);
    assert_eq!(
        cl["ipAllocationPolicy"]["clusterSecondaryRangeName"],
        "pods"
    );
    assert_eq!(cl["defaultMaxPodsConstraint"]["maxPodsPerNode"], "110");
    assert!(
        cl["currentMasterVersion"]
            .as_str()
            .unwrap()
            .starts_with("1.33."),
        "{}",
        cl["currentMasterVersion"]
    );
    assert_eq!(cl["resourceLabels"]["gitpod-installation"], "gp");
    let prefix = format!("projects/{PROJECT}/locations/{REGION}/clusters/gp/nodePools/");
    let pools: Vec<Value> = f
        .resources()
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
        .collect();
    let names: BTreeSet<&str> = pools.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["services", "regular-ws", "headless-ws"]),
        "the default pool is removed"
    );
    for (name, machine, disk, max, label) in [
        (
            "services",
            "n2d-standard-4",
            "100",
            4,
            "gitpod.io/workload_meta",
        ),
        (
            "regular-ws",
            "n2d-standard-16",
            "512",
            50,
            "gitpod.io/workload_workspace_regular",
        ),
        (
            "headless-ws",
            "n2d-standard-16",
            "512",
            50,
            "gitpod.io/workload_workspace_headless",
        ),
    ] {
        let p = pools.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(p["config"]["machineType"], machine, "{name}");
        assert_eq!(p["config"]["diskType"], "pd-ssd", "{name}");
        assert_eq!(p["config"]["diskSizeGb"].to_string(), disk, "{name}");
        assert_eq!(p["config"]["imageType"], "UBUNTU_CONTAINERD", "{name}");
        assert_eq!(p["config"]["labels"][label], "true", "{name}");
        assert_eq!(p["config"]["metadata"]["disable-legacy-endpoints"], "true");
        assert_eq!(
            p["config"]["serviceAccount"],
            format!("gke-sa-gp@{PROJECT}.iam.gserviceaccount.com")
        );
        assert_eq!(p["autoscaling"]["enabled"], true);
        assert_eq!(p["autoscaling"]["minNodeCount"], 1);
        assert_eq!(p["autoscaling"]["maxNodeCount"], max);
        assert_eq!(p["management"]["autoRepair"], true);
        assert_ne!(
            p["management"]["autoUpgrade"], true,
            "{name}: no auto-upgrade"
        );
    }
    let services = pools.iter().find(|p| p["name"] == "services").unwrap();
    for l in [
        "gitpod.io/workload_ide",
        "gitpod.io/workload_services",
        "gitpod.io/workload_workspace_services",
    ] {
        assert_eq!(services["config"]["labels"][l], "true");
    }

    // The network.
    let subnet = f
        .resource(&format!(
            "projects/{PROJECT}/regions/{REGION}/subnetworks/subnet-gp"
        ))
        .expect("subnetwork");
    assert_eq!(subnet["ipCidrRange"], "10.255.0.0/16");
    let ranges: Vec<(String, String)> = subnet["secondaryIpRanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rangeName"].as_str().unwrap().to_string(),
                r["ipCidrRange"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        ranges.contains(&("pods".into(), "10.0.0.0/12".into())),
        "{ranges:?}"
    );
    assert!(ranges.contains(&("services".into(), "10.64.0.0/12".into())));

    // Cloud SQL.
    let instances = sql_instances(&f);
    assert_eq!(instances.len(), 1, "{instances:?}");
    let (_, db) = &instances[0];
    assert!(db["name"].as_str().unwrap().starts_with("sql-gp-"));
    assert_enum!(db["databaseVersion"], sql::SqlDatabaseVersion::Mysql57);
    assert_eq!(db["settings"]["tier"], "db-n1-standard-2");
    assert_eq!(db["settings"]["dataDiskSizeGb"], "20");
    assert_enum!(db["settings"]["dataDiskType"], sql::SqlDataDiskType::PdSsd);
    assert_eq!(db["settings"]["storageAutoResize"], true);
    assert_enum!(
        db["settings"]["availabilityType"],
        sql::SqlAvailabilityType::Regional
    );
    assert_eq!(db["settings"]["backupConfiguration"]["enabled"], true);
    assert_eq!(
        db["settings"]["backupConfiguration"]["binaryLogEnabled"],
        true
    );
    let flags = db["settings"]["databaseFlags"].as_array().unwrap();
    assert!(flags
        .iter()
        .any(|f| f["name"] == "explicit_defaults_for_timestamp" && f["value"] == "off"));
    let instance = db["name"].as_str().unwrap().to_string();
    assert!(f
        .resource(&format!(
            "projects/{PROJECT}/instances/{instance}/databases/gitpod"
        ))
        .is_some());

    // IAM bindings.
    let b = bindings(&f);
    for role in [
        "roles/storage.admin",
        "roles/logging.logWriter",
        "roles/monitoring.metricWriter",
        "roles/container.admin",
    ] {
        assert!(b.contains(&(role.into(), sa("gke-sa-gp"))), "{role}");
    }
    assert!(b.contains(&("roles/dns.admin".into(), sa("dns-sa-gp"))));
    assert!(b.contains(&("roles/storage.admin".into(), sa("obj-sa-gp"))));
    assert!(b.contains(&("roles/storage.objectAdmin".into(), sa("obj-sa-gp"))));
    assert!(b.contains(&("roles/cloudsql.client".into(), sa("db-sa-gp"))));

    // DNS zone and records; Artifact Registry.
    let zone = f
        .resource(&format!("projects/{PROJECT}/managedZones/zone-gp"))
        .expect("zone");
    assert_eq!(zone["dnsName"], "gitpod.example.com.");
    let repo = f
        .resource(&format!(
            "projects/{PROJECT}/locations/{REGION}/repositories/gitpod"
        ))
        .expect("repository");
    assert_enum!(
        repo["format"],
        google_cloud_artifactregistry_v1::model::repository::Format::Docker
    );

    // The outputs fill the installer's GCP sections and secrets.
    let bundle = e.installer_bundle(&s).await.unwrap();
    let config = bundle.config_yaml().unwrap();
    assert!(
        config.contains(&format!("instance: {PROJECT}:{REGION}:{instance}")),
        "{config}"
    );
    assert!(config.contains("cloudStorage"), "{config}");
    let cloudsql = bundle.secret("cloudsql").expect("cloudsql secret");
    let creds: Value = serde_json::from_str(cloudsql.data["credentials.json"].expose()).unwrap();
    assert_eq!(
        creds["client_email"],
        format!("db-sa-gp@{PROJECT}.iam.gserviceaccount.com")
    );
    assert_eq!(cloudsql.data["username"].expose(), "gitpod");
    assert!(bundle.secret("storage-gcp").is_some());
    let outputs = e.outputs("gp").await.unwrap();
    assert_eq!(outputs.name_servers().map(<[String]>::len), Some(4));

    // Re-apply: nothing to do, no mutating call.
    f.reset_calls();
    let t = Instant::now();
    let again = e.apply_spec(&s).await.unwrap();
    let reapply_time = t.elapsed();
    assert!(again.is_success(), "{:#?}", again.failed);
    assert!(again.changed.is_empty(), "{:?}", again.changed);
    let reapply = f.counts();
    assert_eq!(reapply.mutating, 0, "{:?}", reapply.per_method);
    sent.extend(f.calls());

    // Destroy: nothing left, and again is a no-op.
    f.reset_calls();
    let t = Instant::now();
    let gone = e.destroy(&s).await.unwrap();
    let destroy_time = t.elapsed();
    assert!(gone.is_success(), "{:#?}", gone.failed);
    let destroy = f.counts();
    sent.extend(f.calls());
    assert_eq!(leftovers(&f), Vec::<String>::new());
    let b = bindings(&f);
    assert!(
        !b.iter()
            .any(|(_, m)| m.ends_with(&format!("-gp@{PROJECT}.iam.gserviceaccount.com"))),
        "{b:?}"
    );
    f.reset_calls();
    let twice = e.destroy(&s).await.unwrap();
    assert!(twice.is_success(), "{:#?}", twice.failed);
    assert_eq!(f.counts().mutating, 0);
    println!(
        "apply {apply_time:?} ({} reads, {} mutating, {} polls); re-apply {reapply_time:?} \
         ({} reads, {} mutating); destroy {destroy_time:?} ({} reads, {} mutating, {} polls)",
        apply.reads,
        apply.mutating,
        apply.polls,
        reapply.reads,
        reapply.mutating,
        destroy.reads,
        destroy.mutating,
        destroy.polls
    );
    println!("apply calls per method: {:?}", apply.per_method);
    let mut polls: std::collections::BTreeMap<String, u32> = Default::default();
    for c in sent
        .iter()
        .filter(|c| c.kind == gitpod_refarch_fake_gcp::CallKind::Poll)
    {
        *polls.entry(c.path.clone()).or_default() += 1;
    }
    let max = polls.values().max().copied().unwrap_or_default();
    let total: u32 = polls.values().sum();
    println!(
        "operations polled: {} (apply+destroy), polls per operation: mean {:.2}, max {max}",
        polls.len(),
        f64::from(total) / polls.len().max(1) as f64
    );

    // Every request the SDK sent (and every answer) matches the official discovery
    // documents: verb, path template, query parameters, request and response schemas.
    let discovery = Discovery::load_default().unwrap();
    let mut methods = BTreeSet::new();
    let mut problems = Vec::new();
    for call in &sent {
        methods.insert(call.method.clone());
        for p in validate_call(&discovery, call) {
            problems.push(format!(
                "{} {} {}: {p}",
                call.method, call.http_method, call.path
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        !methods.contains("unknown"),
        "a call no discovery method serves"
    );
    println!(
        "{} calls of {} methods validated against the discovery documents",
        sent.len(),
        methods.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_throttling_and_unavailability_converge_without_duplicates() {
    let f = fake(FakeConfig::default().with_seed(7)).await;
    let s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(GcpProvider::connect(config(&f.url())).await.unwrap());
    let e = engine(p, store);
    f.set_fault_rate(0.2);
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let faults = f.counts().faults;
    assert!(faults > 5, "faults were injected: {faults}");
    assert_eq!(sql_instances(&f).len(), 1, "one instance despite retries");
    let keys = f
        .resources()
        .into_keys()
        .filter(|k| k.contains("/keys/"))
        .count();
    assert_eq!(keys, 4, "one key per service account that needs one");
    let gone = e.destroy(&s).await.unwrap();
    assert!(gone.is_success(), "{:#?}", gone.failed);
    f.set_fault_rate(0.0);
    assert_eq!(leftovers(&f), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_after_any_mutating_call_resumes_and_converges() {
    let s = spec();
    for k in [1u64, 3, 7, 12, 20, 30] {
        // Operations finish by wall time, as on GCP, whether or not anyone polls them.
        let f = fake(
            FakeConfig::default()
                .with_seed(k)
                .with_op_delay(Some(Duration::from_millis(30))),
        )
        .await;
        let store = Arc::new(MemoryStateStore::new());
        let p = Arc::new(GcpProvider::connect(config(&f.url())).await.unwrap());
        f.freeze_after_mutating(k);
        let e = engine(p.clone(), store.clone());
        // The process "dies": the apply never returns, its future is dropped.
        let killed = tokio::time::timeout(Duration::from_secs(3), e.apply_spec(&s)).await;
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
        let e = engine(p, store);
        let report = e.apply_spec(&s).await.unwrap();
        assert!(report.is_success(), "k={k}: {:#?}", report.failed);
        assert_eq!(sql_instances(&f).len(), 1, "k={k}");
        f.reset_calls();
        let again = e.apply_spec(&s).await.unwrap();
        assert!(again.is_success());
        assert_eq!(f.counts().mutating, 0, "k={k}: {:?}", f.counts().per_method);
        let gone = e.destroy(&s).await.unwrap();
        assert!(gone.is_success(), "k={k}: {:#?}", gone.failed);
        assert_eq!(leftovers(&f), Vec::<String>::new(), "k={k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cluster_operation_is_reported_and_a_rerun_converges() {
    let f = fake(FakeConfig::default().with_fail_operation(Some("CREATE_NODE_POOL".into()))).await;
    let s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(GcpProvider::connect(config(&f.url())).await.unwrap());
    let e = engine(p, store);
    let report = e.apply_spec(&s).await.unwrap();
    assert!(!report.is_success());
    let (id, err) = &report.failed[0];
    assert_eq!(id.kind.as_str(), "node-pool");
    assert_eq!(err.kind(), ErrorKind::OperationFailed, "{err}");
    f.set_fail_operation(None);
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_unreachable_endpoints_fail_before_any_change() {
    let f = fake(FakeConfig::default()).await;
    f.reset_calls();
    let e = GcpProvider::connect(GcpConfig::new("Not_A_Project", REGION).endpoint_url(f.url()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = GcpProvider::connect(GcpConfig::new(PROJECT, REGION).endpoint_url("ftp://x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(f.calls().len(), 0, "no call for bad input");
    let e = GcpProvider::connect(GcpConfig::new("someone-elses", REGION).endpoint_url(f.url()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
    assert_eq!(f.counts().mutating, 0);
    // Nothing listens on port 9 of localhost.
    let t = Instant::now();
    let e = GcpProvider::connect(config("http://127.0.0.1:9"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.message().contains("cannot reach"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gke_rejects_a_second_operation_on_a_cluster_as_operation_in_progress() {
    use gitpod_refarch::plan::graph;
    use gitpod_refarch::provider::{Inputs, Progress};
    use gitpod_refarch::resource::ClusterResource;
    use gitpod_refarch::ClusterProvider;

    // Operations finish by wall time, as on GCP (the one started below is never polled).
    let f = fake(FakeConfig::default().with_op_delay(Some(Duration::from_millis(50)))).await;
    let s = spec();
    let p = Arc::new(GcpProvider::connect(config(&f.url())).await.unwrap());
    let e = engine(p.clone(), Arc::new(MemoryStateStore::new()));
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    // Bypass the engine's serial lane: change two pools' bounds at once.
    let mut pools: Vec<ClusterResource> = graph(&s)
        .into_iter()
        .filter_map(|n| ClusterResource::try_from(n.desired).ok())
        .filter(|d| matches!(d, ClusterResource::NodePool(_)))
        .collect();
    for d in &mut pools {
        if let ClusterResource::NodePool(p) = d {
            p.max_nodes += 1;
        }
    }
    let first = ClusterProvider::ensure(p.as_ref(), &pools[0], &Inputs::default())
        .await
        .unwrap();
    assert!(matches!(first, Progress::Pending(_)), "{first:?}");
    let second = ClusterProvider::ensure(p.as_ref(), &pools[1], &Inputs::default())
        .await
        .unwrap_err();
    assert_eq!(second.kind(), ErrorKind::OperationInProgress, "{second}");
    assert!(second.is_retryable());
    // Through the engine (one lane, retried), the change converges.
    let mut wider = s.clone();
    wider.node_pools.services.max_nodes = 6;
    wider.node_pools.regular_workspaces.max_nodes = 60;
    let report = e.apply_spec(&wider).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let pool = f
        .resource(&format!(
            "projects/{PROJECT}/locations/{REGION}/clusters/gp/nodePools/regular-ws"
        ))
        .unwrap();
    assert_eq!(pool["autoscaling"]["maxNodeCount"], 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_project_is_created_linked_to_billing_and_prepared() {
    // No project exists in this fake.
    let f = FakeGcp::start(FakeConfig::default().with_projects(Vec::<String>::new()))
        .await
        .unwrap();
    let mut s = spec();
    let g = s.gcp.as_mut().unwrap();
    g.create_project = true;
    g.billing_account = Some("012345-6789AB-CDEF01".into());
    s.validate().unwrap();
    let cfg = GcpConfig::for_spec(&s)
        .unwrap()
        .endpoint_url(f.url())
        .poll_interval(Duration::from_millis(5));
    let p = Arc::new(GcpProvider::connect(cfg).await.unwrap());
    let e = engine(p, Arc::new(MemoryStateStore::new()));
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let c = f.counts();
    assert_eq!(
        c.per_method.get("cloudresourcemanager.projects.create"),
        Some(&1)
    );
    assert_eq!(
        c.per_method.get("cloudbilling.projects.updateBillingInfo"),
        Some(&1)
    );
    assert_eq!(
        c.per_method.get("serviceusage.services.batchEnable"),
        Some(&1)
    );
    let project = f.resource(&format!("projects/{PROJECT}")).expect("project");
    assert_eq!(project["labels"]["gitpod-installation"], "gp");
    f.reset_calls();
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    assert_eq!(f.counts().mutating, 0, "{:?}", f.counts().per_method);
    // Destroy leaves the project, its billing link and APIs.
    assert!(e.destroy(&s).await.unwrap().is_success());
    assert!(f.resource(&format!("projects/{PROJECT}")).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcr_io_is_an_option_with_a_storage_admin_push_account() {
    use gitpod_refarch::resource::RegistryOutput;
    use gitpod_refarch_gcp::GcpRegistry;
    let f = fake(FakeConfig::default()).await;
    let s = spec();
    let p = Arc::new(
        GcpProvider::connect(config(&f.url()).registry(GcpRegistry::Gcr))
            .await
            .unwrap(),
    );
    let e = engine(p, Arc::new(MemoryStateStore::new()));
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    let outputs = e.outputs("gp").await.unwrap();
    match outputs.registry() {
        Some(RegistryOutput::External {
            url,
            server,
            username,
            password,
        }) => {
            assert_eq!(url, &format!("gcr.io/{PROJECT}"));
            assert_eq!(server, "gcr.io");
            assert_eq!(username, "_json_key");
            let key: Value = serde_json::from_str(password.expose()).unwrap();
            assert_eq!(
                key["client_email"],
                format!("reg-sa-gp@{PROJECT}.iam.gserviceaccount.com")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!f.resources().keys().any(|k| k.contains("/repositories/")));
    assert!(bindings(&f).contains(&("roles/storage.admin".into(), sa("reg-sa-gp"))));
    assert!(e.destroy(&s).await.unwrap().is_success());
    assert_eq!(leftovers(&f), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_needs_no_dns_key() {
    let f = fake(FakeConfig::default()).await;
    let mut s = spec();
    s.gcp.as_mut().unwrap().workload_identity = true;
    let p = Arc::new(
        GcpProvider::connect(
            GcpConfig::for_spec(&s)
                .unwrap()
                .endpoint_url(f.url())
                .poll_interval(Duration::from_millis(5)),
        )
        .await
        .unwrap(),
    );
    let e = engine(p, Arc::new(MemoryStateStore::new()));
    // The pool exists only once the cluster does: the DNS identity waits for it
    // (classified as a propagation delay and retried).
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let cl = f
        .resource(&format!(
            "projects/{PROJECT}/locations/{REGION}/clusters/gp"
        ))
        .unwrap();
    assert_eq!(
        cl["workloadIdentityConfig"]["workloadPool"],
        format!("{PROJECT}.svc.id.goog")
    );
    let email = format!("dns-sa-gp@{PROJECT}.iam.gserviceaccount.com");
    let policy = f.service_account_iam_policy(PROJECT, &email).unwrap();
    let members: Vec<&str> = policy["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["role"] == "roles/iam.workloadIdentityUser")
        .flat_map(|b| {
            b["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap())
        })
        .collect();
    assert_eq!(
        members.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            format!("serviceAccount:{PROJECT}.svc.id.goog[cert-manager/cert-manager]").as_str(),
            format!("serviceAccount:{PROJECT}.svc.id.goog[external-dns/external-dns]").as_str(),
        ])
    );
    assert!(e.outputs("gp").await.unwrap().dns_credentials().is_none());
    let dns_keys = f
        .resources()
        .into_keys()
        .filter(|k| k.contains(&format!("/serviceAccounts/{email}/keys/")))
        .count();
    assert_eq!(dns_keys, 0, "no key for the DNS account");
    f.reset_calls();
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    assert_eq!(f.counts().mutating, 0, "{:?}", f.counts().per_method);
    assert!(e.destroy(&s).await.unwrap().is_success());
    assert_eq!(leftovers(&f), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_upgrade_moves_the_control_plane_then_the_pools() {
    let f = fake(FakeConfig::default()).await;
    let s = spec();
    let p = Arc::new(GcpProvider::connect(config(&f.url())).await.unwrap());
    let e = engine(p, Arc::new(MemoryStateStore::new()));
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    let mut newer = s.clone();
    newer.cluster.kubernetes_version = "1.34".into();
    let plan = e.plan(&newer).await.unwrap();
    println!("{plan}");
    assert!(plan.to_string().matches("update").count() >= 4, "{plan}");
    f.reset_calls();
    let report = e.apply_spec(&newer).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let calls: Vec<String> = f
        .calls()
        .into_iter()
        .filter(|c| c.kind == gitpod_refarch_fake_gcp::CallKind::Mutate)
        .map(|c| c.method)
        .collect();
    assert_eq!(
        calls.first().map(String::as_str),
        Some("container.projects.locations.clusters.update"),
        "{calls:?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|m| *m == "container.projects.locations.clusters.nodePools.update")
            .count(),
        3,
        "{calls:?}"
    );
    let cl = f
        .resource(&format!(
            "projects/{PROJECT}/locations/{REGION}/clusters/gp"
        ))
        .unwrap();
    assert!(
        cl["currentMasterVersion"]
            .as_str()
            .unwrap()
            .starts_with("1.34"),
        "{}",
        cl["currentMasterVersion"]
    );
    let pool = f
        .resource(&format!(
            "projects/{PROJECT}/locations/{REGION}/clusters/gp/nodePools/services"
        ))
        .unwrap();
    assert!(
        pool["version"].as_str().unwrap().starts_with("1.34"),
        "{}",
        pool["version"]
    );
    f.reset_calls();
    assert!(e.apply_spec(&newer).await.unwrap().is_success());
    assert_eq!(f.counts().mutating, 0, "{:?}", f.counts().per_method);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_installations_in_one_project_keep_each_others_iam_bindings() {
    // Both write the project IAM policy at once: the etag read-modify-write retries
    // the loser, and no binding is lost.
    let f = fake(FakeConfig::default()).await;
    let a = spec();
    let mut b = spec();
    b.name = "gq".into();
    b.domain = "gq.example.com".into();
    // A repository name is per project: the second installation needs its own (the
    // same name would be refused as another installation's).
    b.registry.cloud_mut().unwrap().repository = "gitpod-gq".into();
    b.validate().unwrap();
    let p = Arc::new(GcpProvider::connect(config(&f.url())).await.unwrap());
    let ea = engine(p.clone(), Arc::new(MemoryStateStore::new()));
    let eb = engine(p, Arc::new(MemoryStateStore::new()));
    let (ra, rb) = tokio::join!(ea.apply_spec(&a), eb.apply_spec(&b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.is_success(), "{:#?}", ra.failed);
    assert!(rb.is_success(), "{:#?}", rb.failed);
    let conflicts = f
        .calls()
        .iter()
        .filter(|c| c.method == "cloudresourcemanager.projects.setIamPolicy" && c.status == 409)
        .count();
    println!("setIamPolicy conflicts retried: {conflicts}");
    let bs = bindings(&f);
    for who in ["gp", "gq"] {
        for (role, account) in [
            ("roles/container.admin", "gke-sa"),
            ("roles/dns.admin", "dns-sa"),
            ("roles/storage.objectAdmin", "obj-sa"),
            ("roles/cloudsql.client", "db-sa"),
        ] {
            assert!(
                bs.contains(&(role.into(), sa(&format!("{account}-{who}")))),
                "{role} for {account}-{who}: {bs:?}"
            );
        }
    }
    assert!(ea.destroy(&a).await.unwrap().is_success());
    assert!(bindings(&f).contains(&("roles/container.admin".into(), sa("gke-sa-gq"))));
    assert!(eb.destroy(&b).await.unwrap().is_success());
    assert_eq!(leftovers(&f), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_the_spec_cannot_express_is_planned_with_its_reasons_and_repaired() {
    use gitpod_refarch::plan::Action;
    use gitpod_refarch::resource::{ResourceId, ResourceKind};
    use gitpod_refarch_gcp::iam;

    let f = fake(FakeConfig::default()).await;
    let s = spec();
    let p = Arc::new(GcpProvider::connect(config(&f.url())).await.unwrap());
    let e = engine(p.clone(), Arc::new(MemoryStateStore::new()));
    assert!(e.apply_spec(&s).await.unwrap().is_success());
    // Someone revokes a role of the node account and deletes one record.
    let c = p.context();
    iam::set_project_roles(
        c,
        &iam::member(c, "gke-sa-gp"),
        &["roles/container.admin"],
        false,
    )
    .await
    .unwrap();
    c.clients
        .rrsets
        .delete()
        .set_project(PROJECT)
        .set_managed_zone("zone-gp")
        .set_name("*.ws.gitpod.example.com.")
        .set_type("A")
        .send()
        .await
        .unwrap();

    let plan = e.plan(&s).await.unwrap();
    println!("{plan}");
    let reasons = |kind: ResourceKind, name: &str| match &plan
        .step(&ResourceId::new(kind, name))
        .unwrap()
        .action
    {
        Action::Update { changes, reasons } if changes.is_empty() => reasons.join("; "),
        other => panic!("{kind:?}: {other:?}"),
    };
    let identity = reasons(ResourceKind::ClusterIdentity, "gp");
    assert!(
        identity.contains("gke-sa-gp") && identity.contains("lacks roles/container.admin"),
        "{identity}"
    );
    let records = reasons(ResourceKind::DnsRecords, "gitpod.example.com");
    assert!(
        records.contains("*.ws.gitpod.example.com. A is missing"),
        "{records}"
    );

    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    assert!(bindings(&f).contains(&("roles/container.admin".into(), sa("gke-sa-gp"))));
    assert!(f
        .resource(&format!(
            "projects/{PROJECT}/managedZones/zone-gp/rrsets/*.ws.gitpod.example.com./A"
        ))
        .is_some());
    f.reset_calls();
    let again = e.apply_spec(&s).await.unwrap();
    assert!(again.changed.is_empty(), "{:?}", again.changed);
    assert_eq!(f.counts().mutating, 0, "{:?}", f.counts().per_method);
}
