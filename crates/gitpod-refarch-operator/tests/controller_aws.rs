//! The controller on AWS, against a real moto server (EKS on moto: no API server
//! behind the cluster, so no in-cluster bootstrap) and the Kubernetes fake: an
//! installation becomes Ready, its deletion destroys everything it made, and wrong
//! keys degrade it with reason `Credentials`.
#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use gitpod_refarch::Secret;
use gitpod_refarch_aws::{AwsConfig, AwsProvider};
use gitpod_refarch_operator::controller::Context;
use gitpod_refarch_operator::factory::{AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY};
use kube::api::DeleteParams;
use kube::ResourceExt;
use serde_json::json;
use support::*;

const NAME: &str = "gpaws";

fn spec_yaml() -> String {
    format!(
        "cloud: aws\nname: {NAME}\ndomain: {NAME}.example.com\ncluster:\n  region: eu-west-1\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n\
         dns:\n  recordsTarget:\n    ipv4: 203.0.113.10\n"
    )
}

/// What the installation made, as moto lists it: VPCs tagged with it, hosted
/// zones of its domain, EKS clusters, RDS instances, S3 buckets.
async fn made(moto: &Moto) -> Vec<String> {
    let p = AwsProvider::connect(
        AwsConfig::new("eu-west-1")
            .endpoint_url(moto.url.clone())
            .static_credentials("testing", Secret::new("testing".into())),
    )
    .await
    .unwrap();
    let c = &p.context().clients;
    let mut found = Vec::new();
    let vpcs = c.ec2.describe_vpcs().send().await.unwrap();
    for v in vpcs.vpcs() {
        if v.tags()
            .iter()
            .any(|t| t.key() == Some("gitpod-installation") && t.value() == Some(NAME))
        {
            found.push(format!("vpc {}", v.vpc_id().unwrap_or("?")));
        }
    }
    let zones = c.route53.list_hosted_zones().send().await.unwrap();
    for z in zones.hosted_zones() {
        if z.name() == format!("{NAME}.example.com.") {
            found.push(format!("zone {}", z.id()));
        }
    }
    let clusters = c.eks.list_clusters().send().await.unwrap();
    for name in clusters.clusters() {
        found.push(format!("eks {name}"));
    }
    let dbs = c.rds.describe_db_instances().send().await.unwrap();
    for db in dbs.db_instances() {
        found.push(format!(
            "rds {}",
            db.db_instance_identifier().unwrap_or("?")
        ));
    }
    let buckets = c.s3.list_buckets().send().await.unwrap();
    for b in buckets.buckets() {
        found.push(format!("bucket {}", b.name().unwrap_or("?")));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_on_moto_becomes_ready_and_its_deletion_leaves_nothing() {
    let moto = Moto::start().await;
    let c = Cluster::start().await;
    let ctx = Context::new(c.client.clone(), moto_factory(&moto), fast_cloud_config());
    let _running = c.spawn(ctx.clone());
    let api = c.installations();
    assert_eq!(made(&moto).await, Vec::<String>::new());
    c.secret(
        "aws-keys",
        &[
            (AWS_ACCESS_KEY_ID, "testing"),
            (AWS_SECRET_ACCESS_KEY, "testing"),
        ],
    )
    .await;
    c.create(&installation(
        NAME,
        &spec_yaml(),
        json!({"credentialsSecret": "aws-keys"}),
    ))
    .await;
    let o = wait_ready(&api, NAME).await;
    let status = o.status.clone().unwrap();
    for key in [
        "clusterEndpoint",
        "databaseHost",
        "storageBucket",
        "region",
        "account",
    ] {
        assert!(
            status.outputs.contains_key(key),
            "{key} in {:?}",
            status.outputs
        );
    }
    assert_eq!(status.outputs["account"], "123456789012");
    assert!(!status.name_servers.is_empty());
    // The account STS named is the budget's.
    assert!(
        ctx.budgets().peek("aws:123456789012").is_some(),
        "{:?}",
        ctx.budgets().accounts()
    );
    let before = made(&moto).await;
    for prefix in ["vpc ", "zone ", "eks ", "rds ", "bucket "] {
        assert!(
            before.iter().any(|r| r.starts_with(prefix)),
            "{prefix} in {before:?}"
        );
    }
    assert!(c
        .secrets()
        .get_opt(&format!("{NAME}-installer"))
        .await
        .unwrap()
        .is_some());

    api.delete(NAME, &DeleteParams::default()).await.unwrap();
    wait_gone(&api, NAME, &o.uid().unwrap()).await;
    assert_eq!(made(&moto).await, Vec::<String>::new());
    // The state Secret goes with the installation.
    guard(kube::runtime::wait::await_condition(
        c.secrets(),
        &format!("{NAME}-state"),
        |s: Option<&k8s_openapi::api::core::v1::Secret>| s.is_none(),
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_degrade_the_installation_with_credentials() {
    let moto = Moto::start().await;
    moto.enable_auth().await;
    let c = Cluster::start().await;
    let _running = c.spawn(Context::new(
        c.client.clone(),
        moto_factory(&moto),
        fast_cloud_config(),
    ));
    let api = c.installations();
    c.secret(
        "aws-keys",
        &[
            (AWS_ACCESS_KEY_ID, "AKIAWRONGWRONGWRONG1"),
            (AWS_SECRET_ACCESS_KEY, "wr0ng-s3cr3t-value"),
        ],
    )
    .await;
    c.create(&installation(
        NAME,
        &spec_yaml(),
        json!({"credentialsSecret": "aws-keys"}),
    ))
    .await;
    let o = wait_degraded(&api, NAME, "Credentials").await;
    assert_eq!(condition(&o, "Ready").unwrap().status, "False");
    let text = serde_json::to_string(&o).unwrap();
    assert!(!text.contains("wr0ng-s3cr3t"), "{text}");
    let events = c.events(NAME).await;
    assert!(events.iter().any(|(r, _)| r == "Failed"), "{events:?}");
    assert!(!format!("{events:?}").contains("wr0ng-s3cr3t"));
}
