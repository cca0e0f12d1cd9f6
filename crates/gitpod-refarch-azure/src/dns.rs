//! Azure DNS (Microsoft.Network `2018-05-01`): the public zone for the domain, the
//! Gitpod records, and the workload identities of cert-manager and external-dns. This
//! file routes each DNS resource to its file and holds what the records and the zone's
//! deletion share (the record-set wire types, the paths, the names relative to the
//! zone).
//!
//! - **Zone** ([`zone`]): `dnsZones/<zone DNS name>` in the resource group,
//!   `location: global`, `zoneType: Public`, tagged for the installation (a same-named
//!   zone without the tag is a [`Conflict`], never adopted). Its four Azure name
//!   servers are the output ([`Output::DnsZone`]), to delegate to from the parent zone.
//!   Zone writes are synchronous.
//! - **Records** ([`records`]): the record sets DOMAIN, `*.DOMAIN`, `*.ws.DOMAIN`
//!   relative to the zone (`@`, `*`, `*.ws` when the zone is the domain), `A` for an
//!   IPv4 target or `CNAME` for a host name, TTL [`TTL`], with the installation tag in
//!   their `metadata`, which marks them as this SDK's.
//! - **Identities** ([`identity`]): cert-manager's and external-dns's user-assigned
//!   identities, federated with the cluster's OIDC issuer, with DNS Zone Contributor on
//!   the zone.
//! - **Deleting the zone** removes the record sets this installation owns first: those
//!   with its `metadata` tag, external-dns's TXT ownership records whose owner is the
//!   installation (`heritage=external-dns,external-dns/owner=N`, in both of
//!   external-dns's name formats) with the `A`/`AAAA`/`CNAME` records they claim, and
//!   leftover DNS-01 challenge records (`_acme-challenge…` TXT). A zone that still holds
//!   any other record set (besides its own apex `NS` and `SOA`) is not deleted: that is
//!   a [`Conflict`] naming them, and nothing is removed. Then the zone goes (a
//!   long-running delete).
//!
//! [`Conflict`]: gitpod_refarch::ErrorKind::Conflict
//! [`Output::DnsZone`]: gitpod_refarch::resource::Output::DnsZone

pub mod identity;
pub mod records;
pub mod zone;

use std::collections::BTreeMap;

use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::DnsResource;
use gitpod_refarch::spec::RecordsTarget;
use gitpod_refarch::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::context::{is_ours, Context};

pub use identity::{subject, CERT_MANAGER, CONTROLLERS, EXTERNAL_DNS, FIC_AUDIENCE};
use zone::Zone;
pub use zone::{delete_zone, ensure_zone, observe_zone};

/// The TTL of the Gitpod records (seconds).
pub const TTL: i64 = 300;

/// The zone's location: DNS zones are global.
pub const ZONE_LOCATION: &str = "global";

/// One read of a DNS resource.
pub async fn observe(c: &Context, resource: &DnsResource) -> Result<Option<Observed<DnsResource>>> {
    Ok(match resource {
        DnsResource::Zone(d) => observe_zone(c, d).await?.map(|o| o.map(DnsResource::Zone)),
        DnsResource::Identity(d) => identity::observe(c, d)
            .await?
            .map(|o| o.map(DnsResource::Identity)),
        DnsResource::Records(d) => records::observe(c, d)
            .await?
            .map(|o| o.map(DnsResource::Records)),
    })
}

/// Create or update a DNS resource.
pub async fn ensure(c: &Context, resource: &DnsResource, _inputs: &Inputs) -> Result<Progress> {
    match resource {
        DnsResource::Zone(d) => ensure_zone(c, d).await,
        DnsResource::Identity(d) => identity::ensure(c, d).await,
        DnsResource::Records(d) => records::ensure(c, d).await,
    }
}

