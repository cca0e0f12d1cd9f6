//! Microsoft.Network dnsZones and record sets (2018-05-01).
//!
//! Zones and record sets are written synchronously (201/200); a zone gets its `@` SOA
//! and NS record sets and four invented name servers; a zone DELETE is an LRO (both
//! headers) that removes its record sets. `If-Match` / `If-None-Match: *` are honoured
//! (412). Ids use DNS's own lower-case `dnszones` segment, as ARM answers them.
//!
//! Invented codes: `BadRequest` for record-type mismatches, CNAME conflicts and
//! apex SOA/NS deletes.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{ArmError, ArmResult};
use crate::lro::{self, OpResult, Style};
use crate::resources::{global_location, tags};
use crate::routes::Addr;
use crate::state::{s, Effect, State};
use crate::{Reply, Req};

const ZONE_TYPE: &str = "Microsoft.Network/dnszones";
/// Record types served and their property name in a record set.
const RECORD_FIELDS: &[(&str, &str)] = &[
    ("A", "ARecords"),
    ("AAAA", "AAAARecords"),
    ("CAA", "caaRecords"),
    ("CNAME", "CNAMERecord"),
    ("MX", "MXRecords"),
    ("NS", "NSRecords"),
    ("PTR", "PTRRecords"),
    ("SOA", "SOARecord"),
    ("SRV", "SRVRecords"),
    ("TXT", "TXTRecords"),
];

fn zone_id(a: &Addr, zone: &str) -> String {
    format!("{}/providers/Microsoft.Network/dnszones/{zone}", a.rg_id())
}

fn record_type(t: &str) -> Option<(&'static str, &'static str)> {
    RECORD_FIELDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(t))
        .copied()
}

