//! EKS managed node groups, one per pool, with a launch template each: an encrypted
//! gp3 root disk of the spec's size, IMDSv2, `maxPods` through the AL2023 `NodeConfig`,
//! and an EKS-managed AMI (`AL2023_x86_64_STANDARD`) unless the spec names an image.
//! Labels, taints and scaling bounds come from the spec; the cluster-autoscaler tags
//! use the real cluster name.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptionsRequest,
    RequestLaunchTemplateData, ResourceType, Tag as Ec2Tag, TagSpecification, VolumeType,
};
use aws_sdk_eks::types::{
    AmiTypes, CapacityTypes, LaunchTemplateSpecification, NodegroupScalingConfig, NodegroupStatus,
    Taint as EksTaint, TaintEffect, UpdateLabelsPayload, UpdateTaintsPayload,
};
use base64::Engine as _;
use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress};
use gitpod_refarch::resource::{NodePoolSpec, Output, ResourceId, ResourceKind};
use gitpod_refarch::spec::Taint;
use gitpod_refarch::{Error, ErrorKind, Result};

use crate::context::{tags_of, Context};
use crate::error::{found, Ctx};
use crate::{iam, identity, network};

const DISK_TAG: &str = "gitpod-refarch/disk";
const IMAGE_TAG: &str = "gitpod-refarch/image";
const MAX_PODS_TAG: &str = "gitpod-refarch/max-pods";

