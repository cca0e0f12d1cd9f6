//! Routing of API paths and the REST verbs on objects.

use std::time::Instant;

use serde_json::{json, Value};

use crate::catalog::{self, ResType};
use crate::controllers::{self, finalizers};
use crate::gc;
use crate::managed;
use crate::patch::{self, Selector};
use crate::status::{self, ApiError, ApiResult};
use crate::store::{meta_mut, now_rfc3339, str_at, Key, Store};
use crate::CallKind;

/// One HTTP request.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a [(String, String)],
    pub(crate) content_type: &'a str,
    pub(crate) body: &'a [u8],
    pub(crate) server_addr: &'a str,
    /// The `User-Agent` header ("" when absent): the default field manager.
    pub(crate) user_agent: &'a str,
    /// The `Accept` header ("" when absent): a `Table` may be asked for.
    pub(crate) accept: &'a str,
}

impl Request<'_> {
    pub(crate) fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn flag(&self, name: &str) -> bool {
        matches!(self.q(name), Some("true" | "1"))
    }
    fn dry_run(&self) -> bool {
        self.q("dryRun") == Some("All")
    }
    /// The field manager of a write: `fieldManager`, else what the API server
    /// derives from the `User-Agent` (the part before the first `/`, printable
    /// characters, at most 128).
    fn manager(&self) -> String {
        match self.q("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => self
                .user_agent
                .split('/')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect(),
        }
    }
}

/// Where a path points.
pub(crate) enum Route {
    Version,
    Health,
    CoreVersions,
    GroupList,
    Group(String),
    GroupVersion(String, String),
    Resource(Target),
    Unknown,
}

/// A resource path.
pub(crate) struct Target {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) plural: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) sub: Option<String>,
}

pub(crate) fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["api", v] => Route::GroupVersion(String::new(), v.to_string()),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis"] => Route::GroupList,
        ["apis", g] => Route::Group(g.to_string()),
        ["apis", g, v] => Route::GroupVersion(g.to_string(), v.to_string()),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::Unknown,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let t = |plural: &str, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(Target {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            sub: sub.map(str::to_string),
        })
    };
    let core_ns_sub = |s: &str| group.is_empty() && matches!(s, "status" | "finalize");
    match rest {
        [plural] => t(plural, None, None, None),
        [plural, name] => t(plural, None, Some(name), None),
        ["namespaces", ns, plural] if !core_ns_sub(plural) => t(plural, Some(ns), None, None),
        [plural, name, sub] => t(plural, None, Some(name), Some(sub)),
        ["namespaces", ns, plural, name] => t(plural, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, sub] => t(plural, Some(ns), Some(name), Some(sub)),
        _ => Route::Unknown,
    }
}

const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const YAML: &str = "application/yaml";

fn media_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

/// The verb, the resource (`plural` or `plural/sub`) and how the call is counted.
pub(crate) fn describe(route: &Route, req: &Request<'_>) -> (String, String, CallKind) {
    match route {
        Route::Resource(t) => {
            let verb = match (req.method, t.name.is_some()) {
                ("GET", false) if req.flag("watch") => "watch",
                ("GET", false) => "list",
                ("POST", false) => "create",
                ("DELETE", false) => "deletecollection",
                ("GET", true) => "get",
                ("PUT", true) => "update",
                ("PATCH", true) if media_type(req.content_type) == APPLY => "apply",
                ("PATCH", true) => "patch",
                ("DELETE", true) => "delete",
                _ => "unsupported",
            };
            let resource = match &t.sub {
                Some(s) => format!("{}/{s}", t.plural),
                None => t.plural.clone(),
            };
            let kind = if matches!(verb, "list" | "get" | "watch") {
                CallKind::Read
            } else {
                CallKind::Mutate
            };
            (verb.to_string(), resource, kind)
        }
        Route::Unknown => (
            req.method.to_lowercase(),
            "unknown".to_string(),
            if req.method == "GET" {
                CallKind::Read
            } else {
                CallKind::Mutate
            },
        ),
        _ => ("get".to_string(), "discovery".to_string(), CallKind::Read),
    }
}

