//! One request against the state: authentication, api-version, fault injection,
//! dispatch to the provider modules, and the call record.

use rand::Rng;
use serde_json::Value;

use crate::error::{ArmError, ArmResult};
use crate::routes::{self, Route};
use crate::state::State;
use crate::{acr, aks, authorization, dns, lro, msi, mysql, network, privatedns, resources, token};
use crate::{Call, CallKind, Reply, Req};

/// The raw request.
pub(crate) struct Input {
    pub verb: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub body: Vec<u8>,
}

fn kind_of(verb: &str, route: &Route) -> CallKind {
    match route {
        Route::Token { .. } | Route::OpenId { .. } => return CallKind::Token,
        Route::Poll { .. } => return CallKind::Poll,
        _ => {}
    }
    match verb {
        "GET" | "HEAD" => CallKind::Read,
        "POST" => {
            let action = match route {
                Route::Resource(a) => a.trailing().unwrap_or(""),
                Route::SubAction { rest, .. } => rest.last().map(String::as_str).unwrap_or(""),
                _ => "",
            }
            .to_ascii_lowercase();
            if action.starts_with("list") || action.starts_with("checknameavailability") {
                CallKind::Read
            } else {
                CallKind::Mutate
            }
        }
        _ => CallKind::Mutate,
    }
}

/// Replace secret values in a recorded body.
fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                let secret = matches!(
                    k.as_str(),
                    "administratorLoginPassword" | "client_secret" | "access_token"
                );
                if secret && val.is_string() {
                    *val = Value::String("<redacted>".into());
                } else if k == "passwords" || k == "kubeconfigs" {
                    if let Value::Array(items) = val {
                        for item in items {
                            if let Some(x) = item.get_mut("value") {
                                *x = Value::String("<redacted>".into());
                            }
                        }
                    }
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn injected_fault(st: &mut State) -> Option<ArmError> {
    let rate = st.config.fault_rate;
    if rate <= 0.0 || st.rng.random::<f64>() >= rate {
        return None;
    }
    Some(match st.rng.random_range(0..3u8) {
        0 => ArmError::new(
            429,
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type - Write_ObservationWindow_00:05:00 (injected by the fake).",
        )
        .with_header("Retry-After", st.config.throttle_retry_after_secs.to_string()),
        1 => ArmError::new(
            500,
            "InternalServerError",
            "Encountered internal server error (injected by the fake).",
        ),
        _ => ArmError::new(
            503,
            "ServiceUnavailable",
            "The service is currently unavailable (injected by the fake).",
        ),
    })
}

fn check_api_version(req: &Req) -> Result<(), ArmError> {
    let Some((ns, first)) = req.route.api_key() else {
        return Ok(());
    };
    let Some(pinned) = routes::api_version(&ns, &first) else {
        return Ok(());
    };
    match req.q("api-version") {
        None => Err(ArmError::bad(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
        Some(v) if v == pinned => Ok(()),
        Some(v) => Err(ArmError::bad(
            "InvalidApiVersionParameter",
            format!("The api-version '{v}' is invalid. The supported versions are '{pinned}' (fake-azure serves only the pinned api-version)."),
        )),
    }
}

/// Handle one request; returns the reply and whether the fake freezes now.
pub(crate) fn process(st: &mut State, input: Input) -> (Reply, bool) {
    lro::settle(st);
    let route = routes::parse(&input.path);
    let kind = kind_of(&input.verb, &route);
    let query = routes::parse_query(&input.query);
    let raw = String::from_utf8_lossy(&input.body).to_string();

    let (reply, request_body, fault) = match &route {
        Route::Token { tenant } => {
            let form = routes::parse_query(&raw);
            let reply = if input.verb == "POST" {
                token::token(st, tenant, &form)
            } else {
                Reply::json(
                    405,
                    serde_json::json!({"error": "invalid_request", "error_description": "AADSTS900561: The endpoint only accepts POST requests."}),
                )
            };
            (reply, Some(token::recorded_form(&form)), false)
        }
        Route::OpenId { tenant } => (token::openid(st, tenant), None, false),
        _ => {
            let body = if raw.trim().is_empty() {
                Ok(None)
            } else {
                serde_json::from_str::<Value>(&raw).map(Some)
            };
            let request_body = match &body {
                Ok(b) => b.clone(),
                Err(e) => Some(Value::String(format!("<invalid JSON: {e}>"))),
            };
            let req = Req {
                verb: input.verb.clone(),
                route: route.clone(),
                query: query.clone(),
                body: body.as_ref().ok().cloned().flatten().unwrap_or(Value::Null),
                if_match: input.if_match.clone(),
                if_none_match: input.if_none_match.clone(),
            };
            let mut fault = false;
            let result = token::check_bearer(st, input.authorization.as_deref())
                .and_then(|()| check_api_version(&req))
                .and_then(|()| match injected_fault(st) {
                    Some(e) => {
                        fault = true;
                        Err(e)
                    }
                    None => Ok(()),
                })
                .and_then(|()| match &body {
                    Err(e) => Err(ArmError::bad(
                        "InvalidRequestContent",
                        format!(
                            "The request content was invalid and could not be deserialized: '{e}'."
                        ),
                    )),
                    Ok(_) => dispatch(st, &req),
                });
            let reply = match result {
                Ok(r) => r,
                Err(e) => Reply::json(e.http, e.body()).with_headers(e.headers),
            };
            (reply, request_body, fault)
        }
    };

    // Counters and the call record.
    let type_name = route.type_name();
    match kind {
        CallKind::Read => st.counts.reads += 1,
        CallKind::Mutate => st.counts.mutating += 1,
        CallKind::Poll => st.counts.polls += 1,
        CallKind::Token => st.counts.tokens += 1,
    }
    if fault {
        st.counts.faults += 1;
    } else if reply.status >= 300 {
        st.counts.errors += 1;
    }
    let entry = st.counts.per_type.entry(type_name.clone()).or_default();
    match kind {
        CallKind::Mutate => entry.mutating += 1,
        CallKind::Read => entry.reads += 1,
        _ => {}
    }
    let mut request_body = request_body;
    if let Some(b) = request_body.as_mut() {
        redact(b);
    }
    let mut response_body = reply.body.clone().unwrap_or(Value::Null);
    redact(&mut response_body);
    let api_version = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v.clone());
    st.calls.push(Call {
        kind,
        http_method: input.verb.clone(),
        path: input.path.clone(),
        api_version,
        query,
        resource_type: type_name,
        request_body,
        status: reply.status,
        response_body,
        response_headers: reply
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        fault,
    });

    let mut freeze = false;
    if kind == CallKind::Mutate && reply.status < 300 {
        if let Some(left) = st.freeze_after.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                st.freeze_after = None;
                freeze = true;
            }
        }
    }
    (reply, freeze)
}