fn minor(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

fn lt_name(d: &NodePoolSpec) -> String {
    format!("{}-{}", d.cluster, d.name)
}

fn effect_to_eks(e: &str) -> TaintEffect {
    match e {
        "NoExecute" => TaintEffect::NoExecute,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        _ => TaintEffect::NoSchedule,
    }
}

fn effect_from_eks(e: Option<&TaintEffect>) -> String {
    match e {
        Some(TaintEffect::NoExecute) => "NoExecute",
        Some(TaintEffect::PreferNoSchedule) => "PreferNoSchedule",
        _ => "NoSchedule",
    }
    .to_string()
}

fn taints_of(ng: &aws_sdk_eks::types::Nodegroup) -> Vec<Taint> {
    ng.taints()
        .iter()
        .map(|t| {
            Taint::new(
                t.key().unwrap_or_default(),
                t.value().unwrap_or_default(),
                effect_from_eks(t.effect()),
            )
        })
        .collect()
}

/// This installation's node group (tagged for it), if it exists; one of someone else's
/// cluster of the same name reads as absent, so it is neither adopted nor deleted.
async fn describe(
    c: &Context,
    cluster: &str,
    name: &str,
) -> Result<Option<aws_sdk_eks::types::Nodegroup>> {
    Ok(describe_any(c, cluster, name).await?.filter(|ng| {
        ng.tags()
            .is_some_and(|t| t.get(INSTALLATION_LABEL).map(String::as_str) == Some(cluster))
    }))
}

async fn describe_any(
    c: &Context,
    cluster: &str,
    name: &str,
) -> Result<Option<aws_sdk_eks::types::Nodegroup>> {
    let out = found(
        c.clients
            .eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send()
            .await
            .ctx(format!("reading node group {name}")),
    )?;
    Ok(out.and_then(|o| o.nodegroup().cloned()))
}

/// The node group as it is.
pub async fn observe(c: &Context, d: &NodePoolSpec) -> Result<Option<Observed<NodePoolSpec>>> {
    let Some(ng) = describe(c, &d.cluster, &d.name).await? else {
        return Ok(None);
    };
    let id = ResourceId::new(ResourceKind::NodePool, d.name.clone());
    let mut actual = d.clone();
    actual.machine_type = ng.instance_types().first().cloned().unwrap_or_default();
    let version = ng.version().unwrap_or_default().to_string();
    actual.kubernetes_version = if minor(&version) == minor(&d.kubernetes_version) {
        d.kubernetes_version.clone()
    } else {
        version
    };
    if let Some(s) = ng.scaling_config() {
        actual.min_nodes = s.min_size().unwrap_or(0).max(0) as u32;
        actual.max_nodes = s.max_size().unwrap_or(0).max(0) as u32;
    }
    actual.node_labels = ng
        .labels()
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut taints = taints_of(&ng);
    // EKS does not keep the order: the same set is no change.
    if taints.len() == d.taints.len() && taints.iter().all(|t| d.taints.contains(t)) {
        taints = d.taints.clone();
    }
    actual.taints = taints;
    let tags = ng.tags().cloned().unwrap_or_default();
    if let Some((t, s)) = tags.get(DISK_TAG).and_then(|v| v.split_once(':')) {
        actual.disk_type = t.to_string();
        actual.disk_size_gb = s.parse().unwrap_or(0);
    }
    actual.image = tags.get(IMAGE_TAG).filter(|v| !v.is_empty()).cloned();
    if let Some(p) = tags.get(MAX_PODS_TAG).and_then(|v| v.parse().ok()) {
        actual.max_pods_per_node = p;
    }
    match ng.status() {
        Some(NodegroupStatus::Creating | NodegroupStatus::Updating) => Ok(Some(Observed::pending(
            actual,
            c.op(format!("eks-nodegroup:{}/{}", d.cluster, d.name), &id),
        ))),
        Some(NodegroupStatus::Deleting) => Ok(Some(Observed::pending(
            actual,
            c.op(
                format!("eks-nodegroup-delete:{}/{}", d.cluster, d.name),
                &id,
            ),
        ))),
        _ => Ok(Some(Observed::ready(
            actual,
            Some(Output::NodePool {
                name: format!("{}/{}", d.cluster, d.name),
            }),
        ))),
    }
}

fn user_data(d: &NodePoolSpec, inputs: &Inputs) -> Result<String> {
    // AL2023 nodes read NodeConfig documents from MIME user data; EKS merges its own.
    let mut node_config = format!(
        "---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      maxPods: {}\n",
        d.max_pods_per_node
    );
    if d.image.is_some() {
        // A custom image bootstraps itself: it needs the cluster's coordinates.
        let (endpoint, ca) = match inputs.of_kind(ResourceKind::Cluster)? {
            Output::Cluster {
                endpoint,
                ca_certificate_pem,
                ..
            } => (endpoint.clone(), ca_certificate_pem.clone()),
            _ => return Err(Error::internal("the cluster output has the wrong kind")),
        };
        let ca64 = base64::engine::general_purpose::STANDARD.encode(ca);
        node_config.push_str(&format!(
            "  cluster:\n    name: {}\n    apiServerEndpoint: {endpoint}\n    certificateAuthority: {ca64}\n",
            d.cluster
        ));
    }
    let mime = format!(
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"GITPODREFARCH\"\n\n--GITPODREFARCH\nContent-Type: application/node.eks.aws\n\n{node_config}\n--GITPODREFARCH--\n"
    );
    Ok(base64::engine::general_purpose::STANDARD.encode(mime))
}

/// A launch template by name, if it exists.
async fn launch_template(
    c: &Context,
    name: &str,
) -> Result<Option<aws_sdk_ec2::types::LaunchTemplate>> {
    let out = found(
        c.clients
            .ec2
            .describe_launch_templates()
            .launch_template_names(name)
            .send()
            .await
            .ctx(format!("looking up launch template {name}")),
    )?;
    Ok(out.and_then(|o| o.launch_templates().first().cloned()))
}

/// The launch template, created once per pool (its settings are replace-only).
async fn ensure_launch_template(
    c: &Context,
    d: &NodePoolSpec,
    inputs: &Inputs,
    tags: &BTreeMap<String, String>,
) -> Result<String> {
    let name = lt_name(d);
    if let Some(lt) = launch_template(c, &name).await? {
        return Ok(lt.launch_template_id().unwrap_or_default().to_string());
    }
    let mut data = RequestLaunchTemplateData::builder()
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name("/dev/xvda")
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(d.disk_size_gb as i32)
                        .volume_type(VolumeType::from(d.disk_type.as_str()))
                        .encrypted(true)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .http_put_response_hop_limit(2)
                .build(),
        )
        .user_data(user_data(d, inputs)?);
    if let Some(image) = &d.image {
        data = data.image_id(image);
    }
    let mut ts = TagSpecification::builder().resource_type(ResourceType::LaunchTemplate);
    for (k, v) in tags {
        ts = ts.tags(Ec2Tag::builder().key(k).value(v).build());
    }
    let out = c
        .clients
        .ec2
        .create_launch_template()
        .launch_template_name(&name)
        .launch_template_data(data.build())
        .tag_specifications(ts.build())
        .send()
        .await
        .ctx(format!("creating launch template {name}"))?;
    Ok(out
        .launch_template()
        .and_then(|l| l.launch_template_id())
        .unwrap_or_default()
        .to_string())
}

