//! Watches: the event log every write to the object map goes through, and the
//! streamed `?watch=true` answers built on it.
//!
//! [`Objects`] is the only way to change the stored objects: each insert or removal
//! is appended to a bounded history of events (`ADDED`, `MODIFIED`, `DELETED`) with
//! its resourceVersion, and wakes the open watches. A watch replays the history after
//! the resourceVersion it starts from (a version older than the history is answered
//! with an in-stream `ERROR` event carrying a 410 `Expired` Status, as the API
//! server's watch cache answers), then streams new events as they happen.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api::{self, Request, Route};
use crate::catalog::{self, ResType};
use crate::patch::Selector;
use crate::status::{ApiError, ApiResult};
use crate::store::{meta_mut, str_at, Key, Store};
use crate::Shared;

/// How often an open watch runs the simulated controllers whose time has come (they
/// otherwise run on the next request), so that a watcher sees a CRD become
/// Established or a Deployment become available without anyone polling.
const SETTLE_TICK: Duration = Duration::from_millis(20);

/// The annotation of the bookmark that ends the initial events of a streaming list.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of the stored objects.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// The resourceVersion of the change.
    pub(crate) rv: u64,
    pub(crate) kind: EventType,
    pub(crate) key: Key,
    /// The object after the change; for a deletion, the last state of the object
    /// with the deletion's resourceVersion.
    pub(crate) object: Value,
    /// The object before the change (`MODIFIED` and `DELETED`).
    pub(crate) prev: Option<Value>,
}

/// The recent events of one resource type.
#[derive(Default)]
struct History {
    events: VecDeque<Event>,
    /// The highest resourceVersion dropped from this window (0: none yet): a watch or
    /// list of this type from an older version is 410 `Expired`.
    compacted: u64,
}

/// The stored objects, with the resourceVersion counter and the event history.
/// Reads go through `Deref` to the map; every change goes through
/// [`Objects::insert`] or [`Objects::remove`], which record it.
pub(crate) struct Objects {
    map: BTreeMap<Key, Value>,
    /// Last resourceVersion handed out.
    rv: u64,
    /// resourceVersion of the last recorded event.
    last_event: u64,
    /// The recent events of each resource type (group, plural), oldest first: one
    /// window per type, as the API server keeps a watch cache per resource.
    history: HashMap<(String, String), History>,
    capacity: usize,
    /// The resourceVersion of the last event, for the open watches.
    pulse: watch::Sender<u64>,
    /// True once the fake is shutting down: open watches end.
    closing: watch::Sender<bool>,
    /// Owner uid -> the objects whose `metadata.ownerReferences` name it, kept by
    /// `insert` and `remove` for the garbage collector (`gc.rs`).
    owned: HashMap<String, BTreeSet<Key>>,
}

/// The owner uids an object's `metadata.ownerReferences` name.
fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

impl std::ops::Deref for Objects {
    type Target = BTreeMap<Key, Value>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

fn rv_of(obj: &Value) -> u64 {
    str_at(obj, "/metadata/resourceVersion")
        .parse()
        .unwrap_or(0)
}

impl Objects {
    /// An empty map keeping the last `capacity` events.
    pub(crate) fn new(capacity: usize) -> Objects {
        Objects {
            map: BTreeMap::new(),
            rv: 0,
            last_event: 0,
            history: HashMap::new(),
            capacity,
            pulse: watch::channel(0).0,
            closing: watch::channel(false).0,
            owned: HashMap::new(),
        }
    }

