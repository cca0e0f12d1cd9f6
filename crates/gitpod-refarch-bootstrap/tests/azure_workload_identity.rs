//! Azure DNS with Workload Identity, through the engine against the Kubernetes fake:
//! the simulated cloud's DNS identity reports an [`DnsSolver::AzureDns`] solver (one
//! user-assigned identity for cert-manager, one for external-dns), and the cluster's
//! credentials name no Kubernetes user, as on AKS.
//!
//! Checked: the annotations and labels on exactly the objects that need them,
//! `azure.json` without a credential, no solver Secret in cert-manager's namespace,
//! no cluster-admin binding, a re-apply with no write, drift when an annotation or
//! label is lost (and its repair), the patches surviving a cert-manager reinstall, and
//! every emitted object against the official schemas.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use common::*;
use gitpod_refarch::engine::TokioClock;
use gitpod_refarch::provider::{
    AccessToken, ClusterCredentials, DnsProvider, Inputs, Observed, Operation, Progress,
    ProviderInfo,
};
use gitpod_refarch::resource::{
    CertManagerSpec, Desired, DnsResource, DnsSolver, Output, ResourceKind,
};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::state::MemoryStateStore;
use gitpod_refarch::{Engine, Providers, ReferenceArchitecture};
use gitpod_refarch_bootstrap::api::IDENTITY_FIELD_MANAGER;
use gitpod_refarch_bootstrap::objects::{self, AZURE_CLIENT_ID_ANNOTATION, AZURE_USE_LABEL};
use gitpod_refarch_fake_kube::FakeKube;
use serde_json::{json, Value};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SUBSCRIPTION: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const RESOURCE_GROUP: &str = "gp";
/// cert-manager's identity.
const CM_CLIENT_ID: &str = "11111111-1111-4111-8111-111111111111";
/// external-dns's identity.
const EDNS_CLIENT_ID: &str = "22222222-2222-4222-8222-222222222222";

fn solver() -> DnsSolver {
    serde_json::from_value(json!({
        "type": "azureDns",
        "tenantId": TENANT,
        "subscriptionId": SUBSCRIPTION,
        "resourceGroup": RESOURCE_GROUP,
        "zoneName": "gitpod.example.com",
        "certManagerClientId": CM_CLIENT_ID,
        "externalDnsClientId": EDNS_CLIENT_ID,
    }))
    .unwrap()
}

/// An Azure spec with an ACME issuer.
fn azure_spec() -> ReferenceArchitecture {
    let s = ReferenceArchitecture::from_yaml(&format!(
        "cloud: azure\nname: {NAME}\ndomain: gitpod.example.com\nazure:\n  \
         subscriptionId: {SUBSCRIPTION}\ncertificates:\n  issuer: acme\n  \
         email: ops@example.com\n  \
         server: https://acme-staging-v02.api.letsencrypt.org/directory\n"
    ))
    .unwrap();
    s.validate().unwrap();
    s
}

fn cert_manager_spec(spec: &ReferenceArchitecture) -> CertManagerSpec {
    gitpod_refarch::plan::graph(spec)
        .into_iter()
        .find_map(|n| match n.desired {
            Desired::CertManager(c) => Some(c),
            _ => None,
        })
        .unwrap()
}

/// AKS-style credentials: a bearer token that names no Kubernetes user (the token's
/// subject is an Entra object id AKS maps itself).
#[derive(Debug, Default)]
struct AksCredentials {
    calls: AtomicU64,
}

#[async_trait::async_trait]
impl ClusterCredentials for AksCredentials {
    async fn cluster_token(&self, cluster: &Output) -> gitpod_refarch::Result<AccessToken> {
        assert!(matches!(cluster, Output::Cluster { .. }));
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let token = AccessToken::bearer(
            gitpod_refarch::Secret::new(format!("entra-token-{n}")),
            Some(std::time::SystemTime::now() + std::time::Duration::from_secs(3600)),
        );
        assert!(token.user.is_none());
        Ok(token)
    }
}

