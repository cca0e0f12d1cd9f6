//! Discovery, CRUD and server-side apply of built-in resources.

use std::time::Duration;

use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::{Api, Discovery, ResourceExt};
use serde_json::json;

use crate::{api_error, apply_json, client, deployment, eventually, namespace};

#[tokio::test]
async fn discovery_lists_the_built_ins() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "34")
    );

    let d = Discovery::new(client.clone()).run().await.unwrap();
    for g in [
        "",
        "apps",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "admissionregistration.k8s.io",
    ] {
        assert!(d.has_group(g), "group {g:?} missing");
    }
    assert!(!d.has_group("cert-manager.io"));
    let expect = [
        ("", "Namespace", "namespaces", Scope::Cluster),
        ("", "Secret", "secrets", Scope::Namespaced),
        ("", "Service", "services", Scope::Namespaced),
        ("", "ServiceAccount", "serviceaccounts", Scope::Namespaced),
        ("", "ConfigMap", "configmaps", Scope::Namespaced),
        ("apps", "Deployment", "deployments", Scope::Namespaced),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "clusterroles",
            Scope::Cluster,
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            "clusterrolebindings",
            Scope::Cluster,
        ),
        (
            "rbac.authorization.k8s.io",
            "Role",
            "roles",
            Scope::Namespaced,
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "rolebindings",
            Scope::Namespaced,
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            Scope::Cluster,
        ),
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            Scope::Cluster,
        ),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            Scope::Cluster,
        ),
    ];
    for (group, kind, plural, scope) in expect {
        let version = "v1";
        let (ar, caps) = d
            .resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
            .unwrap_or_else(|| panic!("{kind} not discovered"));
        assert_eq!(ar.plural, plural);
        assert_eq!(caps.scope, scope, "{kind}");
        assert!(caps.supports_operation("patch"), "{kind}");
    }
    let (_, caps) = d
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .unwrap();
    assert!(caps.subresources.iter().any(|(r, _)| r.plural == "status"));
    assert!(fake.counts().of("get", "discovery") >= 6);
    fake.shutdown().await;
}

