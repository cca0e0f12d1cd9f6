//! ARM's JSON error bodies: `{"error":{"code","message"}}`.

use serde_json::{json, Value};

/// An error answered in ARM's shape.
#[derive(Debug, Clone)]
pub(crate) struct ArmError {
    /// HTTP status code.
    pub http: u16,
    /// ARM error code, e.g. `ResourceNotFound`.
    pub code: String,
    /// Human readable message, worded like ARM's.
    pub message: String,
    /// Extra response headers (e.g. `Retry-After` on a 429).
    pub headers: Vec<(&'static str, String)>,
}

impl ArmError {
    pub(crate) fn new(http: u16, code: &str, message: impl Into<String>) -> Self {
        ArmError {
            http,
            code: code.to_string(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400 with `code`.
    pub(crate) fn bad(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 400 `InvalidParameter`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameter", message)
    }

    /// 409 with `code`.
    pub(crate) fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }

    /// 404 `ResourceNotFound` for a resource id.
    pub(crate) fn not_found(type_name: &str, id: &str) -> Self {
        let name = id.rsplit('/').next().unwrap_or(id);
        let rg = id
            .split('/')
            .skip_while(|s| !s.eq_ignore_ascii_case("resourceGroups"))
            .nth(1)
            .unwrap_or("");
        Self::new(
            404,
            "ResourceNotFound",
            format!("The Resource '{type_name}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
        )
    }

    /// Attach a response header.
    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// `Result` of a handler.
pub(crate) type ArmResult<T = crate::Reply> = Result<T, ArmError>;
