//! Cluster access from the cluster's outputs: a [`kube::Client`] whose bearer token
//! comes from the cloud's [`ClusterCredentials`] and is refreshed before it expires.
//! No kubeconfig file, no `gcloud`/`aws`/`az`.
//!
//! A kubeconfig is written only on request ([`write_kubeconfig`]), with mode 0600.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use gitpod_refarch::provider::{AccessToken, ClusterCredentials};
use gitpod_refarch::resource::Output;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use kube::client::ConfigExt;
use kube::config::{Cluster, Context as KubeContext, KubeConfigOptions, Kubeconfig};
use kube::config::{NamedCluster, NamedContext};
use tokio::sync::Mutex;
use tower::{BoxError, Service, ServiceBuilder};

/// Tokens are renewed this long before they expire.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(60);

/// The API server of a cluster: its URL and CA, from an [`Output::Cluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEndpoint {
    /// The cluster's provider name.
    pub name: String,
    /// `https://...`: the API server is only ever reached over TLS.
    pub url: String,
    /// The CA bundle (PEM) the server's certificate must chain to; empty to use the
    /// system roots.
    pub ca_certificate_pem: String,
}

/// Why a cluster's reported endpoint cannot be used. It is the source of the
/// [`ErrorKind::InvalidInput`] error [`ClusterEndpoint::from_output`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointError {
    /// The endpoint is empty.
    Empty,
    /// The endpoint is a plain `http://` URL: the API server is reached over TLS only,
    /// with the cluster's CA, never in the clear.
    PlainHttp(String),
    /// The endpoint has a scheme other than `https`.
    UnsupportedScheme(String),
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const ACCEPTED: &str = "only https:// (or a bare address, as GKE reports it) is accepted";
        match self {
            EndpointError::Empty => f.write_str("the cluster reports no API server endpoint"),
            EndpointError::PlainHttp(url) => write!(
                f,
                "the cluster's API server endpoint {url} is plain HTTP: {ACCEPTED}"
            ),
            EndpointError::UnsupportedScheme(url) => write!(
                f,
                "the cluster's API server endpoint {url} has an unsupported scheme: {ACCEPTED}"
            ),
        }
    }
}

impl std::error::Error for EndpointError {}

impl ClusterEndpoint {
    /// From the cluster's output. The endpoint is an `https://` URL (EKS, AKS from its
    /// kubeconfig) or a bare address (GKE: `https://` is put in front); anything else,
    /// `http://` in particular, is refused with an [`ErrorKind::InvalidInput`] error
    /// whose source is an [`EndpointError`].
    pub fn from_output(cluster: &Output) -> Result<Self> {
        match cluster {
            Output::Cluster {
                name,
                endpoint,
                ca_certificate_pem,
            } => Ok(ClusterEndpoint {
                name: name.clone(),
                url: https_url(endpoint).map_err(|e| {
                    Error::invalid_input("the cluster's API server endpoint is unusable")
                        .with_source(e)
                })?,
                ca_certificate_pem: ca_certificate_pem.clone(),
            }),
            _ => Err(Error::internal("cluster access needs the cluster's output")),
        }
    }

    fn kubeconfig(&self, token: Option<&Secret>) -> Kubeconfig {
        let ca = (!self.ca_certificate_pem.trim().is_empty()).then(|| {
            base64::engine::general_purpose::STANDARD.encode(self.ca_certificate_pem.as_bytes())
        });
        Kubeconfig {
            clusters: vec![NamedCluster {
                name: self.name.clone(),
                cluster: Some(Cluster {
                    server: Some(self.url.clone()),
                    certificate_authority_data: ca,
                    ..Cluster::default()
                }),
            }],
            auth_infos: vec![kube::config::NamedAuthInfo {
                name: "gitpod-refarch".into(),
                auth_info: Some(kube::config::AuthInfo {
                    token: token.map(|t| t.expose().clone().into()),
                    ..kube::config::AuthInfo::default()
                }),
            }],
            contexts: vec![NamedContext {
                name: self.name.clone(),
                context: Some(KubeContext {
                    cluster: self.name.clone(),
                    user: Some("gitpod-refarch".into()),
                    namespace: None,
                    extensions: None,
                }),
            }],
            current_context: Some(self.name.clone()),
            ..Kubeconfig::default()
        }
    }
}

