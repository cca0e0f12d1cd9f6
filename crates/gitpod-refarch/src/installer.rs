//! Render what Gitpod's installer consumes: `gitpod.config.yaml` and the Kubernetes
//! manifests of the secrets it references, with their exact keys
//! (`gitpod-anchors.md` b.2/b.3), plus the cert-manager `ClusterIssuer` and
//! `Certificate` for `https-certificates`.
//!
//! Secret manifests hold secret values by necessity; [`SecretManifest`]'s `Debug`
//! shows names and keys only, and [`InstallerBundle::write_to`] writes them with mode
//! 0600.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::outputs::Outputs;
use crate::private_file::write_private;
use crate::resource::{DatabaseEndpoint, DnsSolver, RegistryOutput, StorageOutput};
use crate::secret::Secret;
use crate::spec::{CertificateSettings, ReferenceArchitecture};

/// The Gitpod namespace.
pub const GITPOD_NAMESPACE: &str = "gitpod";
/// The ClusterIssuer name.
pub const ISSUER_NAME: &str = "gitpod-issuer";
/// The certificate (and its TLS secret) name.
pub const CERTIFICATE_NAME: &str = "https-certificates";
/// The secret holding the ACME account key of the ClusterIssuer.
pub const ISSUER_ACCOUNT_KEY: &str = "issuer-account-key";
/// The secret holding the database server's CA (`ca.crt`), when it has a private one.
pub const DATABASE_CA_SECRET: &str = "database-ca";
/// The registry pull/push secret name.
pub const REGISTRY_SECRET: &str = "container-registry";

/// The keys Gitpod's installer requires in a secret the config references (its
/// `ClusterValidation` checks each with `CheckSecretRequiredData`), by the secret's
/// name as [`render`] writes it; `None` for a name it does not render.
pub fn required_secret_keys(secret: &str) -> Option<&'static [&'static str]> {
    Some(match secret {
        "database" => &["encryptionKeys", "host", "password", "port", "username"],
        "cloudsql" => &["credentials.json", "encryptionKeys", "password", "username"],
        DATABASE_CA_SECRET => &["ca.crt"],
        "storage-s3" => &["accessKeyId", "secretAccessKey"],
        "storage-gcp" => &["service-account.json"],
        "storage-azure" => &["accountKey", "accountName"],
        REGISTRY_SECRET => &[".dockerconfigjson"],
        "container-registry-s3-backend" => &["s3AccessKey", "s3SecretKey"],
        _ => return None,
    })
}

/// One Kubernetes Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretManifest {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `Opaque`, `kubernetes.io/dockerconfigjson`, ...
    pub type_: String,
    /// Keys and (secret) values.
    pub data: BTreeMap<String, Secret>,
}

impl fmt::Debug for SecretManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretManifest")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("type", &self.type_)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretManifest {
    fn new(name: &str, type_: &str, data: Vec<(&str, Secret)>) -> Self {
        SecretManifest {
            name: name.into(),
            namespace: GITPOD_NAMESPACE.into(),
            type_: type_.into(),
            data: data.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// The manifest as YAML, with values base64-encoded under `data` (secret content).
    pub fn to_yaml_exposed(&self) -> Result<String> {
        let data: BTreeMap<&String, String> = self
            .data
            .iter()
            .map(|(k, v)| {
                (
                    k,
                    base64::engine::general_purpose::STANDARD.encode(v.expose()),
                )
            })
            .collect();
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "type": self.type_,
            "data": data,
        });
        yaml(&doc)
    }
}

/// The installer config, the secrets it references, and cert-manager objects.
#[derive(Debug, Clone)]
pub struct InstallerBundle {
    /// `gitpod.config.yaml` (no secret values).
    pub config: Value,
    /// Secret manifests.
    pub secrets: Vec<SecretManifest>,
    /// cert-manager ClusterIssuer and Certificate (empty with bring-your-own).
    pub cert_manager: Vec<Value>,
}

fn yaml(v: &Value) -> Result<String> {
    serde_yaml_ng::to_string(v)
        .map_err(|e| Error::internal("manifest does not serialize").with_source(e))
}

impl InstallerBundle {
    /// The config as YAML.
    pub fn config_yaml(&self) -> Result<String> {
        yaml(&self.config)
    }

