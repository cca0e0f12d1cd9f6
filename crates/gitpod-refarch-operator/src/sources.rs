//! Where an installation's spec reads what it names: its credentials Secret.
//!
//! The CLI reads a spec's `{env: NAME}` and `{file: PATH}` secrets, and its
//! certificate and CA files, from its own environment and disk. The controller runs
//! specs that other people write, so it never does: [`SecretSources`] reads them from
//! the Secret the installation names (`operator.credentialsSecret`, in its own
//! namespace), the same Secret that holds its cloud credentials:
//!
//! - `{env: GITPOD_DB_ADMIN_PASSWORD}` is the key `GITPOD_DB_ADMIN_PASSWORD`;
//! - `{file: tsig.key}`, `caFile: db-ca.pem`, `certificateFile: tls.crt` are the keys
//!   `tsig.key`, `db-ca.pem`, `tls.crt` (as `kubectl create secret generic
//!   --from-file` names them). A Secret key holds only letters, digits, `-`, `_` and
//!   `.`, so a path with a `/` is refused, naming the key to use instead.
//!
//! A reference the Secret cannot answer is a problem at its field, before any call;
//! the controller retries it with backoff (the fix is in the Secret, which it does
//! not watch), where a problem in the spec itself waits for the resource to change.
//!
//! ```
//! use gitpod_refarch::secret::{SecretSource, Sources};
//! use gitpod_refarch::Secret;
//! use gitpod_refarch_operator::factory::Credentials;
//! use gitpod_refarch_operator::sources::SecretSources;
//!
//! let mut data = Credentials::new();
//! data.insert("GITPOD_DB_ADMIN_PASSWORD".into(), Secret::new("hunter2".into()));
//! let sources = SecretSources::new("gitpod/creds", Some(data));
//! let password = SecretSource::env("GITPOD_DB_ADMIN_PASSWORD")
//!     .load_from(&sources, "database.adminPassword")
//!     .unwrap();
//! assert_eq!(password.expose(), "hunter2");
//! // Never the controller's own files.
//! assert!(sources.file("/etc/hostname", 1024).is_err());
//! ```

use gitpod_refarch::secret::Sources;

use crate::factory::Credentials;

/// The references of one installation's spec, answered from its credentials Secret
/// (see the [module](self)). `Debug` names the Secret and its keys, never a value.
pub struct SecretSources {
    secret: Option<String>,
    values: Option<Credentials>,
    unreadable: Option<String>,
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
            .finish()
    }
}

impl SecretSources {
    /// The keys of the Secret `secret` (`namespace/name`), read as `values`; `None`
    /// values with a name: the Secret could not be read (see
    /// [`SecretSources::unreadable`]).
    pub fn new(secret: impl Into<String>, values: Option<Credentials>) -> Self {
        SecretSources {
            secret: Some(secret.into()),
            values,
            unreadable: None,
        }
    }

    /// An installation that names no credentials Secret: every reference is a
    /// problem that says to name one.
    pub fn none() -> Self {
        SecretSources {
            secret: None,
            values: None,
            unreadable: None,
        }
    }

    /// The Secret `secret` could not be read, for `reason` (it does not exist, the
    /// API refused): every reference is a problem that says so.
    #[must_use]
    pub fn unreadable(secret: impl Into<String>, reason: impl Into<String>) -> Self {
        SecretSources {
            secret: Some(secret.into()),
            values: None,
            unreadable: Some(reason.into()),
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
        self.key(&format!("env {name}"), name)
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
        data.insert("DB".into(), Secret::new("pw".into()));
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
    fn without_a_secret_or_when_it_cannot_be_read_each_reference_says_why() {
        let e = SecretSources::none().env("DB").unwrap_err();
        assert!(e.contains("set operator.credentialsSecret"), "{e}");
        let u = SecretSources::unreadable("ns/creds", "the Secret ns/creds does not exist");
        assert_eq!(
            u.env("DB").unwrap_err(),
            "env DB: the Secret ns/creds does not exist"
        );
        let p = SecretSource::env("DB").load_from(&u, "database.adminPassword");
        assert_eq!(p.unwrap_err().path, "database.adminPassword");
    }

    #[test]
    fn debug_names_keys_never_values() {
        let d = format!("{:?}", sources());
        assert!(d.contains("db-ca.pem") && d.contains("ns/creds"), "{d}");
        assert!(!d.contains("pw\"") && !d.contains("PEM\""), "{d}");
    }
}