/// Delete a DNS resource (absent is success).
pub async fn delete(c: &Context, resource: &DnsResource) -> Result<Progress> {
    match resource {
        DnsResource::Zone(d) => delete_zone(c, d).await,
        DnsResource::Identity(d) => identity::delete(c, d).await,
        DnsResource::Records(d) => records::delete(c, d).await,
    }
}

// ---------------------------------------------------------------------------------
// Record sets (2018-05-01): what the records write and the zone's deletion reads.

/// An `A` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ARecord {
    #[serde(default)]
    ipv4_address: String,
}

/// A `CNAME` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CnameRecord {
    #[serde(default)]
    cname: String,
}

/// A `TXT` record: its value in chunks of at most 255 characters.
#[derive(Debug, Clone, Default, Deserialize)]
struct TxtRecord {
    #[serde(default)]
    value: Option<Vec<String>>,
}

/// A record set as ARM returns it.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RecordSet {
    /// Relative name (`@`, `www`, `*.ws`).
    #[serde(default)]
    name: String,
    /// `Microsoft.Network/dnszones/<TYPE>`.
    #[serde(default, rename = "type")]
    resource_type: String,
    #[serde(default)]
    properties: RecordSetProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RecordSetProperties {
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "TTL")]
    ttl: Option<i64>,
    #[serde(default, rename = "ARecords")]
    a_records: Option<Vec<ARecord>>,
    #[serde(default, rename = "CNAMERecord")]
    cname_record: Option<CnameRecord>,
    #[serde(default, rename = "TXTRecords")]
    txt_records: Option<Vec<TxtRecord>>,
}

impl RecordSet {
    /// The record type (`A`, `CNAME`, `TXT`, `NS`, `SOA`, ...), upper-case.
    fn rtype(&self) -> String {
        self.resource_type
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase()
    }

    /// Whether its metadata marks it as `installation`'s.
    fn marked_for(&self, installation: &str) -> bool {
        self.properties
            .metadata
            .as_ref()
            .is_some_and(|m| is_ours(m, installation))
    }

    /// The TXT values, each with its chunks joined.
    fn txt_values(&self) -> Vec<String> {
        self.properties
            .txt_records
            .iter()
            .flatten()
            .map(|t| t.value.clone().unwrap_or_default().concat())
            .collect()
    }

