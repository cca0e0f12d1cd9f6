//! Where `--state` keeps the state: a directory (`state.json` in it), an S3 object, a
//! GCS object or a Kubernetes Secret; and the simulated cloud's file, saved under the
//! run's lock so that two processes never overwrite each other's cloud.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gitpod_refarch::sim::SimCloud;
use gitpod_refarch::state::{
    FileStateStore, Generation, LockInfo, LockRequest, State, StateStore, Stored,
};
use gitpod_refarch::{Error, ErrorKind, Result};

/// The forms `--state` accepts, for messages.
pub(crate) const STATE_FORMS: &str =
    "a directory, s3://BUCKET/KEY, gs://BUCKET/OBJECT or kubernetes://NAMESPACE/NAME";

/// A parsed `--state` value, checked before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StateArg {
    /// A directory holding `state.json` (and the simulated cloud's `sim-cloud.json`).
    Dir(PathBuf),
    /// An S3 object.
    S3 {
        /// `s3://bucket/key`.
        url: String,
    },
    /// A Google Cloud Storage object.
    Gcs {
        /// `gs://bucket/object`.
        url: String,
    },
    /// A Kubernetes Secret (and a Lease for the lock).
    Kube {
        /// `kubernetes://namespace/name`.
        url: String,
    },
}

impl StateArg {
    /// Parse `--state`: a plain path is a directory; a URL must be one of the three
    /// backends, with every part present and well formed.
    pub(crate) fn parse(value: &str) -> std::result::Result<StateArg, String> {
        let Some((scheme, rest)) = value.split_once("://") else {
            if value.trim().is_empty() {
                return Err(format!("--state is empty; give {STATE_FORMS}"));
            }
            return Ok(StateArg::Dir(PathBuf::from(value)));
        };
        match scheme {
            "s3" => {
                let (bucket, key) = two_parts(rest);
                check_bucket(value, "s3://BUCKET/KEY", bucket, Bucket::S3)?;
                check_key(value, "s3://BUCKET/KEY", key, "key")?;
                Ok(StateArg::S3 { url: value.into() })
            }
            "gs" => {
                let (bucket, object) = two_parts(rest);
                check_bucket(value, "gs://BUCKET/OBJECT", bucket, Bucket::Gcs)?;
                check_key(value, "gs://BUCKET/OBJECT", object, "object name")?;
                Ok(StateArg::Gcs { url: value.into() })
            }
            "kubernetes" => {
                let form = "kubernetes://NAMESPACE/NAME";
                let (namespace, name) = two_parts(rest);
                if namespace.is_empty() || name.is_empty() {
                    return Err(format!(
                        "--state {value}: expected {form} (the Secret NAME in NAMESPACE holds \
                         the state, the Lease NAME-lock its lock)"
                    ));
                }
                if !is_dns_label(namespace, 63) {
                    return Err(format!(
                        "--state {value}: '{namespace}' is not a namespace name (lowercase \
                         letters, digits and '-', at most 63, starting and ending with a \
                         letter or digit)"
                    ));
                }
                // The Lease is NAME-lock: it must be a valid name too.
                if !is_dns_subdomain(name, 248) {
                    return Err(format!(
                        "--state {value}: '{name}' is not a usable Secret name (lowercase \
                         letters, digits, '-' and '.', at most 248 so that NAME-lock fits, \
                         starting and ending with a letter or digit)"
                    ));
                }
                Ok(StateArg::Kube {
                    url: format!("kubernetes://{namespace}/{name}"),
                })
            }
            other => Err(format!(
                "--state {value}: unknown backend {other}://; give {STATE_FORMS}"
            )),
        }
    }

    /// The directory for a plain path.
    pub(crate) fn dir(&self) -> Option<&Path> {
        match self {
            StateArg::Dir(d) => Some(d),
            _ => None,
        }
    }
}

fn two_parts(rest: &str) -> (&str, &str) {
    rest.split_once('/').unwrap_or((rest, ""))
}

#[derive(Clone, Copy)]
enum Bucket {
    S3,
    Gcs,
}

