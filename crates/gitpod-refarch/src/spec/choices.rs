//! The four parts a platform team may already run: each of `database`, `dns`,
//! `storage` and `registry` is a choice on its `provider` key, `cloud` (the default:
//! the chosen cloud makes it) or `selfManaged` (an existing server the SDK uses; see
//! the `gitpod-refarch-selfmanaged` crate).
//!
//! ```yaml
//! database:
//!   provider: selfManaged
//!   host: mysql.corp.example.com
//!   adminUsername: root
//!   adminPassword: {env: GITPOD_DB_ADMIN_PASSWORD}
//! ```
//!
//! Secrets are never written in the spec: each is a [`SecretSource`] (`{env: NAME}` or
//! `{file: PATH}`), loaded and checked by `validate` before any call.

use serde::{Deserialize, Serialize};

use super::{DatabaseSettings, DnsSettings, RecordsTarget, RegistrySettings, StorageSettings};
pub use crate::secret::SecretSource;

fn default_mysql_port() -> u16 {
    3306
}

fn default_gitpod() -> String {
    "gitpod".into()
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

fn default_true() -> bool {
    true
}

/// Who provides a part: the cloud, or a server the platform team runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PartProvider {
    /// The chosen cloud makes it (the default).
    Cloud,
    /// An existing server the SDK uses.
    SelfManaged,
}

impl PartProvider {
    /// The spec's word: `cloud` or `selfManaged`.
    pub fn as_str(self) -> &'static str {
        match self {
            PartProvider::Cloud => "cloud",
            PartProvider::SelfManaged => "selfManaged",
        }
    }
}

macro_rules! choice_accessors {
    ($choice:ident, $cloud:ty, $own:ty) => {
        impl $choice {
            /// The cloud's settings, if the cloud provides this part.
            pub fn cloud(&self) -> Option<&$cloud> {
                match self {
                    $choice::Cloud(c) => Some(c),
                    $choice::SelfManaged(_) => None,
                }
            }

            /// The cloud's settings, mutably, if the cloud provides this part.
            pub fn cloud_mut(&mut self) -> Option<&mut $cloud> {
                match self {
                    $choice::Cloud(c) => Some(c),
                    $choice::SelfManaged(_) => None,
                }
            }

            /// The existing server's settings, if this part is self-managed.
            pub fn self_managed(&self) -> Option<&$own> {
                match self {
                    $choice::SelfManaged(s) => Some(s),
                    $choice::Cloud(_) => None,
                }
            }

            /// The existing server's settings, mutably, if this part is self-managed.
            pub fn self_managed_mut(&mut self) -> Option<&mut $own> {
                match self {
                    $choice::SelfManaged(s) => Some(s),
                    $choice::Cloud(_) => None,
                }
            }

            /// Whether this part is an existing server (`provider: selfManaged`).
            pub fn is_self_managed(&self) -> bool {
                matches!(self, $choice::SelfManaged(_))
            }

            /// Who provides this part.
            pub fn provider(&self) -> PartProvider {
                match self {
                    $choice::Cloud(_) => PartProvider::Cloud,
                    $choice::SelfManaged(_) => PartProvider::SelfManaged,
                }
            }
        }

        impl From<$cloud> for $choice {
            fn from(c: $cloud) -> Self {
                $choice::Cloud(c)
            }
        }

        impl From<$own> for $choice {
            fn from(s: $own) -> Self {
                $choice::SelfManaged(s)
            }
        }
    };
}

/// The MySQL database: the cloud's managed MySQL, or an existing MySQL/MariaDB server.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "provider", rename_all = "camelCase")]
pub enum DatabaseChoice {
    /// The cloud's managed MySQL (`provider: cloud`, the default).
    Cloud(DatabaseSettings),
    /// An existing server (`provider: selfManaged`): the SDK creates the `gitpod`
    /// database and user there.
    SelfManaged(SelfManagedDatabaseSettings),
}

choice_accessors!(
    DatabaseChoice,
    DatabaseSettings,
    SelfManagedDatabaseSettings
);

