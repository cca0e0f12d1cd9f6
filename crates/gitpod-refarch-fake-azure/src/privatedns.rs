//! Microsoft.Network privateDnsZones and virtualNetworkLinks (2024-06-01).
//!
//! Both are LROs (`Azure-AsyncOperation` on writes, both headers on deletes). A link
//! needs an existing VNet and a VNet may be linked once per zone. A zone with links
//! cannot be deleted (invented code `CannotDeleteResource`, 409). The MySQL rule on
//! zone names is enforced when a server is created (see [`crate::mysql`]).

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{ArmError, ArmResult};
use crate::lro::{self, OpResult, Style};
use crate::resources::{global_location, tags};
use crate::routes::Addr;
use crate::state::{ptr, s, Effect, State};
use crate::{Reply, Req};

const ZONE_TYPE: &str = "Microsoft.Network/privateDnsZones";
const LINK_TYPE: &str = "Microsoft.Network/privateDnsZones/virtualNetworkLinks";

fn render_zone(st: &State, id: &str) -> Option<Value> {
    let mut z = st.get(id)?.clone();
    let links = st.children(id, "virtualnetworklinks");
    let with_reg = links
        .iter()
        .filter(|l| l.pointer("/properties/registrationEnabled") == Some(&json!(true)))
        .count();
    z["properties"]["numberOfVirtualNetworkLinks"] = json!(links.len());
    z["properties"]["numberOfVirtualNetworkLinksWithRegistration"] = json!(with_reg);
    Some(z)
}

pub(crate) fn handle(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    match (a.segs.len(), a.types().get(1).map(String::as_str)) {
        (1, _) => {
            let prefix = format!(
                "{}/providers/microsoft.network/privatednszones/",
                a.rg_id().to_ascii_lowercase()
            );
            let ids: Vec<String> = st
                .find(|k, _| k.strip_prefix(&prefix).is_some_and(|r| !r.contains('/')))
                .iter()
                .map(|v| s(v, "id").to_string())
                .collect();
            let value: Vec<Value> = ids.iter().filter_map(|id| render_zone(st, id)).collect();
            Ok(Reply::json(200, json!({ "value": value })))
        }
        (2, _) => zone(st, req, a),
        (3, Some("virtualnetworklinks")) => {
            let zid = a.id_at(0);
            if !st.has(&zid) {
                return Err(ArmError::not_found(ZONE_TYPE, &zid));
            }
            Ok(Reply::json(
                200,
                json!({ "value": st.children(&zid, "virtualnetworklinks") }),
            ))
        }
        (4, Some("virtualnetworklinks")) => link(st, req, a),
        _ => Err(crate::process::not_served(req)),
    }
}

fn zone(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let name = a.name(0).unwrap_or("").trim_end_matches('.').to_string();
    let id = a.id_at(0);
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => render_zone(st, &id)
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(ZONE_TYPE, &id)),
        "PUT" => {
            if req.if_none_match.as_deref() == Some("*") && existing.is_some() {
                return Err(ArmError::new(
                    412,
                    "PreconditionFailed",
                    "The zone already exists (If-None-Match: *).",
                ));
            }
            if name.split('.').count() < 2 || name.split('.').any(str::is_empty) {
                return Err(ArmError::bad(
                    "BadRequest",
                    format!(
                        "The zone name '{name}' is not a valid DNS name with at least two labels."
                    ),
                ));
            }
            global_location(&req.body, ZONE_TYPE)?;
            let internal = existing
                .as_ref()
                .and_then(|e| e.pointer("/properties/internalId").cloned())
                .unwrap_or_else(|| json!(st.hex(40)));
            let mut z = json!({
                "id": id, "name": name, "type": ZONE_TYPE, "location": "global", "etag": st.uuid(),
                "properties": {
                    "maxNumberOfRecordSets": 25000,
                    "maxNumberOfVirtualNetworkLinks": 1000,
                    "maxNumberOfVirtualNetworkLinksWithRegistration": 100,
                    "numberOfRecordSets": 1,
                    "provisioningState": if existing.is_some() { "Updating" } else { "Creating" },
                    "internalId": internal,
                },
            });
            if let Some(t) = tags(&req.body)? {
                z["tags"] = t;
            }
            st.apply(Effect::Insert(id.clone(), z));
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.Network",
                "global",
                "privateDnsZones.create",
                &id,
                Duration::from_secs(60),
            )
            .on_done(vec![Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Succeeded"}}),
            )])
            .on_fail(vec![Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Failed"}}),
            )]);
            let headers = lro::start(st, op, Style::Both);
            let body = render_zone(st, &id).unwrap_or(Value::Null);
            Ok(Reply::json(if existing.is_some() { 200 } else { 201 }, body).with_headers(headers))
        }
        "DELETE" => {
            if existing.is_none() {
                return Ok(Reply::empty(204));
            }
            if !st.children(&id, "virtualnetworklinks").is_empty() {
                return Err(ArmError::conflict(
                    "CannotDeleteResource",
                    format!("Cannot delete the private DNS zone '{name}' while it has virtual network links; delete the links first."),
                ));
            }
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.Network",
                "global",
                "privateDnsZones.delete",
                &id,
                Duration::from_secs(30),
            )
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Both);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}

