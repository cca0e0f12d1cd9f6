//! The typed description of one installation: [`ReferenceArchitecture`].
//!
//! A spec is loaded from YAML or JSON ([`ReferenceArchitecture::from_yaml`],
//! [`ReferenceArchitecture::from_json`]) or built in code
//! ([`ReferenceArchitecture::builder`]). Every field not given takes the default of the
//! chosen [`Cloud`], which equals the tables of the reference architecture guide
//! (see [`ReferenceArchitecture::defaults`]). Loading checks types and unknown fields;
//! [`crate::validate`] then checks every value and reports all problems at once.

mod builder;
mod choices;
mod defaults;
mod load;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use builder::Builder;
pub use choices::{
    load_ca_file, load_ca_file_from, DatabaseChoice, DatabaseTls, DatabaseTlsMode, DnsChoice,
    PartProvider, RegistryChoice, SecretSource, SelfManagedDatabaseSettings,
    SelfManagedDnsSettings, SelfManagedRegistrySettings, SelfManagedStorageSettings, StorageChoice,
    TsigAlgorithm,
};
pub use load::{MAX_NESTING, MAX_SPEC_BYTES, MAX_VALUES};

use crate::problem::{Problem, ValidationErrors};

/// The node label keys Gitpod's installer checks (`affinity.go`), plus the outdated
/// `workload_workspace_services` that the guide still sets.
pub mod labels {
    /// Meta components (server, proxy, ...).
    pub const META: &str = "gitpod.io/workload_meta";
    /// IDE components.
    pub const IDE: &str = "gitpod.io/workload_ide";
    /// The label the guide uses for workspace services (renamed upstream in Dec 2022).
    pub const WORKSPACE_SERVICES: &str = "gitpod.io/workload_workspace_services";
    /// The current label for workspace services.
    pub const SERVICES: &str = "gitpod.io/workload_services";
    /// Regular workspaces.
    pub const WORKSPACE_REGULAR: &str = "gitpod.io/workload_workspace_regular";
    /// Headless workspaces (prebuilds, image builds).
    pub const WORKSPACE_HEADLESS: &str = "gitpod.io/workload_workspace_headless";
}

/// Which cloud's defaults and naming rules apply to the spec.
///
/// The engine itself never branches on this: providers decide how resources are made.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// Google Cloud.
    Gcp,
    /// Amazon Web Services.
    Aws,
    /// Microsoft Azure.
    Azure,
}

impl Cloud {
    /// The lower-case name (`gcp`, `aws`, `azure`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Gcp => "gcp",
            Cloud::Aws => "aws",
            Cloud::Azure => "azure",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Gitpod installation on the single-cluster reference architecture.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReferenceArchitecture {
    /// Installation name: prefix of every resource name, and external-dns' owner id.
    pub name: String,
    /// The Gitpod domain (`gitpod.example.com`); certificates cover it, `*.` and `*.ws.`.
    pub domain: String,
    /// Whose defaults and naming rules apply.
    pub cloud: Cloud,
    /// Cluster-wide settings.
    pub cluster: ClusterSettings,
    /// The three node pools.
    pub node_pools: NodePools,
    /// The MySQL database: the cloud's (`provider: cloud`, the default) or an
    /// existing server (`provider: selfManaged`).
    pub database: DatabaseChoice,
    /// The DNS zone: the cloud's or an existing zone updated by RFC 2136.
    pub dns: DnsChoice,
    /// Object storage: the cloud's or an existing S3-compatible store.
    pub storage: StorageChoice,
    /// The OCI registry for workspace images: the cloud's or an existing registry.
    pub registry: RegistryChoice,
    /// How the `https-certificates` secret is obtained.
    pub certificates: CertificateSettings,
    /// Extra labels/tags put on every cloud resource (the installation name is always added).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Google Cloud settings (required when `cloud: gcp` or a GCP provider is used).
    #[serde(default)]
    pub gcp: Option<GcpSettings>,
    /// AWS settings.
    #[serde(default)]
    pub aws: Option<AwsSettings>,
    /// Azure settings (required when `cloud: azure`).
    #[serde(default)]
    pub azure: Option<AzureSettings>,
}

/// Cluster-wide settings.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSettings {
    /// Region (`europe-west1`, `eu-west-1`, `northeurope`).
    pub region: String,
    /// Zones; empty means the cloud's regional default. AWS needs at least two.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Kubernetes `major.minor` (or `major.minor.patch`).
    pub kubernetes_version: String,
    /// Address ranges.
    pub network: NetworkSettings,
    /// Pods per node (the guide: 110).
    pub max_pods_per_node: u32,
    /// Let the cloud upgrade nodes on its own. The reference architecture pins versions: false.
    pub auto_upgrade: bool,
}

