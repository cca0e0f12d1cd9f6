//! One controller for GCP and Azure, against the project's **fakes** of their control
//! planes (`fake-gcp`, `fake-azure`: no emulator of either exists) and the Kubernetes
//! fake: a GCP and an Azure installation become Ready side by side, their deletion
//! leaves nothing in either fake, an installation on a cloud the controller does not
//! run is Degraded without blocking them, and bad credentials degrade an installation
//! with reason `Credentials` (a malformed key before any cloud call).
//!
//! The clusters of the fakes have no API server behind them here, so the in-cluster
//! bootstrap is off (as in the AWS test on moto).
#![cfg(all(feature = "gcp", feature = "azure"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::spec::Cloud;
use gitpod_refarch_fake_azure::{
    FakeAzure, FakeConfig as AzureFakeConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    DEFAULT_SUBSCRIPTION, DEFAULT_TENANT,
};
use gitpod_refarch_fake_gcp::{FakeConfig as GcpFakeConfig, FakeGcp};
use gitpod_refarch_operator::controller::Context;
use gitpod_refarch_operator::factory::{
    AzureFactory, ByCloud, GcpFactory, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID,
    GOOGLE_CREDENTIALS,
};
use kube::api::DeleteParams;
use kube::ResourceExt;
use serde_json::json;
use support::*;

const PROJECT: &str = "gitpod-ops";

fn gcp_yaml(name: &str) -> String {
    format!(
        "cloud: gcp\nname: {name}\ndomain: {name}.example.com\ngcp:\n  project: {PROJECT}\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n\
         dns:\n  recordsTarget:\n    ipv4: 203.0.113.10\n"
    )
}

fn azure_yaml(name: &str) -> String {
    format!(
        "cloud: azure\nname: {name}\ndomain: {name}.example.com\nazure:\n  \
         subscriptionId: {DEFAULT_SUBSCRIPTION}\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n\
         dns:\n  recordsTarget:\n    ipv4: 203.0.113.10\n"
    )
}

fn factory(gcp: &FakeGcp, azure: &FakeAzure) -> Arc<ByCloud> {
    Arc::new(
        ByCloud::new()
            .with(
                Cloud::Gcp,
                Arc::new(
                    GcpFactory::new()
                        .endpoint_url(gcp.url())
                        .poll_interval(Duration::from_millis(5))
                        .in_cluster(false),
                ),
            )
            .with(
                Cloud::Azure,
                Arc::new(
                    AzureFactory::new()
                        .endpoint_url(azure.url())
                        .poll_interval(Duration::from_millis(5))
                        .in_cluster(false),
                ),
            ),
    )
}

async fn fakes() -> (FakeGcp, FakeAzure) {
    let gcp = FakeGcp::start(GcpFakeConfig::default().with_projects([PROJECT]))
        .await
        .unwrap();
    let azure = FakeAzure::start(AzureFakeConfig::default().with_polls_to_finish(1))
        .await
        .unwrap();
    (gcp, azure)
}

