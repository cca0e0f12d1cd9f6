//! What a controller built on kube-runtime needs of the fake, driven by kube-rs:
//! `coordination.k8s.io/v1` Leases, Events (`events.k8s.io/v1` through
//! kube-runtime's `Recorder`, and core `v1`), finalizers and deletion, the `/status`
//! subresource of a CRD with `metadata.generation`, and kube-runtime's
//! `Controller` with its `finalizer()` helper end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalized};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const FINALIZER: &str = "example.com/cleanup";

fn client(fake: &FakeKube) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    let pem = fake.ca_pem();
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        if line == "-----BEGIN CERTIFICATE-----" {
            body = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            use base64::Engine as _;
            let b = body.take().unwrap();
            certs.push(base64::engine::general_purpose::STANDARD.decode(b).unwrap());
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    config.root_cert = Some(certs);
    Client::try_from(config).unwrap()
}

async fn start() -> (FakeKube, Client) {
    let fake = FakeKube::start(
        FakeConfig::default().with_crd_established_delay(Duration::from_millis(10)),
    )
    .await
    .unwrap();
    let c = client(&fake);
    (fake, c)
}

/// `GET path` with the client's connection.
async fn raw_get(client: &Client, path: &str) -> String {
    let mut req = kube::core::Request::new("/api/v1/namespaces")
        .list(&kube::api::ListParams::default())
        .unwrap();
    *req.uri_mut() = path.parse().unwrap();
    client.request_text(req).await.unwrap()
}

