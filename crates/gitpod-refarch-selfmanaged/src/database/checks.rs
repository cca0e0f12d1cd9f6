//! The database checks of `verify`, with the credentials of the installer bundle's
//! `database` Secret (and `database-ca`), i.e. exactly what Gitpod gets.

use std::time::{Duration, Instant};

use gitpod_refarch::installer::DATABASE_CA_SECRET;
use gitpod_refarch::verify::{Check, Part, VerifyContext};
use gitpod_refarch::ErrorKind;
use sqlx::mysql::MySqlConnection;
use sqlx::AssertSqlSafe;

use super::sql::{self, Target};
use super::{DatabaseTlsMode, SelfManagedDatabase};
use crate::reach::Reach;

const CONNECT: &str = "database.connect";
const TIMESTAMP: &str = "database.explicit-defaults-for-timestamp";
const SCHEMA: &str = "database.schema";
const TABLE: &str = "database.create-drop-table";
const ALL: [&str; 4] = [CONNECT, TIMESTAMP, SCHEMA, TABLE];

/// The database Gitpod's server uses (hard-coded in Gitpod).
const GITPOD_DATABASE: &str = "gitpod";

fn skip_all(reason: &str) -> Vec<Check> {
    ALL.iter()
        .map(|id| Check::skipped(*id, Part::Database, reason))
        .collect()
}

fn skip_rest(reason: &str) -> impl Iterator<Item = Check> + '_ {
    ALL[1..]
        .iter()
        .map(move |id| Check::skipped(*id, Part::Database, reason))
}

/// The checks (see the module docs); never fails, a problem is a failed check.
pub(crate) async fn checks(ctx: &VerifyContext<'_>, reach: &Reach) -> Vec<Check> {
    let bundle = ctx.bundle;
    if bundle.secret("cloudsql").is_some() {
        let mut c = skip_all("Cloud SQL is reached through the proxy; run verify --in-cluster");
        for x in &mut c {
            *x = x.clone().fix("run `verify --in-cluster`");
        }
        return c;
    }
    let Some(secret) = bundle.secret("database") else {
        return skip_all("the installer bundle has no `database` secret (not applied yet?)");
    };
    let field = |k: &str| secret.data.get(k).map(|s| s.expose().trim().to_string());
    let (Some(host), Some(port), Some(username), Some(password)) = (
        field("host"),
        field("port"),
        field("username"),
        secret.data.get("password").map(|s| s.expose().clone()),
    ) else {
        let mut out = vec![Check::fail(
            CONNECT,
            Part::Database,
            "the `database` secret lacks one of host, port, username, password",
            "Gitpod's installer requires all four keys",
        )
        .fix("run `apply` again to render the secret")];
        out.extend(skip_rest("needs database.connect"));
        return out;
    };
    let Ok(port) = port.parse::<u16>() else {
        let mut out = vec![Check::fail(
            CONNECT,
            Part::Database,
            format!("the `database` secret's port {port:?} is not a port number"),
            "Gitpod connects to host:port",
        )
        .fix("run `apply` again to render the secret")];
        out.extend(skip_rest("needs database.connect"));
        return out;
    };
    let ca = bundle
        .secret(DATABASE_CA_SECRET)
        .and_then(|s| s.data.get("ca.crt"))
        .map(|s| s.expose().clone());
    // With a CA, Gitpod verifies the certificate and the host; without, it takes what
    // the server offers.
    let target = Target {
        host: &host,
        port,
        tls: if ca.is_some() {
            DatabaseTlsMode::VerifyIdentity
        } else {
            DatabaseTlsMode::Preferred
        },
        ca_pem: ca.as_deref(),
        timeout: reach.timeout,
    };
    let server = target.server();
    let started = Instant::now();
    let mut conn = match target.connect(&username, &password, None).await {
        Ok(c) => c,
        Err(e) => {
            let took = started.elapsed();
            let first = match e.kind() {
                ErrorKind::Transient => reach
                    .unreachable(CONNECT, Part::Database, &format!("MySQL at {server}"), e.message())
                    .took(took),
                ErrorKind::Credentials => Check::fail(
                    CONNECT,
                    Part::Database,
                    format!("{server} rejected user {username} with the password Gitpod gets"),
                    sql::scrub(e.message().to_string(), Some(&password)),
                )
                .fix(format!(
                    "run `apply` again (it resets the password of the user it created when the password was changed), or set the password of '{username}'@'%' to the one in the state"
                ))
                .took(took),
                _ => Check::fail(
                    CONNECT,
                    Part::Database,
                    format!("cannot connect to {server} as {username}"),
                    sql::scrub(e.message().to_string(), Some(&password)),
                )
                .fix("check database.tls (mode, caFile) and the server's TLS setup")
                .took(took),
            };
            let mut out = vec![first];
            out.extend(skip_rest("needs database.connect"));
            return out;
        }
    };
    let mut out = vec![Check::pass(
        CONNECT,
        Part::Database,
        format!("connected to {server} as {username}"),
    )
    .took(started.elapsed())];
    out.push(timestamp(&mut conn, &server, reach.timeout).await);
    let schema = schema(&mut conn, &username, reach.timeout).await;
    let schema_ok = schema.passed();
    out.push(schema);
    if schema_ok {
        out.push(create_drop(&mut conn, &username, reach.timeout).await);
    } else {
        out.push(Check::skipped(
            TABLE,
            Part::Database,
            "needs database.schema",
        ));
    }
    sql::close(conn).await;
    out
}

