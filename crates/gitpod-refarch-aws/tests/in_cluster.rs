//! EKS end to end with the inside of the cluster, on moto and fake-kube: the test
//! proxy in front of moto answers EKS's `DescribeCluster`/`CreateCluster` with
//! fake-kube's `https://` URL and base64 CA as the cluster's endpoint and
//! certificate authority, and fake-kube accepts only EKS tokens for the cluster,
//! presigned for moto's STS with moto's credentials. The bootstrap (kube-rs) gets its
//! tokens from the AWS provider (`ClusterCredentials`) and its DNS-01 solver and
//! external-dns settings from the Route53 identity's output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use gitpod_refarch::engine::{RetryPolicy, TokioClock, WaitPolicy};
use gitpod_refarch::resource::{DnsSolver, Output};
use gitpod_refarch::spec::{Cloud, RecordsTarget, ReferenceArchitecture};
use gitpod_refarch::state::{MemoryStateStore, StateStore};
use gitpod_refarch::{Engine, Providers, Secret};
use gitpod_refarch_aws::{AwsConfig, AwsProvider};
use gitpod_refarch_bootstrap::{BootstrapConfig, CertManagerSource, KubeBootstrap, Manifest};
use gitpod_refarch_fake_kube::{Auth, EksAuth, FakeConfig, FakeKube};
use serde_json::json;
use support::{leaks, sdk_config, FaultProxy, Moto};

fn spec() -> ReferenceArchitecture {
    ReferenceArchitecture::builder(Cloud::Aws)
        .name("gp")
        .domain("gitpod.example.com")
        .acme_email("ops@example.com")
        .records_target(RecordsTarget::Ipv4("203.0.113.10".into()))
        .build()
        .unwrap()
}

fn config(url: &str) -> AwsConfig {
    AwsConfig::new("eu-west-1")
        .endpoint_url(url)
        .static_credentials("testing", Secret::new("testing".into()))
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(5))
        .poll_interval(Duration::from_millis(20))
}

fn manifest() -> CertManagerSource {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../gitpod-refarch-bootstrap/tests/data/cert-manager-test.yaml");
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .unwrap();
    let sha = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    CertManagerSource::Manifest(Manifest::new(format!("file://{}", path.display()), sha))
}

/// fake-kube as the cluster `gp`'s API server: EKS tokens only, signature checked
/// with moto's `testing` credentials, presigned for the proxy (the provider's STS).
async fn kube(sts: &str) -> FakeKube {
    let ms = Duration::from_millis;
    let auth = EksAuth::new("gp")
        .with_sts_endpoint(sts)
        .with_credentials("testing", "testing");
    FakeKube::start(
        FakeConfig::default()
            .with_auth(Auth::Eks(auth))
            .with_crd_established_delay(ms(20))
            .with_deployment_ready_delay(ms(20))
            .with_webhook_ready_delay(ms(40))
            .with_certificate_ready_delay(ms(20))
            .with_namespace_delete_delay(ms(20))
            .with_lb_delete_delay(ms(300)),
    )
    .await
    .unwrap()
}

fn engine(p: Arc<AwsProvider>, store: Arc<MemoryStateStore>) -> Engine {
    let bootstrap = KubeBootstrap::new(
        BootstrapConfig::new(p.clone())
            .cert_manager(manifest())
            .delegation(None)
            .poll_interval(Duration::from_millis(5)),
    );
    Engine::builder(Providers::all(p).with_in_cluster(Arc::new(bootstrap)))
        .state(store)
        .retry(RetryPolicy::local())
        .wait(WaitPolicy::local())
        .build()
        .unwrap()
}