    /// The objects whose owner references name `uid`, in key order.
    pub(crate) fn dependents(&self, uid: &str) -> Vec<Key> {
        self.owned
            .get(uid)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn index(&mut self, key: &Key, old: Option<&Value>, new: Option<&Value>) {
        for uid in old.into_iter().flat_map(owner_uids) {
            if let Some(keys) = self.owned.get_mut(uid) {
                keys.remove(key);
                if keys.is_empty() {
                    self.owned.remove(uid);
                }
            }
        }
        for uid in new.into_iter().flat_map(owner_uids) {
            self.owned
                .entry(uid.to_string())
                .or_default()
                .insert(key.clone());
        }
    }

    /// The objects of one type (group, plural), in key order: a range of the map,
    /// not a scan of every object.
    pub(crate) fn of_type<'a>(
        &'a self,
        group: &'a str,
        plural: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        let from = Key {
            group: group.to_string(),
            plural: plural.to_string(),
            namespace: String::new(),
            name: String::new(),
        };
        self.map
            .range(from..)
            .take_while(move |(k, _)| k.group == group && k.plural == plural)
    }

    /// The next resourceVersion.
    pub(crate) fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// The last resourceVersion handed out: the version of the whole state.
    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    /// Store an object (created or changed): an `ADDED` or `MODIFIED` event at its
    /// `metadata.resourceVersion` (a fresh one is set if it has none newer than the
    /// last event). The previous object goes into the event.
    pub(crate) fn insert(&mut self, key: Key, mut obj: Value) {
        let mut rv = rv_of(&obj);
        if rv <= self.last_event {
            rv = self.next_rv();
            meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        }
        self.rv = self.rv.max(rv);
        let prev = self.map.insert(key.clone(), obj.clone());
        self.index(&key, prev.as_ref(), Some(&obj));
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Event {
            rv,
            kind,
            key,
            object: obj,
            prev,
        });
    }

    /// Remove an object for good: a `DELETED` event with its last state at a new
    /// resourceVersion. Returns the object as it was stored.
    pub(crate) fn remove(&mut self, key: &Key) -> Option<Value> {
        let old = self.map.remove(key)?;
        self.index(key, Some(&old), None);
        let rv = self.next_rv();
        let mut last = old.clone();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        self.record(Event {
            rv,
            kind: EventType::Deleted,
            key: key.clone(),
            object: last,
            prev: Some(old.clone()),
        });
        Some(old)
    }

    fn record(&mut self, event: Event) {
        let rv = event.rv;
        self.last_event = rv;
        let window = self
            .history
            .entry((event.key.group.clone(), event.key.plural.clone()))
            .or_default();
        window.events.push_back(event);
        while window.events.len() > self.capacity {
            match window.events.pop_front() {
                Some(e) => window.compacted = e.rv,
                None => break,
            }
        }
        self.pulse.send_replace(rv);
    }

    /// The highest resourceVersion dropped from the window of a type (0: none).
    pub(crate) fn compacted(&self, group: &str, plural: &str) -> u64 {
        self.history
            .get(&(group.to_string(), plural.to_string()))
            .map_or(0, |w| w.compacted)
    }

    /// The events of one type after `rv`, or `Err(oldest)` when some of them were
    /// dropped. Versions only grow, so the start is found by binary search.
    fn since(
        &self,
        rv: u64,
        group: &str,
        plural: &str,
    ) -> Result<impl Iterator<Item = &Event> + '_, u64> {
        let window = self.history.get(&(group.to_string(), plural.to_string()));
        let compacted = window.map_or(0, |w| w.compacted);
        if rv < compacted {
            return Err(compacted + 1);
        }
        let events = window.map(|w| {
            let start = w.events.partition_point(|e| e.rv <= rv);
            w.events.range(start..)
        });
        Ok(events.into_iter().flatten())
    }

    /// The objects of one type as they were at `rv`, rebuilt from the current ones by
    /// undoing the later events; `Err(oldest)` when the history no longer reaches it.
    pub(crate) fn state_at(
        &self,
        rv: u64,
        group: &str,
        plural: &str,
    ) -> Result<BTreeMap<Key, Value>, u64> {
        let mut out: BTreeMap<Key, Value> = self
            .of_type(group, plural)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let later: Vec<&Event> = self.since(rv, group, plural)?.collect();
        for e in later.into_iter().rev() {
            match (&e.kind, &e.prev) {
                (EventType::Added, _) | (_, None) => {
                    out.remove(&e.key);
                }
                (_, Some(prev)) => {
                    out.insert(e.key.clone(), prev.clone());
                }
            }
        }
        Ok(out)
    }

    /// End every open watch (the fake is shutting down).
    pub(crate) fn close_watches(&self) {
        self.closing.send_replace(true);
    }
}

