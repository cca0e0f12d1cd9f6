//! Secret values: passwords, keys, tokens, service-account JSON.
//!
//! [`Secret`] redacts itself in `Debug`, `Display` and `Serialize`, so a secret can be
//! carried in outputs, events and plans without ever being printed. The only ways to
//! read it are [`Secret::expose`] (explicit, greppable) and the state file, which
//! serializes inside [`expose_in`] and is written with mode 0600.

use std::cell::Cell;
use std::fmt;

use base64::Engine as _;
use rand::distr::{Alphanumeric, SampleString};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a redacted secret prints as.
pub const REDACTED: &str = "<redacted>";

thread_local! {
    static EXPOSE: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with secrets serializing to their real values on this thread.
///
/// Used only by the state store and the installer renderer, whose outputs are files
/// the user asked for. Serialization is synchronous, so the flag cannot leak into
/// another task.
pub fn expose_in<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            EXPOSE.with(|e| e.set(self.0));
        }
    }
    let prev = EXPOSE.with(|e| e.replace(true));
    let _reset = Reset(prev);
    f()
}

/// A value that must never be printed or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    /// Wrap a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Read the value. Every call site is a place where a secret leaves its wrapper.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl Secret<String> {
    /// A random alphanumeric password of `len` characters from a CSPRNG
    /// (`rand`'s thread RNG: ChaCha12 seeded and reseeded from the OS).
    pub fn generate_password(len: usize) -> Self {
        Secret(Alphanumeric.sample_string(&mut rand::rng(), len))
    }

    /// `n` random bytes from a CSPRNG, base64-encoded (standard alphabet, padded).
    pub fn generate_base64_key(n: usize) -> Self {
        let mut bytes = vec![0u8; n];
        rand::rng().fill_bytes(&mut bytes);
        let s = base64::engine::general_purpose::STANDARD.encode(&bytes);
        bytes.iter_mut().for_each(|b| *b = 0);
        Secret(s)
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Serialize> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if EXPOSE.with(|e| e.get()) {
            self.0.serialize(s)
        } else {
            s.serialize_str(REDACTED)
        }
    }
}

impl<'de> Deserialize<'de> for Secret<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == REDACTED {
            return Err(serde::de::Error::custom(
                "a redacted secret cannot be read back: load secrets from the state file",
            ));
        }
        Ok(Secret(s))
    }
}

/// A secret is a string in a schema; the schema never holds a value (no default, no
/// example), and it is marked `writeOnly`.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for Secret<String> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "writeOnly": true,
            "description": "A secret value (never printed; `<redacted>` is not accepted)."
        })
    }
}

/// The largest secret file [`SecretSource::load`] reads, in bytes (64 KiB).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Where a secret named in the spec comes from; secrets are never written in the
/// spec itself.
///
/// In YAML: `{env: GITPOD_DB_ADMIN_PASSWORD}` or `{file: secrets/tsig.key}` (a path
/// relative to the working directory). [`SecretSource::load`] reads it; `validate`
/// loads every source a spec names, so a missing variable or file is a problem at the
/// field's path before any call. The source itself (a variable name, a path) is not
/// secret and prints as it is.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SecretSource {
    /// An environment variable's value (set and not empty).
    Env(String),
    /// A file's content (UTF-8, at most [`MAX_SECRET_FILE_BYTES`]; surrounding white
    /// space is trimmed).
    File(String),
}

impl SecretSource {
    /// The environment variable `name`.
    pub fn env(name: impl Into<String>) -> Self {
        SecretSource::Env(name.into())
    }

    /// The file at `path`.
    pub fn file(path: impl Into<String>) -> Self {
        SecretSource::File(path.into())
    }

    /// Read the value from the process's environment or files ([`ProcessSources`]);
    /// see [`SecretSource::load_from`].
    pub fn load(&self, field: &str) -> Result<Secret, crate::problem::Problem> {
        self.load_from(&ProcessSources, field)
    }

