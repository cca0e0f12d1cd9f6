//! The VPC `vpc-<name>` (no automatic subnetworks) and the subnetwork `subnet-<name>`
//! in the region: the node range, and the secondary ranges `pods` and `services` that
//! the VPC-native (IP alias) cluster uses. Private Google access is on so that nodes
//! reach Google APIs without external addresses.

use gitpod_refarch::provider::{Observed, Progress};
use gitpod_refarch::resource::{Desired, NetworkSpec, Output};
use gitpod_refarch::{Error, Result};
use google_cloud_compute_v1::model::{Network, Subnetwork, SubnetworkSecondaryRange};

use crate::context::{foreign, ownership_mark, pending, Api, Context};
use crate::error::{found, still_creating, GaxResultExt};

/// The secondary range of the pods.
pub const PODS_RANGE: &str = "pods";
/// The secondary range of the services.
pub const SERVICES_RANGE: &str = "services";

/// `vpc-<name>`.
pub fn network_name(installation: &str) -> String {
    format!("vpc-{installation}")
}

/// `subnet-<name>`.
pub fn subnet_name(installation: &str) -> String {
    format!("subnet-{installation}")
}

async fn get_network(c: &Context, installation: &str) -> Result<Option<Network>> {
    let name = network_name(installation);
    let n = found(
        c.clients
            .networks
            .get()
            .set_project(&c.project)
            .set_network(&name)
            .send()
            .await,
        format!("reading network {name}"),
    )?;
    match n {
        Some(n) if n.description.as_deref() != Some(ownership_mark(installation).as_str()) => {
            Err(foreign(&format!("network {name}"), installation))
        }
        other => Ok(other),
    }
}

async fn get_subnet(c: &Context, installation: &str) -> Result<Option<Subnetwork>> {
    let name = subnet_name(installation);
    let s = found(
        c.clients
            .subnetworks
            .get()
            .set_project(&c.project)
            .set_region(&c.region)
            .set_subnetwork(&name)
            .send()
            .await,
        format!("reading subnetwork {name}"),
    )?;
    match s {
        Some(s) if s.description.as_deref() != Some(ownership_mark(installation).as_str()) => {
            Err(foreign(&format!("subnetwork {name}"), installation))
        }
        other => Ok(other),
    }
}

fn range<'a>(s: &'a Subnetwork, name: &str) -> Option<&'a str> {
    s.secondary_ip_ranges
        .iter()
        .find(|r| r.range_name.as_deref() == Some(name))
        .and_then(|r| r.ip_cidr_range.as_deref())
}

fn output(c: &Context, d: &NetworkSpec) -> Output {
    Output::Network {
        network_id: format!(
            "projects/{}/global/networks/{}",
            c.project,
            network_name(&d.name)
        ),
        subnet_ids: vec![format!(
            "projects/{}/regions/{}/subnetworks/{}",
            c.project,
            c.region,
            subnet_name(&d.name)
        )],
    }
}

/// The network as it exists (its ranges read from the subnetwork); a VPC without its
/// subnetwork is reported with that as drift.
pub async fn observe(c: &Context, d: &NetworkSpec) -> Result<Option<Observed<NetworkSpec>>> {
    if get_network(c, &d.name).await?.is_none() {
        return Ok(None);
    }
    let Some(s) = get_subnet(c, &d.name).await? else {
        return Ok(Some(
            Observed::ready(d.clone(), Some(output(c, d))).with_drift(format!(
                "network {} has no subnetwork {} yet",
                network_name(&d.name),
                subnet_name(&d.name)
            )),
        ));
    };
    let mut actual = d.clone();
    actual.node_cidr = s.ip_cidr_range.clone().unwrap_or_default();
    actual.pod_cidr = range(&s, PODS_RANGE).map(str::to_string);
    actual.service_cidr = range(&s, SERVICES_RANGE).unwrap_or_default().to_string();
    Ok(Some(Observed::ready(actual, Some(output(c, d)))))
}

