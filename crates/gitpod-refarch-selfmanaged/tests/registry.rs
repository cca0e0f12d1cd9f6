#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `ExistingRegistry` and the `registry.*` checks against a real Docker distribution
//! registry (Debian's `docker-registry`) started by each test on 127.0.0.1.

#[path = "support/registry.rs"]
mod registry_support;

use std::collections::BTreeMap;
use std::time::Duration;

use gitpod_refarch::installer::{self, InstallerBundle};
use gitpod_refarch::outputs::Outputs;
use gitpod_refarch::provider::{Inputs, Progress};
use gitpod_refarch::resource::{
    DatabaseEndpoint, Output, RegistryOutput, RegistrySpec, ResourceId, ResourceKind, StorageOutput,
};
use gitpod_refarch::verify::{Check, CheckStatus, VerifyContext};
use gitpod_refarch::{ErrorKind, ReferenceArchitecture, Registry, Secret, Verifier};
use gitpod_refarch_selfmanaged::{ExistingRegistry, RegistryConfig, RegistryVerifier};
use registry_support::{Options, TestRegistry};

fn spec(url: Option<&str>, mode: &str) -> RegistrySpec {
    serde_json::from_value(serde_json::json!({
        "name": "gp",
        "region": "local",
        "repository": "gitpod",
        "mode": mode,
        "url": url,
        "labels": {},
    }))
    .unwrap()
}

fn provider(reg: &TestRegistry, password: &str) -> ExistingRegistry {
    ExistingRegistry::new(RegistryConfig::new(
        format!("http://{}/gitpod", reg.host),
        &reg.username,
        Secret::new(password.to_string()),
    ))
}

fn arch() -> ReferenceArchitecture {
    ReferenceArchitecture::from_yaml(
        "cloud: aws\nname: gp\ndomain: gitpod.example.com\ncertificates: {email: ops@example.com}\n",
    )
    .unwrap()
}

/// Outputs with this registry output (database and storage are placeholders the
/// registry checks never read), and the bundle the installer renders from them.
fn bundle(registry: RegistryOutput) -> (Outputs, InstallerBundle) {
    let mut m = BTreeMap::new();
    m.insert(
        ResourceId::new(ResourceKind::DatabaseInstance, "gp"),
        Output::DatabaseInstance {
            instance: "i".into(),
            endpoint: DatabaseEndpoint::Host {
                host: "127.0.0.1".into(),
                port: 1,
                ca_certificate_pem: None,
            },
        },
    );
    m.insert(
        ResourceId::new(ResourceKind::Database, "gitpod"),
        Output::Database {
            database: "gitpod".into(),
            username: "gitpod".into(),
            password: Secret::new("db-password".into()),
            client_credentials: None,
        },
    );
    m.insert(
        ResourceId::new(ResourceKind::ObjectStorage, "gp"),
        Output::ObjectStorage(StorageOutput::S3 {
            endpoint: "127.0.0.1:1".into(),
            region: "us-east-1".into(),
            bucket: "gitpod".into(),
            access_key_id: "k".into(),
            secret_access_key: Secret::new("s".into()),
            allow_insecure_connection: true,
        }),
    );
    m.insert(
        ResourceId::new(ResourceKind::Registry, "gp"),
        Output::Registry(registry),
    );
    let outputs = Outputs::new(m);
    let b = installer::render(&arch(), &outputs, &Secret::generate_base64_key(32)).unwrap();
    (outputs, b)
}

async fn verify(registry: RegistryOutput, v: RegistryVerifier) -> Vec<Check> {
    let (outputs, b) = bundle(registry);
    let a = arch();
    let ctx = VerifyContext::new(&a, &outputs, &b);
    v.verify(&ctx).await
}

fn check<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
}

fn assert_no_secret(checks: &[Check], secret: &str) {
    let dump = format!("{checks:?}{}", serde_json::to_string(checks).unwrap());
    assert!(
        !dump.contains(secret),
        "a check carries the password: {dump}"
    );
}