    /// Read the value from `sources`; a problem at `field` (the spec path, as
    /// `database.adminPassword`) when the variable is unset or empty, or the file is
    /// missing, unreadable, larger than 64 KiB, not UTF-8 or empty. No message
    /// contains the value.
    pub fn load_from(
        &self,
        sources: &dyn Sources,
        field: &str,
    ) -> Result<Secret, crate::problem::Problem> {
        let problem = |m: String| crate::problem::Problem::new(field, m);
        match self {
            SecretSource::Env(name) => {
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    return Err(problem(format!(
                        "env: '{name}' is not an environment variable name"
                    )));
                }
                match sources.env(name) {
                    Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                    Ok(_) => Err(problem(format!("env {name}: the value is empty"))),
                    Err(m) => Err(problem(m)),
                }
            }
            SecretSource::File(path) => {
                if path.is_empty() {
                    return Err(problem("file: the path is empty".into()));
                }
                let mut bytes = sources.file(path, MAX_SECRET_FILE_BYTES).map_err(problem)?;
                if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
                    bytes.iter_mut().for_each(|b| *b = 0);
                    return Err(problem(format!("{path} is larger than 64 KiB")));
                }
                let text = match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(e) => {
                        let mut b = e.into_bytes();
                        b.iter_mut().for_each(|x| *x = 0);
                        return Err(problem(format!("{path} is not UTF-8 text")));
                    }
                };
                let trimmed = text.trim();
                if trimmed.is_empty() {
                    return Err(problem(format!("{path} is empty")));
                }
                Ok(Secret::new(trimmed.to_string()))
            }
        }
    }
}

/// Where a spec's references are read: the `{env: NAME}` and `{file: PATH}` of its
/// secrets ([`SecretSource`]), and the certificate and CA files it names
/// (`certificates.certificateFile`, `database.tls.caFile`...).
///
/// The CLI and the library read the process's own environment and files
/// ([`ProcessSources`], the default everywhere). A program that runs specs written by
/// others must not: the controller reads each installation's references from that
/// installation's credentials Secret, never from its own environment or disk.
///
/// ```
/// use gitpod_refarch::secret::{SecretSource, Sources};
///
/// /// Every variable and file from a fixed table.
/// #[derive(Debug)]
/// struct Table(Vec<(&'static str, &'static str)>);
///
/// impl Sources for Table {
///     fn env(&self, name: &str) -> Result<String, String> {
///         self.file(name, 0).map(|b| String::from_utf8_lossy(&b).into_owned())
///     }
///     fn file(&self, path: &str, _limit: u64) -> Result<Vec<u8>, String> {
///         self.0.iter().find(|(k, _)| *k == path).map(|(_, v)| v.as_bytes().to_vec())
///             .ok_or_else(|| format!("{path} is not in the table"))
///     }
/// }
///
/// let table = Table(vec![("DB_PASSWORD", "hunter2")]);
/// let secret = SecretSource::env("DB_PASSWORD").load_from(&table, "database.adminPassword");
/// assert_eq!(secret.unwrap().expose(), "hunter2");
/// ```
pub trait Sources: Send + Sync + fmt::Debug {
    /// The value of the variable `name` (an `env:` reference); an error message
    /// naming it, never a value, when it is absent or not text.
    fn env(&self, name: &str) -> Result<String, String>;

    /// The content of the file `path` (a `file:` reference, a certificate or CA
    /// file): at most `limit + 1` bytes, so that the caller can refuse a larger one;
    /// an error message naming it when it cannot be read.
    fn file(&self, path: &str, limit: u64) -> Result<Vec<u8>, String>;
}

/// The process's own environment and files (relative paths from the working
/// directory): where the CLI and the library read a spec's references.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSources;

impl Sources for ProcessSources {
    fn env(&self, name: &str) -> Result<String, String> {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) => Err(format!("the environment variable {name} is empty")),
            Err(std::env::VarError::NotPresent) => {
                Err(format!("the environment variable {name} is not set"))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("the environment variable {name} is not UTF-8"))
            }
        }
    }

    fn file(&self, path: &str, limit: u64) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        Ok(bytes)
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(n) => write!(f, "env {n}"),
            SecretSource::File(p) => write!(f, "file {p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_display_and_serialize_redact() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{REDACTED}\""));
        let exposed = expose_in(|| serde_json::to_string(&s).unwrap());
        assert_eq!(exposed, "\"hunter2\"");
        // The flag is reset afterwards.
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{REDACTED}\"")
        );
    }

    #[test]
    fn redacted_value_is_not_accepted_back() {
        let r: Result<Secret, _> = serde_json::from_str(&format!("\"{REDACTED}\""));
        assert!(r.is_err());
    }

    #[test]
    fn generated_values_are_random_and_well_formed() {
        let a = Secret::generate_password(32);
        let b = Secret::generate_password(32);
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        let k = Secret::generate_base64_key(32);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(k.expose())
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_ne!(k, Secret::generate_base64_key(32));
    }
}
