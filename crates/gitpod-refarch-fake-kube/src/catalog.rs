//! The resource types the fake serves: the built-ins and those of Established CRDs,
//! and the discovery documents that describe them.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::store::{Key, Store};

/// One served resource type at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResType {
    /// API group ("" for the core group).
    pub(crate) group: String,
    /// The version a request named.
    pub(crate) version: String,
    pub(crate) plural: String,
    pub(crate) singular: String,
    pub(crate) kind: String,
    pub(crate) list_kind: String,
    pub(crate) namespaced: bool,
    pub(crate) short_names: Vec<String>,
    pub(crate) categories: Vec<String>,
    /// Has a `status` subresource (status is ignored on the main resource).
    pub(crate) status_sub: bool,
    /// Defined by a CRD.
    pub(crate) custom: bool,
}

impl ResType {
    /// `v1` or `group/version`.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Whether objects of type `t` carry `metadata.generation`, as in Kubernetes: the
/// kinds whose registry strategy sets it (Deployments, CRDs, webhook
/// configurations) and every custom resource. Namespaces, Services, Secrets,
/// ConfigMaps, ServiceAccounts and the RBAC kinds have none.
pub(crate) fn has_generation(t: &ResType) -> bool {
    t.custom
        || matches!(
            (t.group.as_str(), t.plural.as_str()),
            ("apps", "deployments")
                | ("apiextensions.k8s.io", "customresourcedefinitions")
                | ("admissionregistration.k8s.io", _)
        )
}

/// (group, version, plural, singular, kind, namespaced, short names, status subresource)
type BuiltIn = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
);

const BUILT_INS: &[BuiltIn] = &[
    (
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        false,
    ),
    (
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        true,
    ),
    ("", "v1", "nodes", "node", "Node", false, &["no"], true),
    ("", "v1", "events", "event", "Event", true, &["ev"], false),
    ("", "v1", "secrets", "secret", "Secret", true, &[], false),
    (
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    (
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        true,
    ),
    (
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        &[],
        false,
    ),
    (
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
        false,
    ),
    (
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        "MutatingWebhookConfiguration",
        false,
        &[],
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        "ValidatingWebhookConfiguration",
        false,
        &[],
        false,
    ),
];

/// The built-in groups, in the order `/apis` lists them.
const BUILT_IN_GROUPS: &[&str] = &[
    "apps",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
    "admissionregistration.k8s.io",
    "coordination.k8s.io",
    "events.k8s.io",
];

fn built_in(b: &BuiltIn) -> ResType {
    let (group, version, plural, singular, kind, namespaced, short, status_sub) = *b;
    ResType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: singular.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status_sub,
        custom: false,
    }
}

/// Every built-in resource type (built once).
pub(crate) fn built_ins() -> &'static [ResType] {
    static TYPES: std::sync::OnceLock<Vec<ResType>> = std::sync::OnceLock::new();
    TYPES.get_or_init(|| BUILT_INS.iter().map(built_in).collect())
}

/// True when a CRD object has `Established=True`.
pub(crate) fn crd_established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Established")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn s(v: &Value, p: &str) -> String {
    v.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(v: &Value, p: &str) -> Vec<String> {
    v.pointer(p)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The versions of a CRD object (borrowed: they hold the whole schema).
fn crd_versions(crd: &Value) -> impl Iterator<Item = &Value> {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The version object (`spec.versions[]`: schema, printer columns) of custom type `t`
/// in its CRD.
pub(crate) fn crd_version<'a>(st: &'a Store, t: &ResType) -> Option<&'a Value> {
    st.list_kind("apiextensions.k8s.io", "customresourcedefinitions")
        .filter(|crd| {
            crd.pointer("/spec/group").and_then(Value::as_str) == Some(t.group.as_str())
                && crd.pointer("/spec/names/plural").and_then(Value::as_str)
                    == Some(t.plural.as_str())
        })
        .flat_map(crd_versions)
        .find(|v| v.get("name").and_then(Value::as_str) == Some(t.version.as_str()))
}

