//! ARM long-running operations, both header styles.
//!
//! - `Azure-AsyncOperation`: a status URL answering 200 with
//!   `{id, name, status: InProgress|Succeeded|Failed|Canceled, startTime, endTime, error}`;
//!   the client GETs the resource afterwards.
//! - `Location`: a result URL answering 202 (with `Location` and `Retry-After` again)
//!   while running, then 200 with the final body (or 204 when there is none, as after
//!   a delete).
//!
//! An operation finishes on its Nth poll ([`crate::FakeConfig::polls_to_finish`]; a
//! GET of the resource it works on, or of the resource it locks, counts as a poll, so
//! a client that lost the URL still sees the resource settle and the lock released) or, with [`crate::FakeConfig::time_scale`], once its
//! realistic duration times the scale has passed. Its effects happen at that moment.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{ArmError, ArmResult};
use crate::state::{now_rfc3339, Effect, State};
use crate::Reply;

/// What the `Location` URL answers once the operation has succeeded.
#[derive(Debug, Clone)]
pub(crate) enum OpResult {
    /// 204, no body (deletes).
    None,
    /// 200 with the stored resource at this id.
    Resource(String),
    /// 200 with a fixed body.
    Fixed(Value),
}

/// Which LRO headers a call answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `Azure-AsyncOperation` (+ `Retry-After`).
    Async,
    /// `Location` (+ `Retry-After`).
    Location,
    /// Both (+ `Retry-After`), as ARM deletes usually answer.
    Both,
}

/// One long-running operation.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub id: String,
    pub sub: String,
    pub ns: &'static str,
    pub location: String,
    pub api_version: &'static str,
    /// e.g. `managedClusters.create`; matched by `fail_operation`.
    pub kind: String,
    /// Lower-case id of the resource the operation works on.
    pub target: String,
    /// Lower-case id of the resource this operation locks (AKS cluster, VNet, server).
    pub lock: Option<String>,
    pub polls: u32,
    pub started: Instant,
    pub duration: Duration,
    pub start_time: String,
    pub end_time: Option<String>,
    pub done: bool,
    pub fails: bool,
    pub on_done: Vec<Effect>,
    pub on_fail: Vec<Effect>,
    pub result: OpResult,
}

/// Build an operation. `realistic` is how long Azure takes (scaled by
/// [`crate::FakeConfig::time_scale`] when that is set).
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_op(
    st: &mut State,
    sub: &str,
    ns: &'static str,
    location: &str,
    kind: &str,
    target: &str,
    realistic: Duration,
) -> Op {
    let id = st.uuid();
    let api_version = crate::routes::api_version(
        &ns.to_ascii_lowercase(),
        kind.split('.')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
            .as_str(),
    )
    .unwrap_or("2025-04-01");
    let scale = st.config.time_scale.unwrap_or(0.0);
    Op {
        id,
        sub: sub.to_string(),
        ns,
        location: if location.is_empty() {
            "global".to_string()
        } else {
            location.to_ascii_lowercase().replace(' ', "")
        },
        api_version,
        kind: kind.to_string(),
        target: target.to_ascii_lowercase(),
        lock: None,
        polls: 0,
        started: Instant::now(),
        duration: realistic.mul_f64(scale.max(0.0)),
        start_time: now_rfc3339(),
        end_time: None,
        done: false,
        fails: false,
        on_done: Vec::new(),
        on_fail: Vec::new(),
        result: OpResult::None,
    }
}

impl Op {
    pub(crate) fn lock(mut self, id: &str) -> Op {
        self.lock = Some(id.to_ascii_lowercase());
        self
    }
    pub(crate) fn on_done(mut self, effects: Vec<Effect>) -> Op {
        self.on_done = effects;
        self
    }
    pub(crate) fn on_fail(mut self, effects: Vec<Effect>) -> Op {
        self.on_fail = effects;
        self
    }
    pub(crate) fn result(mut self, result: OpResult) -> Op {
        self.result = result;
        self
    }
}

fn url(st: &State, op: &Op, location: bool) -> String {
    format!(
        "{}/subscriptions/{}/providers/{}/locations/{}/{}/{}?api-version={}",
        st.base_url,
        op.sub,
        op.ns,
        op.location,
        if location {
            "operationResults"
        } else {
            "operations"
        },
        op.id,
        op.api_version
    )
}

/// Register an operation; returns the headers the starting call answers with.
pub(crate) fn start(st: &mut State, mut op: Op, style: Style) -> Vec<(&'static str, String)> {
    op.fails = st
        .config
        .fail_operation
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case(&op.kind));
    let mut headers = Vec::new();
    if style != Style::Location {
        headers.push(("Azure-AsyncOperation", url(st, &op, false)));
    }
    if style != Style::Async {
        headers.push(("Location", url(st, &op, true)));
    }
    headers.push(("Retry-After", st.config.retry_after_secs.to_string()));
    let id = op.id.clone();
    st.ops.insert(id.clone(), op);
    if st.config.time_scale.is_none() && st.config.polls_to_finish == 0 {
        complete(st, &id);
    }
    headers
}

