//! Which SKUs each resource bills, per cloud: the clouds' pricing models, not their
//! APIs (no SDK here). One function per cloud; every SKU key names a price in that
//! cloud's catalog files (`crates/gitpod-refarch/catalog/<cloud>-<region>.yaml`).
//!
//! Shared by the three clouds:
//! - A node pool bills its nodes (`compute/<machine type>`) and their disks; its
//!   quantity runs from the pool's minimum over its starting size (`max(min, 1)`, as
//!   apply creates it) to its maximum. On GKE the bounds are per zone, so they are
//!   multiplied by the cluster's zones (the spec's, else the region's three).
//! - The L4 load balancer of Gitpod's proxy Service is billed with the cluster: the
//!   Service makes it when Gitpod is installed.
//! - A database with high availability bills a standby of the same tier and storage
//!   (Cloud SQL regional, RDS Multi-AZ, Flexible Server zone-redundant HA).
//! - Self-managed parts (an existing database server, DNS server, registry or S3
//!   endpoint) bill nothing to the cloud.
//! - Stored objects, images and backups depend on use: items without a quantity.

use crate::resource::{
    ClusterSpec, DatabaseInstanceSpec, Desired, DnsZoneSpec, NetworkSpec, NodePoolSpec,
    ObjectStorageSpec, RegistrySpec, ResourceId,
};
use crate::spec::{Cloud, RegistryMode};

use super::{BillItem, Measure, Quantity};

/// GKE's zones in a region when the spec names none.
pub const GKE_DEFAULT_ZONES: u32 = 3;

/// The items of these resources on a cloud.
pub fn items(cloud: Cloud, resources: &[&Desired]) -> Vec<BillItem> {
    let mut out = Vec::new();
    // GKE pools scale per zone: the cluster says how many zones.
    let zones = resources
        .iter()
        .find_map(|d| match d {
            Desired::Cluster(c) => Some(c),
            _ => None,
        })
        .map_or(GKE_DEFAULT_ZONES, zone_count);
    for d in resources {
        let id = d.id();
        match cloud {
            Cloud::Gcp => gcp(&mut out, &id, d, zones),
            Cloud::Aws => aws(&mut out, &id, d),
            Cloud::Azure => azure(&mut out, &id, d),
        }
    }
    out
}

fn zone_count(c: &ClusterSpec) -> u32 {
    u32::try_from(c.zones.len())
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(GKE_DEFAULT_ZONES)
}

fn item(
    id: &ResourceId,
    sku: String,
    description: String,
    measure: Measure,
    quantity: Option<Quantity>,
) -> BillItem {
    BillItem {
        resource: id.clone(),
        sku,
        description,
        measure,
        quantity,
    }
}

/// An item of a fixed count.
fn fixed(id: &ResourceId, sku: String, description: String, count: f64) -> BillItem {
    item(
        id,
        sku,
        description,
        Measure::Count,
        Some(Quantity::fixed(count)),
    )
}

/// An item billed by use: a unit price, no quantity.
fn usage(id: &ResourceId, sku: String, description: String) -> BillItem {
    item(id, sku, description, Measure::Gib, None)
}

/// A pool's node count: minimum, as created, maximum.
fn nodes(p: &NodePoolSpec) -> Quantity {
    let max = f64::from(p.max_nodes);
    Quantity {
        min: f64::from(p.min_nodes),
        spec: f64::from(p.min_nodes.max(1)).min(max.max(1.0)),
        max,
    }
}

fn role(p: &NodePoolSpec) -> &'static str {
    p.role.short_name()
}

fn standby(db: &DatabaseInstanceSpec) -> f64 {
    if db.high_availability {
        2.0
    } else {
        1.0
    }
}

fn self_managed_db(db: &DatabaseInstanceSpec) -> bool {
    db.server.is_some() || db.tier.is_empty()
}

fn self_managed_dns(z: &DnsZoneSpec) -> bool {
    z.server.is_some()
}

fn self_managed_storage(s: &ObjectStorageSpec) -> bool {
    s.endpoint.is_some()
}

fn self_managed_registry(r: &RegistrySpec) -> bool {
    r.url.is_some()
}

fn db_items(
    out: &mut Vec<BillItem>,
    id: &ResourceId,
    db: &DatabaseInstanceSpec,
    product: &str,
    storage_sku: &str,
) {
    let n = standby(db);
    let ha = if db.high_availability {
        ", with a standby (HA)"
    } else {
        ""
    };
    out.push(item(
        id,
        format!("database/{}", db.tier),
        format!("{product} {}{ha}", db.tier),
        Measure::Count,
        Some(Quantity::fixed(n)),
    ));
    out.push(item(
        id,
        format!("database-storage/{storage_sku}"),
        format!("{product} storage, {} GiB{ha}", db.storage_gb),
        Measure::Gib,
        Some(Quantity::fixed(f64::from(db.storage_gb) * n)),
    ));
    if db.backups_enabled {
        out.push(usage(
            id,
            "database-backup/storage".into(),
            format!("{product} backups beyond the free allowance"),
        ));
    }
}

