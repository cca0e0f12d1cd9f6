//! The VPC: private and public subnets in each zone, an internet gateway, NAT (one, or
//! one per zone), route tables, and the database security group (MySQL from the VPC
//! only). Every piece carries `Name=<installation>-<role>` and the installation tag
//! and is looked up by them before it is created.
//!
//! Subnets are carved from `nodeCidr` in eighths: private subnets take eighths 0..3,
//! public ones 4..7 (a /16 gives /19 subnets).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, Filter, IpPermission, IpRange, NatGatewayState,
    ResourceType, Tag, TagSpecification,
};
use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Observed, Operation, Progress};
use gitpod_refarch::resource::{NetworkSpec, Output, ResourceId, ResourceKind};
use gitpod_refarch::{Error, ErrorKind, Result};
use ipnet::Ipv4Net;

use crate::context::{tags_of, Context};
use crate::error::{found, Ctx};

/// What the network consists of, as found.
#[derive(Debug, Clone, Default)]
pub struct Net {
    /// VPC id.
    pub vpc_id: String,
    /// VPC CIDR.
    pub cidr: String,
    /// (zone, subnet id) of private subnets.
    pub private: Vec<(String, String)>,
    /// (zone, subnet id) of public subnets.
    pub public: Vec<(String, String)>,
    /// The database security group.
    pub db_security_group: Option<String>,
}

fn f(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag_spec(rt: ResourceType, tags: &BTreeMap<String, String>, name: &str) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(rt);
    for (k, v) in tags {
        b = b.tags(Tag::builder().key(k).value(v).build());
    }
    b.tags(Tag::builder().key("Name").value(name).build())
        .build()
}

fn name_of(tags: &[Tag]) -> Option<&str> {
    tags.iter()
        .find(|t| t.key() == Some("Name"))
        .and_then(|t| t.value())
}

fn yes() -> AttributeBooleanValue {
    AttributeBooleanValue::builder().value(true).build()
}

/// The security group name of the database.
pub fn db_security_group_name(name: &str) -> String {
    format!("{name}-db")
}

/// Private and public CIDRs per zone index.
pub fn subnet_cidrs(node_cidr: &str, zones: usize) -> Result<Vec<(Ipv4Net, Ipv4Net)>> {
    let net: Ipv4Net = node_cidr
        .parse()
        .map_err(|_| Error::invalid_input(format!("'{node_cidr}' is not an IPv4 CIDR")))?;
    if zones > 4 {
        return Err(Error::invalid_input("at most 4 zones"));
    }
    let eighths: Vec<Ipv4Net> = net
        .subnets(net.prefix_len().saturating_add(3).min(28))
        .map_err(|_| Error::invalid_input(format!("'{node_cidr}' is too small to split per zone")))?
        .collect();
    if eighths.len() < 8 {
        return Err(Error::invalid_input(format!(
            "'{node_cidr}' is too small to split per zone"
        )));
    }
    Ok((0..zones).map(|i| (eighths[i], eighths[4 + i])).collect())
}

