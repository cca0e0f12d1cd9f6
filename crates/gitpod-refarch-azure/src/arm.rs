//! A small typed client for Azure Resource Manager, on `azure_core`'s HTTP pipeline.
//!
//! Each call goes through an `azure_core` [`Pipeline`] with its bearer-token policy
//! (tokens for `<ARM endpoint>/.default` from the configured credential). The
//! pipeline's own retries are off: [`Arm`] retries throttled (`429`) and transient
//! (`5xx`, `408`, connection and I/O) failures itself with
//! [`RetryPolicy::run_when`] on the injected [`Clock`], waiting at least as long as
//! the answer's `Retry-After` (or `retry-after-ms`) asks, so virtual time in tests
//! applies and no retry hides in a library.
//!
//! The client is [`Arm`] (this file: the pipeline, one request with its retries, the
//! verbs); the rest is one concern a file:
//!
//! - [`error`]: ARM's error answers as the SDK's [`Error`] kinds;
//! - [`lro`]: the long-running operations the mutating verbs return ([`Lro`]) and their
//!   poller;
//! - [`crate::transport`]: where ARM is ([`Endpoint`]) and the loopback plain-HTTP transport
//!   for a local fake ([`LoopbackTransport`]).

pub mod error;
pub mod lro;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::headers::HeaderName;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::policies::Policy;
use azure_core::http::{
    ClientOptions, Method, Pipeline, PipelineSendOptions, Request, RetryOptions, Url,
};
use base64::Engine as _;
use gitpod_refarch::engine::{Clock, RetryPolicy};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::config::AzureConfig;

pub(crate) use crate::transport::transport_for;
pub use crate::transport::{Endpoint, LoopbackTransport};
pub use error::{code_of, from_value, ArmError};
pub use lro::{is_busy, provisioning_state, watch_id, Lro};

use error::transport_error;
use lro::lro_of;

const AZURE_ASYNC_OPERATION: HeaderName = HeaderName::from_static("azure-asyncoperation");
const LOCATION: HeaderName = HeaderName::from_static("location");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");
const CONTENT_TYPE: HeaderName = HeaderName::from_static("content-type");
const ACCEPT: HeaderName = HeaderName::from_static("accept");

/// An answer: status, the LRO headers, the body.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    async_op: Option<String>,
    location: Option<String>,
    retry_after: Option<Duration>,
    body: Option<Value>,
}

/// The claims of an Entra access token this client reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenClaims {
    /// The object id of the identity (`oid`).
    pub object_id: Option<String>,
    /// The tenant (`tid`).
    pub tenant_id: Option<String>,
}

impl TokenClaims {
    /// Read `oid` and `tid` from a JWT's payload (not verified: it is our own token,
    /// only used to name ourselves).
    pub fn of_jwt(token: &str) -> TokenClaims {
        let payload = token.split('.').nth(1).unwrap_or_default();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        TokenClaims {
            object_id: s("oid"),
            tenant_id: s("tid"),
        }
    }
}

/// The typed ARM client (see the module docs).
#[derive(Clone)]
pub struct Arm {
    pipeline: Pipeline,
    endpoint: Endpoint,
    credential: Arc<dyn TokenCredential>,
    scope: String,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    poll_interval: Duration,
}

impl fmt::Debug for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arm")
            .field("endpoint", &self.endpoint.url.as_str())
            .field("scope", &self.scope)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