/// The `https://` URL of a reported endpoint.
fn https_url(endpoint: &str) -> std::result::Result<String, EndpointError> {
    let endpoint = endpoint.trim();
    if endpoint.is_empty() {
        return Err(EndpointError::Empty);
    }
    match endpoint.split_once("://") {
        None => Ok(format!("https://{endpoint}")),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => Ok(endpoint.to_string()),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => {
            Err(EndpointError::PlainHttp(endpoint.to_string()))
        }
        Some(_) => Err(EndpointError::UnsupportedScheme(endpoint.to_string())),
    }
}

/// The current token for one cluster, fetched again when it is about to expire.
pub struct TokenCache {
    cluster: Output,
    source: Arc<dyn ClusterCredentials>,
    current: Mutex<Option<AccessToken>>,
    now: fn() -> SystemTime,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache for `cluster`'s tokens from `source`.
    pub fn new(cluster: Output, source: Arc<dyn ClusterCredentials>) -> Self {
        Self::with_clock(cluster, source, SystemTime::now)
    }

    /// The same with a clock (tests).
    pub fn with_clock(
        cluster: Output,
        source: Arc<dyn ClusterCredentials>,
        now: fn() -> SystemTime,
    ) -> Self {
        TokenCache {
            cluster,
            source,
            current: Mutex::new(None),
            now,
        }
    }

    /// A token valid for at least [`REFRESH_BEFORE`].
    pub async fn token(&self) -> Result<AccessToken> {
        let mut current = self.current.lock().await;
        let fresh = current.as_ref().is_some_and(|t| match t.expires_at {
            None => true,
            Some(at) => at
                .duration_since((self.now)())
                .is_ok_and(|left| left > REFRESH_BEFORE),
        });
        if !fresh {
            let t = self.source.cluster_token(&self.cluster).await?;
            tracing::debug!(expires_at = ?t.expires_at, "new cluster token");
            *current = Some(t);
        }
        current
            .clone()
            .ok_or_else(|| Error::internal("no cluster token"))
    }

    async fn header(&self) -> Result<Option<HeaderValue>> {
        let t = self.token().await?;
        let Some(token) = t.token else {
            return Ok(None);
        };
        let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
            Error::new(
                ErrorKind::Credentials,
                "the cluster token is not a valid header value",
            )
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }
}

/// A tower service that sets `Authorization: Bearer <token>` on every request from a
/// [`TokenCache`], so a long apply never uses an expired token.
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    cache: Arc<TokenCache>,
}

impl<S> BearerAuth<S> {
    /// Wrap `inner`.
    pub fn new(inner: S, cache: Arc<TokenCache>) -> Self {
        BearerAuth { inner, cache }
    }
}

impl<S, B> Service<Request<B>> for BearerAuth<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cache = self.cache.clone();
        Box::pin(async move {
            if let Some(h) = cache.header().await.map_err(BoxError::from)? {
                req.headers_mut().insert(AUTHORIZATION, h);
            }
            inner.call(req).await.map_err(Into::into)
        })
    }
}

fn config_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        "the cluster's endpoint or CA certificate is unusable",
    )
    .with_source(e)
}

/// The crypto provider of every TLS connection the bootstrap makes (explicit: with
/// both ring and aws-lc-rs in a binary, rustls has no process default).
pub(crate) fn crypto() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// An HTTPS (or plain HTTP) connector trusting `roots` (DER), or the system's roots:
/// for downloads, never for a cluster's API server.
pub(crate) fn https_connector(roots: Option<&[Vec<u8>]>) -> Result<Connector> {
    Ok(tls_builder(roots)?.https_or_http().enable_http1().build())
}

/// The connector to a cluster's API server: HTTPS only, trusting `roots` (DER, the
/// cluster's CA) or the system's roots.
fn cluster_connector(roots: Option<&[Vec<u8>]>) -> Result<Connector> {
    Ok(tls_builder(roots)?.https_only().enable_http1().build())
}

fn tls_builder(
    roots: Option<&[Vec<u8>]>,
) -> Result<hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsSchemes>> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match roots {
        Some(roots) => {
            let mut store = rustls::RootCertStore::empty();
            for der in roots {
                store
                    .add(rustls::pki_types::CertificateDer::from(der.clone()))
                    .map_err(config_error)?;
            }
            let tls = rustls::ClientConfig::builder_with_provider(crypto())
                .with_safe_default_protocol_versions()
                .map_err(config_error)?
                .with_root_certificates(store)
                .with_no_client_auth();
            builder.with_tls_config(tls)
        }
        None => builder
            .with_provider_and_native_roots(crypto())
            .map_err(|e| {
                Error::new(
                    ErrorKind::Transient,
                    "cannot load the system's CA certificates",
                )
                .with_source(e)
            })?,
    };
    Ok(builder)
}