fn require_subscription(st: &State, sub: &str) -> Result<(), ArmError> {
    if st
        .config
        .subscriptions
        .iter()
        .any(|s| s.eq_ignore_ascii_case(sub))
    {
        Ok(())
    } else {
        Err(ArmError::new(
            404,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ))
    }
}

fn dispatch(st: &mut State, req: &Req) -> ArmResult {
    match &req.route {
        Route::Poll { sub, id, location } => {
            require_subscription(st, sub)?;
            lro::poll(st, id, *location)
        }
        Route::ResourceGroups { sub }
        | Route::ResourceGroup { sub, .. }
        | Route::RgResources { sub, .. }
        | Route::Providers { sub }
        | Route::Provider { sub, .. } => {
            require_subscription(st, sub)?;
            if let Route::ResourceGroup { rg, .. } = &req.route {
                if matches!(req.verb.as_str(), "GET" | "HEAD") {
                    lro::touch(st, &resources::rg_id(sub, rg));
                }
            }
            resources::handle(st, req)
        }
        Route::SubAction { sub, ns, rest } => {
            require_subscription(st, sub)?;
            if req.verb != "GET" {
                resources::require_registered(st, sub, ns)?;
            }
            match *ns {
                "Microsoft.ContainerRegistry" => acr::sub_action(st, req, rest),
                "Microsoft.DBforMySQL" => mysql::sub_action(st, req, rest),
                _ => Err(not_served(req)),
            }
        }
        Route::Resource(a) => {
            require_subscription(st, &a.sub)?;
            if matches!(req.verb.as_str(), "GET" | "HEAD") && a.segs.len() % 2 == 0 {
                lro::touch(st, &a.id_at(a.segs.len() / 2 - 1));
            }
            let rg = resources::require_rg(st, &a.sub, &a.rg)?;
            let mutating = matches!(req.verb.as_str(), "PUT" | "PATCH")
                || (req.verb == "POST" && kind_of("POST", &req.route) == CallKind::Mutate);
            if matches!(req.verb.as_str(), "PUT" | "PATCH" | "POST") {
                resources::require_registered(st, &a.sub, a.ns)?;
            }
            if mutating && crate::state::ptr(&rg, "/properties/provisioningState") == "Deleting" {
                return Err(ArmError::conflict(
                    "ResourceGroupBeingDeleted",
                    format!("The resource group '{}' is in deprovisioning state and cannot perform this operation.", a.rg),
                ));
            }
            let types = a.types();
            let first = types.first().map(String::as_str).unwrap_or("");
            match (a.ns, first) {
                ("Microsoft.Network", "virtualnetworks") => network::handle(st, req, a),
                ("Microsoft.Network", "dnszones") => dns::handle(st, req, a),
                ("Microsoft.Network", "privatednszones") => privatedns::handle(st, req, a),
                ("Microsoft.ContainerService", "managedclusters") => aks::handle(st, req, a),
                ("Microsoft.ManagedIdentity", "userassignedidentities") => msi::handle(st, req, a),
                ("Microsoft.ContainerRegistry", "registries") => acr::handle(st, req, a),
                ("Microsoft.DBforMySQL", "flexibleservers") => mysql::handle(st, req, a),
                _ => Err(ArmError::bad(
                    "InvalidResourceType",
                    format!(
                        "The resource type '{}' could not be found in the namespace '{}' for api version '{}' (not served by fake-azure).",
                        a.segs.first().map(String::as_str).unwrap_or(""),
                        a.ns,
                        req.q("api-version").unwrap_or("")
                    ),
                )),
            }
        }
        Route::RoleAssignment { scope, .. } => {
            if let Some(sub) = scope.split('/').nth(2) {
                require_subscription(st, sub)?;
            }
            authorization::handle(st, req)
        }
        Route::Token { .. } | Route::OpenId { .. } | Route::Unknown => Err(not_served(req)),
    }
}

/// The answer for a path or verb the fake does not serve.
pub(crate) fn not_served(req: &Req) -> ArmError {
    ArmError::new(
        404,
        "NotFound",
        format!(
            "No HTTP resource was found that matches the request ({} {}); fake-azure does not serve it.",
            req.verb,
            req.route.type_name()
        ),
    )
}
