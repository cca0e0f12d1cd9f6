//! `validate()` rejects bad specs with the right field path, reports every problem at
//! once, and the engine refuses an invalid spec before making any provider call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use gitpod_refarch::engine::{Clock, TokioClock};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::{
    labels, CertificateSettings, Cloud, RecordsTarget, ReferenceArchitecture, Taint,
    LETS_ENCRYPT_PRODUCTION,
};
use gitpod_refarch::validate::ValidationErrors;
use gitpod_refarch::{Engine, ErrorKind, Providers};

const SUBSCRIPTION: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

fn gcp() -> ReferenceArchitecture {
    ReferenceArchitecture::builder(Cloud::Gcp)
        .name("gp")
        .domain("gitpod.example.com")
        .gcp_project("my-project-123")
        .acme_email("ops@example.com")
        .build_unchecked()
}

fn aws() -> ReferenceArchitecture {
    ReferenceArchitecture::builder(Cloud::Aws)
        .name("gp")
        .domain("gitpod.example.com")
        .acme_email("ops@example.com")
        .build_unchecked()
}

fn azure() -> ReferenceArchitecture {
    ReferenceArchitecture::builder(Cloud::Azure)
        .name("gp")
        .domain("gitpod.example.com")
        .azure_subscription(SUBSCRIPTION)
        .acme_email("ops@example.com")
        .build_unchecked()
}

/// One invalid spec: a valid baseline, a mutation that breaks it, and the path
/// `validate` must report.
struct Case {
    name: &'static str,
    base: fn() -> ReferenceArchitecture,
    mutate: fn(&mut ReferenceArchitecture),
    path: &'static str,
}

impl Case {
    fn spec(&self) -> ReferenceArchitecture {
        let mut s = (self.base)();
        (self.mutate)(&mut s);
        s
    }
}

const fn case(
    name: &'static str,
    base: fn() -> ReferenceArchitecture,
    mutate: fn(&mut ReferenceArchitecture),
    path: &'static str,
) -> Case {
    Case {
        name,
        base,
        mutate,
        path,
    }
}

fn acme(email: &str, server: &str) -> CertificateSettings {
    CertificateSettings::Acme {
        email: email.into(),
        server: server.into(),
    }
}

