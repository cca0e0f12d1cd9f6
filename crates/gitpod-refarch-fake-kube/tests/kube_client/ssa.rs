//! Server-side apply with field ownership: `managedFields` in the `FieldsV1`
//! format, conflicts between managers, force, removal of fields an applier stops
//! applying, co-ownership, Updates taking ownership, and custom-resource status and
//! generation.

use std::time::Duration;

use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::{api_error, client, eventually};

fn ssa(manager: &str) -> PatchParams {
    PatchParams::apply(manager)
}

/// The `managedFields` entry of `manager` with `operation`, or a panic.
fn entry(obj: &Value, manager: &str, operation: &str) -> Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .cloned()
        .unwrap_or_else(|| panic!("no {operation} entry of {manager:?} in {obj:#}"))
}

fn has_entry(obj: &Value, manager: &str) -> bool {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["manager"] == manager)
}

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "cfg", "namespace": "default"}, "data": data})
}

fn web(replicas: Option<i32>, containers: Value) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers},
            },
        },
    });
    if let Some(r) = replicas {
        d["spec"]["replicas"] = json!(r);
    }
    d
}

fn stored(fake: &FakeKube, resource: &str, name: &str) -> Value {
    fake.object(resource, Some("default"), name).unwrap()
}

#[tokio::test]
async fn applied_objects_carry_fields_v1_with_list_items_by_key() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = web(
        Some(2),
        json!([{"name": "web", "image": "example.invalid/web:1",
                "args": ["--a", "--b"],
                "ports": [{"containerPort": 8080}],
                "env": [{"name": "A", "value": "1"}]}]),
    );
    deployments
        .patch("web", &ssa("gitpod-refarch"), &Patch::Apply(&d))
        .await
        .unwrap();
    let obj = stored(&fake, "deployments.apps", "web");
    let e = entry(&obj, "gitpod-refarch", "Apply");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
    assert!(e.get("subresource").is_none());
    let f = &e["fieldsV1"];
    assert_eq!(f["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        f["f:spec"]["f:selector"]["f:matchLabels"]["f:app"],
        json!({})
    );
    let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(c["."], json!({}), "{f:#}");
    assert_eq!(c["f:image"], json!({}));
    assert_eq!(c["f:name"], json!({}));
    // Atomic lists are owned whole; items of keyed lists by their keys.
    assert_eq!(c["f:args"], json!({}));
    assert_eq!(
        c["f:ports"]["k:{\"containerPort\":8080,\"protocol\":\"TCP\"}"],
        json!({".": {}, "f:containerPort": {}})
    );
    assert_eq!(
        c["f:env"]["k:{\"name\":\"A\"}"],
        json!({".": {}, "f:name": {}, "f:value": {}})
    );
    // Type and identity metadata belong to no manager.
    assert!(f.get("f:apiVersion").is_none() && f.get("f:kind").is_none());
    assert!(f["f:metadata"].get("f:name").is_none(), "{f:#}");

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut c = cm(json!({"a": "1"}));
    c["metadata"]["labels"] = json!({"team": "x"});
    configmaps
        .patch("cfg", &ssa("gitpod-refarch"), &Patch::Apply(&c))
        .await
        .unwrap();
    let obj = stored(&fake, "configmaps", "cfg");
    let e = entry(&obj, "gitpod-refarch", "Apply");
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:team": {}}}})
    );
    // The typed client decodes what it gets back.
    let typed = configmaps.get("cfg").await.unwrap();
    let mf = typed.metadata.managed_fields.unwrap();
    assert_eq!(mf.len(), 1);
    assert!(mf[0].fields_v1.is_some());
    fake.shutdown().await;
}

