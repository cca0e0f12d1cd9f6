//! Where an installation's spec reads what it names: its credentials Secret.
//!
//! The CLI reads a spec's `{env: NAME}` and `{file: PATH}` secrets, and its
//! certificate and CA files, from its own environment and disk. The controller runs
//! specs that other people write, so it never does: [`SecretSources`] reads them from
//! the Secret the installation names (`operator.credentialsSecret`, in its own
//! namespace), the same Secret that holds its cloud credentials:
//!
//! - `{env: GITPOD_DB_ADMIN_PASSWORD}` is the key `GITPOD_DB_ADMIN_PASSWORD` (its
//!   value trimmed, as `--from-file` and `echo` leave a newline);
//! - `{file: tsig.key}`, `caFile: db-ca.pem`, `certificateFile: tls.crt` are the keys
//!   `tsig.key`, `db-ca.pem`, `tls.crt` (as `kubectl create secret generic
//!   --from-file` names them). A Secret key holds only letters, digits, `-`, `_` and
//!   `.`, so a path with a `/` is refused, naming the key to use instead.
//!
//! These values go to the hosts the spec names (a database's password to its
//! `host`, a registry's to its `url`), so whoever may write a `GitpodInstallation`
//! could otherwise have any Secret of the namespace sent where they like. A Secret
//! answers references only for the installations its annotation
//! [`REFERENCES_ANNOTATION`] lists (comma-separated names, or `*`): the one who
//! writes the Secret consents. Cloud credentials need no annotation: they only go
//! to the cloud.
//!
//! A reference the Secret must fix (a missing or empty key, a Secret that does not
//! exist or does not allow the installation) is retried with backoff by the
//! controller, which does not watch Secrets; [`SecretSources::answered`] tells
//! which references the Secret answered or must fix.
//!
//! ```
//! use gitpod_refarch::secret::{SecretSource, Sources};
//! use gitpod_refarch::Secret;
//! use gitpod_refarch_operator::factory::Credentials;
//! use gitpod_refarch_operator::sources::SecretSources;
//!
//! let mut data = Credentials::new();
//! data.insert("GITPOD_DB_ADMIN_PASSWORD".into(), Secret::new("hunter2\n".into()));
//! let sources = SecretSources::new("gitpod/creds", Some(data));
//! let password = SecretSource::env("GITPOD_DB_ADMIN_PASSWORD")
//!     .load_from(&sources, "database.adminPassword")
//!     .unwrap();
//! assert_eq!(password.expose(), "hunter2");
//! // Never the controller's own files.
//! assert!(sources.file("/etc/hostname", 1024).is_err());
//! ```

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use gitpod_refarch::secret::Sources;

use crate::factory::Credentials;

/// The annotation of a credentials Secret that lists the installations (names in
/// its namespace, comma-separated, or `*` for all) whose spec may read references
/// from it.
pub const REFERENCES_ANNOTATION: &str = "refarch.gitpod.io/spec-references";

/// Whether a Secret annotated `value` (see [`REFERENCES_ANNOTATION`]) lets
/// installation `name` read references from it.
pub fn allows(value: Option<&str>, name: &str) -> bool {
    value.is_some_and(|v| v.split(',').map(str::trim).any(|n| n == "*" || n == name))
}

/// The references of one installation's spec, answered from its credentials Secret
/// (see the [module](self)). `Debug` names the Secret and its keys, never a value.
pub struct SecretSources {
    secret: Option<String>,
    values: Option<Credentials>,
    unreadable: Option<String>,
    answered: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for SecretSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSources")
            .field("secret", &self.secret)
            .field(
                "keys",
                &self.values.as_ref().map(|v| v.keys().collect::<Vec<_>>()),
            )
            .field("unreadable", &self.unreadable)
            .finish_non_exhaustive()
    }
}

impl SecretSources {
    fn with(
        secret: Option<String>,
        values: Option<Credentials>,
        unreadable: Option<String>,
    ) -> Self {
        SecretSources {
            secret,
            values,
            unreadable,
            answered: Mutex::new(BTreeSet::new()),
        }
    }

    /// The keys of the Secret `secret` (`namespace/name`), read as `values`.
    pub fn new(secret: impl Into<String>, values: Option<Credentials>) -> Self {
        Self::with(Some(secret.into()), values, None)
    }

    /// An installation that names no credentials Secret: every reference is a
    /// problem that says to name one.
    pub fn none() -> Self {
        Self::with(None, None, None)
    }

    /// The Secret `secret` cannot answer, for `reason` (it does not exist, it does
    /// not allow the installation, it cannot be read): every reference is a problem
    /// that says so.
    pub fn unreadable(secret: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::with(Some(secret.into()), None, Some(reason.into()))
    }

    /// The Secret `secret` holds `values`, but its [`REFERENCES_ANNOTATION`] does not
    /// list installation `installation`.
    pub fn not_allowed(secret: impl Into<String>, installation: &str) -> Self {
        let secret = secret.into();
        let reason = format!(
            "the credentials Secret {secret} does not let installation {installation} read \
             spec references (their values go to the hosts the spec names): annotate it \
             {REFERENCES_ANNOTATION}={installation}"
        );
        Self::unreadable(secret, reason)
    }

    /// The variables and files (keys) asked for so far that the Secret answered, or
    /// that only a change of the Secret can answer (missing, empty, a Secret that
    /// does not exist or does not allow the installation); not those the spec must
    /// change (a path, an invalid name, no Secret named).
    pub fn answered(&self) -> BTreeSet<String> {
        self.log().clone()
    }

