//! The simulated cloud as a [`Verifier`]: every resource the last apply recorded must
//! still be held by the simulated cloud with the same outputs, the installer bundle
//! must carry every secret its config references with exactly the keys Gitpod's
//! installer requires, and the credentials in the bundle must be the ones the
//! simulated database, bucket and registry accept. All checks are
//! [`Vantage::Simulated`]: no real part exists.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde_json::Value;

use super::{lock, SimCloud};
use crate::installer::{required_secret_keys, InstallerBundle, SecretManifest};
use crate::resource::{
    DatabaseEndpoint, Domain, Output, RegistryOutput, ResourceId, ResourceKind, StorageOutput,
};
use crate::secret::Secret;
use crate::verify::{Check, Part, Vantage, Verifier, VerifyContext};

/// What the simulated cloud holds under an id.
#[derive(Debug, Clone)]
enum Held {
    /// Being created or updated.
    Busy,
    /// Being deleted.
    Deleting,
    /// Ready, with its outputs.
    Ready(Output),
}

fn part_of(kind: ResourceKind) -> Part {
    match kind.domain() {
        Domain::Cluster | Domain::InCluster => Part::Cluster,
        Domain::Dns => Part::Dns,
        Domain::ObjectStore => Part::Storage,
        Domain::Registry => Part::Registry,
        Domain::Database => Part::Database,
    }
}

const REDEPLOY: &str = "run apply: it recreates what is missing and rewrites the installer config";

impl SimCloud {
    /// Every resource the simulated cloud holds now (the first of duplicates).
    fn held(&self) -> BTreeMap<ResourceId, Held> {
        let now = self.clock.now();
        let Ok(mut w) = lock(&self.world) else {
            return BTreeMap::new();
        };
        Self::settle(&mut w, now);
        let mut held = BTreeMap::new();
        for r in &w.resources {
            let h = if r.deleting_until.is_some() {
                Held::Deleting
            } else if r.busy_until.is_some() {
                Held::Busy
            } else {
                Held::Ready(r.output.clone())
            };
            held.entry(r.id.clone()).or_insert(h);
        }
        held
    }

    /// Delete a resource behind the SDK's back, as someone in the cloud's console
    /// would; returns whether it existed.
    pub fn remove(&self, id: &ResourceId) -> bool {
        let Ok(mut w) = self.world.lock() else {
            return false;
        };
        let before = w.resources.len();
        w.resources.retain(|r| &r.id != id);
        w.resources.len() != before
    }
}

/// One check per resource the last apply recorded.
fn resource_checks(ctx: &VerifyContext<'_>, held: &BTreeMap<ResourceId, Held>) -> Vec<Check> {
    let recorded = ctx.outputs.all();
    let mut per_kind: BTreeMap<ResourceKind, usize> = BTreeMap::new();
    for id in recorded.keys() {
        *per_kind.entry(id.kind).or_default() += 1;
    }
    let mut checks = Vec::new();
    for part in Part::ALL {
        let mut any = false;
        for (id, out) in recorded.iter().filter(|(id, _)| part_of(id.kind) == part) {
            any = true;
            let check_id = if id.kind == ResourceKind::NodePool || per_kind[&id.kind] > 1 {
                format!("{part}.{}.{}", id.kind.as_str(), id.name)
            } else {
                format!("{part}.{}", id.kind.as_str())
            };
            checks.push(match held.get(id) {
                Some(Held::Ready(o)) if o == out => {
                    Check::pass(check_id, part, format!("the simulated cloud holds {id}"))
                }
                Some(Held::Ready(_)) => Check::fail(
                    check_id,
                    part,
                    format!("{id} no longer has the outputs the last apply recorded"),
                    "Gitpod would get an endpoint or credentials the cloud no longer has",
                )
                .fix(REDEPLOY),
                Some(Held::Busy) => Check::skipped(
                    check_id,
                    part,
                    format!("{id} is being changed (is an apply running?)"),
                ),
                Some(Held::Deleting) | None => Check::fail(
                    check_id,
                    part,
                    format!("{id} does not exist in the simulated cloud"),
                    "it was deleted outside the SDK after the last apply; Gitpod needs it",
                )
                .fix(REDEPLOY),
            });
        }
        if !any {
            checks.push(Check::skipped(
                format!("{part}.applied"),
                part,
                format!("no {part} resource recorded yet (run apply)"),
            ));
        }
    }
    checks
}

