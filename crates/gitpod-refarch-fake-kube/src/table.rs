//! Server-side printing of custom resources: the `meta.k8s.io/v1` `Table` that
//! `kubectl get` asks for (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
//! with the columns of the CRD version's `additionalPrinterColumns` (a `Name` column
//! first; `Age` from `metadata.creationTimestamp` when the CRD declares none), as the
//! apiextensions server's table convertor builds it.
//!
//! Cells: a column's `jsonPath` may be a dotted path with list indices
//! (`.status.conditions[0].status`); a path the fake cannot read (filters, wildcards)
//! or that finds nothing gives an empty cell (`<none>` in kubectl). A `date` column
//! shows the age of its timestamp as the API server does (`5m`, `3h12m`, `2d4h`).
//! Built-in kinds are answered as JSON (kubectl then prints them itself).

use serde_json::{json, Map, Value};

use crate::catalog::ResType;
use crate::store::str_at;
use crate::store::Store;

/// The description the API server gives the `Name` column.
const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when \
     creating resources, although some resources may allow a client to request the \
     generation of an appropriate name automatically. Name is primarily intended for \
     creation idempotence and configuration definition. Cannot be updated. More info: \
     https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// Whether an `Accept` header asks for a v1 Table first: its media ranges are tried in
/// order, as the API server negotiates; one it does not serve (a v1beta1 Table,
/// `PartialObjectMetadata`) is passed over.
pub(crate) fn wanted(accept: &str) -> bool {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let json = matches!(media, "application/json" | "application/*" | "*/*");
        match param("as") {
            Some("Table")
                if json && param("g") == Some("meta.k8s.io") && param("v") == Some("v1") =>
            {
                return true
            }
            Some(_) => continue,
            None if json => return false,
            None => continue,
        }
    }
    false
}

/// One printer column of a CRD version.
struct Column {
    name: String,
    type_: String,
    format: String,
    description: String,
    priority: i64,
    json_path: String,
}

/// The printer columns of custom type `t` (without `Name`).
fn columns(st: &Store, t: &ResType) -> Vec<Column> {
    let declared: Vec<Column> = crate::catalog::crd_version(st, t)
        .and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| Column {
                    name: str_at(c, "/name").to_string(),
                    type_: str_at(c, "/type").to_string(),
                    format: str_at(c, "/format").to_string(),
                    description: str_at(c, "/description").to_string(),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    json_path: str_at(c, "/jsonPath").to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if !declared.is_empty() {
        return declared;
    }
    vec![Column {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }]
}

/// The value at a simple JSONPath (`.a.b[0].c`), if the fake can read it.
fn at_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = obj;
    for seg in path.strip_prefix('.')?.split('.') {
        let (field, rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        let mut rest = rest;
        while let Some(r) = rest.strip_prefix('[') {
            let (index, after) = r.split_once(']')?;
            cur = cur.get(index.parse::<usize>().ok()?)?;
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(cur)
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp (`2026-11-30T06:00:00Z`).
fn epoch_seconds(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    if b.len() < 20 || !ts.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(crate::auth::days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// A duration as the API server prints an age (`HumanDuration`).
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{d}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn cell(obj: &Value, c: &Column, now: i64) -> Value {
    let Some(v) = at_path(obj, &c.json_path) else {
        return Value::Null;
    };
    if c.type_ == "date" {
        return match v.as_str().and_then(epoch_seconds) {
            Some(t) => Value::String(human_duration(now - t)),
            None => Value::String("<unknown>".into()),
        };
    }
    v.clone()
}

/// `objects` (as presented) as a Table of type `t`; `metadata` is the list's (or the
/// object's resourceVersion); `include` is the request's `includeObject` (`None`,
/// `Metadata`, the default, or `Object`).
pub(crate) fn build(
    st: &Store,
    t: &ResType,
    objects: &[Value],
    metadata: Value,
    include: Option<&str>,
    now: i64,
) -> Value {
    let cols = columns(st, t);
    let mut defs = vec![json!({
        "name": "Name", "type": "string", "format": "name",
        "description": NAME_DESCRIPTION, "priority": 0,
    })];
    defs.extend(cols.iter().map(|c| {
        json!({
            "name": c.name, "type": c.type_, "format": c.format,
            "description": c.description, "priority": c.priority,
        })
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![json!(str_at(o, "/metadata/name"))];
            cells.extend(cols.iter().map(|c| cell(o, c, now)));
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            match include.unwrap_or("Metadata") {
                "None" => {}
                "Object" => {
                    row.insert("object".into(), o.clone());
                }
                _ => {
                    row.insert(
                        "object".into(),
                        json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                        }),
                    );
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn negotiation_takes_the_first_served_form() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert!(wanted(kubectl));
        assert!(!wanted("application/json"));
        assert!(!wanted(""));
        assert!(!wanted(
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted(
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
        ));
    }

    #[test]
    fn paths_and_ages() {
        let o = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}, "spec": {"n": 3}});
        assert_eq!(
            at_path(&o, ".status.conditions[0].status"),
            Some(&json!("True"))
        );
        assert_eq!(at_path(&o, ".spec.n"), Some(&json!(3)));
        assert_eq!(at_path(&o, ".spec.missing"), None);
        assert_eq!(
            at_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            None
        );
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(epoch_seconds("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(epoch_seconds("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(epoch_seconds("yesterday"), None);
        assert_eq!(epoch_seconds("2023-13-14T22:13:20Z"), None);
        for (s, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (8 * 3600, "8h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 86_400, "8d"),
            (2 * 365 * 86_400, "2y"),
            (2 * 365 * 86_400 + 86_400, "2y1d"),
            (9 * 365 * 86_400, "9y"),
        ] {
            assert_eq!(human_duration(s), want, "{s} s");
        }
    }
}
