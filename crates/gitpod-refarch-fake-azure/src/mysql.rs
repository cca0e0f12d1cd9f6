//! Microsoft.DBforMySQL flexibleServers (2024-12-30) with databases, configurations
//! and firewallRules; checkNameAvailability with and without location.
//!
//! Server writes answer 202 with `Location` (final-state-via location: the result URL
//! answers the server); deletes answer both headers. Servers have no
//! `provisioningState` in this version, only `state` (`Updating` while an operation
//! runs, then `Ready`). `administratorLoginPassword` is never stored nor returned.
//! Names are global (unique across subscriptions and
//! [`crate::FakeConfig::taken_server_names`]). VNet integration needs a subnet
//! delegated to `Microsoft.DBforMySQL/flexibleServers` and a private DNS zone whose
//! name ends `.mysql.database.azure.com` and is not `<server>.mysql.database.azure.com`
//! (400 `PrivateDnsZoneNameNotValid`). HA is refused on Burstable. One operation at a
//! time per server (409).
//!
//! Invented codes: 409 `NameAlreadyExists` (Azure's message "Specified server name is
//! already used."), 409 `AnotherOperationInProgress` for a busy server,
//! `InvalidParameterValue` for field errors, `SubnetNotDelegated`,
//! `HaNotSupportedForBurstable`, `PasswordNotComplex`.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{ArmError, ArmResult};
use crate::lro::{self, OpResult, Style};
use crate::mysql_config;
use crate::resources::{envelope, location};
use crate::routes::Addr;
use crate::state::{ptr, s, Effect, State};
use crate::{Reply, Req};

pub(crate) const SERVER_TYPE: &str = "Microsoft.DBforMySQL/flexibleServers";
const DELEGATION: &str = "Microsoft.DBforMySQL/flexibleServers";
const SUFFIX: &str = ".mysql.database.azure.com";

fn bad(message: impl Into<String>) -> ArmError {
    ArmError::bad("InvalidParameterValue", message)
}

fn valid_server_name(n: &str) -> bool {
    crate::state::name_ok(
        n,
        3,
        63,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
    ) && !n.ends_with('-')
}

fn name_taken(st: &State, name: &str, except_id: &str) -> bool {
    let except = except_id.to_ascii_lowercase();
    st.config
        .taken_server_names
        .iter()
        .any(|t| t.eq_ignore_ascii_case(name))
        || !st
            .find(|k, v| {
                s(v, "type") == SERVER_TYPE
                    && s(v, "name").eq_ignore_ascii_case(name)
                    && *k != except
            })
            .is_empty()
}

/// `POST …/Microsoft.DBforMySQL[/locations/{loc}]/checkNameAvailability`.
pub(crate) fn sub_action(st: &mut State, req: &Req, rest: &[String]) -> ArmResult {
    let lower: Vec<String> = rest.iter().map(|r| r.to_ascii_lowercase()).collect();
    let ok = matches!(
        lower
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["checknameavailability"] | ["locations", _, "checknameavailability"]
    );
    if !ok || req.verb != "POST" {
        return Err(crate::process::not_served(req));
    }
    let name = s(&req.body, "name");
    let body = if !valid_server_name(name) {
        json!({"nameAvailable": false, "reason": "Invalid", "message": "The server name is invalid: 3-63 lowercase letters, digits or '-', not ending with '-'."})
    } else if name_taken(st, name, "") {
        json!({"nameAvailable": false, "reason": "AlreadyExists", "message": "Specified server name is already used."})
    } else {
        json!({"nameAvailable": true, "message": ""})
    };
    Ok(Reply::json(200, body))
}

/// 409 while an operation runs on the server.
pub(crate) fn check_busy(st: &State, server_id: &str) -> Result<(), ArmError> {
    if lro::locked(st, server_id).is_some() {
        return Err(ArmError::conflict(
            "AnotherOperationInProgress",
            format!(
                "An operation is in progress on server '{}'; please retry after it completes.",
                server_id.rsplit('/').next().unwrap_or("")
            ),
        ));
    }
    Ok(())
}

