//! What every resource module shares: the official clients, the [`Context`] (clients,
//! project, region, configuration, credentials), the ownership helpers (labels and
//! descriptions that mark a resource as the installation's), and the constructors of
//! the engine operations the resource modules return ([`pending`], [`Api`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Operation, Progress};
use gitpod_refarch::resource::ResourceId;
use gitpod_refarch::{Error, ErrorKind, Result};
use google_cloud_auth::credentials::Credentials;

use crate::config::GcpConfig;

/// The official clients, one per API, shared by every resource module.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Resource Manager v3 (projects, project IAM policy).
    pub projects: google_cloud_resourcemanager_v3::client::Projects,
    /// Cloud Billing v1.
    pub billing: google_cloud_billing_v1::client::CloudBilling,
    /// Service Usage v1.
    pub services: google_cloud_api_serviceusage_v1::client::ServiceUsage,
    /// IAM admin v1 (service accounts, keys).
    pub iam: google_cloud_iam_admin_v1::client::Iam,
    /// Compute v1 networks.
    pub networks: google_cloud_compute_v1::client::Networks,
    /// Compute v1 subnetworks.
    pub subnetworks: google_cloud_compute_v1::client::Subnetworks,
    /// Compute v1 global operations.
    pub global_operations: google_cloud_compute_v1::client::GlobalOperations,
    /// Compute v1 region operations.
    pub region_operations: google_cloud_compute_v1::client::RegionOperations,
    /// GKE.
    pub gke: google_cloud_container_v1::client::ClusterManager,
    /// Cloud DNS managed zones.
    pub zones: google_cloud_dns_v1::client::ManagedZones,
    /// Cloud DNS record sets.
    pub rrsets: google_cloud_dns_v1::client::ResourceRecordSets,
    /// Artifact Registry.
    pub registry: google_cloud_artifactregistry_v1::client::ArtifactRegistry,
    /// Cloud SQL instances.
    pub sql_instances: google_cloud_sql_v1::client::SqlInstancesService,
    /// Cloud SQL operations.
    pub sql_operations: google_cloud_sql_v1::client::SqlOperationsService,
    /// Cloud SQL databases.
    pub sql_databases: google_cloud_sql_v1::client::SqlDatabasesService,
    /// Cloud SQL users.
    pub sql_users: google_cloud_sql_v1::client::SqlUsersService,
}

macro_rules! build_client {
    ($ty:ty, $endpoint:expr, $creds:expr, $retry:expr, $backoff:expr) => {{
        let mut b = <$ty>::builder()
            .with_credentials($creds.clone())
            .with_retry_policy($retry())
            .with_backoff_policy($backoff()?);
        if let Some(url) = $endpoint {
            b = b.with_endpoint(url.clone());
        }
        b.build().await.map_err(|e| {
            Error::new(
                ErrorKind::Credentials,
                format!("cannot build the {} client", stringify!($ty)),
            )
            .with_source(e)
        })?
    }};
}

