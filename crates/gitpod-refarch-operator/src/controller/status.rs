//! The status the controller writes: conditions, the plan in short, name servers and
//! the outputs that are not secret. Written through the status subresource with a
//! merge patch, so the spec is never touched.

use std::collections::BTreeMap;

use gitpod_refarch::outputs::Outputs;
use gitpod_refarch::resource::{DatabaseEndpoint, Output, RegistryOutput, StorageOutput};
use gitpod_refarch::{Plan, ReferenceArchitecture};
use k8s_openapi::chrono::{SecondsFormat, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;

use crate::crd::{Condition, GitpodInstallation, GitpodInstallationStatus, PlanSummary};

/// Condition type: the last plan was made.
pub const PLANNED: &str = "Planned";
/// Condition type: an apply or destroy is running.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: the installation matches its spec.
pub const READY: &str = "Ready";
/// Condition type: the last reconcile failed (reason and message say why).
pub const DEGRADED: &str = "Degraded";

/// Phase: nothing done yet.
pub const PHASE_PENDING: &str = "Pending";
/// Phase: planning.
pub const PHASE_PLANNING: &str = "Planning";
/// Phase: applying a plan.
pub const PHASE_APPLYING: &str = "Applying";
/// Phase: applied and matching its spec.
pub const PHASE_READY: &str = "Ready";
/// Phase: the last reconcile failed.
pub const PHASE_DEGRADED: &str = "Degraded";
/// Phase: being destroyed (or retained) after a delete.
pub const PHASE_DELETING: &str = "Deleting";

/// The most a condition message carries (the API server's limit is 32 KiB).
const MAX_MESSAGE: usize = 4096;

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// The status of one installation as this reconcile changes it.
pub(crate) struct StatusWriter {
    api: Api<GitpodInstallation>,
    name: String,
    generation: Option<i64>,
    status: GitpodInstallationStatus,
    written: Option<GitpodInstallationStatus>,
}

impl StatusWriter {
    pub(crate) fn new(api: Api<GitpodInstallation>, obj: &GitpodInstallation) -> Self {
        let status = obj.status.clone().unwrap_or_default();
        StatusWriter {
            api,
            name: obj.name_any(),
            generation: obj.metadata.generation,
            written: obj.status.clone(),
            status,
        }
    }

    /// Set a condition (its transition time changes only when its status does).
    pub(crate) fn condition(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        let status = if status { "True" } else { "False" };
        let message = truncate(message);
        let generation = self.generation;
        match self.status.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now();
                }
                c.status = status.to_string();
                c.reason = reason.to_string();
                c.message = message;
                c.observed_generation = generation;
            }
            None => self.status.conditions.push(Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message,
                last_transition_time: now(),
                observed_generation: generation,
            }),
        }
    }

    pub(crate) fn phase(&mut self, phase: &str) {
        self.status.phase = Some(phase.to_string());
    }

    pub(crate) fn plan(&mut self, plan: &Plan) {
        self.status.plan = Some(plan_summary(plan));
    }

    pub(crate) fn observed(&mut self) {
        self.status.observed_generation = self.generation;
    }

    pub(crate) fn outputs(&mut self, spec: &ReferenceArchitecture, outputs: &Outputs) {
        self.status.name_servers = outputs
            .name_servers()
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        self.status.outputs = public_outputs(spec, outputs);
    }

    /// Mark the installation degraded (Ready and Progressing false).
    pub(crate) fn degraded(&mut self, reason: &str, message: String) {
        self.phase(PHASE_DEGRADED);
        self.condition(PROGRESSING, false, reason, "stopped: see Degraded".into());
        self.condition(READY, false, reason, message.clone());
        self.condition(DEGRADED, true, reason, message);
    }

    /// Patch the status if it changed since it was last read or written.
    pub(crate) async fn write(&mut self) -> gitpod_refarch::Result<()> {
        if self.written.as_ref() == Some(&self.status) {
            return Ok(());
        }
        let patch = serde_json::json!({ "status": self.status });
        self.api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| super::kube_error(e, &format!("writing the status of {}", self.name)))?;
        self.written = Some(self.status.clone());
        Ok(())
    }
}

/// The plan in short: counts by action and the state generation it was made from.
pub fn plan_summary(plan: &Plan) -> PlanSummary {
    let s = plan.summary();
    let n = |k: &str| u32::try_from(s.get(k).copied().unwrap_or(0)).unwrap_or(u32::MAX);
    PlanSummary {
        // An operation an earlier run started and this one awaits is a create or an
        // update still under way: counted with the creates.
        create: n("create").saturating_add(n("await")),
        update: n("update"),
        replace: n("replace"),
        delete: n("delete"),
        unchanged: n("no change").saturating_add(n("retain")),
        state_generation: plan.state_generation().map(ToString::to_string),
    }
}

/// The outputs that are not secret, by camelCase name.
pub fn public_outputs(spec: &ReferenceArchitecture, outputs: &Outputs) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            m.insert(k.to_string(), v.to_string());
        }
    };
    put("region", &spec.cluster.region);
    put("domain", &spec.domain);
    if let Some(account) = outputs.account() {
        put("account", account);
    }
    if let Some(c) = outputs.cluster() {
        put("clusterName", c.name);
        put("clusterEndpoint", c.endpoint);
    }
    for output in outputs.all().values() {
        if let Output::DnsZone { zone_id, .. } = output {
            put("dnsZoneId", zone_id);
        }
    }
    if let Some(db) = outputs.database() {
        match db.endpoint {
            DatabaseEndpoint::Host { host, port, .. } => {
                put("databaseHost", host);
                put("databasePort", &port.to_string());
            }
            DatabaseEndpoint::CloudSql { connection_name } => {
                put("databaseConnectionName", connection_name);
            }
            _ => {}
        }
        put("databaseName", db.database);
        put("databaseUser", db.username);
    }
    match outputs.storage() {
        Some(StorageOutput::S3 {
            endpoint,
            region,
            bucket,
            ..
        }) => {
            put("storageEndpoint", endpoint);
            put("storageRegion", region);
            put("storageBucket", bucket);
        }
        Some(StorageOutput::Gcs {
            project, region, ..
        }) => {
            put("storageProject", project);
            put("storageRegion", region);
        }
        Some(StorageOutput::InCluster { region }) => {
            put("storage", "in-cluster");
            put("storageRegion", region);
        }
        Some(StorageOutput::AzureBlob {
            region,
            account_name,
            ..
        }) => {
            put("storageAccount", account_name);
            put("storageRegion", region);
        }
        _ => {}
    }
    match outputs.registry() {
        Some(RegistryOutput::External { url, server, .. }) => {
            put("registryUrl", url);
            put("registryServer", server);
        }
        Some(RegistryOutput::InClusterS3 {
            bucket,
            region,
            endpoint,
            ..
        }) => {
            put("registryBucket", bucket);
            put("registryRegion", region);
            put("registryEndpoint", endpoint);
        }
        _ => {}
    }
    m
}