pub(crate) fn handle(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let types = a.types();
    match (a.segs.len(), types.get(1).map(String::as_str)) {
        (1, _) => {
            let prefix = format!(
                "{}/providers/microsoft.dbformysql/flexibleservers/",
                a.rg_id().to_ascii_lowercase()
            );
            let value = st.find(|k, _| k.strip_prefix(&prefix).is_some_and(|r| !r.contains('/')));
            Ok(Reply::json(200, json!({ "value": value })))
        }
        (2, _) => server(st, req, a),
        (3 | 4, Some("configurations")) => mysql_config::handle(st, req, a),
        (3 | 4, Some("databases" | "firewallrules")) => child(st, req, a),
        _ => Err(crate::process::not_served(req)),
    }
}

fn check_password(p: &str) -> Result<(), ArmError> {
    let classes = [
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if p.chars().count() < 8
        || p.chars().count() > 128
        || classes.iter().filter(|c| **c).count() < 3
    {
        return Err(ArmError::bad(
            "PasswordNotComplex",
            "The password does not meet policy requirements: 8-128 characters from three of: uppercase, lowercase, digits, non-alphanumeric.",
        ));
    }
    Ok(())
}

fn network(st: &State, name: &str, body: &Value, old: Option<&Value>) -> ArmResult<Value> {
    let mut net = old
        .map(|o| o["properties"]["network"].clone())
        .unwrap_or(json!({}));
    crate::state::deep_merge(
        &mut net,
        body.pointer("/properties/network").unwrap_or(&json!({})),
    );
    let subnet = s(&net, "delegatedSubnetResourceId").to_string();
    if let Some(o) = old {
        if !ptr(o, "/properties/network/delegatedSubnetResourceId").eq_ignore_ascii_case(&subnet) {
            return Err(bad("The network mode and delegated subnet of a server cannot be changed after creation."));
        }
    }
    if subnet.is_empty() {
        if s(&net, "publicNetworkAccess").is_empty() {
            net["publicNetworkAccess"] = json!("Enabled");
        }
        return Ok(net);
    }
    let Some(sn) = st.get(&subnet) else {
        return Err(bad(format!(
            "The delegated subnet '{subnet}' does not exist."
        )));
    };
    let delegated = sn
        .pointer("/properties/delegations")
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|x| ptr(x, "/properties/serviceName").eq_ignore_ascii_case(DELEGATION))
        });
    if !delegated {
        return Err(ArmError::bad(
            "SubnetNotDelegated",
            format!("The subnet '{subnet}' must be delegated to {DELEGATION}."),
        ));
    }
    if s(&net, "publicNetworkAccess") == "Enabled" {
        return Err(bad("publicNetworkAccess cannot be Enabled for a server with a delegated subnet (private access)."));
    }
    net["publicNetworkAccess"] = json!("Disabled");
    let zone = s(&net, "privateDnsZoneResourceId").to_string();
    if zone.is_empty() {
        return Err(bad(
            "privateDnsZoneResourceId is required with a delegated subnet.",
        ));
    }
    let Some(z) = st.get(&zone) else {
        return Err(bad(format!(
            "The private DNS zone '{zone}' does not exist."
        )));
    };
    let zname = s(z, "name").to_ascii_lowercase();
    if !zname.ends_with(SUFFIX) || zname == format!("{name}{SUFFIX}") {
        return Err(ArmError::bad(
            "PrivateDnsZoneNameNotValid",
            format!("The private DNS zone name '{zname}' is not valid: it must end with '{SUFFIX}' and must not be '{name}{SUFFIX}'."),
        ));
    }
    Ok(net)
}

fn server(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let name = a.name(0).unwrap_or("").to_string();
    let id = a.id_at(0);
    let existing = st.get(&id).cloned();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(SERVER_TYPE, &id)),
        "PUT" | "PATCH" => put_server(st, req, a, &name, &id, existing),
        "DELETE" => {
            let Some(e) = existing else {
                return Ok(Reply::empty(204));
            };
            let id = s(&e, "id").to_string();
            check_busy(st, &id)?;
            st.apply(Effect::Merge(
                id.clone(),
                json!({"properties": {"state": "Dropping"}}),
            ));
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.DBforMySQL",
                s(&e, "location"),
                "flexibleServers.delete",
                &id,
                Duration::from_secs(120),
            )
            .lock(&id)
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .on_fail(vec![Effect::Merge(
                id.clone(),
                json!({"properties": {"state": "Ready"}}),
            )])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Both);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}

