//! Watches, as kube-rs (`Api::watch`) and kube-runtime (watcher, reflector,
//! `await_condition`) use them: resource versions, bookmarks, 410 `Expired` for a
//! too-old version, selectors, and events from every write path (the simulated
//! controllers and the namespace cleanup included).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::{apply, apply_json, client, deployment, eventually, namespace};

const WAIT: Duration = Duration::from_secs(10);

fn configmap(ns: &str, name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "data": {"n": "1"},
    }))
    .unwrap()
}

async fn make_namespaces(client: &Client, names: &[&str]) {
    let nss: Api<Namespace> = Api::all(client.clone());
    for n in names {
        apply_json(&nss, namespace(n)).await.unwrap();
    }
}

async fn create(api: &Api<ConfigMap>, ns: &str, name: &str, labels: Value) -> ConfigMap {
    api.create(&PostParams::default(), &configmap(ns, name, labels))
        .await
        .unwrap()
}

/// The next watch event within [`WAIT`], or a panic.
async fn next<S, K>(stream: &mut S) -> WatchEvent<K>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("no watch event in time")
        .expect("the watch ended")
        .expect("a watch error")
}

/// The next event that is not a bookmark.
async fn next_change<S, K>(stream: &mut S) -> WatchEvent<K>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    loop {
        match next(stream).await {
            WatchEvent::Bookmark(_) => continue,
            other => return other,
        }
    }
}

fn rv<K: kube::Resource>(o: &K) -> u64 {
    o.resource_version().unwrap().parse().unwrap()
}

#[tokio::test]
async fn api_watch_from_a_list_sees_create_modify_delete_in_order() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["w1", "w2"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "w1");
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "w2");
    let before = create(&cms, "w1", "before", json!({})).await;

    let list = cms.list(&ListParams::default()).await.unwrap();
    let list_rv = list.metadata.resource_version.clone().unwrap();
    assert!(list_rv.parse::<u64>().unwrap() >= rv(&before));
    let mut stream = cms
        .watch(&WatchParams::default().timeout(30), &list_rv)
        .await
        .unwrap()
        .boxed();

    create(&other, "w2", "elsewhere", json!({})).await;
    let created = create(&cms, "w1", "a", json!({})).await;
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": "2"}})),
        )
        .await
        .unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();

    // Only w1's changes after the list, in order, with increasing versions.
    let WatchEvent::Added(a) = next_change(&mut stream).await else {
        panic!("expected ADDED");
    };
    assert_eq!(a.name_any(), "a");
    assert_eq!(rv(&a), rv(&created));
    let WatchEvent::Modified(m) = next_change(&mut stream).await else {
        panic!("expected MODIFIED");
    };
    assert_eq!(m.data.as_ref().unwrap()["n"], "2");
    assert_eq!(rv(&m), rv(&patched));
    let WatchEvent::Deleted(d) = next_change(&mut stream).await else {
        panic!("expected DELETED");
    };
    // The final state of the object, at the version of its deletion.
    assert_eq!(d.name_any(), "a");
    assert_eq!(d.data.as_ref().unwrap()["n"], "2");
    assert!(rv(&d) > rv(&m));
    assert!(fake.object("configmaps", Some("w1"), "a").is_none());

    // Watches are reads.
    let counts = fake.counts();
    assert_eq!(counts.of("watch", "configmaps"), 1);
    assert_eq!(counts.errors, 0);
    drop(stream);
    fake.shutdown().await;
}

