//! Azure Resource Manager's error answers, as the SDK's errors.
//!
//! ARM's error body `{"error": {"code", "message"}}` becomes an [`ArmError`], kept as
//! the source of the SDK's [`Error`] (read it back with [`code_of`]), classified as:
//!
//! | answer | [`ErrorKind`] |
//! |---|---|
//! | 404 | `NotFound` |
//! | 409 `OperationNotAllowed` (not a quota), `AnotherOperationInProgress`, `ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`, `InUseSubnetCannotBeDeleted` | `OperationInProgress` |
//! | 409 `MissingSubscriptionRegistration`, 400 `PrincipalNotFound` | `PropagationDelay` |
//! | other 409, 412 (`RoleAssignmentExists` among them: callers adopt) | `Conflict` |
//! | 429 | `Throttled` |
//! | 5xx, 408, no answer | `Transient` |
//! | 401, a token that cannot be had | `Credentials` |
//! | 403 | `Permission` |
//! | other 4xx | `InvalidInput`, with ARM's code and message |

use std::fmt;

use gitpod_refarch::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Deserialize an ARM body into `T`; a body that does not fit is
/// [`ErrorKind::Internal`] (the server broke the published API).
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::internal(format!(
            "an ARM answer does not match the expected type: {e}"
        ))
    })
}

/// An error answer of Azure Resource Manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmError {
    /// The HTTP status.
    pub status: u16,
    /// ARM's error code (`ResourceNotFound`, `RoleAssignmentExists`, ...), or
    /// `HTTP <status>` when the body had none.
    pub code: String,
    /// ARM's message.
    pub message: String,
}

impl fmt::Display for ArmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (HTTP {})", self.code, self.message, self.status)
    }
}

impl std::error::Error for ArmError {}

impl ArmError {
    /// Read an error answer: ARM's `{"error": {"code", "message"}}`, or a bare
    /// `{"code", "message"}`, or the status alone.
    pub fn parse(status: u16, body: &[u8]) -> Self {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let e = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
        let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
        ArmError {
            status,
            code: text("code").unwrap_or_else(|| format!("HTTP {status}")),
            message: text("message").unwrap_or_else(|| {
                String::from_utf8_lossy(body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            }),
        }
    }

    /// The class of this error (see the module docs).
    pub fn kind(&self) -> ErrorKind {
        let code = self.code.as_str();
        match (self.status, code) {
            (404, _) => ErrorKind::NotFound,
            (409, "OperationNotAllowed")
                if !self.message.to_ascii_lowercase().contains("quota") =>
            {
                ErrorKind::OperationInProgress
            }
            (
                409 | 400,
                "AnotherOperationInProgress"
                | "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
                | "InUseSubnetCannotBeDeleted",
            ) => ErrorKind::OperationInProgress,
            (_, "MissingSubscriptionRegistration") => ErrorKind::PropagationDelay,
            (400 | 403, "PrincipalNotFound") => ErrorKind::PropagationDelay,
            (409 | 412, _) => ErrorKind::Conflict,
            (429, _) => ErrorKind::Throttled,
            (408, _) => ErrorKind::Transient,
            (s, _) if s >= 500 => ErrorKind::Transient,
            (401, _) => ErrorKind::Credentials,
            (403, _) => ErrorKind::Permission,
            _ => ErrorKind::InvalidInput,
        }
    }

    /// This error as the SDK's, saying what was being done.
    pub fn into_error(self, doing: &str) -> Error {
        let kind = self.kind();
        Error::new(kind, format!("{doing}: {}: {}", self.code, self.message)).with_source(self)
    }
}

/// The ARM error code behind an SDK error, if it came from an ARM answer.
pub fn code_of(e: &Error) -> Option<&str> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<ArmError>())
        .map(|a| a.code.as_str())
}

/// The error of a transport or token failure.
pub(super) fn transport_error(e: azure_core::Error, doing: &str) -> Error {
    let kind = crate::access::classify_azure(&e);
    let what = match kind {
        ErrorKind::Credentials => "cannot get an Entra ID token for ARM",
        _ => "no answer from ARM",
    };
    Error::new(kind, format!("{doing}: {what}")).with_source(e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn arm_errors_map_to_kinds() {
        let k = |status, code: &str, msg: &str| {
            ArmError::parse(
                status,
                json!({"error": {"code": code, "message": msg}})
                    .to_string()
                    .as_bytes(),
            )
            .kind()
        };
        assert_eq!(k(404, "ResourceNotFound", "x"), ErrorKind::NotFound);
        assert_eq!(k(404, "ResourceGroupNotFound", "x"), ErrorKind::NotFound);
        assert_eq!(
            k(
                409,
                "OperationNotAllowed",
                "Another operation (Updating) is in progress"
            ),
            ErrorKind::OperationInProgress
        );
        assert_eq!(
            k(
                409,
                "OperationNotAllowed",
                "exceeding approved Total Regional Cores quota"
            ),
            ErrorKind::Conflict
        );
        assert_eq!(
            k(409, "AnotherOperationInProgress", "x"),
            ErrorKind::OperationInProgress
        );
        assert_eq!(
            k(409, "MissingSubscriptionRegistration", "x"),
            ErrorKind::PropagationDelay
        );
        assert_eq!(
            k(400, "PrincipalNotFound", "x"),
            ErrorKind::PropagationDelay
        );
        assert_eq!(k(409, "RoleAssignmentExists", "x"), ErrorKind::Conflict);
        assert_eq!(k(429, "TooManyRequests", "x"), ErrorKind::Throttled);
        assert_eq!(k(500, "InternalServerError", "x"), ErrorKind::Transient);
        assert_eq!(k(503, "ServiceUnavailable", "x"), ErrorKind::Transient);
        assert_eq!(
            k(401, "InvalidAuthenticationToken", "x"),
            ErrorKind::Credentials
        );
        assert_eq!(k(403, "AuthorizationFailed", "x"), ErrorKind::Permission);
        assert_eq!(
            k(400, "InvalidApiVersionParameter", "x"),
            ErrorKind::InvalidInput
        );
        // The code and message are kept, and readable back from the SDK error.
        let e = ArmError::parse(
            409,
            br#"{"error":{"code":"RoleAssignmentExists","message":"The role assignment already exists."}}"#,
        )
        .into_error("PUT /x");
        assert_eq!(code_of(&e), Some("RoleAssignmentExists"));
        assert!(
            e.message().contains("The role assignment already exists."),
            "{e}"
        );
        // A body without ARM's shape keeps the status.
        let bare = ArmError::parse(502, b"<html>bad gateway</html>");
        assert_eq!(bare.code, "HTTP 502");
        assert_eq!(bare.kind(), ErrorKind::Transient);
        let flat = ArmError::parse(400, br#"{"code":"InvalidParameter","message":"m"}"#);
        assert_eq!(flat.code, "InvalidParameter");
    }
}
