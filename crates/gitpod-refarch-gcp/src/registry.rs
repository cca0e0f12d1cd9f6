//! The registry for workspace images: an Artifact Registry Docker repository in the
//! region (Container Registry is retired), and a push-only service account
//! `reg-sa-<name>` granted `roles/artifactregistry.writer` on that repository alone,
//! with its key. The installer gets `containerRegistry.external` with user
//! `_json_key` and the key JSON as password.
//!
//! With [`GcpRegistry::Gcr`] no repository is made and the account gets the
//! guide's `roles/storage.admin` on the project (gcr.io stores images in GCS).

use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{Output, RegistryOutput, RegistrySpec, ResourceId, ResourceKind};
use gitpod_refarch::spec::RegistryMode;
use gitpod_refarch::{Error, Result};
use google_cloud_artifactregistry_v1::model::{repository::Format, Repository};

use crate::config::GcpRegistry;
use crate::context::{foreign, is_ours, ownership_mark, pending, Api, Context};
use crate::error::{found, still_creating, GaxResultExt};
use crate::iam;

/// The repository-level role of the push account.
pub const WRITER_ROLE: &str = "roles/artifactregistry.writer";
/// The project role of the push account with gcr.io.
pub const GCR_ROLES: [&str; 1] = ["roles/storage.admin"];

/// `reg-sa-<name>`.
pub fn account_id(installation: &str) -> String {
    format!("reg-sa-{installation}")
}

fn repo_path(c: &Context, d: &RegistrySpec) -> String {
    format!("{}/repositories/{}", c.location_path(), d.repository)
}

/// The registry host (`europe-west1-docker.pkg.dev` or `gcr.io`).
pub fn server(c: &Context) -> String {
    match c.config.registry {
        GcpRegistry::Gcr => "gcr.io".to_string(),
        _ => format!("{}-docker.pkg.dev", c.region),
    }
}

fn url(c: &Context, d: &RegistrySpec) -> String {
    match c.config.registry {
        GcpRegistry::Gcr => format!("gcr.io/{}", c.project),
        _ => format!("{}/{}/{}", server(c), c.project, d.repository),
    }
}

fn check_mode(d: &RegistrySpec) -> Result<()> {
    if d.mode != RegistryMode::Managed {
        return Err(Error::invalid_input(
            "on GCP the registry is managed (Artifact Registry): registry.mode \
             inClusterObjectStorage needs S3-compatible storage",
        ));
    }
    Ok(())
}

async fn get_repo(c: &Context, d: &RegistrySpec) -> Result<Option<Repository>> {
    let r = found(
        c.clients
            .registry
            .get_repository()
            .set_name(repo_path(c, d))
            .send()
            .await,
        format!("reading repository {}", d.repository),
    )?;
    match r {
        Some(r) if !is_ours(&r.labels.clone().into_iter().collect(), &d.name) => Err(foreign(
            &format!("Artifact Registry repository {}", d.repository),
            &d.name,
        )),
        other => Ok(other),
    }
}

async fn has_writer(c: &Context, d: &RegistrySpec) -> Result<bool> {
    let p = c
        .clients
        .registry
        .get_iam_policy()
        .set_resource(repo_path(c, d))
        .send()
        .await
        .ctx(format!(
            "reading the IAM policy of repository {}",
            d.repository
        ))?;
    let m = iam::member(c, &account_id(&d.name));
    Ok(p.bindings
        .iter()
        .any(|b| b.role == WRITER_ROLE && b.members.contains(&m)))
}

