//! The S3 client (official AWS SDK pointed at any S3-compatible endpoint), the
//! endpoint and bucket rules, and the mapping of SDK errors to the core's kinds.
//!
//! Nothing here ever formats the secret access key: it goes into the SDK's
//! `Credentials` (whose `Debug` redacts it) and nowhere else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, RuntimeComponents,
};
use aws_sdk_s3::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use gitpod_refarch::{Error, ErrorKind, Result, Secret};

/// S3 error codes that mean the key itself was not accepted.
const CREDENTIAL_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
    "AuthorizationHeaderMalformed",
    "MissingSecurityHeader",
];

/// S3 error codes for throttling.
const THROTTLING_CODES: &[&str] = &["SlowDown", "Throttling", "RequestLimitExceeded"];

/// An endpoint as the user wrote it, split into what the SDK and the installer want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port]` for the SDK.
    pub(crate) url: String,
    /// `host[:port]`, as Gitpod's installer wants `objectStorage.s3.endpoint`.
    pub(crate) host_port: String,
    /// `http://`: the installer gets `allowInsecureConnection: true`.
    pub(crate) insecure: bool,
}

fn invalid(field: &str, msg: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("{field}: {msg}"))
}

/// Parse `https://host[:port]` (or `http://`), refusing anything the installer's
/// `host[:port]` cannot carry (a path, a query, user info).
pub(crate) fn parse_endpoint(raw: &str) -> Result<Endpoint> {
    const FIELD: &str = "storage.endpoint";
    let trimmed = raw.trim();
    let lower = trimmed.to_ascii_lowercase();
    let (insecure, rest) = if lower.starts_with("https://") {
        (false, &trimmed["https://".len()..])
    } else if lower.starts_with("http://") {
        (true, &trimmed["http://".len()..])
    } else {
        return Err(invalid(
            FIELD,
            format!("'{trimmed}' must start with https:// (or http:// inside a private network)"),
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(invalid(FIELD, format!("'{trimmed}' has no host")));
    }
    if let Some(c) = rest
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '@' | '\\'))
    {
        return Err(invalid(
            FIELD,
            format!(
                "'{trimmed}' may only be scheme://host[:port] (found '{c}'): Gitpod's installer takes host[:port]"
            ),
        ));
    }
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        // [v6]:port
        let (v6, tail) = after
            .split_once(']')
            .ok_or_else(|| invalid(FIELD, format!("'{trimmed}': unclosed '['")))?;
        if v6.is_empty() {
            return Err(invalid(FIELD, format!("'{trimmed}' has no host")));
        }
        match tail {
            "" => (rest, None),
            t => match t.strip_prefix(':') {
                Some(p) => (&rest[..rest.len() - t.len()], Some(p)),
                None => return Err(invalid(FIELD, format!("'{trimmed}': junk after ']'"))),
            },
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(invalid(FIELD, format!("'{trimmed}' has no host")));
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => {
                return Err(invalid(
                    FIELD,
                    format!("'{trimmed}': port '{p}' is not a number from 1 to 65535"),
                ))
            }
        }
    }
    let scheme = if insecure { "http" } else { "https" };
    Ok(Endpoint {
        url: format!("{scheme}://{rest}"),
        host_port: rest.to_string(),
        insecure,
    })
}

/// S3's bucket naming rules (the strict, DNS-compatible ones every server accepts).
pub(crate) fn check_bucket(bucket: &str) -> Result<()> {
    const FIELD: &str = "storage.bucket";
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ip_like = bucket.split('.').count() == 4
        && bucket
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !(3..=63).contains(&bucket.len())
        || !ok_chars
        || !edge(bucket.chars().next())
        || !edge(bucket.chars().last())
        || bucket.contains("..")
        || bucket.contains(".-")
        || bucket.contains("-.")
        || ip_like
    {
        return Err(invalid(
            FIELD,
            format!(
                "'{bucket}' is not a valid bucket name (3-63 characters: lower-case letters, digits, '.' and '-', starting and ending with a letter or digit)"
            ),
        ));
    }
    Ok(())
}

/// A region name: non-empty, lower-case letters, digits and '-'.
pub(crate) fn check_region(region: &str) -> Result<()> {
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(invalid(
            "storage.region",
            format!("'{region}' is not a region name (for example us-east-1)"),
        ));
    }
    Ok(())
}

/// Counts the requests that may change state (every method but GET and HEAD),
/// once per attempt.
#[derive(Debug, Default)]
pub(crate) struct WriteCounter(AtomicU64);