impl Clients {
    /// Every client, with `creds`, the configured endpoint and the clients' own
    /// retries. Makes no call.
    pub(crate) async fn new(config: &GcpConfig, creds: &Credentials) -> Result<Self> {
        use google_cloud_compute_v1::client as compute;
        use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
        let endpoint = config.endpoint_url.as_ref();
        let retry = || {
            Aip194Strict
                .with_time_limit(Duration::from_secs(60))
                .with_attempt_limit(config.max_attempts)
        };
        let backoff = || {
            google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
                .with_initial_delay(config.initial_backoff)
                .with_maximum_delay(Duration::from_secs(10))
                .build()
                .map_err(|e| {
                    Error::invalid_input("the backoff settings are invalid").with_source(e)
                })
        };
        Ok(Clients {
            projects: build_client!(
                google_cloud_resourcemanager_v3::client::Projects,
                endpoint,
                creds,
                retry,
                backoff
            ),
            billing: build_client!(
                google_cloud_billing_v1::client::CloudBilling,
                endpoint,
                creds,
                retry,
                backoff
            ),
            services: build_client!(
                google_cloud_api_serviceusage_v1::client::ServiceUsage,
                endpoint,
                creds,
                retry,
                backoff
            ),
            iam: build_client!(
                google_cloud_iam_admin_v1::client::Iam,
                endpoint,
                creds,
                retry,
                backoff
            ),
            networks: build_client!(compute::Networks, endpoint, creds, retry, backoff),
            subnetworks: build_client!(compute::Subnetworks, endpoint, creds, retry, backoff),
            global_operations: build_client!(
                compute::GlobalOperations,
                endpoint,
                creds,
                retry,
                backoff
            ),
            region_operations: build_client!(
                compute::RegionOperations,
                endpoint,
                creds,
                retry,
                backoff
            ),
            gke: build_client!(
                google_cloud_container_v1::client::ClusterManager,
                endpoint,
                creds,
                retry,
                backoff
            ),
            zones: build_client!(
                google_cloud_dns_v1::client::ManagedZones,
                endpoint,
                creds,
                retry,
                backoff
            ),
            rrsets: build_client!(
                google_cloud_dns_v1::client::ResourceRecordSets,
                endpoint,
                creds,
                retry,
                backoff
            ),
            registry: build_client!(
                google_cloud_artifactregistry_v1::client::ArtifactRegistry,
                endpoint,
                creds,
                retry,
                backoff
            ),
            sql_instances: build_client!(
                google_cloud_sql_v1::client::SqlInstancesService,
                endpoint,
                creds,
                retry,
                backoff
            ),
            sql_operations: build_client!(
                google_cloud_sql_v1::client::SqlOperationsService,
                endpoint,
                creds,
                retry,
                backoff
            ),
            sql_databases: build_client!(
                google_cloud_sql_v1::client::SqlDatabasesService,
                endpoint,
                creds,
                retry,
                backoff
            ),
            sql_users: build_client!(
                google_cloud_sql_v1::client::SqlUsersService,
                endpoint,
                creds,
                retry,
                backoff
            ),
        })
    }
}

/// Facts every module needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// Clients.
    pub clients: Clients,
    /// The project id.
    pub project: String,
    /// Region.
    pub region: String,
    /// The configuration it was built from.
    pub config: GcpConfig,
    /// The credentials every client uses, built once; [`crate::access`] takes GKE
    /// tokens from them.
    pub(crate) credentials: Credentials,
    /// Database users whose password this process has set (`instance/user`): a user
    /// found without saved outputs gets the saved password once, not on every call.
    pub(crate) passwords_set: Arc<Mutex<BTreeSet<String>>>,
    /// Whether the project exists. Until it does (`gcp.createProject`), every other
    /// resource is absent without a call: GCP answers 403 for anything in a project
    /// that does not exist.
    pub(crate) project_exists: Arc<AtomicBool>,
}

impl Context {
    /// Check the configuration, build the credentials and the clients. Makes no call.
    pub(crate) async fn new(config: GcpConfig) -> Result<Self> {
        config.check()?;
        let credentials = config.build_credentials()?;
        let clients = Clients::new(&config, &credentials).await?;
        Ok(Context {
            clients,
            project: config.project.clone(),
            region: config.region.clone(),
            config,
            credentials,
            passwords_set: Default::default(),
            project_exists: Default::default(),
        })
    }

    /// Whether the project is known to exist.
    pub(crate) fn project_exists(&self) -> bool {
        self.project_exists.load(Ordering::SeqCst)
    }

    /// Record that the project exists.
    pub(crate) fn set_project_exists(&self) {
        self.project_exists.store(true, Ordering::SeqCst);
    }

    /// An operation to poll after the configured interval.
    pub fn op(&self, id: impl Into<String>, resource: &ResourceId) -> Operation {
        Operation::new(id, resource.clone()).poll_after(self.config.poll_interval)
    }

    /// `projects/<project>`.
    pub fn project_path(&self) -> String {
        format!("projects/{}", self.project)
    }

    /// `projects/<project>/locations/<region>`.
    pub fn location_path(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.region)
    }
}

