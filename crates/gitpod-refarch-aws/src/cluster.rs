//! The EKS cluster: private and public subnets, public and private endpoint, the
//! Kubernetes version of the spec, API authentication with the creator (the SDK's
//! principal) as cluster admin, and the IAM OIDC provider for IRSA.
//!
//! EKS has no network-policy or auto-upgrade setting on the control plane: Calico is
//! installed by the in-cluster bootstrap, and EKS never upgrades a supported version.
//! Those desired fields are therefore reported as desired.

use std::collections::HashMap;

use aws_sdk_eks::types::{
    AuthenticationMode, ClusterStatus, CreateAccessConfigRequest, VpcConfigRequest,
};
use base64::Engine as _;
use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress};
use gitpod_refarch::resource::{ClusterSpec, Output, ResourceId, ResourceKind};
use gitpod_refarch::{Error, ErrorKind, Result};

use crate::context::{tags_of, Context};
use crate::error::{found, Ctx};
use crate::network;

/// Thumbprint of the root CA of EKS OIDC issuers (AWS ignores it for EKS-hosted
/// issuers, but the API wants one).
const OIDC_THUMBPRINT: &str = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280";

/// Tag recording the zones the cluster was made for.
const ZONES_TAG: &str = "gitpod-refarch/zones";

/// This installation's cluster, if it exists; a conflict if a cluster of that name
/// is not tagged for it.
async fn describe(c: &Context, name: &str) -> Result<Option<aws_sdk_eks::types::Cluster>> {
    let cl = describe_any(c, name).await?;
    match cl {
        Some(cl) if cl.tags().is_none_or(|t| t.get(INSTALLATION_LABEL).map(String::as_str) != Some(name)) => Err(Error::new(
            ErrorKind::Conflict,
            format!("EKS cluster {name} exists but is not tagged for installation {name}; it is left alone"),
        )),
        other => Ok(other),
    }
}

/// A conflict (someone else's resource) read as absent.
fn not_foreign<T>(r: Result<Option<T>>) -> Result<Option<T>> {
    match r {
        Err(e) if e.kind() == ErrorKind::Conflict => Ok(None),
        other => other,
    }
}

async fn describe_any(c: &Context, name: &str) -> Result<Option<aws_sdk_eks::types::Cluster>> {
    let out = found(
        c.clients
            .eks
            .describe_cluster()
            .name(name)
            .send()
            .await
            .ctx(format!("reading cluster {name}")),
    )?;
    Ok(out.and_then(|o| o.cluster().cloned()))
}

fn minor(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The cluster's OIDC issuer URL (empty while EKS has not made one).
fn issuer_of(cl: &aws_sdk_eks::types::Cluster) -> String {
    cl.identity()
        .and_then(|i| i.oidc())
        .and_then(|o| o.issuer())
        .unwrap_or_default()
        .to_string()
}

fn output_of(cl: &aws_sdk_eks::types::Cluster) -> Output {
    let ca = cl
        .certificate_authority()
        .and_then(|c| c.data())
        .unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| ca.to_string());
    Output::Cluster {
        name: cl.name().unwrap_or_default().to_string(),
        endpoint: cl.endpoint().unwrap_or_default().to_string(),
        ca_certificate_pem: pem,
    }
}

async fn oidc_provider(c: &Context, issuer: &str) -> Result<Option<String>> {
    let host_path = issuer.trim_start_matches("https://");
    let list = c
        .clients
        .iam
        .list_open_id_connect_providers()
        .send()
        .await
        .ctx("listing OIDC providers")?;
    Ok(list
        .open_id_connect_provider_list()
        .iter()
        .filter_map(|p| p.arn())
        .find(|arn| arn.ends_with(&format!("oidc-provider/{host_path}")))
        .map(str::to_string))
}

