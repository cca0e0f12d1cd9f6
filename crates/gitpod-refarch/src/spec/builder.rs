//! A builder for [`ReferenceArchitecture`], for specs made in code.

use super::*;

/// Builds a [`ReferenceArchitecture`] from a cloud's defaults; [`Builder::build`] validates.
///
/// ```
/// use gitpod_refarch::spec::{Cloud, ReferenceArchitecture};
/// let spec = ReferenceArchitecture::builder(Cloud::Aws)
///     .name("gitpod")
///     .domain("gitpod.example.com")
///     .acme_email("ops@example.com")
///     .build()
///     .expect("valid");
/// assert_eq!(spec.node_pools.services.machine_type, "m6i.xlarge");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    spec: ReferenceArchitecture,
}

impl Builder {
    pub(super) fn new(cloud: Cloud) -> Self {
        Builder {
            spec: ReferenceArchitecture::defaults(cloud),
        }
    }

    /// The installation name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.spec.name = name.into();
        self
    }

    /// The Gitpod domain.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.spec.domain = domain.into();
        self
    }

    /// The region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.spec.cluster.region = region.into();
        self
    }

    /// The zones.
    pub fn zones<I, S>(mut self, zones: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.cluster.zones = zones.into_iter().map(Into::into).collect();
        self
    }

    /// The Kubernetes version.
    pub fn kubernetes_version(mut self, version: impl Into<String>) -> Self {
        self.spec.cluster.kubernetes_version = version.into();
        self
    }

    /// Change one node pool.
    pub fn node_pool(mut self, role: PoolRole, f: impl FnOnce(&mut NodePool)) -> Self {
        f(self.spec.node_pools.get_mut(role));
        self
    }

    /// Change the cloud database's settings (nothing when the database is
    /// self-managed).
    pub fn database(mut self, f: impl FnOnce(&mut DatabaseSettings)) -> Self {
        if let Some(db) = self.spec.database.cloud_mut() {
            f(db);
        }
        self
    }

    /// Use an existing MySQL/MariaDB server instead of the cloud's database.
    ///
    /// ```
    /// use gitpod_refarch::spec::{Cloud, ReferenceArchitecture, SecretSource, SelfManagedDatabaseSettings};
    /// let spec = ReferenceArchitecture::builder(Cloud::Aws)
    ///     .self_managed_database(SelfManagedDatabaseSettings::new(
    ///         "mysql.corp.example.com",
    ///         "root",
    ///         SecretSource::env("GITPOD_DB_ADMIN_PASSWORD"),
    ///     ))
    ///     .build_unchecked();
    /// assert!(spec.database.is_self_managed());
    /// ```
    pub fn self_managed_database(mut self, settings: SelfManagedDatabaseSettings) -> Self {
        self.spec.database = DatabaseChoice::SelfManaged(settings);
        self
    }

    /// Use an existing zone updated by RFC 2136 with TSIG instead of the cloud's DNS
    /// (a records target set before is kept unless `settings` names one).
    pub fn self_managed_dns(mut self, mut settings: SelfManagedDnsSettings) -> Self {
        if settings.records_target.is_none() {
            settings.records_target = self.spec.dns.records_target().cloned();
        }
        self.spec.dns = DnsChoice::SelfManaged(settings);
        self
    }

    /// Use an existing S3-compatible store instead of the cloud's object storage.
    pub fn self_managed_storage(mut self, settings: SelfManagedStorageSettings) -> Self {
        self.spec.storage = StorageChoice::SelfManaged(settings);
        self
    }

    /// Use an existing OCI registry instead of the cloud's.
    pub fn self_managed_registry(mut self, settings: SelfManagedRegistrySettings) -> Self {
        self.spec.registry = RegistryChoice::SelfManaged(settings);
        self
    }

    /// Use ACME (the default) with this account email, keeping the server.
    pub fn acme_email(mut self, email: impl Into<String>) -> Self {
        let server = match &self.spec.certificates {
            CertificateSettings::Acme { server, .. } => server.clone(),
            CertificateSettings::BringYourOwn { .. } => LETS_ENCRYPT_PRODUCTION.to_string(),
        };
        self.spec.certificates = CertificateSettings::Acme {
            email: email.into(),
            server,
        };
        self
    }

    /// Set the certificate settings.
    pub fn certificates(mut self, certificates: CertificateSettings) -> Self {
        self.spec.certificates = certificates;
        self
    }

    /// The GCP project (creating the GCP section if needed).
    pub fn gcp_project(mut self, project: impl Into<String>) -> Self {
        let gcp = self.spec.gcp.get_or_insert_with(|| GcpSettings {
            project: String::new(),
            create_project: false,
            billing_account: None,
            workload_identity: false,
        });
        gcp.project = project.into();
        self
    }

    /// The Azure subscription (creating the Azure section if needed).
    pub fn azure_subscription(mut self, subscription_id: impl Into<String>) -> Self {
        let azure = self.spec.azure.get_or_insert_with(|| AzureSettings {
            subscription_id: String::new(),
            resource_group: None,
            registry_name: None,
            database_server_name: None,
        });
        azure.subscription_id = subscription_id.into();
        self
    }

    /// Where the three Gitpod DNS records point.
    pub fn records_target(mut self, target: RecordsTarget) -> Self {
        self.spec.dns.set_records_target(Some(target));
        self
    }

    /// Add a label/tag put on every resource.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.labels.insert(key.into(), value.into());
        self
    }

    /// Change anything else.
    pub fn with(mut self, f: impl FnOnce(&mut ReferenceArchitecture)) -> Self {
        f(&mut self.spec);
        self
    }

    /// Validate and return the spec.
    pub fn build(self) -> Result<ReferenceArchitecture, ValidationErrors> {
        self.spec.validate()?;
        Ok(self.spec)
    }

    /// Return the spec without validating it.
    pub fn build_unchecked(self) -> ReferenceArchitecture {
        self.spec
    }
}