fn header(h: &azure_core::http::headers::Headers, name: &HeaderName) -> Option<String> {
    h.get_optional_str(name)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The wait an answer asks for: `retry-after-ms`, `x-ms-retry-after-ms` or
/// `Retry-After` in seconds (an HTTP date is ignored).
fn retry_after(h: &azure_core::http::headers::Headers) -> Option<Duration> {
    for ms in [&RETRY_AFTER_MS, &X_MS_RETRY_AFTER_MS] {
        if let Some(v) = header(h, ms).and_then(|v| v.parse::<u64>().ok()) {
            return Some(Duration::from_millis(v));
        }
    }
    header(h, &RETRY_AFTER)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

impl Arm {
    /// A client for `config`'s endpoint with `credential`. Makes no call.
    pub fn new(config: &AzureConfig, credential: Arc<dyn TokenCredential>) -> Result<Arm> {
        let endpoint = Endpoint::parse(config.arm_endpoint())?;
        let scope = config.arm_scope();
        let options = ClientOptions {
            retry: RetryOptions::none(),
            transport: transport_for(&endpoint),
            ..Default::default()
        };
        let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(
            credential.clone(),
            [scope.clone()],
        ));
        let pipeline = Pipeline::new(
            option_env!("CARGO_PKG_NAME"),
            option_env!("CARGO_PKG_VERSION"),
            options,
            Vec::new(),
            vec![auth],
            None,
        );
        Ok(Arm {
            pipeline,
            endpoint,
            credential,
            scope,
            clock: config.clock.clone(),
            retry: config.retry.clone(),
            poll_interval: config.poll_interval,
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The credential (shared with AKS tokens).
    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        self.credential.clone()
    }

    /// The poll interval when ARM gives no `Retry-After`.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The `oid` and `tid` of the ARM token.
    pub async fn token_claims(&self) -> Result<TokenClaims> {
        let t = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| transport_error(e, "reading the deployer's identity"))?;
        Ok(TokenClaims::of_jwt(t.token.secret()))
    }

    /// One request, no retry. An error answer is an `Err` with its `Retry-After`.
    async fn send_once(
        &self,
        method: Method,
        url: &Url,
        body: Option<&[u8]>,
        doing: &str,
    ) -> std::result::Result<Answer, (Error, Option<Duration>)> {
        let mut req = Request::new(url.clone(), method);
        req.insert_header(ACCEPT, "application/json");
        if let Some(b) = body {
            req.insert_header(CONTENT_TYPE, "application/json");
            req.set_body(b.to_vec());
        }
        let ctx = azure_core::http::Context::new();
        let raw = self
            .pipeline
            .send(
                &ctx,
                &mut req,
                Some(PipelineSendOptions {
                    skip_checks: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| (transport_error(e, doing), None))?;
        let status = u16::from(raw.status());
        let headers = raw.headers().clone();
        let ra = retry_after(&headers);
        let bytes = raw.into_body();
        let bytes: &[u8] = bytes.as_ref();
        if !(200..300).contains(&status) {
            return Err((ArmError::parse(status, bytes).into_error(doing), ra));
        }
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(serde_json::from_slice(bytes).map_err(|e| {
                (
                    Error::internal(format!(
                        "{doing}: ARM answered with a body that is not JSON: {e}"
                    )),
                    None,
                )
            })?)
        };
        Ok(Answer {
            status,
            async_op: header(&headers, &AZURE_ASYNC_OPERATION),
            location: header(&headers, &LOCATION),
            retry_after: ra,
            body,
        })
    }

    /// One request with the client's retries of throttled and transient failures,
    /// honouring `Retry-After`.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        doing: &str,
    ) -> Result<Answer> {
        // The last error's Retry-After, and the part of it the policy's own delay did
        // not cover, in milliseconds.
        let hint = AtomicU64::new(0);
        let extra = AtomicU64::new(0);
        self.retry
            .run_when(
                &*self.clock,
                |e| matches!(e.kind(), ErrorKind::Throttled | ErrorKind::Transient),
                || {
                    let (url, body, hint, extra) = (&url, body.as_deref(), &hint, &extra);
                    async move {
                        let wait = extra.swap(0, Ordering::SeqCst);
                        if wait > 0 {
                            self.clock.sleep(Duration::from_millis(wait)).await;
                        }
                        self.send_once(method, url, body, doing).await.map_err(|(e, ra)| {
                            let ms = ra.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                            hint.store(ms, Ordering::SeqCst);
                            e
                        })
                    }
                },
                |attempt, delay, e| {
                    let h = hint.swap(0, Ordering::SeqCst);
                    let d = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    extra.store(h.saturating_sub(d), Ordering::SeqCst);
                    tracing::debug!(attempt, ?delay, retry_after_ms = h, error = %e, "retrying an ARM call");
                },
            )
            .await
    }

    fn doing(method: Method, path: &str) -> String {
        let m = match method {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            _ => "call",
        };
        format!("{m} {path}")
    }

    fn json<B: Serialize>(body: &B) -> Result<Vec<u8>> {
        serde_json::to_vec(body)
            .map_err(|e| Error::internal(format!("cannot encode an ARM request: {e}")))
    }

    /// GET a resource: `None` when it does not exist (404).
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Option<T>> {
        self.get_with(path, api_version, &[]).await
    }

    /// GET with extra query parameters (`$filter`): `None` on 404.
    pub async fn get_with<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<T>> {
        let url = self.endpoint.url_for(path, api_version, query)?;
        match self
            .call(Method::Get, url, None, &Self::doing(Method::Get, path))
            .await
        {
            Ok(a) => a.body.map(from_value).transpose(),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GET once, without retries (the provider's connection check): `None` on 404.
    pub async fn get_once<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Option<T>> {
        let url = self.endpoint.url_for(path, api_version, &[])?;
        let doing = Self::doing(Method::Get, path);
        match self.send_once(Method::Get, &url, None, &doing).await {
            Ok(a) => a.body.map(from_value).transpose(),
            Err((e, _)) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err((e, _)) => Err(e),
        }
    }

    /// HEAD: whether the resource exists.
    pub async fn head(&self, path: &str, api_version: &str) -> Result<bool> {
        let url = self.endpoint.url_for(path, api_version, &[])?;
        match self
            .call(Method::Head, url, None, &Self::doing(Method::Head, path))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// PUT a resource (create or replace).
    pub async fn put<B: Serialize>(&self, path: &str, api_version: &str, body: &B) -> Result<Lro> {
        self.mutate(Method::Put, path, api_version, Some(Self::json(body)?))
            .await
    }

    /// PATCH a resource.
    pub async fn patch<B: Serialize>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
    ) -> Result<Lro> {
        self.mutate(Method::Patch, path, api_version, Some(Self::json(body)?))
            .await
    }

    /// POST an action (`register`, `checkNameAvailability`, `listClusterUserCredential`).
    pub async fn post<B: Serialize>(
        &self,
        path: &str,
        api_version: &str,
        body: Option<&B>,
    ) -> Result<Lro> {
        let body = body.map(Self::json).transpose()?;
        self.mutate(Method::Post, path, api_version, body).await
    }

    /// DELETE a resource; absent (404) is `Done(None)`.
    pub async fn delete(&self, path: &str, api_version: &str) -> Result<Lro> {
        match self.mutate(Method::Delete, path, api_version, None).await {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Lro::Done(None)),
            other => other,
        }
    }

    async fn mutate(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Lro> {
        let url = self.endpoint.url_for(path, api_version, &[])?;
        let a = self
            .call(method, url, body, &Self::doing(method, path))
            .await?;
        Ok(lro_of(a, method, path, api_version))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_or_milliseconds() {
        let mut h = azure_core::http::headers::Headers::new();
        h.insert(RETRY_AFTER, "3");
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER_MS, "250");
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut d = azure_core::http::headers::Headers::new();
        d.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(retry_after(&d), None);
    }

    #[test]
    fn token_claims_are_read_from_the_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"oid":"o-1","tid":"t-1","appid":"a"}"#);
        let c = TokenClaims::of_jwt(&format!("eyJhbGciOiJub25lIn0.{payload}.sig"));
        assert_eq!(c.object_id.as_deref(), Some("o-1"));
        assert_eq!(c.tenant_id.as_deref(), Some("t-1"));
        assert_eq!(TokenClaims::of_jwt("opaque"), TokenClaims::default());
    }
}
