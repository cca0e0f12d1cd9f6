//! Field ownership (`metadata.managedFields`) and server-side apply, after the API
//! server's structured-merge-diff: field sets in the `FieldsV1` format (`f:` fields,
//! `k:` items of associative lists by their keys, `v:` items of set lists, `.` for a
//! node that is itself owned), Apply and Update managers, conflicts between
//! managers, and the removal of the fields an applier stops applying.
//!
//! The schema knowledge is a small table: which lists of the built-in kinds the fake
//! serves are associative (containers by `name`, container ports by
//! `containerPort`+`protocol`, ...), and for custom resources the
//! `x-kubernetes-list-type`/`x-kubernetes-list-map-keys` of the CRD's schema. Every
//! other list is atomic, every object a struct.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Pe {
    /// A field of an object (`f:name`).
    Field(String),
    /// An item of an associative list, by its keys (canonical JSON object: `k:{..}`).
    Key(String),
    /// An item of a set list, by its value (canonical JSON: `v:..`).
    Val(String),
    /// An item of a list by position (`i:N`; only read from requests).
    Index(usize),
}

/// A field path from the object's root.
pub(crate) type Path = Vec<Pe>;
/// A set of owned paths (a path with descendants in the set is owned itself only
/// when it is in the set).
pub(crate) type Set = BTreeSet<Path>;

/// How a list merges.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ListType {
    /// Replaced and owned as a whole.
    Atomic,
    /// A set of scalars: items owned one by one (`v:`).
    Set,
    /// An associative list: items owned one by one by these keys (with the default
    /// of a key an item may omit).
    Map(Vec<(String, Option<Value>)>),
}

/// What the schema rules depend on: the type written and, for a custom resource,
/// the `openAPIV3Schema` of its version.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ctx<'a> {
    pub(crate) group: String,
    pub(crate) plural: String,
    pub(crate) custom: bool,
    /// Borrowed from the stored CRD: it can be as large as the whole spec's schema.
    pub(crate) schema: Option<&'a Value>,
    /// The type has a `status` subresource.
    pub(crate) status_sub: bool,
    /// The write goes to this subresource (`status`).
    pub(crate) sub: Option<String>,
}

fn map_keys(keys: &[&str]) -> ListType {
    ListType::Map(
        keys.iter()
            .map(|k| {
                let default = (*k == "protocol").then(|| json!("TCP"));
                (k.to_string(), default)
            })
            .collect(),
    )
}

/// The list type at a path of field names (list items skipped).
pub(crate) fn list_type(ctx: &Ctx<'_>, fields: &[&str]) -> ListType {
    match fields {
        ["metadata", "finalizers"] => return ListType::Set,
        ["metadata", "ownerReferences"] => return map_keys(&["uid"]),
        _ => {}
    }
    if ctx.custom {
        return crd_list_type(ctx.schema, fields);
    }
    let pod = match (ctx.group.as_str(), ctx.plural.as_str()) {
        ("apps", _) | ("batch", "jobs") => fields.strip_prefix(&["spec", "template", "spec"][..]),
        ("", "pods") => fields.strip_prefix(&["spec"][..]),
        _ => None,
    };
    if let Some(p) = pod {
        return pod_list_type(p);
    }
    match (ctx.group.as_str(), ctx.plural.as_str(), fields) {
        (_, _, ["status", "conditions"]) => map_keys(&["type"]),
        ("", "services", ["spec", "ports"]) => map_keys(&["port", "protocol"]),
        ("", "services", ["spec", "clusterIPs" | "ipFamilies"]) => ListType::Atomic,
        ("", "serviceaccounts", ["secrets" | "imagePullSecrets"]) => map_keys(&["name"]),
        ("apiextensions.k8s.io", _, ["spec", "versions"]) => map_keys(&["name"]),
        ("admissionregistration.k8s.io", _, ["webhooks"]) => map_keys(&["name"]),
        _ => ListType::Atomic,
    }
}

