//! The OpenAPI documents of the served kinds: `/openapi/v2` (JSON, or gnostic's
//! protobuf when asked for it, as kubectl does to validate objects) and
//! `/openapi/v3` (its discovery document and one document per group version).
//!
//! The built-in kinds' schemas are k8s-openapi's (its `schemars` impls, generated
//! from the Kubernetes OpenAPI document); an Established CRD's served versions are
//! published from their own `openAPIV3Schema`, converted for v2 the way the API
//! server converts them (what kubectl's v2 validation cannot read dropped).

mod gnostic;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use k8s_openapi::api::admissionregistration::v1 as admission;
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::events::v1 as events;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::JsonSchema;
use serde_json::{json, Map, Value};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::catalog::{self, ResType};
use crate::status::ApiError;
use crate::store::Store;
use crate::{Call, CallKind};

/// The media type kubectl asks the protobuf v2 document (gnostic's
/// `openapi.v2.Document`) with.
pub(crate) const PROTOBUF_V2: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The newer spelling of the same media type, which newer clients ask with and
/// the fake answers with: the `@` of the older one is not valid in a media type
/// (`mime.ParseMediaType` refuses it, and client-go with it any answer that
/// carries it), so API servers never answered with it.
const PROTOBUF_V2_DOTTED: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// One answer of the OpenAPI endpoints.
pub(crate) enum Doc {
    /// A JSON document.
    Json(Value),
    /// A protobuf document and its media type.
    Protobuf(Vec<u8>, &'static str),
    /// 404: no such document.
    NotFound,
    /// 406: a media type the fake cannot produce.
    NotAcceptable,
}

/// The answer to `GET path` if `path` is an OpenAPI path, `None` otherwise; the
/// call is recorded (a read of `openapi`, its response `{"mediaType", "bytes"}`).
pub(crate) fn serve(st: &mut Store, path: &str, accept: &str) -> Option<Doc> {
    let doc = document(st, path, accept)?;
    let (status, response) = match &doc {
        Doc::Json(v) => (
            200,
            json!({"mediaType": "application/json", "bytes": v.to_string().len()}),
        ),
        Doc::Protobuf(b, m) => (200, json!({"mediaType": m, "bytes": b.len()})),
        Doc::NotFound => (404, ApiError::no_resource().body()),
        Doc::NotAcceptable => (406, Value::Null),
    };
    st.counts.reads += 1;
    if status >= 300 {
        st.counts.errors += 1;
    }
    *st.counts.per_verb.entry("get openapi".into()).or_insert(0) += 1;
    st.record(Call {
        method: "GET".into(),
        path: path.to_string(),
        query: Vec::new(),
        content_type: None,
        body: None,
        status,
        response,
        verb: "get".into(),
        resource: "openapi".into(),
        kind: CallKind::Read,
        fault: false,
    });
    Some(doc)
}

fn document(st: &Store, path: &str, accept: &str) -> Option<Doc> {
    let path = path.trim_end_matches('/');
    if path == "/openapi/v2" || path == "/swagger.json" {
        let doc = v2_document(st);
        let wants = |m: &str| {
            accept
                .split(',')
                .any(|a| a.split(';').next().unwrap_or("").trim() == m)
        };
        return Some(if wants(PROTOBUF_V2) || wants(PROTOBUF_V2_DOTTED) {
            Doc::Protobuf(gnostic::encode(&doc), PROTOBUF_V2_DOTTED)
        } else if accept.is_empty()
            || wants("application/json")
            || wants("*/*")
            || wants("application/*")
        {
            Doc::Json(doc)
        } else {
            Doc::NotAcceptable
        });
    }
    if path == "/openapi/v3" {
        return Some(Doc::Json(v3_discovery(st)));
    }
    let gv = path.strip_prefix("/openapi/v3/")?;
    Some(match v3_document(st, gv) {
        Some(doc) => Doc::Json(doc),
        None => Doc::NotFound,
    })
}

/// The HTTP answer for a [`Doc`].
pub(crate) fn response(doc: Doc) -> Response {
    match doc {
        Doc::Json(v) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
        Doc::Protobuf(bytes, media_type) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, media_type)], bytes).into_response()
        }
        Doc::NotFound => status(ApiError::no_resource()),
        Doc::NotAcceptable => status(ApiError::new(
            406,
            "NotAcceptable",
            format!("only application/json and {PROTOBUF_V2} are available for /openapi/v2"),
        )),
    }
}

