//! Microsoft.Resources (2025-04-01): resource groups and resource providers, plus the
//! helpers every tracked resource shares (location, tags, registration checks).

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{ArmError, ArmResult};
use crate::lro::{self, OpResult, Style};
use crate::routes::{canonical_ns, Route, NAMESPACES};
use crate::state::{s, Effect, Registration, State};
use crate::{Reply, Req};

/// A resource group's canonical id.
pub(crate) fn rg_id(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}")
}

/// The resource group, or ARM's 404.
pub(crate) fn require_rg(st: &State, sub: &str, rg: &str) -> Result<Value, ArmError> {
    st.get(&rg_id(sub, rg)).cloned().ok_or_else(|| {
        ArmError::new(
            404,
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        )
    })
}

/// The normalised `location` of a tracked resource body, or 400 `LocationRequired`.
pub(crate) fn location(body: &Value) -> Result<String, ArmError> {
    let loc = s(body, "location");
    if loc.trim().is_empty() {
        return Err(ArmError::bad(
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    }
    Ok(loc.to_ascii_lowercase().replace(' ', ""))
}

/// `location` must be `global` (DNS zones, private DNS zones and links).
pub(crate) fn global_location(body: &Value, type_name: &str) -> Result<(), ArmError> {
    let loc = location(body)?;
    if loc != "global" {
        return Err(ArmError::bad(
            "LocationNotAvailableForResourceType",
            format!("The provided location '{loc}' is not available for resource type '{type_name}'. List of available regions for the resource type is 'global'."),
        ));
    }
    Ok(())
}

/// The `tags` of a body: an object of strings (or absent).
pub(crate) fn tags(body: &Value) -> Result<Option<Value>, ArmError> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => {
            Ok(Some(Value::Object(m.clone())))
        }
        Some(_) => Err(ArmError::bad(
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'tags' must be an object of strings.",
        )),
    }
}

/// The common envelope of a tracked resource.
pub(crate) fn envelope(
    id: &str,
    type_name: &str,
    location: &str,
    body: &Value,
) -> ArmResult<Value> {
    let name = id.rsplit('/').next().unwrap_or("");
    let mut v = json!({"id": id, "name": name, "type": type_name, "location": location});
    if let Some(t) = tags(body)? {
        v["tags"] = t;
    }
    Ok(v)
}

/// The registration state of a namespace in a subscription.
pub(crate) fn registration_state(st: &State, sub: &str, ns: &str) -> &'static str {
    let key = (sub.to_ascii_lowercase(), ns.to_ascii_lowercase());
    if let Some(r) = st.registrations.get(&key) {
        return r.state;
    }
    let default = NAMESPACES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(ns))
        .map(|(_, registered)| *registered);
    match default {
        Some(true) => "Registered",
        Some(false) if st.config.providers_registered => "Registered",
        _ => "NotRegistered",
    }
}

/// 409 `MissingSubscriptionRegistration` unless the namespace is `Registered`.
pub(crate) fn require_registered(st: &State, sub: &str, ns: &str) -> Result<(), ArmError> {
    if registration_state(st, sub, ns) == "Registered" {
        return Ok(());
    }
    Err(ArmError::conflict(
        "MissingSubscriptionRegistration",
        format!("The subscription is not registered to use namespace '{ns}'. See https://aka.ms/rps-not-found for how to register subscriptions."),
    ))
}

fn resource_types(ns: &str) -> Vec<Value> {
    let types: &[&str] = match ns {
        "Microsoft.Network" => &[
            "virtualNetworks",
            "virtualNetworks/subnets",
            "dnszones",
            "privateDnsZones",
            "privateDnsZones/virtualNetworkLinks",
        ],
        "Microsoft.ContainerService" => &["managedClusters", "managedClusters/agentPools"],
        "Microsoft.ManagedIdentity" => &[
            "userAssignedIdentities",
            "userAssignedIdentities/federatedIdentityCredentials",
        ],
        "Microsoft.ContainerRegistry" => {
            &["registries", "registries/scopeMaps", "registries/tokens"]
        }
        "Microsoft.DBforMySQL" => &[
            "flexibleServers",
            "flexibleServers/databases",
            "flexibleServers/configurations",
            "flexibleServers/firewallRules",
        ],
        "Microsoft.Authorization" => &["roleAssignments"],
        "Microsoft.Resources" => &["resourceGroups"],
        _ => &[],
    };
    types
        .iter()
        .map(|t| {
            let first = t.split('/').next().unwrap_or("").to_ascii_lowercase();
            let v = crate::routes::api_version(&ns.to_ascii_lowercase(), &first).unwrap_or("");
            json!({"resourceType": t, "locations": [], "apiVersions": [v]})
        })
        .collect()
}

fn provider_body(st: &State, sub: &str, ns: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{sub}/providers/{ns}"),
        "namespace": ns,
        "registrationState": registration_state(st, sub, ns),
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": resource_types(ns),
    })
}

fn rg_not_found(rg: &str) -> ArmError {
    ArmError::new(
        404,
        "ResourceGroupNotFound",
        format!("Resource group '{rg}' could not be found."),
    )
}

fn valid_rg_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=90).contains(&n)
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

