//! Microsoft.ContainerRegistry (2025-11-01): checkNameAvailability, registries,
//! scopeMaps, tokens, generateCredentials, listCredentials.
//!
//! Registry names are 5-50 alphanumerics and unique across every subscription (plus
//! [`crate::FakeConfig::taken_registry_names`]). Registry, scope map and token writes
//! are LROs (`Azure-AsyncOperation`); `generateCredentials` answers 202 with
//! `Location`, whose result carries the passwords; `listCredentials` is refused while
//! `adminUserEnabled` is false.
//!
//! Invented codes and statuses: 409 `AlreadyInUse` for a taken name (Azure's message,
//! status not verified), 400 `BadRequest` for `listCredentials` without the admin
//! user, `InvalidResourceName` for bad names.

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{ArmError, ArmResult};
use crate::lro::{self, OpResult, Style};
use crate::resources::{envelope, location};
use crate::routes::Addr;
use crate::state::{det_uuid, name_ok, now_rfc3339, ptr, s, Effect, State};
use crate::{Reply, Req};

const REGISTRY_TYPE: &str = "Microsoft.ContainerRegistry/registries";

fn valid_registry_name(n: &str) -> bool {
    name_ok(
        n,
        5,
        50,
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric(),
    )
}

fn valid_child_name(n: &str) -> bool {
    name_ok(
        n,
        5,
        50,
        |c| c.is_ascii_alphanumeric() || c == '-',
        |c| c.is_ascii_alphanumeric() || c == '-',
    )
}

/// Is the name used by a registry anywhere (other than `except_id`) or taken?
fn name_taken(st: &State, name: &str, except_id: &str) -> bool {
    let except = except_id.to_ascii_lowercase();
    st.config
        .taken_registry_names
        .iter()
        .any(|t| t.eq_ignore_ascii_case(name))
        || !st
            .find(|k, v| {
                s(v, "type") == REGISTRY_TYPE
                    && s(v, "name").eq_ignore_ascii_case(name)
                    && *k != except
            })
            .is_empty()
}

/// `POST /subscriptions/{sub}/providers/Microsoft.ContainerRegistry/checkNameAvailability`.
pub(crate) fn sub_action(st: &mut State, req: &Req, rest: &[String]) -> ArmResult {
    let is_check = rest.len() == 1 && rest[0].eq_ignore_ascii_case("checkNameAvailability");
    if !is_check || req.verb != "POST" {
        return Err(crate::process::not_served(req));
    }
    let name = s(&req.body, "name");
    if !s(&req.body, "type").eq_ignore_ascii_case(REGISTRY_TYPE) {
        return Err(ArmError::invalid(format!(
            "The resource type '{}' is invalid; expected '{REGISTRY_TYPE}'.",
            s(&req.body, "type")
        )));
    }
    let body = if !valid_registry_name(name) {
        json!({"nameAvailable": false, "reason": "Invalid", "message": "The specified resource name is disallowed: 5-50 alphanumeric characters."})
    } else if name_taken(st, name, "") {
        json!({"nameAvailable": false, "reason": "AlreadyExists", "message": format!("The registry {name} is already in use.")})
    } else {
        json!({"nameAvailable": true})
    };
    Ok(Reply::json(200, body))
}

fn one_of(v: &Value, pointer: &str, allowed: &[&str]) -> Result<(), ArmError> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(x)) if allowed.contains(&x.as_str()) => Ok(()),
        Some(other) => Err(ArmError::invalid(format!(
            "The value {other} of {} is invalid; allowed values are {}.",
            pointer.trim_start_matches('/').replace('/', "."),
            allowed.join(", ")
        ))),
    }
}

