//! The cloud-neutral resources of the reference architecture: their ids, their
//! desired state (what the planner derives from the spec) and their outputs (what a
//! provider reports once a resource exists).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::spec::{PoolRole, RecordsTarget, RegistryMode, Taint};

mod domain;
mod rules;

pub use domain::{ClusterResource, DatabaseResource, DnsResource, InClusterResource, Routed};
pub use rules::{GeneratedSecret, DATABASE_PASSWORD, ENCRYPTION_KEY};

/// The kinds of resource, each owned by one provider trait (see [`ResourceKind::domain`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    /// Account preparation: GCP project, billing link and APIs; Azure resource group and
    /// provider registrations; the AWS account check.
    Foundation,
    /// VPC/VNet, subnets, NAT, routes, security groups.
    Network,
    /// The cluster's service account/role and its roles.
    ClusterIdentity,
    /// The Kubernetes control plane.
    Cluster,
    /// One of the three node pools.
    NodePool,
    /// The DNS zone for the domain.
    DnsZone,
    /// The least-privilege identity for external-dns and the DNS-01 solver.
    DnsIdentity,
    /// DOMAIN, `*.DOMAIN`, `*.ws.DOMAIN` when a target is known.
    DnsRecords,
    /// Object storage and its credentials.
    ObjectStorage,
    /// The OCI registry and its push credentials.
    Registry,
    /// The managed MySQL instance.
    DatabaseInstance,
    /// The `gitpod` database and its dedicated user.
    Database,
    /// In the cluster: the cluster-admin binding for the operator identity.
    ClusterAccess,
    /// In the cluster: cert-manager, its CRDs Established and its webhook answering.
    CertManager,
    /// In the cluster: external-dns for the zone, with its credentials.
    ExternalDns,
    /// In the cluster: the DNS-01 solver secret and the `gitpod-issuer` ClusterIssuer.
    Issuer,
    /// In the cluster: the Gitpod namespace and the installer's secrets.
    GitpodNamespace,
    /// In the cluster: the `https-certificates` Certificate, issued.
    Certificate,
}

/// Which provider trait owns a resource kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Domain {
    /// [`crate::provider::ClusterProvider`].
    Cluster,
    /// [`crate::provider::DnsProvider`].
    Dns,
    /// [`crate::provider::ObjectStore`].
    ObjectStore,
    /// [`crate::provider::Registry`].
    Registry,
    /// [`crate::provider::Database`].
    Database,
    /// [`crate::provider::ClusterBootstrap`] (inside the Kubernetes cluster).
    InCluster,
}

impl ResourceKind {
    /// Every kind.
    pub const ALL: [ResourceKind; 18] = [
        ResourceKind::Foundation,
        ResourceKind::Network,
        ResourceKind::ClusterIdentity,
        ResourceKind::Cluster,
        ResourceKind::NodePool,
        ResourceKind::DnsZone,
        ResourceKind::DnsIdentity,
        ResourceKind::DnsRecords,
        ResourceKind::ObjectStorage,
        ResourceKind::Registry,
        ResourceKind::DatabaseInstance,
        ResourceKind::Database,
        ResourceKind::ClusterAccess,
        ResourceKind::CertManager,
        ResourceKind::ExternalDns,
        ResourceKind::Issuer,
        ResourceKind::GitpodNamespace,
        ResourceKind::Certificate,
    ];

    /// The provider trait that owns this kind.
    pub fn domain(self) -> Domain {
        match self {
            ResourceKind::Foundation
            | ResourceKind::Network
            | ResourceKind::ClusterIdentity
            | ResourceKind::Cluster
            | ResourceKind::NodePool => Domain::Cluster,
            ResourceKind::DnsZone | ResourceKind::DnsIdentity | ResourceKind::DnsRecords => {
                Domain::Dns
            }
            ResourceKind::ObjectStorage => Domain::ObjectStore,
            ResourceKind::Registry => Domain::Registry,
            ResourceKind::DatabaseInstance | ResourceKind::Database => Domain::Database,
            ResourceKind::ClusterAccess
            | ResourceKind::CertManager
            | ResourceKind::ExternalDns
            | ResourceKind::Issuer
            | ResourceKind::GitpodNamespace
            | ResourceKind::Certificate => Domain::InCluster,
        }
    }