/// The simulated cloud's DNS, with the DNS identity reporting `solver` (Azure's two
/// federated identities) instead of the simulator's own.
struct AzureDnsIdentity {
    sim: Arc<SimCloud>,
    solver: DnsSolver,
}

impl AzureDnsIdentity {
    fn swap(&self, output: Output) -> Output {
        match output {
            Output::DnsIdentity { principal, .. } => Output::DnsIdentity {
                principal,
                credentials: None,
                solver: Some(self.solver.clone()),
            },
            other => other,
        }
    }

    fn swap_progress(&self, p: Progress) -> Progress {
        match p {
            Progress::Done(Some(o)) => Progress::Done(Some(self.swap(o))),
            other => other,
        }
    }
}

#[async_trait::async_trait]
impl DnsProvider for AzureDnsIdentity {
    fn info(&self) -> ProviderInfo {
        DnsProvider::info(self.sim.as_ref())
    }

    async fn observe(
        &self,
        resource: &DnsResource,
    ) -> gitpod_refarch::Result<Option<Observed<DnsResource>>> {
        let o = DnsProvider::observe(self.sim.as_ref(), resource).await?;
        Ok(o.map(|mut o| {
            o.output = o.output.map(|out| self.swap(out));
            o
        }))
    }

    async fn ensure(
        &self,
        resource: &DnsResource,
        inputs: &Inputs,
    ) -> gitpod_refarch::Result<Progress> {
        let p = DnsProvider::ensure(self.sim.as_ref(), resource, inputs).await?;
        Ok(self.swap_progress(p))
    }

    async fn delete(&self, resource: &DnsResource) -> gitpod_refarch::Result<Progress> {
        DnsProvider::delete(self.sim.as_ref(), resource).await
    }

    async fn poll(&self, op: &Operation) -> gitpod_refarch::Result<Progress> {
        let p = DnsProvider::poll(self.sim.as_ref(), op).await?;
        Ok(self.swap_progress(p))
    }
}

struct Azure {
    fake: FakeKube,
    engine: Engine,
    spec: ReferenceArchitecture,
}

async fn start() -> Azure {
    let fake = FakeKube::start(fake_config()).await.unwrap();
    let sim = Arc::new(
        SimCloud::new(Arc::new(TokioClock::new()), LatencyProfile::instant())
            .with_cluster_endpoint(fake.url(), fake.ca_pem()),
    );
    let bootstrap = gitpod_refarch_bootstrap::KubeBootstrap::new(
        gitpod_refarch_bootstrap::BootstrapConfig::new(Arc::new(AksCredentials::default()))
            .cert_manager(manifest())
            .delegation(None)
            .poll_interval(std::time::Duration::from_millis(10)),
    );
    let providers = Providers::builder()
        .cluster(sim.clone())
        .dns(Arc::new(AzureDnsIdentity {
            sim: sim.clone(),
            solver: solver(),
        }))
        .object_store(sim.clone())
        .registry(sim.clone())
        .database(sim)
        .in_cluster(Arc::new(bootstrap))
        .build()
        .unwrap();
    let engine = engine_with(
        providers,
        Arc::new(MemoryStateStore::default()),
        Events::default(),
    );
    Azure {
        fake,
        engine,
        spec: azure_spec(),
    }
}

impl Azure {
    fn object(&self, resource: &str, ns: Option<&str>, name: &str) -> Value {
        self.fake
            .object(resource, ns, name)
            .unwrap_or_else(|| panic!("no {resource} {ns:?}/{name}"))
    }

    /// Apply and check that nothing failed.
    async fn apply(&self) -> gitpod_refarch::engine::RunReport {
        let report = self.engine.apply_spec(&self.spec).await.unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        report
    }

