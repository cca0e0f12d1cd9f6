//! What every in-cluster resource works with: the connection to the cluster (with its
//! retry policy and clock), the settings, the certificate watches; and the helpers
//! they share (outputs, pending operations, the DNS solver, condition messages, the
//! drift of a Secret).

use std::collections::BTreeMap;
use std::sync::Mutex;

use gitpod_refarch::outputs::Outputs;
use gitpod_refarch::provider::{Inputs, Operation, Progress};
use gitpod_refarch::resource::{DnsSolver, Output, ResourceId};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde_json::Value;

use crate::api::{self, KubeApi};
use crate::config::BootstrapConfig;
use crate::objects;

/// What a certificate wait checks besides the certificate: the zone and the name
/// servers its parent must delegate to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertWatch {
    /// The zone (`gitpod.example.com`).
    pub zone: String,
    /// The zone's name servers (from the DNS zone's output).
    pub name_servers: Vec<String>,
}

/// What each resource's observe, ensure, delete and poll work with.
pub(crate) struct Context<'a> {
    /// The cluster's API, with the per-call retries.
    pub(crate) client: &'a KubeApi,
    /// The settings.
    pub(crate) config: &'a BootstrapConfig,
    /// The certificate waits, by operation id.
    pub(crate) watches: &'a Mutex<BTreeMap<String, CertWatch>>,
}

/// A finished step that made (or found) `objects`.
pub(crate) fn done(objects: Vec<String>) -> Progress {
    Progress::Done(Some(Output::InCluster { objects }))
}

/// The in-cluster output naming `objects`.
pub(crate) fn output(objects: Vec<String>) -> Option<Output> {
    Some(Output::InCluster { objects })
}

/// An operation `op` on resource `id` to poll after the configured interval.
pub(crate) fn pending(
    ctx: &Context<'_>,
    id: ResourceId,
    op: String,
    message: Option<String>,
) -> Operation {
    let mut o = Operation::new(op, id).poll_after(ctx.config.poll_interval);
    o.message = message;
    o
}

/// The operation `op`, still pending, to poll again: why.
pub(crate) fn still_pending(ctx: &Context<'_>, op: &Operation, message: String) -> Progress {
    let mut o = op.clone().poll_after(ctx.config.poll_interval);
    o.message = Some(message);
    Progress::Pending(o)
}

/// The DNS-01 solver the DNS identity reported (the core's `Outputs::dns_solver`).
pub(crate) fn solver(inputs: &Inputs) -> Result<DnsSolver> {
    Outputs::new(inputs.outputs().clone())
        .dns_solver()
        .cloned()
        .ok_or_else(|| {
            Error::invalid_input(
                "the DNS provider reported no DNS-01 solver for the zone: external-dns and the \
                 issuer cannot be configured",
            )
        })
}

/// The drift reason when the DNS identity reported no solver: what depends on it
/// cannot be checked, so it is configured again (and `ensure` fails with the cause).
pub(crate) const NO_SOLVER_DRIFT: &str =
    "the DNS provider reported no DNS-01 solver: the credentials in the cluster cannot be checked";

/// The string at JSON pointer `ptr` (empty if absent).
pub(crate) fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The reason and message of condition `type_` of `obj`, for status messages.
pub(crate) fn condition_message(obj: &Value, type_: &str) -> String {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .map(|c| {
            format!("{} {}", str_at(c, "/reason"), str_at(c, "/message"))
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "no status yet".into())
}

/// Deleting a cert-manager object once its CRD is gone: nothing to do.
pub(crate) fn absent_kind(e: Error) -> Result<bool> {
    if e.kind() == ErrorKind::NotFound {
        Ok(false)
    } else {
        Err(e)
    }
}

/// How the server's copy of the Secret `wanted` (as built by [`crate::objects`])
/// differs from it (`None`: it holds the same data). Names keys only, never values.
pub(crate) async fn secret_drift(ctx: &Context<'_>, wanted: &Value) -> Result<Option<String>> {
    let ns = wanted
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let name = str_at(wanted, "/metadata/name");
    let what = match ns {
        Some(ns) => format!("Secret {ns}/{name}"),
        None => format!("Secret {name}"),
    };
    let Some(live) = api::get(ctx.client, "v1", "Secret", ns, name).await? else {
        return Ok(Some(format!("{what} is missing")));
    };
    let keys = objects::secret_data_differs(&live, wanted);
    Ok((!keys.is_empty()).then(|| format!("{what} differs in {}", keys.join(", "))))
}