#[tokio::test]
async fn a_second_manager_conflicts_until_it_forces_and_then_owns_the_field() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let containers = json!([{"name": "web", "image": "example.invalid/web:1"}]);
    deployments
        .patch(
            "web",
            &ssa("first"),
            &Patch::Apply(web(Some(2), containers.clone())),
        )
        .await
        .unwrap();
    // Another value of a field `first` owns: 409 with the field and the manager.
    let e = api_error(
        deployments
            .patch(
                "web",
                &ssa("second"),
                &Patch::Apply(web(Some(3), containers.clone())),
            )
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"first\": .spec.replicas"
    );
    let answer = fake.calls().last().unwrap().response.clone();
    assert_eq!(
        answer["details"]["causes"],
        json!([{"reason": "FieldManagerConflict",
                "message": "conflict with \"first\"",
                "field": ".spec.replicas"}])
    );
    assert_eq!(
        stored(&fake, "deployments.apps", "web")["spec"]["replicas"],
        2
    );

    // The same values: no conflict, both own them.
    deployments
        .patch(
            "web",
            &ssa("second"),
            &Patch::Apply(web(Some(2), containers.clone())),
        )
        .await
        .unwrap();

    // Forced: the value changes and the field moves to `second`.
    let forced = ssa("second").force();
    deployments
        .patch(
            "web",
            &forced,
            &Patch::Apply(web(Some(3), containers.clone())),
        )
        .await
        .unwrap();
    let obj = stored(&fake, "deployments.apps", "web");
    assert_eq!(obj["spec"]["replicas"], 3);
    let first = entry(&obj, "first", "Apply");
    assert!(first["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert!(first["fieldsV1"]["f:spec"].get("f:template").is_some());
    let second = entry(&obj, "second", "Apply");
    assert_eq!(second["fieldsV1"]["f:spec"]["f:replicas"], json!({}));

    // Now `first` conflicts, over the field and an item of a keyed list.
    let e = api_error(
        deployments
            .patch(
                "web",
                &ssa("first"),
                &Patch::Apply(web(
                    Some(2),
                    json!([{"name": "web", "image": "example.invalid/web:2"}]),
                )),
            )
            .await,
    );
    assert_eq!(e.code, 409);
    assert!(
        e.message
            .starts_with("Apply failed with 2 conflicts: conflicts with \"second\":"),
        "{}",
        e.message
    );
    assert!(e.message.contains("\n- .spec.replicas"), "{}", e.message);
    assert!(
        e.message
            .contains("\n- .spec.template.spec.containers[name=\"web\"].image"),
        "{}",
        e.message
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn fields_an_applier_stops_applying_are_removed_unless_someone_else_owns_them() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .patch(
            "web",
            &ssa("gitpod-refarch"),
            &Patch::Apply(web(
                Some(2),
                json!([{"name": "web", "image": "example.invalid/web:1",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]),
            )),
        )
        .await
        .unwrap();
    // Another manager adds a sidecar container (an Update: a merge patch, which
    // sends the whole list).
    let editor = PatchParams {
        field_manager: Some("editor".into()),
        ..PatchParams::default()
    };
    let both = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "example.invalid/web:1",
         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "example.invalid/sidecar:1"}]}}}});
    deployments
        .patch("web", &editor, &Patch::Merge(both))
        .await
        .unwrap();
    let obj = stored(&fake, "deployments.apps", "web");
    let e = entry(&obj, "editor", "Update");
    assert!(
        e["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
            .get("k:{\"name\":\"sidecar\"}")
            .is_some(),
        "{e:#}"
    );

    // The applier drops replicas and env B: they go; the sidecar stays.
    deployments
        .patch(
            "web",
            &ssa("gitpod-refarch"),
            &Patch::Apply(web(
                None,
                json!([{"name": "web", "image": "example.invalid/web:1",
                        "env": [{"name": "A", "value": "1"}]}]),
            )),
        )
        .await
        .unwrap();
    let obj = stored(&fake, "deployments.apps", "web");
    // (replicas no one owns goes, and is defaulted again, as by the API server)
    assert_eq!(obj["spec"]["replicas"], 1, "{obj:#}");
    let containers = obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "sidecar"]);
    assert_eq!(containers[0]["env"], json!([{"name": "A", "value": "1"}]));
    fake.shutdown().await;
}

#[tokio::test]
async fn a_co_owned_field_stays_when_one_owner_drops_it() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    configmaps
        .patch(
            "cfg",
            &ssa("a"),
            &Patch::Apply(cm(json!({"shared": "1", "mine": "x"}))),
        )
        .await
        .unwrap();
    // The same value from another manager: no conflict, co-owned.
    configmaps
        .patch("cfg", &ssa("b"), &Patch::Apply(cm(json!({"shared": "1"}))))
        .await
        .unwrap();
    let obj = stored(&fake, "configmaps", "cfg");
    for m in ["a", "b"] {
        assert_eq!(
            entry(&obj, m, "Apply")["fieldsV1"]["f:data"]["f:shared"],
            json!({})
        );
    }
    configmaps
        .patch("cfg", &ssa("a"), &Patch::Apply(cm(json!({"mine": "x"}))))
        .await
        .unwrap();
    let obj = stored(&fake, "configmaps", "cfg");
    assert_eq!(obj["data"], json!({"shared": "1", "mine": "x"}));
    // Once its last owner drops it, it goes.
    configmaps
        .patch("cfg", &ssa("b"), &Patch::Apply(cm(json!({"other": "y"}))))
        .await
        .unwrap();
    let obj = stored(&fake, "configmaps", "cfg");
    assert_eq!(obj["data"], json!({"mine": "x", "other": "y"}));
    fake.shutdown().await;
}

