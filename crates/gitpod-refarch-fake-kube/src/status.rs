//! `kind: Status` answers, as the API server writes them.

use serde_json::{json, Map, Value};

/// An error answered as a `kind: Status` object.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Value>,
    /// Seconds for a `Retry-After` header.
    pub(crate) retry_after: Option<u64>,
}

pub(crate) type ApiResult<T = Value> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub(crate) fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// The `details` of an error about one object.
    fn object_details(group: &str, plural: &str, name: &str) -> Value {
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if !group.is_empty() {
            d.insert("group".into(), json!(group));
        }
        d.insert("kind".into(), json!(plural));
        Value::Object(d)
    }

    /// `plural.group` as the API server names a resource in messages.
    pub(crate) fn qualified(group: &str, plural: &str) -> String {
        if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        }
    }

    /// 404 for an object.
    pub(crate) fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", Self::qualified(group, plural)),
        )
        .with_details(Self::object_details(group, plural, name))
    }

    /// 404 for a path no resource serves.
    pub(crate) fn no_resource() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 409 AlreadyExists.
    pub(crate) fn already_exists(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!(
                "{} \"{name}\" already exists",
                Self::qualified(group, plural)
            ),
        )
        .with_details(Self::object_details(group, plural, name))
    }

    /// 409 Conflict on a stale `resourceVersion` or a failed precondition.
    pub(crate) fn conflict(group: &str, plural: &str, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                Self::qualified(group, plural)
            ),
        )
        .with_details(Self::object_details(group, plural, name))
    }

    /// 422 Invalid, with one cause per `(field, message)`; each cause's reason is
    /// read from its message as the API server writes it (`Forbidden: ...` is
    /// `FieldValueForbidden`, `Required value` `FieldValueRequired`, ...).
    pub(crate) fn invalid(
        kind: &str,
        group: &str,
        name: &str,
        causes: &[(String, String)],
    ) -> ApiError {
        let list: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let message = format!(
            "{}{} \"{name}\" is invalid: {}",
            kind,
            if group.is_empty() {
                String::new()
            } else {
                format!(".{group}")
            },
            if list.len() == 1 {
                list.join("")
            } else {
                format!("[{}]", list.join(", "))
            }
        );
        let causes: Vec<Value> = causes
            .iter()
            .map(|(f, m)| json!({"reason": cause_reason(m), "message": m, "field": f}))
            .collect();
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if !group.is_empty() {
            d.insert("group".into(), json!(group));
        }
        d.insert("kind".into(), json!(kind));
        d.insert("causes".into(), Value::Array(causes));
        ApiError::new(422, "Invalid", message).with_details(Value::Object(d))
    }

    /// 400 BadRequest.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 405 MethodNotAllowed.
    pub(crate) fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message).with_details(json!({}))
    }

    /// 403 Forbidden.
    pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// 415 UnsupportedMediaType for a body sent as `content_type`; `accepted` are the
    /// media types the call decodes.
    pub(crate) fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {} (got {content_type:?})",
                accepted.join(", ")
            ),
        )
    }

    /// 500 InternalError.
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::new(500, "InternalError", message.clone())
            .with_details(json!({"causes": [{"message": message}]}))
    }

    /// The `kind: Status` body.
    pub(crate) fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        m.insert("reason".into(), json!(self.reason));
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}

/// The `kind: Status` of a successful immediate delete.
pub(crate) fn success(group: &str, plural: &str, name: &str, uid: &str) -> Value {
    let mut d = Map::new();
    d.insert("name".into(), json!(name));
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(plural));
    d.insert("uid".into(), json!(uid));
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": Value::Object(d),
    })
}

/// The `StatusCause` reason of a field error, from the start of its message (the
/// API server's `field.Error` puts its type there).
fn cause_reason(message: &str) -> &'static str {
    const REASONS: &[(&str, &str)] = &[
        ("Required value", "FieldValueRequired"),
        ("Forbidden", "FieldValueForbidden"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Too long", "FieldValueTooLong"),
        ("Too many", "FieldValueTooMany"),
        ("Not found", "FieldValueNotFound"),
    ];
    REASONS
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map_or("FieldValueInvalid", |(_, r)| r)
}