/// Address ranges, as CIDR strings (checked by `validate`).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSettings {
    /// The VPC/VNet/subnet range for nodes.
    pub node_cidr: String,
    /// Pod range (secondary range on GKE, kubenet on AKS); none where pods use node IPs (EKS).
    #[serde(default)]
    pub pod_cidr: Option<String>,
    /// Kubernetes service range.
    pub service_cidr: String,
}

/// The three node pools of the reference architecture.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodePools {
    /// Gitpod's services (meta, IDE, workspace services).
    pub services: NodePool,
    /// Regular workspaces.
    pub regular_workspaces: NodePool,
    /// Headless workspaces (prebuilds, image builds).
    pub headless_workspaces: NodePool,
}

/// Which of the three pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolRole {
    /// The services pool.
    Services,
    /// The regular workspace pool.
    RegularWorkspaces,
    /// The headless workspace pool.
    HeadlessWorkspaces,
}

impl PoolRole {
    /// All roles, in a fixed order.
    pub const ALL: [PoolRole; 3] = [
        PoolRole::Services,
        PoolRole::RegularWorkspaces,
        PoolRole::HeadlessWorkspaces,
    ];

    /// The short name used in resource ids (`services`, `regular-ws`, `headless-ws`).
    pub fn short_name(self) -> &'static str {
        match self {
            PoolRole::Services => "services",
            PoolRole::RegularWorkspaces => "regular-ws",
            PoolRole::HeadlessWorkspaces => "headless-ws",
        }
    }

    /// The spec field name (`services`, `regularWorkspaces`, `headlessWorkspaces`).
    pub fn field(self) -> &'static str {
        match self {
            PoolRole::Services => "services",
            PoolRole::RegularWorkspaces => "regularWorkspaces",
            PoolRole::HeadlessWorkspaces => "headlessWorkspaces",
        }
    }

    /// The labels Gitpod requires on this pool's nodes (value `"true"`).
    pub fn required_labels(self) -> &'static [&'static str] {
        match self {
            PoolRole::Services => &[
                labels::META,
                labels::IDE,
                labels::WORKSPACE_SERVICES,
                labels::SERVICES,
            ],
            PoolRole::RegularWorkspaces => &[labels::WORKSPACE_REGULAR],
            PoolRole::HeadlessWorkspaces => &[labels::WORKSPACE_HEADLESS],
        }
    }
}

impl NodePools {
    /// The pool for `role`.
    pub fn get(&self, role: PoolRole) -> &NodePool {
        match role {
            PoolRole::Services => &self.services,
            PoolRole::RegularWorkspaces => &self.regular_workspaces,
            PoolRole::HeadlessWorkspaces => &self.headless_workspaces,
        }
    }

    /// The pool for `role`, mutably.
    pub fn get_mut(&mut self, role: PoolRole) -> &mut NodePool {
        match role {
            PoolRole::Services => &mut self.services,
            PoolRole::RegularWorkspaces => &mut self.regular_workspaces,
            PoolRole::HeadlessWorkspaces => &mut self.headless_workspaces,
        }
    }
}

/// One node pool.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodePool {
    /// Machine/instance/VM size.
    pub machine_type: String,
    /// Disk type (`pd-ssd`, `gp3`, `Managed`).
    pub disk_type: String,
    /// Boot disk size in GB.
    pub disk_size_gb: u32,
    /// Autoscaling lower bound.
    pub min_nodes: u32,
    /// Autoscaling upper bound.
    pub max_nodes: u32,
    /// Node labels; the pool's required Gitpod labels must be present with value `true`.
    pub labels: BTreeMap<String, String>,
    /// Node taints (none in the reference architecture).
    #[serde(default)]
    pub taints: Vec<Taint>,
    /// Node image (`UBUNTU_CONTAINERD` on GKE; an AMI id for a custom EKS image). None
    /// means the cloud's managed default.
    #[serde(default)]
    pub image: Option<String>,
}

