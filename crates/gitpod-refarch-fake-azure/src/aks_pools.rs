//! Microsoft.ContainerService agentPools (2026-08-01): the pool API, pool
//! validation shared with the cluster PUT's inline pools.
//!
//! Pool names follow the spec's pattern `^[a-z][a-z0-9]{0,11}$` (read from
//! `managedClusters.json` at the pinned version). Pool writes take the cluster's
//! operation lock. Immutable after creation: `vmSize`, `osDiskSizeGB`, `osDiskType`,
//! `vnetSubnetID`, `maxPods`, `osType` (400 `PropertyChangeNotAllowed`). The last
//! System pool cannot be deleted (invented code `CannotDeleteLastSystemPool`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::aks::{check_lock, resolve_version, CLUSTER_TYPE};
use crate::error::{ArmError, ArmResult};
use crate::lro::{self, OpResult, Style};
use crate::routes::Addr;
use crate::state::{s, Effect, State};
use crate::{Reply, Req};

pub(crate) const POOL_TYPE: &str = "Microsoft.ContainerService/managedClusters/agentPools";
const IMMUTABLE: &[&str] = &[
    "vmSize",
    "osDiskSizeGB",
    "osDiskType",
    "vnetSubnetID",
    "maxPods",
    "osType",
];

/// `^[a-z][a-z0-9]{0,11}$`.
fn valid_pool_name(n: &str) -> bool {
    crate::state::name_ok(
        n,
        1,
        12,
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
    )
}

fn one_of(v: &Value, field: &str, allowed: &[&str]) -> Result<(), ArmError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(x)) if allowed.contains(&x.as_str()) => Ok(()),
        Some(other) => Err(ArmError::invalid(format!(
            "The value {other} of agent pool property '{field}' is invalid; allowed values are {}.",
            allowed.join(", ")
        ))),
    }
}

fn int(v: &Value, field: &str) -> Option<i64> {
    v.get(field).and_then(Value::as_i64)
}

/// Validate a pool profile (the flattened properties, as inline profiles carry them).
pub(crate) fn validate_pool(
    st: &State,
    name: &str,
    p: &Value,
    first: bool,
) -> Result<(), ArmError> {
    if !valid_pool_name(name) {
        return Err(ArmError::invalid(format!(
            "The agent pool name '{name}' is invalid: it must match ^[a-z][a-z0-9]{{0,11}}$ (lowercase letters and digits, starting with a letter, at most 12 characters)."
        )));
    }
    one_of(p, "mode", &["System", "User", "Gateway"])?;
    one_of(p, "osType", &["Linux", "Windows"])?;
    one_of(
        p,
        "type",
        &[
            "VirtualMachineScaleSets",
            "AvailabilitySet",
            "VirtualMachines",
        ],
    )?;
    one_of(p, "osDiskType", &["Managed", "Ephemeral"])?;
    let system = match s(p, "mode") {
        "" => first,
        m => m == "System",
    };
    let count = int(p, "count");
    if let Some(c) = count {
        if !(0..=1000).contains(&c) || (system && c < 1) {
            return Err(ArmError::invalid(format!(
                "Agent pool '{name}': count {c} is out of range (0..1000, at least 1 for a System pool)."
            )));
        }
    }
    if p.get("enableAutoScaling") == Some(&json!(true)) {
        let (Some(min), Some(max)) = (int(p, "minCount"), int(p, "maxCount")) else {
            return Err(ArmError::invalid(format!(
                "Agent pool '{name}': minCount and maxCount are required when enableAutoScaling is true."
            )));
        };
        if min > max || count.is_some_and(|c| c < min || c > max) {
            return Err(ArmError::invalid(format!(
                "Agent pool '{name}': minCount {min} must not exceed maxCount {max}, and count must lie between them."
            )));
        }
    }
    if let Some(mp) = int(p, "maxPods") {
        if !(10..=250).contains(&mp) {
            return Err(ArmError::invalid(format!(
                "Agent pool '{name}': maxPods {mp} is out of range 10..250."
            )));
        }
    }
    match p.get("nodeLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) if m.values().all(Value::is_string) => {}
        Some(_) => {
            return Err(ArmError::invalid(format!(
                "Agent pool '{name}': nodeLabels must be a map of strings."
            )))
        }
    }
    if let Some(taints) = p.get("nodeTaints").and_then(Value::as_array) {
        for t in taints {
            let t = t.as_str().unwrap_or("");
            let effect = t.rsplit(':').next().unwrap_or("");
            if !t.contains(':')
                || !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
            {
                return Err(ArmError::invalid(format!(
                    "Agent pool '{name}': taint '{t}' must look like key=value:NoSchedule|PreferNoSchedule|NoExecute."
                )));
            }
        }
    }
    let subnet = s(p, "vnetSubnetID");
    if !subnet.is_empty() {
        let Some(sn) = st.get(subnet) else {
            return Err(ArmError::invalid(format!(
                "Agent pool '{name}': the subnet '{subnet}' (vnetSubnetID) does not exist."
            )));
        };
        let delegated = sn
            .pointer("/properties/delegations")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty());
        if delegated {
            return Err(ArmError::invalid(format!(
                "Agent pool '{name}': the subnet '{subnet}' is delegated to another service and cannot host AKS nodes."
            )));
        }
    }
    Ok(())
}

