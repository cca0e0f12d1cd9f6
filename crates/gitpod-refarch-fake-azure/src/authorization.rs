//! Microsoft.Authorization roleAssignments (2022-04-01) at any scope, synchronous.
//!
//! Stored under their scope (so deleting the scope's resource or resource group
//! removes them). Modelled: GUID names, built-in role ids only (400
//! `RoleDefinitionDoesNotExist`), 409 `RoleAssignmentExists` for the same
//! (scope, role, principal) under another name, 400 `RoleAssignmentUpdateNotPermitted`
//! for a changed principal or role under the same name, 400 `PrincipalNotFound` for
//! unknown principals and, [`crate::FakeConfig::principal_not_found_attempts`] times,
//! for new ones (Entra replication delay; sent even with `principalType`). The list
//! honours `$filter=atScope()`, `principalId eq '…'` and `assignedTo('…')`, and leaves
//! a new assignment out of its first [`crate::FakeConfig::role_list_delay`] answers
//! (ARM's eventually consistent reads).

use serde_json::{json, Value};

use crate::error::{ArmError, ArmResult};
use crate::routes::Route;
use crate::state::{is_guid, now_rfc3339, ptr, s, Effect, State};
use crate::{Reply, Req};

const RA_TYPE: &str = "Microsoft.Authorization/roleAssignments";

/// Built-in role definition ids the fake knows.
const ROLES: &[(&str, &str)] = &[
    ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader"),
    ("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor"),
    ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
    (
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "User Access Administrator",
    ),
    (
        "befefa01-2a29-4197-83a8-272ff33ce314",
        "DNS Zone Contributor",
    ),
    (
        "b12aa53e-6015-4669-85d0-8515ebb3ae7f",
        "Private DNS Zone Contributor",
    ),
    (
        "4d97b98b-1d4f-4787-a291-c67834d212e7",
        "Network Contributor",
    ),
    ("7f951dda-4ed3-4680-a7ca-43fe172d538d", "AcrPull"),
    ("8311e382-0749-4cb8-b61a-304f252e45ec", "AcrPush"),
    (
        "2a1e307c-b015-4ebd-883e-5b7698a07328",
        "Container Registry Repository Writer",
    ),
    (
        "f1a07417-d97a-45cb-824c-7a7467783830",
        "Managed Identity Operator",
    ),
    (
        "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b",
        "Azure Kubernetes Service RBAC Cluster Admin",
    ),
    (
        "3498e952-d568-435e-9b2c-8d77e338d7f7",
        "Azure Kubernetes Service RBAC Admin",
    ),
    (
        "a7ffa36f-339b-4b5c-8bdf-e2c188b2c0eb",
        "Azure Kubernetes Service RBAC Writer",
    ),
    (
        "7f6c6a51-bcf8-42ba-9220-52d62157d7db",
        "Azure Kubernetes Service RBAC Reader",
    ),
    (
        "4abbcc35-e782-43d8-92c5-2d3f1bd2253f",
        "Azure Kubernetes Service Cluster User Role",
    ),
    (
        "0ab0b1a8-8aac-4efd-b8c2-3ee1fb270be8",
        "Azure Kubernetes Service Cluster Admin Role",
    ),
];

/// The role GUID of a role definition id, if it is well formed.
fn role_guid(role_definition_id: &str) -> Option<String> {
    let parts: Vec<&str> = role_definition_id
        .trim_start_matches('/')
        .split('/')
        .collect();
    let tail = match parts.as_slice() {
        ["subscriptions", _, "providers", ns, "roleDefinitions", g] => Some((ns, g)),
        ["providers", ns, "roleDefinitions", g] => Some((ns, g)),
        _ => None,
    };
    tail.filter(|(ns, g)| ns.eq_ignore_ascii_case("Microsoft.Authorization") && is_guid(g))
        .map(|(_, g)| g.to_ascii_lowercase())
}

/// Does the scope exist?
fn scope_exists(st: &State, scope: &str) -> bool {
    let parts: Vec<&str> = scope.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["subscriptions", sub] => st
            .config
            .subscriptions
            .iter()
            .any(|x| x.eq_ignore_ascii_case(sub)),
        _ => st.has(scope),
    }
}

fn list(st: &mut State, req: &Req, scope: &str) -> ArmResult {
    let filter = req.q("$filter").unwrap_or("");
    let at_scope = filter.contains("atScope()");
    let principal = filter.split(" and ").find_map(|c| {
        let c = c.trim();
        c.strip_prefix("principalId eq '")
            .or_else(|| c.strip_prefix("assignedTo('"))
            .map(|r| {
                r.trim_end_matches(')')
                    .trim_end_matches('\'')
                    .to_ascii_lowercase()
            })
    });
    let want = scope.to_ascii_lowercase();
    let value: Vec<Value> = st.find(|k, v| {
        if s(v, "type") != RA_TYPE
            || !k.contains("/providers/microsoft.authorization/roleassignments/")
        {
            return false;
        }
        let sc = ptr(v, "/properties/scope").to_ascii_lowercase();
        let above = want == sc || want.starts_with(&format!("{sc}/"));
        let below = sc.starts_with(&format!("{want}/"));
        let scope_ok = above || (!at_scope && below);
        let principal_ok = principal
            .as_deref()
            .is_none_or(|p| ptr(v, "/properties/principalId").eq_ignore_ascii_case(p));
        scope_ok && principal_ok
    });
    // Eventual consistency: a new assignment is left out of its first lists.
    let value: Vec<Value> = value
        .into_iter()
        .filter(|v| {
            let key = s(v, "id").to_ascii_lowercase();
            match st.role_list_hidden.get_mut(&key) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            }
        })
        .collect();
    Ok(Reply::json(200, json!({ "value": value })))
}