/// The body of a raw GET (the watch ends with its `timeoutSeconds`).
async fn raw_get(client: &Client, path_and_query: &str) -> String {
    let mut req = kube::core::Request::new("/api/v1/namespaces")
        .list(&ListParams::default())
        .unwrap();
    *req.uri_mut() = path_and_query.parse().unwrap();
    client.request_text(req).await.unwrap()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_watch_without_a_version_starts_with_the_current_objects() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["w"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "w");
    for n in ["x", "y", "z"] {
        create(&cms, "w", n, json!({})).await;
    }
    // `watch=1`, no resourceVersion: synthetic ADDED events, newline-delimited JSON.
    let text = raw_get(
        &client,
        "/api/v1/namespaces/w/configmaps?watch=1&timeoutSeconds=1",
    )
    .await;
    let events = lines(&text);
    let names: Vec<&str> = events
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "ADDED", "{e}");
            assert_eq!(e["object"]["kind"], "ConfigMap", "{e}");
            assert_eq!(e["object"]["apiVersion"], "v1", "{e}");
            e["object"]["metadata"]["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["x", "y", "z"]);

    // One object by name (`fieldSelector=metadata.name=`), resourceVersion=0, all
    // namespaces.
    let text = raw_get(
        &client,
        "/api/v1/configmaps?watch=true&resourceVersion=0&timeoutSeconds=1&fieldSelector=metadata.name%3Dy",
    )
    .await;
    let events = lines(&text);
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!(events[0]["object"]["metadata"]["name"], "y");

    // A field the API server does not index is refused, as for a list.
    let mut req = kube::core::Request::new("/api/v1/namespaces")
        .list(&ListParams::default())
        .unwrap();
    *req.uri_mut() = "/api/v1/namespaces/w/configmaps?watch=true&fieldSelector=data.n%3D1"
        .parse()
        .unwrap();
    let err = match client.request_text(req).await {
        Err(kube::Error::Api(e)) => e,
        other => panic!("a watch on an unsupported field: {other:?}"),
    };
    assert_eq!(err.code, 400);
    assert_eq!(fake.counts().of("watch", "configmaps"), 3);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_too_old_resource_version_is_a_410_expired_error_event() {
    let fake = FakeKube::start(FakeConfig::default().with_watch_history(4))
        .await
        .unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["old"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "old");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let stale = list.metadata.resource_version.unwrap();
    for i in 0..6 {
        create(&cms, "old", &format!("c{i}"), json!({})).await;
    }
    let mut stream = cms
        .watch(&WatchParams::default().timeout(30), &stale)
        .await
        .unwrap()
        .boxed();
    let WatchEvent::Error(e) = next(&mut stream).await else {
        panic!("expected an ERROR event");
    };
    assert_eq!(e.code, 410, "{e:?}");
    assert_eq!(e.reason, "Expired", "{e:?}");
    assert!(e.message.starts_with("too old resource version"), "{e:?}");
    // The stream ends after it.
    let end = tokio::time::timeout(WAIT, stream.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");

    // A recent version still works: only what follows it.
    let recent = cms.list(&ListParams::default()).await.unwrap();
    let mut stream = cms
        .watch(
            &WatchParams::default().timeout(30),
            recent.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    create(&cms, "old", "new", json!({})).await;
    let WatchEvent::Added(n) = next_change(&mut stream).await else {
        panic!("expected ADDED");
    };
    assert_eq!(n.name_any(), "new");
    drop(stream);
    fake.shutdown().await;
}

#[tokio::test]
async fn bookmarks_arrive_when_asked_and_only_then() {
    let fake = FakeKube::start(
        FakeConfig::default().with_watch_bookmark_interval(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["bm"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bm");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let list_rv = list.metadata.resource_version.unwrap();

    let mut with = cms
        .watch(&WatchParams::default().timeout(30), &list_rv)
        .await
        .unwrap()
        .boxed();
    let WatchEvent::Bookmark(b) = next(&mut with).await else {
        panic!("expected a BOOKMARK");
    };
    assert_eq!(b.types.kind, "ConfigMap");
    assert_eq!(b.types.api_version, "v1");
    // Other kinds change too: the bookmark carries the newest version, beyond them.
    let nss: Api<Namespace> = Api::all(client.clone());
    apply_json(&nss, namespace("bm2")).await.unwrap();
    let newest: u64 = nss
        .get("bm2")
        .await
        .unwrap()
        .resource_version()
        .unwrap()
        .parse()
        .unwrap();
    let seen = loop {
        match next(&mut with).await {
            WatchEvent::Bookmark(b) => {
                let v: u64 = b.metadata.resource_version.parse().unwrap();
                if v >= newest {
                    break v;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(seen >= newest);

    let mut without = cms
        .watch(
            &WatchParams::default().timeout(30).disable_bookmarks(),
            &list_rv,
        )
        .await
        .unwrap()
        .boxed();
    let quiet = tokio::time::timeout(Duration::from_millis(500), without.next()).await;
    assert!(quiet.is_err(), "an event without bookmarks: {quiet:?}");
    drop((with, without));
    fake.shutdown().await;
}

#[tokio::test]
async fn a_label_selected_watch_only_sees_matching_objects() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["sel"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "sel");
    let mut stream = cms
        .watch(&WatchParams::default().labels("app=web").timeout(30), "0")
        .await
        .unwrap()
        .boxed();
    create(&cms, "sel", "db", json!({"app": "db"})).await;
    create(&cms, "sel", "web", json!({"app": "web"})).await;
    let WatchEvent::Added(w) = next_change(&mut stream).await else {
        panic!("expected ADDED");
    };
    assert_eq!(w.name_any(), "web");
    // An object that comes to match is ADDED, one that stops matching DELETED.
    let relabel = |app: &str| Patch::Merge(json!({"metadata": {"labels": {"app": app}}}));
    cms.patch("db", &PatchParams::default(), &relabel("web"))
        .await
        .unwrap();
    let WatchEvent::Added(d) = next_change(&mut stream).await else {
        panic!("expected ADDED for the relabelled object");
    };
    assert_eq!(d.name_any(), "db");
    cms.patch("web", &PatchParams::default(), &relabel("api"))
        .await
        .unwrap();
    let WatchEvent::Deleted(gone) = next_change(&mut stream).await else {
        panic!("expected DELETED for the object that left the selector");
    };
    assert_eq!(gone.name_any(), "web");
    assert_eq!(gone.labels()["app"], "api");
    cms.delete("web", &DeleteParams::default()).await.unwrap();
    cms.delete("db", &DeleteParams::default()).await.unwrap();
    let WatchEvent::Deleted(d) = next_change(&mut stream).await else {
        panic!("expected DELETED");
    };
    assert_eq!(d.name_any(), "db");
    drop(stream);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_runtime_watcher_sees_create_modify_delete() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["rt"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "rt");
    create(&cms, "rt", "existing", json!({})).await;
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, events.try_next()).await {
            Ok(Ok(Some(watcher::Event::InitApply(o)))) => initial.push(o.name_any()),
            Ok(Ok(Some(watcher::Event::InitDone))) => break,
            Ok(Ok(Some(_))) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(initial, ["existing"]);
    create(&cms, "rt", "new", json!({})).await;
    cms.patch(
        "new",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"n": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("new", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(WAIT, events.try_next()).await {
            Ok(Ok(Some(watcher::Event::Apply(o)))) => {
                seen.push(format!("apply {} {}", o.name_any(), o.data.unwrap()["n"]))
            }
            Ok(Ok(Some(watcher::Event::Delete(o)))) => {
                seen.push(format!("delete {}", o.name_any()))
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, ["apply new 1", "apply new 2", "delete new"]);
    drop(events);
    fake.shutdown().await;
}

#[tokio::test]
async fn await_condition_on_a_crd_and_a_deployment() {
    let fake = FakeKube::start(
        FakeConfig::default()
            .with_crd_established_delay(Duration::from_millis(300))
            .with_deployment_ready_delay(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let client = client(&fake);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    apply_json(
        &crds,
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
            },
        }),
    )
    .await
    .unwrap();
    // Nobody polls: the watch alone must see the CRD become Established.
    let crd = tokio::time::timeout(
        WAIT,
        await_condition(
            crds.clone(),
            "widgets.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("the CRD never became Established")
    .unwrap()
    .unwrap();
    assert!(crd.status.is_some());

    make_namespaces(&client, &["app"]).await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "app");
    apply_json(&deps, deployment("app", "web", 2))
        .await
        .unwrap();
    let dep = tokio::time::timeout(
        WAIT,
        await_condition(deps.clone(), "web", conditions::is_deployment_completed()),
    )
    .await
    .expect("the Deployment never became available")
    .unwrap()
    .unwrap();
    assert_eq!(dep.status.unwrap().available_replicas, Some(2));

    // A custom resource of the new type can be watched too.
    let ar = kube::api::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "example.com",
        "v1",
        "Widget",
    ));
    let widgets: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), "app", &ar);
    let mut stream = widgets
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .unwrap()
        .boxed();
    let w: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "app"}, "spec": {"size": 3},
    }))
    .unwrap();
    widgets
        .patch("w1", &apply(), &Patch::Apply(&w))
        .await
        .unwrap();
    let WatchEvent::Added(got) = next_change(&mut stream).await else {
        panic!("expected ADDED");
    };
    assert_eq!(got.name_any(), "w1");
    assert_eq!(got.data["spec"]["size"], 3);
    drop(stream);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_runtime_watcher_recovers_from_410_by_relisting() {
    // A short history, watches that time out after a second, no bookmarks: the
    // watcher's version falls out of the history while it re-watches.
    let fake = FakeKube::start(FakeConfig::default().with_watch_history(5))
        .await
        .unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["quiet", "busy"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "quiet");
    create(&cms, "quiet", "first", json!({})).await;
    let config = watcher::Config::default().timeout(1).disable_bookmarks();
    let mut events = watcher(cms.clone(), config).boxed();
    let mut errors = Vec::new();
    let mut inits = 0;
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap() {
            Some(Ok(watcher::Event::InitDone)) => {
                inits += 1;
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => errors.push(e.to_string()),
            None => panic!("the watcher ended"),
        }
    }
    // ConfigMaps change in another namespace: the window is per type, not per
    // namespace, so the quiet watch's version falls out of it.
    let busy: Api<ConfigMap> = Api::namespaced(client.clone(), "busy");
    for i in 0..8 {
        create(&busy, "busy", &format!("c{i}"), json!({})).await;
    }
    // After the 1 s timeout the watcher re-watches from its old version: 410, then
    // a fresh list.
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap() {
            Some(Ok(watcher::Event::InitDone)) => {
                inits += 1;
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => errors.push(e.to_string()),
            None => panic!("the watcher ended"),
        }
    }
    assert_eq!(inits, 2);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("410") || e.contains("too old")),
        "{errors:?}"
    );
    assert!(fake.counts().of("list", "configmaps") >= 2);
    // And it keeps watching.
    create(&cms, "quiet", "after", json!({})).await;
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap() {
            Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)))
                if o.name_any() == "after" =>
            {
                break
            }
            Some(_) => {}
            None => panic!("the watcher ended"),
        }
    }
    drop(events);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_reflector_mirrors_the_fake_after_a_namespace_delete() {
    let fake = FakeKube::start(
        FakeConfig::default().with_namespace_delete_delay(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["keep", "drop"]).await;
    let all: Api<ConfigMap> = Api::all(client.clone());
    for (ns, name) in [
        ("keep", "k1"),
        ("drop", "d1"),
        ("drop", "d2"),
        ("drop", "d3"),
    ] {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        create(&api, ns, name, json!({})).await;
    }
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(all, watcher::Config::default()));
    let task = tokio::spawn(stream.applied_objects().for_each(|_| async {}));
    let names = |reader: &reflector::Store<ConfigMap>| -> BTreeSet<String> {
        reader
            .state()
            .iter()
            .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
            .collect()
    };
    let fake_names = |fake: &FakeKube| -> BTreeSet<String> {
        fake.objects("configmaps")
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    eventually("the reflector's first sync", || {
        let (reader, fake) = (&reader, &fake);
        async move { (names(reader) == fake_names(fake)).then_some(()) }
    })
    .await;
    assert_eq!(names(&reader).len(), 4);

    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("drop", &DeleteParams::default()).await.unwrap();
    // Nobody else polls: the namespace cleanup runs and its deletions reach the
    // reflector through the watch.
    eventually("the namespace's objects to leave the reflector", || {
        let reader = &reader;
        async move { (names(reader).len() == 1).then_some(()) }
    })
    .await;
    assert_eq!(names(&reader), fake_names(&fake));
    assert_eq!(names(&reader).into_iter().collect::<Vec<_>>(), ["keep/k1"]);
    task.abort();
    fake.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut stream = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    tokio::time::timeout(WAIT, fake.shutdown())
        .await
        .expect("shutdown hung on an open watch");
    let end = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the watch did not end");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
}

#[tokio::test]
async fn a_watcher_converges_through_injected_faults() {
    let fake = FakeKube::start(FakeConfig::default().with_seed(7))
        .await
        .unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["flaky"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "flaky");
    fake.set_fault_rate(0.3);
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream =
        reflector(writer, watcher(cms.clone(), watcher::Config::default())).default_backoff();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    for i in 0..10 {
        let cm = configmap("flaky", &format!("c{i}"), json!({}));
        eventually("a create through the faults", || {
            let (cms, cm) = (&cms, &cm);
            async move {
                match cms.create(&PostParams::default(), cm).await {
                    Ok(_) => Some(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => Some(()),
                    Err(_) => None,
                }
            }
        })
        .await;
    }
    eventually("the reflector to hold every object", || {
        let reader = &reader;
        async move { (reader.state().len() == 10).then_some(()) }
    })
    .await;
    // The reflector may hold every object from its (retried) lists before one of its
    // watches got through the faults; it keeps watching, so one does.
    eventually("a watch to be served", || {
        let fake = &fake;
        async move { (fake.counts().of("watch", "configmaps") >= 1).then_some(()) }
    })
    .await;
    assert!(fake.counts().faults > 0);
    task.abort();
    fake.set_fault_rate(0.0);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_streaming_list_watcher_gets_the_initial_events_then_changes() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["sl"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "sl");
    for n in ["a", "b"] {
        create(&cms, "sl", n, json!({})).await;
    }
    // sendInitialEvents=true&resourceVersionMatch=NotOlderThan: no list call at all.
    let mut events = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, events.try_next()).await {
            Ok(Ok(Some(watcher::Event::InitApply(o)))) => initial.push(o.name_any()),
            Ok(Ok(Some(watcher::Event::InitDone))) => break,
            Ok(Ok(Some(_))) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(initial, ["a", "b"]);
    create(&cms, "sl", "c", json!({})).await;
    match tokio::time::timeout(WAIT, events.try_next()).await {
        Ok(Ok(Some(watcher::Event::Apply(o)))) => assert_eq!(o.name_any(), "c"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.counts().of("list", "configmaps"), 0);
    drop(events);

    // On the wire: the initial events end with an annotated bookmark.
    let text = raw_get(
        &client,
        "/api/v1/namespaces/sl/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1&allowWatchBookmarks=true",
    )
    .await;
    let events = lines(&text);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "BOOKMARK", "{text}");
    assert_eq!(
        last["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // Without bookmarks a streaming list is refused (422), as the API server does.
    let mut req = kube::core::Request::new("/api/v1/namespaces")
        .list(&ListParams::default())
        .unwrap();
    *req.uri_mut() =
        "/api/v1/namespaces/sl/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
            .parse()
            .unwrap();
    match client.request_text(req).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("{other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn controllers_status_writes_are_events_and_a_deleted_crd_ends_its_watches() {
    let fake = FakeKube::start(
        FakeConfig::default()
            .with_lb_provision_delay(Duration::from_millis(100))
            .with_crd_established_delay(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["lb"]).await;
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "lb");
    let mut stream = svcs
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .unwrap()
        .boxed();
    apply_json(
        &svcs,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "proxy", "namespace": "lb"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]},
        }),
    )
    .await
    .unwrap();
    assert!(matches!(
        next_change(&mut stream).await,
        WatchEvent::Added(_)
    ));
    // The simulated cloud publishes the ingress IP: a MODIFIED event nobody polled for.
    let WatchEvent::Modified(s) = next_change(&mut stream).await else {
        panic!("expected MODIFIED");
    };
    let ingress = s.status.unwrap().load_balancer.unwrap().ingress.unwrap();
    assert!(ingress[0].ip.as_deref().unwrap().starts_with("203.0.113."));
    drop(stream);

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    apply_json(
        &crds,
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "gadgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                "scope": "Cluster",
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
            },
        }),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(
            crds.clone(),
            "gadgets.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let ar = kube::api::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "example.com",
        "v1",
        "Gadget",
    ));
    let gadgets: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar);
    let g: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"},
    }))
    .unwrap();
    gadgets.create(&PostParams::default(), &g).await.unwrap();
    let mut stream = gadgets
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        next_change(&mut stream).await,
        WatchEvent::Added(_)
    ));
    crds.delete("gadgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    // Its objects go with it, and the watch ends.
    let WatchEvent::Deleted(gone) = next_change(&mut stream).await else {
        panic!("expected DELETED");
    };
    assert_eq!(gone.name_any(), "g1");
    let end = tokio::time::timeout(WAIT, stream.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
    fake.shutdown().await;
}

#[tokio::test]
async fn lists_page_with_limit_and_continue_and_answer_exact_versions() {
    let fake = FakeKube::start(FakeConfig::default().with_watch_history(50))
        .await
        .unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["pg"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "pg");
    for i in 0..5 {
        create(&cms, "pg", &format!("c{i}"), json!({})).await;
    }
    let first = cms.list(&ListParams::default().limit(2)).await.unwrap();
    let names = |l: &kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items.iter().map(|o| o.name_any()).collect()
    };
    assert_eq!(names(&first), ["c0", "c1"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().unwrap();
    // Changes after the first page do not show in the later ones (one snapshot).
    cms.delete("c3", &DeleteParams::default()).await.unwrap();
    create(&cms, "pg", "c5", json!({})).await;
    let second = cms
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&second), ["c2", "c3"]);
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let third = cms
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(names(&third), ["c4"]);
    assert!(third.metadata.continue_.is_none());

    // resourceVersionMatch=Exact: the state at that version; the current one by default.
    let at = first.metadata.resource_version.clone().unwrap();
    let exact = cms
        .list(
            &ListParams::default()
                .at(&at)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap();
    assert_eq!(names(&exact), ["c0", "c1", "c2", "c3", "c4"]);
    let now = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&now), ["c0", "c1", "c2", "c4", "c5"]);
    // A version from the future is 504 "Too large resource version".
    let future = (now
        .metadata
        .resource_version
        .unwrap()
        .parse::<u64>()
        .unwrap()
        + 100)
        .to_string();
    let e = crate::api_error(
        cms.list(
            &ListParams::default()
                .at(&future)
                .matching(kube::api::VersionMatch::NotOlderThan),
        )
        .await,
    );
    assert_eq!(e.code, 504, "{e:?}");
    fake.shutdown().await;
}

#[tokio::test]
async fn an_exact_list_or_continue_older_than_the_history_is_410() {
    let fake = FakeKube::start(FakeConfig::default().with_watch_history(3))
        .await
        .unwrap();
    let client = client(&fake);
    make_namespaces(&client, &["ex"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ex");
    for i in 0..3 {
        create(&cms, "ex", &format!("c{i}"), json!({})).await;
    }
    let first = cms.list(&ListParams::default().limit(1)).await.unwrap();
    for i in 3..8 {
        create(&cms, "ex", &format!("c{i}"), json!({})).await;
    }
    let e = crate::api_error(
        cms.list(
            &ListParams::default()
                .limit(1)
                .continue_token(first.metadata.continue_.as_deref().unwrap()),
        )
        .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}");
    let e = crate::api_error(
        cms.list(
            &ListParams::default()
                .at(first.metadata.resource_version.as_deref().unwrap())
                .matching(kube::api::VersionMatch::Exact),
        )
        .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}");
    fake.shutdown().await;
}
