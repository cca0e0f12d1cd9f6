//! Cloud SQL Admin v1: instances, databases, users and operations, with Cloud SQL's
//! rules of one operation per instance and no reuse of a deleted instance's name.

use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::ops::{self, Api, Op};
use crate::state::{deep_merge, is_rfc1035, now_rfc3339, s, Effect, State};
use crate::{unserved, Req};

const BASE: &str = "https://sqladmin.googleapis.com/v1/";

fn instance_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The Cloud SQL instance does not exist: {name}."))
}

fn in_progress() -> ApiError {
    ApiError::aborted(
        "operationInProgress",
        "Operation failed because another operation was already in progress. Try your request after the current operation is complete.",
    )
}

fn user_key(inst_key: &str, name: &str, host: &str) -> String {
    if host.is_empty() {
        format!("{inst_key}/users/{name}")
    } else {
        format!("{inst_key}/users/{name}@{host}")
    }
}

/// The stored user named `name` (with `host` when given).
fn find_user(st: &State, inst_key: &str, name: &str, host: Option<&str>) -> Option<String> {
    st.children(&format!("{inst_key}/users/"))
        .into_iter()
        .find(|(_, v)| s(v, "name") == name && host.is_none_or(|h| s(v, "host") == h))
        .map(|(k, _)| k)
}

fn operation(st: &mut State, project: &str, instance: &str, op_type: &str) -> Op {
    let id = st.uuid();
    let name = format!("projects/{project}/operations/{id}");
    let base = json!({
        "kind": "sql#operation",
        "name": id,
        "operationType": op_type,
        "targetId": instance,
        "targetProject": project,
        "targetLink": format!("{BASE}projects/{project}/instances/{instance}"),
        "selfLink": format!("{BASE}projects/{project}/operations/{id}"),
        "insertTime": now_rfc3339(),
        "user": "fake-gcp@example.com",
    });
    Op::new(
        name,
        Api::Sql,
        op_type,
        format!("projects/{project}/instances/{instance}"),
        base,
    )
}