/// A Kubernetes node taint.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    /// Key (a qualified name).
    pub key: String,
    /// Value (may be empty).
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl Taint {
    /// A taint.
    pub fn new(
        key: impl Into<String>,
        value: impl Into<String>,
        effect: impl Into<String>,
    ) -> Self {
        Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        }
    }
}

/// Managed MySQL.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseSettings {
    /// `5.7` (the guide's; past standard support) or `8.0`.
    pub mysql_version: String,
    /// Instance tier/class/SKU (`db-n1-standard-2`, `db.m5.large`, `Standard_D2ds_v4`).
    pub tier: String,
    /// Storage in GB.
    pub storage_gb: u32,
    /// Grow storage automatically.
    pub storage_auto_increase: bool,
    /// Regional/Multi-AZ failover replica.
    pub high_availability: bool,
    /// Automated backups.
    pub backups: BackupSettings,
    /// Database flags; `explicit_defaults_for_timestamp` must be `off`.
    pub flags: BTreeMap<String, String>,
    /// The database Gitpod uses: `gitpod`.
    pub database_name: String,
    /// The dedicated user: `gitpod`.
    pub username: String,
    /// Refuse to delete the instance (destroy then leaves it and reports it).
    pub deletion_protection: bool,
}

/// Automated backups.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupSettings {
    /// Whether backups (and binary logging, where HA needs it) are on.
    pub enabled: bool,
    /// Days to keep backups (1..=35).
    pub retention_days: u32,
}

/// The DNS zone.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsSettings {
    /// The zone's DNS name; defaults to the domain itself. The domain must lie inside it.
    #[serde(default)]
    pub zone: Option<String>,
    /// Where DOMAIN, `*.DOMAIN` and `*.ws.DOMAIN` point. None: external-dns creates the
    /// records from Gitpod's proxy Service once it has a load balancer.
    #[serde(default)]
    pub records_target: Option<RecordsTarget>,
}

/// The target of the three Gitpod records.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum RecordsTarget {
    /// An IPv4 address (A records).
    Ipv4(String),
    /// A host name (CNAME / alias records).
    Hostname(String),
}

/// Object storage.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StorageSettings {
    /// A bucket for single-bucket mode (S3). None: derived from the installation name
    /// where the cloud needs one; Gitpod creates per-user buckets on GCS.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Keep object versions.
    pub versioning: bool,
}

/// How workspace images are stored.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum RegistryMode {
    /// The cloud's registry (Artifact Registry, ECR, ACR) with push credentials.
    Managed,
    /// Gitpod's in-cluster registry backed by object storage (the AWS reference).
    InClusterObjectStorage,
}

/// The OCI registry.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistrySettings {
    /// Managed registry or in-cluster with object storage.
    pub mode: RegistryMode,
    /// The repository name inside the registry.
    pub repository: String,
}

/// How the `https-certificates` secret comes to exist.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase", tag = "issuer")]
pub enum CertificateSettings {
    /// cert-manager with an ACME ClusterIssuer `gitpod-issuer` and DNS-01.
    #[serde(rename_all = "camelCase")]
    Acme {
        /// The ACME account email (required by Let's Encrypt for expiry notices).
        email: String,
        /// The ACME directory URL.
        server: String,
    },
    /// Your own certificate: a `kubernetes.io/tls` Secret in the Gitpod namespace. With
    /// `certificateFile` and `keyFile` the SDK checks them before any cloud call (names,
    /// expiry, key) and the in-cluster bootstrap writes the Secret from them; without
    /// them the Secret must already exist. No issuer, Certificate or DNS-01 identity.
    #[serde(rename_all = "camelCase")]
    #[non_exhaustive]
    BringYourOwn {
        /// The secret's name.
        secret_name: String,
        /// The certificate chain (PEM, leaf first), relative to the working directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        certificate_file: Option<String>,
        /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1); read into a
        /// [`crate::Secret`], never printed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_file: Option<String>,
    },
}