async fn timed<T>(
    t: Duration,
    f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(t, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", t.as_secs())),
    }
}

async fn timestamp(c: &mut MySqlConnection, server: &str, t: Duration) -> Check {
    let started = Instant::now();
    let r = timed(
        t,
        sqlx::query_scalar::<_, i64>(
            "SELECT CAST(@@GLOBAL.explicit_defaults_for_timestamp AS SIGNED)",
        )
        .fetch_one(&mut *c),
    )
    .await;
    let check = match r {
        Ok(0) => Check::pass(
            TIMESTAMP,
            Part::Database,
            format!("explicit_defaults_for_timestamp is OFF on {server}"),
        ),
        Ok(_) => Check::fail(
            TIMESTAMP,
            Part::Database,
            format!("@@GLOBAL.explicit_defaults_for_timestamp is ON on {server}"),
            "Gitpod's schema relies on implicit TIMESTAMP defaults",
        )
        .fix(SelfManagedDatabase::timestamp_fix()),
        Err(e) => Check::fail(
            TIMESTAMP,
            Part::Database,
            "cannot read @@GLOBAL.explicit_defaults_for_timestamp",
            e,
        )
        .fix("check that the server is MySQL 5.7+/8 or MariaDB 10.3+"),
    };
    check.took(started.elapsed())
}

async fn schema(c: &mut MySqlConnection, username: &str, t: Duration) -> Check {
    let started = Instant::now();
    // information_schema lists only the databases this user has privileges on.
    let r = timed(
        t,
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
        )
        .bind(GITPOD_DATABASE)
        .fetch_one(&mut *c),
    )
    .await;
    let check = match r {
        Ok(n) if n > 0 => Check::pass(
            SCHEMA,
            Part::Database,
            format!("database `{GITPOD_DATABASE}` exists and {username} has privileges on it"),
        ),
        Ok(_) => Check::fail(
            SCHEMA,
            Part::Database,
            format!("database `{GITPOD_DATABASE}` does not exist or {username} has no privileges on it"),
            "Gitpod's server runs its migrations in it",
        )
        .fix(format!(
            "run `apply` again, or `CREATE DATABASE \\`{GITPOD_DATABASE}\\` CHARACTER SET utf8mb4; GRANT ALL PRIVILEGES ON \\`{GITPOD_DATABASE}\\`.* TO '{username}'@'%'`"
        )),
        Err(e) => Check::fail(SCHEMA, Part::Database, "cannot list the databases", e)
            .fix("check the server's logs"),
    };
    check.took(started.elapsed())
}

async fn create_drop(c: &mut MySqlConnection, username: &str, t: Duration) -> Check {
    let started = Instant::now();
    let table = format!("gitpod_refarch_verify_{:08x}", rand::random::<u32>());
    let qualified = format!("`{GITPOD_DATABASE}`.`{table}`");
    let create = format!(
        "CREATE TABLE {qualified} (id INT NOT NULL PRIMARY KEY, `_lastModified` timestamp(6) DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"
    );
    if let Err(e) = timed(t, sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut *c)).await {
        return Check::fail(
            TABLE,
            Part::Database,
            format!("{username} cannot create a table in `{GITPOD_DATABASE}`"),
            e,
        )
        .fix(format!(
            "GRANT ALL PRIVILEGES ON \\`{GITPOD_DATABASE}\\`.* TO '{username}'@'%' (Gitpod's migrations create, alter and drop tables)"
        ))
        .took(started.elapsed());
    }
    let insert = format!("INSERT INTO {qualified} (id) VALUES (1)");
    let inserted = timed(t, sqlx::raw_sql(AssertSqlSafe(insert)).execute(&mut *c)).await;
    let dropped = timed(
        t,
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {qualified}"))).execute(&mut *c),
    )
    .await;
    let check = match (inserted, dropped) {
        (Ok(_), Ok(_)) => Check::pass(
            TABLE,
            Part::Database,
            format!("created, wrote and dropped a table with a timestamp(6) ON UPDATE column in `{GITPOD_DATABASE}`"),
        ),
        (Err(e), Ok(_)) => Check::fail(
            TABLE,
            Part::Database,
            "cannot insert a row with a default timestamp(6)",
            e,
        )
        .fix("check sql_mode and explicit_defaults_for_timestamp on the server"),
        (_, Err(e)) => Check::fail(
            TABLE,
            Part::Database,
            format!("{username} cannot drop the table it created ({table} is left behind)"),
            e,
        )
        .fix(format!(
            "GRANT ALL PRIVILEGES ON \\`{GITPOD_DATABASE}\\`.* TO '{username}'@'%', then `DROP TABLE {qualified}`"
        )),
    };
    check.took(started.elapsed())
}
