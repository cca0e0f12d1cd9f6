//! Microsoft.ManagedIdentity userAssignedIdentities and federatedIdentityCredentials
//! (2024-11-30), both synchronous.
//!
//! An identity gets invented `principalId`, `clientId` and `tenantId`; its principal
//! becomes visible to role assignments after the configured replication delay.
//! Federated credentials: name pattern `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`, `issuer`
//! (https), `subject` and `audiences` required, at most 20 per identity, one
//! issuer+subject pair per identity, and no concurrent writes on one identity: a write
//! holds the identity for [`crate::FakeConfig::fic_write_window`] before it is answered,
//! and a second write meanwhile gets 409
//! `ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`.
//!
//! Invented codes: `BadRequest` for credential field errors and the limit.

use serde_json::{json, Value};

use crate::error::{ArmError, ArmResult};
use crate::resources::{envelope, location};
use crate::routes::Addr;
use crate::state::{name_ok, s, Effect, State};
use crate::{Reply, Req};

const IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";
const FIC_TYPE: &str =
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials";
const MAX_FICS: usize = 20;

pub(crate) fn handle(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    match (a.segs.len(), a.types().get(1).map(String::as_str)) {
        (1, _) => {
            let prefix = format!(
                "{}/providers/microsoft.managedidentity/userassignedidentities/",
                a.rg_id().to_ascii_lowercase()
            );
            let value = st.find(|k, _| k.strip_prefix(&prefix).is_some_and(|r| !r.contains('/')));
            Ok(Reply::json(200, json!({ "value": value })))
        }
        (2, _) => identity(st, req, a),
        (3, Some("federatedidentitycredentials")) => {
            let iid = a.id_at(0);
            if !st.has(&iid) {
                return Err(ArmError::not_found(IDENTITY_TYPE, &iid));
            }
            Ok(Reply::json(
                200,
                json!({ "value": st.children(&iid, "federatedidentitycredentials") }),
            ))
        }
        (4, Some("federatedidentitycredentials")) => fic(st, req, a),
        _ => Err(crate::process::not_served(req)),
    }
}

fn identity(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let name = a.name(0).unwrap_or("").to_string();
    let id = a.id_at(0);
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(IDENTITY_TYPE, &id)),
        "PUT" | "PATCH" => {
            if req.verb == "PATCH" && existing.is_none() {
                return Err(ArmError::not_found(IDENTITY_TYPE, &id));
            }
            let valid = name_ok(
                &name,
                3,
                128,
                |c| c.is_ascii_alphanumeric(),
                |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
            );
            if !valid {
                return Err(ArmError::bad(
                    "InvalidResourceName",
                    format!("Resource name '{name}' is invalid. The name can be between 3 and 128 characters long and can contain only letters, numbers, hyphens and underscores, starting with a letter or number."),
                ));
            }
            let id = existing
                .as_ref()
                .map(|e| s(e, "id").to_string())
                .unwrap_or(id);
            let loc = match (&existing, req.verb.as_str()) {
                (Some(e), "PATCH") => s(e, "location").to_string(),
                _ => location(&req.body)?,
            };
            let scope = crate::state::ptr(&req.body, "/properties/isolationScope");
            if !matches!(scope, "" | "None" | "Regional") {
                return Err(ArmError::invalid(format!(
                    "isolationScope '{scope}' is invalid; allowed values are None, Regional."
                )));
            }
            let keep = |f: &str| {
                existing
                    .as_ref()
                    .and_then(|e| e["properties"].get(f).cloned())
            };
            let principal = keep("principalId").unwrap_or_else(|| json!(st.uuid()));
            let client = keep("clientId").unwrap_or_else(|| json!(st.uuid()));
            let mut v = envelope(&id, IDENTITY_TYPE, &loc, &req.body)?;
            if req.verb == "PATCH" && v.get("tags").is_none() {
                if let Some(t) = existing.as_ref().and_then(|e| e.get("tags")) {
                    v["tags"] = t.clone();
                }
            }
            v["properties"] = json!({
                "tenantId": st.config.tenant_id,
                "principalId": principal,
                "clientId": client,
            });
            if !scope.is_empty() {
                v["properties"]["isolationScope"] = json!(scope);
            }
            st.add_principal(principal.as_str().unwrap_or(""));
            st.apply(Effect::Insert(id, v.clone()));
            Ok(Reply::json(if existing.is_some() { 200 } else { 201 }, v))
        }
        "DELETE" => match existing {
            None => Ok(Reply::empty(204)),
            Some(e) => {
                st.apply(Effect::RemoveTree(s(&e, "id").to_string()));
                Ok(Reply::empty(200))
            }
        },
        _ => Err(crate::process::not_served(req)),
    }
}

