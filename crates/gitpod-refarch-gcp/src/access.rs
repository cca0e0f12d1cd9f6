//! Kubernetes API tokens for GKE clusters: the access token of the provider's
//! credentials (scope `cloud-platform`), as it goes in their `Authorization: Bearer`
//! header.
//!
//! The credentials are built once, when the provider connects; google-cloud-auth
//! caches the token and refreshes it before it expires, so asking again is cheap.
//! The token is reported valid for
//! [`TOKEN_LIFETIME`](crate::access::TOKEN_LIFETIME), well within its real life, so
//! callers come back for the refreshed one in time. Anonymous credentials (a local
//! fake) have no header: the token is
//! [`AccessToken::anonymous`](gitpod_refarch::provider::AccessToken::anonymous).
//!
//! With a service-account key (given, or the file `GOOGLE_APPLICATION_CREDENTIALS`
//! names), google-cloud-auth 1.x signs a self-signed JWT locally instead of getting an
//! OAuth2 access token; Google's APIs take those, GKE's API server wants an access
//! token. So for a key this module makes the OAuth 2.0 JWT bearer grant (RFC 7523) at
//! the key's `token_uri` itself: an RS256 assertion for scope `cloud-platform`,
//! exchanged for an access token that is reported valid until its `expires_in`.

use std::time::{Duration, SystemTime};

use gitpod_refarch::provider::AccessToken;
use gitpod_refarch::resource::Output;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use google_cloud_auth::credentials::{CacheableResource, Credentials};

use crate::config::GcpCredentials;
use crate::context::Context;

/// How long after it was handed out a token is reported valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// A token for the GKE cluster of `cluster` (its output) from the context's
/// credentials: the provider's [`gitpod_refarch::provider::ClusterCredentials`].
pub async fn cluster_token(c: &Context, cluster: &Output) -> Result<AccessToken> {
    let Output::Cluster { .. } = cluster else {
        return Err(Error::internal(
            "a GKE token needs the cluster's output, another output was given",
        ));
    };
    if let Some(key) = service_account_key(&c.config.credentials) {
        return exchange_key(&key).await;
    }
    token_of(&c.credentials, None).await
}

/// The bearer token of `credentials`, if they send one, for `user`.
pub(crate) async fn token_of(
    credentials: &Credentials,
    user: Option<String>,
) -> Result<AccessToken> {
    // No entity tag in the extensions: the answer is always `New`.
    let headers = match credentials.headers(Default::default()).await {
        Ok(CacheableResource::New { data, .. }) => data,
        Ok(CacheableResource::NotModified) => {
            return Err(Error::internal(
                "the credentials answered 'not modified' to a request without an entity tag",
            ))
        }
        Err(e) => {
            let kind = if e.is_transient() {
                ErrorKind::Transient
            } else {
                ErrorKind::Credentials
            };
            return Err(Error::new(kind, "cannot get a Google access token for GKE").with_source(e));
        }
    };
    let Some(value) = headers.get("authorization") else {
        return Ok(AccessToken::anonymous());
    };
    let value = value.to_str().map_err(|_| {
        Error::new(
            ErrorKind::Credentials,
            "the credentials' Authorization header is not text",
        )
    })?;
    let token = value
        .split_once(' ')
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
        .map(|(_, token)| token)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Credentials,
                "the credentials do not give a bearer token (an API key cannot reach GKE)",
            )
        })?;
    let access = AccessToken::bearer(
        Secret::new(token.to_string()),
        Some(SystemTime::now() + TOKEN_LIFETIME),
    );
    Ok(match user {
        Some(u) => access.with_user(u),
        None => access,
    })
}

/// The OAuth2 scope of every token.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, for keys without `token_uri`.
pub const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The service-account key the credentials come from, if any: the one given, or the
/// file of `GOOGLE_APPLICATION_CREDENTIALS` when it holds a service-account key.
fn service_account_key(c: &GcpCredentials) -> Option<Secret> {
    match c {
        GcpCredentials::ServiceAccountKey(k) => Some(k.clone()),
        GcpCredentials::ApplicationDefault => {
            let path = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")?;
            let text = std::fs::read_to_string(path).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            (v.get("type")?.as_str()? == "service_account").then(|| Secret::new(text))
        }
        GcpCredentials::Anonymous => None,
    }
}

