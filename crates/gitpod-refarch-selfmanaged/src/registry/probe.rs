//! The `registry.*` checks of `verify`: sign in, push a tiny image, pull it back,
//! delete it, with the credentials in the installer's `container-registry` secret.

use std::time::{Duration, Instant};

use base64::Engine as _;
use gitpod_refarch::installer::REGISTRY_SECRET;
use gitpod_refarch::verify::{Check, Part, VerifyContext};
use gitpod_refarch::Secret;
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, ImageLayer,
};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use reqwest::header::HeaderValue;

use super::http::{self, Failure, Session};
use super::url::RegistryUrl;
use crate::reach::Reach;

/// The repository the `registry.push` probe goes to, under the registry URL.
pub const PROBE_REPOSITORY: &str = "gitpod-refarch-verify";

const AUTH: &str = "registry.auth";
const PUSH: &str = "registry.push";
const PULL: &str = "registry.pull";
const CLEANUP: &str = "registry.cleanup";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// The registry checks for `ctx`'s bundle; `ca_pem` is a private CA to trust (the
/// bundle carries none).
pub(crate) async fn run(
    ctx: &VerifyContext<'_>,
    reach: &Reach,
    ca_pem: Option<&str>,
) -> Vec<Check> {
    let cr = &ctx.bundle.config["containerRegistry"];
    if cr["inCluster"].as_bool() == Some(true) {
        let why = "Gitpod's in-cluster registry (containerRegistry.inCluster: true) runs inside \
                   the cluster and is set up by the installer: nothing to check from here";
        return [AUTH, PUSH, PULL, CLEANUP]
            .iter()
            .map(|id| Check::skipped(*id, Part::Registry, why))
            .collect();
    }
    let started = Instant::now();
    let target = match target(ctx) {
        Ok(t) => t,
        Err((summary, fix)) => {
            return with_rest_skipped(
                Check::fail(
                    AUTH,
                    Part::Registry,
                    summary,
                    "Gitpod pushes workspace images with what the installer config names",
                )
                .fix(fix)
                .took(started.elapsed()),
                "registry.auth did not pass",
            )
        }
    };
    let client = match http::build_client(ca_pem, reach.timeout) {
        Ok(c) => c,
        Err(e) => {
            return with_rest_skipped(
                Check::fail(
                    AUTH,
                    Part::Registry,
                    e.message().to_string(),
                    "no HTTP client",
                )
                .fix("check registry.caFile")
                .took(started.elapsed()),
                "registry.auth did not pass",
            )
        }
    };
    let session = Session {
        client: &client,
        url: &target.url,
        username: &target.username,
        password: &target.password,
    };
    let auth = auth_check(&session, &target, reach, ca_pem.is_some(), started).await;
    if !auth.passed() {
        return with_rest_skipped(auth, "registry.auth did not pass");
    }
    let mut checks = vec![auth];
    checks.extend(push_pull_cleanup(&session, &target, reach, ca_pem).await);
    checks
}

fn with_rest_skipped(first: Check, why: &str) -> Vec<Check> {
    let mut v = vec![first];
    for id in [PUSH, PULL, CLEANUP] {
        v.push(Check::skipped(id, Part::Registry, why));
    }
    v
}

/// What the bundle says: where and as whom.
struct Target {
    url: RegistryUrl,
    config_url: String,
    username: String,
    password: Secret,
}

fn target(ctx: &VerifyContext<'_>) -> Result<Target, (String, String)> {
    let raw = ctx.bundle.config["containerRegistry"]["external"]["url"]
        .as_str()
        .ok_or_else(|| {
            (
                "the installer config has no containerRegistry.external.url".to_string(),
                "apply the installation so the registry's outputs exist".to_string(),
            )
        })?;
    let url = RegistryUrl::parse("containerRegistry.external.url", raw, false).map_err(|e| {
        (
            e.message().to_string(),
            "fix registry.url and apply again".to_string(),
        )
    })?;
    let secret = ctx
        .bundle
        .secret(REGISTRY_SECRET)
        .and_then(|s| s.data.get(".dockerconfigjson"))
        .ok_or_else(|| {
            (
                format!("the installer bundle has no `{REGISTRY_SECRET}` secret with `.dockerconfigjson`"),
                "apply the installation so the registry's credentials exist".to_string(),
            )
        })?;
    let (username, password) = credentials_for(secret, &url.host).ok_or_else(|| {
        (
            format!(
                "the `{REGISTRY_SECRET}` secret has no usable credentials for {}",
                url.host
            ),
            format!(
                "its `.dockerconfigjson` needs `auths.\"{}\"` with username and password",
                url.host
            ),
        )
    })?;
    Ok(Target {
        config_url: raw.to_string(),
        url,
        username,
        password,
    })
}

