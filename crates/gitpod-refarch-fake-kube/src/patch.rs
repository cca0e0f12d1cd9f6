//! Patch semantics (JSON merge patch, JSON patch) and label/field selectors
//! (server-side apply is in `managed.rs`).

use serde_json::{Map, Value};

/// RFC 7386 JSON merge patch: objects merge recursively, `null` removes, anything
/// else (arrays included) replaces. Keys starting with `$` (strategic merge patch
/// directives) are dropped.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if k.starts_with('$') {
                        continue;
                    }
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = strip_directives(other),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Apply an RFC 6902 JSON patch (add, remove, replace, test, copy, move).
pub(crate) fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or_else(|| "a JSON patch must be an array of operations".to_string())?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| "missing path".to_string())?;
        match kind {
            "add" => add(target, path, value_of(op)?)?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, value_of(op)?)?;
            }
            "test" => {
                let want = value_of(op)?;
                let ok = match target.pointer(path) {
                    Some(have) => *have == want,
                    // As the API server's json-patch: `null` matches a key missing
                    // from an object that exists (kube-runtime's finalizer helper
                    // tests `/metadata/finalizers` for `null` before adding it).
                    None => {
                        want.is_null()
                            && path
                                .rsplit_once('/')
                                .and_then(|(parent, _)| target.pointer(parent))
                                .is_some_and(Value::is_object)
                    }
                };
                if !ok {
                    return Err(format!("testing value {path} failed: test failed"));
                }
            }
            "copy" | "move" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or_else(|| "missing from".to_string())?;
                let v = if kind == "move" {
                    remove(target, from)?
                } else {
                    target
                        .pointer(from)
                        .cloned()
                        .ok_or_else(|| format!("no value at {from}"))?
                };
                add(target, path, v)?;
            }
            other => return Err(format!("unknown JSON patch op {other:?}")),
        }
    }
    Ok(())
}

fn value_of(op: &Value) -> Result<Value, String> {
    op.get("value")
        .cloned()
        .ok_or_else(|| "missing value".to_string())
}

fn split(path: &str) -> Result<(String, String), String> {
    let i = path
        .rfind('/')
        .ok_or_else(|| format!("invalid path {path:?}"))?;
    let last = path[i + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..i].to_string(), last))
}

fn add(target: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, v);
            Ok(())
        }
        Some(Value::Array(a)) => {
            if last == "-" {
                a.push(v);
                return Ok(());
            }
            let i: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
            if i > a.len() {
                return Err(format!("index out of range in {path}"));
            }
            a.insert(i, v);
            Ok(())
        }
        _ => Err(format!("no parent for {path}")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(|| format!("no value at {path}")),
        Some(Value::Array(a)) => {
            let i: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
            if i >= a.len() {
                return Err(format!("index out of range in {path}"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("no value at {path}")),
    }
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Split at commas outside parentheses.
fn top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse(selector: &str, set_based: bool) -> Result<Vec<Req>, String> {
    let mut out = Vec::new();
    for term in top_level(selector) {
        let values = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("invalid selector term {term:?}"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let req = if let Some((k, v)) = term.split_once("!=") {
            Req::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once("==") {
            Req::Eq(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once('=') {
            Req::Eq(k.trim().into(), v.trim().into())
        } else if !set_based {
            return Err(format!("invalid field selector {term:?}"));
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            Req::NotIn(k.trim().into(), values(rest)?)
        } else if let Some((k, rest)) = term.split_once(" in ") {
            Req::In(k.trim().into(), values(rest)?)
        } else if let Some(k) = term.strip_prefix('!') {
            Req::NotExists(k.trim().into())
        } else if term.contains(' ') || term.contains('(') {
            return Err(format!("invalid label selector term {term:?}"));
        } else {
            Req::Exists(term.clone())
        };
        out.push(req);
    }
    Ok(out)
}

fn matches(reqs: &[Req], get: impl Fn(&str) -> Option<String>) -> bool {
    reqs.iter().all(|r| match r {
        Req::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
        Req::Ne(k, v) => get(k).as_deref() != Some(v.as_str()),
        Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
        Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        Req::Exists(k) => get(k).is_some(),
        Req::NotExists(k) => get(k).is_none(),
    })
}

/// A compiled `labelSelector` + `fieldSelector`.
#[derive(Debug, Default)]
pub(crate) struct Selector {
    labels: Vec<Req>,
    fields: Vec<Req>,
}

impl Selector {
    pub(crate) fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, String> {
        Ok(Selector {
            labels: parse(labels.unwrap_or(""), true)?,
            fields: parse(fields.unwrap_or(""), false)?,
        })
    }

    /// The field names the selector uses.
    pub(crate) fn field_names(&self) -> Vec<&str> {
        self.fields
            .iter()
            .map(|r| match r {
                Req::Eq(k, _)
                | Req::Ne(k, _)
                | Req::In(k, _)
                | Req::NotIn(k, _)
                | Req::Exists(k)
                | Req::NotExists(k) => k.as_str(),
            })
            .collect()
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        matches(&self.labels, |k| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        }) && matches(&self.fields, |k| {
            let p = format!("/{}", k.replace('.', "/"));
            match obj.pointer(&p) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => Some(String::new()),
                Some(other) => Some(other.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn merge() {
        let mut live = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        merge_patch(&mut live, &json!({"b": {"c": null, "e": 4}, "l": [3]}));
        assert_eq!(live, json!({"a": 1, "b": {"d": 3, "e": 4}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut v = json!({"a": [1, 2], "b": "x"});
        json_patch(
            &mut v,
            &json!([
                {"op": "add", "path": "/a/-", "value": 3},
                {"op": "replace", "path": "/b", "value": "y"},
                {"op": "remove", "path": "/a/0"},
                {"op": "test", "path": "/b", "value": "y"}
            ]),
        )
        .unwrap();
        assert_eq!(v, json!({"a": [2, 3], "b": "y"}));
    }

    #[test]
    fn selectors() {
        let obj = json!({"metadata": {"name": "n", "labels": {"app": "web", "tier": "fe"}}, "type": "Opaque"});
        let m = |l: &str, f: &str| Selector::parse(Some(l), Some(f)).unwrap().matches(&obj);
        assert!(m("app=web", ""));
        assert!(m("app in (web, db),tier", "metadata.name=n"));
        assert!(!m("app!=web", ""));
        assert!(m("!missing", "type=Opaque"));
        assert!(!m("", "metadata.name!=n"));
        assert!(Selector::parse(Some("a in b"), None).is_err());
    }
}