fn pod_list_type(p: &[&str]) -> ListType {
    const CONTAINERS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
    match p {
        [c] if CONTAINERS.contains(c) => map_keys(&["name"]),
        [c, "env"] if CONTAINERS.contains(c) => map_keys(&["name"]),
        [c, "ports"] if CONTAINERS.contains(c) => map_keys(&["containerPort", "protocol"]),
        [c, "volumeMounts"] if CONTAINERS.contains(c) => map_keys(&["mountPath"]),
        [c, "volumeDevices"] if CONTAINERS.contains(c) => map_keys(&["devicePath"]),
        ["volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"] => {
            map_keys(&["name"])
        }
        ["hostAliases"] => map_keys(&["ip"]),
        ["topologySpreadConstraints"] => map_keys(&["topologyKey", "whenUnsatisfiable"]),
        _ => ListType::Atomic,
    }
}

/// The list type a CRD's structural schema declares at a path (atomic by default).
fn crd_list_type(schema: Option<&Value>, fields: &[&str]) -> ListType {
    let mut node = schema;
    for f in fields {
        // Lists on the way: their items.
        while let Some(n) = node {
            if n.get("type").and_then(Value::as_str) == Some("array") {
                node = n.get("items");
            } else {
                break;
            }
        }
        node = node.and_then(|n| {
            n.pointer(&format!(
                "/properties/{}",
                f.replace('~', "~0").replace('/', "~1")
            ))
            .or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
        });
    }
    let Some(n) = node else {
        return ListType::Atomic;
    };
    match n.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => {
            let keys: Vec<(String, Option<Value>)> = n
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|k| {
                    let default = n
                        .pointer(&format!("/items/properties/{k}/default"))
                        .cloned();
                    (k.to_string(), default)
                })
                .collect();
            if keys.is_empty() {
                ListType::Atomic
            } else {
                ListType::Map(keys)
            }
        }
        _ => ListType::Atomic,
    }
}

/// JSON with the keys of every object sorted: how keys and values appear in paths.
fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let keys: BTreeSet<&String> = m.keys().collect();
                let mut out = Map::new();
                for k in keys {
                    if let Some(c) = m.get(k) {
                        out.insert(k.clone(), sorted(c));
                    }
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// The path element of an item of a list of type `lt` (None: the item lacks a key).
fn item_pe(lt: &ListType, item: &Value) -> Option<Pe> {
    match lt {
        ListType::Atomic => None,
        ListType::Set => Some(Pe::Val(canonical(item))),
        ListType::Map(keys) => {
            let mut k = Map::new();
            for (name, default) in keys {
                match item.get(name).filter(|v| !v.is_null()).or(default.as_ref()) {
                    Some(v) => {
                        k.insert(name.clone(), v.clone());
                    }
                    None => return None,
                }
            }
            Some(Pe::Key(canonical(&Value::Object(k))))
        }
    }
}

/// The path elements of the items of a list, or None when the list is atomic or an
/// item lacks its key (then the list is taken as atomic).
fn item_pes(ctx: &Ctx<'_>, fields: &[&str], items: &[Value]) -> Option<(ListType, Vec<Pe>)> {
    let lt = list_type(ctx, fields);
    if lt == ListType::Atomic {
        return None;
    }
    let pes: Option<Vec<Pe>> = items.iter().map(|i| item_pe(&lt, i)).collect();
    pes.map(|p| (lt, p))
}

/// The fields a configuration sets (what an applier owns): scalars, nulls, empty
/// objects, atomic lists, and the items of associative and set lists.
pub(crate) fn to_set(ctx: &Ctx<'_>, v: &Value) -> Set {
    let mut out = Set::new();
    let mut path = Vec::new();
    let mut fields = Vec::new();
    walk_set(ctx, &mut path, &mut fields, v, &mut out);
    out
}

fn walk_set<'a>(
    ctx: &Ctx<'_>,
    path: &mut Path,
    fields: &mut Vec<&'a str>,
    v: &'a Value,
    out: &mut Set,
) {
    let Value::Object(m) = v else {
        return;
    };
    for (k, c) in m {
        path.push(Pe::Field(k.clone()));
        fields.push(k.as_str());
        match c {
            Value::Object(cm) if !cm.is_empty() => walk_set(ctx, path, fields, c, out),
            Value::Array(items) => match item_pes(ctx, fields, items) {
                None => {
                    out.insert(path.clone());
                }
                Some((_, pes)) => {
                    for (item, pe) in items.iter().zip(pes) {
                        path.push(pe);
                        out.insert(path.clone());
                        walk_set(ctx, path, fields, item, out);
                        path.pop();
                    }
                }
            },
            _ => {
                out.insert(path.clone());
            }
        }
        fields.pop();
        path.pop();
    }
}

