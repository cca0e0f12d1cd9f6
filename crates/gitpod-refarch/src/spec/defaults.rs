//! Per-cloud defaults, equal to the reference architecture guide's tables and to
//! Gitpod's own Terraform where the guide is silent (see `gitpod-anchors.md` a.1-a.3).

use std::collections::BTreeMap;

use super::*;

/// The Kubernetes minor version every cloud offers today. The guide's 1.22 is long
/// past end of support.
const KUBERNETES_VERSION: &str = "1.33";

fn pool(
    machine_type: &str,
    disk_type: &str,
    disk_size_gb: u32,
    max_nodes: u32,
    role: PoolRole,
    image: Option<&str>,
) -> NodePool {
    NodePool {
        machine_type: machine_type.into(),
        disk_type: disk_type.into(),
        disk_size_gb,
        min_nodes: 1,
        max_nodes,
        labels: role
            .required_labels()
            .iter()
            .map(|l| ((*l).to_string(), "true".to_string()))
            .collect(),
        taints: Vec::new(),
        image: image.map(str::to_string),
    }
}

fn pools(services: &str, workspaces: &str, disk_type: &str, image: Option<&str>) -> NodePools {
    NodePools {
        services: pool(services, disk_type, 100, 4, PoolRole::Services, image),
        regular_workspaces: pool(
            workspaces,
            disk_type,
            512,
            50,
            PoolRole::RegularWorkspaces,
            image,
        ),
        headless_workspaces: pool(
            workspaces,
            disk_type,
            512,
            50,
            PoolRole::HeadlessWorkspaces,
            image,
        ),
    }
}

fn database(tier: &str) -> DatabaseSettings {
    DatabaseSettings {
        mysql_version: "5.7".into(),
        tier: tier.into(),
        storage_gb: 20,
        storage_auto_increase: true,
        high_availability: true,
        backups: BackupSettings {
            enabled: true,
            retention_days: 7,
        },
        flags: BTreeMap::from([(
            "explicit_defaults_for_timestamp".to_string(),
            "off".to_string(),
        )]),
        database_name: "gitpod".into(),
        username: "gitpod".into(),
        deletion_protection: false,
    }
}

pub(super) fn for_cloud(cloud: Cloud) -> ReferenceArchitecture {
    let (region, zones, network, pools, tier, registry_mode) = match cloud {
        Cloud::Gcp => (
            "europe-west1",
            vec![],
            NetworkSettings {
                node_cidr: "10.255.0.0/16".into(),
                pod_cidr: Some("10.0.0.0/12".into()),
                service_cidr: "10.64.0.0/12".into(),
            },
            pools(
                "n2d-standard-4",
                "n2d-standard-16",
                "pd-ssd",
                Some("UBUNTU_CONTAINERD"),
            ),
            "db-n1-standard-2",
            RegistryMode::Managed,
        ),
        Cloud::Aws => (
            "eu-west-1",
            vec!["eu-west-1b".to_string(), "eu-west-1c".to_string()],
            NetworkSettings {
                node_cidr: "10.100.0.0/16".into(),
                pod_cidr: None,
                service_cidr: "172.20.0.0/16".into(),
            },
            pools("m6i.xlarge", "m6i.4xlarge", "gp3", None),
            "db.m5.large",
            RegistryMode::InClusterObjectStorage,
        ),
        Cloud::Azure => (
            "northeurope",
            vec![],
            NetworkSettings {
                node_cidr: "10.2.0.0/16".into(),
                pod_cidr: Some("10.244.0.0/16".into()),
                service_cidr: "10.0.0.0/16".into(),
            },
            pools("Standard_D4_v4", "Standard_D16_v4", "Managed", None),
            "Standard_D2ds_v4",
            RegistryMode::Managed,
        ),
    };
    ReferenceArchitecture {
        name: "gitpod".into(),
        domain: String::new(),
        cloud,
        cluster: ClusterSettings {
            region: region.into(),
            zones,
            kubernetes_version: KUBERNETES_VERSION.into(),
            network,
            max_pods_per_node: 110,
            auto_upgrade: false,
        },
        node_pools: pools,
        database: DatabaseChoice::Cloud(database(tier)),
        dns: DnsChoice::Cloud(DnsSettings {
            zone: None,
            records_target: None,
        }),
        storage: StorageChoice::Cloud(StorageSettings {
            bucket: None,
            versioning: true,
        }),
        registry: RegistryChoice::Cloud(RegistrySettings {
            mode: registry_mode,
            repository: "gitpod".into(),
        }),
        certificates: CertificateSettings::Acme {
            email: String::new(),
            server: LETS_ENCRYPT_PRODUCTION.into(),
        },
        labels: BTreeMap::new(),
        gcp: match cloud {
            Cloud::Gcp => Some(GcpSettings {
                project: String::new(),
                create_project: false,
                billing_account: None,
                workload_identity: false,
            }),
            _ => None,
        },
        aws: match cloud {
            Cloud::Aws => Some(AwsSettings {
                account_id: None,
                highly_available_nat: false,
            }),
            _ => None,
        },
        azure: match cloud {
            Cloud::Azure => Some(AzureSettings {
                subscription_id: String::new(),
                resource_group: None,
                registry_name: None,
                database_server_name: None,
            }),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_equal_the_guides_tables() {
        let cases = [
            (
                Cloud::Gcp,
                "n2d-standard-4",
                "n2d-standard-16",
                "db-n1-standard-2",
            ),
            (Cloud::Aws, "m6i.xlarge", "m6i.4xlarge", "db.m5.large"),
            (
                Cloud::Azure,
                "Standard_D4_v4",
                "Standard_D16_v4",
                "Standard_D2ds_v4",
            ),
        ];
        for (cloud, svc, ws, tier) in cases {
            let s = for_cloud(cloud);
            let p = &s.node_pools;
            let db = s.database.cloud().unwrap();
            assert_eq!(p.services.machine_type, svc);
            assert_eq!(p.regular_workspaces.machine_type, ws);
            assert_eq!(p.headless_workspaces.machine_type, ws);
            assert_eq!((p.services.min_nodes, p.services.max_nodes), (1, 4));
            assert_eq!(
                (
                    p.regular_workspaces.min_nodes,
                    p.regular_workspaces.max_nodes
                ),
                (1, 50)
            );
            assert_eq!(p.services.disk_size_gb, 100);
            assert_eq!(p.headless_workspaces.disk_size_gb, 512);
            assert_eq!(db.mysql_version, "5.7");
            assert_eq!(db.tier, tier);
            assert_eq!(
                db.flags
                    .get("explicit_defaults_for_timestamp")
                    .map(String::as_str),
                Some("off")
            );
            for l in [
                labels::WORKSPACE_SERVICES,
                labels::SERVICES,
                labels::META,
                labels::IDE,
            ] {
                assert_eq!(p.services.labels.get(l).map(String::as_str), Some("true"));
            }
            assert!(p.services.taints.is_empty());
            assert!(!s.cluster.auto_upgrade);
        }
    }
}
