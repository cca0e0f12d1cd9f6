//! Optional authentication: who may call the fake ([`Auth`]), and the check of EKS's
//! bearer tokens ([`EksAuth`]).
//!
//! An EKS token is `k8s-aws-v1.` followed by a presigned STS `GetCallerIdentity` URL in
//! unpadded base64url. EKS's authenticator checks the URL's shape (scheme, STS host,
//! path `/`, only SigV4's query parameters, each once, `Action=GetCallerIdentity`,
//! `x-k8s-aws-id` among the signed headers, `X-Amz-Expires` within 0..=900,
//! `X-Amz-Date` less than 15 minutes old), then sends it to STS with the header
//! `x-k8s-aws-id: <cluster>`; STS checks the signature, so a token signed for another
//! cluster is refused there. This fake makes the same shape checks and, when it is
//! given the credentials STS knows ([`EksAuth::with_credentials`]), checks the SigV4
//! signature itself with the cluster's name as that header; without them a
//! signature is only checked for its shape. It never calls STS.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::status::ApiError;

/// Who may call the fake (see [`crate::FakeConfig::with_auth`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Auth {
    /// Every request is served, with any token or none (the default).
    #[default]
    Anyone,
    /// EKS tokens for one cluster: a request with no `Authorization` header is the
    /// anonymous user, who may read only `/version`, `/healthz`, `/livez` and
    /// `/readyz` (elsewhere 403 `Forbidden`); a bearer token that is not a valid EKS
    /// token for the cluster is 401 `Unauthorized`.
    Eks(EksAuth),
}

/// The EKS token check of one cluster.
#[derive(Clone)]
#[non_exhaustive]
pub struct EksAuth {
    /// The cluster's name, the value STS is sent as `x-k8s-aws-id`.
    pub cluster_name: String,
    /// The STS endpoint tokens must presign (`http://127.0.0.1:PORT` for an
    /// emulator); `None`: AWS's own, `https://sts.amazonaws.com` or
    /// `https://sts.REGION.amazonaws.com[.cn]`.
    pub sts_endpoint: Option<String>,
    /// The access key id and secret STS knows, if the signature is to be checked.
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for EksAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksAuth")
            .field("cluster_name", &self.cluster_name)
            .field("sts_endpoint", &self.sts_endpoint)
            .field(
                "access_key_id",
                &self.credentials.as_ref().map(|(id, _)| id.as_str()),
            )
            .finish_non_exhaustive()
    }
}

impl EksAuth {
    /// Tokens for `cluster_name`, presigned for AWS's STS, signatures checked for
    /// their shape only.
    pub fn new(cluster_name: impl Into<String>) -> Self {
        EksAuth {
            cluster_name: cluster_name.into(),
            sts_endpoint: None,
            credentials: None,
        }
    }

    /// Tokens presigned for this STS endpoint instead (an emulator's base URL).
    pub fn with_sts_endpoint(mut self, url: impl Into<String>) -> Self {
        self.sts_endpoint = Some(url.into());
        self
    }

    /// Check the SigV4 signature as STS would with these credentials: a token signed
    /// with another key, or for another cluster, is refused.
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some((access_key_id.into(), secret_access_key.into()));
        self
    }
}

/// The prefix of EKS tokens.
const PREFIX: &str = "k8s-aws-v1.";
/// The longest token EKS accepts.
const MAX_TOKEN_LEN: usize = 4 * 1024;
/// How long after `X-Amz-Date` a token is accepted (STS's presigned-URL window).
const VALIDITY_SECS: i64 = 15 * 60;
/// The query parameters a token's URL may carry (lower case).
const ALLOWED: [&str; 9] = [
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
];
/// The header that binds a token to its cluster.
const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// Paths the anonymous user may read (`system:public-info-viewer`).
const PUBLIC: [&str; 4] = ["version", "healthz", "livez", "readyz"];