/// Answer one request: (HTTP status, body).
pub(crate) fn handle(
    st: &mut Store,
    route: &Route,
    req: &Request<'_>,
    now: Instant,
) -> ApiResult<(u16, Value)> {
    let doc = match route {
        Route::Version => Some(catalog::version_info()),
        Route::Health => Some(Value::String("ok".into())),
        Route::CoreVersions => Some(catalog::core_versions(req.server_addr)),
        Route::GroupList => Some(catalog::group_list(st)),
        Route::Group(g) => catalog::group(st, g),
        Route::GroupVersion(g, v) => catalog::resource_list(st, g, v),
        Route::Unknown => return Err(ApiError::no_resource()),
        Route::Resource(target) => return resource(st, target, req, now),
    };
    if req.method != "GET" {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    doc.map(|v| (200, v)).ok_or_else(ApiError::no_resource)
}

/// The type a resource path names (404 when none is served there).
pub(crate) fn resolve_target(st: &Store, target: &Target) -> ApiResult<ResType> {
    let t = catalog::resolve(st, &target.group, &target.version, &target.plural)
        .ok_or_else(ApiError::no_resource)?;
    if target.namespace.is_some() && !t.namespaced {
        return Err(ApiError::no_resource());
    }
    if t.namespaced && target.name.is_some() && target.namespace.is_none() {
        return Err(ApiError::no_resource());
    }
    Ok(t)
}

fn resource(
    st: &mut Store,
    target: &Target,
    req: &Request<'_>,
    now: Instant,
) -> ApiResult<(u16, Value)> {
    let t = resolve_target(st, target)?;
    check_body_type(req)?;
    let ns = target.namespace.clone().unwrap_or_default();
    match (&target.name, &target.sub) {
        (None, _) => match req.method {
            // Watches are answered by `watches::open` (a streamed body) before this.
            "GET" => list(st, &t, target.namespace.as_deref(), req),
            "POST" if t.namespaced && target.namespace.is_none() => {
                Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ))
            }
            "POST" => {
                let body = parse_body(req)?;
                let op = managed::Op::Update(req.manager());
                let obj = create(st, &t, &ns, body, req.dry_run(), op, now)?;
                Ok((201, obj))
            }
            "DELETE" => delete_collection(st, &t, target.namespace.as_deref(), req, now),
            _ => Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            )),
        },
        (Some(name), None) => {
            let key = catalog::key(&t, &ns, name);
            match req.method {
                "GET" => get_or_table(st, &t, &key, req),
                "PUT" => replace(st, &t, &key, req, None, now).map(|v| (200, v)),
                "PATCH" => patch(st, &t, &key, req, None, now),
                "DELETE" => delete(st, &t, &key, req, now),
                _ => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
        (Some(name), Some(sub)) => {
            if sub != "status" || !t.status_sub {
                return Err(ApiError::no_resource());
            }
            let key = catalog::key(&t, &ns, name);
            match req.method {
                "GET" => get(st, &t, &key).map(|v| (200, v)),
                "PUT" => replace(st, &t, &key, req, Some("status"), now).map(|v| (200, v)),
                "PATCH" => patch(st, &t, &key, req, Some("status"), now),
                _ => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
    }
}

/// The body types a create or update decodes (`""`: no `Content-Type`, taken as
/// JSON, as the API server does).
const OBJECT_TYPES: &[&str] = &["", "application/json", YAML];

/// 415 `UnsupportedMediaType` for a body the fake cannot decode (a protobuf body, say),
/// as a real API server answers for one it cannot, so that clients fall back to JSON.
fn check_body_type(req: &Request<'_>) -> ApiResult<()> {
    let ct = media_type(req.content_type);
    let accepted: &[&str] = match req.method {
        "POST" | "PUT" => OBJECT_TYPES,
        "PATCH" => &[JSON_PATCH, MERGE, STRATEGIC, APPLY],
        // DeleteOptions: JSON, or no body at all.
        "DELETE" if !req.body.iter().all(u8::is_ascii_whitespace) => OBJECT_TYPES,
        _ => return Ok(()),
    };
    if accepted.contains(&ct) {
        Ok(())
    } else {
        let listed: Vec<&str> = accepted.iter().copied().filter(|a| !a.is_empty()).collect();
        Err(ApiError::unsupported_media_type(ct, &listed))
    }
}

/// A create or update body: YAML when sent as `application/yaml`, else JSON.
fn parse_body(req: &Request<'_>) -> ApiResult<Value> {
    if media_type(req.content_type) == YAML {
        parse_yaml(req.body)
    } else {
        parse_json(req.body)
    }
}

fn parse_json(body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding the request body as JSON: {e}")))
}

fn parse_yaml(body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    serde_yaml_ng::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// An object as answered for type `t` (its apiVersion is the requested one).
pub(crate) fn present(t: &ResType, obj: &Value) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = json!(t.api_version());
    o["kind"] = json!(t.kind);
    o
}

fn get(st: &Store, t: &ResType, key: &Key) -> ApiResult<Value> {
    st.objects
        .get(key)
        .map(|o| present(t, o))
        .ok_or_else(|| ApiError::not_found(&t.group, &t.plural, &key.name))
}

fn matching(st: &Store, t: &ResType, ns: Option<&str>, sel: &Selector) -> Vec<(Key, Value)> {
    st.objects
        .of_type(&t.group, &t.plural)
        .filter(|(k, _)| ns.is_none_or(|n| k.namespace == n))
        .filter(|(_, v)| sel.matches(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The fields a `fieldSelector` may name for a type, as the API server allows them.
fn selectable_fields(st: &Store, t: &ResType) -> Vec<String> {
    let mut out = vec![
        "metadata.name".to_string(),
        "metadata.namespace".to_string(),
    ];
    let extra: &[&str] = match (t.group.as_str(), t.plural.as_str()) {
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        _ => &[],
    };
    out.extend(extra.iter().map(|s| s.to_string()));
    if t.custom {
        // CRDs may declare selectableFields (JSON paths such as `.spec.color`).
        for crd in st.list_kind("apiextensions.k8s.io", "customresourcedefinitions") {
            if str_at(crd, "/spec/group") != t.group
                || str_at(crd, "/spec/names/plural") != t.plural
            {
                continue;
            }
            let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
            for v in versions.into_iter().flatten() {
                if str_at(v, "/name") != t.version {
                    continue;
                }
                let fields = v.get("selectableFields").and_then(Value::as_array);
                for f in fields.into_iter().flatten() {
                    let path = str_at(f, "/jsonPath");
                    out.push(path.trim_start_matches('.').to_string());
                }
            }
        }
    }
    out
}

pub(crate) fn selector(st: &Store, t: &ResType, req: &Request<'_>) -> ApiResult<Selector> {
    let sel = Selector::parse(req.q("labelSelector"), req.q("fieldSelector"))
        .map_err(ApiError::bad_request)?;
    let allowed = selectable_fields(st, t);
    if let Some(bad) = sel
        .field_names()
        .into_iter()
        .find(|f| !allowed.iter().any(|a| a == f))
    {
        return Err(ApiError::bad_request(format!(
            "field label not supported: {bad}"
        )));
    }
    Ok(sel)
}

fn list(st: &Store, t: &ResType, ns: Option<&str>, req: &Request<'_>) -> ApiResult<(u16, Value)> {
    let sel = selector(st, t, req)?;
    let list = crate::watches::list(st, t, ns, &sel, req)?;
    if !(t.custom && crate::table::wanted(req.accept)) {
        return Ok((200, list));
    }
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let metadata = list.get("metadata").cloned().unwrap_or(json!({}));
    let table = crate::table::build(st, t, items, metadata, req.q("includeObject"), epoch_now());
    Ok((200, table))
}

/// One object, or its Table when the client asks for one (custom resources).
fn get_or_table(st: &Store, t: &ResType, key: &Key, req: &Request<'_>) -> ApiResult<(u16, Value)> {
    let obj = get(st, t, key)?;
    if !(t.custom && crate::table::wanted(req.accept)) {
        return Ok((200, obj));
    }
    let metadata = json!({"resourceVersion": str_at(&obj, "/metadata/resourceVersion")});
    let table = crate::table::build(
        st,
        t,
        std::slice::from_ref(&obj),
        metadata,
        req.q("includeObject"),
        epoch_now(),
    );
    Ok((200, table))
}

/// Seconds since the epoch, now.
fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Check `apiVersion` and `kind` of a request body against the type.
fn check_type_meta(t: &ResType, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let kind = str_at(obj, "/kind");
    let api_version = str_at(obj, "/apiVersion");
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{obj}'"
        )));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'apiVersion' is missing in '{obj}'"
        )));
    }
    if kind != t.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            t.kind
        )));
    }
    if api_version != t.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            t.api_version()
        )));
    }
    Ok(())
}