impl CertificateSettings {
    /// Bring your own certificate in the existing Secret `secret_name`.
    pub fn bring_your_own(secret_name: impl Into<String>) -> Self {
        CertificateSettings::BringYourOwn {
            secret_name: secret_name.into(),
            certificate_file: None,
            key_file: None,
        }
    }

    /// Bring your own certificate from PEM files; the bootstrap writes them to the
    /// Secret `secret_name`.
    pub fn bring_your_own_files(
        secret_name: impl Into<String>,
        certificate_file: impl Into<String>,
        key_file: impl Into<String>,
    ) -> Self {
        CertificateSettings::BringYourOwn {
            secret_name: secret_name.into(),
            certificate_file: Some(certificate_file.into()),
            key_file: Some(key_file.into()),
        }
    }
}

/// The Let's Encrypt production directory.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Google Cloud settings.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GcpSettings {
    /// The project id.
    pub project: String,
    /// Create the project if it does not exist.
    #[serde(default)]
    pub create_project: bool,
    /// Billing account to link (`XXXXXX-XXXXXX-XXXXXX`), needed to create a project.
    #[serde(default)]
    pub billing_account: Option<String>,
    /// Use Workload Identity instead of service-account keys where the installer allows it.
    #[serde(default)]
    pub workload_identity: bool,
}

/// AWS settings.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsSettings {
    /// Expected account id (12 digits); apply refuses to run in another account.
    #[serde(default)]
    pub account_id: Option<String>,
    /// One NAT gateway per zone instead of one in total.
    #[serde(default)]
    pub highly_available_nat: bool,
}

/// Azure settings.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzureSettings {
    /// Subscription id (a UUID).
    pub subscription_id: String,
    /// Resource group; defaults to the installation name. An existing group is used
    /// only when it is tagged for this installation.
    #[serde(default)]
    pub resource_group: Option<String>,
    /// The container registry's name (globally unique, 5-50 letters and digits);
    /// defaults to the installation name's letters and digits plus a suffix derived
    /// from the subscription and resource group.
    #[serde(default)]
    pub registry_name: Option<String>,
    /// The MySQL flexible server's name (globally unique, 3-63 lower-case letters,
    /// digits and '-'); defaults to `mysql-<name>-` plus the same suffix.
    #[serde(default)]
    pub database_server_name: Option<String>,
}

use load::Format;

/// The problem inside the choice at `path` (`database`, `dns`, `storage`, `registry`)
/// with its full field path, found by reading the chosen variant's object alone.
fn choice_problem(merged: &serde_json::Value, path: &str) -> Option<Problem> {
    fn first<T: serde::de::DeserializeOwned>(
        path: &str,
        object: serde_json::Map<String, serde_json::Value>,
    ) -> Option<Problem> {
        let e =
            serde_path_to_error::deserialize::<_, T>(serde_json::Value::Object(object)).err()?;
        let inner = e.path().to_string();
        let full = if inner == "." {
            path.to_string()
        } else {
            format!("{path}.{inner}")
        };
        Some(Problem::new(full, e.into_inner().to_string()))
    }
    let mut object = merged.get(path)?.as_object()?.clone();
    let tag = object.remove("provider");
    let self_managed = match tag.as_ref().map(|t| t.as_str()) {
        None | Some(Some("cloud")) => false,
        Some(Some("selfManaged")) => true,
        Some(_) => {
            return Some(Problem::new(
                format!("{path}.provider"),
                "must be cloud or selfManaged",
            ))
        }
    };
    match (path, self_managed) {
        ("database", false) => first::<DatabaseSettings>(path, object),
        ("database", true) => first::<SelfManagedDatabaseSettings>(path, object),
        ("dns", false) => first::<DnsSettings>(path, object),
        ("dns", true) => first::<SelfManagedDnsSettings>(path, object),
        ("storage", false) => first::<StorageSettings>(path, object),
        ("storage", true) => first::<SelfManagedStorageSettings>(path, object),
        ("registry", false) => first::<RegistrySettings>(path, object),
        ("registry", true) => first::<SelfManagedRegistrySettings>(path, object),
        _ => None,
    }
}