/// The user and password for `host` in a `.dockerconfigjson`.
fn credentials_for(docker: &Secret, host: &str) -> Option<(String, Secret)> {
    let v: serde_json::Value = serde_json::from_str(docker.expose()).ok()?;
    let auths = v["auths"].as_object()?;
    let key_host = |k: &str| {
        let k = k
            .strip_prefix("https://")
            .or_else(|| k.strip_prefix("http://"))
            .unwrap_or(k);
        k.split('/').next().unwrap_or("").to_ascii_lowercase()
    };
    let entry = auths
        .iter()
        .find(|(k, _)| key_host(k) == host.to_ascii_lowercase())
        .map(|(_, e)| e)?;
    if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Some((u.to_string(), Secret::new(p.to_string())));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str()?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), Secret::new(p.to_string())))
}

async fn auth_check(
    s: &Session<'_>,
    t: &Target,
    reach: &Reach,
    ca_given: bool,
    started: Instant,
) -> Check {
    let host = &t.url.host;
    let user = &t.username;
    let check = match tokio::time::timeout(reach.timeout.saturating_mul(3), s.ping()).await {
        Ok(Ok(scheme)) => Check::pass(
            AUTH,
            Part::Registry,
            format!("`{user}` signs in to {host} ({})", scheme.as_str()),
        ),
        Ok(Err(Failure::Rejected { status, detail })) => Check::fail(
            AUTH,
            Part::Registry,
            format!(
                "{host} rejected user `{user}` (HTTP {status}){}",
                colon(&detail)
            ),
            "Gitpod pushes and pulls workspace images with the credentials in the \
             container-registry secret",
        )
        .fix(format!(
            "put the current password or token of `{user}` in registry.password and apply again"
        )),
        Ok(Err(Failure::Tls(e))) => tls_fail(AUTH, host, &e, ca_given),
        Ok(Err(Failure::Unreachable(e))) => {
            reach.unreachable(AUTH, Part::Registry, &format!("the registry {host}"), e)
        }
        Ok(Err(f)) => Check::fail(
            AUTH,
            Part::Registry,
            format!("{host} did not accept `{user}` on `GET /v2/`: {f}"),
            "Gitpod signs in to the registry the same way",
        )
        .fix(format!(
            "check that {} is the OCI registry Gitpod should use",
            t.config_url
        )),
        Err(_) => reach.unreachable(
            AUTH,
            Part::Registry,
            &format!("the registry {host}"),
            "timed out",
        ),
    };
    check.took(started.elapsed())
}

fn colon(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

fn tls_fail(id: &str, host: &str, err: &str, ca_given: bool) -> Check {
    Check::fail(
        id,
        Part::Registry,
        format!("the TLS certificate of {host} is not trusted: {err}"),
        "Gitpod and the nodes' container runtime must trust the registry's certificate",
    )
    .fix(if ca_given {
        format!("registry.caFile does not verify {host}'s certificate: give the CA that signed it")
    } else {
        "if the registry uses a private CA, set registry.caFile to it (PEM) and give the \
         cluster's nodes the CA too"
            .to_string()
    })
}

/// The probe image: a one-file tar layer, an image config, their manifest.
struct Probe {
    reference: Reference,
    repository: String,
    tag: String,
    layer: Vec<u8>,
    layer_digest: String,
    config: Vec<u8>,
    config_digest: String,
    manifest: Vec<u8>,
    manifest_digest: String,
}

fn sha256(data: &[u8]) -> String {
    ImageLayer::new(data.to_vec(), String::new(), None).sha256_digest()
}

impl Probe {
    fn new(url: &RegistryUrl) -> Result<Probe, String> {
        let tag = format!("probe-{:016x}", rand::random::<u64>());
        let repository = url.repository(PROBE_REPOSITORY);
        let image = format!("{}/{repository}:{tag}", url.host);
        let reference: Reference = image
            .parse()
            .map_err(|e| format!("`{image}` is not an image reference: {e}"))?;
        let content = format!("gitpod-refarch verify probe {tag}; safe to delete\n");
        let layer = tar_one_file("gitpod-refarch-verify.txt", content.as_bytes());
        let layer_digest = sha256(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .map_err(|e| e.to_string())?;
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer.len()}],
            "annotations": {"org.opencontainers.image.description": "gitpod-refarch verify probe; safe to delete"},
        }))
        .map_err(|e| e.to_string())?;
        let manifest_digest = sha256(&manifest);
        Ok(Probe {
            reference,
            repository,
            tag,
            layer,
            layer_digest,
            config,
            config_digest,
            manifest,
            manifest_digest,
        })
    }

    fn name(&self, url: &RegistryUrl) -> String {
        format!("{}/{}:{}", url.to_config_url(), PROBE_REPOSITORY, self.tag)
    }
}

