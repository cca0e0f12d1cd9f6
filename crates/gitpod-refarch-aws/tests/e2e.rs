//! The AWS provider end to end against a real moto server (through a counting,
//! fault-injecting proxy), with the official AWS SDK.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unused_must_use
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use gitpod_refarch::engine::{RetryPolicy, WaitPolicy};
use gitpod_refarch::spec::{Cloud, PoolRole, RecordsTarget, ReferenceArchitecture};
use gitpod_refarch::state::{MemoryStateStore, StateStore as _};
use gitpod_refarch::{Engine, ErrorKind, Providers, Secret};
use gitpod_refarch_aws::{AwsConfig, AwsProvider};
use support::{leaks, sdk_config, FaultProxy, Moto};

fn spec() -> ReferenceArchitecture {
    ReferenceArchitecture::builder(Cloud::Aws)
        .name("gp")
        .domain("gitpod.example.com")
        .acme_email("ops@example.com")
        .records_target(RecordsTarget::Ipv4("203.0.113.10".into()))
        .build()
        .unwrap()
}

fn config(url: &str) -> AwsConfig {
    AwsConfig::new("eu-west-1")
        .endpoint_url(url)
        .static_credentials("testing", Secret::new("testing".into()))
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(5))
        .poll_interval(Duration::from_millis(20))
}

fn engine(p: Arc<AwsProvider>, store: Arc<MemoryStateStore>) -> Engine {
    Engine::builder(Providers::all(p))
        .state(store)
        .retry(RetryPolicy::local())
        .wait(WaitPolicy::local())
        .build()
        .unwrap()
}

async fn start() -> (Moto, FaultProxy) {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.url).await;
    (moto, proxy)
}

