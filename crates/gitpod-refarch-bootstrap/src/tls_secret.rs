//! Bring-your-own certificates: the `kubernetes.io/tls` Secret the installer config
//! names (`certificate: {kind: secret, name}`), written in the Gitpod namespace from
//! the PEM files of the spec ([`gitpod_refarch::tls::TlsCertificate`]).
//!
//! It is part of the `gitpod-namespace` step: with a bring-your-own certificate the
//! graph has no `issuer` or `certificate` node (those are cert-manager's), and the
//! Secret lives in the namespace that step makes, next to the installer's secrets.
//! A destroy deletes it with the namespace.

use std::collections::BTreeMap;

use gitpod_refarch::tls::TlsCertificate;
use gitpod_refarch::{Result, Secret};
use serde_json::Value;

use crate::api::{self, KubeApi};
use crate::objects;

/// The Secret's type.
pub const TLS_TYPE: &str = "kubernetes.io/tls";

fn data(tls: &TlsCertificate) -> BTreeMap<String, Secret> {
    BTreeMap::from([
        (
            "tls.crt".to_string(),
            Secret::new(tls.chain_pem().to_string()),
        ),
        ("tls.key".to_string(), tls.key_pem().clone()),
    ])
}

/// The Secret object for `tls` in namespace `ns`.
pub fn secret(tls: &TlsCertificate, ns: &str) -> Result<Value> {
    objects::secret(tls.secret_name(), ns, TLS_TYPE, &data(tls))
}

/// Whether the cluster's Secret holds this certificate and key, with the TLS type.
pub(crate) async fn in_sync(c: &KubeApi, tls: &TlsCertificate, ns: &str) -> Result<bool> {
    let live = api::get(c, "v1", "Secret", Some(ns), tls.secret_name()).await?;
    Ok(live.is_some_and(|l| {
        objects::secret_matches(&l, &data(tls))
            && l.get("type").and_then(Value::as_str) == Some(TLS_TYPE)
    }))
}

/// Apply the Secret; returns its description for the step's output.
pub(crate) async fn apply(c: &KubeApi, tls: &TlsCertificate, ns: &str) -> Result<String> {
    let obj = secret(tls, ns)?;
    api::apply(c, &obj).await?;
    Ok(api::describe(&obj))
}