/// The check of one request's `Authorization` header value against `auth`.
pub(crate) fn check(
    auth: &Auth,
    authorization: Option<&str>,
    method: &str,
    path: &str,
) -> Result<(), ApiError> {
    let Auth::Eks(eks) = auth else {
        return Ok(());
    };
    let Some(value) = authorization else {
        let first = path.split('/').find(|s| !s.is_empty()).unwrap_or("");
        if method == "GET" && PUBLIC.contains(&first) {
            return Ok(());
        }
        return Err(ApiError::forbidden(format!(
            "forbidden: User \"system:anonymous\" cannot {} path \"{path}\"",
            method.to_lowercase()
        )));
    };
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(unauthorized)?
        .trim();
    verify(eks, token, SystemTime::now()).map_err(|_| unauthorized())
}

/// The 401 the API server answers for a credential it does not accept (it never says
/// why).
fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// Why a token is refused (for tests; the client only ever sees `Unauthorized`).
pub(crate) fn verify(eks: &EksAuth, token: &str, now: SystemTime) -> Result<(), String> {
    if token.len() > MAX_TOKEN_LEN {
        return Err("token is too large".into());
    }
    let b64 = token
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("token is missing the {PREFIX:?} prefix"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|e| format!("token is not unpadded base64url: {e}"))?;
    let url = String::from_utf8(bytes).map_err(|_| "token is not UTF-8".to_string())?;
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "the pre-signed URL has no scheme".to_string())?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, rest) = rest.split_at(end);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    check_host(eks, scheme, host)?;
    if path != "/" {
        return Err("unexpected path in pre-signed URL".into());
    }

    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k)?, decode(v)?);
        let lower = k.to_ascii_lowercase();
        if !ALLOWED.contains(&lower.as_str()) {
            return Err(format!("non-whitelisted query parameter {k:?}"));
        }
        if params.iter().any(|(seen, _)| seen.eq_ignore_ascii_case(&k)) {
            return Err("query parameter with multiple values not supported".into());
        }
        params.push((k, v));
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if get("action") != Some("GetCallerIdentity") {
        return Err("unexpected action parameter in pre-signed URL".into());
    }
    let signed: Vec<&str> = get("x-amz-signedheaders")
        .unwrap_or("")
        .split(';')
        .collect();
    if !signed
        .iter()
        .any(|h| h.eq_ignore_ascii_case(CLUSTER_HEADER))
    {
        return Err(format!(
            "client did not sign the {CLUSTER_HEADER} header in the pre-signed URL"
        ));
    }
    match get("x-amz-expires").and_then(|e| e.parse::<i64>().ok()) {
        Some(e) if (0..=900).contains(&e) => {}
        _ => return Err("invalid X-Amz-Expires parameter in pre-signed URL".into()),
    }
    let date = get("x-amz-date").ok_or("X-Amz-Date parameter must be present")?;
    let signed_at = parse_amz_date(date).ok_or_else(|| format!("bad X-Amz-Date {date:?}"))?;
    let now = unix_secs(now);
    if now > signed_at + VALIDITY_SECS {
        return Err("X-Amz-Date parameter is expired (15 minute expiration)".into());
    }
    if signed_at > now + VALIDITY_SECS {
        return Err("Signature not yet current".into());
    }

    // What STS checks: algorithm, credential scope, signature.
    if get("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err("unsupported X-Amz-Algorithm".into());
    }
    let credential = get("x-amz-credential").unwrap_or("");
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, day, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(format!("malformed X-Amz-Credential {credential:?}"));
    };
    if *service != "sts" || !date.starts_with(day) || region.is_empty() || key_id.is_empty() {
        return Err(format!(
            "X-Amz-Credential {credential:?} is not an STS scope of {date}"
        ));
    }
    let signature = get("x-amz-signature").unwrap_or("");
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("malformed X-Amz-Signature".into());
    }
    let Some((known_id, secret)) = &eks.credentials else {
        return Ok(());
    };
    if key_id != known_id {
        return Err("The security token included in the request is invalid".into());
    }
    let mut headers = Vec::new();
    for name in &signed {
        let value = match name.to_ascii_lowercase().as_str() {
            "host" => host_header(scheme, host),
            CLUSTER_HEADER => eks.cluster_name.clone(),
            // A header EKS does not send: STS sees a different request.
            _ => return Err(format!("signed header {name:?} is not sent to STS")),
        };
        headers.push((name.to_ascii_lowercase(), value));
    }
    headers.sort();
    let expected = sign(secret, &params, &headers, date, &scope[1..4].join("/"))?;
    if expected != signature.to_ascii_lowercase() {
        return Err("SignatureDoesNotMatch".into());
    }
    Ok(())
}