/// A test certificate or key (`tests/data/tls`, made by its `gen.sh`).
fn tls(file: &str) -> String {
    format!("{}/tests/data/tls/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn byo_files(cert: Option<String>, key: Option<String>) -> CertificateSettings {
    let mut c = CertificateSettings::bring_your_own_files("https-certificates", "", "");
    if let CertificateSettings::BringYourOwn {
        certificate_file,
        key_file,
        ..
    } = &mut c
    {
        *certificate_file = cert;
        *key_file = key;
    }
    c
}

fn cases() -> Vec<Case> {
    vec![
        // --- name ---
        case("name empty", gcp, |s| s.name = String::new(), "name"),
        case(
            "name too long on gcp (16)",
            gcp,
            |s| s.name = "a".repeat(16),
            "name",
        ),
        case(
            "name too long on aws (16)",
            aws,
            |s| s.name = "a".repeat(16),
            "name",
        ),
        case(
            "name too long on azure (12)",
            azure,
            |s| s.name = "a".repeat(12),
            "name",
        ),
        case("name upper case", gcp, |s| s.name = "Gitpod".into(), "name"),
        case(
            "name trailing hyphen",
            aws,
            |s| s.name = "gp-".into(),
            "name",
        ),
        case(
            "name starts with digit",
            azure,
            |s| s.name = "1gp".into(),
            "name",
        ),
        case("name underscore", gcp, |s| s.name = "g_p".into(), "name"),
        // --- domain ---
        case("domain empty", gcp, |s| s.domain = String::new(), "domain"),
        case(
            "domain trailing dot",
            gcp,
            |s| s.domain = "gitpod.example.com.".into(),
            "domain",
        ),
        case(
            "domain wildcard",
            aws,
            |s| s.domain = "*.gitpod.example.com".into(),
            "domain",
        ),
        case(
            "domain upper case",
            azure,
            |s| s.domain = "Gitpod.Example.com".into(),
            "domain",
        ),
        case(
            "domain single label",
            gcp,
            |s| s.domain = "localhost".into(),
            "domain",
        ),
        case(
            "domain empty label",
            gcp,
            |s| s.domain = "gitpod..example.com".into(),
            "domain",
        ),
        case(
            "domain label too long",
            aws,
            |s| s.domain = format!("{}.example.com", "a".repeat(64)),
            "domain",
        ),
        case(
            "domain bad chars",
            gcp,
            |s| s.domain = "git_pod.example.com".into(),
            "domain",
        ),
        case(
            "domain label starts with hyphen",
            gcp,
            |s| s.domain = "-gitpod.example.com".into(),
            "domain",
        ),
        case(
            "domain numeric tld",
            azure,
            |s| s.domain = "10.0.0.1".into(),
            "domain",
        ),
        case(
            "domain too long for *.ws.",
            gcp,
            |s| {
                s.domain = format!(
                    "{}.{}.example.com",
                    vec!["a".repeat(60); 3].join("."),
                    "b".repeat(55)
                )
            },
            "domain",
        ),
        // --- region ---
        case(
            "gcp region",
            gcp,
            |s| s.cluster.region = "europe west1".into(),
            "cluster.region",
        ),
        case(
            "gcp region aws-style",
            gcp,
            |s| s.cluster.region = "eu-west-1".into(),
            "cluster.region",
        ),
        case(
            "aws region",
            aws,
            |s| s.cluster.region = "eu-west".into(),
            "cluster.region",
        ),
        case(
            "aws region gcp-style",
            aws,
            |s| s.cluster.region = "europe-west1".into(),
            "cluster.region",
        ),
        case(
            "azure region",
            azure,
            |s| s.cluster.region = "North Europe".into(),
            "cluster.region",
        ),
        case(
            "region empty",
            azure,
            |s| s.cluster.region = String::new(),
            "cluster.region",
        ),
        // --- zones ---
        case(
            "gcp zone of another region",
            gcp,
            |s| s.cluster.zones = vec!["europe-west1-b".into(), "us-central1-a".into()],
            "cluster.zones[1]",
        ),
        case(
            "aws zone of another region",
            aws,
            |s| s.cluster.zones = vec!["us-east-1a".into(), "eu-west-1c".into()],
            "cluster.zones[0]",
        ),
        case(
            "azure zone 4",
            azure,
            |s| s.cluster.zones = vec!["1".into(), "4".into()],
            "cluster.zones[1]",
        ),
        case(
            "duplicate zone",
            aws,
            |s| s.cluster.zones = vec!["eu-west-1b".into(), "eu-west-1b".into()],
            "cluster.zones[1]",
        ),
        case(
            "aws one zone",
            aws,
            |s| s.cluster.zones = vec!["eu-west-1b".into()],
            "cluster.zones",
        ),
        case(
            "aws no zones",
            aws,
            |s| s.cluster.zones.clear(),
            "cluster.zones",
        ),
        // --- kubernetes version ---
        case(
            "kubernetes version garbage",
            gcp,
            |s| s.cluster.kubernetes_version = "latest".into(),
            "cluster.kubernetesVersion",
        ),
        case(
            "kubernetes version too old",
            aws,
            |s| s.cluster.kubernetes_version = "1.22".into(),
            "cluster.kubernetesVersion",
        ),
        case(
            "kubernetes version major 2",
            azure,
            |s| s.cluster.kubernetes_version = "2.0".into(),
            "cluster.kubernetesVersion",
        ),
        case(
            "kubernetes version bad patch",
            gcp,
            |s| s.cluster.kubernetes_version = "1.33.x".into(),
            "cluster.kubernetesVersion",
        ),
        // --- max pods ---
        case(
            "maxPodsPerNode too low",
            gcp,
            |s| s.cluster.max_pods_per_node = 4,
            "cluster.maxPodsPerNode",
        ),
        case(
            "maxPodsPerNode too high",
            aws,
            |s| s.cluster.max_pods_per_node = 300,
            "cluster.maxPodsPerNode",
        ),
        // --- CIDRs ---
        case(
            "node cidr syntax",
            gcp,
            |s| s.cluster.network.node_cidr = "10.255.0.0".into(),
            "cluster.network.nodeCidr",
        ),
        case(
            "pod cidr syntax",
            gcp,
            |s| s.cluster.network.pod_cidr = Some("10.0.0.0/33".into()),
            "cluster.network.podCidr",
        ),
        case(
            "service cidr syntax",
            azure,
            |s| s.cluster.network.service_cidr = "services".into(),
            "cluster.network.serviceCidr",
        ),
        case(
            "node cidr host bits",
            gcp,
            |s| s.cluster.network.node_cidr = "10.255.0.1/16".into(),
            "cluster.network.nodeCidr",
        ),
        case(
            "pod cidr host bits",
            azure,
            |s| s.cluster.network.pod_cidr = Some("10.244.1.0/16".into()),
            "cluster.network.podCidr",
        ),
        case(
            "node cidr public range",
            aws,
            |s| s.cluster.network.node_cidr = "8.8.0.0/16".into(),
            "cluster.network.nodeCidr",
        ),
        case(
            "service cidr public range",
            gcp,
            |s| s.cluster.network.service_cidr = "100.64.0.0/16".into(),
            "cluster.network.serviceCidr",
        ),
        case(
            "pod overlaps node",
            gcp,
            |s| s.cluster.network.pod_cidr = Some("10.255.128.0/17".into()),
            "cluster.network.podCidr",
        ),
        case(
            "service overlaps node (gcp)",
            gcp,
            |s| s.cluster.network.service_cidr = "10.255.0.0/20".into(),
            "cluster.network.serviceCidr",
        ),
        case(
            "service overlaps node (aws)",
            aws,
            |s| s.cluster.network.service_cidr = "10.100.0.0/16".into(),
            "cluster.network.serviceCidr",
        ),
        case(
            "service overlaps pod (azure)",
            azure,
            |s| s.cluster.network.service_cidr = "10.244.0.0/20".into(),
            "cluster.network.serviceCidr",
        ),
        case(
            "node cidr prefix too small",
            gcp,
            |s| s.cluster.network.node_cidr = "10.255.0.0/28".into(),
            "cluster.network.nodeCidr",
        ),
        case(
            "pod cidr prefix too small",
            gcp,
            |s| s.cluster.network.pod_cidr = Some("10.0.0.0/24".into()),
            "cluster.network.podCidr",
        ),
        case(
            "service cidr prefix too small",
            aws,
            |s| s.cluster.network.service_cidr = "172.20.0.0/28".into(),
            "cluster.network.serviceCidr",
        ),
        // --- node pools ---
        case(
            "services min > max",
            gcp,
            |s| {
                s.node_pools.services.min_nodes = 5;
                s.node_pools.services.max_nodes = 4;
            },
            "nodePools.services.minNodes",
        ),
        case(
            "services max 0",
            gcp,
            |s| {
                s.node_pools.services.min_nodes = 0;
                s.node_pools.services.max_nodes = 0;
            },
            "nodePools.services.maxNodes",
        ),
        case(
            "regular max over 1000",
            aws,
            |s| s.node_pools.regular_workspaces.max_nodes = 1001,
            "nodePools.regularWorkspaces.maxNodes",
        ),
        case(
            "gcp machine type",
            gcp,
            |s| s.node_pools.services.machine_type = "n2d_standard_4".into(),
            "nodePools.services.machineType",
        ),
        case(
            "aws machine type",
            aws,
            |s| s.node_pools.regular_workspaces.machine_type = "m6i".into(),
            "nodePools.regularWorkspaces.machineType",
        ),
        case(
            "azure machine type",
            azure,
            |s| s.node_pools.headless_workspaces.machine_type = "D16_v4".into(),
            "nodePools.headlessWorkspaces.machineType",
        ),
        case(
            "gcp disk type",
            gcp,
            |s| s.node_pools.regular_workspaces.disk_type = "gp3".into(),
            "nodePools.regularWorkspaces.diskType",
        ),
        case(
            "aws disk type",
            aws,
            |s| s.node_pools.services.disk_type = "pd-ssd".into(),
            "nodePools.services.diskType",
        ),
        case(
            "azure disk type",
            azure,
            |s| s.node_pools.services.disk_type = "Premium_LRS".into(),
            "nodePools.services.diskType",
        ),
        case(
            "disk too small",
            gcp,
            |s| s.node_pools.headless_workspaces.disk_size_gb = 10,
            "nodePools.headlessWorkspaces.diskSizeGb",
        ),
        case(
            "services missing meta label",
            gcp,
            |s| {
                s.node_pools.services.labels.remove(labels::META);
            },
            "nodePools.services.labels",
        ),
        case(
            "services missing services label",
            aws,
            |s| {
                s.node_pools.services.labels.remove(labels::SERVICES);
            },
            "nodePools.services.labels",
        ),
        case(
            "regular missing label",
            gcp,
            |s| {
                s.node_pools
                    .regular_workspaces
                    .labels
                    .remove(labels::WORKSPACE_REGULAR);
            },
            "nodePools.regularWorkspaces.labels",
        ),
        case(
            "headless missing label",
            azure,
            |s| {
                s.node_pools
                    .headless_workspaces
                    .labels
                    .remove(labels::WORKSPACE_HEADLESS);
            },
            "nodePools.headlessWorkspaces.labels",
        ),
        case(
            "label value not true",
            gcp,
            |s| {
                s.node_pools
                    .services
                    .labels
                    .insert(labels::IDE.into(), "false".into());
            },
            "nodePools.services.labels",
        ),
        case(
            "label key bad",
            aws,
            |s| {
                s.node_pools
                    .regular_workspaces
                    .labels
                    .insert("bad key!".into(), "x".into());
            },
            "nodePools.regularWorkspaces.labels",
        ),
        case(
            "label key bad prefix",
            gcp,
            |s| {
                s.node_pools
                    .services
                    .labels
                    .insert("Example.COM/team".into(), "x".into());
            },
            "nodePools.services.labels",
        ),
        case(
            "label value bad",
            gcp,
            |s| {
                s.node_pools
                    .headless_workspaces
                    .labels
                    .insert("team".into(), "-x-".into());
            },
            "nodePools.headlessWorkspaces.labels",
        ),
        case(
            "taint effect",
            gcp,
            |s| s.node_pools.services.taints = vec![Taint::new("dedicated", "gitpod", "Never")],
            "nodePools.services.taints[0].effect",
        ),
        case(
            "taint key",
            aws,
            |s| {
                s.node_pools.regular_workspaces.taints = vec![
                    Taint::new("ok", "", "NoSchedule"),
                    Taint::new("", "x", "NoExecute"),
                ];
            },
            "nodePools.regularWorkspaces.taints[1].key",
        ),
        case(
            "aws bad ami",
            aws,
            |s| s.node_pools.services.image = Some("ami-xyz".into()),
            "nodePools.services.image",
        ),
        case(
            "empty image",
            gcp,
            |s| s.node_pools.headless_workspaces.image = Some(String::new()),
            "nodePools.headlessWorkspaces.image",
        ),
        // --- database ---
        case(
            "mysql 5.6",
            gcp,
            |s| s.database.cloud_mut().unwrap().mysql_version = "5.6".into(),
            "database.mysqlVersion",
        ),
        case(
            "gcp tier",
            gcp,
            |s| s.database.cloud_mut().unwrap().tier = "n1-standard-2".into(),
            "database.tier",
        ),
        case(
            "aws tier",
            aws,
            |s| s.database.cloud_mut().unwrap().tier = "db.m5large".into(),
            "database.tier",
        ),
        case(
            "azure tier",
            azure,
            |s| s.database.cloud_mut().unwrap().tier = "D2ds_v4".into(),
            "database.tier",
        ),
        case(
            "database storage too small",
            aws,
            |s| s.database.cloud_mut().unwrap().storage_gb = 10,
            "database.storageGb",
        ),
        case(
            "backup retention 0",
            gcp,
            |s| s.database.cloud_mut().unwrap().backups.retention_days = 0,
            "database.backups.retentionDays",
        ),
        case(
            "backup retention 36",
            azure,
            |s| s.database.cloud_mut().unwrap().backups.retention_days = 36,
            "database.backups.retentionDays",
        ),
        case(
            "HA without backups",
            aws,
            |s| {
                s.database.cloud_mut().unwrap().high_availability = true;
                s.database.cloud_mut().unwrap().backups.enabled = false;
            },
            "database.backups.enabled",
        ),
        case(
            "explicit_defaults_for_timestamp on",
            gcp,
            |s| {
                s.database
                    .cloud_mut()
                    .unwrap()
                    .flags
                    .insert("explicit_defaults_for_timestamp".into(), "ON".into());
            },
            "database.flags.explicit_defaults_for_timestamp",
        ),
        case(
            "explicit_defaults_for_timestamp missing",
            azure,
            |s| {
                s.database
                    .cloud_mut()
                    .unwrap()
                    .flags
                    .remove("explicit_defaults_for_timestamp");
            },
            "database.flags",
        ),
        case(
            "bad flag name",
            gcp,
            |s| {
                s.database
                    .cloud_mut()
                    .unwrap()
                    .flags
                    .insert("Max-Connections".into(), "100".into());
            },
            "database.flags",
        ),
        case(
            "username bad chars",
            gcp,
            |s| s.database.cloud_mut().unwrap().username = "git-pod".into(),
            "database.username",
        ),
        case(
            "username starts with digit",
            aws,
            |s| s.database.cloud_mut().unwrap().username = "1gitpod".into(),
            "database.username",
        ),
        case(
            "username too long",
            gcp,
            |s| s.database.cloud_mut().unwrap().username = "g".repeat(17),
            "database.username",
        ),
        case(
            "username root",
            aws,
            |s| s.database.cloud_mut().unwrap().username = "root".into(),
            "database.username",
        ),
        case(
            "username cloudsqlsuperuser",
            gcp,
            |s| s.database.cloud_mut().unwrap().username = "cloudsqlsuperuser".into(),
            "database.username",
        ),
        case(
            "database name bad",
            azure,
            |s| s.database.cloud_mut().unwrap().database_name = "git-pod".into(),
            "database.databaseName",
        ),
        case(
            "database name empty",
            gcp,
            |s| s.database.cloud_mut().unwrap().database_name = String::new(),
            "database.databaseName",
        ),
        // --- dns ---
        case(
            "zone does not contain domain",
            gcp,
            |s| s.dns.cloud_mut().unwrap().zone = Some("example.org".into()),
            "dns.zone",
        ),
        case(
            "zone is a suffix but not a parent",
            aws,
            |s| s.dns.cloud_mut().unwrap().zone = Some("ample.com".into()),
            "dns.zone",
        ),
        case(
            "zone trailing dot",
            gcp,
            |s| s.dns.cloud_mut().unwrap().zone = Some("example.com.".into()),
            "dns.zone",
        ),
        case(
            "records target bad ip",
            gcp,
            |s| {
                s.dns
                    .set_records_target(Some(RecordsTarget::Ipv4("300.1.2.3".into())))
            },
            "dns.recordsTarget.ipv4",
        ),
        case(
            "records target loopback",
            azure,
            |s| {
                s.dns
                    .set_records_target(Some(RecordsTarget::Ipv4("127.0.0.1".into())))
            },
            "dns.recordsTarget.ipv4",
        ),
        case(
            "records target unspecified",
            gcp,
            |s| {
                s.dns
                    .set_records_target(Some(RecordsTarget::Ipv4("0.0.0.0".into())))
            },
            "dns.recordsTarget.ipv4",
        ),
        case(
            "records target bad hostname",
            aws,
            |s| {
                s.dns
                    .set_records_target(Some(RecordsTarget::Hostname("lb_1.example.com".into())))
            },
            "dns.recordsTarget.hostname",
        ),
        // --- storage ---
        case(
            "bucket upper case",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("Gitpod_Bucket".into()),
            "storage.bucket",
        ),
        case(
            "bucket too short",
            gcp,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("gp".into()),
            "storage.bucket",
        ),
        case(
            "bucket leading hyphen",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("-gitpod".into()),
            "storage.bucket",
        ),
        case(
            "bucket ip address",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("192.168.1.1".into()),
            "storage.bucket",
        ),
        case(
            "bucket goog prefix",
            gcp,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("google-gitpod".into()),
            "storage.bucket",
        ),
        // --- registry ---
        case(
            "registry upper case",
            gcp,
            |s| s.registry.cloud_mut().unwrap().repository = "Gitpod".into(),
            "registry.repository",
        ),
        case(
            "registry empty",
            azure,
            |s| s.registry.cloud_mut().unwrap().repository = String::new(),
            "registry.repository",
        ),
        case(
            "registry trailing hyphen",
            aws,
            |s| s.registry.cloud_mut().unwrap().repository = "gitpod-".into(),
            "registry.repository",
        ),
        // --- certificates ---
        case(
            "acme email missing",
            gcp,
            |s| s.certificates = acme("", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "acme email bad",
            aws,
            |s| s.certificates = acme("ops-at-example.com", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "acme email without dot",
            gcp,
            |s| s.certificates = acme("ops@localhost", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "acme http server",
            azure,
            |s| s.certificates = acme("ops@example.com", "http://acme.example.com/directory"),
            "certificates.server",
        ),
        case(
            "byo secret name bad",
            gcp,
            |s| s.certificates = CertificateSettings::bring_your_own("Https_Certificates"),
            "certificates.secretName",
        ),
        case(
            "byo secret name empty",
            aws,
            |s| s.certificates = CertificateSettings::bring_your_own(""),
            "certificates.secretName",
        ),
        // --- labels ---
        case(
            "label key upper case",
            gcp,
            |s| {
                s.labels.insert("Team".into(), "platform".into());
            },
            "labels",
        ),
        case(
            "label key starts with digit",
            aws,
            |s| {
                s.labels.insert("1team".into(), "platform".into());
            },
            "labels",
        ),
        case(
            "label value with space",
            azure,
            |s| {
                s.labels.insert("team".into(), "platform team".into());
            },
            "labels",
        ),
        // --- gcp ---
        case("gcp section missing", gcp, |s| s.gcp = None, "gcp"),
        case(
            "gcp project empty",
            gcp,
            |s| s.gcp.as_mut().unwrap().project = String::new(),
            "gcp.project",
        ),
        case(
            "gcp project bad chars",
            gcp,
            |s| s.gcp.as_mut().unwrap().project = "My_Project".into(),
            "gcp.project",
        ),
        case(
            "gcp project too short",
            gcp,
            |s| s.gcp.as_mut().unwrap().project = "proj".into(),
            "gcp.project",
        ),
        case(
            "gcp create project without billing",
            gcp,
            |s| {
                let g = s.gcp.as_mut().unwrap();
                g.create_project = true;
                g.billing_account = None;
            },
            "gcp.billingAccount",
        ),
        case(
            "gcp billing account bad",
            gcp,
            |s| s.gcp.as_mut().unwrap().billing_account = Some("123-456".into()),
            "gcp.billingAccount",
        ),
        // --- aws ---
        case(
            "aws account id short",
            aws,
            |s| s.aws.as_mut().unwrap().account_id = Some("12345".into()),
            "aws.accountId",
        ),
        case(
            "aws account id letters",
            aws,
            |s| s.aws.as_mut().unwrap().account_id = Some("12345678901a".into()),
            "aws.accountId",
        ),
        // --- azure ---
        case("azure section missing", azure, |s| s.azure = None, "azure"),
        case(
            "azure subscription empty",
            azure,
            |s| s.azure.as_mut().unwrap().subscription_id = String::new(),
            "azure.subscriptionId",
        ),
        case(
            "azure subscription not a uuid",
            azure,
            |s| s.azure.as_mut().unwrap().subscription_id = "not-a-uuid".into(),
            "azure.subscriptionId",
        ),
        case(
            "azure resource group trailing dot",
            azure,
            |s| s.azure.as_mut().unwrap().resource_group = Some("gitpod-rg.".into()),
            "azure.resourceGroup",
        ),
        case(
            "azure resource group bad chars",
            azure,
            |s| s.azure.as_mut().unwrap().resource_group = Some("gitpod rg!".into()),
            "azure.resourceGroup",
        ),
        case(
            "azure resource group too long",
            azure,
            |s| s.azure.as_mut().unwrap().resource_group = Some("r".repeat(91)),
            "azure.resourceGroup",
        ),
        case(
            "azure registry name with a dash",
            azure,
            |s| s.azure.as_mut().unwrap().registry_name = Some("gitpod-acr".into()),
            "azure.registryName",
        ),
        case(
            "azure registry name too short",
            azure,
            |s| s.azure.as_mut().unwrap().registry_name = Some("acr1".into()),
            "azure.registryName",
        ),
        case(
            "azure database server name upper case",
            azure,
            |s| s.azure.as_mut().unwrap().database_server_name = Some("MySQL-gitpod".into()),
            "azure.databaseServerName",
        ),
        case(
            "azure database server name ends with a dash",
            azure,
            |s| s.azure.as_mut().unwrap().database_server_name = Some("mysql-gitpod-".into()),
            "azure.databaseServerName",
        ),
        // --- issue #11: second pass over bad input ---
        case(
            "acme server ftp scheme",
            gcp,
            |s| s.certificates = acme("ops@example.com", "ftp://acme.example.com/directory"),
            "certificates.server",
        ),
        case(
            "acme server with a space",
            aws,
            |s| s.certificates = acme("ops@example.com", "https://acme.example.com/dir ectory"),
            "certificates.server",
        ),
        case(
            "acme server leading space",
            azure,
            |s| s.certificates = acme("ops@example.com", " https://acme.example.com/directory"),
            "certificates.server",
        ),
        case(
            "acme server http to a host named like localhost",
            azure,
            |s| {
                s.certificates = acme(
                    "ops@example.com",
                    "http://localhost.evil.example.com/directory",
                )
            },
            "certificates.server",
        ),
        case(
            "acme server http to a host starting 127.0.0.1",
            gcp,
            |s| s.certificates = acme("ops@example.com", "http://127.0.0.1.nip.io/directory"),
            "certificates.server",
        ),
        case(
            "acme server single-label host",
            aws,
            |s| s.certificates = acme("ops@example.com", "https:///directory"),
            "certificates.server",
        ),
        case(
            "acme server host with underscore",
            gcp,
            |s| s.certificates = acme("ops@example.com", "https://acme_v02.example.com/directory"),
            "certificates.server",
        ),
        case(
            "acme server with credentials",
            azure,
            |s| {
                s.certificates = acme(
                    "ops@example.com",
                    "https://user:pw@acme.example.com/directory",
                )
            },
            "certificates.server",
        ),
        case(
            "acme server empty",
            aws,
            |s| s.certificates = acme("ops@example.com", ""),
            "certificates.server",
        ),
        case(
            "acme server without scheme",
            gcp,
            |s| s.certificates = acme("ops@example.com", "acme-v02.api.letsencrypt.org/directory"),
            "certificates.server",
        ),
        case(
            "acme server mailto",
            aws,
            |s| s.certificates = acme("ops@example.com", "mailto:ops@example.com"),
            "certificates.server",
        ),
        case(
            "acme server http with https in the path",
            azure,
            |s| s.certificates = acme("ops@example.com", "http://acme.example.com/https://x"),
            "certificates.server",
        ),
        case(
            "acme email mailto",
            gcp,
            |s| s.certificates = acme("mailto:ops@example.com", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "acme email MAILTO upper case",
            azure,
            |s| s.certificates = acme("MAILTO:ops@example.com", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "acme email two at signs",
            aws,
            |s| s.certificates = acme("ops@@example.com", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "acme email numeric tld",
            gcp,
            |s| s.certificates = acme("ops@example.123", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "acme email leading dot",
            azure,
            |s| s.certificates = acme(".ops@example.com", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "acme email double dot",
            aws,
            |s| s.certificates = acme("o..ps@example.com", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "acme email with a space",
            gcp,
            |s| s.certificates = acme("ops team@example.com", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "acme email angle brackets",
            aws,
            |s| s.certificates = acme("Ops <ops@example.com>", LETS_ENCRYPT_PRODUCTION),
            "certificates.email",
        ),
        case(
            "node cidr runs out of 192.168/16 (gcp)",
            gcp,
            |s| s.cluster.network.node_cidr = "192.168.0.0/15".into(),
            "cluster.network.nodeCidr",
        ),
        case(
            "node cidr runs out of 192.168/16 (aws)",
            aws,
            |s| s.cluster.network.node_cidr = "192.168.0.0/15".into(),
            "cluster.network.nodeCidr",
        ),
        case(
            "pod cidr runs out of 10/8 (gcp)",
            gcp,
            |s| s.cluster.network.pod_cidr = Some("10.0.0.0/7".into()),
            "cluster.network.podCidr",
        ),
        case(
            "pod cidr runs out of 10/8 (azure)",
            azure,
            |s| s.cluster.network.pod_cidr = Some("10.0.0.0/7".into()),
            "cluster.network.podCidr",
        ),
        case(
            "node cidr leading zero octet",
            gcp,
            |s| s.cluster.network.node_cidr = "010.255.0.0/16".into(),
            "cluster.network.nodeCidr",
        ),
        case(
            "node cidr leading zero prefix",
            aws,
            |s| s.cluster.network.node_cidr = "10.100.0.0/016".into(),
            "cluster.network.nodeCidr",
        ),
        case(
            "service cidr leading zero prefix",
            aws,
            |s| s.cluster.network.service_cidr = "172.20.0.0/016".into(),
            "cluster.network.serviceCidr",
        ),
        case(
            "pod cidr leading zero octet",
            azure,
            |s| s.cluster.network.pod_cidr = Some("10.244.00.0/16".into()),
            "cluster.network.podCidr",
        ),
        case(
            "service cidr larger than /12 (gcp)",
            gcp,
            |s| s.cluster.network.service_cidr = "10.128.0.0/11".into(),
            "cluster.network.serviceCidr",
        ),
        case(
            "service cidr larger than /12 (aws)",
            aws,
            |s| s.cluster.network.service_cidr = "10.128.0.0/11".into(),
            "cluster.network.serviceCidr",
        ),
        case(
            "service cidr larger than /12 (azure)",
            azure,
            |s| s.cluster.network.service_cidr = "10.128.0.0/11".into(),
            "cluster.network.serviceCidr",
        ),
        case(
            "service cidr in 172.30/16 reserved by aks",
            azure,
            |s| s.cluster.network.service_cidr = "172.30.0.0/16".into(),
            "cluster.network.serviceCidr",
        ),
        case(
            "pod cidr in 172.31/16 reserved by aks",
            azure,
            |s| s.cluster.network.pod_cidr = Some("172.31.0.0/16".into()),
            "cluster.network.podCidr",
        ),
        case(
            "s3 bucket reserved sthree-gitpod",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("sthree-gitpod".into()),
            "storage.bucket",
        ),
        case(
            "s3 bucket reserved sthree-configurator-gp",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("sthree-configurator-gp".into()),
            "storage.bucket",
        ),
        case(
            "s3 bucket reserved amzn-s3-demo-gitpod",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("amzn-s3-demo-gitpod".into()),
            "storage.bucket",
        ),
        case(
            "s3 bucket reserved xn--gitpod",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("xn--gitpod".into()),
            "storage.bucket",
        ),
        case(
            "s3 bucket reserved gitpod-s3alias",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("gitpod-s3alias".into()),
            "storage.bucket",
        ),
        case(
            "s3 bucket reserved gitpod--ol-s3",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("gitpod--ol-s3".into()),
            "storage.bucket",
        ),
        case(
            "s3 bucket reserved gitpod.mrap",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("gitpod.mrap".into()),
            "storage.bucket",
        ),
        case(
            "s3 bucket reserved gitpod--x-s3",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("gitpod--x-s3".into()),
            "storage.bucket",
        ),
        case(
            "s3 bucket reserved gitpod--table-s3",
            aws,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("gitpod--table-s3".into()),
            "storage.bucket",
        ),
        case(
            "gcs bucket reserved goog-gitpod",
            gcp,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("goog-gitpod".into()),
            "storage.bucket",
        ),
        case(
            "gcs bucket reserved my-google-bucket",
            gcp,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("my-google-bucket".into()),
            "storage.bucket",
        ),
        case(
            "gcs bucket reserved my-g00gle-bucket",
            gcp,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("my-g00gle-bucket".into()),
            "storage.bucket",
        ),
        case(
            "gcs bucket reserved gitpod-gogle",
            gcp,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("gitpod-gogle".into()),
            "storage.bucket",
        ),
        case(
            "azure container name gitpod.data",
            azure,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("gitpod.data".into()),
            "storage.bucket",
        ),
        case(
            "azure container name git--pod",
            azure,
            |s| s.storage.cloud_mut().unwrap().bucket = Some("git--pod".into()),
            "storage.bucket",
        ),
        case(
            "gcp project contains google",
            gcp,
            |s| s.gcp.as_mut().unwrap().project = "my-google-proj".into(),
            "gcp.project",
        ),
        case(
            "gcp project starts with google",
            gcp,
            |s| s.gcp.as_mut().unwrap().project = "googleproject1".into(),
            "gcp.project",
        ),
        case(
            "db user cloudsqladmin reserved on gcp",
            gcp,
            |s| s.database.cloud_mut().unwrap().username = "cloudsqladmin".into(),
            "database.username",
        ),
        case(
            "db user cloudsqlagent reserved on gcp",
            gcp,
            |s| s.database.cloud_mut().unwrap().username = "cloudsqlagent".into(),
            "database.username",
        ),
        case(
            "db user cloudsqlreplica reserved on gcp",
            gcp,
            |s| s.database.cloud_mut().unwrap().username = "cloudsqlreplica".into(),
            "database.username",
        ),
        case(
            "db user cloudsqlimport reserved on gcp",
            gcp,
            |s| s.database.cloud_mut().unwrap().username = "cloudsqlimport".into(),
            "database.username",
        ),
        case(
            "db user rdsadmin reserved on aws",
            aws,
            |s| s.database.cloud_mut().unwrap().username = "rdsadmin".into(),
            "database.username",
        ),
        case(
            "db user rdsrepladmin reserved on aws",
            aws,
            |s| s.database.cloud_mut().unwrap().username = "rdsrepladmin".into(),
            "database.username",
        ),
        case(
            "db user rdsproxyadmin reserved on aws",
            aws,
            |s| s.database.cloud_mut().unwrap().username = "rdsproxyadmin".into(),
            "database.username",
        ),
        case(
            "db user mysql reserved on aws",
            aws,
            |s| s.database.cloud_mut().unwrap().username = "mysql".into(),
            "database.username",
        ),
        case(
            "db user azure_superuser reserved on azure",
            azure,
            |s| s.database.cloud_mut().unwrap().username = "azure_superuser".into(),
            "database.username",
        ),
        case(
            "db user administrator reserved on azure",
            azure,
            |s| s.database.cloud_mut().unwrap().username = "administrator".into(),
            "database.username",
        ),
        case(
            "db user guest reserved on azure",
            azure,
            |s| s.database.cloud_mut().unwrap().username = "guest".into(),
            "database.username",
        ),
        case(
            "db user public reserved on azure",
            azure,
            |s| s.database.cloud_mut().unwrap().username = "public".into(),
            "database.username",
        ),
        case(
            "db user azure_gitpod reserved on azure",
            azure,
            |s| s.database.cloud_mut().unwrap().username = "azure_gitpod".into(),
            "database.username",
        ),
        case(
            "db user root reserved on azure",
            azure,
            |s| s.database.cloud_mut().unwrap().username = "root".into(),
            "database.username",
        ),
        case(
            "db user admin reserved on gcp",
            gcp,
            |s| s.database.cloud_mut().unwrap().username = "admin".into(),
            "database.username",
        ),
        case(
            "db user Admin reserved on azure",
            azure,
            |s| s.database.cloud_mut().unwrap().username = "Admin".into(),
            "database.username",
        ),
        case(
            "byo certificate without key",
            gcp,
            |s| s.certificates = byo_files(Some(tls("leaf.crt")), None),
            "certificates.keyFile",
        ),
        case(
            "byo key without certificate",
            aws,
            |s| s.certificates = byo_files(None, Some(tls("leaf.key"))),
            "certificates.certificateFile",
        ),
        case(
            "byo certificate file missing",
            azure,
            |s| s.certificates = byo_files(Some(tls("missing.crt")), Some(tls("leaf.key"))),
            "certificates.certificateFile",
        ),
        case(
            "byo key file missing",
            gcp,
            |s| s.certificates = byo_files(Some(tls("leaf.crt")), Some(tls("missing.key"))),
            "certificates.keyFile",
        ),
        case(
            "byo certificate misses *.ws",
            aws,
            |s| s.certificates = byo_files(Some(tls("no-ws.crt")), Some(tls("leaf.key"))),
            "certificates.certificateFile",
        ),
        case(
            "byo key of another certificate",
            gcp,
            |s| s.certificates = byo_files(Some(tls("leaf.crt")), Some(tls("other.key"))),
            "certificates.keyFile",
        ),
        case(
            "byo rsa certificate with an ec key",
            azure,
            |s| s.certificates = byo_files(Some(tls("rsa.crt")), Some(tls("leaf.key"))),
            "certificates.keyFile",
        ),
        case(
            "byo key file holds a certificate",
            aws,
            |s| s.certificates = byo_files(Some(tls("leaf.crt")), Some(tls("leaf.crt"))),
            "certificates.keyFile",
        ),
        case(
            "byo certificate file holds a key",
            gcp,
            |s| s.certificates = byo_files(Some(tls("leaf.key")), Some(tls("leaf.key"))),
            "certificates.certificateFile",
        ),
        case(
            "byo certificate for another domain",
            aws,
            |s| {
                s.domain = "other.example.org".into();
                s.certificates = byo_files(Some(tls("chain.pem")), Some(tls("leaf.key")));
            },
            "certificates.certificateFile",
        ),
    ]
}

#[test]
fn the_table_is_large_and_its_names_distinct() {
    let cases = cases();
    assert!(cases.len() >= 189, "only {} cases", cases.len());
    let mut names = BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case name '{}'", c.name);
    }
    // Every row really changes its baseline.
    for c in &cases {
        assert_ne!(
            c.spec(),
            (c.base)(),
            "case '{}' does not change the spec",
            c.name
        );
    }
}

#[test]
fn the_valid_baselines_pass() {
    for (cloud, spec) in [("gcp", gcp()), ("aws", aws()), ("azure", azure())] {
        if let Err(e) = spec.validate() {
            panic!("{cloud} baseline should be valid:\n{e}");
        }
    }
}

#[test]
fn every_invalid_spec_is_rejected_with_its_path() {
    let mut failures = Vec::new();
    for c in cases() {
        match c.spec().validate() {
            Ok(()) => failures.push(format!(
                "[{}] accepted; expected a problem at '{}'",
                c.name, c.path
            )),
            Err(errs) if !errs.has_path(c.path) => {
                failures.push(format!("[{}] no problem at '{}':\n{errs}", c.name, c.path));
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_problem_display_contains_its_path() {
    for c in cases() {
        let errs = c.spec().validate().expect_err(c.name);
        assert!(!errs.problems().is_empty(), "[{}] no problems", c.name);
        let whole = errs.to_string();
        for p in errs.problems() {
            assert!(
                !p.path.is_empty(),
                "[{}] problem without a path: {p}",
                c.name
            );
            let shown = p.to_string();
            assert!(
                shown.starts_with(&format!("{}: ", p.path)),
                "[{}] '{shown}' does not start with its path '{}'",
                c.name,
                p.path
            );
            assert!(
                !p.message.is_empty(),
                "[{}] empty message at {}",
                c.name,
                p.path
            );
            assert!(
                whole.contains(&shown),
                "[{}] '{shown}' missing from:\n{whole}",
                c.name
            );
        }
        assert!(
            whole.contains(c.path),
            "[{}] '{}' missing from:\n{whole}",
            c.name,
            c.path
        );
    }
}

#[test]
fn several_problems_are_all_reported() {
    let mut s = gcp();
    s.name = "Bad-".into();
    s.node_pools.services.min_nodes = 0;
    s.node_pools.services.max_nodes = 0;
    s.cluster.network.pod_cidr = Some("not-a-cidr".into());
    s.certificates = acme("", LETS_ENCRYPT_PRODUCTION);
    s.database.cloud_mut().unwrap().username = "root".into();
    let errs = s.validate().expect_err("several problems");
    let expected = [
        "name",
        "nodePools.services.maxNodes",
        "cluster.network.podCidr",
        "certificates.email",
        "database.username",
    ];
    assert!(
        errs.problems().len() >= expected.len(),
        "too few problems:\n{errs}"
    );
    for path in expected {
        assert!(errs.has_path(path), "no problem at '{path}':\n{errs}");
    }
    assert!(
        errs.to_string().starts_with(&format!(
            "invalid spec ({} problem(s))",
            errs.problems().len()
        )),
        "{errs}"
    );
}

#[test]
fn yaml_loading_errors_carry_the_path() {
    // Unknown fields: serde_path_to_error 0.1.20 reports the path down to the unknown
    // key itself (`nodePools.services.maxNodez`); the parent path is accepted too. The
    // message names the field either way.
    let unknown: [(&str, &str, &str, &str); 3] = [
        (
            "unknown field under nodePools.services",
            "cloud: gcp\nnodePools:\n  services:\n    maxNodez: 3\n",
            "nodePools.services",
            "maxNodez",
        ),
        (
            "unknown field under cluster.network",
            "cloud: azure\ncluster:\n  network:\n    podCidrs: 10.0.0.0/8\n",
            "cluster.network",
            "podCidrs",
        ),
        (
            "unknown field under database.backups",
            "cloud: aws\ndatabase:\n  backups:\n    retention: 7\n",
            "database.backups",
            "retention",
        ),
    ];
    for (name, yaml, parent, field) in unknown {
        let errs = match ReferenceArchitecture::from_yaml(yaml) {
            Ok(spec) => panic!("[{name}] loaded: {spec:?}"),
            Err(e) => e,
        };
        let full = format!("{parent}.{field}");
        let p = errs
            .problems()
            .iter()
            .find(|p| p.path == parent || p.path == full)
            .unwrap_or_else(|| panic!("[{name}] no problem at '{parent}' or '{full}':\n{errs}"));
        assert!(p.message.contains(field), "[{name}] {errs}");
        assert!(errs.to_string().contains(parent), "[{name}] {errs}");
    }
    // Wrong types and values: the path of the field itself.
    let typed: [(&str, &str, &str); 3] = [
        (
            "wrong type for database.storageGb",
            "cloud: gcp\ndatabase:\n  storageGb: lots\n",
            "database.storageGb",
        ),
        (
            "negative maxNodes",
            "cloud: aws\nnodePools:\n  regularWorkspaces:\n    maxNodes: -1\n",
            "nodePools.regularWorkspaces.maxNodes",
        ),
        ("unknown cloud", "cloud: ibm\nname: gp\n", "cloud"),
    ];
    for (name, yaml, path) in typed {
        let errs: ValidationErrors = match ReferenceArchitecture::from_yaml(yaml) {
            Ok(spec) => panic!("[{name}] loaded: {spec:?}"),
            Err(e) => e,
        };
        assert!(
            errs.has_path(path),
            "[{name}] no problem at '{path}':\n{errs}"
        );
        assert!(errs.to_string().contains(path), "[{name}] {errs}");
    }
    // A spec that loads but has a bad value: validate names the field.
    let spec = ReferenceArchitecture::from_yaml(
        "cloud: gcp\nname: gp\ndomain: gitpod.example.com\ngcp:\n  project: my-project-123\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n  server: https://acme.example.com/dir\n\
         nodePools:\n  headlessWorkspaces:\n    minNodes: 3\n    maxNodes: 2\n",
    )
    .expect("loads");
    let errs = spec.validate().expect_err("minNodes > maxNodes");
    assert!(
        errs.has_path("nodePools.headlessWorkspaces.minNodes"),
        "{errs}"
    );
    assert_eq!(errs.problems().len(), 1, "{errs}");
}

#[tokio::test]
async fn the_engine_makes_no_call_for_an_invalid_spec() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let sim = Arc::new(SimCloud::new(clock.clone(), LatencyProfile::instant()));
    let engine = Engine::builder(Providers::all(sim.clone()))
        .clock(clock.clone())
        .build()
        .unwrap();
    let cases = cases();
    for c in &cases {
        let spec = c.spec();
        match engine.plan(&spec).await {
            Ok(plan) => panic!("[{}] planned an invalid spec: {plan:?}", c.name),
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    ErrorKind::InvalidInput,
                    "[{}] {}",
                    c.name,
                    e.chain()
                );
                let errs = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<ValidationErrors>())
                    .unwrap_or_else(|| {
                        panic!("[{}] no ValidationErrors source: {}", c.name, e.chain())
                    });
                assert!(
                    errs.has_path(c.path),
                    "[{}] no problem at '{}':\n{errs}",
                    c.name,
                    c.path
                );
            }
        }
        let n = sim.counts();
        assert!(
            n.reads == 0 && n.mutating == 0 && n.polls == 0,
            "[{}] provider calls were made: {n:?}",
            c.name
        );
    }
    let n = sim.counts();
    assert_eq!(
        (n.reads, n.mutating, n.polls),
        (0, 0, 0),
        "after {} invalid specs: {n:?}",
        cases.len()
    );
    assert!(sim.resources().is_empty());

    // Control: the counters do count, so the zeros above mean something.
    let control = Arc::new(SimCloud::new(clock.clone(), LatencyProfile::instant()));
    let engine = Engine::builder(Providers::all(control.clone()))
        .clock(clock)
        .build()
        .unwrap();
    engine.plan(&gcp()).await.expect("a valid spec plans");
    assert!(control.counts().reads > 0, "{:?}", control.counts());
    assert_eq!(control.counts().mutating, 0, "{:?}", control.counts());
}

#[test]
fn byo_certificate_files_that_fit_pass() {
    // Chain (leaf + CA) with a PKCS#8 key, the same key in SEC1, an RSA PKCS#1 key, and
    // a wildcard one level up covering DOMAIN itself.
    for (cert, key) in [
        ("chain.pem", "leaf.key"),
        ("leaf.crt", "leaf-sec1.key"),
        ("rsa.crt", "rsa.key"),
        ("parent-wildcard.crt", "leaf.key"),
    ] {
        for base in [gcp, aws, azure] {
            let mut s = base();
            s.certificates = byo_files(Some(tls(cert)), Some(tls(key)));
            if let Err(e) = s.validate() {
                panic!("{cert} + {key} on {}:\n{e}", s.cloud);
            }
        }
    }
}

/// The fixtures' validity: notBefore 2026-11-29T11:17:11Z, notAfter 2036-11-26T11:17:11Z
/// (`openssl x509 -noout -dates`).
const NOT_BEFORE: u64 = 1_795_951_031;
const NOT_AFTER: u64 = 2_111_311_031;

fn at(unix: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix)
}

#[test]
fn byo_certificate_expiry_is_judged_at_the_given_time() {
    let mut s = gcp();
    s.certificates = byo_files(Some(tls("chain.pem")), Some(tls("leaf.key")));
    let day = 86_400;
    let ok = gitpod_refarch::tls::check_spec(&s, at(NOT_BEFORE + day));
    assert!(ok.problems.is_empty() && ok.warnings.is_empty(), "{ok:?}");
    // Within 30 days of the end: valid, with a warning at the file's path.
    let soon = gitpod_refarch::tls::check_spec(&s, at(NOT_AFTER - 10 * day));
    assert!(soon.problems.is_empty(), "{soon:?}");
    assert_eq!(soon.warnings.len(), 1, "{soon:?}");
    assert_eq!(soon.warnings[0].path, "certificates.certificateFile");
    assert!(soon.warnings[0].message.contains("30 days"), "{soon:?}");
    // 31 days before: no warning.
    let fine = gitpod_refarch::tls::check_spec(&s, at(NOT_AFTER - 31 * day));
    assert!(fine.warnings.is_empty(), "{fine:?}");
    // Expired, and not yet valid: errors.
    for now in [NOT_AFTER + 1, NOT_BEFORE - day] {
        let bad = gitpod_refarch::tls::check_spec(&s, at(now));
        assert_eq!(bad.problems.len(), 1, "{bad:?}");
        assert_eq!(bad.problems[0].path, "certificates.certificateFile");
    }
}

#[test]
fn a_byo_key_never_reaches_a_message() {
    let key = std::fs::read_to_string(tls("other.key")).unwrap();
    let body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut s = aws();
    s.certificates = byo_files(Some(tls("leaf.crt")), Some(tls("other.key")));
    let errs = s.validate().expect_err("the key does not match");
    let c = gitpod_refarch::tls::TlsCertificate::from_spec(&s)
        .unwrap()
        .expect("files given");
    let shown = format!("{errs}\n{errs:?}\n{c:?}\n{}", s.to_yaml().unwrap());
    for line in body {
        assert!(!shown.contains(line), "key material in:\n{shown}");
    }
    assert!(c.key_pem().expose().contains(body_first(&key)));
}

fn body_first(pem: &str) -> &str {
    pem.lines().nth(1).unwrap()
}

/// The parsers are not relied on for leading zeros (ipnet reads the prefix `/08` as
/// 8, and what it makes of `010.` has varied between builds): the rule refuses them
/// in the address and in the prefix, whatever the parser says.
#[test]
fn leading_zeros_are_refused_by_the_rule_not_only_by_the_parsers() {
    assert!("010.0.0.0".parse::<std::net::Ipv4Addr>().is_err());
    for cidr in ["10.100.0.0/016", "010.100.0.0/16", "10.100.00.0/16"] {
        let lenient = cidr.parse::<ipnet::Ipv4Net>();
        let mut s = aws();
        s.cluster.network.node_cidr = cidr.into();
        let errs = s.validate().expect_err("leading zero");
        assert!(
            errs.problems().iter().any(
                |p| p.path == "cluster.network.nodeCidr" && p.message.contains("leading zeros")
            ),
            "{cidr}: {errs} (ipnet alone: {lenient:?})"
        );
    }
}
