//! Bring-your-own TLS certificates: the PEM chain and key a spec names
//! (`certificates: {issuer: bringYourOwn, certificateFile, keyFile}`), loaded and
//! checked before any cloud call.
//!
//! The checks: the leaf covers DOMAIN, `*.DOMAIN` and `*.ws.DOMAIN` (a SAN equal to the
//! name, or a wildcard SAN one label up); it is valid now (an expired or not yet valid
//! certificate is an error, one expiring within [`EXPIRY_WARNING_DAYS`] a warning); and
//! the private key is the leaf's (its public key equals the certificate's). The key is
//! held in a [`Secret`] from the moment it is read and never appears in a message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::problem::{Problem, Warning};
use crate::secret::{ProcessSources, Secret, Sources};
use crate::spec::{CertificateSettings, ReferenceArchitecture};
use crate::{Error, ErrorKind, Result};

/// A certificate expiring within this many days is reported as a warning.
pub const EXPIRY_WARNING_DAYS: u64 = 30;

/// A certificate chain and its private key, ready for a `kubernetes.io/tls` Secret.
///
/// `Debug` shows the Secret's name and the chain's length, never the key.
#[derive(Clone)]
pub struct TlsCertificate {
    secret_name: String,
    chain_pem: String,
    key_pem: Secret,
}

impl std::fmt::Debug for TlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("secret_name", &self.secret_name)
            .field("chain_pem_bytes", &self.chain_pem.len())
            .field("key_pem", &self.key_pem)
            .finish()
    }
}

/// What [`TlsCertificate::check`] found: errors and warnings, with spec field paths.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsCheck {
    /// Problems that make the spec invalid.
    pub problems: Vec<Problem>,
    /// Notes (a certificate expiring soon).
    pub warnings: Vec<Warning>,
}

const CERT_PATH: &str = "certificates.certificateFile";
const KEY_PATH: &str = "certificates.keyFile";

impl TlsCertificate {
    /// A certificate from PEM text: the chain (leaf first) and the key (read into a
    /// [`Secret`]). Nothing is checked yet: see [`TlsCertificate::check`].
    pub fn from_pem(
        secret_name: impl Into<String>,
        chain_pem: impl Into<String>,
        key_pem: Secret,
    ) -> Self {
        TlsCertificate {
            secret_name: secret_name.into(),
            chain_pem: chain_pem.into(),
            key_pem,
        }
    }

    /// The certificate files a spec names, read from the process's files; see
    /// [`TlsCertificate::from_spec_from`].
    pub fn from_spec(spec: &ReferenceArchitecture) -> Result<Option<Self>> {
        Self::from_spec_from(spec, &ProcessSources)
    }

    /// The certificate files a spec names, read from `sources` (at most 1 MiB each);
    /// `None` unless the spec brings its own certificate with `certificateFile` and
    /// `keyFile`.
    pub fn from_spec_from(
        spec: &ReferenceArchitecture,
        sources: &dyn Sources,
    ) -> Result<Option<Self>> {
        let CertificateSettings::BringYourOwn {
            secret_name,
            certificate_file: Some(cert),
            key_file: Some(key),
        } = &spec.certificates
        else {
            return Ok(None);
        };
        let invalid = |p: Problem| Error::new(ErrorKind::InvalidInput, p.to_string());
        let chain = read_small(sources, cert, CERT_PATH).map_err(invalid)?;
        let key = Secret::new(read_small(sources, key, KEY_PATH).map_err(invalid)?);
        Ok(Some(TlsCertificate::from_pem(
            secret_name.clone(),
            chain,
            key,
        )))
    }

    /// The Secret's name in the Gitpod namespace.
    pub fn secret_name(&self) -> &str {
        &self.secret_name
    }

    /// The chain, PEM (the Secret's `tls.crt`).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The private key, PEM (the Secret's `tls.key`).
    pub fn key_pem(&self) -> &Secret {
        &self.key_pem
    }