pub(crate) fn handle(st: &mut State, req: &Req) -> ArmResult {
    let Route::RoleAssignment { scope, name } = &req.route else {
        return Err(crate::process::not_served(req));
    };
    let Some(name) = name else {
        return if req.verb == "GET" {
            list(st, req, scope)
        } else {
            Err(crate::process::not_served(req))
        };
    };
    let id = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}");
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => existing.map(|v| Reply::json(200, v)).ok_or_else(|| {
            ArmError::new(
                404,
                "RoleAssignmentNotFound",
                format!("The role assignment '{name}' is not found."),
            )
        }),
        "DELETE" => match existing {
            None => Ok(Reply::empty(204)),
            Some(v) => {
                st.role_list_hidden.remove(&id.to_ascii_lowercase());
                st.apply(Effect::RemoveTree(id));
                Ok(Reply::json(200, v))
            }
        },
        "PUT" => put(st, req, scope, name, &id, existing),
        _ => Err(crate::process::not_served(req)),
    }
}

fn put(
    st: &mut State,
    req: &Req,
    scope: &str,
    name: &str,
    id: &str,
    existing: Option<Value>,
) -> ArmResult {
    if !is_guid(name) {
        return Err(ArmError::bad(
            "InvalidRoleAssignmentId",
            format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."),
        ));
    }
    if scope.is_empty() || !scope_exists(st, scope) {
        return Err(ArmError::new(
            404,
            "ResourceNotFound",
            format!("The scope '{scope}' of the role assignment was not found."),
        ));
    }
    let p = req.body.get("properties").cloned().unwrap_or(json!({}));
    let role_def = s(&p, "roleDefinitionId");
    let Some(role) = role_guid(role_def) else {
        return Err(ArmError::bad(
            "InvalidRoleDefinitionId",
            format!("The role definition ID '{role_def}' is not valid."),
        ));
    };
    if !ROLES.iter().any(|(g, _)| *g == role) {
        return Err(ArmError::bad(
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{role}' does not exist."),
        ));
    }
    let principal = s(&p, "principalId").to_ascii_lowercase();
    if !is_guid(&principal) {
        return Err(ArmError::bad(
            "InvalidPrincipalId",
            format!(
                "A valid principal ID must be provided for role assignment (got '{principal}')."
            ),
        ));
    }
    let ptype = s(&p, "principalType");
    if !matches!(
        ptype,
        "" | "User" | "Group" | "ServicePrincipal" | "ForeignGroup" | "Device"
    ) {
        return Err(ArmError::bad(
            "InvalidPrincipalType",
            format!("The principal type '{ptype}' is not valid."),
        ));
    }
    if let Some(old) = &existing {
        let same = role_guid(ptr(old, "/properties/roleDefinitionId")).as_deref()
            == Some(role.as_str())
            && ptr(old, "/properties/principalId").eq_ignore_ascii_case(&principal);
        if !same {
            return Err(ArmError::bad(
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            ));
        }
    } else {
        let want_scope = scope.to_ascii_lowercase();
        let duplicate = st.find(|_, v| {
            s(v, "type") == RA_TYPE
                && ptr(v, "/properties/scope").to_ascii_lowercase() == want_scope
                && ptr(v, "/properties/principalId").eq_ignore_ascii_case(&principal)
                && role_guid(ptr(v, "/properties/roleDefinitionId")).as_deref()
                    == Some(role.as_str())
        });
        if !duplicate.is_empty() {
            return Err(ArmError::conflict(
                "RoleAssignmentExists",
                "The role assignment already exists.",
            ));
        }
    }
    let tenant = st.config.tenant_id.clone();
    let not_found = || {
        ArmError::bad(
            "PrincipalNotFound",
            format!("Principal {} does not exist in the directory {tenant}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype", principal.replace('-', "")),
        )
    };
    match st.principals.get_mut(&principal) {
        None => return Err(not_found()),
        Some(pr) if pr.not_found_left > 0 => {
            pr.not_found_left -= 1;
            return Err(not_found());
        }
        Some(_) => {}
    }
    let kind = st
        .principals
        .get(&principal)
        .map(|p| p.kind)
        .unwrap_or("ServicePrincipal");
    let now = now_rfc3339();
    let created = existing
        .as_ref()
        .map(|o| ptr(o, "/properties/createdOn").to_string())
        .unwrap_or_else(|| now.clone());
    let mut props = json!({
        "roleDefinitionId": role_def,
        "principalId": principal,
        "principalType": if ptype.is_empty() { kind } else { ptype },
        "scope": scope,
        "createdOn": created,
        "updatedOn": now,
        "createdBy": null,
        "updatedBy": null,
        "delegatedManagedIdentityResourceId": null,
    });
    for k in ["description", "condition", "conditionVersion"] {
        if let Some(v) = p.get(k).filter(|v| !v.is_null()) {
            props[k] = v.clone();
        }
    }
    let v = json!({"id": id, "name": name, "type": RA_TYPE, "properties": props});
    st.apply(Effect::Insert(id.to_string(), v.clone()));
    if existing.is_none() && st.config.role_list_delay > 0 {
        let delay = st.config.role_list_delay;
        st.role_list_hidden.insert(id.to_ascii_lowercase(), delay);
    }
    Ok(Reply::json(if existing.is_some() { 200 } else { 201 }, v))
}