/// The names of the secrets a config section references (`{kind: secret, name}`).
fn secret_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if m.get("kind").and_then(Value::as_str) == Some("secret") {
                if let Some(n) = m.get("name").and_then(Value::as_str) {
                    out.insert(n.to_string());
                }
            }
            m.values().for_each(|x| secret_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| secret_refs(x, out)),
        _ => {}
    }
}

/// `<part>.secrets`: every secret the config section references is in the bundle,
/// with exactly the keys the installer requires, none empty.
fn secrets_check(part: Part, section: &str, bundle: &InstallerBundle) -> Check {
    let id = format!("{part}.secrets");
    let mut names = BTreeSet::new();
    secret_refs(&bundle.config[section], &mut names);
    if names.is_empty() {
        return Check::pass(
            id,
            part,
            format!("`{section}` references no secret (nothing for the installer to validate)"),
        );
    }
    let mut problems = Vec::new();
    for name in &names {
        let Some(s) = bundle.secret(name) else {
            problems.push(format!("secret {name} is missing"));
            continue;
        };
        let have: BTreeSet<&str> = s.data.keys().map(String::as_str).collect();
        if let Some(required) = required_secret_keys(name) {
            let want: BTreeSet<&str> = required.iter().copied().collect();
            let missing: Vec<&str> = want.difference(&have).copied().collect();
            let extra: Vec<&str> = have.difference(&want).copied().collect();
            if !missing.is_empty() {
                problems.push(format!("secret {name} lacks {}", missing.join(", ")));
            }
            if !extra.is_empty() {
                problems.push(format!("secret {name} has unexpected {}", extra.join(", ")));
            }
        }
        let empty: Vec<&str> = s
            .data
            .iter()
            .filter(|(_, v)| v.expose().trim().is_empty())
            .map(|(k, _)| k.as_str())
            .collect();
        if !empty.is_empty() {
            problems.push(format!("secret {name} has empty {}", empty.join(", ")));
        }
    }
    let list: Vec<&str> = names.iter().map(String::as_str).collect();
    if problems.is_empty() {
        Check::pass(
            id,
            part,
            format!(
                "{} carry exactly the keys the installer requires",
                list.join(", ")
            ),
        )
    } else {
        Check::fail(
            id,
            part,
            problems.join("; "),
            format!(
                "Gitpod's installer validates the secrets `{section}` references and refuses these"
            ),
        )
        .fix("run apply to render the installer config and secrets again, and apply them")
    }
}

fn ready(held: &BTreeMap<ResourceId, Held>, kind: ResourceKind) -> Option<&Output> {
    held.iter().find_map(|(id, h)| match h {
        Held::Ready(o) if id.kind == kind => Some(o),
        _ => None,
    })
}

fn value<'s>(s: &'s SecretManifest, key: &str) -> Option<&'s Secret> {
    s.data.get(key)
}

