//! Validates calls recorded by the Azure fake against the operations and wire models
//! of the official `azure-mgmt-*` Python packages, extracted into one JSON file by
//! `scripts/fetch-azure-models.sh` (`scripts/azure-models.py`).
//!
//! Per call: the path matches one SDK operation's URL template and method, the
//! `api-version` is that operation's, no unknown query parameter, the status is one the
//! SDK accepts (errors must have ARM's `{"error": {"code", "message"}}` shape), the
//! long-running-operation headers the SDK reads for that status are there (and every
//! operation URL handed out answers as ARM's do), request bodies use only known wire
//! names, carry every required field and keep closed enums in range, response bodies
//! have only known wire names, the right JSON types, and no secret (write-only) field
//! outside POST actions. Open enums (`Union[str, Enum]`), read-only fields in requests
//! and fields the SDK would not send for that verb are warnings, not errors.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use gitpod_refarch_fake_azure::{Call, CallKind};
use serde_json::Value;

/// The environment variable naming the models file; `scripts/test.sh` sets it, so a
/// missing file fails there instead of skipping.
pub const ENV: &str = "GITPOD_REFARCH_AZURE_MODELS";

/// One segment of a URL template.
#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    Param(String),
    /// A scope parameter spanning one or more segments (`/{scope}/providers/...`).
    Multi(String),
}

#[derive(Debug, Clone)]
pub struct Op {
    pub id: String,
    pub method: String,
    pub api_version: String,
    pub url_template: String,
    segs: Vec<Seg>,
    path_params: BTreeMap<String, Value>,
    query_params: BTreeSet<String>,
    pub ok_status_codes: Vec<u16>,
    pub lro: bool,
    pub final_state_via: Option<String>,
    lro_headers: BTreeMap<String, Vec<String>>,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
}

#[derive(Debug, Clone)]
struct Field {
    ty: String,
    readonly: bool,
    required: bool,
    secret: bool,
    visibility: Option<Vec<String>>,
    enum_values: Option<(String, Vec<String>, bool)>,
}

/// The operations and models of `models.json`.
pub struct Models {
    pub path: PathBuf,
    pub ops: Vec<Op>,
    models: BTreeMap<String, BTreeMap<String, Field>>,
    pub packages: BTreeMap<String, String>,
}

/// One HTTP exchange, as the validator sees it (built from a recorded [`Call`] or by hand).
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub method: String,
    /// Path as sent, without the query.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub request_body: Option<Value>,
    pub status: u16,
    pub response_body: Value,
    pub response_headers: Vec<(String, String)>,
    /// A call to the Entra ID endpoints (not ARM).
    pub token: bool,
}

impl From<&Call> for Exchange {
    fn from(c: &Call) -> Exchange {
        Exchange {
            method: c.http_method.clone(),
            path: c.path.split('?').next().unwrap_or_default().to_string(),
            query: c.query.clone(),
            request_body: c.request_body.clone(),
            status: c.status,
            response_body: c.response_body.clone(),
            response_headers: c.response_headers.clone(),
            token: c.kind == CallKind::Token,
        }
    }
}

impl Exchange {
    fn header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn label(&self) -> String {
        format!("{} {} -> {}", self.method, self.path, self.status)
    }
}

/// What the validator found.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Operation ids that answered a status the SDK accepts.
    pub covered: BTreeSet<String>,
    /// Operation URLs polled.
    pub polls: usize,
    /// Request bodies checked against a model.
    pub requests_checked: usize,
    /// Response bodies checked against a model.
    pub responses_checked: usize,
}

impl Report {
    fn err(&mut self, ex: &Exchange, msg: impl AsRef<str>) {
        self.errors
            .push(format!("{}: {}", ex.label(), msg.as_ref()));
    }
    fn warn(&mut self, ex: &Exchange, msg: impl AsRef<str>) {
        let m = format!("{}: {}", ex.label(), msg.as_ref());
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }
    /// Errors and warnings as text, for assertion messages.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} operations covered, {} request and {} response bodies checked, {} polls, {} errors, {} warnings\n",
            self.covered.len(),
            self.requests_checked,
            self.responses_checked,
            self.polls,
            self.errors.len(),
            self.warnings.len()
        );
        for e in &self.errors {
            s.push_str("ERROR ");
            s.push_str(e);
            s.push('\n');
        }
        for w in &self.warnings {
            s.push_str("warning ");
            s.push_str(w);
            s.push('\n');
        }
        s
    }
}