#[tokio::test]
async fn an_update_takes_ownership_of_what_it_changes() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let containers = json!([{"name": "web", "image": "example.invalid/web:1"}]);
    deployments
        .patch(
            "web",
            &ssa("gitpod-refarch"),
            &Patch::Apply(web(Some(2), containers.clone())),
        )
        .await
        .unwrap();
    let scaler = PatchParams {
        field_manager: Some("scaler".into()),
        ..PatchParams::default()
    };
    deployments
        .patch(
            "web",
            &scaler,
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    let obj = stored(&fake, "deployments.apps", "web");
    let e = entry(&obj, "scaler", "Update");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    let applied = entry(&obj, "gitpod-refarch", "Apply");
    assert!(applied["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    // Re-applying the old value now conflicts with the updater.
    let e = api_error(
        deployments
            .patch(
                "web",
                &ssa("gitpod-refarch"),
                &Patch::Apply(web(Some(2), containers.clone())),
            )
            .await,
    );
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"scaler\" using apps/v1: .spec.replicas"
    );

    // Without a fieldManager the manager is the User-Agent's product name.
    use axum::http::Request;
    let req = Request::builder()
        .method("PATCH")
        .uri("/apis/apps/v1/namespaces/default/deployments/web")
        .header("content-type", "application/merge-patch+json")
        .header(
            "user-agent",
            "kubectl/v1.20.15 (linux/amd64) kubernetes/8f1e5bf",
        )
        .body(br#"{"metadata":{"labels":{"edited":"yes"}}}"#.to_vec())
        .unwrap();
    client.request_text(req).await.unwrap();
    let obj = stored(&fake, "deployments.apps", "web");
    let e = entry(&obj, "kubectl", "Update");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:metadata": {"f:labels": {".": {}, "f:edited": {}}}})
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn managed_fields_in_requests_are_handled_as_the_api_server_does() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // Apply: must be nil.
    let mut with = cm(json!({"a": "1"}));
    with["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Apply"}]);
    let e = api_error(
        configmaps
            .patch("cfg", &ssa("a"), &Patch::Apply(&with))
            .await,
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "metadata.managedFields must be nil")
    );
    configmaps
        .patch("cfg", &ssa("a"), &Patch::Apply(cm(json!({"a": "1"}))))
        .await
        .unwrap();
    // An empty list changes nothing (clients unaware of the field).
    let editor = PatchParams {
        field_manager: Some("editor".into()),
        ..PatchParams::default()
    };
    configmaps
        .patch(
            "cfg",
            &editor,
            &Patch::Merge(json!({"metadata": {"managedFields": []}})),
        )
        .await
        .unwrap();
    assert!(has_entry(&stored(&fake, "configmaps", "cfg"), "a"));
    // A list with one empty entry clears them.
    configmaps
        .patch(
            "cfg",
            &editor,
            &Patch::Merge(json!({"metadata": {"managedFields": [{}]}})),
        )
        .await
        .unwrap();
    let obj = stored(&fake, "configmaps", "cfg");
    assert!(obj["metadata"].get("managedFields").is_none(), "{obj:#}");

    // A JSON patch that replaces them, with the resourceVersion as a precondition
    // (how kubectl moves client-side-apply ownership to its applier).
    let rv = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let moved = json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                        "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}]);
    let json_patch = |rv: &str| {
        let ops = json!([
            {"op": "add", "path": "/metadata/managedFields", "value": moved},
            {"op": "replace", "path": "/metadata/resourceVersion", "value": rv},
        ]);
        axum::http::Request::builder()
            .method("PATCH")
            .uri("/api/v1/namespaces/default/configmaps/cfg?fieldManager=kubectl")
            .header("content-type", "application/json-patch+json")
            .body(ops.to_string().into_bytes())
            .unwrap()
    };
    client.request_text(json_patch(&rv)).await.unwrap();
    let obj = stored(&fake, "configmaps", "cfg");
    assert_eq!(
        entry(&obj, "kubectl", "Apply")["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
    let e = api_error(client.request_text(json_patch(&rv)).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    fake.shutdown().await;
}

pub(crate) fn widget_crd(plural: &str, kind: &str, status_sub: bool) -> Value {
    let mut version = json!({
        "name": "v1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer"},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {
                              "name": {"type": "string"}, "port": {"type": "integer"}}}}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
    });
    if status_sub {
        version["subresources"] = json!({"status": {}});
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.example.com")},
        "spec": {
            "group": "example.com",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "scope": "Namespaced",
            "versions": [version],
        },
    })
}