/// `database.connect`: the bundle's host, port, user and password are the simulated
/// server's.
fn database_check(bundle: &InstallerBundle, held: &BTreeMap<ResourceId, Held>) -> Check {
    let id = "database.connect";
    let p = Part::Database;
    let Some(secret) = bundle.secret("database") else {
        return Check::skipped(
            id,
            p,
            "the bundle has no `database` secret (not a host/port database)",
        );
    };
    let server = match ready(held, ResourceKind::DatabaseInstance) {
        Some(Output::DatabaseInstance {
            endpoint: DatabaseEndpoint::Host { host, port, .. },
            ..
        }) => Some((host.clone(), port.to_string())),
        _ => None,
    };
    let Some((host, port)) = server else {
        return Check::fail(
            id,
            p,
            "the simulated cloud has no database server",
            "Gitpod could not connect",
        )
        .fix(REDEPLOY);
    };
    let bundle_host = value(secret, "host").map(|s| s.expose().as_str());
    let bundle_port = value(secret, "port").map(|s| s.expose().as_str());
    if bundle_host != Some(host.as_str()) || bundle_port != Some(port.as_str()) {
        return Check::fail(
            id,
            p,
            format!(
                "the bundle points at {}:{}, the simulated server is {host}:{port}",
                bundle_host.unwrap_or("?"),
                bundle_port.unwrap_or("?")
            ),
            "Gitpod would connect to the wrong server",
        )
        .fix(REDEPLOY);
    }
    let accepted = match ready(held, ResourceKind::Database) {
        Some(Output::Database {
            username, password, ..
        }) => {
            value(secret, "username").map(|s| s.expose()) == Some(username)
                && value(secret, "password") == Some(password)
        }
        _ => false,
    };
    if accepted {
        Check::pass(
            id,
            p,
            format!("the simulated server {host}:{port} accepts the bundle's user and password"),
        )
    } else {
        Check::fail(
            id,
            p,
            format!("the simulated server {host}:{port} rejects the bundle's user or password"),
            "Gitpod could not log in to its database",
        )
        .fix(REDEPLOY)
    }
}

/// `storage.credentials`: the bundle's bucket, endpoint and keys are the simulated
/// bucket's.
fn storage_check(bundle: &InstallerBundle, held: &BTreeMap<ResourceId, Held>) -> Check {
    let id = "storage.credentials";
    let p = Part::Storage;
    let s3 = &bundle.config["objectStorage"]["s3"];
    let Some(secret) = bundle.secret("storage-s3").filter(|_| s3.is_object()) else {
        return Check::skipped(id, p, "the bundle configures no S3 storage to compare");
    };
    let Some(Output::ObjectStorage(StorageOutput::S3 {
        endpoint,
        bucket,
        access_key_id,
        secret_access_key,
        ..
    })) = ready(held, ResourceKind::ObjectStorage)
    else {
        return Check::fail(
            id,
            p,
            "the simulated cloud has no S3 bucket",
            "Gitpod could not store workspace content",
        )
        .fix(REDEPLOY);
    };
    if s3["bucket"].as_str() != Some(bucket.as_str())
        || s3["endpoint"].as_str() != Some(endpoint.as_str())
    {
        return Check::fail(
            id,
            p,
            format!(
                "the bundle names bucket {} at {}, the simulated cloud has {bucket} at {endpoint}",
                s3["bucket"].as_str().unwrap_or("?"),
                s3["endpoint"].as_str().unwrap_or("?")
            ),
            "Gitpod would write to a bucket that does not exist",
        )
        .fix(REDEPLOY);
    }
    let keys_ok = value(secret, "accessKeyId").map(|s| s.expose()) == Some(access_key_id)
        && value(secret, "secretAccessKey") == Some(secret_access_key);
    if keys_ok {
        Check::pass(
            id,
            p,
            format!("bucket {bucket} at {endpoint} accepts the bundle's access key"),
        )
    } else {
        Check::fail(
            id,
            p,
            format!("bucket {bucket} rejects the bundle's access key"),
            "Gitpod could not read or write workspace content",
        )
        .fix(REDEPLOY)
    }
}

