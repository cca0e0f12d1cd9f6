//! Plain registry HTTP with reqwest: the `GET /v2/` sign-in (Basic, or Bearer after
//! a `WWW-Authenticate` challenge, as `docker login` does) and the manifest DELETE
//! that oci-client lacks. Errors keep the password out.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use super::url::RegistryUrl;

/// A reqwest client for one registry: trusts the system roots plus `ca_pem`.
///
/// reqwest's `rustls` feature brings aws-lc-rs and uses it when no process-wide
/// rustls provider is installed (it never panics for a missing provider); if the
/// process installed one (ring, as sqlx's), reqwest uses that one.
pub(crate) fn build_client(ca_pem: Option<&str>, timeout: Duration) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout.saturating_mul(3))
        .user_agent(concat!("gitpod-refarch/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        b = b.tls_certs_merge(parse_ca(pem)?);
    }
    b.build()
        .map_err(|e| Error::internal("cannot build the registry HTTP client").with_source(e))
}

/// The certificates in `pem` (`registry.caFile`).
pub(crate) fn parse_ca(pem: &str) -> Result<Vec<reqwest::Certificate>> {
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
        Error::invalid_input(format!("registry.caFile: not a PEM certificate: {e}"))
    })?;
    if certs.is_empty() {
        return Err(Error::invalid_input(
            "registry.caFile: holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
        ));
    }
    Ok(certs)
}

/// Why a registry request did not succeed (never holds a secret).
#[derive(Debug)]
pub(crate) enum Failure {
    /// No answer: connection refused, DNS, timeout.
    Unreachable(String),
    /// The TLS handshake failed: an untrusted or wrong certificate.
    Tls(String),
    /// The registry (or its token service) rejected the credentials.
    Rejected { status: u16, detail: String },
    /// Any other HTTP answer.
    Status { status: u16, detail: String },
    /// The answer made no sense (a token service without a token, ...).
    Protocol(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(e) => write!(f, "no answer: {e}"),
            Failure::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Failure::Rejected { status, detail } => {
                write!(f, "credentials rejected (HTTP {status}){}", opt(detail))
            }
            Failure::Status { status, detail } => write!(f, "HTTP {status}{}", opt(detail)),
            Failure::Protocol(e) => write!(f, "{e}"),
        }
    }
}

fn opt(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// The error text of `e` and its sources, one line.
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Whether a TLS certificate problem is somewhere in `e`'s chain.
fn is_tls(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = cur {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // io::Error::source skips its payload: look at the payload itself.
        if let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if inner.downcast_ref::<rustls::Error>().is_some() {
                return true;
            }
        }
        cur = s.source();
    }
    let text = chain(e).to_ascii_lowercase();
    text.contains("certificate") || text.contains("unknownissuer")
}

/// Classify a transport error.
pub(crate) fn transport(e: &(dyn StdError + 'static)) -> Failure {
    if is_tls(e) {
        Failure::Tls(chain(e))
    } else {
        Failure::Unreachable(chain(e))
    }
}

/// A short text from an error body (registries answer JSON `errors[]` or text).
async fn body_detail(r: Response) -> String {
    let text = r.text().await.unwrap_or_default();
    let text = text.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        if let Some(errs) = v["errors"].as_array() {
            let msgs: Vec<String> = errs
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["code"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("")
                    )
                    .trim()
                    .to_string()
                })
                .collect();
            return msgs.join("; ");
        }
    }
    text.chars().take(200).collect()
}

/// How the sign-in went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthScheme {
    /// HTTP Basic on every request.
    Basic,
    /// A Bearer token from the registry's token service.
    Bearer,
    /// The registry asked for nothing.
    None,
}

impl AuthScheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthScheme::Basic => "basic auth",
            AuthScheme::Bearer => "token auth",
            AuthScheme::None => "no auth required",
        }
    }
}

