//! Garbage collection by owner references, as kube-controller-manager's garbage
//! collector does it (here at once, where the real one takes a moment).
//!
//! - An object whose `metadata.ownerReferences` name only owners that do not exist
//!   is deleted (through its finalizers, as any delete): when its last owner goes,
//!   and when it is written naming no owner that exists. An owner exists when the
//!   object of its API group, kind and name has its `uid`, and is cluster-scoped or
//!   in the dependent's namespace: a namespaced owner never resolves from another
//!   namespace or from a cluster-scoped dependent, so such a dependent goes.
//! - A reference to a gone owner is dropped when another owner still exists.
//! - A reference of a kind the server does not serve is left alone (the real
//!   collector cannot map it and retries; the dependent stays).
//! - The owner's DELETE chooses: `propagationPolicy: Background` (the default) as
//!   above; `Orphan` (or the deprecated `orphanDependents: true`) drops every
//!   reference to it first; `Foreground` deletes its dependents first, and the owner
//!   keeps the finalizer `foregroundDeletion` (with its `deletionTimestamp`) until no
//!   object names it as an owner.

use std::time::Instant;

use serde_json::{json, Value};

use crate::catalog;
use crate::controllers::{controller_write, finalizers, remove_cascade, start_deletion};
use crate::status::ApiError;
use crate::store::{meta_mut, str_at, Key, Store};

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

/// The propagation a DELETE's options ask for (`null` options: the default). Both
/// forms at once, or an unknown policy, is 422 `Invalid`, as the API server
/// answers.
pub(crate) fn propagation(
    opts: &Value,
    kind: &str,
    group: &str,
    name: &str,
) -> Result<Propagation, ApiError> {
    let orphan = opts.get("orphanDependents").and_then(Value::as_bool);
    let policy = opts.get("propagationPolicy").and_then(Value::as_str);
    let invalid = |field: &str, message: String| {
        ApiError::invalid(kind, group, name, &[(field.to_string(), message)])
    };
    match (orphan, policy) {
        (Some(_), Some(_)) => Err(invalid(
            "orphanDependents",
            "Invalid value: \"orphanDependents\": orphanDependents and deletionPropagation \
             cannot be both set"
                .into(),
        )),
        (Some(true), None) => Ok(Propagation::Orphan),
        (Some(false) | None, None) | (None, Some("Background")) => Ok(Propagation::Background),
        (None, Some("Foreground")) => Ok(Propagation::Foreground),
        (None, Some("Orphan")) => Ok(Propagation::Orphan),
        (None, Some(other)) => Err(invalid(
            "propagationPolicy",
            format!(
                "Unsupported value: \"{other}\": supported values: \"Foreground\", \
                 \"Background\", \"Orphan\""
            ),
        )),
    }
}

/// One entry of `metadata.ownerReferences`.
struct OwnerRef {
    group: String,
    kind: String,
    name: String,
    uid: String,
}

fn owner_refs(obj: &Value) -> Vec<OwnerRef> {
    let Some(list) = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|r| {
            let api_version = str_at(r, "/apiVersion");
            OwnerRef {
                group: api_version
                    .rsplit_once('/')
                    .map(|(g, _)| g.to_string())
                    .unwrap_or_default(),
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
    /// A kind the server does not serve: left alone.
    Unknown,
}

fn owner(st: &Store, ns: &str, r: &OwnerRef) -> Owner {
    let types = catalog::all_types(st);
    let Some(t) = types
        .iter()
        .find(|t| t.group == r.group && t.kind == r.kind)
    else {
        return Owner::Unknown;
    };
    if t.namespaced && ns.is_empty() {
        return Owner::Absent;
    }
    let key = catalog::key(t, if t.namespaced { ns } else { "" }, &r.name);
    match st.objects.get(&key) {
        Some(o) if str_at(o, "/metadata/uid") == r.uid => Owner::Exists,
        _ => Owner::Absent,
    }
}

/// Delete `key` as a DELETE without options does: through its finalizers.
fn delete(st: &mut Store, key: &Key, now: Instant) {
    let Some(obj) = st.objects.get(key) else {
        return;
    };
    if finalizers(obj).is_empty() {
        remove_cascade(st, key);
    } else {
        start_deletion(st, key, now);
    }
}

/// Check the owners of the object at `key`: drop references to gone owners while
/// another exists; delete it when none does.
pub(crate) fn check(st: &mut Store, key: &Key, now: Instant) {
    let Some(obj) = st.objects.get(key) else {
        return;
    };
    let refs = owner_refs(obj);
    if refs.is_empty() {
        return;
    }
    let owners: Vec<Owner> = refs.iter().map(|r| owner(st, &key.namespace, r)).collect();
    if !owners.contains(&Owner::Absent) {
        return;
    }
    if owners.iter().all(|o| *o == Owner::Absent) {
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
/// dependents, or (foreground) delete them and keep the owner until they are gone.
/// Returns whether the owner must wait (it was given the `foregroundDeletion`
/// finalizer).
pub(crate) fn before_delete(
    st: &mut Store,
    key: &Key,
    propagation: Propagation,
    now: Instant,
) -> bool {
    let Some(obj) = st.objects.get(key) else {
        return false;
    };
    let uid = str_at(obj, "/metadata/uid").to_string();
    match propagation {
        Propagation::Background => false,
        Propagation::Orphan => {
            for dep in dependents(st, &uid) {
                drop_refs(st, &dep, now, std::slice::from_ref(&uid));
            }
            false
        }
        Propagation::Foreground => {
            let deps = dependents(st, &uid);
            if deps.is_empty() {
                return false;
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
            });
            start_deletion(st, key, now);
            st.foreground.insert(key.clone());
            for dep in deps {
                delete(st, &dep, now);
            }
            settle(st, now);
            true
        }
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
        controller_write(st, &key, now, |o| {
            if let Some(l) = meta_mut(o)
                .get_mut("finalizers")
                .and_then(Value::as_array_mut)
            {
                l.retain(|f| f != FOREGROUND);
            }
        });
    }
}
