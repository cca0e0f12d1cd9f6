//! The three GKE node pools of the spec (`services`, `regular-ws`, `headless-ws`):
//! machine type, `pd-ssd` disk and size, image (`UBUNTU_CONTAINERD`), the Gitpod node
//! labels, taints, autoscaling bounds (starting at the minimum), max pods per node,
//! auto-repair on and auto-upgrade off, the node version following the cluster, the
//! `cloud-platform` scope with `gke-sa-<name>`, legacy metadata endpoints disabled.
//!
//! Changes that GKE makes in place are applied one operation per call: the version
//! first, then labels, then the autoscaling bounds, then management.

use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{Desired, NodePoolSpec, Output};
use gitpod_refarch::spec::Taint;
use gitpod_refarch::{Error, ErrorKind, Result};
use google_cloud_container_v1::model::{
    node_pool::Status, node_taint::Effect, MaxPodsConstraint, NodeConfig, NodeLabels,
    NodeManagement, NodePool, NodePoolAutoscaling, NodeTaint,
};

use crate::cluster::{cluster_path, conditions, gke_op, version_matches, NODE_SCOPE};
use crate::context::{operation, pending, Api, Context, Standing};
use crate::error::{found, GaxResultExt};
use crate::{iam, identity};

/// `projects/<p>/locations/<r>/clusters/<c>/nodePools/<pool>`.
pub fn pool_path(c: &Context, d: &NodePoolSpec) -> String {
    format!("{}/nodePools/{}", cluster_path(c, &d.cluster), d.name)
}

fn effect_of(s: &str) -> Effect {
    match s {
        "PreferNoSchedule" => Effect::PreferNoSchedule,
        "NoExecute" => Effect::NoExecute,
        _ => Effect::NoSchedule,
    }
}

fn effect_name(e: &Effect) -> &'static str {
    match e {
        Effect::PreferNoSchedule => "PreferNoSchedule",
        Effect::NoExecute => "NoExecute",
        _ => "NoSchedule",
    }
}

async fn get(c: &Context, d: &NodePoolSpec) -> Result<Option<NodePool>> {
    let r = c
        .clients
        .gke
        .get_node_pool()
        .set_name(pool_path(c, d))
        .send()
        .await;
    found(r, format!("reading node pool {}", d.name))
}

fn busy(s: &Status) -> bool {
    matches!(
        s,
        Status::Provisioning | Status::Reconciling | Status::Stopping
    )
}

/// Where the pool stands, for [`crate::ops`]'s watch.
pub(crate) fn standing(p: &NodePool) -> Standing {
    match p.status {
        ref s if busy(s) => Standing::Busy,
        Status::Error => Standing::Failed(conditions(&p.conditions)),
        _ => Standing::Settled,
    }
}

fn actual(d: &NodePoolSpec, p: &NodePool) -> NodePoolSpec {
    let mut a = d.clone();
    if let Some(cfg) = &p.config {
        a.machine_type = cfg.machine_type.clone();
        a.disk_type = cfg.disk_type.clone();
        a.disk_size_gb = u32::try_from(cfg.disk_size_gb).unwrap_or_default();
        a.node_labels = cfg.labels.clone().into_iter().collect();
        a.taints = cfg
            .taints
            .iter()
            .map(|t| Taint::new(t.key.clone(), t.value.clone(), effect_name(&t.effect)))
            .collect();
        if d.image.is_some() {
            a.image = Some(cfg.image_type.clone());
        }
        a.labels = cfg.resource_labels.clone().into_iter().collect();
    }
    if let Some(s) = &p.autoscaling {
        a.min_nodes = u32::try_from(s.min_node_count).unwrap_or_default();
        a.max_nodes = u32::try_from(s.max_node_count).unwrap_or_default();
    }
    if let Some(m) = &p.max_pods_constraint {
        a.max_pods_per_node = u32::try_from(m.max_pods_per_node).unwrap_or_default();
    }
    a.auto_upgrade = p.management.as_ref().is_some_and(|m| m.auto_upgrade);
    if !version_matches(&d.kubernetes_version, &p.version) {
        a.kubernetes_version = p.version.clone();
    }
    a
}

fn output(p: &NodePool) -> Output {
    Output::NodePool {
        name: p.name.clone(),
    }
}

/// The pool as it exists; a pool still provisioning is reported with a wait.
pub async fn observe(c: &Context, d: &NodePoolSpec) -> Result<Option<Observed<NodePoolSpec>>> {
    let Some(p) = get(c, d).await? else {
        return Ok(None);
    };
    let a = actual(d, &p);
    if busy(&p.status) {
        let id = Desired::NodePool(d.clone()).id();
        let op = operation(c, Api::GkeNodePool, &pool_path(c, d), &id);
        return Ok(Some(Observed::pending(a, op)));
    }
    Ok(Some(Observed::ready(a, Some(output(&p)))))
}