fn concurrent(st: &mut State, identity_key: &str, identity_id: &str) -> Result<(), ArmError> {
    let injected = if st.fic_conflicts_left > 0 {
        st.fic_conflicts_left -= 1;
        true
    } else {
        false
    };
    if injected || st.fic_writing.contains(identity_key) {
        return Err(ArmError::conflict(
            "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
            format!("Too many Federated Identity Credentials are written concurrently for the managed identity '{identity_id}'. Concurrent Federated Identity Credentials writes under the same managed identity are not supported."),
        ));
    }
    Ok(())
}

fn hold(st: &mut State, reply: Reply, identity_key: &str) -> Reply {
    let window = st.config.fic_write_window;
    if window.is_zero() {
        return reply;
    }
    st.fic_writing.insert(identity_key.to_string());
    Reply {
        hold: Some((window, identity_key.to_string())),
        ..reply
    }
}

fn fic(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let iid = a.id_at(0);
    let Some(identity) = st.get(&iid).cloned() else {
        return Err(ArmError::not_found(IDENTITY_TYPE, &iid));
    };
    let iid = s(&identity, "id").to_string();
    let ikey = iid.to_ascii_lowercase();
    let name = a.name(1).unwrap_or("").to_string();
    let id = format!("{iid}/federatedIdentityCredentials/{name}");
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(FIC_TYPE, &id)),
        "PUT" => {
            let valid = name_ok(
                &name,
                3,
                120,
                |c| c.is_ascii_alphanumeric(),
                |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
            );
            if !valid {
                return Err(ArmError::bad(
                    "BadRequest",
                    format!("The federated identity credential name '{name}' is invalid: 3-120 characters, letters, digits, '-' or '_', starting with a letter or digit."),
                ));
            }
            let p = req.body.get("properties").cloned().unwrap_or(json!({}));
            let issuer = s(&p, "issuer");
            let subject = s(&p, "subject");
            let audiences = p
                .get("audiences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !issuer.starts_with("https://") {
                return Err(ArmError::bad(
                    "BadRequest",
                    "properties.issuer is required and must be an https URL.",
                ));
            }
            if subject.is_empty() {
                return Err(ArmError::bad(
                    "BadRequest",
                    "properties.subject is required.",
                ));
            }
            if audiences.is_empty()
                || !audiences
                    .iter()
                    .all(|x| x.as_str().is_some_and(|s| !s.is_empty()))
            {
                return Err(ArmError::bad(
                    "BadRequest",
                    "properties.audiences is required: a non-empty array of strings.",
                ));
            }
            let siblings = st.children(&iid, "federatedidentitycredentials");
            let others: Vec<&Value> = siblings
                .iter()
                .filter(|f| !s(f, "name").eq_ignore_ascii_case(&name))
                .collect();
            if others.iter().any(|f| {
                crate::state::ptr(f, "/properties/issuer") == issuer
                    && crate::state::ptr(f, "/properties/subject") == subject
            }) {
                return Err(ArmError::bad(
                    "BadRequest",
                    "A federated identity credential with the same issuer and subject already exists on this identity.",
                ));
            }
            if existing.is_none() && others.len() >= MAX_FICS {
                return Err(ArmError::bad(
                    "BadRequest",
                    format!("The managed identity already has the maximum of {MAX_FICS} federated identity credentials."),
                ));
            }
            concurrent(st, &ikey, &iid)?;
            let v = json!({
                "id": id, "name": name, "type": FIC_TYPE,
                "properties": {"issuer": issuer, "subject": subject, "audiences": audiences},
            });
            st.apply(Effect::Insert(id, v.clone()));
            let reply = Reply::json(if existing.is_some() { 200 } else { 201 }, v);
            Ok(hold(st, reply, &ikey))
        }
        "DELETE" => {
            if existing.is_none() {
                return Ok(Reply::empty(204));
            }
            concurrent(st, &ikey, &iid)?;
            st.apply(Effect::RemoveTree(id));
            Ok(hold(st, Reply::empty(200), &ikey))
        }
        _ => Err(crate::process::not_served(req)),
    }
}