/// The repository and the push account as they exist; an account missing, or without
/// its role, is drift.
pub async fn observe(c: &Context, d: &RegistrySpec) -> Result<Option<Observed<RegistrySpec>>> {
    let id = account_id(&d.name);
    let artifact_registry = c.config.registry == GcpRegistry::ArtifactRegistry;
    if artifact_registry {
        let Some(r) = get_repo(c, d).await? else {
            return Ok(None);
        };
        if r.format != Format::Docker {
            return Ok(None);
        }
    }
    let roles: &[&str] = if artifact_registry { &[] } else { &GCR_ROLES };
    let drift = match iam::account_drift(c, &id, &d.name, roles).await? {
        Some(drift) if !artifact_registry => drift,
        None if !artifact_registry => return Ok(None),
        // Artifact Registry: the repository is there, but its push account is not.
        None => vec![format!(
            "the push account {} is missing",
            iam::email(c, &id)
        )],
        Some(_) if !has_writer(c, d).await? => vec![format!(
            "service account {} may not push to repository {}",
            iam::email(c, &id),
            d.repository
        )],
        Some(_) => Vec::new(),
    };
    let mut o = Observed::ready(d.clone(), None);
    o.drift = drift;
    Ok(Some(o))
}

/// Create the repository (one operation), then the account, its role and key.
pub async fn ensure(c: &Context, d: &RegistrySpec, inputs: &Inputs) -> Result<Progress> {
    check_mode(d)?;
    let own = ResourceId::new(ResourceKind::Registry, d.name.clone());
    let id = account_id(&d.name);
    if c.config.registry == GcpRegistry::ArtifactRegistry && get_repo(c, d).await?.is_none() {
        let op = c
            .clients
            .registry
            .create_repository()
            .set_parent(c.location_path())
            .set_repository_id(&d.repository)
            .set_repository(
                Repository::new()
                    .set_format(Format::Docker)
                    .set_description(ownership_mark(&d.name))
                    .set_labels(d.labels.clone()),
            )
            .send()
            .await
            .map_err(|e| still_creating(e, format!("repository {}", d.repository)))?;
        return Ok(pending(c, Api::ArtifactRegistry, &op.name, &own));
    }
    iam::ensure_account(c, &id, "Gitpod registry push", &d.name).await?;
    let member = iam::member(c, &id);
    match c.config.registry {
        GcpRegistry::Gcr => iam::set_project_roles(c, &member, &GCR_ROLES, true).await?,
        _ => {
            if !has_writer(c, d).await? {
                let mut p = c
                    .clients
                    .registry
                    .get_iam_policy()
                    .set_resource(repo_path(c, d))
                    .send()
                    .await
                    .ctx("reading the repository IAM policy")?;
                iam::edit_policy(&mut p, &member, &[WRITER_ROLE], true);
                c.clients
                    .registry
                    .set_iam_policy()
                    .set_resource(repo_path(c, d))
                    .set_policy(p)
                    .send()
                    .await
                    .ctx("granting push on the repository")?;
            }
        }
    }
    if let Some(known @ Output::Registry(RegistryOutput::External { .. })) = inputs.get(&own) {
        return Ok(Progress::Done(Some(known.clone())));
    }
    let key = iam::create_key(c, &id).await?;
    Ok(Progress::Done(Some(Output::Registry(
        RegistryOutput::External {
            url: url(c, d),
            server: server(c),
            username: "_json_key".into(),
            password: key,
        },
    ))))
}

/// Delete the account, then the repository with its images (one operation).
pub async fn delete(c: &Context, d: &RegistrySpec) -> Result<Progress> {
    let own = &ResourceId::new(ResourceKind::Registry, d.name.clone());
    let roles: &[&str] = match c.config.registry {
        GcpRegistry::Gcr => &GCR_ROLES,
        _ => &[],
    };
    iam::delete_account(c, &account_id(&d.name), &d.name, roles).await?;
    if c.config.registry == GcpRegistry::ArtifactRegistry && get_repo(c, d).await?.is_some() {
        let op = c
            .clients
            .registry
            .delete_repository()
            .set_name(repo_path(c, d))
            .send()
            .await;
        if let Some(op) = found(op, format!("deleting repository {}", d.repository))? {
            return Ok(pending(c, Api::ArtifactRegistry, &op.name, own));
        }
    }
    Ok(Progress::Done(None))
}
