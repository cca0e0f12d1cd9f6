//! A private MariaDB (`mariadbd --no-defaults`) on 127.0.0.1 and a random port, in a
//! temporary directory removed on drop (the process is killed first), with an
//! administrator `admin`@`%` (all privileges, grant option) reachable over TCP.
//!
//! Debian's MariaDB 10.11 defaults `explicit_defaults_for_timestamp` to ON: the "good"
//! server ([`MariaDb::start`]) passes `--explicit-defaults-for-timestamp=0`,
//! [`MariaDb::start_with_defaults_on`] keeps the default. [`MariaDb::start_tls`] also
//! serves TLS with a certificate for `localhost`/`127.0.0.1` signed by a fresh rcgen CA.
//!
//! Needs `mariadbd` and `mariadb-install-db`:
//! `apt-get install -y --no-install-recommends mariadb-server` (a test fails, it does
//! not skip, without them; keep the packaged service from starting with a
//! `/usr/sbin/policy-rc.d` that exits 101).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gitpod_refarch::Secret;
use gitpod_refarch_selfmanaged::{DatabaseConfig, DatabaseTlsMode};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{ConnectOptions, Connection};

/// How to install what this needs.
pub const APT: &str = "apt-get install -y --no-install-recommends mariadb-server";

/// The administrator's name.
pub const ADMIN: &str = "admin";

