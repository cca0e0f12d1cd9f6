//! EKS tokens (`ClusterCredentials` of the AWS provider) against a real moto server:
//! the token's shape and the presigned STS `GetCallerIdentity` URL it carries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use gitpod_refarch::provider::ClusterCredentials;
use gitpod_refarch::resource::Output;
use gitpod_refarch::Secret;
use gitpod_refarch_aws::access::{CLUSTER_ID_HEADER, TOKEN_LIFETIME, TOKEN_PREFIX};
use gitpod_refarch_aws::{AwsConfig, AwsProvider};
use support::Moto;

const REGION: &str = "eu-west-1";

async fn provider(moto: &Moto) -> AwsProvider {
    let config = AwsConfig::new(REGION)
        .endpoint_url(&moto.url)
        .static_credentials("testing", Secret::new("testing".into()))
        .max_attempts(2)
        .initial_backoff(Duration::from_millis(5));
    AwsProvider::connect(config).await.unwrap()
}

fn cluster(name: &str) -> Output {
    Output::Cluster {
        name: name.into(),
        endpoint: "https://eks.example.invalid".into(),
        ca_certificate_pem: String::new(),
    }
}

/// The URL inside a token.
fn decode(token: &str) -> String {
    let b64 = token
        .strip_prefix(TOKEN_PREFIX)
        .unwrap_or_else(|| panic!("no {TOKEN_PREFIX} prefix"));
    assert!(!b64.contains('='), "base64url without padding");
    assert!(
        !b64.contains('+') && !b64.contains('/'),
        "base64url alphabet"
    );
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// The query parameters of `url`, percent-decoded.
fn query(url: &str) -> BTreeMap<String, String> {
    let (_, q) = url.split_once('?').unwrap();
    q.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_token_is_a_presigned_get_caller_identity_url() {
    let moto = Moto::start().await;
    let p = provider(&moto).await;
    let before = SystemTime::now();
    let t = p.cluster_token(&cluster("gp-cluster")).await.unwrap();
    let after = SystemTime::now();

    let token = t.token.as_ref().expect("a bearer token");
    let url = decode(token.expose());
    let base = format!("{}/?", moto.url);
    assert!(url.starts_with(&base), "{url} should presign {base}");
    let q = query(&url);
    assert_eq!(q["Action"], "GetCallerIdentity");
    assert_eq!(q["Version"], "2011-06-15");
    assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
    let credential = &q["X-Amz-Credential"];
    assert!(credential.starts_with("testing/"), "{credential}");
    assert!(
        credential.ends_with(&format!("/{REGION}/sts/aws4_request")),
        "{credential}"
    );
    assert_eq!(q["X-Amz-Expires"], "60");
    let signed: Vec<&str> = q["X-Amz-SignedHeaders"].split(';').collect();
    assert!(signed.contains(&"host"), "{signed:?}");
    assert!(signed.contains(&CLUSTER_ID_HEADER), "{signed:?}");
    let signature = &q["X-Amz-Signature"];
    assert_eq!(signature.len(), 64, "{signature}");
    assert!(
        signature
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{signature}"
    );
    // Static credentials: no session token.
    assert!(!q.contains_key("X-Amz-Security-Token"));

    let expires = t.expires_at.expect("an expiry");
    assert!(expires >= before + TOKEN_LIFETIME, "{expires:?}");
    assert!(expires <= after + TOKEN_LIFETIME, "{expires:?}");
    assert_eq!(TOKEN_LIFETIME, Duration::from_secs(14 * 60));
    assert_eq!(t.user.as_deref(), Some(p.context().caller_arn.as_str()));
    assert!(t.user.as_deref().unwrap().starts_with("arn:aws:"));

    // Another cluster, another token; the token never shows in Debug.
    let other = p.cluster_token(&cluster("other")).await.unwrap();
    assert_ne!(other.token.as_ref().unwrap().expose(), token.expose());
    let shown = format!("{t:?}");
    assert!(!shown.contains(token.expose().as_str()), "{shown}");

    // Anything but a cluster output is refused.
    let err = p
        .cluster_token(&Output::Foundation {
            account: "123456789012".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), gitpod_refarch::ErrorKind::Internal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_url_answers_get_caller_identity_on_moto() {
    let moto = Moto::start().await;
    let p = provider(&moto).await;
    let t = p.cluster_token(&cluster("gp-cluster")).await.unwrap();
    let url = decode(t.token.as_ref().unwrap().expose());
    let q = query(&url);

    // moto picks the service of an API call from the credential scope of an
    // `Authorization` header only (it ignores the Host header and the query), and
    // sends anything else to S3. Repeat the presigned credential scope there so the
    // call reaches moto's STS; the presigned URL itself is sent unchanged, as EKS
    // sends it.
    let routing = format!(
        "AWS4-HMAC-SHA256 Credential={}, SignedHeaders={}, Signature={}",
        q["X-Amz-Credential"], q["X-Amz-SignedHeaders"], q["X-Amz-Signature"]
    );
    let response = reqwest::Client::new()
        .get(&url)
        .header(CLUSTER_ID_HEADER, "gp-cluster")
        .header("authorization", routing)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    assert!(body.contains("<GetCallerIdentityResponse"), "{body}");
    let account = &p.context().account;
    assert!(!account.is_empty());
    assert!(
        body.contains(&format!("<Account>{account}</Account>")),
        "{body}"
    );
    assert!(body.contains(&p.context().caller_arn), "{body}");
}
