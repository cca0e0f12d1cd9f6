//! The rules of each resource kind, in one place: which fields only a replacement can
//! change, whether a replacement disrupts workloads or data, whether the kind shares
//! the cluster's serial lane, and which secrets the engine generates and journals
//! before the kind's `ensure` (and forgets after its delete).
//!
//! The planner and the engine read these; neither has a rule of its own per kind.

use super::ResourceKind;
use crate::secret::Secret;

/// The key of the generated database password in [`crate::provider::Inputs::secret`].
pub const DATABASE_PASSWORD: &str = "database-password";

/// The key of Gitpod's database encryption key in [`crate::provider::Inputs::secret`]
/// (generated and saved by the engine before the Gitpod namespace's secrets are applied).
pub const ENCRYPTION_KEY: &str = "gitpod-encryption-key";

/// A secret the engine generates, saves in the state *before* the call that needs it,
/// and hands to the provider through [`crate::provider::Inputs::secret`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratedSecret {
    /// The MySQL password of the admin and the `gitpod` user (32 characters).
    DatabasePassword,
    /// Gitpod's database encryption key (32 random bytes, base64).
    EncryptionKey,
}

impl GeneratedSecret {
    /// Its key in the state and in [`crate::provider::Inputs::secret`].
    pub fn key(self) -> &'static str {
        match self {
            GeneratedSecret::DatabasePassword => DATABASE_PASSWORD,
            GeneratedSecret::EncryptionKey => ENCRYPTION_KEY,
        }
    }

    /// A fresh value from a CSPRNG.
    pub fn generate(self) -> Secret {
        match self {
            GeneratedSecret::DatabasePassword => Secret::generate_password(32),
            GeneratedSecret::EncryptionKey => Secret::generate_base64_key(32),
        }
    }
}

impl ResourceKind {
    /// Fields of the desired state (camelCase, top level) that cannot change in place:
    /// a change to any of them plans a replacement.
    pub fn replace_only_fields(self) -> &'static [&'static str] {
        match self {
            ResourceKind::Network => &["region", "zones", "nodeCidr", "podCidr", "serviceCidr"],
            ResourceKind::Cluster => {
                &["region", "zones", "networkPolicy", "maxPodsPerNode", "name"]
            }
            ResourceKind::NodePool => &[
                "machineType",
                "diskType",
                "diskSizeGb",
                "image",
                "maxPodsPerNode",
                "taints",
                "cluster",
            ],
            // `server`, `endpoint`, `url`: another existing server is another resource
            // (another empty database, bucket, zone or registry).
            ResourceKind::DnsZone => &["dnsName", "server"],
            ResourceKind::DnsIdentity => &["zoneDnsName"],
            ResourceKind::ObjectStorage => &["region", "bucket", "endpoint"],
            ResourceKind::Registry => &["region", "mode", "url"],
            ResourceKind::Database => &["databaseName", "username", "instance"],
            ResourceKind::DatabaseInstance => &["region", "server"],
            ResourceKind::Foundation
            | ResourceKind::ClusterIdentity
            | ResourceKind::DnsRecords
            | ResourceKind::ClusterAccess
            | ResourceKind::CertManager
            | ResourceKind::ExternalDns
            | ResourceKind::Issuer
            | ResourceKind::GitpodNamespace
            | ResourceKind::Certificate => &["region"],
        }
    }

    /// Whether replacing a resource of this kind loses data or stops workloads (a
    /// disruptive plan needs the caller's explicit consent).
    pub fn replace_is_disruptive(self) -> bool {
        !matches!(
            self,
            ResourceKind::DnsIdentity | ResourceKind::DnsRecords | ResourceKind::Registry
        )
    }

    /// Whether operations on this kind share one serial lane per cluster when the
    /// cluster provider says its cluster operations must not overlap (GKE, AKS).
    pub fn in_cluster_lane(self) -> bool {
        matches!(self, ResourceKind::Cluster | ResourceKind::NodePool)
    }

    /// Whether this kind's intent must be stored *before* its call. A run that dies
    /// half-way is repaired by the next one's observation, which reads every resource
    /// the spec wants; the stored intent only adds the resources it no longer wants but
    /// may have been made (DNS records whose target was removed). Other kinds' intents
    /// are journalled with the step's next save.
    pub fn intent_stored_before_call(self) -> bool {
        matches!(self, ResourceKind::DnsRecords)
    }

    /// Secrets the engine generates and journals before this kind's `ensure`.
    pub fn generated_secrets(self) -> &'static [GeneratedSecret] {
        match self {
            ResourceKind::DatabaseInstance | ResourceKind::Database => {
                &[GeneratedSecret::DatabasePassword]
            }
            ResourceKind::GitpodNamespace => &[GeneratedSecret::EncryptionKey],
            _ => &[],
        }
    }

    /// Generated secrets that go when a resource of this kind is deleted (the database
    /// password is the instance's: a new instance gets a new one).
    pub fn secrets_released_on_delete(self) -> &'static [GeneratedSecret] {
        match self {
            ResourceKind::DatabaseInstance => &[GeneratedSecret::DatabasePassword],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_generated_where_they_are_used_and_released_with_the_instance() {
        let generating: Vec<ResourceKind> = ResourceKind::ALL
            .into_iter()
            .filter(|k| !k.generated_secrets().is_empty())
            .collect();
        assert_eq!(
            generating,
            vec![
                ResourceKind::DatabaseInstance,
                ResourceKind::Database,
                ResourceKind::GitpodNamespace
            ]
        );
        for k in ResourceKind::ALL {
            for s in k.secrets_released_on_delete() {
                assert!(k.generated_secrets().contains(s), "{k:?}");
            }
        }
        assert_eq!(
            GeneratedSecret::DatabasePassword.generate().expose().len(),
            32
        );
        assert_ne!(
            GeneratedSecret::EncryptionKey.generate().expose(),
            GeneratedSecret::EncryptionKey.generate().expose()
        );
    }
}