async fn count_vpcs(sdk: &aws_config::SdkConfig) -> usize {
    aws_sdk_ec2::Client::new(sdk)
        .describe_vpcs()
        .filters(
            Filter::builder()
                .name("tag:gitpod-installation")
                .values("gp")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .vpcs()
        .len()
}

async fn count_zones(sdk: &aws_config::SdkConfig) -> usize {
    aws_sdk_route53::Client::new(sdk)
        .list_hosted_zones()
        .send()
        .await
        .unwrap()
        .hosted_zones()
        .iter()
        .filter(|z| z.name() == "gitpod.example.com.")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_verify_reapply_and_destroy_against_moto() {
    let (moto, proxy) = start().await;
    let s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(AwsProvider::connect(config(&proxy.url)).await.unwrap());
    let e = engine(p.clone(), store.clone());
    proxy.reset_counts();

    let t = Instant::now();
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let apply_time = t.elapsed();
    let apply = proxy.counts();

    // Verify every setting through the SDK's own describe calls, straight to moto.
    let sdk = sdk_config(&moto.url).await;
    let eks = aws_sdk_eks::Client::new(&sdk);
    let cluster = eks.describe_cluster().name("gp").send().await.unwrap();
    let cluster = cluster.cluster().unwrap();
    assert_eq!(cluster.version(), Some("1.33"));
    for (role, machine, min, max, disk) in [
        (PoolRole::Services, "m6i.xlarge", 1, 4, 100),
        (PoolRole::RegularWorkspaces, "m6i.4xlarge", 1, 50, 512),
        (PoolRole::HeadlessWorkspaces, "m6i.4xlarge", 1, 50, 512),
    ] {
        let ng = eks
            .describe_nodegroup()
            .cluster_name("gp")
            .nodegroup_name(role.short_name())
            .send()
            .await
            .unwrap();
        let ng = ng.nodegroup().unwrap();
        assert_eq!(ng.instance_types(), [machine.to_string()]);
        let sc = ng.scaling_config().unwrap();
        assert_eq!((sc.min_size(), sc.max_size()), (Some(min), Some(max)));
        let labels = ng.labels().unwrap();
        for l in role.required_labels() {
            assert_eq!(
                labels.get(*l).map(String::as_str),
                Some("true"),
                "{role:?} lacks {l}"
            );
        }
        assert_eq!(
            ng.ami_type().map(|a| a.as_str()),
            Some("AL2023_x86_64_STANDARD")
        );
        let tags = ng.tags().unwrap();
        assert_eq!(
            tags.get("k8s.io/cluster-autoscaler/gp").map(String::as_str),
            Some("owned")
        );
        let lt = aws_sdk_ec2::Client::new(&sdk)
            .describe_launch_template_versions()
            .launch_template_name(format!("gp-{}", role.short_name()))
            .send()
            .await
            .unwrap();
        let data = lt.launch_template_versions()[0]
            .launch_template_data()
            .unwrap();
        let ebs = data.block_device_mappings()[0].ebs().unwrap();
        assert_eq!(ebs.volume_size(), Some(disk));
        assert_eq!(ebs.volume_type().map(|v| v.as_str()), Some("gp3"));
        assert_eq!(ebs.encrypted(), Some(true));
    }

    let rds = aws_sdk_rds::Client::new(&sdk);
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("gp-mysql")
        .send()
        .await
        .unwrap();
    let db = &db.db_instances()[0];
    assert_eq!(db.engine(), Some("mysql"));
    assert_eq!(db.db_name(), Some("gitpod"));
    assert_eq!(db.master_username(), Some("gitpod"));
    assert_eq!(db.multi_az(), Some(true));
    assert_eq!(db.storage_encrypted(), Some(true));
    assert_eq!(db.backup_retention_period(), Some(7));
    assert_eq!(db.db_instance_class(), Some("db.m5.large"));
    let params = rds
        .describe_db_parameters()
        .db_parameter_group_name("gp-mysql57")
        .send()
        .await
        .unwrap();
    let p_edft = params
        .parameters()
        .iter()
        .find(|p| p.parameter_name() == Some("explicit_defaults_for_timestamp"))
        .unwrap();
    assert_eq!(p_edft.parameter_value(), Some("0"));
    assert!(db
        .vpc_security_groups()
        .iter()
        .any(|g| g.vpc_security_group_id().is_some()));

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("gp-gitpod-{}-eu-west-1", p.context().account);
    // Versioning, by behaviour (moto 5.2.1's GetBucketVersioning answer does not parse):
    // two writes of one key keep two versions.
    for body in ["one", "two"] {
        s3.put_object()
            .bucket(&bucket)
            .key("probe")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let versions = s3
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 2, "versioning is off");
    let enc = s3
        .get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let pab = s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (pab.block_public_acls(), pab.restrict_public_buckets()),
        (Some(true), Some(true))
    );

    // Least privilege: the storage user reaches its bucket only; the DNS user its zone only.
    let iam = aws_sdk_iam::Client::new(&sdk);
    let pol = iam
        .get_user_policy()
        .user_name("gp-storage")
        .policy_name("gp-storage")
        .send()
        .await
        .unwrap();
    let doc = pol.policy_document();
    assert!(doc.contains(&bucket), "{doc}");
    assert!(
        !doc.contains("\"*\"") && !doc.contains("%22%2A%22"),
        "{doc}"
    );
    assert!(iam
        .list_attached_user_policies()
        .user_name("gp-storage")
        .send()
        .await
        .unwrap()
        .attached_policies()
        .is_empty());
    let zone_id = match report.outputs.all().values().find_map(|o| match o {
        gitpod_refarch::resource::Output::DnsZone { zone_id, .. } => Some(zone_id.clone()),
        _ => None,
    }) {
        Some(z) => z,
        None => panic!("no zone output"),
    };
    let pol = iam
        .get_user_policy()
        .user_name("gp-dns")
        .policy_name("gp-dns")
        .send()
        .await
        .unwrap();
    assert!(pol.policy_document().contains(&zone_id));
    assert!(
        !pol.policy_document().contains("hostedzone/*")
            && !pol.policy_document().contains("hostedzone%2F%2A")
    );
    let attached = iam
        .list_attached_role_policies()
        .role_name("gp-eks-node")
        .send()
        .await
        .unwrap();
    assert_eq!(attached.attached_policies().len(), 3);
    assert_eq!(report.outputs.name_servers().map(<[String]>::len), Some(4));

    // Records (A, to the target) exist, once each.
    let r53 = aws_sdk_route53::Client::new(&sdk);
    let sets = r53
        .list_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .send()
        .await
        .unwrap();
    let cnames: Vec<String> = sets
        .resource_record_sets()
        .iter()
        .filter(|s| s.r#type().as_str() == "A")
        .map(|s| s.name().to_string())
        .collect();
    assert_eq!(cnames.len(), 3, "{cnames:?}");

    // The installer output.
    let bundle = e.installer_bundle(&s).await.unwrap();
    assert!(bundle.config["database"]["external"].is_object());
    assert_eq!(bundle.config["containerRegistry"]["inCluster"], true);
    assert!(
        bundle.secret("storage-s3").is_some()
            && bundle.secret("container-registry-s3-backend").is_some()
    );
    let host = bundle.secret("database").unwrap().data["host"]
        .expose()
        .clone();
    assert!(host.contains("gp-mysql"), "{host}");

    // Apply again: no mutating call.
    proxy.reset_counts();
    let t = Instant::now();
    let plan = e.plan(&s).await.unwrap();
    assert!(!plan.has_changes(), "{plan}");
    e.apply(&plan).await.unwrap().into_result().unwrap();
    let reapply_time = t.elapsed();
    let reapply = proxy.counts();
    assert_eq!(reapply.mutating, 0, "{:?}", reapply.by_action);

    // Destroy: nothing left.
    proxy.reset_counts();
    let t = Instant::now();
    let report = e.destroy(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let destroy_time = t.elapsed();
    let destroy = proxy.counts();
    let left = leaks(&sdk).await;
    assert!(left.is_empty(), "leaked: {left:#?}");
    // And again: safe.
    e.destroy(&s).await.unwrap().into_result().unwrap();

    println!(
        "metric: moto apply {:.2}s ({} reads, {} mutating); re-apply {:.2}s ({} reads, 0 mutating); destroy {:.2}s ({} reads, {} mutating)",
        apply_time.as_secs_f64(),
        apply.reads,
        apply.mutating,
        reapply_time.as_secs_f64(),
        reapply.reads,
        destroy_time.as_secs_f64(),
        destroy.reads,
        destroy.mutating
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_faults_still_converge_without_duplicates() {
    let (moto, proxy) = start().await;
    let s = spec();
    let store = Arc::new(MemoryStateStore::new());
    let p = Arc::new(AwsProvider::connect(config(&proxy.url)).await.unwrap());
    let e = engine(p, store.clone());
    proxy.set_fault_rate(0.2, 42);
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    let injected = proxy.counts().injected;
    assert!(injected > 5, "only {injected} faults injected");
    proxy.clear_faults();
    let sdk = sdk_config(&moto.url).await;
    assert_eq!(count_vpcs(&sdk).await, 1);
    assert_eq!(count_zones(&sdk).await, 1);
    assert!(!e.plan(&s).await.unwrap().has_changes());
    proxy.set_fault_rate(0.2, 43);
    let report = e.destroy(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    proxy.clear_faults();
    let left = leaks(&sdk).await;
    assert!(left.is_empty(), "leaked: {left:#?}");
    println!("metric: moto with 20% faults: {injected} injected, converged, nothing leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_part_way_resumes_and_nothing_leaks() {
    let (moto, proxy) = start().await;
    let s = spec();
    let sdk = sdk_config(&moto.url).await;
    for k in [1u64, 4, 9, 17, 30, 45] {
        moto.reset().await;
        let store = Arc::new(MemoryStateStore::new());
        let p = Arc::new(AwsProvider::connect(config(&proxy.url)).await.unwrap());
        proxy.freeze_at_mutating(k);
        let e = engine(p.clone(), store.clone());
        let s2 = s.clone();
        let run = tokio::spawn(async move { e.apply_spec(&s2).await.map(|r| r.is_success()) });
        tokio::select! {
            () = proxy.frozen() => run.abort(),
            r = tokio::time::sleep(Duration::from_secs(60)) => panic!("k={k}: the freeze never happened {r:?}"),
        }
        let _ = run.await;
        // The killed run's lock stays (as a killed process leaves it): broken on purpose.
        let held = store
            .current_lock()
            .await
            .unwrap()
            .expect("the killed run's lock");
        assert_eq!(held.operation, "apply");
        store.break_lock(&held.id).await.unwrap();
        proxy.clear_faults();
        let e = engine(p, store);
        let report = e.apply_spec(&s).await.unwrap();
        assert!(
            report.is_success(),
            "k={k}: resume failed: {:#?}",
            report.failed
        );
        assert_eq!(count_vpcs(&sdk).await, 1, "k={k}");
        assert_eq!(count_zones(&sdk).await, 1, "k={k}");
        assert!(!e.plan(&s).await.unwrap().has_changes(), "k={k}");
        e.destroy(&s).await.unwrap().into_result().unwrap();
        let left = leaks(&sdk).await;
        assert!(left.is_empty(), "k={k}: leaked {left:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_an_unreachable_endpoint_or_a_bad_spec_fail_fast() {
    // Nothing listens on this port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = Instant::now();
    let err = AwsProvider::connect(config(&format!("http://127.0.0.1:{closed}")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("cannot reach"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let err = AwsProvider::connect(config("ftp://example"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    let (moto, proxy) = start().await;
    let mut wrong = config(&proxy.url);
    wrong.expected_account = Some("999999999999".into());
    let err = AwsProvider::connect(wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // An invalid spec is refused before any AWS call.
    let p = Arc::new(AwsProvider::connect(config(&proxy.url)).await.unwrap());
    let e = engine(p, Arc::new(MemoryStateStore::new()));
    proxy.reset_counts();
    let mut bad = spec();
    bad.cluster.zones = vec!["eu-west-1b".into()];
    bad.domain = "not a domain".into();
    let err = e.plan(&bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let c = proxy.counts();
    assert_eq!(c.reads + c.mutating, 0, "{c:?}");

    // Rejected credentials: turn on moto's authentication.
    support::enable_moto_auth(&moto).await;
    let err = AwsProvider::connect(config(&proxy.url)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Credentials, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ecr_option_pushes_with_a_scoped_user_and_leaves_nothing() {
    let (moto, proxy) = start().await;
    let mut s = spec();
    s.registry.cloud_mut().unwrap().mode = gitpod_refarch::spec::RegistryMode::Managed;
    let p = Arc::new(AwsProvider::connect(config(&proxy.url)).await.unwrap());
    let e = engine(p.clone(), Arc::new(MemoryStateStore::new()));
    e.apply_spec(&s).await.unwrap().into_result().unwrap();
    let sdk = sdk_config(&moto.url).await;
    let repos = aws_sdk_ecr::Client::new(&sdk)
        .describe_repositories()
        .send()
        .await
        .unwrap();
    let uri = repos.repositories()[0]
        .repository_uri()
        .unwrap()
        .to_string();
    assert!(uri.ends_with("/gp/gitpod"), "{uri}");
    let bundle = e.installer_bundle(&s).await.unwrap();
    assert_eq!(
        bundle.config["containerRegistry"]["external"]["url"],
        uri.as_str()
    );
    let docker: serde_json::Value = serde_json::from_str(
        bundle
            .secret(gitpod_refarch::installer::REGISTRY_SECRET)
            .unwrap()
            .data[".dockerconfigjson"]
            .expose(),
    )
    .unwrap();
    let server = uri.split('/').next().unwrap();
    assert_eq!(docker["auths"][server]["username"], "AWS");
    // The registry user may push to this repository only.
    let pol = aws_sdk_iam::Client::new(&sdk)
        .get_user_policy()
        .user_name("gp-registry")
        .policy_name("gp-registry")
        .send()
        .await
        .unwrap();
    assert!(
        pol.policy_document().contains("repository/gp/gitpod")
            || pol.policy_document().contains("repository%2Fgp%2Fgitpod")
    );
    e.destroy(&s).await.unwrap().into_result().unwrap();
    let left = leaks(&sdk).await;
    assert!(left.is_empty(), "leaked: {left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_of_the_same_name_made_by_someone_else_are_never_adopted_or_deleted() {
    let (moto, proxy) = start().await;
    let s = spec();
    let sdk = sdk_config(&moto.url).await;
    // Someone else's user with our derived name, and someone else's zone for our domain.
    let iam = aws_sdk_iam::Client::new(&sdk);
    iam.create_user()
        .user_name("gp-storage")
        .send()
        .await
        .unwrap();
    aws_sdk_route53::Client::new(&sdk)
        .create_hosted_zone()
        .name("gitpod.example.com")
        .caller_reference("someone-else")
        .send()
        .await
        .unwrap();
    let p = Arc::new(AwsProvider::connect(config(&proxy.url)).await.unwrap());
    let e = engine(p, Arc::new(MemoryStateStore::new()));
    let report = e.apply_spec(&s).await.unwrap();
    let failed: Vec<_> = report
        .failed
        .iter()
        .map(|(id, e)| (id.kind, e.kind()))
        .collect();
    assert!(
        failed.contains(&(
            gitpod_refarch::resource::ResourceKind::ObjectStorage,
            ErrorKind::Conflict
        )),
        "{failed:?}"
    );
    assert!(
        failed.contains(&(
            gitpod_refarch::resource::ResourceKind::DnsZone,
            ErrorKind::Conflict
        )),
        "{failed:?}"
    );
    // Destroy removes what this installation made and leaves the others' alone.
    let report = e.destroy(&s).await.unwrap();
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    assert!(
        iam.get_user().user_name("gp-storage").send().await.is_ok(),
        "someone else's user was deleted"
    );
    assert_eq!(
        count_zones(&sdk).await,
        1,
        "someone else's zone was deleted"
    );
    let left = leaks(&sdk).await;
    assert_eq!(left.len(), 2, "{left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_made_behind_the_sdks_back_is_planned_as_an_update_and_repaired() {
    let (moto, proxy) = start().await;
    let s = spec();
    let p = Arc::new(AwsProvider::connect(config(&proxy.url)).await.unwrap());
    let e = engine(p, Arc::new(MemoryStateStore::new()));
    e.apply_spec(&s).await.unwrap().into_result().unwrap();
    let sdk = sdk_config(&moto.url).await;
    let eks = aws_sdk_eks::Client::new(&sdk);
    eks.update_nodegroup_config()
        .cluster_name("gp")
        .nodegroup_name("regular-ws")
        .scaling_config(
            aws_sdk_eks::types::NodegroupScalingConfig::builder()
                .min_size(1)
                .max_size(7)
                .desired_size(1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let rds = aws_sdk_rds::Client::new(&sdk);
    rds.modify_db_instance()
        .db_instance_identifier("gp-mysql")
        .backup_retention_period(1)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let plan = e.plan(&s).await.unwrap();
    let text = plan.to_string();
    println!("{text}");
    assert!(text.contains("maxNodes: 7 -> 50"), "{text}");
    assert!(text.contains("backupRetentionDays: 1 -> 7"), "{text}");
    assert!(plan.disruptive_steps().next().is_none(), "{text}");
    proxy.reset_counts();
    e.apply(&plan).await.unwrap().into_result().unwrap();
    assert!(proxy.counts().mutating >= 2);
    let ng = eks
        .describe_nodegroup()
        .cluster_name("gp")
        .nodegroup_name("regular-ws")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ng.nodegroup().unwrap().scaling_config().unwrap().max_size(),
        Some(50)
    );
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("gp-mysql")
        .send()
        .await
        .unwrap();
    assert_eq!(db.db_instances()[0].backup_retention_period(), Some(7));
    assert!(!e.plan(&s).await.unwrap().has_changes());
    e.destroy(&s).await.unwrap().into_result().unwrap();
    assert!(leaks(&sdk).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_eks_and_rds_operations_are_polled_until_done() {
    let (_moto, proxy) = start().await;
    let s = spec();
    let p = Arc::new(AwsProvider::connect(config(&proxy.url)).await.unwrap());
    let e = engine(p, Arc::new(MemoryStateStore::new()));
    // Each create/update of a cluster, node group or instance is "in progress" for
    // the next 3 describe answers of its kind, as on AWS.
    proxy.set_slow_transitions(3);
    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failed);
    assert!(
        proxy.slowed() >= 9,
        "only {} answers were slowed",
        proxy.slowed()
    );
    println!(
        "metric: slow transitions: {} describe answers reported in progress, apply converged",
        proxy.slowed()
    );
    proxy.set_slow_transitions(0);
    assert!(!e.plan(&s).await.unwrap().has_changes());
    e.destroy(&s).await.unwrap().into_result().unwrap();
}

/// A bring-your-own certificate (PEM files) applies against moto like any spec: no
/// DNS-01 solver is needed for cert-manager, the config names the Secret, nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bring_your_own_certificate_applies_and_destroys() {
    let (moto, proxy) = start().await;
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gitpod-refarch/tests/data/tls"
    );
    let s = ReferenceArchitecture::from_yaml(&format!(
        "cloud: aws\nname: gp\ndomain: gitpod.example.com\ncertificates:\n  issuer: bringYourOwn\n  \
         secretName: my-tls\n  certificateFile: {data}/chain.pem\n  keyFile: {data}/leaf.key\n"
    ))
    .unwrap();
    s.validate().unwrap();
    let p = Arc::new(AwsProvider::connect(config(&proxy.url)).await.unwrap());
    let e = engine(p.clone(), Arc::new(MemoryStateStore::new()));
    let plan = e.plan(&s).await.unwrap();
    e.apply(&plan).await.unwrap().into_result().unwrap();
    let bundle = e.installer_bundle(&s).await.unwrap();
    assert_eq!(
        bundle.config["certificate"],
        serde_json::json!({"kind": "secret", "name": "my-tls"})
    );
    assert!(bundle.cert_manager.is_empty());
    // Again: nothing to do.
    proxy.reset_counts();
    let again = e.plan(&s).await.unwrap();
    assert!(!again.has_changes(), "{again}");
    assert_eq!(proxy.counts().mutating, 0);
    e.destroy(&s).await.unwrap().into_result().unwrap();
    let sdk = sdk_config(&moto.url).await;
    let left = leaks(&sdk).await;
    assert!(left.is_empty(), "leaked: {left:#?}");
}