    /// The kebab-case name used in ids.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Foundation => "foundation",
            ResourceKind::Network => "network",
            ResourceKind::ClusterIdentity => "cluster-identity",
            ResourceKind::Cluster => "cluster",
            ResourceKind::NodePool => "node-pool",
            ResourceKind::DnsZone => "dns-zone",
            ResourceKind::DnsIdentity => "dns-identity",
            ResourceKind::DnsRecords => "dns-records",
            ResourceKind::ObjectStorage => "object-storage",
            ResourceKind::Registry => "registry",
            ResourceKind::DatabaseInstance => "database-instance",
            ResourceKind::Database => "database",
            ResourceKind::ClusterAccess => "cluster-access",
            ResourceKind::CertManager => "cert-manager",
            ResourceKind::ExternalDns => "external-dns",
            ResourceKind::Issuer => "issuer",
            ResourceKind::GitpodNamespace => "gitpod-namespace",
            ResourceKind::Certificate => "certificate",
        }
    }
}

/// A resource of one installation: its kind and a logical name (`node-pool/services`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceId {
    /// The kind.
    pub kind: ResourceKind,
    /// The logical name, unique within the kind.
    pub name: String,
}

impl ResourceId {
    /// A resource id.
    pub fn new(kind: ResourceKind, name: impl Into<String>) -> Self {
        ResourceId {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// Account preparation.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundationSpec {
    /// Installation name.
    pub installation: String,
    /// Region.
    pub region: String,
    /// Labels/tags for everything.
    pub labels: BTreeMap<String, String>,
}

/// The network.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Name (the installation name; providers add their own prefixes).
    pub name: String,
    /// Region.
    pub region: String,
    /// Zones (empty: provider's regional default).
    pub zones: Vec<String>,
    /// Node range.
    pub node_cidr: String,
    /// Pod range, where the cluster uses one.
    pub pod_cidr: Option<String>,
    /// Service range.
    pub service_cidr: String,
    /// One NAT per zone.
    pub highly_available_nat: bool,
    /// Labels/tags.
    pub labels: BTreeMap<String, String>,
}

/// The cluster's identity (node service account / roles).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIdentitySpec {
    /// Name.
    pub name: String,
    /// Labels/tags.
    pub labels: BTreeMap<String, String>,
}

/// The Kubernetes control plane.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Zones.
    pub zones: Vec<String>,
    /// Kubernetes version.
    pub kubernetes_version: String,
    /// Network policy provider: always `calico` (never GKE Dataplane V2).
    pub network_policy: String,
    /// Cloud-driven upgrades (false).
    pub auto_upgrade: bool,
    /// Pods per node.
    pub max_pods_per_node: u32,
    /// Labels/tags.
    pub labels: BTreeMap<String, String>,
}

/// One node pool.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// The cluster's name.
    pub cluster: String,
    /// Which pool.
    pub role: PoolRole,
    /// Pool name (`services`, `regular-ws`, `headless-ws`).
    pub name: String,
    /// Machine type.
    pub machine_type: String,
    /// Disk type.
    pub disk_type: String,
    /// Disk size (GB).
    pub disk_size_gb: u32,
    /// Autoscaling minimum.
    pub min_nodes: u32,
    /// Autoscaling maximum.
    pub max_nodes: u32,
    /// Node labels.
    pub node_labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<Taint>,
    /// Node image, if not the managed default.
    pub image: Option<String>,
    /// Kubernetes version of the nodes (follows the cluster's).
    pub kubernetes_version: String,
    /// Pods per node.
    pub max_pods_per_node: u32,
    /// Cloud-driven upgrades (false).
    pub auto_upgrade: bool,
    /// Labels/tags on the cloud resources.
    pub labels: BTreeMap<String, String>,
}

/// The DNS zone.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsZoneSpec {
    /// Name.
    pub name: String,
    /// The existing zone's primary server (`host:port`) when DNS is self-managed
    /// (RFC 2136): the zone is read there, never created or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// DNS name, without trailing dot.
    pub dns_name: String,
    /// Labels/tags.
    pub labels: BTreeMap<String, String>,
}

/// The identity external-dns and the DNS-01 solver use, scoped to the zone.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsIdentitySpec {
    /// Name.
    pub name: String,
    /// The zone's DNS name it may change.
    pub zone_dns_name: String,
}

