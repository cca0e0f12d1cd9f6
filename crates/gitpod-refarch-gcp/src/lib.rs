//! Google Cloud provider for `gitpod-refarch` (GKE, Cloud DNS, Cloud SQL, Artifact
//! Registry, IAM). Not built yet: this crate only reserves its place in the workspace.

/// Whether this provider is implemented yet.
pub const IMPLEMENTED: bool = false;