/// Create the VPC, then the subnetwork (one operation per call).
pub async fn ensure(c: &Context, d: &NetworkSpec) -> Result<Progress> {
    let id = Desired::Network(d.clone()).id();
    if get_network(c, &d.name).await?.is_none() {
        let op = c
            .clients
            .networks
            .insert()
            .set_project(&c.project)
            .set_body(
                Network::new()
                    .set_name(network_name(&d.name))
                    .set_description(ownership_mark(&d.name))
                    .set_auto_create_subnetworks(false),
            )
            .send()
            .await
            .map_err(|e| still_creating(e, format!("network {}", network_name(&d.name))))?;
        return Ok(pending(
            c,
            Api::ComputeGlobal,
            &op.name.unwrap_or_default(),
            &id,
        ));
    }
    match get_subnet(c, &d.name).await? {
        None => {
            let pod_cidr = d.pod_cidr.clone().ok_or_else(|| {
                Error::invalid_input("GKE needs cluster.network.podCidr (a secondary range)")
            })?;
            let op = c
                .clients
                .subnetworks
                .insert()
                .set_project(&c.project)
                .set_region(&c.region)
                .set_body(
                    Subnetwork::new()
                        .set_name(subnet_name(&d.name))
                        .set_description(ownership_mark(&d.name))
                        .set_network(format!(
                            "projects/{}/global/networks/{}",
                            c.project,
                            network_name(&d.name)
                        ))
                        .set_region(&c.region)
                        .set_ip_cidr_range(&d.node_cidr)
                        .set_private_ip_google_access(true)
                        .set_secondary_ip_ranges([
                            SubnetworkSecondaryRange::new()
                                .set_range_name(PODS_RANGE)
                                .set_ip_cidr_range(pod_cidr),
                            SubnetworkSecondaryRange::new()
                                .set_range_name(SERVICES_RANGE)
                                .set_ip_cidr_range(&d.service_cidr),
                        ]),
                )
                .send()
                .await
                .map_err(|e| still_creating(e, format!("subnetwork {}", subnet_name(&d.name))))?;
            Ok(pending(
                c,
                Api::ComputeRegion,
                &op.name.unwrap_or_default(),
                &id,
            ))
        }
        Some(s) => {
            let same = s.ip_cidr_range.as_deref() == Some(d.node_cidr.as_str())
                && range(&s, PODS_RANGE) == d.pod_cidr.as_deref()
                && range(&s, SERVICES_RANGE) == Some(d.service_cidr.as_str());
            if !same {
                return Err(Error::invalid_input(format!(
                    "subnetwork {} exists with other ranges; GKE cannot move a cluster to new \
                     ranges in place: destroy and apply again, or keep the old ranges",
                    subnet_name(&d.name)
                )));
            }
            Ok(Progress::Done(Some(output(c, d))))
        }
    }
}

/// Delete the subnetwork, then the VPC. Absent is fine; foreign ones stay.
pub async fn delete(c: &Context, d: &NetworkSpec) -> Result<Progress> {
    let id = &Desired::Network(d.clone()).id();
    let installation = d.name.as_str();
    if get_subnet(c, installation).await?.is_some() {
        let op = c
            .clients
            .subnetworks
            .delete()
            .set_project(&c.project)
            .set_region(&c.region)
            .set_subnetwork(subnet_name(installation))
            .send()
            .await
            .ctx(format!("deleting subnetwork {}", subnet_name(installation)))?;
        return Ok(pending(
            c,
            Api::ComputeRegion,
            &op.name.unwrap_or_default(),
            id,
        ));
    }
    if get_network(c, installation).await?.is_some() {
        let op = c
            .clients
            .networks
            .delete()
            .set_project(&c.project)
            .set_network(network_name(installation))
            .send()
            .await
            .ctx(format!("deleting network {}", network_name(installation)))?;
        return Ok(pending(
            c,
            Api::ComputeGlobal,
            &op.name.unwrap_or_default(),
            id,
        ));
    }
    Ok(Progress::Done(None))
}
