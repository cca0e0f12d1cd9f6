//! Artifact Registry v1: repositories, their IAM policies and operations.

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::ops::{self, Api, LroResponse, Op};
use crate::state::{is_rfc1035, now_rfc3339, Effect, State};
use crate::{unserved, Req};

/// True when the operation a `.../locations/L/operations/ID` path names is Artifact Registry's.
pub(crate) fn owns_operation(st: &State, req: &Req) -> bool {
    let Some(project) = st.project_id(req.p("projectsId")) else {
        return false;
    };
    let name = format!(
        "projects/{project}/locations/{}/operations/{}",
        req.p("locationsId"),
        req.p("operationsId")
    );
    st.ops
        .get(&name)
        .is_some_and(|op| op.api == Api::ArtifactRegistry)
}

fn repo_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "Requested entity was not found. Repository \"{name}\" not found."
    ))
}

pub(crate) fn handle(st: &mut State, method: &str, req: &Req) -> ApiResult {
    let project = st.require_project(req.p("projectsId"))?;
    let parent = format!("projects/{project}/locations/{}", req.p("locationsId"));
    let rkey = format!("{parent}/repositories/{}", req.p("repositoriesId"));
    match method {
        "artifactregistry.projects.locations.operations.get" => {
            let name = format!("{parent}/operations/{}", req.p("operationsId"));
            ops::poll(st, &name, &[Api::ArtifactRegistry])
                .ok_or_else(|| ApiError::not_found(format!("Operation {name} not found.")))
        }
        "artifactregistry.projects.locations.repositories.get" => st
            .res
            .get(&rkey)
            .cloned()
            .ok_or_else(|| repo_not_found(&rkey)),
        "artifactregistry.projects.locations.repositories.list" => {
            let repos: Vec<Value> = st
                .children(&format!("{parent}/repositories/"))
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            if repos.is_empty() {
                Ok(json!({}))
            } else {
                Ok(json!({ "repositories": repos }))
            }
        }
        "artifactregistry.projects.locations.repositories.create" => {
            let id = req.q("repositoryId").unwrap_or("").to_string();
            if !is_rfc1035(&id, 63) {
                return Err(ApiError::invalid(format!(
                    "Invalid repository ID \"{id}\": it must start with a lowercase letter and contain only lowercase letters, digits and hyphens."
                )));
            }
            let body = req.body();
            let format = body.get("format").cloned().unwrap_or(Value::Null);
            if format.is_null() || format == json!("FORMAT_UNSPECIFIED") || format == json!(0) {
                return Err(ApiError::invalid("Repository format is required."));
            }
            let key = format!("{parent}/repositories/{id}");
            if st.res.contains_key(&key) || ops::pending_on(st, &key).is_some() {
                return Err(ApiError::already_exists(format!(
                    "the repository already exists: {key}"
                )));
            }
            let now = now_rfc3339();
            let mut repo = body.clone();
            repo["name"] = json!(key);
            repo["createTime"] = json!(now);
            repo["updateTime"] = json!(now);
            repo["registryUri"] = json!(format!(
                "{}-docker.pkg.dev/{project}/{id}",
                req.p("locationsId")
            ));
            if repo.get("mode").is_none() {
                repo["mode"] = json!("STANDARD_REPOSITORY");
            }
            repo["satisfiesPzi"] = json!(false);
            repo["sizeBytes"] = json!("0");
            let op = operation(st, &parent, &key, "CREATE_REPOSITORY")
                .on_done(vec![Effect::Insert(key.clone(), repo)])
                .response(LroResponse::Resource {
                    key,
                    type_url: "type.googleapis.com/google.devtools.artifactregistry.v1.Repository",
                });
            Ok(ops::register(st, method, op))
        }
        "artifactregistry.projects.locations.repositories.delete" => {
            if !st.res.contains_key(&rkey) {
                return Err(repo_not_found(&rkey));
            }
            let op = operation(st, &parent, &rkey, "DELETE_REPOSITORY")
                .on_done(vec![Effect::Remove(rkey)])
                .response(LroResponse::Fixed(
                    json!({"@type": "type.googleapis.com/google.protobuf.Empty"}),
                ));
            Ok(ops::register(st, method, op))
        }
        "artifactregistry.projects.locations.repositories.getIamPolicy" => {
            if !st.res.contains_key(&rkey) {
                return Err(repo_not_found(&rkey));
            }
            Ok(st
                .res
                .get(&format!("{rkey}:iamPolicy"))
                .cloned()
                .unwrap_or_else(|| json!({"etag": "ACAB"})))
        }
        "artifactregistry.projects.locations.repositories.setIamPolicy" => {
            if !st.res.contains_key(&rkey) {
                return Err(repo_not_found(&rkey));
            }
            let policy = req
                .body()
                .get("policy")
                .cloned()
                .unwrap_or_else(|| json!({}));
            crate::resourcemanager::set_policy(st, &format!("{rkey}:iamPolicy"), &policy)
        }
        _ => Err(unserved(method)),
    }
}

fn operation(st: &mut State, parent: &str, target: &str, op_type: &str) -> Op {
    let name = format!("{parent}/operations/{}", st.uuid());
    let base = json!({
        "metadata": {"@type": "type.googleapis.com/google.devtools.artifactregistry.v1.OperationMetadata"},
    });
    Op::new(
        name,
        Api::ArtifactRegistry,
        op_type,
        target.to_string(),
        base,
    )
}