fn gcp(out: &mut Vec<BillItem>, id: &ResourceId, d: &Desired, zones: u32) {
    match d {
        Desired::Cluster(_) => {
            out.push(fixed(
                id,
                "kubernetes/gke-regional".into(),
                "GKE regional cluster management fee".into(),
                1.0,
            ));
            out.push(fixed(
                id,
                "load-balancer/forwarding-rule".into(),
                "L4 load balancer of Gitpod's proxy Service (a forwarding rule)".into(),
                1.0,
            ));
        }
        Desired::NodePool(p) => {
            let n = nodes(p).times(f64::from(zones));
            out.push(item(
                id,
                format!("compute/{}", p.machine_type),
                format!(
                    "{} nodes ({}), {}..{} per zone x {zones} zones",
                    role(p),
                    p.machine_type,
                    p.min_nodes,
                    p.max_nodes
                ),
                Measure::Count,
                Some(n),
            ));
            out.push(item(
                id,
                format!("disk/{}", p.disk_type),
                format!(
                    "{} node disks ({}, {} GiB each)",
                    role(p),
                    p.disk_type,
                    p.disk_size_gb
                ),
                Measure::Gib,
                Some(n.times(f64::from(p.disk_size_gb))),
            ));
        }
        Desired::DatabaseInstance(db) if !self_managed_db(db) => {
            db_items(out, id, db, "Cloud SQL for MySQL", "ssd");
        }
        Desired::DnsZone(z) if !self_managed_dns(z) => out.push(fixed(
            id,
            "dns-zone/managed-zone".into(),
            format!("Cloud DNS zone {}", z.dns_name),
            1.0,
        )),
        Desired::Registry(r) if !self_managed_registry(r) && r.mode == RegistryMode::Managed => {
            out.push(usage(
                id,
                "registry-storage/artifact-registry".into(),
                "Artifact Registry storage (images Gitpod builds and caches)".into(),
            ));
        }
        Desired::ObjectStorage(s) if !self_managed_storage(s) => out.push(usage(
            id,
            "object-storage/standard".into(),
            "Cloud Storage Standard (workspace backups, logs; buckets Gitpod makes)".into(),
        )),
        _ => {}
    }
}

fn aws(out: &mut Vec<BillItem>, id: &ResourceId, d: &Desired) {
    match d {
        Desired::Network(n) => nat(out, id, n),
        Desired::Cluster(_) => {
            out.push(fixed(
                id,
                "kubernetes/eks".into(),
                "EKS cluster".into(),
                1.0,
            ));
            out.push(item(
                id,
                "load-balancer/classic".into(),
                "L4 load balancer of Gitpod's proxy Service (a Classic Load Balancer, the \
                 in-tree default)"
                    .into(),
                Measure::Count,
                Some(Quantity::fixed(1.0)),
            ));
        }
        Desired::NodePool(p) => {
            let n = nodes(p);
            out.push(item(
                id,
                format!("compute/{}", p.machine_type),
                format!(
                    "{} nodes ({}), {}..{}",
                    role(p),
                    p.machine_type,
                    p.min_nodes,
                    p.max_nodes
                ),
                Measure::Count,
                Some(n),
            ));
            out.push(item(
                id,
                format!("disk/{}", p.disk_type),
                format!(
                    "{} node volumes (EBS {}, {} GiB each)",
                    role(p),
                    p.disk_type,
                    p.disk_size_gb
                ),
                Measure::Gib,
                Some(n.times(f64::from(p.disk_size_gb))),
            ));
        }
        Desired::DatabaseInstance(db) if !self_managed_db(db) => {
            db_items(out, id, db, "RDS for MySQL", "gp3");
        }
        Desired::DnsZone(z) if !self_managed_dns(z) => out.push(fixed(
            id,
            "dns-zone/hosted-zone".into(),
            format!("Route 53 hosted zone {}", z.dns_name),
            1.0,
        )),
        Desired::Registry(r) if !self_managed_registry(r) && r.mode == RegistryMode::Managed => {
            out.push(usage(
                id,
                "registry-storage/ecr".into(),
                "ECR storage (images Gitpod builds and caches)".into(),
            ));
        }
        Desired::ObjectStorage(s) if !self_managed_storage(s) => out.push(usage(
            id,
            "object-storage/s3-standard".into(),
            "S3 Standard (workspace backups; with the in-cluster registry, its images too)".into(),
        )),
        _ => {}
    }
}

fn nat(out: &mut Vec<BillItem>, id: &ResourceId, n: &NetworkSpec) {
    let count = if n.highly_available_nat {
        u32::try_from(n.zones.len()).unwrap_or(1).max(1)
    } else {
        1
    };
    let what = if n.highly_available_nat {
        "one per zone"
    } else {
        "one for all zones"
    };
    out.push(item(
        id,
        "nat/gateway".into(),
        format!("NAT gateways ({what})"),
        Measure::Count,
        Some(Quantity::fixed(f64::from(count))),
    ));
    out.push(item(
        id,
        "public-ip/ipv4".into(),
        "public IPv4 addresses of the NAT gateways".into(),
        Measure::Count,
        Some(Quantity::fixed(f64::from(count))),
    ));
}

