//! Nodes of simulated node pools, read the way `gitpod-installer validate cluster`
//! reads them: a label selector per required label, at least one node each.

use axum::http::Request;
use futures::StreamExt;
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube, NameSuffix, NodePool, NodeTaint};
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams, WatchEvent, WatchParams};
use kube::discovery::{ApiResource, Discovery};
use kube::Api;
use serde_json::{json, Value};

use crate::{api_error, client};

const REGULAR: &str = "gitpod.io/workload_workspace_regular";

fn regular_pool(count: u32) -> NodePool {
    NodePool::new(count)
        .with_label(REGULAR, "true")
        .with_label("cloud.google.com/gke-nodepool", "regular-ws")
        .with_taint(NodeTaint::new("gitpod.io/workspaces", "true", "NoSchedule"))
        .with_machine_type("n2d-standard-16")
        .with_zones(["europe-west1-b", "europe-west1-c"])
        .with_names("gke-gp-regular-ws-1a2b3c4d-", NameSuffix::Random)
        .with_kubelet_version("v1.32.4-gke.1415000")
        .with_provider_id("gce://p/{zone}/{name}")
}

async fn names(api: &Api<Node>, selector: &str) -> Vec<String> {
    let mut n: Vec<String> = api
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn node_pools_publish_nodes_with_labels_and_taints() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let nodes: Api<Node> = Api::all(client.clone());

    // Served and discoverable, as `kubectl get no` finds them.
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps): (ApiResource, _) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.group.is_empty() && ar.plural == "nodes")
        .expect("nodes in discovery");
    assert_eq!(ar.kind, "Node");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    let core: Value = client
        .request(Request::builder().uri("/api/v1").body(Vec::new()).unwrap())
        .await
        .unwrap();
    let res = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "nodes")
        .unwrap();
    assert_eq!(res["namespaced"], false);
    assert_eq!(res["shortNames"], json!(["no"]));
    for verb in ["get", "list", "create", "delete", "patch", "update"] {
        assert!(
            res["verbs"].as_array().unwrap().contains(&json!(verb)),
            "{verb}"
        );
    }
    assert!(core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "nodes/status"));
    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert!(list.items.is_empty());
    let mut watch = nodes
        .watch(
            &WatchParams::default().timeout(30),
            &list.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap()
        .boxed();

    // A pool of three nodes over two zones.
    let made = fake
        .set_node_pool("gke.gp.regular-ws", regular_pool(3))
        .unwrap();
    assert_eq!(made.len(), 3);
    // A watch of nodes sees them come (as `kubectl get nodes --watch` would).
    let mut added = Vec::new();
    while added.len() < 3 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), watch.next())
            .await
            .expect("no watch event in time")
            .expect("the watch ended")
            .expect("a watch error");
        match event {
            WatchEvent::Added(n) => added.push(n.metadata.name.unwrap()),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, made);
    let selected = names(&nodes, &format!("{REGULAR}=true")).await;
    assert_eq!(selected.len(), 3);
    assert!(names(&nodes, "gitpod.io/workload_meta=true")
        .await
        .is_empty());
    let node = nodes.get(&selected[0]).await.unwrap();
    let name = node.metadata.name.clone().unwrap();
    assert!(name.starts_with("gke-gp-regular-ws-1a2b3c4d-"), "{name}");
    assert_eq!(name.len(), "gke-gp-regular-ws-1a2b3c4d-".len() + 4);
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], name);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(
        labels["node.kubernetes.io/instance-type"],
        "n2d-standard-16"
    );
    assert_eq!(labels["topology.kubernetes.io/region"], "europe-west1");
    assert!(labels["topology.kubernetes.io/zone"].starts_with("europe-west1-"));
    assert_eq!(labels["cloud.google.com/gke-nodepool"], "regular-ws");
    let spec = node.spec.clone().unwrap();
    let taints = spec.taints.unwrap();
    assert_eq!(taints.len(), 1);
    assert_eq!(
        (
            taints[0].key.as_str(),
            taints[0].value.as_deref(),
            taints[0].effect.as_str()
        ),
        ("gitpod.io/workspaces", Some("true"), "NoSchedule")
    );
    assert_eq!(
        spec.provider_id.unwrap(),
        format!("gce://p/{}/{name}", labels["topology.kubernetes.io/zone"])
    );
    let status = node.status.clone().unwrap();
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(
        status.node_info.unwrap().kubelet_version,
        "v1.32.4-gke.1415000"
    );
    assert_eq!(status.capacity.unwrap()["cpu"].0, "16");
    assert!(status.allocatable.unwrap().contains_key("memory"));
    assert!(status
        .addresses
        .unwrap()
        .iter()
        .any(|a| a.type_ == "InternalIP"));
    // Spread over the zones.
    let zone_b = names(&nodes, "topology.kubernetes.io/zone=europe-west1-b").await;
    let zone_c = names(&nodes, "topology.kubernetes.io/zone=europe-west1-c").await;
    assert_eq!((zone_b.len(), zone_c.len()), (2, 1));

    // Grow, then shrink: existing nodes stay.
    let grown = fake
        .set_node_pool("gke.gp.regular-ws", regular_pool(5))
        .unwrap();
    assert_eq!(grown.len(), 5);
    assert!(made.iter().all(|n| grown.contains(n)));
    assert_eq!(names(&nodes, &format!("{REGULAR}=true")).await.len(), 5);
    let shrunk = fake
        .set_node_pool("gke.gp.regular-ws", regular_pool(2))
        .unwrap();
    assert_eq!(shrunk, made[..2].to_vec());
    assert_eq!(names(&nodes, &format!("{REGULAR}=true")).await, {
        let mut s = shrunk.clone();
        s.sort();
        s
    });

    // A changed pool relabels and retaints its nodes.
    let changed = NodePool::new(2)
        .with_label(REGULAR, "true")
        .with_label("extra", "yes")
        .with_machine_type("n2d-standard-16")
        .with_zones(["europe-west1-b", "europe-west1-c"])
        .with_names("gke-gp-regular-ws-1a2b3c4d-", NameSuffix::Random);
    assert_eq!(
        fake.set_node_pool("gke.gp.regular-ws", changed).unwrap(),
        shrunk
    );
    let n = nodes.get(&shrunk[0]).await.unwrap();
    let labels = n.metadata.labels.unwrap();
    assert_eq!(labels["extra"], "yes");
    assert!(!labels.contains_key("cloud.google.com/gke-nodepool"));
    assert!(n.spec.unwrap().taints.unwrap_or_default().is_empty());

    // A node deleted through the API is gone.
    nodes
        .delete(&shrunk[0], &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_error(nodes.get(&shrunk[0]).await).code, 404);
    assert_eq!(
        names(&nodes, &format!("{REGULAR}=true")).await,
        vec![shrunk[1].clone()]
    );

    // Removing the pool removes its nodes.
    assert_eq!(
        fake.remove_node_pool("gke.gp.regular-ws"),
        vec![shrunk[1].clone()]
    );
    assert!(nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(fake.node_pools().is_empty());

    // Refused: a taint effect Kubernetes does not know.
    let bad = NodePool::new(1).with_taint(NodeTaint::new("k", "v", "NO_SCHEDULE"));
    assert!(fake.set_node_pool("bad", bad).is_err());
    fake.shutdown().await;
}