pub(crate) fn handle(st: &mut State, method: &str, req: &Req) -> ApiResult {
    if method == "sql.flags.list" {
        return Ok(crate::catalog::sql_flags(req.q("databaseVersion")));
    }
    let project = st.require_project(req.p("project"))?;
    let instance = req.p("instance").to_string();
    let ikey = format!("projects/{project}/instances/{instance}");
    match method {
        "sql.operations.get" => {
            let name = format!("projects/{project}/operations/{}", req.p("operation"));
            ops::poll(st, &name, &[Api::Sql]).ok_or_else(|| {
                ApiError::not_found(format!(
                    "The Cloud SQL operation does not exist: {}.",
                    req.p("operation")
                ))
            })
        }
        "sql.tiers.list" => Ok(crate::catalog::sql_tiers()),
        "sql.operations.list" => {
            // Newest first, as Cloud SQL lists them; `instance` narrows the list.
            let prefix = format!("projects/{project}/operations/");
            let instance = req.q("instance").filter(|i| !i.is_empty());
            let mut found: Vec<(String, String)> = st
                .ops
                .values()
                .filter(|op| op.api == Api::Sql && op.name.starts_with(&prefix))
                .filter(|op| instance.is_none_or(|i| s(&op.base, "targetId") == i))
                .map(|op| (op.start_time.clone(), op.name.clone()))
                .collect();
            found.sort();
            let items: Vec<Value> = found
                .iter()
                .rev()
                .map(|(_, n)| ops::render(st, n))
                .collect();
            Ok(list("sql#operationsList", items))
        }
        "sql.instances.get" => st
            .res
            .get(&ikey)
            .cloned()
            .ok_or_else(|| instance_not_found(&instance)),
        "sql.instances.list" => {
            let items: Vec<Value> = st
                .children(&format!("projects/{project}/instances/"))
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            Ok(list("sql#instancesList", items))
        }
        "sql.instances.insert" => insert_instance(st, &project, req),
        "sql.instances.patch" => {
            let inst = st
                .res
                .get(&ikey)
                .cloned()
                .ok_or_else(|| instance_not_found(&instance))?;
            if ops::pending_on(st, &ikey).is_some() {
                return Err(in_progress());
            }
            let mut patch = req.body().clone();
            if let Value::Object(m) = &mut patch {
                for field in [
                    "name",
                    "project",
                    "rootPassword",
                    "kind",
                    "state",
                    "etag",
                    "selfLink",
                    "connectionName",
                ] {
                    m.remove(field);
                }
            }
            if let Some(tier) = patch
                .get("settings")
                .and_then(|x| x.get("tier"))
                .and_then(Value::as_str)
            {
                check_tier(tier)?;
            }
            if let Some(flags) = patch.get("settings").and_then(|x| x.get("databaseFlags")) {
                crate::catalog::check_sql_flags(flags, inst.get("databaseVersion"))?;
            }
            if let Some(network) = patch
                .get("settings")
                .and_then(|x| x.get("ipConfiguration"))
                .and_then(|x| x.get("privateNetwork"))
                .and_then(Value::as_str)
            {
                check_private_network(st, &project, network)?;
            }
            normalize_settings(&mut patch);
            let mut next = inst.clone();
            deep_merge(&mut next, &patch);
            let version: i64 = inst
                .get("settings")
                .and_then(|x| x.get("settingsVersion"))
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            next["settings"]["settingsVersion"] = json!((version + 1).to_string());
            next["etag"] = json!(st.hex(64));
            let op = operation(st, &project, &instance, "UPDATE")
                .on_done(vec![Effect::Insert(ikey, next)]);
            Ok(ops::register(st, method, op))
        }
        "sql.instances.delete" => {
            let inst = st
                .res
                .get(&ikey)
                .cloned()
                .ok_or_else(|| instance_not_found(&instance))?;
            if ops::pending_on(st, &ikey).is_some() {
                return Err(in_progress());
            }
            let protected = inst
                .get("settings")
                .and_then(|x| x.get("deletionProtectionEnabled"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if protected {
                return Err(ApiError::precondition(
                    "deletionProtectionEnabled",
                    "The instance is protected. Please disable the deletion protection and try again.",
                ));
            }
            let previous = inst.get("state").cloned().unwrap_or(json!("RUNNABLE"));
            st.apply(Effect::Merge(
                ikey.clone(),
                json!({"state": "PENDING_DELETE"}),
            ));
            let op = operation(st, &project, &instance, "DELETE")
                .on_done(vec![Effect::Remove(ikey.clone())])
                .on_fail(vec![Effect::Merge(ikey, json!({ "state": previous }))]);
            Ok(ops::register(st, method, op))
        }
        "sql.databases.get" => {
            st.res
                .get(&ikey)
                .ok_or_else(|| instance_not_found(&instance))?;
            let key = format!("{ikey}/databases/{}", req.p("database"));
            st.res.get(&key).cloned().ok_or_else(|| {
                ApiError::not_found(format!(
                    "Not Found: database {} does not exist.",
                    req.p("database")
                ))
            })
        }
        "sql.databases.list" => {
            st.res
                .get(&ikey)
                .ok_or_else(|| instance_not_found(&instance))?;
            let items: Vec<Value> = st
                .children(&format!("{ikey}/databases/"))
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            Ok(list("sql#databasesList", items))
        }
        "sql.databases.insert" => {
            ready(st, &ikey, &instance)?;
            let name = s(req.body(), "name").to_string();
            if name.is_empty() || name.len() > 64 {
                return Err(ApiError::invalid(
                    "Invalid request: database name is required (at most 64 characters).",
                ));
            }
            let key = format!("{ikey}/databases/{name}");
            if st.res.contains_key(&key) {
                return Err(ApiError::already_exists(format!(
                    "Database \"{name}\" already exists."
                )));
            }
            let db = database(st, &project, &instance, &name, req.body())?;
            let op = operation(st, &project, &instance, "CREATE_DATABASE")
                .on_done(vec![Effect::Insert(key, db)]);
            Ok(ops::register(st, method, op))
        }
        "sql.databases.delete" => {
            let key = format!("{ikey}/databases/{}", req.p("database"));
            ready(st, &ikey, &instance)?;
            if !st.res.contains_key(&key) {
                return Err(ApiError::not_found(format!(
                    "Not Found: database {} does not exist.",
                    req.p("database")
                )));
            }
            let op = operation(st, &project, &instance, "DELETE_DATABASE")
                .on_done(vec![Effect::Remove(key)]);
            Ok(ops::register(st, method, op))
        }
        "sql.users.list" => {
            st.res
                .get(&ikey)
                .ok_or_else(|| instance_not_found(&instance))?;
            let items: Vec<Value> = st
                .children(&format!("{ikey}/users/"))
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            Ok(list("sql#usersList", items))
        }
        "sql.users.get" => {
            st.res
                .get(&ikey)
                .ok_or_else(|| instance_not_found(&instance))?;
            let key = find_user(st, &ikey, req.p("name"), req.q("host")).ok_or_else(|| {
                ApiError::not_found(format!("User {} does not exist.", req.p("name")))
            })?;
            Ok(st.res.get(&key).cloned().unwrap_or(Value::Null))
        }
        "sql.users.insert" => {
            ready(st, &ikey, &instance)?;
            let body = req.body();
            let name = s(body, "name").to_string();
            if name.is_empty() || name.len() > 32 {
                return Err(ApiError::invalid(
                    "Invalid request: user name is required (at most 32 characters).",
                ));
            }
            let host = default_host(st, &ikey, body);
            let key = user_key(&ikey, &name, &host);
            if st.res.contains_key(&key) {
                return Err(ApiError::already_exists(format!(
                    "User '{name}'@'{host}' already exists."
                )));
            }
            let user = new_user(st, &project, &instance, &name, &host, body);
            let op = operation(st, &project, &instance, "CREATE_USER")
                .on_done(vec![Effect::Insert(key, user)]);
            Ok(ops::register(st, method, op))
        }
        "sql.users.update" => {
            ready(st, &ikey, &instance)?;
            let name = req
                .q("name")
                .unwrap_or_else(|| s(req.body(), "name"))
                .to_string();
            let key = find_user(st, &ikey, &name, req.q("host"))
                .ok_or_else(|| ApiError::not_found(format!("User {name} does not exist.")))?;
            let mut patch = req.body().clone();
            if let Value::Object(m) = &mut patch {
                for field in [
                    "password", "name", "host", "instance", "project", "kind", "etag",
                ] {
                    m.remove(field);
                }
            }
            patch["etag"] = json!(st.hex(32));
            let op = operation(st, &project, &instance, "UPDATE_USER")
                .on_done(vec![Effect::Merge(key, patch)]);
            Ok(ops::register(st, method, op))
        }
        "sql.users.delete" => {
            ready(st, &ikey, &instance)?;
            let name = req.q("name").unwrap_or("").to_string();
            let key = find_user(st, &ikey, &name, req.q("host"))
                .ok_or_else(|| ApiError::not_found(format!("User {name} does not exist.")))?;
            let op = operation(st, &project, &instance, "DELETE_USER")
                .on_done(vec![Effect::Remove(key)]);
            Ok(ops::register(st, method, op))
        }
        _ => Err(unserved(method)),
    }
}

/// Databases and users need the instance to exist, be idle and `RUNNABLE`.
fn ready(st: &State, ikey: &str, instance: &str) -> Result<(), ApiError> {
    let inst = st
        .res
        .get(ikey)
        .ok_or_else(|| instance_not_found(instance))?;
    if ops::pending_on(st, ikey).is_some() {
        return Err(in_progress());
    }
    if s(inst, "state") != "RUNNABLE" {
        return Err(ApiError::precondition(
            "invalidState",
            "Invalid request since instance is not running.",
        ));
    }
    Ok(())
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    if items.is_empty() {
        json!({ "kind": kind })
    } else {
        json!({ "kind": kind, "items": items })
    }
}

fn is_mysql(st: &State, ikey: &str) -> bool {
    st.res
        .get(ikey)
        .map(|i| {
            matches!(
                engine(i.get("databaseVersion")),
                Engine::Mysql5 | Engine::Mysql8
            )
        })
        .unwrap_or(true)
}

fn default_host(st: &State, ikey: &str, body: &Value) -> String {
    match body.get("host").and_then(Value::as_str) {
        Some(h) if !h.is_empty() => h.to_string(),
        _ if is_mysql(st, ikey) => "%".to_string(),
        _ => String::new(),
    }
}

fn new_user(
    st: &mut State,
    project: &str,
    instance: &str,
    name: &str,
    host: &str,
    body: &Value,
) -> Value {
    let mut u = json!({
        "kind": "sql#user",
        "name": name,
        "instance": instance,
        "project": project,
        "etag": st.hex(32),
    });
    if !host.is_empty() {
        u["host"] = json!(host);
    }
    for field in ["type", "passwordPolicy", "databaseRoles"] {
        if let Some(v) = body.get(field) {
            u[field] = v.clone();
        }
    }
    u
}

/// Whether Cloud SQL offers `tier`: the tiers `tiers.list` answers (the catalogue:
/// shared-core, `db-n1-standard-N`/`db-n1-highmem-N`, `db-perf-optimized-N-V`), and
/// `db-custom-CPUS-MB` (1 or an even number of vCPUs up to 96, memory a multiple of
/// 256 MB, at least 3840 MB and 0.9 to 6.5 GB per vCPU). Anything else is a 400.
fn check_tier(tier: &str) -> Result<(), ApiError> {
    let num = |s: &str| s.parse::<u32>().ok();
    let known = crate::catalog::is_listed_tier(tier)
        || match tier.strip_prefix("db-custom-") {
            Some(rest) => match rest.split_once('-').map(|(c, m)| (num(c), num(m))) {
                Some((Some(cpus), Some(mb))) => {
                    (cpus == 1 || (cpus % 2 == 0 && cpus <= 96))
                        && mb % 256 == 0
                        && mb >= 3840
                        && u64::from(mb) * 10 >= u64::from(cpus) * 9216
                        && u64::from(mb) * 10 <= u64::from(cpus) * 66560
                }
                _ => false,
            },
            None => false,
        };
    if known {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Invalid request: Invalid Tier ({tier}) for (ENTERPRISE) Edition. Use the Cloud SQL Admin API tiers.list method to check the list of available tiers."
        )))
    }
}

