//! The VNet `vnet-N` with its two subnets.
//!
//! The VNet's address space is the spec's node range (`cluster.network.nodeCidr`,
//! `10.2.0.0/16` by default), carved in two:
//!
//! - `nodes`: the first half (`10.2.0.0/17`), the AKS nodes' subnet (never delegated);
//! - `mysql`: the last `/24` of the space (`10.2.255.0/24`), or the last `/28` when the
//!   space is smaller than a `/23`, delegated to `Microsoft.DBforMySQL/flexibleServers`
//!   for the flexible server's VNet integration.
//!
//! A node range smaller than a `/27` is refused. Pods use Azure CNI *overlay* (or
//! kubenet) addresses from the spec's pod range, and services the service range,
//! neither of them in the VNet (the core's validation keeps them apart).
//!
//! The VNet is always written whole: a VNet PUT whose `subnets` omits one deletes it
//! (or fails with `InUseSubnetCannotBeDeleted`), so every PUT lists both subnets, keeps
//! any other subnet found in the VNet, and keeps what AKS attached to a subnet (route
//! table, network security group, NAT gateway, service endpoints). It is written only
//! when it differs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use gitpod_refarch::provider::{Observed, Progress};
use gitpod_refarch::resource::{Desired, NetworkSpec, Output};
use gitpod_refarch::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arm::is_busy;
use crate::context::{
    absent_if_foreign, tags_of, vnet_name, Context, MYSQL_SUBNET, NETWORK_API, NODES_SUBNET,
};

/// The service the MySQL subnet is delegated to.
pub const MYSQL_DELEGATION: &str = "Microsoft.DBforMySQL/flexibleServers";

/// A virtual network (`Microsoft.Network/virtualNetworks`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetwork {
    /// Location.
    pub location: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Properties.
    #[serde(default)]
    pub properties: VnetProperties,
}

/// The properties of a VNet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VnetProperties {
    /// The address space.
    #[serde(default)]
    pub address_space: AddressSpace,
    /// Every subnet.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

/// An address space.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressSpace {
    /// CIDR prefixes.
    #[serde(default)]
    pub address_prefixes: Vec<String>,
}

/// A subnet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    /// Name.
    pub name: String,
    /// Properties.
    #[serde(default)]
    pub properties: SubnetProperties,
}

/// The properties of a subnet that are written (and kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetProperties {
    /// Its prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_prefix: Option<String>,
    /// Delegations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegations: Vec<Delegation>,
    /// A route table (kubenet's, attached by AKS): kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table: Option<Value>,
    /// A network security group: kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_security_group: Option<Value>,
    /// A NAT gateway: kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_gateway: Option<Value>,
    /// Service endpoints: kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_endpoints: Option<Value>,
}

/// A subnet delegation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delegation {
    /// Name.
    pub name: String,
    /// Properties.
    #[serde(default)]
    pub properties: DelegationProperties,
}

/// What a subnet is delegated to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegationProperties {
    /// The service.
    #[serde(default)]
    pub service_name: String,
}

fn parse_v4(cidr: &str) -> Option<(u32, u8)> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((u32::from(ip), len))
}

fn show(base: u32, len: u8) -> String {
    format!("{}/{len}", Ipv4Addr::from(base))
}

/// The node and MySQL subnets of a node range (see the module docs).
pub fn subnet_ranges(node_cidr: &str) -> Result<(String, String)> {
    let (ip, len) = parse_v4(node_cidr)
        .ok_or_else(|| Error::invalid_input(format!("'{node_cidr}' is not an IPv4 CIDR range")))?;
    if len > 27 {
        return Err(Error::invalid_input(format!(
            "the node range {node_cidr} is too small for the node and MySQL subnets (at most a /27)"
        )));
    }
    let mask = |l: u8| {
        if l == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(l))
        }
    };
    let base = ip & mask(len);
    let size = 1u64 << (32 - u32::from(len));
    let mysql_len: u8 = if len <= 23 { 24 } else { 28 };
    let mysql_size = 1u64 << (32 - u32::from(mysql_len));
    let mysql_base = u32::try_from(u64::from(base) + size - mysql_size)
        .map_err(|_| Error::invalid_input(format!("'{node_cidr}' is out of range")))?;
    Ok((show(base, len + 1), show(mysql_base, mysql_len)))
}