fn external(reg: &TestRegistry, password: &str) -> RegistryOutput {
    match provider(reg, password).output().unwrap() {
        o @ RegistryOutput::External { .. } => o,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ensure_and_observe_sign_in_and_report_the_output_without_writing() {
    let reg = TestRegistry::start().await;
    let p = provider(&reg, &reg.password);
    let s = spec(Some(&format!("http://{}/gitpod", reg.host)), "managed");

    let out = match p.ensure(&s, &Inputs::default()).await.unwrap() {
        Progress::Done(Some(Output::Registry(o))) => o,
        other => panic!("{other:?}"),
    };
    let RegistryOutput::External {
        url,
        server,
        username,
        password,
    } = &out
    else {
        panic!("{out:?}")
    };
    assert_eq!(url, &format!("http://{}/gitpod", reg.host));
    assert_eq!(server, &reg.host);
    assert_eq!(username, "gitpod-push");
    assert_eq!(password.expose(), &reg.password);

    let seen = p.observe(&s).await.unwrap().unwrap();
    assert_eq!(seen.actual, s);
    assert!(seen.pending.is_none());
    assert_eq!(seen.output, Some(Output::Registry(out.clone())));
    // Observing again is the same, and nothing was written to the registry.
    let again = p.observe(&s).await.unwrap().unwrap();
    assert_eq!(again.output, Some(Output::Registry(out)));
    let (status, body) = reg.get("/v2/_catalog", None).await;
    assert_eq!(status, 200);
    let catalog: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!([]), "{body}");

    // A plan for another registry shows up as a difference and is refused.
    let other = spec(Some("harbor.example.com/gitpod"), "managed");
    let seen = p.observe(&other).await.unwrap().unwrap();
    assert_eq!(
        seen.actual.url.as_deref(),
        Some(format!("http://{}/gitpod", reg.host).as_str())
    );
    let e = p.ensure(&other, &Inputs::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = p
        .ensure(&spec(None, "inClusterObjectStorage"), &Inputs::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("registry.mode"), "{e}");
    assert_eq!(p.info().name, "oci-registry");
    assert!(p.info().self_managed);
}

#[tokio::test]
async fn a_wrong_password_is_a_credentials_error_without_the_password() {
    let reg = TestRegistry::start().await;
    let wrong = "wrong-password-5eCr3t";
    let p = provider(&reg, wrong);
    let s = spec(None, "managed");
    for e in [
        p.ensure(&s, &Inputs::default()).await.unwrap_err(),
        p.observe(&s).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
        let text = format!("{e} {e:?} {}", e.chain());
        assert!(text.contains("`gitpod-push`"), "{text}");
        assert!(text.contains(&reg.host), "{text}");
        assert!(!text.contains(wrong), "{text}");
    }
    assert!(!format!("{p:?}").contains(wrong));
}

#[tokio::test]
async fn an_unreachable_registry_is_transient_and_delete_touches_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = ExistingRegistry::new(RegistryConfig::new(
        format!("http://127.0.0.1:{port}/gitpod"),
        "u",
        Secret::new("p".into()),
    ));
    let s = spec(None, "managed");
    let e = p.ensure(&s, &Inputs::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.is_retryable());
    // Delete never calls the registry: it succeeds with nothing listening.
    assert!(matches!(p.delete(&s).await.unwrap(), Progress::Done(None)));
}

#[tokio::test]
async fn bad_config_is_invalid_input_naming_the_field_before_any_call() {
    let bad = |url: &str, user: &str, pw: &str| {
        RegistryConfig::new(url, user, Secret::new(pw.to_string()))
    };
    for (cfg, field) in [
        (bad("gitpod/images", "u", "p"), "registry.url"),
        (bad("", "u", "p"), "registry.url"),
        (bad("ftp://h.example.com/x", "u", "p"), "registry.url"),
        (bad("h.example.com/x", "", "p"), "registry.username"),
        (bad("h.example.com/x", "u", ""), "registry.password"),
        (
            bad("h.example.com/x", "u", "p").with_ca_pem("not a pem"),
            "registry.caFile",
        ),
    ] {
        let e = cfg.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.message().starts_with(field), "{field}: {e}");
        // The provider refuses it the same way, with no network (the host does not exist).
        let e = ExistingRegistry::new(cfg)
            .ensure(&spec(None, "managed"), &Inputs::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
}

#[tokio::test]
async fn verify_signs_in_pushes_pulls_and_cleans_up() {
    let reg = TestRegistry::start().await;
    let checks = verify(
        external(&reg, &reg.password),
        RegistryVerifier::new().self_managed(true),
    )
    .await;
    let ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "registry.auth",
            "registry.push",
            "registry.pull",
            "registry.cleanup"
        ]
    );
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Pass, "{c:#?}");
    }
    assert!(check(&checks, "registry.auth")
        .summary
        .contains("basic auth"));
    assert!(check(&checks, "registry.cleanup")
        .summary
        .contains("2 of 2 blobs"));
    assert_no_secret(&checks, &reg.password);

    // The probe's tag is gone: no manifest left.
    let push = &check(&checks, "registry.push").summary;
    let at = push.find("probe-").expect(push);
    let tag = &push[at..at + "probe-".len() + 16];
    let (status, body) = reg
        .get(
            &format!("/v2/gitpod/gitpod-refarch-verify/manifests/{tag}"),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = reg
        .get("/v2/gitpod/gitpod-refarch-verify/tags/list", None)
        .await;
    assert!(status == 404 || !body.contains(tag), "{status} {body}");
}

