//! Garbage collection by owner references: background (the default), orphan and
//! foreground propagation; owners that do not resolve (another uid, another
//! namespace) and kinds the server does not serve.

use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::{api_error, client, namespace};

async fn owner(client: &Client, ns: &str, name: &str) -> ConfigMap {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap()
}

fn reference(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid})
}

fn owned_by(o: &ConfigMap) -> Value {
    reference("v1", "ConfigMap", &o.name_any(), &o.uid().unwrap())
}

/// A Secret in `default` with these owner references (and finalizers).
async fn dependent(client: &Client, name: &str, owners: Vec<Value>, finalizers: &[&str]) {
    let api: Api<Secret> = Api::default_namespaced(client.clone());
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers},
        "stringData": {"k": "v"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &s).await.unwrap();
}

async fn exists(client: &Client, name: &str) -> Option<Secret> {
    let api: Api<Secret> = Api::default_namespaced(client.clone());
    api.get_opt(name).await.unwrap()
}

#[tokio::test]
async fn dependents_go_with_their_last_owner() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let a = owner(&client, "default", "a").await;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let role: ClusterRole = serde_json::from_value(json!({"metadata": {"name": "r"}})).unwrap();
    let role = roles.create(&PostParams::default(), &role).await.unwrap();
    dependent(&client, "only-a", vec![owned_by(&a)], &[]).await;
    let both = vec![
        owned_by(&a),
        reference(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "r",
            &role.uid().unwrap(),
        ),
    ];
    dependent(&client, "a-and-role", both, &[]).await;
    dependent(&client, "held", vec![owned_by(&a)], &["example.com/hold"]).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.delete("a", &DeleteParams::default()).await.unwrap();

    assert!(exists(&client, "only-a").await.is_none());
    // Another owner still exists: only the reference to the gone one is dropped.
    let kept = exists(&client, "a-and-role").await.unwrap();
    let refs = kept.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].kind, "ClusterRole");
    // A dependent with a finalizer is deleted through it.
    let held = exists(&client, "held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(exists(&client, "held").await.is_none());
}

#[tokio::test]
async fn an_owner_that_does_not_resolve_is_absent_and_an_unknown_kind_is_left_alone() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let a = owner(&client, "default", "a").await;
    // The owner's name with another uid (a recreated owner): collected at once.
    dependent(
        &client,
        "stale-uid",
        vec![reference("v1", "ConfigMap", "a", "0000-not-its-uid")],
        &[],
    )
    .await;
    assert!(exists(&client, "stale-uid").await.is_none());
    // A namespaced owner in another namespace never resolves.
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(namespace("other")).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let elsewhere = owner(&client, "other", "b").await;
    dependent(&client, "cross-namespace", vec![owned_by(&elsewhere)], &[]).await;
    assert!(exists(&client, "cross-namespace").await.is_none());
    // A kind nobody serves: the collector cannot map it and leaves the object.
    dependent(
        &client,
        "unknown-kind",
        vec![reference("example.com/v1", "Widget", "w", "1234")],
        &[],
    )
    .await;
    assert!(exists(&client, "unknown-kind").await.is_some());
    // An unresolvable reference beside a gone owner: the object is left as it is.
    dependent(
        &client,
        "mixed",
        vec![
            reference("example.com/v1", "Widget", "w", "1234"),
            reference("v1", "ConfigMap", "gone", "5678"),
        ],
        &[],
    )
    .await;
    let mixed = exists(&client, "mixed").await.unwrap();
    assert_eq!(mixed.metadata.owner_references.unwrap().len(), 2);
    // A version the server does not serve does not resolve either.
    dependent(
        &client,
        "v2",
        vec![reference("v2", "ConfigMap", "a", &a.uid().unwrap())],
        &[],
    )
    .await;
    assert!(exists(&client, "v2").await.is_some());
    // A cluster-scoped object naming a namespaced owner: unresolvable, kept.
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "owned-by-a-configmap", "ownerReferences": [owned_by(&a)]},
    }))
    .unwrap();
    roles.create(&PostParams::default(), &role).await.unwrap();
    assert!(roles
        .get_opt("owned-by-a-configmap")
        .await
        .unwrap()
        .is_some());
    // The right owner: kept.
    dependent(&client, "right", vec![owned_by(&a)], &[]).await;
    assert!(exists(&client, "right").await.is_some());
}