    /// The secret with this name.
    pub fn secret(&self, name: &str) -> Option<&SecretManifest> {
        self.secrets.iter().find(|s| s.name == name)
    }

    /// Write `gitpod.config.yaml`, `secrets/<name>.yaml` (0600) and
    /// `cert-manager.yaml` into `dir`; returns the files written.
    pub fn write_to(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let io = |e: std::io::Error| {
            Error::new(
                ErrorKind::State,
                format!("cannot write to {}", dir.display()),
            )
            .with_source(e)
        };
        std::fs::create_dir_all(dir.join("secrets")).map_err(io)?;
        let mut written = Vec::new();
        let cfg = dir.join("gitpod.config.yaml");
        std::fs::write(&cfg, self.config_yaml()?).map_err(io)?;
        written.push(cfg);
        for s in &self.secrets {
            let p = dir.join("secrets").join(format!("{}.yaml", s.name));
            write_private(&p, s.to_yaml_exposed()?.as_bytes())?;
            written.push(p);
        }
        if !self.cert_manager.is_empty() {
            let docs: Result<Vec<String>> = self.cert_manager.iter().map(yaml).collect();
            let p = dir.join("cert-manager.yaml");
            std::fs::write(&p, docs?.join("---\n")).map_err(io)?;
            written.push(p);
        }
        Ok(written)
    }
}

fn missing(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("no {what} output yet: apply first"),
    )
}

/// The `encryptionKeys` JSON Gitpod expects.
fn encryption_keys(key: &Secret) -> Secret {
    Secret::new(
        json!([{"name": "general", "version": 1, "primary": true, "material": key.expose()}])
            .to_string(),
    )
}

fn secret_ref(name: &str) -> Value {
    json!({"kind": "secret", "name": name})
}

/// Render the bundle for `spec` from `outputs`, with `encryption_key` (base64 of 32 bytes).
pub fn render(
    spec: &ReferenceArchitecture,
    outputs: &Outputs,
    encryption_key: &Secret,
) -> Result<InstallerBundle> {
    let s = sections(outputs, encryption_key)?;
    let (certificate, cert_manager) = match &spec.certificates {
        CertificateSettings::Acme { email, server } => (
            secret_ref(CERTIFICATE_NAME),
            vec![
                cluster_issuer(email, server, outputs.dns_solver()),
                certificate(&spec.gitpod_dns_names()),
            ],
        ),
        CertificateSettings::BringYourOwn { secret_name, .. } => (secret_ref(secret_name), vec![]),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Full",
        "domain": spec.domain,
        "metadata": {"region": s.region, "shortname": "default"},
        "repository": "eu.gcr.io/gitpod-core-dev/build",
        "certificate": certificate,
        "database": s.database,
        "objectStorage": s.object_storage,
        "containerRegistry": s.container_registry,
        "workspace": {
            "runtime": {
                "fsShiftMethod": "shiftfs",
                "containerdRuntimeDir": "/run/containerd/io.containerd.runtime.v2.task/k8s.io",
                "containerdSocketDir": "/run/containerd",
            },
            "resources": {"requests": {"cpu": "1000m", "memory": "2Gi"}},
            "maxLifetime": "36h",
        },
        "openVSX": {"url": "https://open-vsx.org"},
        "authProviders": [],
        "blockNewUsers": {"enabled": false, "passlist": []},
    });
    Ok(InstallerBundle {
        config,
        secrets: s.secrets,
        cert_manager,
    })
}

/// Only the secrets of [`render`] (the in-cluster bootstrap applies them).
pub fn render_secrets(outputs: &Outputs, encryption_key: &Secret) -> Result<Vec<SecretManifest>> {
    Ok(sections(outputs, encryption_key)?.secrets)
}

/// The name of the secret in the `cert-manager` namespace that holds the DNS-01
/// solver's credentials, and its key, for `solver` (none without credentials).
pub fn solver_secret(solver: &DnsSolver) -> Option<(&'static str, &'static str, &Secret)> {
    match solver {
        DnsSolver::CloudDns { key: Some(k), .. } => Some(("clouddns-dns01-solver", "key.json", k)),
        DnsSolver::CloudDns { key: None, .. } | DnsSolver::AzureDns { .. } => None,
        DnsSolver::Route53 {
            secret_access_key, ..
        } => Some((
            "route53-credentials",
            "secret-access-key",
            secret_access_key,
        )),
        DnsSolver::Rfc2136 { tsig_secret, .. } => {
            Some(("rfc2136-tsig", "tsig-secret-key", tsig_secret))
        }
    }
}

