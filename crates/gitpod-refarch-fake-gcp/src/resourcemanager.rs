//! Cloud Resource Manager v3 and v1 (gcloud's): projects (get, create, IAM policy) and
//! operations. Both versions share the projects and policies; v1 answers in its own
//! `Project` shape (`projectNumber`, `lifecycleState`, `parent: {type, id}`).

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::ops::{self, Api, LroResponse, Op};
use crate::state::{now_rfc3339, s, Effect, State};
use crate::{unserved, Req};

/// A new project resource (not stored); assigns the project number.
pub(crate) fn new_project(st: &mut State, id: &str, body: &Value) -> Value {
    let number: u64 = st.numeric_id(12).parse().unwrap_or(100_000_000_001);
    st.project_numbers.insert(id.to_string(), number);
    let now = now_rfc3339();
    let mut p = json!({
        "name": format!("projects/{number}"),
        "projectId": id,
        "state": "ACTIVE",
        "displayName": body.get("displayName").and_then(Value::as_str).unwrap_or(id),
        "createTime": now,
        "updateTime": now,
        "etag": format!("W/\"{}\"", st.hex(16)),
    });
    if let Some(parent) = body.get("parent").and_then(Value::as_str) {
        p["parent"] = json!(parent);
    }
    if let Some(labels) = body.get("labels") {
        p["labels"] = labels.clone();
    }
    p
}

/// The effects that make a project exist: itself, its IAM policy and billing info.
pub(crate) fn project_effects(
    st: &mut State,
    id: &str,
    project: Value,
    billing: bool,
) -> Vec<Effect> {
    let policy = json!({
        "version": 1,
        "etag": st.b64_random(8),
        "bindings": [{"role": "roles/owner", "members": ["user:owner@example.com"]}],
    });
    let billing_info = json!({
        "name": format!("projects/{id}/billingInfo"),
        "projectId": id,
        "billingAccountName": if billing { "billingAccounts/000000-000000-000000" } else { "" },
        "billingEnabled": billing,
    });
    vec![
        Effect::Insert(format!("projects/{id}"), project),
        Effect::Insert(format!("projects/{id}:iamPolicy"), policy),
        Effect::Insert(format!("projects/{id}/billingInfo"), billing_info),
    ]
}

/// A stored (v3-shaped) project as Resource Manager v1 answers it.
pub(crate) fn project_v1(st: &State, p: &Value) -> Value {
    let id = s(p, "projectId");
    let state = match s(p, "state") {
        "DELETE_REQUESTED" => "DELETE_REQUESTED",
        _ => "ACTIVE",
    };
    let mut v = json!({
        "projectNumber": st.project_number(id).to_string(),
        "projectId": id,
        "lifecycleState": state,
        "name": s(p, "displayName"),
        "createTime": s(p, "createTime"),
    });
    if let Some(labels) = p.get("labels") {
        v["labels"] = labels.clone();
    }
    if let Some((kind, pid)) = s(p, "parent").split_once('/') {
        v["parent"] = json!({"type": kind.trim_end_matches('s'), "id": pid});
    }
    v
}

/// The project a path names: `projectsId` (v3) or `projectId`/`resource` (v1).
fn project_param(req: &Req) -> &str {
    [req.p("projectsId"), req.p("projectId"), req.p("resource")]
        .into_iter()
        .find(|p| !p.is_empty())
        .unwrap_or("")
}

pub(crate) fn handle(st: &mut State, method: &str, req: &Req) -> ApiResult {
    let v1 = req.path().starts_with("/v1/");
    match method {
        "cloudresourcemanager.projects.get" => {
            let id = st
                .project_id(project_param(req))
                .ok_or_else(caller_denied)?;
            let p = st
                .res
                .get(&format!("projects/{id}"))
                .cloned()
                .unwrap_or(Value::Null);
            Ok(if v1 { project_v1(st, &p) } else { p })
        }
        "cloudresourcemanager.projects.create" if v1 => {
            // v1's Project: `name` is the display name, `parent` a {type, id}.
            let b = req.body();
            let mut body = json!({ "projectId": s(b, "projectId") });
            if let Some(n) = b.get("name").and_then(Value::as_str) {
                body["displayName"] = json!(n);
            }
            if let Some(parent) = b.get("parent") {
                body["parent"] = json!(format!("{}s/{}", s(parent, "type"), s(parent, "id")));
            }
            if let Some(labels) = b.get("labels") {
                body["labels"] = labels.clone();
            }
            create(st, &body, true)
        }
        "cloudresourcemanager.projects.create" => create(st, req.body(), false),
        "cloudresourcemanager.operations.get" => {
            let name = format!("operations/{}", req.p("operationsId"));
            ops::poll(st, &name, &[Api::ResourceManager])
                .ok_or_else(|| ApiError::not_found(format!("Operation {name} not found.")))
        }
        "cloudresourcemanager.projects.getIamPolicy" => {
            let id = st
                .project_id(project_param(req))
                .ok_or_else(caller_denied)?;
            Ok(st
                .res
                .get(&format!("projects/{id}:iamPolicy"))
                .cloned()
                .unwrap_or(Value::Null))
        }
        "cloudresourcemanager.projects.setIamPolicy" => {
            let id = st
                .project_id(project_param(req))
                .ok_or_else(caller_denied)?;
            let key = format!("projects/{id}:iamPolicy");
            let policy = req
                .body()
                .get("policy")
                .cloned()
                .unwrap_or_else(|| json!({}));
            check_members(st, &policy)?;
            set_policy(st, &key, &policy)
        }
        _ => Err(unserved(method)),
    }
}