/// A private IP instance's VPC network must exist in Compute (the private services
/// access connection it also needs in GCP is not modelled).
fn check_private_network(st: &State, project: &str, network: &str) -> Result<(), ApiError> {
    if network.is_empty() {
        return Ok(());
    }
    let key = crate::compute::network_key(project, network);
    if st.res.contains_key(&key) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Invalid request: The network {key} does not exist. Set settings.ipConfiguration.privateNetwork to an existing VPC network."
        ))
        .with_reason("invalidNetwork"))
    }
}

/// The engine family of a `databaseVersion`, sent as a name or (by the official Rust
/// clients) as its enum number.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// MySQL 5.x: no `utf8mb4_0900_*` collations.
    Mysql5,
    /// MySQL 8 and later.
    Mysql8,
    Postgres,
    SqlServer,
}

fn engine(version: Option<&Value>) -> Engine {
    match version {
        Some(Value::String(v)) if v.starts_with("MYSQL_5") => Engine::Mysql5,
        Some(Value::String(v)) if v.starts_with("POSTGRES") => Engine::Postgres,
        Some(Value::String(v)) if v.starts_with("SQLSERVER") => Engine::SqlServer,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(2 | 3 | 5 | 6) => Engine::Mysql5,
            Some(9 | 10 | 18 | 19 | 23 | 110 | 172 | 272 | 408 | 557 | 684 | 781) => {
                Engine::Postgres
            }
            Some(11 | 14 | 15 | 16 | 26..=29 | 199..=202 | 549..=551) => Engine::SqlServer,
            _ => Engine::Mysql8,
        },
        _ => Engine::Mysql8,
    }
}