fn link(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let zid = a.id_at(0);
    let Some(zone) = st.get(&zid).cloned() else {
        return Err(ArmError::not_found(ZONE_TYPE, &zid));
    };
    let zid = s(&zone, "id").to_string();
    let name = a.name(1).unwrap_or("").to_string();
    let id = format!("{zid}/virtualNetworkLinks/{name}");
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(LINK_TYPE, &id)),
        "PUT" => {
            global_location(&req.body, LINK_TYPE)?;
            let vnet = ptr(&req.body, "/properties/virtualNetwork/id").to_string();
            if vnet.is_empty() {
                return Err(ArmError::bad(
                    "BadRequest",
                    "properties.virtualNetwork.id is required.",
                ));
            }
            if !st.has(&vnet) {
                return Err(ArmError::bad(
                    "BadRequest",
                    format!("The virtual network '{vnet}' does not exist."),
                ));
            }
            let dup = st
                .children(&zid, "virtualnetworklinks")
                .into_iter()
                .any(|l| {
                    !s(&l, "name").eq_ignore_ascii_case(&name)
                        && ptr(&l, "/properties/virtualNetwork/id").eq_ignore_ascii_case(&vnet)
                });
            if dup {
                return Err(ArmError::conflict(
                    "Conflict",
                    format!("A virtual network cannot be linked to the private DNS zone '{}' more than once.", s(&zone, "name")),
                ));
            }
            let mut p = req.body.get("properties").cloned().unwrap_or(json!({}));
            if p.get("registrationEnabled").is_none() {
                p["registrationEnabled"] = json!(false);
            }
            p["provisioningState"] = json!(if existing.is_some() {
                "Updating"
            } else {
                "Creating"
            });
            p["virtualNetworkLinkState"] = json!("InProgress");
            let mut v = json!({"id": id, "name": name, "type": LINK_TYPE, "location": "global", "etag": st.uuid(), "properties": p});
            if let Some(t) = tags(&req.body)? {
                v["tags"] = t;
            }
            st.apply(Effect::Insert(id.clone(), v));
            let op = lro::new_op(st, &a.sub, "Microsoft.Network", "global", "privateDnsZones.virtualNetworkLinks.create", &id, Duration::from_secs(30))
                .on_done(vec![Effect::Merge(id.clone(), json!({"properties": {"provisioningState": "Succeeded", "virtualNetworkLinkState": "Completed"}}))])
                .on_fail(vec![Effect::Merge(id.clone(), json!({"properties": {"provisioningState": "Failed"}}))]);
            let headers = lro::start(st, op, Style::Both);
            let body = st.get(&id).cloned().unwrap_or(Value::Null);
            Ok(Reply::json(if existing.is_some() { 200 } else { 201 }, body).with_headers(headers))
        }
        "DELETE" => {
            if existing.is_none() {
                return Ok(Reply::empty(204));
            }
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.Network",
                "global",
                "privateDnsZones.virtualNetworkLinks.delete",
                &id,
                Duration::from_secs(30),
            )
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Both);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}
