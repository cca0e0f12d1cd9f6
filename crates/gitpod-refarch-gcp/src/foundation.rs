//! Project preparation, as the guide's first steps: the project (created only when
//! the spec asks), its billing link, and the APIs enabled in one batch.
//!
//! Destroy leaves all three: the project may hold other things, and disabling an API
//! would break them.

use gitpod_refarch::provider::{Observed, Progress};
use gitpod_refarch::resource::{FoundationSpec, Output, ResourceId, ResourceKind};
use gitpod_refarch::{Error, ErrorKind, Result};
use google_cloud_api_serviceusage_v1::model::State as ServiceState;
use google_cloud_billing_v1::model::ProjectBillingInfo;
use google_cloud_resourcemanager_v3::model::Project;

use crate::context::{pending, Api, Context};
use crate::error::{from_gax, kind_of, GaxResultExt};

/// The APIs the guide enables before anything else.
pub const REQUIRED_APIS: [&str; 8] = [
    "artifactregistry.googleapis.com",
    "containerregistry.googleapis.com",
    "iam.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "dns.googleapis.com",
    "sqladmin.googleapis.com",
    "cloudbilling.googleapis.com",
];

/// The project, or `None` when it does not exist or cannot be read (GCP answers 403
/// for both, so that project ids cannot be probed).
pub async fn get_project(c: &Context) -> Result<Option<Project>> {
    match c
        .clients
        .projects
        .get_project()
        .set_name(c.project_path())
        .send()
        .await
    {
        Ok(p) => {
            c.set_project_exists();
            Ok(Some(p))
        }
        Err(e) if matches!(kind_of(&e), ErrorKind::NotFound | ErrorKind::Permission) => Ok(None),
        Err(e) => Err(from_gax(e, format!("reading project {}", c.project))),
    }
}

fn billing_name(account: &str) -> String {
    format!("billingAccounts/{account}")
}

/// Why the billing link needs an `ensure`: the configured account is not the one the
/// project bills to (`None` when it is, or when none is configured).
async fn billing_drift(c: &Context) -> Result<Option<String>> {
    let Some(account) = &c.config.billing_account else {
        return Ok(None);
    };
    let info = c
        .clients
        .billing
        .get_project_billing_info()
        .set_name(c.project_path())
        .send()
        .await
        .ctx("reading the project's billing link")?;
    if info.billing_account_name == billing_name(account) {
        return Ok(None);
    }
    Ok(Some(if info.billing_account_name.is_empty() {
        format!("billing account {account} is not linked to the project")
    } else {
        format!(
            "the project bills to {}, not to billing account {account}",
            info.billing_account_name
        )
    }))
}

/// The required APIs that are not enabled yet.
async fn missing_apis(c: &Context) -> Result<Vec<&'static str>> {
    let names: Vec<String> = REQUIRED_APIS
        .iter()
        .map(|a| format!("{}/services/{a}", c.project_path()))
        .collect();
    let got = c
        .clients
        .services
        .batch_get_services()
        .set_parent(c.project_path())
        .set_names(names)
        .send()
        .await
        .ctx("reading which APIs are enabled")?;
    Ok(REQUIRED_APIS
        .iter()
        .copied()
        .filter(|api| {
            !got.services.iter().any(|s| {
                s.name.ends_with(&format!("/services/{api}")) && s.state == ServiceState::Enabled
            })
        })
        .collect())
}

/// The project as it exists; a billing link or APIs still missing are its drift.
pub async fn observe(c: &Context, d: &FoundationSpec) -> Result<Option<Observed<FoundationSpec>>> {
    if get_project(c).await?.is_none() {
        return Ok(None);
    }
    let billing = billing_drift(c).await?;
    let missing = missing_apis(c).await?;
    let apis = (!missing.is_empty()).then(|| format!("APIs not enabled: {}", missing.join(", ")));
    Ok(Some(
        Observed::ready(d.clone(), Some(output(c)))
            .with_drift_if(billing)
            .with_drift_if(apis),
    ))
}

fn output(c: &Context) -> Output {
    Output::Foundation {
        account: c.project.clone(),
    }
}

/// One phase per call: create the project, link billing, enable the APIs.
pub async fn ensure(c: &Context, d: &FoundationSpec) -> Result<Progress> {
    let id = ResourceId::new(ResourceKind::Foundation, d.installation.clone());
    if get_project(c).await?.is_none() {
        if !c.config.create_project {
            return Err(Error::new(
                ErrorKind::Permission,
                format!(
                    "project '{}' does not exist or cannot be read, and gcp.createProject is off",
                    c.project
                ),
            ));
        }
        let op = c
            .clients
            .projects
            .create_project()
            .set_project(
                Project::new()
                    .set_project_id(&c.project)
                    .set_display_name(&c.project)
                    .set_labels(d.labels.clone()),
            )
            .send()
            .await;
        return match op {
            Ok(op) => Ok(pending(c, Api::ResourceManager, &op.name, &id)),
            // The id is taken (by us in a lost answer, or globally by someone else):
            // the next round reads it again.
            Err(e) if kind_of(&e) == ErrorKind::Conflict => Err(from_gax(
                e,
                format!("creating project {} (the id may be taken)", c.project),
            )),
            Err(e) => Err(from_gax(e, format!("creating project {}", c.project))),
        };
    }
    if let Some(account) = &c.config.billing_account {
        if billing_drift(c).await?.is_some() {
            c.clients
                .billing
                .update_project_billing_info()
                .set_name(c.project_path())
                .set_project_billing_info(
                    ProjectBillingInfo::new().set_billing_account_name(billing_name(account)),
                )
                .send()
                .await
                .ctx(format!("linking billing account {account}"))?;
        }
    }
    let missing = missing_apis(c).await?;
    if !missing.is_empty() {
        tracing::info!(apis = ?missing, "enabling APIs");
        let op = c
            .clients
            .services
            .batch_enable_services()
            .set_parent(c.project_path())
            .set_service_ids(missing)
            .send()
            .await
            .ctx("enabling the APIs")?;
        return Ok(pending(c, Api::ServiceUsage, &op.name, &id));
    }
    Ok(Progress::Done(Some(output(c))))
}
