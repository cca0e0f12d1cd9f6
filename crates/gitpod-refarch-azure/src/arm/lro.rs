//! Long-running operations: what a mutating call returns ([`Lro`]) and the poller.
//!
//! [`Arm::put`], [`Arm::patch`], [`Arm::post`] and [`Arm::delete`] return an [`Lro`]:
//! `Done` with the answer's body, or `Pending` with an operation id that survives a
//! restart (the engine journals it) and the `Retry-After` hint:
//!
//! - `async:<url>`: the answer had `Azure-AsyncOperation` (preferred when both headers
//!   are present: its body says `Failed` or `Canceled` with ARM's error). Polling reads
//!   `{status}`; `Succeeded` is `Done(None)` (the caller reads the resource again).
//! - `location:<url>`: a `202` with `Location` only. Polling: `202` is still running,
//!   `200`/`201` is `Done(body)`, `204` is `Done(None)`, an error answer is the
//!   operation's failure.
//! - `watch:<path>|<api-version>`: a `200`/`201` whose body has a non-terminal
//!   `properties.provisioningState` and no operation header, or a resource found busy
//!   (an operation of an earlier run): polling reads the resource until its
//!   `provisioningState` is terminal (absent counts as done).
//!
//! Terminal states are `Succeeded`, `Failed` and `Canceled`; the last two are
//! [`ErrorKind::OperationFailed`] with ARM's `code: message`. An operation URL on
//! another host than the ARM endpoint is refused: the bearer token goes nowhere else.

use std::time::Duration;

use azure_core::http::Method;
use gitpod_refarch::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{from_value, Answer, Arm};

/// The result of a mutating call or of one poll.
#[derive(Debug, Clone, PartialEq)]
pub enum Lro {
    /// Finished, with the answer's body if it had one.
    Done(Option<Value>),
    /// Still running: poll this operation id (see the module docs), after the hint.
    Pending(String, Option<Duration>),
}

impl Lro {
    /// Whether the operation finished.
    pub fn is_done(&self) -> bool {
        matches!(self, Lro::Done(_))
    }

    /// The finished body as `T` (`None` for a pending operation or an empty body).
    pub fn body<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        match self {
            Lro::Done(Some(v)) => from_value(v.clone()).map(Some),
            _ => Ok(None),
        }
    }
}

fn is_terminal(state: &str) -> bool {
    matches!(
        state.to_ascii_lowercase().as_str(),
        "succeeded" | "failed" | "canceled" | "cancelled"
    )
}

/// `properties.provisioningState` of a resource body.
pub fn provisioning_state(body: &Value) -> Option<&str> {
    body.pointer("/properties/provisioningState")
        .and_then(Value::as_str)
}

impl Arm {
    /// Poll an operation id of [`Lro::Pending`] once.
    pub async fn poll(&self, op_id: &str) -> Result<Lro> {
        let (style, rest) = op_id
            .split_once(':')
            .ok_or_else(|| Error::internal(format!("not an ARM operation id: {op_id}")))?;
        match style {
            "async" => self.poll_async(op_id, rest).await,
            "location" => self.poll_location(op_id, rest).await,
            "watch" => {
                let (path, api) = rest
                    .rsplit_once('|')
                    .ok_or_else(|| Error::internal(format!("not an ARM watch id: {op_id}")))?;
                self.poll_watch(op_id, path, api).await
            }
            _ => Err(Error::internal(format!("not an ARM operation id: {op_id}"))),
        }
    }

    async fn poll_async(&self, op_id: &str, url: &str) -> Result<Lro> {
        let wire = self.endpoint.wire_url(url)?;
        let doing = "polling an ARM operation";
        let a = match self.call(Method::Get, wire, None, doing).await {
            Ok(a) => a,
            // An operation record that expired: the caller reads the resource again.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Lro::Done(None)),
            Err(e) => return Err(e),
        };
        let body = a.body.unwrap_or(Value::Null);
        let status = body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("InProgress");
        match status.to_ascii_lowercase().as_str() {
            "succeeded" => Ok(Lro::Done(None)),
            "failed" | "canceled" | "cancelled" => Err(operation_failed(status, &body)),
            _ => Ok(Lro::Pending(
                op_id.to_string(),
                a.retry_after.or(Some(self.poll_interval)),
            )),
        }
    }

    async fn poll_location(&self, op_id: &str, url: &str) -> Result<Lro> {
        let wire = self.endpoint.wire_url(url)?;
        let doing = "polling an ARM operation";
        match self.call(Method::Get, wire, None, doing).await {
            Ok(a) if a.status == 202 => Ok(Lro::Pending(
                op_id.to_string(),
                a.retry_after.or(Some(self.poll_interval)),
            )),
            Ok(a) => Ok(Lro::Done(a.body)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Lro::Done(None)),
            Err(e) if e.is_retryable() => Err(e),
            Err(e) => Err(Error::new(
                ErrorKind::OperationFailed,
                format!("an ARM operation failed: {}", e.message()),
            )
            .with_source(e)),
        }
    }