impl DatabaseChoice {
    /// The database Gitpod uses (`gitpod`), whoever provides the server.
    pub fn database_name(&self) -> &str {
        match self {
            DatabaseChoice::Cloud(c) => &c.database_name,
            DatabaseChoice::SelfManaged(s) => &s.database_name,
        }
    }

    /// Gitpod's own user (`gitpod`), whoever provides the server.
    pub fn username(&self) -> &str {
        match self {
            DatabaseChoice::Cloud(c) => &c.username,
            DatabaseChoice::SelfManaged(s) => &s.username,
        }
    }

    /// Whether destroy keeps the database.
    pub fn deletion_protection(&self) -> bool {
        match self {
            DatabaseChoice::Cloud(c) => c.deletion_protection,
            DatabaseChoice::SelfManaged(s) => s.deletion_protection,
        }
    }
}

/// An existing MySQL or MariaDB server.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelfManagedDatabaseSettings {
    /// Host name or IP address of the server.
    pub host: String,
    /// Port (default 3306).
    #[serde(default = "default_mysql_port")]
    pub port: u16,
    /// An administrator allowed to create databases and users and to grant.
    pub admin_username: String,
    /// The administrator's password.
    pub admin_password: SecretSource,
    /// TLS to the server.
    #[serde(default)]
    pub tls: DatabaseTls,
    /// The database Gitpod uses (default `gitpod`).
    #[serde(default = "default_gitpod")]
    pub database_name: String,
    /// Gitpod's dedicated user (default `gitpod`).
    #[serde(default = "default_gitpod")]
    pub username: String,
    /// The SDK may `SET GLOBAL explicit_defaults_for_timestamp = OFF` (default false:
    /// a server with it ON is refused with the fix).
    #[serde(default)]
    pub allow_server_changes: bool,
    /// Destroy keeps the database and the user (default false).
    #[serde(default)]
    pub deletion_protection: bool,
}

impl SelfManagedDatabaseSettings {
    /// The server at `host`:3306 with this administrator; TLS preferred, database and
    /// user `gitpod`, no server changes, no deletion protection.
    pub fn new(
        host: impl Into<String>,
        admin_username: impl Into<String>,
        admin_password: SecretSource,
    ) -> Self {
        SelfManagedDatabaseSettings {
            host: host.into(),
            port: default_mysql_port(),
            admin_username: admin_username.into(),
            admin_password,
            tls: DatabaseTls::default(),
            database_name: default_gitpod(),
            username: default_gitpod(),
            allow_server_changes: false,
            deletion_protection: false,
        }
    }