fn status(e: ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        e.body().to_string(),
    )
        .into_response()
}

/// Adds the schema of one built-in kind (and of everything it refers to) to `schemas`;
/// its definition's name, or `None` for a kind the fake has no schema for.
fn built_in_schema(schemas: Option<&mut SchemaGenerator>, t: &ResType) -> Option<String> {
    fn add<T: JsonSchema>(schemas: Option<&mut SchemaGenerator>) -> Option<String> {
        if let Some(schemas) = schemas {
            schemas.subschema_for::<T>();
        }
        Some(T::schema_name().into_owned())
    }
    match (t.group.as_str(), t.version.as_str(), t.kind.as_str()) {
        ("", "v1", "ConfigMap") => add::<core::ConfigMap>(schemas),
        ("", "v1", "Event") => add::<core::Event>(schemas),
        ("", "v1", "Namespace") => add::<core::Namespace>(schemas),
        ("", "v1", "Node") => add::<core::Node>(schemas),
        ("", "v1", "Pod") => add::<core::Pod>(schemas),
        ("", "v1", "Secret") => add::<core::Secret>(schemas),
        ("", "v1", "Service") => add::<core::Service>(schemas),
        ("", "v1", "ServiceAccount") => add::<core::ServiceAccount>(schemas),
        ("apps", "v1", "Deployment") => add::<apps::Deployment>(schemas),
        ("coordination.k8s.io", "v1", "Lease") => add::<coordination::Lease>(schemas),
        ("events.k8s.io", "v1", "Event") => add::<events::Event>(schemas),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => add::<rbac::ClusterRole>(schemas),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            add::<rbac::ClusterRoleBinding>(schemas)
        }
        ("rbac.authorization.k8s.io", "v1", "Role") => add::<rbac::Role>(schemas),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => add::<rbac::RoleBinding>(schemas),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => {
            add::<apiext::CustomResourceDefinition>(schemas)
        }
        ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => {
            add::<admission::MutatingWebhookConfiguration>(schemas)
        }
        ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => {
            add::<admission::ValidatingWebhookConfiguration>(schemas)
        }
        _ => None,
    }
}

/// A generator whose references point into `prefix` (`/definitions` for v2,
/// `/components/schemas` for v3), with no transforms: a `$ref` keeps its
/// `description` sibling, as in the Kubernetes documents.
fn generator(prefix: &'static str) -> SchemaGenerator {
    SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = prefix.into();
            s.meta_schema = None;
            s.transforms = Vec::new();
        })
        .into_generator()
}

fn gvk(t: &ResType, kind: &str) -> Value {
    json!([{"group": t.group, "version": t.version, "kind": kind}])
}

/// The definition name the API server gives a custom kind: the group reversed, the
/// version and the kind (`io.cert-manager.v1.ClusterIssuer`).
fn custom_name(t: &ResType, kind: &str) -> String {
    let mut parts: Vec<&str> = t.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{kind}", parts.join("."), t.version)
}

