//! The one operation registry shared by every API, keyed by the full operation name.
//!
//! Each operation remembers which API it belongs to and is answered in that API's
//! Operation shape: `google.longrunning.Operation` (Resource Manager, Service Usage,
//! Artifact Registry), GKE's `Operation`, Cloud SQL's `sql#operation`, Compute's
//! `compute#operation`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::state::{now_rfc3339, Effect, State};

/// Which API an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    ResourceManager,
    ServiceUsage,
    Container,
    Sql,
    Compute,
    ArtifactRegistry,
}

/// What a finished `google.longrunning.Operation` carries in `response`.
#[derive(Debug, Clone)]
pub(crate) enum LroResponse {
    /// No `response` (non-longrunning shapes).
    None,
    /// A fixed `Any` value.
    Fixed(Value),
    /// The stored resource at `key` when the operation ends, as an `Any` of `type_url`.
    Resource { key: String, type_url: &'static str },
    /// The stored project at `key`, as Resource Manager v1 answers it.
    ProjectV1 { key: String },
}

/// One long-running operation.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub name: String,
    pub api: Api,
    pub op_type: String,
    pub target: String,
    /// The API-specific fields that never change.
    pub base: Value,
    pub polls: u32,
    pub started: Instant,
    pub start_time: String,
    pub end_time: Option<String>,
    pub done: bool,
    pub fails: bool,
    pub on_done: Vec<Effect>,
    pub on_fail: Vec<Effect>,
    pub response: LroResponse,
    pub resolved: Option<Value>,
}

impl Op {
    /// A new, not yet registered operation.
    pub(crate) fn new(name: String, api: Api, op_type: &str, target: String, base: Value) -> Op {
        Op {
            name,
            api,
            op_type: op_type.to_string(),
            target,
            base,
            polls: 0,
            started: Instant::now(),
            start_time: now_rfc3339(),
            end_time: None,
            done: false,
            fails: false,
            on_done: Vec::new(),
            on_fail: Vec::new(),
            response: LroResponse::None,
            resolved: None,
        }
    }

    /// Effects applied when the operation succeeds.
    pub(crate) fn on_done(mut self, effects: Vec<Effect>) -> Op {
        self.on_done = effects;
        self
    }

    /// Effects applied when the operation ends with an error.
    pub(crate) fn on_fail(mut self, effects: Vec<Effect>) -> Op {
        self.on_fail = effects;
        self
    }

    /// The `response` of a longrunning operation.
    pub(crate) fn response(mut self, response: LroResponse) -> Op {
        self.response = response;
        self
    }
}

/// Register an operation created by `method`; returns its JSON as the create call answers it.
pub(crate) fn register(state: &mut State, method: &str, mut op: Op) -> Value {
    op.fails = state
        .config
        .fail_operation
        .as_deref()
        .is_some_and(|f| f == op.op_type || f == method);
    let name = op.name.clone();
    state.ops.insert(name.clone(), op);
    if state.config.op_delay.is_none() && state.config.polls_to_finish == 0 {
        complete(state, &name);
    }
    render(state, &name)
}

/// One get (or wait) of an operation: counts the poll, maybe finishes it, renders it.
pub(crate) fn poll(state: &mut State, name: &str, api: &[Api]) -> Option<Value> {
    let polls_to_finish = state.config.polls_to_finish;
    let delay = state.config.op_delay;
    let op = state.ops.get_mut(name).filter(|op| api.contains(&op.api))?;
    op.polls += 1;
    let due = match delay {
        Some(d) => op.started.elapsed() >= d,
        None => op.polls >= polls_to_finish,
    };
    if due && !op.done {
        complete(state, name);
    }
    Some(render(state, name))
}