/// A ustar archive holding one regular file (mode 0644, mtime 0).
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: u64) {
        // width-1 octal digits, then NUL.
        let s = format!("{:0w$o}", value, w = field.len() - 1);
        field[..s.len()].copy_from_slice(s.as_bytes());
        field[field.len() - 1] = 0;
    }
    let mut h = [0u8; 512];
    let n = name.len().min(99);
    h[..n].copy_from_slice(&name.as_bytes()[..n]);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], data.len() as u64);
    octal(&mut h[136..148], 0);
    h[148..156].copy_from_slice(b"        ");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// What a failed oci-client call means here.
enum OciFailure {
    /// The registry said no to this user (401/403/405, DENIED, UNAUTHORIZED, ...).
    Refused(String),
    Transport(Failure),
    Other(String),
}

fn classify(e: OciDistributionError) -> OciFailure {
    match e {
        OciDistributionError::ServerError { code, message, .. }
            if matches!(code, 401 | 403 | 405) =>
        {
            OciFailure::Refused(format!("HTTP {code}{}", colon(message.trim())))
        }
        OciDistributionError::UnauthorizedError { .. } => {
            OciFailure::Refused("HTTP 401".to_string())
        }
        OciDistributionError::AuthenticationFailure(m) => {
            OciFailure::Refused(format!("the token service refused: {}", m.trim()))
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let refused = envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::Denied | OciErrorCode::Unauthorized | OciErrorCode::Unsupported
                )
            });
            let text = envelope
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            if refused {
                OciFailure::Refused(text)
            } else {
                OciFailure::Other(text)
            }
        }
        OciDistributionError::RequestError(r) => OciFailure::Transport(http::transport(&r)),
        other => OciFailure::Other(http::chain(&other)),
    }
}