fn check_bucket(
    value: &str,
    form: &str,
    bucket: &str,
    service: Bucket,
) -> std::result::Result<(), String> {
    if bucket.is_empty() {
        return Err(format!("--state {value}: no bucket; expected {form}"));
    }
    let (name, max, chars) = match service {
        Bucket::S3 => ("S3", 63, "'-' or '.'"),
        Bucket::Gcs => ("GCS", 222, "'-', '_' or '.'"),
    };
    let ok_chars = bucket.chars().all(|c| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '-' | '.')
            || (c == '_' && matches!(service, Bucket::Gcs))
    });
    let ends_ok = bucket
        .chars()
        .next()
        .zip(bucket.chars().last())
        .is_some_and(|(a, b)| a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric());
    if !(3..=max).contains(&bucket.len()) || !ok_chars || !ends_ok {
        return Err(format!(
            "--state {value}: '{bucket}' is not a valid {name} bucket name (3 to {max} \
             lowercase letters, digits, {chars}, starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

fn check_key(value: &str, form: &str, key: &str, what: &str) -> std::result::Result<(), String> {
    if key.is_empty() || key.ends_with('/') {
        return Err(format!(
            "--state {value}: no {what} (the object that holds the state); expected {form}"
        ));
    }
    if key.len() > 1000 {
        return Err(format!("--state {value}: the {what} is too long"));
    }
    Ok(())
}

fn is_dns_subdomain(s: &str, max: usize) -> bool {
    s.len() <= max && s.split('.').all(|label| is_dns_label(label, 63))
}

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// How to reach a state backend.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reach {
    /// API endpoint override (an S3 or GCS emulator).
    #[cfg_attr(not(any(feature = "aws", feature = "gcp")), allow(dead_code))]
    pub(crate) endpoint: Option<String>,
}

/// Open the store `--state` names. Nothing is read or written yet.
pub(crate) async fn open(arg: &StateArg, reach: &Reach) -> Result<Arc<dyn StateStore>> {
    match arg {
        StateArg::Dir(dir) => Ok(Arc::new(FileStateStore::new(dir.join("state.json")))),
        StateArg::S3 { url } => open_s3(url, reach).await,
        StateArg::Gcs { url } => open_gcs(url, reach).await,
        StateArg::Kube { url } => open_kube(url, reach).await,
    }
}

#[cfg(not(all(feature = "aws", feature = "gcp")))]
fn unavailable(url: &str, what: &str, feature: &str) -> Error {
    Error::invalid_input(format!(
        "--state {url}: {what} state is not available in this build (built without the \
         `{feature}` feature); use cargo run -p gitpod-refarch-examples, or a directory"
    ))
}

#[cfg(feature = "aws")]
async fn open_s3(url: &str, reach: &Reach) -> Result<Arc<dyn StateStore>> {
    // Credentials, region and endpoint as the AWS CLI finds them (AWS_PROFILE,
    // AWS_REGION, AWS_ENDPOINT_URL_S3, ...), unless --state-endpoint says otherwise.
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = &reach.endpoint {
        loader = loader.endpoint_url(endpoint.clone());
    }
    let sdk = loader.load().await;
    Ok(Arc::new(gitpod_refarch_aws::S3StateStore::from_url(
        url, &sdk,
    )?))
}

#[cfg(not(feature = "aws"))]
async fn open_s3(url: &str, _reach: &Reach) -> Result<Arc<dyn StateStore>> {
    Err(unavailable(url, "S3", "aws"))
}

#[cfg(feature = "gcp")]
async fn open_gcs(url: &str, reach: &Reach) -> Result<Arc<dyn StateStore>> {
    use gitpod_refarch_gcp::GcsStoreConfig;
    let mut config = GcsStoreConfig::default();
    if let Some(endpoint) = &reach.endpoint {
        config = config.endpoint_url(endpoint.clone());
    }
    Ok(Arc::new(gitpod_refarch_gcp::GcsStateStore::connect(
        url, &config,
    )?))
}

#[cfg(not(feature = "gcp"))]
async fn open_gcs(url: &str, _reach: &Reach) -> Result<Arc<dyn StateStore>> {
    Err(unavailable(url, "GCS", "gcp"))
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
async fn open_kube(url: &str, _reach: &Reach) -> Result<Arc<dyn StateStore>> {
    // kube-rs with rustls needs a process-wide provider when more than one is built in
    // (the cloud SDKs bring aws-lc-rs): ring, as the bootstrap uses.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    // The cluster as kubectl finds it: KUBECONFIG, ~/.kube/config, or in-cluster.
    let client = kube::Client::try_default().await.map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "--state {url}: no Kubernetes cluster to keep the state in (set KUBECONFIG \
                 or the current kubectl context)"
            ),
        )
        .with_source(e)
    })?;
    Ok(Arc::new(
        gitpod_refarch_bootstrap::KubeStateStore::from_url(url, client)?,
    ))
}

