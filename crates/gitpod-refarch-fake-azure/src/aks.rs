//! Microsoft.ContainerService managedClusters (2026-08-01), and the credential
//! actions. Agent pools are in [`crate::aks_pools`].
//!
//! Modelled: the name patterns of the spec, one operation at a time per cluster
//! (any mutating call on the cluster or its pools while one runs is 409
//! `OperationNotAllowed`), pools only via the agentPools API once the cluster exists
//! (a cluster PUT whose `agentPoolProfiles` differ from the pools is 400), enum and
//! cross-field checks (network plugin/mode/policy/dataplane, upgrade channels,
//! workload identity needs the OIDC issuer, `disableLocalAccounts` needs managed
//! Entra integration), `listClusterAdminCredential` refused without local accounts.
//! Read-only fields are invented; with a kube endpoint configured, `fqdn` is that URL.
//!
//! Invented codes: `InvalidParameter` for most field errors, `BadRequest` for the pool
//! update through the cluster and for disabled local accounts.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::aks_pools::{self, default_pool_props, validate_pool};
use crate::error::{ArmError, ArmResult};
use crate::lro::{self, OpResult, Style};
use crate::resources::{envelope, location};
use crate::routes::Addr;
use crate::state::{det_uuid, ptr, s, Effect, State};
use crate::{Reply, Req};

pub(crate) const CLUSTER_TYPE: &str = "Microsoft.ContainerService/ManagedClusters";
/// Supported minors and the patch each resolves to.
const VERSIONS: &[(&str, &str)] = &[
    ("1.31", "1.31.9"),
    ("1.32", "1.32.6"),
    ("1.33", "1.33.2"),
    ("1.34", "1.34.0"),
];
const DEFAULT_MINOR: &str = "1.33";

/// Resolve a requested version (`1.33` or `1.33.2`), or 400 `K8sVersionNotSupported`.
pub(crate) fn resolve_version(v: &str, location: &str) -> ArmResult<String> {
    let v = if v.is_empty() { DEFAULT_MINOR } else { v };
    for (minor, patch) in VERSIONS {
        if v == *minor {
            return Ok(patch.to_string());
        }
        if let Some(p) = v.strip_prefix(&format!("{minor}.")) {
            if p.parse::<u32>().is_ok() {
                return Ok(v.to_string());
            }
        }
    }
    Err(ArmError::bad(
        "K8sVersionNotSupported",
        format!("Version {v} is not supported in this region {location} (fake-azure knows 1.31 to 1.34)."),
    ))
}

/// Cluster names: `^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]$`.
fn valid_cluster_name(n: &str) -> bool {
    let b = n.as_bytes();
    let alnum = |c: &u8| c.is_ascii_alphanumeric();
    match b.len() {
        1 => alnum(&b[0]),
        2..=63 => {
            alnum(&b[0])
                && alnum(&b[b.len() - 1])
                && b.iter().all(|c| alnum(c) || *c == b'-' || *c == b'_')
        }
        _ => false,
    }
}

/// The 409 while an operation runs on the cluster.
pub(crate) fn check_lock(st: &State, cluster_id: &str) -> Result<(), ArmError> {
    if let Some(op) = lro::locked(st, cluster_id) {
        let doing = match op.kind.as_str() {
            "managedClusters.create" => "Creating",
            "managedClusters.delete" => "Deleting",
            k if k.starts_with("managedClusters.agentPools") => "Scaling",
            _ => "Updating",
        };
        return Err(ArmError::conflict(
            "OperationNotAllowed",
            format!("Operation is not allowed: Another operation ({doing}) is in progress, please wait for it to finish before starting a new operation. See https://aka.ms/aks-pending-operation for more details"),
        ));
    }
    Ok(())
}

