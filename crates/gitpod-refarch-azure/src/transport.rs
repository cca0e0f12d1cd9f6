//! Where ARM is, and how requests reach it: the [`Endpoint`] (`https`, or plain `http`
//! on the loopback interface only, for a local fake) and the [`LoopbackTransport`] that
//! sends the `https` requests `azure_core` builds to such a fake over plain HTTP. The
//! bearer token goes to the endpoint's host and port only.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::{new_http_client, AsyncRawResponse, HttpClient, Request, Transport, Url};
use gitpod_refarch::{Error, Result};

/// Where ARM is: the configured URL, and the `https` URL requests are built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as configured (no trailing `/`).
    pub url: Url,
    /// The URL requests are built for: the same with the `https` scheme and an explicit
    /// port when the configured one is plain `http` on the loopback interface.
    pub wire: Url,
    /// Whether the transport sends to plain HTTP.
    pub plain_http: bool,
}

impl Endpoint {
    /// Parse and check an endpoint: `https`, or plain `http` on the loopback interface
    /// (`127.0.0.0/8`, `::1`, `localhost`) only.
    pub fn parse(s: &str) -> Result<Endpoint> {
        let bad = |why: &str| Error::invalid_input(format!("endpoint '{s}' {why}"));
        let url = Url::parse(s.trim_end_matches('/')).map_err(|_| bad("is not a URL"))?;
        let host = url
            .host_str()
            .ok_or_else(|| bad("has no host"))?
            .to_string();
        match url.scheme() {
            "https" => Ok(Endpoint {
                wire: url.clone(),
                url,
                plain_http: false,
            }),
            "http" => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                let loopback =
                    bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(bad(
                        "must be https (plain http only on the loopback interface, for a local fake)",
                    ));
                }
                let port = url.port_or_known_default().unwrap_or(80);
                let mut wire = url.clone();
                wire.set_scheme("https")
                    .map_err(|_| bad("cannot be sent over https"))?;
                wire.set_port(Some(port))
                    .map_err(|_| bad("cannot take a port"))?;
                Ok(Endpoint {
                    url,
                    wire,
                    plain_http: true,
                })
            }
            _ => Err(bad(
                "must start with https:// (or http:// for a local fake)",
            )),
        }
    }

    /// `host:port` of the wire URL.
    fn authority(u: &Url) -> (Option<String>, Option<u16>) {
        (u.host_str().map(str::to_string), u.port_or_known_default())
    }

    /// The wire URL of an absolute URL ARM gave (an operation URL): on this endpoint's
    /// host and port only.
    pub fn wire_url(&self, s: &str) -> Result<Url> {
        let mut u = Url::parse(s).map_err(|_| {
            Error::internal(format!("ARM gave an operation URL that is not one: {s}"))
        })?;
        if self.plain_http && u.scheme() == "http" {
            let port = u.port_or_known_default();
            let _ = u.set_scheme("https");
            let _ = u.set_port(port);
        }
        if Self::authority(&u) != Self::authority(&self.wire) || u.scheme() != "https" {
            return Err(Error::internal(format!(
                "ARM gave an operation URL on another host ({s}); the token is not sent there"
            )));
        }
        Ok(u)
    }

    /// The wire URL of `path` (`/subscriptions/...`) with `api-version` and `query`.
    pub fn url_for(&self, path: &str, api_version: &str, query: &[(&str, &str)]) -> Result<Url> {
        let base = self.wire.as_str().trim_end_matches('/');
        let mut u = Url::parse(&format!("{base}{path}"))
            .map_err(|_| Error::internal(format!("not an ARM path: {path}")))?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("api-version", api_version);
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(u)
    }
}

/// The transport for a plain-HTTP loopback endpoint: sends requests built for
/// `https://<host:port>` of that endpoint over plain HTTP to it, and nothing else.
///
/// `azure_core`'s bearer-token policy and `azure_identity`'s authority check accept
/// `https` only; this transport is the one seam (as in `tests/aks_token.rs`) that lets
/// them talk to a local fake without loosening either.
#[derive(Debug)]
pub struct LoopbackTransport {
    wire: Url,
    inner: Arc<dyn HttpClient>,
}

impl LoopbackTransport {
    /// A transport for `endpoint` (plain HTTP only when the endpoint is).
    pub fn new(endpoint: &Endpoint) -> Self {
        LoopbackTransport {
            wire: endpoint.wire.clone(),
            inner: new_http_client(None),
        }
    }
}

#[async_trait]
impl HttpClient for LoopbackTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let u = request.url();
        let same = u.scheme() == "https"
            && u.host_str() == self.wire.host_str()
            && u.port_or_known_default() == self.wire.port_or_known_default();
        if !same {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                format!("the loopback transport sends only to {}", self.wire),
            ));
        }
        let mut local = request.clone();
        let port = u.port_or_known_default();
        let target = local.url_mut();
        let _ = target.set_scheme("http");
        let _ = target.set_port(port);
        self.inner.execute_request(&local).await
    }
}

/// The transport for `endpoint`: the loopback one for plain HTTP, else the default.
pub(crate) fn transport_for(endpoint: &Endpoint) -> Option<Transport> {
    endpoint
        .plain_http
        .then(|| Transport::new(Arc::new(LoopbackTransport::new(endpoint))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn endpoints_send_tokens_over_https_or_to_loopback_only() {
        let e = Endpoint::parse("http://127.0.0.1:8123").unwrap();
        assert!(e.plain_http);
        assert_eq!(e.wire.as_str(), "https://127.0.0.1:8123/");
        assert_eq!(
            e.url_for("/subscriptions/s/resourcegroups/r", "2025-04-01", &[("$filter", "a eq 'b'")])
                .unwrap()
                .as_str(),
            "https://127.0.0.1:8123/subscriptions/s/resourcegroups/r?api-version=2025-04-01&%24filter=a+eq+%27b%27"
        );
        // Operation URLs: on the endpoint's host and port only.
        assert_eq!(
            e.wire_url("http://127.0.0.1:8123/ops/1?api-version=x")
                .unwrap()
                .as_str(),
            "https://127.0.0.1:8123/ops/1?api-version=x"
        );
        assert!(e.wire_url("http://127.0.0.1:9999/ops/1").is_err());
        assert!(e.wire_url("https://evil.example/ops/1").is_err());
        assert!(Endpoint::parse("http://[::1]:80").unwrap().plain_http);
        assert!(Endpoint::parse("http://localhost:1").is_ok());
        assert!(Endpoint::parse("http://10.0.0.1:1").is_err());
        let real = Endpoint::parse("https://management.azure.com").unwrap();
        assert!(!real.plain_http);
        assert!(real
            .wire_url("https://management.azure.com/subscriptions/s/providers/Microsoft.ContainerService/locations/l/operations/o")
            .is_ok());
        assert!(real.wire_url("http://management.azure.com/x").is_err());
    }
}