/// A database as Cloud SQL reports it: the charset and collation default per engine
/// and version (MySQL 5.7: `utf8`/`utf8_general_ci`, 8.0: `utf8mb4`/`utf8mb4_0900_ai_ci`,
/// PostgreSQL: `UTF8`/`en_US.UTF8`), and a charset without a collation gets that
/// charset's default collation. A collation the version does not have is a 400.
fn database(
    st: &mut State,
    project: &str,
    instance: &str,
    name: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let ikey = format!("projects/{project}/instances/{instance}");
    let engine = engine(st.res.get(&ikey).and_then(|i| i.get("databaseVersion")));
    let given = |field: &str| {
        body.get(field)
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
    };
    let charset = given("charset").unwrap_or_else(|| {
        match engine {
            Engine::Mysql5 => "utf8",
            Engine::Mysql8 => "utf8mb4",
            Engine::Postgres => "UTF8",
            Engine::SqlServer => "",
        }
        .to_string()
    });
    let collation = match given("collation") {
        Some(c) => c,
        None => match (engine, charset.as_str()) {
            (Engine::Mysql8, "utf8mb4") => "utf8mb4_0900_ai_ci".to_string(),
            (Engine::Mysql5 | Engine::Mysql8, "latin1") => "latin1_swedish_ci".to_string(),
            (Engine::Mysql5 | Engine::Mysql8, cs) => format!("{cs}_general_ci"),
            (Engine::Postgres, _) => "en_US.UTF8".to_string(),
            (Engine::SqlServer, _) => "SQL_Latin1_General_CP1_CI_AS".to_string(),
        },
    };
    if engine == Engine::Mysql5 && collation.contains("_0900_") {
        return Err(ApiError::invalid(format!(
            "Invalid request: Unknown collation: '{collation}'."
        )));
    }
    let mut db = json!({
        "kind": "sql#database",
        "name": name,
        "instance": instance,
        "project": project,
        "charset": charset,
        "collation": collation,
        "selfLink": format!("{BASE}projects/{project}/instances/{instance}/databases/{name}"),
        "etag": st.hex(32),
    });
    if engine == Engine::SqlServer {
        if let Some(o) = db.as_object_mut() {
            o.remove("charset");
        }
    }
    Ok(db)
}