/// The `{Kind}List` definition next to a kind's.
fn list_definition(t: &ResType, item_ref: &str, prefix: &str) -> Value {
    json!({
        "description": format!("{} is a list of {}", t.list_kind, t.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "items": {"type": "array", "items": {"$ref": item_ref}, "description": format!("List of {}.", t.plural)},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": {"$ref": format!("#{prefix}/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"), "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": gvk(t, &t.list_kind),
    })
}

/// The definitions of the built-in kinds in `types` (each with its GVK and a List
/// definition) and everything they refer to; `prefix` as for [`generator`].
fn built_in_definitions(types: &[ResType], prefix: &'static str) -> Map<String, Value> {
    let mut schemas = generator(prefix);
    schemas.subschema_for::<meta::ListMeta>();
    let mut kinds = Vec::new();
    for t in types.iter().filter(|t| !t.custom) {
        if let Some(name) = built_in_schema(Some(&mut schemas), t) {
            kinds.push((t, name));
        }
    }
    let mut defs = schemas.take_definitions(false);
    // Any JSON value (a CRD schema's `enum`, `default`, `example`): Kubernetes' own
    // document gives it no type; k8s-openapi's says `object`, which would make
    // kubectl refuse `enum: [a, b]` in a CRD.
    if let Some(Value::Object(json)) =
        defs.get_mut("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON")
    {
        json.remove("type");
    }
    for (t, name) in kinds {
        if let Some(Value::Object(def)) = defs.get_mut(&name) {
            def.insert("x-kubernetes-group-version-kind".into(), gvk(t, &t.kind));
            // k8s-openapi requires `metadata` (its Rust types have it); Kubernetes'
            // schemas do not.
            if let Some(Value::Array(req)) = def.get_mut("required") {
                req.retain(|r| r != "metadata");
                if req.is_empty() {
                    def.remove("required");
                }
            }
        }
        let list_name = format!("{name}List");
        let item_ref = format!("#{prefix}/{name}");
        defs.insert(list_name, list_definition(t, &item_ref, prefix));
    }
    defs
}

/// The built-in definitions for v2 (computed once: the built-in kinds are fixed).
fn built_in_v2() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(|| built_in_definitions(catalog::built_ins(), "/definitions"))
}

/// What the API server's v2 conversion of a structural schema drops because
/// kubectl's v2 validation cannot read it: `allOf`/`oneOf`/`anyOf`/`not`;
/// the type of int-or-string and nullable values; the properties and items of
/// nullable, embedded and unknown-field-preserving values; the type of an array
/// left without items; nullable properties from `required`.
fn to_v2(v: &mut Value) {
    let Some(o) = v.as_object_mut() else {
        return;
    };
    for k in ["allOf", "oneOf", "anyOf", "not"] {
        o.remove(k);
    }
    let flag = |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_bool) == Some(true);
    if flag(o, "x-kubernetes-int-or-string") {
        o.remove("type");
    }
    if flag(o, "x-kubernetes-embedded-resource") {
        o.remove("properties");
        o.remove("type");
    }
    if flag(o, "nullable") {
        o.remove("type");
        o.remove("items");
        o.remove("properties");
    }
    o.remove("nullable");
    if flag(o, "x-kubernetes-preserve-unknown-fields") {
        o.remove("items");
        o.remove("properties");
    }
    if o.get("type").and_then(Value::as_str) == Some("array") && !o.contains_key("items") {
        o.remove("type");
    }
    let nullable: Vec<String> = o
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(_, s)| s.get("nullable").and_then(Value::as_bool) == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Array(req)) = o.get_mut("required") {
        req.retain(|r| !r.as_str().is_some_and(|r| nullable.iter().any(|n| n == r)));
    }
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        props.values_mut().for_each(to_v2);
    }
    match o.get_mut("items") {
        Some(Value::Array(items)) => items.iter_mut().for_each(to_v2),
        Some(items) => to_v2(items),
        None => {}
    }
    if let Some(ap @ Value::Object(_)) = o.get_mut("additionalProperties") {
        to_v2(ap);
    }
}