    /// What an A or CNAME set points at (addresses joined with `,`).
    fn data(&self) -> String {
        if let Some(c) = &self.properties.cname_record {
            return c.cname.trim_end_matches('.').to_string();
        }
        self.properties
            .a_records
            .iter()
            .flatten()
            .map(|a| a.ipv4_address.clone())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A page of record sets.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordSetPage {
    #[serde(default)]
    value: Vec<RecordSet>,
    #[serde(default)]
    next_link: Option<String>,
}

/// The body of a record-set PUT.
#[derive(Debug, Serialize)]
struct RecordSetBody {
    properties: RecordSetBodyProperties,
}

#[derive(Debug, Serialize)]
struct RecordSetBodyProperties {
    metadata: BTreeMap<String, String>,
    #[serde(rename = "TTL")]
    ttl: i64,
    #[serde(rename = "ARecords", skip_serializing_if = "Option::is_none")]
    a_records: Option<Vec<ARecord>>,
    #[serde(rename = "CNAMERecord", skip_serializing_if = "Option::is_none")]
    cname_record: Option<CnameRecord>,
}

/// The record type and body of the Gitpod records pointing at `target`.
fn record_body(
    target: &RecordsTarget,
    installation: &str,
) -> Result<(&'static str, RecordSetBody)> {
    let metadata = BTreeMap::from([(INSTALLATION_LABEL.to_string(), installation.to_string())]);
    let (rtype, a_records, cname_record) = match target {
        RecordsTarget::Ipv4(ip) => (
            "A",
            Some(vec![ARecord {
                ipv4_address: ip.clone(),
            }]),
            None,
        ),
        RecordsTarget::Hostname(h) if !h.is_empty() => (
            "CNAME",
            None,
            Some(CnameRecord {
                cname: h.trim_end_matches('.').to_string(),
            }),
        ),
        _ => {
            return Err(Error::invalid_input(
                "dns.recordsTarget: the Gitpod records need an IPv4 address or a host name",
            ))
        }
    };
    Ok((
        rtype,
        RecordSetBody {
            properties: RecordSetBodyProperties {
                metadata,
                ttl: TTL,
                a_records,
                cname_record,
            },
        },
    ))
}

// ---------------------------------------------------------------------------------
// Paths and names.

/// The zone's ARM path.
fn zone_path(c: &Context, installation: &str, zone: &str) -> String {
    c.resource_path(installation, "Microsoft.Network/dnsZones", zone)
}

/// A record set's ARM path.
fn record_path(c: &Context, installation: &str, zone: &str, rtype: &str, relative: &str) -> String {
    format!("{}/{rtype}/{relative}", zone_path(c, installation, zone))
}

/// The name of `fqdn` relative to `zone`: `@` for the apex.
pub(crate) fn relative_name(fqdn: &str, zone: &str) -> Result<String> {
    let name = fqdn.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    if name == zone {
        return Ok("@".into());
    }
    name.strip_suffix(&format!(".{zone}"))
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "{fqdn} is not in zone {zone}: the Gitpod domain must be the zone or below it"
            ))
        })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gitpod_refarch::ErrorKind;
    use serde_json::json;

    /// A record set from its ARM body.
    pub(crate) fn set(v: serde_json::Value) -> RecordSet {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn record_bodies_carry_ttl_metadata_and_the_wire_names() {
        let (t, body) = record_body(&RecordsTarget::Ipv4("203.0.113.7".into()), "gp").unwrap();
        assert_eq!(t, "A");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"properties": {
                "metadata": {"gitpod-installation": "gp"},
                "TTL": 300,
                "ARecords": [{"ipv4Address": "203.0.113.7"}]
            }})
        );
        let (t, body) =
            record_body(&RecordsTarget::Hostname("lb.example.net.".into()), "gp").unwrap();
        assert_eq!(t, "CNAME");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"properties": {
                "metadata": {"gitpod-installation": "gp"},
                "TTL": 300,
                "CNAMERecord": {"cname": "lb.example.net"}
            }})
        );
        assert_eq!(
            record_body(&RecordsTarget::Hostname(String::new()), "gp")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn names_are_made_relative_to_the_zone() {
        let z = "gitpod.example.com";
        assert_eq!(relative_name("gitpod.example.com", z).unwrap(), "@");
        assert_eq!(relative_name("*.gitpod.example.com.", z).unwrap(), "*");
        assert_eq!(relative_name("*.ws.gitpod.example.com", z).unwrap(), "*.ws");
        assert_eq!(
            relative_name("*.ws.Gitpod.Example.com", "example.com").unwrap(),
            "*.ws.gitpod"
        );
        assert!(relative_name("gitpod.example.org", z).is_err());
        // A suffix match that is not a label boundary is not in the zone.
        assert!(relative_name("xgitpod.example.com", z).is_err());
    }

    #[test]
    fn record_sets_read_their_type_and_data() {
        let a = set(json!({"name": "@", "type": "Microsoft.Network/dnszones/A",
            "properties": {"TTL": 300, "ARecords": [{"ipv4Address": "1.2.3.4"}, {"ipv4Address": "1.2.3.5"}]}}));
        assert_eq!(a.rtype(), "A");
        assert_eq!(a.data(), "1.2.3.4,1.2.3.5");
        let c = set(
            json!({"name": "x", "type": "Microsoft.Network/dnszones/CNAME",
            "properties": {"CNAMERecord": {"cname": "lb.example.net."}, "metadata": null}}),
        );
        assert_eq!(c.rtype(), "CNAME");
        assert_eq!(c.data(), "lb.example.net");
        assert!(!c.marked_for("gp"));
    }
}