/// `registry.auth`: the bundle's registry credentials are the simulated registry's.
fn registry_check(bundle: &InstallerBundle, held: &BTreeMap<ResourceId, Held>) -> Check {
    let id = "registry.auth";
    let p = Part::Registry;
    let Some(out) = ready(held, ResourceKind::Registry) else {
        return Check::fail(
            id,
            p,
            "the simulated cloud has no registry",
            "Gitpod could not push workspace images",
        )
        .fix(REDEPLOY);
    };
    let (what, accepted) = match out {
        Output::Registry(RegistryOutput::External {
            server,
            username,
            password,
            ..
        }) => {
            let docker: Option<Value> = bundle
                .secret(crate::installer::REGISTRY_SECRET)
                .and_then(|s| value(s, ".dockerconfigjson"))
                .and_then(|s| serde_json::from_str(s.expose()).ok());
            let auth = docker.as_ref().map(|d| &d["auths"][server.as_str()]);
            let ok = auth.is_some_and(|a| {
                a["username"].as_str() == Some(username.as_str())
                    && a["password"].as_str() == Some(password.expose().as_str())
            });
            (format!("registry {server}"), ok)
        }
        Output::Registry(RegistryOutput::InClusterS3 {
            bucket,
            access_key_id,
            secret_access_key,
            ..
        }) => {
            let ok = bundle
                .secret("container-registry-s3-backend")
                .is_some_and(|s| {
                    value(s, "s3AccessKey").map(|v| v.expose()) == Some(access_key_id)
                        && value(s, "s3SecretKey") == Some(secret_access_key)
                });
            (format!("the in-cluster registry's bucket {bucket}"), ok)
        }
        _ => (String::from("the registry"), false),
    };
    if accepted {
        Check::pass(id, p, format!("{what} accepts the bundle's credentials"))
    } else {
        Check::fail(
            id,
            p,
            format!("{what} rejects the bundle's credentials"),
            "Gitpod could not push or pull workspace images",
        )
        .fix(REDEPLOY)
    }
}

/// `cluster.secrets`: the Gitpod namespace holds every secret of the bundle.
fn cluster_secrets_check(ctx: &VerifyContext<'_>, held: &BTreeMap<ResourceId, Held>) -> Check {
    let id = "cluster.secrets";
    let p = Part::Cluster;
    let recorded = ctx
        .outputs
        .all()
        .keys()
        .any(|i| i.kind == ResourceKind::GitpodNamespace);
    if !recorded {
        return Check::skipped(
            id,
            p,
            "the inside of the cluster was not bootstrapped (apply ran with --no-in-cluster)",
        );
    }
    let objects: Vec<String> = match ready(held, ResourceKind::GitpodNamespace) {
        Some(Output::InCluster { objects }) => objects.clone(),
        _ => Vec::new(),
    };
    let missing: Vec<&str> = ctx
        .bundle
        .secrets
        .iter()
        .filter(|s| !objects.contains(&format!("Secret/{}/{}", s.namespace, s.name)))
        .map(|s| s.name.as_str())
        .collect();
    if missing.is_empty() {
        Check::pass(
            id,
            p,
            format!(
                "the cluster holds all {} secrets of the bundle",
                ctx.bundle.secrets.len()
            ),
        )
    } else {
        Check::fail(
            id,
            p,
            format!("the cluster lacks secret(s) {}", missing.join(", ")),
            "Gitpod's installer expects them in its namespace",
        )
        .fix(REDEPLOY)
    }
}

#[async_trait]
impl Verifier for SimCloud {
    fn name(&self) -> &str {
        "sim"
    }

    fn parts(&self) -> Vec<Part> {
        Part::ALL.to_vec()
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Vec<Check> {
        let start = self.clock.now();
        let held = self.held();
        let mut checks = resource_checks(ctx, &held);
        checks.push(cluster_secrets_check(ctx, &held));
        checks.push(secrets_check(Part::Database, "database", ctx.bundle));
        checks.push(database_check(ctx.bundle, &held));
        checks.push(secrets_check(Part::Storage, "objectStorage", ctx.bundle));
        checks.push(storage_check(ctx.bundle, &held));
        checks.push(secrets_check(
            Part::Registry,
            "containerRegistry",
            ctx.bundle,
        ));
        checks.push(registry_check(ctx.bundle, &held));
        let took = self.clock.now().saturating_sub(start);
        checks
            .into_iter()
            .map(|c| c.from(Vantage::Simulated).took(took))
            .collect()
    }
}