/// Metadata the server owns; never taken from a request.
const SERVER_META: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
];

/// What field ownership needs to know of type `t` (the schema of a custom
/// resource's version, from its CRD) for a write to `sub`.
fn managed_ctx<'a>(st: &'a Store, t: &ResType, sub: Option<&str>) -> managed::Ctx<'a> {
    let schema = if t.custom {
        catalog::crd_version(st, t).and_then(|v| v.pointer("/schema/openAPIV3Schema"))
    } else {
        None
    };
    managed::Ctx {
        group: t.group.clone(),
        plural: t.plural.clone(),
        custom: t.custom,
        schema,
        status_sub: t.status_sub,
        sub: sub.map(str::to_string),
    }
}

/// Store `managedFields` in an object (no key when there are none).
fn set_managed_fields(obj: &mut Value, fields: Value) {
    let meta = meta_mut(obj);
    if fields.as_array().is_some_and(Vec::is_empty) {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), fields);
    }
}

/// Create an object of type `t` in `ns` ("" for cluster-scoped).
#[allow(clippy::too_many_arguments)]
fn create(
    st: &mut Store,
    t: &ResType,
    ns: &str,
    mut obj: Value,
    dry_run: bool,
    op: managed::Op,
    now: Instant,
) -> ApiResult<Value> {
    check_type_meta(t, &obj)?;
    let requested = obj.pointer("/metadata/managedFields").cloned();
    let meta = meta_mut(&mut obj);
    for f in SERVER_META {
        meta.remove(*f);
    }
    let body_ns = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        let prefix = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                &t.kind,
                &t.group,
                "",
                &[(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        }
        let suffix: String = (0..5)
            .map(|_| {
                let i = rand::Rng::random_range(&mut st.rng, 0..27usize);
                char::from(b"bcdfghjklmnpqrstvwxz2456789"[i])
            })
            .collect();
        name = format!("{prefix}{suffix}");
    }
    let meta = meta_mut(&mut obj);
    meta.insert("name".into(), json!(name));
    if t.namespaced {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    controllers::validate_name(t, &name)?;
    if t.namespaced {
        match st.objects.get(&Store::key("", "namespaces", "", ns)) {
            None => return Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                return Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    ApiError::qualified(&t.group, &t.plural)
                ))
                .with_details(json!({"name": name, "kind": t.plural})));
            }
            Some(_) => {}
        }
    }
    // Admission webhooks run before storage notices a duplicate.
    controllers::admit(st, t)?;
    let key = catalog::key(t, ns, &name);
    if st.objects.contains_key(&key) {
        return Err(ApiError::already_exists(&t.group, &t.plural, &name));
    }
    if t.status_sub {
        if let Value::Object(o) = &mut obj {
            o.remove("status");
        }
    }
    let ctx = managed_ctx(st, t, None);
    let fields = managed::track(
        &ctx,
        None,
        &obj,
        requested.as_ref(),
        op,
        &t.api_version(),
        &now_rfc3339(),
    )
    .map_err(|c| managed::conflict_error(&c))?;
    set_managed_fields(&mut obj, fields);
    controllers::on_write(st, t, None, &mut obj)?;
    if dry_run {
        let uid = st.uid();
        let meta = meta_mut(&mut obj);
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if catalog::has_generation(t) {
            meta.insert("generation".into(), json!(1));
        }
        return Ok(present(t, &obj));
    }
    st.stamp_new(&mut obj, catalog::has_generation(t));
    st.objects.insert(key.clone(), obj);
    controllers::after_write(st, &key, now);
    let out = stored(st, t, &key);
    // An object none of whose owners exists is collected (after it was answered).
    gc::check(st, &key, now);
    out
}

