//! `SelfManagedDatabase` against a real, private MariaDB (see `support/mariadb.rs`):
//! apply, re-apply and destroy through the engine (the simulated cloud for the other
//! parts), what is refused and why, and the `verify` checks on the installer bundle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::TokioClock;
use gitpod_refarch::provider::{Inputs, Progress, DATABASE_PASSWORD};
use gitpod_refarch::resource::{DatabaseResource, Desired, Output};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::verify::{Check, Part, VerifyContext};
use gitpod_refarch::{
    Database, Engine, ErrorKind, Providers, ReferenceArchitecture, Secret, Verifier,
};
use gitpod_refarch_selfmanaged::{DataPlaneVerifier, DatabaseConfig, SelfManagedDatabase};
use support::mariadb::MariaDb;

fn spec(db: &MariaDb, extra: &str) -> ReferenceArchitecture {
    let tls = match &db.ca_pem {
        Some(_) => {
            let ca = db.admin_password_file().with_file_name("ca.pem");
            format!("{{mode: verifyIdentity, caFile: {}}}", ca.display())
        }
        None => "{mode: disabled}".to_string(),
    };
    ReferenceArchitecture::from_yaml(&format!(
        "cloud: aws\nname: gp\ndomain: gitpod.example.com\ncertificates: {{email: ops@example.com}}\n\
         database:\n  provider: selfManaged\n  host: 127.0.0.1\n  port: {}\n  adminUsername: admin\n  \
         adminPassword: {{file: {}}}\n  tls: {tls}\n{extra}",
        db.port,
        db.admin_password_file().display()
    ))
    .expect("spec")
}

struct Setup {
    engine: Engine,
    spec: ReferenceArchitecture,
}

fn engine(db: &MariaDb, config: DatabaseConfig, extra: &str) -> Setup {
    let clock = Arc::new(TokioClock::new());
    let sim = Arc::new(SimCloud::new(clock.clone(), LatencyProfile::instant()));
    let providers = Providers::builder()
        .cluster(sim.clone())
        .dns(sim.clone())
        .object_store(sim.clone())
        .registry(sim)
        .database(Arc::new(SelfManagedDatabase::new(config)))
        .build()
        .expect("providers");
    Setup {
        engine: Engine::builder(providers)
            .clock(clock)
            .build()
            .expect("engine"),
        spec: spec(db, extra),
    }
}

async fn verify(s: &Setup) -> Vec<Check> {
    let outputs = s.engine.outputs(&s.spec.name).await.expect("outputs");
    let bundle = s.engine.installer_bundle(&s.spec).await.expect("bundle");
    let ctx = VerifyContext::new(&s.spec, &outputs, &bundle);
    DataPlaneVerifier::new()
        .self_managed(Part::Database)
        .timeout(Duration::from_secs(5))
        .verify(&ctx)
        .await
        .into_iter()
        .filter(|c| c.part == Part::Database)
        .collect()
}

fn check<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
}

fn assert_no_secret(text: &str, secrets: &[&Secret]) {
    for s in secrets {
        assert!(
            !text.contains(s.expose().as_str()),
            "a secret leaked into: {text}"
        );
    }
}

async fn db_password(s: &Setup) -> Secret {
    let outputs = s.engine.outputs(&s.spec.name).await.expect("outputs");
    outputs
        .database()
        .expect("database output")
        .password
        .clone()
}

