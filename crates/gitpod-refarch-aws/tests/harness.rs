//! Tests of the moto test support itself: moto starts, the fault proxy counts,
//! faults and freezes requests, and the leak check finds what exists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use support::{leaks, sdk_config, FaultProxy, Moto};

/// A moto server, a proxy in front of it, and SDK configs for both.
struct Env {
    moto: Moto,
    proxy: FaultProxy,
    /// Straight to moto (not counted by the proxy).
    direct: aws_config::SdkConfig,
    /// Through the proxy.
    proxied: aws_config::SdkConfig,
}

async fn env() -> Env {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.url).await;
    let direct = sdk_config(&moto.url).await;
    let proxied = sdk_config(&proxy.url).await;
    Env {
        moto,
        proxy,
        direct,
        proxied,
    }
}

/// The HTTP status of a failed call, if a response came back.
fn http_status<E>(err: &aws_sdk_ec2::error::SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_through_the_proxy_counts_one_read() {
    let env = env().await;
    let identity = aws_sdk_sts::Client::new(&env.proxied)
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity through the proxy");
    assert_eq!(identity.account(), Some("123456789012"));
    let counts = env.proxy.counts();
    assert_eq!(
        (counts.reads, counts.mutating, counts.injected),
        (1, 0, 0),
        "{counts:?}"
    );
    assert_eq!(
        counts.by_action.get("sts:GetCallerIdentity"),
        Some(&1),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_create_and_delete_count_as_mutating_and_leaks_sees_the_vpc() {
    let env = env().await;
    assert_eq!(
        leaks(&env.direct).await,
        Vec::<String>::new(),
        "a fresh moto has no leaks"
    );
    let ec2 = aws_sdk_ec2::Client::new(&env.proxied);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .send()
        .await
        .expect("CreateVpc")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("a VPC id");
    let found = leaks(&env.direct).await;
    assert_eq!(
        found.len(),
        1,
        "only the VPC leaks (its default SG and main route table are defaults): {found:?}"
    );
    assert!(found[0].contains(&vpc), "{found:?}");

    ec2.delete_vpc()
        .vpc_id(&vpc)
        .send()
        .await
        .expect("DeleteVpc");
    assert_eq!(leaks(&env.direct).await, Vec::<String>::new());
    let counts = env.proxy.counts();
    assert_eq!(
        (counts.reads, counts.mutating, counts.injected),
        (0, 2, 0),
        "{counts:?}"
    );
    assert_eq!(
        counts.by_action.get("ec2:CreateVpc"),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(
        counts.by_action.get("ec2:DeleteVpc"),
        Some(&1),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_wipes_what_leaks_sees() {
    let env = env().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&env.proxied)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("gitpod.example.com")
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .expect("CreateBucket");
    aws_sdk_iam::Client::new(&env.proxied)
        .create_role()
        .role_name("gp-role")
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .expect("CreateRole");
    let found = leaks(&env.direct).await;
    assert!(
        found.contains(&"s3 bucket gitpod.example.com".to_string()),
        "{found:?}"
    );
    assert!(found.contains(&"iam role gp-role".to_string()), "{found:?}");
    let counts = env.proxy.counts();
    assert_eq!(counts.mutating, 2, "{counts:?}");
    assert_eq!(
        counts.by_action.get("s3:PUT /{bucket}"),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(
        counts.by_action.get("iam:CreateRole"),
        Some(&1),
        "{counts:?}"
    );

    env.moto.reset().await;
    assert_eq!(leaks(&env.direct).await, Vec::<String>::new());
    env.proxy.reset_counts();
    assert_eq!(env.proxy.counts().by_action.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_fail_calls_without_retries() {
    let env = env().await;
    env.proxy.set_fault_rate(1.0, 7);
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&env.proxied)
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    let eks = aws_sdk_eks::Client::from_conf(
        aws_sdk_eks::config::Builder::from(&env.proxied)
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    let mut seen = Vec::new();
    for _ in 0..6 {
        let err = ec2
            .describe_vpcs()
            .send()
            .await
            .expect_err("every request faults");
        let (code, status) = (err.code().map(str::to_string), http_status(&err));
        assert!(
            code.as_deref() == Some("RequestLimitExceeded") || status == Some(503),
            "ec2: {code:?} {status:?} {err:?}"
        );
        seen.push(format!("ec2 {code:?} {status:?}"));
        let err = eks
            .list_clusters()
            .send()
            .await
            .expect_err("every request faults");
        let (code, status) = (err.code().map(str::to_string), http_status(&err));
        assert!(
            code.as_deref() == Some("ThrottlingException") || status == Some(503),
            "eks: {code:?} {status:?} {err:?}"
        );
        seen.push(format!("eks {code:?} {status:?}"));
    }
    eprintln!("faults seen: {seen:#?}");
    let counts = env.proxy.counts();
    assert_eq!(
        (counts.reads, counts.mutating, counts.injected),
        (0, 0, 12),
        "{counts:?}"
    );
    assert!(
        seen.iter().any(|s| s.contains("Some(\"")) && seen.iter().any(|s| s.contains("None")),
        "both throttling and empty-503 faults appear: {seen:#?}"
    );

    // With the default test config (2 attempts), the SDK retries each fault.
    env.proxy.reset_counts();
    let err = aws_sdk_ec2::Client::new(&env.proxied)
        .describe_vpcs()
        .send()
        .await
        .expect_err("every attempt faults");
    assert_eq!(env.proxy.counts().injected, 2, "the SDK retried: {err:?}");

    env.proxy.clear_faults();
    ec2.describe_vpcs()
        .send()
        .await
        .expect("no faults after clear_faults");
    assert_eq!(env.proxy.counts().reads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_mutating_call_still_takes_effect() {
    let env = env().await;
    env.proxy.freeze_at_mutating(1);
    let ec2 = aws_sdk_ec2::Client::new(&env.proxied);
    let create = tokio::spawn({
        let ec2 = ec2.clone();
        async move { ec2.create_vpc().cidr_block("10.77.0.0/16").send().await }
    });
    tokio::time::timeout(Duration::from_secs(30), env.proxy.frozen())
        .await
        .expect("the CreateVpc call froze");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !create.is_finished(),
        "the frozen call never gets its response"
    );
    create.abort();

    env.proxy.clear_faults();
    let vpcs = ec2.describe_vpcs().send().await.expect("DescribeVpcs");
    assert!(
        vpcs.vpcs()
            .iter()
            .any(|v| v.cidr_block() == Some("10.77.0.0/16")),
        "the frozen CreateVpc reached moto: {:?}",
        vpcs.vpcs()
    );
    let counts = env.proxy.counts();
    assert_eq!((counts.reads, counts.mutating), (1, 1), "{counts:?}");
}