/// The VNet as it should be, keeping what `existing` has beyond ours (see the module
/// docs).
pub fn desired_vnet(
    c: &Context,
    d: &NetworkSpec,
    existing: Option<&VirtualNetwork>,
) -> Result<VirtualNetwork> {
    let (nodes, mysql) = subnet_ranges(&d.node_cidr)?;
    let kept = |name: &str| {
        existing
            .and_then(|v| v.properties.subnets.iter().find(|s| s.name == name))
            .map(|s| s.properties.clone())
            .unwrap_or_default()
    };
    let mut node_props = kept(NODES_SUBNET);
    node_props.address_prefix = Some(nodes);
    node_props.delegations = Vec::new();
    let mut mysql_props = kept(MYSQL_SUBNET);
    mysql_props.address_prefix = Some(mysql);
    mysql_props.delegations = vec![Delegation {
        name: "mysql-flexible-server".into(),
        properties: DelegationProperties {
            service_name: MYSQL_DELEGATION.into(),
        },
    }];
    let mut subnets = vec![
        Subnet {
            name: NODES_SUBNET.into(),
            properties: node_props,
        },
        Subnet {
            name: MYSQL_SUBNET.into(),
            properties: mysql_props,
        },
    ];
    if let Some(v) = existing {
        subnets.extend(
            v.properties
                .subnets
                .iter()
                .filter(|s| s.name != NODES_SUBNET && s.name != MYSQL_SUBNET)
                .cloned(),
        );
    }
    Ok(VirtualNetwork {
        location: existing.map_or_else(|| c.region.clone(), |v| v.location.clone()),
        tags: tags_of(&d.labels, &d.name),
        properties: VnetProperties {
            address_space: AddressSpace {
                address_prefixes: vec![d.node_cidr.clone()],
            },
            subnets,
            provisioning_state: None,
        },
    })
}

/// How `actual` differs from `wanted`, in words (empty when it does not).
fn differences(actual: &VirtualNetwork, wanted: &VirtualNetwork) -> Vec<String> {
    let mut out = Vec::new();
    for w in &wanted.properties.subnets {
        match actual.properties.subnets.iter().find(|s| s.name == w.name) {
            None => out.push(format!("subnet {} is missing", w.name)),
            Some(a) => {
                if a.properties.address_prefix != w.properties.address_prefix {
                    out.push(format!(
                        "subnet {} is {}, not {}",
                        w.name,
                        a.properties.address_prefix.as_deref().unwrap_or("unset"),
                        w.properties.address_prefix.as_deref().unwrap_or("unset")
                    ));
                }
                let services = |s: &Subnet| -> Vec<String> {
                    s.properties
                        .delegations
                        .iter()
                        .map(|d| d.properties.service_name.to_ascii_lowercase())
                        .collect()
                };
                if services(a) != services(w) {
                    out.push(format!("subnet {} has other delegations", w.name));
                }
            }
        }
    }
    if actual.tags != wanted.tags {
        out.push("its tags differ".into());
    }
    out
}

/// The VNet of the installation: `None` when absent, [`foreign`](crate::context::foreign) when not ours.
async fn get(c: &Context, installation: &str) -> Result<Option<(VirtualNetwork, Value)>> {
    let what = format!("virtual network {}", vnet_name(installation));
    c.get_ours(
        &c.vnet_path(installation),
        NETWORK_API,
        installation,
        &what,
        None,
    )
    .await
}

fn output(c: &Context, installation: &str) -> Output {
    Output::Network {
        network_id: c.vnet_path(installation),
        subnet_ids: vec![
            c.subnet_path(installation, NODES_SUBNET),
            c.subnet_path(installation, MYSQL_SUBNET),
        ],
    }
}

/// The VNet as it exists: its address space is the node range; a subnet that is
/// missing or different is drift.
pub async fn observe(c: &Context, d: &NetworkSpec) -> Result<Option<Observed<NetworkSpec>>> {
    c.saw_network(d);
    let Some((v, raw)) = get(c, &d.name).await? else {
        return Ok(None);
    };
    let mut actual = d.clone();
    actual.node_cidr = v.properties.address_space.address_prefixes.join(",");
    if is_busy(&raw) {
        let id = Desired::Network(d.clone()).id();
        let crate_watch = crate::arm::watch_id(&c.vnet_path(&d.name), NETWORK_API);
        return Ok(Some(Observed::pending(
            actual,
            c.op(crate_watch, &id, None),
        )));
    }
    let wanted = desired_vnet(c, d, Some(&v))?;
    let mut o = Observed::ready(actual, Some(output(c, &d.name)));
    o.drift = differences(&v, &wanted);
    Ok(Some(o))
}

/// Create the VNet with both subnets, or write it whole again when it differs.
pub async fn ensure(c: &Context, d: &NetworkSpec) -> Result<Progress> {
    c.saw_network(d);
    let id = Desired::Network(d.clone()).id();
    let existing = get(c, &d.name).await?;
    if let Some((_, raw)) = &existing {
        if is_busy(raw) {
            return Ok(c.watch(&id, &c.vnet_path(&d.name), NETWORK_API));
        }
    }
    let current = existing.as_ref().map(|(v, _)| v);
    let wanted = desired_vnet(c, d, current)?;
    if let Some(v) = current {
        let same_space = v.properties.address_space.address_prefixes
            == wanted.properties.address_space.address_prefixes;
        if same_space && differences(v, &wanted).is_empty() {
            return Ok(Progress::Done(Some(output(c, &d.name))));
        }
    }
    let lro = c
        .arm
        .put(&c.vnet_path(&d.name), NETWORK_API, &wanted)
        .await?;
    Ok(c.pending(&id, &lro)
        .unwrap_or(Progress::Done(Some(output(c, &d.name)))))
}