/// The schema a custom kind is published with: its CRD version's
/// `openAPIV3Schema` with `apiVersion`, `kind` and `metadata` (ObjectMeta) set, as
/// the API server publishes it. `None` without a schema.
fn custom_schema(st: &Store, t: &ResType, prefix: &str, v2: bool) -> Option<Value> {
    let crd = st
        .list_kind("apiextensions.k8s.io", "customresourcedefinitions")
        .find(|c| {
            catalog::crd_established(c)
                && c.pointer("/spec/group").and_then(Value::as_str) == Some(&t.group)
                && c.pointer("/spec/names/plural").and_then(Value::as_str) == Some(&t.plural)
        })?;
    let version = crd
        .pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(&t.version))?;
    let mut schema = version.pointer("/schema/openAPIV3Schema")?.clone();
    if v2 {
        let preserve = |p: &str| crd.pointer(p).and_then(Value::as_bool) == Some(true);
        if preserve("/spec/preserveUnknownFields")
            || schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        {
            // As the API server: kubectl's v2 validation would take any property
            // not listed for an unknown field, so such a kind is published as a
            // bare object (not even apiVersion, kind and metadata).
            return Some(json!({
                "type": "object",
                "x-kubernetes-group-version-kind": gvk(t, &t.kind),
            }));
        }
        to_v2(&mut schema);
    }
    let o = schema.as_object_mut()?;
    o.entry("type").or_insert_with(|| json!("object"));
    let props = o
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    props.insert(
        "apiVersion".into(),
        json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}),
    );
    props.insert(
        "kind".into(),
        json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}),
    );
    props.insert(
        "metadata".into(),
        json!({"$ref": format!("#{prefix}/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "description": "Standard object's metadata."}),
    );
    o.insert("x-kubernetes-group-version-kind".into(), gvk(t, &t.kind));
    Some(schema)
}

/// Adds the definitions of the custom kinds in `types` (and their Lists).
fn add_custom(
    st: &Store,
    types: &[ResType],
    prefix: &str,
    v2: bool,
    defs: &mut Map<String, Value>,
) {
    for t in types.iter().filter(|t| t.custom) {
        if let Some(schema) = custom_schema(st, t, prefix, v2) {
            let name = custom_name(t, &t.kind);
            let item_ref = format!("#{prefix}/{name}");
            defs.insert(
                custom_name(t, &t.list_kind),
                list_definition(t, &item_ref, prefix),
            );
            defs.insert(name, schema);
        }
    }
}

fn version_string() -> String {
    let v = catalog::version_info();
    let git = v
        .get("gitVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1.34.0");
    git.split('-').next().unwrap_or(git).to_string()
}

/// The definition names of a type and of its list, `None` for a built-in kind the
/// fake has no schema for.
fn definition_names(t: &ResType) -> Option<(String, String)> {
    if t.custom {
        Some((custom_name(t, &t.kind), custom_name(t, &t.list_kind)))
    } else {
        let name = built_in_schema(None, t)?;
        let list = format!("{name}List");
        Some((name, list))
    }
}

/// A v2 query parameter.
fn query_param(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "type": kind, "uniqueItems": true, "description": description})
}