/// The resource types a CRD object defines, one per served version (whatever its
/// status).
pub(crate) fn crd_types(crd: &Value) -> Vec<ResType> {
    let group = s(crd, "/spec/group");
    let kind = s(crd, "/spec/names/kind");
    let list_kind = match s(crd, "/spec/names/listKind") {
        l if l.is_empty() => format!("{kind}List"),
        l => l,
    };
    let singular = match s(crd, "/spec/names/singular") {
        l if l.is_empty() => kind.to_lowercase(),
        l => l,
    };
    let namespaced = s(crd, "/spec/scope") != "Cluster";
    crd_versions(crd)
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .map(|v| ResType {
            group: group.clone(),
            version: s(v, "/name"),
            plural: s(crd, "/spec/names/plural"),
            singular: singular.clone(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            namespaced,
            short_names: strings(crd, "/spec/names/shortNames"),
            categories: strings(crd, "/spec/names/categories"),
            status_sub: v.pointer("/subresources/status").is_some(),
            custom: true,
        })
        .collect()
}

/// Every served type: built-ins and the served versions of Established CRDs.
pub(crate) fn all_types(st: &Store) -> Vec<ResType> {
    let mut out = built_ins().to_vec();
    for crd in st.list_kind("apiextensions.k8s.io", "customresourcedefinitions") {
        if crd_established(crd) {
            out.extend(crd_types(crd));
        }
    }
    out
}

/// The type served at `group/version/plural`, if any.
pub(crate) fn resolve(st: &Store, group: &str, version: &str, plural: &str) -> Option<ResType> {
    let is = |t: &ResType| t.group == group && t.version == version && t.plural == plural;
    if let Some(t) = built_ins().iter().find(|t| is(t)) {
        return Some(t.clone());
    }
    // Only the CRD that names this group and plural is turned into types.
    st.list_kind("apiextensions.k8s.io", "customresourcedefinitions")
        .filter(|crd| {
            crd.pointer("/spec/group").and_then(Value::as_str) == Some(group)
                && crd.pointer("/spec/names/plural").and_then(Value::as_str) == Some(plural)
                && crd_established(crd)
        })
        .flat_map(crd_types)
        .find(is)
}

/// A type named like kubectl does: `plural`, `plural.group`, a kind or a short name,
/// optionally qualified by group (any version).
pub(crate) fn resolve_name(st: &Store, name: &str) -> Option<ResType> {
    let types = all_types(st);
    let matches = |t: &ResType, n: &str| {
        t.plural == n
            || t.singular == n
            || t.kind.eq_ignore_ascii_case(n)
            || t.short_names.iter().any(|s| s == n)
    };
    if let Some(t) = types
        .iter()
        .find(|t| t.group.is_empty() && matches(t, name))
    {
        return Some(t.clone());
    }
    if let Some((n, g)) = name.split_once('.') {
        if let Some(t) = types.iter().find(|t| t.group == g && matches(t, n)) {
            return Some(t.clone());
        }
    }
    types.into_iter().find(|t| matches(t, name))
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first.
pub(crate) fn version_priority(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u32, u8, u32)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 2, 0));
        }
        let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        Some((major, level, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some((ma, la, na)), Some((mb, lb, nb))) => {
            // Higher first: compare b to a.
            (lb, mb, nb).cmp(&(la, ma, na))
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// `GET /version`.
pub(crate) fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "emulationMajor": "1",
        "emulationMinor": "34",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "33",
        "gitVersion": "v1.34.0-fake-kube",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`.
pub(crate) fn core_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}],
    })
}

/// Served versions per group (built-in and custom), each group's versions in priority
/// order.
fn groups(st: &Store) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in all_types(st) {
        if t.group.is_empty() {
            continue;
        }
        let v = out.entry(t.group.clone()).or_default();
        if !v.contains(&t.version) {
            v.push(t.version.clone());
        }
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| version_priority(a, b));
    }
    out
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let mut g = json!({"name": name, "versions": vs});
    if let Some(p) = vs.first() {
        g["preferredVersion"] = p.clone();
    }
    g
}

/// `GET /apis`: built-in groups first, then custom ones alphabetically.
pub(crate) fn group_list(st: &Store) -> Value {
    let all = groups(st);
    let mut docs = Vec::new();
    for g in BUILT_IN_GROUPS {
        if let Some(v) = all.get(*g) {
            docs.push(group_doc(g, v));
        }
    }
    for (g, v) in &all {
        if !BUILT_IN_GROUPS.contains(&g.as_str()) {
            docs.push(group_doc(g, v));
        }
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": docs})
}

/// `GET /apis/{group}`.
pub(crate) fn group(st: &Store, group: &str) -> Option<Value> {
    let all = groups(st);
    let v = all.get(group)?;
    let mut doc = group_doc(group, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`.
pub(crate) fn resource_list(st: &Store, group: &str, version: &str) -> Option<Value> {
    let types: Vec<ResType> = all_types(st)
        .into_iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in &types {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        if t.plural == "namespaces" {
            verbs.retain(|v| *v != "deletecollection");
        }
        let mut r = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": verbs,
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        if t.status_sub {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

/// The key of an object of type `t`.
pub(crate) fn key(t: &ResType, namespace: &str, name: &str) -> Key {
    Key {
        group: t.group.clone(),
        plural: t.plural.clone(),
        namespace: if t.namespaced {
            namespace.to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}
