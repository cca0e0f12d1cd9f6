//! Compute Engine v1: VPC networks, subnetworks and their global/regional operations.

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::ops::{self, Api, Op};
use crate::state::{b64, is_rfc1035, now_millis, now_rfc3339, s, Effect, State};
use crate::{unserved, Req};

const BASE: &str = "https://www.googleapis.com/compute/v1/";

fn link(path: &str) -> String {
    format!("{BASE}{path}")
}

/// `projects/p/global/networks/n` from a full URL, a partial path or `global/networks/n`.
pub(crate) fn network_key(project: &str, reference: &str) -> String {
    let r = reference.strip_prefix(BASE).unwrap_or(reference);
    let r = r
        .split_once("/compute/v1/")
        .map(|(_, rest)| rest)
        .unwrap_or(r);
    if r.starts_with("projects/") {
        r.to_string()
    } else if r.starts_with("global/") {
        format!("projects/{project}/{r}")
    } else {
        format!("projects/{project}/global/networks/{r}")
    }
}

/// `projects/p/regions/r/subnetworks/s` from a full URL, a partial path,
/// `regions/r/subnetworks/s` or a bare name (in `region`).
pub(crate) fn subnetwork_key(project: &str, region: &str, reference: &str) -> String {
    let r = reference.strip_prefix(BASE).unwrap_or(reference);
    let r = r
        .split_once("/compute/v1/")
        .map(|(_, rest)| rest)
        .unwrap_or(r);
    if r.starts_with("projects/") {
        r.to_string()
    } else if r.starts_with("regions/") {
        format!("projects/{project}/{r}")
    } else {
        format!("projects/{project}/regions/{region}/subnetworks/{r}")
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::not_found(format!("The resource '{what}' was not found"))
}

pub(crate) fn handle(st: &mut State, method: &str, req: &Req) -> ApiResult {
    let project = st.require_project(req.p("project"))?;
    let region = req.p("region").to_string();
    match method {
        "compute.networks.get" => {
            let key = format!("projects/{project}/global/networks/{}", req.p("network"));
            st.res.get(&key).cloned().ok_or_else(|| not_found(&key))
        }
        "compute.networks.list" => {
            let items: Vec<Value> = st
                .children(&format!("projects/{project}/global/networks/"))
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            Ok(list(
                "compute#networkList",
                &format!("projects/{project}/global/networks"),
                items,
            ))
        }
        "compute.networks.insert" => insert_network(st, &project, req),
        "compute.networks.delete" => {
            let key = format!("projects/{project}/global/networks/{}", req.p("network"));
            let net = st.res.get(&key).cloned().ok_or_else(|| not_found(&key))?;
            let self_link = s(&net, "selfLink").to_string();
            if let Some((sub, _)) = st
                .res
                .iter()
                .find(|(k, v)| k.contains("/subnetworks/") && s(v, "network") == self_link)
            {
                return Err(ApiError::new(
                    400,
                    "FAILED_PRECONDITION",
                    "resourceInUseByAnotherResource",
                    format!("The network resource '{key}' is already being used by '{sub}'"),
                ));
            }
            if let Some(op) = ops::pending_on(st, &key) {
                return Err(in_use_by_op(&key, &op.name));
            }
            let op = operation(st, &project, None, "delete", &key, &net);
            let op = op.on_done(vec![Effect::Remove(key)]);
            Ok(ops::register(st, method, op))
        }
        "compute.subnetworks.get" => {
            let key = format!(
                "projects/{project}/regions/{region}/subnetworks/{}",
                req.p("subnetwork")
            );
            st.res.get(&key).cloned().ok_or_else(|| not_found(&key))
        }
        "compute.subnetworks.list" => {
            let items: Vec<Value> = st
                .children(&format!("projects/{project}/regions/{region}/subnetworks/"))
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            Ok(list(
                "compute#subnetworkList",
                &format!("projects/{project}/regions/{region}/subnetworks"),
                items,
            ))
        }
        "compute.subnetworks.insert" => insert_subnetwork(st, &project, &region, req),
        "compute.subnetworks.delete" => {
            let key = format!(
                "projects/{project}/regions/{region}/subnetworks/{}",
                req.p("subnetwork")
            );
            let sub = st.res.get(&key).cloned().ok_or_else(|| not_found(&key))?;
            if let Some(op) = ops::pending_on(st, &key) {
                return Err(in_use_by_op(&key, &op.name));
            }
            let net_key = network_key(&project, s(&sub, "network"));
            let effects = vec![
                Effect::Remove(key.clone()),
                Effect::Pull(net_key, "subnetworks", json!(s(&sub, "selfLink"))),
            ];
            let op = operation(st, &project, Some(&region), "delete", &key, &sub).on_done(effects);
            Ok(ops::register(st, method, op))
        }
        "compute.subnetworks.aggregatedList" => {
            // Every region, as GCP answers: the subnetworks of those that have some,
            // a NO_RESULTS_ON_PAGE warning for the others.
            let mut items = serde_json::Map::new();
            let mut regions: Vec<String> = crate::catalog::regions().map(str::to_string).collect();
            let prefix = format!("projects/{project}/regions/");
            for key in st.res.keys() {
                if let Some(r) = key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.split_once("/subnetworks/"))
                    .map(|(r, _)| r.to_string())
                {
                    if !regions.contains(&r) {
                        regions.push(r);
                    }
                }
            }
            regions.sort();
            for r in regions {
                let subs: Vec<Value> = st
                    .children(&format!("{prefix}{r}/subnetworks/"))
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect();
                let scoped = if subs.is_empty() {
                    json!({"warning": {
                        "code": "NO_RESULTS_ON_PAGE",
                        "message": "There are no results for scope 'regions/{r}' on this page.",
                        "data": [{"key": "scope", "value": format!("regions/{r}")}],
                    }})
                } else {
                    json!({ "subnetworks": subs })
                };
                items.insert(format!("regions/{r}"), scoped);
            }
            let path = format!("projects/{project}/aggregated/subnetworks");
            Ok(json!({
                "kind": "compute#subnetworkAggregatedList",
                "id": path,
                "selfLink": link(&path),
                "items": items,
            }))
        }
        "compute.machineTypes.get" => {
            let zone = req.p("zone");
            let name = req.p("machineType");
            crate::catalog::machine_type(&project, zone, name).ok_or_else(|| {
                not_found(&format!(
                    "projects/{project}/zones/{zone}/machineTypes/{name}"
                ))
            })
        }
        "compute.machineTypes.list" => {
            let zone = req.p("zone");
            if !crate::catalog::is_zone(zone) {
                return Err(not_found(&format!("projects/{project}/zones/{zone}")));
            }
            Ok(list(
                "compute#machineTypeList",
                &format!("projects/{project}/zones/{zone}/machineTypes"),
                crate::catalog::machine_types_in(&project, zone),
            ))
        }
        "compute.globalOperations.get" | "compute.globalOperations.wait" => {
            let name = format!(
                "projects/{project}/global/operations/{}",
                req.p("operation")
            );
            ops::poll(st, &name, &[Api::Compute]).ok_or_else(|| not_found(&name))
        }
        "compute.regionOperations.get" | "compute.regionOperations.wait" => {
            let name = format!(
                "projects/{project}/regions/{region}/operations/{}",
                req.p("operation")
            );
            ops::poll(st, &name, &[Api::Compute]).ok_or_else(|| not_found(&name))
        }
        _ => Err(unserved(method)),
    }
}

