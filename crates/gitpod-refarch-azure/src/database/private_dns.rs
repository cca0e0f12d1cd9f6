//! The MySQL server's private DNS zone `N.private.mysql.database.azure.com`
//! (Microsoft.Network `2024-06-01`, `location: global`) and its virtual network link
//! `vnet-N` to the VNet (`registrationEnabled: false`). The server needs both before it
//! is created; they go after it on delete. Both carry the installation tag: a
//! same-named zone or link without it is a conflict, never adopted or deleted.

use std::collections::BTreeMap;

use gitpod_refarch::provider::Progress;
use gitpod_refarch::resource::{DatabaseInstanceSpec, ResourceId};
use gitpod_refarch::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arm::is_busy;
use crate::context::{
    absent_if_foreign, mysql_private_zone_name, tags_in, tags_of, vnet_name, Context,
    PRIVATE_DNS_API,
};

/// Where private DNS zones and their links live.
pub const GLOBAL: &str = "global";

/// A private DNS zone or link body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GlobalBody<P: Serialize> {
    location: &'static str,
    tags: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<P>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LinkProperties {
    virtual_network: IdRef,
    registration_enabled: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct IdRef {
    #[serde(default)]
    id: String,
}

fn zone_body(d: &DatabaseInstanceSpec) -> GlobalBody<()> {
    GlobalBody {
        location: GLOBAL,
        tags: tags_of(&d.labels, &d.name),
        properties: None,
    }
}

fn link_body(d: &DatabaseInstanceSpec, vnet_id: &str) -> GlobalBody<LinkProperties> {
    GlobalBody {
        location: GLOBAL,
        tags: tags_of(&d.labels, &d.name),
        properties: Some(LinkProperties {
            virtual_network: IdRef {
                id: vnet_id.to_string(),
            },
            registration_enabled: false,
        }),
    }
}

/// Whether a link body links `vnet_id` without registration.
fn link_ok(link: &Value, vnet_id: &str) -> bool {
    link.pointer("/properties/virtualNetwork/id")
        .and_then(Value::as_str)
        .is_some_and(|id| id.eq_ignore_ascii_case(vnet_id))
        && link.pointer("/properties/registrationEnabled") != Some(&Value::Bool(true))
}

/// The zone's id (the server's `privateDnsZoneResourceId`).
pub(super) fn zone_path(c: &Context, installation: &str) -> String {
    c.resource_path(
        installation,
        "Microsoft.Network/privateDnsZones",
        &mysql_private_zone_name(installation),
    )
}

fn link_path(c: &Context, installation: &str) -> String {
    format!(
        "{}/virtualNetworkLinks/{}",
        zone_path(c, installation),
        vnet_name(installation)
    )
}

/// The zone or link at `path`, if it exists and is ours.
async fn get(c: &Context, path: &str, what: &str, installation: &str) -> Result<Option<Value>> {
    let found = c
        .get_ours::<Value>(path, PRIVATE_DNS_API, installation, what, None)
        .await?;
    Ok(found.map(|(v, _)| v))
}

/// The zone and its link as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    /// Whether the zone exists.
    pub(super) zone: bool,
    /// What is wrong with the link to the VNet (missing, or not as wanted), in words.
    pub(super) link_drift: Option<String>,
}

/// Read the zone and, when it exists, its link.
pub(super) async fn observe(c: &Context, d: &DatabaseInstanceSpec) -> Result<Found> {
    let zone = get(c, &zone_path(c, &d.name), "private DNS zone", &d.name).await?;
    let link = match zone {
        Some(_) => get(c, &link_path(c, &d.name), "virtual network link", &d.name).await?,
        None => None,
    };
    let vnet_id = c.vnet_path(&d.name);
    let link_drift = (!link.as_ref().is_some_and(|l| link_ok(l, &vnet_id))).then(|| {
        format!(
            "the private DNS zone {} is not linked to {}",
            mysql_private_zone_name(&d.name),
            vnet_name(&d.name)
        )
    });
    Ok(Found {
        zone: zone.is_some(),
        link_drift,
    })
}

/// Make the zone, then its link (one operation per call): the progress to return while
/// either is being made, `None` once both are as wanted.
pub(super) async fn ensure(
    c: &Context,
    d: &DatabaseInstanceSpec,
    rid: &ResourceId,
) -> Result<Option<Progress>> {
    let zone_path = zone_path(c, &d.name);
    match get(c, &zone_path, "private DNS zone", &d.name).await? {
        Some(z) if is_busy(&z) => return Ok(Some(c.watch(rid, &zone_path, PRIVATE_DNS_API))),
        Some(z) if tags_in(&z) == tags_of(&d.labels, &d.name) => {}
        _ => {
            let lro = c
                .arm
                .put(&zone_path, PRIVATE_DNS_API, &zone_body(d))
                .await?;
            if let Some(p) = c.pending(rid, &lro) {
                return Ok(Some(p));
            }
        }
    }
    let link_path = link_path(c, &d.name);
    let vnet_id = c.vnet_path(&d.name);
    match get(c, &link_path, "virtual network link", &d.name).await? {
        Some(l) if is_busy(&l) => return Ok(Some(c.watch(rid, &link_path, PRIVATE_DNS_API))),
        Some(l) if link_ok(&l, &vnet_id) => {}
        _ => {
            let lro = c
                .arm
                .put(&link_path, PRIVATE_DNS_API, &link_body(d, &vnet_id))
                .await?;
            if let Some(p) = c.pending(rid, &lro) {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

/// Delete the link, then the zone (ones not tagged ours stay): the progress to return
/// while either is being deleted, `None` once both are gone.
pub(super) async fn delete(
    c: &Context,
    d: &DatabaseInstanceSpec,
    rid: &ResourceId,
) -> Result<Option<Progress>> {
    for (p, what) in [
        (link_path(c, &d.name), "virtual network link"),
        (zone_path(c, &d.name), "private DNS zone"),
    ] {
        if absent_if_foreign(get(c, &p, what, &d.name).await)?.is_some() {
            let lro = c.arm.delete(&p, PRIVATE_DNS_API).await?;
            if let Some(pending) = c.pending(rid, &lro) {
                return Ok(Some(pending));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    use crate::database::tests::spec;

    #[test]
    fn private_zone_and_link_bodies() {
        let d = spec(json!({}));
        assert_eq!(
            serde_json::to_value(zone_body(&d)).unwrap(),
            json!({"location": "global", "tags": {"gitpod-installation": "gp"}})
        );
        let vnet = "/subscriptions/s/resourceGroups/gp/providers/Microsoft.Network/virtualNetworks/vnet-gp";
        let link = serde_json::to_value(link_body(&d, vnet)).unwrap();
        assert_eq!(
            link,
            json!({"location": "global", "tags": {"gitpod-installation": "gp"},
                   "properties": {"virtualNetwork": {"id": vnet}, "registrationEnabled": false}})
        );
        assert!(link_ok(&link, &vnet.to_uppercase()));
        let mut registered = link.clone();
        registered["properties"]["registrationEnabled"] = json!(true);
        assert!(!link_ok(&registered, vnet));
        assert!(!link_ok(&link, "/other-vnet"));
    }
}
