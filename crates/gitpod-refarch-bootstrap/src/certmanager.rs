//! cert-manager: installed the guide's way with the `helm` CLI when it is on `PATH`,
//! or from the pinned release manifest checked against its SHA-256 digest; then ready
//! when its CRDs are `Established`, its three Deployments are available and its
//! webhook accepts a (dry-run) ClusterIssuer. No fixed sleeps: the engine polls.

use std::path::PathBuf;

use gitpod_refarch::plan::CERT_MANAGER_VERSION;
use gitpod_refarch::resource::CertManagerSpec;
use gitpod_refarch::{Error, ErrorKind, Result};
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::{self, KubeApi};
use crate::objects::{self, CERT_MANAGER, CERT_MANAGER_CRDS, CERT_MANAGER_WEBHOOK};

/// The SHA-256 of the `cert-manager.yaml` of [`CERT_MANAGER_VERSION`] (v1.18.2) as
/// published on the cert-manager GitHub release.
pub const PINNED_MANIFEST_SHA256: &str =
    "0546b64bc806237885ccc80e345bce1585eb2ec2f476a7af593f030abdb3a16f";

/// The chart repository of the guide's `helm` command.
pub const HELM_REPO: &str = "https://charts.jetstack.io";

/// A release manifest and its expected digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `https://...`, `http://...` or `file:///...`.
    pub url: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
}

impl Manifest {
    /// The pinned release: [`CERT_MANAGER_VERSION`] from GitHub, [`PINNED_MANIFEST_SHA256`].
    pub fn pinned() -> Self {
        Manifest {
            url: format!(
                "https://github.com/cert-manager/cert-manager/releases/download/{CERT_MANAGER_VERSION}/cert-manager.yaml"
            ),
            sha256: PINNED_MANIFEST_SHA256.into(),
        }
    }

    /// Another manifest (a mirror, or a file), with its digest.
    pub fn new(url: impl Into<String>, sha256: impl Into<String>) -> Self {
        Manifest {
            url: url.into(),
            sha256: sha256.into(),
        }
    }

    /// Check the URL's scheme and the digest's form (64 hex digits), with no IO.
    pub fn validate(&self) -> Result<()> {
        let scheme_ok = ["https://", "http://", "file://"]
            .iter()
            .any(|p| self.url.starts_with(p) && self.url.len() > p.len());
        if !scheme_ok {
            return Err(Error::invalid_input(format!(
                "cert-manager manifest: `{}` is not an https://, http:// or file:// URL",
                self.url
            )));
        }
        let sha = self.sha256.trim();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid_input(format!(
                "cert-manager manifest: the SHA-256 `{sha}` is not 64 hexadecimal digits"
            )));
        }
        Ok(())
    }

    /// Fetch it and check the digest; nothing is applied from a file that differs.
    pub async fn fetch(&self) -> Result<String> {
        self.validate()?;
        let bytes = if let Some(path) = self.url.strip_prefix("file://") {
            tokio::fs::read(path).await.map_err(|e| {
                Error::invalid_input(format!("cannot read the cert-manager manifest {path}"))
                    .with_source(e)
            })?
        } else {
            download(&self.url).await?
        };
        let got = hex(&Sha256::digest(&bytes));
        if !got.eq_ignore_ascii_case(self.sha256.trim()) {
            return Err(Error::invalid_input(format!(
                "the cert-manager manifest {} has SHA-256 {got}, expected {}: refusing to apply it",
                self.url, self.sha256
            )));
        }
        String::from_utf8(bytes).map_err(|e| {
            Error::invalid_input("the cert-manager manifest is not UTF-8").with_source(e)
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn download(url: &str) -> Result<Vec<u8>> {
    let transient = |e: &dyn std::fmt::Display| {
        Error::new(ErrorKind::Transient, format!("cannot download {url}: {e}"))
    };
    let https = crate::access::https_connector(None)?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(https);
    let mut target = url.to_string();
    // GitHub release downloads redirect to a CDN: follow a few redirects.
    for _ in 0..5 {
        let uri: http::Uri = target
            .parse()
            .map_err(|_| Error::invalid_input(format!("not a URL: {target}")))?;
        let resp = client.get(uri).await.map_err(|e| transient(&e))?;
        let status = resp.status();
        if status.is_redirection() {
            target = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| transient(&"redirect without location"))?
                .to_string();
            continue;
        }
        if !status.is_success() {
            let kind = if status.is_server_error() {
                ErrorKind::Transient
            } else {
                ErrorKind::InvalidInput
            };
            return Err(Error::new(kind, format!("GET {target}: HTTP {status}")));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transient(&e))?;
        return Ok(body.to_bytes().to_vec());
    }
    Err(transient(&"too many redirects"))
}

/// How cert-manager gets installed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertManagerSource {
    /// `helm` if it is on `PATH`, else the pinned manifest.
    Auto,
    /// The guide's `helm upgrade --install` with this binary.
    Helm(PathBuf),
    /// A release manifest with its digest.
    Manifest(Manifest),
}

impl CertManagerSource {
    /// What `Auto` comes to on this machine.
    pub fn resolve(&self) -> CertManagerSource {
        self.resolve_in(std::env::var_os("PATH"))
    }

    fn resolve_in(&self, path: Option<std::ffi::OsString>) -> CertManagerSource {
        match self {
            CertManagerSource::Auto => match find_on_path("helm", path) {
                Some(p) => CertManagerSource::Helm(p),
                None => CertManagerSource::Manifest(Manifest::pinned()),
            },
            other => other.clone(),
        }
    }
}

fn find_on_path(binary: &str, path: Option<std::ffi::OsString>) -> Option<PathBuf> {
    path.and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(binary))
            .find(|p| p.is_file())
    })
}

