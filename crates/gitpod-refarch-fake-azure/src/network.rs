//! Microsoft.Network virtualNetworks and subnets (2025-05-01).
//!
//! Subnets are stored as their own resources (`{vnet}/subnets/{name}`) and inlined in
//! the VNet's GET. A VNet PUT replaces the subnet list: omitted subnets are deleted,
//! and refused with 400 `InUseSubnetCannotBeDeleted` when an AKS pool
//! (`vnetSubnetID`) or a MySQL server (`delegatedSubnetResourceId`) uses them. One
//! operation at a time per VNet (409 `AnotherOperationInProgress`). Writes answer
//! `Azure-AsyncOperation`; deletes answer both LRO headers.
//!
//! Invented codes: `InvalidAddressPrefixFormat` for an unparsable CIDR.

use std::time::Duration;

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::error::{ArmError, ArmResult};
use crate::lro::{self, OpResult, Style};
use crate::resources::{envelope, location};
use crate::routes::Addr;
use crate::state::{s, Effect, State};
use crate::{Reply, Req};

const VNET_TYPE: &str = "Microsoft.Network/virtualNetworks";
const SUBNET_TYPE: &str = "Microsoft.Network/virtualNetworks/subnets";

/// Ids of the resources using a subnet (AKS pools, MySQL servers).
pub(crate) fn subnet_users(st: &State, subnet_id: &str) -> Vec<String> {
    let want = subnet_id.to_ascii_lowercase();
    st.res
        .values()
        .filter(|v| {
            let p = &v["properties"];
            [
                s(p, "vnetSubnetID"),
                s(p, "podSubnetID"),
                crate::state::ptr(p, "/network/delegatedSubnetResourceId"),
            ]
            .iter()
            .any(|x| !x.is_empty() && x.to_ascii_lowercase() == want)
        })
        .map(|v| s(v, "id").to_string())
        .collect()
}

fn in_use(subnet_name: &str, users: &[String]) -> ArmError {
    ArmError::bad(
        "InUseSubnetCannotBeDeleted",
        format!("Subnet {subnet_name} is in use by {} and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet. See aka.ms/deletesubnet.", users.join(", ")),
    )
}

/// A VNet as GET answers it (subnets inlined).
pub(crate) fn render_vnet(st: &State, id: &str) -> Option<Value> {
    let mut v = st.get(id)?.clone();
    v["properties"]["subnets"] = Value::Array(st.children(id, "subnets"));
    Some(v)
}

fn etag(st: &mut State) -> String {
    format!("W/\"{}\"", st.uuid())
}

fn parse_net(p: &str) -> Result<IpNet, ArmError> {
    let net: IpNet = p.parse().map_err(|_| {
        ArmError::bad(
            "InvalidAddressPrefixFormat",
            format!("Address prefix {p} is not in valid CIDR format."),
        )
    })?;
    if net.trunc() != net {
        return Err(ArmError::bad(
            "InvalidCIDRNotation",
            format!("The address prefix {p} in resource has an invalid CIDR notation. For the given prefix length, the address prefix should be {}.", net.trunc()),
        ));
    }
    Ok(net)
}

fn subnet_prefixes(props: &Value) -> Vec<String> {
    let mut out: Vec<String> = props
        .get("addressPrefixes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(p) = props.get("addressPrefix").and_then(Value::as_str) {
        out.push(p.to_string());
    }
    out
}