/// Delete the VNet (after the cluster and the MySQL server that use its subnets).
/// Absent is fine; one not tagged ours stays.
pub async fn delete(c: &Context, d: &NetworkSpec) -> Result<Progress> {
    let id = Desired::Network(d.clone()).id();
    let Some((_, raw)) = absent_if_foreign(get(c, &d.name).await)? else {
        return Ok(Progress::Done(None));
    };
    if is_busy(&raw) && crate::arm::provisioning_state(&raw) != Some("Deleting") {
        return Ok(c.watch(&id, &c.vnet_path(&d.name), NETWORK_API));
    }
    let lro = c.arm.delete(&c.vnet_path(&d.name), NETWORK_API).await?;
    Ok(c.pending(&id, &lro).unwrap_or(Progress::Done(None)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gitpod_refarch::spec::{Cloud, ReferenceArchitecture};
    use serde_json::json;

    fn spec() -> NetworkSpec {
        let mut s = ReferenceArchitecture::defaults(Cloud::Azure);
        s.name = "gp".into();
        gitpod_refarch::plan::graph(&s)
            .into_iter()
            .find_map(|n| match n.desired {
                Desired::Network(n) => Some(n),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn the_node_range_is_carved_for_nodes_and_mysql() {
        assert_eq!(
            subnet_ranges("10.2.0.0/16").unwrap(),
            ("10.2.0.0/17".to_string(), "10.2.255.0/24".to_string())
        );
        assert_eq!(
            subnet_ranges("10.9.0.0/23").unwrap(),
            ("10.9.0.0/24".to_string(), "10.9.1.0/24".to_string())
        );
        assert_eq!(
            subnet_ranges("192.168.4.0/24").unwrap(),
            ("192.168.4.0/25".to_string(), "192.168.4.240/28".to_string())
        );
        assert_eq!(
            subnet_ranges("10.0.0.0/8").unwrap(),
            ("10.0.0.0/9".to_string(), "10.255.255.0/24".to_string())
        );
        assert!(subnet_ranges("10.0.0.0/28").is_err());
        assert!(subnet_ranges("fd00::/64").is_err());
    }

    #[test]
    fn the_vnet_is_written_with_both_subnets_and_the_delegation() {
        let c = crate::tests::ctx();
        let body = serde_json::to_value(desired_vnet(&c, &spec(), None).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "location": "northeurope",
                "tags": {"gitpod-installation": "gp"},
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.2.0.0/16"]},
                    "subnets": [
                        {"name": "nodes", "properties": {"addressPrefix": "10.2.0.0/17"}},
                        {"name": "mysql", "properties": {
                            "addressPrefix": "10.2.255.0/24",
                            "delegations": [{"name": "mysql-flexible-server",
                                "properties": {"serviceName": "Microsoft.DBforMySQL/flexibleServers"}}]
                        }}
                    ]
                }
            })
        );
    }

    #[test]
    fn a_rewrite_keeps_what_aks_attached_and_other_subnets() {
        let c = crate::tests::ctx();
        let existing: VirtualNetwork = serde_json::from_value(json!({
            "location": "northeurope",
            "tags": {"gitpod-installation": "gp"},
            "properties": {
                "provisioningState": "Succeeded",
                "addressSpace": {"addressPrefixes": ["10.2.0.0/16"]},
                "subnets": [
                    {"name": "nodes", "properties": {"addressPrefix": "10.2.0.0/17",
                        "routeTable": {"id": "/rt/aks-agentpool"}, "ipConfigurations": [{"id": "x"}],
                        "provisioningState": "Succeeded"}},
                    {"name": "other", "properties": {"addressPrefix": "10.2.128.0/24"}}
                ]
            }
        }))
        .unwrap();
        let wanted = desired_vnet(&c, &spec(), Some(&existing)).unwrap();
        assert_eq!(
            differences(&existing, &wanted),
            vec!["subnet mysql is missing".to_string()]
        );
        let body = serde_json::to_value(&wanted).unwrap();
        let subnets = body["properties"]["subnets"].as_array().unwrap();
        assert_eq!(subnets.len(), 3);
        assert_eq!(
            subnets[0]["properties"]["routeTable"]["id"],
            "/rt/aks-agentpool"
        );
        assert!(subnets[0]["properties"].get("ipConfigurations").is_none());
        assert_eq!(subnets[2]["name"], "other");
        // The same VNet with both subnets differs in nothing.
        let round: VirtualNetwork =
            serde_json::from_value(serde_json::to_value(&wanted).unwrap()).unwrap();
        assert!(differences(&round, &wanted).is_empty());
    }
}