#[tokio::test]
async fn the_admin_endpoint_publishes_aks_shaped_nodes() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let nodes: Api<Node> = Api::all(client.clone());
    let body = json!({
        "count": 2,
        "labels": {"kubernetes.azure.com/agentpool": "services", "agentpool": "services",
                   "gitpod.io/workload_meta": "true"},
        "taints": [{"key": "dedicated", "value": "gitpod", "effect": "NoExecute"}],
        "machineType": "Standard_D4s_v3",
        "zones": ["northeurope-1"],
        "namePrefix": "aks-services-12345678-vmss",
        "nameSuffix": "index",
    });
    let put = |path: &str, body: &Value| {
        Request::builder()
            .method("PUT")
            .uri(path)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .unwrap()
    };
    let out: Value = client
        .request(put("/fake-kube/nodepools/aks.gp.services", &body))
        .await
        .unwrap();
    assert_eq!(
        out["nodes"],
        json!([
            "aks-services-12345678-vmss000000",
            "aks-services-12345678-vmss000001"
        ])
    );
    let n = nodes.get("aks-services-12345678-vmss000001").await.unwrap();
    let labels = n.metadata.labels.unwrap();
    assert_eq!(labels["agentpool"], "services");
    assert_eq!(labels["topology.kubernetes.io/region"], "northeurope");
    assert_eq!(
        labels["node.kubernetes.io/instance-type"],
        "Standard_D4s_v3"
    );
    assert_eq!(n.spec.unwrap().taints.unwrap()[0].effect, "NoExecute");
    assert_eq!(names(&nodes, "gitpod.io/workload_meta=true").await.len(), 2);

    // Scale up: the scale set's next instance index.
    let mut three = body.clone();
    three["count"] = json!(3);
    let out: Value = client
        .request(put("/fake-kube/nodepools/aks.gp.services", &three))
        .await
        .unwrap();
    assert_eq!(out["nodes"][2], "aks-services-12345678-vmss000002");

    // A bad body is a 400 (and not a Kubernetes Status).
    let mut bad = body.clone();
    bad["taints"][0]["effect"] = json!("Sometimes");
    let e = client
        .request_text(put("/fake-kube/nodepools/aks.gp.services", &bad))
        .await;
    assert!(e.is_err(), "{e:?}");

    let out: Value = client
        .request(
            Request::builder()
                .method("DELETE")
                .uri("/fake-kube/nodepools/aks.gp.services")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(out["removed"].as_array().unwrap().len(), 3);
    assert!(nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    // Not a Kubernetes path: nothing under /api serves it.
    let e = api_error(
        client
            .request_text(
                Request::builder()
                    .uri("/api/v1/nodepools")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await,
    );
    assert_eq!(e.code, 404);
    fake.shutdown().await;
}
