//! Classification of AWS SDK errors into the core's [`ErrorKind`]s.
//!
//! The rules, by error code first and HTTP status second:
//! throttling codes → `Throttled`; 5xx, timeouts and connection failures → `Transient`;
//! IAM propagation symptoms (a new role "cannot be assumed", `DependencyViolation`
//! while ENIs drain) → `PropagationDelay`; "in use / another operation" →
//! `OperationInProgress`; bad credentials → `Credentials`; access denied →
//! `Permission`; `*NotFound*` and 404 → `NotFound`; `*AlreadyExists*`/`*Duplicate*` →
//! `Conflict`; other 4xx → `InvalidInput`.

use std::fmt::Display;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use gitpod_refarch::{Error, ErrorKind, Result};

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "PriorRequestNotComplete",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded",
    "EC2ThrottledException",
];

const CREDENTIALS: &[&str] = &[
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "AuthFailure",
    "InvalidAccessKeyId",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidToken",
];

const PERMISSION: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "Forbidden",
];

const IN_PROGRESS: &[&str] = &[
    "ResourceInUseException",
    "InvalidDBInstanceState",
    "InvalidDBInstanceStateFault",
    "IncorrectState",
    "ConcurrentModification",
    "ConcurrentModificationException",
    "OperationAborted",
];

/// Classify an error code/message/status.
pub(crate) fn kind_of(code: Option<&str>, message: Option<&str>, status: Option<u16>) -> ErrorKind {
    let code = code.unwrap_or("");
    let msg = message.unwrap_or("").to_ascii_lowercase();
    if THROTTLING.contains(&code) || status == Some(429) {
        return ErrorKind::Throttled;
    }
    // Some services (and emulators) answer rejected authentication with no code.
    if CREDENTIALS.contains(&code) || (code.is_empty() && matches!(status, Some(401 | 403))) {
        return ErrorKind::Credentials;
    }
    if PERMISSION.contains(&code) {
        return ErrorKind::Permission;
    }
    // A role or principal created seconds ago is not yet visible everywhere.
    if (code == "InvalidParameterException"
        || code == "InvalidParameterValue"
        || code == "MalformedPolicyDocument")
        && (msg.contains("role") || msg.contains("principal") || msg.contains("instance profile"))
        && (msg.contains("assume")
            || msg.contains("invalid principal")
            || msg.contains("error in role params")
            || msg.contains("not authorized"))
    {
        return ErrorKind::PropagationDelay;
    }
    if code == "DependencyViolation" {
        return ErrorKind::PropagationDelay;
    }
    if IN_PROGRESS.contains(&code) {
        return ErrorKind::OperationInProgress;
    }
    if code.contains("NotFound") || code.starts_with("NoSuch") || status == Some(404) {
        return ErrorKind::NotFound;
    }
    if code.contains("AlreadyExists")
        || code.contains("Duplicate")
        || code.contains("AlreadyOwned")
        || code == "EntityAlreadyExists"
        || code.contains("Conflict")
    {
        return ErrorKind::Conflict;
    }
    if status.is_some_and(|s| s >= 500)
        || code == "InternalError"
        || code == "InternalFailure"
        || code == "ServiceUnavailable"
    {
        return ErrorKind::Transient;
    }
    ErrorKind::InvalidInput
}

/// Turn an SDK error into the core's error, saying what was attempted.
pub(crate) fn from_sdk<E>(err: SdkError<E, HttpResponse>, what: impl Display) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, message) = match &err {
        SdkError::DispatchFailure(d) => {
            let why = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "connection failed"
            } else {
                "request not sent"
            };
            (ErrorKind::Transient, format!("{what}: {why}"))
        }
        SdkError::TimeoutError(_) => (ErrorKind::Transient, format!("{what}: timed out")),
        SdkError::ResponseError(_) => {
            (ErrorKind::Transient, format!("{what}: unreadable response"))
        }
        SdkError::ConstructionFailure(_) => {
            let text = format!("{:?}", err).to_ascii_lowercase();
            if text.contains("credential") || text.contains("identity") {
                (
                    ErrorKind::Credentials,
                    format!("{what}: no usable AWS credentials"),
                )
            } else {
                (
                    ErrorKind::Internal,
                    format!("{what}: the request could not be built"),
                )
            }
        }
        _ => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let code = err.code();
            let msg = err.message();
            let kind = kind_of(code, msg, status);
            let detail = match (code, msg) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => format!("HTTP {}", status.unwrap_or(0)),
            };
            (kind, format!("{what}: {detail}"))
        }
    };
    Error::new(kind, message).with_source(err)
}

/// `.ctx("what")` on SDK results.
pub(crate) trait Ctx<T> {
    /// Classify the error, naming what was attempted.
    fn ctx(self, what: impl Display) -> Result<T>;
}

impl<T, E> Ctx<T> for std::result::Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn ctx(self, what: impl Display) -> Result<T> {
        self.map_err(|e| from_sdk(e, what))
    }
}

/// `Ok(None)` for a not-found error.
pub(crate) fn found<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            kind_of(Some("Throttling"), None, Some(400)),
            ErrorKind::Throttled
        );
        assert_eq!(
            kind_of(Some("RequestLimitExceeded"), None, Some(503)),
            ErrorKind::Throttled
        );
        assert_eq!(kind_of(None, None, Some(429)), ErrorKind::Throttled);
        assert_eq!(kind_of(None, None, Some(503)), ErrorKind::Transient);
        assert_eq!(
            kind_of(Some("InvalidClientTokenId"), None, Some(403)),
            ErrorKind::Credentials
        );
        assert_eq!(
            kind_of(Some("AccessDenied"), None, Some(403)),
            ErrorKind::Permission
        );
        assert_eq!(
            kind_of(Some("NoSuchEntity"), None, Some(404)),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind_of(Some("InvalidVpcID.NotFound"), None, Some(400)),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind_of(Some("EntityAlreadyExists"), None, Some(409)),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind_of(Some("DependencyViolation"), None, Some(400)),
            ErrorKind::PropagationDelay
        );
        assert_eq!(
            kind_of(
                Some("InvalidParameterException"),
                Some("Role with arn: x, could not be assumed"),
                Some(400)
            ),
            ErrorKind::PropagationDelay
        );
        assert_eq!(
            kind_of(Some("ResourceInUseException"), None, Some(409)),
            ErrorKind::OperationInProgress
        );
        assert_eq!(
            kind_of(Some("InvalidParameterValue"), Some("bad cidr"), Some(400)),
            ErrorKind::InvalidInput
        );
    }
}
