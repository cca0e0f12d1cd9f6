//! Azure Container Registry (Microsoft.ContainerRegistry `2025-11-01`) for workspace
//! images, with a push-only credential.
//!
//! - The registry: [`SKU`] (Standard: Premium, which Gitpod's old Terraform used, adds
//!   nothing Gitpod needs; Basic's limits are low), `adminUserEnabled: false`, and
//!   `roleAssignmentMode` set explicitly to [`ROLE_ASSIGNMENT_MODE`] (repository-scoped
//!   ABAC registries do not take scope-map tokens), tagged for the installation. Its
//!   name is `azure.registryName` or derived (see [`crate::context`]); it is globally
//!   unique, and a name taken elsewhere is a [`ErrorKind::Conflict`] naming
//!   `azure.registryName`.
//! - A scope map [`PUSH`] allowing exactly what Gitpod does: image-builder pushes to
//!   `<url>/base-images` and `<url>/workspace-images` (url = `<loginServer>/<repository>`)
//!   and reads them back ([`push_actions`]).
//! - A token [`PUSH`] bound to that scope map, and its `password1` from
//!   `generateCredentials`. The installer gets `containerRegistry.external` with the
//!   url and a `.dockerconfigjson` secret for the login server, user = the token name.
//!
//! ARM never shows a password again, so [`observe`] reports no output once the token
//! exists: the engine keeps the [`Output::Registry`] in its state. A state that lost it
//! (or a token that no longer has `password1`, or another registry) makes [`ensure`]
//! generate `password1` anew, which replaces the old one.
//!
//! [`RegistryMode::InClusterObjectStorage`] is not offered on Azure: Gitpod's in-cluster
//! registry needs S3-compatible storage, and Azure has none
//! ([`ErrorKind::InvalidInput`] naming `registry.mode`).

use std::collections::{BTreeMap, BTreeSet};

use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{Output, RegistryOutput, RegistrySpec, ResourceId, ResourceKind};
use gitpod_refarch::spec::RegistryMode;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use serde::{Deserialize, Serialize};

use crate::arm::{code_of, is_busy, provisioning_state, Lro};
use crate::context::{absent_if_foreign, tags_of, Context, ACR_API};

/// The registry's SKU.
pub const SKU: &str = "Standard";
/// The registry's role-assignment mode (scope-map tokens need it).
pub const ROLE_ASSIGNMENT_MODE: &str = "LegacyRegistryPermissions";
/// The name of the scope map and of the token.
pub const PUSH: &str = "gitpod-push";
/// The token password this SDK generates.
pub const PASSWORD_NAME: &str = "password1";
/// The repositories (below the installation's repository) Gitpod pushes to.
pub const REPOSITORIES: [&str; 2] = ["base-images", "workspace-images"];

/// How many times [`generate_password`] polls a `generateCredentials` that answered
/// `202`, before giving up (the engine then retries the step).
const CREDENTIAL_POLLS: u32 = 30;

