//! User-assigned managed identities and role assignments, and the cluster's identity.
//!
//! The cluster identity `id-N-cluster` is the AKS control plane's user-assigned
//! identity; it holds Network Contributor on the VNet `vnet-N` (AKS manages the load
//! balancer and, with kubenet, the route table in the node subnet). The grant needs the
//! VNet, which is built at the same time as the identity: [`ensure`] grants it when the
//! VNet is there, [`observe`] reports a missing grant as drift once it is, and the
//! cluster ([`crate::cluster`]) grants it before it creates AKS.
//!
//! The helpers here serve every module that needs an identity or a role:
//!
//! - [`get_identity`], [`ensure_identity`], [`delete_identity`]: an identity tagged for
//!   the installation (a same-named one that is not is never adopted or deleted).
//! - [`find_role`], [`ensure_role`], [`delete_role`]: one role on one scope for one
//!   principal. The assignment's name is deterministic
//!   ([`crate::context::role_assignment_name`]); the request always says
//!   `principalType: ServicePrincipal`, so a brand-new identity needs no directory
//!   lookup. `409 RoleAssignmentExists` (the same role given under another name) is
//!   adopted: the assignment is listed by scope and principal and used as it is.
//!   `400 PrincipalNotFound` (an identity Entra ID has not replicated yet) is
//!   [`gitpod_refarch::ErrorKind::PropagationDelay`], which the engine retries.

use std::collections::BTreeMap;

use gitpod_refarch::provider::{Observed, Progress};
use gitpod_refarch::resource::{ClusterIdentitySpec, Desired, Output};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arm::code_of;
use crate::context::{
    absent_if_foreign, cluster_identity_name, role_assignment_name, tags_of, Context,
    AUTHORIZATION_API, MSI_API, NETWORK_API, NETWORK_CONTRIBUTOR,
};

/// A user-assigned identity (`Microsoft.ManagedIdentity/userAssignedIdentities`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Resource id (read-only).
    #[serde(default, skip_serializing)]
    pub id: String,
    /// Location.
    pub location: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Properties (read-only ids).
    #[serde(default, skip_serializing)]
    pub properties: IdentityProperties,
}

/// The read-only ids of an identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProperties {
    /// Object id of its service principal (what roles are given to).
    #[serde(default)]
    pub principal_id: String,
    /// Application (client) id (what workloads name).
    #[serde(default)]
    pub client_id: String,
    /// Tenant.
    #[serde(default)]
    pub tenant_id: String,
}

/// A role assignment request (`Microsoft.Authorization/roleAssignments`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentRequest {
    /// The properties.
    pub properties: RoleAssignmentRequestProperties,
}

/// What a role assignment grants to whom.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentRequestProperties {
    /// `/subscriptions/S/providers/Microsoft.Authorization/roleDefinitions/<role>`.
    pub role_definition_id: String,
    /// The principal's object id.
    pub principal_id: String,
    /// Always `ServicePrincipal` (identities and the deployer's application).
    pub principal_type: String,
    /// Which installation made it.
    pub description: String,
}

/// A role assignment as ARM reports it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    /// Resource id.
    #[serde(default)]
    pub id: String,
    /// Name (a GUID).
    #[serde(default)]
    pub name: String,
    /// Properties.
    #[serde(default)]
    pub properties: RoleAssignmentProperties,
}

/// The properties of a role assignment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentProperties {
    /// The role definition's id.
    #[serde(default)]
    pub role_definition_id: String,
    /// The principal.
    #[serde(default)]
    pub principal_id: String,
    /// The scope (read-only).
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct List<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
}

/// The request body of `role` for `principal` (see the module docs).
pub fn role_request(
    c: &Context,
    role: &str,
    principal: &str,
    installation: &str,
) -> RoleAssignmentRequest {
    RoleAssignmentRequest {
        properties: RoleAssignmentRequestProperties {
            role_definition_id: c.role_definition_id(role),
            principal_id: principal.to_string(),
            principal_type: "ServicePrincipal".into(),
            description: format!("gitpod-refarch installation {installation}"),
        },
    }
}

/// The identity `name` of `installation`: `None` when absent, [`foreign`](crate::context::foreign) when it is
/// not tagged for the installation.
pub async fn get_identity(c: &Context, installation: &str, name: &str) -> Result<Option<Identity>> {
    let what = format!("managed identity {name}");
    let found = c
        .get_ours::<Identity>(
            &c.identity_path(installation, name),
            MSI_API,
            installation,
            &what,
            None,
        )
        .await?;
    Ok(found.map(|(i, _)| i))
}