/// The token's scheme and host against the configured (or AWS's) STS endpoint.
fn check_host(eks: &EksAuth, scheme: &str, host: &str) -> Result<(), String> {
    match &eks.sts_endpoint {
        Some(endpoint) => {
            let expected = endpoint.trim_end_matches('/');
            if format!("{scheme}://{host}") == expected {
                Ok(())
            } else {
                Err(format!("unexpected hostname {host:?} in pre-signed URL"))
            }
        }
        None => {
            if scheme != "https" {
                return Err(format!("unexpected scheme {scheme:?} in pre-signed URL"));
            }
            let regional = host
                .strip_prefix("sts.")
                .and_then(|h| {
                    h.strip_suffix(".amazonaws.com")
                        .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
                })
                .is_some_and(|region| {
                    !region.is_empty()
                        && region
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                });
            if host == "sts.amazonaws.com" || regional {
                Ok(())
            } else {
                Err(format!("unexpected hostname {host:?} in pre-signed URL"))
            }
        }
    }
}

/// The `Host` header a client sends for `host` (the default port left out).
fn host_header(scheme: &str, host: &str) -> String {
    let default = if scheme == "https" { ":443" } else { ":80" };
    host.strip_suffix(default).unwrap_or(host).to_string()
}

/// The SigV4 signature (hex) of `GET /` with these query parameters (but the
/// signature) and headers, as STS computes it.
fn sign(
    secret: &str,
    params: &[(String, String)],
    headers: &[(String, String)],
    date: &str,
    scope: &str,
) -> Result<String, String> {
    let mut query: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("x-amz-signature"))
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let canonical = format!(
        "GET\n/\n{}\n{canonical_headers}\n{}\n{}",
        query.join("&"),
        names.join(";"),
        hex(&Sha256::digest(b""))
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}/aws4_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/').chain(["aws4_request"]) {
        key = hmac(&key, part.as_bytes())?;
    }
    Ok(hex(&hmac(&key, to_sign.as_bytes())?))
}

fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SigV4's URI encoding: everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query component, percent-decoded (`+` is a space, as in a form).
fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| "malformed query parameter".to_string())?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "malformed query parameter".into())
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `YYYYMMDDTHHMMSSZ` as seconds since the epoch.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn amz_dates_are_read_as_utc() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20231114T221320Z"), Some(1_700_000_000));
        assert_eq!(parse_amz_date("20240229T000000Z"), Some(1_709_164_800));
        for bad in [
            "",
            "20231114 221320Z",
            "2023111T221320Z",
            "20231314T000000Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn aws_hosts_and_an_emulator_endpoint() {
        let aws = EksAuth::new("c");
        assert!(check_host(&aws, "https", "sts.amazonaws.com").is_ok());
        assert!(check_host(&aws, "https", "sts.eu-west-1.amazonaws.com").is_ok());
        assert!(check_host(&aws, "http", "sts.eu-west-1.amazonaws.com").is_err());
        assert!(check_host(&aws, "https", "evil.example.com").is_err());
        let local = EksAuth::new("c").with_sts_endpoint("http://127.0.0.1:5000/");
        assert!(check_host(&local, "http", "127.0.0.1:5000").is_ok());
        assert!(check_host(&local, "http", "127.0.0.1:5001").is_err());
        let shown = format!("{:?}", EksAuth::new("c").with_credentials("AKID", "s3cr3t"));
        assert!(
            !shown.contains("s3cr3t") && shown.contains("AKID"),
            "{shown}"
        );
    }
}