    fn log(&self) -> MutexGuard<'_, BTreeSet<String>> {
        match self.answered.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn key(&self, what: &str, key: &str) -> Result<String, String> {
        let Some(secret) = &self.secret else {
            return Err(format!(
                "{what}: the controller reads env and file references from the \
                 installation's credentials Secret, and this installation names none: \
                 set operator.credentialsSecret to a Secret with the key {key}"
            ));
        };
        self.log().insert(key.to_string());
        if let Some(reason) = &self.unreadable {
            return Err(format!("{what}: {reason}"));
        }
        match self.values.as_ref().and_then(|v| v.get(key)) {
            Some(v) if !v.expose().trim().is_empty() => Ok(v.expose().clone()),
            Some(_) => Err(format!(
                "{what}: the key {key} of the credentials Secret {secret} is empty"
            )),
            None => Err(format!(
                "{what}: the credentials Secret {secret} has no key {key}"
            )),
        }
    }
}

/// Whether `key` is a valid Secret data key: `[-._a-zA-Z0-9]+`, not `.` or `..`,
/// at most 253 characters.
fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Sources for SecretSources {
    fn env(&self, name: &str) -> Result<String, String> {
        if !is_secret_key(name) {
            return Err(format!(
                "env {name}: in the controller, a variable is a key of the credentials \
                 Secret, and a key holds only letters, digits, '-', '_' and '.'"
            ));
        }
        // As the cloud keys of the same Secret: a trailing newline from `echo` or
        // `--from-file` is not part of the value.
        self.key(&format!("env {name}"), name)
            .map(|v| v.trim().to_string())
    }

    fn file(&self, path: &str, limit: u64) -> Result<Vec<u8>, String> {
        if !is_secret_key(path) {
            let base = path.rsplit('/').next().unwrap_or(path);
            let hint = if is_secret_key(base) {
                format!(" (as --from-file names it: {base})")
            } else {
                String::new()
            };
            return Err(format!(
                "file {path}: in the controller, a file is a key of the credentials Secret, \
                 never a path on the controller's disk; name the key{hint}"
            ));
        }
        let value = self.key(&format!("file {path}"), path)?;
        let mut bytes = value.into_bytes();
        // The caller refuses more than `limit`; never hand it more than one byte over.
        let keep = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
        bytes.truncate(keep);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gitpod_refarch::secret::SecretSource;
    use gitpod_refarch::Secret;

    fn sources() -> SecretSources {
        let mut data = Credentials::new();
        data.insert("DB".into(), Secret::new("pw\n".into()));
        data.insert("db-ca.pem".into(), Secret::new("PEM".into()));
        data.insert("BLANK".into(), Secret::new(" \n".into()));
        SecretSources::new("ns/creds", Some(data))
    }

    #[test]
    fn env_and_file_references_are_keys_of_the_secret() {
        let s = sources();
        assert_eq!(s.env("DB").unwrap(), "pw");
        assert_eq!(s.file("db-ca.pem", 10).unwrap(), b"PEM");
        assert_eq!(s.file("db-ca.pem", 1).unwrap(), b"PE");
        let e = s.env("MISSING").unwrap_err();
        assert_eq!(
            e,
            "env MISSING: the credentials Secret ns/creds has no key MISSING"
        );
        assert!(s.env("BLANK").unwrap_err().contains("is empty"));
        // What the Secret answered or must fix; not a spec's own mistakes.
        assert!(s.file("certs/x.pem", 10).is_err());
        assert!(s.env("A=B").is_err());
        let answered: Vec<String> = s.answered().into_iter().collect();
        assert_eq!(answered, ["BLANK", "DB", "MISSING", "db-ca.pem"]);
    }

    #[test]
    fn a_path_is_never_read_from_the_controllers_disk() {
        let s = sources();
        let e = s.file("/etc/hostname", 1024).unwrap_err();
        assert!(e.contains("never a path on the controller's disk"), "{e}");
        assert!(e.contains("(as --from-file names it: hostname)"), "{e}");
        let e = s.file("certs/db-ca.pem", 1024).unwrap_err();
        assert!(e.contains("db-ca.pem"), "{e}");
        assert!(s.file("..", 10).is_err());
        // The process's own environment is not consulted either.
        std::env::var("PATH").unwrap();
        assert!(s.env("PATH").unwrap_err().contains("has no key PATH"));
    }

    #[test]
    fn without_a_secret_or_consent_each_reference_says_why() {
        let e = SecretSources::none().env("DB").unwrap_err();
        assert!(e.contains("set operator.credentialsSecret"), "{e}");
        assert!(SecretSources::none().answered().is_empty());
        let u = SecretSources::unreadable("ns/creds", "the Secret ns/creds does not exist");
        assert_eq!(
            u.env("DB").unwrap_err(),
            "env DB: the Secret ns/creds does not exist"
        );
        let p = SecretSource::env("DB").load_from(&u, "database.adminPassword");
        assert_eq!(p.unwrap_err().path, "database.adminPassword");
        let n = SecretSources::not_allowed("ns/creds", "gp");
        let e = n.env("DB").unwrap_err();
        assert!(
            e.contains("annotate it refarch.gitpod.io/spec-references=gp"),
            "{e}"
        );
        assert!(n.answered().contains("DB"));
    }

    #[test]
    fn the_annotation_lists_installations_or_all() {
        assert!(allows(Some("gp"), "gp"));
        assert!(allows(Some("a, gp ,b"), "gp"));
        assert!(allows(Some("*"), "gp"));
        assert!(!allows(Some("gp2"), "gp"));
        assert!(!allows(Some(""), "gp"));
        assert!(!allows(None, "gp"));
    }

    #[test]
    fn debug_names_keys_never_values() {
        let d = format!("{:?}", sources());
        assert!(d.contains("db-ca.pem") && d.contains("ns/creds"), "{d}");
        assert!(!d.contains("pw") && !d.contains("PEM\""), "{d}");
    }
}