    /// A plan with no change, applied with not one write to the cluster.
    async fn assert_reapply_writes_nothing(&self) {
        self.fake.reset_calls();
        let plan = self.engine.plan(&self.spec).await.unwrap();
        assert!(!plan.has_changes(), "{plan}");
        let again = self.engine.apply(&plan).await.unwrap();
        assert!(again.changed.is_empty(), "{:?}", again.changed);
        assert_eq!(self.fake.counts().mutating, 0, "{:?}", self.fake.counts());
    }

    /// A JSON merge patch of one object, as someone editing the cluster would.
    async fn edit(&self, api_version: &str, kind: &str, ns: &str, name: &str, patch: Value) {
        let client = kube_client(&self.fake);
        let (ar, _) = gitpod_refarch_bootstrap::api::resource_for(api_version, kind).unwrap();
        kube::Api::<kube::api::DynamicObject>::namespaced_with(client, ns, &ar)
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .unwrap();
    }
}

fn labels_at(obj: &Value, ptr: &str) -> BTreeMap<String, String> {
    serde_json::from_value(obj.pointer(ptr).cloned().unwrap_or(json!({}))).unwrap()
}

fn args(deployment: &Value) -> Vec<String> {
    serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .unwrap()
}

fn managers(obj: &Value) -> BTreeSet<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str().map(String::from))
        .collect()
}

