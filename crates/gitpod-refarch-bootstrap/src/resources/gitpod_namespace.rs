//! `gitpod-namespace`: the namespace `gitpod` and the installer's secrets
//! (`database`/`cloudsql`, `storage-*`, registry). Secrets that are missing or hold
//! other data than the outputs give now are drift. Its teardown also deletes every
//! `LoadBalancer` Service and waits for them ([`crate::teardown`]).

use gitpod_refarch::installer::render_secrets;
use gitpod_refarch::outputs::Outputs;
use gitpod_refarch::provider::{Inputs, Observed, Progress, ENCRYPTION_KEY};
use gitpod_refarch::resource::{GitpodNamespaceSpec, ResourceId};
use gitpod_refarch::Result;
use serde_json::Value;

use crate::api;
use crate::context::{done, output, pending, str_at, Context};
use crate::objects;
use crate::teardown;

/// One read: the namespace (pending while it terminates); drift when the installer's
/// secrets are not the current ones.
pub(crate) async fn observe(
    ctx: &Context<'_>,
    s: &GitpodNamespaceSpec,
    inputs: &Inputs,
    id: ResourceId,
) -> Result<Option<Observed<GitpodNamespaceSpec>>> {
    let Some(ns) = api::get(ctx.client, "v1", "Namespace", None, &s.namespace).await? else {
        return Ok(None);
    };
    if ns.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(Some(Observed::pending(
            s.clone(),
            pending(
                ctx,
                id,
                teardown::operation(&s.namespace),
                Some("terminating".into()),
            ),
        )));
    }
    let drift = secrets_drift(ctx, &s.namespace, inputs).await?;
    let tls_drift = match &ctx.config.tls_certificate {
        Some(t) if !crate::tls_secret::in_sync(ctx.client, t, &s.namespace).await? => {
            Some(format!(
            "the bring-your-own certificate's Secret {}/{} is missing or holds another certificate",
            s.namespace,
            t.secret_name()
        ))
        }
        _ => None,
    };
    Ok(Some(
        Observed::ready(s.clone(), output(vec![api::describe(&ns)]))
            .with_drift_if(drift)
            .with_drift_if(tls_drift),
    ))
}

/// Why the installer's secrets in `ns` are not what the outputs give now (`None`:
/// they are). Names secrets and keys only, never values.
async fn secrets_drift(ctx: &Context<'_>, ns: &str, inputs: &Inputs) -> Result<Option<String>> {
    let Ok(key) = inputs.secret(ENCRYPTION_KEY) else {
        return Ok(Some(
            "the encryption key is not known: the installer's secrets cannot be checked".into(),
        ));
    };
    let Ok(wanted) = render_secrets(&Outputs::new(inputs.outputs().clone()), key) else {
        return Ok(Some(
            "the installer's secrets cannot be rendered from the outputs known so far".into(),
        ));
    };
    let mut reasons = Vec::new();
    for m in wanted {
        let Some(live) = api::get(ctx.client, "v1", "Secret", Some(ns), &m.name).await? else {
            reasons.push(format!("Secret {ns}/{} is missing", m.name));
            continue;
        };
        let keys = objects::secret_differs(&live, &m.data);
        if !keys.is_empty() {
            reasons.push(format!(
                "Secret {ns}/{} differs in {}",
                m.name,
                keys.join(", ")
            ));
        }
        let type_ = str_at(&live, "/type");
        if type_ != m.type_ {
            reasons.push(format!(
                "Secret {ns}/{} has type {type_}, not {}",
                m.name, m.type_
            ));
        }
    }
    Ok((!reasons.is_empty()).then(|| {
        format!(
            "the installer's secrets are not the current ones: {}",
            reasons.join("; ")
        )
    }))
}

/// Apply the namespace and the installer's secrets.
pub(crate) async fn ensure(
    ctx: &Context<'_>,
    s: &GitpodNamespaceSpec,
    inputs: &Inputs,
) -> Result<Progress> {
    let c = ctx.client;
    let key = inputs.secret(ENCRYPTION_KEY)?;
    let secrets = render_secrets(&Outputs::new(inputs.outputs().clone()), key)?;
    let mut applied = Vec::new();
    let ns = objects::namespace(&s.namespace)?;
    api::apply(c, &ns).await?;
    applied.push(api::describe(&ns));
    for m in &secrets {
        let mut obj = objects::installer_secret(m)?;
        obj["metadata"]["namespace"] = Value::from(s.namespace.as_str());
        api::apply(c, &obj).await?;
        applied.push(api::describe(&obj));
    }
    if let Some(t) = &ctx.config.tls_certificate {
        applied.push(crate::tls_secret::apply(c, t, &s.namespace).await?);
    }
    Ok(done(applied))
}

/// Delete every `LoadBalancer` Service, anywhere (their cloud load balancers would keep
/// the network from being deleted), and the namespace; `Pending` until all are gone.
pub(crate) async fn delete(
    ctx: &Context<'_>,
    s: &GitpodNamespaceSpec,
    id: ResourceId,
) -> Result<Progress> {
    let c = ctx.client;
    for svc in teardown::load_balancers(c).await? {
        let ns = str_at(&svc, "/metadata/namespace");
        api::delete(c, "v1", "Service", Some(ns), str_at(&svc, "/metadata/name")).await?;
    }
    teardown::delete_namespace(ctx, id, &s.namespace).await
}
