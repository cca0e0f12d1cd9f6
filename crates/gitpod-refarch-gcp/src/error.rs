//! Classification of the Google clients' errors into the core's [`ErrorKind`]s.
//!
//! By `google.rpc.Code` first, HTTP status second:
//! `RESOURCE_EXHAUSTED`/429 → `Throttled`; `UNAVAILABLE`, `INTERNAL`, timeouts and
//! connection failures, 5xx → `Transient`; GKE's "operation is currently … please wait"
//! (`FAILED_PRECONDITION`) and Cloud SQL's "operation in progress" (409) →
//! `OperationInProgress`; `ABORTED` (a concurrent IAM policy change) → `Conflict`,
//! which the policy read-modify-write loop retries itself; a principal that does not
//! exist yet in a policy → `PropagationDelay`; `ALREADY_EXISTS`/409 → `Conflict`;
//! `NOT_FOUND`/404 → `NotFound`; `PERMISSION_DENIED`/403 → `Permission`;
//! `UNAUTHENTICATED`/401 → `Credentials`; other 4xx → `InvalidInput`. A response the
//! client cannot decode is `Internal`: the server broke the published API.

use gitpod_refarch::{Error, ErrorKind};
use google_cloud_gax::error::rpc::Code;

/// The client error type.
pub(crate) type GaxError = google_cloud_gax::error::Error;

fn in_progress(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    (m.contains("operation") && (m.contains("currently") || m.contains("in progress")))
        || m.contains("please wait and try again")
}

fn propagation(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    // A new service account not yet visible to IAM; or a Workload Identity pool
    // (`<project>.svc.id.goog`) that exists only once the GKE cluster does.
    m.contains("does not exist")
        && (m.contains("service account") || m.contains("principal") || m.contains("identity pool"))
}

/// The kind of a client error.
pub(crate) fn kind_of(e: &GaxError) -> ErrorKind {
    if e.is_authentication() {
        return ErrorKind::Credentials;
    }
    if e.is_timeout() || e.is_connect() || e.is_io() || e.is_transport() || e.is_exhausted() {
        return ErrorKind::Transient;
    }
    if e.is_deserialization() || e.is_serialization() || e.is_binding() {
        return ErrorKind::Internal;
    }
    let message = e.status().map(|s| s.message.as_str()).unwrap_or_default();
    if let Some(s) = e.status() {
        let k = match s.code {
            Code::ResourceExhausted => Some(ErrorKind::Throttled),
            Code::Unavailable | Code::Internal | Code::DeadlineExceeded | Code::Unknown => {
                Some(ErrorKind::Transient)
            }
            Code::FailedPrecondition if in_progress(message) => {
                Some(ErrorKind::OperationInProgress)
            }
            Code::InvalidArgument | Code::NotFound if propagation(message) => {
                Some(ErrorKind::PropagationDelay)
            }
            Code::Aborted | Code::AlreadyExists => Some(ErrorKind::Conflict),
            Code::NotFound => Some(ErrorKind::NotFound),
            Code::PermissionDenied => Some(ErrorKind::Permission),
            Code::Unauthenticated => Some(ErrorKind::Credentials),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                Some(ErrorKind::InvalidInput)
            }
            _ => None,
        };
        if let Some(k) = k {
            return k;
        }
    }
    match e.http_status_code() {
        Some(429) => ErrorKind::Throttled,
        Some(s) if s >= 500 => ErrorKind::Transient,
        Some(409) if in_progress(message) => ErrorKind::OperationInProgress,
        Some(409) | Some(412) => ErrorKind::Conflict,
        Some(404) => ErrorKind::NotFound,
        Some(403) => ErrorKind::Permission,
        Some(401) => ErrorKind::Credentials,
        Some(400) if in_progress(message) => ErrorKind::OperationInProgress,
        Some(s) if (400..500).contains(&s) => ErrorKind::InvalidInput,
        _ => ErrorKind::Transient,
    }
}

/// Convert a client error, saying what was being done.
pub(crate) fn from_gax(e: GaxError, doing: impl AsRef<str>) -> Error {
    let kind = kind_of(&e);
    let detail = e
        .status()
        .map(|s| s.message.clone())
        .filter(|m| !m.is_empty())
        .or_else(|| e.http_status_code().map(|c| format!("HTTP {c}")))
        .unwrap_or_else(|| kind.as_str().to_string());
    Error::new(kind, format!("{}: {detail}", doing.as_ref())).with_source(e)
}

/// A create refused with "already exists" for a resource that a read did not find:
/// an earlier create (whose answer was lost) is still running. Retried.
pub(crate) fn still_creating(e: GaxError, what: impl AsRef<str>) -> Error {
    if kind_of(&e) == ErrorKind::Conflict {
        Error::new(
            ErrorKind::OperationInProgress,
            format!(
                "{} is still being created by an earlier request",
                what.as_ref()
            ),
        )
        .with_source(e)
    } else {
        from_gax(e, format!("creating {}", what.as_ref()))
    }
}

/// Whether a client error means "absent".
pub(crate) fn is_not_found(e: &GaxError) -> bool {
    kind_of(e) == ErrorKind::NotFound
}

/// Map a not-found error to `None`.
pub(crate) fn found<T>(
    r: Result<T, GaxError>,
    doing: impl AsRef<str>,
) -> gitpod_refarch::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(from_gax(e, doing)),
    }
}

/// Extension to convert client results.
pub(crate) trait GaxResultExt<T> {
    /// Convert the error, saying what was being done.
    fn ctx(self, doing: impl AsRef<str>) -> gitpod_refarch::Result<T>;
}

impl<T> GaxResultExt<T> for Result<T, GaxError> {
    fn ctx(self, doing: impl AsRef<str>) -> gitpod_refarch::Result<T> {
        self.map_err(|e| from_gax(e, doing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::rpc::Status;

    fn status(code: Code, msg: &str) -> GaxError {
        GaxError::service(Status::default().set_code(code).set_message(msg))
    }

    #[test]
    fn classifies_by_code_and_message() {
        assert_eq!(
            kind_of(&status(Code::ResourceExhausted, "quota")),
            ErrorKind::Throttled
        );
        assert_eq!(
            kind_of(&status(Code::Unavailable, "try later")),
            ErrorKind::Transient
        );
        assert_eq!(
            kind_of(&status(
                Code::FailedPrecondition,
                "Operation operation-1 is currently creating cluster gitpod. Please wait and try again once it is done."
            )),
            ErrorKind::OperationInProgress
        );
        assert_eq!(
            kind_of(&status(
                Code::FailedPrecondition,
                "Node pool version is invalid"
            )),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind_of(&status(Code::NotFound, "no such cluster")),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind_of(&status(
                Code::InvalidArgument,
                "Service account gke-sa-x@p.iam.gserviceaccount.com does not exist."
            )),
            ErrorKind::PropagationDelay
        );
        assert_eq!(
            kind_of(&status(Code::AlreadyExists, "exists")),
            ErrorKind::Conflict
        );
        assert_eq!(kind_of(&status(Code::Aborted, "etag")), ErrorKind::Conflict);
        assert_eq!(
            kind_of(&status(Code::PermissionDenied, "no")),
            ErrorKind::Permission
        );
        assert_eq!(
            kind_of(&status(Code::Unauthenticated, "no")),
            ErrorKind::Credentials
        );
    }
}