/// `dataDiskSizeGb` and the like are int64: answered as strings whatever was sent.
fn normalize_settings(instance: &mut Value) {
    if let Some(Value::Object(settings)) = instance.get_mut("settings") {
        for field in [
            "dataDiskSizeGb",
            "storageAutoResizeLimit",
            "settingsVersion",
            "replicationLagMaxSeconds",
        ] {
            if let Some(Value::Number(n)) = settings.get(field) {
                let as_string = Value::String(n.to_string());
                settings.insert(field.to_string(), as_string);
            }
        }
        if let Some(Value::Object(backup)) = settings.get_mut("backupConfiguration") {
            backup
                .entry("kind")
                .or_insert(json!("sql#backupConfiguration"));
        }
    }
}

fn insert_instance(st: &mut State, project: &str, req: &Req) -> ApiResult {
    let body = req.body();
    let name = s(body, "name").to_string();
    if !is_rfc1035(&name, 98) {
        return Err(ApiError::invalid(format!(
            "Invalid request: instance name ({name}) must be lowercase letters, digits and hyphens, starting with a letter."
        )));
    }
    let tier = body
        .get("settings")
        .and_then(|x| x.get("tier"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if tier.is_empty() {
        return Err(ApiError::invalid(
            "Invalid request: Missing required field settings.tier.",
        ));
    }
    check_tier(tier)?;
    let ikey = format!("projects/{project}/instances/{name}");
    if st.res.contains_key(&ikey) {
        return Err(
            ApiError::already_exists("The Cloud SQL instance already exists.")
                .with_reason("instanceAlreadyExists"),
        );
    }
    if st.sql_used_names.contains(&ikey) {
        return Err(ApiError::already_exists(
            "The Cloud SQL instance already exists. When you delete an instance, you can't reuse the name of the deleted instance until one week from the deletion date.",
        )
        .with_reason("instanceAlreadyExists"));
    }
    let region = body
        .get("region")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .unwrap_or("us-central1")
        .to_string();
    let version = body
        .get("databaseVersion")
        .cloned()
        .unwrap_or(json!("MYSQL_8_0"));
    if let Some(flags) = body.get("settings").and_then(|x| x.get("databaseFlags")) {
        crate::catalog::check_sql_flags(flags, Some(&version))?;
    }
    if let Some(network) = body
        .get("settings")
        .and_then(|x| x.get("ipConfiguration"))
        .and_then(|x| x.get("privateNetwork"))
        .and_then(Value::as_str)
    {
        check_private_network(st, project, network)?;
    }
    let mut inst = Map::new();
    if let Value::Object(b) = body {
        for (k, v) in b {
            if k != "rootPassword" {
                inst.insert(k.clone(), v.clone());
            }
        }
    }
    let mut inst = Value::Object(inst);
    let settings_defaults = json!({
        "kind": "sql#settings",
        "settingsVersion": "1",
        "dataDiskSizeGb": "10",
        "dataDiskType": "PD_SSD",
        "storageAutoResize": true,
        "storageAutoResizeLimit": "0",
        "availabilityType": "ZONAL",
        "activationPolicy": "ALWAYS",
        "pricingPlan": "PER_USE",
        "replicationType": "SYNCHRONOUS",
        "backupConfiguration": {"kind": "sql#backupConfiguration", "enabled": false, "binaryLogEnabled": false},
        "ipConfiguration": {"ipv4Enabled": true},
        "locationPreference": {"kind": "sql#locationPreference", "zone": format!("{region}-b")},
    });
    let mut settings = settings_defaults;
    deep_merge(&mut settings, body.get("settings").unwrap_or(&json!({})));
    settings["settingsVersion"] = json!("1");
    inst["settings"] = settings;
    normalize_settings(&mut inst);
    let private = inst["settings"]["ipConfiguration"]
        .get("privateNetwork")
        .and_then(Value::as_str)
        .is_some();
    let public = inst["settings"]["ipConfiguration"]
        .get("ipv4Enabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut ips = Vec::new();
    if public {
        ips.push(json!({"type": "PRIMARY", "ipAddress": st.ip(35)}));
    }
    if private {
        ips.push(json!({"type": "PRIVATE", "ipAddress": st.ip(10)}));
    }
    let number = st.project_number(project);
    for (k, v) in [
        ("kind", json!("sql#instance")),
        ("name", json!(name)),
        ("project", json!(project)),
        ("region", json!(region)),
        ("databaseVersion", version),
        ("state", json!("PENDING_CREATE")),
        (
            "connectionName",
            json!(format!("{project}:{region}:{name}")),
        ),
        ("ipAddresses", Value::Array(ips)),
        (
            "selfLink",
            json!(format!("{BASE}projects/{project}/instances/{name}")),
        ),
        ("etag", json!(st.hex(64))),
        ("backendType", json!("SECOND_GEN")),
        ("instanceType", json!("CLOUD_SQL_INSTANCE")),
        ("gceZone", json!(format!("{region}-b"))),
        ("createTime", json!(now_rfc3339())),
        (
            "serviceAccountEmailAddress",
            json!(format!(
                "p{number}-{}@gcp-sa-cloud-sql.iam.gserviceaccount.com",
                st.hex(6)
            )),
        ),
    ] {
        inst[k] = v;
    }
    st.apply(Effect::Insert(ikey.clone(), inst.clone()));
    st.sql_used_names.insert(ikey.clone());

    // What a new instance has: its system databases and default user.
    let mut done = vec![Effect::Merge(ikey.clone(), json!({"state": "RUNNABLE"}))];
    let mysql = matches!(
        engine(inst.get("databaseVersion")),
        Engine::Mysql5 | Engine::Mysql8
    );
    let (dbs, user, host): (&[&str], &str, &str) = if mysql {
        (
            &["information_schema", "mysql", "performance_schema", "sys"],
            "root",
            "%",
        )
    } else {
        (&["postgres"], "postgres", "")
    };
    for db in dbs {
        let v = database(st, project, &name, db, &json!({}))?;
        done.push(Effect::Insert(format!("{ikey}/databases/{db}"), v));
    }
    let u = new_user(st, project, &name, user, host, &json!({"type": "BUILT_IN"}));
    done.push(Effect::Insert(user_key(&ikey, user, host), u));
    let op = operation(st, project, &name, "CREATE")
        .on_done(done)
        .on_fail(vec![Effect::Merge(ikey, json!({"state": "FAILED"}))]);
    Ok(ops::register(st, "sql.instances.insert", op))
}
