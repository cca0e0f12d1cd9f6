//! Kubernetes API tokens for EKS clusters: the aws-iam-authenticator token.
//!
//! The token is a presigned STS `GetCallerIdentity` URL, bound to one cluster by the
//! signed `x-k8s-aws-id` header: `k8s-aws-v1.` followed by the URL in unpadded
//! base64url. The EKS API server sends that request to STS and maps the identity it
//! answers with (the caller ARN, through the access entry made with the cluster) to a
//! Kubernetes user. No CLI and no kubeconfig file are involved.
//!
//! The URL is signed with SigV4 in its query parameters (`X-Amz-Expires=60`, with
//! `X-Amz-Security-Token` for temporary credentials). EKS accepts such a token for 15
//! minutes after it was signed;
//! [`AccessToken::expires_at`](gitpod_refarch::provider::AccessToken::expires_at)
//! says 14, so callers refresh with a minute to spare.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use gitpod_refarch::provider::AccessToken;
use gitpod_refarch::resource::Output;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};

use crate::context::Context;

/// The prefix of every EKS token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// The signed header that names the cluster the token is for.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";

/// How long the presigned URL itself is valid (`X-Amz-Expires`), as
/// aws-iam-authenticator signs it.
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);

/// How long after signing a token is reported valid: EKS accepts it for 15 minutes,
/// one is kept as a margin.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// The STS call that is presigned.
const STS_QUERY: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// The signing name of STS.
const STS_SERVICE: &str = "sts";

/// A token for the EKS cluster of `cluster` (see [`gitpod_refarch::ClusterCredentials`], which
/// [`crate::AwsProvider`] implements with it).
pub async fn cluster_token(c: &Context, cluster: &Output) -> Result<AccessToken> {
    let Output::Cluster { name, .. } = cluster else {
        return Err(Error::internal(
            "an EKS token needs the cluster's output, another output was given",
        ));
    };
    let credentials = resolve_credentials(c).await?;
    let base = sts_base_url(&c.region, c.endpoint_url.as_deref());
    let now = SystemTime::now();
    let token = eks_token(&credentials, &c.region, &base, name, now)?;
    let access = AccessToken::bearer(token, Some(now + TOKEN_LIFETIME));
    Ok(if c.caller_arn.is_empty() {
        access
    } else {
        access.with_user(c.caller_arn.clone())
    })
}

/// Resolve the credentials of the loaded configuration once (the SDK's chain caches
/// and refreshes temporary credentials itself).
async fn resolve_credentials(c: &Context) -> Result<Credentials> {
    let provider = c.credentials.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Credentials,
            "no AWS credentials provider is configured: cannot sign an EKS token",
        )
    })?;
    provider.provide_credentials().await.map_err(|e| {
        let kind = match &e {
            CredentialsError::ProviderTimedOut(_) => ErrorKind::Transient,
            _ => ErrorKind::Credentials,
        };
        Error::new(kind, "cannot load AWS credentials to sign an EKS token").with_source(e)
    })
}

/// The URL the token presigns: the regional STS endpoint, or the endpoint override
/// (an emulator), always with the root path.
pub(crate) fn sts_base_url(region: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(url) => format!("{}/", url.trim_end_matches('/')),
        None => format!("https://sts.{region}.amazonaws.com/"),
    }
}

/// The token for `cluster`: `base` (`https://host[:port]/`) with the
/// `GetCallerIdentity` query, presigned at `at` for `region`, in unpadded base64url
/// after [`TOKEN_PREFIX`].
pub(crate) fn eks_token(
    credentials: &Credentials,
    region: &str,
    base: &str,
    cluster: &str,
    at: SystemTime,
) -> Result<Secret> {
    let url = presigned_url(credentials, region, base, cluster, at)?;
    Ok(Secret::new(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url.as_bytes())
    )))
}