/// What a GCP installation made, as the fake holds it (the project, its APIs and IAM
/// policy stay by design).
fn gcp_made(f: &FakeGcp) -> Vec<String> {
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

/// What an Azure installation named `name` made: everything in its resource group.
fn azure_made(f: &FakeAzure, name: &str) -> Vec<String> {
    let rg = format!("/resourcegroups/{name}");
    f.resources()
        .into_keys()
        .filter(|k| {
            let k = k.to_ascii_lowercase();
            k.ends_with(&rg) || k.contains(&format!("{rg}/"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_and_azure_installations_become_ready_side_by_side_and_leave_nothing() {
    let (gcp, azure) = fakes().await;
    let c = Cluster::start().await;
    let ctx = Context::new(c.client.clone(), factory(&gcp, &azure), fast_cloud_config());
    let _running = c.spawn(ctx.clone());
    let api = c.installations();
    c.secret(
        "azure-sp",
        &[
            (AZURE_TENANT_ID, DEFAULT_TENANT),
            (AZURE_CLIENT_ID, DEFAULT_CLIENT_ID),
            (AZURE_CLIENT_SECRET, DEFAULT_CLIENT_SECRET),
        ],
    )
    .await;
    // GCP with the controller's own identity (anonymous on the fake); Azure with the
    // service principal of its Secret; and one on AWS, which this controller does not
    // run.
    c.create(&installation("gpg", &gcp_yaml("gpg"), json!({})))
        .await;
    c.create(&installation(
        "gpz",
        &azure_yaml("gpz"),
        json!({"credentialsSecret": "azure-sp"}),
    ))
    .await;
    c.create(&installation(
        "gpa",
        "cloud: aws\nname: gpa\ndomain: gpa.example.com\ncluster:\n  region: eu-west-1\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n",
        json!({}),
    ))
    .await;

    let aws = wait_degraded(&api, "gpa", "InvalidInput").await;
    let message = &condition(&aws, "Degraded").unwrap().message;
    assert!(message.contains("[gcp, azure]"), "{message}");
    // It made nothing, so its deletion is not held by the finalizer.
    api.delete("gpa", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "gpa", &aws.uid().unwrap()).await;
    let g = wait_ready(&api, "gpg").await;
    let z = wait_ready(&api, "gpz").await;

    let gs = g.status.clone().unwrap();
    assert!(!gs.name_servers.is_empty(), "{gs:?}");
    assert!(
        gs.outputs.contains_key("clusterEndpoint"),
        "{:?}",
        gs.outputs
    );
    let zs = z.status.clone().unwrap();
    assert!(!zs.name_servers.is_empty(), "{zs:?}");
    assert!(
        zs.outputs.contains_key("clusterEndpoint"),
        "{:?}",
        zs.outputs
    );
    // Each cloud's account is its project or subscription.
    let accounts = ctx.budgets().accounts();
    for a in [
        format!("gcp:{PROJECT}"),
        format!("azure:{DEFAULT_SUBSCRIPTION}"),
    ] {
        assert!(accounts.contains(&a), "{a} in {accounts:?}");
    }
    let made_g = gcp_made(&gcp);
    for p in ["/clusters/", "/instances/", "/managedZones/", "/networks/"] {
        assert!(made_g.iter().any(|k| k.contains(p)), "{p} in {made_g:?}");
    }
    let made_z = azure_made(&azure, "gpz");
    for p in [
        "microsoft.containerservice/managedclusters/",
        "microsoft.network/dnszones/",
        "microsoft.dbformysql/flexibleservers/",
        // (No storage account: Gitpod's Azure storage is MinIO in the cluster.)
        "microsoft.containerregistry/registries/",
    ] {
        assert!(
            made_z.iter().any(|k| k.to_ascii_lowercase().contains(p)),
            "{p} in {made_z:#?}"
        );
    }
    for name in ["gpg", "gpz"] {
        assert!(c
            .secrets()
            .get_opt(&format!("{name}-installer"))
            .await
            .unwrap()
            .is_some());
    }

    api.delete("gpg", &DeleteParams::default()).await.unwrap();
    api.delete("gpz", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "gpg", &g.uid().unwrap()).await;
    wait_gone(&api, "gpz", &z.uid().unwrap()).await;
    assert_eq!(gcp_made(&gcp), Vec::<String>::new());
    assert_eq!(azure_made(&azure, "gpz"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_degrade_gcp_and_azure_installations() {
    let (gcp, azure) = fakes().await;
    let c = Cluster::start().await;
    let _running = c.spawn(Context::new(
        c.client.clone(),
        factory(&gcp, &azure),
        fast_cloud_config(),
    ));
    let api = c.installations();
    c.secret(
        "gcp-key",
        &[(
            GOOGLE_CREDENTIALS,
            "{\"type\": \"service_account\", \"private_key\": \"s3cr3t-pem\"",
        )],
    )
    .await;
    c.secret(
        "azure-sp",
        &[
            (AZURE_TENANT_ID, DEFAULT_TENANT),
            (AZURE_CLIENT_ID, DEFAULT_CLIENT_ID),
            (AZURE_CLIENT_SECRET, "wr0ng-s3cr3t-value"),
        ],
    )
    .await;
    c.create(&installation(
        "gpg",
        &gcp_yaml("gpg"),
        json!({"credentialsSecret": "gcp-key"}),
    ))
    .await;
    c.create(&installation(
        "gpz",
        &azure_yaml("gpz"),
        json!({"credentialsSecret": "azure-sp"}),
    ))
    .await;
    for name in ["gpg", "gpz"] {
        let o = wait_degraded(&api, name, "Credentials").await;
        assert_eq!(condition(&o, "Ready").unwrap().status, "False");
        let text = serde_json::to_string(&o).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        let events = c.events(name).await;
        assert!(events.iter().any(|(r, _)| r == "Failed"), "{events:?}");
        assert!(!format!("{events:?}").contains("s3cr3t"));
    }
    // The malformed key is refused before any call to GCP; Azure's token endpoint
    // refused the secret, and nothing was made in either.
    assert_eq!(gcp.calls().len(), 0, "{:?}", gcp.calls().len());
    assert_eq!(azure_made(&azure, "gpz"), Vec::<String>::new());
}