/// The three Gitpod records.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecordsSpec {
    /// The installation (whose zone holds the records).
    pub installation: String,
    /// The zone's DNS name.
    pub zone_dns_name: String,
    /// DOMAIN, `*.DOMAIN`, `*.ws.DOMAIN`.
    pub names: Vec<String>,
    /// Where they point.
    pub target: RecordsTarget,
}

impl DnsRecordsSpec {
    /// Records of `installation` in `zone_dns_name` for `names`, pointing at `target`.
    pub fn new(
        installation: impl Into<String>,
        zone_dns_name: impl Into<String>,
        names: Vec<String>,
        target: RecordsTarget,
    ) -> Self {
        DnsRecordsSpec {
            installation: installation.into(),
            zone_dns_name: zone_dns_name.into(),
            names,
            target,
        }
    }
}

/// Object storage.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorageSpec {
    /// Name (installation name).
    pub name: String,
    /// Region.
    pub region: String,
    /// Bucket for single-bucket mode, if the user chose one.
    pub bucket: Option<String>,
    /// Versioning.
    pub versioning: bool,
    /// An existing S3-compatible endpoint (`https://minio.corp:9000`) when storage is
    /// self-managed: the bucket is created there only if the spec allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Labels/tags.
    pub labels: BTreeMap<String, String>,
}

/// The OCI registry.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// Name (installation name).
    pub name: String,
    /// Region.
    pub region: String,
    /// Repository.
    pub repository: String,
    /// Managed or in-cluster.
    pub mode: RegistryMode,
    /// An existing registry's image prefix (`harbor.corp/gitpod`) when the registry is
    /// self-managed: nothing is created, the push credentials are checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Labels/tags.
    pub labels: BTreeMap<String, String>,
}

/// The MySQL instance.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseInstanceSpec {
    /// Name (providers add a suffix where names cannot be reused).
    pub name: String,
    /// Region.
    pub region: String,
    /// MySQL version.
    pub mysql_version: String,
    /// Tier.
    pub tier: String,
    /// Storage (GB).
    pub storage_gb: u32,
    /// Auto-increase storage.
    pub storage_auto_increase: bool,
    /// Failover replica.
    pub high_availability: bool,
    /// Backups (and binary logging).
    pub backups_enabled: bool,
    /// Backup retention (days).
    pub backup_retention_days: u32,
    /// Flags.
    pub flags: BTreeMap<String, String>,
    /// Deletion protection.
    pub deletion_protection: bool,
    /// The database Gitpod uses, where the instance creates it (RDS, Azure).
    pub database_name: String,
    /// The admin user, where the instance needs one at creation (RDS master user,
    /// Azure administrator login).
    pub admin_username: String,
    /// An existing MySQL/MariaDB server (`host:port`) when the database is
    /// self-managed: nothing is created at this level, the server is checked (version,
    /// `explicit_defaults_for_timestamp`) with the admin connection; the tier, storage,
    /// backups and flags fields are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Labels/tags.
    pub labels: BTreeMap<String, String>,
}

/// The `gitpod` database and user inside the instance.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// The instance's logical name.
    pub instance: String,
    /// Database name (`gitpod`).
    pub database_name: String,
    /// User name (`gitpod`).
    pub username: String,
}

/// The cluster-admin binding for the identity the SDK runs as (the guide's
/// `kubectl create clusterrolebinding cluster-admin-binding`).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAccessSpec {
    /// The cluster's logical name.
    pub cluster: String,
    /// The ClusterRoleBinding's name.
    pub binding: String,
}

/// cert-manager, installed with the guide's settings.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertManagerSpec {
    /// Namespace (`cert-manager`).
    pub namespace: String,
    /// The pinned version (`v1.18.2`).
    pub version: String,
    /// `--dns01-recursive-nameservers` (`8.8.8.8:53`, `1.1.1.1:53`), with
    /// `--dns01-recursive-nameservers-only`.
    pub recursive_nameservers: Vec<String>,
}

