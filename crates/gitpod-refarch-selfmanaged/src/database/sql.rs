//! Connections to the server and the mapping of sqlx errors to error kinds.
//!
//! Statement logging is off on every connection (sqlx would otherwise log the text of
//! `CREATE USER ... IDENTIFIED BY`), and messages of statements that carry the
//! generated password are scrubbed of it before they become an error.

use std::time::Duration;

use gitpod_refarch::{Error, ErrorKind, Result};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlSslMode};
use sqlx::{ConnectOptions, Connection};

use super::DatabaseTlsMode;

/// Where and how to connect (no password: it is passed per connection).
#[derive(Clone)]
pub(crate) struct Target<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) tls: DatabaseTlsMode,
    pub(crate) ca_pem: Option<&'a str>,
    pub(crate) timeout: Duration,
}

impl Target<'_> {
    /// `host:port`.
    pub(crate) fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn options(&self, user: &str, password: &str, database: Option<&str>) -> MySqlConnectOptions {
        let mode = match self.tls {
            DatabaseTlsMode::Disabled => MySqlSslMode::Disabled,
            DatabaseTlsMode::Preferred => MySqlSslMode::Preferred,
            DatabaseTlsMode::Required => MySqlSslMode::Required,
            DatabaseTlsMode::VerifyCa => MySqlSslMode::VerifyCa,
            DatabaseTlsMode::VerifyIdentity => MySqlSslMode::VerifyIdentity,
        };
        let mut o = MySqlConnectOptions::new()
            .host(self.host)
            .port(self.port)
            .username(user)
            .password(password)
            .ssl_mode(mode)
            .charset("utf8mb4")
            .disable_statement_logging();
        if let Some(ca) = self.ca_pem {
            o = o.ssl_ca_from_pem(ca.as_bytes().to_vec());
        }
        if let Some(db) = database {
            o = o.database(db);
        }
        o
    }

    /// Connect as `user` (the password is never part of any message).
    pub(crate) async fn connect(
        &self,
        user: &str,
        password: &str,
        database: Option<&str>,
    ) -> Result<MySqlConnection> {
        let what = format!("connecting to {} as {user}", self.server());
        let opts = self.options(user, password, database);
        match tokio::time::timeout(self.timeout, opts.connect()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(map(&what, &e, Some(password))),
            Err(_) => Err(Error::new(
                ErrorKind::Transient,
                format!(
                    "{what}: no answer within {}s (is the server up and reachable from here?)",
                    self.timeout.as_secs()
                ),
            )),
        }
    }
}

/// Close a connection politely (errors do not matter any more).
pub(crate) async fn close(c: MySqlConnection) {
    let _ = c.close().await;
}

/// The MySQL error number, if the server answered with an error.
pub(crate) fn number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
        .map(MySqlDatabaseError::number)
}

/// No grants for a user (`SHOW GRANTS FOR` an absent user).
pub(crate) const ER_NONEXISTING_GRANT: u16 = 1141;
/// Table does not exist.
pub(crate) const ER_NO_SUCH_TABLE: u16 = 1146;

/// Replace `secret` in `s`.
pub(crate) fn scrub(s: String, secret: Option<&str>) -> String {
    match secret {
        Some(p) if !p.is_empty() && s.contains(p) => s.replace(p, "[redacted]"),
        _ => s,
    }
}

/// An sqlx error as a typed error: `what` says what was being done; `secret`, if
/// given, is removed from the message. The source is not attached (its text could
/// carry the statement).
pub(crate) fn map(what: &str, e: &sqlx::Error, secret: Option<&str>) -> Error {
    let (kind, hint) = classify(e);
    let msg = scrub(format!("{what}: {e}{hint}"), secret);
    Error::new(kind, msg)
}

fn classify(e: &sqlx::Error) -> (ErrorKind, &'static str) {
    match e {
        sqlx::Error::Database(_) => match number(e).unwrap_or(0) {
            // Access denied (password / unknown user), no password given, host not
            // allowed to connect.
            1045 | 1698 | 1130 => (
                ErrorKind::Credentials,
                " (check the user name, its password and the hosts it may connect from)",
            ),
            // Database, table, column or global privilege missing; GRANT without the
            // grant option; CREATE USER not allowed.
            1044 | 1142 | 1143 | 1227 | 1410 | 1370 => (
                ErrorKind::Permission,
                " (the user lacks a privilege this step needs)",
            ),
            // Too many connections, lock wait, deadlock, server shutting down.
            1040 | 1203 | 1205 | 1213 | 1053 => (ErrorKind::Transient, ""),
            // Host blocked after connection errors; server in read-only mode.
            1129 => (
                ErrorKind::Precondition,
                " (unblock it with `FLUSH HOSTS` / `mariadb-admin flush-hosts`)",
            ),
            1290 | 1836 => (ErrorKind::Precondition, " (the server is read-only)"),
            _ => (ErrorKind::OperationFailed, ""),
        },
        // rustls reports a certificate it rejects as invalid data on the stream.
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => (
            ErrorKind::Precondition,
            " (check database.tls: the mode, and caFile for a private CA)",
        ),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => (ErrorKind::Transient, ""),
        sqlx::Error::Tls(_) => (
            ErrorKind::Precondition,
            " (check database.tls: the mode, and caFile for a private CA)",
        ),
        sqlx::Error::Configuration(_) => (
            ErrorKind::Precondition,
            " (with caching_sha2_password the first login needs TLS: use tls mode required or stronger)",
        ),
        sqlx::Error::Protocol(_) => (
            ErrorKind::Precondition,
            " (is this a MySQL or MariaDB server?)",
        ),
        _ => (ErrorKind::OperationFailed, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_secret() {
        assert_eq!(
            scrub("near 'abc123' at line 1".into(), Some("abc123")),
            "near '[redacted]' at line 1"
        );
        assert_eq!(scrub("x".into(), Some("")), "x");
    }

    #[test]
    fn io_is_transient() {
        let e = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(map("x", &e, None).kind(), ErrorKind::Transient);
    }
}