pub(crate) fn handle(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let types = a.types();
    match (a.segs.len(), types.get(1).map(String::as_str)) {
        (1, _) => {
            let prefix = format!(
                "{}/providers/microsoft.containerregistry/registries/",
                a.rg_id().to_ascii_lowercase()
            );
            let value = st.find(|k, _| k.strip_prefix(&prefix).is_some_and(|r| !r.contains('/')));
            Ok(Reply::json(200, json!({ "value": value })))
        }
        (2, _) => registry(st, req, a),
        (3, Some(action)) if req.verb == "POST" => action_call(st, req, a, action),
        (3, Some("scopemaps" | "tokens")) => {
            let rid = a.id_at(0);
            if !st.has(&rid) {
                return Err(ArmError::not_found(REGISTRY_TYPE, &rid));
            }
            Ok(Reply::json(
                200,
                json!({ "value": st.children(&rid, &types[1]) }),
            ))
        }
        (4, Some("scopemaps" | "tokens")) => child(st, req, a),
        _ => Err(crate::process::not_served(req)),
    }
}

fn registry(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let name = a.name(0).unwrap_or("").to_string();
    let id = a.id_at(0);
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(REGISTRY_TYPE, &id)),
        "PUT" => {
            if !valid_registry_name(&name) {
                return Err(ArmError::bad(
                    "InvalidResourceName",
                    format!("Resource name '{name}' is invalid: registry names are 5-50 alphanumeric characters."),
                ));
            }
            if existing.is_none() && name_taken(st, &name, &id) {
                return Err(ArmError::conflict(
                    "AlreadyInUse",
                    format!("The registry DNS name {}.azurecr.io is already in use. You can check if the name is already claimed using following API: https://docs.microsoft.com/en-us/rest/api/containerregistry/registries/checknameavailability", name.to_ascii_lowercase()),
                ));
            }
            let id = existing
                .as_ref()
                .map(|e| s(e, "id").to_string())
                .unwrap_or(id);
            let loc = location(&req.body)?;
            one_of(
                &req.body,
                "/sku/name",
                &["Basic", "Standard", "Premium", "Classic"],
            )?;
            let sku = ptr(&req.body, "/sku/name");
            if sku.is_empty() {
                return Err(ArmError::invalid(
                    "sku.name is required (Basic, Standard or Premium).",
                ));
            }
            let p = req.body.get("properties").cloned().unwrap_or(json!({}));
            one_of(&p, "/publicNetworkAccess", &["Enabled", "Disabled"])?;
            one_of(&p, "/zoneRedundancy", &["Enabled", "Disabled"])?;
            one_of(&p, "/networkRuleBypassOptions", &["AzureServices", "None"])?;
            one_of(
                &p,
                "/roleAssignmentMode",
                &["LegacyRegistryPermissions", "AbacRepositoryPermissions"],
            )?;
            let mut props = json!({
                "adminUserEnabled": false, "publicNetworkAccess": "Enabled", "zoneRedundancy": "Disabled",
                "anonymousPullEnabled": false, "dataEndpointEnabled": false, "dataEndpointHostNames": [],
                "networkRuleBypassOptions": "AzureServices", "roleAssignmentMode": "LegacyRegistryPermissions",
                "privateEndpointConnections": [], "encryption": {"status": "disabled"},
                "policies": {
                    "quarantinePolicy": {"status": "disabled"},
                    "trustPolicy": {"type": "Notary", "status": "disabled"},
                    "retentionPolicy": {"days": 7, "status": "disabled"},
                    "exportPolicy": {"status": "enabled"},
                },
            });
            crate::state::deep_merge(&mut props, &p);
            props["loginServer"] = json!(format!("{}.azurecr.io", name.to_ascii_lowercase()));
            props["creationDate"] = existing
                .as_ref()
                .and_then(|e| e.pointer("/properties/creationDate").cloned())
                .unwrap_or_else(|| json!(now_rfc3339()));
            props["provisioningState"] = json!(if existing.is_some() {
                "Updating"
            } else {
                "Creating"
            });
            let mut v = envelope(&id, REGISTRY_TYPE, &loc, &req.body)?;
            v["sku"] = json!({"name": sku, "tier": sku});
            v["properties"] = props;
            st.apply(Effect::Insert(id.clone(), v));
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.ContainerRegistry",
                &loc,
                "registries.create",
                &id,
                Duration::from_secs(20),
            )
            .on_done(vec![Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Succeeded"}}),
            )])
            .on_fail(vec![Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Failed"}}),
            )]);
            let headers = lro::start(st, op, Style::Async);
            let body = st.get(&id).cloned().unwrap_or(Value::Null);
            Ok(Reply::json(if existing.is_some() { 200 } else { 201 }, body).with_headers(headers))
        }
        "DELETE" => {
            let Some(e) = existing else {
                return Ok(Reply::empty(204));
            };
            let id = s(&e, "id").to_string();
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.ContainerRegistry",
                s(&e, "location"),
                "registries.delete",
                &id,
                Duration::from_secs(20),
            )
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Both);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}

