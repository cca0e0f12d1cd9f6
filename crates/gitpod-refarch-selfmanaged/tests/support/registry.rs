#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A private Docker distribution registry (Debian's `docker-registry` 2.8.2) on a
//! free port of 127.0.0.1: our own config (filesystem storage in a temporary
//! directory, deletes enabled, htpasswd auth with a bcrypt file from
//! `htpasswd -Bbn`), optionally read-only, without deletes or with TLS. Killed and removed on drop.
//!
//! Distribution's htpasswd has no per-user rights (every user who signs in may push),
//! so "credentials that cannot push" are stood in for by a registry in read-only
//! maintenance mode: it refuses every upload with 405, as a registry refusing a
//! user's push does with 401/403/405.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::process::{Child, Command};

const APT: &str = "apt-get install -y docker-registry apache2-utils";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How to run the registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `storage.maintenance.readonly.enabled: true` (every upload -> 405).
    pub read_only: bool,
    /// `storage.delete.enabled: false` (every DELETE -> 405, as a registry that does
    /// not let the user delete).
    pub no_delete: bool,
    /// Serve HTTPS with this certificate chain and key (PEM).
    pub tls: Option<(String, String)>,
    /// Token auth (`auth.token`) instead of htpasswd: a token service on another port
    /// of 127.0.0.1 signs in the same user and grants, of the actions asked for,
    /// only these (`pull`, `push`, `delete`).
    pub token_grants: Option<Vec<&'static str>>,
}

/// A running `docker-registry serve`.
pub struct TestRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// `http://127.0.0.1:PORT` (or `https://`).
    pub base: String,
    /// The htpasswd user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// The token service, with token auth.
    pub token_service: Option<TokenService>,
    dir: PathBuf,
    child: Child,
    keep_dir: bool,
}

impl TestRegistry {
    /// A plain-HTTP registry with deletes enabled.
    pub async fn start() -> TestRegistry {
        TestRegistry::start_with(Options::default()).await
    }

    /// A plain-HTTP registry in read-only mode.
    pub async fn start_read_only() -> TestRegistry {
        TestRegistry::start_with(Options {
            read_only: true,
            ..Options::default()
        })
        .await
    }

    /// A registry with `opts`.
    ///
    /// # Panics
    /// If `docker-registry` or `htpasswd` is missing (with the apt line), or the
    /// registry does not answer in time.
    pub async fn start_with(opts: Options) -> TestRegistry {
        let dir = std::env::temp_dir().join(format!(
            "gitpod-refarch-registry-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let username = "gitpod-push".to_string();
        let password: String = format!("pw-{:016x}", rand::random::<u64>());
        let out = match std::process::Command::new("htpasswd")
            .args(["-Bbn", &username, &password])
            .output()
        {
            Ok(o) if o.status.success() => o.stdout,
            Ok(o) => panic!(
                "htpasswd -Bbn failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("htpasswd not found: run `{APT}`")
            }
            Err(e) => panic!("cannot run htpasswd: {e}"),
        };
        std::fs::write(dir.join("htpasswd"), out).unwrap();
        let tls = opts.tls.as_ref().map(|(cert, key)| {
            std::fs::write(dir.join("tls.crt"), cert).unwrap();
            std::fs::write(dir.join("tls.key"), key).unwrap();
            format!(
                "\n  tls:\n    certificate: {}\n    key: {}",
                dir.join("tls.crt").display(),
                dir.join("tls.key").display()
            )
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let token_service = match &opts.token_grants {
            Some(grants) => {
                Some(TokenService::start(&dir, &username, &password, grants.clone()).await)
            }
            None => None,
        };
        let auth = match &token_service {
            Some(t) => format!(
                "auth:\n  token:\n    realm: {}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
                 rootcertbundle: {}\n",
                t.url,
                dir.join("token-ca.pem").display()
            ),
            None => format!(
                "auth:\n  htpasswd:\n    realm: gitpod-refarch-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ),
        };
        // A free port can be taken between the probe and the start: try a few.
        for attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: {delete}\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: {ro}\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: s-{secret:016x}{tls}\n{auth}",
                data = dir.join("data").display(),
                ro = opts.read_only,
                delete = !opts.no_delete,
                secret = rand::random::<u64>(),
                tls = tls.clone().unwrap_or_default(),
            );
            std::fs::write(dir.join("config.yml"), config).unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let spawned = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .kill_on_drop(true)
                .spawn();
            let child = match spawned {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    panic!("docker-registry not found: run `{APT}`")
                }
                Err(e) => panic!("cannot start docker-registry: {e}"),
            };
            let mut reg = TestRegistry {
                host: format!("127.0.0.1:{port}"),
                base: format!("{scheme}://127.0.0.1:{port}"),
                username: username.clone(),
                password: password.clone(),
                token_service: token_service.clone(),
                dir: dir.clone(),
                child,
                keep_dir: false,
            };
            match reg.wait_ready().await {
                Ok(()) => return reg,
                Err(e) if attempt < 4 && reg.log().contains("address already in use") => {
                    eprintln!("registry port {port} taken, retrying: {e}");
                    let _ = reg.child.start_kill();
                    let _ = reg.child.wait().await;
                    reg.keep_dir = true;
                }
                Err(e) => panic!("docker-registry did not start: {e}; log:\n{}", reg.log()),
            }
        }
        unreachable!("the loop returns or panics")
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited early ({status})"));
            }
            if tokio::net::TcpStream::connect(&self.host).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer on {} within {START_TIMEOUT:?}",
                    self.host
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `GET {base}{path}` with the htpasswd credentials (reqwest, optional CA): status
    /// and body.
    pub async fn get(&self, path: &str, ca_pem: Option<&str>) -> (u16, String) {
        let mut b = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            b = b.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem.as_bytes()).unwrap());
        }
        let r = b
            .build()
            .unwrap()
            .get(format!("{}{path}", self.base))
            .basic_auth(&self.username, Some(&self.password))
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/json",
            )
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if let Some(t) = &self.token_service {
            t.task.abort();
        }
        if self.keep_dir {
        } else if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("registry dir kept: {}", self.dir.display());
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const SERVICE: &str = "gitpod-refarch-test";
const ISSUER: &str = "gitpod-refarch-test-issuer";

