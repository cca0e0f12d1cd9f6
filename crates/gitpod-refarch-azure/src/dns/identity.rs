//! The DNS identities: one user-assigned managed identity per controller
//! (`id-N-cert-manager`, `id-N-external-dns`, Microsoft.ManagedIdentity `2024-11-30`),
//! each with one federated identity credential for its Kubernetes service account on
//! the AKS cluster's OIDC issuer, and **DNS Zone Contributor on the zone only**
//! (Microsoft.Authorization `2022-04-01`). No secret exists anywhere: cert-manager and
//! external-dns exchange their service-account tokens for Entra ID tokens (workload
//! identity).
//!
//! - The issuer is read from the cluster (`properties.oidcIssuerProfile.issuerURL` of a
//!   GET on `aks-N`): the plan makes the DNS identity depend on the cluster.
//! - Federated credentials are written one at a time per identity (sequential awaits):
//!   ARM refuses concurrent writes on one identity
//!   (`ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`, which the
//!   ARM client classifies as an operation in progress, retried).
//! - Identities and role assignments go through [`crate::identity`]'s helpers: role
//!   assignments have deterministic names ([`crate::context::role_assignment_name`] of
//!   scope, role and principal) and always say `principalType: ServicePrincipal`. `409 RoleAssignmentExists` (the same grant under
//!   another name) is adopted after listing the principal's assignments on the scope;
//!   `PrincipalNotFound` right after an identity was made is Entra replication delay
//!   ([`gitpod_refarch::ErrorKind::PropagationDelay`]), retried by the engine.
//!
//! The output is [`Output::DnsIdentity`] with no credentials and the
//! [`DnsSolver::AzureDns`] settings (tenant, subscription, resource group, zone, both
//! client ids) the in-cluster bootstrap configures cert-manager and external-dns with.

use std::collections::BTreeMap;

use gitpod_refarch::provider::{Observed, Progress};
use gitpod_refarch::resource::{DnsIdentitySpec, DnsSolver, Output, ResourceId, ResourceKind};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::{
    absent_if_foreign, cluster_name, dns_identity_name, Context, AKS_API, DNS_ZONE_CONTRIBUTOR,
    MSI_API,
};
use crate::identity::{
    delete_identity, delete_role, ensure_identity, ensure_role, find_role, get_identity, Identity,
};

/// cert-manager's controller name (namespace and service account).
pub const CERT_MANAGER: &str = "cert-manager";
/// external-dns's controller name (namespace and service account).
pub const EXTERNAL_DNS: &str = "external-dns";
/// The two controllers, each with its identity, in the order they are made.
pub const CONTROLLERS: [&str; 2] = [CERT_MANAGER, EXTERNAL_DNS];
/// The audience of the federated credentials.
pub const FIC_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The subject of a controller's federated credential: its service account
/// `<controller>` in namespace `<controller>`.
pub fn subject(controller: &str) -> String {
    format!("system:serviceaccount:{controller}:{controller}")
}

// ---------------------------------------------------------------------------------
// Federated identity credentials.

/// A federated identity credential (request and answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Fic {
    #[serde(default)]
    properties: FicProperties,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FicProperties {
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    audiences: Vec<String>,
}

fn fic_body(issuer: &str, controller: &str) -> Fic {
    Fic {
        properties: FicProperties {
            issuer: issuer.to_string(),
            subject: subject(controller),
            audiences: vec![FIC_AUDIENCE.to_string()],
        },
    }
}

/// What differs between a federated credential and the wanted one.
fn fic_drift(found: Option<&Fic>, want: &Fic, identity: &str) -> Option<String> {
    match found {
        None => Some(format!(
            "identity {identity} has no federated credential for {}",
            want.properties.subject
        )),
        Some(f) if f.properties.issuer != want.properties.issuer => Some(format!(
            "the federated credential of {identity} trusts issuer {}, not the cluster's {}",
            f.properties.issuer, want.properties.issuer
        )),
        Some(f) if f != want => Some(format!(
            "the federated credential of {identity} is for subject {} and audiences {:?}, \
             not {} and {:?}",
            f.properties.subject,
            f.properties.audiences,
            want.properties.subject,
            want.properties.audiences
        )),
        Some(_) => None,
    }
}

// ---------------------------------------------------------------------------------
// The identities.

fn zone_scope(c: &Context, d: &DnsIdentitySpec) -> String {
    c.resource_path(&d.name, "Microsoft.Network/dnsZones", &d.zone_dns_name)
}