/// The cluster as it is.
pub async fn observe(c: &Context, d: &ClusterSpec) -> Result<Option<Observed<ClusterSpec>>> {
    // Someone else's cluster of that name is not ours: absent (ensure then refuses).
    let Some(cl) = not_foreign(describe(c, &d.name).await)? else {
        return Ok(None);
    };
    let id = ResourceId::new(ResourceKind::Cluster, d.name.clone());
    let mut actual = d.clone();
    actual.region = c.region.clone();
    let version = cl.version().unwrap_or_default().to_string();
    actual.kubernetes_version = if minor(&version) == minor(&d.kubernetes_version) {
        d.kubernetes_version.clone()
    } else {
        version
    };
    if let Some(z) = cl.tags().and_then(|t| t.get(ZONES_TAG)) {
        let zones: Vec<String> = z
            .split('.')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        // The same zones in another order are no change.
        let same = zones.len() == d.zones.len() && zones.iter().all(|z| d.zones.contains(z));
        actual.zones = if same { d.zones.clone() } else { zones };
    }
    match cl.status() {
        Some(ClusterStatus::Creating | ClusterStatus::Updating | ClusterStatus::Pending) => {
            return Ok(Some(Observed::pending(
                actual,
                c.op(format!("eks-cluster:{}", d.name), &id),
            )));
        }
        Some(ClusterStatus::Deleting) => {
            return Ok(Some(Observed::pending(
                actual,
                c.op(format!("eks-cluster-delete:{}", d.name), &id),
            )));
        }
        _ => {}
    }
    let issuer = issuer_of(&cl);
    if !issuer.is_empty() && oidc_provider(c, &issuer).await?.is_none() {
        actual
            .labels
            .insert("gitpod-refarch/incomplete".into(), "oidc".into());
    }
    Ok(Some(Observed::ready(actual, Some(output_of(&cl)))))
}

/// Create, upgrade or complete the cluster.
pub async fn ensure(c: &Context, d: &ClusterSpec, inputs: &Inputs) -> Result<Progress> {
    let id = ResourceId::new(ResourceKind::Cluster, d.name.clone());
    let op = || c.op(format!("eks-cluster:{}", d.name), &id);
    let Some(cl) = describe(c, &d.name).await? else {
        let role = match inputs.of_kind(ResourceKind::ClusterIdentity)? {
            Output::ClusterIdentity { principal } => principal.clone(),
            _ => {
                return Err(Error::internal(
                    "the cluster identity output has the wrong kind",
                ))
            }
        };
        let net = network::lookup(c, &d.name).await?.ok_or_else(|| {
            Error::new(ErrorKind::NotFound, "the network does not exist yet")
                .with_resource(id.clone())
        })?;
        let subnets: Vec<String> = net
            .private
            .iter()
            .chain(net.public.iter())
            .map(|(_, s)| s.clone())
            .collect();
        let mut tags: HashMap<String, String> = tags_of(&d.labels, &d.name).into_iter().collect();
        tags.insert(ZONES_TAG.into(), d.zones.join("."));
        c.clients
            .eks
            .create_cluster()
            .name(&d.name)
            .version(minor(&d.kubernetes_version))
            .role_arn(role)
            .resources_vpc_config(
                VpcConfigRequest::builder()
                    .set_subnet_ids(Some(subnets))
                    .endpoint_public_access(true)
                    .endpoint_private_access(true)
                    .build(),
            )
            .access_config(
                CreateAccessConfigRequest::builder()
                    .authentication_mode(AuthenticationMode::ApiAndConfigMap)
                    .bootstrap_cluster_creator_admin_permissions(true)
                    .build(),
            )
            .set_tags(Some(tags))
            .send()
            .await
            .ctx(format!("creating cluster {}", d.name))?;
        return Ok(Progress::Pending(op()));
    };
    match cl.status() {
        Some(ClusterStatus::Creating | ClusterStatus::Updating | ClusterStatus::Pending) => {
            return Ok(Progress::Pending(op()))
        }
        Some(ClusterStatus::Failed) => {
            return Err(Error::new(
                ErrorKind::OperationFailed,
                format!("cluster {} is FAILED: delete it and apply again", d.name),
            )
            .with_resource(id))
        }
        Some(ClusterStatus::Deleting) => {
            return Err(Error::new(
                ErrorKind::OperationInProgress,
                format!("cluster {} is being deleted", d.name),
            )
            .with_resource(id))
        }
        _ => {}
    }
    let version = cl.version().unwrap_or_default();
    if minor(version) != minor(&d.kubernetes_version) {
        c.clients
            .eks
            .update_cluster_version()
            .name(&d.name)
            .version(minor(&d.kubernetes_version))
            .send()
            .await
            .ctx(format!(
                "upgrading cluster {} to {}",
                d.name, d.kubernetes_version
            ))?;
        return Ok(Progress::Pending(op()));
    }
    let issuer = issuer_of(&cl);
    if !issuer.is_empty() && oidc_provider(c, &issuer).await?.is_none() {
        let tags: Vec<aws_sdk_iam::types::Tag> = tags_of(&d.labels, &d.name)
            .into_iter()
            .filter_map(|(k, v)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .ok()
            })
            .collect();
        c.clients
            .iam
            .create_open_id_connect_provider()
            .url(&issuer)
            .client_id_list("sts.amazonaws.com")
            .thumbprint_list(OIDC_THUMBPRINT)
            .set_tags(Some(tags))
            .send()
            .await
            .ctx(format!("creating the OIDC provider of cluster {}", d.name))?;
    }
    Ok(Progress::Done(Some(output_of(&cl))))
}