fn api_error<T: std::fmt::Debug>(r: kube::Result<T>) -> kube::core::ErrorResponse {
    match r {
        Err(kube::Error::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// CRD `widgets.example.com` (with a status subresource when `status`) or
/// `gadgets.example.com` (without), Established.
async fn crd(client: &Client, status: bool) -> Api<DynamicObject> {
    let (plural, kind) = if status {
        ("widgets", "Widget")
    } else {
        ("gadgets", "Gadget")
    };
    let name = format!("{plural}.example.com");
    let mut version = json!({
        "name": "v1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        }}},
    });
    if status {
        version["subresources"] = json!({"status": {}});
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let obj: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": "example.com",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "scope": "Namespaced",
            "versions": [version],
        },
    }))
    .unwrap();
    crds.create(&PostParams::default(), &obj).await.unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("the CRD never became Established")
    .unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", kind));
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn custom(kind: &str, name: &str, body: Value) -> DynamicObject {
    let mut v = json!({"apiVersion": "example.com/v1", "kind": kind, "metadata": {"name": name}});
    if let (Value::Object(o), Value::Object(b)) = (&mut v, body) {
        for (k, x) in b {
            if k == "metadata" {
                for (mk, mv) in x.as_object().cloned().unwrap_or_default() {
                    o["metadata"][mk] = mv;
                }
            } else {
                o.insert(k, x);
            }
        }
    }
    serde_json::from_value(v).unwrap()
}

fn generation(o: &DynamicObject) -> i64 {
    o.metadata.generation.unwrap()
}

#[tokio::test]
async fn leases_are_a_built_in_kind_with_discovery_openapi_watch_and_conflicts() {
    let (fake, client) = start().await;

    // Discovery lists the group and the kind, namespaced, with its verbs.
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let group = discovery
        .groups()
        .find(|g| g.name() == "coordination.k8s.io")
        .expect("coordination.k8s.io in discovery");
    let (ar, caps) = group
        .recommended_kind("Lease")
        .expect("Lease in coordination.k8s.io");
    assert_eq!(ar.plural, "leases");
    assert_eq!(ar.version, "v1");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(caps.supports_operation(kube::discovery::verbs::WATCH));
    // OpenAPI v2 and v3 describe it with k8s-openapi's schema.
    let v2: Value = serde_json::from_str(&raw_get(&client, "/openapi/v2").await).unwrap();
    let def = &v2["definitions"]["io.k8s.api.coordination.v1.Lease"];
    assert_eq!(
        def["x-kubernetes-group-version-kind"][0]["kind"], "Lease",
        "{def}"
    );
    assert!(def["properties"]["spec"].is_object());
    let v3: Value =
        serde_json::from_str(&raw_get(&client, "/openapi/v3/apis/coordination.k8s.io/v1").await)
            .unwrap();
    assert!(v3["components"]["schemas"]["io.k8s.api.coordination.v1.LeaseSpec"].is_object());

    // Watched: a runtime watcher sees it created, renewed and deleted.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let mut seen = watcher(leases.clone(), watcher::Config::default())
        .touched_objects()
        .boxed();
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "leader", "labels": {"app": "op"}},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let got = tokio::time::timeout(WAIT, seen.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.name_any(), "leader");
    assert_eq!(
        got.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("pod-a")
    );

    // An update naming the current resourceVersion wins; the same stale one loses.
    let mut renewed = created.clone();
    renewed.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let after = leases
        .replace("leader", &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert_ne!(after.resource_version(), created.resource_version());
    let e = api_error(
        leases
            .replace("leader", &PostParams::default(), &renewed)
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"), "{e:?}");
    let got = tokio::time::timeout(WAIT, seen.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.spec.unwrap().holder_identity.as_deref(), Some("pod-b"));
    // A delete with a stale precondition is refused; with the current one it goes.
    let stale = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: created.resource_version(),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let e = api_error(leases.delete("leader", &stale).await);
    assert_eq!(e.code, 409, "{e:?}");
    assert!(fake.object("leases", Some("default"), "leader").is_some());
    let current = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: after.resource_version(),
            uid: after.uid(),
        }),
        ..DeleteParams::default()
    };
    leases.delete("leader", &current).await.unwrap();
    assert!(fake.object("leases", Some("default"), "leader").is_none());
    // Cluster-wide, leases are listed but not created (they are namespaced).
    let all: Api<Lease> = Api::all(client.clone());
    assert!(all
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn the_runtime_recorder_creates_an_event_then_patches_its_series() {
    let (fake, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "subject"}})).unwrap();
    let cm = cms.create(&PostParams::default(), &cm).await.unwrap();
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: cm.metadata.name.clone(),
        namespace: cm.metadata.namespace.clone(),
        uid: cm.metadata.uid.clone(),
        ..ObjectReference::default()
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "gitpod-refarch-operator".into(),
            instance: Some("operator-0".into()),
        },
    );
    let ev = RecordedEvent {
        type_: EventType::Normal,
        reason: "Applied".into(),
        note: Some("everything is up to date".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&Default::default()).await.unwrap().items;
    assert_eq!(list.len(), 1);
    let first = &list[0];
    assert_eq!(first.reason.as_deref(), Some("Applied"));
    assert_eq!(
        first.regarding.as_ref().unwrap().uid,
        cm.metadata.uid.clone()
    );
    assert!(first.series.is_none());
    // The same event again is a merge patch of the one stored: a series of 2.
    recorder.publish(&ev, &reference).await.unwrap();
    let list = events.list(&Default::default()).await.unwrap().items;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].series.as_ref().unwrap().count, 2);
    let calls = fake.calls();
    let verbs: Vec<&str> = calls
        .iter()
        .filter(|c| c.path.contains("/apis/events.k8s.io/v1/"))
        .filter(|c| c.method != "GET")
        .map(|c| c.method.as_str())
        .collect();
    assert_eq!(verbs, ["POST", "PATCH"]);

    // The API server's rules for events.k8s.io/v1.
    let bad = |patch: Value| {
        let mut v = json!({
            "metadata": {"name": "bad", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "regarding": {"kind": "ConfigMap", "name": "subject", "namespace": "default"},
            "reportingController": "op", "reportingInstance": "op-0",
            "action": "Reconcile", "reason": "Applied", "type": "Normal",
        });
        for (k, x) in patch.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        serde_json::from_value::<Event>(v).unwrap()
    };
    for (patch, field) in [
        (json!({"type": "Bogus"}), "type"),
        (json!({"eventTime": null}), "eventTime"),
        (json!({"reportingController": null}), "reportingController"),
        (json!({"action": null}), "action"),
        (json!({"deprecatedCount": 3}), "deprecatedCount"),
        (
            json!({"series": {"count": 1, "lastObservedTime": "2026-01-01T00:00:00.000000Z"}}),
            "series.count",
        ),
    ] {
        let e = api_error(events.create(&PostParams::default(), &bad(patch)).await);
        assert_eq!(e.code, 422, "{e:?}");
        assert!(e.message.contains(field), "{field}: {}", e.message);
    }
    events
        .create(&PostParams::default(), &bad(json!({})))
        .await
        .unwrap();
    // Its regarding object cannot change afterwards.
    let e = api_error(
        events
            .patch(
                "bad",
                &PatchParams::default(),
                &Patch::Merge(json!({"regarding": {"name": "other"}})),
            )
            .await,
    );
    assert_eq!(e.code, 422, "{e:?}");
    assert!(e.message.contains("regarding"), "{}", e.message);

    // Core v1 events: the legacy rules (the involved object's namespace).
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let mk = |ns: &str| -> CoreEvent {
        serde_json::from_value(json!({
            "metadata": {"name": format!("core-{ns}")},
            "involvedObject": {"kind": "ConfigMap", "name": "subject", "namespace": ns},
            "reason": "Applied", "message": "ok", "type": "Normal",
        }))
        .unwrap()
    };
    let e = api_error(core.create(&PostParams::default(), &mk("elsewhere")).await);
    assert_eq!(e.code, 422, "{e:?}");
    assert!(
        e.message.contains("does not match event.namespace"),
        "{}",
        e.message
    );
    core.create(&PostParams::default(), &mk("default"))
        .await
        .unwrap();
    assert!(fake
        .object("events", Some("default"), "core-default")
        .is_some());
    fake.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_they_are_removed() {
    let (fake, client) = start().await;
    let widgets = crd(&client, true).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let w = widgets
        .create(
            &PostParams::default(),
            &custom(
                "Widget",
                "w1",
                json!({"metadata": {"finalizers": [FINALIZER]}, "spec": {"size": 1}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(generation(&w), 1);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "held", "finalizers": [FINALIZER]},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    // Finalizer names are qualified names.
    let e = api_error(
        widgets
            .create(
                &PostParams::default(),
                &custom(
                    "Widget",
                    "w2",
                    json!({"metadata": {"finalizers": ["not a name"]}}),
                ),
            )
            .await,
    );
    assert_eq!(e.code, 422, "{e:?}");
    assert!(
        e.message.contains("metadata.finalizers[0]"),
        "{}",
        e.message
    );

    let mut events = widgets
        .watch(&Default::default(), &w.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();

    // DELETE marks it, answers the object and keeps it.
    let deleted = widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    let marked = deleted
        .left()
        .expect("the object, while finalizers hold it");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(0));
    assert_eq!(generation(&marked), 2, "marking bumps the generation");
    let live = widgets.get("w1").await.unwrap();
    assert_eq!(
        live.metadata.deletion_timestamp,
        marked.metadata.deletion_timestamp
    );
    let kube::api::WatchEvent::Modified(m) = tokio::time::timeout(WAIT, events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    else {
        panic!("expected MODIFIED");
    };
    assert!(m.metadata.deletion_timestamp.is_some());
    // A second DELETE changes nothing.
    let again = widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        again.left().unwrap().metadata.deletion_timestamp,
        marked.metadata.deletion_timestamp
    );

    // No new finalizer while it is being deleted (other metadata may change).
    let e = api_error(
        widgets
            .patch(
                "w1",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": [FINALIZER, "example.com/more"]}})),
            )
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{e:?}");
    assert!(
        e.message.contains(
            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/more\"}"
        ),
        "{}",
        e.message
    );
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"note": "going"}}})),
        )
        .await
        .unwrap();
    let kube::api::WatchEvent::Modified(_) = tokio::time::timeout(WAIT, events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    else {
        panic!("expected MODIFIED");
    };

    // Emptying the finalizers removes it: DELETED.
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    let kube::api::WatchEvent::Deleted(d) = tokio::time::timeout(WAIT, events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    else {
        panic!("expected DELETED");
    };
    assert_eq!(d.name_any(), "w1");
    assert_eq!(api_error(widgets.get("w1").await).code, 404);

    // The same on a built-in kind.
    let marked = cms.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(marked.left().unwrap().metadata.deletion_timestamp.is_some());
    let mut live = cms.get("held").await.unwrap();
    live.metadata.finalizers = Some(vec![FINALIZER.into(), "example.com/more".into()]);
    let e = api_error(cms.replace("held", &PostParams::default(), &live).await);
    assert_eq!(e.code, 422, "{e:?}");
    live.metadata.finalizers = None;
    cms.replace("held", &PostParams::default(), &live)
        .await
        .unwrap();
    assert!(fake.object("configmaps", Some("default"), "held").is_none());
    fake.shutdown().await;
}

#[tokio::test]
async fn the_status_subresource_and_the_generation() {
    let (fake, client) = start().await;
    let widgets = crd(&client, true).await;

    // A create drops .status; the generation starts at 1.
    let w = widgets
        .create(
            &PostParams::default(),
            &custom(
                "Widget",
                "w",
                json!({"spec": {"size": 1}, "status": {"phase": "Invented"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(generation(&w), 1);
    assert!(w.data.get("status").is_none(), "{:?}", w.data);

    // Status through /status: the generation stays.
    let s = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1, "phase": "Ready"}})),
        )
        .await
        .unwrap();
    assert_eq!(generation(&s), 1);
    assert_eq!(s.data["status"]["phase"], "Ready");
    // ... and a /status write cannot change the spec or the labels.
    let s2 = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(s2.data["spec"]["size"], 1);
    assert!(s2.labels().get("x").is_none());

    // A write to the main resource ignores .status: no change, no new version.
    let same = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Hacked"}})),
        )
        .await
        .unwrap();
    assert_eq!(same.data["status"]["phase"], "Ready");
    assert_eq!(same.resource_version(), s2.resource_version());
    // A label change is not a spec change; a spec change bumps the generation.
    let l = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(generation(&l), 1);
    let g = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(generation(&g), 2);
    assert_eq!(g.data["status"]["observedGeneration"], 1);

    // Without a status subresource: /status is 404 and .status is part of the
    // object (its changes bump the generation, as the API server does).
    let gadgets = crd(&client, false).await;
    gadgets
        .create(
            &PostParams::default(),
            &custom(
                "Gadget",
                "g",
                json!({"spec": {"size": 1}, "status": {"phase": "New"}}),
            ),
        )
        .await
        .unwrap();
    let e = api_error(
        gadgets
            .patch_status(
                "g",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Ready"}})),
            )
            .await,
    );
    assert_eq!(e.code, 404, "{e:?}");
    let g = gadgets
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}})),
        )
        .await
        .unwrap();
    assert_eq!(g.data["status"]["phase"], "Ready");
    assert_eq!(generation(&g), 2);
    fake.shutdown().await;
}