/// The `kind: Status` of a resourceVersion the history no longer reaches.
pub(crate) fn expired(message: String) -> ApiError {
    ApiError::new(410, "Expired", message)
}

/// An open watch: what it selects and where it stands.
pub(crate) struct Plan {
    t: ResType,
    namespace: Option<String>,
    sel: Selector,
    /// Events after this resourceVersion are still to be sent.
    from: u64,
    /// Lines to send before anything else.
    initial: VecDeque<Bytes>,
    /// Set when the stream ends after `initial` (a 410).
    finished: bool,
    bookmarks: bool,
    bookmark_interval: Duration,
    deadline: Option<Instant>,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(t: &ResType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({ INITIAL_EVENTS_END: "true" });
    }
    line(
        "BOOKMARK",
        &json!({"apiVersion": t.api_version(), "kind": t.kind, "metadata": meta}),
    )
}

/// Start a watch on a collection (`?watch=true`): check the request and take the
/// initial events under the lock.
pub(crate) fn open(st: &mut Store, route: &Route, req: &Request<'_>) -> ApiResult<Plan> {
    let Route::Resource(target) = route else {
        return Err(ApiError::no_resource());
    };
    let t = api::resolve_target(st, target)?;
    let sel = api::selector(st, &t, req)?;
    let rv_param = req.q("resourceVersion").unwrap_or("");
    let rv_match = req.q("resourceVersionMatch").unwrap_or("");
    let bookmarks = req.flag("allowWatchBookmarks");
    let send_initial = req.q("sendInitialEvents").map(|v| v == "true" || v == "1");
    let invalid = |field: &str, msg: &str| {
        ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            &[(field.to_string(), msg.to_string())],
        )
    };
    if send_initial.is_some() {
        if rv_match != "NotOlderThan" {
            return Err(invalid(
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if send_initial == Some(true) && !bookmarks {
            return Err(invalid(
                "allowWatchBookmarks",
                "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
    } else if !rv_match.is_empty() {
        return Err(invalid(
            "resourceVersionMatch",
            "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    let requested = match rv_param {
        "" => None,
        v => Some(v.parse::<u64>().map_err(|_| {
            invalid(
                "resourceVersion",
                &format!("Invalid value: {v:?}: must be a resourceVersion the server handed out"),
            )
        })?),
    };
    let timeout = match req.q("timeoutSeconds") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {v:?}: not a number"))
        })?),
    };
    let current = st.objects.rv();
    let ns = target.namespace.clone();
    let mut plan = Plan {
        t,
        namespace: ns,
        sel,
        from: current,
        initial: VecDeque::new(),
        finished: false,
        bookmarks,
        bookmark_interval: st.config.watch_bookmark_interval,
        deadline: timeout.map(|s| Instant::now() + Duration::from_secs(s)),
    };
    // Without a resourceVersion (or with "0"), a watch starts with the current
    // objects as ADDED events; so does a streaming list (sendInitialEvents=true).
    let initial = match send_initial {
        Some(v) => v,
        None => matches!(requested, None | Some(0)),
    };
    if initial {
        for (k, v) in st.objects.of_type(&plan.t.group, &plan.t.plural) {
            if plan.selects(k, v) {
                plan.initial
                    .push_back(line("ADDED", &api::present(&plan.t, v)));
            }
        }
        if send_initial == Some(true) {
            plan.initial.push_back(bookmark(&plan.t, current, true));
        }
    } else if let Some(rv) = requested {
        let compacted = st.objects.compacted(&plan.t.group, &plan.t.plural);
        if rv < compacted {
            let e = expired(format!(
                "too old resource version: {rv} ({})",
                compacted + 1
            ));
            plan.initial.push_back(line("ERROR", &e.body()));
            plan.finished = true;
        } else {
            plan.from = rv;
        }
    }
    Ok(plan)
}

impl Plan {
    fn selects(&self, key: &Key, obj: &Value) -> bool {
        key.group == self.t.group
            && key.plural == self.t.plural
            && self.namespace.as_ref().is_none_or(|n| *n == key.namespace)
            && self.sel.matches(obj)
    }

    /// The line an event makes for this watch, if any: an object that starts or stops
    /// matching the selectors is `ADDED` or `DELETED`, as the API server sends it.
    fn event_line(&self, e: &Event) -> Option<Bytes> {
        let now = self.selects(&e.key, &e.object);
        let before = e.prev.as_ref().is_some_and(|p| self.selects(&e.key, p));
        let kind = match e.kind {
            EventType::Added if now => "ADDED",
            EventType::Modified if now && before => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if before => "DELETED",
            EventType::Deleted if before || now => e.kind.as_str(),
            _ => return None,
        };
        Some(line(kind, &api::present(&self.t, &e.object)))
    }
}

/// Stream state of one watch response.
struct Streaming {
    shared: Arc<Shared>,
    plan: Plan,
    pulse: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    frozen: watch::Receiver<bool>,
    next_bookmark: Instant,
}

impl Streaming {
    /// Wait for something to send; `None` when the watch ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.plan.initial.pop_front() {
                return Some(b);
            }
            if self.plan.finished {
                return None;
            }
            let deadline = self
                .plan
                .deadline
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                _ = self.pulse.changed() => {}
                _ = self.closing.changed() => {}
                _ = self.frozen.changed() => {}
                _ = tokio::time::sleep(SETTLE_TICK) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = tokio::time::sleep_until(self.next_bookmark), if self.plan.bookmarks => {}
            }
            self.poll();
        }
    }

    /// Take what is new under the lock.
    fn poll(&mut self) {
        let now = Instant::now();
        if *self.closing.borrow() || *self.frozen.borrow() {
            // Shutting down, or a simulated killed process: the stream ends.
            self.plan.finished = true;
            return;
        }
        if self.plan.deadline.is_some_and(|d| d <= now) {
            self.plan.finished = true;
            return;
        }
        let mut st = self.shared.lock();
        crate::controllers::settle(&mut st, now.into_std());
        let from = self.plan.from;
        match st
            .objects
            .since(from, &self.plan.t.group, &self.plan.t.plural)
        {
            Ok(events) => {
                let lines: Vec<Bytes> = events.filter_map(|e| self.plan.event_line(e)).collect();
                self.plan.initial.extend(lines);
            }
            Err(oldest) => {
                let e = expired(format!("too old resource version: {from} ({oldest})"));
                self.plan.initial.push_back(line("ERROR", &e.body()));
                self.plan.finished = true;
                return;
            }
        }
        self.plan.from = from.max(st.objects.rv());
        if self.plan.t.custom
            && catalog::resolve(
                &st,
                &self.plan.t.group,
                &self.plan.t.version,
                &self.plan.t.plural,
            )
            .is_none()
        {
            // The CRD is gone (its objects' deletions were just taken): the API
            // server ends its watches.
            self.plan.finished = true;
            return;
        }
        if self.plan.bookmarks && self.next_bookmark <= now {
            self.plan
                .initial
                .push_back(bookmark(&self.plan.t, self.plan.from, false));
            self.next_bookmark = now + self.plan.bookmark_interval;
        }
    }
}