/// cert-manager's `dns01` solver block for `solver` (no secret values: it refers to
/// [`solver_secret`] by name).
pub fn dns01_solver(solver: &DnsSolver) -> Value {
    let secret_ref =
        |s: &DnsSolver| solver_secret(s).map(|(name, key, _)| json!({"name": name, "key": key}));
    match solver {
        DnsSolver::CloudDns { project, .. } => {
            let mut v = json!({"project": project});
            if let Some(r) = secret_ref(solver) {
                v["serviceAccountSecretRef"] = r;
            }
            json!({"cloudDNS": v})
        }
        DnsSolver::Route53 {
            region,
            hosted_zone_id,
            access_key_id,
            ..
        } => json!({"route53": {
            "region": region,
            "hostedZoneID": hosted_zone_id,
            "accessKeyID": access_key_id,
            "secretAccessKeySecretRef": secret_ref(solver),
        }}),
        DnsSolver::AzureDns {
            subscription_id,
            resource_group,
            zone_name,
            cert_manager_client_id,
            ..
        } => json!({"azureDNS": {
            "subscriptionID": subscription_id,
            "resourceGroupName": resource_group,
            "hostedZoneName": zone_name,
            "environment": "AzurePublicCloud",
            "managedIdentity": {"clientID": cert_manager_client_id},
        }}),
        DnsSolver::Rfc2136 {
            nameserver,
            tsig_key_name,
            tsig_algorithm,
            ..
        } => json!({"rfc2136": {
            "nameserver": nameserver,
            "tsigKeyName": tsig_key_name,
            "tsigAlgorithm": tsig_algorithm,
            "tsigSecretSecretRef": secret_ref(solver),
        }}),
    }
}

/// The `gitpod-issuer` ClusterIssuer: ACME with `email` at `server`, account key in
/// `issuer-account-key`, DNS-01 through `solver` (no solvers if unknown).
pub fn cluster_issuer(email: &str, server: &str, solver: Option<&DnsSolver>) -> Value {
    let solvers: Vec<Value> = solver
        .map(|s| json!({"dns01": dns01_solver(s)}))
        .into_iter()
        .collect();
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": ISSUER_NAME},
        "spec": {"acme": {
            "email": email,
            "server": server,
            "privateKeySecretRef": {"name": ISSUER_ACCOUNT_KEY},
            "solvers": solvers,
        }},
    })
}

/// The `https-certificates` Certificate for `dns_names` from `gitpod-issuer`.
pub fn certificate(dns_names: &[String]) -> Value {
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": CERTIFICATE_NAME, "namespace": GITPOD_NAMESPACE},
        "spec": {
            "secretName": CERTIFICATE_NAME,
            "issuerRef": {"name": ISSUER_NAME, "kind": "ClusterIssuer"},
            "dnsNames": dns_names,
        },
    })
}

struct Sections {
    secrets: Vec<SecretManifest>,
    database: Value,
    object_storage: Value,
    region: String,
    container_registry: Value,
}

