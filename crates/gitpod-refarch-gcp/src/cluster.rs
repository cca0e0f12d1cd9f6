//! The regional GKE cluster, with the guide's flags: the Kubernetes version from the
//! spec and no release channel, VPC-native (IP alias) on `subnet-<name>` with the
//! `pods`/`services` secondary ranges, Calico network policy (never Dataplane V2),
//! NodeLocalDNS, HPA and HTTP load balancing, legacy metadata endpoints disabled, max
//! pods per node from the spec, labels; nodes run as `gke-sa-<name>`.
//!
//! GKE needs a node pool at creation: the cluster starts with a one-node
//! `default-pool` that the next phase removes, as the guide does, before the three
//! pools of the spec are created ([`crate::nodepool`]). GKE runs one operation per
//! cluster at a time; the provider declares serial cluster operations, and a
//! rejected concurrent call is classified `OperationInProgress` and retried.

use base64::Engine as _;
use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{ClusterSpec, Desired, Output, ResourceId, ResourceKind};
use gitpod_refarch::{Error, Result};
use google_cloud_container_v1::model::{
    cluster::Status, network_policy::Provider, AddonsConfig, Cluster, ClusterUpdate,
    DatapathProvider, DnsCacheConfig, HorizontalPodAutoscaling, HttpLoadBalancing,
    IPAllocationPolicy, MaxPodsConstraint, NetworkConfig, NetworkPolicy, NetworkPolicyConfig,
    NodeConfig, NodeManagement, NodePool, ReleaseChannel, WorkloadIdentityConfig,
};

use crate::context::{
    foreign, is_ours, operation, ownership_mark, pending, Api, Context, Standing,
};
use crate::error::{found, GaxResultExt};
use crate::network::{network_name, subnet_name, PODS_RANGE, SERVICES_RANGE};
use crate::{iam, identity};

/// The pool GKE creates with the cluster, removed before the spec's pools.
pub const DEFAULT_POOL: &str = "default-pool";

/// The OAuth scope of every node (access is governed by the service account's roles).
pub const NODE_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// `projects/<p>/locations/<region>/clusters/<name>`.
pub fn cluster_path(c: &Context, name: &str) -> String {
    format!("{}/clusters/{name}", c.location_path())
}

/// The cluster, if it exists and is ours.
pub async fn get(c: &Context, name: &str) -> Result<Option<Cluster>> {
    let cl = found(
        c.clients
            .gke
            .get_cluster()
            .set_name(cluster_path(c, name))
            .send()
            .await,
        format!("reading cluster {name}"),
    )?;
    match cl {
        Some(cl) if !is_ours(&cl.resource_labels.clone().into_iter().collect(), name) => {
            Err(foreign(&format!("GKE cluster {name}"), name))
        }
        other => Ok(other),
    }
}

/// `1.33` matches `1.33.5-gke.1080000`: versions are compared at the spec's precision.
pub fn version_matches(wanted: &str, actual: &str) -> bool {
    actual == wanted
        || actual.starts_with(&format!("{wanted}."))
        || actual.starts_with(&format!("{wanted}-"))
}

fn busy(s: &Status) -> bool {
    matches!(
        s,
        Status::Provisioning | Status::Reconciling | Status::Stopping
    )
}

/// Where the cluster stands, for [`crate::ops`]'s watch.
pub(crate) fn standing(cl: &Cluster) -> Standing {
    match cl.status {
        ref s if busy(s) => Standing::Busy,
        Status::Error => Standing::Failed(conditions(&cl.conditions)),
        _ => Standing::Settled,
    }
}

/// An operation that waits until the cluster is no longer busy.
fn watch(c: &Context, name: &str, id: &ResourceId) -> Progress {
    pending(c, Api::GkeCluster, &cluster_path(c, name), id)
}

fn output(cl: &Cluster) -> Result<Output> {
    let ca = cl
        .master_auth
        .as_ref()
        .map(|m| m.cluster_ca_certificate.as_str())
        .unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Error::internal(format!(
                "cluster {}: the CA certificate is not base64 PEM",
                cl.name
            ))
        })?;
    Ok(Output::Cluster {
        name: cl.name.clone(),
        // GKE reports a bare address: the API server is at https:// in front of it.
        endpoint: format!("https://{}", cl.endpoint),
        ca_certificate_pem: pem,
    })
}

