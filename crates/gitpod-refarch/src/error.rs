//! The one public error type of the SDK.
//!
//! Errors are classified by [`ErrorKind`]; the engine decides whether to retry by
//! [`Error::is_retryable`], an exhaustive match so that a new kind forces a decision.
//! `Display` never repeats the source: walk [`std::error::Error::source`] for the chain.

use std::fmt;

use crate::resource::ResourceId;

/// A boxed error usable as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as a class the engine can act on.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input (spec, names, credentials format, plan) is invalid. Never retried.
    InvalidInput,
    /// The resource does not exist.
    NotFound,
    /// The resource exists in a state that conflicts with the request (for example a
    /// name owned by someone else). Never retried.
    Conflict,
    /// Another operation on the same parent is in progress (GKE/AKS reject concurrent
    /// operations on one cluster). Retried after a wait.
    OperationInProgress,
    /// The API rate-limited the caller. Retried with backoff.
    Throttled,
    /// A transient server or network failure. Retried with backoff.
    Transient,
    /// A dependency was just created and has not propagated yet (a new IAM role not
    /// yet usable, a principal not found). Retried within a propagation budget.
    PropagationDelay,
    /// The caller lacks permission. Never retried.
    Permission,
    /// Credentials are missing, malformed or rejected. Never retried.
    Credentials,
    /// A long-running operation finished with a failure. Never retried as such.
    OperationFailed,
    /// A deadline or retry budget ran out.
    Timeout,
    /// The run was cancelled by the caller.
    Cancelled,
    /// Local state could not be read or written.
    State,
    /// Another run holds the state's lock (the message names its owner, operation,
    /// start time and lock id). Never retried: wait, or break a stale lock on purpose.
    StateLocked,
    /// The state changed since it was read or since the plan was made (another
    /// writer). Nothing was written; plan again. Never retried.
    StateChanged,
    /// Something outside the SDK must happen first, and the message says what (the
    /// parent zone must delegate to the zone's name servers). Never retried.
    Precondition,
    /// A provider or the engine broke an internal contract (a bug).
    Internal,
}

impl ErrorKind {
    /// Whether errors of this kind are worth retrying.
    pub fn is_retryable(self) -> bool {
        match self {
            ErrorKind::OperationInProgress
            | ErrorKind::Throttled
            | ErrorKind::Transient
            | ErrorKind::PropagationDelay => true,
            ErrorKind::InvalidInput
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Permission
            | ErrorKind::Credentials
            | ErrorKind::OperationFailed
            | ErrorKind::Timeout
            | ErrorKind::Cancelled
            | ErrorKind::State
            | ErrorKind::StateLocked
            | ErrorKind::StateChanged
            | ErrorKind::Precondition
            | ErrorKind::Internal => false,
        }
    }

    /// A short lower-case name, as used in events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::OperationInProgress => "operation in progress",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::PropagationDelay => "propagation delay",
            ErrorKind::Permission => "permission denied",
            ErrorKind::Credentials => "credentials",
            ErrorKind::OperationFailed => "operation failed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::State => "state",
            ErrorKind::StateLocked => "state locked",
            ErrorKind::StateChanged => "state changed",
            ErrorKind::Precondition => "precondition",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SDK's error: a kind, a plain message, the resource it concerns, and a source.
pub struct Error {
    kind: ErrorKind,
    message: String,
    resource: Option<ResourceId>,
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind` with a plain message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            resource: None,
            source: None,
        }
    }

    /// Attach the resource this error concerns.
    #[must_use]
    pub fn with_resource(mut self, resource: ResourceId) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Attach the underlying cause. Its text is not repeated in `Display`.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The plain message, without resource or source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The resource this error concerns, if known.
    pub fn resource(&self) -> Option<&ResourceId> {
        self.resource.as_ref()
    }

    /// Whether the engine may retry the failed call.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The message with every source in the chain, separated by `: `.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&e.to_string());
            next = e.source();
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resource {
            Some(r) => write!(f, "{r}: {} ({})", self.message, self.kind),
            None => write!(f, "{} ({})", self.message, self.kind),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("resource", &self.resource)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<crate::problem::ValidationErrors> for Error {
    fn from(v: crate::problem::ValidationErrors) -> Self {
        Error::new(
            ErrorKind::InvalidInput,
            format!("the spec has {} problem(s)", v.problems().len()),
        )
        .with_source(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourceKind;

    #[test]
    fn display_names_resource_and_kind_but_not_source() {
        let e = Error::new(ErrorKind::Throttled, "rate exceeded")
            .with_resource(ResourceId::new(ResourceKind::DnsZone, "zone"))
            .with_source(std::io::Error::other("inner detail"));
        assert_eq!(e.to_string(), "dns-zone/zone: rate exceeded (throttled)");
        assert!(e.chain().ends_with(": inner detail"));
        assert!(e.is_retryable());
    }

    #[test]
    fn only_transient_classes_are_retryable() {
        assert!(!Error::invalid_input("x").is_retryable());
        assert!(!Error::new(ErrorKind::Permission, "x").is_retryable());
        assert!(Error::new(ErrorKind::PropagationDelay, "x").is_retryable());
        assert!(Error::new(ErrorKind::OperationInProgress, "x").is_retryable());
    }
}