/// external-dns for the installation's zone.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDnsSpec {
    /// Namespace (`external-dns`).
    pub namespace: String,
    /// The image (`registry.k8s.io/external-dns/external-dns:v0.15.1`).
    pub image: String,
    /// `--domain-filter`: the zone's DNS name.
    pub domain_filter: String,
    /// `--txt-owner-id`: the installation name.
    pub txt_owner_id: String,
}

/// The DNS-01 solver and the ACME ClusterIssuer.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    /// ClusterIssuer name (`gitpod-issuer`).
    pub name: String,
    /// ACME account email.
    pub email: String,
    /// ACME directory URL.
    pub server: String,
    /// The secret holding the ACME account key (`issuer-account-key`).
    pub account_key_secret: String,
}

/// The Gitpod namespace and the secrets the installer expects in it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitpodNamespaceSpec {
    /// Namespace (`gitpod`).
    pub namespace: String,
}

/// The `https-certificates` Certificate.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// Namespace (`gitpod`).
    pub namespace: String,
    /// Certificate and TLS secret name (`https-certificates`).
    pub name: String,
    /// DOMAIN, `*.DOMAIN`, `*.ws.DOMAIN`.
    pub dns_names: Vec<String>,
    /// The ClusterIssuer (`gitpod-issuer`).
    pub issuer: String,
    /// The zone whose delegation is checked while the certificate is not ready.
    pub zone_dns_name: String,
}

/// The desired state of one resource.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "spec")]
pub enum Desired {
    /// Account preparation.
    Foundation(FoundationSpec),
    /// Network.
    Network(NetworkSpec),
    /// Cluster identity.
    ClusterIdentity(ClusterIdentitySpec),
    /// Cluster.
    Cluster(ClusterSpec),
    /// Node pool.
    NodePool(NodePoolSpec),
    /// DNS zone.
    DnsZone(DnsZoneSpec),
    /// DNS identity.
    DnsIdentity(DnsIdentitySpec),
    /// DNS records.
    DnsRecords(DnsRecordsSpec),
    /// Object storage.
    ObjectStorage(ObjectStorageSpec),
    /// Registry.
    Registry(RegistrySpec),
    /// Database instance.
    DatabaseInstance(DatabaseInstanceSpec),
    /// Database and user.
    Database(DatabaseSpec),
    /// Cluster-admin binding.
    ClusterAccess(ClusterAccessSpec),
    /// cert-manager.
    CertManager(CertManagerSpec),
    /// external-dns.
    ExternalDns(ExternalDnsSpec),
    /// Solver and ClusterIssuer.
    Issuer(IssuerSpec),
    /// Gitpod namespace and secrets.
    GitpodNamespace(GitpodNamespaceSpec),
    /// The TLS certificate.
    Certificate(CertificateSpec),
}

impl Desired {
    /// The id of this resource.
    pub fn id(&self) -> ResourceId {
        let (kind, name) = match self {
            Desired::Foundation(s) => (ResourceKind::Foundation, s.installation.as_str()),
            Desired::Network(s) => (ResourceKind::Network, s.name.as_str()),
            Desired::ClusterIdentity(s) => (ResourceKind::ClusterIdentity, s.name.as_str()),
            Desired::Cluster(s) => (ResourceKind::Cluster, s.name.as_str()),
            Desired::NodePool(s) => (ResourceKind::NodePool, s.name.as_str()),
            Desired::DnsZone(s) => (ResourceKind::DnsZone, s.name.as_str()),
            Desired::DnsIdentity(s) => (ResourceKind::DnsIdentity, s.name.as_str()),
            Desired::DnsRecords(s) => (ResourceKind::DnsRecords, s.zone_dns_name.as_str()),
            Desired::ObjectStorage(s) => (ResourceKind::ObjectStorage, s.name.as_str()),
            Desired::Registry(s) => (ResourceKind::Registry, s.name.as_str()),
            Desired::DatabaseInstance(s) => (ResourceKind::DatabaseInstance, s.name.as_str()),
            Desired::Database(s) => (ResourceKind::Database, s.database_name.as_str()),
            Desired::ClusterAccess(s) => (ResourceKind::ClusterAccess, s.binding.as_str()),
            Desired::CertManager(s) => (ResourceKind::CertManager, s.namespace.as_str()),
            Desired::ExternalDns(s) => (ResourceKind::ExternalDns, s.namespace.as_str()),
            Desired::Issuer(s) => (ResourceKind::Issuer, s.name.as_str()),
            Desired::GitpodNamespace(s) => (ResourceKind::GitpodNamespace, s.namespace.as_str()),
            Desired::Certificate(s) => (ResourceKind::Certificate, s.name.as_str()),
        };
        ResourceId::new(kind, name)
    }