/// The guide's `helm` arguments for `spec`, against the kubeconfig at `kubeconfig`.
pub fn helm_args(spec: &CertManagerSpec, kubeconfig: &str) -> Vec<String> {
    let servers = spec.recursive_nameservers.join("\\,");
    vec![
        "upgrade".into(),
        "--install".into(),
        "--atomic".into(),
        "--cleanup-on-fail".into(),
        "--create-namespace".into(),
        "--namespace".into(),
        spec.namespace.clone(),
        "--reset-values".into(),
        "--repo".into(),
        HELM_REPO.into(),
        "--version".into(),
        spec.version.clone(),
        "--set".into(),
        "installCRDs=true".into(),
        "--set".into(),
        format!(
            "extraArgs={{--dns01-recursive-nameservers-only=true,--dns01-recursive-nameservers={servers}}}"
        ),
        "--kubeconfig".into(),
        kubeconfig.into(),
        CERT_MANAGER.into(),
        CERT_MANAGER.into(),
    ]
}

/// Run `helm` (its output is logged, not returned: it names the cluster only).
pub async fn helm_install(helm: &PathBuf, spec: &CertManagerSpec, kubeconfig: &str) -> Result<()> {
    let out = tokio::process::Command::new(helm)
        .args(helm_args(spec, kubeconfig))
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            Error::invalid_input(format!("cannot run {}", helm.display())).with_source(e)
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::new(
            ErrorKind::Transient,
            format!("helm install of cert-manager failed: {}", stderr.trim()),
        ));
    }
    Ok(())
}

/// Apply the manifest's objects in order (CRDs and namespaces first).
pub async fn apply_manifest(client: &KubeApi, objects: &[Value]) -> Result<Vec<String>> {
    let rank = |o: &Value| match o["kind"].as_str() {
        Some("CustomResourceDefinition") => 0,
        Some("Namespace") => 1,
        _ => 2,
    };
    let mut ordered: Vec<&Value> = objects.iter().collect();
    ordered.sort_by_key(|o| rank(o));
    let mut applied = Vec::new();
    for o in ordered {
        api::apply(client, o).await?;
        applied.push(api::describe(o));
    }
    Ok(applied)
}

/// How far an install of cert-manager is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// CRDs Established, Deployments available (and the webhook admits objects, when
    /// probed).
    Ready,
    /// Still starting: why.
    Starting(String),
    /// A part of the release does not exist (an install stopped half-way): which.
    Missing(String),
}

/// How far cert-manager in `ns` is. With `probe_webhook`, the webhook must also admit
/// a dry-run ClusterIssuer (a write call with no effect; a plain observation leaves it
/// out).
pub async fn readiness(client: &KubeApi, ns: &str, probe_webhook: bool) -> Result<Readiness> {
    for crd in CERT_MANAGER_CRDS {
        match api::get(
            client,
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            crd,
        )
        .await?
        {
            None => return Ok(Readiness::Missing(format!("CRD {crd} is missing"))),
            Some(c) if !condition(&c, "Established") => {
                return Ok(Readiness::Starting(format!("CRD {crd} is not Established")))
            }
            Some(_) => {}
        }
    }
    for d in [
        CERT_MANAGER,
        "cert-manager-cainjector",
        CERT_MANAGER_WEBHOOK,
    ] {
        match api::get(client, "apps/v1", "Deployment", Some(ns), d).await? {
            None => {
                return Ok(Readiness::Missing(format!(
                    "Deployment {ns}/{d} is missing"
                )))
            }
            Some(dep) if !condition(&dep, "Available") => {
                return Ok(Readiness::Starting(format!(
                    "Deployment {ns}/{d} is not available"
                )))
            }
            Some(_) => {}
        }
    }
    if !probe_webhook {
        return Ok(Readiness::Ready);
    }
    match api::dry_run_create(client, &objects::webhook_probe()).await {
        Ok(()) => Ok(Readiness::Ready),
        Err(e) if e.kind() == ErrorKind::PropagationDelay || e.kind() == ErrorKind::Transient => {
            Ok(Readiness::Starting(
                "the cert-manager webhook does not answer yet".into(),
            ))
        }
        Err(e) => Err(e),
    }
}

/// Whether `obj` has the condition `type` with status `True`.
pub fn condition(obj: &Value, type_: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == type_ && c["status"] == "True")
}

