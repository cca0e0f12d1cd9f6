//! A fake of the Entra ID (Azure AD) v2.0 token endpoint, client-credentials grant
//! only, and ARM's bearer-token check.
//!
//! Tokens are JWT-shaped (`base64url(header).base64url(payload).base64url(random)`)
//! but not signed: ARM here accepts exactly the tokens this fake issued.

use base64::Engine as _;
use rand::Rng;
use serde_json::{json, Value};

use crate::error::ArmError;
use crate::state::{client_object_id, now_rfc3339, now_secs, State, TokenInfo};
use crate::Reply;

/// Audiences ARM accepts.
const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
];

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An Entra ID error answer.
fn entra_error(status: u16, error: &str, code: u32, description: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: 00000000-0000-0000-0000-000000000000 Timestamp: {}", now_rfc3339()),
            "error_codes": [code],
            "timestamp": now_rfc3339(),
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// Issue a token for `client_id` with audience `aud` (no secret check).
pub(crate) fn mint(st: &mut State, client_id: &str, aud: &str) -> (String, u64) {
    let now = now_secs();
    let lifetime = st.config.token_lifetime_secs;
    let tid = st.config.tenant_id.clone();
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "fake-azure"});
    let payload = json!({
        "aud": aud,
        "iss": format!("https://sts.windows.net/{tid}/"),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": client_id,
        "appidacr": "1",
        "idtyp": "app",
        "oid": client_object_id(client_id),
        "sub": client_object_id(client_id),
        "tid": tid,
        "ver": "1.0",
    });
    let sig: Vec<u8> = (0..32).map(|_| st.rng.random::<u8>()).collect();
    let token = format!(
        "{}.{}.{}",
        b64url(header.to_string()),
        b64url(payload.to_string()),
        b64url(sig)
    );
    st.tokens.insert(
        token.clone(),
        TokenInfo {
            aud: aud.to_string(),
            exp: now + lifetime,
        },
    );
    (token, lifetime)
}

/// `POST /{tenant}/oauth2/v2.0/token` with a form body.
pub(crate) fn token(st: &mut State, tenant: &str, form: &[(String, String)]) -> Reply {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if !tenant.eq_ignore_ascii_case(&st.config.tenant_id) {
        return entra_error(
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        );
    }
    let Some(grant) = field("grant_type") else {
        return entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    };
    if grant != "client_credentials" {
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type (only client_credentials is served by the fake).",
        );
    }
    let Some(client_id) = field("client_id") else {
        return entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(scope) = field("scope") else {
        return entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let Some(aud) = scope.strip_suffix("/.default").filter(|a| !a.is_empty()) else {
        return entra_error(
            400,
            "invalid_scope",
            1002012,
            &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        );
    };
    let known = st
        .config
        .clients
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(client_id))
        .map(|(_, secret)| secret.clone());
    let Some(secret) = known else {
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
        );
    };
    if field("client_secret") != Some(secret.as_str()) {
        return entra_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
        );
    }
    let (access_token, lifetime) = mint(st, client_id, aud);
    Reply::json(
        200,
        json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }),
    )
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub(crate) fn openid(st: &State, tenant: &str) -> Reply {
    let base = &st.base_url;
    Reply::json(
        200,
        json!({
            "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "issuer": format!("{base}/{tenant}/v2.0"),
            "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
            "tenant_region_scope": "EU",
        }),
    )
}

fn unauthorized(code: &str, message: &str, base: &str, tenant: &str) -> ArmError {
    ArmError::new(401, code, message).with_header(
        "WWW-Authenticate",
        format!("Bearer authorization_uri=\"{base}/{tenant}\", error=\"invalid_token\", error_description=\"{message}\""),
    )
}

/// ARM's check of the `Authorization` header.
pub(crate) fn check_bearer(st: &State, header: Option<&str>) -> Result<(), ArmError> {
    if !st.config.require_auth {
        return Ok(());
    }
    let (base, tenant) = (st.base_url.as_str(), st.config.tenant_id.as_str());
    let Some(h) = header else {
        return Err(unauthorized(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            base,
            tenant,
        ));
    };
    let Some(token) = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
    else {
        return Err(unauthorized(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            base,
            tenant,
        ));
    };
    let Some(info) = st.tokens.get(token.trim()) else {
        return Err(unauthorized(
            "InvalidAuthenticationToken",
            "The access token is invalid.",
            base,
            tenant,
        ));
    };
    if info.exp <= now_secs() {
        return Err(unauthorized(
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
            base,
            tenant,
        ));
    }
    if !ARM_AUDIENCES.contains(&info.aud.as_str()) {
        return Err(unauthorized(
            "InvalidAuthenticationTokenAudience",
            &format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.azure.com/'.",
                info.aud
            ),
            base,
            tenant,
        ));
    }
    Ok(())
}

/// The form as recorded: `client_secret` redacted.
pub(crate) fn recorded_form(form: &[(String, String)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in form {
        let v = if k == "client_secret" || k == "client_assertion" {
            "<redacted>".to_string()
        } else {
            v.clone()
        };
        m.insert(k.clone(), Value::String(v));
    }
    Value::Object(m)
}
