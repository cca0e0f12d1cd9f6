//! The resources of each provider trait, as their own types.
//!
//! [`Desired`] lists every kind; a provider trait sees only its own: a
//! [`crate::provider::Database`] is handed a [`DatabaseResource`] (an instance or
//! the `gitpod` database), never a node pool. [`Desired::route`] is the one place
//! that splits the first into the second, so a kind cannot reach the wrong trait.

use super::*;

/// What a [`crate::provider::ClusterProvider`] makes: account preparation, network,
/// cluster identity, cluster and node pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterResource {
    /// Account preparation.
    Foundation(FoundationSpec),
    /// The network.
    Network(NetworkSpec),
    /// The cluster's identity and roles.
    ClusterIdentity(ClusterIdentitySpec),
    /// The control plane.
    Cluster(ClusterSpec),
    /// One node pool.
    NodePool(NodePoolSpec),
}

/// What a [`crate::provider::DnsProvider`] makes: the zone, the identity that may
/// change it, and the Gitpod records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsResource {
    /// The zone.
    Zone(DnsZoneSpec),
    /// The zone-scoped identity for external-dns and the DNS-01 solver.
    Identity(DnsIdentitySpec),
    /// DOMAIN, `*.DOMAIN`, `*.ws.DOMAIN` (only when the spec gives a target; a
    /// target of `Hostname("")` asks to find and delete records no longer wanted).
    Records(DnsRecordsSpec),
}

/// What a [`crate::provider::Database`] makes: the MySQL instance, then the `gitpod`
/// database and its dedicated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseResource {
    /// The instance.
    Instance(DatabaseInstanceSpec),
    /// The database and its user.
    Database(DatabaseSpec),
}

/// What a [`crate::provider::ClusterBootstrap`] applies inside the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InClusterResource {
    /// The cluster-admin binding.
    ClusterAccess(ClusterAccessSpec),
    /// cert-manager.
    CertManager(CertManagerSpec),
    /// external-dns.
    ExternalDns(ExternalDnsSpec),
    /// The DNS-01 solver and the ClusterIssuer.
    Issuer(IssuerSpec),
    /// The Gitpod namespace and the installer's secrets.
    GitpodNamespace(GitpodNamespaceSpec),
    /// The TLS certificate.
    Certificate(CertificateSpec),
}

/// A [`Desired`] resource, split by the trait that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// For the cluster provider.
    Cluster(ClusterResource),
    /// For the DNS provider.
    Dns(DnsResource),
    /// For the object store.
    ObjectStore(ObjectStorageSpec),
    /// For the registry.
    Registry(RegistrySpec),
    /// For the database.
    Database(DatabaseResource),
    /// For the in-cluster bootstrap.
    InCluster(InClusterResource),
}

impl Desired {
    /// Split by owning trait (the routing of [`crate::Providers`]).
    pub fn route(self) -> Routed {
        match self {
            Desired::Foundation(s) => Routed::Cluster(ClusterResource::Foundation(s)),
            Desired::Network(s) => Routed::Cluster(ClusterResource::Network(s)),
            Desired::ClusterIdentity(s) => Routed::Cluster(ClusterResource::ClusterIdentity(s)),
            Desired::Cluster(s) => Routed::Cluster(ClusterResource::Cluster(s)),
            Desired::NodePool(s) => Routed::Cluster(ClusterResource::NodePool(s)),
            Desired::DnsZone(s) => Routed::Dns(DnsResource::Zone(s)),
            Desired::DnsIdentity(s) => Routed::Dns(DnsResource::Identity(s)),
            Desired::DnsRecords(s) => Routed::Dns(DnsResource::Records(s)),
            Desired::ObjectStorage(s) => Routed::ObjectStore(s),
            Desired::Registry(s) => Routed::Registry(s),
            Desired::DatabaseInstance(s) => Routed::Database(DatabaseResource::Instance(s)),
            Desired::Database(s) => Routed::Database(DatabaseResource::Database(s)),
            Desired::ClusterAccess(s) => Routed::InCluster(InClusterResource::ClusterAccess(s)),
            Desired::CertManager(s) => Routed::InCluster(InClusterResource::CertManager(s)),
            Desired::ExternalDns(s) => Routed::InCluster(InClusterResource::ExternalDns(s)),
            Desired::Issuer(s) => Routed::InCluster(InClusterResource::Issuer(s)),
            Desired::GitpodNamespace(s) => Routed::InCluster(InClusterResource::GitpodNamespace(s)),
            Desired::Certificate(s) => Routed::InCluster(InClusterResource::Certificate(s)),
        }
    }
}