fn password(st: &mut State) -> String {
    let mut p = st.hex(40);
    p.push_str("+ACR");
    p
}

fn action_call(st: &mut State, req: &Req, a: &Addr, action: &str) -> ArmResult {
    let rid = a.id_at(0);
    let Some(reg) = st.get(&rid).cloned() else {
        return Err(ArmError::not_found(REGISTRY_TYPE, &rid));
    };
    let rid = s(&reg, "id").to_string();
    match action {
        "listcredentials" => {
            if reg.pointer("/properties/adminUserEnabled") != Some(&json!(true)) {
                return Err(ArmError::bad(
                    "BadRequest",
                    format!("The admin user is disabled for registry '{}'; enable adminUserEnabled to list credentials.", s(&reg, "name")),
                ));
            }
            let seed = rid.to_ascii_lowercase();
            Ok(Reply::json(
                200,
                json!({
                    "username": s(&reg, "name"),
                    "passwords": [
                        {"name": "password", "value": det_uuid(&format!("admin1:{seed}")).replace('-', "")},
                        {"name": "password2", "value": det_uuid(&format!("admin2:{seed}")).replace('-', "")},
                    ],
                }),
            ))
        }
        "generatecredentials" => {
            let token_id = s(&req.body, "tokenId").to_string();
            let token = st.get(&token_id).cloned().filter(|t| {
                s(t, "id")
                    .to_ascii_lowercase()
                    .starts_with(&format!("{}/tokens/", rid.to_ascii_lowercase()))
            });
            let Some(token) = token else {
                return Err(ArmError::invalid(format!(
                    "tokenId '{token_id}' does not name a token of this registry."
                )));
            };
            let which: Vec<&str> = match s(&req.body, "name") {
                "" => vec!["password1", "password2"],
                n @ ("password1" | "password2") => vec![n],
                other => {
                    return Err(ArmError::invalid(format!(
                        "name '{other}' is invalid; allowed values are password1, password2."
                    )))
                }
            };
            let now = now_rfc3339();
            let expiry = req.body.get("expiry").cloned().filter(|e| !e.is_null());
            let mut out = Vec::new();
            let mut stored: Vec<Value> = token
                .pointer("/properties/credentials/passwords")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for n in which {
                let mut entry = json!({"name": n, "creationTime": now});
                if let Some(e) = &expiry {
                    entry["expiry"] = e.clone();
                }
                stored.retain(|p| s(p, "name") != n);
                stored.push(entry.clone());
                entry["value"] = json!(password(st));
                out.push(entry);
            }
            st.apply(Effect::Merge(
                s(&token, "id").to_string(),
                json!({"properties": {"credentials": {"passwords": stored}}}),
            ));
            let result = json!({"username": s(&token, "name"), "passwords": out});
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.ContainerRegistry",
                s(&reg, "location"),
                "registries.generateCredentials",
                &rid,
                Duration::from_secs(2),
            )
            .result(OpResult::Fixed(result));
            let headers = lro::start(st, op, Style::Location);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}

fn child(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let rid = a.id_at(0);
    let Some(reg) = st.get(&rid).cloned() else {
        return Err(ArmError::not_found(REGISTRY_TYPE, &rid));
    };
    let rid = s(&reg, "id").to_string();
    let is_token = a.types()[1] == "tokens";
    let (seg, ty) = if is_token {
        ("tokens", format!("{REGISTRY_TYPE}/tokens"))
    } else {
        ("scopeMaps", format!("{REGISTRY_TYPE}/scopeMaps"))
    };
    let name = a.name(1).unwrap_or("").to_string();
    let id = format!("{rid}/{seg}/{name}");
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(&ty, &id)),
        "PUT" => {
            if !valid_child_name(&name) {
                return Err(ArmError::bad(
                    "InvalidResourceName",
                    format!("Resource name '{name}' is invalid: 5-50 letters, digits or '-'."),
                ));
            }
            let p = req.body.get("properties").cloned().unwrap_or(json!({}));
            let mut props = p.clone();
            if is_token {
                let sm = s(&p, "scopeMapId");
                let ok = !sm.is_empty()
                    && st.has(sm)
                    && sm
                        .to_ascii_lowercase()
                        .starts_with(&format!("{}/scopemaps/", rid.to_ascii_lowercase()));
                if !ok {
                    return Err(ArmError::invalid(format!(
                        "scopeMapId '{sm}' does not name a scope map of this registry."
                    )));
                }
                one_of(&p, "/status", &["enabled", "disabled"])?;
                if props.get("status").is_none() {
                    props["status"] = json!("enabled");
                }
                let creds = existing
                    .as_ref()
                    .and_then(|e| e.pointer("/properties/credentials").cloned())
                    .unwrap_or(json!({"certificates": [], "passwords": []}));
                props["credentials"] = creds;
            } else {
                let actions = p
                    .get("actions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let valid = !actions.is_empty()
                    && actions.iter().all(|x| {
                        x.as_str().is_some_and(|s| {
                            (s.starts_with("repositories/") || s.starts_with("gateway/"))
                                && s.split('/').count() >= 3
                        })
                    });
                if !valid {
                    return Err(ArmError::invalid(
                        "properties.actions must be a non-empty list like 'repositories/<repository>/content/read'.",
                    ));
                }
                props["type"] = json!("UserDefined");
            }
            props["creationDate"] = existing
                .as_ref()
                .and_then(|e| e.pointer("/properties/creationDate").cloned())
                .unwrap_or_else(|| json!(now_rfc3339()));
            props["provisioningState"] = json!(if existing.is_some() {
                "Updating"
            } else {
                "Creating"
            });
            st.apply(Effect::Insert(
                id.clone(),
                json!({"id": id, "name": name, "type": ty, "properties": props}),
            ));
            let kind = if is_token {
                "registries.tokens.create"
            } else {
                "registries.scopeMaps.create"
            };
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.ContainerRegistry",
                s(&reg, "location"),
                kind,
                &id,
                Duration::from_secs(2),
            )
            .on_done(vec![Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Succeeded"}}),
            )])
            .on_fail(vec![Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Failed"}}),
            )]);
            let headers = lro::start(st, op, Style::Async);
            let body = st.get(&id).cloned().unwrap_or(Value::Null);
            Ok(Reply::json(if existing.is_some() { 200 } else { 201 }, body).with_headers(headers))
        }
        "DELETE" => {
            if existing.is_none() {
                return Ok(Reply::empty(204));
            }
            let kind = if is_token {
                "registries.tokens.delete"
            } else {
                "registries.scopeMaps.delete"
            };
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.ContainerRegistry",
                s(&reg, "location"),
                kind,
                &id,
                Duration::from_secs(2),
            )
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Both);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}