/// What changed from one object to the next, as the API server's comparison sees
/// it: leaves added, modified or removed, and objects, lists and items added or
/// removed as a whole.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub(crate) added: Set,
    pub(crate) modified: Set,
    pub(crate) removed: Set,
}

impl Comparison {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compare two objects (their `metadata.managedFields` left out).
pub(crate) fn compare(ctx: &Ctx<'_>, old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    let mut path = Vec::new();
    let mut fields = Vec::new();
    walk_cmp(ctx, &mut path, &mut fields, Some(old), Some(new), &mut c);
    c
}

fn is_nonempty_obj(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Object(m)) if !m.is_empty())
}

/// Objects a Go client always sends (non-pointer structs): never "added" as a
/// whole, as in the real server's comparison with a zero object.
fn always_present(ctx: &Ctx<'_>, fields: &[&str]) -> bool {
    matches!(fields, ["metadata" | "spec" | "status"])
        || (ctx.group == "apps"
            && matches!(
                fields,
                ["spec", "template" | "strategy" | "updateStrategy"]
                    | ["spec", "template", "metadata" | "spec"]
            ))
}

fn walk_cmp<'a>(
    ctx: &Ctx<'_>,
    path: &mut Path,
    fields: &mut Vec<&'a str>,
    l: Option<&'a Value>,
    r: Option<&'a Value>,
    c: &mut Comparison,
) {
    let node = |c: &mut Comparison, path: &Path, fields: &[&str]| {
        if path.is_empty() {
            return;
        }
        if l.is_none() && !always_present(ctx, fields) {
            c.added.insert(path.clone());
        } else if r.is_none() {
            c.removed.insert(path.clone());
        }
    };
    // Objects (unless both are empty: then a leaf).
    if (is_nonempty_obj(l) || is_nonempty_obj(r))
        && l.is_none_or(Value::is_object)
        && r.is_none_or(Value::is_object)
    {
        let lm = l.and_then(Value::as_object);
        let rm = r.and_then(Value::as_object);
        let keys: BTreeSet<&'a String> = lm
            .into_iter()
            .flat_map(|m| m.keys())
            .chain(rm.into_iter().flat_map(|m| m.keys()))
            .collect();
        for k in keys {
            if fields.as_slice() == ["metadata"] && k == "managedFields" {
                continue;
            }
            path.push(Pe::Field(k.clone()));
            fields.push(k.as_str());
            walk_cmp(
                ctx,
                path,
                fields,
                lm.and_then(|m| m.get(k)),
                rm.and_then(|m| m.get(k)),
                c,
            );
            fields.pop();
            path.pop();
        }
        node(c, path, fields);
        return;
    }
    // Associative and set lists, item by item.
    if l.is_none_or(Value::is_array) && r.is_none_or(Value::is_array) {
        let li: &[Value] = l.and_then(Value::as_array).map_or(&[], Vec::as_slice);
        let ri: &[Value] = r.and_then(Value::as_array).map_or(&[], Vec::as_slice);
        if let (Some((lt, lp)), Some((_, rp))) =
            (item_pes(ctx, fields, li), item_pes(ctx, fields, ri))
        {
            let lmap: BTreeMap<&Pe, &Value> = lp.iter().zip(li).collect();
            let rmap: BTreeMap<&Pe, &Value> = rp.iter().zip(ri).collect();
            let pes: BTreeSet<&Pe> = lmap.keys().chain(rmap.keys()).copied().collect();
            for pe in pes {
                path.push(pe.clone());
                let (a, b) = (lmap.get(pe).copied(), rmap.get(pe).copied());
                if lt == ListType::Set {
                    match (a, b) {
                        (None, Some(_)) => {
                            c.added.insert(path.clone());
                        }
                        (Some(_), None) => {
                            c.removed.insert(path.clone());
                        }
                        _ => {}
                    }
                } else {
                    walk_cmp(ctx, path, fields, a, b, c);
                }
                path.pop();
            }
            if !(li.is_empty() && ri.is_empty()) {
                node(c, path, fields);
            }
            return;
        }
    }
    // Leaves.
    match (l, r) {
        (None, Some(_)) => {
            c.added.insert(path.clone());
        }
        (Some(_), None) => {
            c.removed.insert(path.clone());
        }
        (Some(a), Some(b)) if a != b => {
            c.modified.insert(path.clone());
        }
        _ => {}
    }
}

