//! LoadBalancer Services: an ingress IP, then a lingering delete.

use std::time::{Duration, Instant};

use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::DeleteParams;
use kube::Api;
use serde_json::json;

use crate::{apply_json, client, eventually, namespace};

fn lb(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "gitpod"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "proxy"}, "ports": [{"name": "https", "port": 443}]},
    })
}

#[tokio::test]
async fn a_load_balancer_outlives_its_delete_for_the_delay() {
    let fake = FakeKube::start(
        FakeConfig::default()
            .with_lb_provision_delay(Duration::from_millis(50))
            .with_lb_delete_delay(Duration::from_millis(300))
            .with_namespace_delete_delay(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let client = client(&fake);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    apply_json(&namespaces, namespace("gitpod")).await.unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "gitpod");
    let svc = apply_json(&services, lb("proxy")).await.unwrap();
    let spec = svc.spec.clone().unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("10.96."));
    assert!(spec.ports.unwrap()[0].node_port.is_some());
    assert_eq!(
        svc.metadata.finalizers.as_deref(),
        Some(&["service.kubernetes.io/load-balancer-cleanup".to_string()][..])
    );
    assert_eq!(fake.cloud_load_balancers(), 1);
    let ip = eventually("ingress IP", || async {
        let s = services.get("proxy").await.unwrap();
        s.status?.load_balancer?.ingress?.first()?.ip.clone()
    })
    .await;
    assert!(ip.starts_with("203.0.113."), "{ip}");

    let started = Instant::now();
    let deleted = services
        .delete("proxy", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("the Service lingers");
    assert!(deleted.metadata.deletion_timestamp.is_some());
    assert!(services.get_opt("proxy").await.unwrap().is_some());
    assert_eq!(fake.cloud_load_balancers(), 1);
    eventually("service gone", || async {
        services
            .get_opt("proxy")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.cloud_load_balancers(), 0);

    // Deleting the namespace first: it stays Terminating until its LB is released.
    apply_json(&services, lb("proxy2")).await.unwrap();
    assert_eq!(fake.cloud_load_balancers(), 1);
    namespaces
        .delete("gitpod", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let ns = namespaces.get("gitpod").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let svc = services.get("proxy2").await.unwrap();
    assert!(svc.metadata.deletion_timestamp.is_some());
    assert_eq!(fake.cloud_load_balancers(), 1);
    eventually("namespace gone", || async {
        namespaces
            .get_opt("gitpod")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(fake.cloud_load_balancers(), 0);
    fake.shutdown().await;
}