fn put_server(
    st: &mut State,
    req: &Req,
    a: &Addr,
    name: &str,
    id: &str,
    existing: Option<Value>,
) -> ArmResult {
    if !valid_server_name(name) {
        return Err(ArmError::bad(
            "InvalidResourceName",
            format!("The server name '{name}' is invalid: 3-63 lowercase letters, digits or '-', not starting or ending with '-'."),
        ));
    }
    if req.verb == "PATCH" && existing.is_none() {
        return Err(ArmError::not_found(SERVER_TYPE, id));
    }
    let id = existing
        .as_ref()
        .map(|e| s(e, "id").to_string())
        .unwrap_or(id.to_string());
    check_busy(st, &id)?;
    if existing.is_none() && name_taken(st, name, &id) {
        return Err(ArmError::conflict(
            "NameAlreadyExists",
            "Specified server name is already used.",
        ));
    }
    let body = &req.body;
    let p = body.get("properties").cloned().unwrap_or(json!({}));
    let loc = match &existing {
        Some(e) => s(e, "location").to_string(),
        None => location(body)?,
    };
    let mode = s(&p, "createMode");
    if !matches!(mode, "" | "Default" | "Update") {
        return Err(bad(format!(
            "createMode '{mode}' is not served by fake-azure (Default only)."
        )));
    }
    let old_props = existing
        .as_ref()
        .map(|e| e["properties"].clone())
        .unwrap_or(json!({}));
    let mut sku = existing
        .as_ref()
        .map(|e| e["sku"].clone())
        .unwrap_or(json!({}));
    crate::state::deep_merge(&mut sku, body.get("sku").unwrap_or(&json!({})));
    if s(&sku, "name").is_empty()
        || !matches!(
            s(&sku, "tier"),
            "Burstable" | "GeneralPurpose" | "MemoryOptimized"
        )
    {
        return Err(bad(
            "sku.name and sku.tier (Burstable, GeneralPurpose or MemoryOptimized) are required.",
        ));
    }
    let login = s(&p, "administratorLogin");
    match &existing {
        None => {
            let reserved = [
                "admin",
                "administrator",
                "root",
                "azure_superuser",
                "guest",
                "public",
                "sa",
                "dbmanager",
                "loginmanager",
                "dbo",
            ];
            if login.is_empty()
                || login.contains('@')
                || reserved.contains(&login.to_ascii_lowercase().as_str())
            {
                return Err(bad(format!(
                    "administratorLogin '{login}' is missing or not allowed."
                )));
            }
            check_password(s(&p, "administratorLoginPassword"))?;
        }
        Some(_) => {
            if !login.is_empty() && login != s(&old_props, "administratorLogin") {
                return Err(bad("administratorLogin cannot be changed."));
            }
            let pw = s(&p, "administratorLoginPassword");
            if !pw.is_empty() {
                check_password(pw)?;
            }
        }
    }
    let version = match (s(&p, "version"), s(&old_props, "version")) {
        ("", "") => "8.0.21",
        ("", old) => old,
        (v, _) => v,
    }
    .to_string();
    let full = match version.as_str() {
        "5.7" => "5.7.44",
        "8.0.21" => "8.0.42",
        "8.4" => "8.4.5",
        other => {
            return Err(bad(format!(
                "version '{other}' is not supported (5.7, 8.0.21, 8.4)."
            )))
        }
    };
    let mut ha = old_props
        .get("highAvailability")
        .cloned()
        .unwrap_or(json!({"mode": "Disabled"}));
    crate::state::deep_merge(&mut ha, p.get("highAvailability").unwrap_or(&json!({})));
    match s(&ha, "mode") {
        "Disabled" => ha["state"] = json!("NotEnabled"),
        "ZoneRedundant" | "SameZone" => {
            if s(&sku, "tier") == "Burstable" {
                return Err(ArmError::bad("HaNotSupportedForBurstable", "High availability is not supported for the Burstable tier."));
            }
            ha["state"] = json!("Healthy");
        }
        other => return Err(bad(format!("highAvailability.mode '{other}' is invalid; allowed values are Disabled, ZoneRedundant, SameZone."))),
    }
    let net = network(st, name, body, existing.as_ref())?;
    let mut storage = json!({"storageSizeGB": 20, "iops": 360, "autoGrow": "Enabled", "autoIoScaling": "Disabled",
        "logOnDisk": "Disabled", "storageSku": "Premium_LRS", "storageRedundancy": "LocalRedundancy"});
    crate::state::deep_merge(&mut storage, old_props.get("storage").unwrap_or(&json!({})));
    crate::state::deep_merge(&mut storage, p.get("storage").unwrap_or(&json!({})));
    let mut backup = json!({"backupRetentionDays": 7, "geoRedundantBackup": "Disabled", "backupIntervalHours": 24});
    crate::state::deep_merge(&mut backup, old_props.get("backup").unwrap_or(&json!({})));
    crate::state::deep_merge(&mut backup, p.get("backup").unwrap_or(&json!({})));
    let mut props = old_props.clone();
    crate::state::deep_merge(&mut props, &p);
    if let Some(m) = props.as_object_mut() {
        m.remove("administratorLoginPassword");
        m.remove("createMode");
        m.remove("provisioningState");
    }
    props["version"] = json!(version);
    props["fullVersion"] = json!(full);
    props["state"] = json!("Updating");
    props["fullyQualifiedDomainName"] = json!(format!("{name}{SUFFIX}"));
    props["highAvailability"] = ha;
    props["network"] = net;
    props["storage"] = storage;
    props["backup"] = backup;
    props["replicationRole"] = json!("None");
    props["replicaCapacity"] = json!(10);
    if s(&props, "availabilityZone").is_empty() {
        props["availabilityZone"] = json!("1");
    }
    if props.get("maintenanceWindow").is_none() {
        props["maintenanceWindow"] =
            json!({"customWindow": "Disabled", "dayOfWeek": 0, "startHour": 0, "startMinute": 0});
    }
    let mut v = envelope(&id, SERVER_TYPE, &loc, body)?;
    if v.get("tags").is_none() {
        if let Some(t) = existing.as_ref().and_then(|e| e.get("tags")) {
            v["tags"] = t.clone();
        }
    }
    v["sku"] = sku;
    v["properties"] = props;
    st.apply(Effect::Insert(id.clone(), v));
    let (kind, secs) = if existing.is_some() {
        ("flexibleServers.update", 300)
    } else {
        ("flexibleServers.create", 600)
    };
    let op = lro::new_op(
        st,
        &a.sub,
        "Microsoft.DBforMySQL",
        &loc,
        kind,
        &id,
        Duration::from_secs(secs),
    )
    .lock(&id)
    .on_done(vec![Effect::Merge(
        id.clone(),
        json!({"properties": {"state": "Ready"}}),
    )])
    .on_fail(vec![Effect::Merge(
        id.clone(),
        json!({"properties": {"state": "Disabled"}}),
    )])
    .result(OpResult::Resource(id.clone()));
    let headers = lro::start(st, op, Style::Location);
    Ok(Reply::empty(202).with_headers(headers))
}