/// The reconciler's error.
#[derive(Debug)]
struct Failed(String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

struct Ctx {
    api: Api<DynamicObject>,
    recorder: Recorder,
    cleaned: tokio::sync::mpsc::UnboundedSender<String>,
}

async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Failed> {
    let api = ctx.api.clone();
    finalizer(&api, FINALIZER, obj, |event| async move {
        match event {
            Finalized::Apply(o) => {
                let g = o.metadata.generation.unwrap_or(0);
                ctx.api
                    .patch_status(
                        &o.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"observedGeneration": g}})),
                    )
                    .await
                    .map_err(|e| Failed(e.to_string()))?;
                ctx.recorder
                    .publish(
                        &RecordedEvent {
                            type_: EventType::Normal,
                            reason: "Reconciled".into(),
                            note: Some(format!("generation {g}")),
                            action: "Reconcile".into(),
                            secondary: None,
                        },
                        &o.object_ref(&ctx.api_resource()),
                    )
                    .await
                    .map_err(|e| Failed(e.to_string()))?;
                Ok::<_, Failed>(Action::await_change())
            }
            Finalized::Cleanup(o) => {
                let _ = ctx.cleaned.send(o.name_any());
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Failed(e.to_string()))
}

impl Ctx {
    fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_controller_with_the_finalizer_helper_cleans_up_on_delete() {
    let (fake, client) = start().await;
    let widgets = crd(&client, true).await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    let (tx, mut cleaned) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Arc::new(Ctx {
        api: widgets.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "widget-controller".into(),
                instance: None,
            },
        ),
        cleaned: tx,
    });
    // Only the labelled widgets, from a streaming list (sendInitialEvents).
    let config = watcher::Config::default()
        .labels("managed=yes")
        .streaming_lists();
    let controller = Controller::new_with(widgets.clone(), config, ar)
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(50)),
            ctx,
        )
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    let managed = widgets
        .create(
            &PostParams::default(),
            &custom(
                "Widget",
                "managed",
                json!({"metadata": {"labels": {"managed": "yes"}}, "spec": {"size": 1}}),
            ),
        )
        .await
        .unwrap();
    widgets
        .create(
            &PostParams::default(),
            &custom("Widget", "ignored", json!({"spec": {"size": 1}})),
        )
        .await
        .unwrap();
    // The controller adds its finalizer, then reports the generation it saw.
    let observed = |want: i64| {
        move |o: Option<&DynamicObject>| {
            o.is_some_and(|o| {
                o.finalizers().iter().any(|f| f == FINALIZER)
                    && o.data["status"]["observedGeneration"] == want
            })
        }
    };
    tokio::time::timeout(
        WAIT,
        await_condition(widgets.clone(), "managed", observed(1)),
    )
    .await
    .expect("the controller never reconciled")
    .unwrap();
    widgets
        .patch(
            "managed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(widgets.clone(), "managed", observed(2)),
    )
    .await
    .expect("the controller never saw generation 2")
    .unwrap();
    // Its events are there, regarding the widget.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let evs = events.list(&Default::default()).await.unwrap().items;
    assert!(
        evs.iter().any(|e| e.reason.as_deref() == Some("Reconciled")
            && e.regarding.as_ref().and_then(|r| r.uid.clone()) == managed.metadata.uid),
        "{evs:?}"
    );
    // The unlabelled widget was never touched.
    assert!(widgets
        .get("ignored")
        .await
        .unwrap()
        .finalizers()
        .is_empty());

    // Delete: the controller's cleanup runs, removes the finalizer, the object goes.
    widgets
        .delete("managed", &DeleteParams::default())
        .await
        .unwrap();
    let name = tokio::time::timeout(WAIT, cleaned.recv())
        .await
        .expect("no cleanup")
        .unwrap();
    assert_eq!(name, "managed");
    tokio::time::timeout(
        WAIT,
        await_condition(
            widgets.clone(),
            "managed",
            conditions::is_deleted(&managed.uid().unwrap()),
        ),
    )
    .await
    .expect("the widget was never removed")
    .unwrap();
    assert!(fake.object("widgets", Some("default"), "managed").is_none());
    handle.abort();
    fake.shutdown().await;
}