#[tokio::test]
async fn a_read_only_registry_fails_registry_push_with_the_fix() {
    let reg = TestRegistry::start_read_only().await;
    let out = external(&reg, &reg.password);
    let checks = verify(out, RegistryVerifier::new().self_managed(true)).await;
    assert_eq!(check(&checks, "registry.auth").status, CheckStatus::Pass);
    let push = check(&checks, "registry.push");
    assert_eq!(push.status, CheckStatus::Fail, "{push:#?}");
    assert!(push.summary.contains("HTTP 405"), "{push:#?}");
    assert_eq!(
        push.fix.as_deref(),
        Some(
            format!(
                "the credentials in container-registry cannot push to http://{}/gitpod: give \
                 the user push rights on the project/repository",
                reg.host
            )
            .as_str()
        )
    );
    assert_eq!(check(&checks, "registry.pull").status, CheckStatus::Skipped);
    assert_eq!(
        check(&checks, "registry.cleanup").status,
        CheckStatus::Skipped
    );
    assert_no_secret(&checks, &reg.password);
}

#[tokio::test]
async fn a_wrong_password_in_the_bundle_fails_registry_auth() {
    let reg = TestRegistry::start().await;
    let wrong = "wrong-password-5eCr3t";
    let checks = verify(
        external(&reg, wrong),
        RegistryVerifier::new().self_managed(true),
    )
    .await;
    let auth = check(&checks, "registry.auth");
    assert_eq!(auth.status, CheckStatus::Fail, "{auth:#?}");
    assert!(
        auth.summary.contains("rejected user `gitpod-push`"),
        "{auth:#?}"
    );
    assert!(
        auth.fix.as_deref().unwrap().contains("registry.password"),
        "{auth:#?}"
    );
    for id in ["registry.push", "registry.pull", "registry.cleanup"] {
        assert_eq!(check(&checks, id).status, CheckStatus::Skipped, "{id}");
    }
    assert_no_secret(&checks, wrong);
    // Nothing was pushed.
    let (_, body) = reg.get("/v2/_catalog", None).await;
    assert!(!body.contains("gitpod-refarch-verify"), "{body}");
}