/// The fields that count for `metadata.generation`: all but metadata and status,
/// and for a custom resource without a status subresource all but metadata (its
/// strategy bumps the generation on any other change, status included).
fn spec_part(t: &ResType, v: &Value) -> Value {
    let mut o = v.clone();
    if let Value::Object(m) = &mut o {
        m.remove("metadata");
        if !t.custom || t.status_sub {
            m.remove("status");
        }
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// Store `new` as the next state of the object at `key` (`sub`: only its status).
#[allow(clippy::too_many_arguments)]
fn update(
    st: &mut Store,
    t: &ResType,
    key: &Key,
    mut new: Value,
    sub: Option<&str>,
    dry_run: bool,
    op: managed::Op,
    now: Instant,
) -> ApiResult<Value> {
    let old = st
        .objects
        .get(key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.group, &t.plural, &key.name))?;
    check_type_meta(t, &new)?;
    let body_name = str_at(&new, "/metadata/name").to_string();
    if !body_name.is_empty() && body_name != key.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            key.name
        )));
    }
    let body_ns = str_at(&new, "/metadata/namespace").to_string();
    if t.namespaced && !body_ns.is_empty() && body_ns != key.namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let body_rv = str_at(&new, "/metadata/resourceVersion").to_string();
    let old_rv = str_at(&old, "/metadata/resourceVersion").to_string();
    if !body_rv.is_empty() && body_rv != old_rv {
        return Err(ApiError::conflict(
            &t.group,
            &t.plural,
            &key.name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let requested = new.pointer("/metadata/managedFields").cloned();
    let mut result = if sub == Some("status") {
        let mut r = old.clone();
        match new.get("status") {
            Some(s) => r["status"] = s.clone(),
            None => {
                if let Value::Object(m) = &mut r {
                    m.remove("status");
                }
            }
        }
        r
    } else {
        let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
        let meta = meta_mut(&mut new);
        for f in SERVER_META {
            match old_meta.get(*f) {
                Some(v) => meta.insert((*f).to_string(), v.clone()),
                None => meta.remove(*f),
            };
        }
        meta.insert("name".into(), json!(key.name));
        if t.namespaced {
            meta.insert("namespace".into(), json!(key.namespace));
        } else {
            meta.remove("namespace");
        }
        if t.status_sub {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Value::Object(m) = &mut new {
                        m.remove("status");
                    }
                }
            }
        }
        controllers::admit(st, t)?;
        new
    };
    // Stored objects keep the apiVersion they were created with.
    result["apiVersion"] = old.get("apiVersion").cloned().unwrap_or(Value::Null);
    let ctx = managed_ctx(st, t, sub);
    let fields = managed::track(
        &ctx,
        Some(&old),
        &result,
        requested.as_ref(),
        op,
        &t.api_version(),
        &now_rfc3339(),
    )
    .map_err(|c| managed::conflict_error(&c))?;
    set_managed_fields(&mut result, fields);
    controllers::on_write(st, t, Some(&old), &mut result)?;
    if catalog::has_generation(t) && spec_part(t, &result) != spec_part(t, &old) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut result).insert("generation".into(), json!(g + 1));
    }
    if result == old || dry_run {
        return Ok(present(t, &result));
    }
    let rv = st.next_rv();
    meta_mut(&mut result).insert("resourceVersion".into(), json!(rv));
    if controllers::releasable(key, &result) {
        controllers::remove_cascade(st, key);
        return Ok(present(t, &result));
    }
    st.objects.insert(key.clone(), result);
    controllers::after_write(st, key, now);
    let out = stored(st, t, key);
    gc::check(st, key, now);
    out
}