fn due(st: &State, op: &Op) -> bool {
    match st.config.time_scale {
        Some(_) => op.started.elapsed() >= op.duration,
        None => op.polls >= st.config.polls_to_finish,
    }
}

fn complete(st: &mut State, id: &str) {
    let Some(op) = st.ops.get_mut(id) else {
        return;
    };
    if op.done {
        return;
    }
    op.done = true;
    op.end_time = Some(now_rfc3339());
    let effects = if op.fails {
        op.on_fail.clone()
    } else {
        op.on_done.clone()
    };
    for e in effects {
        st.apply(e);
    }
}

/// With a time scale, finish every operation whose time has come.
pub(crate) fn settle(st: &mut State) {
    if st.config.time_scale.is_none() {
        return;
    }
    let due: Vec<String> = st
        .ops
        .values()
        .filter(|op| !op.done && op.started.elapsed() >= op.duration)
        .map(|op| op.id.clone())
        .collect();
    for id in due {
        complete(st, &id);
    }
}

/// A read of a resource counts as a poll of the operations working on it and of the
/// operations holding its lock (a MySQL configuration or database write locks its
/// server, an agent pool write its cluster): Azure finishes those by itself, so a
/// client that lost an operation's URL (a killed process) and only reads the locked
/// resource still sees the lock released.
pub(crate) fn touch(st: &mut State, id: &str) {
    let key = id.to_ascii_lowercase();
    let ids: Vec<String> = st
        .ops
        .values()
        .filter(|op| !op.done && (op.target == key || op.lock.as_deref() == Some(key.as_str())))
        .map(|op| op.id.clone())
        .collect();
    for op_id in ids {
        if let Some(op) = st.ops.get_mut(&op_id) {
            op.polls += 1;
        }
        let is_due = st.ops.get(&op_id).is_some_and(|op| due(st, op));
        if is_due {
            complete(st, &op_id);
        }
    }
}

/// The unfinished operation holding the lock on `id`, if any.
pub(crate) fn locked<'a>(st: &'a State, id: &str) -> Option<&'a Op> {
    let key = id.to_ascii_lowercase();
    st.ops
        .values()
        .find(|op| !op.done && op.lock.as_deref() == Some(key.as_str()))
}

fn failure(op: &Op) -> ArmError {
    ArmError::bad(
        "InternalOperationError",
        format!(
            "The operation '{}' failed (injected by the fake: fail_operation).",
            op.kind
        ),
    )
}

/// A GET of an operation URL.
pub(crate) fn poll(st: &mut State, id: &str, location: bool) -> ArmResult {
    let Some(op) = st.ops.get_mut(id) else {
        return Err(ArmError::new(
            404,
            "OperationNotFound",
            format!("The operation '{id}' was not found."),
        ));
    };
    op.polls += 1;
    let is_due = st.ops.get(id).is_some_and(|op| due(st, op));
    if is_due {
        complete(st, id);
    }
    let Some(op) = st.ops.get(id).cloned() else {
        return Err(ArmError::new(404, "OperationNotFound", "gone"));
    };
    if !location {
        let status = match (op.done, op.fails) {
            (false, _) => "InProgress",
            (true, false) => "Succeeded",
            (true, true) => "Failed",
        };
        let mut body = json!({
            "id": format!("/subscriptions/{}/providers/{}/locations/{}/operations/{}", op.sub, op.ns, op.location, op.id),
            "name": op.id,
            "status": status,
            "startTime": op.start_time,
        });
        if let Some(end) = &op.end_time {
            body["endTime"] = json!(end);
            body["percentComplete"] = json!(100.0);
        }
        if op.done && op.fails {
            let e = failure(&op);
            body["error"] = json!({"code": e.code, "message": e.message});
        }
        let mut reply = Reply::json(200, body);
        if !op.done {
            reply
                .headers
                .push(("Retry-After", st.config.retry_after_secs.to_string()));
        }
        return Ok(reply);
    }
    if !op.done {
        let mut reply = Reply::empty(202);
        reply.headers.push(("Location", url(st, &op, true)));
        reply
            .headers
            .push(("Retry-After", st.config.retry_after_secs.to_string()));
        return Ok(reply);
    }
    if op.fails {
        return Err(failure(&op));
    }
    Ok(match &op.result {
        OpResult::None => Reply::empty(204),
        OpResult::Fixed(v) => Reply::json(200, v.clone()),
        OpResult::Resource(rid) => match st.get(rid) {
            Some(v) => Reply::json(200, v.clone()),
            None => Reply::empty(204),
        },
    })
}