/// The scope map's actions: read and write the content and read the metadata of
/// `<repository>/base-images` and `<repository>/workspace-images`, nothing else.
pub fn push_actions(repository: &str) -> Vec<String> {
    let repository = repository.trim_matches('/');
    REPOSITORIES
        .iter()
        .flat_map(|r| {
            ["content/read", "content/write", "metadata/read"]
                .map(|a| format!("repositories/{repository}/{r}/{a}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Wire types.

/// The body of a registry PUT.
#[derive(Debug, Serialize)]
struct RegistryBody<'a> {
    location: &'a str,
    tags: BTreeMap<String, String>,
    sku: Sku,
    properties: RegistryBodyProperties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Sku {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RegistryBodyProperties {
    admin_user_enabled: bool,
    role_assignment_mode: &'static str,
}

fn registry_body<'a>(region: &'a str, d: &RegistrySpec) -> RegistryBody<'a> {
    RegistryBody {
        location: region,
        tags: tags_of(&d.labels, &d.name),
        sku: Sku { name: SKU.into() },
        properties: RegistryBodyProperties {
            admin_user_enabled: false,
            role_assignment_mode: ROLE_ASSIGNMENT_MODE,
        },
    }
}

/// A registry as ARM returns it.
#[derive(Debug, Clone, Default, Deserialize)]
struct Registry {
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    sku: Sku,
    #[serde(default)]
    properties: RegistryProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistryProperties {
    #[serde(default)]
    login_server: Option<String>,
    #[serde(default)]
    admin_user_enabled: Option<bool>,
    #[serde(default)]
    role_assignment_mode: Option<String>,
}

impl Registry {
    fn tags(&self) -> BTreeMap<String, String> {
        self.tags.clone().unwrap_or_default()
    }
}

/// What differs between a registry and the wanted settings (tags aside).
fn registry_drift(r: &Registry) -> Vec<String> {
    let mut out = Vec::new();
    if !r.sku.name.eq_ignore_ascii_case(SKU) {
        out.push(format!("the registry's SKU is {}, not {SKU}", r.sku.name));
    }
    if r.properties.admin_user_enabled != Some(false) {
        out.push("the registry's admin user is not disabled".to_string());
    }
    if r.properties.role_assignment_mode.as_deref() != Some(ROLE_ASSIGNMENT_MODE) {
        out.push(format!(
            "the registry's role-assignment mode is {}, not {ROLE_ASSIGNMENT_MODE}",
            r.properties
                .role_assignment_mode
                .as_deref()
                .unwrap_or("unset")
        ));
    }
    out
}

/// The body of a scope-map PUT, and a scope map as ARM returns it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ScopeMap {
    #[serde(default)]
    properties: ScopeMapProperties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ScopeMapProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    actions: Vec<String>,
}

fn scope_map_body(d: &RegistrySpec) -> ScopeMap {
    ScopeMap {
        properties: ScopeMapProperties {
            description: Some(format!(
                "Gitpod installation {}: push and pull of its workspace images",
                d.name
            )),
            actions: push_actions(&d.repository),
        },
    }
}

/// Whether a scope map allows exactly the wanted actions (in any order).
fn scope_map_matches(found: &ScopeMap, want: &ScopeMap) -> bool {
    let set = |m: &ScopeMap| -> BTreeSet<String> { m.properties.actions.iter().cloned().collect() };
    set(found) == set(want)
}

/// The body of a token PUT.
#[derive(Debug, Serialize)]
struct TokenBody {
    properties: TokenBodyProperties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenBodyProperties {
    scope_map_id: String,
    status: &'static str,
}

fn token_body(scope_map_id: &str) -> TokenBody {
    TokenBody {
        properties: TokenBodyProperties {
            scope_map_id: scope_map_id.to_string(),
            status: "enabled",
        },
    }
}

/// A token as ARM returns it (its passwords' names and dates only).
#[derive(Debug, Clone, Default, Deserialize)]
struct Token {
    #[serde(default)]
    properties: TokenProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenProperties {
    #[serde(default)]
    scope_map_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    credentials: Option<TokenCredentials>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TokenCredentials {
    #[serde(default)]
    passwords: Option<Vec<TokenPassword>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TokenPassword {
    #[serde(default)]
    name: Option<String>,
}

impl Token {
    /// Whether the token is bound to `scope_map_id` and enabled.
    fn bound_to(&self, scope_map_id: &str) -> bool {
        self.properties
            .scope_map_id
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(scope_map_id))
            && self.properties.status.as_deref() == Some("enabled")
    }

    /// Whether the token has a `password1`.
    fn has_password(&self) -> bool {
        self.properties
            .credentials
            .as_ref()
            .and_then(|c| c.passwords.as_ref())
            .is_some_and(|ps| ps.iter().any(|p| p.name.as_deref() == Some(PASSWORD_NAME)))
    }
}

/// The body of a `generateCredentials` POST.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateCredentialsBody {
    token_id: String,
    name: &'static str,
}

/// The answer of `generateCredentials`.
#[derive(Debug, Default, Deserialize)]
struct GeneratedCredentials {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    passwords: Vec<GeneratedPassword>,
}

#[derive(Debug, Default, Deserialize)]
struct GeneratedPassword {
    #[serde(default)]
    name: Option<String>,
    /// The password: a `Secret` from the moment it is parsed, so no `Debug` shows it.
    #[serde(default)]
    value: Option<Secret>,
}

impl GeneratedCredentials {
    /// The user and `password1`'s value.
    fn password1(self) -> Option<(Option<String>, Secret)> {
        let username = self.username;
        self.passwords
            .into_iter()
            .find(|p| p.name.as_deref() == Some(PASSWORD_NAME))
            .and_then(|p| p.value)
            .filter(|v| !v.expose().is_empty())
            .map(|v| (username, v))
    }
}

// ---------------------------------------------------------------------------------
// Paths.

fn registry_path(c: &Context, d: &RegistrySpec) -> String {
    c.resource_path(
        &d.name,
        "Microsoft.ContainerRegistry/registries",
        &c.registry_name(&d.name),
    )
}

fn scope_map_path(c: &Context, d: &RegistrySpec) -> String {
    format!("{}/scopeMaps/{PUSH}", registry_path(c, d))
}

fn token_path(c: &Context, d: &RegistrySpec) -> String {
    format!("{}/tokens/{PUSH}", registry_path(c, d))
}

fn check_mode(d: &RegistrySpec) -> Result<()> {
    if d.mode != RegistryMode::Managed {
        return Err(Error::invalid_input(
            "registry.mode: inClusterObjectStorage is not supported on Azure (Gitpod's \
             in-cluster registry needs S3-compatible storage, which Azure does not offer): \
             use the managed registry (Azure Container Registry)",
        ));
    }
    Ok(())
}

/// The registry, if it exists; a same-named one not tagged for the installation is a
/// conflict naming `azure.registryName`.
async fn get_registry(
    c: &Context,
    d: &RegistrySpec,
) -> Result<Option<(Registry, serde_json::Value)>> {
    let what = format!("container registry {}", c.registry_name(&d.name));
    c.get_ours(
        &registry_path(c, d),
        ACR_API,
        &d.name,
        &what,
        Some("azure.registryName"),
    )
    .await
}

/// Whether ARM refused a registry create because the name is in use.
fn is_name_conflict(e: &Error) -> bool {
    let code = code_of(e).unwrap_or_default();
    code.contains("AlreadyInUse")
        || code.contains("NotAvailable")
        || code.contains("AlreadyExists")
        || e.kind() == ErrorKind::Conflict
}

/// A conflict from ARM when creating the registry (its name is global), said in the
/// spec's words.
fn name_taken(c: &Context, d: &RegistrySpec, e: Error) -> Error {
    if !is_name_conflict(&e) {
        return e;
    }
    Error::new(
        ErrorKind::Conflict,
        format!(
            "the container registry name {} is taken (registry names are global across \
             Azure): set azure.registryName to another name",
            c.registry_name(&d.name)
        ),
    )
    .with_resource(ResourceId::new(ResourceKind::Registry, d.name.clone()))
    .with_source(e)
}

/// The registry, scope map and token as they exist. The password cannot be read back:
/// the output comes from the engine's state.
pub async fn observe(c: &Context, d: &RegistrySpec) -> Result<Option<Observed<RegistrySpec>>> {
    let rid = ResourceId::new(ResourceKind::Registry, d.name.clone());
    let Some((r, body)) = get_registry(c, d).await? else {
        return Ok(None);
    };
    let mut a = d.clone();
    a.labels = r.tags();
    if is_busy(&body) {
        let watch = crate::arm::watch_id(&registry_path(c, d), ACR_API);
        return Ok(Some(Observed::pending(a, c.op(watch, &rid, None))));
    }
    let mut o = Observed::ready(a, None);
    o.drift = registry_drift(&r);
    let scope_map: Option<ScopeMap> = c.arm.get(&scope_map_path(c, d), ACR_API).await?;
    match scope_map {
        None => o.drift.push(format!("the scope map {PUSH} is missing")),
        Some(m) if !scope_map_matches(&m, &scope_map_body(d)) => o.drift.push(format!(
            "the scope map {PUSH} allows {:?}, not {:?}",
            m.properties.actions,
            push_actions(&d.repository)
        )),
        Some(_) => {}
    }
    let token: Option<Token> = c.arm.get(&token_path(c, d), ACR_API).await?;
    match token {
        None => o.drift.push(format!("the token {PUSH} is missing")),
        Some(t) if !t.bound_to(&scope_map_path(c, d)) => o.drift.push(format!(
            "the token {PUSH} is disabled or bound to another scope map"
        )),
        Some(t) if !t.has_password() => o
            .drift
            .push(format!("the token {PUSH} has no {PASSWORD_NAME}")),
        Some(_) => {}
    }
    Ok(Some(o))
}

/// Generate `password1` of the token, waiting for a `202` answer's result (it holds the
/// password, which nothing can read later).
async fn generate_password(c: &Context, d: &RegistrySpec) -> Result<(Option<String>, Secret)> {
    let path = format!("{}/generateCredentials", registry_path(c, d));
    let body = GenerateCredentialsBody {
        token_id: token_path(c, d),
        name: PASSWORD_NAME,
    };
    let mut lro = c.arm.post(&path, ACR_API, Some(&body)).await?;
    for _ in 0..CREDENTIAL_POLLS {
        match lro {
            Lro::Done(_) => break,
            Lro::Pending(id, hint) => {
                c.config
                    .clock
                    .sleep(hint.unwrap_or(c.config.poll_interval))
                    .await;
                lro = c.arm.poll(&id).await?;
            }
        }
    }
    let missing = || {
        Error::new(
            ErrorKind::Transient,
            format!(
                "generateCredentials for token {PUSH} gave no {PASSWORD_NAME} (not finished, or \
                 finished without a result); it is generated again"
            ),
        )
        .with_resource(ResourceId::new(ResourceKind::Registry, d.name.clone()))
    };
    lro.body::<GeneratedCredentials>()?
        .and_then(GeneratedCredentials::password1)
        .ok_or_else(missing)
}

/// The output for `login_server`.
fn output(d: &RegistrySpec, login_server: &str, username: String, password: Secret) -> Output {
    Output::Registry(RegistryOutput::External {
        url: format!("{login_server}/{}", d.repository.trim_matches('/')),
        server: login_server.to_string(),
        username,
        password,
    })
}

/// Create or correct the registry, the scope map and the token (one long-running
/// operation per call), then generate the token's password unless the state has it.
pub async fn ensure(c: &Context, d: &RegistrySpec, inputs: &Inputs) -> Result<Progress> {
    check_mode(d)?;
    let rid = ResourceId::new(ResourceKind::Registry, d.name.clone());
    let path = registry_path(c, d);
    let want = registry_body(&c.region, d);
    let registry = match get_registry(c, d).await? {
        Some((_, body)) if is_busy(&body) => return Ok(c.watch(&rid, &path, ACR_API)),
        Some((r, _)) if registry_drift(&r).is_empty() && r.tags() == want.tags => r,
        found => {
            let creating = found.is_none();
            let lro = c.arm.put(&path, ACR_API, &want).await.map_err(|e| {
                if creating {
                    name_taken(c, d, e)
                } else {
                    e
                }
            })?;
            if let Some(p) = c.pending(&rid, &lro) {
                return Ok(p);
            }
            match get_registry(c, d).await? {
                Some((_, body)) if is_busy(&body) => return Ok(c.watch(&rid, &path, ACR_API)),
                Some((r, _)) => r,
                None => {
                    return Err(Error::new(
                        ErrorKind::Transient,
                        "the registry was written but cannot be read yet",
                    )
                    .with_resource(rid))
                }
            }
        }
    };
    let login_server = registry
        .properties
        .login_server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Error::new(ErrorKind::Transient, "the registry has no login server yet")
                .with_resource(rid.clone())
        })?;

    let want_map = scope_map_body(d);
    let map: Option<ScopeMap> = c.arm.get(&scope_map_path(c, d), ACR_API).await?;
    if !map.is_some_and(|m| scope_map_matches(&m, &want_map)) {
        let lro = c.arm.put(&scope_map_path(c, d), ACR_API, &want_map).await?;
        if let Some(p) = c.pending(&rid, &lro) {
            return Ok(p);
        }
    }

    let scope_map_id = scope_map_path(c, d);
    let token: Option<Token> = c.arm.get(&token_path(c, d), ACR_API).await?;
    let token = match token {
        Some(t) if t.bound_to(&scope_map_id) => t,
        _ => {
            let lro = c
                .arm
                .put(&token_path(c, d), ACR_API, &token_body(&scope_map_id))
                .await?;
            if let Some(p) = c.pending(&rid, &lro) {
                return Ok(p);
            }
            c.arm
                .get::<Token>(&token_path(c, d), ACR_API)
                .await?
                .unwrap_or_default()
        }
    };

    // The password in the state is still good when the token still has password1 and
    // the output is for this registry.
    let url = format!("{login_server}/{}", d.repository.trim_matches('/'));
    if token.has_password() {
        if let Some(known @ Output::Registry(RegistryOutput::External { url: u, .. })) =
            inputs.get(&rid)
        {
            if *u == url {
                return Ok(Progress::Done(Some(known.clone())));
            }
        }
    }
    let (username, password) = generate_password(c, d).await?;
    Ok(Progress::Done(Some(output(
        d,
        &login_server,
        username
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| PUSH.to_string()),
        password,
    ))))
}

/// Delete the registry with its images, scope map and token (a long-running delete).
/// A registry not tagged for the installation is left alone.
pub async fn delete(c: &Context, d: &RegistrySpec) -> Result<Progress> {
    let rid = ResourceId::new(ResourceKind::Registry, d.name.clone());
    let path = registry_path(c, d);
    let Some((_, body)) = absent_if_foreign(get_registry(c, d).await)? else {
        return Ok(Progress::Done(None));
    };
    if provisioning_state(&body).is_some_and(|s| s.eq_ignore_ascii_case("deleting")) {
        return Ok(c.watch(&rid, &path, ACR_API));
    }
    let lro = c.arm.delete(&path, ACR_API).await?;
    Ok(c.pending(&rid, &lro).unwrap_or(Progress::Done(None)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn spec(mode: &str) -> RegistrySpec {
        serde_json::from_value(json!({
            "name": "gp", "region": "northeurope", "repository": "gitpod",
            "mode": mode, "labels": {"gitpod-installation": "gp"}
        }))
        .unwrap()
    }

    #[test]
    fn the_scope_map_allows_push_and_pull_of_gitpods_two_repositories_only() {
        assert_eq!(
            push_actions("gitpod"),
            vec![
                "repositories/gitpod/base-images/content/read",
                "repositories/gitpod/base-images/content/write",
                "repositories/gitpod/base-images/metadata/read",
                "repositories/gitpod/workspace-images/content/read",
                "repositories/gitpod/workspace-images/content/write",
                "repositories/gitpod/workspace-images/metadata/read",
            ]
        );
        assert_eq!(
            push_actions("/team/gitpod/")[0],
            "repositories/team/gitpod/base-images/content/read"
        );
        let body = serde_json::to_value(scope_map_body(&spec("managed"))).unwrap();
        assert_eq!(body["properties"]["actions"], json!(push_actions("gitpod")));
        assert!(body["properties"]["description"]
            .as_str()
            .unwrap()
            .contains("gp"));
        // Order does not matter; a missing or extra action does.
        let mut shuffled = scope_map_body(&spec("managed"));
        shuffled.properties.actions.reverse();
        assert!(scope_map_matches(
            &shuffled,
            &scope_map_body(&spec("managed"))
        ));
        shuffled.properties.actions.pop();
        assert!(!scope_map_matches(
            &shuffled,
            &scope_map_body(&spec("managed"))
        ));
    }

    #[test]
    fn the_registry_is_standard_without_admin_user_in_legacy_mode() {
        assert_eq!(
            serde_json::to_value(registry_body("northeurope", &spec("managed"))).unwrap(),
            json!({
                "location": "northeurope",
                "tags": {"gitpod-installation": "gp"},
                "sku": {"name": "Standard"},
                "properties": {"adminUserEnabled": false, "roleAssignmentMode": "LegacyRegistryPermissions"}
            })
        );
    }

    #[test]
    fn token_and_credential_bodies() {
        let sm = "/subscriptions/s/resourceGroups/gp/providers/Microsoft.ContainerRegistry/registries/r/scopeMaps/gitpod-push";
        assert_eq!(
            serde_json::to_value(token_body(sm)).unwrap(),
            json!({"properties": {"scopeMapId": sm, "status": "enabled"}})
        );
        assert_eq!(
            serde_json::to_value(GenerateCredentialsBody {
                token_id: "/t".into(),
                name: PASSWORD_NAME
            })
            .unwrap(),
            json!({"tokenId": "/t", "name": "password1"})
        );
        let t: Token = serde_json::from_value(json!({"properties": {
            "scopeMapId": sm.to_uppercase(), "status": "enabled",
            "credentials": {"certificates": [], "passwords": [{"name": "password1", "creationTime": "2026-01-01T00:00:00Z"}]}
        }}))
        .unwrap();
        assert!(t.bound_to(sm));
        assert!(t.has_password());
        let bare: Token =
            serde_json::from_value(json!({"properties": {"scopeMapId": sm, "status": "disabled"}}))
                .unwrap();
        assert!(!bare.bound_to(sm));
        assert!(!bare.has_password());
        let only2: Token = serde_json::from_value(json!({"properties": {
            "credentials": {"passwords": [{"name": "password2"}]}}}))
        .unwrap();
        assert!(!only2.has_password());
    }

    #[test]
    fn generated_credentials_give_password1() {
        let g: GeneratedCredentials = serde_json::from_value(json!({
            "username": "gitpod-push",
            "passwords": [{"name": "password2", "value": "two"}, {"name": "password1", "value": "one"}]
        }))
        .unwrap();
        assert!(!format!("{g:?}").contains("\"two\""), "{g:?}");
        let (user, pw) = g.password1().unwrap();
        assert_eq!(user.as_deref(), Some("gitpod-push"));
        assert_eq!(pw.expose(), "one");
        let none: GeneratedCredentials =
            serde_json::from_value(json!({"passwords": [{"name": "password1"}]})).unwrap();
        assert!(none.password1().is_none());
    }

    #[test]
    fn registry_drift_names_sku_admin_user_and_mode() {
        let ok: Registry = serde_json::from_value(json!({
            "sku": {"name": "Standard", "tier": "Standard"},
            "properties": {"loginServer": "r.azurecr.io", "adminUserEnabled": false,
                           "roleAssignmentMode": "LegacyRegistryPermissions"}
        }))
        .unwrap();
        assert!(registry_drift(&ok).is_empty());
        let bad: Registry = serde_json::from_value(json!({
            "sku": {"name": "Premium"},
            "properties": {"adminUserEnabled": true, "roleAssignmentMode": "AbacRepositoryPermissions"}
        }))
        .unwrap();
        let d = registry_drift(&bad);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("Premium"));
        assert!(d[1].contains("admin user"));
        assert!(d[2].contains("AbacRepositoryPermissions"));
    }

    #[test]
    fn a_taken_name_is_recognised() {
        use crate::arm::ArmError;
        let err = |status: u16, code: &str| {
            ArmError::parse(
                status,
                json!({"error": {"code": code, "message": "m"}})
                    .to_string()
                    .as_bytes(),
            )
            .into_error("PUT /r")
        };
        assert!(is_name_conflict(&err(409, "AlreadyInUse")));
        assert!(is_name_conflict(&err(400, "RegistryNameNotAvailable")));
        assert!(!is_name_conflict(&err(400, "InvalidParameter")));
        assert!(!is_name_conflict(&err(503, "ServiceUnavailable")));
    }

    #[test]
    fn in_cluster_registries_are_refused_naming_the_field() {
        assert!(check_mode(&spec("managed")).is_ok());
        let e = check_mode(&spec("inClusterObjectStorage")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().starts_with("registry.mode"), "{e}");
    }

    #[test]
    fn the_output_is_an_external_registry_under_the_login_server() {
        let out = output(
            &spec("managed"),
            "gpab12cd34.azurecr.io",
            PUSH.into(),
            Secret::new("pw".into()),
        );
        let Output::Registry(RegistryOutput::External {
            url,
            server,
            username,
            password,
        }) = out
        else {
            unreachable!("an external registry")
        };
        assert_eq!(url, "gpab12cd34.azurecr.io/gitpod");
        assert_eq!(server, "gpab12cd34.azurecr.io");
        assert_eq!(username, "gitpod-push");
        assert_eq!(password.expose(), "pw");
    }
}