fn actual(d: &ClusterSpec, cl: &Cluster) -> ClusterSpec {
    let mut a = d.clone();
    if !version_matches(&d.kubernetes_version, &cl.current_master_version) {
        a.kubernetes_version = cl.current_master_version.clone();
    }
    a.network_policy = match &cl.network_policy {
        Some(p) if p.enabled && p.provider == Provider::Calico => "calico".into(),
        _ => "none".into(),
    };
    if let Some(m) = &cl.default_max_pods_constraint {
        a.max_pods_per_node = u32::try_from(m.max_pods_per_node).unwrap_or_default();
    }
    if !d.zones.is_empty() {
        a.zones = cl.locations.clone();
    }
    a
}

/// The cluster as it exists. A cluster still being created, or still carrying the
/// default pool, is reported with an operation to wait for; the engine then calls
/// `ensure`, which finishes the job.
pub async fn observe(c: &Context, d: &ClusterSpec) -> Result<Option<Observed<ClusterSpec>>> {
    let Some(cl) = get(c, &d.name).await? else {
        return Ok(None);
    };
    let a = actual(d, &cl);
    if busy(&cl.status) || cl.node_pools.iter().any(|p| p.name == DEFAULT_POOL) {
        let id = Desired::Cluster(d.clone()).id();
        let op = operation(c, Api::GkeCluster, &cluster_path(c, &d.name), &id);
        return Ok(Some(Observed::pending(a, op)));
    }
    Ok(Some(Observed::ready(a, Some(output(&cl)?))))
}

/// No release channel: versions are pinned by the spec (the API still calls this
/// `UNSPECIFIED`; without it a new cluster joins the REGULAR channel, which upgrades).
#[allow(deprecated)]
fn no_release_channel() -> ReleaseChannel {
    ReleaseChannel::new()
        .set_channel(google_cloud_container_v1::model::release_channel::Channel::Unspecified)
}

