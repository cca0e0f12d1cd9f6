//! Typed access to the outputs of an installation.

use std::collections::BTreeMap;

use crate::resource::{
    DatabaseEndpoint, DnsSolver, Output, RegistryOutput, ResourceId, ResourceKind, StorageOutput,
};
use crate::secret::Secret;

/// The outputs of every resource, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs(BTreeMap<ResourceId, Output>);

/// The cluster's access coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAccess<'a> {
    /// Provider name.
    pub name: &'a str,
    /// API server URL.
    pub endpoint: &'a str,
    /// CA certificate (PEM).
    pub ca_certificate_pem: &'a str,
}

/// How to reach the database and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseAccess<'a> {
    /// Host/port or Cloud SQL connection name.
    pub endpoint: &'a DatabaseEndpoint,
    /// Database name.
    pub database: &'a str,
    /// User.
    pub username: &'a str,
    /// Password.
    pub password: &'a Secret,
    /// Cloud SQL client key, if any.
    pub client_credentials: Option<&'a Secret>,
}

impl Outputs {
    /// Wrap a map of outputs.
    pub fn new(map: BTreeMap<ResourceId, Output>) -> Self {
        Outputs(map)
    }

    /// All outputs.
    pub fn all(&self) -> &BTreeMap<ResourceId, Output> {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn first(&self, kind: ResourceKind) -> Option<&Output> {
        self.0
            .iter()
            .find(|(id, _)| id.kind == kind)
            .map(|(_, o)| o)
    }

    /// The account/project prepared.
    pub fn account(&self) -> Option<&str> {
        match self.first(ResourceKind::Foundation)? {
            Output::Foundation { account } => Some(account),
            _ => None,
        }
    }

    /// Cluster endpoint and CA.
    pub fn cluster(&self) -> Option<ClusterAccess<'_>> {
        match self.first(ResourceKind::Cluster)? {
            Output::Cluster {
                name,
                endpoint,
                ca_certificate_pem,
            } => Some(ClusterAccess {
                name,
                endpoint,
                ca_certificate_pem,
            }),
            _ => None,
        }
    }

    /// The zone's name servers (to delegate to from the parent zone).
    pub fn name_servers(&self) -> Option<&[String]> {
        match self.first(ResourceKind::DnsZone)? {
            Output::DnsZone { name_servers, .. } => Some(name_servers),
            _ => None,
        }
    }

    /// The DNS identity's credentials (external-dns, DNS-01 solver).
    pub fn dns_credentials(&self) -> Option<&Secret> {
        match self.first(ResourceKind::DnsIdentity)? {
            Output::DnsIdentity { credentials, .. } => credentials.as_ref(),
            _ => None,
        }
    }

    /// The DNS-01 solver and external-dns settings for the zone.
    pub fn dns_solver(&self) -> Option<&DnsSolver> {
        match self.first(ResourceKind::DnsIdentity)? {
            Output::DnsIdentity { solver, .. } => solver.as_ref(),
            _ => None,
        }
    }

    /// Object storage.
    pub fn storage(&self) -> Option<&StorageOutput> {
        match self.first(ResourceKind::ObjectStorage)? {
            Output::ObjectStorage(s) => Some(s),
            _ => None,
        }
    }

    /// The registry.
    pub fn registry(&self) -> Option<&RegistryOutput> {
        match self.first(ResourceKind::Registry)? {
            Output::Registry(r) => Some(r),
            _ => None,
        }
    }

    /// The database.
    pub fn database(&self) -> Option<DatabaseAccess<'_>> {
        let endpoint = match self.first(ResourceKind::DatabaseInstance)? {
            Output::DatabaseInstance { endpoint, .. } => endpoint,
            _ => return None,
        };
        match self.first(ResourceKind::Database)? {
            Output::Database {
                database,
                username,
                password,
                client_credentials,
            } => Some(DatabaseAccess {
                endpoint,
                database,
                username,
                password,
                client_credentials: client_credentials.as_ref(),
            }),
            _ => None,
        }
    }
}
