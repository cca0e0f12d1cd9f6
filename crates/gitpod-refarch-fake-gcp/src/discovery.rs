//! Google API discovery documents and a validator of calls against them.
//!
//! [`Discovery::load_default`] reads the discovery documents the fake is built from
//! ([`DOCUMENTS`]; fetch them with `scripts/fetch-discovery.sh`); [`validate_call`]
//! checks one recorded [`Call`](struct@crate::Call): its verb and path against the
//! method's `flatPath` (a method id two documents share, as Cloud SQL Admin `v1` and
//! `v1beta4` or Resource Manager `v1` and `v3` do, is checked against the document
//! whose path the call used),
//! its query parameters, its request body against the method's `request` schema and
//! its response body against the `response` schema (or Google's error shape).
//!
//! The schema check is strict: types, `format` (`int64`/`uint64` as decimal strings,
//! `int32`/`uint32` ranges, `byte` as base64, `date-time`/`google-datetime`,
//! `google-duration`, `date`), `enum` values, `$ref`, `items`, `additionalProperties`,
//! and any property not in the schema is an error, as is `null`. One leniency: an
//! enum field may hold a non-negative integer, because the official Rust clients send
//! enums as numbers (`$alt=json;enum-encoding=int`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::Value;

use crate::Call;

/// The discovery documents (`name.version` without `.json`) the fake is built from.
pub const DOCUMENTS: &[&str] = &[
    "container.v1",
    "sqladmin.v1",
    "sqladmin.v1beta4",
    "dns.v1",
    "iam.v1",
    "cloudresourcemanager.v3",
    "cloudresourcemanager.v1",
    "serviceusage.v1",
    "cloudbilling.v1",
    "artifactregistry.v1",
    "compute.v1",
];

/// Query parameters every Google REST API accepts besides the method's own.
const SYSTEM_PARAMS: &[&str] = &[
    "$alt",
    "$fields",
    "$prettyPrint",
    "$callback",
    "$.xgafv",
    "$userProject",
    // The API interface version (system parameter); google-cloud-compute-v1 sends it.
    "$apiVersion",
];

/// Loaded discovery documents, indexed by method id.
#[derive(Debug)]
pub struct Discovery {
    docs: BTreeMap<String, Value>,
    /// Every document's method of that id, in [`DOCUMENTS`] order.
    methods: BTreeMap<String, Vec<(String, Value)>>,
    seen: Mutex<BTreeSet<String>>,
}

/// A method's description, from its discovery document.
#[derive(Debug, Clone)]
pub struct MethodInfo {
    /// The document, e.g. `container.v1`.
    pub document: String,
    /// The HTTP verb.
    pub http_method: String,
    /// The full path template: `/` + servicePath + flatPath.
    pub path_template: String,
    /// The `$ref` of the request schema, if any.
    pub request: Option<String>,
    /// The `$ref` of the response schema, if any.
    pub response: Option<String>,
}

fn walk(resources: &Value, out: &mut Vec<Value>) {
    if let Some(methods) = resources.get("methods").and_then(Value::as_object) {
        out.extend(methods.values().cloned());
    }
    if let Some(res) = resources.get("resources").and_then(Value::as_object) {
        for r in res.values() {
            walk(r, out);
        }
    }
}