async fn push_pull_cleanup(
    s: &Session<'_>,
    t: &Target,
    reach: &Reach,
    ca_pem: Option<&str>,
) -> Vec<Check> {
    let host = &t.url.host;
    let started = Instant::now();
    let skip_rest = |first: Check, why: &str| {
        vec![
            first,
            Check::skipped(PULL, Part::Registry, why),
            Check::skipped(CLEANUP, Part::Registry, format!("{why}: nothing to delete")),
        ]
    };
    let probe = match Probe::new(&t.url) {
        Ok(p) => p,
        Err(e) => {
            return skip_rest(
                Check::fail(PUSH, Part::Registry, e, "no probe image").fix("check registry.url"),
                "registry.push did not pass",
            )
        }
    };
    let client = match oci_client(&t.url, reach.timeout, ca_pem) {
        Ok(c) => c,
        Err(e) => {
            return skip_rest(
                Check::fail(PUSH, Part::Registry, e, "no OCI client").fix("check registry.caFile"),
                "registry.push did not pass",
            )
        }
    };
    let auth = RegistryAuth::Basic(t.username.clone(), t.password.expose().clone());
    let name = probe.name(&t.url);
    let budget = reach.timeout.saturating_mul(6);

    // push
    let pushed = tokio::time::timeout(budget, push(&client, &probe, &auth)).await;
    let push_check = match pushed {
        Ok(Ok(())) => Check::pass(
            PUSH,
            Part::Registry,
            format!(
                "pushed {name} ({} bytes in 2 blobs and a manifest)",
                probe.layer.len() + probe.config.len() + probe.manifest.len()
            ),
        ),
        Ok(Err(OciFailure::Refused(why))) => Check::fail(
            PUSH,
            Part::Registry,
            format!("{host} refused the push of {name} ({why})"),
            "Gitpod pushes every workspace image it builds (HTTP 405 can also mean the \
             registry is read-only)",
        )
        .fix(format!(
            "the credentials in container-registry cannot push to {}: give the user push \
             rights on the project/repository",
            t.config_url
        )),
        Ok(Err(OciFailure::Transport(Failure::Tls(e)))) => {
            tls_fail(PUSH, host, &e, ca_pem.is_some())
        }
        Ok(Err(OciFailure::Transport(f))) => {
            reach.unreachable(PUSH, Part::Registry, &format!("the registry {host}"), f)
        }
        Ok(Err(OciFailure::Other(e))) => Check::fail(
            PUSH,
            Part::Registry,
            format!("the push of {name} failed: {e}"),
            "Gitpod pushes every workspace image it builds",
        )
        .fix(format!(
            "check that `{}` may push to {} and that the registry has space",
            t.username, t.config_url
        )),
        Err(_) => reach.unreachable(
            PUSH,
            Part::Registry,
            &format!("the registry {host}"),
            format!("the push did not finish in {budget:?}"),
        ),
    }
    .took(started.elapsed());
    if !push_check.passed() {
        // A partial push may have left blobs, never a tag: nothing to name.
        return skip_rest(push_check, "registry.push did not pass");
    }

    // pull
    let started = Instant::now();
    let pulled = tokio::time::timeout(budget, pull(&client, &probe, &auth)).await;
    let pull_check = match pulled {
        Ok(Ok(())) => Check::pass(
            PULL,
            Part::Registry,
            format!(
                "pulled {name} back: manifest {} and layer match",
                short(&probe.manifest_digest)
            ),
        ),
        Ok(Err(PullFailure::Mismatch(m))) => Check::fail(
            PULL,
            Part::Registry,
            m,
            "Gitpod runs workspaces from the images it pushed",
        )
        .fix("the registry changes what it stores: check its proxy/cache settings"),
        Ok(Err(PullFailure::Oci(OciFailure::Transport(Failure::Tls(e))))) => {
            tls_fail(PULL, host, &e, ca_pem.is_some())
        }
        Ok(Err(PullFailure::Oci(OciFailure::Transport(f)))) => {
            reach.unreachable(PULL, Part::Registry, &format!("the registry {host}"), f)
        }
        Ok(Err(PullFailure::Oci(OciFailure::Refused(e) | OciFailure::Other(e)))) => Check::fail(
            PULL,
            Part::Registry,
            format!("the pull of {name} failed: {e}"),
            "Gitpod runs workspaces from the images it pushed",
        )
        .fix(format!(
            "give `{}` pull rights on {}",
            t.username, t.config_url
        )),
        Err(_) => reach.unreachable(
            PULL,
            Part::Registry,
            &format!("the registry {host}"),
            format!("the pull did not finish in {budget:?}"),
        ),
    }
    .took(started.elapsed());

    // cleanup
    let started = Instant::now();
    let cleanup = cleanup(s, &probe, &name).await.took(started.elapsed());
    vec![push_check, pull_check, cleanup]
}

fn short(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}

fn oci_client(
    url: &RegistryUrl,
    timeout: Duration,
    ca_pem: Option<&str>,
) -> Result<Client, String> {
    let extra_root_certificates = match ca_pem {
        Some(pem) => vec![Certificate {
            encoding: CertificateEncoding::Pem,
            data: pem.as_bytes().to_vec(),
        }],
        None => Vec::new(),
    };
    Client::try_from(ClientConfig {
        protocol: if url.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        extra_root_certificates,
        connect_timeout: Some(timeout),
        read_timeout: Some(timeout),
        platform_resolver: None,
        ..ClientConfig::default()
    })
    .map_err(|e| format!("cannot build the OCI client: {}", http::chain(&e)))
}

async fn push(client: &Client, p: &Probe, auth: &RegistryAuth) -> Result<(), OciFailure> {
    client
        .auth(&p.reference, auth, RegistryOperation::Push)
        .await
        .map_err(classify)?;
    client
        .push_blob(&p.reference, p.layer.clone(), &p.layer_digest)
        .await
        .map_err(classify)?;
    client
        .push_blob(&p.reference, p.config.clone(), &p.config_digest)
        .await
        .map_err(classify)?;
    client
        .push_manifest_raw(
            &p.reference,
            p.manifest.clone(),
            HeaderValue::from_static(MANIFEST_TYPE),
        )
        .await
        .map_err(classify)?;
    Ok(())
}