/// Where to look for `models.json`, and whether its absence is an error.
pub fn location() -> (PathBuf, bool) {
    match std::env::var_os(ENV) {
        Some(p) => (PathBuf::from(p), true),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            (
                PathBuf::from(home).join(".cache/gitpod-refarch/azure-models/models.json"),
                false,
            )
        }
    }
}

/// Load the models: `Ok(None)` only when the env var is unset and the default file is
/// absent (a developer who never ran the fetch script); a set variable naming a missing
/// or broken file is an error.
pub fn load() -> Result<Option<Models>, String> {
    let (path, required) = location();
    if !path.exists() {
        if required {
            return Err(format!(
                "{ENV}={} does not exist: run scripts/fetch-azure-models.sh",
                path.display()
            ));
        }
        return Ok(None);
    }
    Models::load_file(&path).map(Some)
}

/// Load or skip: prints why a test is skipped and returns `None` then; panics on errors.
pub fn load_or_skip(test: &str) -> Option<Models> {
    match load() {
        Ok(Some(m)) => Some(m),
        Ok(None) => {
            let (path, _) = location();
            eprintln!(
                "SKIPPED {test}: {} is absent and {ENV} is unset; run scripts/fetch-azure-models.sh (scripts/test.sh does, and sets {ENV} so the test cannot skip there)",
                path.display()
            );
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_template(t: &str, params: &BTreeMap<String, Value>) -> Vec<Seg> {
    t.trim_start_matches('/')
        .split('/')
        .map(|s| {
            if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let multi = params
                    .get(name)
                    .and_then(|p| p["multi_segment"].as_bool())
                    .unwrap_or(false);
                if multi {
                    Seg::Multi(name.to_string())
                } else {
                    Seg::Param(name.to_string())
                }
            } else {
                Seg::Lit(s.to_string())
            }
        })
        .collect()
}

/// Percent-decoding of a path segment (ASCII-safe; invalid escapes are kept).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Models {
    /// Load a models file.
    pub fn load_file(path: &std::path::Path) -> Result<Models, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Models::from_json(path.to_path_buf(), &doc)
    }

    fn from_json(path: PathBuf, doc: &Value) -> Result<Models, String> {
        let mut ops = Vec::new();
        for o in doc["operations"].as_array().ok_or("no operations")? {
            let path_params: BTreeMap<String, Value> = o["path_params"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let tmpl = o["url_template"]
                .as_str()
                .ok_or("url_template")?
                .to_string();
            ops.push(Op {
                id: o["id"].as_str().ok_or("id")?.to_string(),
                method: o["method"].as_str().ok_or("method")?.to_string(),
                api_version: o["api_version"].as_str().ok_or("api_version")?.to_string(),
                segs: parse_template(&tmpl, &path_params),
                url_template: tmpl,
                path_params,
                query_params: strs(&o["query_params"]).into_iter().collect(),
                ok_status_codes: o["ok_status_codes"]
                    .as_array()
                    .ok_or("ok_status_codes")?
                    .iter()
                    .filter_map(|c| c.as_u64().and_then(|c| u16::try_from(c).ok()))
                    .collect(),
                lro: o["lro"].as_bool().unwrap_or(false),
                final_state_via: o["final_state_via"].as_str().map(str::to_string),
                lro_headers: o["lro_headers"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), strs(v))).collect())
                    .unwrap_or_default(),
                request_model: o["request_model"].as_str().map(str::to_string),
                response_model: o["response_model"].as_str().map(str::to_string),
            });
        }
        let mut models = BTreeMap::new();
        for (name, fields) in doc["models"].as_object().ok_or("no models")? {
            let mut fs = BTreeMap::new();
            for (wire, f) in fields.as_object().ok_or("model fields")? {
                let enum_values = f.get("enum").map(|e| {
                    (
                        e["name"].as_str().unwrap_or_default().to_string(),
                        strs(&e["values"]),
                        e["open"].as_bool().unwrap_or(true),
                    )
                });
                fs.insert(
                    wire.clone(),
                    Field {
                        ty: f["type"].as_str().unwrap_or("object").to_string(),
                        readonly: f["readonly"].as_bool().unwrap_or(false),
                        required: f["required"].as_bool().unwrap_or(false),
                        secret: f["secret"].as_bool().unwrap_or(false),
                        visibility: f.get("visibility").map(strs),
                        enum_values,
                    },
                );
            }
            models.insert(name.clone(), fs);
        }
        let packages = doc["packages"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Models {
            path,
            ops,
            models,
            packages,
        })
    }

    /// The operation with this id.
    pub fn op(&self, id: &str) -> Option<&Op> {
        self.ops.iter().find(|o| o.id == id)
    }

    /// The SDK operation a method and path belong to (the most specific template:
    /// most literal segments), with the decoded path parameters.
    pub fn match_op(&self, method: &str, path: &str) -> Option<(&Op, BTreeMap<String, String>)> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(usize, &Op, BTreeMap<String, String>)> = None;
        for op in self.ops.iter().filter(|o| o.method == method) {
            if let Some(params) = match_segs(&op.segs, &segs) {
                let lits = op.segs.iter().filter(|s| matches!(s, Seg::Lit(_))).count();
                if best.as_ref().is_none_or(|(n, _, _)| lits > *n) {
                    best = Some((lits, op, params));
                }
            }
        }
        best.map(|(_, op, p)| (op, p))
    }

    /// Validate a sequence of exchanges (in order: LRO URLs are learnt from earlier answers).
    pub fn validate(&self, exchanges: &[Exchange]) -> Report {
        let mut report = Report::default();
        // operation URL (path + query) -> (operation id, header it came from)
        let mut handed_out: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
        for ex in exchanges {
            if ex.token {
                continue;
            }
            let key = poll_key(&ex.path, &ex.query);
            if let Some((op_id, via)) = handed_out.get(&key).cloned() {
                report.polls += 1;
                self.check_poll(ex, &op_id, via, &mut report);
                continue;
            }
            let Some((op, params)) = self.match_op(&ex.method, &ex.path) else {
                let other: Vec<&str> = self
                    .ops
                    .iter()
                    .filter(|o| {
                        let segs: Vec<&str> = ex.path.trim_start_matches('/').split('/').collect();
                        match_segs(&o.segs, &segs).is_some()
                    })
                    .map(|o| o.method.as_str())
                    .collect();
                if other.is_empty() {
                    report.err(ex, "no SDK operation has this path");
                } else {
                    report.err(
                        ex,
                        format!("the SDK uses this path only with {}", other.join("/")),
                    );
                }
                continue;
            };
            self.check_call(ex, op, &params, &mut report);
            for h in ["Azure-AsyncOperation", "Location"] {
                if let Some(url) = ex.header(h) {
                    match split_url(url) {
                        Some((p, q)) => {
                            handed_out.insert(
                                poll_key(&p, &q),
                                (
                                    op.id.clone(),
                                    if h == "Location" { "location" } else { "async" },
                                ),
                            );
                        }
                        None => report.err(ex, format!("{h} is not an absolute URL: {url}")),
                    }
                }
            }
        }
        report
    }

    fn check_call(
        &self,
        ex: &Exchange,
        op: &Op,
        params: &BTreeMap<String, String>,
        report: &mut Report,
    ) {
        let id = &op.id;
        // api-version and query parameters
        match ex.query.iter().find(|(k, _)| k == "api-version") {
            None => report.err(ex, format!("{id}: no api-version")),
            Some((_, v)) if *v != op.api_version => report.err(
                ex,
                format!("{id}: api-version {v}, the SDK sends {}", op.api_version),
            ),
            _ => {}
        }
        for (k, _) in &ex.query {
            if !op.query_params.contains(k) {
                report.err(ex, format!("{id}: query parameter {k} is not the SDK's"));
            }
        }
        for (name, value) in params {
            let Some(p) = op.path_params.get(name) else {
                continue;
            };
            let len = value.chars().count() as u64;
            if let Some(min) = p["min_length"].as_u64() {
                if len < min {
                    report.err(ex, format!("{id}: {name} '{value}' shorter than {min}"));
                }
            }
            if let Some(max) = p["max_length"].as_u64() {
                if len > max {
                    report.err(ex, format!("{id}: {name} '{value}' longer than {max}"));
                }
            }
        }
        // request body
        let write_vis = if ex.method == "PATCH" {
            "update"
        } else {
            "create"
        };
        match (&op.request_model, &ex.request_body) {
            (Some(m), Some(body)) if !body.is_null() => {
                report.requests_checked += 1;
                self.check_value(m, body, "body", Mode::Request(write_vis), ex, report);
            }
            // Optional bodies (providers/register) are fine; others are required.
            (Some(m), _) if !id.ends_with("Providers.register") => {
                report.err(ex, format!("{id}: no request body ({m})"));
            }
            (None, Some(body)) if !body.is_null() && ex.method != "GET" && ex.method != "HEAD" => {
                report.warn(ex, format!("{id}: a body the SDK never sends: {body}"));
            }
            _ => {}
        }
        // status
        if ex.status >= 400 {
            if op.ok_status_codes.contains(&ex.status) {
                report.covered.insert(id.clone());
            } else {
                self.check_error(ex, report);
            }
            return;
        }
        if !op.ok_status_codes.contains(&ex.status) {
            report.err(
                ex,
                format!(
                    "{id}: status {} not among the SDK's {:?}",
                    ex.status, op.ok_status_codes
                ),
            );
            return;
        }
        report.covered.insert(id.clone());
        // long-running operation headers
        if op.lro {
            let declared = op
                .lro_headers
                .get(&ex.status.to_string())
                .or_else(|| op.lro_headers.get("*"));
            let style: Vec<&String> = declared
                .map(|hs| {
                    hs.iter()
                        .filter(|h| *h == "Azure-AsyncOperation" || *h == "Location")
                        .collect()
                })
                .unwrap_or_default();
            for h in &style {
                if ex.header(h).is_none() {
                    report.err(
                        ex,
                        format!(
                            "{id}: the SDK reads {h} on a {} and it is missing",
                            ex.status
                        ),
                    );
                }
            }
            if style.is_empty()
                && ex.status == 202
                && ex.header("Location").is_none()
                && ex.header("Azure-AsyncOperation").is_none()
            {
                report.err(
                    ex,
                    format!("{id}: 202 without Location or Azure-AsyncOperation"),
                );
            }
            if let Some(fsv) = &op.final_state_via {
                let wanted = if fsv == "location" {
                    "Location"
                } else {
                    "Azure-AsyncOperation"
                };
                if (ex.status == 201 || ex.status == 202) && ex.header(wanted).is_none() {
                    report.err(
                        ex,
                        format!(
                            "{id}: final-state-via {fsv} needs a {wanted} header on a {}",
                            ex.status
                        ),
                    );
                }
            }
        } else if ex.header("Azure-AsyncOperation").is_some() {
            report.warn(
                ex,
                format!("{id}: an LRO header on a synchronous operation"),
            );
        }
        if let Some(ra) = ex.header("Retry-After") {
            if ra.trim().parse::<u64>().is_err() {
                report.err(ex, format!("{id}: Retry-After '{ra}' is not whole seconds"));
            }
        }
        // response body
        let empty =
            ex.response_body.is_null() || ex.response_body.as_str().is_some_and(str::is_empty);
        if ex.method == "HEAD" {
            if !empty {
                report.err(ex, format!("{id}: HEAD answered a body"));
            }
            return;
        }
        match &op.response_model {
            Some(m) if !empty => {
                report.responses_checked += 1;
                let post = ex.method == "POST";
                if let Some(item) = m.strip_prefix('[').and_then(|m| m.strip_suffix(']')) {
                    self.check_page(item, ex, post, report);
                } else {
                    self.check_value(
                        m,
                        &ex.response_body,
                        "body",
                        Mode::Response { post },
                        ex,
                        report,
                    );
                    if !post {
                        check_identity(ex, report);
                    }
                }
            }
            Some(m) => {
                // PUT/PATCH/GET answer the resource; LRO 201/202 and deletes may be empty.
                let may_be_empty =
                    ex.status == 202 || ex.status == 204 || (op.lro && ex.status == 201);
                if !may_be_empty && ex.method != "DELETE" {
                    report.err(ex, format!("{id}: empty answer, the SDK deserializes {m}"));
                }
            }
            None => {
                if !empty && ex.method != "DELETE" {
                    report.warn(ex, format!("{id}: a body the SDK ignores"));
                }
            }
        }
    }

    fn check_page(&self, item: &str, ex: &Exchange, post: bool, report: &mut Report) {
        let Some(obj) = ex.response_body.as_object() else {
            report.err(ex, "a list answer is not an object");
            return;
        };
        for k in obj.keys() {
            if k != "value" && k != "nextLink" {
                report.err(ex, format!("list answer has unknown field {k}"));
            }
        }
        match obj.get("value").and_then(Value::as_array) {
            Some(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.check_value(
                        item,
                        v,
                        &format!("value[{i}]"),
                        Mode::Response { post },
                        ex,
                        report,
                    );
                }
            }
            None => report.err(ex, "list answer without a value array"),
        }
    }

    fn check_error(&self, ex: &Exchange, report: &mut Report) {
        let e = &ex.response_body["error"];
        if !e["code"].is_string() || !e["message"].is_string() {
            report.err(
                ex,
                format!(
                    "error answer without ARM's error.code/error.message: {}",
                    ex.response_body
                ),
            );
        }
    }

    fn check_poll(&self, ex: &Exchange, op_id: &str, via: &str, report: &mut Report) {
        if ex.method != "GET" {
            report.err(ex, "operation URLs are polled with GET");
            return;
        }
        if ex.status >= 400 {
            self.check_error(ex, report);
            return;
        }
        let op = self.op(op_id);
        match via {
            "async" => {
                if ex.status != 200 {
                    report.err(
                        ex,
                        format!(
                            "{op_id}: an Azure-AsyncOperation URL answers 200, not {}",
                            ex.status
                        ),
                    );
                    return;
                }
                let status = ex.response_body["status"].as_str();
                match status {
                    None => report.err(ex, format!("{op_id}: operation status without `status`")),
                    Some("Failed") | Some("Canceled") => {
                        let e = &ex.response_body["error"];
                        if !e["code"].is_string() {
                            report.err(ex, format!("{op_id}: failed operation without error.code"));
                        }
                    }
                    Some("Succeeded") | Some("InProgress") => {}
                    Some(s) => report.warn(ex, format!("{op_id}: non-terminal status {s}")),
                }
                if let Some(obj) = ex.response_body.as_object() {
                    const KNOWN: &[&str] = &[
                        "id",
                        "name",
                        "status",
                        "startTime",
                        "endTime",
                        "percentComplete",
                        "properties",
                        "error",
                        "resourceId",
                    ];
                    for k in obj.keys() {
                        if !KNOWN.contains(&k.as_str()) {
                            report.warn(ex, format!("{op_id}: operation status field {k}"));
                        }
                    }
                }
            }
            _ => {
                if ![200, 201, 202, 204].contains(&ex.status) {
                    report.err(
                        ex,
                        format!(
                            "{op_id}: a Location URL answers 200/201/202/204, not {}",
                            ex.status
                        ),
                    );
                    return;
                }
                if ex.status == 202 && ex.header("Location").is_none() {
                    // ARM keeps the same URL; the header is optional but usual.
                    report.warn(
                        ex,
                        format!("{op_id}: 202 on a Location URL without Location"),
                    );
                }
                let done = ex.status == 200 || ex.status == 201;
                let empty = ex.response_body.is_null();
                if let (true, false, Some(op)) = (done, empty, op) {
                    if let Some(m) = &op.response_model {
                        if !m.starts_with('[') {
                            report.responses_checked += 1;
                            let post = op.method == "POST";
                            self.check_value(
                                m,
                                &ex.response_body,
                                "body",
                                Mode::Response { post },
                                ex,
                                report,
                            );
                        }
                    }
                }
                if let (true, true, Some(op)) = (done, empty, op) {
                    if op.final_state_via.as_deref() == Some("location")
                        && op.response_model.is_some()
                        && op.method != "DELETE"
                    {
                        report.err(ex, format!("{op_id}: final-state-via location, the SDK reads the result from this answer but it is empty"));
                    }
                }
            }
        }
    }

    fn check_value(
        &self,
        ty: &str,
        v: &Value,
        at: &str,
        mode: Mode,
        ex: &Exchange,
        report: &mut Report,
    ) {
        if v.is_null() {
            return;
        }
        if let Some(inner) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            match v.as_array() {
                Some(items) => {
                    for (i, x) in items.iter().enumerate() {
                        self.check_value(inner, x, &format!("{at}[{i}]"), mode, ex, report);
                    }
                }
                None => report.err(ex, format!("{at}: expected an array ({ty}), got {v}")),
            }
            return;
        }
        if let Some(inner) = ty.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            match v.as_object() {
                Some(m) => {
                    for (k, x) in m {
                        self.check_value(inner, x, &format!("{at}.{k}"), mode, ex, report);
                    }
                }
                None => report.err(ex, format!("{at}: expected an object map ({ty}), got {v}")),
            }
            return;
        }
        let ok = match ty {
            "str" | "iso-8601" | "duration" => v.is_string(),
            "int" => v.is_i64() || v.is_u64(),
            "float" => v.is_number(),
            "bool" => v.is_boolean(),
            "object" => true,
            model => {
                self.check_model(model, v, at, mode, ex, report);
                true
            }
        };
        if !ok {
            report.err(ex, format!("{at}: expected {ty}, got {v}"));
        }
    }

    fn check_model(
        &self,
        model: &str,
        v: &Value,
        at: &str,
        mode: Mode,
        ex: &Exchange,
        report: &mut Report,
    ) {
        let Some(fields) = self.models.get(model) else {
            report.err(ex, format!("{at}: model {model} missing from models.json"));
            return;
        };
        let Some(obj) = v.as_object() else {
            report.err(ex, format!("{at}: expected an object ({model}), got {v}"));
            return;
        };
        for (k, x) in obj {
            let Some(f) = fields.get(k).or_else(|| {
                // ARM treats names case-insensitively; a case difference is a warning.
                fields
                    .iter()
                    .find(|(w, _)| w.eq_ignore_ascii_case(k))
                    .map(|(_, f)| f)
            }) else {
                report.err(ex, format!("{at}.{k}: not a field of {model}"));
                continue;
            };
            if !fields.contains_key(k) {
                report.warn(
                    ex,
                    format!("{at}.{k}: the wire name differs in case in {model}"),
                );
            }
            match mode {
                Mode::Request(vis) => {
                    if f.readonly {
                        report.warn(
                            ex,
                            format!("{at}.{k}: read-only in {model}, ARM ignores it in requests"),
                        );
                    } else if let Some(allowed) = &f.visibility {
                        if !allowed
                            .iter()
                            .any(|a| a == vis || (vis == "create" && a == "update"))
                        {
                            report
                                .warn(ex, format!("{at}.{k}: not writable on {vis} ({allowed:?})"));
                        }
                    }
                }
                Mode::Response { post } => {
                    if f.secret && !post && !x.is_null() {
                        report.err(
                            ex,
                            format!(
                                "{at}.{k}: a secret (write-only) field of {model} in an answer"
                            ),
                        );
                    }
                }
            }
            if let (Some((name, values, open)), Some(s)) = (&f.enum_values, x.as_str()) {
                check_enum(name, values, *open, s, &format!("{at}.{k}"), ex, report);
            }
            if let (Some((name, values, open)), Some(items)) = (&f.enum_values, x.as_array()) {
                for s in items.iter().filter_map(Value::as_str) {
                    check_enum(name, values, *open, s, &format!("{at}.{k}[]"), ex, report);
                }
            }
            self.check_value(&f.ty, x, &format!("{at}.{k}"), mode, ex, report);
        }
        for (k, f) in fields {
            if !f.required || f.readonly || obj.keys().any(|o| o.eq_ignore_ascii_case(k)) {
                continue;
            }
            match mode {
                Mode::Request(_) => {
                    report.err(ex, format!("{at}.{k}: required by {model}, missing"))
                }
                Mode::Response { .. } => report.err(
                    ex,
                    format!("{at}.{k}: required by {model}, missing from the answer"),
                ),
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// A request body; the visibility the verb needs ("create" for PUT/POST, "update" for PATCH).
    Request(&'static str),
    /// A response body; POST actions may return secrets (credentials).
    Response { post: bool },
}

fn check_enum(
    name: &str,
    values: &[String],
    open: bool,
    s: &str,
    at: &str,
    ex: &Exchange,
    report: &mut Report,
) {
    if values.iter().any(|v| v == s) {
        return;
    }
    if values.iter().any(|v| v.eq_ignore_ascii_case(s)) {
        report.warn(
            ex,
            format!("{at}: '{s}' differs in case from {name} {values:?}"),
        );
        return;
    }
    if open {
        report.warn(
            ex,
            format!("{at}: '{s}' is not a known {name} value {values:?} (open enum)"),
        );
    } else {
        report.err(ex, format!("{at}: '{s}' is not a {name} value {values:?}"));
    }
}

/// ARM's resource contract (not in the models): a resource answered for a PUT, PATCH or
/// GET of its own path carries that path as `id` (case-insensitively) and its last
/// segment as `name`.
fn check_identity(ex: &Exchange, report: &mut Report) {
    let Some(id) = ex.response_body.get("id").and_then(Value::as_str) else {
        return;
    };
    let path = ex.path.trim_end_matches('/');
    if !decode(path).eq_ignore_ascii_case(id) {
        report.err(ex, format!("answer id {id} is not the request path"));
    }
    if let (Some(name), Some(last)) = (
        ex.response_body.get("name").and_then(Value::as_str),
        path.rsplit('/').next(),
    ) {
        if !decode(last).eq_ignore_ascii_case(name) {
            report.err(
                ex,
                format!("answer name {name} is not the path's last segment {last}"),
            );
        }
    }
}

fn match_segs(tmpl: &[Seg], path: &[&str]) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    if go(tmpl, path, &mut params) {
        Some(params)
    } else {
        None
    }
}

fn go(tmpl: &[Seg], path: &[&str], params: &mut BTreeMap<String, String>) -> bool {
    match tmpl.first() {
        None => path.is_empty(),
        Some(Seg::Lit(l)) => {
            !path.is_empty()
                && path[0].eq_ignore_ascii_case(l)
                && go(&tmpl[1..], &path[1..], params)
        }
        Some(Seg::Param(n)) => {
            if path.is_empty() || path[0].is_empty() {
                return false;
            }
            params.insert(n.clone(), decode(path[0]));
            if go(&tmpl[1..], &path[1..], params) {
                true
            } else {
                params.remove(n);
                false
            }
        }
        Some(Seg::Multi(n)) => {
            // at least one segment; try the shortest first
            for take in 1..=path.len() {
                if path[..take].iter().any(|s| s.is_empty()) {
                    break;
                }
                params.insert(n.clone(), decode(&path[..take].join("/")));
                if go(&tmpl[1..], &path[take..], params) {
                    return true;
                }
            }
            params.remove(n);
            false
        }
    }
}

/// `http://host:port/p?q` -> (path, query pairs), for matching polls.
fn split_url(url: &str) -> Option<(String, Vec<(String, String)>)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let path_q = &rest[rest.find('/')?..];
    let (p, q) = path_q.split_once('?').unwrap_or((path_q, ""));
    let query = q
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    Some((p.to_string(), query))
}

fn poll_key(path: &str, query: &[(String, String)]) -> String {
    let mut q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    q.sort();
    format!("{}?{}", path.to_ascii_lowercase(), q.join("&"))
}

/// Validate everything the fake recorded.
pub fn validate_calls(models: &Models, calls: &[Call]) -> Report {
    let ex: Vec<Exchange> = calls.iter().map(Exchange::from).collect();
    models.validate(&ex)
}
