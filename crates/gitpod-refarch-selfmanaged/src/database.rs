//! An existing MySQL or MariaDB server as the `Database` provider.
//!
//! # What it does on the server
//!
//! - **The instance** (`DatabaseResource::Instance`) is never created or deleted: the
//!   server is the platform team's. `observe` connects as the administrator and reads
//!   the version and `@@GLOBAL.explicit_defaults_for_timestamp`; Gitpod's schema needs
//!   it OFF, so `ensure` refuses a server where it is ON ([`ErrorKind::Precondition`],
//!   the message says what to set) unless [`DatabaseConfig::allow_server_changes`]
//!   lets it run `SET GLOBAL explicit_defaults_for_timestamp = OFF`. Its output is the
//!   server's `host:port` and the private CA, if any. The engine journals a generated
//!   password for the instance too; it is not used here.
//! - **The database** (`DatabaseResource::Database`): the database (`gitpod`,
//!   `utf8mb4`), the two companion databases Gitpod's init Job and later releases
//!   create as its user (`gitpod-sessions`, `authorization`; created here so they are
//!   recorded, Gitpod's `CREATE DATABASE IF NOT EXISTS` then finds them), the user
//!   `'gitpod'@'%'` with the engine's generated password, and `ALL PRIVILEGES` on
//!   those three databases and nothing else.
//!
//! # Ownership marker
//!
//! Destroy must drop only what this SDK created. The record of that is a table
//! `gitpod_refarch_owner` inside the created database, one row per object
//! (`kind` = `database` | `user`, `name`, `installation`, and for the user a
//! fingerprint of its password hash). It is written in this order, so an interrupted
//! apply can always be resumed:
//!
//! 1. `CREATE DATABASE`, then the marker table and the database's own row;
//! 2. for a companion database or the user: the row first, then the object (a row
//!    whose object does not exist yet is completed by the next apply; destroy drops
//!    `IF EXISTS`).
//!
//! A database or user of those names that exists without this installation's row was
//! not created here: `ensure` fails with [`ErrorKind::Conflict`] and says how to
//! resolve it, and nothing is adopted. (If an apply stops between step 1's two
//! statements the database exists without a marker; the message says to drop it if it
//! is empty.) `observe` reports such a resource as absent and `delete` leaves it.
//!
//! The marker lives in a database the Gitpod user may write, so it is trusted only
//! for the names this installation would create anyway: destroy drops the spec's
//! user and database and the two companions, each only if its row is there, never a
//! name read from the table. Tampering can at most keep something (a removed row) or
//! drop a database the Gitpod user could drop itself.
//!
//! # Re-apply and password drift
//!
//! `observe` reads the databases, the marker, the user's grants (`SHOW GRANTS`) and
//! the fingerprint of the user's password hash (`SHA2(authentication_string)` from
//! `mysql.user`, when the administrator may read it). All present, all grants there,
//! the fingerprint as recorded: no drift, so re-apply makes no call that writes. A
//! changed fingerprint (someone ran `ALTER USER`) is drift: `ensure` then logs in as
//! the user with the journaled password and runs `ALTER USER` only if that fails.
//! Every `ensure` converges the same way, so a lost state (a new generated password)
//! also ends with a user that can log in with the password in the output.
//!
//! # Secrets
//!
//! Statement logging is off on every connection. The generated password is
//! alphanumeric and is the only value inlined into SQL (`CREATE USER`/`ALTER USER`
//! cannot take placeholders); names from the spec are validated identifiers, and every
//! other value is a bound parameter. Errors of statements carrying the password are
//! scrubbed of it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gitpod_refarch::provider::{
    Inputs, Observed, Operation, Progress, ProviderInfo, DATABASE_PASSWORD,
};
use gitpod_refarch::resource::{
    DatabaseEndpoint, DatabaseInstanceSpec, DatabaseResource, DatabaseSpec, Output,
};
use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};

mod checks;
mod sql;

pub(crate) use checks::checks;
use sql::Target;

/// TLS to the server, as MySQL clients name the modes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatabaseTlsMode {
    /// Plain TCP (a server on a private network without TLS).
    Disabled,
    /// TLS if the server offers it.
    #[default]
    Preferred,
    /// TLS, any certificate.
    Required,
    /// TLS, the certificate signed by the CA.
    VerifyCa,
    /// TLS, the certificate signed by the CA and naming the host.
    VerifyIdentity,
}