#[tokio::test]
async fn namespaces_secrets_deployments_and_bindings_round_trip() {
    let fake = FakeKube::start(
        FakeConfig::default()
            .with_namespace_delete_delay(Duration::from_millis(100))
            .with_deployment_ready_delay(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let client = client(&fake);

    // Namespaces: apply creates, a second apply is a no-op, create conflicts.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns_obj = namespace("gitpod");
    ns_obj["metadata"]["labels"] = json!({"app": "gitpod"});
    let ns = apply_json(&namespaces, ns_obj.clone()).await.unwrap();
    assert_eq!(ns.status.as_ref().unwrap().phase.as_deref(), Some("Active"));
    assert!(ns.uid().is_some());
    assert!(ns.creation_timestamp().is_some());
    let again = apply_json(&namespaces, ns_obj.clone()).await.unwrap();
    assert_eq!(again.resource_version(), ns.resource_version());
    assert_eq!(again.uid(), ns.uid());
    assert_eq!(again.labels(), ns.labels());
    assert_eq!(fake.counts().of("apply", "namespaces"), 2);
    let apply_call = fake
        .calls()
        .into_iter()
        .find(|c| c.verb == "apply")
        .unwrap();
    assert_eq!(
        apply_call.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert!(apply_call
        .query
        .contains(&("fieldManager".to_string(), "gitpod-refarch".to_string())));

    let got = namespaces.get("gitpod").await.unwrap();
    assert_eq!(
        got.labels()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("gitpod")
    );
    let all = namespaces.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = all.items.iter().map(|n| n.name_any()).collect();
    assert!(names.contains(&"gitpod".to_string()) && names.contains(&"default".to_string()));
    assert!(all.metadata.resource_version.is_some());
    let selected = namespaces
        .list(&ListParams::default().labels("app=gitpod"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);

    let dup: Namespace = serde_json::from_value(namespace("gitpod")).unwrap();
    let e = api_error(namespaces.create(&PostParams::default(), &dup).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "namespaces \"gitpod\" already exists");

    // Secrets: stringData becomes data; replace with a stale resourceVersion conflicts.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "gitpod");
    let secret = apply_json(
        &secrets,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "gitpod"},
            "stringData": {"password": "hunter2"},
        }),
    )
    .await
    .unwrap();
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        secret.data.as_ref().unwrap().get("password"),
        Some(&ByteString(b"hunter2".to_vec()))
    );
    let mut stale = secret.clone();
    stale.metadata.resource_version = Some("1".into());
    let e = api_error(secrets.replace("db", &PostParams::default(), &stale).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    let replaced = secrets
        .replace("db", &PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(replaced.resource_version(), secret.resource_version());

    // A namespaced object in a missing namespace is 404, like the API server.
    let elsewhere: Api<Secret> = Api::namespaced(client.clone(), "missing");
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}
    }))
    .unwrap();
    let e = api_error(elsewhere.create(&PostParams::default(), &s).await);
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "namespaces \"missing\" not found");
    let e = api_error(secrets.get("nope").await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "secrets \"nope\" not found")
    );

    // Deployments: generation, readiness, merge patch.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "gitpod");
    let d = apply_json(&deployments, deployment("gitpod", "server", 2))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let ready = eventually("deployment ready", || async {
        let d = deployments.get("server").await.unwrap();
        let s = d.status.clone()?;
        (s.ready_replicas == Some(2)).then_some(s)
    })
    .await;
    assert_eq!(ready.available_replicas, Some(2));
    assert_eq!(ready.observed_generation, Some(1));
    let patched = deployments
        .patch(
            "server",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    eventually("deployment scaled", || async {
        let d = deployments.get("server").await.unwrap();
        (d.status?.ready_replicas == Some(3)).then_some(())
    })
    .await;
    // Re-applying keeps the status (a subresource) and converges the spec.
    let reapplied = apply_json(&deployments, deployment("gitpod", "server", 3))
        .await
        .unwrap();
    assert_eq!(reapplied.metadata.generation, Some(2));
    assert_eq!(reapplied.status.unwrap().ready_replicas, Some(3));
    let mut bad = deployment("gitpod", "bad", 1);
    bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let e = api_error(apply_json(&deployments, bad).await);
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));

    // ClusterRoleBindings: apply, list, roleRef is immutable, delete.
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let crb = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "gitpod-refarch:external-dns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "external-dns"},
        "subjects": [{"kind": "ServiceAccount", "name": "external-dns", "namespace": "gitpod"}],
    });
    let b = apply_json(&bindings, crb.clone()).await.unwrap();
    assert_eq!(b.subjects.as_ref().unwrap()[0].name, "external-dns");
    let again = apply_json(&bindings, crb.clone()).await.unwrap();
    assert_eq!(again.resource_version(), b.resource_version());
    assert_eq!(
        bindings
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let mut changed = crb.clone();
    changed["roleRef"]["name"] = json!("admin");
    let e = api_error(apply_json(&bindings, changed).await);
    assert_eq!(e.code, 422);
    assert!(e.message.contains("cannot change roleRef"), "{}", e.message);
    let gone = bindings
        .delete("gitpod-refarch:external-dns", &DeleteParams::default())
        .await
        .unwrap();
    assert!(gone.is_right(), "an immediate delete answers a Status");
    assert!(bindings
        .get_opt("gitpod-refarch:external-dns")
        .await
        .unwrap()
        .is_none());

    // Namespace delete: Terminating, then gone with everything in it.
    let terminating = namespaces
        .delete("gitpod", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("a namespace delete answers the namespace");
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    assert!(terminating.metadata.deletion_timestamp.is_some());
    let e = api_error(secrets.create(&PostParams::default(), &s).await);
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    eventually("namespace gone", || async {
        namespaces
            .get_opt("gitpod")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(fake.object("secrets", Some("gitpod"), "db").is_none());
    assert!(fake
        .object("deployments.apps", Some("gitpod"), "server")
        .is_none());
    let e = api_error(namespaces.delete("default", &DeleteParams::default()).await);
    assert_eq!(e.code, 403);
    fake.shutdown().await;
}

#[tokio::test]
async fn apply_rules_and_status_errors() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client(&fake);
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    // A manager's later apply drops the fields it no longer applies.
    let cm = |data: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cfg", "namespace": "default"}, "data": data})
    };
    apply_json(&configmaps, cm(json!({"a": "1", "b": "2"})))
        .await
        .unwrap();
    configmaps
        .patch(
            "cfg",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"other": "x"}}})),
        )
        .await
        .unwrap();
    let after = apply_json(&configmaps, cm(json!({"a": "1"})))
        .await
        .unwrap();
    let data = after.data.clone().unwrap();
    assert_eq!(data.get("a").map(String::as_str), Some("1"));
    assert!(!data.contains_key("b"));
    assert_eq!(after.labels().get("other").map(String::as_str), Some("x"));
    let managers: Vec<String> = after
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"gitpod-refarch".to_string()));

    // Forced apply is accepted.
    let forced = PatchParams::apply("gitpod-refarch").force();
    let obj: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(cm(json!({"a": "2"}))).unwrap();
    let f = configmaps
        .patch("cfg", &forced, &Patch::Apply(&obj))
        .await
        .unwrap();
    assert_eq!(f.data.unwrap().get("a").map(String::as_str), Some("2"));

    // Dry run: answered, not stored.
    let dry = PatchParams::apply("gitpod-refarch").dry_run();
    let obj: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "dry", "namespace": "default"}}))
        .unwrap();
    let answered = configmaps
        .patch("dry", &dry, &Patch::Apply(&obj))
        .await
        .unwrap();
    assert!(answered.uid().is_some());
    assert!(configmaps.get_opt("dry").await.unwrap().is_none());

    // Field selectors: the fields the API server supports; 400 for the others.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    for (name, ty) in [("tls", "kubernetes.io/tls"), ("plain", "Opaque")] {
        apply_json(
            &secrets,
            json!({"apiVersion": "v1", "kind": "Secret", "type": ty,
                   "metadata": {"name": name, "namespace": "default"},
                   "stringData": {"tls.crt": "c", "tls.key": "k"}}),
        )
        .await
        .unwrap();
    }
    let tls = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
        .unwrap();
    assert_eq!(tls.items.len(), 1);
    assert_eq!(tls.items[0].name_any(), "tls");
    let e = api_error(
        secrets
            .list(&ListParams::default().fields("data.x=y"))
            .await,
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "field label not supported: data.x")
    );
    let e = api_error(
        apply_json(
            &secrets,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                   "metadata": {"name": "bad-tls", "namespace": "default"}}),
        )
        .await,
    );
    assert_eq!(e.code, 422);
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::all(client.clone());
    assert!(services
        .list(&ListParams::default().fields("spec.type=LoadBalancer"))
        .await
        .unwrap()
        .items
        .is_empty());
    let by_name = configmaps
        .list(&ListParams::default().fields("metadata.name=cfg"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    // Raw requests: apply without a field manager; a YAML body; watch.
    use axum::http::Request;
    let raw = |method: &str, uri: &str, ct: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", ct)
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    let e = api_error(
        client
            .request_text(raw(
                "PATCH",
                "/api/v1/namespaces/default/configmaps/cfg",
                "application/apply-patch+yaml",
                "{}",
            ))
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(e.message.contains("fieldManager"), "{}", e.message);
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n";
    let text = client
        .request_text(raw(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/from-yaml?fieldManager=kubectl",
            "application/apply-patch+yaml",
            yaml,
        ))
        .await
        .unwrap();
    let created: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["data"]["k"], "v");
    // A watch streams events (see watch.rs); this one ends after a second.
    let text = client
        .request_text(raw(
            "GET",
            "/api/v1/namespaces?watch=true&timeoutSeconds=1",
            "",
            "",
        ))
        .await
        .unwrap();
    assert!(text.contains(r#""type":"ADDED""#), "{text}");
    let e = api_error(
        client
            .request_text(raw("GET", "/apis/example.com/v1/widgets", "", ""))
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    fake.shutdown().await;
}