/// The streamed answer of a watch: newline-delimited JSON watch events, until
/// `timeoutSeconds`, a 410, the type's removal, a freeze or the fake's shutdown.
pub(crate) fn response(shared: Arc<Shared>, plan: Plan) -> Response {
    let (pulse, closing) = {
        let st = shared.lock();
        (st.objects.pulse.subscribe(), st.objects.closing.subscribe())
    };
    let frozen = shared.frozen.subscribe();
    let next_bookmark = Instant::now() + plan.bookmark_interval;
    let state = Streaming {
        shared,
        plan,
        pulse,
        closing,
        frozen,
        next_bookmark,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        s.next()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), s))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A continue token: the list's resourceVersion and the last key returned, in the
/// shape of the API server's (base64 of `{"v","rv","start"}`).
fn continue_token(rv: u64, last: &Key) -> String {
    use base64::Engine as _;
    let start = if last.namespace.is_empty() {
        format!("{}\u{0}", last.name)
    } else {
        format!("{}/{}\u{0}", last.namespace, last.name)
    };
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

/// The (resourceVersion, namespace, name) of a continue token.
fn parse_continue(token: &str) -> ApiResult<(u64, String, String)> {
    use base64::Engine as _;
    let bad = || {
        ApiError::bad_request("continue key is not valid: the continue token could not be decoded")
    };
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = str_at(&v, "/start").trim_end_matches('\u{0}');
    let (ns, name) = start.split_once('/').unwrap_or(("", start));
    Ok((rv, ns.to_string(), name.to_string()))
}

fn too_large(rv: u64, current: u64) -> ApiError {
    ApiError::new(
        504,
        "Timeout",
        format!("Too large resource version: {rv}, current: {current}"),
    )
    .with_details(json!({
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }))
}

/// A list: `resourceVersion` with `resourceVersionMatch` (`NotOlderThan`, the
/// default, answers the current state; `Exact` the state at that version, rebuilt
/// from the history), `limit` and `continue` (the later pages are of the same
/// snapshot), `metadata.resourceVersion` of the collection.
pub(crate) fn list(
    st: &Store,
    t: &ResType,
    ns: Option<&str>,
    sel: &Selector,
    req: &Request<'_>,
) -> ApiResult<Value> {
    let invalid = |field: &str, msg: &str| {
        ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            &[(field.to_string(), msg.to_string())],
        )
    };
    let current = st.objects.rv();
    let rv_param = req.q("resourceVersion").unwrap_or("");
    let rv_match = req.q("resourceVersionMatch").unwrap_or("");
    let limit = match req.q("limit") {
        None | Some("") => 0,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {v:?}")))?,
    };
    let parse_rv = |v: &str| {
        v.parse::<u64>().map_err(|_| {
            invalid(
                "resourceVersion",
                &format!("Invalid value: {v:?}: must be a resourceVersion the server handed out"),
            )
        })
    };
    // (the snapshot's version, None: the current state) and where a page starts.
    let mut after: Option<(String, String)> = None;
    let at = match req.q("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            if !rv_param.is_empty() && rv_param != "0" {
                return Err(invalid(
                    "resourceVersion",
                    "Forbidden: specifying resource version is not allowed when using continue",
                ));
            }
            let (rv, ns, name) = parse_continue(token)?;
            after = Some((ns, name));
            Some(rv)
        }
        None => match (rv_param, rv_match) {
            ("", "") => None,
            ("", _) => {
                return Err(invalid(
                    "resourceVersionMatch",
                    "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                ))
            }
            (v, "Exact") => {
                let rv = parse_rv(v)?;
                if rv == 0 {
                    return Err(invalid(
                        "resourceVersionMatch",
                        "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                    ));
                }
                if rv > current {
                    return Err(too_large(rv, current));
                }
                Some(rv)
            }
            (v, "" | "NotOlderThan") => {
                let rv = parse_rv(v)?;
                if rv > current {
                    return Err(too_large(rv, current));
                }
                None
            }
            (_, other) => {
                return Err(invalid(
                    "resourceVersionMatch",
                    &format!("Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""),
                ))
            }
        },
    };
    let snapshot = match at {
        None => st
            .objects
            .iter()
            .filter(|(k, _)| k.group == t.group && k.plural == t.plural)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(rv) => st
            .objects
            .state_at(rv, &t.group, &t.plural)
            .map_err(|oldest| {
                if after.is_some() {
                    expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".to_string())
                } else {
                    expired(format!("too old resource version: {rv} ({oldest})"))
                }
            })?,
    };
    let matching: Vec<(Key, Value)> = snapshot
        .into_iter()
        .filter(|(k, _)| ns.is_none_or(|n| k.namespace == n))
        .filter(|(k, _)| {
            after
                .as_ref()
                .is_none_or(|(ans, aname)| (&k.namespace, &k.name) > (ans, aname))
        })
        .filter(|(_, v)| sel.matches(v))
        .collect();
    let list_rv = at.unwrap_or(current);
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    let total = matching.len();
    let take = if limit == 0 {
        total
    } else {
        usize::try_from(limit).unwrap_or(usize::MAX).min(total)
    };
    if take < total {
        if let Some((last, _)) = matching.get(take.saturating_sub(1)) {
            meta["continue"] = json!(continue_token(list_rv, last));
        }
        let selected = [req.q("labelSelector"), req.q("fieldSelector")]
            .iter()
            .any(|q| q.is_some_and(|v| !v.is_empty()));
        if !selected {
            meta["remainingItemCount"] = json!(total - take);
        }
    }
    let items: Vec<Value> = matching
        .iter()
        .take(take)
        .map(|(_, v)| api::present(t, v))
        .collect();
    Ok(json!({
        "apiVersion": t.api_version(),
        "kind": t.list_kind,
        "metadata": meta,
        "items": items,
    }))
}

#[cfg(test)]
mod tests {
    use super::{EventType, Objects};
    use crate::store::Store;
    use serde_json::json;

    #[test]
    fn history_is_bounded_and_rebuilds_past_states() {
        let mut objs = Objects::new(3);
        let key = |n: &str| Store::key("", "configmaps", "ns", n);
        let obj = |n: &str, v: u64, data: &str| json!({"metadata": {"name": n, "resourceVersion": v.to_string()}, "data": data});
        let v1 = objs.next_rv();
        objs.insert(key("a"), obj("a", v1, "1"));
        let v2 = objs.next_rv();
        objs.insert(key("a"), obj("a", v2, "2"));
        // No resourceVersion newer than the last event: one is set.
        objs.insert(key("b"), json!({"metadata": {"name": "b"}}));
        assert_eq!(objs.rv(), 3);
        assert_eq!(objs[&key("b")]["metadata"]["resourceVersion"], "3");
        objs.remove(&key("a"));
        assert_eq!(objs.rv(), 4);
        let window = &objs.history[&(String::new(), "configmaps".to_string())];
        let kinds: Vec<EventType> = window.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventType::Modified, EventType::Added, EventType::Deleted]
        );
        assert_eq!(objs.compacted("", "configmaps"), 1);
        // The deletion carries the last state at its own version.
        let last = window
            .events
            .back()
            .map(|e| e.object.clone())
            .unwrap_or_default();
        assert_eq!(last["data"], "2");
        assert_eq!(last["metadata"]["resourceVersion"], "4");

        let at1 = objs.state_at(1, "", "configmaps").unwrap_or_default();
        assert_eq!(at1.len(), 1);
        assert_eq!(at1[&key("a")]["data"], "1");
        let at3 = objs.state_at(3, "", "configmaps").unwrap_or_default();
        assert_eq!(at3.len(), 2);
        assert_eq!(at3[&key("a")]["data"], "2");
        assert_eq!(objs.state_at(0, "", "configmaps").err(), Some(2));
        assert_eq!(objs.since(0, "", "configmaps").err(), Some(2));
        // Another type has its own window.
        objs.insert(
            Store::key("", "secrets", "ns", "s"),
            json!({"metadata": {"name": "s"}}),
        );
        assert_eq!(objs.compacted("", "secrets"), 0);
        assert_eq!(objs.since(0, "", "secrets").map(Iterator::count), Ok(1));
        assert_eq!(objs.since(4, "", "configmaps").map(Iterator::count), Ok(0));
    }
}
