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