    /// The kind of this resource.
    pub fn kind(&self) -> ResourceKind {
        self.id().kind
    }

    /// The settings that matter most, on one line (for plans).
    pub fn summary(&self) -> String {
        match self {
            Desired::Foundation(s) => format!("region {}", s.region),
            Desired::Network(s) => format!(
                "nodes {}, pods {}, services {}",
                s.node_cidr,
                s.pod_cidr.as_deref().unwrap_or("node IPs"),
                s.service_cidr
            ),
            Desired::ClusterIdentity(_) => "cluster service account/role".into(),
            Desired::Cluster(s) => format!(
                "Kubernetes {}, {}, network policy {}, auto-upgrade {}",
                s.kubernetes_version,
                if s.zones.is_empty() {
                    format!("regional {}", s.region)
                } else {
                    s.zones.join(",")
                },
                s.network_policy,
                if s.auto_upgrade { "on" } else { "off" }
            ),
            Desired::NodePool(s) => format!(
                "{}, {} {} GB, {}..{} nodes, labels {}",
                s.machine_type,
                s.disk_type,
                s.disk_size_gb,
                s.min_nodes,
                s.max_nodes,
                s.node_labels.keys().cloned().collect::<Vec<_>>().join(",")
            ),
            Desired::DnsZone(s) => match &s.server {
                Some(server) => format!("zone {} on {server} (RFC 2136)", s.dns_name),
                None => format!("zone {}", s.dns_name),
            },
            Desired::DnsIdentity(s) => format!("may change {} only", s.zone_dns_name),
            Desired::DnsRecords(s) => s.names.join(", "),
            Desired::ObjectStorage(ObjectStorageSpec {
                endpoint: Some(endpoint),
                bucket,
                ..
            }) => format!(
                "existing S3-compatible storage at {endpoint}, bucket {}",
                bucket.as_deref().unwrap_or("(none)")
            ),
            Desired::ObjectStorage(s) => format!(
                "{}versioning {}",
                s.bucket
                    .as_ref()
                    .map(|b| format!("bucket {b}, "))
                    .unwrap_or_default(),
                if s.versioning { "on" } else { "off" }
            ),
            Desired::Registry(RegistrySpec { url: Some(url), .. }) => {
                format!("existing registry {url}")
            }
            Desired::Registry(s) => format!("{:?} registry, repository {}", s.mode, s.repository),
            Desired::DatabaseInstance(DatabaseInstanceSpec {
                server: Some(server),
                ..
            }) => format!("existing MySQL at {server}"),
            Desired::DatabaseInstance(s) => format!(
                "MySQL {} {}, {} GB{}, HA {}, backups {}, {}",
                s.mysql_version,
                s.tier,
                s.storage_gb,
                if s.storage_auto_increase {
                    " auto-increase"
                } else {
                    ""
                },
                if s.high_availability { "on" } else { "off" },
                if s.backups_enabled {
                    format!("{} days", s.backup_retention_days)
                } else {
                    "off".into()
                },
                s.flags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Desired::Database(s) => format!(
                "database {}, user {} (generated password)",
                s.database_name, s.username
            ),
            Desired::ClusterAccess(_) => "cluster-admin for the operator identity".into(),
            Desired::CertManager(s) => format!(
                "cert-manager {}, DNS-01 via {}",
                s.version,
                s.recursive_nameservers.join(",")
            ),
            Desired::ExternalDns(s) => format!(
                "domain filter {}, owner {}",
                s.domain_filter, s.txt_owner_id
            ),
            Desired::Issuer(s) => format!("ACME {} for {}", s.server, s.email),
            Desired::GitpodNamespace(s) => {
                format!("namespace {} with the installer's secrets", s.namespace)
            }
            Desired::Certificate(s) => format!("{} from {}", s.dns_names.join(", "), s.issuer),
        }
    }
}

/// Storage credentials and location, in the shape the installer wants.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum StorageOutput {
    /// S3 or an S3-compatible store (`objectStorage.s3`, secret `storage-s3`).
    #[serde(rename_all = "camelCase")]
    S3 {
        /// Endpoint host (`s3.<region>.amazonaws.com`).
        endpoint: String,
        /// Region.
        region: String,
        /// Bucket (single-bucket mode).
        bucket: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: Secret,
        /// The endpoint speaks plain HTTP (`objectStorage.s3.allowInsecureConnection`):
        /// only for a self-managed store inside a private network.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allow_insecure_connection: bool,
    },
    /// Google Cloud Storage (`objectStorage.cloudStorage`, secret `storage-gcp`).
    #[serde(rename_all = "camelCase")]
    Gcs {
        /// Project.
        project: String,
        /// Region.
        region: String,
        /// The storage service account's key JSON.
        service_account_json: Secret,
    },
    /// Gitpod's in-cluster object storage (`objectStorage.inCluster: true`, MinIO on a
    /// persistent volume): what the Azure provider reports, since the current Gitpod
    /// installer has no Azure Blob support.
    #[serde(rename_all = "camelCase")]
    InCluster {
        /// Region (the installer's `metadata.region`).
        region: String,
    },
    /// Azure Blob (the installer's legacy `objectStorage.azure`, secret `storage-azure`).
    #[serde(rename_all = "camelCase")]
    AzureBlob {
        /// Region.
        region: String,
        /// Storage account.
        account_name: String,
        /// Account key.
        account_key: Secret,
    },
}