/// Create (or re-tag) the identity `name`; returns it with its ids.
pub async fn ensure_identity(
    c: &Context,
    installation: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Identity> {
    let tags = tags_of(labels, installation);
    if let Some(i) = get_identity(c, installation, name).await? {
        if i.tags == tags && !i.properties.principal_id.is_empty() {
            return Ok(i);
        }
    }
    let body = Identity {
        location: c.region.clone(),
        tags,
        ..Default::default()
    };
    let path = c.identity_path(installation, name);
    let lro = c.arm.put(&path, MSI_API, &body).await?;
    match lro.body::<Identity>()? {
        Some(i) if !i.properties.principal_id.is_empty() => Ok(i),
        _ => c.arm.get::<Identity>(&path, MSI_API).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::PropagationDelay,
                format!("managed identity {name} is not readable yet"),
            )
        }),
    }
}

/// Delete the identity `name`. Absent is fine; one not tagged ours stays.
pub async fn delete_identity(c: &Context, installation: &str, name: &str) -> Result<()> {
    if absent_if_foreign(get_identity(c, installation, name).await)?.is_some() {
        c.arm
            .delete(&c.identity_path(installation, name), MSI_API)
            .await?;
    }
    Ok(())
}

fn same_id(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// `role` on `scope` for `principal`, under its deterministic name or (adopted) any
/// other. `None` when there is none, or the scope does not exist.
pub async fn find_role(
    c: &Context,
    scope: &str,
    role: &str,
    principal: &str,
) -> Result<Option<RoleAssignment>> {
    let role_id = c.role_definition_id(role);
    let name = role_assignment_name(scope, &role_id, principal);
    let path = c.role_assignment_path(scope, &name);
    if let Some(a) = c
        .arm
        .get::<RoleAssignment>(&path, AUTHORIZATION_API)
        .await?
    {
        if a.properties.principal_id.eq_ignore_ascii_case(principal) {
            return Ok(Some(a));
        }
    }
    let filter = format!("principalId eq '{principal}'");
    let list = c
        .arm
        .get_with::<List<RoleAssignment>>(
            &format!("{scope}/providers/Microsoft.Authorization/roleAssignments"),
            AUTHORIZATION_API,
            &[("$filter", filter.as_str())],
        )
        .await?
        .unwrap_or_default();
    Ok(list.value.into_iter().find(|a| {
        a.properties.principal_id.eq_ignore_ascii_case(principal)
            && same_id(&a.properties.role_definition_id, &role_id)
            && a.properties
                .scope
                .as_deref()
                .is_none_or(|s| same_id(s, scope))
    }))
}

/// Give `role` on `scope` to `principal` unless it has it (see the module docs).
pub async fn ensure_role(
    c: &Context,
    scope: &str,
    role: &str,
    principal: &str,
    installation: &str,
) -> Result<()> {
    if find_role(c, scope, role, principal).await?.is_some() {
        return Ok(());
    }
    let role_id = c.role_definition_id(role);
    let name = role_assignment_name(scope, &role_id, principal);
    let body = role_request(c, role, principal, installation);
    match c
        .arm
        .put(
            &c.role_assignment_path(scope, &name),
            AUTHORIZATION_API,
            &body,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if code_of(&e) == Some("RoleAssignmentExists") => {
            match find_role(c, scope, role, principal).await? {
                Some(a) => {
                    tracing::debug!(assignment = %a.id, "adopted an existing role assignment");
                    Ok(())
                }
                // Exists, but not visible to a list yet: the next attempt finds it.
                None => Err(Error::new(
                    ErrorKind::PropagationDelay,
                    format!("role {role} on {scope} exists but cannot be listed yet"),
                )
                .with_source(e)),
            }
        }
        Err(e) => Err(e),
    }
}

/// Remove `role` on `scope` from `principal`, whatever the assignment's name. Absent
/// (or its scope gone) is fine.
pub async fn delete_role(c: &Context, scope: &str, role: &str, principal: &str) -> Result<()> {
    if let Some(a) = find_role(c, scope, role, principal).await? {
        let path = if a.id.is_empty() {
            c.role_assignment_path(scope, &a.name)
        } else {
            a.id.clone()
        };
        c.arm.delete(&path, AUTHORIZATION_API).await?;
    }
    Ok(())
}

fn output(i: &Identity) -> Output {
    Output::ClusterIdentity {
        principal: i.id.clone(),
    }
}

/// Whether the VNet exists (the scope of the identity's role).
async fn vnet_exists(c: &Context, installation: &str) -> Result<bool> {
    Ok(c.arm
        .get::<Value>(&c.vnet_path(installation), NETWORK_API)
        .await?
        .is_some())
}

/// The identity as it exists; a missing Network Contributor grant on an existing VNet
/// is its drift.
pub async fn observe(
    c: &Context,
    d: &ClusterIdentitySpec,
) -> Result<Option<Observed<ClusterIdentitySpec>>> {
    let Some(i) = get_identity(c, &d.name, &cluster_identity_name(&d.name)).await? else {
        return Ok(None);
    };
    let mut actual = d.clone();
    if i.tags != tags_of(&d.labels, &d.name) {
        actual.labels = i.tags.clone();
    }
    let vnet = c.vnet_path(&d.name);
    let missing = vnet_exists(c, &d.name).await?
        && find_role(c, &vnet, NETWORK_CONTRIBUTOR, &i.properties.principal_id)
            .await?
            .is_none();
    Ok(Some(
        Observed::ready(actual, Some(output(&i))).with_drift_if(
            missing.then(|| format!("the cluster identity has no Network Contributor on {vnet}")),
        ),
    ))
}

/// Create the identity; grant Network Contributor on the VNet when it exists.
pub async fn ensure(c: &Context, d: &ClusterIdentitySpec) -> Result<Progress> {
    let i = ensure_identity(c, &d.name, &cluster_identity_name(&d.name), &d.labels).await?;
    if vnet_exists(c, &d.name).await? {
        grant_network(c, &d.name, &i.properties.principal_id).await?;
    }
    Ok(Progress::Done(Some(output(&i))))
}

/// Network Contributor on the VNet for the cluster identity's principal.
pub(crate) async fn grant_network(c: &Context, installation: &str, principal: &str) -> Result<()> {
    ensure_role(
        c,
        &c.vnet_path(installation),
        NETWORK_CONTRIBUTOR,
        principal,
        installation,
    )
    .await
}

/// Revoke Network Contributor and delete the identity.
pub async fn delete(c: &Context, d: &ClusterIdentitySpec) -> Result<Progress> {
    let name = cluster_identity_name(&d.name);
    let Some(i) = absent_if_foreign(get_identity(c, &d.name, &name).await)? else {
        return Ok(Progress::Done(None));
    };
    if vnet_exists(c, &d.name).await? {
        delete_role(
            c,
            &c.vnet_path(&d.name),
            NETWORK_CONTRIBUTOR,
            &i.properties.principal_id,
        )
        .await?;
    }
    let lro = c
        .arm
        .delete(&c.identity_path(&d.name, &name), MSI_API)
        .await?;
    let id = Desired::ClusterIdentity(d.clone()).id();
    Ok(c.pending(&id, &lro).unwrap_or(Progress::Done(None)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    use crate::context::is_ours;

    #[test]
    fn role_requests_always_name_the_principal_type() {
        let c = crate::tests::ctx();
        let body =
            serde_json::to_value(role_request(&c, NETWORK_CONTRIBUTOR, "p-1", "gp")).unwrap();
        assert_eq!(
            body,
            json!({"properties": {
                "roleDefinitionId": "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Authorization/roleDefinitions/4d97b98b-1d4f-4787-a291-c67834d212e7",
                "principalId": "p-1",
                "principalType": "ServicePrincipal",
                "description": "gitpod-refarch installation gp"
            }})
        );
    }

    #[test]
    fn identity_requests_carry_location_and_tags_only() {
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), "x".to_string());
        let body = Identity {
            id: "ignored".into(),
            location: "northeurope".into(),
            tags: tags_of(&labels, "gp"),
            properties: IdentityProperties {
                principal_id: "ignored".into(),
                ..Default::default()
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"location": "northeurope", "tags": {"gitpod-installation": "gp", "team": "x"}})
        );
        let read: Identity = serde_json::from_value(json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-gp-cluster",
            "name": "id-gp-cluster", "location": "northeurope",
            "tags": {"gitpod-installation": "gp"},
            "properties": {"principalId": "p", "clientId": "c", "tenantId": "t", "isolationScope": "None"}
        }))
        .unwrap();
        assert_eq!(read.properties.client_id, "c");
        assert!(is_ours(&read.tags, "gp"));
    }

    #[test]
    fn paths_use_the_configured_resource_group() {
        let cred: std::sync::Arc<dyn azure_core::credentials::TokenCredential> =
            std::sync::Arc::new(crate::tests::NoToken);
        let c = Context::new(
            crate::config::AzureConfig::new("00000000-0000-0000-0000-000000000001", "northeurope")
                .credential(cred)
                .resource_group("rg-gp"),
        )
        .unwrap();
        assert_eq!(
            c.identity_path("gp", "id-gp-cluster"),
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-gp/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-gp-cluster"
        );
        assert!(same_id("/A/b/", "/a/B"));
    }
}