fn enum_check(v: &Value, pointer: &str, allowed: &[&str]) -> Result<(), ArmError> {
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

fn validate_cluster(body: &Value) -> Result<(), ArmError> {
    let p = &body["properties"];
    enum_check(
        p,
        "/networkProfile/networkPlugin",
        &["azure", "kubenet", "none"],
    )?;
    enum_check(p, "/networkProfile/networkPluginMode", &["overlay"])?;
    enum_check(
        p,
        "/networkProfile/networkPolicy",
        &["none", "calico", "azure", "cilium"],
    )?;
    enum_check(p, "/networkProfile/networkDataplane", &["azure", "cilium"])?;
    enum_check(
        p,
        "/networkProfile/outboundType",
        &[
            "loadBalancer",
            "userDefinedRouting",
            "managedNATGateway",
            "userAssignedNATGateway",
            "none",
        ],
    )?;
    enum_check(p, "/networkProfile/loadBalancerSku", &["standard", "basic"])?;
    enum_check(
        p,
        "/autoUpgradeProfile/upgradeChannel",
        &["rapid", "stable", "patch", "node-image", "none"],
    )?;
    enum_check(
        p,
        "/autoUpgradeProfile/nodeOSUpgradeChannel",
        &["None", "Unmanaged", "NodeImage", "SecurityPatch"],
    )?;
    enum_check(
        p,
        "/supportPlan",
        &["KubernetesOfficial", "AKSLongTermSupport"],
    )?;
    enum_check(
        body,
        "/identity/type",
        &["SystemAssigned", "UserAssigned", "None"],
    )?;
    enum_check(body, "/sku/name", &["Base", "Automatic"])?;
    enum_check(body, "/sku/tier", &["Free", "Standard", "Premium"])?;
    let plugin = ptr(p, "/networkProfile/networkPlugin");
    if ptr(p, "/networkProfile/networkPluginMode") == "overlay" && plugin != "azure" {
        return Err(ArmError::invalid(
            "networkPluginMode overlay can only be used with networkPlugin azure.",
        ));
    }
    let policy = ptr(p, "/networkProfile/networkPolicy");
    let dataplane = ptr(p, "/networkProfile/networkDataplane");
    let cilium_mismatch = (dataplane == "cilium" && !matches!(policy, "cilium" | ""))
        || (policy == "cilium" && dataplane != "cilium");
    if cilium_mismatch {
        return Err(ArmError::invalid(format!(
            "networkPolicy '{policy}' is not compatible with networkDataplane '{dataplane}': the cilium dataplane requires the cilium network policy and vice versa."
        )));
    }
    if p.pointer("/securityProfile/workloadIdentity/enabled") == Some(&json!(true))
        && p.pointer("/oidcIssuerProfile/enabled") != Some(&json!(true))
    {
        return Err(ArmError::invalid(
            "Enabling workload identity requires enabling OIDC issuer profile (properties.oidcIssuerProfile.enabled).",
        ));
    }
    if p.get("disableLocalAccounts") == Some(&json!(true))
        && p.pointer("/aadProfile/managed") != Some(&json!(true))
    {
        return Err(ArmError::bad(
            "BadRequest",
            "Local accounts can only be disabled on a cluster with managed Azure Active Directory integration (properties.aadProfile.managed).",
        ));
    }
    Ok(())
}

/// A cluster as GET answers it: `agentPoolProfiles` from the pools.
pub(crate) fn render_cluster(st: &State, id: &str) -> Option<Value> {
    let mut c = st.get(id)?.clone();
    let pools: Vec<Value> = st
        .children(id, "agentpools")
        .into_iter()
        .map(|p| {
            let mut m = Map::new();
            m.insert("name".into(), p["name"].clone());
            if let Some(props) = p["properties"].as_object() {
                m.extend(props.clone());
            }
            Value::Object(m)
        })
        .collect();
    c["properties"]["agentPoolProfiles"] = Value::Array(pools);
    Some(c)
}

/// Fields the client cannot set on a pool profile.
const POOL_READ_ONLY: &[&str] = &[
    "name",
    "provisioningState",
    "powerState",
    "currentOrchestratorVersion",
    "nodeImageVersion",
    "eTag",
];

/// Does a requested `agentPoolProfiles` list differ from the cluster's pools?
fn pools_changed(st: &State, cluster_id: &str, wanted: &[Value]) -> bool {
    let current = st.children(cluster_id, "agentpools");
    if current.len() != wanted.len() {
        return true;
    }
    wanted.iter().any(|w| {
        let Some(cur) = current
            .iter()
            .find(|c| s(c, "name").eq_ignore_ascii_case(s(w, "name")))
        else {
            return true;
        };
        w.as_object().is_some_and(|m| {
            m.iter()
                .filter(|(k, _)| !POOL_READ_ONLY.contains(&k.as_str()))
                .any(|(k, v)| cur["properties"].get(k) != Some(v))
        })
    })
}

pub(crate) fn handle(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let types = a.types();
    if types.len() >= 2 && types[1] == "agentpools" {
        return aks_pools::handle(st, req, a);
    }
    match (types.len(), a.trailing()) {
        (1, Some(_)) => {
            let prefix = format!(
                "{}/providers/microsoft.containerservice/managedclusters/",
                a.rg_id().to_ascii_lowercase()
            );
            let ids: Vec<String> = st
                .find(|k, _| k.strip_prefix(&prefix).is_some_and(|r| !r.contains('/')))
                .iter()
                .map(|v| s(v, "id").to_string())
                .collect();
            let value: Vec<Value> = ids.iter().filter_map(|id| render_cluster(st, id)).collect();
            Ok(Reply::json(200, json!({ "value": value })))
        }
        (1, None) => cluster(st, req, a),
        (2, Some(action)) if req.verb == "POST" => credentials(st, a, action),
        _ => Err(crate::process::not_served(req)),
    }
}

fn cluster(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let name = a.name(0).unwrap_or("").to_string();
    let id = a.id_at(0);
    let existing = st.get(&id).cloned();
    let id = existing
        .as_ref()
        .map(|e| s(e, "id").to_string())
        .unwrap_or(id);
    match req.verb.as_str() {
        "GET" => render_cluster(st, &id)
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(CLUSTER_TYPE, &id)),
        "PUT" => put_cluster(st, req, a, &name, &id, existing),
        "DELETE" => {
            let Some(e) = existing else {
                return Ok(Reply::empty(204));
            };
            check_lock(st, &id)?;
            st.apply(Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Deleting"}}),
            ));
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.ContainerService",
                s(&e, "location"),
                "managedClusters.delete",
                &id,
                Duration::from_secs(300),
            )
            .lock(&id)
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .on_fail(vec![Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Failed"}}),
            )])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Both);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}