/// Registry coordinates and credentials.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum RegistryOutput {
    /// An external registry with push credentials (`containerRegistry.external`).
    #[serde(rename_all = "camelCase")]
    External {
        /// Image URL prefix (`europe-docker.pkg.dev/<project>/gitpod`).
        url: String,
        /// Registry host (`europe-docker.pkg.dev`).
        server: String,
        /// User (`_json_key` on GCP).
        username: String,
        /// Password or token.
        password: Secret,
    },
    /// Gitpod's in-cluster registry on S3-compatible storage (`containerRegistry.s3storage`).
    #[serde(rename_all = "camelCase")]
    InClusterS3 {
        /// Bucket.
        bucket: String,
        /// Region.
        region: String,
        /// Endpoint host.
        endpoint: String,
        /// Access key.
        access_key_id: String,
        /// Secret key.
        secret_access_key: Secret,
    },
}

/// How cert-manager answers DNS-01 challenges and external-dns writes records for
/// the zone: what a [`crate::provider::DnsProvider`] reports with its identity, in
/// cert-manager's solver vocabulary (`cloudDNS`, `route53`, `azureDNS`, `rfc2136`).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum DnsSolver {
    /// Google Cloud DNS.
    #[serde(rename_all = "camelCase")]
    CloudDns {
        /// The project holding the zone.
        project: String,
        /// The DNS service account's email (annotated on the Kubernetes service
        /// accounts for Workload Identity).
        service_account: String,
        /// Its key JSON; `None` with Workload Identity.
        key: Option<Secret>,
    },
    /// Amazon Route53, scoped to one hosted zone.
    #[serde(rename_all = "camelCase")]
    Route53 {
        /// The region for the API calls.
        region: String,
        /// The hosted zone id.
        hosted_zone_id: String,
        /// The zone-scoped user's access key id.
        access_key_id: String,
        /// Its secret key.
        secret_access_key: Secret,
    },
    /// Azure DNS with Workload Identity: one user-assigned identity per controller,
    /// each federated with its Kubernetes service account, no secret in the cluster.
    #[serde(rename_all = "camelCase")]
    AzureDns {
        /// Entra ID tenant.
        tenant_id: String,
        /// Subscription.
        subscription_id: String,
        /// Resource group of the zone.
        resource_group: String,
        /// The zone.
        zone_name: String,
        /// The client id of cert-manager's identity (the DNS-01 solver).
        cert_manager_client_id: String,
        /// The client id of external-dns's identity.
        external_dns_client_id: String,
    },
    /// RFC 2136 dynamic updates with TSIG (self-managed DNS).
    #[serde(rename_all = "camelCase")]
    Rfc2136 {
        /// `host:port` of the primary server.
        nameserver: String,
        /// TSIG key name.
        tsig_key_name: String,
        /// TSIG algorithm (`HMACSHA256`).
        tsig_algorithm: String,
        /// The TSIG secret (base64).
        tsig_secret: Secret,
    },
}