fn fic_path(c: &Context, installation: &str, controller: &str) -> String {
    format!(
        "{}/federatedIdentityCredentials/{controller}",
        c.identity_path(installation, &dns_identity_name(installation, controller))
    )
}

/// The AKS cluster's OIDC issuer URL: `None` when the cluster does not exist, empty
/// when it has none.
async fn cluster_issuer(c: &Context, installation: &str) -> Result<Option<String>> {
    let cluster: Option<Value> = c.arm.get(&c.cluster_path(installation), AKS_API).await?;
    Ok(cluster.map(|v| issuer_of(&v).unwrap_or_default()))
}

/// `properties.oidcIssuerProfile.issuerURL` of a cluster body.
fn issuer_of(cluster: &Value) -> Option<String> {
    cluster
        .pointer("/properties/oidcIssuerProfile/issuerURL")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The output from both identities: no credentials, the Azure DNS solver settings.
fn output(
    c: &Context,
    d: &DnsIdentitySpec,
    tenant_id: String,
    cert_manager: &Identity,
    external_dns: &Identity,
) -> Output {
    Output::DnsIdentity {
        principal: format!(
            "{},{}",
            cert_manager.properties.principal_id, external_dns.properties.principal_id
        ),
        credentials: None,
        solver: Some(DnsSolver::AzureDns {
            tenant_id,
            subscription_id: c.subscription.clone(),
            resource_group: c.resource_group(&d.name),
            zone_name: d.zone_dns_name.clone(),
            cert_manager_client_id: cert_manager.properties.client_id.clone(),
            external_dns_client_id: external_dns.properties.client_id.clone(),
        }),
    }
}

/// The tenant of the identities, else the configured or token's tenant.
async fn tenant_of(c: &Context, identities: &[&Identity]) -> Result<String> {
    match identities
        .iter()
        .map(|i| i.properties.tenant_id.clone())
        .find(|t| !t.is_empty())
    {
        Some(t) => Ok(t),
        None => c.tenant_id().await,
    }
}

/// The identities as they exist: a missing identity, federated credential (or one on
/// another issuer, subject or audience) or role assignment is drift.
pub async fn observe(
    c: &Context,
    d: &DnsIdentitySpec,
) -> Result<Option<Observed<DnsIdentitySpec>>> {
    let mut found = Vec::new();
    for controller in CONTROLLERS {
        let name = dns_identity_name(&d.name, controller);
        found.push((controller, get_identity(c, &d.name, &name).await?));
    }
    if found.iter().all(|(_, i)| i.is_none()) {
        return Ok(None);
    }
    let issuer = cluster_issuer(c, &d.name).await?;
    let scope = zone_scope(c, d);
    let mut drift = Vec::new();
    for (controller, identity) in &found {
        let name = dns_identity_name(&d.name, controller);
        let Some(identity) = identity else {
            drift.push(format!("managed identity {name} is missing"));
            continue;
        };
        // Without a cluster (or its issuer) there is nothing to compare with.
        if let Some(issuer) = issuer.as_deref().filter(|i| !i.is_empty()) {
            let fic: Option<Fic> = c
                .arm
                .get(&fic_path(c, &d.name, controller), MSI_API)
                .await?;
            drift.extend(fic_drift(
                fic.as_ref(),
                &fic_body(issuer, controller),
                &name,
            ));
        }
        let principal = &identity.properties.principal_id;
        if principal.is_empty()
            || find_role(c, &scope, DNS_ZONE_CONTRIBUTOR, principal)
                .await?
                .is_none()
        {
            drift.push(format!(
                "managed identity {name} is not DNS Zone Contributor on zone {}",
                d.zone_dns_name
            ));
        }
    }
    let out = match (&found[0].1, &found[1].1) {
        (Some(cm), Some(ed)) => Some(output(c, d, tenant_of(c, &[cm, ed]).await?, cm, ed)),
        _ => None,
    };
    let mut o = Observed::ready(d.clone(), out);
    o.drift = drift;
    Ok(Some(o))
}

/// For each controller in turn: the identity, its federated credential, its role on the
/// zone.
pub async fn ensure(c: &Context, d: &DnsIdentitySpec) -> Result<Progress> {
    let rid = ResourceId::new(ResourceKind::DnsIdentity, d.name.clone());
    let issuer = cluster_issuer(c, &d.name)
        .await?
        .filter(|i| !i.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Precondition,
                format!(
                    "the AKS cluster {} does not exist or has no OIDC issuer yet: the DNS \
                     identities are federated with it",
                    cluster_name(&d.name)
                ),
            )
            .with_resource(rid.clone())
        })?;
    let scope = zone_scope(c, d);
    let mut made = Vec::new();
    for controller in CONTROLLERS {
        let name = dns_identity_name(&d.name, controller);
        let identity = ensure_identity(c, &d.name, &name, &BTreeMap::new()).await?;
        // One federated-credential write at a time on this identity.
        let want = fic_body(&issuer, controller);
        let path = fic_path(c, &d.name, controller);
        let fic: Option<Fic> = c.arm.get(&path, MSI_API).await?;
        if fic_drift(fic.as_ref(), &want, &name).is_some() {
            let lro = c.arm.put(&path, MSI_API, &want).await?;
            if let Some(p) = c.pending(&rid, &lro) {
                return Ok(p);
            }
        }
        ensure_role(
            c,
            &scope,
            DNS_ZONE_CONTRIBUTOR,
            &identity.properties.principal_id,
            &d.name,
        )
        .await?;
        made.push(identity);
    }
    let [cm, ed] = made.as_slice() else {
        return Err(Error::internal("expected two DNS identities"));
    };
    let tenant = tenant_of(c, &[cm, ed]).await?;
    Ok(Progress::Done(Some(output(c, d, tenant, cm, ed))))
}