/// The object just written, as the answer presents it.
fn stored(st: &Store, t: &ResType, key: &Key) -> ApiResult<Value> {
    st.objects
        .get(key)
        .map(|o| present(t, o))
        .ok_or_else(|| ApiError::not_found(&t.group, &t.plural, &key.name))
}

fn replace(
    st: &mut Store,
    t: &ResType,
    key: &Key,
    req: &Request<'_>,
    sub: Option<&str>,
    now: Instant,
) -> ApiResult<Value> {
    let body = parse_body(req)?;
    update(
        st,
        t,
        key,
        body,
        sub,
        req.dry_run(),
        managed::Op::Update(req.manager()),
        now,
    )
}

fn patch(
    st: &mut Store,
    t: &ResType,
    key: &Key,
    req: &Request<'_>,
    sub: Option<&str>,
    now: Instant,
) -> ApiResult<(u16, Value)> {
    let ct = media_type(req.content_type);
    match ct {
        APPLY => {
            let Some(manager) = req.q("fieldManager").filter(|m| !m.is_empty()) else {
                return Err(ApiError::invalid(
                    "PatchOptions",
                    "meta.k8s.io",
                    "",
                    &[(
                        "fieldManager".into(),
                        "Required value: is required for apply patch".into(),
                    )],
                ));
            };
            let mut applied = parse_yaml(req.body)?;
            check_type_meta(t, &applied)?;
            let body_name = str_at(&applied, "/metadata/name").to_string();
            if body_name != key.name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({})",
                    key.name
                )));
            }
            if applied
                .pointer("/metadata/managedFields")
                .is_some_and(|m| !m.is_null())
            {
                return Err(ApiError::bad_request("metadata.managedFields must be nil"));
            }
            let meta = meta_mut(&mut applied);
            for f in SERVER_META {
                if *f != "resourceVersion" {
                    meta.remove(*f);
                }
            }
            let ctx = managed_ctx(st, t, sub);
            let applier = |set| {
                managed::Op::Apply(managed::Applier {
                    manager: manager.to_string(),
                    force: req.flag("force"),
                    set,
                })
            };
            let Some(old) = st.objects.get(key).cloned() else {
                if sub.is_some() {
                    return Err(ApiError::not_found(&t.group, &t.plural, &key.name));
                }
                let mut body = applied.clone();
                meta_mut(&mut body).remove("resourceVersion");
                let (body, set) = managed::apply(&ctx, None, &body, manager);
                let obj = create(
                    st,
                    t,
                    &key.namespace,
                    body,
                    req.dry_run(),
                    applier(set),
                    now,
                )?;
                return Ok((201, obj));
            };
            let mut live = old.clone();
            meta_mut(&mut live).remove("resourceVersion");
            let (live, set) = managed::apply(&ctx, Some(&live), &applied, manager);
            let obj = update(st, t, key, live, sub, req.dry_run(), applier(set), now)?;
            Ok((200, obj))
        }
        MERGE | STRATEGIC | JSON_PATCH => {
            let body = parse_json(req.body)?;
            let old = st
                .objects
                .get(key)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&t.group, &t.plural, &key.name))?;
            // The patch applies to the live object, resourceVersion included: a
            // patch that sets another one is refused as stale (kubectl's
            // managedFields migration replaces it as a precondition).
            let mut live = old.clone();
            if ct == JSON_PATCH {
                patch::json_patch(&mut live, &body).map_err(|e| {
                    ApiError::invalid(&t.kind, &t.group, &key.name, &[("patch".into(), e)])
                })?;
            } else {
                patch::merge_patch(&mut live, &body);
            }
            let op = managed::Op::Update(req.manager());
            update(st, t, key, live, sub, req.dry_run(), op, now).map(|v| (200, v))
        }
        other => Err(ApiError::unsupported_media_type(
            other,
            &[JSON_PATCH, MERGE, APPLY, STRATEGIC],
        )),
    }
}