/// The messages of the cluster's or pool's status conditions.
pub(crate) fn conditions(cs: &[google_cloud_container_v1::model::StatusCondition]) -> String {
    cs.iter()
        .map(|c| c.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn new_cluster(c: &Context, d: &ClusterSpec, node_sa: &str) -> Cluster {
    let network = format!(
        "projects/{}/global/networks/{}",
        c.project,
        network_name(&d.name)
    );
    let subnetwork = format!(
        "projects/{}/regions/{}/subnetworks/{}",
        c.project,
        c.region,
        subnet_name(&d.name)
    );
    let default_pool = NodePool::new()
        .set_name(DEFAULT_POOL)
        .set_initial_node_count(1)
        .set_config(
            NodeConfig::new()
                .set_service_account(node_sa)
                .set_oauth_scopes([NODE_SCOPE])
                .set_metadata([("disable-legacy-endpoints", "true")]),
        )
        .set_management(
            NodeManagement::new()
                .set_auto_upgrade(false)
                .set_auto_repair(true),
        );
    let mut cl = Cluster::new()
        .set_name(&d.name)
        .set_description(ownership_mark(&d.name))
        .set_initial_cluster_version(&d.kubernetes_version)
        .set_network(network.clone())
        .set_subnetwork(subnetwork.clone())
        .set_locations(d.zones.clone())
        .set_node_pools([default_pool])
        .set_resource_labels(d.labels.clone())
        .set_release_channel(no_release_channel())
        .set_ip_allocation_policy(
            IPAllocationPolicy::new()
                .set_use_ip_aliases(true)
                .set_cluster_secondary_range_name(PODS_RANGE)
                .set_services_secondary_range_name(SERVICES_RANGE),
        )
        .set_network_policy(
            NetworkPolicy::new()
                .set_provider(Provider::Calico)
                .set_enabled(true),
        )
        .set_network_config(
            NetworkConfig::new()
                .set_network(network)
                .set_subnetwork(subnetwork)
                .set_datapath_provider(DatapathProvider::LegacyDatapath),
        )
        .set_addons_config(
            AddonsConfig::new()
                .set_network_policy_config(NetworkPolicyConfig::new().set_disabled(false))
                .set_dns_cache_config(DnsCacheConfig::new().set_enabled(true))
                .set_horizontal_pod_autoscaling(HorizontalPodAutoscaling::new().set_disabled(false))
                .set_http_load_balancing(HttpLoadBalancing::new().set_disabled(false)),
        )
        .set_default_max_pods_constraint(
            MaxPodsConstraint::new().set_max_pods_per_node(i64::from(d.max_pods_per_node)),
        );
    if c.config.workload_identity {
        cl = cl.set_workload_identity_config(
            WorkloadIdentityConfig::new().set_workload_pool(format!("{}.svc.id.goog", c.project)),
        );
    }
    cl
}

/// Create the cluster; once it runs, remove the default pool; upgrade the control
/// plane when the spec's version changes. One operation per call.
pub async fn ensure(c: &Context, d: &ClusterSpec, _inputs: &Inputs) -> Result<Progress> {
    let id = ResourceId::new(ResourceKind::Cluster, d.name.clone());
    let Some(cl) = get(c, &d.name).await? else {
        let node_sa = iam::email(c, &identity::account_id(&d.name));
        let op = c
            .clients
            .gke
            .create_cluster()
            .set_parent(c.location_path())
            .set_cluster(new_cluster(c, d, &node_sa))
            .send()
            .await
            .ctx(format!("creating cluster {}", d.name))?;
        return Ok(pending(c, Api::Gke, &gke_op(c, &op.name), &id));
    };
    if busy(&cl.status) {
        return Ok(watch(c, &d.name, &id));
    }
    if cl.status == Status::Error {
        return Err(Error::new(
            gitpod_refarch::ErrorKind::OperationFailed,
            format!(
                "cluster {} is in ERROR: {}",
                d.name,
                conditions(&cl.conditions)
            ),
        )
        .with_resource(id));
    }
    if cl.node_pools.iter().any(|p| p.name == DEFAULT_POOL) {
        let op = c
            .clients
            .gke
            .delete_node_pool()
            .set_name(format!(
                "{}/nodePools/{DEFAULT_POOL}",
                cluster_path(c, &d.name)
            ))
            .send()
            .await
            .ctx(format!("removing the default pool of {}", d.name))?;
        return Ok(pending(c, Api::Gke, &gke_op(c, &op.name), &id));
    }
    if !version_matches(&d.kubernetes_version, &cl.current_master_version) {
        let op = c
            .clients
            .gke
            .update_cluster()
            .set_name(cluster_path(c, &d.name))
            .set_update(ClusterUpdate::new().set_desired_master_version(&d.kubernetes_version))
            .send()
            .await
            .ctx(format!(
                "upgrading cluster {} to {}",
                d.name, d.kubernetes_version
            ))?;
        return Ok(pending(c, Api::Gke, &gke_op(c, &op.name), &id));
    }
    Ok(Progress::Done(Some(output(&cl)?)))
}

/// Delete the cluster (its pools go with it). Absent is fine; foreign ones stay.
pub async fn delete(c: &Context, d: &ClusterSpec) -> Result<Progress> {
    let id = &ResourceId::new(ResourceKind::Cluster, d.name.clone());
    let Some(cl) = get(c, &id.name).await? else {
        return Ok(Progress::Done(None));
    };
    if busy(&cl.status) {
        return Ok(watch(c, &id.name, id));
    }
    let op = c
        .clients
        .gke
        .delete_cluster()
        .set_name(cluster_path(c, &id.name))
        .send()
        .await;
    match found(op, format!("deleting cluster {}", id.name))? {
        Some(op) => Ok(pending(c, Api::Gke, &gke_op(c, &op.name), id)),
        None => Ok(Progress::Done(None)),
    }
}

/// The full name of GKE operation `name` (the API returns the short id).
pub(crate) fn gke_op(c: &Context, name: &str) -> String {
    if name.contains('/') {
        name.to_string()
    } else {
        format!("{}/operations/{name}", c.location_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_at_the_spec_precision() {
        assert!(version_matches("1.33", "1.33.5-gke.1080000"));
        assert!(version_matches("1.33.5-gke.1080000", "1.33.5-gke.1080000"));
        assert!(!version_matches("1.33", "1.34.1-gke.1"));
        assert!(!version_matches("1.3", "1.33.1"));
    }
}