/// How to reach the server as its administrator, and what the SDK may do there.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Host name or address.
    pub host: String,
    /// Port (3306).
    pub port: u16,
    /// An administrator allowed to create databases and users and to grant.
    pub admin_username: String,
    /// Its password.
    pub admin_password: Secret,
    /// TLS mode.
    pub tls: DatabaseTlsMode,
    /// The CA (PEM) for `VerifyCa`/`VerifyIdentity` when it is a private one; also
    /// given to Gitpod (`database.ssl.caCert`).
    pub ca_pem: Option<String>,
    /// The SDK may `SET GLOBAL explicit_defaults_for_timestamp = OFF` on the server.
    pub allow_server_changes: bool,
    /// Destroy keeps the database and the user.
    pub deletion_protection: bool,
    /// The budget of each connection attempt (10 s).
    pub connect_timeout: Duration,
}

impl DatabaseConfig {
    /// A config for `host:port` with the admin user; TLS preferred, no server changes,
    /// no deletion protection.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        admin_username: impl Into<String>,
        admin_password: Secret,
    ) -> Self {
        DatabaseConfig {
            host: host.into(),
            port,
            admin_username: admin_username.into(),
            admin_password,
            tls: DatabaseTlsMode::default(),
            ca_pem: None,
            allow_server_changes: false,
            deletion_protection: false,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The `Database` provider on an existing server.
#[derive(Debug)]
pub struct SelfManagedDatabase {
    config: DatabaseConfig,
}

/// The marker table, inside the created database.
pub const OWNER_TABLE: &str = "gitpod_refarch_owner";

/// The databases Gitpod creates as its own user besides the main one (the init Job's
/// `gitpod-sessions`, later releases' `authorization`).
pub const COMPANION_DATABASES: [&str; 2] = ["gitpod-sessions", "authorization"];

const USER_HOST: &str = "%";

impl SelfManagedDatabase {
    /// A provider for the server in `config`.
    pub fn new(config: DatabaseConfig) -> Self {
        SelfManagedDatabase { config }
    }

    /// Its config.
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    fn target(&self) -> Target<'_> {
        Target {
            host: &self.config.host,
            port: self.config.port,
            tls: self.config.tls,
            ca_pem: self.config.ca_pem.as_deref(),
            timeout: self.config.connect_timeout,
        }
    }

    fn server(&self) -> String {
        self.target().server()
    }

    async fn admin(&self) -> Result<MySqlConnection> {
        self.target()
            .connect(
                &self.config.admin_username,
                self.config.admin_password.expose(),
                None,
            )
            .await
    }

    fn instance_output(&self) -> Output {
        Output::DatabaseInstance {
            instance: self.server(),
            endpoint: DatabaseEndpoint::Host {
                host: self.config.host.clone(),
                port: self.config.port,
                ca_certificate_pem: self.config.ca_pem.clone(),
            },
        }
    }

    fn check_server(&self, s: &DatabaseInstanceSpec) -> Result<()> {
        if self.config.host.is_empty() || self.config.port == 0 {
            return Err(Error::invalid_input(
                "database.host and database.port must name the server",
            ));
        }
        match &s.server {
            Some(server) if *server != self.server() => Err(Error::invalid_input(format!(
                "database instance {} is planned for server {server}, but this provider is configured for {}",
                s.name,
                self.server()
            ))),
            _ => Ok(()),
        }
    }

    /// The fix text for `explicit_defaults_for_timestamp = ON`.
    pub fn timestamp_fix() -> &'static str {
        "set `explicit_defaults_for_timestamp = OFF` under [mysqld] in the server's config and restart it (on a managed service: its parameter group / flag); for now `SET GLOBAL explicit_defaults_for_timestamp = OFF` (MySQL 8: `SET PERSIST explicit_defaults_for_timestamp = OFF`), or let gitpod-refarch do it with database.allowServerChanges: true"
    }

    async fn timestamp_flag(&self, c: &mut MySqlConnection) -> Result<(String, bool)> {
        let row = sqlx::query(
            "SELECT VERSION(), CAST(@@GLOBAL.explicit_defaults_for_timestamp AS SIGNED)",
        )
        .fetch_one(&mut *c)
        .await
        .map_err(|e| {
            sql::map(
                &format!("reading the settings of {}", self.server()),
                &e,
                None,
            )
        })?;
        let version: String = row.try_get(0).unwrap_or_default();
        let on: i64 = row.try_get(1).unwrap_or(0);
        Ok((version, on != 0))
    }

    async fn observe_instance(
        &self,
        s: &DatabaseInstanceSpec,
    ) -> Result<Option<Observed<DatabaseInstanceSpec>>> {
        self.check_server(s)?;
        let mut c = self.admin().await?;
        let flag = self.timestamp_flag(&mut c).await;
        sql::close(c).await;
        let (version, on) = flag?;
        tracing::debug!(server = %self.server(), %version, "existing database server");
        let drift = on.then(|| {
            format!(
                "explicit_defaults_for_timestamp is ON on {} ({version}); Gitpod needs OFF",
                self.server()
            )
        });
        Ok(Some(
            Observed::ready(s.clone(), Some(self.instance_output())).with_drift_if(drift),
        ))
    }

    async fn ensure_instance(&self, s: &DatabaseInstanceSpec) -> Result<Progress> {
        self.check_server(s)?;
        let mut c = self.admin().await?;
        let r = self.ensure_instance_on(&mut c).await;
        sql::close(c).await;
        r?;
        Ok(Progress::Done(Some(self.instance_output())))
    }

    async fn ensure_instance_on(&self, c: &mut MySqlConnection) -> Result<()> {
        let (version, on) = self.timestamp_flag(c).await?;
        if !on {
            return Ok(());
        }
        if !self.config.allow_server_changes {
            return Err(Error::new(
                ErrorKind::Precondition,
                format!(
                    "explicit_defaults_for_timestamp is ON on {} ({version}); Gitpod's schema needs it OFF: {}",
                    self.server(),
                    Self::timestamp_fix()
                ),
            ));
        }
        sqlx::raw_sql("SET GLOBAL explicit_defaults_for_timestamp = OFF")
            .execute(&mut *c)
            .await
            .map_err(|e| {
                sql::map(
                    &format!(
                        "setting explicit_defaults_for_timestamp = OFF on {} (allowServerChanges)",
                        self.server()
                    ),
                    &e,
                    None,
                )
            })?;
        tracing::warn!(server = %self.server(), "SET GLOBAL explicit_defaults_for_timestamp = OFF (lost on restart: set it in the server's config)");
        let (_, still) = self.timestamp_flag(c).await?;
        if still {
            return Err(Error::new(
                ErrorKind::Precondition,
                format!(
                    "explicit_defaults_for_timestamp is still ON on {} after SET GLOBAL: {}",
                    self.server(),
                    Self::timestamp_fix()
                ),
            ));
        }
        Ok(())
    }
}