fn delete(
    st: &mut Store,
    t: &ResType,
    key: &Key,
    req: &Request<'_>,
    now: Instant,
) -> ApiResult<(u16, Value)> {
    // The options first, as the API server decodes and validates them before it
    // looks the object up.
    let opts = delete_options(req)?;
    let propagation = gc::propagation(&opts)?;
    let old = st
        .objects
        .get(key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.group, &t.plural, &key.name))?;
    for (field, path) in [("UID", "uid"), ("ResourceVersion", "resourceVersion")] {
        let want = str_at(&opts, &format!("/preconditions/{path}"));
        let have = str_at(&old, &format!("/metadata/{path}"));
        if !want.is_empty() && want != have {
            return Err(ApiError::conflict(
                &t.group,
                &t.plural,
                &key.name,
                &format!("Precondition failed: {field} in precondition: {want}, {field} in object meta: {have}"),
            ));
        }
    }
    if req.dry_run() || opts.pointer("/dryRun/0").and_then(Value::as_str) == Some("All") {
        return Ok((200, present(t, &old)));
    }
    let uid = str_at(&old, "/metadata/uid").to_string();
    if t.group.is_empty() && t.plural == "namespaces" {
        if matches!(key.name.as_str(), "default" | "kube-system" | "kube-public") {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{0}\" is forbidden: this namespace may not be deleted",
                key.name
            )));
        }
        controllers::delete_namespace(st, key, now);
        let obj = st.objects.get(key).cloned().unwrap_or(old);
        return Ok((200, present(t, &obj)));
    }
    // Orphan the dependents, or (foreground) delete them first and keep this one
    // until they are gone.
    if let Some(obj) = gc::before_delete(st, key, propagation, now) {
        return Ok((200, present(t, &obj)));
    }
    if !finalizers(&old).is_empty() {
        controllers::start_deletion(st, key, now);
        let obj = st.objects.get(key).cloned().unwrap_or(old);
        return Ok((200, present(t, &obj)));
    }
    controllers::remove_cascade(st, key);
    Ok((200, status::success(&t.group, &t.plural, &key.name, &uid)))
}

