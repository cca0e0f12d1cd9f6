//! From a spec whose parts name `provider: selfManaged` to the providers.
//!
//! [`SelfManaged::for_spec`] reads each self-managed part of a
//! [`ReferenceArchitecture`], loads its secrets from the environment variables or
//! files the spec names ([`gitpod_refarch::spec::SecretSource`]) and its CA files, and
//! builds one provider per part. Nothing is contacted here. A missing variable or
//! file is an [`ErrorKind::InvalidInput`](gitpod_refarch::ErrorKind::InvalidInput)
//! error naming the field (`database.adminPassword`), never the value.
//!
//! ```no_run
//! # fn run(spec: &gitpod_refarch::ReferenceArchitecture) -> gitpod_refarch::Result<()> {
//! use gitpod_refarch_selfmanaged::SelfManaged;
//! let parts = SelfManaged::for_spec(spec)?;
//! let verifier = parts.verifier();
//! # let _ = verifier; Ok(()) }
//! ```

use std::sync::Arc;

use gitpod_refarch::spec::{
    self as core, load_ca_file, ReferenceArchitecture, SecretSource, SelfManagedDatabaseSettings,
    SelfManagedDnsSettings, SelfManagedRegistrySettings, SelfManagedStorageSettings,
};
use gitpod_refarch::verify::Part;
use gitpod_refarch::{Error, Result, Secret};

use crate::{
    DataPlaneVerifier, DatabaseConfig, DatabaseTlsMode, DnsConfig, ExistingRegistry,
    RegistryConfig, Rfc2136Dns, S3CompatibleStorage, SelfManagedDatabase, StorageConfig,
    TsigAlgorithm,
};

/// The self-managed parts a spec names (each `None` when that part is the cloud's).
#[non_exhaustive]
#[derive(Debug, Default, Clone)]
pub struct SelfManaged {
    /// `database.provider: selfManaged`.
    pub database: Option<Arc<SelfManagedDatabase>>,
    /// `dns.provider: selfManaged`.
    pub dns: Option<Arc<Rfc2136Dns>>,
    /// `registry.provider: selfManaged`.
    pub registry: Option<Arc<ExistingRegistry>>,
    /// `storage.provider: selfManaged`.
    pub storage: Option<Arc<S3CompatibleStorage>>,
}

impl SelfManaged {
    /// One provider per self-managed part of `spec`, with its secrets and CA files
    /// read. Fails with `InvalidInput` naming the field when a secret or file cannot
    /// be read; the spec's other values are `validate`'s to check.
    pub fn for_spec(spec: &ReferenceArchitecture) -> Result<SelfManaged> {
        Ok(SelfManaged {
            database: spec
                .database
                .self_managed()
                .map(database_config)
                .transpose()?
                .map(|c| Arc::new(SelfManagedDatabase::new(c))),
            dns: spec
                .dns
                .self_managed()
                .map(dns_config)
                .transpose()?
                .map(|c| Arc::new(Rfc2136Dns::new(c))),
            registry: spec
                .registry
                .self_managed()
                .map(registry_config)
                .transpose()?
                .map(|c| Arc::new(ExistingRegistry::new(c))),
            storage: spec
                .storage
                .self_managed()
                .map(storage_config)
                .transpose()?
                .map(|c| Arc::new(S3CompatibleStorage::new(c))),
        })
    }

    /// Whether no part is self-managed.
    pub fn is_empty(&self) -> bool {
        self.database.is_none()
            && self.dns.is_none()
            && self.registry.is_none()
            && self.storage.is_none()
    }

    /// The data-plane checks of `verify`, with each self-managed part marked as such
    /// (the SDK reached it during apply, so unreachable is a failure) and the DNS
    /// server's checks when DNS is self-managed.
    pub fn verifier(&self) -> DataPlaneVerifier {
        let mut v = DataPlaneVerifier::new();
        if self.database.is_some() {
            v = v.self_managed(Part::Database);
        }
        if let Some(r) = &self.registry {
            v = v.self_managed(Part::Registry);
            if let Some(ca) = &r.config().ca_pem {
                v = v.registry_ca(ca.clone());
            }
        }
        if self.storage.is_some() {
            v = v.self_managed(Part::Storage);
        }
        if let Some(dns) = &self.dns {
            v = v.dns(dns.clone());
        }
        v
    }
}

fn load(source: &SecretSource, field: &str) -> Result<Secret> {
    source
        .load(field)
        .map_err(|p| Error::invalid_input(p.to_string()))
}

fn ca(file: Option<&String>, field: &str) -> Result<Option<String>> {
    file.map(|f| load_ca_file(f, field))
        .transpose()
        .map_err(|p| Error::invalid_input(p.to_string()))
}

fn database_config(d: &SelfManagedDatabaseSettings) -> Result<DatabaseConfig> {
    let password = load(&d.admin_password, "database.adminPassword")?;
    let mut c = DatabaseConfig::new(&d.host, d.port, &d.admin_username, password);
    c.tls = match d.tls.mode {
        core::DatabaseTlsMode::Disabled => DatabaseTlsMode::Disabled,
        core::DatabaseTlsMode::Required => DatabaseTlsMode::Required,
        core::DatabaseTlsMode::VerifyCa => DatabaseTlsMode::VerifyCa,
        core::DatabaseTlsMode::VerifyIdentity => DatabaseTlsMode::VerifyIdentity,
        _ => DatabaseTlsMode::Preferred,
    };
    c.ca_pem = ca(d.tls.ca_file.as_ref(), "database.tls.caFile")?;
    c.allow_server_changes = d.allow_server_changes;
    c.deletion_protection = d.deletion_protection;
    Ok(c)
}

fn dns_config(d: &SelfManagedDnsSettings) -> Result<DnsConfig> {
    let secret = load(&d.tsig_secret, "dns.tsigSecret")?;
    let algorithm = match d.tsig_algorithm {
        core::TsigAlgorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
        _ => TsigAlgorithm::HmacSha256,
    };
    let c = DnsConfig::new(&d.zone, &d.server, &d.tsig_key_name, algorithm, secret);
    Ok(match &d.cluster_server {
        Some(s) => c.with_cluster_server(s),
        None => c,
    })
}

fn registry_config(r: &SelfManagedRegistrySettings) -> Result<RegistryConfig> {
    let password = load(&r.password, "registry.password")?;
    let mut c = RegistryConfig::new(r.url_without_scheme(), &r.username, password)
        .with_insecure_http(r.insecure_http());
    if let Some(pem) = ca(r.ca_file.as_ref(), "registry.caFile")? {
        c = c.with_ca_pem(pem);
    }
    Ok(c)
}

fn storage_config(s: &SelfManagedStorageSettings) -> Result<StorageConfig> {
    let key_id = load(&s.access_key_id, "storage.accessKeyId")?;
    let secret = load(&s.secret_access_key, "storage.secretAccessKey")?;
    let mut c = StorageConfig::new(&s.endpoint, &s.bucket, key_id.expose().as_str(), secret);
    c.region = s.region.clone();
    c.create_bucket = s.create_bucket;
    c.path_style = s.path_style;
    c.ca_pem = ca(s.ca_file.as_ref(), "storage.caFile")?;
    Ok(c)
}