#[cfg(not(any(feature = "aws", feature = "gcp", feature = "azure")))]
async fn open_kube(url: &str, _reach: &Reach) -> Result<Arc<dyn StateStore>> {
    Err(unavailable(url, "Kubernetes", "aws, gcp or azure"))
}

/// A store that keeps the simulated cloud's file in step with the state: read again
/// once the run's lock is taken, written before it is released. A process that is
/// refused the lock leaves both alone.
pub(crate) struct SimSynced {
    inner: Arc<dyn StateStore>,
    sim: Arc<SimCloud>,
    file: PathBuf,
    held: AtomicBool,
}

impl SimSynced {
    /// `inner`, with `sim` kept in `file`.
    pub(crate) fn new(inner: Arc<dyn StateStore>, sim: Arc<SimCloud>, file: PathBuf) -> Self {
        SimSynced {
            inner,
            sim,
            file,
            held: AtomicBool::new(false),
        }
    }

    /// Load the simulated cloud from its file, if there is one.
    pub(crate) fn load_sim(&self) -> Result<()> {
        match std::fs::read_to_string(&self.file) {
            Ok(text) => self.sim.load_json(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::new(
                ErrorKind::State,
                format!("cannot read the simulated cloud {}", self.file.display()),
            )
            .with_source(e)),
        }
    }

    fn save_sim(&self) -> Result<()> {
        let json = self.sim.to_json()?;
        gitpod_refarch::state::write_private(&self.file, json.as_bytes())
    }
}

#[gitpod_refarch::async_trait]
impl StateStore for SimSynced {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn load(&self) -> Result<Option<Stored>> {
        self.inner.load().await
    }

    async fn save(&self, state: &State, expected: Option<&Generation>) -> Result<Generation> {
        self.inner.save(state, expected).await
    }

    async fn lock(&self, request: &LockRequest) -> Result<LockInfo> {
        let info = self.inner.lock(request).await?;
        // The cloud as the last holder left it.
        if let Err(e) = self.load_sim() {
            let _ = self.inner.unlock(&info).await;
            return Err(e);
        }
        self.held.store(true, Ordering::SeqCst);
        Ok(info)
    }

    async fn unlock(&self, lock: &LockInfo) -> Result<()> {
        let saved = if self.held.swap(false, Ordering::SeqCst) {
            self.save_sim()
        } else {
            Ok(())
        };
        let released = self.inner.unlock(lock).await;
        saved.and(released)
    }

    async fn current_lock(&self) -> Result<Option<LockInfo>> {
        self.inner.current_lock().await
    }

    async fn break_lock(&self, id: &str) -> Result<LockInfo> {
        self.inner.break_lock(id).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_and_paths_parse_or_are_refused_with_the_expected_form() {
        assert_eq!(
            StateArg::parse(".gitpod-refarch").unwrap(),
            StateArg::Dir(".gitpod-refarch".into())
        );
        assert!(matches!(
            StateArg::parse("s3://my-bucket/gitpod/state.json").unwrap(),
            StateArg::S3 { .. }
        ));
        assert!(matches!(
            StateArg::parse("gs://my_bucket/state.json").unwrap(),
            StateArg::Gcs { .. }
        ));
        assert!(matches!(
            StateArg::parse("kubernetes://gitpod/refarch-state").unwrap(),
            StateArg::Kube { .. }
        ));
        for (bad, says) in [
            ("s3://", "no bucket"),
            ("s3://bucket", "no key"),
            ("s3://bucket/", "no key"),
            ("s3://Bad_Bucket/k", "not a valid S3 bucket name"),
            ("s3://my_bucket/k", "not a valid S3 bucket name"),
            ("gs:///x", "no bucket"),
            ("gs://b-b/", "no object name"),
            ("kubernetes://ns", "kubernetes://NAMESPACE/NAME"),
            ("kubernetes:///name", "kubernetes://NAMESPACE/NAME"),
            ("kubernetes://NS/name", "not a namespace name"),
            ("kubernetes://ns/a/b", "not a usable Secret name"),
            ("kubernetes://ns/-x", "not a usable Secret name"),
            ("ftp://x/y", "unknown backend ftp://"),
            ("", "--state is empty"),
        ] {
            let e = StateArg::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