/// Whether `obj` has the condition `type` with status `True` **for its current
/// generation**: a condition whose `observedGeneration` is below
/// `metadata.generation` was set before the last change of the spec (cert-manager has
/// not reconciled it yet) and does not count. A condition without
/// `observedGeneration`, or an object without `metadata.generation`, is taken as it is.
pub fn current_condition(obj: &Value, type_: &str) -> bool {
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            let observed = c.get("observedGeneration").and_then(Value::as_i64);
            c["type"] == type_
                && c["status"] == "True"
                && match (observed, generation) {
                    (Some(o), Some(g)) => o >= g,
                    _ => true,
                }
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec() -> CertManagerSpec {
        gitpod_refarch::plan::graph(
            &gitpod_refarch::ReferenceArchitecture::from_yaml(
                "cloud: gcp\nname: gp\ndomain: gitpod.example.com\ngcp:\n  project: p\n",
            )
            .unwrap(),
        )
        .into_iter()
        .find_map(|n| match n.desired {
            gitpod_refarch::resource::Desired::CertManager(c) => Some(c),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn a_ready_condition_counts_only_at_the_current_generation() {
        let obj = |generation: Value, observed: Value| {
            serde_json::json!({
                "metadata": {"generation": generation},
                "status": {"conditions": [
                    {"type": "Ready", "status": "True", "observedGeneration": observed},
                ]},
            })
        };
        let stale = obj(2.into(), 1.into());
        assert!(condition(&stale, "Ready"));
        assert!(!current_condition(&stale, "Ready"));
        assert!(current_condition(&obj(2.into(), 2.into()), "Ready"));
        // Not recorded on either side: taken as it is.
        assert!(current_condition(&obj(Value::Null, 1.into()), "Ready"));
        assert!(current_condition(&obj(2.into(), Value::Null), "Ready"));
        let not_ready = serde_json::json!({
            "metadata": {"generation": 1},
            "status": {"conditions": [{"type": "Ready", "status": "False", "observedGeneration": 1}]},
        });
        assert!(!current_condition(&not_ready, "Ready"));
    }

    #[test]
    fn helm_runs_the_guides_command_at_the_pinned_version() {
        let args = helm_args(&spec(), "/tmp/kc");
        let line = args.join(" ");
        assert!(line.starts_with("upgrade --install --atomic --cleanup-on-fail --create-namespace --namespace cert-manager --reset-values"), "{line}");
        assert!(
            line.contains("--repo https://charts.jetstack.io --version v1.18.2"),
            "{line}"
        );
        assert!(line.contains("--set installCRDs=true"), "{line}");
        // One --set value, with the comma between the two servers escaped for helm.
        assert!(args.contains(&"extraArgs={--dns01-recursive-nameservers-only=true,--dns01-recursive-nameservers=8.8.8.8:53\\,1.1.1.1:53}".to_string()), "{line}");
        assert!(
            line.ends_with("--kubeconfig /tmp/kc cert-manager cert-manager"),
            "{line}"
        );
    }

    #[test]
    fn auto_uses_helm_when_it_is_on_the_path_else_the_pinned_manifest() {
        let dir = std::env::temp_dir().join(format!("gitpod-refarch-helm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = std::env::join_paths([std::path::Path::new("/nonexistent"), &dir]).unwrap();
        assert_eq!(
            CertManagerSource::Auto.resolve_in(Some(path.clone())),
            CertManagerSource::Manifest(Manifest::pinned())
        );
        std::fs::write(dir.join("helm"), "#!/bin/sh\n").unwrap();
        assert_eq!(
            CertManagerSource::Auto.resolve_in(Some(path)),
            CertManagerSource::Helm(dir.join("helm"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let m = Manifest::pinned();
        assert!(
            m.url
                .ends_with("/releases/download/v1.18.2/cert-manager.yaml"),
            "{}",
            m.url
        );
        assert_eq!(m.sha256.len(), 64);
    }

    #[test]
    fn a_malformed_source_is_refused_without_io() {
        let ok = "ab".repeat(32);
        assert!(Manifest::new("file:///m.yaml", &ok).validate().is_ok());
        assert!(Manifest::pinned().validate().is_ok());
        for (url, sha) in [
            ("ftp://x/m.yaml", ok.as_str()),
            ("m.yaml", ok.as_str()),
            ("https://", ok.as_str()),
            ("https://x/m.yaml", "abc"),
            ("https://x/m.yaml", &"zz".repeat(32)),
        ] {
            let err = Manifest::new(url, sha).validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url} {sha}");
        }
    }

    #[tokio::test]
    async fn a_manifest_whose_digest_differs_is_refused_before_parsing() {
        let dir = std::env::temp_dir().join(format!("gitpod-refarch-mf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("m.yaml");
        std::fs::write(&file, "kind: Namespace\n").unwrap();
        let url = format!("file://{}", file.display());
        // sha256("kind: Namespace\n")
        let good = hex(&Sha256::digest(b"kind: Namespace\n"));
        assert_eq!(
            Manifest::new(&url, &good).fetch().await.unwrap(),
            "kind: Namespace\n"
        );
        let err = Manifest::new(&url, "ab".repeat(32))
            .fetch()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains(&good), "{}", err.message());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
