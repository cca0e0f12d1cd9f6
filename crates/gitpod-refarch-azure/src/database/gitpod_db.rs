//! The database `gitpod` on the MySQL flexible server (Microsoft.DBforMySQL
//! `2024-12-30`), charset [`CHARSET`] with the collation of the server's version
//! ([`collation`]), and its output ([`Output::Database`]).
//!
//! Azure has no ARM API for MySQL users, so Gitpod's user is the server's
//! administrator and its password the engine's secret as the server got it
//! ([`azure_password`]). That password cannot be read back: when the engine's state
//! has lost the database's output, the administrator password is set again to the
//! saved secret, once per provider (the provider's [`Context`] remembers it), so what
//! the installer gets is true.

use gitpod_refarch::provider::{Inputs, Observed, Progress, DATABASE_PASSWORD};
use gitpod_refarch::resource::{DatabaseSpec, Output, ResourceId, ResourceKind};
use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{azure_password, expose, get_server, server_path, spec_version};
use crate::context::{absent_if_foreign, Context, MYSQL_API};

/// The database charset.
pub const CHARSET: &str = "utf8mb4";

/// The collation of the `gitpod` database on `mysql_version`.
pub fn collation(mysql_version: &str) -> &'static str {
    if mysql_version.starts_with("5.") {
        "utf8mb4_general_ci"
    } else {
        "utf8mb4_0900_ai_ci"
    }
}

/// A database write.
#[derive(Debug, Serialize)]
struct DatabaseBody {
    properties: DatabaseProperties,
}

#[derive(Debug, Serialize)]
struct DatabaseProperties {
    charset: &'static str,
    collation: &'static str,
}

fn database_body(mysql_version: &str) -> DatabaseBody {
    DatabaseBody {
        properties: DatabaseProperties {
            charset: CHARSET,
            collation: collation(mysql_version),
        },
    }
}

/// The body of a server PATCH that sets the administrator password only.
#[derive(Serialize)]
struct PasswordPatch {
    properties: PasswordPatchProperties,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PasswordPatchProperties {
    #[serde(serialize_with = "expose")]
    administrator_login_password: Secret,
}

fn database_path(c: &Context, d: &DatabaseSpec) -> String {
    format!(
        "{}/databases/{}",
        server_path(c, &d.instance),
        d.database_name
    )
}

/// What the provider remembers of a password it set on a server: the server's id and
/// a SHA-256 of the password (never the password).
fn password_key(c: &Context, installation: &str, password: &Secret) -> String {
    let digest = Sha256::digest(password.expose().as_bytes());
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}#{hash}",
        server_path(c, installation).to_ascii_lowercase()
    )
}

/// Remember that the server of `installation` has `password` (it was created with it,
/// or reset to it).
pub(super) fn remember_password(c: &Context, installation: &str, password: &Secret) {
    c.remember_password_set(password_key(c, installation, password));
}

/// The database as it exists. Its user is the server's administrator; the password
/// cannot be read back: the output comes from the engine's state.
pub async fn observe_database(
    c: &Context,
    d: &DatabaseSpec,
) -> Result<Option<Observed<DatabaseSpec>>> {
    let Some(s) = get_server(c, &d.instance).await? else {
        return Ok(None);
    };
    if !s.state().eq_ignore_ascii_case("ready") {
        return Ok(None);
    }
    let db: Option<Value> = c.arm.get(&database_path(c, d), MYSQL_API).await?;
    if db.is_none() {
        return Ok(None);
    }
    let mut a = d.clone();
    a.username = s.properties.administrator_login.clone().unwrap_or_default();
    Ok(Some(Observed::ready(a, None)))
}