/// Every object of the kinds the bootstrap touches, as `kind ns/name`.
fn inventory(k: &FakeKube) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for kind in [
        "namespaces",
        "secrets",
        "configmaps",
        "serviceaccounts",
        "services",
        "deployments",
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
        "customresourcedefinitions",
        "validatingwebhookconfigurations",
        "mutatingwebhookconfigurations",
    ] {
        for o in k.objects(kind) {
            let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
            let name = o["metadata"]["name"].as_str().unwrap_or("?");
            all.insert(format!("{kind} {ns}/{name}"));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_on_moto_bootstraps_its_cluster_on_fake_kube_and_tears_it_down() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.url).await;
    let k = Arc::new(kube(&proxy.url).await);
    proxy.set_eks_endpoint(&k.url(), &k.ca_pem());
    // AWS refuses to delete a VPC while a load balancer's interfaces are in it.
    let lbs = Arc::clone(&k);
    proxy.set_dependency_guard(move || lbs.cloud_load_balancers() > 0);
    let before = inventory(&k);

    let p = Arc::new(AwsProvider::connect(config(&proxy.url)).await.unwrap());
    let store = Arc::new(MemoryStateStore::new());
    let e = engine(p.clone(), store.clone());
    let s = spec();

    let report = e.apply_spec(&s).await.unwrap();
    assert!(report.failed.is_empty(), "{:#?}", report.failed);

    // The cluster's output is EKS-shaped, with fake-kube behind it.
    let state = store.load().await.unwrap().unwrap().state;
    let cluster = state
        .outputs
        .values()
        .find(|o| matches!(o, Output::Cluster { .. }))
        .unwrap()
        .clone();
    let Output::Cluster {
        endpoint,
        ca_certificate_pem,
        ..
    } = &cluster
    else {
        unreachable!()
    };
    assert_eq!(endpoint, &k.url());
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    assert_eq!(ca_certificate_pem, &k.ca_pem());

    // Cluster access: the caller (moto's user, from the presigned token's identity)
    // is bound to cluster-admin.
    let binding = k
        .object("clusterrolebindings", None, "cluster-admin-binding")
        .unwrap();
    assert_eq!(binding["roleRef"]["name"], "cluster-admin");
    assert_eq!(binding["subjects"][0]["kind"], "User");
    assert_eq!(
        binding["subjects"][0]["name"],
        p.context().caller_arn.as_str()
    );

    // cert-manager's DNS-01 solver is Route53 in the zone, with the DNS user's key.
    let (region, zone, key_id, secret_key) = state
        .outputs
        .values()
        .find_map(|o| match o {
            Output::DnsIdentity {
                solver:
                    Some(DnsSolver::Route53 {
                        region,
                        hosted_zone_id,
                        access_key_id,
                        secret_access_key,
                    }),
                ..
            } => Some((
                region.clone(),
                hosted_zone_id.clone(),
                access_key_id.clone(),
                secret_access_key.expose().clone(),
            )),
            _ => None,
        })
        .expect("a Route53 DNS identity");
    assert_eq!(region, "eu-west-1");
    assert!(key_id.starts_with("AKIA"), "{key_id}");
    let issuer = k.object("clusterissuers", None, "gitpod-issuer").unwrap();
    assert_eq!(issuer["spec"]["acme"]["email"], "ops@example.com");
    let solvers = issuer["spec"]["acme"]["solvers"].as_array().unwrap();
    assert_eq!(solvers.len(), 1, "{solvers:?}");
    assert_eq!(
        solvers[0]["dns01"],
        json!({"route53": {
            "region": "eu-west-1",
            "hostedZoneID": zone,
            "accessKeyID": key_id,
            "secretAccessKeySecretRef": {"name": "route53-credentials", "key": "secret-access-key"},
        }})
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let solver_secret = k
        .object("secrets", Some("cert-manager"), "route53-credentials")
        .unwrap();
    assert_eq!(solver_secret["data"]["secret-access-key"], b64(&secret_key));
    // The zone is the one moto holds for the domain, and the key is the DNS user's.
    let sdk = sdk_config(&moto.url).await;
    let zone_in_moto = aws_sdk_route53::Client::new(&sdk)
        .get_hosted_zone()
        .id(&zone)
        .send()
        .await
        .unwrap();
    assert_eq!(
        zone_in_moto.hosted_zone().unwrap().name(),
        "gitpod.example.com."
    );
    let keys = aws_sdk_iam::Client::new(&sdk)
        .list_access_keys()
        .user_name("gp-dns")
        .send()
        .await
        .unwrap();
    assert!(keys
        .access_key_metadata()
        .iter()
        .any(|m| m.access_key_id() == Some(key_id.as_str())));

    // external-dns for AWS, limited to the zone, with the same key.
    let edns = k
        .object("deployments", Some("external-dns"), "external-dns")
        .unwrap();
    let container = &edns["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"].to_string();
    for arg in [
        "--provider=aws".to_string(),
        "--aws-zone-type=public".to_string(),
        format!("--zone-id-filter={zone}"),
        "--txt-owner-id=gp".to_string(),
    ] {
        assert!(args.contains(&arg), "{arg} not in {args}");
    }
    let env: BTreeMap<String, serde_json::Value> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    assert_eq!(env["AWS_ACCESS_KEY_ID"]["value"], key_id.as_str());
    assert_eq!(env["AWS_DEFAULT_REGION"]["value"], "eu-west-1");
    assert_eq!(
        env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"],
        json!({"name": "external-dns", "key": "secret-access-key"})
    );
    let edns_secret = k
        .object("secrets", Some("external-dns"), "external-dns")
        .unwrap();
    assert_eq!(edns_secret["data"]["secret-access-key"], b64(&secret_key));

    // The Gitpod namespace with the installer's secrets, and the certificate.
    for name in ["database", "storage-s3", "container-registry-s3-backend"] {
        let secret = k.object("secrets", Some("gitpod"), name);
        assert!(secret.is_some(), "no secret gitpod/{name}");
    }
    let database = k.object("secrets", Some("gitpod"), "database").unwrap();
    let host = base64::engine::general_purpose::STANDARD
        .decode(database["data"]["host"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8(host).unwrap().contains("gp-mysql"));
    let cert = k
        .object("certificates", Some("gitpod"), "https-certificates")
        .unwrap();
    assert_eq!(cert["spec"]["issuerRef"]["name"], "gitpod-issuer");
    let dns_names = cert["spec"]["dnsNames"].to_string();
    assert!(dns_names.contains("gitpod.example.com"), "{dns_names}");

    // Again: nothing to do in the cloud or in the cluster.
    proxy.reset_counts();
    k.reset_calls();
    let again = e.apply_spec(&s).await.unwrap();
    assert!(again.failed.is_empty(), "{:#?}", again.failed);
    assert!(again.changed.is_empty(), "{:?}", again.changed);
    assert_eq!(proxy.counts().mutating, 0, "{:?}", proxy.counts().by_action);
    assert_eq!(k.counts().mutating, 0, "{:?}", k.counts());

    // What Gitpod's installer adds: a LoadBalancer Service, whose cloud load balancer
    // outlives its DELETE (fake-kube's lb_delete_delay).
    let client = gitpod_refarch_bootstrap::access::connect(&cluster, p.clone())
        .await
        .unwrap();
    let api = gitpod_refarch_bootstrap::api::KubeApi::new(
        client,
        Arc::new(TokioClock::new()),
        gitpod_refarch_bootstrap::api::call_retry_policy(),
    );
    gitpod_refarch_bootstrap::api::apply_as(
        &api,
        &json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "proxy", "namespace": "gitpod"},
            "spec": {"type": "LoadBalancer", "selector": {"component": "proxy"},
                     "ports": [{"name": "https", "port": 443}]},
        }),
        "gitpod-installer",
    )
    .await
    .unwrap();
    assert_eq!(k.cloud_load_balancers(), 1);

    // Destroy: the load balancer is gone before the network is deleted (no network
    // delete was refused), and nothing is left in moto or in the cluster.
    let gone = e.destroy(&s).await.unwrap();
    assert!(gone.failed.is_empty(), "{:#?}", gone.failed);
    assert_eq!(proxy.dependency_violations(), 0);
    assert_eq!(k.cloud_load_balancers(), 0);
    let left = leaks(&sdk).await;
    assert!(left.is_empty(), "leaked in moto: {left:#?}");
    let after = inventory(&k);
    let added: Vec<&String> = after.difference(&before).collect();
    let removed: Vec<&String> = before.difference(&after).collect();
    assert!(added.is_empty(), "left in fake-kube: {added:#?}");
    assert!(removed.is_empty(), "removed from fake-kube: {removed:#?}");
    assert!(k.objects("clusterissuers").is_empty());
    // And again: safe.
    let twice = e.destroy(&s).await.unwrap();
    assert!(twice.failed.is_empty(), "{:#?}", twice.failed);

    // The guard does answer for AWS: while a load balancer holds the network, a
    // VPC delete is EC2's DependencyViolation (so a destroy that deleted the VPC
    // first would have counted violations above).
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&proxy.url).await);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    proxy.set_dependency_guard(|| true);
    let err = ec2.delete_vpc().vpc_id(&vpc).send().await.unwrap_err();
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("DependencyViolation")
    );
    assert_eq!(proxy.dependency_violations(), 1);
    proxy.set_dependency_guard(|| false);
    ec2.delete_vpc().vpc_id(&vpc).send().await.unwrap();
}