    /// Check the chain against `domain` at time `now`; see the module docs.
    pub fn check(&self, domain: &str, now: SystemTime) -> TlsCheck {
        let mut out = TlsCheck::default();
        let certs: Vec<CertificateDer<'static>> =
            match CertificateDer::pem_slice_iter(self.chain_pem.as_bytes()).collect() {
                Ok(c) => c,
                Err(e) => {
                    out.problems.push(Problem::new(
                        CERT_PATH,
                        format!("not a PEM certificate: {e}"),
                    ));
                    return out;
                }
            };
        let Some(leaf_der) = certs.first() else {
            out.problems.push(Problem::new(
                CERT_PATH,
                "no CERTIFICATE block in the file (PEM, leaf first)",
            ));
            return out;
        };
        let leaf = match x509_parser::parse_x509_certificate(leaf_der.as_ref()) {
            Ok((_, c)) => c,
            Err(e) => {
                out.problems.push(Problem::new(
                    CERT_PATH,
                    format!("the first certificate does not parse: {e}"),
                ));
                return out;
            }
        };
        // Names.
        let sans: Vec<String> = match leaf.subject_alternative_name() {
            Ok(Some(ext)) => ext
                .value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(n) => {
                        Some(n.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let wanted = [
            domain.to_string(),
            format!("*.{domain}"),
            format!("*.ws.{domain}"),
        ];
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !sans.iter().any(|s| covers(s, w)))
            .collect();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            out.problems.push(Problem::new(
                CERT_PATH,
                format!(
                    "the certificate does not cover {} (its names: {})",
                    names.join(", "),
                    if sans.is_empty() {
                        "none".to_string()
                    } else {
                        sans.join(", ")
                    }
                ),
            ));
        }
        // Validity.
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as i64;
        let not_before = leaf.validity().not_before.timestamp();
        let not_after = leaf.validity().not_after.timestamp();
        if not_after < now_s {
            out.problems.push(Problem::new(
                CERT_PATH,
                format!("the certificate expired on {}", leaf.validity().not_after),
            ));
        } else if not_before > now_s {
            out.problems.push(Problem::new(
                CERT_PATH,
                format!(
                    "the certificate is not valid before {}",
                    leaf.validity().not_before
                ),
            ));
        } else if not_after - now_s < (EXPIRY_WARNING_DAYS * 86_400) as i64 {
            out.warnings.push(Warning {
                path: CERT_PATH.into(),
                message: format!(
                    "the certificate expires on {} (within {EXPIRY_WARNING_DAYS} days): renew it",
                    leaf.validity().not_after
                ),
            });
        }
        // The key. The PEM parser's errors do not quote the input.
        let key = match PrivateKeyDer::from_pem_slice(self.key_pem.expose().as_bytes()) {
            Ok(k) => k,
            Err(_) => {
                out.problems.push(Problem::new(
                    KEY_PATH,
                    "no private key in the file (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC)",
                ));
                return out;
            }
        };
        let signing = match rustls::crypto::ring::sign::any_supported_type(&key) {
            Ok(k) => k,
            Err(_) => {
                out.problems.push(Problem::new(
                    KEY_PATH,
                    "the key is not a supported RSA, ECDSA (P-256/P-384) or Ed25519 key",
                ));
                return out;
            }
        };
        match signing.public_key() {
            Some(spki) if spki.as_ref() == leaf.tbs_certificate.subject_pki.raw => {}
            Some(_) => out.problems.push(Problem::new(
                KEY_PATH,
                "the key does not match the certificate (its public key differs from the leaf's)",
            )),
            None => out.problems.push(Problem::new(
                KEY_PATH,
                "cannot derive the key's public key to compare it with the certificate",
            )),
        }
        out
    }
}

/// Whether the certificate name `san` covers `name` (RFC 6125: a wildcard stands for
/// exactly one left-most label; `*.DOMAIN` itself needs that SAN or one a level up).
fn covers(san: &str, name: &str) -> bool {
    if san == name {
        return true;
    }
    match (san.strip_prefix("*."), name.split_once('.')) {
        (Some(parent), Some((first, rest))) => first != "*" && rest == parent,
        _ => false,
    }
}

fn read_small(
    sources: &dyn Sources,
    path: &str,
    field: &str,
) -> std::result::Result<String, Problem> {
    let invalid = |m: String| Problem::new(field, m);
    let limit = crate::spec::MAX_SPEC_BYTES as u64;
    let bytes = sources.file(path, limit).map_err(invalid)?;
    if bytes.len() as u64 > limit {
        return Err(invalid(format!("{path} is larger than 1 MiB")));
    }
    String::from_utf8(bytes).map_err(|e| {
        let mut b = e.into_bytes();
        b.iter_mut().for_each(|x| *x = 0);
        invalid(format!(
            "cannot read {path}: stream did not contain valid UTF-8"
        ))
    })
}

/// The problems and warnings of a spec's certificate files at `now` (none unless it
/// brings its own certificate from files), read from the process's files; see
/// [`check_spec_from`].
pub fn check_spec(spec: &ReferenceArchitecture, now: SystemTime) -> TlsCheck {
    check_spec_from(spec, &ProcessSources, now)
}

/// The problems and warnings of a spec's certificate files, read from `sources`, at
/// `now` (none unless it brings its own certificate from files). A file that cannot
/// be read is a problem.
pub fn check_spec_from(
    spec: &ReferenceArchitecture,
    sources: &dyn Sources,
    now: SystemTime,
) -> TlsCheck {
    let mut out = TlsCheck::default();
    let CertificateSettings::BringYourOwn {
        certificate_file,
        key_file,
        ..
    } = &spec.certificates
    else {
        return out;
    };
    match (certificate_file, key_file) {
        (None, None) => return out,
        (Some(_), None) => {
            out.problems.push(Problem::new(
                KEY_PATH,
                "required with certificateFile (the leaf's private key, PEM)",
            ));
            return out;
        }
        (None, Some(_)) => {
            out.problems.push(Problem::new(
                CERT_PATH,
                "required with keyFile (the certificate chain, PEM, leaf first)",
            ));
            return out;
        }
        (Some(_), Some(_)) => {}
    }
    let (Some(cert), Some(key)) = (certificate_file, key_file) else {
        return out;
    };
    let chain = read_small(sources, cert, CERT_PATH);
    let key = read_small(sources, key, KEY_PATH);
    match (chain, key) {
        (Ok(chain), Ok(key)) => TlsCertificate::from_pem(String::new(), chain, Secret::new(key))
            .check(&spec.domain, now),
        (chain, key) => {
            out.problems.extend(chain.err());
            out.problems.extend(key.err());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("gitpod.example.com", "gitpod.example.com"));
        assert!(covers("*.gitpod.example.com", "*.gitpod.example.com"));
        assert!(covers("*.example.com", "gitpod.example.com"));
        assert!(!covers("*.gitpod.example.com", "*.ws.gitpod.example.com"));
        assert!(!covers("*.gitpod.example.com", "gitpod.example.com"));
        assert!(!covers("*.example.com", "*.gitpod.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
    }
}