enum PullFailure {
    Oci(OciFailure),
    Mismatch(String),
}

async fn pull(client: &Client, p: &Probe, auth: &RegistryAuth) -> Result<(), PullFailure> {
    let oci = |e| PullFailure::Oci(classify(e));
    client
        .auth(&p.reference, auth, RegistryOperation::Pull)
        .await
        .map_err(oci)?;
    let (body, digest) = client
        .pull_manifest_raw(&p.reference, auth, &[MANIFEST_TYPE])
        .await
        .map_err(oci)?;
    if digest != p.manifest_digest || body.as_ref() != p.manifest.as_slice() {
        return Err(PullFailure::Mismatch(format!(
            "the manifest pulled by tag {} has digest {digest}, the pushed one {}",
            p.tag, p.manifest_digest
        )));
    }
    let mut layer = Vec::new();
    client
        .pull_blob(&p.reference, p.layer_digest.as_str(), &mut layer)
        .await
        .map_err(oci)?;
    if layer != p.layer {
        return Err(PullFailure::Mismatch(format!(
            "the layer {} came back with {} bytes, {} were pushed",
            short(&p.layer_digest),
            layer.len(),
            p.layer.len()
        )));
    }
    Ok(())
}

async fn cleanup(s: &Session<'_>, p: &Probe, name: &str) -> Check {
    let left = |why: String| {
        Check::skipped(
            CLEANUP,
            Part::Registry,
            format!("{why}: the probe {name} was left behind"),
        )
        .fix(format!(
            "delete {name} by hand, or let a retention policy remove `{PROBE_REPOSITORY}` \
             tags (Gitpod itself never deletes images)"
        ))
    };
    match s
        .delete(&p.repository, "manifests", &p.manifest_digest)
        .await
    {
        Ok(_) => {
            // The blobs too, where the registry allows it (Harbor and most cloud
            // registries do not: their garbage collection removes them).
            let mut blobs = 0;
            for d in [&p.layer_digest, &p.config_digest] {
                if s.delete(&p.repository, "blobs", d).await.is_ok() {
                    blobs += 1;
                }
            }
            Check::pass(
                CLEANUP,
                Part::Registry,
                format!(
                    "deleted the probe manifest {} and {blobs} of 2 blobs",
                    short(&p.manifest_digest)
                ),
            )
        }
        Err(Failure::Rejected { status, .. }) => left(format!(
            "the credentials in container-registry may not delete (HTTP {status})"
        )),
        Err(Failure::Status {
            status: status @ (403 | 405),
            detail,
        }) => left(format!(
            "the registry does not let these credentials delete (HTTP {status}{})",
            colon(&detail)
        )),
        Err(f) => left(format!("the delete failed ({f})")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_probe_layer_is_a_valid_tar() {
        let t = tar_one_file("a.txt", b"hello");
        assert_eq!(t.len(), 512 + 512 + 1024);
        assert_eq!(&t[..5], b"a.txt");
        assert_eq!(&t[124..136], b"00000000005\0");
        assert_eq!(&t[257..263], b"ustar\0");
        // The checksum counts the field as spaces.
        let mut h = t[..512].to_vec();
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        let field = std::str::from_utf8(&t[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(field, 8).unwrap(), sum);
        assert_eq!(&t[512..517], b"hello");
    }

    #[test]
    fn finds_credentials_by_host() {
        let d = Secret::new(
            r#"{"auths":{"h.example.com:5000":{"username":"u","password":"p","auth":"dTpw"}}}"#
                .to_string(),
        );
        let (u, p) = credentials_for(&d, "h.example.com:5000").unwrap();
        assert_eq!((u.as_str(), p.expose().as_str()), ("u", "p"));
        assert!(credentials_for(&d, "other.example.com").is_none());
        let d =
            Secret::new(r#"{"auths":{"https://h.example.com/v1/":{"auth":"dTpwOng="}}}"#.into());
        let (u, p) = credentials_for(&d, "h.example.com").unwrap();
        assert_eq!((u.as_str(), p.expose().as_str()), ("u", "p:x"));
    }
}