pub(crate) async fn established(client: &Client, crd: Value) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd["metadata"]["name"].as_str().unwrap().to_string();
    let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
    crds.patch(&name, &ssa("test"), &Patch::Apply(&crd))
        .await
        .unwrap();
    eventually("CRD Established", || async {
        let c = crds.get(&name).await.ok()?;
        c.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", &kind));
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn generation(o: &DynamicObject) -> i64 {
    o.metadata.generation.unwrap()
}

#[tokio::test]
async fn custom_resource_status_and_generation() {
    let fake = FakeKube::start(
        FakeConfig::default().with_crd_established_delay(Duration::from_millis(10)),
    )
    .await
    .unwrap();
    let client = client(&fake);
    let editor = PatchParams {
        field_manager: Some("controller".into()),
        ..PatchParams::default()
    };

    // With a status subresource: status through the main resource is ignored,
    // through /status it is stored without a new generation, and a spec change
    // bumps it.
    let widgets = established(&client, widget_crd("widgets", "Widget", true)).await;
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                   "metadata": {"name": "w", "namespace": "default"},
                   "spec": {"size": 1, "ports": [{"name": "http", "port": 80}]},
                   "status": {"phase": "Applied"}});
    let created = widgets
        .patch("w", &ssa("gitpod-refarch"), &Patch::Apply(&w))
        .await
        .unwrap();
    assert_eq!(generation(&created), 1);
    assert!(created.data.get("status").is_none(), "{:?}", created.data);
    let obj = stored(&fake, "widgets.example.com", "w");
    let e = entry(&obj, "gitpod-refarch", "Apply");
    assert!(e["fieldsV1"].get("f:status").is_none(), "{e:#}");
    assert_eq!(
        e["fieldsV1"]["f:spec"]["f:ports"]["k:{\"name\":\"http\"}"],
        json!({".": {}, "f:name": {}, "f:port": {}})
    );
    let put = widgets
        .patch(
            "w",
            &editor,
            &Patch::Merge(json!({"status": {"phase": "Main"}})),
        )
        .await
        .unwrap();
    assert!(put.data.get("status").is_none());
    assert_eq!(generation(&put), 1);
    let st = widgets
        .patch_status(
            "w",
            &editor,
            &Patch::Merge(json!({"status": {"phase": "Ready"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["phase"], "Ready");
    assert_eq!(generation(&st), 1);
    let obj = stored(&fake, "widgets.example.com", "w");
    let e = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "controller" && e["subresource"] == "status")
        .cloned()
        .unwrap_or_else(|| panic!("{obj:#}"));
    assert_eq!(e["operation"], "Update");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:phase": {}}}));
    let spec = widgets
        .patch("w", &editor, &Patch::Merge(json!({"spec": {"size": 2}})))
        .await
        .unwrap();
    assert_eq!(generation(&spec), 2);
    assert_eq!(spec.data["status"]["phase"], "Ready");

    // Without one, status is part of the object: a status change through the main
    // resource is stored and, as any change but metadata, bumps the generation.
    let gadgets = established(&client, widget_crd("gadgets", "Gadget", false)).await;
    let g = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
                   "metadata": {"name": "g", "namespace": "default"},
                   "spec": {"size": 1}});
    gadgets
        .patch("g", &ssa("gitpod-refarch"), &Patch::Apply(&g))
        .await
        .unwrap();
    let changed = gadgets
        .patch(
            "g",
            &editor,
            &Patch::Merge(json!({"status": {"phase": "Ready"}})),
        )
        .await
        .unwrap();
    assert_eq!(changed.data["status"]["phase"], "Ready");
    assert_eq!(generation(&changed), 2);
    let labelled = gadgets
        .patch(
            "g",
            &editor,
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(generation(&labelled), 2);
    let e = api_error(
        gadgets
            .patch_status("g", &editor, &Patch::Merge(json!({})))
            .await,
    );
    assert_eq!(e.code, 404);
    fake.shutdown().await;
}