/// Revoke each identity's role on the zone, then delete the identity (its federated
/// credential goes with it). Identities not tagged for the installation are left alone.
pub async fn delete(c: &Context, d: &DnsIdentitySpec) -> Result<Progress> {
    let scope = zone_scope(c, d);
    for controller in CONTROLLERS {
        let name = dns_identity_name(&d.name, controller);
        let Some(identity) = absent_if_foreign(get_identity(c, &d.name, &name).await)? else {
            continue;
        };
        if !identity.properties.principal_id.is_empty() {
            delete_role(
                c,
                &scope,
                DNS_ZONE_CONTRIBUTOR,
                &identity.properties.principal_id,
            )
            .await?;
        }
        delete_identity(c, &d.name, &name).await?;
    }
    Ok(Progress::Done(None))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    const ISSUER: &str = "https://northeurope.oic.prod-aks.azure.com/tenant/cluster/";

    #[test]
    fn federated_credentials_trust_the_clusters_issuer_for_one_service_account() {
        assert_eq!(
            serde_json::to_value(fic_body(ISSUER, CERT_MANAGER)).unwrap(),
            json!({"properties": {
                "issuer": ISSUER,
                "subject": "system:serviceaccount:cert-manager:cert-manager",
                "audiences": ["api://AzureADTokenExchange"]
            }})
        );
        assert_eq!(
            fic_body(ISSUER, EXTERNAL_DNS).properties.subject,
            "system:serviceaccount:external-dns:external-dns"
        );
    }

    #[test]
    fn federated_credential_drift_says_what_differs() {
        let want = fic_body(ISSUER, CERT_MANAGER);
        assert_eq!(fic_drift(Some(&want), &want, "id-gp-cert-manager"), None);
        assert!(fic_drift(None, &want, "id-gp-cert-manager")
            .unwrap()
            .contains("has no federated credential"));
        let old = fic_body("https://old-issuer/", CERT_MANAGER);
        assert!(fic_drift(Some(&old), &want, "id")
            .unwrap()
            .contains("trusts issuer https://old-issuer/"));
        let mut other = want.clone();
        other.properties.audiences = vec!["api://other".into()];
        assert!(fic_drift(Some(&other), &want, "id")
            .unwrap()
            .contains("audiences"));
        let wrong_sa = fic_body(ISSUER, EXTERNAL_DNS);
        assert!(fic_drift(Some(&wrong_sa), &want, "id")
            .unwrap()
            .contains("system:serviceaccount:external-dns:external-dns"));
        // The answer's read-only fields do not matter.
        let answer: Fic = serde_json::from_value(json!({
            "id": "/x", "name": "cert-manager", "type": "t",
            "properties": {"issuer": ISSUER, "subject": "system:serviceaccount:cert-manager:cert-manager",
                           "audiences": ["api://AzureADTokenExchange"]}
        }))
        .unwrap();
        assert_eq!(fic_drift(Some(&answer), &want, "id"), None);
    }

    #[test]
    fn the_issuer_is_read_from_the_cluster() {
        let c =
            json!({"properties": {"oidcIssuerProfile": {"enabled": true, "issuerURL": ISSUER}}});
        assert_eq!(issuer_of(&c).as_deref(), Some(ISSUER));
        assert_eq!(
            issuer_of(&json!({"properties": {"oidcIssuerProfile": {"enabled": false}}})),
            None
        );
    }
}