/// One registry with one user: requests that sign in as the registry asks.
pub(crate) struct Session<'a> {
    pub(crate) client: &'a reqwest::Client,
    pub(crate) url: &'a RegistryUrl,
    pub(crate) username: &'a str,
    pub(crate) password: &'a Secret,
}

impl Session<'_> {
    /// `GET /v2/` signed in: proves the credentials (`docker login`).
    pub(crate) async fn ping(&self) -> std::result::Result<AuthScheme, Failure> {
        let url = format!("{}/v2/", self.url.base());
        let (resp, scheme) = self.send(Method::GET, &url, None).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(scheme);
        }
        Err(self.failure(resp).await)
    }

    /// `DELETE /v2/<repo>/manifests/<digest>`; the answer's status.
    pub(crate) async fn delete(
        &self,
        repository: &str,
        what: &str,
        digest: &str,
    ) -> std::result::Result<StatusCode, Failure> {
        let url = format!("{}/v2/{repository}/{what}/{digest}", self.url.base());
        let scope = format!("repository:{repository}:delete");
        let (resp, _) = self.send(Method::DELETE, &url, Some(&scope)).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(status);
        }
        Err(self.failure(resp).await)
    }

    async fn failure(&self, resp: Response) -> Failure {
        let status = resp.status().as_u16();
        let detail = body_detail(resp).await;
        if status == 401 {
            Failure::Rejected { status, detail }
        } else {
            Failure::Status { status, detail }
        }
    }

    /// Send with Basic credentials; on a Bearer challenge, get a token for the
    /// challenge's scope (or `scope`) with the credentials and send again.
    async fn send(
        &self,
        method: Method,
        url: &str,
        scope: Option<&str>,
    ) -> std::result::Result<(Response, AuthScheme), Failure> {
        let first = self
            .client
            .request(method.clone(), url)
            .basic_auth(self.username, Some(self.password.expose()))
            .send()
            .await
            .map_err(|e| transport(&e))?;
        if first.status() != StatusCode::UNAUTHORIZED {
            let scheme = if first.status().is_success() {
                AuthScheme::Basic
            } else {
                AuthScheme::None
            };
            return Ok((first, scheme));
        }
        let Some(challenge) = bearer_challenge(first.headers()) else {
            // A Basic challenge to Basic credentials: rejected.
            return Ok((first, AuthScheme::Basic));
        };
        let token = self.token(&challenge, scope).await?;
        let second = self
            .client
            .request(method, url)
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| transport(&e))?;
        Ok((second, AuthScheme::Bearer))
    }

    async fn token(
        &self,
        c: &Challenge,
        scope: Option<&str>,
    ) -> std::result::Result<Secret, Failure> {
        let realm = reqwest::Url::parse(&c.realm).map_err(|_| {
            Failure::Protocol(format!(
                "the registry's token realm `{}` is not a URL",
                c.realm
            ))
        })?;
        // Credentials go to the token service only over HTTPS (or to a plain-HTTP
        // registry's own plain-HTTP service).
        if realm.scheme() != "https" && !(realm.scheme() == "http" && self.url.plain_http) {
            return Err(Failure::Protocol(format!(
                "the registry's token service `{}` is not HTTPS: the credentials are not sent there",
                c.realm
            )));
        }
        let mut q: Vec<(&str, &str)> = vec![("account", self.username)];
        if let Some(s) = &c.service {
            q.push(("service", s));
        }
        if let Some(s) = c.scope.as_deref().or(scope) {
            q.push(("scope", s));
        }
        let r = self
            .client
            .get(realm)
            .query(&q)
            .basic_auth(self.username, Some(self.password.expose()))
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = r.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::Rejected {
                status: status.as_u16(),
                detail: body_detail(r).await,
            });
        }
        if !status.is_success() {
            return Err(Failure::Status {
                status: status.as_u16(),
                detail: format!("token service: {}", body_detail(r).await),
            });
        }
        let v: serde_json::Value = r.json().await.map_err(|e| {
            Failure::Protocol(format!("the token service's answer is not JSON: {e}"))
        })?;
        let t = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::Protocol("the token service's answer has no token".into()))?;
        Ok(Secret::new(t.to_string()))
    }
}