/// Validate one subnet body against the VNet's address space and its siblings
/// (name, nets); returns the stored subnet.
fn build_subnet(
    st: &mut State,
    vnet_id: &str,
    name: &str,
    body: &Value,
    space: &[IpNet],
    siblings: &[(String, Vec<IpNet>)],
) -> ArmResult<Value> {
    let props = body.get("properties").cloned().unwrap_or(json!({}));
    let prefixes = subnet_prefixes(&props);
    if prefixes.is_empty() {
        return Err(ArmError::bad(
            "NoAddressPrefixOrPoolProvided",
            format!("Subnet {name}: no address prefix or IPAM pool was provided."),
        ));
    }
    for p in &prefixes {
        let net = parse_net(p)?;
        if !space.iter().any(|sp| sp.contains(&net)) {
            return Err(ArmError::bad(
                "NetcfgSubnetRangeOutsideVnet",
                format!("Subnet '{name}' is not valid because its IP address range is outside the IP address range of virtual network '{}'.", vnet_id.rsplit('/').next().unwrap_or("")),
            ));
        }
        for (other, nets) in siblings {
            if other.eq_ignore_ascii_case(name) {
                continue;
            }
            if nets.iter().any(|o| o.contains(&net) || net.contains(o)) {
                return Err(ArmError::bad(
                    "NetcfgSubnetRangesOverlap",
                    format!("Subnet '{name}' is not valid because its IP address range overlaps with that of an existing subnet '{other}' in virtual network."),
                ));
            }
        }
    }
    let id = format!("{vnet_id}/subnets/{name}");
    let mut delegations = Vec::new();
    if let Some(list) = props.get("delegations").and_then(Value::as_array) {
        for d in list {
            let service = crate::state::ptr(d, "/properties/serviceName");
            if service.is_empty() {
                return Err(ArmError::bad(
                    "InvalidServiceNameOnDelegation",
                    format!("Subnet {name} has a delegation without a service name."),
                ));
            }
            let dname = match s(d, "name") {
                "" => service.replace('/', "."),
                n => n.to_string(),
            };
            delegations.push(json!({
                "id": format!("{id}/delegations/{dname}"),
                "name": dname,
                "type": "Microsoft.Network/virtualNetworks/subnets/delegations",
                "etag": etag(st),
                "properties": {
                    "serviceName": service,
                    "actions": ["Microsoft.Network/virtualNetworks/subnets/join/action"],
                    "provisioningState": "Succeeded",
                },
            }));
        }
    }
    let mut p = props.clone();
    p["delegations"] = Value::Array(delegations);
    p["provisioningState"] = json!("Updating");
    if p.get("privateEndpointNetworkPolicies").is_none() {
        p["privateEndpointNetworkPolicies"] = json!("Disabled");
    }
    if p.get("privateLinkServiceNetworkPolicies").is_none() {
        p["privateLinkServiceNetworkPolicies"] = json!("Enabled");
    }
    Ok(json!({"id": id, "name": name, "type": SUBNET_TYPE, "etag": etag(st), "properties": p}))
}

fn nets_of(subnet: &Value) -> Vec<IpNet> {
    subnet_prefixes(&subnet["properties"])
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn check_lock(st: &State, vnet_id: &str) -> Result<(), ArmError> {
    if let Some(op) = lro::locked(st, vnet_id) {
        return Err(ArmError::conflict(
            "AnotherOperationInProgress",
            format!("Another operation on this or dependent resource is in progress. To retrieve status of the operation use uri: {}/subscriptions/{}/providers/Microsoft.Network/locations/{}/operations/{}?api-version=2025-05-01.", st.base_url, op.sub, op.location, op.id),
        ));
    }
    Ok(())
}

fn space_of(props: &Value) -> ArmResult<Vec<IpNet>> {
    let list = props
        .pointer("/addressSpace/addressPrefixes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        return Err(ArmError::bad(
            "InvalidRequestFormat",
            "Cannot parse the request: properties.addressSpace.addressPrefixes is required.",
        ));
    }
    list.iter()
        .map(|p| parse_net(p.as_str().unwrap_or("")))
        .collect()
}

