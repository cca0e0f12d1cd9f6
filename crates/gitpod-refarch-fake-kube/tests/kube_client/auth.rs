//! EKS tokens ([`Auth::Eks`]): presigned with the AWS SDK's own SigV4 signer (as the
//! AWS provider presigns them), accepted for their cluster only, refused with the API
//! server's 401 `Unauthorized` when malformed, expired or made for another cluster.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use gitpod_refarch_fake_kube::{Auth, EksAuth, FakeConfig, FakeKube};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::{api_error, config_for};

const STS: &str = "https://sts.eu-west-1.amazonaws.com/";
const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// What a token is made of.
struct Presign<'a> {
    base: &'a str,
    cluster: &'a str,
    secret: &'a str,
    at: SystemTime,
    expires: Duration,
    sign_cluster_header: bool,
}

impl Default for Presign<'_> {
    fn default() -> Self {
        Presign {
            base: STS,
            cluster: "gp",
            secret: SECRET,
            at: SystemTime::now(),
            expires: Duration::from_secs(60),
            sign_cluster_header: true,
        }
    }
}

/// `k8s-aws-v1.` + base64url (no padding) of a presigned STS `GetCallerIdentity` URL,
/// as aws-iam-authenticator and the AWS provider make it.
fn token(p: Presign<'_>) -> String {
    let unsigned = format!("{}?Action=GetCallerIdentity&Version=2011-06-15", p.base);
    let identity: Identity = Credentials::new(KEY_ID, p.secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(p.expires);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-1")
        .name("sts")
        .time(p.at)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers: Vec<(&str, &str)> = if p.sign_cluster_header {
        vec![("x-k8s-aws-id", p.cluster)]
    } else {
        Vec::new()
    };
    let request = SignableRequest::new(
        "GET",
        unsigned.as_str(),
        headers.into_iter(),
        SignableBody::empty(),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut url = unsigned;
    for (name, value) in instructions.params() {
        url.push_str(&format!("&{name}={}", encode(value)));
    }
    format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    )
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `token` with one character of its signature changed.
fn tampered(token: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let url = String::from_utf8(b64.decode(&token["k8s-aws-v1.".len()..]).unwrap()).unwrap();
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut bytes = url.into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    format!("k8s-aws-v1.{}", b64.encode(bytes))
}

/// A client of `fake` that sends `token` as its bearer token.
fn with_token(fake: &FakeKube, token: &str) -> Client {
    let mut config = config_for(&fake.url(), &fake.ca_pem());
    config.auth_info.token = Some(token.to_string().into());
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_from(config).unwrap()
}

async fn list(client: Client) -> kube::Result<usize> {
    let api: Api<Namespace> = Api::all(client);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items.len())
}

async fn eks_fake(auth: EksAuth) -> FakeKube {
    FakeKube::start(FakeConfig::default().with_auth(Auth::Eks(auth)))
        .await
        .unwrap()
}

/// Fails on main before the auth mode: every token was accepted.
#[tokio::test]
async fn an_eks_token_for_the_cluster_is_accepted_and_a_bad_one_is_401() {
    let fake = eks_fake(EksAuth::new("gp").with_credentials(KEY_ID, SECRET)).await;
    let good = token(Presign::default());
    assert!(list(with_token(&fake, &good)).await.unwrap() >= 4);

    let minutes = |m: u64| SystemTime::now() - Duration::from_secs(m * 60);
    let refused = [
        (
            "another cluster",
            token(Presign {
                cluster: "other",
                ..Presign::default()
            }),
        ),
        (
            "another secret",
            token(Presign {
                secret: "nope",
                ..Presign::default()
            }),
        ),
        (
            "16 minutes old",
            token(Presign {
                at: minutes(16),
                ..Presign::default()
            }),
        ),
        (
            "x-k8s-aws-id not signed",
            token(Presign {
                sign_cluster_header: false,
                ..Presign::default()
            }),
        ),
        (
            "X-Amz-Expires over 900",
            token(Presign {
                expires: Duration::from_secs(901),
                ..Presign::default()
            }),
        ),
        (
            "not an STS host",
            token(Presign {
                base: "https://evil.example.com/",
                ..Presign::default()
            }),
        ),
        (
            "plain http",
            token(Presign {
                base: "http://sts.eu-west-1.amazonaws.com/",
                ..Presign::default()
            }),
        ),
        (
            "no prefix",
            good.trim_start_matches("k8s-aws-v1.").to_string(),
        ),
        ("not base64url", "k8s-aws-v1.!!!".to_string()),
        ("a padded token", format!("{good}==")),
        ("a tampered token", tampered(&good)),
    ];
    for (why, bad) in refused {
        let answer = list(with_token(&fake, &bad)).await;
        assert!(answer.is_err(), "{why}: accepted");
        let e = api_error(answer);
        assert_eq!(
            (e.code, e.reason.as_str(), e.message.as_str()),
            (401, "Unauthorized", "Unauthorized"),
            "{why}"
        );
    }
    // 14 minutes old (the provider's refresh margin) is still fine.
    let old = token(Presign {
        at: minutes(14),
        ..Presign::default()
    });
    assert!(list(with_token(&fake, &old)).await.is_ok());
    fake.shutdown().await;
}

#[tokio::test]
async fn the_anonymous_user_reads_only_the_public_paths() {
    let fake = eks_fake(EksAuth::new("gp")).await;
    let anonymous = crate::client(&fake);
    assert!(anonymous.apiserver_version().await.is_ok());
    let e = api_error(list(anonymous).await);
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert!(e.message.contains("system:anonymous"), "{}", e.message);
    fake.shutdown().await;
}

#[tokio::test]
async fn an_emulators_sts_endpoint_and_shape_only_checks() {
    // Tokens presigned for an emulator (moto): that endpoint instead of AWS's hosts.
    let moto = "http://127.0.0.1:5000/";
    let fake = eks_fake(EksAuth::new("gp").with_sts_endpoint(moto)).await;
    let t = token(Presign {
        base: moto,
        ..Presign::default()
    });
    assert!(list(with_token(&fake, &t)).await.is_ok());
    let aws = token(Presign::default());
    assert_eq!(api_error(list(with_token(&fake, &aws)).await).code, 401);
    // Without the credentials the signature is checked for its shape only: a token
    // signed for another cluster passes (STS, which this fake never calls, would
    // refuse it).
    let other = token(Presign {
        base: moto,
        cluster: "other",
        ..Presign::default()
    });
    assert!(list(with_token(&fake, &other)).await.is_ok());
    fake.shutdown().await;

    // The default: no authentication, any token or none.
    let open = FakeKube::start(FakeConfig::default()).await.unwrap();
    assert!(list(with_token(&open, "k8s-aws-v1.!!!")).await.is_ok());
    assert!(list(crate::client(&open)).await.is_ok());
    open.shutdown().await;
}