fn valid_zone_name(z: &str) -> bool {
    let labels: Vec<&str> = z.trim_end_matches('.').split('.').collect();
    z.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// 412 when `If-Match` / `If-None-Match` do not hold for `existing`.
fn preconditions(req: &Req, existing: Option<&Value>) -> Result<(), ArmError> {
    let failed = || {
        ArmError::new(
            412,
            "PreconditionFailed",
            "The condition specified using HTTP conditional header(s) is not met.",
        )
    };
    if req.if_none_match.as_deref() == Some("*") && existing.is_some() {
        return Err(failed());
    }
    if let Some(m) = req.if_match.as_deref() {
        let etag = existing.map(|e| s(e, "etag")).unwrap_or("");
        if existing.is_none() || (m != "*" && m.trim_matches('"') != etag.trim_matches('"')) {
            return Err(failed());
        }
    }
    Ok(())
}

fn record_count(st: &State, zone_id: &str) -> usize {
    let prefix = format!("{}/", zone_id.to_ascii_lowercase());
    st.res
        .keys()
        .filter(|k| {
            k.strip_prefix(&prefix)
                .is_some_and(|r| r.split('/').count() == 2)
        })
        .count()
}

fn render_zone(st: &State, id: &str) -> Option<Value> {
    let mut z = st.get(id)?.clone();
    z["properties"]["numberOfRecordSets"] = json!(record_count(st, id));
    Some(z)
}

fn record_body(st: &mut State, zone: &Value, ty: &str, rel: &str, props: &Value) -> Value {
    let zid = s(zone, "id");
    let zname = s(zone, "name");
    let fqdn = if rel == "@" {
        format!("{zname}.")
    } else {
        format!("{rel}.{zname}.")
    };
    let mut p = props.clone();
    if p.get("TTL").is_none_or(Value::is_null) {
        p["TTL"] = json!(3600);
    }
    p["fqdn"] = json!(fqdn);
    p["provisioningState"] = json!("Succeeded");
    p["targetResource"] = p.get("targetResource").cloned().unwrap_or(json!({}));
    json!({
        "id": format!("{zid}/{ty}/{rel}"),
        "name": rel,
        "type": format!("{ZONE_TYPE}/{ty}"),
        "etag": st.uuid(),
        "properties": p,
    })
}

pub(crate) fn handle(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    match a.segs.len() {
        1 => {
            let prefix = format!(
                "{}/providers/microsoft.network/dnszones/",
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
        2 => zone(st, req, a),
        3 | 4 => records(st, req, a),
        _ => Err(crate::process::not_served(req)),
    }
}

fn zone(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let name = a.name(0).unwrap_or("").trim_end_matches('.').to_string();
    let id = zone_id(a, &name);
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => render_zone(st, &id)
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(ZONE_TYPE, &id)),
        "PUT" | "PATCH" => {
            preconditions(req, existing.as_ref())?;
            if req.verb == "PATCH" {
                let Some(mut z) = existing else {
                    return Err(ArmError::not_found(ZONE_TYPE, &id));
                };
                if let Some(t) = tags(&req.body)? {
                    z["tags"] = t;
                }
                z["etag"] = json!(st.uuid());
                st.apply(Effect::Insert(id.clone(), z));
                return Ok(Reply::json(
                    200,
                    render_zone(st, &id).unwrap_or(Value::Null),
                ));
            }
            if !valid_zone_name(&name) {
                return Err(ArmError::bad(
                    "BadRequest",
                    format!(
                        "The zone name '{name}' is not a valid DNS name with at least two labels."
                    ),
                ));
            }
            global_location(&req.body, ZONE_TYPE)?;
            let zone_type = match crate::state::ptr(&req.body, "/properties/zoneType") {
                "" | "Public" => "Public",
                other => {
                    return Err(ArmError::bad(
                        "BadRequest",
                        format!("zoneType '{other}' is not supported by fake-azure (Public only; use privateDnsZones)."),
                    ))
                }
            };
            let servers = match existing
                .as_ref()
                .and_then(|e| e.pointer("/properties/nameServers").cloned())
            {
                Some(ns) => ns,
                None => {
                    let n = st.next_seq() % 9 + 1;
                    json!([
                        format!("ns1-0{n}.azure-dns.com."),
                        format!("ns2-0{n}.azure-dns.net."),
                        format!("ns3-0{n}.azure-dns.org."),
                        format!("ns4-0{n}.azure-dns.info."),
                    ])
                }
            };
            let mut z = json!({
                "id": id, "name": name, "type": ZONE_TYPE, "location": "global",
                "etag": st.uuid(),
                "properties": {
                    "maxNumberOfRecordSets": 10000,
                    "maxNumberOfRecordsPerRecordSet": 20,
                    "numberOfRecordSets": 0,
                    "nameServers": servers.clone(),
                    "zoneType": zone_type,
                },
            });
            if let Some(t) = tags(&req.body)? {
                z["tags"] = t;
            }
            st.apply(Effect::Insert(id.clone(), z.clone()));
            if existing.is_none() {
                let ns: Vec<Value> = servers
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| json!({"nsdname": n}))
                    .collect();
                let first = servers[0].as_str().unwrap_or("").to_string();
                let soa = record_body(
                    st,
                    &z,
                    "SOA",
                    "@",
                    &json!({"TTL": 3600, "SOARecord": {
                    "host": first, "email": "azuredns-hostmaster.microsoft.com", "serialNumber": 1,
                    "refreshTime": 3600, "retryTime": 300, "expireTime": 2419200, "minimumTTL": 300}}),
                );
                let nsr = record_body(st, &z, "NS", "@", &json!({"TTL": 172800, "NSRecords": ns}));
                for r in [soa, nsr] {
                    st.apply(Effect::Insert(s(&r, "id").to_string(), r));
                }
            }
            let body = render_zone(st, &id).unwrap_or(Value::Null);
            Ok(Reply::json(
                if existing.is_some() { 200 } else { 201 },
                body,
            ))
        }
        "DELETE" => {
            let Some(z) = existing else {
                return Ok(Reply::empty(204));
            };
            preconditions(req, Some(&z))?;
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.Network",
                "global",
                "dnsZones.delete",
                &id,
                Duration::from_secs(10),
            )
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Both);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}

