//! HTTPS for the fake: a certificate authority generated at start, a server
//! certificate it signs for `127.0.0.1`, `::1` and `localhost`, and a listener that
//! hands axum TLS streams.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The generated CA (its PEM) and the server configuration its certificate is in.
pub(crate) struct Authority {
    /// The CA certificate, PEM: what a client must trust.
    pub(crate) ca_pem: String,
    /// rustls configuration of the server (ring provider, HTTP/1.1 by ALPN).
    pub(crate) server: Arc<ServerConfig>,
}

fn tls_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("fake-kube TLS setup: {e}"))
}

impl Authority {
    /// A fresh CA and a server certificate signed by it.
    pub(crate) fn generate() -> std::io::Result<Authority> {
        let ca_key = KeyPair::generate().map_err(tls_error)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Each CA has a name of its own (as each GKE cluster's CA has), so a client
        // trusting another fake's CA finds no issuer for this one's certificates.
        let tag: u64 = rand::random();
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("fake-kube CA {tag:016x} (not Kubernetes)"),
        );
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_error)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().map_err(tls_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        params.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            SanType::DnsName("localhost".try_into().map_err(tls_error)?),
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let server_cert = params.signed_by(&server_key, &issuer).map_err(tls_error)?;

        let chain: Vec<CertificateDer<'static>> =
            vec![server_cert.der().clone(), ca_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(tls_error)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Authority {
            ca_pem: ca_cert.pem(),
            server: Arc::new(server),
        })
    }
}

/// An axum listener over TLS: a background task accepts TCP connections and runs
/// each handshake in its own task (a slow or plain-HTTP client holds up no one);
/// finished handshakes are handed to axum. Dropping the listener (axum does on
/// graceful shutdown) stops the accept task and closes the port.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serve TLS with `config` on the bound `listener`, counting the connections
    /// accepted in `accepted`.
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        accepted: Arc<AtomicU64>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(_) => {
                        // Out of file descriptors and the like: back off, as axum does.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    // A failed handshake (wrong CA on the client, plain HTTP) just
                    // closes the connection, as a TLS server does.
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task is gone (only after a panic in it): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