fn child(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let sid = a.id_at(0);
    let Some(server) = st.get(&sid).cloned() else {
        return Err(ArmError::not_found(SERVER_TYPE, &sid));
    };
    let sid = s(&server, "id").to_string();
    let is_db = a.types()[1] == "databases";
    let (seg, ty) = if is_db {
        ("databases", format!("{SERVER_TYPE}/databases"))
    } else {
        ("firewallRules", format!("{SERVER_TYPE}/firewallRules"))
    };
    if a.segs.len() == 3 {
        if req.verb != "GET" {
            return Err(crate::process::not_served(req));
        }
        return Ok(Reply::json(
            200,
            json!({ "value": st.children(&sid, &seg.to_ascii_lowercase()) }),
        ));
    }
    let name = a.name(1).unwrap_or("").to_string();
    let id = format!("{sid}/{seg}/{name}");
    let existing = st.get(&id).cloned();
    let loc = s(&server, "location").to_string();
    match req.verb.as_str() {
        "GET" => existing
            .map(|v| Reply::json(200, v))
            .ok_or_else(|| ArmError::not_found(&ty, &id)),
        "PUT" => {
            let valid = !name.is_empty()
                && name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(ArmError::bad(
                    "InvalidResourceName",
                    format!("The name '{name}' is invalid."),
                ));
            }
            check_busy(st, &sid)?;
            let p = req.body.get("properties").cloned().unwrap_or(json!({}));
            let props = if is_db {
                database_props(&server, &p)?
            } else {
                if !ptr(&server, "/properties/network/delegatedSubnetResourceId").is_empty() {
                    return Err(bad("Firewall rules are not supported for a server with private access (VNet integration)."));
                }
                let start: Result<Ipv4Addr, _> = s(&p, "startIpAddress").parse();
                let end: Result<Ipv4Addr, _> = s(&p, "endIpAddress").parse();
                match (start, end) {
                    (Ok(a), Ok(b)) if a <= b => {
                        json!({"startIpAddress": a.to_string(), "endIpAddress": b.to_string()})
                    }
                    _ => return Err(bad(
                        "startIpAddress and endIpAddress must be IPv4 addresses with start <= end.",
                    )),
                }
            };
            st.apply(Effect::Insert(
                id.clone(),
                json!({"id": id, "name": name, "type": ty, "properties": props}),
            ));
            let kind = if is_db {
                "flexibleServers.databases.create"
            } else {
                "flexibleServers.firewallRules.create"
            };
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.DBforMySQL",
                &loc,
                kind,
                &id,
                Duration::from_secs(30),
            )
            .lock(&sid)
            .result(OpResult::Resource(id.clone()));
            let headers = lro::start(st, op, Style::Location);
            Ok(Reply::empty(202).with_headers(headers))
        }
        "DELETE" => {
            if existing.is_none() {
                return Ok(Reply::empty(204));
            }
            check_busy(st, &sid)?;
            let kind = if is_db {
                "flexibleServers.databases.delete"
            } else {
                "flexibleServers.firewallRules.delete"
            };
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.DBforMySQL",
                &loc,
                kind,
                &id,
                Duration::from_secs(30),
            )
            .lock(&sid)
            .on_done(vec![Effect::RemoveTree(id.clone())])
            .result(OpResult::None);
            let headers = lro::start(st, op, Style::Location);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}