/// A running `mariadbd` and its directory.
pub struct MariaDb {
    child: Child,
    dir: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// The password of [`ADMIN`].
    pub admin_password: Secret,
    /// The CA (PEM) of a TLS server.
    pub ca_pem: Option<String>,
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The path of a MariaDB program, or a panic naming the package to install.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("`{name}` is not installed: {APT}");
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Tls {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn make_tls() -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "gitpod-refarch test MariaDB CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    Tls {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// The PEM of a fresh CA that signed nothing (a wrong `caFile`).
pub fn unrelated_ca_pem() -> String {
    make_tls().ca_pem
}

impl MariaDb {
    /// A server Gitpod can use (`explicit_defaults_for_timestamp` OFF).
    pub async fn start() -> MariaDb {
        MariaDb::launch(false, false).await
    }

    /// A server with MariaDB's default `explicit_defaults_for_timestamp` ON.
    pub async fn start_with_defaults_on() -> MariaDb {
        MariaDb::launch(true, false).await
    }

    /// A good server that also serves TLS (see [`MariaDb::ca_pem`]).
    pub async fn start_tls() -> MariaDb {
        MariaDb::launch(false, true).await
    }

    async fn launch(defaults_on: bool, tls: bool) -> MariaDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let install = tool("mariadb-install-db");
        let daemon = tool("mariadbd");
        let dir = std::env::temp_dir().join(format!(
            "gitpod-refarch-mariadb-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let data = dir.join("data");
        // Its own temporary directory: concurrent servers clash in a shared /tmp.
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        let who = user();
        let out = Command::new(&install)
            .env("TMPDIR", &tmp)
            .arg("--no-defaults")
            .arg(format!("--user={who}"))
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg(format!("--tmpdir={}", tmp.display()))
            .output()
            .expect("run mariadb-install-db");
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let admin_password = Secret::generate_password(24);
        let init = dir.join("init.sql");
        std::fs::write(
            &init,
            format!(
                "CREATE USER '{ADMIN}'@'%' IDENTIFIED BY '{}';\nGRANT ALL PRIVILEGES ON *.* TO '{ADMIN}'@'%' WITH GRANT OPTION;\n",
                admin_password.expose()
            ),
        )
        .expect("init file");
        let port = free_port();
        let mut cmd = Command::new(&daemon);
        cmd.env("TMPDIR", &tmp)
            .arg("--no-defaults")
            .arg(format!("--user={who}"))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--init-file={}", init.display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--skip-log-bin");
        if !defaults_on {
            cmd.arg("--explicit-defaults-for-timestamp=0");
        }
        let mut ca_pem = None;
        if tls {
            let t = make_tls();
            for (name, body) in [
                ("ca.pem", &t.ca_pem),
                ("cert.pem", &t.cert_pem),
                ("key.pem", &t.key_pem),
            ] {
                std::fs::write(dir.join(name), body).expect("tls file");
            }
            cmd.arg(format!("--ssl-ca={}", dir.join("ca.pem").display()))
                .arg(format!("--ssl-cert={}", dir.join("cert.pem").display()))
                .arg(format!("--ssl-key={}", dir.join("key.pem").display()));
            ca_pem = Some(t.ca_pem);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("spawn mariadbd: {e}")
            });
        let mut db = MariaDb {
            child,
            dir,
            port,
            admin_password,
            ca_pem,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = db.child.try_wait() {
                let log = std::fs::read_to_string(db.dir.join("error.log")).unwrap_or_default();
                panic!("mariadbd exited ({status}): {log}");
            }
            if let Ok(c) = db.admin_options().connect().await {
                let _ = c.close().await;
                return db;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(db.dir.join("error.log")).unwrap_or_default();
                panic!("mariadbd did not accept the admin within 60s: {log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A file holding the administrator's password (for `adminPassword: {file: ..}`).
    pub fn admin_password_file(&self) -> PathBuf {
        let p = self.dir.join("admin-password");
        std::fs::write(&p, self.admin_password.expose()).expect("password file");
        p
    }

    /// `127.0.0.1:PORT`.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The provider config for the administrator (TLS disabled on a plain server,
    /// `verifyIdentity` with the CA on a TLS one).
    pub fn config(&self) -> DatabaseConfig {
        let mut c = DatabaseConfig::new("127.0.0.1", self.port, ADMIN, self.admin_password.clone());
        match &self.ca_pem {
            Some(ca) => {
                c.tls = DatabaseTlsMode::VerifyIdentity;
                c.ca_pem = Some(ca.clone());
            }
            None => c.tls = DatabaseTlsMode::Disabled,
        }
        c.connect_timeout = Duration::from_secs(10);
        c
    }

    fn admin_options(&self) -> MySqlConnectOptions {
        MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(ADMIN)
            .password(self.admin_password.expose())
            .ssl_mode(MySqlSslMode::Disabled)
            .disable_statement_logging()
    }

    /// An administrator connection for the test's own checks.
    pub async fn admin(&self) -> MySqlConnection {
        self.admin_options()
            .connect()
            .await
            .expect("admin connection")
    }

    /// Connect as `user` with `password` (plain TCP).
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<MySqlConnection, sqlx::Error> {
        MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(user)
            .password(password)
            .ssl_mode(MySqlSslMode::Disabled)
            .disable_statement_logging()
            .connect()
            .await
    }

    /// Run statements as the administrator.
    pub async fn exec(&self, sql: &str) {
        let mut c = self.admin().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = c.close().await;
    }

    /// The databases on the server.
    pub async fn databases(&self) -> Vec<String> {
        let mut c = self.admin().await;
        let v: Vec<String> =
            sqlx::query_scalar("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")
                .fetch_all(&mut c)
                .await
                .expect("databases");
        let _ = c.close().await;
        v
    }

    /// The users on the server, as `user@host`.
    pub async fn users(&self) -> Vec<String> {
        let mut c = self.admin().await;
        let v: Vec<String> =
            sqlx::query_scalar("SELECT CONCAT(User, '@', Host) FROM mysql.user ORDER BY 1")
                .fetch_all(&mut c)
                .await
                .expect("users");
        let _ = c.close().await;
        v
    }

    /// The server's write-statement counters (`Com_create_db`, `Com_grant`, ...):
    /// equal before and after means no statement that writes ran.
    pub async fn write_counters(&self) -> Vec<(String, i64)> {
        let mut c = self.admin().await;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN \
             ('COM_CREATE_DB','COM_DROP_DB','COM_CREATE_USER','COM_DROP_USER','COM_ALTER_USER','COM_GRANT','COM_REVOKE',\
              'COM_CREATE_TABLE','COM_DROP_TABLE','COM_INSERT','COM_UPDATE','COM_DELETE') ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .expect("status");
        let _ = c.close().await;
        rows.into_iter()
            .map(|(k, v)| (k, v.parse().unwrap_or(-1)))
            .collect()
    }
}