impl From<ClusterResource> for Desired {
    fn from(r: ClusterResource) -> Self {
        match r {
            ClusterResource::Foundation(s) => Desired::Foundation(s),
            ClusterResource::Network(s) => Desired::Network(s),
            ClusterResource::ClusterIdentity(s) => Desired::ClusterIdentity(s),
            ClusterResource::Cluster(s) => Desired::Cluster(s),
            ClusterResource::NodePool(s) => Desired::NodePool(s),
        }
    }
}

impl From<DnsResource> for Desired {
    fn from(r: DnsResource) -> Self {
        match r {
            DnsResource::Zone(s) => Desired::DnsZone(s),
            DnsResource::Identity(s) => Desired::DnsIdentity(s),
            DnsResource::Records(s) => Desired::DnsRecords(s),
        }
    }
}

impl From<ObjectStorageSpec> for Desired {
    fn from(s: ObjectStorageSpec) -> Self {
        Desired::ObjectStorage(s)
    }
}

impl From<RegistrySpec> for Desired {
    fn from(s: RegistrySpec) -> Self {
        Desired::Registry(s)
    }
}

impl From<DatabaseResource> for Desired {
    fn from(r: DatabaseResource) -> Self {
        match r {
            DatabaseResource::Instance(s) => Desired::DatabaseInstance(s),
            DatabaseResource::Database(s) => Desired::Database(s),
        }
    }
}

impl From<InClusterResource> for Desired {
    fn from(r: InClusterResource) -> Self {
        match r {
            InClusterResource::ClusterAccess(s) => Desired::ClusterAccess(s),
            InClusterResource::CertManager(s) => Desired::CertManager(s),
            InClusterResource::ExternalDns(s) => Desired::ExternalDns(s),
            InClusterResource::Issuer(s) => Desired::Issuer(s),
            InClusterResource::GitpodNamespace(s) => Desired::GitpodNamespace(s),
            InClusterResource::Certificate(s) => Desired::Certificate(s),
        }
    }
}

/// `Desired` to a domain's type: `Err` gives back a resource of another domain.
macro_rules! narrow {
    ($($ty:ty => $variant:ident),*) => {$(
        impl TryFrom<Desired> for $ty {
            type Error = Desired;
            fn try_from(d: Desired) -> Result<Self, Desired> {
                match d.route() {
                    Routed::$variant(r) => Ok(r),
                    other => Err(other.into()),
                }
            }
        }
    )*};
}
narrow!(
    ClusterResource => Cluster,
    DnsResource => Dns,
    ObjectStorageSpec => ObjectStore,
    RegistrySpec => Registry,
    DatabaseResource => Database,
    InClusterResource => InCluster
);

impl From<Routed> for Desired {
    fn from(r: Routed) -> Self {
        match r {
            Routed::Cluster(r) => r.into(),
            Routed::Dns(r) => r.into(),
            Routed::ObjectStore(r) => r.into(),
            Routed::Registry(r) => r.into(),
            Routed::Database(r) => r.into(),
            Routed::InCluster(r) => r.into(),
        }
    }
}

macro_rules! resource_ids {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// The resource's id.
            pub fn id(&self) -> ResourceId {
                Desired::from(self.clone()).id()
            }
        }
    )*};
}
resource_ids!(
    ClusterResource,
    DnsResource,
    DatabaseResource,
    InClusterResource
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Cloud, ReferenceArchitecture};

    #[test]
    fn every_kind_routes_to_the_trait_of_its_domain_and_back() {
        let mut spec = ReferenceArchitecture::defaults(Cloud::Gcp);
        spec.dns
            .set_records_target(Some(RecordsTarget::Ipv4("203.0.113.1".into())));
        let mut kinds = std::collections::BTreeSet::new();
        for node in crate::plan::graph(&spec) {
            let d = node.desired;
            kinds.insert(d.kind());
            let domain = d.kind().domain();
            let back: Desired = match d.clone().route() {
                Routed::Cluster(r) => {
                    assert_eq!(domain, Domain::Cluster);
                    r.into()
                }
                Routed::Dns(r) => {
                    assert_eq!(domain, Domain::Dns);
                    r.into()
                }
                Routed::ObjectStore(r) => {
                    assert_eq!(domain, Domain::ObjectStore);
                    r.into()
                }
                Routed::Registry(r) => {
                    assert_eq!(domain, Domain::Registry);
                    r.into()
                }
                Routed::Database(r) => {
                    assert_eq!(domain, Domain::Database);
                    r.into()
                }
                Routed::InCluster(r) => {
                    assert_eq!(domain, Domain::InCluster);
                    r.into()
                }
            };
            assert_eq!(back, d);
        }
        assert_eq!(kinds.len(), ResourceKind::ALL.len());
    }
}
