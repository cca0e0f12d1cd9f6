//! The long-running operations of the APIs, polled once per engine poll.
//!
//! GCP has four shapes of operation: GKE's own `Operation` (`status: DONE`), Cloud
//! SQL's (`status: DONE`, `error.errors[]`), Compute's (global or regional, `status:
//! DONE`, `error.errors[]`), and `google.longrunning.Operation` (`done`, `error` or
//! `response`) used by Resource Manager, Service Usage and Artifact Registry. An
//! [`Operation`] id is `<api>:<operation name>`, so one `poll` serves them all and an
//! operation survives a restart of the process (the engine journals it).

use gitpod_refarch::provider::{Operation, Progress};
use gitpod_refarch::resource::ResourceId;
use gitpod_refarch::{Error, ErrorKind, Result};

use crate::error::GaxResultExt;
use crate::Context;

/// Which API an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// GKE (`projects/p/locations/l/operations/o`).
    Gke,
    /// Cloud SQL (`projects/p/operations/o`).
    Sql,
    /// Compute, global (`projects/p/global/operations/o`).
    ComputeGlobal,
    /// Compute, regional (`projects/p/regions/r/operations/o`).
    ComputeRegion,
    /// Resource Manager (`operations/cp.N`).
    ResourceManager,
    /// Service Usage (`operations/acf.N`).
    ServiceUsage,
    /// Artifact Registry (`projects/p/locations/l/operations/o`).
    ArtifactRegistry,
    /// Not an API operation: wait until a GKE cluster is no longer busy (after a crash,
    /// when the operation that made it busy is not known).
    GkeCluster,
    /// Wait until a GKE node pool is no longer busy.
    GkeNodePool,
    /// Wait until a Cloud SQL instance is no longer pending.
    SqlInstance,
}

const ALL: [Api; 10] = [
    Api::Gke,
    Api::Sql,
    Api::ComputeGlobal,
    Api::ComputeRegion,
    Api::ResourceManager,
    Api::ServiceUsage,
    Api::ArtifactRegistry,
    Api::GkeCluster,
    Api::GkeNodePool,
    Api::SqlInstance,
];

impl Api {
    fn prefix(self) -> &'static str {
        match self {
            Api::Gke => "gke",
            Api::Sql => "sql",
            Api::ComputeGlobal => "compute-global",
            Api::ComputeRegion => "compute-region",
            Api::ResourceManager => "rm",
            Api::ServiceUsage => "su",
            Api::ArtifactRegistry => "ar",
            Api::GkeCluster => "gke-cluster",
            Api::GkeNodePool => "gke-pool",
            Api::SqlInstance => "sql-instance",
        }
    }

    fn parse(s: &str) -> Option<Api> {
        ALL.into_iter().find(|a| a.prefix() == s)
    }
}

/// An engine operation for `api`'s operation `name` on `resource`.
pub fn pending(c: &Context, api: Api, name: &str, resource: &ResourceId) -> Progress {
    Progress::Pending(c.op(format!("{}:{name}", api.prefix()), resource))
}

/// The last path segment of a URL or resource name.
pub fn last_segment(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

fn failed(op: &Operation, detail: String) -> Error {
    Error::new(
        ErrorKind::OperationFailed,
        format!("operation {} failed: {detail}", op.id),
    )
    .with_resource(op.resource.clone())
}

/// Where a watched resource stands.
pub(crate) enum Standing {
    /// An operation is changing it.
    Busy,
    /// It is in an error state (with the reason).
    Failed(String),
    /// Nothing is running on it.
    Settled,
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
            let standing = crate::error::found(r, &doing)?.map(|cl| crate::cluster::standing(&cl));
            settle(op, standing, again)
        }
        Api::GkeNodePool => {
            let r = c.clients.gke.get_node_pool().set_name(name).send().await;
            let standing = crate::error::found(r, &doing)?.map(|p| crate::nodepool::standing(&p));
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
            match crate::error::found(r, &doing)? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for a in ALL {
            assert_eq!(Api::parse(a.prefix()), Some(a));
        }
        assert_eq!(last_segment("projects/p/operations/op-1"), "op-1");
    }
}