/// The full name of the operation a Compute `operations.wait` path names
/// (`/compute/v1/projects/P/{global,regions/R}/operations/OP/wait`), if it is one.
pub(crate) fn compute_wait_target(path: &str) -> Option<String> {
    for template in [
        "/compute/v1/projects/{project}/regions/{region}/operations/{operation}/wait",
        "/compute/v1/projects/{project}/global/operations/{operation}/wait",
    ] {
        if let Some(caps) = crate::routes::match_path(template, path) {
            let get = |k: &str| {
                caps.iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let scope = if template.contains("/regions/") {
                format!("regions/{}", get("region"))
            } else {
                "global".to_string()
            };
            return Some(format!(
                "projects/{}/{scope}/operations/{}",
                get("project"),
                get("operation")
            ));
        }
    }
    None
}

/// One look at a waited-for operation: `None` when there is nothing (more) to wait
/// for (no such operation, done, or due on the waiter's own answering poll), else
/// how long to pause before looking again. With polls, each look counts as a poll.
pub(crate) fn observe(state: &mut State, name: &str) -> Option<Duration> {
    let polls_to_finish = state.config.polls_to_finish;
    let delay = state.config.op_delay;
    let op = state.ops.get_mut(name).filter(|op| !op.done)?;
    match delay {
        Some(d) => Some(
            d.saturating_sub(op.started.elapsed())
                .max(Duration::from_millis(1)),
        ),
        None if op.polls + 1 < polls_to_finish => {
            op.polls += 1;
            Some(Duration::from_millis(1))
        }
        None => None,
    }
}

/// With a wall-time delay, finish every operation that is due.
pub(crate) fn settle(state: &mut State) {
    let Some(delay) = state.config.op_delay else {
        return;
    };
    let due: Vec<String> = state
        .ops
        .values()
        .filter(|op| !op.done && op.started.elapsed() >= delay)
        .map(|op| op.name.clone())
        .collect();
    for name in due {
        complete(state, &name);
    }
}

/// The API of the operation named `name`, if it exists.
pub(crate) fn api_of(state: &State, name: &str) -> Option<Api> {
    state.ops.get(name).map(|op| op.api)
}

/// The first unfinished operation acting on `target`.
pub(crate) fn pending_on<'a>(state: &'a State, target: &str) -> Option<&'a Op> {
    state
        .ops
        .values()
        .find(|op| !op.done && op.target == target)
}

fn complete(state: &mut State, name: &str) {
    let Some(op) = state.ops.get_mut(name) else {
        return;
    };
    op.done = true;
    op.end_time = Some(now_rfc3339());
    let effects = if op.fails {
        op.on_fail.clone()
    } else {
        op.on_done.clone()
    };
    let response = op.response.clone();
    for effect in effects {
        state.apply(effect);
    }
    let resolved = match response {
        LroResponse::None => None,
        LroResponse::Fixed(v) => Some(v),
        LroResponse::Resource { key, type_url } => {
            let mut v = state.res.get(&key).cloned().unwrap_or_else(|| json!({}));
            if let Value::Object(m) = &mut v {
                m.insert("@type".into(), Value::String(type_url.to_string()));
            }
            Some(v)
        }
        LroResponse::ProjectV1 { key } => {
            let p = state.res.get(&key).cloned().unwrap_or_else(|| json!({}));
            let mut v = crate::resourcemanager::project_v1(state, &p);
            v["@type"] = json!("type.googleapis.com/google.cloudresourcemanager.v1.Project");
            Some(v)
        }
    };
    if let Some(op) = state.ops.get_mut(name) {
        op.resolved = resolved;
    }
}

fn injected_message(op: &Op) -> String {
    format!(
        "Injected failure: the fake was configured to fail operations of type {} (fail_operation).",
        op.op_type
    )
}

/// The operation in its API's shape.
pub(crate) fn render(state: &State, name: &str) -> Value {
    let Some(op) = state.ops.get(name) else {
        return Value::Null;
    };
    let mut v = op.base.clone();
    let status = if op.done {
        "DONE"
    } else if op.polls == 0 {
        "PENDING"
    } else {
        "RUNNING"
    };
    match op.api {
        Api::ResourceManager | Api::ServiceUsage | Api::ArtifactRegistry => {
            v["name"] = json!(op.name);
            if op.done {
                v["done"] = json!(true);
                if op.fails {
                    v["error"] = json!({"code": 13, "message": injected_message(op)});
                } else if let Some(r) = &op.resolved {
                    v["response"] = r.clone();
                }
            }
        }
        Api::Container => {
            v["status"] = json!(status);
            v["startTime"] = json!(op.start_time);
            if let Some(end) = &op.end_time {
                v["endTime"] = json!(end);
            }
            if op.done && op.fails {
                v["error"] = json!({"code": 13, "message": injected_message(op)});
                v["statusMessage"] = json!(injected_message(op));
            }
        }
        Api::Sql => {
            v["status"] = json!(status);
            v["startTime"] = json!(op.start_time);
            if let Some(end) = &op.end_time {
                v["endTime"] = json!(end);
            }
            if op.done && op.fails {
                v["error"] = json!({
                    "kind": "sql#operationErrors",
                    "errors": [{"kind": "sql#operationError", "code": "INTERNAL_ERROR", "message": injected_message(op)}],
                });
            }
        }
        Api::Compute => {
            v["status"] = json!(status);
            v["progress"] = json!(if op.done {
                100
            } else if op.polls == 0 {
                0
            } else {
                50
            });
            v["startTime"] = json!(op.start_time);
            if let Some(end) = &op.end_time {
                v["endTime"] = json!(end);
            }
            if op.done && op.fails {
                v["error"] = json!({"errors": [{"code": "INTERNAL_ERROR", "message": injected_message(op)}]});
                v["httpErrorStatusCode"] = json!(500);
                v["httpErrorMessage"] = json!("INTERNAL SERVER ERROR");
            }
        }
    }
    v
}