fn in_use_by_op(key: &str, op: &str) -> ApiError {
    ApiError::new(
        400,
        "FAILED_PRECONDITION",
        "resourceNotReady",
        format!("The resource '{key}' is not ready: operation '{op}' is still running"),
    )
}

fn list(kind: &str, path: &str, items: Vec<Value>) -> Value {
    let mut v = json!({ "kind": kind, "id": path, "selfLink": link(path) });
    if !items.is_empty() {
        v["items"] = Value::Array(items);
    }
    v
}

fn operation(
    st: &mut State,
    project: &str,
    region: Option<&str>,
    op_type: &str,
    target_key: &str,
    target: &Value,
) -> Op {
    let op_name = format!(
        "operation-{}-{}-{}-{}",
        now_millis(),
        st.hex(13),
        st.hex(8),
        st.hex(8)
    );
    let scope = match region {
        Some(r) => format!("projects/{project}/regions/{r}"),
        None => format!("projects/{project}/global"),
    };
    let name = format!("{scope}/operations/{op_name}");
    let mut base = json!({
        "kind": "compute#operation",
        "id": st.numeric_id(19),
        "name": op_name,
        "operationType": op_type,
        "targetLink": link(target_key),
        "targetId": s(target, "id"),
        "selfLink": link(&name),
        "insertTime": now_rfc3339(),
        "user": "fake-gcp@example.com",
    });
    if let Some(r) = region {
        base["region"] = json!(link(&format!("projects/{project}/regions/{r}")));
    }
    Op::new(name, Api::Compute, op_type, target_key.to_string(), base)
}

