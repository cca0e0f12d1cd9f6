//! `certificate`: the Certificate `https-certificates`. While it is not Ready, the
//! ACME challenges' state is reported and the zone's delegation is checked
//! ([`crate::delegation`]): a zone its parent does not delegate to never validates.

use gitpod_refarch::outputs::Outputs;
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress};
use gitpod_refarch::resource::{CertificateSpec, ResourceId};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde_json::Value;

use crate::api;
use crate::certmanager;
use crate::context::{
    absent_kind, condition_message, done, output, pending, str_at, CertWatch, Context,
};
use crate::objects;

/// The prefix of its operation ids (`certificate/<ns>/<name>`).
pub(crate) const OPERATION: &str = "certificate";

const CERT_MANAGER_API: &str = "cert-manager.io/v1";

/// The DNS names and issuer of the Certificate `live`.
fn actual(s: &CertificateSpec, live: &Value) -> CertificateSpec {
    let mut a = s.clone();
    a.dns_names = live
        .pointer("/spec/dnsNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    a.issuer = str_at(live, "/spec/issuerRef/name").into();
    a
}

/// Register what the certificate wait checks; returns the operation id.
fn watch(ctx: &Context<'_>, s: &CertificateSpec, inputs: &Inputs) -> String {
    let op = format!("{OPERATION}/{}/{}", s.namespace, s.name);
    let name_servers = Outputs::new(inputs.outputs().clone())
        .name_servers()
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    if let Ok(mut w) = ctx.watches.lock() {
        w.insert(
            op.clone(),
            CertWatch {
                zone: s.zone_dns_name.clone(),
                name_servers,
            },
        );
    }
    op
}

/// One read: the Certificate's names and issuer; pending while it is not Ready.
pub(crate) async fn observe(
    ctx: &Context<'_>,
    s: &CertificateSpec,
    inputs: &Inputs,
    id: ResourceId,
) -> Result<Option<Observed<CertificateSpec>>> {
    let Some(live) = api::get(
        ctx.client,
        CERT_MANAGER_API,
        "Certificate",
        Some(&s.namespace),
        &s.name,
    )
    .await?
    else {
        return Ok(None);
    };
    let a = actual(s, &live);
    if certmanager::current_condition(&live, "Ready") {
        return Ok(Some(Observed::ready(a, output(vec![api::describe(&live)]))));
    }
    let op = watch(ctx, s, inputs);
    Ok(Some(Observed::pending(
        a,
        pending(ctx, id, op, Some("not Ready".into())),
    )))
}

/// Apply the Certificate when it differs, then wait until it is Ready (checking the
/// zone's delegation first).
pub(crate) async fn ensure(
    ctx: &Context<'_>,
    s: &CertificateSpec,
    inputs: &Inputs,
    id: ResourceId,
) -> Result<Progress> {
    let c = ctx.client;
    let obj = objects::certificate(s);
    let live = api::get(
        c,
        CERT_MANAGER_API,
        "Certificate",
        Some(&s.namespace),
        &s.name,
    )
    .await?;
    let current = live.as_ref().is_some_and(|l| &actual(s, l) == s);
    if !current {
        api::apply(c, &obj).await?;
    }
    if live
        .as_ref()
        .is_some_and(|l| current && certmanager::current_condition(l, "Ready"))
    {
        return Ok(done(vec![api::describe(&obj)]));
    }
    let op = watch(ctx, s, inputs);
    // Before waiting: a zone its parent does not delegate to never validates.
    check_delegation(ctx, &op).await?;
    Ok(Progress::Pending(pending(
        ctx,
        id,
        op,
        Some("waiting for the certificate".into()),
    )))
}

/// Remove the Certificate (absent, or its CRD gone, is success) and its TLS Secret.
pub(crate) async fn delete(ctx: &Context<'_>, s: &CertificateSpec) -> Result<Progress> {
    let c = ctx.client;
    api::delete(
        c,
        CERT_MANAGER_API,
        "Certificate",
        Some(&s.namespace),
        &s.name,
    )
    .await
    .or_else(absent_kind)?;
    api::delete(c, "v1", "Secret", Some(&s.namespace), &s.name).await?;
    Ok(Progress::Done(None))
}

/// Poll the wait for the Certificate `<ns>/<name>` (`rest`), saying why it is not
/// Ready: the ACME challenges' state, as cert-manager reports it.
pub(crate) async fn poll(ctx: &Context<'_>, op: &Operation, rest: &str) -> Result<Progress> {
    let (ns, name) = rest.split_once('/').unwrap_or(("", rest));
    let c = ctx.client;
    let Some(cert) = api::get(c, CERT_MANAGER_API, "Certificate", Some(ns), name).await? else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("Certificate {rest} disappeared"),
        ));
    };
    if certmanager::current_condition(&cert, "Ready") {
        return Ok(Progress::Done(None));
    }
    let challenges = api::list(c, "acme.cert-manager.io/v1", "Challenge", Some(ns), None)
        .await
        .or_else(|e| {
            if e.kind() == ErrorKind::NotFound {
                Ok(vec![])
            } else {
                Err(e)
            }
        })?;
    let mut message = format!(
        "Certificate {rest} is not Ready: {}",
        condition_message(&cert, "Ready")
    );
    for ch in &challenges {
        let reason = str_at(ch, "/status/reason");
        let state = str_at(ch, "/status/state");
        message.push_str(&format!(
            "; challenge for {} {}{}",
            str_at(ch, "/spec/dnsName"),
            if state.is_empty() { "pending" } else { state },
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        ));
    }
    if !challenges.is_empty() {
        check_delegation(ctx, &op.id).await?;
    }
    let mut o = op.clone().poll_after(ctx.config.poll_interval);
    o.message = Some(message);
    Ok(Progress::Pending(o))
}

/// Fail with the NS records to add when the parent zone does not delegate to the
/// zone's name servers. A check that cannot run (no network) only warns.
async fn check_delegation(ctx: &Context<'_>, op: &str) -> Result<()> {
    let Some(check) = &ctx.config.delegation else {
        return Ok(());
    };
    let watch = ctx.watches.lock().ok().and_then(|w| w.get(op).cloned());
    let Some(watch) = watch.filter(|w| !w.name_servers.is_empty()) else {
        return Ok(());
    };
    match check.check(&watch.zone, &watch.name_servers).await {
        Ok(d) if !d.is_delegated() => Err(Error::new(
            ErrorKind::Precondition,
            format!("the certificate cannot be issued until the zone is delegated: {d}"),
        )),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(zone = %watch.zone, "cannot check the zone's delegation: {}", e.message());
            Ok(())
        }
    }
}