/// Create the database; set the administrator password to the saved secret when the
/// state has lost the output (once per provider).
pub async fn ensure_database(c: &Context, d: &DatabaseSpec, inputs: &Inputs) -> Result<Progress> {
    let rid = ResourceId::new(ResourceKind::Database, d.database_name.clone());
    let spath = server_path(c, &d.instance);
    let s = get_server(c, &d.instance).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "MySQL server {} does not exist yet",
                c.database_server_name(&d.instance)
            ),
        )
        .with_resource(rid.clone())
    })?;
    if s.busy() {
        return Ok(c.watch(&rid, &spath, MYSQL_API));
    }
    let admin = s.properties.administrator_login.clone().unwrap_or_default();
    if !admin.is_empty() && admin != d.username {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "server {}'s administrator is {admin}, not {}; Azure has no API for other \
                 MySQL users, so Gitpod uses the administrator: set database.username to {admin}",
                s.name, d.username
            ),
        )
        .with_resource(rid));
    }
    let path = database_path(c, d);
    let db: Option<Value> = c.arm.get(&path, MYSQL_API).await?;
    if db.is_none() {
        let version = spec_version(s.properties.version.as_deref().unwrap_or("8.0"));
        let lro = c
            .arm
            .put(&path, MYSQL_API, &database_body(&version))
            .await?;
        if let Some(p) = c.pending(&rid, &lro) {
            return Ok(p);
        }
    }
    let password = azure_password(inputs.secret(DATABASE_PASSWORD)?);
    if inputs.get(&rid).is_none() && !c.password_was_set(&password_key(c, &d.instance, &password)) {
        // The state does not know whether the server has this password: set it, once.
        let lro = c
            .arm
            .patch(
                &spath,
                MYSQL_API,
                &PasswordPatch {
                    properties: PasswordPatchProperties {
                        administrator_login_password: password.clone(),
                    },
                },
            )
            .await?;
        remember_password(c, &d.instance, &password);
        if let Some(p) = c.pending(&rid, &lro) {
            return Ok(p);
        }
    }
    Ok(Progress::Done(Some(Output::Database {
        database: d.database_name.clone(),
        username: d.username.clone(),
        password,
        client_credentials: None,
    })))
}

/// Delete the database (it also goes with the server).
pub async fn delete_database(c: &Context, d: &DatabaseSpec) -> Result<Progress> {
    let rid = ResourceId::new(ResourceKind::Database, d.database_name.clone());
    let Some(s) = absent_if_foreign(get_server(c, &d.instance).await)? else {
        return Ok(Progress::Done(None));
    };
    if !s.state().eq_ignore_ascii_case("ready") {
        return Ok(Progress::Done(None));
    }
    // Absent (or just deleted: the engine asks again after the operation): no call.
    let path = database_path(c, d);
    if c.arm.get::<Value>(&path, MYSQL_API).await?.is_none() {
        return Ok(Progress::Done(None));
    }
    let lro = c.arm.delete(&path, MYSQL_API).await?;
    Ok(c.pending(&rid, &lro).unwrap_or(Progress::Done(None)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn the_database_body_has_the_versions_collation() {
        assert_eq!(collation("8.0"), "utf8mb4_0900_ai_ci");
        assert_eq!(collation("5.7"), "utf8mb4_general_ci");
        assert_eq!(
            serde_json::to_value(database_body("8.0")).unwrap(),
            json!({"properties": {"charset": "utf8mb4", "collation": "utf8mb4_0900_ai_ci"}})
        );
        assert_eq!(
            serde_json::to_value(database_body("5.7")).unwrap(),
            json!({"properties": {"charset": "utf8mb4", "collation": "utf8mb4_general_ci"}})
        );
    }

    #[test]
    fn the_password_patch_sends_the_password_only() {
        let p = serde_json::to_value(PasswordPatch {
            properties: PasswordPatchProperties {
                administrator_login_password: Secret::new("new".into()),
            },
        })
        .unwrap();
        assert_eq!(
            p,
            json!({"properties": {"administratorLoginPassword": "new"}})
        );
    }

    #[test]
    fn a_set_password_is_remembered_by_its_provider_only() {
        let a = crate::tests::ctx();
        let b = crate::tests::ctx();
        let pw = Secret::new("Abcdefgh1234".into());
        let key = password_key(&a, "gp", &pw);
        assert!(!key.contains("Abcdefgh1234"), "{key}");
        assert!(!a.password_was_set(&key));
        remember_password(&a, "gp", &pw);
        assert!(a.password_was_set(&key));
        // A clone shares the provider's memory; another provider has its own.
        assert!(a.clone().password_was_set(&key));
        assert!(!b.password_was_set(&key));
        assert!(!a.password_was_set(&password_key(&a, "gp", &Secret::new("other".into()))));
    }
}