/// A client for the cluster of `cluster` (an [`Output::Cluster`]), authenticated with
/// tokens from `credentials`, refreshed as needed.
pub async fn connect(
    cluster: &Output,
    credentials: Arc<dyn ClusterCredentials>,
) -> Result<kube::Client> {
    let endpoint = ClusterEndpoint::from_output(cluster)?;
    let config = kube::Config::from_custom_kubeconfig(
        endpoint.kubeconfig(None),
        &KubeConfigOptions::default(),
    )
    .await
    .map_err(config_error)?;
    let https = cluster_connector(config.root_cert.as_deref())?;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(https);
    let cache = Arc::new(TokenCache::new(cluster.clone(), credentials));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .service(BearerAuth::new(http, cache));
    Ok(kube::Client::new(service, "default"))
}

/// Write a kubeconfig for `cluster` with a current token from `credentials` to `path`,
/// mode 0600 (the token inside expires like any other: prefer [`connect`]).
pub async fn write_kubeconfig(
    path: &Path,
    cluster: &Output,
    credentials: &dyn ClusterCredentials,
) -> Result<()> {
    let endpoint = ClusterEndpoint::from_output(cluster)?;
    let token = credentials.cluster_token(cluster).await?;
    let doc = endpoint.kubeconfig(token.token.as_ref());
    let yaml = serde_yaml_ng::to_string(&doc)
        .map_err(|e| Error::internal("kubeconfig does not serialize").with_source(e))?;
    gitpod_refarch::state::write_private(path, yaml.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Tokens `t1`, `t2`, ... valid for `lifetime` (or forever), counting the calls.
    struct Counting {
        calls: AtomicU64,
        lifetime: Option<Duration>,
    }

    #[async_trait::async_trait]
    impl ClusterCredentials for Counting {
        async fn cluster_token(&self, _: &Output) -> Result<AccessToken> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(AccessToken::bearer(
                Secret::new(format!("t{n}")),
                self.lifetime.map(|l| SystemTime::now() + l),
            ))
        }
    }

    fn cluster() -> Output {
        Output::Cluster {
            name: "c".into(),
            endpoint: "10.0.0.1".into(),
            ca_certificate_pem: String::new(),
        }
    }

    async fn header_of_next(
        svc: &mut BearerAuth<tower_test::mock::Mock<Request<()>, ()>>,
        handle: &mut tower_test::mock::Handle<Request<()>, ()>,
    ) -> Option<String> {
        handle.allow(1);
        let call = tower::ServiceExt::ready(svc)
            .await
            .unwrap()
            .call(Request::new(()));
        let server = async {
            let (req, send) = handle.next_request().await.unwrap();
            send.send_response(());
            req
        };
        let (resp, req) = tokio::join!(call, server);
        resp.unwrap();
        req.headers()
            .get(AUTHORIZATION)
            .map(|h| h.to_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn a_token_is_reused_until_it_nears_expiry_then_renewed() {
        // Valid for an hour: one token for every request.
        let long = Arc::new(Counting {
            calls: AtomicU64::new(0),
            lifetime: Some(Duration::from_secs(3600)),
        });
        let (mock, mut handle) = tower_test::mock::pair::<Request<()>, ()>();
        let mut svc = BearerAuth::new(mock, Arc::new(TokenCache::new(cluster(), long.clone())));
        for _ in 0..3 {
            assert_eq!(
                header_of_next(&mut svc, &mut handle).await.as_deref(),
                Some("Bearer t1")
            );
        }
        assert_eq!(long.calls.load(Ordering::SeqCst), 1);

        // Valid for less than the refresh margin: renewed for each request.
        let short = Arc::new(Counting {
            calls: AtomicU64::new(0),
            lifetime: Some(REFRESH_BEFORE / 2),
        });
        let (mock, mut handle) = tower_test::mock::pair::<Request<()>, ()>();
        let mut svc = BearerAuth::new(mock, Arc::new(TokenCache::new(cluster(), short.clone())));
        for n in 1..=3 {
            assert_eq!(
                header_of_next(&mut svc, &mut handle).await,
                Some(format!("Bearer t{n}"))
            );
        }
        assert_eq!(short.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_token_is_renewed_when_the_clock_passes_its_margin() {
        fn later() -> SystemTime {
            SystemTime::now() + Duration::from_secs(3600 - 30)
        }
        let creds = Arc::new(Counting {
            calls: AtomicU64::new(0),
            lifetime: Some(Duration::from_secs(3600)),
        });
        let now = TokenCache::new(cluster(), creds.clone());
        assert_eq!(now.token().await.unwrap().token.unwrap().expose(), "t1");
        assert_eq!(now.token().await.unwrap().token.unwrap().expose(), "t1");
        // 30 s before expiry (inside the 60 s margin): a new one.
        let cache = TokenCache::with_clock(cluster(), creds.clone(), later);
        assert_eq!(cache.token().await.unwrap().token.unwrap().expose(), "t2");
        assert_eq!(cache.token().await.unwrap().token.unwrap().expose(), "t3");
    }

    #[tokio::test]
    async fn no_token_means_no_header() {
        struct Anonymous;
        #[async_trait::async_trait]
        impl ClusterCredentials for Anonymous {
            async fn cluster_token(&self, _: &Output) -> Result<AccessToken> {
                Ok(AccessToken::anonymous())
            }
        }
        let (mock, mut handle) = tower_test::mock::pair::<Request<()>, ()>();
        let mut svc = BearerAuth::new(
            mock,
            Arc::new(TokenCache::new(cluster(), Arc::new(Anonymous))),
        );
        assert_eq!(header_of_next(&mut svc, &mut handle).await, None);
    }

    fn endpoint(endpoint: &str) -> Result<ClusterEndpoint> {
        ClusterEndpoint::from_output(&Output::Cluster {
            name: "c".into(),
            endpoint: endpoint.into(),
            ca_certificate_pem: "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n"
                .into(),
        })
    }

    #[test]
    fn an_endpoint_is_https_a_bare_address_gets_https_and_plain_http_is_refused() {
        // GKE: a bare address.
        let gke = endpoint("34.1.2.3").unwrap();
        assert_eq!(gke.url, "https://34.1.2.3");
        assert!(gke.ca_certificate_pem.contains("BEGIN CERTIFICATE"));
        assert_eq!(
            endpoint("127.0.0.1:6443").unwrap().url,
            "https://127.0.0.1:6443"
        );
        // EKS, AKS: an https URL, kept as it is.
        assert_eq!(
            endpoint("https://ABC.gr7.eu-west-1.eks.amazonaws.com")
                .unwrap()
                .url,
            "https://ABC.gr7.eu-west-1.eks.amazonaws.com"
        );
        // Plain HTTP is never a way to the API server.
        for (bad, want) in [
            (
                "http://127.0.0.1:6443",
                EndpointError::PlainHttp("http://127.0.0.1:6443".into()),
            ),
            (
                "HTTP://10.0.0.1",
                EndpointError::PlainHttp("HTTP://10.0.0.1".into()),
            ),
            (
                "ftp://10.0.0.1",
                EndpointError::UnsupportedScheme("ftp://10.0.0.1".into()),
            ),
            ("  ", EndpointError::Empty),
        ] {
            let e = endpoint(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
            let source = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<EndpointError>())
                .expect("the source is an EndpointError");
            assert_eq!(source, &want);
            if matches!(want, EndpointError::PlainHttp(_)) {
                assert!(e.chain().contains("plain HTTP"), "{}", e.chain());
            }
        }
    }

    #[tokio::test]
    async fn connect_refuses_a_plain_http_endpoint() {
        let creds = Arc::new(Counting {
            calls: AtomicU64::new(0),
            lifetime: None,
        });
        let plain = Output::Cluster {
            name: "c".into(),
            endpoint: "http://127.0.0.1:1".into(),
            ca_certificate_pem: String::new(),
        };
        let e = connect(&plain, creds.clone())
            .await
            .err()
            .expect("plain HTTP is refused");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            creds.calls.load(Ordering::SeqCst),
            0,
            "no token was asked for"
        );
    }

    #[tokio::test]
    async fn the_kubeconfig_is_written_only_on_request_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let creds = Counting {
            calls: AtomicU64::new(0),
            lifetime: None,
        };
        let dir = std::env::temp_dir().join(format!("gitpod-refarch-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        write_kubeconfig(&path, &cluster(), &creds).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Kubeconfig = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            doc.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
            Some("https://10.0.0.1")
        );
        assert!(text.contains("token: t1"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