/// `[A-Za-z0-9_]`, plus `-` where `dash` (database names are backquoted).
fn check_identifier(field: &str, value: &str, max: usize, dash: bool) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dash && b == b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "{field} must be 1 to {max} characters of A-Z, a-z, 0-9, _{}",
            if dash { " or -" } else { "" }
        )))
    }
}

fn check_spec(d: &DatabaseSpec) -> Result<()> {
    check_identifier("database.databaseName", &d.database_name, 64, true)?;
    check_identifier("database.username", &d.username, 32, false)?;
    if COMPANION_DATABASES.contains(&d.database_name.as_str()) {
        return Err(Error::invalid_input(format!(
            "database.databaseName must not be {:?}: Gitpod creates that database itself",
            d.database_name
        )));
    }
    Ok(())
}

/// A database name in a GRANT: `_` is a wildcard there.
fn grant_name(db: &str) -> String {
    db.replace('_', "\\_")
}

fn user_name(d: &DatabaseSpec) -> String {
    format!("'{}'@'{USER_HOST}'", d.username)
}

/// The databases the user gets ALL on: the main one and the companions.
fn databases(d: &DatabaseSpec) -> Vec<String> {
    std::iter::once(d.database_name.clone())
        .chain(COMPANION_DATABASES.iter().map(|s| s.to_string()))
        .collect()
}