/// A value the spec names rather than holds: where a secret comes from, or a
/// certificate or CA file. [`ReferenceArchitecture::references`] lists them.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecReference {
    /// The field's path, as problems name it (`database.adminPassword`).
    pub field: &'static str,
    /// What it names: `env` or `file` for a secret, `file` for a certificate or CA
    /// file.
    pub source: SecretSource,
}

impl ReferenceArchitecture {
    /// Every value the spec names rather than holds, in the order `validate` reads
    /// them: the secrets of its self-managed parts, their CA files, and a brought
    /// certificate's files. A program that reads them from its own store (the
    /// controller, from the installation's Secret) can tell the user which keys it
    /// needs.
    pub fn references(&self) -> Vec<SpecReference> {
        let mut out = Vec::new();
        let mut add = |field: &'static str, source: &SecretSource| {
            out.push(SpecReference {
                field,
                source: source.clone(),
            })
        };
        if let Some(d) = self.database.self_managed() {
            add("database.adminPassword", &d.admin_password);
            if let Some(f) = &d.tls.ca_file {
                add("database.tls.caFile", &SecretSource::file(f));
            }
        }
        if let Some(d) = self.dns.self_managed() {
            add("dns.tsigSecret", &d.tsig_secret);
        }
        if let Some(st) = self.storage.self_managed() {
            add("storage.accessKeyId", &st.access_key_id);
            add("storage.secretAccessKey", &st.secret_access_key);
            if let Some(f) = &st.ca_file {
                add("storage.caFile", &SecretSource::file(f));
            }
        }
        if let Some(r) = self.registry.self_managed() {
            add("registry.password", &r.password);
            if let Some(f) = &r.ca_file {
                add("registry.caFile", &SecretSource::file(f));
            }
        }
        if let CertificateSettings::BringYourOwn {
            certificate_file,
            key_file,
            ..
        } = &self.certificates
        {
            if let Some(f) = certificate_file {
                add("certificates.certificateFile", &SecretSource::file(f));
            }
            if let Some(f) = key_file {
                add("certificates.keyFile", &SecretSource::file(f));
            }
        }
        out
    }
}

impl ReferenceArchitecture {
    /// The defaults for `cloud`, equal to the guide's tables. `domain` is empty and the
    /// cloud section has placeholder ids, so `validate` asks for them.
    pub fn defaults(cloud: Cloud) -> Self {
        defaults::for_cloud(cloud)
    }

    /// Start a builder on the defaults of `cloud`.
    pub fn builder(cloud: Cloud) -> Builder {
        Builder::new(cloud)
    }

    /// Parse a YAML spec; fields not given take the defaults of its `cloud`.
    ///
    /// Type errors and unknown fields are reported with their path. Values are not
    /// checked here: call [`ReferenceArchitecture::validate`].
    pub fn from_yaml(text: &str) -> Result<Self, ValidationErrors> {
        Self::load(text, Format::Yaml)
    }

    /// Parse a JSON spec; see [`ReferenceArchitecture::from_yaml`].
    pub fn from_json(text: &str) -> Result<Self, ValidationErrors> {
        Self::load(text, Format::Json)
    }

    /// Read a spec from `reader` (YAML, or JSON when `json`), at most
    /// [`MAX_SPEC_BYTES`]: a longer input is refused after reading one byte more, so
    /// `/dev/zero` costs 1 MiB. `name` appears in messages.
    pub fn from_reader(
        reader: impl std::io::Read,
        name: &str,
        json: bool,
    ) -> Result<Self, ValidationErrors> {
        let text = load::read_limited(reader, name)?;
        Self::load(&text, if json { Format::Json } else { Format::Yaml })
    }

    /// Read a spec file: JSON if its name ends in `.json`, else YAML; see
    /// [`ReferenceArchitecture::from_reader`].
    pub fn from_path(path: &std::path::Path) -> Result<Self, ValidationErrors> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| {
            ValidationErrors::one(Problem::new("", format!("cannot read {name}: {e}")))
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::from_reader(file, &name, json)
    }