/// The v2 paths of one type: its operations, each with the kind's GVK and action,
/// and the query parameters the fake honours (`dryRun`, which kubectl looks for
/// before `kubectl diff` and `--dry-run=server`; `fieldManager`; `force` on
/// patches). `fieldValidation` is not listed: the fake does not validate fields,
/// so clients validate on their side, as they do with servers before 1.25.
fn v2_paths(t: &ResType, name: &str, list: &str) -> Map<String, Value> {
    let base = format!("/{}", gv_path(t));
    let collection = if t.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", t.plural)
    } else {
        format!("{base}/{}", t.plural)
    };
    let item = format!("{collection}/{{name}}");
    let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
    let schema = |n: &str| json!({"$ref": format!("#/definitions/{n}")});
    let ok = |n: &str| json!({"200": {"description": "OK", "schema": schema(n)}});
    let dry_run = query_param(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. Valid values: All.",
    );
    let field_manager = query_param(
        "fieldManager",
        "string",
        "The name of the actor making the change.",
    );
    let force = query_param(
        "force",
        "boolean",
        "Force is going to \"force\" Apply requests.",
    );
    let body =
        |n: &str| json!({"name": "body", "in": "body", "required": true, "schema": schema(n)});
    let patch_body =
        json!({"name": "body", "in": "body", "required": true, "schema": {"type": "object"}});
    let op = |id: &str, action: &str, params: Vec<Value>, resp: Value| {
        json!({
            "operationId": format!("{id}{}", t.kind),
            "consumes": ["*/*"],
            "produces": ["application/json", "application/yaml"],
            "parameters": params,
            "responses": resp,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        })
    };
    let path_param = |n: &str| json!({"name": n, "in": "path", "required": true, "type": "string", "uniqueItems": true});
    let mut common = Vec::new();
    if t.namespaced {
        common.push(path_param("namespace"));
    }
    let mut item_common = vec![path_param("name")];
    item_common.extend(common.iter().cloned());
    let mut out = Map::new();
    out.insert(
        collection,
        json!({
            "get": op("list", "list", Vec::new(), ok(list)),
            "post": op("create", "post", vec![body(name), dry_run.clone(), field_manager.clone()], ok(name)),
            "delete": op("deletecollection", "deletecollection", vec![dry_run.clone()], ok(name)),
            "parameters": common,
        }),
    );
    out.insert(
        item,
        json!({
            "get": op("read", "get", Vec::new(), ok(name)),
            "put": op("replace", "put", vec![body(name), dry_run.clone(), field_manager.clone()], ok(name)),
            "patch": op(
                "patch",
                "patch",
                vec![patch_body, dry_run.clone(), field_manager, force],
                ok(name),
            ),
            "delete": op("delete", "delete", vec![dry_run], ok(name)),
            "parameters": item_common,
        }),
    );
    out
}