fn database_spec(s: &Setup) -> DatabaseResource {
    let plan_nodes = gitpod_refarch::plan::graph(&s.spec);
    let d = plan_nodes
        .into_iter()
        .find_map(|n| match n.desired {
            Desired::Database(d) => Some(d),
            _ => None,
        })
        .expect("database node");
    DatabaseResource::Database(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reapply_verify_destroy_leave_everything_else_alone() {
    let db = MariaDb::start().await;
    // Someone else's database and user on the same server.
    db.exec("CREATE DATABASE other_app; CREATE TABLE other_app.t (id INT); CREATE USER 'other'@'%' IDENTIFIED BY 'otherpw123'; GRANT ALL ON other_app.* TO 'other'@'%'")
        .await;
    let s = engine(&db, db.config(), "");
    let untouched = db.write_counters().await;
    let report = s
        .engine
        .apply_spec(&s.spec)
        .await
        .expect("apply")
        .into_result()
        .expect("apply succeeds");
    let dbs = db.databases().await;
    for want in ["gitpod", "gitpod-sessions", "authorization", "other_app"] {
        assert!(dbs.contains(&want.to_string()), "{want} missing: {dbs:?}");
    }
    let users = db.users().await;
    assert!(users.contains(&"gitpod@%".to_string()), "{users:?}");
    let password = db_password(&s).await;
    assert_eq!(password.expose().len(), 32);
    assert_no_secret(&format!("{report:?}"), &[&password, &db.admin_password]);

    // The user can do what Gitpod's init Job does, and nothing beyond its databases.
    let mut u = db
        .connect_as("gitpod", password.expose())
        .await
        .expect("gitpod logs in with the output password");
    sqlx::raw_sql("CREATE DATABASE IF NOT EXISTS `gitpod-sessions` CHARSET utf8mb4; CREATE TABLE IF NOT EXISTS `gitpod-sessions`.sessions (session_id varchar(128) NOT NULL, expires int(11) unsigned NOT NULL, data mediumtext, `_lastModified` timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), PRIMARY KEY (session_id))")
        .execute(&mut u)
        .await
        .expect("init.sql as gitpod");
    let denied = sqlx::raw_sql("CREATE DATABASE not_gitpods")
        .execute(&mut u)
        .await;
    assert!(denied.is_err(), "the user may create other databases");

    // Re-apply: nothing planned, and no statement that writes reaches the server.
    let before = db.write_counters().await;
    assert_eq!(before.len(), 12, "{before:?}");
    // The counters see the apply's writes (so an unchanged count means none).
    assert_ne!(before, untouched);
    let plan = s.engine.plan(&s.spec).await.expect("plan");
    assert!(!plan.has_changes(), "re-apply plans changes:\n{plan}");
    let _ = s
        .engine
        .apply(&plan)
        .await
        .expect("re-apply")
        .into_result()
        .expect("re-apply succeeds");
    assert_eq!(db.write_counters().await, before, "re-apply wrote");

    // verify: all green with the bundle's credentials.
    let checks = verify(&s).await;
    assert_eq!(checks.len(), 4, "{checks:#?}");
    for c in &checks {
        assert!(c.passed(), "{c:#?}");
    }
    let json = serde_json::to_string(&checks).unwrap();
    assert_no_secret(&json, &[&password, &db.admin_password]);

    // Destroy: only what the SDK created.
    let _ = s
        .engine
        .destroy(&s.spec)
        .await
        .expect("destroy")
        .into_result()
        .expect("destroy succeeds");
    let dbs = db.databases().await;
    for gone in ["gitpod", "gitpod-sessions", "authorization"] {
        assert!(!dbs.contains(&gone.to_string()), "{gone} left: {dbs:?}");
    }
    assert!(dbs.contains(&"other_app".to_string()), "{dbs:?}");
    let users = db.users().await;
    assert!(!users.contains(&"gitpod@%".to_string()), "{users:?}");
    assert!(users.contains(&"other@%".to_string()), "{users:?}");
    let mut o = db
        .connect_as("other", "otherpw123")
        .await
        .expect("other still logs in");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM other_app.t")
        .fetch_one(&mut o)
        .await
        .expect("other_app.t still there");
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_behind_its_back_fails_verify_and_reapply_resets_it() {
    let db = MariaDb::start().await;
    let s = engine(&db, db.config(), "");
    let _ = s
        .engine
        .apply_spec(&s.spec)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let password = db_password(&s).await;
    db.exec("ALTER USER 'gitpod'@'%' IDENTIFIED BY 'changedBehindItsBack1'")
        .await;

    let checks = verify(&s).await;
    let c = check(&checks, "database.connect");
    assert!(c.failed(), "{c:#?}");
    assert!(c.fix.as_deref().unwrap_or("").contains("apply"), "{c:#?}");
    assert!(
        check(&checks, "database.create-drop-table").status == gitpod_refarch::CheckStatus::Skipped
    );
    assert_no_secret(&serde_json::to_string(&checks).unwrap(), &[&password]);

    // observe sees the changed password hash: apply converges.
    let plan = s.engine.plan(&s.spec).await.unwrap();
    assert!(
        plan.has_changes(),
        "the changed password is not seen:\n{plan}"
    );
    let _ = s.engine.apply(&plan).await.unwrap().into_result().unwrap();
    db.connect_as("gitpod", password.expose())
        .await
        .expect("the state's password works again");
    for c in verify(&s).await {
        assert!(c.passed(), "{c:#?}");
    }
    // And once converged, nothing more to do.
    assert!(!s.engine.plan(&s.spec).await.unwrap().has_changes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_defaults_for_timestamp_on_is_refused_with_the_fix_unless_allowed() {
    let db = MariaDb::start_with_defaults_on().await;
    let s = engine(&db, db.config(), "");
    let err = s
        .engine
        .apply_spec(&s.spec)
        .await
        .and_then(|r| r.into_result())
        .expect_err("a server with the flag ON is refused");
    let text = format!("{err:?} {}", err.chain());
    assert!(
        text.contains("explicit_defaults_for_timestamp = OFF"),
        "{text}"
    );
    assert!(text.contains("[mysqld]"), "{text}");
    assert!(text.contains("SET GLOBAL"), "{text}");
    assert!(!db.databases().await.contains(&"gitpod".to_string()));

    // Through the trait: Precondition.
    let provider = SelfManagedDatabase::new(db.config());
    let instance = gitpod_refarch::plan::graph(&s.spec)
        .into_iter()
        .find_map(|n| match n.desired {
            Desired::DatabaseInstance(i) => Some(DatabaseResource::Instance(i)),
            _ => None,
        })
        .unwrap();
    let observed = provider.observe(&instance).await.unwrap().unwrap();
    assert!(
        observed
            .drift
            .iter()
            .any(|d| d.contains("explicit_defaults_for_timestamp is ON")),
        "{:?}",
        observed.drift
    );
    let err = provider
        .ensure(&instance, &Inputs::default())
        .await
        .expect_err("precondition");
    assert_eq!(err.kind(), ErrorKind::Precondition, "{err:?}");

    // allowServerChanges: the SDK sets it, apply succeeds.
    let mut config = db.config();
    config.allow_server_changes = true;
    let s = engine(&db, config, "  allowServerChanges: true\n");
    let _ = s
        .engine
        .apply_spec(&s.spec)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let mut a = db.admin().await;
    let on: i64 =
        sqlx::query_scalar("SELECT CAST(@@GLOBAL.explicit_defaults_for_timestamp AS SIGNED)")
            .fetch_one(&mut a)
            .await
            .unwrap();
    assert_eq!(on, 0);
    for c in verify(&s).await {
        assert!(c.passed(), "{c:#?}");
    }

    // The server is restarted with its config: verify names the fix.
    db.exec("SET GLOBAL explicit_defaults_for_timestamp = ON")
        .await;
    let checks = verify(&s).await;
    let c = check(&checks, "database.explicit-defaults-for-timestamp");
    assert!(c.failed(), "{c:#?}");
    let fix = c.fix.as_deref().unwrap_or_default();
    assert!(
        fix.contains("explicit_defaults_for_timestamp = OFF") && fix.contains("[mysqld]"),
        "{fix}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_create_nothing_and_leak_nothing() {
    let db = MariaDb::start().await;
    let before = db.databases().await;

    // Wrong admin password: Credentials, before anything is created.
    let mut wrong = db.config();
    wrong.admin_password = Secret::new("notTheAdminPassword9".to_string());
    let s = engine(&db, wrong.clone(), "");
    let provider = SelfManagedDatabase::new(wrong);
    let d = database_spec(&s);
    let err = provider
        .observe(&d)
        .await
        .expect_err("wrong admin password");
    assert_eq!(err.kind(), ErrorKind::Credentials, "{err:?}");
    assert_no_secret(
        &format!("{err:?} {}", err.chain()),
        &[&Secret::new("notTheAdminPassword9".to_string())],
    );
    let generated = Secret::generate_password(32);
    let inputs = Inputs::new(
        Default::default(),
        [(DATABASE_PASSWORD.to_string(), generated.clone())].into(),
    );
    let err = provider
        .ensure(&d, &inputs)
        .await
        .expect_err("wrong admin password");
    assert_eq!(err.kind(), ErrorKind::Credentials, "{err:?}");
    let err = s
        .engine
        .apply_spec(&s.spec)
        .await
        .and_then(|r| r.into_result())
        .expect_err("apply with a wrong admin password");
    assert_eq!(err.kind(), ErrorKind::Credentials, "{err:?}");
    assert_eq!(db.databases().await, before);

    // Nothing listening: Transient (retried), not Credentials.
    let mut nowhere = db.config();
    nowhere.port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    nowhere.connect_timeout = Duration::from_secs(2);
    let err = SelfManagedDatabase::new(nowhere)
        .observe(&d)
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err:?}");

    // A pre-existing `gitpod` database: Conflict with the fix; never adopted or dropped.
    db.exec("CREATE DATABASE gitpod").await;
    let provider = SelfManagedDatabase::new(db.config());
    assert!(provider.observe(&d).await.unwrap().is_none());
    let err = provider.ensure(&d, &inputs).await.expect_err("conflict");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err:?}");
    assert!(err.message().contains("DROP DATABASE"), "{err:?}");
    assert!(matches!(
        provider.delete(&d).await.unwrap(),
        Progress::Done(None)
    ));
    assert!(db.databases().await.contains(&"gitpod".to_string()));
    assert!(!db.users().await.contains(&"gitpod@%".to_string()));
    db.exec("DROP DATABASE gitpod").await;

    // A pre-existing `gitpod` user: Conflict too, nothing created.
    db.exec("CREATE USER 'gitpod'@'%' IDENTIFIED BY 'someoneElses1'")
        .await;
    let err = provider.ensure(&d, &inputs).await.expect_err("conflict");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err:?}");
    assert!(err.message().contains("DROP USER"), "{err:?}");
    db.connect_as("gitpod", "someoneElses1")
        .await
        .expect("their password untouched");

    // Nothing of it carries a password.
    assert_no_secret(
        &format!("{err:?} {} {provider:?}", err.chain()),
        &[&generated, &db.admin_password],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_trait_with_tls_and_a_private_ca() {
    let db = MariaDb::start_tls().await;
    let provider = SelfManagedDatabase::new(db.config());
    let s = engine(&db, db.config(), "");
    let d = database_spec(&s);
    let generated = Secret::generate_password(32);
    let inputs = Inputs::new(
        Default::default(),
        [(DATABASE_PASSWORD.to_string(), generated.clone())].into(),
    );
    let Progress::Done(Some(out)) = provider.ensure(&d, &inputs).await.expect("ensure") else {
        panic!("no output")
    };
    assert!(matches!(out, Output::Database { ref username, .. } if username == "gitpod"));
    // Re-ensure converges without writes; observe has no drift.
    let before = db.write_counters().await;
    let _ = provider.ensure(&d, &inputs).await.expect("re-ensure");
    assert_eq!(db.write_counters().await, before);
    let o = provider.observe(&d).await.unwrap().expect("observed");
    assert!(o.drift.is_empty(), "{:?}", o.drift);

    // The instance reports the CA for Gitpod.
    let instance = gitpod_refarch::plan::graph(&s.spec)
        .into_iter()
        .find_map(|n| match n.desired {
            Desired::DatabaseInstance(i) => Some(DatabaseResource::Instance(i)),
            _ => None,
        })
        .unwrap();
    let Progress::Done(Some(Output::DatabaseInstance { endpoint, .. })) = provider
        .ensure(&instance, &Inputs::default())
        .await
        .unwrap()
    else {
        panic!("no instance output")
    };
    let json = serde_json::to_value(&endpoint).unwrap();
    assert_eq!(json["caCertificatePem"].as_str(), db.ca_pem.as_deref());

    // A CA that did not sign the server's certificate: refused, not Transient.
    let mut other = db.config();
    other.ca_pem = Some(support::mariadb::unrelated_ca_pem());
    let err = SelfManagedDatabase::new(other)
        .observe(&d)
        .await
        .expect_err("wrong CA");
    assert_eq!(err.kind(), ErrorKind::Precondition, "{err:?}");

    assert!(matches!(
        provider.delete(&d).await.unwrap(),
        Progress::Done(None)
    ));
    assert!(!db.databases().await.contains(&"gitpod".to_string()));

    // Through the engine: the bundle carries `database-ca`, verify checks with it
    // (verifyIdentity) and passes.
    let _ = s
        .engine
        .apply_spec(&s.spec)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let bundle = s.engine.installer_bundle(&s.spec).await.unwrap();
    assert!(bundle.secret("database-ca").is_some());
    let checks = verify(&s).await;
    assert_eq!(checks.len(), 4);
    for c in checks {
        assert!(c.passed(), "{c:#?}");
    }
}
