//! AWS provider for `gitpod-refarch` (EKS, Route53, RDS, S3, ECR, IAM). Not built yet:
//! this crate only reserves its place in the workspace.

/// Whether this provider is implemented yet.
pub const IMPLEMENTED: bool = false;