/// Poll a cluster create/upgrade (`eks-cluster:`) or delete (`eks-cluster-delete:`).
pub async fn poll(c: &Context, op: &Operation) -> Result<Progress> {
    let (deleting, name) = match op.id.split_once(':') {
        Some(("eks-cluster", n)) => (false, n),
        Some(("eks-cluster-delete", n)) => (true, n),
        _ => return Ok(Progress::Done(None)),
    };
    let again = || Ok(Progress::Pending(c.op(op.id.clone(), &op.resource)));
    match (describe(c, name).await?, deleting) {
        (None, true) => Ok(Progress::Done(None)),
        (None, false) => Err(Error::new(
            ErrorKind::OperationFailed,
            format!("cluster {name} disappeared"),
        )
        .with_resource(op.resource.clone())),
        (Some(_), true) => again(),
        (Some(cl), false) => match cl.status() {
            Some(ClusterStatus::Active) => Ok(Progress::Done(None)),
            Some(ClusterStatus::Failed) => Err(Error::new(
                ErrorKind::OperationFailed,
                format!("cluster {name} failed to create"),
            )
            .with_resource(op.resource.clone())),
            _ => again(),
        },
    }
}

/// Delete the OIDC provider and the cluster (node groups are gone by then).
pub async fn delete(c: &Context, id: &ResourceId) -> Result<Progress> {
    let name = id.name.as_str();
    let cl = match describe(c, name).await {
        Ok(Some(cl)) => cl,
        Ok(None) => return Ok(Progress::Done(None)),
        // Someone else's cluster of that name: not ours to delete.
        Err(e) if e.kind() == ErrorKind::Conflict => return Ok(Progress::Done(None)),
        Err(e) => return Err(e),
    };
    if cl.status() == Some(&ClusterStatus::Deleting) {
        return Ok(Progress::Pending(
            c.op(format!("eks-cluster-delete:{name}"), id),
        ));
    }
    let issuer = issuer_of(&cl);
    if !issuer.is_empty() {
        if let Some(arn) = oidc_provider(c, &issuer).await? {
            found(
                c.clients
                    .iam
                    .delete_open_id_connect_provider()
                    .open_id_connect_provider_arn(&arn)
                    .send()
                    .await
                    .ctx("deleting the OIDC provider"),
            )?;
        }
    }
    found(
        c.clients
            .eks
            .delete_cluster()
            .name(name)
            .send()
            .await
            .ctx(format!("deleting cluster {name}")),
    )?;
    Ok(Progress::Pending(
        c.op(format!("eks-cluster-delete:{name}"), id),
    ))
}
