//! The controller with the parts a platform team already runs: the cluster column on
//! AWS (EKS on a real moto server, no in-cluster bootstrap: moto's clusters have no
//! API server) and the four self-managed parts, each a real server started here:
//! Debian's MariaDB, BIND 9 with a TSIG key, Docker's registry with htpasswd, and
//! S3-compatible storage (moto's S3). The same spec as the CLI's mixed test
//! (`examples/tests/mixed.rs`), with its `env` and `file` references answered by the
//! installation's credentials Secret, never by the controller's environment or disk.
#![cfg(all(feature = "aws", feature = "selfmanaged"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "../../gitpod-refarch-selfmanaged/tests/support/mariadb.rs"]
#[allow(dead_code)]
mod mariadb;
#[path = "../../gitpod-refarch-selfmanaged/tests/support/mixed.rs"]
mod mixed;
#[path = "../../gitpod-refarch-selfmanaged/tests/support/named.rs"]
#[allow(dead_code)]
mod named;
#[path = "../../gitpod-refarch-selfmanaged/tests/support/registry.rs"]
mod registry;

use gitpod_refarch_operator::controller::Context;
use gitpod_refarch_operator::factory::{AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY};
use gitpod_refarch_operator::sources::REFERENCES_ANNOTATION;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use mixed::{NAME, ZONE};
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_managed_parts_take_their_secrets_from_the_installations_secret() {
    let moto = Moto::start().await;
    let db = mariadb::MariaDb::start().await;
    let dns = named::start(&[(ZONE, "")]);
    let reg = registry::TestRegistry::start().await;
    let c = Cluster::start().await;
    let _running = c.spawn(Context::new(
        c.client.clone(),
        moto_factory(&moto),
        fast_cloud_config(),
    ));
    let api = c.installations();

    // The Secret lacks the database's password. (That the controller's own
    // environment is never read is `sources.rs`'s unit test: setting a variable here
    // would race the SDKs reading theirs.)
    let tsig = dns.secret.expose().clone();
    c.secret(
        "creds",
        &[
            (AWS_ACCESS_KEY_ID, "testing"),
            (AWS_SECRET_ACCESS_KEY, "testing"),
            ("tsig.key", &tsig),
            ("GITPOD_REGISTRY_PASSWORD", &reg.password),
            ("GITPOD_S3_ACCESS_KEY_ID", "testing"),
            ("GITPOD_S3_SECRET_ACCESS_KEY", "testing"),
        ],
    )
    .await;
    let spec = mixed::spec(
        db.port,
        mariadb::ADMIN,
        &dns.server(),
        named::KEY,
        &reg.base,
        &reg.username,
        &moto.url,
    );
    c.create(&installation(
        NAME,
        &spec,
        json!({"credentialsSecret": "creds", "deletionPolicy": "Delete"}),
    ))
    .await;
    // The Secret does not let the installation read references from it (their
    // values would go to the hosts the spec names): Degraded with reason
    // Credentials, retried, naming the annotation; nothing was made.
    let o = wait_degraded(&api, NAME, "Credentials").await;
    let message = condition(&o, "Degraded").unwrap().message.clone();
    assert!(
        message.contains(&format!(
            "spec.registry.password: env GITPOD_REGISTRY_PASSWORD: the credentials Secret \
             default/creds does not let installation {NAME} read spec references"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("annotate it {REFERENCES_ANNOTATION}={NAME}")),
        "{message}"
    );
    assert!(!db.databases().await.contains(&"gitpod".to_string()));

    // Annotated: the one key it lacks is named, at its field.
    let secrets: kube::Api<KubeSecret> = c.secrets();
    assert_eq!(REFERENCES_ANNOTATION, "refarch.gitpod.io/spec-references");
    let patch = json!({"metadata": {"annotations": {"refarch.gitpod.io/spec-references": NAME}}});
    secrets
        .patch("creds", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let o = wait_for(&api, NAME, |o| {
        condition(o, "Degraded").is_some_and(|c| c.message.contains("has no key"))
    })
    .await;
    let message = condition(&o, "Degraded").unwrap().message.clone();
    assert_eq!(condition(&o, "Degraded").unwrap().reason, "Credentials");
    assert!(
        message.contains(
            "spec.database.adminPassword: env GITPOD_DB_ADMIN_PASSWORD: the credentials \
             Secret default/creds has no key GITPOD_DB_ADMIN_PASSWORD"
        ),
        "{message}"
    );
    assert!(!message.contains("registry.password"), "{message}");

    // The key is added (with the newline `echo` leaves): the next retry applies,
    // with no change to the resource.
    let password = format!("{}\n", db.admin_password.expose());
    let patch = json!({"stringData": {"GITPOD_DB_ADMIN_PASSWORD": password}});
    secrets
        .patch("creds", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let o = wait_ready(&api, NAME).await;
    // The CLI's resources, on the real servers: the database and its user on
    // MariaDB, the bucket on the S3-compatible store; none of the cloud's own.
    assert!(db.databases().await.contains(&"gitpod".to_string()));
    assert!(db.users().await.iter().any(|u| u.starts_with("gitpod@")));
    let buckets = reqwest::get(&moto.url).await.unwrap().text().await.unwrap();
    assert!(buckets.contains("gp-mixed-gitpod"), "{buckets}");
    let status = o.status.clone().unwrap();
    assert_eq!(
        status.outputs.get("databaseHost").map(String::as_str),
        Some("127.0.0.1"),
        "{:?}",
        status.outputs
    );
    // The installer bundle names the self-managed parts; no secret in the status.
    let bundle = secrets.get(&format!("{NAME}-installer")).await.unwrap();
    let config = bundle.data.unwrap()["gitpod.config.yaml"].0.clone();
    let config = String::from_utf8(config).unwrap();
    assert!(
        config.contains(&reg.base.replace("http://", "")),
        "{config}"
    );
    let text = serde_json::to_string(&o).unwrap();
    for s in [
        db.admin_password.expose().as_str(),
        reg.password.as_str(),
        tsig.as_str(),
    ] {
        assert!(!text.contains(s), "a secret in the resource: {text}");
    }

    // Delete: the database and its user are dropped, the bucket is gone.
    api.delete(NAME, &DeleteParams::default()).await.unwrap();
    wait_gone(&api, NAME, &o.uid().unwrap()).await;
    assert!(!db.databases().await.contains(&"gitpod".to_string()));
    assert!(
        !db.users().await.iter().any(|u| u.starts_with("gitpod@")),
        "{:?}",
        db.users().await
    );
    let buckets = reqwest::get(&moto.url).await.unwrap().text().await.unwrap();
    assert!(!buckets.contains("gp-mixed-gitpod"), "{buckets}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_path_is_never_read_from_the_controllers_disk() {
    let moto = Moto::start().await;
    let c = Cluster::start().await;
    let _running = c.spawn(Context::new(
        c.client.clone(),
        moto_factory(&moto),
        fast_cloud_config(),
    ));
    let api = c.installations();
    // A real PEM pair on the controller's disk, named by path.
    let dir = std::env::temp_dir().join(format!("gp-operator-byo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![ZONE.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    c.secret(
        "creds",
        &[
            (AWS_ACCESS_KEY_ID, "testing"),
            (AWS_SECRET_ACCESS_KEY, "testing"),
        ],
    )
    .await;
    let spec = format!(
        "cloud: aws\nname: byo\ndomain: {ZONE}\ncluster:\n  region: eu-west-1\n\
         certificates:\n  issuer: bringYourOwn\n  secretName: https-certificates\n  \
         certificateFile: {}\n  keyFile: {}\n",
        cert_path.display(),
        key_path.display()
    );
    c.create(&installation(
        "byo",
        &spec,
        json!({"credentialsSecret": "creds"}),
    ))
    .await;
    // A path is the spec's to change: InvalidSpec, waiting for the resource.
    let o = wait_degraded(&api, "byo", "InvalidSpec").await;
    let message = condition(&o, "Degraded").unwrap().message.clone();
    for field in [
        "spec.certificates.certificateFile",
        "spec.certificates.keyFile",
    ] {
        assert!(message.contains(field), "{field}: {message}");
    }
    assert!(
        message.contains("never a path on the controller's disk"),
        "{message}"
    );
    assert!(
        message.contains("(as --from-file names it: tls.key)"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