const KIND_DATABASE: &str = "database";
const KIND_USER: &str = "user";

/// One marker row.
#[derive(Debug, Clone)]
struct Mark {
    installation: String,
    detail: String,
}

/// What exists on the server for one `DatabaseSpec`.
#[derive(Debug, Default)]
struct Survey {
    /// Which of [`databases`] exist.
    existing: BTreeSet<String>,
    /// The marker rows, `(kind, name)` -> row; `None`: no marker table.
    marks: Option<BTreeMap<(String, String), Mark>>,
    /// The user exists.
    user: bool,
    /// Databases of [`databases`] the user lacks ALL on.
    missing_grants: Vec<String>,
    /// SHA2 of the user's authentication string, when readable.
    fingerprint: Option<String>,
}

impl Survey {
    fn mark(&self, kind: &str, name: &str) -> Option<&Mark> {
        self.marks
            .as_ref()
            .and_then(|m| m.get(&(kind.to_string(), name.to_string())))
    }

    /// Whether the main database is this installation's.
    fn owns_main(&self, d: &DatabaseSpec) -> bool {
        self.existing.contains(&d.database_name)
            && self
                .mark(KIND_DATABASE, &d.database_name)
                .is_some_and(|m| m.installation == d.instance)
    }

    fn owns(&self, d: &DatabaseSpec, kind: &str, name: &str) -> bool {
        self.mark(kind, name)
            .is_some_and(|m| m.installation == d.instance)
    }
}

fn q(d: &DatabaseSpec) -> String {
    format!("`{}`.`{OWNER_TABLE}`", d.database_name)
}

async fn survey(c: &mut MySqlConnection, server: &str, d: &DatabaseSpec) -> Result<Survey> {
    let dbs = databases(d);
    let mut s = Survey::default();
    let rows = sqlx::query(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN (?, ?, ?)",
    )
    .bind(&dbs[0])
    .bind(&dbs[1])
    .bind(&dbs[2])
    .fetch_all(&mut *c)
    .await
    .map_err(|e| sql::map(&format!("listing the databases on {server}"), &e, None))?;
    for r in rows {
        let name: String = r
            .try_get(0)
            .map_err(|e| sql::map("reading a database name", &e, None))?;
        s.existing.insert(name);
    }
    if s.existing.contains(&d.database_name) {
        let read = sqlx::query(AssertSqlSafe(format!(
            "SELECT kind, name, installation, detail FROM {}",
            q(d)
        )))
        .fetch_all(&mut *c)
        .await;
        match read {
            Ok(rows) => {
                let mut marks = BTreeMap::new();
                for r in rows {
                    let get =
                        |i: usize| -> String { r.try_get::<String, _>(i).unwrap_or_default() };
                    marks.insert(
                        (get(0), get(1)),
                        Mark {
                            installation: get(2),
                            detail: get(3),
                        },
                    );
                }
                s.marks = Some(marks);
            }
            Err(e) if sql::number(&e) == Some(sql::ER_NO_SUCH_TABLE) => {}
            Err(e) => {
                return Err(sql::map(
                    &format!("reading the ownership marker in {}", d.database_name),
                    &e,
                    None,
                ))
            }
        }
    }
    // SHOW GRANTS prints the password hash on MariaDB: only matched, never kept.
    let grants = sqlx::raw_sql(AssertSqlSafe(format!("SHOW GRANTS FOR {}", user_name(d))))
        .fetch_all(&mut *c)
        .await;
    match grants {
        Ok(rows) => {
            s.user = true;
            let lines: Vec<String> = rows
                .iter()
                .filter_map(|r| {
                    r.try_get::<String, _>(0).ok().or_else(|| {
                        r.try_get::<Vec<u8>, _>(0)
                            .ok()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                    })
                })
                .collect();
            for db in &dbs {
                let want = format!("GRANT ALL PRIVILEGES ON `{}`.* TO ", grant_name(db));
                if !lines.iter().any(|l| l.starts_with(&want)) {
                    s.missing_grants.push(db.clone());
                }
            }
        }
        Err(e) if sql::number(&e) == Some(sql::ER_NONEXISTING_GRANT) => {
            s.missing_grants = dbs.clone();
        }
        Err(e) => {
            return Err(sql::map(
                &format!("reading the grants of {}", user_name(d)),
                &e,
                None,
            ))
        }
    }
    if s.user {
        s.fingerprint = fingerprint(c, d).await;
    }
    Ok(s)
}