fn sections(outputs: &Outputs, encryption_key: &Secret) -> Result<Sections> {
    let mut secrets = Vec::new();
    let storage = outputs.storage().ok_or_else(|| missing("object storage"))?;
    let registry = outputs.registry().ok_or_else(|| missing("registry"))?;
    let db = outputs.database().ok_or_else(|| missing("database"))?;

    let enc = encryption_keys(encryption_key);
    let database = match db.endpoint {
        DatabaseEndpoint::Host {
            host,
            port,
            ca_certificate_pem,
        } => {
            secrets.push(SecretManifest::new(
                "database",
                "Opaque",
                vec![
                    ("encryptionKeys", enc),
                    ("host", Secret::new(host.clone())),
                    ("password", db.password.clone()),
                    ("port", Secret::new(port.to_string())),
                    ("username", Secret::new(db.username.to_string())),
                ],
            ));
            match ca_certificate_pem {
                // A private CA: the installer's `database.ssl.caCert` (key `ca.crt`).
                Some(ca) => {
                    secrets.push(SecretManifest::new(
                        DATABASE_CA_SECRET,
                        "Opaque",
                        vec![("ca.crt", Secret::new(ca.clone()))],
                    ));
                    json!({"inCluster": false, "external": {"certificate": secret_ref("database")}, "ssl": {"caCert": secret_ref(DATABASE_CA_SECRET)}})
                }
                None => {
                    json!({"inCluster": false, "external": {"certificate": secret_ref("database")}})
                }
            }
        }
        DatabaseEndpoint::CloudSql { connection_name } => {
            let creds = db
                .client_credentials
                .ok_or_else(|| missing("Cloud SQL client service-account key"))?;
            secrets.push(SecretManifest::new(
                "cloudsql",
                "Opaque",
                vec![
                    ("credentials.json", creds.clone()),
                    ("encryptionKeys", enc),
                    ("password", db.password.clone()),
                    ("username", Secret::new(db.username.to_string())),
                ],
            ));
            json!({"inCluster": false, "cloudSQL": {"instance": connection_name, "serviceAccount": secret_ref("cloudsql")}})
        }
    };

    let (object_storage, region) = match storage {
        StorageOutput::S3 {
            endpoint,
            region,
            bucket,
            access_key_id,
            secret_access_key,
            allow_insecure_connection,
        } => {
            secrets.push(SecretManifest::new(
                "storage-s3",
                "Opaque",
                vec![
                    ("accessKeyId", Secret::new(access_key_id.clone())),
                    ("secretAccessKey", secret_access_key.clone()),
                ],
            ));
            (
                json!({"inCluster": false, "s3": {"endpoint": endpoint, "bucket": bucket, "credentials": secret_ref("storage-s3"), "allowInsecureConnection": allow_insecure_connection}}),
                region,
            )
        }
        StorageOutput::Gcs {
            project,
            region,
            service_account_json,
        } => {
            secrets.push(SecretManifest::new(
                "storage-gcp",
                "Opaque",
                vec![("service-account.json", service_account_json.clone())],
            ));
            (
                json!({"inCluster": false, "cloudStorage": {"project": project, "serviceAccount": secret_ref("storage-gcp")}}),
                region,
            )
        }
        StorageOutput::InCluster { region } => (json!({"inCluster": true}), region),
        StorageOutput::AzureBlob {
            region,
            account_name,
            account_key,
        } => {
            secrets.push(SecretManifest::new(
                "storage-azure",
                "Opaque",
                vec![
                    ("accountName", Secret::new(account_name.clone())),
                    ("accountKey", account_key.clone()),
                ],
            ));
            (
                json!({"inCluster": false, "azure": {"credentials": secret_ref("storage-azure")}}),
                region,
            )
        }
    };

    let container_registry = match registry {
        RegistryOutput::External {
            url,
            server,
            username,
            password,
        } => {
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()));
            let docker = json!({"auths": {server: {"username": username, "password": password.expose(), "auth": auth}}});
            secrets.push(SecretManifest {
                name: REGISTRY_SECRET.into(),
                namespace: GITPOD_NAMESPACE.into(),
                type_: "kubernetes.io/dockerconfigjson".into(),
                data: BTreeMap::from([(
                    ".dockerconfigjson".to_string(),
                    Secret::new(docker.to_string()),
                )]),
            });
            json!({"inCluster": false, "external": {"url": url, "certificate": secret_ref(REGISTRY_SECRET)}, "privateBaseImageAllowList": []})
        }
        RegistryOutput::InClusterS3 {
            bucket,
            region,
            endpoint,
            access_key_id,
            secret_access_key,
        } => {
            secrets.push(SecretManifest::new(
                "container-registry-s3-backend",
                "Opaque",
                vec![
                    ("s3AccessKey", Secret::new(access_key_id.clone())),
                    ("s3SecretKey", secret_access_key.clone()),
                ],
            ));
            json!({"inCluster": true, "s3storage": {"bucket": bucket, "region": region, "endpoint": endpoint, "certificate": secret_ref("container-registry-s3-backend")}, "privateBaseImageAllowList": []})
        }
    };

    Ok(Sections {
        secrets,
        database,
        object_storage,
        region: region.clone(),
        container_registry,
    })
}