async fn find_vpc(c: &Context, name: &str) -> Result<Option<(String, String)>> {
    let out = c
        .clients
        .ec2
        .describe_vpcs()
        .filters(f(&format!("tag:{INSTALLATION_LABEL}"), name))
        .filters(f("tag:Name", &format!("{name}-vpc")))
        .send()
        .await
        .ctx(format!("looking up the VPC of {name}"))?;
    match out.vpcs() {
        [] => Ok(None),
        [v] => Ok(Some((
            v.vpc_id().unwrap_or_default().to_string(),
            v.cidr_block().unwrap_or_default().to_string(),
        ))),
        many => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{} VPCs are tagged for installation {name} ({}); remove the extra ones",
                many.len(),
                many.iter()
                    .filter_map(|v| v.vpc_id())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Find the network of an installation.
pub async fn lookup(c: &Context, name: &str) -> Result<Option<Net>> {
    let Some((vpc_id, cidr)) = find_vpc(c, name).await? else {
        return Ok(None);
    };
    let subnets = c
        .clients
        .ec2
        .describe_subnets()
        .filters(f("vpc-id", &vpc_id))
        .send()
        .await
        .ctx(format!("listing subnets of {vpc_id}"))?;
    let mut net = Net {
        vpc_id: vpc_id.clone(),
        cidr,
        ..Default::default()
    };
    for s in subnets.subnets() {
        let (Some(n), Some(id), Some(az)) =
            (name_of(s.tags()), s.subnet_id(), s.availability_zone())
        else {
            continue;
        };
        if n.starts_with(&format!("{name}-private-")) {
            net.private.push((az.to_string(), id.to_string()));
        } else if n.starts_with(&format!("{name}-public-")) {
            net.public.push((az.to_string(), id.to_string()));
        }
    }
    net.private.sort();
    net.public.sort();
    let sgs = c
        .clients
        .ec2
        .describe_security_groups()
        .filters(f("vpc-id", &vpc_id))
        .filters(f("group-name", &db_security_group_name(name)))
        .send()
        .await
        .ctx(format!("looking up the database security group of {name}"))?;
    net.db_security_group = sgs
        .security_groups()
        .first()
        .and_then(|g| g.group_id())
        .map(str::to_string);
    Ok(Some(net))
}

async fn nat_states(c: &Context, vpc_id: &str) -> Result<Vec<(String, String, NatGatewayState)>> {
    let out = c
        .clients
        .ec2
        .describe_nat_gateways()
        .filter(f("vpc-id", vpc_id))
        .send()
        .await
        .ctx(format!("listing NAT gateways of {vpc_id}"))?;
    Ok(out
        .nat_gateways()
        .iter()
        .filter_map(|n| {
            let state = n.state()?.clone();
            let name = name_of(n.tags()).unwrap_or_default().to_string();
            Some((name, n.nat_gateway_id()?.to_string(), state))
        })
        .filter(|(_, _, s)| !matches!(s, NatGatewayState::Deleted | NatGatewayState::Failed))
        .collect())
}

fn nat_zones(d: &NetworkSpec) -> Vec<String> {
    if d.highly_available_nat {
        d.zones.clone()
    } else {
        d.zones.iter().take(1).cloned().collect()
    }
}

/// What exists, in the spec's shape.
pub async fn observe(c: &Context, d: &NetworkSpec) -> Result<Option<Observed<NetworkSpec>>> {
    let Some(net) = lookup(c, &d.name).await? else {
        return Ok(None);
    };
    let nats = nat_states(c, &net.vpc_id).await?;
    let id = ResourceId::new(ResourceKind::Network, d.name.clone());
    let zones_with = |v: &[(String, String)]| v.iter().map(|(z, _)| z.clone()).collect::<Vec<_>>();
    let mut actual = d.clone();
    actual.region = c.region.clone();
    actual.node_cidr = net.cidr.clone();
    let (priv_z, pub_z) = (zones_with(&net.private), zones_with(&net.public));
    // Subnets only in desired zones: a network to complete, not to replace.
    let mut drift = Vec::new();
    let extra = priv_z
        .iter()
        .chain(pub_z.iter())
        .any(|z| !d.zones.contains(z));
    if extra {
        actual.zones = priv_z;
    } else {
        actual.zones = d.zones.clone();
        if !d
            .zones
            .iter()
            .all(|z| priv_z.contains(z) && pub_z.contains(z))
        {
            let missing: Vec<&String> = d
                .zones
                .iter()
                .filter(|z| !(priv_z.contains(z) && pub_z.contains(z)))
                .collect();
            drift.push(format!(
                "subnets are missing in {}",
                missing
                    .iter()
                    .map(|z| z.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    actual.highly_available_nat = nats.len() > 1;
    let wanted_nats = nat_zones(d).len();
    if nats.len() < wanted_nats {
        drift.push(format!(
            "{} of {wanted_nats} NAT gateway(s) exist",
            nats.len()
        ));
    }
    if net.db_security_group.is_none() {
        drift.push(format!(
            "the database security group {} is missing",
            db_security_group_name(&d.name)
        ));
    }
    if nats.iter().any(|(_, _, s)| *s == NatGatewayState::Pending) {
        return Ok(Some(Observed::pending(
            actual,
            c.op(format!("nat:{}", net.vpc_id), &id),
        )));
    }
    let output = output_of(&net);
    let mut observed = Observed::ready(actual, Some(output));
    observed.drift = drift;
    Ok(Some(observed))
}

fn output_of(net: &Net) -> Output {
    Output::Network {
        network_id: net.vpc_id.clone(),
        subnet_ids: net
            .private
            .iter()
            .chain(net.public.iter())
            .map(|(_, s)| s.clone())
            .collect(),
    }
}

/// Create or complete the network; returns `Pending` while a NAT gateway starts.
///
/// Each part is found before it is created, so a call after a partial run (or after
/// the NAT gateways became available) completes only what is missing.
pub async fn ensure(c: &Context, d: &NetworkSpec) -> Result<Progress> {
    let name = d.name.as_str();
    let tags = tags_of(&d.labels, name);
    if d.zones.len() < 2 {
        return Err(Error::invalid_input(
            "EKS needs subnets in at least two zones",
        ));
    }
    let vpc_id = ensure_vpc(c, d, &tags).await?;
    ensure_vpc_dns(c, &vpc_id).await?;
    let (private, public) = ensure_subnets(c, d, &tags, &vpc_id).await?;
    let igw_id = ensure_internet_gateway(c, name, &tags, &vpc_id).await?;
    ensure_route_table(
        c,
        &vpc_id,
        &format!("{name}-public"),
        &tags,
        Target::Gateway(&igw_id),
        public.values(),
    )
    .await?;
    let nat_by_zone = ensure_nat_gateways(c, d, &tags, &vpc_id, &public).await?;
    let id = ResourceId::new(ResourceKind::Network, name);
    let states = nat_states(c, &vpc_id).await?;
    if states
        .iter()
        .any(|(_, _, s)| *s == NatGatewayState::Pending)
    {
        return Ok(Progress::Pending(c.op(format!("nat:{vpc_id}"), &id)));
    }
    route_private_subnets(c, name, &tags, &vpc_id, &private, &nat_by_zone).await?;
    remove_unwanted_nat_gateways(c, d, &vpc_id).await?;
    let sg_id = ensure_db_security_group(c, d, &tags, &vpc_id).await?;
    let net = Net {
        vpc_id,
        cidr: d.node_cidr.clone(),
        private: private.into_iter().collect(),
        public: public.into_iter().collect(),
        db_security_group: Some(sg_id),
    };
    Ok(Progress::Done(Some(output_of(&net))))
}

type Tags = BTreeMap<String, String>;

/// The VPC, found by name or created; a VPC with another CIDR is refused.
async fn ensure_vpc(c: &Context, d: &NetworkSpec, tags: &Tags) -> Result<String> {
    let ec2 = &c.clients.ec2;
    let name = d.name.as_str();
    let vpc_id = match find_vpc(c, name).await? {
        Some((id, cidr)) => {
            if cidr != d.node_cidr {
                return Err(Error::invalid_input(format!(
                    "the VPC of {name} has CIDR {cidr}, the spec asks for {}: the network must be replaced",
                    d.node_cidr
                )));
            }
            id
        }
        None => {
            let out = ec2
                .create_vpc()
                .cidr_block(&d.node_cidr)
                .tag_specifications(tag_spec(ResourceType::Vpc, tags, &format!("{name}-vpc")))
                .send()
                .await
                .ctx(format!("creating the VPC of {name}"))?;
            let id = out
                .vpc()
                .and_then(|v| v.vpc_id())
                .ok_or_else(|| Error::internal("CreateVpc returned no id"))?
                .to_string();
            id
        }
    };
    Ok(vpc_id)
}

/// A private and a public subnet in each zone: `(private, public)` by zone.
async fn ensure_subnets(
    c: &Context,
    d: &NetworkSpec,
    tags: &Tags,
    vpc_id: &str,
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>)> {
    let ec2 = &c.clients.ec2;
    let name = d.name.as_str();
    let cidrs = subnet_cidrs(&d.node_cidr, d.zones.len())?;
    let existing = lookup(c, name).await?.unwrap_or_default();
    let mut private = BTreeMap::new();
    let mut public = BTreeMap::new();
    for (i, zone) in d.zones.iter().enumerate() {
        let (pcidr, ucidr) = cidrs[i];
        for (kind, cidr, out, have) in [
            ("private", pcidr, &mut private, &existing.private),
            ("public", ucidr, &mut public, &existing.public),
        ] {
            let id = match have.iter().find(|(z, _)| z == zone) {
                Some((_, id)) => id.clone(),
                None => {
                    let mut t = tags.clone();
                    t.insert(format!("kubernetes.io/cluster/{name}"), "shared".into());
                    let role = if kind == "public" {
                        "kubernetes.io/role/elb"
                    } else {
                        "kubernetes.io/role/internal-elb"
                    };
                    t.insert(role.into(), "1".into());
                    let sn = ec2
                        .create_subnet()
                        .vpc_id(vpc_id)
                        .cidr_block(cidr.to_string())
                        .availability_zone(zone)
                        .tag_specifications(tag_spec(
                            ResourceType::Subnet,
                            &t,
                            &format!("{name}-{kind}-{zone}"),
                        ))
                        .send()
                        .await
                        .ctx(format!("creating the {kind} subnet of {name} in {zone}"))?;
                    let id = sn
                        .subnet()
                        .and_then(|s| s.subnet_id())
                        .ok_or_else(|| Error::internal("CreateSubnet returned no id"))?
                        .to_string();
                    if kind == "public" {
                        ec2.modify_subnet_attribute()
                            .subnet_id(&id)
                            .map_public_ip_on_launch(yes())
                            .send()
                            .await
                            .ctx("enabling public IPs")?;
                    }
                    id
                }
            };
            out.insert(zone.clone(), id);
        }
    }
    Ok((private, public))
}

/// The internet gateway, found by name or created, attached to the VPC.
async fn ensure_internet_gateway(
    c: &Context,
    name: &str,
    tags: &Tags,
    vpc_id: &str,
) -> Result<String> {
    let ec2 = &c.clients.ec2;
    let igws = ec2
        .describe_internet_gateways()
        .filters(f("tag:Name", &format!("{name}-igw")))
        .filters(f(&format!("tag:{INSTALLATION_LABEL}"), name))
        .send()
        .await
        .ctx("looking up the internet gateway")?;
    let igw_id = match igws.internet_gateways().first() {
        Some(g) => {
            let id = g.internet_gateway_id().unwrap_or_default().to_string();
            if !g.attachments().iter().any(|a| a.vpc_id() == Some(vpc_id)) {
                ec2.attach_internet_gateway()
                    .internet_gateway_id(&id)
                    .vpc_id(vpc_id)
                    .send()
                    .await
                    .ctx("attaching the internet gateway")?;
            }
            id
        }
        None => {
            let g = ec2
                .create_internet_gateway()
                .tag_specifications(tag_spec(
                    ResourceType::InternetGateway,
                    tags,
                    &format!("{name}-igw"),
                ))
                .send()
                .await
                .ctx("creating the internet gateway")?;
            let id = g
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .ok_or_else(|| Error::internal("no gateway id"))?
                .to_string();
            ec2.attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(vpc_id)
                .send()
                .await
                .ctx("attaching the internet gateway")?;
            id
        }
    };
    Ok(igw_id)
}

/// The NAT gateways (one, or one per zone) with their elastic IPs, in the public
/// subnets: their ids by zone. A new one starts `pending`.
async fn ensure_nat_gateways(
    c: &Context,
    d: &NetworkSpec,
    tags: &Tags,
    vpc_id: &str,
    public: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let ec2 = &c.clients.ec2;
    let name = d.name.as_str();
    let nats = nat_states(c, vpc_id).await?;
    let mut nat_by_zone = BTreeMap::new();
    for zone in nat_zones(d) {
        let nat_name = format!("{name}-nat-{zone}");
        if let Some((_, id, _)) = nats.iter().find(|(n, _, _)| *n == nat_name) {
            nat_by_zone.insert(zone.clone(), id.clone());
            continue;
        }
        let addrs = ec2
            .describe_addresses()
            .filters(f("tag:Name", &nat_name))
            .filters(f(&format!("tag:{INSTALLATION_LABEL}"), name))
            .send()
            .await
            .ctx("looking up the NAT address")?;
        let alloc = match addrs
            .addresses()
            .iter()
            .find(|a| a.association_id().is_none())
            .or(addrs.addresses().first())
        {
            Some(a) => a.allocation_id().unwrap_or_default().to_string(),
            None => ec2
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(tag_spec(ResourceType::ElasticIp, tags, &nat_name))
                .send()
                .await
                .ctx("allocating the NAT address")?
                .allocation_id()
                .unwrap_or_default()
                .to_string(),
        };
        let subnet = public
            .get(&zone)
            .ok_or_else(|| Error::internal("no public subnet for the NAT"))?;
        let nat = ec2
            .create_nat_gateway()
            .subnet_id(subnet)
            .allocation_id(&alloc)
            .tag_specifications(tag_spec(ResourceType::Natgateway, tags, &nat_name))
            .send()
            .await
            .ctx(format!("creating NAT gateway {nat_name}"))?;
        let id = nat
            .nat_gateway()
            .and_then(|n| n.nat_gateway_id())
            .ok_or_else(|| Error::internal("no NAT id"))?
            .to_string();
        nat_by_zone.insert(zone.clone(), id);
    }
    Ok(nat_by_zone)
}

/// Each private subnet's route table, through its zone's NAT (or the only one).
async fn route_private_subnets(
    c: &Context,
    name: &str,
    tags: &Tags,
    vpc_id: &str,
    private: &BTreeMap<String, String>,
    nat_by_zone: &BTreeMap<String, String>,
) -> Result<()> {
    let first_nat = nat_by_zone
        .values()
        .next()
        .cloned()
        .ok_or_else(|| Error::internal("no NAT gateway"))?;
    for (zone, subnet) in private {
        let nat = nat_by_zone.get(zone).unwrap_or(&first_nat);
        ensure_route_table(
            c,
            vpc_id,
            &format!("{name}-private-{zone}"),
            tags,
            Target::Nat(nat),
            std::iter::once(subnet),
        )
        .await?;
    }
    Ok(())
}

/// NAT gateways no longer wanted (highlyAvailableNat turned off), now unrouted.
async fn remove_unwanted_nat_gateways(c: &Context, d: &NetworkSpec, vpc_id: &str) -> Result<()> {
    let ec2 = &c.clients.ec2;
    let name = d.name.as_str();
    let wanted: Vec<String> = nat_zones(d)
        .iter()
        .map(|z| format!("{name}-nat-{z}"))
        .collect();
    for (nat_name, nat_id, _) in nat_states(c, vpc_id).await? {
        if !wanted.contains(&nat_name) && nat_name.starts_with(&format!("{name}-nat-")) {
            ec2.delete_nat_gateway()
                .nat_gateway_id(&nat_id)
                .send()
                .await
                .ctx(format!("deleting NAT gateway {nat_name}"))?;
        }
    }
    Ok(())
}

/// The database security group: MySQL from inside the VPC only.
async fn ensure_db_security_group(
    c: &Context,
    d: &NetworkSpec,
    tags: &Tags,
    vpc_id: &str,
) -> Result<String> {
    let ec2 = &c.clients.ec2;
    let name = d.name.as_str();
    let sg_name = db_security_group_name(name);
    let sgs = ec2
        .describe_security_groups()
        .filters(f("vpc-id", vpc_id))
        .filters(f("group-name", &sg_name))
        .send()
        .await
        .ctx("looking up the database security group")?;
    let (sg_id, has_rule) = match sgs.security_groups().first() {
        Some(g) => (
            g.group_id().unwrap_or_default().to_string(),
            g.ip_permissions().iter().any(|p| {
                p.from_port() == Some(3306)
                    && p.ip_ranges()
                        .iter()
                        .any(|r| r.cidr_ip() == Some(d.node_cidr.as_str()))
            }),
        ),
        None => {
            let g = ec2
                .create_security_group()
                .group_name(&sg_name)
                .description(format!(
                    "MySQL for Gitpod installation {name}, from the VPC only"
                ))
                .vpc_id(vpc_id)
                .tag_specifications(tag_spec(ResourceType::SecurityGroup, tags, &sg_name))
                .send()
                .await
                .ctx("creating the database security group")?;
            (g.group_id().unwrap_or_default().to_string(), false)
        }
    };
    if !has_rule {
        ec2.authorize_security_group_ingress()
            .group_id(&sg_id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(3306)
                    .to_port(3306)
                    .ip_ranges(
                        IpRange::builder()
                            .cidr_ip(&d.node_cidr)
                            .description("the installation's VPC")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .ctx("allowing MySQL from the VPC")?;
    }
    Ok(sg_id)
}

/// DNS support and host names (EKS needs both), set when not already on.
async fn ensure_vpc_dns(c: &Context, vpc_id: &str) -> Result<()> {
    use aws_sdk_ec2::types::VpcAttributeName;
    let ec2 = &c.clients.ec2;
    for attr in [
        VpcAttributeName::EnableDnsSupport,
        VpcAttributeName::EnableDnsHostnames,
    ] {
        let cur = ec2
            .describe_vpc_attribute()
            .vpc_id(vpc_id)
            .attribute(attr.clone())
            .send()
            .await
            .ctx("reading VPC DNS attributes")?;
        let on = match attr {
            VpcAttributeName::EnableDnsSupport => cur.enable_dns_support().and_then(|v| v.value()),
            _ => cur.enable_dns_hostnames().and_then(|v| v.value()),
        };
        if on != Some(true) {
            let req = ec2.modify_vpc_attribute().vpc_id(vpc_id);
            let req = match attr {
                VpcAttributeName::EnableDnsSupport => req.enable_dns_support(yes()),
                _ => req.enable_dns_hostnames(yes()),
            };
            req.send().await.ctx("enabling VPC DNS")?;
        }
    }
    Ok(())
}

enum Target<'a> {
    Gateway(&'a str),
    Nat(&'a str),
}

async fn ensure_route_table<'s>(
    c: &Context,
    vpc_id: &str,
    rt_name: &str,
    tags: &BTreeMap<String, String>,
    target: Target<'_>,
    subnets: impl Iterator<Item = &'s String>,
) -> Result<()> {
    let ec2 = &c.clients.ec2;
    let found_rts = ec2
        .describe_route_tables()
        .filters(f("vpc-id", vpc_id))
        .filters(f("tag:Name", rt_name))
        .send()
        .await
        .ctx(format!("looking up route table {rt_name}"))?;
    let (rt_id, routes, assocs) = match found_rts.route_tables().first() {
        Some(rt) => (
            rt.route_table_id().unwrap_or_default().to_string(),
            rt.routes().to_vec(),
            rt.associations()
                .iter()
                .filter_map(|a| a.subnet_id().map(str::to_string))
                .collect::<Vec<_>>(),
        ),
        None => {
            let rt = ec2
                .create_route_table()
                .vpc_id(vpc_id)
                .tag_specifications(tag_spec(ResourceType::RouteTable, tags, rt_name))
                .send()
                .await
                .ctx(format!("creating route table {rt_name}"))?;
            let id = rt
                .route_table()
                .and_then(|r| r.route_table_id())
                .ok_or_else(|| Error::internal("no route table id"))?
                .to_string();
            (id, vec![], vec![])
        }
    };
    let default = routes
        .iter()
        .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
    let points_right = default.is_some_and(|r| match target {
        Target::Gateway(g) => r.gateway_id() == Some(g),
        Target::Nat(n) => r.nat_gateway_id() == Some(n),
    });
    if default.is_some() && !points_right {
        // A NAT was added, removed or replaced: point the route at the right one.
        let req = ec2
            .replace_route()
            .route_table_id(&rt_id)
            .destination_cidr_block("0.0.0.0/0");
        let req = match target {
            Target::Gateway(g) => req.gateway_id(g),
            Target::Nat(n) => req.nat_gateway_id(n),
        };
        req.send()
            .await
            .ctx(format!("re-pointing the default route of {rt_name}"))?;
    } else if default.is_none() {
        let req = ec2
            .create_route()
            .route_table_id(&rt_id)
            .destination_cidr_block("0.0.0.0/0");
        let req = match target {
            Target::Gateway(g) => req.gateway_id(g),
            Target::Nat(n) => req.nat_gateway_id(n),
        };
        req.send()
            .await
            .ctx(format!("adding the default route of {rt_name}"))?;
    }
    for s in subnets {
        if !assocs.contains(s) {
            ec2.associate_route_table()
                .route_table_id(&rt_id)
                .subnet_id(s)
                .send()
                .await
                .ctx(format!("associating {rt_name} with {s}"))?;
        }
    }
    Ok(())
}

/// Poll NAT gateways starting (`nat:`) or going away (`nat-delete:`).
pub async fn poll(c: &Context, op: &Operation) -> Result<Progress> {
    let (deleting, vpc_id) = match op.id.split_once(':') {
        Some(("nat", v)) => (false, v),
        Some(("nat-delete", v)) => (true, v),
        _ => return Ok(Progress::Done(None)),
    };
    let states = nat_states(c, vpc_id).await?;
    let busy = if deleting {
        states
            .iter()
            .any(|(_, _, s)| *s == NatGatewayState::Deleting)
    } else {
        states
            .iter()
            .any(|(_, _, s)| *s == NatGatewayState::Pending)
    };
    if busy {
        Ok(Progress::Pending(c.op(op.id.clone(), &op.resource)))
    } else {
        Ok(Progress::Done(None))
    }
}

/// Delete everything, dependents first; `Pending` while NAT gateways go away.
pub async fn delete(c: &Context, name: &str) -> Result<Progress> {
    let ec2 = &c.clients.ec2;
    let Some(net) = lookup(c, name).await? else {
        return Ok(Progress::Done(None));
    };
    let vpc = net.vpc_id.as_str();
    let id = ResourceId::new(ResourceKind::Network, name);
    let nats = nat_states(c, vpc).await?;
    let mut waiting = false;
    for (_, nat, state) in &nats {
        match state {
            NatGatewayState::Deleting => waiting = true,
            _ => {
                ec2.delete_nat_gateway()
                    .nat_gateway_id(nat)
                    .send()
                    .await
                    .ctx(format!("deleting NAT gateway {nat}"))?;
                waiting = true;
            }
        }
    }
    if waiting {
        // Moto deletes at once; AWS takes a minute. Either way, check again.
        let again = nat_states(c, vpc).await?;
        if again.iter().any(|(_, _, s)| {
            matches!(
                s,
                NatGatewayState::Deleting | NatGatewayState::Available | NatGatewayState::Pending
            )
        }) {
            return Ok(Progress::Pending(c.op(format!("nat-delete:{vpc}"), &id)));
        }
    }
    let addrs = ec2
        .describe_addresses()
        .filters(f(&format!("tag:{INSTALLATION_LABEL}"), name))
        .send()
        .await
        .ctx("listing the installation's addresses")?;
    for a in addrs.addresses() {
        if let Some(alloc) = a.allocation_id() {
            found(
                ec2.release_address()
                    .allocation_id(alloc)
                    .send()
                    .await
                    .ctx(format!("releasing address {alloc}")),
            )?;
        }
    }
    let igws = ec2
        .describe_internet_gateways()
        .filters(f("attachment.vpc-id", vpc))
        .send()
        .await
        .ctx("listing internet gateways")?;
    for g in igws.internet_gateways() {
        if let Some(gid) = g.internet_gateway_id() {
            found(
                ec2.detach_internet_gateway()
                    .internet_gateway_id(gid)
                    .vpc_id(vpc)
                    .send()
                    .await
                    .ctx("detaching the internet gateway"),
            )?;
            found(
                ec2.delete_internet_gateway()
                    .internet_gateway_id(gid)
                    .send()
                    .await
                    .ctx("deleting the internet gateway"),
            )?;
        }
    }
    // A gateway created but never attached (a run stopped in between).
    let loose = ec2
        .describe_internet_gateways()
        .filters(f("tag:Name", &format!("{name}-igw")))
        .filters(f(&format!("tag:{INSTALLATION_LABEL}"), name))
        .send()
        .await
        .ctx("listing internet gateways")?;
    for g in loose.internet_gateways() {
        if let Some(gid) = g.internet_gateway_id() {
            found(
                ec2.delete_internet_gateway()
                    .internet_gateway_id(gid)
                    .send()
                    .await
                    .ctx("deleting the internet gateway"),
            )?;
        }
    }
    let sgs = ec2
        .describe_security_groups()
        .filters(f("vpc-id", vpc))
        .send()
        .await
        .ctx("listing security groups")?;
    for g in sgs.security_groups() {
        if g.group_name() == Some("default") {
            continue;
        }
        if let Some(gid) = g.group_id() {
            found(
                ec2.delete_security_group()
                    .group_id(gid)
                    .send()
                    .await
                    .ctx(format!("deleting security group {gid}")),
            )?;
        }
    }
    let rts = ec2
        .describe_route_tables()
        .filters(f("vpc-id", vpc))
        .send()
        .await
        .ctx("listing route tables")?;
    for rt in rts.route_tables() {
        if rt.associations().iter().any(|a| a.main() == Some(true)) {
            continue;
        }
        for a in rt.associations() {
            if let Some(aid) = a.route_table_association_id() {
                found(
                    ec2.disassociate_route_table()
                        .association_id(aid)
                        .send()
                        .await
                        .ctx("disassociating a route table"),
                )?;
            }
        }
        if let Some(rid) = rt.route_table_id() {
            found(
                ec2.delete_route_table()
                    .route_table_id(rid)
                    .send()
                    .await
                    .ctx(format!("deleting route table {rid}")),
            )?;
        }
    }
    for (_, s) in net.private.iter().chain(net.public.iter()) {
        found(
            ec2.delete_subnet()
                .subnet_id(s)
                .send()
                .await
                .ctx(format!("deleting subnet {s}")),
        )?;
    }
    found(
        ec2.delete_vpc()
            .vpc_id(vpc)
            .send()
            .await
            .ctx(format!("deleting VPC {vpc}")),
    )?;
    Ok(Progress::Done(None))
}

#[cfg(test)]
mod tests {
    #[test]
    fn subnets_are_carved_per_zone() {
        let s = super::subnet_cidrs("10.100.0.0/16", 2).unwrap();
        assert_eq!(s[0].0.to_string(), "10.100.0.0/19");
        assert_eq!(s[1].0.to_string(), "10.100.32.0/19");
        assert_eq!(s[0].1.to_string(), "10.100.128.0/19");
        assert_eq!(s[1].1.to_string(), "10.100.160.0/19");
        assert!(super::subnet_cidrs("10.0.0.0/16", 5).is_err());
    }
}
