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

use gitpod_refarch::provider::Providers;
use gitpod_refarch::secret::{ProcessSources, Sources};
use gitpod_refarch::spec::{
    self as core, load_ca_file_from, ReferenceArchitecture, SecretSource,
    SelfManagedDatabaseSettings, SelfManagedDnsSettings, SelfManagedRegistrySettings,
    SelfManagedStorageSettings,
};
use gitpod_refarch::verify::Part;
use gitpod_refarch::{
    ClusterProvider, Database, DnsProvider, Error, ObjectStore, Registry, Result, Secret,
};

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
    /// read from the process's environment and files. Fails with `InvalidInput`
    /// naming the field when a secret or file cannot be read; the spec's other values
    /// are `validate`'s to check.
    pub fn for_spec(spec: &ReferenceArchitecture) -> Result<SelfManaged> {
        Self::for_spec_from(spec, &ProcessSources)
    }

    /// [`SelfManaged::for_spec`], with the secrets and CA files read from `sources`
    /// (the controller: the installation's credentials Secret).
    pub fn for_spec_from(
        spec: &ReferenceArchitecture,
        sources: &dyn Sources,
    ) -> Result<SelfManaged> {
        Ok(SelfManaged {
            database: spec
                .database
                .self_managed()
                .map(|p| database_config(p, sources))
                .transpose()?
                .map(|c| Arc::new(SelfManagedDatabase::new(c))),
            dns: spec
                .dns
                .self_managed()
                .map(|p| dns_config(p, sources))
                .transpose()?
                .map(|c| Arc::new(Rfc2136Dns::new(c))),
            registry: spec
                .registry
                .self_managed()
                .map(|p| registry_config(p, sources))
                .transpose()?
                .map(|c| Arc::new(ExistingRegistry::new(c))),
            storage: spec
                .storage
                .self_managed()
                .map(|p| storage_config(p, sources))
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

    /// Every part routed: each self-managed one to its provider here, the others (and
    /// the cluster) to `cloud`; with [`SelfManaged::verifier`] when any part is
    /// self-managed. Add the in-cluster bootstrap to the result as usual.
    ///
    /// ```no_run
    /// # async fn run(spec: gitpod_refarch::ReferenceArchitecture) -> gitpod_refarch::Result<()> {
    /// use std::sync::Arc;
    /// use gitpod_refarch_selfmanaged::SelfManaged;
    /// use gitpod_refarch::engine::TokioClock;
    /// use gitpod_refarch::sim::{LatencyProfile, SimCloud};
    /// let clock = Arc::new(TokioClock::new());
    /// let cloud = Arc::new(SimCloud::new(clock, LatencyProfile::instant()));
    /// let providers = SelfManaged::for_spec(&spec)?.providers(cloud)?;
    /// # let _ = providers; Ok(()) }
    /// ```
    pub fn providers<P>(&self, cloud: Arc<P>) -> Result<Providers>
    where
        P: ClusterProvider + DnsProvider + ObjectStore + Registry + Database + 'static,
    {
        if self.is_empty() {
            return Ok(Providers::all(cloud));
        }
        let mut b = Providers::builder().cluster(cloud.clone());
        b = match &self.database {
            Some(p) => b.database(p.clone()),
            None => b.database(cloud.clone()),
        };
        b = match &self.dns {
            Some(p) => b.dns(p.clone()),
            None => b.dns(cloud.clone()),
        };
        b = match &self.registry {
            Some(p) => b.registry(p.clone()),
            None => b.registry(cloud.clone()),
        };
        b = match &self.storage {
            Some(p) => b.object_store(p.clone()),
            None => b.object_store(cloud),
        };
        b.verifier(Arc::new(self.verifier())).build()
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

fn load(sources: &dyn Sources, source: &SecretSource, field: &str) -> Result<Secret> {
    source
        .load_from(sources, field)
        .map_err(|p| Error::invalid_input(p.to_string()))
}

fn ca(sources: &dyn Sources, file: Option<&String>, field: &str) -> Result<Option<String>> {
    file.map(|f| load_ca_file_from(sources, f, field))
        .transpose()
        .map_err(|p| Error::invalid_input(p.to_string()))
}

fn database_config(
    d: &SelfManagedDatabaseSettings,
    sources: &dyn Sources,
) -> Result<DatabaseConfig> {
    let password = load(sources, &d.admin_password, "database.adminPassword")?;
    let mut c = DatabaseConfig::new(&d.host, d.port, &d.admin_username, password);
    c.tls = match d.tls.mode {
        core::DatabaseTlsMode::Disabled => DatabaseTlsMode::Disabled,
        core::DatabaseTlsMode::Required => DatabaseTlsMode::Required,
        core::DatabaseTlsMode::VerifyCa => DatabaseTlsMode::VerifyCa,
        core::DatabaseTlsMode::VerifyIdentity => DatabaseTlsMode::VerifyIdentity,
        _ => DatabaseTlsMode::Preferred,
    };
    c.ca_pem = ca(sources, d.tls.ca_file.as_ref(), "database.tls.caFile")?;
    c.allow_server_changes = d.allow_server_changes;
    c.deletion_protection = d.deletion_protection;
    Ok(c)
}

fn dns_config(d: &SelfManagedDnsSettings, sources: &dyn Sources) -> Result<DnsConfig> {
    let secret = load(sources, &d.tsig_secret, "dns.tsigSecret")?;
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

fn registry_config(
    r: &SelfManagedRegistrySettings,
    sources: &dyn Sources,
) -> Result<RegistryConfig> {
    let password = load(sources, &r.password, "registry.password")?;
    let mut c = RegistryConfig::new(r.url_without_scheme(), &r.username, password)
        .with_insecure_http(r.insecure_http());
    if let Some(pem) = ca(sources, r.ca_file.as_ref(), "registry.caFile")? {
        c = c.with_ca_pem(pem);
    }
    Ok(c)
}

fn storage_config(s: &SelfManagedStorageSettings, sources: &dyn Sources) -> Result<StorageConfig> {
    let key_id = load(sources, &s.access_key_id, "storage.accessKeyId")?;
    let secret = load(sources, &s.secret_access_key, "storage.secretAccessKey")?;
    let mut c = StorageConfig::new(&s.endpoint, &s.bucket, key_id.expose().as_str(), secret);
    c.region = s.region.clone();
    c.create_bucket = s.create_bucket;
    c.path_style = s.path_style;
    c.ca_pem = ca(sources, s.ca_file.as_ref(), "storage.caFile")?;
    Ok(c)
}
