//! IAM v1: service accounts, their keys and their own IAM policies.

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::state::{b64, now_rfc3339, s, State};
use crate::{unserved, Req};

const MAX_KEYS: usize = 10;

/// The stored key of a service account named by email or unique id; project `-` matches any.
fn find(st: &State, project: &str, account: &str) -> Option<String> {
    st.res
        .iter()
        .find(|(k, v)| {
            let parts: Vec<&str> = k.split('/').collect();
            parts.len() == 4
                && !parts[3].contains(':')
                && parts[0] == "projects"
                && parts[2] == "serviceAccounts"
                && (project == "-" || st.project_id(project).as_deref() == Some(parts[1]))
                && (s(v, "email") == account || s(v, "uniqueId") == account)
        })
        .map(|(k, _)| k.clone())
}

fn not_found(project: &str, account: &str) -> ApiError {
    ApiError::not_found(format!(
        "Unknown service account: projects/{project}/serviceAccounts/{account}"
    ))
}

pub(crate) fn handle(st: &mut State, method: &str, req: &Req) -> ApiResult {
    let project = req.p("projectsId").to_string();
    if project != "-" {
        st.require_project(&project)?;
    }
    let account = req.p("serviceAccountsId").to_string();
    match method {
        "iam.projects.serviceAccounts.create" => create(st, &project, req),
        "iam.projects.serviceAccounts.get" => {
            let key = find(st, &project, &account).ok_or_else(|| not_found(&project, &account))?;
            Ok(st.res.get(&key).cloned().unwrap_or(Value::Null))
        }
        "iam.projects.serviceAccounts.delete" => {
            let key = find(st, &project, &account).ok_or_else(|| not_found(&project, &account))?;
            st.apply(crate::state::Effect::Remove(key));
            Ok(json!({}))
        }
        "iam.projects.serviceAccounts.list" => {
            let id = st.require_project(&project)?;
            let accounts: Vec<Value> = st
                .children(&format!("projects/{id}/serviceAccounts/"))
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            if accounts.is_empty() {
                Ok(json!({}))
            } else {
                Ok(json!({ "accounts": accounts }))
            }
        }
        "iam.projects.serviceAccounts.keys.create" => {
            let key = find(st, &project, &account).ok_or_else(|| not_found(&project, &account))?;
            create_key(st, &key, req)
        }
        "iam.projects.serviceAccounts.keys.list" => {
            let key = find(st, &project, &account).ok_or_else(|| not_found(&project, &account))?;
            let keys: Vec<Value> = st
                .children(&format!("{key}/keys/"))
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            if keys.is_empty() {
                Ok(json!({}))
            } else {
                Ok(json!({ "keys": keys }))
            }
        }
        "iam.projects.serviceAccounts.keys.delete" => {
            let key = find(st, &project, &account).ok_or_else(|| not_found(&project, &account))?;
            let key_key = format!("{key}/keys/{}", req.p("keysId"));
            if st.res.remove(&key_key).is_none() {
                return Err(ApiError::not_found(format!(
                    "Unknown service account key: {key_key}"
                )));
            }
            Ok(json!({}))
        }
        "iam.projects.serviceAccounts.getIamPolicy" => {
            let key = find(st, &project, &account).ok_or_else(|| not_found(&project, &account))?;
            if let Some(v) = req.q("options.requestedPolicyVersion") {
                if !matches!(v, "0" | "1" | "3") {
                    return Err(ApiError::invalid(format!(
                        "Invalid requested policy version {v}: valid values are 0, 1 and 3."
                    )));
                }
            }
            Ok(policy_of(st, &key))
        }
        "iam.projects.serviceAccounts.setIamPolicy" => {
            let key = find(st, &project, &account).ok_or_else(|| not_found(&project, &account))?;
            let policy = req
                .body()
                .get("policy")
                .cloned()
                .unwrap_or_else(|| json!({}));
            crate::resourcemanager::check_members(st, &policy)?;
            check_workload_identity_members(st, &policy)?;
            crate::resourcemanager::set_policy(st, &format!("{key}:iamPolicy"), &policy)
        }
        _ => Err(unserved(method)),
    }
}

/// The IAM policy of the service account stored at `sa_key`, as `getIamPolicy`
/// answers it (GCP's empty policy when none was ever set).
pub(crate) fn policy_of(st: &State, sa_key: &str) -> Value {
    st.res
        .get(&format!("{sa_key}:iamPolicy"))
        .cloned()
        .unwrap_or_else(|| json!({"etag": "ACAB"}))
}