    fn load(text: &str, format: Format) -> Result<Self, ValidationErrors> {
        let parse_err = |e: String| ValidationErrors::one(Problem::new("", e));
        let value = load::parse(text, format)?;
        let serde_json::Value::Object(user) = value else {
            return Err(parse_err("the spec must be a mapping".into()));
        };
        let cloud_value = user.get("cloud").cloned().ok_or_else(|| {
            ValidationErrors::one(Problem::new("cloud", "required: gcp, aws or azure"))
        })?;
        let cloud: Cloud = serde_json::from_value(cloud_value).map_err(|_| {
            ValidationErrors::one(Problem::new("cloud", "must be one of gcp, aws, azure"))
        })?;
        let mut merged = serde_json::to_value(Self::defaults(cloud))
            .map_err(|e| parse_err(format!("internal: defaults do not serialize: {e}")))?;
        load::merge(&mut merged, serde_json::Value::Object(user));
        serde_path_to_error::deserialize(&merged).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            // Inside a choice serde buffers the object and loses the path: find it.
            let problem = choice_problem(&merged, &path)
                .unwrap_or_else(|| Problem::new(path, e.into_inner().to_string()));
            ValidationErrors::one(problem)
        })
    }

    /// The zone's DNS name (without trailing dot).
    pub fn zone_dns_name(&self) -> &str {
        self.dns.zone().unwrap_or(&self.domain)
    }

    /// The three names the certificate and DNS records cover.
    pub fn gitpod_dns_names(&self) -> [String; 3] {
        [
            self.domain.clone(),
            format!("*.{}", self.domain),
            format!("*.ws.{}", self.domain),
        ]
    }

    /// Serialize to YAML.
    pub fn to_yaml(&self) -> Result<String, crate::Error> {
        // Through a JSON value, so that enums are written as mappings
        // (`recordsTarget: {ipv4: ...}`), not YAML tags: `from_yaml` reads them back.
        let value = serde_json::to_value(self)
            .map_err(|e| crate::Error::internal("spec does not serialize").with_source(e))?;
        serde_yaml_ng::to_string(&value)
            .map_err(|e| crate::Error::internal("spec does not serialize").with_source(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_takes_cloud_defaults_for_missing_fields() {
        let spec = ReferenceArchitecture::from_yaml(
            "cloud: aws\nname: gp\ndomain: gitpod.example.com\nnodePools:\n  services:\n    maxNodes: 6\n",
        )
        .unwrap();
        assert_eq!(spec.node_pools.services.machine_type, "m6i.xlarge");
        assert_eq!(spec.node_pools.services.max_nodes, 6);
        assert_eq!(spec.node_pools.services.min_nodes, 1);
        assert_eq!(
            spec.node_pools.regular_workspaces.machine_type,
            "m6i.4xlarge"
        );
        assert!(spec
            .node_pools
            .services
            .labels
            .contains_key(labels::WORKSPACE_SERVICES));
    }

    #[test]
    fn unknown_field_and_type_errors_carry_the_path() {
        let e = ReferenceArchitecture::from_yaml(
            "cloud: gcp\nnodePools:\n  services:\n    maxNodez: 3\n",
        )
        .unwrap_err();
        assert!(
            e.problems()[0].path.starts_with("nodePools.services"),
            "{e}"
        );
        assert!(e.problems()[0].message.contains("maxNodez"), "{e}");
        let e = ReferenceArchitecture::from_yaml("cloud: gcp\ndatabase:\n  storageGb: lots\n")
            .unwrap_err();
        assert_eq!(e.problems()[0].path, "database.storageGb");
        let e = ReferenceArchitecture::from_yaml("cloud: ibm\n").unwrap_err();
        assert_eq!(e.problems()[0].path, "cloud");
    }

    #[test]
    fn json_and_yaml_round_trip() {
        let spec = ReferenceArchitecture::defaults(Cloud::Azure);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(ReferenceArchitecture::from_json(&json).unwrap(), spec);
        let yaml = spec.to_yaml().unwrap();
        assert_eq!(ReferenceArchitecture::from_yaml(&yaml).unwrap(), spec);
        // Enums too (they once came out as YAML tags that could not be read back).
        let mut spec = ReferenceArchitecture::defaults(Cloud::Gcp);
        spec.dns
            .set_records_target(Some(RecordsTarget::Ipv4("203.0.113.10".into())));
        let yaml = spec.to_yaml().unwrap();
        assert_eq!(
            ReferenceArchitecture::from_yaml(&yaml).unwrap(),
            spec,
            "{yaml}"
        );
    }
}