/// A DELETE's `DeleteOptions`: its body, or without one its query parameters
/// (`?propagationPolicy=Orphan`, `?orphanDependents=true`), as the API server reads
/// them.
fn delete_options(req: &Request<'_>) -> ApiResult<Value> {
    if !req.body.iter().all(u8::is_ascii_whitespace) {
        return parse_json(req.body);
    }
    let mut opts = serde_json::Map::new();
    if let Some(p) = req.q("propagationPolicy") {
        opts.insert("propagationPolicy".into(), json!(p));
    }
    if let Some(o) = req.q("orphanDependents") {
        let value = match o {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "orphanDependents: invalid boolean value {other:?}"
                )))
            }
        };
        opts.insert("orphanDependents".into(), json!(value));
    }
    Ok(Value::Object(opts))
}

fn delete_collection(
    st: &mut Store,
    t: &ResType,
    ns: Option<&str>,
    req: &Request<'_>,
    now: Instant,
) -> ApiResult<(u16, Value)> {
    if t.group.is_empty() && t.plural == "namespaces" {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let opts = delete_options(req)?;
    let propagation = gc::propagation(&opts)?;
    let sel = selector(st, t, req)?;
    let mut items = Vec::new();
    for (key, obj) in matching(st, t, ns, &sel) {
        if !req.dry_run() {
            if gc::before_delete(st, &key, propagation, now).is_some() {
                // Foreground: marked, its dependents on their way.
            } else if !st.objects.contains_key(&key) {
                // Gone already (collected with an earlier item).
            } else if finalizers(&obj).is_empty() {
                controllers::remove_cascade(st, &key);
            } else {
                controllers::start_deletion(st, &key, now);
            }
        }
        items.push(present(t, &obj));
    }
    Ok((
        200,
        json!({
            "apiVersion": t.api_version(),
            "kind": t.list_kind,
            "metadata": {"resourceVersion": st.objects.rv().to_string()},
            "items": items,
        }),
    ))
}