fn check_records(ty: &str, field: &str, rel: &str, props: &Value) -> Result<(), ArmError> {
    for (other_ty, other_field) in RECORD_FIELDS {
        if *other_field != field && props.get(*other_field).is_some_and(|v| !v.is_null()) {
            return Err(ArmError::bad(
                "BadRequest",
                format!("The record set of type '{ty}' cannot contain records of type '{other_ty}' ({other_field})."),
            ));
        }
    }
    if ty == "CNAME" && rel == "@" {
        return Err(ArmError::bad(
            "BadRequest",
            "A CNAME record set cannot be created at the zone apex (@).",
        ));
    }
    if let Some(ttl) = props.get("TTL") {
        if !ttl
            .as_i64()
            .is_some_and(|t| (0..=2_147_483_647).contains(&t))
        {
            return Err(ArmError::bad(
                "BadRequest",
                format!("The TTL value {ttl} is invalid."),
            ));
        }
    }
    let items = props.get(field);
    match ty {
        "A" => {
            for r in items.and_then(Value::as_array).into_iter().flatten() {
                if s(r, "ipv4Address").parse::<Ipv4Addr>().is_err() {
                    return Err(ArmError::bad(
                        "BadRequest",
                        format!("The IPv4 address '{}' is invalid.", s(r, "ipv4Address")),
                    ));
                }
            }
        }
        "AAAA" => {
            for r in items.and_then(Value::as_array).into_iter().flatten() {
                if s(r, "ipv6Address").parse::<Ipv6Addr>().is_err() {
                    return Err(ArmError::bad(
                        "BadRequest",
                        format!("The IPv6 address '{}' is invalid.", s(r, "ipv6Address")),
                    ));
                }
            }
        }
        "TXT" => {
            for r in items.and_then(Value::as_array).into_iter().flatten() {
                let ok = r
                    .get("value")
                    .and_then(Value::as_array)
                    .is_some_and(|v| v.iter().all(Value::is_string));
                if !ok {
                    return Err(ArmError::bad(
                        "BadRequest",
                        "A TXT record needs 'value': an array of strings.",
                    ));
                }
            }
        }
        "CNAME" => {
            if let Some(c) = items {
                if s(c, "cname").is_empty() {
                    return Err(ArmError::bad("BadRequest", "A CNAME record needs 'cname'."));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn records(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let zname = a.name(0).unwrap_or("").trim_end_matches('.').to_string();
    let zid = zone_id(a, &zname);
    let Some(zone) = st.get(&zid).cloned() else {
        return Err(ArmError::not_found(ZONE_TYPE, &zid));
    };
    let zid = s(&zone, "id").to_string();
    let seg = a.segs[2].as_str();
    if a.segs.len() == 3 {
        if req.verb != "GET" {
            return Err(crate::process::not_served(req));
        }
        let value: Vec<Value> =
            if seg.eq_ignore_ascii_case("recordsets") || seg.eq_ignore_ascii_case("all") {
                let prefix = format!("{}/", zid.to_ascii_lowercase());
                st.find(|k, _| {
                    k.strip_prefix(&prefix)
                        .is_some_and(|r| r.split('/').count() == 2)
                })
            } else {
                let Some((ty, _)) = record_type(seg) else {
                    return Err(ArmError::bad(
                        "BadRequest",
                        format!("The record type '{seg}' is not supported."),
                    ));
                };
                st.children(&zid, &ty.to_ascii_lowercase())
            };
        return Ok(Reply::json(200, json!({ "value": value })));
    }
    let Some((ty, field)) = record_type(seg) else {
        return Err(ArmError::bad(
            "BadRequest",
            format!("The record type '{seg}' is not supported."),
        ));
    };
    let rel = a.segs[3].clone();
    let id = format!("{zid}/{ty}/{rel}");
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(&format!("{ZONE_TYPE}/{ty}"), &id)),
        "PUT" | "PATCH" => {
            preconditions(req, existing.as_ref())?;
            let mut props = req.body.get("properties").cloned().unwrap_or(json!({}));
            if req.verb == "PATCH" {
                let Some(old) = &existing else {
                    return Err(ArmError::not_found(&format!("{ZONE_TYPE}/{ty}"), &id));
                };
                let mut merged = old["properties"].clone();
                crate::state::deep_merge(&mut merged, &props);
                for k in ["fqdn", "provisioningState"] {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove(k);
                    }
                }
                props = merged;
            }
            check_records(ty, field, &rel, &props)?;
            let prefix = format!("{}/", zid.to_ascii_lowercase());
            let rel_lower = rel.to_ascii_lowercase();
            let others: Vec<String> = st
                .res
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter_map(|r| r.split_once('/'))
                .filter(|(t, n)| *n == rel_lower && !t.eq_ignore_ascii_case(ty))
                .map(|(t, _)| t.to_ascii_uppercase())
                .collect();
            if (ty == "CNAME" && !others.is_empty())
                || (ty != "CNAME" && others.iter().any(|t| t == "CNAME"))
            {
                return Err(ArmError::bad(
                    "BadRequest",
                    format!("The record set '{rel}' of type {ty} conflicts with an existing record set of type {} at the same name (CNAME records cannot coexist with other types).", others.join(", ")),
                ));
            }
            let body = record_body(st, &zone, ty, &rel, &props);
            st.apply(Effect::Insert(id, body.clone()));
            Ok(Reply::json(
                if existing.is_some() { 200 } else { 201 },
                body,
            ))
        }
        "DELETE" => {
            if ty == "SOA" || (ty == "NS" && rel == "@") {
                return Err(ArmError::bad(
                    "BadRequest",
                    format!("The {ty} record set at the zone apex cannot be deleted."),
                ));
            }
            let Some(old) = existing else {
                return Ok(Reply::empty(204));
            };
            preconditions(req, Some(&old))?;
            st.apply(Effect::RemoveTree(id));
            Ok(Reply::empty(200))
        }
        _ => Err(crate::process::not_served(req)),
    }
}