pub(crate) fn handle(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let types = a.types();
    match (types.len(), a.trailing().is_some()) {
        (1, true) => {
            // List VNets in the resource group.
            let prefix = format!("{}/providers/Microsoft.Network/virtualNetworks", a.rg_id());
            let ids: Vec<String> = st
                .find(|k, _| {
                    k.strip_prefix(&format!("{}/", prefix.to_ascii_lowercase()))
                        .is_some_and(|r| !r.contains('/'))
                })
                .iter()
                .map(|v| s(v, "id").to_string())
                .collect();
            let value: Vec<Value> = ids.iter().filter_map(|id| render_vnet(st, id)).collect();
            Ok(Reply::json(200, json!({ "value": value })))
        }
        (1, false) => vnet(st, req, a),
        (2, true) => {
            let vnet_id = a.id_at(0);
            if !st.has(&vnet_id) {
                return Err(ArmError::not_found(VNET_TYPE, &vnet_id));
            }
            Ok(Reply::json(
                200,
                json!({ "value": st.children(&vnet_id, "subnets") }),
            ))
        }
        (2, false) if types[1] == "subnets" => subnet(st, req, a),
        _ => Err(crate::process::not_served(req)),
    }
}

fn vnet(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let id = a.id_at(0);
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => render_vnet(st, &id)
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(VNET_TYPE, &id)),
        "PUT" => {
            let id = existing
                .as_ref()
                .map(|e| s(e, "id").to_string())
                .unwrap_or(id);
            check_lock(st, &id)?;
            let loc = location(&req.body)?;
            let props = req.body.get("properties").cloned().unwrap_or(json!({}));
            let space = space_of(&props)?;
            let wanted: Vec<Value> = props
                .get("subnets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let current = st.children(&id, "subnets");
            // Subnets the PUT omits are deleted: refused when in use.
            for c in &current {
                let cname = s(c, "name");
                if !wanted
                    .iter()
                    .any(|w| s(w, "name").eq_ignore_ascii_case(cname))
                {
                    let users = subnet_users(st, s(c, "id"));
                    if !users.is_empty() {
                        return Err(in_use(cname, &users));
                    }
                }
            }
            let mut siblings: Vec<(String, Vec<IpNet>)> = Vec::new();
            let mut built = Vec::new();
            for w in &wanted {
                let name = s(w, "name").to_string();
                if name.is_empty() {
                    return Err(ArmError::bad(
                        "InvalidRequestFormat",
                        "Cannot parse the request: every subnet needs a name.",
                    ));
                }
                let sub = build_subnet(st, &id, &name, w, &space, &siblings)?;
                check_in_use_update(st, &current, &sub)?;
                siblings.push((name, nets_of(&sub)));
                built.push(sub);
            }
            let mut v = envelope(&id, VNET_TYPE, &loc, &req.body)?;
            let mut p = props.clone();
            if let Some(m) = p.as_object_mut() {
                m.remove("subnets");
            }
            p["provisioningState"] = json!("Updating");
            p["resourceGuid"] = existing
                .as_ref()
                .and_then(|e| e.pointer("/properties/resourceGuid").cloned())
                .unwrap_or_else(|| json!(st.uuid()));
            if p.get("enableDdosProtection").is_none() {
                p["enableDdosProtection"] = json!(false);
            }
            v["etag"] = json!(etag(st));
            v["properties"] = p;
            for c in &current {
                st.apply(Effect::RemoveTree(s(c, "id").to_string()));
            }
            st.apply(Effect::Insert(id.clone(), v));
            let mut done = vec![Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Succeeded"}}),
            )];
            for sub in built {
                let sid = s(&sub, "id").to_string();
                st.apply(Effect::Insert(sid.clone(), sub));
                done.push(Effect::Merge(
                    sid,
                    json!({"properties": {"provisioningState": "Succeeded"}}),
                ));
            }
            let verb = if existing.is_some() {
                "update"
            } else {
                "create"
            };
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.Network",
                &loc,
                &format!("virtualNetworks.{verb}"),
                &id,
                Duration::from_secs(10),
            )
            .lock(&id)
            .on_done(done);
            let headers = lro::start(st, op, Style::Async);
            let body = render_vnet(st, &id).unwrap_or(Value::Null);
            Ok(Reply::json(if existing.is_some() { 200 } else { 201 }, body).with_headers(headers))
        }
        "DELETE" => {
            let Some(e) = existing else {
                return Ok(Reply::empty(204));
            };
            let id = s(&e, "id").to_string();
            check_lock(st, &id)?;
            for c in st.children(&id, "subnets") {
                let users = subnet_users(st, s(&c, "id"));
                if !users.is_empty() {
                    return Err(in_use(s(&c, "name"), &users));
                }
            }
            st.apply(Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Deleting"}}),
            ));
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.Network",
                s(&e, "location"),
                "virtualNetworks.delete",
                &id,
                Duration::from_secs(10),
            )
            .lock(&id)
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Both);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}

