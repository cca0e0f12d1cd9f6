//! The long-running operations of the APIs, polled once per engine poll.
//!
//! GCP has four shapes of operation: GKE's own `Operation` (`status: DONE`), Cloud
//! SQL's (`status: DONE`, `error.errors[]`), Compute's (global or regional, `status:
//! DONE`, `error.errors[]`), and `google.longrunning.Operation` (`done`, `error` or
//! `response`) used by Resource Manager, Service Usage and Artifact Registry. An
//! [`Operation`] id is `<api>:<operation name>`, so one `poll` serves them all and an
//! operation survives a restart of the process (the engine journals it).

use gitpod_refarch::provider::{Operation, Progress};
use gitpod_refarch::{Error, ErrorKind, Result};

use crate::context::{Context, Standing};
use crate::error::{found, GaxResultExt};
use crate::{cluster, nodepool};

pub use crate::context::{last_segment, pending, Api};

fn failed(op: &Operation, detail: String) -> Error {
    Error::new(
        ErrorKind::OperationFailed,
        format!("operation {} failed: {detail}", op.id),
    )
    .with_resource(op.resource.clone())
}

/// The progress of a watch: absent or settled resources are done.
fn settle(
    op: &Operation,
    standing: Option<Standing>,
    again: impl FnOnce() -> Result<Progress>,
) -> Result<Progress> {
    match standing {
        Some(Standing::Busy) => again(),
        Some(Standing::Failed(why)) => Err(failed(op, why)),
        Some(Standing::Settled) | None => Ok(Progress::Done(None)),
    }
}

/// Poll one operation: `Done(None)` when finished (the engine then calls `ensure` or
/// `delete` again), `Pending` while it runs, `OperationFailed` when it failed.
pub async fn poll(c: &Context, op: &Operation) -> Result<Progress> {
    let (api, name) = op
        .id
        .split_once(':')
        .and_then(|(a, n)| Api::parse(a).map(|a| (a, n)))
        .ok_or_else(|| Error::internal(format!("not a GCP operation id: {}", op.id)))?;
    let doing = format!("polling operation {name}");
    let again = || Ok(Progress::Pending(c.op(op.id.clone(), &op.resource)));
    match api {
        Api::GkeCluster => {
            let r = c.clients.gke.get_cluster().set_name(name).send().await;
            let standing = found(r, &doing)?.map(|cl| cluster::standing(&cl));
            settle(op, standing, again)
        }
        Api::GkeNodePool => {
            let r = c.clients.gke.get_node_pool().set_name(name).send().await;
            let standing = found(r, &doing)?.map(|p| nodepool::standing(&p));
            settle(op, standing, again)
        }
        Api::SqlInstance => {
            use google_cloud_sql_v1::model::database_instance::SqlInstanceState;
            let r = c
                .clients
                .sql_instances
                .get()
                .set_project(&c.project)
                .set_instance(last_segment(name))
                .send()
                .await;
            match found(r, &doing)? {
                Some(i)
                    if i.state == SqlInstanceState::PendingCreate
                        || i.state == SqlInstanceState::Maintenance =>
                {
                    again()
                }
                Some(i) if i.state == SqlInstanceState::Failed => {
                    Err(failed(op, format!("instance {} FAILED", i.name)))
                }
                _ => Ok(Progress::Done(None)),
            }
        }
        Api::Gke => {
            use google_cloud_container_v1::model::operation::Status;
            let o = c
                .clients
                .gke
                .get_operation()
                .set_name(name)
                .send()
                .await
                .ctx(&doing)?;
            if o.status != Status::Done {
                return again();
            }
            match o.error {
                Some(e) if e.code != 0 => Err(failed(op, e.message)),
                _ => Ok(Progress::Done(None)),
            }
        }
        Api::Sql => {
            use google_cloud_sql_v1::model::operation::SqlOperationStatus;
            let o = c
                .clients
                .sql_operations
                .get()
                .set_project(&c.project)
                .set_operation(last_segment(name))
                .send()
                .await
                .ctx(&doing)?;
            if o.status != SqlOperationStatus::Done {
                return again();
            }
            match o.error {
                Some(e) if !e.errors.is_empty() => Err(failed(
                    op,
                    e.errors
                        .iter()
                        .map(|x| format!("{}: {}", x.code, x.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                )),
                _ => Ok(Progress::Done(None)),
            }
        }
        Api::ComputeGlobal | Api::ComputeRegion => {
            use google_cloud_compute_v1::model::operation::Status;
            let o = if api == Api::ComputeGlobal {
                c.clients
                    .global_operations
                    .get()
                    .set_project(&c.project)
                    .set_operation(last_segment(name))
                    .send()
                    .await
            } else {
                c.clients
                    .region_operations
                    .get()
                    .set_project(&c.project)
                    .set_region(&c.region)
                    .set_operation(last_segment(name))
                    .send()
                    .await
            }
            .ctx(&doing)?;
            if o.status != Some(Status::Done) {
                return again();
            }
            match o.error {
                Some(e) if !e.errors.is_empty() => Err(failed(
                    op,
                    e.errors
                        .iter()
                        .map(|x| {
                            format!(
                                "{}: {}",
                                x.code.clone().unwrap_or_default(),
                                x.message.clone().unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                )),
                _ => Ok(Progress::Done(None)),
            }
        }
        Api::ResourceManager | Api::ServiceUsage | Api::ArtifactRegistry => {
            use google_cloud_longrunning::model::operation::Result as LroResult;
            let o = match api {
                Api::ResourceManager => {
                    c.clients
                        .projects
                        .get_operation()
                        .set_name(name)
                        .send()
                        .await
                }
                Api::ServiceUsage => {
                    c.clients
                        .services
                        .get_operation()
                        .set_name(name)
                        .send()
                        .await
                }
                _ => {
                    c.clients
                        .registry
                        .get_operation()
                        .set_name(name)
                        .send()
                        .await
                }
            }
            .ctx(&doing)?;
            if !o.done {
                return again();
            }
            match o.result {
                Some(LroResult::Error(e)) => Err(failed(op, e.message)),
                _ => Ok(Progress::Done(None)),
            }
        }
    }
}