impl Discovery {
    /// `$GITPOD_REFARCH_DISCOVERY_DIR`, or `$HOME/.cache/gitpod-refarch/discovery`.
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("GITPOD_REFARCH_DISCOVERY_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."));
                home.join(".cache/gitpod-refarch/discovery")
            }
        }
    }

    /// Load the documents from [`Discovery::default_dir`].
    pub fn load_default() -> Result<Discovery, String> {
        Self::load_dir(&Self::default_dir())
    }

    /// Load every document of [`DOCUMENTS`] from `dir` (`NAME.json`).
    pub fn load_dir(dir: &Path) -> Result<Discovery, String> {
        let mut docs = BTreeMap::new();
        let mut methods = BTreeMap::new();
        for name in DOCUMENTS {
            let path = dir.join(format!("{name}.json"));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "cannot read discovery document {}: {e}. Run scripts/fetch-discovery.sh (it fills $GITPOD_REFARCH_DISCOVERY_DIR, default ~/.cache/gitpod-refarch/discovery).",
                    path.display()
                )
            })?;
            let doc: Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut found = Vec::new();
            walk(&doc, &mut found);
            for m in found {
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    methods
                        .entry(id.to_string())
                        .or_insert_with(Vec::new)
                        .push((name.to_string(), m.clone()));
                }
            }
            docs.insert(name.to_string(), doc);
        }
        Ok(Discovery {
            docs,
            methods,
            seen: Mutex::new(BTreeSet::new()),
        })
    }

    /// How many methods the documents describe.
    pub fn method_count(&self) -> usize {
        self.methods.values().map(Vec::len).sum()
    }

    /// The schemas (`document#Name`) any validation has checked so far.
    pub fn schemas_checked(&self) -> BTreeSet<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A method by discovery id, e.g. `sql.instances.insert` (of the first document
    /// in [`DOCUMENTS`] order that has it).
    pub fn method(&self, id: &str) -> Option<MethodInfo> {
        let (doc_name, m) = self.methods.get(id)?.first()?;
        self.info(doc_name, m)
    }

    /// The method `id` of the document whose path template `path` matches (the first
    /// document's when none does).
    pub fn method_for_path(&self, id: &str, path: &str) -> Option<MethodInfo> {
        self.variant(id, path)
            .and_then(|(doc_name, m)| self.info(doc_name, m))
    }

    fn variant(&self, id: &str, path: &str) -> Option<&(String, Value)> {
        let all = self.methods.get(id)?;
        all.iter()
            .find(|(doc_name, m)| {
                self.info(doc_name, m)
                    .is_some_and(|i| crate::match_path(&i.path_template, path).is_some())
            })
            .or_else(|| all.first())
    }

    fn info(&self, doc_name: &str, m: &Value) -> Option<MethodInfo> {
        let doc = self.docs.get(doc_name)?;
        let service_path = doc.get("servicePath").and_then(Value::as_str).unwrap_or("");
        let flat = m
            .get("flatPath")
            .or_else(|| m.get("path"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let r = |k: &str| {
            m.get(k)
                .and_then(|x| x.get("$ref"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(MethodInfo {
            document: doc_name.to_string(),
            http_method: m
                .get("httpMethod")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            path_template: format!("/{service_path}{flat}"),
            request: r("request"),
            response: r("response"),
        })
    }

    /// Validate a JSON value against schema `schema` of `document`; returns the problems.
    pub fn validate(&self, document: &str, schema: &str, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        match self.docs.get(document) {
            None => errors.push(format!("unknown discovery document {document}")),
            Some(doc) => {
                let s = serde_json::json!({ "$ref": schema });
                self.check(document, doc, &s, value, "$", &mut errors, 0);
            }
        }
        errors
    }

    /// Validate a request body for method `id` (`None`: no body sent).
    pub fn validate_request(&self, id: &str, body: Option<&Value>) -> Vec<String> {
        self.validate_request_info(id, self.method(id), body)
    }

    fn validate_request_info(
        &self,
        id: &str,
        m: Option<MethodInfo>,
        body: Option<&Value>,
    ) -> Vec<String> {
        let Some(m) = m else {
            return vec![format!("{id}: no such method in the discovery documents")];
        };
        match (&m.request, body) {
            (Some(r), Some(b)) => self
                .validate(&m.document, r, b)
                .into_iter()
                .map(|e| format!("{id} request: {e}"))
                .collect(),
            (None, Some(b)) if !(b.is_null() || b.as_object().is_some_and(|o| o.is_empty())) => {
                vec![format!("{id} request: the method takes no body, got {b}")]
            }
            _ => Vec::new(),
        }
    }

    /// Validate a response (status and body) of method `id`.
    pub fn validate_response(&self, id: &str, status: u16, body: &Value) -> Vec<String> {
        self.validate_response_info(id, self.method(id), status, body)
    }

    fn validate_response_info(
        &self,
        id: &str,
        m: Option<MethodInfo>,
        status: u16,
        body: &Value,
    ) -> Vec<String> {
        let Some(m) = m else {
            return vec![format!("{id}: no such method in the discovery documents")];
        };
        if status >= 300 {
            let legacy = ["compute.v1", "sqladmin.v1", "sqladmin.v1beta4", "dns.v1"]
                .contains(&m.document.as_str());
            return validate_error(body, legacy)
                .into_iter()
                .map(|e| format!("{id} error: {e}"))
                .collect();
        }
        match &m.response {
            Some(r) => self
                .validate(&m.document, r, body)
                .into_iter()
                .map(|e| format!("{id} response: {e}"))
                .collect(),
            None if body.is_null() => Vec::new(),
            None => vec![format!(
                "{id} response: the method returns no body, got {body}"
            )],
        }
    }

    /// Validate the verb, path and query parameters of a call to method `id` (of the
    /// document whose path template `path` matches).
    pub fn validate_route(
        &self,
        id: &str,
        http_method: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Vec<String> {
        let Some((doc_name, raw)) = self.variant(id, path) else {
            return vec![format!("{id}: no such method in the discovery documents")];
        };
        let Some(m) = self.info(doc_name, raw) else {
            return vec![format!("{id}: no such method in the discovery documents")];
        };
        let mut errors = Vec::new();
        if m.http_method != http_method {
            errors.push(format!(
                "{id}: verb {http_method}, the method is {}",
                m.http_method
            ));
        }
        if crate::match_path(&m.path_template, path).is_none() {
            errors.push(format!(
                "{id}: path {path} does not match {}",
                m.path_template
            ));
        }
        let params = raw.get("parameters").cloned();
        let global = self
            .docs
            .get(&m.document)
            .and_then(|d| d.get("parameters"))
            .cloned();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (k, _) in query {
            *counts.entry(k.as_str()).or_default() += 1;
        }
        for (k, n) in counts {
            let p = params
                .as_ref()
                .and_then(|p| p.get(k))
                .filter(|p| p.get("location").and_then(Value::as_str) == Some("query"))
                .or_else(|| global.as_ref().and_then(|g| g.get(k)));
            match p {
                Some(p) => {
                    if n > 1 && p.get("repeated").and_then(Value::as_bool) != Some(true) {
                        errors.push(format!(
                            "{id}: query parameter {k} repeated but not repeatable"
                        ));
                    }
                }
                None if SYSTEM_PARAMS.contains(&k) => {}
                None => errors.push(format!("{id}: unknown query parameter {k}")),
            }
        }
        errors
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        doc_name: &str,
        doc: &Value,
        schema: &Value,
        v: &Value,
        at: &str,
        errors: &mut Vec<String>,
        depth: usize,
    ) {
        if depth > 64 {
            return;
        }
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            if let Ok(mut seen) = self.seen.lock() {
                seen.insert(format!("{doc_name}#{r}"));
            }
            match doc.get("schemas").and_then(|s| s.get(r)) {
                Some(s) => self.check(doc_name, doc, s, v, at, errors, depth + 1),
                None => errors.push(format!("{at}: unknown schema {r}")),
            }
            return;
        }
        if v.is_null() {
            errors.push(format!("{at}: null"));
            return;
        }
        let ty = schema.get("type").and_then(Value::as_str).unwrap_or(
            if schema.get("properties").is_some() {
                "object"
            } else {
                "any"
            },
        );
        let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
        match ty {
            "any" => {}
            "string" => {
                let Some(s) = v.as_str() else {
                    let is_enum_number = schema.get("enum").is_some() && v.as_u64().is_some();
                    if !is_enum_number {
                        errors.push(format!("{at}: expected a string, got {v}"));
                    }
                    return;
                };
                if let Some(values) = schema.get("enum").and_then(Value::as_array) {
                    if !values.iter().any(|e| e.as_str() == Some(s)) {
                        errors.push(format!("{at}: {s:?} is not one of the enum values"));
                    }
                }
                let ok = match format {
                    "int64" => s.parse::<i64>().is_ok(),
                    "uint64" => s.parse::<u64>().is_ok(),
                    "byte" => {
                        base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                            || base64::engine::general_purpose::URL_SAFE.decode(s).is_ok()
                            || base64::engine::general_purpose::STANDARD_NO_PAD
                                .decode(s)
                                .is_ok()
                            || base64::engine::general_purpose::URL_SAFE_NO_PAD
                                .decode(s)
                                .is_ok()
                    }
                    "date-time" | "google-datetime" => is_rfc3339(s),
                    "google-duration" => s
                        .strip_suffix('s')
                        .is_some_and(|n| n.parse::<f64>().is_ok()),
                    "date" => s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-',
                    _ => true,
                };
                if !ok {
                    errors.push(format!("{at}: {s:?} is not a valid {format}"));
                }
            }
            "integer" => {
                let ok = match format {
                    "int32" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                    "uint32" => v.as_u64().is_some_and(|n| u32::try_from(n).is_ok()),
                    _ => v.as_i64().is_some() || v.as_u64().is_some(),
                };
                if !ok {
                    errors.push(format!("{at}: expected an integer ({format}), got {v}"));
                }
            }
            "number" => {
                let ok = v.is_number()
                    || v.as_str()
                        .is_some_and(|s| ["NaN", "Infinity", "-Infinity"].contains(&s));
                if !ok {
                    errors.push(format!("{at}: expected a number, got {v}"));
                }
            }
            "boolean" => {
                if !v.is_boolean() {
                    errors.push(format!("{at}: expected a boolean, got {v}"));
                }
            }
            "array" => match v.as_array() {
                None => errors.push(format!("{at}: expected an array, got {v}")),
                Some(items) => {
                    let item_schema = schema.get("items").cloned().unwrap_or(Value::Null);
                    for (i, item) in items.iter().enumerate() {
                        self.check(
                            doc_name,
                            doc,
                            &item_schema,
                            item,
                            &format!("{at}[{i}]"),
                            errors,
                            depth + 1,
                        );
                    }
                }
            },
            "object" => match v.as_object() {
                None => errors.push(format!("{at}: expected an object, got {v}")),
                Some(map) => {
                    let props = schema.get("properties").and_then(Value::as_object);
                    let extra = schema.get("additionalProperties");
                    for (k, val) in map {
                        let child = format!("{at}.{k}");
                        match (props.and_then(|p| p.get(k)), extra) {
                            (Some(p), _) => {
                                self.check(doc_name, doc, p, val, &child, errors, depth + 1)
                            }
                            (None, Some(a)) => {
                                self.check(doc_name, doc, a, val, &child, errors, depth + 1)
                            }
                            (None, None) => errors.push(format!("{at}: unknown property {k:?}")),
                        }
                    }
                }
            },
            other => errors.push(format!("{at}: unsupported schema type {other}")),
        }
    }
}

fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    let zone_ok = s.ends_with('Z') || {
        let n = b.len();
        n > 6 && (b[n - 6] == b'+' || b[n - 6] == b'-') && b[n - 3] == b':'
    };
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && zone_ok
}

/// Check Google's error shape: `{"error":{"code","message","status"?,"errors"?,"details"?}}`;
/// with `legacy`, `errors[]` (`domain`, `reason`, `message`) is required.
pub fn validate_error(body: &Value, legacy: bool) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(outer) = body.as_object() else {
        return vec![format!("error body is not an object: {body}")];
    };
    if outer.len() != 1 {
        errors.push("error body must hold only \"error\"".to_string());
    }
    let Some(e) = outer.get("error").and_then(Value::as_object) else {
        errors.push("missing \"error\" object".to_string());
        return errors;
    };
    if !e.get("code").is_some_and(Value::is_u64) {
        errors.push("error.code must be an integer".to_string());
    }
    if !e.get("message").is_some_and(Value::is_string) {
        errors.push("error.message must be a string".to_string());
    }
    if let Some(st) = e.get("status") {
        if !st.is_string() {
            errors.push("error.status must be a string".to_string());
        }
    }
    for k in e.keys() {
        if !["code", "message", "status", "errors", "details"].contains(&k.as_str()) {
            errors.push(format!("error: unknown property {k:?}"));
        }
    }
    match e.get("errors").and_then(Value::as_array) {
        Some(items) => {
            for item in items {
                let ok = item.as_object().is_some_and(|o| {
                    o.values().all(Value::is_string)
                        && o.keys().all(|k| {
                            ["domain", "reason", "message", "location", "locationType"]
                                .contains(&k.as_str())
                        })
                });
                if !ok {
                    errors.push(format!("error.errors item malformed: {item}"));
                }
            }
        }
        None if legacy => {
            errors.push("error.errors missing (the v1 JSON APIs send it)".to_string())
        }
        None => {}
    }
    errors
}

/// Validate one recorded call: route (verb, path, query), request body and response.
/// A call to no method (`unknown`) is only checked for Google's error shape.
pub fn validate_call(discovery: &Discovery, call: &Call) -> Vec<String> {
    if call.method == "unknown" {
        let mut errors = validate_error(&call.response_body, false);
        if call.status < 400 {
            errors.push(format!(
                "unknown path {} answered {}",
                call.path, call.status
            ));
        }
        return errors;
    }
    let mut errors =
        discovery.validate_route(&call.method, &call.http_method, &call.path, &call.query);
    let info = discovery.method_for_path(&call.method, &call.path);
    errors.extend(discovery.validate_request_info(
        &call.method,
        info.clone(),
        call.request_body.as_ref(),
    ));
    errors.extend(discovery.validate_response_info(
        &call.method,
        info,
        call.status,
        &call.response_body,
    ));
    errors
}