/// A minimal Docker token service (the distribution token spec): `GET /token` with
/// Basic credentials answers a JWT (ES256, the signing certificate in `x5c`, signed
/// by a CA the registry trusts) granting the asked-for actions that are in `grants`.
/// Wrong credentials get 401.
#[derive(Clone)]
pub struct TokenService {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// How many tokens it issued.
    pub issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: std::sync::Arc<tokio::task::JoinHandle<()>>,
}

impl TokenService {
    async fn start(
        dir: &Path,
        user: &str,
        password: &str,
        grants: Vec<&'static str>,
    ) -> TokenService {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "gitpod-refarch test token CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("token-ca.pem"), ca.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "gitpod-refarch test token signer");
        let cert = params.signed_by(&key, &issuer).unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = issued.clone();
        let key = std::sync::Arc::new(key);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (key, x5c, expected, grants, count) = (
                    key.clone(),
                    x5c.clone(),
                    expected.clone(),
                    grants.clone(),
                    count.clone(),
                );
                tokio::spawn(async move {
                    let _ = serve_token(stream, &key, &x5c, &expected, &grants, &count).await;
                });
            }
        });
        TokenService {
            url,
            issued,
            task: std::sync::Arc::new(task),
        }
    }
}

async fn serve_token(
    mut stream: tokio::net::TcpStream,
    key: &rcgen::KeyPair,
    x5c: &str,
    expected_auth: &str,
    grants: &[&str],
    issued: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let authorized = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("authorization") && v.trim() == expected_auth
        })
    });
    let (status, body) = if !authorized {
        (
            "401 Unauthorized",
            r#"{"details":"wrong credentials"}"#.to_string(),
        )
    } else {
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut access = Vec::new();
        let mut sub = String::new();
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            let v = percent_decode(v);
            if k == "account" {
                sub = v.clone();
            }
            if k != "scope" {
                continue;
            }
            // repository:<name>:<actions>
            let mut parts = v.splitn(3, ':');
            let (Some(typ), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|a| grants.contains(a) || grants.contains(&"*"))
                .collect();
            access.push(serde_json::json!({"type": typ, "name": name, "actions": granted}));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": sub, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{:016x}", rand::random::<u64>()),
            "access": access,
        });
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let der = rcgen::SigningKey::sign(key, signing_input.as_bytes()).unwrap();
        let jwt = format!("{signing_input}.{}", b64(&der_to_fixed(&der)));
        issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (
            "200 OK",
            serde_json::json!({"token": jwt, "expires_in": 300}).to_string(),
        )
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

/// An ECDSA signature from DER (`SEQUENCE { INTEGER r, INTEGER s }`) to JWS's r||s.
fn der_to_fixed(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "not a DER sequence");
    let mut i = 2;
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "not a DER integer");
        let len = der[i + 1] as usize;
        let mut int = &der[i + 2..i + 2 + len];
        while int.len() > 32 && int[0] == 0 {
            int = &int[1..];
        }
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