/// Create or update the node group.
pub async fn ensure(c: &Context, d: &NodePoolSpec, inputs: &Inputs) -> Result<Progress> {
    let id = ResourceId::new(ResourceKind::NodePool, d.name.clone());
    let op = || c.op(format!("eks-nodegroup:{}/{}", d.cluster, d.name), &id);
    let done = || {
        Progress::Done(Some(Output::NodePool {
            name: format!("{}/{}", d.cluster, d.name),
        }))
    };
    let eks_taints: Vec<EksTaint> = d
        .taints
        .iter()
        .map(|t| {
            EksTaint::builder()
                .key(&t.key)
                .value(&t.value)
                .effect(effect_to_eks(&t.effect))
                .build()
        })
        .collect();
    let Some(ng) = describe(c, &d.cluster, &d.name).await? else {
        let tags = tags_of(&d.labels, &d.cluster);
        let lt = ensure_launch_template(c, d, inputs, &tags).await?;
        let role = iam::role_arn(c, &identity::node_role(&d.cluster), &d.cluster)
            .await?
            .ok_or_else(|| {
                Error::new(ErrorKind::NotFound, "the node role does not exist yet")
                    .with_resource(id.clone())
            })?;
        let net = network::lookup(c, &d.cluster).await?.ok_or_else(|| {
            Error::new(ErrorKind::NotFound, "the network does not exist yet")
                .with_resource(id.clone())
        })?;
        let mut ng_tags: HashMap<String, String> = tags.into_iter().collect();
        ng_tags.insert("k8s.io/cluster-autoscaler/enabled".into(), "true".into());
        ng_tags.insert(
            format!("k8s.io/cluster-autoscaler/{}", d.cluster),
            "owned".into(),
        );
        ng_tags.insert(
            DISK_TAG.into(),
            format!("{}:{}", d.disk_type, d.disk_size_gb),
        );
        ng_tags.insert(IMAGE_TAG.into(), d.image.clone().unwrap_or_default());
        ng_tags.insert(MAX_PODS_TAG.into(), d.max_pods_per_node.to_string());
        let desired = d.min_nodes.max(1).min(d.max_nodes);
        c.clients
            .eks
            .create_nodegroup()
            .cluster_name(&d.cluster)
            .nodegroup_name(&d.name)
            .node_role(role)
            .set_subnets(Some(net.private.iter().map(|(_, s)| s.clone()).collect()))
            .instance_types(&d.machine_type)
            .version(minor(&d.kubernetes_version))
            .ami_type(if d.image.is_some() {
                AmiTypes::Custom
            } else {
                AmiTypes::Al2023X8664Standard
            })
            .capacity_type(CapacityTypes::OnDemand)
            .scaling_config(
                NodegroupScalingConfig::builder()
                    .min_size(d.min_nodes as i32)
                    .max_size(d.max_nodes as i32)
                    .desired_size(desired as i32)
                    .build(),
            )
            .set_labels(Some(d.node_labels.clone().into_iter().collect()))
            .set_taints((!eks_taints.is_empty()).then_some(eks_taints))
            .launch_template(LaunchTemplateSpecification::builder().id(lt).build())
            .set_tags(Some(ng_tags))
            .send()
            .await
            .ctx(format!("creating node group {}", d.name))?;
        return Ok(Progress::Pending(op()));
    };
    match ng.status() {
        Some(NodegroupStatus::Creating | NodegroupStatus::Updating) => {
            return Ok(Progress::Pending(op()))
        }
        Some(NodegroupStatus::CreateFailed | NodegroupStatus::DeleteFailed) => {
            return Err(Error::new(
                ErrorKind::OperationFailed,
                format!("node group {} failed: {:?}", d.name, ng.health()),
            )
            .with_resource(id))
        }
        Some(NodegroupStatus::Deleting) => {
            return Err(Error::new(
                ErrorKind::OperationInProgress,
                format!("node group {} is being deleted", d.name),
            )
            .with_resource(id))
        }
        _ => {}
    }
    // In-place changes: labels, taints, scaling bounds.
    let have_labels: BTreeMap<String, String> = ng
        .labels()
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut have_taints = taints_of(&ng);
    if have_taints.len() == d.taints.len() && have_taints.iter().all(|t| d.taints.contains(t)) {
        have_taints = d.taints.clone();
    }
    let (min, max, cur) = ng
        .scaling_config()
        .map(|s| {
            (
                s.min_size().unwrap_or(0),
                s.max_size().unwrap_or(0),
                s.desired_size().unwrap_or(0),
            )
        })
        .unwrap_or_default();
    let scaling_ok = min == d.min_nodes as i32 && max == d.max_nodes as i32;
    // Nodes follow the control plane (the cluster step upgrades it first).
    if minor(ng.version().unwrap_or_default()) != minor(&d.kubernetes_version) {
        c.clients
            .eks
            .update_nodegroup_version()
            .cluster_name(&d.cluster)
            .nodegroup_name(&d.name)
            .version(minor(&d.kubernetes_version))
            .send()
            .await
            .ctx(format!(
                "upgrading node group {} to {}",
                d.name, d.kubernetes_version
            ))?;
        return Ok(Progress::Pending(op()));
    }
    if have_labels == d.node_labels && have_taints == d.taints && scaling_ok {
        return Ok(done());
    }
    let mut req = c
        .clients
        .eks
        .update_nodegroup_config()
        .cluster_name(&d.cluster)
        .nodegroup_name(&d.name);
    if have_labels != d.node_labels {
        let remove: Vec<String> = have_labels
            .keys()
            .filter(|k| !d.node_labels.contains_key(*k))
            .cloned()
            .collect();
        req = req.labels(
            UpdateLabelsPayload::builder()
                .set_add_or_update_labels(Some(d.node_labels.clone().into_iter().collect()))
                .set_remove_labels((!remove.is_empty()).then_some(remove))
                .build(),
        );
    }
    if have_taints != d.taints {
        let remove: Vec<EksTaint> = have_taints
            .iter()
            .filter(|t| !d.taints.contains(t))
            .map(|t| {
                EksTaint::builder()
                    .key(&t.key)
                    .value(&t.value)
                    .effect(effect_to_eks(&t.effect))
                    .build()
            })
            .collect();
        req = req.taints(
            UpdateTaintsPayload::builder()
                .set_add_or_update_taints((!eks_taints.is_empty()).then_some(eks_taints))
                .set_remove_taints((!remove.is_empty()).then_some(remove))
                .build(),
        );
    }
    if !scaling_ok {
        let desired = cur.clamp(d.min_nodes as i32, d.max_nodes as i32);
        req = req.scaling_config(
            NodegroupScalingConfig::builder()
                .min_size(d.min_nodes as i32)
                .max_size(d.max_nodes as i32)
                .desired_size(desired)
                .build(),
        );
    }
    req.send()
        .await
        .ctx(format!("updating node group {}", d.name))?;
    Ok(Progress::Pending(op()))
}