#[tokio::test]
async fn unreachable_is_skipped_for_a_cloud_registry_and_failed_for_a_self_managed_one() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = RegistryOutput::External {
        url: format!("http://127.0.0.1:{port}/gitpod"),
        server: format!("127.0.0.1:{port}"),
        username: "u".into(),
        password: Secret::new("p-unreachable".into()),
    };
    let cloud = verify(
        out.clone(),
        RegistryVerifier::new().timeout(Duration::from_secs(2)),
    )
    .await;
    let auth = check(&cloud, "registry.auth");
    assert_eq!(auth.status, CheckStatus::Skipped, "{auth:#?}");
    assert!(auth.fix.as_deref().unwrap().contains("--in-cluster"));
    let mine = verify(
        out,
        RegistryVerifier::new()
            .self_managed(true)
            .timeout(Duration::from_secs(2)),
    )
    .await;
    assert_eq!(check(&mine, "registry.auth").status, CheckStatus::Fail);
    assert_eq!(check(&mine, "registry.push").status, CheckStatus::Skipped);
}

#[tokio::test]
async fn an_in_cluster_registry_is_skipped_with_the_reason() {
    let checks = verify(
        RegistryOutput::InClusterS3 {
            bucket: "b".into(),
            region: "us-east-1".into(),
            endpoint: "s3.amazonaws.com".into(),
            access_key_id: "k".into(),
            secret_access_key: Secret::new("s3-secret".into()),
        },
        RegistryVerifier::new().self_managed(true),
    )
    .await;
    assert_eq!(checks.len(), 4);
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Skipped, "{c:#?}");
        assert!(
            c.reason.as_deref().unwrap().contains("inCluster: true"),
            "{c:#?}"
        );
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it (PEM): (ca, cert, key).
fn private_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gitpod-refarch test registry CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn a_private_ca_is_trusted_when_given_and_named_when_not() {
    let (ca, cert, key) = private_ca();
    let reg = TestRegistry::start_with(Options {
        tls: Some((cert, key)),
        ..Options::default()
    })
    .await;
    let cfg = RegistryConfig::new(
        format!("{}/gitpod", reg.host),
        &reg.username,
        Secret::new(reg.password.clone()),
    );
    let s = spec(None, "managed");

    let e = ExistingRegistry::new(cfg.clone())
        .ensure(&s, &Inputs::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("set registry.caFile"), "{e}");
    assert!(!e.to_string().contains(&reg.password));

    let p = ExistingRegistry::new(cfg.with_ca_pem(ca.clone()));
    let out = match p.ensure(&s, &Inputs::default()).await.unwrap() {
        Progress::Done(Some(Output::Registry(o))) => o,
        other => panic!("{other:?}"),
    };
    let RegistryOutput::External { url, .. } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(url, &format!("{}/gitpod", reg.host));

    // verify without the CA: registry.auth fails and names caFile.
    let checks = verify(out.clone(), RegistryVerifier::new().self_managed(true)).await;
    let auth = check(&checks, "registry.auth");
    assert_eq!(auth.status, CheckStatus::Fail, "{auth:#?}");
    assert!(
        auth.fix.as_deref().unwrap().contains("registry.caFile"),
        "{auth:#?}"
    );
    // With it: everything over HTTPS.
    let checks = verify(out, RegistryVerifier::new().self_managed(true).ca_pem(ca)).await;
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Pass, "{c:#?}");
    }
    assert_no_secret(&checks, &reg.password);
}