/// SHA2 of the user's authentication string, if the administrator may read
/// `mysql.user` (best effort: `None` turns off drift detection of the password).
async fn fingerprint(c: &mut MySqlConnection, d: &DatabaseSpec) -> Option<String> {
    sqlx::query(
        "SELECT CAST(SHA2(authentication_string, 256) AS CHAR) FROM mysql.user WHERE User = ? AND Host = ?",
    )
    .bind(&d.username)
    .bind(USER_HOST)
    .fetch_optional(&mut *c)
    .await
    .ok()
    .flatten()
    .and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
}

fn conflict(server: &str, what: String, fix: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("{what} on {server} was not created by gitpod-refarch for this installation and is left alone; {fix}"),
    )
}

impl SelfManagedDatabase {
    /// The conflicts that stop `ensure`: names this installation would create, in use
    /// by someone else.
    fn conflicts(&self, s: &Survey, d: &DatabaseSpec) -> Result<()> {
        let server = self.server();
        let main = &d.database_name;
        if s.existing.contains(main) && !s.owns_main(d) {
            let owner = s
                .mark(KIND_DATABASE, main)
                .map(|m| format!(" (its marker names installation {:?})", m.installation))
                .unwrap_or_default();
            return Err(conflict(
                &server,
                format!("database `{main}`{owner}"),
                &format!("drop it if it is unused (`DROP DATABASE \\`{main}\\``; also when an earlier apply stopped right after creating it, empty), or choose another database.databaseName"),
            ));
        }
        for db in COMPANION_DATABASES {
            if s.existing.contains(db) && !s.owns(d, KIND_DATABASE, db) {
                return Err(conflict(
                    &server,
                    format!("database `{db}`"),
                    &format!("Gitpod needs that name for this installation: drop it if it is left over from an earlier Gitpod (`DROP DATABASE \\`{db}\\``), or use another server"),
                ));
            }
        }
        let user = user_name(d);
        if s.user && !s.owns(d, KIND_USER, &user) {
            return Err(conflict(
                &server,
                format!("user {user}"),
                &format!("drop it if it is unused (`DROP USER {user}`), or choose another database.username"),
            ));
        }
        Ok(())
    }

    fn drift(&self, s: &Survey, d: &DatabaseSpec) -> Vec<String> {
        let mut out = Vec::new();
        for db in &COMPANION_DATABASES {
            if !s.existing.contains(*db) {
                out.push(format!("database `{db}` is missing"));
            }
        }
        let user = user_name(d);
        if !s.user {
            out.push(format!("user {user} is missing"));
        } else {
            if !s.missing_grants.is_empty() {
                out.push(format!(
                    "user {user} lacks ALL PRIVILEGES on {}",
                    s.missing_grants.join(", ")
                ));
            }
            let recorded = s.mark(KIND_USER, &user).map(|m| m.detail.as_str());
            if let (Some(now), Some(then)) = (s.fingerprint.as_deref(), recorded) {
                if now != then {
                    out.push(format!(
                        "the password of {user} was changed outside gitpod-refarch"
                    ));
                }
            }
        }
        out
    }

    async fn observe_database(&self, d: &DatabaseSpec) -> Result<Option<Observed<DatabaseSpec>>> {
        check_spec(d)?;
        let mut c = self.admin().await?;
        let s = survey(&mut c, &self.server(), d).await;
        sql::close(c).await;
        let s = s?;
        // Someone else's database of that name is not ours: absent (ensure refuses).
        if !s.owns_main(d) {
            return Ok(None);
        }
        let mut o = Observed::ready(d.clone(), None);
        for reason in self.drift(&s, d) {
            o = o.with_drift(reason);
        }
        Ok(Some(o))
    }