    async fn poll_watch(&self, op_id: &str, path: &str, api_version: &str) -> Result<Lro> {
        let Some(body) = self.get::<Value>(path, api_version).await? else {
            return Ok(Lro::Done(None));
        };
        match provisioning_state(&body) {
            Some(s) if !is_terminal(s) => {
                Ok(Lro::Pending(op_id.to_string(), Some(self.poll_interval)))
            }
            Some(s) if !s.eq_ignore_ascii_case("succeeded") => Err(Error::new(
                ErrorKind::OperationFailed,
                format!("{path} is {s}"),
            )),
            _ => Ok(Lro::Done(Some(body))),
        }
    }
}

/// The id of a watch on a resource (see the module docs).
pub fn watch_id(path: &str, api_version: &str) -> String {
    format!("watch:{path}|{api_version}")
}

/// Whether a resource body says an operation is still running on it.
pub fn is_busy(body: &Value) -> bool {
    provisioning_state(body).is_some_and(|s| !is_terminal(s))
}

/// The failure of an operation whose status is `Failed` or `Canceled`.
fn operation_failed(status: &str, body: &Value) -> Error {
    let code = body
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or(status);
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    Error::new(
        ErrorKind::OperationFailed,
        format!("an ARM operation ended {status}: {code}: {message}"),
    )
}

/// The [`Lro`] of a mutating call's answer (see the module docs).
pub(super) fn lro_of(a: Answer, method: Method, path: &str, api_version: &str) -> Lro {
    if a.status == 204 {
        return Lro::Done(None);
    }
    if let Some(url) = a.async_op {
        if a.status == 202 || a.body.as_ref().is_none_or(is_busy) {
            return Lro::Pending(format!("async:{url}"), a.retry_after);
        }
    }
    if a.status == 202 {
        return match a.location {
            Some(url) => Lro::Pending(format!("location:{url}"), a.retry_after),
            None => Lro::Done(a.body),
        };
    }
    if a.body.as_ref().is_some_and(is_busy) && matches!(method, Method::Put | Method::Patch) {
        return match a.location {
            Some(url) => Lro::Pending(format!("location:{url}"), a.retry_after),
            None => Lro::Pending(watch_id(path, api_version), a.retry_after),
        };
    }
    Lro::Done(a.body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn answer(
        status: u16,
        async_op: Option<&str>,
        location: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        Answer {
            status,
            async_op: async_op.map(str::to_string),
            location: location.map(str::to_string),
            retry_after: Some(Duration::from_secs(7)),
            body,
        }
    }

    #[test]
    fn lro_headers_decide_the_poller() {
        let p = "/subscriptions/s/resourceGroups/r/providers/X/y/z";
        let running = json!({"properties": {"provisioningState": "Creating"}});
        let done = json!({"properties": {"provisioningState": "Succeeded"}});
        // PUT 201 + Azure-AsyncOperation: poll the operation.
        assert_eq!(
            lro_of(
                answer(201, Some("https://m/op1"), None, Some(running.clone())),
                Method::Put,
                p,
                "v"
            ),
            Lro::Pending("async:https://m/op1".into(), Some(Duration::from_secs(7)))
        );
        // 202 with Location only.
        assert_eq!(
            lro_of(
                answer(202, None, Some("https://m/loc"), None),
                Method::Delete,
                p,
                "v"
            ),
            Lro::Pending(
                "location:https://m/loc".into(),
                Some(Duration::from_secs(7))
            )
        );
        // Both headers: the async operation wins.
        assert_eq!(
            lro_of(
                answer(202, Some("https://m/a"), Some("https://m/l"), None),
                Method::Delete,
                p,
                "v"
            ),
            Lro::Pending("async:https://m/a".into(), Some(Duration::from_secs(7)))
        );
        // A synchronous 200/201 with a terminal (or no) state is done.
        assert_eq!(
            lro_of(
                answer(200, None, None, Some(done.clone())),
                Method::Put,
                p,
                "v"
            ),
            Lro::Done(Some(done.clone()))
        );
        // 200 with an async header but already Succeeded: done.
        assert_eq!(
            lro_of(
                answer(200, Some("https://m/op"), None, Some(done.clone())),
                Method::Put,
                p,
                "v"
            ),
            Lro::Done(Some(done))
        );
        // A busy body without headers: watch the resource.
        assert_eq!(
            lro_of(answer(201, None, None, Some(running)), Method::Put, p, "v"),
            Lro::Pending(format!("watch:{p}|v"), Some(Duration::from_secs(7)))
        );
        assert_eq!(
            lro_of(answer(204, None, None, None), Method::Delete, p, "v"),
            Lro::Done(None)
        );
    }

    #[test]
    fn failed_operations_carry_arms_code_and_message() {
        let e = operation_failed(
            "Failed",
            &json!({"status": "Failed", "error": {"code": "ControlPlaneAddOnsNotReady", "message": "not ready"}}),
        );
        assert_eq!(e.kind(), ErrorKind::OperationFailed);
        assert!(
            e.message()
                .contains("ControlPlaneAddOnsNotReady: not ready"),
            "{e}"
        );
    }
}
