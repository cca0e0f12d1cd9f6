//! The cluster's identities: the EKS cluster role and the node role, with the
//! AWS-managed policies they need (nothing broader).

use gitpod_refarch::provider::{Observed, Progress};
use gitpod_refarch::resource::{ClusterIdentitySpec, Output};
use gitpod_refarch::Result;

use crate::context::{tags_of, Context};
use crate::iam;

/// Policies of the cluster role.
pub const CLUSTER_POLICIES: &[&str] = &["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"];

/// Policies of the node role.
pub const NODE_POLICIES: &[&str] = &[
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
];

/// The cluster role's name.
pub fn cluster_role(name: &str) -> String {
    format!("{name}-eks-cluster")
}

/// The node role's name.
pub fn node_role(name: &str) -> String {
    format!("{name}-eks-node")
}

/// Both roles present with their policies.
pub async fn observe(
    c: &Context,
    d: &ClusterIdentitySpec,
) -> Result<Option<Observed<ClusterIdentitySpec>>> {
    let Some(arn) = iam::role_arn_if_ours(c, &cluster_role(&d.name), &d.name).await? else {
        return Ok(None);
    };
    let complete = iam::role_arn_if_ours(c, &node_role(&d.name), &d.name)
        .await?
        .is_some();
    let mut actual = d.clone();
    if !complete {
        // Half made (a run stopped between the two roles): show a difference so the
        // plan updates it.
        actual
            .labels
            .insert("gitpod-refarch/incomplete".into(), "true".into());
    }
    Ok(Some(Observed::ready(
        actual,
        Some(Output::ClusterIdentity { principal: arn }),
    )))
}

/// Create or complete both roles.
pub async fn ensure(c: &Context, d: &ClusterIdentitySpec) -> Result<Progress> {
    let tags = tags_of(&d.labels, &d.name);
    let arn = iam::ensure_role(
        c,
        &cluster_role(&d.name),
        &iam::service_trust("eks.amazonaws.com"),
        CLUSTER_POLICIES,
        &tags,
    )
    .await?;
    iam::ensure_role(
        c,
        &node_role(&d.name),
        &iam::service_trust("ec2.amazonaws.com"),
        NODE_POLICIES,
        &tags,
    )
    .await?;
    Ok(Progress::Done(Some(Output::ClusterIdentity {
        principal: arn,
    })))
}

/// Delete both roles.
pub async fn delete(c: &Context, name: &str) -> Result<Progress> {
    iam::delete_role(c, &node_role(name), name).await?;
    iam::delete_role(c, &cluster_role(name), name).await?;
    Ok(Progress::Done(None))
}