/// A `WWW-Authenticate: Bearer realm=..,service=..,scope=..` challenge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) realm: String,
    pub(crate) service: Option<String>,
    pub(crate) scope: Option<String>,
}

fn bearer_challenge(h: &HeaderMap) -> Option<Challenge> {
    h.get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_bearer)
}

/// Parse one `Bearer` challenge (quoted values may hold commas).
pub(crate) fn parse_bearer(v: &str) -> Option<Challenge> {
    let v = v.trim();
    if v.len() < 7 || !v[..6].eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = Vec::new();
    let mut rest = v[6..].trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => out.push(c),
                }
            }
            let end = end?;
            (out, &q[end + 1..])
        } else {
            match after.split_once(',') {
                Some((a, b)) => (a.trim().to_string(), b),
                None => (after.trim().to_string(), ""),
            }
        };
        params.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
    Some(Challenge {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// The provider's error for a failed sign-in (names the user and registry, never
/// the password).
pub(crate) fn provider_error(
    f: Failure,
    url: &RegistryUrl,
    username: &str,
    ca_given: bool,
) -> Error {
    let host = &url.host;
    match f {
        Failure::Rejected { status, detail } => Error::new(
            ErrorKind::Credentials,
            format!(
                "the registry {host} rejected user `{username}` (HTTP {status}{}): check \
                 registry.username and registry.password",
                opt(&detail)
            ),
        ),
        Failure::Tls(e) => Error::invalid_input(if ca_given {
            format!(
                "the TLS certificate of {host} is not trusted even with registry.caFile ({e}): \
                 give the CA that signed it, and a certificate that names `{host}`"
            )
        } else {
            format!(
                "the TLS certificate of {host} is not trusted ({e}): if the registry uses a \
                 private CA, set registry.caFile to it (PEM)"
            )
        }),
        Failure::Unreachable(e) => Error::new(
            ErrorKind::Transient,
            format!("cannot reach the registry at {}: {e}", url.base()),
        ),
        Failure::Status { status: 404, .. } => Error::invalid_input(format!(
            "{}/v2/ answered 404: not an OCI registry; check registry.url",
            url.base()
        )),
        Failure::Status {
            status: 429,
            detail,
        } => Error::new(
            ErrorKind::Throttled,
            format!("the registry {host} throttles (HTTP 429){}", opt(&detail)),
        ),
        Failure::Status {
            status: 403,
            detail,
        } => Error::new(
            ErrorKind::Permission,
            format!(
                "the registry {host} refuses user `{username}` (HTTP 403{}): give it access",
                opt(&detail)
            ),
        ),
        Failure::Status { status, detail } if status >= 500 => Error::new(
            ErrorKind::Transient,
            format!("the registry {host} answered HTTP {status}{}", opt(&detail)),
        ),
        Failure::Status { status, detail } => Error::new(
            ErrorKind::Precondition,
            format!(
                "the registry {host} answered `GET /v2/` with HTTP {status}{}",
                opt(&detail)
            ),
        ),
        Failure::Protocol(e) => {
            Error::new(ErrorKind::Precondition, format!("the registry {host}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_bearer(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.example.com/token");
        assert_eq!(c.service.as_deref(), Some("registry.example.com"));
        assert_eq!(c.scope.as_deref(), Some("repository:a/b:pull,push"));
        let c = parse_bearer("bearer realm=https://h/t, service=x").unwrap();
        assert_eq!(c.realm, "https://h/t");
        assert_eq!(c.service.as_deref(), Some("x"));
        assert_eq!(c.scope, None);
        assert!(parse_bearer(r#"Basic realm="x""#).is_none());
        assert!(parse_bearer(r#"Bearer service="x""#).is_none());
    }
}