fn put_cluster(
    st: &mut State,
    req: &Req,
    a: &Addr,
    name: &str,
    id: &str,
    existing: Option<Value>,
) -> ArmResult {
    if !valid_cluster_name(name) {
        return Err(ArmError::invalid(format!(
            "The managed cluster name '{name}' is invalid: 1-63 letters, digits, '-' or '_', starting and ending with a letter or digit."
        )));
    }
    check_lock(st, id)?;
    let loc = location(&req.body)?;
    validate_cluster(&req.body)?;
    let body_props = req.body.get("properties").cloned().unwrap_or(json!({}));
    let version = resolve_version(s(&body_props, "kubernetesVersion"), &loc)?;
    let wanted: Option<Vec<Value>> = body_props
        .get("agentPoolProfiles")
        .and_then(Value::as_array)
        .cloned();
    let old_props = existing
        .as_ref()
        .map(|e| e["properties"].clone())
        .unwrap_or(json!({}));
    if let Some(e) = &existing {
        if s(e, "location") != loc {
            return Err(ArmError::bad(
                "LocationChangeNotAllowed",
                "The location of an existing managed cluster cannot be changed.",
            ));
        }
        let dns = s(&body_props, "dnsPrefix");
        if !dns.is_empty() && dns != s(&old_props, "dnsPrefix") {
            return Err(ArmError::bad(
                "PropertyChangeNotAllowed",
                "Changing property 'dnsPrefix' is not allowed.",
            ));
        }
        if let Some(w) = &wanted {
            if pools_changed(st, id, w) {
                return Err(ArmError::bad(
                    "BadRequest",
                    "Node pool update via managed cluster not allowed when the cluster already exists. Please use per node pool operations (agentPools).",
                ));
            }
        }
    } else {
        let pools = wanted.clone().unwrap_or_default();
        if pools.is_empty() {
            return Err(ArmError::invalid(
                "properties.agentPoolProfiles is required: a new managed cluster needs at least one agent pool.",
            ));
        }
        for (i, p) in pools.iter().enumerate() {
            validate_pool(st, s(p, "name"), p, i == 0)?;
            if pools[..i]
                .iter()
                .any(|q| s(q, "name").eq_ignore_ascii_case(s(p, "name")))
            {
                return Err(ArmError::invalid(format!(
                    "Agent pool name '{}' is used more than once.",
                    s(p, "name")
                )));
            }
        }
        let system = pools.iter().enumerate().any(|(i, p)| match s(p, "mode") {
            "" => i == 0,
            m => m == "System",
        });
        if !system {
            return Err(ArmError::invalid(
                "A managed cluster must have at least one agent pool in System mode.",
            ));
        }
    }
    // Identity.
    let mut identity = req.body.get("identity").cloned();
    if let Some(ident) = identity.as_mut() {
        match s(ident, "type") {
            "SystemAssigned" => {
                let pid = ptr(
                    existing.as_ref().unwrap_or(&Value::Null),
                    "/identity/principalId",
                )
                .to_string();
                let pid = if pid.is_empty() { st.uuid() } else { pid };
                st.add_principal(&pid);
                ident["principalId"] = json!(pid);
                ident["tenantId"] = json!(st.config.tenant_id);
            }
            "UserAssigned" => {
                let keys: Vec<String> = ident
                    .get("userAssignedIdentities")
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                if keys.len() != 1 {
                    return Err(ArmError::invalid(
                        "identity.userAssignedIdentities must name exactly one user-assigned identity.",
                    ));
                }
                let Some(uai) = st.get(&keys[0]).cloned() else {
                    return Err(ArmError::invalid(format!(
                        "The user-assigned identity '{}' does not exist.",
                        keys[0]
                    )));
                };
                ident["userAssignedIdentities"] = json!({ keys[0].clone(): {
                    "principalId": ptr(&uai, "/properties/principalId"),
                    "clientId": ptr(&uai, "/properties/clientId"),
                }});
            }
            _ => {}
        }
    }
    // Read-only and defaulted properties.
    let mut p = body_props.clone();
    if let Some(m) = p.as_object_mut() {
        m.remove("agentPoolProfiles");
    }
    let keep = |field: &str| old_props.get(field).cloned();
    let dns_prefix = match s(&body_props, "dnsPrefix") {
        "" => keep("dnsPrefix").unwrap_or_else(|| json!(format!("{name}-dns"))),
        d => json!(d),
    };
    // AKS's shape whether or not a Kubernetes fake answers for the cluster: its
    // address reaches clients through the credentials' kubeconfig.
    let fqdn = match keep("fqdn") {
        Some(f) => f,
        None => json!(format!(
            "{}-{}.hcp.{loc}.azmk8s.io",
            dns_prefix.as_str().unwrap_or(name),
            st.hex(8)
        )),
    };
    let sub = a.sub.clone();
    let rg = a.rg.clone();
    let node_rg =
        keep("nodeResourceGroup").unwrap_or_else(|| match s(&body_props, "nodeResourceGroup") {
            "" => json!(format!("MC_{rg}_{name}_{loc}")),
            n => json!(n),
        });
    let kubelet = match old_props.pointer("/identityProfile/kubeletidentity") {
        Some(k) => k.clone(),
        None => {
            let object_id = st.uuid();
            let client_id = st.uuid();
            json!({
                "resourceId": format!("/subscriptions/{sub}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}-agentpool", node_rg.as_str().unwrap_or("")),
                "clientId": client_id,
                "objectId": object_id,
            })
        }
    };
    st.add_principal(s(&kubelet, "objectId"));
    let oidc_enabled = p.pointer("/oidcIssuerProfile/enabled") == Some(&json!(true));
    if oidc_enabled {
        let url = old_props
            .pointer("/oidcIssuerProfile/issuerURL")
            .cloned()
            .unwrap_or_else(|| {
                json!(format!(
                    "https://{loc}.oic.prod-aks.azure.com/{}/{}/",
                    st.config.tenant_id,
                    det_uuid(&id.to_ascii_lowercase())
                ))
            });
        p["oidcIssuerProfile"]["issuerURL"] = url;
    }
    let mut network = json!({
        "networkPlugin": "azure", "networkPluginMode": "overlay", "networkPolicy": "none",
        "podCidr": "10.244.0.0/16", "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10",
        "outboundType": "loadBalancer", "loadBalancerSku": "standard",
        "ipFamilies": ["IPv4"], "podCidrs": ["10.244.0.0/16"], "serviceCidrs": ["10.0.0.0/16"],
    });
    if ptr(&p, "/networkProfile/networkPlugin") == "kubenet" {
        network["networkPluginMode"] = Value::Null;
    }
    crate::state::deep_merge(&mut network, p.get("networkProfile").unwrap_or(&json!({})));
    if let Some(m) = network.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    p["networkProfile"] = network;
    p["provisioningState"] = json!(if existing.is_some() {
        "Updating"
    } else {
        "Creating"
    });
    p["powerState"] = json!({"code": "Running"});
    p["kubernetesVersion"] = json!(version);
    p["currentKubernetesVersion"] = json!(version);
    p["dnsPrefix"] = dns_prefix;
    p["fqdn"] = fqdn.clone();
    p["azurePortalFQDN"] = fqdn;
    p["nodeResourceGroup"] = node_rg;
    p["maxAgentPools"] = json!(100);
    p["identityProfile"] = json!({ "kubeletidentity": kubelet });
    p["resourceUID"] = keep("resourceUID").unwrap_or_else(|| json!(st.hex(24)));
    if p.get("enableRBAC").is_none() {
        p["enableRBAC"] = json!(true);
    }
    if p.get("supportPlan").is_none() {
        p["supportPlan"] = json!("KubernetesOfficial");
    }
    let mut v = envelope(id, CLUSTER_TYPE, &loc, &req.body)?;
    v["sku"] = req
        .body
        .get("sku")
        .cloned()
        .unwrap_or(json!({"name": "Base", "tier": "Free"}));
    if let Some(ident) = identity {
        v["identity"] = ident;
    }
    v["properties"] = p;
    st.apply(Effect::Insert(id.to_string(), v));
    let mut done = vec![Effect::Merge(
        id.to_string(),
        json!({"properties": {"provisioningState": "Succeeded"}}),
    )];
    let mut failed = vec![Effect::Merge(
        id.to_string(),
        json!({"properties": {"provisioningState": "Failed"}}),
    )];
    if existing.is_none() {
        for (i, profile) in wanted.unwrap_or_default().iter().enumerate() {
            let pname = s(profile, "name").to_string();
            let pid = format!("{id}/agentPools/{pname}");
            let mut pp = profile.clone();
            if let Some(m) = pp.as_object_mut() {
                m.remove("name");
            }
            let props = default_pool_props(&pp, &version, i == 0, "Creating");
            st.apply(Effect::Insert(
                pid.clone(),
                json!({"id": pid, "name": pname, "type": aks_pools::POOL_TYPE, "properties": props}),
            ));
            done.push(Effect::Merge(
                pid.clone(),
                json!({"properties": {"provisioningState": "Succeeded"}}),
            ));
            failed.push(Effect::Merge(
                pid,
                json!({"properties": {"provisioningState": "Failed"}}),
            ));
        }
    }
    let (kind, secs) = if existing.is_some() {
        ("managedClusters.update", 180)
    } else {
        ("managedClusters.create", 360)
    };
    let op = lro::new_op(
        st,
        &a.sub,
        "Microsoft.ContainerService",
        &loc,
        kind,
        id,
        Duration::from_secs(secs),
    )
    .lock(id)
    .on_done(done)
    .on_fail(failed);
    let headers = lro::start(st, op, Style::Async);
    let body = render_cluster(st, id).unwrap_or(Value::Null);
    Ok(Reply::json(if existing.is_some() { 200 } else { 201 }, body).with_headers(headers))
}