/// Workload Identity members (`serviceAccount:POOL.svc.id.goog[NAMESPACE/NAME]`) must
/// name a namespace and a Kubernetes service account, as GCP requires, and the pool
/// must exist: like GCP, it does once a GKE cluster with Workload Identity exists in
/// the project (400 "Identity Pool does not exist" before).
fn check_workload_identity_members(st: &State, policy: &Value) -> Result<(), ApiError> {
    let members = policy
        .get("bindings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("members").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str);
    for m in members {
        let Some(rest) = m.strip_prefix("serviceAccount:") else {
            continue;
        };
        let Some((pool, ksa)) = rest.split_once(".svc.id.goog") else {
            continue;
        };
        let valid = !pool.is_empty()
            && ksa
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .and_then(|x| x.split_once('/'))
                .is_some_and(|(ns, name)| {
                    !ns.is_empty() && !name.is_empty() && !name.contains('/')
                });
        if !valid {
            return Err(ApiError::invalid(format!(
                "Invalid service account ({rest}): a Workload Identity member is serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA_NAME]."
            )));
        }
        let workload_pool = format!("{pool}.svc.id.goog");
        let pool_exists = st.res.iter().any(|(k, v)| {
            k.contains("/clusters/")
                && !k.contains("/nodePools/")
                && v.pointer("/workloadIdentityConfig/workloadPool")
                    .and_then(Value::as_str)
                    == Some(workload_pool.as_str())
        });
        if !pool_exists {
            return Err(ApiError::invalid(format!(
                "Identity Pool does not exist ({workload_pool}). Please check that you specified a valid resource name as returned in the `name` attribute in the configuration API."
            )));
        }
    }
    Ok(())
}

fn create(st: &mut State, project: &str, req: &Req) -> ApiResult {
    let id = st.require_project(project)?;
    let account_id = s(req.body(), "accountId").to_string();
    let b = account_id.as_bytes();
    let valid = (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !account_id.ends_with('-');
    if !valid {
        return Err(ApiError::invalid(format!(
            "Invalid account ID '{account_id}': it must be 6 to 30 characters, start with a lowercase letter and contain only lowercase letters, digits and hyphens."
        )));
    }
    let email = format!("{account_id}@{id}.iam.gserviceaccount.com");
    let key = format!("projects/{id}/serviceAccounts/{email}");
    if st.res.contains_key(&key) {
        return Err(ApiError::already_exists(format!(
            "Service account {account_id} already exists within project projects/{id}."
        )));
    }
    let sa = req
        .body()
        .get("serviceAccount")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let unique_id = st.numeric_id(21);
    let mut v = json!({
        "name": key,
        "projectId": id,
        "uniqueId": unique_id,
        "email": email,
        "etag": b64(st.hex(8)),
        "oauth2ClientId": unique_id,
    });
    for field in ["displayName", "description"] {
        if let Some(x) = sa
            .get(field)
            .and_then(Value::as_str)
            .filter(|x| !x.is_empty())
        {
            v[field] = json!(x);
        }
    }
    st.res.insert(key, v.clone());
    Ok(v)
}

fn create_key(st: &mut State, sa_key: &str, req: &Req) -> ApiResult {
    if st.children(&format!("{sa_key}/keys/")).len() >= MAX_KEYS {
        return Err(ApiError::precondition(
            "failedPrecondition",
            "Precondition check failed.",
        ));
    }
    let sa = st.res.get(sa_key).cloned().unwrap_or(Value::Null);
    let key_id = st.hex(40);
    let name = format!("{sa_key}/keys/{key_id}");
    let key_file = json!({
        "type": "service_account",
        "project_id": s(&sa, "projectId"),
        "private_key_id": key_id,
        "private_key": format!(
            "-----BEGIN PRIVATE KEY-----\nFAKE-KEY-FROM-FAKE-GCP-{}\n-----END PRIVATE KEY-----\n",
            st.hex(64)
        ),
        "client_email": s(&sa, "email"),
        "client_id": s(&sa, "uniqueId"),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", s(&sa, "email")),
        "universe_domain": "googleapis.com",
    });
    let private_key_type = req
        .body()
        .get("privateKeyType")
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or_else(|| json!("TYPE_GOOGLE_CREDENTIALS_FILE"));
    let stored = json!({
        "name": name,
        "validAfterTime": now_rfc3339(),
        "validBeforeTime": "9999-12-31T23:59:59Z",
        "keyAlgorithm": "KEY_ALG_RSA_2048",
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
    });
    st.res.insert(name, stored.clone());
    let mut out = stored;
    out["privateKeyType"] = private_key_type;
    out["privateKeyData"] = json!(b64(key_file.to_string()));
    Ok(out)
}