/// `GET /openapi/v2` (JSON).
pub(crate) fn v2_document(st: &Store) -> Value {
    let types = catalog::all_types(st);
    let mut defs = built_in_v2().clone();
    add_custom(st, &types, "/definitions", true, &mut defs);
    let mut paths = Map::new();
    for t in &types {
        if let Some((name, list)) = definition_names(t) {
            if defs.contains_key(&name) {
                paths.extend(v2_paths(t, &name, &list));
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": version_string()},
        "paths": paths,
        "definitions": defs,
    })
}

/// `api/v1` or `apis/{group}/{version}` of a type.
fn gv_path(t: &ResType) -> String {
    if t.group.is_empty() {
        format!("api/{}", t.version)
    } else {
        format!("apis/{}/{}", t.group, t.version)
    }
}

/// The served group versions, each with its types.
fn group_versions(st: &Store) -> Vec<(String, Vec<ResType>)> {
    let mut out: Vec<(String, Vec<ResType>)> = Vec::new();
    for t in catalog::all_types(st) {
        let gv = gv_path(&t);
        match out.iter_mut().find(|(g, _)| *g == gv) {
            Some((_, ts)) => ts.push(t),
            None => out.push((gv, vec![t])),
        }
    }
    out
}

fn hash(v: &Value) -> String {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `GET /openapi/v3`: where each group version's document is.
pub(crate) fn v3_discovery(st: &Store) -> Value {
    let mut paths = Map::new();
    for (gv, _) in group_versions(st) {
        let url = match v3_document(st, &gv) {
            Some(doc) => format!("/openapi/v3/{gv}?hash={}", hash(&doc)),
            None => format!("/openapi/v3/{gv}"),
        };
        paths.insert(gv, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// The operations of one type's paths, each answering with the kind's schema.
fn v3_paths(t: &ResType, schema_ref: &str, list_ref: &str) -> Map<String, Value> {
    let base = format!("/{}", gv_path(t));
    let collection = if t.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", t.plural)
    } else {
        format!("{base}/{}", t.plural)
    };
    let item = format!("{collection}/{{name}}");
    let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
    let body = |r: &str| json!({"content": {"application/json": {"schema": {"$ref": r}}}, "required": true});
    let ok = |r: &str| json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": r}}}}});
    let param = |n: &str| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}});
    let params = |item: bool| {
        let mut p = Vec::new();
        if item {
            p.push(param("name"));
        }
        if t.namespaced {
            p.push(param("namespace"));
        }
        Value::Array(p)
    };
    let op = |action: &str, verb: &str, resp: Value, body: Option<Value>| {
        let mut o = json!({
            "operationId": format!("{verb}{}", t.kind),
            "responses": resp,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        });
        if let Some(b) = body {
            o["requestBody"] = b;
        }
        o
    };
    let mut out = Map::new();
    out.insert(
        collection,
        json!({
            "get": op("list", "list", ok(list_ref), None),
            "post": op("post", "create", ok(schema_ref), Some(body(schema_ref))),
            "parameters": params(false),
        }),
    );
    let patch_body = json!({"content": {
        "application/apply-patch+yaml": {"schema": {"type": "object"}},
        "application/json-patch+json": {"schema": {"type": "object"}},
        "application/merge-patch+json": {"schema": {"type": "object"}},
        "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
    }, "required": true});
    out.insert(
        item,
        json!({
            "get": op("get", "read", ok(schema_ref), None),
            "put": op("put", "replace", ok(schema_ref), Some(body(schema_ref))),
            "patch": op("patch", "patch", ok(schema_ref), Some(patch_body)),
            "delete": op("delete", "delete", json!({"200": {"description": "OK"}}), None),
            "parameters": params(true),
        }),
    );
    out
}

/// `GET /openapi/v3/{gv}` (`api/v1`, `apis/{group}/{version}`).
pub(crate) fn v3_document(st: &Store, gv: &str) -> Option<Value> {
    let types = group_versions(st)
        .into_iter()
        .find(|(g, _)| g == gv)
        .map(|(_, ts)| ts)?;
    let prefix = "/components/schemas";
    let mut defs = built_in_definitions(&types, prefix);
    if types.iter().any(|t| t.custom) {
        let mut schemas = generator(prefix);
        schemas.subschema_for::<meta::ObjectMeta>();
        defs.extend(schemas.take_definitions(false));
        add_custom(st, &types, prefix, false, &mut defs);
    }
    let mut paths = Map::new();
    for t in &types {
        let Some((name, list)) = definition_names(t) else {
            continue;
        };
        if !defs.contains_key(&name) {
            continue;
        }
        paths.extend(v3_paths(
            t,
            &format!("#{prefix}/{name}"),
            &format!("#{prefix}/{list}"),
        ));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": version_string()},
        "paths": paths,
        "components": {"schemas": defs},
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn built_in_kinds_carry_their_gvk() {
        let defs = built_in_v2();
        let secret = &defs["io.k8s.api.core.v1.Secret"];
        assert_eq!(
            secret["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Secret"}])
        );
        assert!(secret.get("required").is_none());
        assert_eq!(
            secret["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(defs.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        assert!(defs.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert_eq!(
            defs["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"][0]["kind"],
            "DeploymentList"
        );
        // Every reference resolves.
        let text = Value::Object(defs.clone()).to_string();
        for r in text.split("\"#/definitions/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(defs.contains_key(name), "dangling $ref {name}");
        }
    }

    #[test]
    fn v2_conversion_drops_what_kubectl_cannot_read() {
        let mut s = json!({
            "type": "object",
            "required": ["a", "n"],
            "properties": {
                "a": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "n": {"type": "string", "nullable": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"x": {"type": "string"}}},
                "list": {"type": "array", "x-kubernetes-preserve-unknown-fields": true, "items": {"type": "string"}},
            }
        });
        to_v2(&mut s);
        assert_eq!(s["required"], json!(["a"]));
        assert_eq!(
            s["properties"]["a"],
            json!({"x-kubernetes-int-or-string": true})
        );
        assert_eq!(s["properties"]["n"], json!({}));
        assert_eq!(
            s["properties"]["free"],
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(
            s["properties"]["list"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
    }
}