fn credentials(st: &mut State, a: &Addr, action: &str) -> ArmResult {
    let id = a.id_at(0);
    let Some(c) = st.get(&id).cloned() else {
        return Err(ArmError::not_found(CLUSTER_TYPE, &id));
    };
    let admin = match action.to_ascii_lowercase().as_str() {
        "listclusteradmincredential" => true,
        "listclusterusercredential" => false,
        _ => {
            return Err(ArmError::new(
                404,
                "NotFound",
                format!("The action '{action}' is not served by fake-azure."),
            ))
        }
    };
    let p = &c["properties"];
    if admin && p.get("disableLocalAccounts") == Some(&json!(true)) {
        return Err(ArmError::bad(
            "BadRequest",
            "Getting static credential is not allowed because this cluster is set to disable local accounts.",
        ));
    }
    // The API server and its CA: the Kubernetes fake's when one stands in for the
    // cluster, else the fqdn on 443 (as AKS) with a CA that is only PEM-shaped.
    let (server, ca) = match &st.config.kube_endpoint {
        Some(url) => (
            if url.contains("://") {
                url.trim_end_matches('/').to_string()
            } else {
                format!("https://{url}")
            },
            st.config.kube_ca_pem.clone().unwrap_or_default(),
        ),
        None => {
            let body = base64::engine::general_purpose::STANDARD.encode(format!(
                "fake-azure cluster CA {}",
                det_uuid(&id.to_ascii_lowercase())
            ));
            (
                format!("https://{}:443", s(p, "fqdn")),
                format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"),
            )
        }
    };
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let name = s(&c, "name");
    let user = if admin || p.pointer("/aadProfile/managed") != Some(&json!(true)) {
        format!(
            "    token: fake-{}-token-{}\n",
            if admin { "admin" } else { "user" },
            st.hex(32)
        )
    } else {
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: kubelogin\n      args: [get-token, --login, azurecli, --server-id, 6dae42f8-4368-4678-94ff-3960e28e3630]\n".to_string()
    };
    let who = if admin { "clusterAdmin" } else { "clusterUser" };
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {who}_{rg}_{name}\ncurrent-context: {name}\nusers:\n- name: {who}_{rg}_{name}\n  user:\n{user}",
        rg = a.rg
    );
    let value = base64::engine::general_purpose::STANDARD.encode(kubeconfig);
    Ok(Reply::json(
        200,
        json!({"kubeconfigs": [{"name": who, "value": value}]}),
    ))
}
