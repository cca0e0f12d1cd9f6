//! Garbage collection by owner references, as kube-controller-manager's garbage
//! collector does it (here at once, where the real one takes a moment).
//!
//! - An object whose `metadata.ownerReferences` name only owners that do not exist
//!   is deleted (through its finalizers, as any delete; a Namespace through its
//!   termination): when its last owner goes, and when it is written naming no owner
//!   that exists. An owner exists when the object of its API group, version, kind
//!   and name has its `uid`, and is cluster-scoped or in the dependent's namespace
//!   (a namespaced owner never resolves from another namespace).
//! - A reference to a gone owner is dropped when another owner still exists.
//! - An object with a reference the collector cannot resolve (a kind or version the
//!   server does not serve, a namespaced owner named by a cluster-scoped object) is
//!   left alone, references and all: the real collector gives up on it.
//! - The owner's DELETE chooses (its `DeleteOptions`, from the body or the query):
//!   `propagationPolicy: Background` (the default) as above; `Orphan` (or the
//!   deprecated `orphanDependents: true`) drops every reference to it first;
//!   `Foreground` marks it (`deletionTimestamp` and the finalizer
//!   `foregroundDeletion`, in one write), deletes its dependents (a dependent that
//!   another owner holds only loses its reference), and removes it when none names it
//!   any more. A later DELETE with an explicit `Background` lets it go at once.

use std::time::Instant;

use serde_json::{json, Value};

use crate::catalog;
use crate::controllers::{
    controller_write, delete_namespace, finalizers, remove_cascade, start_deletion,
};
use crate::status::ApiError;
use crate::store::{meta_mut, now_rfc3339, str_at, Key, Store};

/// The finalizer an owner deleted with `propagationPolicy: Foreground` keeps until
/// its dependents are gone.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";

/// How a DELETE treats the objects the deleted one owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Propagation {
    /// Delete the owner; the collector deletes the dependents after it.
    Background,
    /// Delete the dependents first; the owner goes when none is left.
    Foreground,
    /// Keep the dependents, without their reference to the owner.
    Orphan,
}

/// The propagation a DELETE's options ask for (`None`: they name none, the
/// default applies). Both forms at once, or an unknown policy, is 422 `Invalid` on
/// `DeleteOptions.meta.k8s.io`, as the API server validates them.
pub(crate) fn propagation(opts: &Value) -> Result<Option<Propagation>, ApiError> {
    let orphan = opts.get("orphanDependents").and_then(Value::as_bool);
    let policy = opts.get("propagationPolicy").and_then(Value::as_str);
    let mut causes = Vec::new();
    if let (Some(_), Some(p)) = (orphan, policy) {
        causes.push((
            "propagationPolicy".to_string(),
            format!(
                "Invalid value: \"{p}\": orphanDependents and deletionPropagation cannot be \
                 both set"
            ),
        ));
    }
    let chosen = match policy {
        None => None,
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Orphan") => Some(Propagation::Orphan),
        Some(other) => {
            causes.push((
                "propagationPolicy".to_string(),
                format!(
                    "Unsupported value: \"{other}\": supported values: \"Foreground\", \
                     \"Background\", \"Orphan\", \"nil\""
                ),
            ));
            None
        }
    };
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            "DeleteOptions",
            "meta.k8s.io",
            "",
            &causes,
        ));
    }
    Ok(chosen.or(match orphan {
        Some(true) => Some(Propagation::Orphan),
        Some(false) => Some(Propagation::Background),
        None => None,
    }))
}

/// One entry of `metadata.ownerReferences`.
struct OwnerRef {
    group: String,
    version: String,
    kind: String,
    name: String,
    uid: String,
}

fn owner_refs(obj: &Value) -> Vec<OwnerRef> {
    let Some(list) = obj
        .get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|r| {
            let api_version = str_at(r, "/apiVersion");
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            OwnerRef {
                group: group.to_string(),
                version: version.to_string(),
                kind: str_at(r, "/kind").to_string(),
                name: str_at(r, "/name").to_string(),
                uid: str_at(r, "/uid").to_string(),
            }
        })
        .collect()
}

/// What an owner reference of a dependent in namespace `ns` points at.
#[derive(PartialEq, Eq)]
enum Owner {
    Exists,
    Absent,
    /// The collector cannot resolve it (a kind or version not served, a namespaced
    /// owner of a cluster-scoped object): the dependent is left alone.
    Unresolvable,
}

fn owner(st: &Store, ns: &str, r: &OwnerRef) -> Owner {
    let types = catalog::all_types(st);
    let served = types
        .iter()
        .find(|t| t.group == r.group && t.version == r.version && t.kind == r.kind);
    let Some(t) = served else {
        return Owner::Unresolvable;
    };
    if t.namespaced && ns.is_empty() {
        return Owner::Unresolvable;
    }
    let key = catalog::key(t, if t.namespaced { ns } else { "" }, &r.name);
    match st.objects.get(&key) {
        Some(o) if str_at(o, "/metadata/uid") == r.uid => Owner::Exists,
        _ => Owner::Absent,
    }
}

/// Delete `key` as a DELETE without options does: through its finalizers; a
/// Namespace through its termination (never `default`, `kube-system` or
/// `kube-public`, which the API server refuses to delete).
fn delete(st: &mut Store, key: &Key, now: Instant) {
    let Some(obj) = st.objects.get(key) else {
        return;
    };
    if key.group.is_empty() && key.plural == "namespaces" {
        if !matches!(key.name.as_str(), "default" | "kube-system" | "kube-public") {
            delete_namespace(st, key, now);
        }
        return;
    }
    if finalizers(obj).is_empty() {
        remove_cascade(st, key);
    } else {
        start_deletion(st, key, now);
    }
}