fn caller_denied() -> ApiError {
    ApiError::permission_denied("The caller does not have permission")
}

fn create(st: &mut State, body: &Value, v1: bool) -> ApiResult {
    let id = s(body, "projectId").to_string();
    let valid = id.len() >= 6
        && id.len() <= 30
        && id.as_bytes()[0].is_ascii_lowercase()
        && id
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !id.ends_with('-');
    if !valid {
        return Err(ApiError::invalid(format!(
            "Request contains an invalid argument: project_id '{id}' must be 6 to 30 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
        )));
    }
    let key = format!("projects/{id}");
    if st.res.contains_key(&key) || ops::pending_on(st, &key).is_some() {
        return Err(ApiError::already_exists("Requested entity already exists"));
    }
    let project = new_project(st, &id, body);
    let effects = project_effects(st, &id, project, false);
    let name = format!("operations/cp.{}", st.numeric_id(19));
    let base = if v1 {
        json!({
            "metadata": {
                "@type": "type.googleapis.com/google.cloudresourcemanager.v1.ProjectCreationStatus",
                "createTime": now_rfc3339(),
                "gettable": true,
                "ready": true,
            }
        })
    } else {
        json!({
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.resourcemanager.v3.CreateProjectMetadata",
                "createTime": now_rfc3339(),
            }
        })
    };
    let op = Op::new(
        name,
        Api::ResourceManager,
        "CREATE_PROJECT",
        key.clone(),
        base,
    )
    .on_done(effects)
    .response(if v1 {
        LroResponse::ProjectV1 { key }
    } else {
        LroResponse::Resource {
            key,
            type_url: "type.googleapis.com/google.cloud.resourcemanager.v3.Project",
        }
    });
    Ok(ops::register(
        st,
        "cloudresourcemanager.projects.create",
        op,
    ))
}

/// GCP refuses bindings for service accounts that do not exist (when the account's
/// project is one the fake knows).
pub(crate) fn check_members(st: &State, policy: &Value) -> Result<(), ApiError> {
    let bindings = policy
        .get("bindings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for b in &bindings {
        for m in b
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(email) = m.as_str().and_then(|m| m.strip_prefix("serviceAccount:")) else {
                continue;
            };
            let Some(project) = email
                .split_once('@')
                .and_then(|(_, d)| d.strip_suffix(".iam.gserviceaccount.com"))
            else {
                continue;
            };
            if st.project_id(project).is_some()
                && !st
                    .res
                    .contains_key(&format!("projects/{project}/serviceAccounts/{email}"))
            {
                return Err(ApiError::invalid(format!(
                    "Service account {email} does not exist."
                )));
            }
        }
    }
    Ok(())
}

/// Whether two policy etags name the same version: etags are bytes in base64, and
/// clients re-encode them (gcloud answers with the URL-safe alphabet), so they are
/// compared decoded, accepting both alphabets with or without padding. Etags that
/// are not base64 at all are compared as strings.
pub(crate) fn etag_eq(a: &str, b: &str) -> bool {
    fn decode(s: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let unpadded: String = s
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(unpadded)
            .ok()
    }
    if a == b {
        return true;
    }
    match (decode(a), decode(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Replace the policy at `key`, checking the etag like GCP: a stale etag is a 409
/// `ABORTED`; a missing etag overwrites. Bindings without members are dropped.
pub(crate) fn set_policy(st: &mut State, key: &str, policy: &Value) -> ApiResult {
    let current = st
        .res
        .get(key)
        .cloned()
        .unwrap_or_else(|| json!({"etag": "ACAB"}));
    if let Some(etag) = policy.get("etag").and_then(Value::as_str) {
        let current_etag = current.get("etag").and_then(Value::as_str).unwrap_or("");
        if !etag.is_empty() && !etag_eq(etag, current_etag) {
            return Err(ApiError::aborted(
                "aborted",
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            ));
        }
    }
    let bindings: Vec<Value> = policy
        .get("bindings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|b| {
            b.get("members")
                .and_then(Value::as_array)
                .is_some_and(|m| !m.is_empty())
        })
        .collect();
    let mut stored = json!({
        "version": policy.get("version").and_then(Value::as_i64).unwrap_or(1),
        "etag": st.b64_random(8),
    });
    if !bindings.is_empty() {
        stored["bindings"] = Value::Array(bindings);
    }
    if let Some(audit) = policy.get("auditConfigs") {
        stored["auditConfigs"] = audit.clone();
    }
    st.res.insert(key.to_string(), stored.clone());
    Ok(stored)
}