fn database_props(server: &Value, p: &Value) -> ArmResult<Value> {
    let v57 = ptr(server, "/properties/version") == "5.7";
    let charset = match s(p, "charset") {
        "" if v57 => "utf8",
        "" => "utf8mb4",
        c => c,
    }
    .to_ascii_lowercase();
    if !matches!(
        charset.as_str(),
        "utf8" | "utf8mb3" | "utf8mb4" | "latin1" | "ascii" | "binary"
    ) {
        return Err(bad(format!("charset '{charset}' is not supported.")));
    }
    let collation = match s(p, "collation") {
        "" => match charset.as_str() {
            "utf8mb4" if !v57 => "utf8mb4_0900_ai_ci".to_string(),
            "binary" => "binary".to_string(),
            c => format!("{c}_general_ci"),
        },
        c => c.to_ascii_lowercase(),
    };
    let family = if charset == "utf8mb3" {
        "utf8"
    } else {
        charset.as_str()
    };
    let fits = collation == charset
        || collation.starts_with(&format!("{charset}_"))
        || collation.starts_with(&format!("{family}_"))
        || (charset == "utf8" && collation.starts_with("utf8mb3_"));
    if !fits || (v57 && collation.contains("_0900_")) {
        return Err(bad(format!(
            "collation '{collation}' is not valid for charset '{charset}' on MySQL {}.",
            ptr(server, "/properties/version")
        )));
    }
    Ok(json!({"charset": charset, "collation": collation}))
}