/// Check the owners of the object at `key`: drop references to gone owners while
/// another exists; delete it when none does; leave it alone when a reference does
/// not resolve.
pub(crate) fn check(st: &mut Store, key: &Key, now: Instant) {
    let Some(obj) = st.objects.get(key) else {
        return;
    };
    let refs = owner_refs(obj);
    if refs.is_empty() {
        return;
    }
    let owners: Vec<Owner> = refs.iter().map(|r| owner(st, &key.namespace, r)).collect();
    if owners.contains(&Owner::Unresolvable) || !owners.contains(&Owner::Absent) {
        return;
    }
    if !owners.contains(&Owner::Exists) {
        delete(st, key, now);
        return;
    }
    let gone: Vec<String> = refs
        .iter()
        .zip(&owners)
        .filter(|(_, o)| **o == Owner::Absent)
        .map(|(r, _)| r.uid.clone())
        .collect();
    drop_refs(st, key, now, &gone);
}

/// Whether the object at `key` has an owner other than `uid` that exists.
fn held_by_another(st: &Store, key: &Key, uid: &str) -> bool {
    st.objects.get(key).is_some_and(|o| {
        owner_refs(o)
            .iter()
            .filter(|r| r.uid != uid)
            .any(|r| owner(st, &key.namespace, r) == Owner::Exists)
    })
}

fn drop_refs(st: &mut Store, key: &Key, now: Instant, uids: &[String]) {
    controller_write(st, key, now, |o| {
        let meta = meta_mut(o);
        let left: Vec<Value> = meta
            .get("ownerReferences")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter(|r| !uids.iter().any(|u| u == str_at(r, "/uid")))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if left.is_empty() {
            meta.remove("ownerReferences");
        } else {
            meta.insert("ownerReferences".into(), Value::Array(left));
        }
    });
}

/// The objects that name `uid` as an owner (an index, not a scan).
fn dependents(st: &Store, uid: &str) -> Vec<Key> {
    st.objects.dependents(uid)
}

/// The object `uid` was removed: check each of its dependents.
pub(crate) fn owner_removed(st: &mut Store, uid: &str, now: Instant) {
    if uid.is_empty() {
        return;
    }
    for key in dependents(st, uid) {
        check(st, &key, now);
    }
}

/// Before the object at `key` is deleted with `propagation`: orphan its
/// dependents, or (foreground) mark it and delete them, or (an explicit background
/// on an owner waiting in the foreground) stop waiting. `Some(object)`: the DELETE is
/// answered with it and goes no further; `None`: the DELETE goes on as usual.
pub(crate) fn before_delete(
    st: &mut Store,
    key: &Key,
    propagation: Option<Propagation>,
    now: Instant,
) -> Option<Value> {
    let obj = st.objects.get(key)?.clone();
    let uid = str_at(&obj, "/metadata/uid").to_string();
    let waiting = finalizers(&obj).iter().any(|f| f == FOREGROUND);
    match propagation {
        None => None,
        Some(Propagation::Background) if waiting => {
            st.foreground.remove(key);
            controller_write(st, key, now, remove_foreground);
            Some(st.objects.get(key).cloned().unwrap_or(obj))
        }
        Some(Propagation::Background) => None,
        Some(Propagation::Orphan) => {
            for dep in dependents(st, &uid) {
                drop_refs(st, &dep, now, std::slice::from_ref(&uid));
            }
            None
        }
        Some(Propagation::Foreground) => {
            let deps = dependents(st, &uid);
            if deps.is_empty() {
                return None;
            }
            controller_write(st, key, now, |o| {
                let meta = meta_mut(o);
                let mut list: Vec<Value> = meta
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if !list.iter().any(|f| f == FOREGROUND) {
                    list.push(json!(FOREGROUND));
                }
                meta.insert("finalizers".into(), Value::Array(list));
                if !meta.contains_key("deletionTimestamp") {
                    meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                    if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                        meta.insert("generation".into(), json!(g + 1));
                    }
                }
            });
            let marked = st.objects.get(key).cloned().unwrap_or(obj);
            st.foreground.insert(key.clone());
            for dep in deps {
                if held_by_another(st, &dep, &uid) {
                    drop_refs(st, &dep, now, std::slice::from_ref(&uid));
                } else {
                    delete(st, &dep, now);
                }
            }
            settle(st, now);
            Some(marked)
        }
    }
}

fn remove_foreground(o: &mut Value) {
    if let Some(l) = meta_mut(o)
        .get_mut("finalizers")
        .and_then(Value::as_array_mut)
    {
        l.retain(|f| f != FOREGROUND);
    }
}

/// Owners deleted in the foreground whose dependents are all gone lose their
/// `foregroundDeletion` finalizer (and go, if it was their last).
pub(crate) fn settle(st: &mut Store, now: Instant) {
    let waiting: Vec<Key> = st.foreground.iter().cloned().collect();
    for key in waiting {
        let Some(obj) = st.objects.get(&key) else {
            st.foreground.remove(&key);
            continue;
        };
        let uid = str_at(obj, "/metadata/uid").to_string();
        if !dependents(st, &uid).is_empty() {
            continue;
        }
        st.foreground.remove(&key);
        controller_write(st, &key, now, remove_foreground);
    }
}
