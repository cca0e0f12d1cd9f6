//! Google's JSON error bodies.

use serde_json::{json, Value};

/// An error answered in Google's shape: `{"error":{"code","message","status",...}}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    /// HTTP status code.
    pub http: u16,
    /// The canonical `google.rpc.Code` name, e.g. `NOT_FOUND`.
    pub status: &'static str,
    /// Human readable message, worded like GCP's.
    pub message: String,
    /// The legacy `errors[].reason` (compute, sql, dns), e.g. `notFound`.
    pub reason: &'static str,
}

impl ApiError {
    pub(crate) fn new(
        http: u16,
        status: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            http,
            status,
            message: message.into(),
            reason,
        }
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", "notFound", message)
    }
    pub(crate) fn already_exists(message: impl Into<String>) -> Self {
        Self::new(409, "ALREADY_EXISTS", "alreadyExists", message)
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", "invalid", message)
    }
    pub(crate) fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, "FAILED_PRECONDITION", reason, message)
    }
    pub(crate) fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(403, "PERMISSION_DENIED", "forbidden", message)
    }
    pub(crate) fn aborted(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(409, "ABORTED", reason, message)
    }

    pub(crate) fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// The JSON body. `legacy` adds the `errors: [{domain, reason, message}]` array the
    /// older v1 JSON APIs (compute, sqladmin, dns) send.
    pub(crate) fn body(&self, legacy: bool) -> Value {
        let mut error = json!({
            "code": self.http,
            "message": self.message,
            "status": self.status,
        });
        if legacy {
            error["errors"] = json!([{
                "domain": "global",
                "reason": self.reason,
                "message": self.message,
            }]);
        }
        json!({ "error": error })
    }
}

/// `Result` of an API handler: a JSON body, or `Value::Null` for an empty 204 answer.
pub(crate) type ApiResult = Result<Value, ApiError>;
