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
//! With a service-account key, google-cloud-auth 1.x does not exchange a JWT at the
//! key's `token_uri`: it signs a self-signed JWT (scope `cloud-platform`) locally and
//! sends that as the bearer token, which is what this module hands out too.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use gitpod_refarch::provider::{AccessToken, ClusterCredentials};
use gitpod_refarch::resource::Output;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use google_cloud_auth::credentials::{CacheableResource, Credentials};

use crate::{GcpCredentials, GcpProvider};

/// How long after it was handed out a token is reported valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(5 * 60);

#[async_trait]
impl ClusterCredentials for GcpProvider {
    async fn cluster_token(&self, cluster: &Output) -> Result<AccessToken> {
        let Output::Cluster { .. } = cluster else {
            return Err(Error::internal(
                "a GKE token needs the cluster's output, another output was given",
            ));
        };
        let user = service_account_email(&self.ctx.config.credentials);
        token_of(&self.credentials, user).await
    }
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

/// The service account's email (`client_email`) of a service-account key.
pub(crate) fn service_account_email(c: &GcpCredentials) -> Option<String> {
    let GcpCredentials::ServiceAccountKey(key) = c else {
        return None;
    };
    let json: serde_json::Value = serde_json::from_str(key.expose()).ok()?;
    json.get("client_email")?
        .as_str()
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::{Clients, Context, GcpConfig};
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
            // Never used: google-cloud-auth signs service-account tokens itself.
            "token_uri": "http://127.0.0.1:1/token",
        })
        .to_string()
    }

    fn fresh_rsa_pem() -> String {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der: Pkcs8V1Der<'static> = key.as_der().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// A provider with `config`'s credentials and clients, without the project read
    /// of `connect` (so without any call).
    async fn offline(config: GcpConfig) -> GcpProvider {
        let credentials = config.build_credentials().unwrap();
        let clients = Clients::new(&config, &credentials).await.unwrap();
        GcpProvider {
            ctx: Context {
                clients,
                project: config.project.clone(),
                region: config.region.clone(),
                config,
                passwords_set: Default::default(),
                project_exists: Default::default(),
            },
            credentials,
        }
    }

    #[tokio::test]
    async fn anonymous_credentials_give_no_token() {
        let p = offline(
            GcpConfig::new("my-project", "europe-west1").endpoint_url("http://127.0.0.1:1"),
        )
        .await;
        let t = p.cluster_token(&cluster()).await.unwrap();
        assert!(t.token.is_none());
        assert!(t.expires_at.is_none());
        assert!(t.user.is_none());

        let err = p
            .cluster_token(&Output::Foundation {
                account: "my-project".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
    }

    #[tokio::test]
    async fn a_service_account_key_gives_its_token_and_email_without_a_call() {
        let key = key_json(&fresh_rsa_pem());
        let p = offline(
            GcpConfig::new("my-project", "europe-west1")
                .credentials(GcpCredentials::ServiceAccountKey(Secret::new(key))),
        )
        .await;
        let before = SystemTime::now();
        let t = p.cluster_token(&cluster()).await.unwrap();
        let after = SystemTime::now();
        assert_eq!(t.user.as_deref(), Some(EMAIL));
        let expires = t.expires_at.unwrap();
        assert!(expires >= before + TOKEN_LIFETIME && expires <= after + TOKEN_LIFETIME);

        // A JWT the library signed for the service account, scope cloud-platform.
        let token = t.token.as_ref().unwrap().expose().clone();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iss"], EMAIL);
        assert_eq!(
            claims["scope"],
            "https://www.googleapis.com/auth/cloud-platform"
        );

        // The same credentials answer again (from their cache); Debug hides the token.
        let again = p.cluster_token(&cluster()).await.unwrap();
        assert!(again.token.is_some());
        let shown = format!("{t:?}");
        assert!(!shown.contains(&token), "{shown}");
    }

    #[tokio::test]
    async fn an_unusable_key_is_a_credentials_error() {
        let key = key_json("-----BEGIN PRIVATE KEY-----\nSEKRIT\n-----END PRIVATE KEY-----\n");
        let p = offline(
            GcpConfig::new("my-project", "europe-west1")
                .credentials(GcpCredentials::ServiceAccountKey(Secret::new(key))),
        )
        .await;
        let err = p.cluster_token(&cluster()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Credentials, "{err}");
        assert!(!err.chain().contains("SEKRIT"), "{}", err.chain());
    }

    #[test]
    fn the_user_is_the_key_email_only() {
        let key = GcpCredentials::ServiceAccountKey(Secret::new(key_json("x")));
        assert_eq!(service_account_email(&key).as_deref(), Some(EMAIL));
        assert_eq!(
            service_account_email(&GcpCredentials::ApplicationDefault),
            None
        );
        assert_eq!(service_account_email(&GcpCredentials::Anonymous), None);
        let not_json = GcpCredentials::ServiceAccountKey(Secret::new("not json".into()));
        assert_eq!(service_account_email(&not_json), None);
    }
}