    async fn ensure_database(&self, d: &DatabaseSpec, inputs: &Inputs) -> Result<Progress> {
        check_spec(d)?;
        let password = inputs.secret(DATABASE_PASSWORD)?;
        if password.expose().is_empty()
            || !password.expose().bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(Error::internal(
                "the generated database password is not alphanumeric; it is not put into SQL",
            ));
        }
        let mut c = self.admin().await?;
        let r = self.ensure_database_on(&mut c, d, password).await;
        sql::close(c).await;
        r?;
        Ok(Progress::Done(Some(Output::Database {
            database: d.database_name.clone(),
            username: d.username.clone(),
            password: password.clone(),
            client_credentials: None,
        })))
    }

    async fn exec(
        &self,
        c: &mut MySqlConnection,
        what: &str,
        stmt: String,
        secret: Option<&str>,
    ) -> Result<()> {
        sqlx::raw_sql(AssertSqlSafe(stmt))
            .execute(&mut *c)
            .await
            .map(|_| ())
            .map_err(|e| sql::map(&format!("{what} on {}", self.server()), &e, secret))
    }

    async fn mark(
        &self,
        c: &mut MySqlConnection,
        d: &DatabaseSpec,
        kind: &str,
        name: &str,
    ) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (kind, name, installation, detail) VALUES (?, ?, ?, '')",
            q(d)
        )))
        .bind(kind)
        .bind(name)
        .bind(&d.instance)
        .execute(&mut *c)
        .await
        .map(|_| ())
        .map_err(|e| {
            sql::map(
                &format!("recording {kind} {name} in the ownership marker"),
                &e,
                None,
            )
        })
    }

    async fn ensure_database_on(
        &self,
        c: &mut MySqlConnection,
        d: &DatabaseSpec,
        password: &Secret,
    ) -> Result<()> {
        let server = self.server();
        let s = survey(c, &server, d).await?;
        self.conflicts(&s, d)?;
        let main = &d.database_name;
        let user = user_name(d);
        let pw = password.expose().as_str();
        if !s.existing.contains(main) {
            self.exec(
                c,
                &format!("creating database `{main}`"),
                format!(
                    "CREATE DATABASE `{main}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                ),
                None,
            )
            .await?;
        }
        if s.marks.is_none() {
            self.exec(
                c,
                "creating the ownership marker",
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (kind VARCHAR(16) NOT NULL, name VARCHAR(160) NOT NULL, installation VARCHAR(128) NOT NULL, detail VARCHAR(128) NOT NULL DEFAULT '', PRIMARY KEY (kind, name)) CHARACTER SET utf8mb4 COMMENT 'objects gitpod-refarch created: destroy drops only these'",
                    q(d)
                ),
                None,
            )
            .await?;
        }
        if s.mark(KIND_DATABASE, main).is_none() {
            self.mark(c, d, KIND_DATABASE, main).await?;
        }
        for db in COMPANION_DATABASES {
            if s.mark(KIND_DATABASE, db).is_none() {
                self.mark(c, d, KIND_DATABASE, db).await?;
            }
            if !s.existing.contains(db) {
                self.exec(
                    c,
                    &format!("creating database `{db}`"),
                    format!("CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
                    None,
                )
                .await?;
            }
        }
        let mut changed_password = false;
        if !s.user {
            if s.mark(KIND_USER, &user).is_none() {
                self.mark(c, d, KIND_USER, &user).await?;
            }
            self.exec(
                c,
                &format!("creating user {user}"),
                format!("CREATE USER IF NOT EXISTS {user} IDENTIFIED BY '{pw}'"),
                Some(pw),
            )
            .await?;
            changed_password = true;
        }
        for db in if s.user {
            s.missing_grants.clone()
        } else {
            databases(d)
        } {
            self.exec(
                c,
                &format!("granting ALL PRIVILEGES on `{db}` to {user}"),
                format!("GRANT ALL PRIVILEGES ON `{}`.* TO {user}", grant_name(&db)),
                None,
            )
            .await?;
        }
        // The user logs in with the journaled password, or it is set.
        let target = self.target();
        match target.connect(&d.username, pw, Some(main)).await {
            Ok(u) => sql::close(u).await,
            Err(e) if e.kind() != ErrorKind::Credentials => return Err(e),
            Err(_) => {
                self.exec(
                    c,
                    &format!("setting the password of {user}"),
                    format!("ALTER USER {user} IDENTIFIED BY '{pw}'"),
                    Some(pw),
                )
                .await?;
                changed_password = true;
                let u = target.connect(&d.username, pw, Some(main)).await?;
                sql::close(u).await;
            }
        }
        let now = fingerprint(c, d).await;
        let recorded = s.mark(KIND_USER, &user).map(|m| m.detail.clone());
        if let Some(now) = now {
            if changed_password || recorded.as_deref() != Some(now.as_str()) {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {} SET detail = ? WHERE kind = ? AND name = ?",
                    q(d)
                )))
                .bind(&now)
                .bind(KIND_USER)
                .bind(&user)
                .execute(&mut *c)
                .await
                .map_err(|e| sql::map("recording the password fingerprint", &e, None))?;
            }
        }
        Ok(())
    }

    async fn delete_database(&self, d: &DatabaseSpec) -> Result<Progress> {
        check_spec(d)?;
        if self.config.deletion_protection {
            tracing::info!(server = %self.server(), database = %d.database_name, "deletion protection: the database and its user are kept");
            return Ok(Progress::Done(None));
        }
        let mut c = self.admin().await?;
        let r = self.delete_database_on(&mut c, d).await;
        sql::close(c).await;
        r?;
        Ok(Progress::Done(None))
    }

    async fn delete_database_on(&self, c: &mut MySqlConnection, d: &DatabaseSpec) -> Result<()> {
        let s = survey(c, &self.server(), d).await?;
        if !s.owns_main(d) {
            tracing::info!(server = %self.server(), database = %d.database_name, "not created by this installation: left alone");
            return Ok(());
        }
        let user = user_name(d);
        if s.user && s.owns(d, KIND_USER, &user) {
            self.exec(
                c,
                &format!("dropping user {user}"),
                format!("DROP USER IF EXISTS {user}"),
                None,
            )
            .await?;
        }
        for db in COMPANION_DATABASES {
            if s.existing.contains(db) && s.owns(d, KIND_DATABASE, db) {
                self.exec(
                    c,
                    &format!("dropping database `{db}`"),
                    format!("DROP DATABASE IF EXISTS `{db}`"),
                    None,
                )
                .await?;
            }
        }
        // Last: it holds the marker.
        let main = &d.database_name;
        self.exec(
            c,
            &format!("dropping database `{main}`"),
            format!("DROP DATABASE IF EXISTS `{main}`"),
            None,
        )
        .await
    }
}