fn insert_network(st: &mut State, project: &str, req: &Req) -> ApiResult {
    let body = req.body();
    let name = s(body, "name").to_string();
    if !is_rfc1035(&name, 63) {
        return Err(ApiError::invalid(format!(
            "Invalid value for field 'resource.name': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
        )));
    }
    let key = format!("projects/{project}/global/networks/{name}");
    if st.res.contains_key(&key) || ops::pending_on(st, &key).is_some() {
        return Err(ApiError::already_exists(format!(
            "The resource '{key}' already exists"
        )));
    }
    let mut net = json!({
        "kind": "compute#network",
        "id": st.numeric_id(19),
        "creationTimestamp": now_rfc3339(),
        "name": name,
        "selfLink": link(&key),
        "autoCreateSubnetworks": body.get("autoCreateSubnetworks").and_then(Value::as_bool).unwrap_or(false),
        "routingConfig": body.get("routingConfig").cloned().unwrap_or_else(|| json!({"routingMode": "REGIONAL"})),
        "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL",
    });
    net["selfLinkWithId"] = json!(link(&format!(
        "projects/{project}/global/networks/{}",
        s(&net, "id")
    )));
    for field in ["description", "mtu"] {
        if let Some(v) = body.get(field) {
            net[field] = v.clone();
        }
    }
    let op =
        operation(st, project, None, "insert", &key, &net).on_done(vec![Effect::Insert(key, net)]);
    Ok(ops::register(st, "compute.networks.insert", op))
}

fn insert_subnetwork(st: &mut State, project: &str, region: &str, req: &Req) -> ApiResult {
    let body = req.body();
    let name = s(body, "name").to_string();
    if !is_rfc1035(&name, 63) {
        return Err(ApiError::invalid(format!(
            "Invalid value for field 'resource.name': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
        )));
    }
    let cidr = s(body, "ipCidrRange").to_string();
    let Some(gateway) = gateway(&cidr) else {
        return Err(ApiError::invalid(format!(
            "Invalid value for field 'resource.ipCidrRange': '{cidr}'. Invalid IPCidrRange."
        )));
    };
    let net_key = network_key(project, s(body, "network"));
    let net = st
        .res
        .get(&net_key)
        .cloned()
        .ok_or_else(|| not_found(&net_key))?;
    let key = format!("projects/{project}/regions/{region}/subnetworks/{name}");
    if st.res.contains_key(&key) || ops::pending_on(st, &key).is_some() {
        return Err(ApiError::already_exists(format!(
            "The resource '{key}' already exists"
        )));
    }
    let mut sub = json!({
        "kind": "compute#subnetwork",
        "id": st.numeric_id(19),
        "creationTimestamp": now_rfc3339(),
        "name": name,
        "network": s(&net, "selfLink"),
        "ipCidrRange": cidr,
        "gatewayAddress": gateway,
        "region": link(&format!("projects/{project}/regions/{region}")),
        "selfLink": link(&key),
        "privateIpGoogleAccess": body.get("privateIpGoogleAccess").and_then(Value::as_bool).unwrap_or(false),
        "fingerprint": b64(st.hex(8)),
        "stackType": body.get("stackType").cloned().unwrap_or_else(|| json!("IPV4_ONLY")),
        "purpose": body.get("purpose").cloned().unwrap_or_else(|| json!("PRIVATE")),
    });
    for field in [
        "description",
        "secondaryIpRanges",
        "logConfig",
        "privateIpv6GoogleAccess",
    ] {
        if let Some(v) = body.get(field) {
            sub[field] = v.clone();
        }
    }
    let self_link = json!(link(&key));
    let op = operation(st, project, Some(region), "insert", &key, &sub).on_done(vec![
        Effect::Insert(key, sub),
        Effect::Push(net_key, "subnetworks", self_link),
    ]);
    Ok(ops::register(st, "compute.subnetworks.insert", op))
}

/// The first host of an IPv4 CIDR (`10.0.0.0/20` → `10.0.0.1`), if the CIDR is valid.
fn gateway(cidr: &str) -> Option<String> {
    let (ip, len) = cidr.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    if !(8..=29).contains(&len) {
        return None;
    }
    let n = u32::from(ip);
    let mask = u32::MAX << (32 - len);
    if n & !mask != 0 {
        return None;
    }
    Some(std::net::Ipv4Addr::from(n + 1).to_string())
}