/// How Gitpod reaches the database.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum DatabaseEndpoint {
    /// Host and port (`database.external`).
    #[serde(rename_all = "camelCase")]
    Host {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
        /// The CA that signs the server's certificate (PEM), when it is not a public
        /// one: the installer's `database.ssl.caCert` (Secret key `ca.crt`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_certificate_pem: Option<String>,
    },
    /// A Cloud SQL connection name `project:region:instance` (`database.cloudSQL`).
    #[serde(rename_all = "camelCase")]
    CloudSql {
        /// Connection name.
        connection_name: String,
    },
}

/// What a resource reports once it exists.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Output {
    /// Foundation: the account/project/subscription it prepared.
    #[serde(rename_all = "camelCase")]
    Foundation {
        /// Account id, project id or subscription/resource group.
        account: String,
    },
    /// Network.
    #[serde(rename_all = "camelCase")]
    Network {
        /// Provider id of the network.
        network_id: String,
        /// Provider ids of the subnets.
        subnet_ids: Vec<String>,
    },
    /// Cluster identity.
    #[serde(rename_all = "camelCase")]
    ClusterIdentity {
        /// Principal (service-account email, role ARN, identity id).
        principal: String,
    },
    /// Cluster.
    #[serde(rename_all = "camelCase")]
    Cluster {
        /// Provider name of the cluster.
        name: String,
        /// API server: an `https://` URL, or a bare address (GKE's shape, reached
        /// over `https://`). Never plain HTTP: the bootstrap refuses `http://`.
        endpoint: String,
        /// Cluster CA certificate (PEM).
        ca_certificate_pem: String,
    },
    /// Node pool.
    #[serde(rename_all = "camelCase")]
    NodePool {
        /// Provider name of the pool.
        name: String,
    },
    /// DNS zone.
    #[serde(rename_all = "camelCase")]
    DnsZone {
        /// Provider id of the zone.
        zone_id: String,
        /// Name servers to delegate to from the parent zone.
        name_servers: Vec<String>,
    },
    /// DNS identity.
    #[serde(rename_all = "camelCase")]
    DnsIdentity {
        /// Principal.
        principal: String,
        /// Key/credentials for external-dns and the solver (none with workload identity).
        credentials: Option<Secret>,
        /// The DNS-01 solver and external-dns settings for the zone, when the
        /// provider knows them (the in-cluster bootstrap needs them).
        #[serde(default)]
        solver: Option<DnsSolver>,
    },
    /// DNS records.
    #[serde(rename_all = "camelCase")]
    DnsRecords {
        /// The names that now resolve.
        names: Vec<String>,
    },
    /// Object storage.
    ObjectStorage(StorageOutput),
    /// Registry.
    Registry(RegistryOutput),
    /// Database instance.
    #[serde(rename_all = "camelCase")]
    DatabaseInstance {
        /// Provider name of the instance.
        instance: String,
        /// How to reach it.
        endpoint: DatabaseEndpoint,
    },
    /// Something inside the cluster: the objects applied (`kind/namespace/name`).
    #[serde(rename_all = "camelCase")]
    InCluster {
        /// The objects, in the order they were applied.
        objects: Vec<String>,
    },
    /// Database and user.
    #[serde(rename_all = "camelCase")]
    Database {
        /// Database name.
        database: String,
        /// User.
        username: String,
        /// Password.
        password: Secret,
        /// Key of the client service account (Cloud SQL proxy), if one is needed.
        client_credentials: Option<Secret>,
    },
}

impl Output {
    /// Whether this output carries a secret that a provider cannot read back later
    /// (keys and passwords). Such outputs live in the state store.
    pub fn has_secret(&self) -> bool {
        matches!(
            self,
            Output::DnsIdentity {
                credentials: Some(_),
                ..
            } | Output::DnsIdentity {
                solver: Some(_),
                ..
            } | Output::ObjectStorage(
                StorageOutput::S3 { .. }
                    | StorageOutput::Gcs { .. }
                    | StorageOutput::AzureBlob { .. }
            ) | Output::Registry(_)
                | Output::Database { .. }
        )
    }
}
