//! Every object the bootstrap emits, validated against the official schemas: the
//! npm packages `kubernetes-models` (Kubernetes' OpenAPI) and
//! `@kubernetes-models/cert-manager` (cert-manager's CRD schemas), through
//! `scripts/validate-k8s.mjs`. `scripts/install-k8s-models.sh` installs them (the test
//! command runs it first).
//!
//! The objects are the exact bodies of the server-side applies of a whole run against
//! the Kubernetes fake, plus the builders' output for the solvers that run does not use
//! (Cloud DNS with a key and with Workload Identity, Route53, Azure DNS); the workload
//! identity patches of cert-manager's objects, which are partial, as merged over the
//! release's objects. `azure_workload_identity.rs` checks an Azure run's the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::*;
use gitpod_refarch::resource::{CertManagerSpec, DnsSolver};
use gitpod_refarch::Secret;
use gitpod_refarch_bootstrap::objects;
use serde_json::Value;

fn cert_manager_spec(spec: &gitpod_refarch::ReferenceArchitecture) -> CertManagerSpec {
    gitpod_refarch::plan::graph(spec)
        .into_iter()
        .find_map(|n| match n.desired {
            gitpod_refarch::resource::Desired::CertManager(c) => Some(c),
            _ => None,
        })
        .unwrap()
}

fn solvers() -> Vec<DnsSolver> {
    let secret = || Secret::new("{\"type\":\"service_account\"}".into());
    serde_json::from_value::<Vec<DnsSolver>>(serde_json::json!([
        {"type": "cloudDns", "project": "p", "serviceAccount": "dns-sa-gp@p.iam.gserviceaccount.com", "key": null},
        {"type": "route53", "region": "eu-west-1", "hostedZoneId": "Z123", "accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "s3cr3t"},
        {"type": "azureDns", "tenantId": "t", "subscriptionId": "s", "resourceGroup": "rg", "zoneName": "gitpod.example.com", "certManagerClientId": "c", "externalDnsClientId": "e"},
    ]))
    .unwrap()
    .into_iter()
    .chain(std::iter::once(DnsSolver::CloudDns {
        project: "p".into(),
        service_account: "dns-sa-gp@p.iam.gserviceaccount.com".into(),
        key: Some(secret()),
    }))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emitted_object_matches_the_official_schemas() {
    let s = Setup::start(fake_config(), manifest()).await;
    let spec = spec();
    let report = s.engine.apply_spec(&spec).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // What the run sent, exactly (the last body per object).
    let mut sent: BTreeMap<String, Value> = BTreeMap::new();
    for call in s.fake.calls() {
        if call.verb == "apply" {
            let body = call.body.clone().unwrap();
            sent.insert(gitpod_refarch_bootstrap::api::describe(&body), body);
        }
    }
    s.fake.shutdown().await;
    let kinds: std::collections::BTreeSet<String> = sent
        .values()
        .map(|v| v["kind"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "ClusterRoleBinding",
        "ClusterRole",
        "CustomResourceDefinition",
        "Deployment",
        "Namespace",
        "Secret",
        "ServiceAccount",
        "ClusterIssuer",
        "Certificate",
    ] {
        assert!(kinds.contains(k), "the run applied no {k}: {kinds:?}");
    }

    // The other solvers' objects, as the builders make them.
    let mut all: Vec<Value> = sent.into_values().collect();
    let edns = {
        let mut d = gitpod_refarch::plan::graph(&spec)
            .into_iter()
            .find_map(|n| match n.desired {
                gitpod_refarch::resource::Desired::ExternalDns(e) => Some(e),
                _ => None,
            })
            .unwrap();
        d.txt_owner_id = "gp".into();
        d
    };
    let issuer = gitpod_refarch::plan::graph(&spec)
        .into_iter()
        .find_map(|n| match n.desired {
            gitpod_refarch::resource::Desired::Issuer(i) => Some(i),
            _ => None,
        })
        .unwrap();
    for solver in solvers() {
        all.extend(objects::external_dns_objects(&edns, &solver).unwrap());
        all.extend(objects::solver_secret(&solver, "cert-manager").unwrap());
        // Partial objects (workload identity patches): as the server holds them over
        // the release's objects.
        let cm = cert_manager_spec(&spec);
        all.extend(
            objects::cert_manager_identity(&solver, "cert-manager")
                .unwrap()
                .iter()
                .map(|p| over_manifest(&cm, p)),
        );
        all.push(objects::issuer(&issuer, Some(&solver)));
    }

    let (code, out) = validate(&all, "emitted");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("validated {} objects", all.len())),
        "{out}"
    );
    println!("{}", out.lines().last().unwrap_or_default());

    // The validator does catch a wrong shape (so a pass above means something).
    let mut broken = all
        .iter()
        .find(|o| o["kind"] == "Certificate")
        .unwrap()
        .clone();
    broken["spec"]["dnsNames"] = Value::from("gitpod.example.com");
    let mut no_selector = all
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap()
        .clone();
    no_selector["spec"]
        .as_object_mut()
        .unwrap()
        .remove("selector");
    let (code, out) = validate(&[broken, no_selector], "broken");
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("invalid ")).count(),
        2,
        "{out}"
    );
}