/// An in-use subnet may not change its prefixes or delegations.
fn check_in_use_update(st: &State, current: &[Value], new: &Value) -> Result<(), ArmError> {
    let Some(old) = current
        .iter()
        .find(|c| s(c, "name").eq_ignore_ascii_case(s(new, "name")))
    else {
        return Ok(());
    };
    let users = subnet_users(st, s(old, "id"));
    if users.is_empty() {
        return Ok(());
    }
    let services = |v: &Value| -> Vec<String> {
        v.pointer("/properties/delegations")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|d| crate::state::ptr(d, "/properties/serviceName").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    if nets_of(old) != nets_of(new) || services(old) != services(new) {
        return Err(ArmError::bad(
            "InUseSubnetCannotBeUpdated",
            format!(
                "Subnet {} is in use by {} and cannot be updated.",
                s(new, "name"),
                users.join(", ")
            ),
        ));
    }
    Ok(())
}

fn subnet(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let vnet_id = a.id_at(0);
    let Some(vnet) = st.get(&vnet_id).cloned() else {
        return Err(ArmError::not_found(VNET_TYPE, &vnet_id));
    };
    let vnet_id = s(&vnet, "id").to_string();
    let name = a.name(1).unwrap_or("").to_string();
    let id = format!("{vnet_id}/subnets/{name}");
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(SUBNET_TYPE, &id)),
        "PUT" => {
            check_lock(st, &vnet_id)?;
            let space = space_of(&vnet["properties"])?;
            let siblings: Vec<(String, Vec<IpNet>)> = st
                .children(&vnet_id, "subnets")
                .iter()
                .map(|c| (s(c, "name").to_string(), nets_of(c)))
                .collect();
            let sub = build_subnet(st, &vnet_id, &name, &req.body, &space, &siblings)?;
            if let Some(old) = &existing {
                check_in_use_update(st, std::slice::from_ref(old), &sub)?;
            }
            let id = s(&sub, "id").to_string();
            st.apply(Effect::Insert(id.clone(), sub));
            let verb = if existing.is_some() {
                "update"
            } else {
                "create"
            };
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.Network",
                s(&vnet, "location"),
                &format!("virtualNetworks.subnets.{verb}"),
                &id,
                Duration::from_secs(5),
            )
            .lock(&vnet_id)
            .on_done(vec![Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Succeeded"}}),
            )]);
            let headers = lro::start(st, op, Style::Async);
            let body = st.get(&id).cloned().unwrap_or(Value::Null);
            Ok(Reply::json(if existing.is_some() { 200 } else { 201 }, body).with_headers(headers))
        }
        "DELETE" => {
            if existing.is_none() {
                return Ok(Reply::empty(204));
            }
            check_lock(st, &vnet_id)?;
            let users = subnet_users(st, &id);
            if !users.is_empty() {
                return Err(in_use(&name, &users));
            }
            st.apply(Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Deleting"}}),
            ));
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.Network",
                s(&vnet, "location"),
                "virtualNetworks.subnets.delete",
                &id,
                Duration::from_secs(5),
            )
            .lock(&vnet_id)
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Both);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}