/// The presigned `GET base?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-...`.
fn presigned_url(
    credentials: &Credentials,
    region: &str,
    base: &str,
    cluster: &str,
    at: SystemTime,
) -> Result<String> {
    let host_present = base
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        .is_some_and(|host| !host.is_empty());
    if !host_present {
        return Err(Error::invalid_input(format!(
            "'{base}' is not an absolute URL: cannot presign an EKS token for it"
        )));
    }
    if cluster.is_empty() {
        return Err(Error::internal("the cluster output has an empty name"));
    }
    let unsigned = format!("{base}?{STS_QUERY}");

    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(STS_SERVICE)
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| Error::internal("cannot set up SigV4 signing").with_source(e))?
        .into();
    let request = SignableRequest::new(
        "GET",
        unsigned.as_str(),
        std::iter::once((CLUSTER_ID_HEADER, cluster)),
        SignableBody::empty(),
    )
    .map_err(|e| Error::invalid_input(format!("cannot presign '{unsigned}'")).with_source(e))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| Error::internal("SigV4 presigning failed").with_source(e))?
        .into_parts();

    let mut url = unsigned;
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(&uri_encode(name));
        url.push('=');
        url.push_str(&uri_encode(value));
    }
    Ok(url)
}

/// Percent-encode everything but RFC 3986's unreserved characters, as SigV4's
/// canonical query string does (so `/`, `+` and `=` of credentials and session tokens
/// are escaped).
fn uri_encode(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn decode(token: &Secret) -> String {
        let b64 = token.expose().strip_prefix(TOKEN_PREFIX).unwrap();
        String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    }

    fn creds(session: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session.map(str::to_string),
            None,
            "test",
        )
    }

    #[test]
    fn tokens_for_two_clusters_differ_and_never_reach_debug() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let base = sts_base_url("eu-west-1", None);
        let a = eks_token(&creds(None), "eu-west-1", &base, "cluster-a", at).unwrap();
        let b = eks_token(&creds(None), "eu-west-1", &base, "cluster-b", at).unwrap();
        assert_ne!(a.expose(), b.expose());
        // Same inputs, same signature: the cluster name is what makes them differ.
        let a2 = eks_token(&creds(None), "eu-west-1", &base, "cluster-a", at).unwrap();
        assert_eq!(a.expose(), a2.expose());

        let url = decode(&a);
        assert!(
            url.starts_with("https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity"),
            "{url}"
        );
        assert!(
            url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
            "{url}"
        );

        let shown = format!(
            "{:?}",
            AccessToken::bearer(a.clone(), Some(at + TOKEN_LIFETIME)).with_user("arn:x")
        );
        assert!(!shown.contains(a.expose().as_str()), "{shown}");
        assert!(!shown.contains(TOKEN_PREFIX), "{shown}");
        assert!(shown.contains("arn:x"), "{shown}");
    }

    #[test]
    fn a_session_token_is_in_the_signed_url() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = eks_token(
            &creds(Some("FwoG/session+token=")),
            "us-east-1",
            "http://127.0.0.1:5000/",
            "c",
            at,
        )
        .unwrap();
        let url = decode(&t);
        assert!(url.starts_with("http://127.0.0.1:5000/?"), "{url}");
        assert!(
            url.contains("X-Amz-Security-Token=FwoG%2Fsession%2Btoken%3D"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Date=20231114T221320Z"), "{url}");
    }

    #[test]
    fn the_base_url_is_regional_or_the_override() {
        assert_eq!(
            sts_base_url("ap-south-1", None),
            "https://sts.ap-south-1.amazonaws.com/"
        );
        assert_eq!(
            sts_base_url("ap-south-1", Some("http://127.0.0.1:1234/")),
            "http://127.0.0.1:1234/"
        );
        let at = SystemTime::now();
        for bad in ["", "not a url", "http:///"] {
            assert!(eks_token(&creds(None), "r", bad, "c", at).is_err(), "{bad}");
        }
    }
}