#[test]
fn the_builders_give_each_controller_its_identity_and_nothing_else() {
    let s = solver();
    // cert-manager: two partial objects, the ServiceAccount first, each with only its
    // name and the annotation or label.
    let patches = objects::cert_manager_identity(&s, "cert-manager").unwrap();
    assert_eq!(
        patches,
        vec![
            json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": "cert-manager",
                    "namespace": "cert-manager",
                    "annotations": {AZURE_CLIENT_ID_ANNOTATION: CM_CLIENT_ID},
                },
            }),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "cert-manager", "namespace": "cert-manager"},
                "spec": {"template": {"metadata": {"labels": {AZURE_USE_LABEL: "true"}}}},
            }),
        ]
    );
    // No solver Secret for cert-manager.
    assert!(objects::solver_secret(&s, "cert-manager")
        .unwrap()
        .is_none());
    // The ClusterIssuer names cert-manager's identity.
    let issuer = gitpod_refarch::installer::dns01_solver(&s);
    assert_eq!(
        issuer["azureDNS"]["managedIdentity"],
        json!({"clientID": CM_CLIENT_ID})
    );
    // Other solvers need no patch of cert-manager's objects.
    let rfc: DnsSolver = serde_json::from_value(json!({
        "type": "rfc2136", "nameserver": "10.0.0.53:53", "tsigKeyName": "k",
        "tsigAlgorithm": "HMACSHA256", "tsigSecret": "c2VjcmV0",
    }))
    .unwrap();
    assert!(objects::cert_manager_identity(&rfc, "cert-manager")
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_dns_runs_cert_manager_and_external_dns_on_workload_identity() {
    let a = start().await;
    let report = a.apply().await;
    let inside: BTreeSet<ResourceKind> = report
        .changed
        .iter()
        .map(|id| id.kind)
        .filter(|k| k.domain() == gitpod_refarch::resource::Domain::InCluster)
        .collect();
    assert!(inside.contains(&ResourceKind::Issuer), "{inside:?}");

    // No cluster-admin binding: the credentials name no user (AKS's rights come from
    // Azure RBAC), and the step wrote nothing.
    assert!(a
        .fake
        .object("clusterrolebindings", None, "cluster-admin-binding")
        .is_none());
    assert!(a
        .fake
        .calls()
        .iter()
        .all(|c| c.verb == "get" || !c.path.ends_with("/cluster-admin-binding")));

    // external-dns: its ServiceAccount annotated with exactly its identity's client id.
    let sa = a.object("serviceaccounts", Some("external-dns"), "external-dns");
    assert_eq!(
        labels_at(&sa, "/metadata/annotations"),
        BTreeMap::from([(AZURE_CLIENT_ID_ANNOTATION.into(), EDNS_CLIENT_ID.into())])
    );
    // Its pods labelled for the webhook (and the Deployment itself not).
    let d = a.object("deployments", Some("external-dns"), "external-dns");
    assert_eq!(
        labels_at(&d, "/spec/template/metadata/labels"),
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "external-dns".into()),
            (AZURE_USE_LABEL.into(), "true".into()),
        ])
    );
    assert!(!labels_at(&d, "/metadata/labels").contains_key(AZURE_USE_LABEL));
    let ar = args(&d);
    for flag in [
        "--provider=azure".to_string(),
        format!("--azure-resource-group={RESOURCE_GROUP}"),
        format!("--azure-subscription-id={SUBSCRIPTION}"),
        "--azure-config-file=/etc/kubernetes/azure.json".into(),
        "--domain-filter=gitpod.example.com".into(),
        format!("--txt-owner-id={NAME}"),
    ] {
        assert!(ar.contains(&flag), "{flag}: {ar:?}");
    }
    assert!(
        d["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none(),
        "no credential in the environment: {d}"
    );
    // azure.json: where the zone is and that Workload Identity is used, no credential.
    let secret = a.object("secrets", Some("external-dns"), "external-dns");
    let keys: Vec<&String> = secret["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["azure.json"]);
    let azure_json: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["azure.json"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        azure_json,
        json!({
            "tenantId": TENANT,
            "subscriptionId": SUBSCRIPTION,
            "resourceGroup": RESOURCE_GROUP,
            "useWorkloadIdentityExtension": true,
        })
    );

    // cert-manager: its controller's ServiceAccount annotated with its own identity,
    // the manifest's fields kept (the patch has a field manager of its own).
    let cm_sa = a.object("serviceaccounts", Some("cert-manager"), "cert-manager");
    assert_eq!(
        labels_at(&cm_sa, "/metadata/annotations"),
        BTreeMap::from([(AZURE_CLIENT_ID_ANNOTATION.into(), CM_CLIENT_ID.into())])
    );
    // The identity's manager owns the annotation. (The test manifest's ServiceAccount
    // sets no field but its name, so `gitpod-refarch` owns nothing there and, as on
    // a real API server, has no managedFields entry; the real manifest's labels
    // would give it one.)
    assert_eq!(
        managers(&cm_sa),
        BTreeSet::from([IDENTITY_FIELD_MANAGER.into()])
    );
    let owned = cm_sa["metadata"]["managedFields"][0]["fieldsV1"].clone();
    assert!(
        owned["f:metadata"]["f:annotations"]
            .get(format!("f:{AZURE_CLIENT_ID_ANNOTATION}"))
            .is_some(),
        "{owned}"
    );
    let controller = a.object("deployments", Some("cert-manager"), "cert-manager");
    assert_eq!(
        labels_at(&controller, "/spec/template/metadata/labels"),
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "controller".into()),
            (AZURE_USE_LABEL.into(), "true".into()),
        ])
    );
    assert!(managers(&controller).contains(IDENTITY_FIELD_MANAGER));
    let ca = args(&controller);
    assert!(
        ca.contains(&"--dns01-recursive-nameservers=8.8.8.8:53,1.1.1.1:53".to_string()),
        "the manifest's controller is intact: {ca:?}"
    );
    assert_eq!(
        controller["metadata"]["labels"]["app.kubernetes.io/version"],
        "v1.18.2"
    );
    // Only the controller: the cainjector and the webhook do not talk to Azure.
    for other in ["cert-manager-cainjector", "cert-manager-webhook"] {
        let sa = a.object("serviceaccounts", Some("cert-manager"), other);
        assert!(sa["metadata"].get("annotations").is_none(), "{other}: {sa}");
        let d = a.object("deployments", Some("cert-manager"), other);
        assert!(
            !labels_at(&d, "/spec/template/metadata/labels").contains_key(AZURE_USE_LABEL),
            "{other}"
        );
    }
    // No solver Secret in cert-manager's namespace (nor any Secret at all: the fake's
    // cert-manager makes no ACME account key).
    let cm_secrets: Vec<String> = a
        .fake
        .objects("secrets")
        .iter()
        .filter(|s| s["metadata"]["namespace"] == "cert-manager")
        .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(cm_secrets.is_empty(), "{cm_secrets:?}");
    // The ClusterIssuer: Azure DNS with cert-manager's identity, no secret reference.
    let issuer = a.object("clusterissuers", None, "gitpod-issuer");
    assert_eq!(
        issuer["spec"]["acme"]["solvers"][0]["dns01"],
        json!({"azureDNS": {
            "subscriptionID": SUBSCRIPTION,
            "resourceGroupName": RESOURCE_GROUP,
            "hostedZoneName": "gitpod.example.com",
            "environment": "AzurePublicCloud",
            "managedIdentity": {"clientID": CM_CLIENT_ID},
        }})
    );
    // Every workload identity write used the identity's field manager, and only the
    // two cert-manager patches did.
    let identity_writes: Vec<String> = a
        .fake
        .calls()
        .iter()
        .filter(|c| {
            c.query
                .iter()
                .any(|(k, v)| k == "fieldManager" && v == IDENTITY_FIELD_MANAGER)
        })
        .map(|c| format!("{} {}", c.verb, c.path))
        .collect();
    assert_eq!(
        identity_writes,
        [
            "apply /api/v1/namespaces/cert-manager/serviceaccounts/cert-manager",
            "apply /apis/apps/v1/namespaces/cert-manager/deployments/cert-manager",
        ]
    );

    // Re-apply: not one write.
    a.assert_reapply_writes_nothing().await;
    a.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_workload_identity_annotation_or_label_is_drift_and_is_repaired() {
    let a = start().await;
    let _ = a.apply().await;

    // Someone removes cert-manager's annotation and external-dns's pod label.
    a.edit(
        "v1",
        "ServiceAccount",
        "cert-manager",
        "cert-manager",
        json!({"metadata": {"annotations": {AZURE_CLIENT_ID_ANNOTATION: null}}}),
    )
    .await;
    a.edit(
        "apps/v1",
        "Deployment",
        "external-dns",
        "external-dns",
        json!({"spec": {"template": {"metadata": {"labels": {AZURE_USE_LABEL: null}}}}}),
    )
    .await;
    let plan = a.engine.plan(&a.spec).await.unwrap();
    let changed: BTreeSet<ResourceKind> = plan
        .steps()
        .iter()
        .filter(|st| st.action.is_mutating())
        .map(|st| st.id.kind)
        .collect();
    assert_eq!(
        changed,
        BTreeSet::from([ResourceKind::Issuer, ResourceKind::ExternalDns]),
        "{plan}"
    );
    let printed = plan.to_string();
    for named in [
        "ServiceAccount/cert-manager/cert-manager lacks annotation azure.workload.identity/client-id",
        "Deployment/external-dns/external-dns lacks pod template label azure.workload.identity/use",
    ] {
        assert!(printed.contains(named), "{named}: {plan}");
    }
    let fixed = a.engine.apply(&plan).await.unwrap();
    assert!(fixed.failed.is_empty(), "{:?}", fixed.failed);
    let cm_sa = a.object("serviceaccounts", Some("cert-manager"), "cert-manager");
    assert_eq!(
        cm_sa["metadata"]["annotations"][AZURE_CLIENT_ID_ANNOTATION],
        CM_CLIENT_ID
    );
    let d = a.object("deployments", Some("external-dns"), "external-dns");
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"][AZURE_USE_LABEL],
        "true"
    );
    a.assert_reapply_writes_nothing().await;

    // Another client id on external-dns's ServiceAccount is drift too.
    a.edit(
        "v1",
        "ServiceAccount",
        "external-dns",
        "external-dns",
        json!({"metadata": {"annotations": {AZURE_CLIENT_ID_ANNOTATION: CM_CLIENT_ID}}}),
    )
    .await;
    let plan = a.engine.plan(&a.spec).await.unwrap();
    assert!(
        plan.to_string().contains(
            "ServiceAccount/external-dns/external-dns lacks annotation azure.workload.identity/client-id"
        ),
        "{plan}"
    );
    let fixed = a.engine.apply(&plan).await.unwrap();
    assert!(fixed.failed.is_empty(), "{:?}", fixed.failed);
    let sa = a.object("serviceaccounts", Some("external-dns"), "external-dns");
    assert_eq!(
        sa["metadata"]["annotations"][AZURE_CLIENT_ID_ANNOTATION],
        EDNS_CLIENT_ID
    );
    a.assert_reapply_writes_nothing().await;

    // cert-manager installed again from its manifest (a Deployment lost): the manifest's
    // apply does not take the identity patches away.
    a.fake.reset_calls();
    let client = kube_client(&a.fake);
    kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client, "cert-manager")
        .delete("cert-manager-cainjector", &Default::default())
        .await
        .unwrap();
    let report = a.apply().await;
    assert!(
        report
            .changed
            .iter()
            .any(|id| id.kind == ResourceKind::CertManager),
        "{:?}",
        report.changed
    );
    let cm_sa = a.object("serviceaccounts", Some("cert-manager"), "cert-manager");
    assert_eq!(
        cm_sa["metadata"]["annotations"][AZURE_CLIENT_ID_ANNOTATION],
        CM_CLIENT_ID
    );
    let controller = a.object("deployments", Some("cert-manager"), "cert-manager");
    assert_eq!(
        controller["spec"]["template"]["metadata"]["labels"][AZURE_USE_LABEL],
        "true"
    );
    a.assert_reapply_writes_nothing().await;
    a.fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_of_an_azure_run_matches_the_official_schemas() {
    let a = start().await;
    let _ = a.apply().await;
    let cm = cert_manager_spec(&a.spec);
    // The last body per object and field manager; the identity patches as the server
    // holds them, over the release's objects.
    let mut whole: BTreeMap<String, Value> = BTreeMap::new();
    let mut patches: BTreeMap<String, Value> = BTreeMap::new();
    for call in a.fake.calls() {
        if call.verb != "apply" {
            continue;
        }
        let body = call.body.clone().unwrap();
        let key = gitpod_refarch_bootstrap::api::describe(&body);
        let identity = call
            .query
            .iter()
            .any(|(k, v)| k == "fieldManager" && v == IDENTITY_FIELD_MANAGER);
        if identity {
            patches.insert(key, body);
        } else {
            whole.insert(key, body);
        }
    }
    a.fake.shutdown().await;
    assert_eq!(
        patches.keys().collect::<Vec<_>>(),
        [
            "Deployment/cert-manager/cert-manager",
            "ServiceAccount/cert-manager/cert-manager"
        ]
    );
    let mut all: Vec<Value> = Vec::new();
    for (key, patch) in &patches {
        let base = whole
            .remove(key)
            .unwrap_or_else(|| over_manifest(&cm, patch));
        all.push(merged(&base, patch));
    }
    all.extend(whole.into_values());
    let kinds: BTreeSet<String> = all
        .iter()
        .map(|v| v["kind"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "ClusterIssuer",
        "Deployment",
        "Secret",
        "ServiceAccount",
        "Certificate",
    ] {
        assert!(kinds.contains(k), "the run applied no {k}: {kinds:?}");
    }
    let (code, out) = validate(&all, "azure");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("validated {} objects", all.len())),
        "{out}"
    );
    // The partial Deployment alone is not a Deployment: merged it is.
    let alone = patches["Deployment/cert-manager/cert-manager"].clone();
    let (code, out) = validate(&[alone], "azure-partial");
    assert_eq!(code, 1, "{out}");
}
