//! Cloud DNS v1: managed zones, record sets and changes (changes are `done` at once).

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::state::{is_rfc1035, now_rfc3339, s, State};
use crate::{unserved, Req};

fn zone_not_found(zone: &str) -> ApiError {
    ApiError::not_found(format!(
        "The 'parameters.managedZone' resource named '{zone}' does not exist."
    ))
}

fn rrset_key(zone_key: &str, name: &str, kind: &str) -> String {
    format!("{zone_key}/rrsets/{name}/{kind}")
}

fn record(name: &str, kind: &str, ttl: i64, rrdatas: Vec<Value>) -> Value {
    json!({"kind": "dns#resourceRecordSet", "name": name, "type": kind, "ttl": ttl, "rrdatas": rrdatas})
}

/// A record set as stored: `kind` added, unknown extras kept as sent.
fn normalize(rr: &Value) -> Value {
    let mut v = rr.clone();
    v["kind"] = json!("dns#resourceRecordSet");
    v
}

/// Two record sets are the same for a deletion when name, type, ttl and data match.
fn same(a: &Value, b: &Value) -> bool {
    s(a, "name") == s(b, "name")
        && s(a, "type") == s(b, "type")
        && a.get("ttl") == b.get("ttl")
        && a.get("rrdatas") == b.get("rrdatas")
}

pub(crate) fn handle(st: &mut State, method: &str, req: &Req) -> ApiResult {
    let project = st.require_project(req.p("project"))?;
    let zone = req.p("managedZone").to_string();
    let zkey = format!("projects/{project}/managedZones/{zone}");
    match method {
        "dns.managedZones.create" => create_zone(st, &project, req),
        "dns.managedZones.get" => st
            .res
            .get(&zkey)
            .cloned()
            .ok_or_else(|| zone_not_found(&zone)),
        "dns.managedZones.list" => {
            let dns_name = req.q("dnsName");
            let zones: Vec<Value> = st
                .children(&format!("projects/{project}/managedZones/"))
                .into_iter()
                .map(|(_, v)| v)
                .filter(|z| dns_name.is_none_or(|d| s(z, "dnsName") == d))
                .collect();
            Ok(json!({"kind": "dns#managedZonesListResponse", "managedZones": zones}))
        }
        "dns.managedZones.delete" => {
            let z = st
                .res
                .get(&zkey)
                .cloned()
                .ok_or_else(|| zone_not_found(&zone))?;
            let apex = s(&z, "dnsName").to_string();
            let prefix = format!("{zkey}/rrsets/");
            let busy = st
                .res
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .any(|(_, v)| {
                    !(s(v, "name") == apex && (s(v, "type") == "NS" || s(v, "type") == "SOA"))
                });
            if busy {
                return Err(ApiError::precondition(
                    "containerNotEmpty",
                    format!(
                        "The resource named '{zone}' cannot be deleted because it is not empty"
                    ),
                ));
            }
            st.apply(crate::state::Effect::Remove(zkey));
            Ok(Value::Null)
        }
        "dns.resourceRecordSets.list" => {
            st.res.get(&zkey).ok_or_else(|| zone_not_found(&zone))?;
            let name = req.q("name");
            let kind = req.q("type");
            let rrsets: Vec<Value> = st
                .res
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{zkey}/rrsets/")))
                .map(|(_, v)| v.clone())
                .filter(|v| {
                    name.is_none_or(|n| s(v, "name") == n) && kind.is_none_or(|t| s(v, "type") == t)
                })
                .collect();
            Ok(json!({"kind": "dns#resourceRecordSetsListResponse", "rrsets": rrsets}))
        }
        "dns.resourceRecordSets.get" => {
            st.res.get(&zkey).ok_or_else(|| zone_not_found(&zone))?;
            let key = rrset_key(&zkey, req.p("name"), req.p("type"));
            st.res.get(&key).cloned().ok_or_else(|| {
                ApiError::not_found(format!(
                    "The 'parameters.name' resource named '{} ({})' does not exist.",
                    req.p("name"),
                    req.p("type")
                ))
            })
        }
        "dns.resourceRecordSets.create" => {
            let rr = normalize(req.body());
            apply_change(st, &zkey, &zone, vec![rr.clone()], vec![])?;
            Ok(rr)
        }
        "dns.resourceRecordSets.delete" => {
            st.res.get(&zkey).ok_or_else(|| zone_not_found(&zone))?;
            let key = rrset_key(&zkey, req.p("name"), req.p("type"));
            let existing = st.res.get(&key).cloned().ok_or_else(|| {
                ApiError::not_found(format!(
                    "The 'parameters.name' resource named '{} ({})' does not exist.",
                    req.p("name"),
                    req.p("type")
                ))
            })?;
            apply_change(st, &zkey, &zone, vec![], vec![existing])?;
            Ok(json!({}))
        }
        "dns.resourceRecordSets.patch" => {
            st.res.get(&zkey).ok_or_else(|| zone_not_found(&zone))?;
            let key = rrset_key(&zkey, req.p("name"), req.p("type"));
            let existing = st.res.get(&key).cloned().ok_or_else(|| {
                ApiError::not_found(format!(
                    "The 'parameters.name' resource named '{} ({})' does not exist.",
                    req.p("name"),
                    req.p("type")
                ))
            })?;
            let mut next = existing.clone();
            if let Value::Object(patch) = req.body() {
                for (k, v) in patch {
                    if k != "name" && k != "type" && k != "kind" {
                        next[k.as_str()] = v.clone();
                    }
                }
            }
            apply_change(st, &zkey, &zone, vec![next.clone()], vec![existing])?;
            Ok(next)
        }
        "dns.changes.create" => {
            let body = req.body();
            let list = |f: &str| -> Vec<Value> {
                body.get(f)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(normalize)
                    .collect()
            };
            apply_change(st, &zkey, &zone, list("additions"), list("deletions"))
        }
        "dns.changes.get" => {
            st.res.get(&zkey).ok_or_else(|| zone_not_found(&zone))?;
            let id = req.p("changeId");
            st.dns_changes
                .get(&zkey)
                .and_then(|c| c.iter().find(|c| s(c, "id") == id))
                .cloned()
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "The 'parameters.changeId' resource named '{id}' does not exist."
                    ))
                })
        }
        _ => Err(unserved(method)),
    }
}