/// Labels every resource carries: the installation label plus the spec's labels.
pub fn labels_of(
    labels: &BTreeMap<String, String>,
    installation: &str,
) -> BTreeMap<String, String> {
    let mut t = labels.clone();
    t.insert(INSTALLATION_LABEL.to_string(), installation.to_string());
    t
}

/// Whether `labels` mark a resource as `installation`'s.
pub fn is_ours(labels: &BTreeMap<String, String>, installation: &str) -> bool {
    labels.get(INSTALLATION_LABEL).map(String::as_str) == Some(installation)
}

/// The description that marks label-less resources (service accounts, networks) as ours.
pub fn ownership_mark(installation: &str) -> String {
    format!("Managed by gitpod-refarch for installation {installation}")
}

/// The error for a same-named resource that is not ours.
pub fn foreign(what: &str, installation: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "{what} exists but is not marked as installation '{installation}''s; \
             it is left alone: rename the installation or remove it"
        ),
    )
}

/// Which API an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// GKE (`projects/p/locations/l/operations/o`).
    Gke,
    /// Cloud SQL (`projects/p/operations/o`).
    Sql,
    /// Compute, global (`projects/p/global/operations/o`).
    ComputeGlobal,
    /// Compute, regional (`projects/p/regions/r/operations/o`).
    ComputeRegion,
    /// Resource Manager (`operations/cp.N`).
    ResourceManager,
    /// Service Usage (`operations/acf.N`).
    ServiceUsage,
    /// Artifact Registry (`projects/p/locations/l/operations/o`).
    ArtifactRegistry,
    /// Not an API operation: wait until a GKE cluster is no longer busy (after a crash,
    /// when the operation that made it busy is not known).
    GkeCluster,
    /// Wait until a GKE node pool is no longer busy.
    GkeNodePool,
    /// Wait until a Cloud SQL instance is no longer pending.
    SqlInstance,
}

impl Api {
    /// Every API, for parsing.
    pub(crate) const ALL: [Api; 10] = [
        Api::Gke,
        Api::Sql,
        Api::ComputeGlobal,
        Api::ComputeRegion,
        Api::ResourceManager,
        Api::ServiceUsage,
        Api::ArtifactRegistry,
        Api::GkeCluster,
        Api::GkeNodePool,
        Api::SqlInstance,
    ];

    /// The prefix of its operation ids (`<prefix>:<operation name>`).
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Api::Gke => "gke",
            Api::Sql => "sql",
            Api::ComputeGlobal => "compute-global",
            Api::ComputeRegion => "compute-region",
            Api::ResourceManager => "rm",
            Api::ServiceUsage => "su",
            Api::ArtifactRegistry => "ar",
            Api::GkeCluster => "gke-cluster",
            Api::GkeNodePool => "gke-pool",
            Api::SqlInstance => "sql-instance",
        }
    }

    /// The API of an operation-id prefix.
    pub(crate) fn parse(s: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|a| a.prefix() == s)
    }
}

/// The engine operation for `api`'s operation `name` on `resource`.
pub fn operation(c: &Context, api: Api, name: &str, resource: &ResourceId) -> Operation {
    c.op(format!("{}:{name}", api.prefix()), resource)
}

/// An engine operation for `api`'s operation `name` on `resource`.
pub fn pending(c: &Context, api: Api, name: &str, resource: &ResourceId) -> Progress {
    Progress::Pending(operation(c, api, name, resource))
}

/// The last path segment of a URL or resource name.
pub fn last_segment(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// Where a watched resource stands (a GKE cluster or node pool, for
/// [`crate::ops`]'s watch).
pub(crate) enum Standing {
    /// An operation is changing it.
    Busy,
    /// It is in an error state (with the reason).
    Failed(String),
    /// Nothing is running on it.
    Settled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for a in Api::ALL {
            assert_eq!(Api::parse(a.prefix()), Some(a));
        }
        assert_eq!(last_segment("projects/p/operations/op-1"), "op-1");
    }
}