/// Whether an Azure VM size takes premium storage (an `s` among the size's
/// features, `Standard_D4s_v4`, `Standard_D2ds_v4`, or a `DS`/`GS` family).
pub fn azure_premium_capable(size: &str) -> bool {
    let body = size.strip_prefix("Standard_").unwrap_or(size);
    let name = body.split('_').next().unwrap_or_default();
    let family: String = name.chars().take_while(char::is_ascii_uppercase).collect();
    let features: String = name
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .skip_while(char::is_ascii_digit)
        .collect();
    family.len() > 1 && family.ends_with('S') || features.contains('s')
}

/// The managed-disk tier a size falls in (a disk is billed as the smallest tier
/// that holds it): `10` for 100 GiB (128), `20` for 512.
pub fn azure_disk_tier(size_gib: u32) -> u32 {
    const TIERS: [(u32, u32); 11] = [
        (4, 32),
        (6, 64),
        (10, 128),
        (15, 256),
        (20, 512),
        (30, 1024),
        (40, 2048),
        (50, 4096),
        (60, 8192),
        (70, 16_384),
        (80, 32_767),
    ];
    TIERS
        .iter()
        .find(|(_, cap)| size_gib <= *cap)
        .map_or(80, |(t, _)| *t)
}

fn azure(out: &mut Vec<BillItem>, id: &ResourceId, d: &Desired) {
    match d {
        Desired::Cluster(_) => {
            out.push(fixed(
                id,
                "kubernetes/aks-standard".into(),
                "AKS cluster, Standard tier".into(),
                1.0,
            ));
            out.push(fixed(
                id,
                "load-balancer/standard".into(),
                "AKS's Standard Load Balancer (outbound, and Gitpod's proxy Service)".into(),
                1.0,
            ));
            out.push(fixed(
                id,
                "public-ip/standard".into(),
                "public IPs: the cluster's outbound IP and Gitpod's proxy".into(),
                2.0,
            ));
        }
        Desired::NodePool(p) => {
            let n = nodes(p);
            out.push(item(
                id,
                format!("compute/{}", p.machine_type),
                format!(
                    "{} nodes ({}), {}..{}",
                    role(p),
                    p.machine_type,
                    p.min_nodes,
                    p.max_nodes
                ),
                Measure::Count,
                Some(n),
            ));
            if p.disk_type == "Managed" {
                let tier = azure_disk_tier(p.disk_size_gb);
                let (sku, what) = if azure_premium_capable(&p.machine_type) {
                    (format!("disk/P{tier}"), "Premium SSD")
                } else {
                    (
                        format!("disk/E{tier}"),
                        "Standard SSD (the size takes no premium storage)",
                    )
                };
                out.push(item(
                    id,
                    sku,
                    format!(
                        "{} OS disks, {what}, {} GiB each (billed as tier {tier})",
                        role(p),
                        p.disk_size_gb
                    ),
                    Measure::Count,
                    Some(n),
                ));
            }
        }
        Desired::DatabaseInstance(db) if !self_managed_db(db) => {
            db_items(
                out,
                id,
                db,
                "Azure Database for MySQL flexible server",
                "flexible",
            );
        }
        Desired::DnsZone(z) if !self_managed_dns(z) => out.push(fixed(
            id,
            "dns-zone/zone".into(),
            format!("Azure DNS zone {}", z.dns_name),
            1.0,
        )),
        Desired::Registry(r) if !self_managed_registry(r) && r.mode == RegistryMode::Managed => {
            out.push(fixed(
                id,
                "registry/standard".into(),
                "Container Registry, Standard tier (100 GiB included)".into(),
                1.0,
            ));
        }
        Desired::ObjectStorage(s) if !self_managed_storage(s) => out.push(usage(
            id,
            "object-storage/blob-hot-lrs".into(),
            "Blob Storage, hot LRS (workspace backups)".into(),
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_sizes_and_tiers() {
        assert!(!azure_premium_capable("Standard_D4_v4"));
        assert!(!azure_premium_capable("Standard_D16_v4"));
        assert!(azure_premium_capable("Standard_D4s_v4"));
        assert!(azure_premium_capable("Standard_D2ds_v4"));
        assert!(azure_premium_capable("Standard_DS2_v2"));
        assert!(!azure_premium_capable("Standard_D2_v2"));
        assert!(!azure_premium_capable("Standard_D4a_v4"));
        assert_eq!(azure_disk_tier(100), 10);
        assert_eq!(azure_disk_tier(128), 10);
        assert_eq!(azure_disk_tier(129), 15);
        assert_eq!(azure_disk_tier(512), 20);
        assert_eq!(azure_disk_tier(40_000), 80);
    }
}