#[gitpod_refarch::async_trait]
impl gitpod_refarch::Database for SelfManagedDatabase {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("self-managed-mysql").with_self_managed(true)
    }

    async fn observe(&self, r: &DatabaseResource) -> Result<Option<Observed<DatabaseResource>>> {
        Ok(match r {
            DatabaseResource::Instance(s) => self
                .observe_instance(s)
                .await?
                .map(|o| o.map(DatabaseResource::Instance)),
            DatabaseResource::Database(d) => self
                .observe_database(d)
                .await?
                .map(|o| o.map(DatabaseResource::Database)),
        })
    }

    async fn ensure(&self, r: &DatabaseResource, inputs: &Inputs) -> Result<Progress> {
        match r {
            DatabaseResource::Instance(s) => self.ensure_instance(s).await,
            DatabaseResource::Database(d) => self.ensure_database(d, inputs).await,
        }
    }

    async fn delete(&self, r: &DatabaseResource) -> Result<Progress> {
        match r {
            // The server is not ours: nothing to remove, no call.
            DatabaseResource::Instance(_) => Ok(Progress::Done(None)),
            DatabaseResource::Database(d) => self.delete_database(d).await,
        }
    }

    async fn poll(&self, _op: &Operation) -> Result<Progress> {
        Ok(Progress::Done(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        assert!(check_identifier("f", "gitpod", 32, false).is_ok());
        assert!(check_identifier("f", "git-pod", 32, false).is_err());
        assert!(check_identifier("f", "git-pod", 64, true).is_ok());
        assert!(check_identifier("f", "a'b", 64, true).is_err());
        assert!(check_identifier("f", "a`b", 64, true).is_err());
        assert!(check_identifier("f", "", 64, true).is_err());
        assert_eq!(grant_name("git_pod"), "git\\_pod");
    }
}
