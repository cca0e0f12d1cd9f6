//! Azure for `gitpod-refarch`.
//!
//! **So far this crate offers AKS cluster tokens only**: [`AksCredentials`] implements
//! [`ClusterCredentials`](gitpod_refarch::provider::ClusterCredentials) with Entra ID
//! tokens from Azure's official SDK (`azure_identity`), so the engine can reach an
//! AKS cluster's Kubernetes API without `az`, `kubelogin` or a kubeconfig file.
//!
//! The Azure *provider* (the ARM resources: resource group, network, AKS cluster and
//! node pools, Azure DNS, MySQL flexible server, ACR) is **not built yet**: nothing
//! here creates, reads or deletes an Azure resource, and [`IMPLEMENTED`] is `false`.
//!
//! `azure_core` and `azure_identity` are re-exported, so a caller that builds its own
//! [`TokenCredential`](azure_core::credentials::TokenCredential) for
//! [`AksCredentials::new`] uses the same versions as this crate.

pub mod access;

pub use access::AksCredentials;
pub use azure_core;
pub use azure_identity;

/// Whether the Azure provider (ARM resources) is implemented yet. It is not: only
/// AKS cluster tokens ([`AksCredentials`]) are.
pub const IMPLEMENTED: bool = false;