    /// Another port.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Another TLS mode, with the CA file (PEM) for a private CA.
    #[must_use]
    pub fn tls(mut self, mode: DatabaseTlsMode, ca_file: Option<String>) -> Self {
        self.tls = DatabaseTls { mode, ca_file };
        self
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn server(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// TLS to a self-managed database.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseTls {
    /// The mode (default `preferred`).
    #[serde(default)]
    pub mode: DatabaseTlsMode,
    /// The CA certificate (PEM) for a private CA, relative to the working directory;
    /// also given to Gitpod (`database.ssl.caCert`).
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// TLS modes, as MySQL clients name them.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum DatabaseTlsMode {
    /// Plain TCP.
    Disabled,
    /// TLS if the server offers it (the default).
    #[default]
    Preferred,
    /// TLS, any certificate.
    Required,
    /// TLS, a certificate signed by the CA.
    VerifyCa,
    /// TLS, a certificate signed by the CA naming the host.
    VerifyIdentity,
}

/// The DNS zone: the cloud's DNS, or an existing zone updated by RFC 2136 with TSIG.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "provider", rename_all = "camelCase")]
pub enum DnsChoice {
    /// The cloud's DNS (`provider: cloud`, the default).
    Cloud(DnsSettings),
    /// An existing zone on the team's server (`provider: selfManaged`).
    SelfManaged(SelfManagedDnsSettings),
}

choice_accessors!(DnsChoice, DnsSettings, SelfManagedDnsSettings);

impl DnsChoice {
    /// Where the three Gitpod records point, whoever provides DNS.
    pub fn records_target(&self) -> Option<&RecordsTarget> {
        match self {
            DnsChoice::Cloud(c) => c.records_target.as_ref(),
            DnsChoice::SelfManaged(s) => s.records_target.as_ref(),
        }
    }

    /// Set where the three Gitpod records point.
    pub fn set_records_target(&mut self, target: Option<RecordsTarget>) {
        match self {
            DnsChoice::Cloud(c) => c.records_target = target,
            DnsChoice::SelfManaged(s) => s.records_target = target,
        }
    }

    /// The zone named in the spec (`None` for a cloud zone that defaults to the domain).
    pub fn zone(&self) -> Option<&str> {
        match self {
            DnsChoice::Cloud(c) => c.zone.as_deref(),
            DnsChoice::SelfManaged(s) => Some(&s.zone),
        }
    }
}

/// An existing zone updated by RFC 2136 dynamic updates signed with TSIG.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelfManagedDnsSettings {
    /// The existing zone (`gitpod.example.com`); the domain must lie inside it.
    pub zone: String,
    /// The zone's primary server, `host:port` (`192.0.2.53:53`), as the SDK reaches it.
    pub server: String,
    /// The server as cert-manager and external-dns reach it from the cluster
    /// (default: `server`).
    #[serde(default)]
    pub cluster_server: Option<String>,
    /// The TSIG key's name (`gitpod-refarch.`).
    pub tsig_key_name: String,
    /// The TSIG algorithm (default `hmac-sha256`).
    #[serde(default)]
    pub tsig_algorithm: TsigAlgorithm,
    /// The TSIG secret, base64 as `tsig-keygen` prints it.
    pub tsig_secret: SecretSource,
    /// Where DOMAIN, `*.DOMAIN` and `*.ws.DOMAIN` point (as for a cloud zone). A host
    /// name target needs the zone to be a parent of the domain.
    #[serde(default)]
    pub records_target: Option<RecordsTarget>,
}

impl SelfManagedDnsSettings {
    /// The zone `zone` on `server` (`host:port`), updated with the key `tsig_key_name`
    /// (hmac-sha256).
    pub fn new(
        zone: impl Into<String>,
        server: impl Into<String>,
        tsig_key_name: impl Into<String>,
        tsig_secret: SecretSource,
    ) -> Self {
        SelfManagedDnsSettings {
            zone: zone.into(),
            server: server.into(),
            cluster_server: None,
            tsig_key_name: tsig_key_name.into(),
            tsig_algorithm: TsigAlgorithm::default(),
            tsig_secret,
            records_target: None,
        }
    }
}

/// TSIG algorithms both the SDK and cert-manager support.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TsigAlgorithm {
    /// `hmac-sha256` (the default).
    #[default]
    HmacSha256,
    /// `hmac-sha512`.
    HmacSha512,
}

impl TsigAlgorithm {
    /// The spec's name (`hmac-sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

/// Object storage: the cloud's, or an existing S3-compatible store.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "provider", rename_all = "camelCase")]
pub enum StorageChoice {
    /// The cloud's object storage (`provider: cloud`, the default).
    Cloud(StorageSettings),
    /// An existing S3-compatible store (`provider: selfManaged`).
    SelfManaged(SelfManagedStorageSettings),
}

choice_accessors!(StorageChoice, StorageSettings, SelfManagedStorageSettings);

impl StorageChoice {
    /// The bucket named in the spec, whoever provides storage.
    pub fn bucket(&self) -> Option<&str> {
        match self {
            StorageChoice::Cloud(c) => c.bucket.as_deref(),
            StorageChoice::SelfManaged(s) => Some(&s.bucket),
        }
    }
}

/// An existing S3-compatible store (MinIO, Ceph RGW, ...).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelfManagedStorageSettings {
    /// The endpoint URL (`https://minio.corp.example.com:9000`); `http://` means plain
    /// HTTP (Gitpod's `allowInsecureConnection`).
    pub endpoint: String,
    /// The region (default `us-east-1`).
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// The bucket (Gitpod's single-bucket mode).
    pub bucket: String,
    /// The access key id.
    pub access_key_id: SecretSource,
    /// The secret access key.
    pub secret_access_key: SecretSource,
    /// Create the bucket if it does not exist (default true).
    #[serde(default = "default_true")]
    pub create_bucket: bool,
    /// Path-style addressing (default true; MinIO needs it).
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// The CA certificate (PEM) for a private CA.
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl SelfManagedStorageSettings {
    /// The bucket `bucket` at `endpoint` with these keys; region `us-east-1`, created if
    /// absent, path-style.
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        access_key_id: SecretSource,
        secret_access_key: SecretSource,
    ) -> Self {
        SelfManagedStorageSettings {
            endpoint: endpoint.into(),
            region: default_s3_region(),
            bucket: bucket.into(),
            access_key_id,
            secret_access_key,
            create_bucket: true,
            path_style: true,
            ca_file: None,
        }
    }
}