/// The stored properties of a pool: the request plus defaults and read-only fields.
pub(crate) fn default_pool_props(p: &Value, version: &str, first: bool, state: &str) -> Value {
    let mut out = p.clone();
    let defaults = [
        ("count", json!(1)),
        ("vmSize", json!("Standard_DS2_v2")),
        ("osType", json!("Linux")),
        ("osSKU", json!("Ubuntu")),
        ("type", json!("VirtualMachineScaleSets")),
        ("mode", json!(if first { "System" } else { "User" })),
        ("maxPods", json!(250)),
        ("osDiskSizeGB", json!(128)),
        ("osDiskType", json!("Managed")),
        ("enableAutoScaling", json!(false)),
    ];
    for (k, v) in defaults {
        if out.get(k).is_none_or(Value::is_null) {
            out[k] = v;
        }
    }
    out["provisioningState"] = json!(state);
    out["powerState"] = json!({"code": "Running"});
    if out.get("orchestratorVersion").is_none_or(Value::is_null) {
        out["orchestratorVersion"] = json!(version);
    }
    out["currentOrchestratorVersion"] = out["orchestratorVersion"].clone();
    out["nodeImageVersion"] = json!("AKSUbuntu-2204gen2containerd-202511.07.0");
    out
}

pub(crate) fn handle(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let cluster_id = a.id_at(0);
    let Some(cluster) = st.get(&cluster_id).cloned() else {
        return Err(ArmError::not_found(CLUSTER_TYPE, &cluster_id));
    };
    let cluster_id = s(&cluster, "id").to_string();
    if a.trailing().is_some() {
        if a.segs.len() != 3 || req.verb != "GET" {
            return Err(crate::process::not_served(req));
        }
        return Ok(Reply::json(
            200,
            json!({ "value": st.children(&cluster_id, "agentpools") }),
        ));
    }
    let name = a.name(1).unwrap_or("").to_string();
    if a.segs.len() != 4 {
        return Err(crate::process::not_served(req));
    }
    let id = format!("{cluster_id}/agentPools/{name}");
    let existing = st.get(&id).cloned();
    let loc = s(&cluster, "location").to_string();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(POOL_TYPE, &id)),
        "PUT" => {
            if !valid_pool_name(&name) {
                return Err(ArmError::invalid(format!(
                    "The agent pool name '{name}' is invalid: it must match ^[a-z][a-z0-9]{{0,11}}$."
                )));
            }
            check_lock(st, &cluster_id)?;
            let props = req.body.get("properties").cloned().unwrap_or(json!({}));
            validate_pool(st, &name, &props, false)?;
            let cluster_version =
                crate::state::ptr(&cluster, "/properties/currentKubernetesVersion").to_string();
            let version = match s(&props, "orchestratorVersion") {
                "" => cluster_version,
                v => resolve_version(v, &loc)?,
            };
            let mut props = props.clone();
            if !s(&props, "orchestratorVersion").is_empty() {
                props["orchestratorVersion"] = json!(version);
            }
            if let Some(old) = &existing {
                for f in IMMUTABLE {
                    if let Some(v) = props.get(*f) {
                        if old["properties"].get(*f) != Some(v) {
                            return Err(ArmError::bad(
                                "PropertyChangeNotAllowed",
                                format!("Changing property '{f}' is not allowed."),
                            ));
                        }
                    }
                }
            }
            let state = if existing.is_some() {
                "Updating"
            } else {
                "Creating"
            };
            let stored = match &existing {
                Some(old) => {
                    let mut p = old["properties"].clone();
                    crate::state::deep_merge(&mut p, &props);
                    p["provisioningState"] = json!(state);
                    p
                }
                None => default_pool_props(&props, &version, false, state),
            };
            st.apply(Effect::Insert(
                id.clone(),
                json!({"id": id, "name": name, "type": POOL_TYPE, "properties": stored}),
            ));
            let (kind, secs) = if existing.is_some() {
                ("managedClusters.agentPools.update", 120)
            } else {
                ("managedClusters.agentPools.create", 180)
            };
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.ContainerService",
                &loc,
                kind,
                &id,
                Duration::from_secs(secs),
            )
            .lock(&cluster_id)
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
            let Some(old) = existing else {
                return Ok(Reply::empty(204));
            };
            check_lock(st, &cluster_id)?;
            let is_system = |p: &Value| crate::state::ptr(p, "/properties/mode") == "System";
            if is_system(&old)
                && st
                    .children(&cluster_id, "agentpools")
                    .iter()
                    .filter(|p| is_system(p))
                    .count()
                    <= 1
            {
                return Err(ArmError::bad(
                    "CannotDeleteLastSystemPool",
                    format!("Agent pool '{name}' is the last System pool of the cluster and cannot be deleted."),
                ));
            }
            st.apply(Effect::Merge(
                id.clone(),
                json!({"properties": {"provisioningState": "Deleting"}}),
            ));
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.ContainerService",
                &loc,
                "managedClusters.agentPools.delete",
                &id,
                Duration::from_secs(120),
            )
            .lock(&cluster_id)
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Both);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}