/// Merge an applied configuration into the live object: objects recursively,
/// associative lists item by item (live order, new items appended), set lists as a
/// union, everything else replaced; `null` removes.
pub(crate) fn merge(ctx: &Ctx<'_>, live: &Value, config: &Value) -> Value {
    let mut fields = Vec::new();
    merge_at(ctx, &mut fields, live, config)
}

fn merge_at<'a>(ctx: &Ctx<'_>, fields: &mut Vec<&'a str>, l: &'a Value, r: &'a Value) -> Value {
    match (l, r) {
        (Value::Object(lm), Value::Object(rm)) => {
            let mut out = lm.clone();
            for (k, rv) in rm {
                if rv.is_null() {
                    out.remove(k);
                    continue;
                }
                fields.push(k.as_str());
                let v = match lm.get(k) {
                    Some(lv) => merge_at(ctx, fields, lv, rv),
                    None => strip_nulls(rv),
                };
                fields.pop();
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        (Value::Array(la), Value::Array(ra)) => {
            let (Some((lt, lp)), Some((_, rp))) =
                (item_pes(ctx, fields, la), item_pes(ctx, fields, ra))
            else {
                return strip_nulls(r);
            };
            let mut out: Vec<Value> = Vec::new();
            let rmap: BTreeMap<&Pe, &Value> = rp.iter().zip(ra).collect();
            for (pe, lv) in lp.iter().zip(la) {
                match rmap.get(pe) {
                    Some(rv) if lt != ListType::Set => out.push(merge_at(ctx, fields, lv, rv)),
                    _ => out.push(lv.clone()),
                }
            }
            let lset: BTreeSet<&Pe> = lp.iter().collect();
            for (pe, rv) in rp.iter().zip(ra) {
                if !lset.contains(pe) {
                    out.push(strip_nulls(rv));
                }
            }
            Value::Array(out)
        }
        _ => strip_nulls(r),
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, c)| !c.is_null())
                .map(|(k, c)| (k.clone(), strip_nulls(c)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Remove the node at `path` from `v` (nothing when it is not there).
fn remove_path(ctx: &Ctx<'_>, v: &mut Value, path: &[Pe]) {
    let mut fields: Vec<String> = Vec::new();
    let mut cur = v;
    for (i, pe) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        match pe {
            Pe::Field(name) => {
                let Value::Object(m) = cur else { return };
                if last {
                    m.remove(name);
                    return;
                }
                fields.push(name.clone());
                let Some(next) = m.get_mut(name) else { return };
                cur = next;
            }
            Pe::Key(_) | Pe::Val(_) | Pe::Index(_) => {
                let Value::Array(items) = cur else { return };
                let f: Vec<&str> = fields.iter().map(String::as_str).collect();
                let idx = match pe {
                    Pe::Index(n) => Some(*n).filter(|n| *n < items.len()),
                    _ => {
                        let lt = list_type(ctx, &f);
                        items
                            .iter()
                            .position(|item| item_pe(&lt, item).as_ref() == Some(pe))
                    }
                };
                let Some(idx) = idx else { return };
                if last {
                    items.remove(idx);
                    return;
                }
                let Some(next) = items.get_mut(idx) else {
                    return;
                };
                cur = next;
            }
        }
    }
}

/// Remove from `merged` the fields `last` owned and the new applied set does not,
/// unless a manager (the applier's new set included) owns them or something below
/// them.
pub(crate) fn prune(ctx: &Ctx<'_>, merged: &mut Value, last: &Set, owned: &[&Set]) {
    let mut gone: Vec<&Path> = last
        .iter()
        .filter(|p| {
            !owned.iter().any(|s| {
                s.range::<Path, _>(p.to_vec()..)
                    .next()
                    .is_some_and(|q| q.starts_with(p))
            })
        })
        .collect();
    // Shallowest first (what is below a removed node goes with it); the key fields
    // of an item that stays stay with it.
    gone.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
    for p in gone {
        if let [.., Pe::Key(k), Pe::Field(f)] = p.as_slice() {
            let keys: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            if keys.get(f).is_some() {
                continue;
            }
        }
        remove_path(ctx, merged, p);
    }
}

// ---- managedFields entries ----

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: String,
    pub(crate) api_version: String,
    pub(crate) subresource: String,
    pub(crate) time: Option<String>,
    pub(crate) set: Set,
}

impl Entry {
    /// Whether two entries are the same manager: name, operation, subresource, and
    /// for an Update the apiVersion.
    fn same(&self, o: &Entry) -> bool {
        self.manager == o.manager
            && self.operation == o.operation
            && self.subresource == o.subresource
            && (self.operation == "Apply" || self.api_version == o.api_version)
    }

    /// How the API server names the manager in a conflict.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

fn pe_key(pe: &Pe) -> String {
    match pe {
        Pe::Field(n) => format!("f:{n}"),
        Pe::Key(k) => format!("k:{k}"),
        Pe::Val(v) => format!("v:{v}"),
        Pe::Index(i) => format!("i:{i}"),
    }
}

/// A path as the API server prints it: `.spec.containers[name="web"].image`.
pub(crate) fn path_string(path: &[Pe]) -> String {
    let mut s = String::new();
    for pe in path {
        match pe {
            Pe::Field(n) => {
                s.push('.');
                s.push_str(n);
            }
            Pe::Key(k) => {
                let parsed: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                let parts: Vec<String> = parsed
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            Pe::Val(v) => s.push_str(&format!("[={v}]")),
            Pe::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A set in the `FieldsV1` format.
pub(crate) fn encode_set(set: &Set) -> Value {
    #[derive(Default)]
    struct Node {
        member: bool,
        children: BTreeMap<Pe, Node>,
    }
    fn emit(n: &Node) -> Value {
        let mut m = Map::new();
        if n.member && !n.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (pe, c) in &n.children {
            m.insert(pe_key(pe), emit(c));
        }
        Value::Object(m)
    }
    let mut root = Node::default();
    for p in set {
        let mut n = &mut root;
        for pe in p {
            n = n.children.entry(pe.clone()).or_default();
        }
        n.member = true;
    }
    emit(&root)
}

fn parse_pe(k: &str) -> Option<Pe> {
    let (kind, rest) = k.split_at_checked(2)?;
    match kind {
        "f:" => Some(Pe::Field(rest.to_string())),
        "k:" => serde_json::from_str::<Value>(rest)
            .ok()
            .filter(Value::is_object)
            .map(|v| Pe::Key(canonical(&v))),
        "v:" => serde_json::from_str::<Value>(rest)
            .ok()
            .map(|v| Pe::Val(canonical(&v))),
        "i:" => rest.parse().ok().map(Pe::Index),
        _ => None,
    }
}

/// A `FieldsV1` value as a set (None when malformed).
pub(crate) fn decode_set(v: &Value) -> Option<Set> {
    fn walk(v: &Value, path: &mut Path, out: &mut Set) -> Option<()> {
        for (k, c) in v.as_object()? {
            if k == "." {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
                continue;
            }
            path.push(parse_pe(k)?);
            match c.as_object()? {
                m if m.is_empty() => {
                    out.insert(path.clone());
                }
                _ => walk(c, path, out)?,
            }
            path.pop();
        }
        Some(())
    }
    let mut out = Set::new();
    walk(v, &mut Vec::new(), &mut out)?;
    Some(out)
}

/// The entries of a `managedFields` value (None when malformed).
pub(crate) fn decode(v: &Value) -> Option<Vec<Entry>> {
    let mut out = Vec::new();
    for e in v.as_array()? {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let set = match e.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(f) => decode_set(f)?,
        };
        out.push(Entry {
            manager: s("manager"),
            operation: s("operation"),
            api_version: s("apiVersion"),
            subresource: s("subresource"),
            time: e.get("time").and_then(Value::as_str).map(str::to_string),
            set,
        });
    }
    Some(out)
}

/// Entries as `managedFields`, in the API server's order (operation, time,
/// manager, apiVersion, subresource).
pub(crate) fn encode(entries: &[Entry]) -> Value {
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| !e.set.is_empty()).collect();
    sorted.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    Value::Array(
        sorted
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), encode_set(&e.set));
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), json!(e.subresource));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// The fields no manager owns (type and identity metadata), and those a write
/// cannot set: `status` through the main resource of a type with a status
/// subresource, everything but `status` through `/status`.
fn tracked(ctx: &Ctx<'_>, set: Set) -> Set {
    let f = |s: &str| Pe::Field(s.to_string());
    set.into_iter()
        .filter(|p| match p.as_slice() {
            [] => false,
            [Pe::Field(a)] if a == "apiVersion" || a == "kind" || a == "metadata" => false,
            [Pe::Field(m), Pe::Field(n)] if m == "metadata" => !matches!(
                n.as_str(),
                "name"
                    | "namespace"
                    | "creationTimestamp"
                    | "selfLink"
                    | "uid"
                    | "clusterName"
                    | "generation"
                    | "managedFields"
                    | "resourceVersion"
                    | "deletionTimestamp"
                    | "deletionGracePeriodSeconds"
            ),
            _ => true,
        })
        .filter(|p| {
            let status = p.first() == Some(&f("status"));
            match ctx.sub.as_deref() {
                Some("status") => status,
                _ => !(ctx.status_sub && status),
            }
        })
        .collect()
}

/// An applier: its name, whether it forces, the set its configuration owns.
pub(crate) struct Applier {
    pub(crate) manager: String,
    pub(crate) force: bool,
    pub(crate) set: Set,
}

/// How a write is attributed.
pub(crate) enum Op {
    /// Server-side apply.
    Apply(Applier),
    /// Any other write (create, update, patch), by this manager.
    Update(String),
}

/// A conflict: (manager description, path).
pub(crate) type Conflicts = Vec<(String, String)>;

/// The entries of an object (none when it has none or they are malformed).
pub(crate) fn entries_of(obj: Option<&Value>) -> Vec<Entry> {
    obj.and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(decode)
        .unwrap_or_default()
}

/// Server-side apply before storage: merge `config` into `live` (`None`: a
/// create) and remove what `manager` applied last time and no longer applies.
/// Returns the new object and the set the configuration owns.
pub(crate) fn apply(
    ctx: &Ctx<'_>,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
) -> (Value, Set) {
    let set = tracked(ctx, to_set(ctx, config));
    let empty = Value::Object(Map::new());
    let mut merged = merge(ctx, live.unwrap_or(&empty), config);
    let entries = entries_of(live);
    let me = |e: &&Entry| {
        e.manager == manager
            && e.operation == "Apply"
            && e.subresource == ctx.sub.clone().unwrap_or_default()
    };
    if let Some(last) = entries.iter().find(me) {
        let mut owned: Vec<&Set> = entries.iter().filter(|e| !me(e)).map(|e| &e.set).collect();
        owned.push(&set);
        prune(ctx, &mut merged, &last.set, &owned);
    }
    (merged, set)
}

/// The `managedFields` of `new`, written over `old` (`None`: a create) by `op`.
/// `requested`: the `managedFields` the request carried (a non-empty list replaces
/// the tracked ones, as the API server allows for every write but apply; `[{}]`
/// clears them). A 409 with the conflicts when an applier changes fields another
/// manager owns without forcing.
pub(crate) fn track(
    ctx: &Ctx<'_>,
    old: Option<&Value>,
    new: &Value,
    requested: Option<&Value>,
    op: Op,
    api_version: &str,
    now: &str,
) -> Result<Value, Conflicts> {
    let requested = requested
        .filter(|_| matches!(op, Op::Update(_)) && ctx.sub.is_none())
        .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
        .and_then(decode);
    let mut entries = match requested {
        Some(r) => r,
        None => entries_of(old),
    };
    let empty = Value::Object(Map::new());
    // managedFields are not part of the comparison (skipped by the walk, not cloned
    // away: the objects can be large).
    let cmp = compare(ctx, old.unwrap_or(&empty), new);
    let object_changed = !cmp.is_empty();
    let changed = tracked(ctx, cmp.added.union(&cmp.modified).cloned().collect());
    let removed = tracked(ctx, cmp.removed);
    let sub = ctx.sub.clone().unwrap_or_default();
    let me = match &op {
        Op::Apply(a) => Entry {
            manager: a.manager.clone(),
            operation: "Apply".into(),
            api_version: api_version.into(),
            subresource: sub,
            time: None,
            set: a.set.clone(),
        },
        Op::Update(m) => Entry {
            manager: m.clone(),
            operation: "Update".into(),
            api_version: api_version.into(),
            subresource: sub,
            time: None,
            set: Set::new(),
        },
    };
    let previous = entries
        .iter()
        .position(|e| e.same(&me))
        .map(|i| entries.remove(i));
    let force = match &op {
        Op::Apply(a) => a.force,
        Op::Update(_) => true,
    };
    let mut conflicts = Conflicts::new();
    for e in &mut entries {
        let taken: Set = e.set.intersection(&changed).cloned().collect();
        if !force {
            conflicts.extend(taken.iter().map(|p| (e.describe(), path_string(p))));
        }
        e.set = &(&e.set - &taken) - &removed;
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let mut me = me;
    match &op {
        Op::Apply(_) => {
            me.time = match &previous {
                Some(p) if !object_changed => p.time.clone(),
                _ => Some(now.to_string()),
            };
        }
        Op::Update(_) => {
            let prev = previous.as_ref().map(|p| p.set.clone()).unwrap_or_default();
            me.set = &(&prev | &changed) - &removed;
            me.time = match &previous {
                Some(p) if changed.is_empty() => p.time.clone(),
                _ => Some(now.to_string()),
            };
        }
    }
    entries.push(me);
    entries.retain(|e| !e.set.is_empty());
    Ok(encode(&entries))
}

/// The 409 the API server answers an apply with conflicts.
pub(crate) fn conflict_error(conflicts: &Conflicts) -> crate::status::ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": p})
        })
        .collect();
    let message = if let [(m, p)] = conflicts.as_slice() {
        format!("Apply failed with 1 conflict: conflict with {m}: {p}")
    } else {
        let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (m, p) in conflicts {
            by.entry(m.as_str()).or_default().push(p.as_str());
        }
        let parts: Vec<String> = by
            .into_iter()
            .map(|(m, ps)| {
                let lines: String = ps.iter().map(|p| format!("\n- {p}")).collect();
                format!("conflicts with {m}:{lines}")
            })
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            parts.join("\n")
        )
    };
    crate::status::ApiError::new(409, "Conflict", message).with_details(json!({"causes": causes}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn deploy_ctx() -> Ctx<'static> {
        Ctx {
            group: "apps".into(),
            plural: "deployments".into(),
            status_sub: true,
            ..Ctx::default()
        }
    }

    #[test]
    fn fields_v1_round_trip() {
        let ctx = deploy_ctx();
        let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "i", "ports": [{"containerPort": 80}],
                 "args": ["a"]}]}}}});
        let set = tracked(&ctx, to_set(&ctx, &cfg));
        let enc = encode_set(&set);
        let c = &enc["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:args"], json!({}));
        assert_eq!(
            c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:containerPort"],
            json!({})
        );
        assert_eq!(enc["f:metadata"]["f:labels"]["f:app"], json!({}));
        assert!(enc.get("f:apiVersion").is_none());
        assert!(enc["f:metadata"].get("f:name").is_none());
        assert_eq!(decode_set(&enc).unwrap(), set);
    }

    #[test]
    fn merge_and_prune_by_keys() {
        let ctx = deploy_ctx();
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}}});
        let cfg = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "b", "image": "3"}, {"name": "c", "image": "4"}]}}}});
        let mut m = merge(&ctx, &live, &cfg);
        assert_eq!(
            m.pointer("/spec/template/spec/containers").unwrap(),
            &json!([{"name": "a", "image": "1"}, {"name": "b", "image": "3"}, {"name": "c", "image": "4"}])
        );
        let last = to_set(&ctx, &live);
        let now = to_set(&ctx, &cfg);
        prune(&ctx, &mut m, &last, &[&now]);
        assert_eq!(
            m.pointer("/spec/template/spec/containers").unwrap(),
            &json!([{"name": "b", "image": "3"}, {"name": "c", "image": "4"}])
        );
        assert_eq!(
            path_string(&[
                Pe::Field("spec".into()),
                Pe::Key("{\"name\":\"b\"}".into()),
                Pe::Field("image".into())
            ]),
            ".spec[name=\"b\"].image"
        );
    }
}