/// Apply a change atomically: deletions must match exactly (412), additions must not
/// exist afterwards (409) and must lie inside the zone (400).
fn apply_change(
    st: &mut State,
    zkey: &str,
    zone: &str,
    additions: Vec<Value>,
    deletions: Vec<Value>,
) -> ApiResult {
    let z = st
        .res
        .get(zkey)
        .cloned()
        .ok_or_else(|| zone_not_found(zone))?;
    let apex = s(&z, "dnsName").to_string();
    if additions.is_empty() && deletions.is_empty() {
        return Err(ApiError::invalid(
            "The 'entity.change' resource must have additions or deletions.",
        ));
    }
    let mut next = st.res.clone();
    for (i, d) in deletions.iter().enumerate() {
        let key = rrset_key(zkey, s(d, "name"), s(d, "type"));
        match next.get(&key) {
            Some(existing) if same(existing, d) => {
                next.remove(&key);
            }
            _ => {
                return Err(ApiError::new(
                    412,
                    "FAILED_PRECONDITION",
                    "conditionNotMet",
                    format!("Precondition not met for 'entity.change.deletions[{i}]'"),
                ))
            }
        }
    }
    for (i, a) in additions.iter().enumerate() {
        let name = s(a, "name");
        let kind = s(a, "type");
        let in_zone = name == apex || name.ends_with(&format!(".{apex}"));
        if !name.ends_with('.') || !in_zone || kind.is_empty() {
            return Err(ApiError::invalid(format!(
                "Invalid value for 'entity.change.additions[{i}].name': '{name}'"
            )));
        }
        let rrdatas = a
            .get("rrdatas")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0);
        if rrdatas == 0 && a.get("routingPolicy").is_none() {
            return Err(ApiError::invalid(format!(
                "The resource record set 'entity.change.additions[{i}]' is invalid because it has no rrdatas."
            )));
        }
        let key = rrset_key(zkey, name, kind);
        if next.contains_key(&key) {
            return Err(ApiError::already_exists(format!(
                "The resource 'entity.change.additions[{i}]' named '{name} ({kind})' already exists"
            )));
        }
        next.insert(key, a.clone());
    }
    st.res = next;
    let changes = st.dns_changes.entry(zkey.to_string()).or_default();
    let mut change = json!({
        "kind": "dns#change",
        "id": changes.len().to_string(),
        "startTime": now_rfc3339(),
        "status": "done",
        "isServing": true,
    });
    if !additions.is_empty() {
        change["additions"] = Value::Array(additions);
    }
    if !deletions.is_empty() {
        change["deletions"] = Value::Array(deletions);
    }
    changes.push(change.clone());
    Ok(change)
}

fn create_zone(st: &mut State, project: &str, req: &Req) -> ApiResult {
    let body = req.body();
    let name = s(body, "name").to_string();
    if !is_rfc1035(&name, 63) {
        return Err(ApiError::invalid(format!(
            "Invalid value for 'entity.managedZone.name': '{name}'"
        )));
    }
    let dns_name = s(body, "dnsName").to_string();
    if !dns_name.ends_with('.') || dns_name.len() < 2 {
        return Err(ApiError::invalid(format!(
            "Invalid value for 'entity.managedZone.dnsName': '{dns_name}'"
        )));
    }
    let zkey = format!("projects/{project}/managedZones/{name}");
    if st.res.contains_key(&zkey) {
        return Err(ApiError::already_exists(format!(
            "The resource 'entity.managedZone' named '{name}' already exists"
        )));
    }
    let shard = char::from(b'a' + (st.next_seq() % 5) as u8);
    let ns: Vec<Value> = (1..=4)
        .map(|i| json!(format!("ns-cloud-{shard}{i}.googledomains.com.")))
        .collect();
    let mut zone = body.clone();
    zone["kind"] = json!("dns#managedZone");
    zone["id"] = json!(st.numeric_id(19));
    zone["creationTime"] = json!(now_rfc3339());
    zone["nameServers"] = Value::Array(ns.clone());
    if zone.get("visibility").is_none() {
        zone["visibility"] = json!("public");
    }
    if zone.get("description").is_none() {
        zone["description"] = json!("");
    }
    st.res.insert(zkey.clone(), zone.clone());
    st.res.insert(
        rrset_key(&zkey, &dns_name, "NS"),
        record(&dns_name, "NS", 21600, ns),
    );
    let soa = format!("ns-cloud-{shard}1.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300");
    st.res.insert(
        rrset_key(&zkey, &dns_name, "SOA"),
        record(&dns_name, "SOA", 21600, vec![json!(soa)]),
    );
    st.dns_changes.insert(
        zkey,
        vec![json!({"kind": "dns#change", "id": "0", "startTime": now_rfc3339(), "status": "done", "isServing": true})],
    );
    Ok(zone)
}
