//! Every choice of every tagged enum of the spec, written as a user writes it (YAML),
//! loads, validates, plans and applies on the simulated cloud, and renders the
//! installer config it implies; bring-your-own certificates among them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use gitpod_refarch::resource::ResourceKind;
use gitpod_refarch::sim::LatencyProfile;
use gitpod_refarch::spec::{
    CertificateSettings, RecordsTarget, ReferenceArchitecture, RegistryMode,
};

fn tls(file: &str) -> String {
    format!("{}/tests/data/tls/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn cloud_section(cloud: &str) -> &'static str {
    match cloud {
        "gcp" => "gcp: {project: my-project-123}\n",
        "azure" => "azure: {subscriptionId: 0f8fad5b-d9cb-469f-a165-70867728950e}\n",
        _ => "",
    }
}

/// The YAML of every combination: cloud x certificates x recordsTarget x registry mode.
fn documents() -> Vec<(String, String)> {
    let certs = [
        ("acme", "certificates: {issuer: acme, email: ops@example.com}\n".to_string()),
        (
            "acme-staging",
            "certificates:\n  issuer: acme\n  email: ops@example.com\n  server: https://acme-staging-v02.api.letsencrypt.org/directory\n".to_string(),
        ),
        (
            "byo-secret",
            "certificates: {issuer: bringYourOwn, secretName: my-tls}\n".to_string(),
        ),
        (
            "byo-files",
            format!(
                "certificates:\n  issuer: bringYourOwn\n  secretName: https-certificates\n  certificateFile: {}\n  keyFile: {}\n",
                tls("chain.pem"),
                tls("leaf.key")
            ),
        ),
    ];
    let targets = [
        ("no-target", ""),
        ("ipv4", "dns: {recordsTarget: {ipv4: 203.0.113.10}}\n"),
        (
            "hostname",
            "dns: {zone: example.com, recordsTarget: {hostname: lb.example.net}}\n",
        ),
    ];
    let registries = [
        ("managed", "registry: {mode: managed}\n"),
        ("in-cluster", "registry: {mode: inClusterObjectStorage}\n"),
    ];
    let mut out = Vec::new();
    for cloud in ["gcp", "aws", "azure"] {
        for (c, cy) in &certs {
            for (t, ty) in targets {
                for (r, ry) in registries {
                    let name = format!("{cloud}/{c}/{t}/{r}");
                    let yaml = format!(
                        "cloud: {cloud}\nname: gp\ndomain: gitpod.example.com\n{}{cy}{ty}{ry}",
                        cloud_section(cloud)
                    );
                    out.push((name, yaml));
                }
            }
        }
    }
    out
}

#[test]
fn every_choice_loads_as_written() {
    let docs = documents();
    assert_eq!(docs.len(), 3 * 4 * 3 * 2);
    for (name, yaml) in docs {
        let spec = ReferenceArchitecture::from_yaml(&yaml)
            .unwrap_or_else(|e| panic!("[{name}] does not load:\n{e}\n{yaml}"));
        if let Err(e) = spec.validate() {
            panic!("[{name}] invalid:\n{e}\n{yaml}");
        }
        // What was written is what was loaded.
        match (name.split('/').nth(1).unwrap(), &spec.certificates) {
            ("acme", CertificateSettings::Acme { server, .. }) => {
                assert_eq!(server, gitpod_refarch::spec::LETS_ENCRYPT_PRODUCTION)
            }
            ("acme-staging", CertificateSettings::Acme { server, .. }) => {
                assert!(server.contains("staging"), "[{name}]")
            }
            (
                "byo-secret",
                CertificateSettings::BringYourOwn {
                    secret_name,
                    certificate_file,
                    ..
                },
            ) => {
                assert_eq!(secret_name, "my-tls");
                assert!(certificate_file.is_none());
            }
            ("byo-files", CertificateSettings::BringYourOwn { key_file, .. }) => {
                assert!(key_file.is_some(), "[{name}]")
            }
            (c, other) => panic!("[{name}] {c} loaded as {other:?}"),
        }
        match (name.split('/').nth(2).unwrap(), spec.dns.records_target()) {
            ("no-target", None)
            | ("ipv4", Some(RecordsTarget::Ipv4(_)))
            | ("hostname", Some(RecordsTarget::Hostname(_))) => {}
            (t, other) => panic!("[{name}] {t} loaded as {other:?}"),
        }
        match (
            name.split('/').nth(3).unwrap(),
            spec.registry.cloud().unwrap().mode,
        ) {
            ("managed", RegistryMode::Managed)
            | ("in-cluster", RegistryMode::InClusterObjectStorage) => {}
            (r, other) => panic!("[{name}] {r} loaded as {other:?}"),
        }
        // And it survives a round trip through YAML and JSON.
        assert_eq!(
            ReferenceArchitecture::from_yaml(&spec.to_yaml().unwrap()).unwrap(),
            spec,
            "[{name}]"
        );
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            ReferenceArchitecture::from_json(&json).unwrap(),
            spec,
            "[{name}]"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn every_choice_plans_and_applies_on_the_simulated_cloud() {
    for (name, yaml) in documents() {
        let spec = ReferenceArchitecture::from_yaml(&yaml).unwrap();
        let h = common::Harness::new(LatencyProfile::instant());
        let engine = h.engine();
        let plan = engine
            .plan(&spec)
            .await
            .unwrap_or_else(|e| panic!("[{name}] {}", e.chain()));
        let byo = matches!(spec.certificates, CertificateSettings::BringYourOwn { .. });
        let kinds: Vec<ResourceKind> = plan.steps().iter().map(|s| s.id.kind).collect();
        // BYO: no issuer and no Certificate for cert-manager to issue.
        assert_eq!(
            kinds.contains(&ResourceKind::Issuer),
            !byo,
            "[{name}] {kinds:?}"
        );
        assert_eq!(
            kinds.contains(&ResourceKind::Certificate),
            !byo,
            "[{name}] {kinds:?}"
        );
        let report = engine.apply(&plan).await.unwrap();
        assert!(report.is_success(), "[{name}] {:?}", report.failed);
        let again = engine.plan(&spec).await.unwrap();
        assert!(
            !again.has_changes(),
            "[{name}] a second plan has changes:\n{again}"
        );
        let bundle = engine.installer_bundle(&spec).await.unwrap();
        let cert = &bundle.config["certificate"];
        match &spec.certificates {
            CertificateSettings::BringYourOwn { secret_name, .. } => {
                assert_eq!(
                    cert,
                    &serde_json::json!({"kind": "secret", "name": secret_name}),
                    "[{name}]"
                );
                assert!(bundle.cert_manager.is_empty(), "[{name}]");
            }
            _ => {
                assert_eq!(
                    cert,
                    &serde_json::json!({"kind": "secret", "name": "https-certificates"}),
                    "[{name}]"
                );
                assert_eq!(bundle.cert_manager.len(), 2, "[{name}]");
            }
        }
        // No key material in the config, the plan or the events.
        let key = std::fs::read_to_string(tls("leaf.key")).unwrap();
        let line = key.lines().nth(1).unwrap();
        let shown = format!(
            "{}\n{plan}\n{:?}",
            bundle.config_yaml().unwrap(),
            h.events()
        );
        assert!(!shown.contains(line), "[{name}] key material shown");
        let destroyed = engine.destroy(&spec).await.unwrap();
        assert!(destroyed.is_success(), "[{name}]");
    }
}