impl WriteCounter {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct CountWrites(Arc<WriteCounter>);

impl Intercept for CountWrites {
    fn name(&self) -> &'static str {
        "gitpod-refarch-count-writes"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        if !matches!(context.request().method(), "GET" | "HEAD") {
            self.0 .0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// What a client needs.
pub(crate) struct ClientSettings<'a> {
    pub(crate) url: &'a str,
    pub(crate) region: &'a str,
    pub(crate) path_style: bool,
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a Secret,
    /// Per-attempt budget (connect and whole attempt).
    pub(crate) timeout: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) counter: Option<Arc<WriteCounter>>,
}

/// An S3 client for an S3-compatible endpoint: static credentials, the given
/// region, path-style addressing if asked, checksums only where the API requires
/// them (older MinIO and Ceph reject the SDK's default trailing checksums).
pub(crate) fn s3_client(s: ClientSettings<'_>) -> aws_sdk_s3::Client {
    let mut b = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(s.region.to_string()))
        .endpoint_url(s.url)
        .force_path_style(s.path_style)
        .credentials_provider(Credentials::new(
            s.access_key_id,
            s.secret_access_key.expose().clone(),
            None,
            None,
            "gitpod-refarch-storage",
        ))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(s.timeout)
                .operation_attempt_timeout(s.timeout)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(s.max_attempts.max(1))
                .with_initial_backoff(Duration::from_millis(100)),
        );
    if let Some(counter) = s.counter {
        b = b.interceptor(CountWrites(counter));
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

/// How an S3 call failed, in the terms the provider and the checks need.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The endpoint did not answer (connection refused, timeout, TLS).
    Unreachable(String),
    /// The server answered with an error.
    Service {
        status: u16,
        /// The S3 error code (`AccessDenied`); `None` for HEAD answers (no body).
        code: Option<String>,
        message: String,
    },
    /// The answer could not be read.
    Other(String),
}

impl Failure {
    pub(crate) fn of<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                Failure::Unreachable(DisplayErrorContext(e).to_string())
            }
            SdkError::ServiceError(se) => Failure::Service {
                status: se.raw().status().as_u16(),
                code: se.err().code().map(str::to_string),
                message: se.err().message().unwrap_or_default().to_string(),
            },
            SdkError::ResponseError(r) => Failure::Service {
                status: r.raw().status().as_u16(),
                code: None,
                message: DisplayErrorContext(e).to_string(),
            },
            _ => Failure::Other(DisplayErrorContext(e).to_string()),
        }
    }

    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Failure::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            Failure::Service { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The key was refused (wrong id or secret, malformed signature).
    pub(crate) fn is_credentials(&self) -> bool {
        self.code().is_some_and(|c| CREDENTIAL_CODES.contains(&c))
    }

    /// One line for messages: `403 AccessDenied: Access Denied`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Failure::Unreachable(m) | Failure::Other(m) => m.clone(),
            Failure::Service {
                status,
                code,
                message,
            } => {
                let mut s = status.to_string();
                if let Some(c) = code {
                    s.push(' ');
                    s.push_str(c);
                }
                if !message.is_empty() {
                    s.push_str(": ");
                    s.push_str(message);
                }
                s
            }
        }
    }

    /// The core error for it: `what` is the action (`creating bucket gitpod`).
    pub(crate) fn into_error(self, what: &str, key_id: &str, endpoint: &str) -> Error {
        let detail = self.describe();
        let kind = match &self {
            Failure::Unreachable(_) => ErrorKind::Transient,
            Failure::Other(_) => ErrorKind::OperationFailed,
            Failure::Service { status, code, .. } => {
                let code = code.as_deref().unwrap_or_default();
                if CREDENTIAL_CODES.contains(&code) {
                    ErrorKind::Credentials
                } else if THROTTLING_CODES.contains(&code) || *status == 429 {
                    ErrorKind::Throttled
                } else {
                    match status {
                        403 => ErrorKind::Permission,
                        404 => ErrorKind::NotFound,
                        409 => ErrorKind::Conflict,
                        301 | 307 | 400 => ErrorKind::InvalidInput,
                        s if *s >= 500 => ErrorKind::Transient,
                        _ => ErrorKind::OperationFailed,
                    }
                }
            }
        };
        let msg = match kind {
            ErrorKind::Credentials => format!(
                "{what}: {endpoint} does not accept the access key {key_id} ({detail}): check storage.accessKeyId and storage.secretAccessKey"
            ),
            ErrorKind::Permission => format!(
                "{what}: the access key {key_id} is not allowed to do this on {endpoint} ({detail})"
            ),
            ErrorKind::Transient => format!("{what}: {endpoint} did not answer ({detail})"),
            _ => format!("{what} on {endpoint}: {detail}"),
        };
        Error::new(kind, msg)
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = parse_endpoint("https://minio.corp:9000/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.host_port, "minio.corp:9000");
        assert_eq!(e.url, "https://minio.corp:9000");
        assert!(!e.insecure);
        let e = parse_endpoint("HTTP://127.0.0.1:5000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.host_port, "127.0.0.1:5000");
        assert!(e.insecure);
        let e = parse_endpoint("https://[::1]:9000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.host_port, "[::1]:9000");
        for bad in [
            "minio:9000",
            "ftp://x",
            "https://",
            "https://h/path",
            "https://u:p@h",
            "https://h:0",
            "https://h:99999",
            "https://h:x",
            "https://:9000",
        ] {
            let err = parse_endpoint(bad).err().unwrap_or_else(|| panic!("{bad}"));
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(err.message().contains("storage.endpoint"), "{bad}");
        }
    }

    #[test]
    fn buckets() {
        for ok in ["gitpod", "a.b-c", "abc", "my-bucket-123"] {
            assert!(check_bucket(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "Gitpod",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "192.168.1.1",
            "a.-b",
        ] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
        assert!(check_region("us-east-1").is_ok());
        assert!(check_region("").is_err());
    }
}
