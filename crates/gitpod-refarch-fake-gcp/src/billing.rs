//! Cloud Billing v1: a project's billing info.

use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::state::{s, State};
use crate::{unserved, Req};

pub(crate) fn handle(st: &mut State, method: &str, req: &Req) -> ApiResult {
    let id = st.require_project(req.p("projectsId"))?;
    let key = format!("projects/{id}/billingInfo");
    match method {
        "cloudbilling.projects.getBillingInfo" => {
            Ok(st.res.get(&key).cloned().unwrap_or(Value::Null))
        }
        "cloudbilling.projects.updateBillingInfo" => {
            let account = s(req.body(), "billingAccountName").to_string();
            let info = json!({
                "name": key,
                "projectId": id,
                "billingAccountName": account,
                "billingEnabled": !account.is_empty(),
            });
            st.res.insert(key, info.clone());
            Ok(info)
        }
        _ => Err(unserved(method)),
    }
}
