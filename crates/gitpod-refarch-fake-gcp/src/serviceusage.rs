//! Service Usage v1: enabling and reading services, and its operations.

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::ops::{self, Api, LroResponse, Op};
use crate::state::{Effect, State};
use crate::{unserved, Req};

fn parent(st: &State, req: &Req) -> Result<String, ApiError> {
    if req.p("v1Id") != "projects" {
        return Err(ApiError::invalid(format!(
            "The fake serves only project parents, not {}/{}.",
            req.p("v1Id"),
            req.p("v1Id1")
        )));
    }
    st.require_project(req.p("v1Id1"))
}

fn service(st: &State, project: &str, service: &str) -> Value {
    let number = st.project_number(project);
    let enabled = st
        .res
        .contains_key(&format!("projects/{project}/services/{service}"));
    json!({
        "name": format!("projects/{number}/services/{service}"),
        "parent": format!("projects/{number}"),
        "config": {"name": service, "title": service},
        "state": if enabled { "ENABLED" } else { "DISABLED" },
    })
}

pub(crate) fn handle(st: &mut State, method: &str, req: &Req) -> ApiResult {
    match method {
        "serviceusage.operations.get" => {
            let name = format!("operations/{}", req.p("operationsId"));
            ops::poll(st, &name, &[Api::ServiceUsage])
                .ok_or_else(|| ApiError::not_found(format!("Operation {name} not found.")))
        }
        "serviceusage.services.batchEnable" => {
            let project = parent(st, req)?;
            let ids: Vec<String> = req
                .body()
                .get("serviceIds")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            if ids.is_empty() || ids.len() > 20 {
                return Err(ApiError::invalid("serviceIds must name 1 to 20 services."));
            }
            if let Some(bad) = ids.iter().find(|i| !i.contains('.') || i.contains('/')) {
                return Err(ApiError::invalid(format!("Invalid service name {bad}.")));
            }
            let mut effects = Vec::new();
            let mut services = Vec::new();
            for id in &ids {
                let key = format!("projects/{project}/services/{id}");
                let mut v = service(st, &project, id);
                v["state"] = json!("ENABLED");
                effects.push(Effect::Insert(key, v.clone()));
                services.push(v);
            }
            let number = st.project_number(&project);
            let name = format!("operations/acf.p2-{number}-{}", st.uuid());
            let base = json!({
                "metadata": {
                    "@type": "type.googleapis.com/google.api.serviceusage.v1.OperationMetadata",
                    "resourceNames": ids.iter().map(|i| format!("services/{i}/projectSettings/{number}")).collect::<Vec<_>>(),
                }
            });
            let op = Op::new(name, Api::ServiceUsage, "BATCH_ENABLE", format!("projects/{project}"), base)
                .on_done(effects)
                .response(LroResponse::Fixed(json!({
                    "@type": "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse",
                    "services": services,
                })));
            Ok(ops::register(st, method, op))
        }
        "serviceusage.services.enable" => {
            // One service at a time (gcloud services enable): an operation whose
            // response is an EnableServiceResponse.
            let project = parent(st, req)?;
            let id = req.p("servicesId").to_string();
            if !id.contains('.') || id.contains('/') {
                return Err(ApiError::invalid(format!("Invalid service name {id}.")));
            }
            let key = format!("projects/{project}/services/{id}");
            let mut v = service(st, &project, &id);
            v["state"] = json!("ENABLED");
            let number = st.project_number(&project);
            let name = format!("operations/acat.p2-{number}-{}", st.uuid());
            let base = json!({
                "metadata": {
                    "@type": "type.googleapis.com/google.api.serviceusage.v1.OperationMetadata",
                    "resourceNames": [format!("services/{id}/projectSettings/{number}")],
                }
            });
            let op = Op::new(
                name,
                Api::ServiceUsage,
                "ENABLE",
                format!("projects/{project}"),
                base,
            )
            .on_done(vec![Effect::Insert(key, v.clone())])
            .response(LroResponse::Fixed(json!({
                "@type": "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse",
                "service": v,
            })));
            Ok(ops::register(st, method, op))
        }
        "serviceusage.services.batchGet" => {
            let project = parent(st, req)?;
            let names = req.q_all("names");
            if names.is_empty() || names.len() > 30 {
                return Err(ApiError::invalid("names must name 1 to 30 services."));
            }
            let mut services = Vec::new();
            for n in names {
                let id = n.rsplit('/').next().unwrap_or("").to_string();
                services.push(service(st, &project, &id));
            }
            Ok(json!({ "services": services }))
        }
        "serviceusage.services.get" => {
            let project = parent(st, req)?;
            Ok(service(st, &project, req.p("servicesId")))
        }
        "serviceusage.services.list" => {
            let project = parent(st, req)?;
            let prefix = format!("projects/{project}/services/");
            let services: Vec<Value> = st.children(&prefix).into_iter().map(|(_, v)| v).collect();
            if services.is_empty() {
                Ok(json!({}))
            } else {
                Ok(json!({ "services": services }))
            }
        }
        _ => Err(unserved(method)),
    }
}