/// Poll a node group create/update or delete.
pub async fn poll(c: &Context, op: &Operation) -> Result<Progress> {
    let (deleting, rest) = match op.id.split_once(':') {
        Some(("eks-nodegroup", r)) => (false, r),
        Some(("eks-nodegroup-delete", r)) => (true, r),
        _ => return Ok(Progress::Done(None)),
    };
    let (cluster, name) = rest.split_once('/').unwrap_or((rest, ""));
    let again = || Ok(Progress::Pending(c.op(op.id.clone(), &op.resource)));
    match (describe(c, cluster, name).await?, deleting) {
        (None, true) => Ok(Progress::Done(None)),
        (None, false) => Err(Error::new(
            ErrorKind::OperationFailed,
            format!("node group {name} disappeared"),
        )
        .with_resource(op.resource.clone())),
        (Some(_), true) => again(),
        (Some(ng), false) => match ng.status() {
            Some(NodegroupStatus::Active) => Ok(Progress::Done(None)),
            Some(NodegroupStatus::CreateFailed | NodegroupStatus::Degraded) => Err(Error::new(
                ErrorKind::OperationFailed,
                format!("node group {name} is {:?}: {:?}", ng.status(), ng.health()),
            )
            .with_resource(op.resource.clone())),
            _ => again(),
        },
    }
}

/// Delete the node group, then its launch template.
pub async fn delete(c: &Context, id: &ResourceId, d: &NodePoolSpec) -> Result<Progress> {
    let cluster = d.cluster.as_str();
    if let Some(ng) = describe(c, cluster, &d.name).await? {
        if ng.status() != Some(&NodegroupStatus::Deleting) {
            found(
                c.clients
                    .eks
                    .delete_nodegroup()
                    .cluster_name(cluster)
                    .nodegroup_name(&d.name)
                    .send()
                    .await
                    .ctx(format!("deleting node group {}", d.name)),
            )?;
        }
        return Ok(Progress::Pending(
            c.op(format!("eks-nodegroup-delete:{cluster}/{}", d.name), id),
        ));
    }
    let lt = lt_name(d);
    let ours = launch_template(c, &lt).await?.is_some_and(|t| {
        t.tags()
            .iter()
            .any(|t| t.key() == Some(INSTALLATION_LABEL) && t.value() == Some(d.cluster.as_str()))
    });
    if ours {
        found(
            c.clients
                .ec2
                .delete_launch_template()
                .launch_template_name(&lt)
                .send()
                .await
                .ctx(format!("deleting launch template {lt}")),
        )?;
    }
    Ok(Progress::Done(None))
}