/// The OCI registry: the cloud's, or an existing registry.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "provider", rename_all = "camelCase")]
pub enum RegistryChoice {
    /// The cloud's registry or the in-cluster one (`provider: cloud`, the default).
    Cloud(RegistrySettings),
    /// An existing registry (`provider: selfManaged`).
    SelfManaged(SelfManagedRegistrySettings),
}

choice_accessors!(
    RegistryChoice,
    RegistrySettings,
    SelfManagedRegistrySettings
);

/// An existing OCI registry (Harbor, GitLab, a plain `registry:2`, ...).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelfManagedRegistrySettings {
    /// The prefix Gitpod pushes under, `host[:port]/path` (`harbor.corp.example.com/gitpod`);
    /// an `http://` prefix means plain HTTP (loopback and tests only).
    pub url: String,
    /// A user allowed to push there.
    pub username: String,
    /// Its password or token.
    pub password: SecretSource,
    /// The CA certificate (PEM) for a private CA.
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl SelfManagedRegistrySettings {
    /// The registry prefix `url` with this push user.
    pub fn new(
        url: impl Into<String>,
        username: impl Into<String>,
        password: SecretSource,
    ) -> Self {
        SelfManagedRegistrySettings {
            url: url.into(),
            username: username.into(),
            password,
            ca_file: None,
        }
    }

    /// The URL without its `http://`/`https://` scheme (`host[:port]/path`).
    pub fn url_without_scheme(&self) -> &str {
        self.url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"))
            .unwrap_or(&self.url)
            .trim_end_matches('/')
    }

    /// Whether the URL asks for plain HTTP (`http://`).
    pub fn insecure_http(&self) -> bool {
        self.url.starts_with("http://")
    }
}

/// The largest CA file read, in bytes (1 MiB).
const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// Read the CA certificate file `path` named at the spec field `field` (`database.tls.caFile`)
/// from the process's files; see [`load_ca_file_from`].
pub fn load_ca_file(path: &str, field: &str) -> Result<String, crate::problem::Problem> {
    load_ca_file_from(&crate::secret::ProcessSources, path, field)
}

/// Read the CA certificate file `path` named at the spec field `field` from
/// `sources`: at most 1 MiB of PEM text holding at least one parsable `CERTIFICATE`
/// block.
pub fn load_ca_file_from(
    sources: &dyn crate::secret::Sources,
    path: &str,
    field: &str,
) -> Result<String, crate::problem::Problem> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let problem = |m: String| crate::problem::Problem::new(field, m);
    if path.is_empty() {
        return Err(problem("the path is empty".into()));
    }
    let bytes = sources.file(path, MAX_CA_FILE_BYTES).map_err(problem)?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(problem(format!("{path} is larger than 1 MiB")));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        problem(format!(
            "cannot read {path}: stream did not contain valid UTF-8"
        ))
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| problem(format!("{path} is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(problem(format!(
            "{path} holds no CERTIFICATE block (PEM expected)"
        )));
    }
    for (i, c) in certs.iter().enumerate() {
        if x509_parser::parse_x509_certificate(c.as_ref()).is_err() {
            return Err(problem(format!(
                "{path}: certificate {} does not parse",
                i + 1
            )));
        }
    }
    Ok(text)
}