pub(crate) fn handle(st: &mut State, req: &Req) -> ArmResult {
    match &req.route {
        Route::ResourceGroups { sub } => {
            if req.verb != "GET" {
                return Err(crate::process::not_served(req));
            }
            let prefix = format!(
                "/subscriptions/{}/resourcegroups/",
                sub.to_ascii_lowercase()
            );
            let value = st.find(|k, _| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'));
            Ok(Reply::json(200, json!({ "value": value })))
        }
        Route::ResourceGroup { sub, rg } => resource_group(st, req, sub, rg),
        Route::RgResources { sub, rg } => {
            require_rg(st, sub, rg)?;
            let prefix = format!("{}/providers/", rg_id(sub, rg).to_ascii_lowercase());
            let value: Vec<Value> = st
                .find(|k, _| {
                    k.strip_prefix(&prefix).is_some_and(|rest| {
                        rest.split('/').count() == 3
                            && !rest.starts_with("microsoft.authorization/")
                    })
                })
                .into_iter()
                .map(|v| {
                    let mut out = json!({"id": v["id"], "name": v["name"], "type": v["type"]});
                    if let Some(l) = v.get("location") {
                        out["location"] = l.clone();
                    }
                    if let Some(t) = v.get("tags") {
                        out["tags"] = t.clone();
                    }
                    out
                })
                .collect();
            Ok(Reply::json(200, json!({ "value": value })))
        }
        Route::Providers { sub } => {
            let value: Vec<Value> = NAMESPACES
                .iter()
                .map(|(ns, _)| provider_body(st, sub, ns))
                .collect();
            Ok(Reply::json(200, json!({ "value": value })))
        }
        Route::Provider { sub, ns, register } => {
            let Some(ns) = canonical_ns(ns) else {
                return Err(ArmError::new(
                    404,
                    "InvalidResourceNamespace",
                    format!("The resource namespace '{ns}' is invalid."),
                ));
            };
            let key = (sub.to_ascii_lowercase(), ns.to_ascii_lowercase());
            match (req.verb.as_str(), register) {
                ("GET", false) => {
                    if let Some(r) = st.registrations.get_mut(&key) {
                        if r.state == "Registering" {
                            r.reads_left = r.reads_left.saturating_sub(1);
                            if r.reads_left == 0 {
                                r.state = "Registered";
                            }
                        }
                    }
                    Ok(Reply::json(200, provider_body(st, sub, ns)))
                }
                ("POST", true) => {
                    if registration_state(st, sub, ns) != "Registered" {
                        let reads = st.config.registration_reads;
                        st.registrations.insert(
                            key,
                            Registration {
                                state: if reads == 0 {
                                    "Registered"
                                } else {
                                    "Registering"
                                },
                                reads_left: reads,
                            },
                        );
                    }
                    Ok(Reply::json(200, provider_body(st, sub, ns)))
                }
                _ => Err(crate::process::not_served(req)),
            }
        }
        _ => Err(crate::process::not_served(req)),
    }
}

fn resource_group(st: &mut State, req: &Req, sub: &str, rg: &str) -> ArmResult {
    let id = rg_id(sub, rg);
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| rg_not_found(rg)),
        "HEAD" => Ok(Reply::empty(if existing.is_some() { 204 } else { 404 })),
        "PUT" | "PATCH" => {
            if !valid_rg_name(rg) {
                return Err(ArmError::bad(
                    "InvalidResourceGroupName",
                    format!("The resource group name '{rg}' is invalid: 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'."),
                ));
            }
            if let Some(e) = &existing {
                if s(&e["properties"], "provisioningState") == "Deleting" {
                    return Err(ArmError::conflict(
                        "ResourceGroupBeingDeleted",
                        format!("The resource group '{rg}' is in deprovisioning state and cannot perform this operation."),
                    ));
                }
            }
            if req.verb == "PATCH" {
                let Some(mut e) = existing else {
                    return Err(rg_not_found(rg));
                };
                if let Some(t) = tags(&req.body)? {
                    e["tags"] = t;
                }
                st.apply(Effect::Insert(id, e.clone()));
                return Ok(Reply::json(200, e));
            }
            let loc = location(&req.body)?;
            if let Some(e) = &existing {
                if s(e, "location") != loc {
                    return Err(ArmError::conflict(
                        "InvalidResourceGroupLocation",
                        format!("Invalid resource group location '{loc}'. The Resource group already exists in location '{}'.", s(e, "location")),
                    ));
                }
            }
            let name = existing
                .as_ref()
                .map(|e| s(e, "name").to_string())
                .unwrap_or_else(|| rg.to_string());
            let id = rg_id(sub, &name);
            let mut v = envelope(&id, "Microsoft.Resources/resourceGroups", &loc, &req.body)?;
            if let Some(m) = req.body.get("managedBy").filter(|m| m.is_string()) {
                v["managedBy"] = m.clone();
            }
            v["properties"] = json!({"provisioningState": "Succeeded"});
            st.apply(Effect::Insert(id, v.clone()));
            Ok(Reply::json(if existing.is_some() { 200 } else { 201 }, v))
        }
        "DELETE" => {
            let Some(e) = existing else {
                return Err(rg_not_found(rg));
            };
            let loc = s(&e, "location").to_string();
            let real_id = s(&e, "id").to_string();
            st.apply(Effect::Merge(
                real_id.clone(),
                json!({"properties": {"provisioningState": "Deleting"}}),
            ));
            let op = lro::new_op(
                st,
                sub,
                "Microsoft.Resources",
                &loc,
                "resourceGroups.delete",
                &real_id,
                Duration::from_secs(60),
            )
            .on_done(vec![Effect::RemoveTree(real_id.clone())])
            .on_fail(vec![Effect::Merge(
                real_id,
                json!({"properties": {"provisioningState": "Succeeded"}}),
            )])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Location);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}