#[tokio::test]
async fn orphan_keeps_the_dependents_and_foreground_deletes_them_first() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());

    let a = owner(&client, "default", "a").await;
    dependent(&client, "orphan", vec![owned_by(&a)], &[]).await;
    cms.delete("a", &DeleteParams::orphan()).await.unwrap();
    let kept = exists(&client, "orphan").await.unwrap();
    assert!(kept.metadata.owner_references.is_none(), "{kept:?}");
    assert!(cms.get_opt("a").await.unwrap().is_none());

    let f = owner(&client, "default", "f").await;
    let other = owner(&client, "default", "other").await;
    dependent(&client, "first", vec![owned_by(&f)], &["example.com/hold"]).await;
    dependent(&client, "shared", vec![owned_by(&f), owned_by(&other)], &[]).await;
    let answered = cms.delete("f", &DeleteParams::foreground()).await.unwrap();
    // Answered with the owner as marked: timestamp and finalizer.
    let marked = answered.left().expect("the object, not a Status");
    assert_eq!(
        marked.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    // A dependent another owner holds only loses its reference.
    let shared = exists(&client, "shared").await.unwrap();
    let refs = shared.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "other");
    // The owner waits for its dependent, which is being deleted.
    let waiting = cms.get("f").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        waiting.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    assert!(exists(&client, "first")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets
        .patch(
            "first",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(exists(&client, "first").await.is_none());
    assert!(cms.get_opt("f").await.unwrap().is_none());

    // An owner with nothing to wait for goes at once.
    owner(&client, "default", "g").await;
    cms.delete("g", &DeleteParams::foreground()).await.unwrap();
    assert!(cms.get_opt("g").await.unwrap().is_none());
}

#[tokio::test]
async fn an_unknown_propagation_policy_is_invalid() {
    use axum::http::Request;
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    owner(&client, "default", "a").await;
    let delete = |body: &str| {
        Request::builder()
            .method("DELETE")
            .uri("/api/v1/namespaces/default/configmaps/a")
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    let e = api_error(
        client
            .request_text(delete(r#"{"propagationPolicy":"Sideways"}"#))
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        e.message,
        "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \
         \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
    );
    let e = api_error(
        client
            .request_text(delete(
                r#"{"propagationPolicy":"Orphan","orphanDependents":true}"#,
            ))
            .await,
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("orphanDependents and deletionPropagation cannot be both set"),
        "{}",
        e.message
    );
    // The options are checked before the object is looked up.
    let missing = Request::builder()
        .method("DELETE")
        .uri("/api/v1/namespaces/default/configmaps/missing")
        .header("content-type", "application/json")
        .body(br#"{"propagationPolicy":"Sideways"}"#.to_vec())
        .unwrap();
    assert_eq!(api_error(client.request_text(missing).await).code, 422);
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    assert!(cms.get_opt("a").await.unwrap().is_some());

    // Without a body, the options come from the query.
    let a = cms.get("a").await.unwrap();
    dependent(&client, "orphaned", vec![owned_by(&a)], &[]).await;
    let by_query = Request::builder()
        .method("DELETE")
        .uri("/api/v1/namespaces/default/configmaps/a?propagationPolicy=Orphan")
        .body(Vec::new())
        .unwrap();
    client.request_text(by_query).await.unwrap();
    assert!(cms.get_opt("a").await.unwrap().is_none());
    let kept = exists(&client, "orphaned").await.unwrap();
    assert!(kept.metadata.owner_references.is_none(), "{kept:?}");
}

#[tokio::test]
async fn owner_references_are_validated() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let a = owner(&client, "default", "a").await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let with = |refs: Value| -> Secret {
        serde_json::from_value(json!({"metadata": {"name": "s", "ownerReferences": refs}})).unwrap()
    };
    let no_uid = with(json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": ""}]));
    let e = api_error(secrets.create(&PostParams::default(), &no_uid).await);
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .contains("metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty"),
        "{}",
        e.message
    );
    let mut first = owned_by(&a);
    first["controller"] = json!(true);
    let mut second = first.clone();
    second["uid"] = json!("another");
    let e = api_error(
        secrets
            .create(&PostParams::default(), &with(json!([first, second])))
            .await,
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("Only one reference can have Controller set to true"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn deleting_a_crd_collects_what_its_objects_owned() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::DynamicObject;
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let crd = crate::ssa::widget_crd("widgets", "Widget", false);
    let widgets = crate::ssa::established(&client, crd).await;
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "default"},
        "spec": {"size": 1},
    }))
    .unwrap();
    let w = widgets.create(&PostParams::default(), &w).await.unwrap();
    dependent(
        &client,
        "of-w1",
        vec![reference(
            "example.com/v1",
            "Widget",
            "w1",
            &w.uid().unwrap(),
        )],
        &[],
    )
    .await;
    assert!(exists(&client, "of-w1").await.is_some());
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert!(exists(&client, "of-w1").await.is_none());
}