fn credentials_error(what: &str) -> Error {
    Error::new(
        ErrorKind::Credentials,
        format!("the service-account key {what}"),
    )
}

/// The OAuth 2.0 JWT bearer grant for `key` at its `token_uri`: an access token for
/// scope `cloud-platform`, for the account `client_email`.
pub async fn exchange_key(key: &Secret) -> Result<AccessToken> {
    use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
    use base64::Engine as _;
    let b64url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);

    let v: serde_json::Value =
        serde_json::from_str(key.expose()).map_err(|_| credentials_error("is not JSON"))?;
    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
    let email = field("client_email")
        .ok_or_else(|| credentials_error("has no client_email"))?
        .to_string();
    let token_uri = field("token_uri").unwrap_or(TOKEN_URI).to_string();
    let pem = field("private_key").ok_or_else(|| credentials_error("has no private_key"))?;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| credentials_error("has a private_key that is not PEM"))?;
    let pair = RsaKeyPair::from_pkcs8(&der)
        .map_err(|_| credentials_error("has a private_key that is not a PKCS#8 RSA key"))?;

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| Error::internal("the clock is before 1970"))?
        .as_secs();
    let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = b64url(
        serde_json::json!({
            "iss": email, "scope": CLOUD_PLATFORM, "aud": token_uri,
            "iat": now, "exp": now + 3600,
        })
        .to_string()
        .as_bytes(),
    );
    let input = format!("{header}.{claims}");
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| credentials_error("cannot sign"))?;
    let assertion = format!("{input}.{}", b64url(&sig));

    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    );
    let transient = |e: reqwest::Error| {
        Error::new(ErrorKind::Transient, format!("cannot reach {token_uri}")).with_source(e)
    };
    let resp = reqwest::Client::new()
        .post(&token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(transient)?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(transient)?;
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        let kind = match status.as_u16() {
            429 => ErrorKind::Throttled,
            s if s >= 500 => ErrorKind::Transient,
            _ => ErrorKind::Credentials,
        };
        let reason = answer
            .get("error_description")
            .or_else(|| answer.get("error"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no reason given");
        return Err(Error::new(
            kind,
            format!("{token_uri} refused the key of {email}: HTTP {status}: {reason}"),
        ));
    }
    let token = answer
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Credentials,
                format!("{token_uri} gave no access_token"),
            )
        })?;
    let expires_in = answer
        .get("expires_in")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(3600);
    Ok(AccessToken::bearer(
        Secret::new(token.to_string()),
        Some(SystemTime::now() + Duration::from_secs(expires_in)),
    )
    .with_user(email))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::config::GcpConfig;
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use base64::Engine as _;

    const EMAIL: &str = "deployer@my-project.iam.gserviceaccount.com";

    fn cluster() -> Output {
        Output::Cluster {
            name: "gp".into(),
            endpoint: "https://203.0.113.1".into(),
            ca_certificate_pem: String::new(),
        }
    }

    /// A service-account key JSON with a fresh RSA key (nothing checks it remotely).
    fn key_json(private_key_pem: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "my-project",
            "private_key_id": "0123456789abcdef",
            "private_key": private_key_pem,
            "client_email": EMAIL,
            "client_id": "1234567890",
            // Nothing listens here: a test that needs the token endpoint sets its own.
            "token_uri": "http://127.0.0.1:1/token",
        })
        .to_string()
    }

    fn fresh_rsa_pem() -> String {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der: Pkcs8V1Der<'static> = key.as_der().unwrap();
        pem_of(der.as_ref())
    }

    fn pem_of(der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// A context with `config`'s credentials and clients, without the project read
    /// of `connect` (so without any call).
    async fn offline(config: GcpConfig) -> Context {
        Context::new(config).await.unwrap()
    }

    #[tokio::test]
    async fn anonymous_credentials_give_no_token() {
        let p = offline(
            GcpConfig::new("my-project", "europe-west1").endpoint_url("http://127.0.0.1:1"),
        )
        .await;
        let t = cluster_token(&p, &cluster()).await.unwrap();
        assert!(t.token.is_none());
        assert!(t.expires_at.is_none());
        assert!(t.user.is_none());

        let err = cluster_token(
            &p,
            &Output::Foundation {
                account: "my-project".into(),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
    }

    /// A token endpoint on 127.0.0.1 that answers `status` with `body` and records the
    /// form it was sent.
    async fn token_server(
        status: u16,
        body: serde_json::Value,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let rec = seen.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move |form: String| {
                let rec = rec.clone();
                let body = body.clone();
                async move {
                    rec.lock().unwrap().push(form);
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        body.to_string(),
                    )
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (url, seen)
    }

    fn key_at(pem: &str, token_uri: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(&key_json(pem)).unwrap();
        v["token_uri"] = token_uri.into();
        v.to_string()
    }

    #[tokio::test]
    async fn a_service_account_key_is_exchanged_for_an_access_token() {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der: Pkcs8V1Der<'static> = key.as_der().unwrap();
        let pem = pem_of(der.as_ref());
        let (url, seen) = token_server(
            200,
            serde_json::json!({"access_token": "ya29.test", "expires_in": 3599, "token_type": "Bearer"}),
        )
        .await;
        let p = offline(GcpConfig::new("my-project", "europe-west1").credentials(
            GcpCredentials::ServiceAccountKey(Secret::new(key_at(&pem, &url))),
        ))
        .await;
        let before = SystemTime::now();
        let t = cluster_token(&p, &cluster()).await.unwrap();
        assert_eq!(t.token.as_ref().unwrap().expose(), "ya29.test");
        assert_eq!(t.user.as_deref(), Some(EMAIL));
        let left = t.expires_at.unwrap().duration_since(before).unwrap();
        assert!(
            left > Duration::from_secs(3590) && left <= Duration::from_secs(3600),
            "{left:?}"
        );
        assert!(!format!("{t:?}").contains("ya29.test"));

        // The grant: RFC 7523, an RS256 assertion signed by the key, for cloud-platform.
        let form = seen.lock().unwrap()[0].clone();
        let (grant, assertion) = form.split_once('&').unwrap();
        assert_eq!(
            grant,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
        );
        let jwt = assertion.strip_prefix("assertion=").unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let dec = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let claims: serde_json::Value = serde_json::from_slice(&dec(parts[1])).unwrap();
        assert_eq!(claims["iss"], EMAIL);
        assert_eq!(claims["aud"], url.as_str());
        assert_eq!(claims["scope"], CLOUD_PLATFORM);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );
        use aws_lc_rs::signature::{KeyPair as _, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
        let public = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(der.as_ref()).unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public.public_key().as_ref())
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &dec(parts[2]),
            )
            .expect("the assertion is signed by the key");
    }

    #[tokio::test]
    async fn a_refused_key_is_a_credentials_error_and_a_server_error_transient() {
        let pem = fresh_rsa_pem();
        let (url, _) = token_server(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        )
        .await;
        let err = exchange_key(&Secret::new(key_at(&pem, &url)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Credentials);
        assert!(
            err.message().contains("Invalid JWT Signature."),
            "{}",
            err.message()
        );
        let (url, _) = token_server(503, serde_json::json!({"error": "unavailable"})).await;
        let err = exchange_key(&Secret::new(key_at(&pem, &url)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
    }

    #[tokio::test]
    async fn an_unusable_key_is_a_credentials_error() {
        let key = key_json("-----BEGIN PRIVATE KEY-----\nSEKRIT\n-----END PRIVATE KEY-----\n");
        let p = offline(
            GcpConfig::new("my-project", "europe-west1")
                .credentials(GcpCredentials::ServiceAccountKey(Secret::new(key))),
        )
        .await;
        let err = cluster_token(&p, &cluster()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Credentials, "{err}");
        assert!(!err.chain().contains("SEKRIT"), "{}", err.chain());
    }
}