fn new_pool(c: &Context, d: &NodePoolSpec) -> NodePool {
    let mut cfg = NodeConfig::new()
        .set_machine_type(&d.machine_type)
        .set_disk_type(&d.disk_type)
        .set_disk_size_gb(i32::try_from(d.disk_size_gb).unwrap_or(i32::MAX))
        .set_labels(d.node_labels.clone())
        .set_resource_labels(d.labels.clone())
        .set_taints(d.taints.iter().map(|t| {
            NodeTaint::new()
                .set_key(&t.key)
                .set_value(&t.value)
                .set_effect(effect_of(&t.effect))
        }))
        .set_oauth_scopes([NODE_SCOPE])
        .set_service_account(iam::email(c, &identity::account_id(&d.cluster)))
        .set_metadata([("disable-legacy-endpoints", "true")])
        .set_tags(["gke-node".to_string(), format!("{}-gke", c.project)]);
    if let Some(image) = &d.image {
        cfg = cfg.set_image_type(image);
    }
    NodePool::new()
        .set_name(&d.name)
        .set_config(cfg)
        .set_initial_node_count(i32::try_from(d.min_nodes.max(1)).unwrap_or(1))
        .set_version(&d.kubernetes_version)
        .set_autoscaling(autoscaling(d))
        .set_management(management(d))
        .set_max_pods_constraint(
            MaxPodsConstraint::new().set_max_pods_per_node(i64::from(d.max_pods_per_node)),
        )
}

fn autoscaling(d: &NodePoolSpec) -> NodePoolAutoscaling {
    NodePoolAutoscaling::new()
        .set_enabled(true)
        .set_min_node_count(i32::try_from(d.min_nodes).unwrap_or(i32::MAX))
        .set_max_node_count(i32::try_from(d.max_nodes).unwrap_or(i32::MAX))
}

fn management(d: &NodePoolSpec) -> NodeManagement {
    NodeManagement::new()
        .set_auto_upgrade(d.auto_upgrade)
        .set_auto_repair(true)
}

/// Create the pool, or bring one in-place setting in line per call.
pub async fn ensure(c: &Context, d: &NodePoolSpec, _inputs: &Inputs) -> Result<Progress> {
    let id = Desired::NodePool(d.clone()).id();
    let Some(p) = get(c, d).await? else {
        let op = c
            .clients
            .gke
            .create_node_pool()
            .set_parent(cluster_path(c, &d.cluster))
            .set_node_pool(new_pool(c, d))
            .send()
            .await
            .ctx(format!("creating node pool {}", d.name))?;
        return Ok(pending(c, Api::Gke, &gke_op(c, &op.name), &id));
    };
    if busy(&p.status) {
        return Ok(pending(c, Api::GkeNodePool, &pool_path(c, d), &id));
    }
    if p.status == Status::Error {
        return Err(Error::new(
            ErrorKind::OperationFailed,
            format!(
                "node pool {} is in ERROR: {}",
                d.name,
                conditions(&p.conditions)
            ),
        )
        .with_resource(id));
    }
    let a = actual(d, &p);
    let gke = &c.clients.gke;
    let op = if a.kubernetes_version != d.kubernetes_version {
        gke.update_node_pool()
            .set_name(pool_path(c, d))
            .set_node_version(&d.kubernetes_version)
            .set_image_type(d.image.clone().unwrap_or_default())
            .send()
            .await
            .ctx(format!("upgrading node pool {}", d.name))?
    } else if a.node_labels != d.node_labels {
        gke.update_node_pool()
            .set_name(pool_path(c, d))
            .set_node_version(&p.version)
            .set_image_type(
                p.config
                    .as_ref()
                    .map(|c| c.image_type.clone())
                    .unwrap_or_default(),
            )
            .set_labels(NodeLabels::new().set_labels(d.node_labels.clone()))
            .send()
            .await
            .ctx(format!("relabelling node pool {}", d.name))?
    } else if (a.min_nodes, a.max_nodes) != (d.min_nodes, d.max_nodes) {
        gke.set_node_pool_autoscaling()
            .set_name(pool_path(c, d))
            .set_autoscaling(autoscaling(d))
            .send()
            .await
            .ctx(format!("setting the bounds of node pool {}", d.name))?
    } else if a.auto_upgrade != d.auto_upgrade {
        gke.set_node_pool_management()
            .set_name(pool_path(c, d))
            .set_management(management(d))
            .send()
            .await
            .ctx(format!("setting the management of node pool {}", d.name))?
    } else {
        return Ok(Progress::Done(Some(output(&p))));
    };
    Ok(pending(c, Api::Gke, &gke_op(c, &op.name), &id))
}

/// Delete the pool. Absent (or its cluster gone) is fine.
pub async fn delete(c: &Context, d: &NodePoolSpec) -> Result<Progress> {
    let id = &Desired::NodePool(d.clone()).id();
    let Some(p) = get(c, d).await? else {
        return Ok(Progress::Done(None));
    };
    if busy(&p.status) {
        return Ok(pending(c, Api::GkeNodePool, &pool_path(c, d), id));
    }
    let r = c
        .clients
        .gke
        .delete_node_pool()
        .set_name(pool_path(c, d))
        .send()
        .await;
    match found(r, format!("deleting node pool {}", d.name))? {
        Some(op) => Ok(pending(c, Api::Gke, &gke_op(c, &op.name), id)),
        None => Ok(Progress::Done(None)),
    }
}