#[tokio::test]
async fn a_registry_that_refuses_deletes_skips_cleanup_and_names_the_tag() {
    let reg = TestRegistry::start_with(Options {
        no_delete: true,
        ..Options::default()
    })
    .await;
    let checks = verify(
        external(&reg, &reg.password),
        RegistryVerifier::new().self_managed(true),
    )
    .await;
    for id in ["registry.auth", "registry.push", "registry.pull"] {
        assert_eq!(check(&checks, id).status, CheckStatus::Pass, "{checks:#?}");
    }
    let cleanup = check(&checks, "registry.cleanup");
    assert_eq!(cleanup.status, CheckStatus::Skipped, "{cleanup:#?}");
    assert!(cleanup.summary.contains("HTTP 405"), "{cleanup:#?}");
    let push = &check(&checks, "registry.push").summary;
    let at = push.find("probe-").expect(push);
    let tag = &push[at..at + "probe-".len() + 16];
    let name = format!("http://{}/gitpod/gitpod-refarch-verify:{tag}", reg.host);
    assert!(cleanup.summary.contains(&name), "{cleanup:#?}");
    assert!(
        cleanup.fix.as_deref().unwrap().contains(&name),
        "{cleanup:#?}"
    );
    // The tag is indeed still there.
    let (status, _) = reg
        .get(
            &format!("/v2/gitpod/gitpod-refarch-verify/manifests/{tag}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
}

async fn token_registry(grants: Vec<&'static str>) -> TestRegistry {
    TestRegistry::start_with(Options {
        token_grants: Some(grants),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn token_auth_signs_in_with_a_bearer_token_and_verify_passes() {
    let reg = token_registry(vec!["pull", "push", "delete"]).await;
    let issued = reg.token_service.as_ref().unwrap().issued.clone();
    let p = provider(&reg, &reg.password);
    assert!(matches!(
        p.ensure(&spec(None, "managed"), &Inputs::default())
            .await
            .unwrap(),
        Progress::Done(Some(Output::Registry(RegistryOutput::External { .. })))
    ));
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 1);

    let checks = verify(
        external(&reg, &reg.password),
        RegistryVerifier::new().self_managed(true),
    )
    .await;
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Pass, "{checks:#?}");
    }
    assert!(check(&checks, "registry.auth")
        .summary
        .contains("token auth"));
    assert_no_secret(&checks, &reg.password);

    // Wrong password: the token service refuses it.
    let wrong = "wrong-password-5eCr3t";
    let e = provider(&reg, wrong)
        .ensure(&spec(None, "managed"), &Inputs::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
    assert!(!format!("{e} {e:?}").contains(wrong));
    let checks = verify(
        external(&reg, wrong),
        RegistryVerifier::new().self_managed(true),
    )
    .await;
    assert_eq!(check(&checks, "registry.auth").status, CheckStatus::Fail);
    assert_no_secret(&checks, wrong);
}

#[tokio::test]
async fn a_user_without_push_rights_fails_registry_push_with_the_fix() {
    let reg = token_registry(vec!["pull"]).await;
    // Signing in works: the provider cannot tell, verify can.
    assert!(matches!(
        provider(&reg, &reg.password)
            .ensure(&spec(None, "managed"), &Inputs::default())
            .await
            .unwrap(),
        Progress::Done(Some(_))
    ));
    let checks = verify(
        external(&reg, &reg.password),
        RegistryVerifier::new().self_managed(true),
    )
    .await;
    assert_eq!(check(&checks, "registry.auth").status, CheckStatus::Pass);
    let push = check(&checks, "registry.push");
    assert_eq!(push.status, CheckStatus::Fail, "{push:#?}");
    assert_eq!(
        push.fix.as_deref(),
        Some(
            format!(
                "the credentials in container-registry cannot push to http://{}/gitpod: give \
                 the user push rights on the project/repository",
                reg.host
            )
            .as_str()
        )
    );
    assert_eq!(check(&checks, "registry.pull").status, CheckStatus::Skipped);
    assert_eq!(
        check(&checks, "registry.cleanup").status,
        CheckStatus::Skipped
    );
}

#[tokio::test]
async fn a_user_without_delete_rights_passes_and_leaves_the_tag_named() {
    let reg = token_registry(vec!["pull", "push"]).await;
    let checks = verify(
        external(&reg, &reg.password),
        RegistryVerifier::new().self_managed(true),
    )
    .await;
    for id in ["registry.auth", "registry.push", "registry.pull"] {
        assert_eq!(check(&checks, id).status, CheckStatus::Pass, "{checks:#?}");
    }
    let cleanup = check(&checks, "registry.cleanup");
    assert_eq!(cleanup.status, CheckStatus::Skipped, "{cleanup:#?}");
    assert!(cleanup.summary.contains("may not delete"), "{cleanup:#?}");
    assert!(
        cleanup.summary.contains(&format!(
            "http://{}/gitpod/gitpod-refarch-verify:probe-",
            reg.host
        )),
        "{cleanup:#?}"
    );
}
