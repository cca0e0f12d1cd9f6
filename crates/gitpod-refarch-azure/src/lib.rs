//! Azure provider for `gitpod-refarch` (AKS, Azure DNS, MySQL flexible server, ACR).
//! Not built yet: this crate only reserves its place in the workspace.

/// Whether this provider is implemented yet.
pub const IMPLEMENTED: bool = false;
