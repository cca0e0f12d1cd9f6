//! The public Azure DNS zone for the domain (`dnsZones/<zone DNS name>`, Microsoft.Network
//! `2018-05-01`, `location: global`, `zoneType: Public`), tagged for the installation;
//! its four name servers are the output. Deleting it first removes the record sets
//! this installation owns and refuses while others remain (see [`crate::dns`]).

use std::collections::{BTreeMap, BTreeSet};

use azure_core::http::Url;
use gitpod_refarch::provider::{Observed, Progress};
use gitpod_refarch::resource::{DnsZoneSpec, Output, ResourceId, ResourceKind};
use gitpod_refarch::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use super::{record_path, zone_path, RecordSet, RecordSetPage, ZONE_LOCATION};
use crate::context::{tags_of, Context, DNS_API};

/// A DNS zone as ARM returns it.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Zone {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    properties: ZoneProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZoneProperties {
    #[serde(default)]
    name_servers: Option<Vec<String>>,
}

impl Zone {
    fn tags(&self) -> BTreeMap<String, String> {
        self.tags.clone().unwrap_or_default()
    }

    fn output(&self) -> Output {
        Output::DnsZone {
            zone_id: self.id.clone(),
            name_servers: self
                .properties
                .name_servers
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|n| n.trim_end_matches('.').to_string())
                .collect(),
        }
    }
}

/// The body of a zone PUT.
#[derive(Debug, Serialize)]
struct ZoneBody {
    location: &'static str,
    tags: BTreeMap<String, String>,
    properties: ZoneBodyProperties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ZoneBodyProperties {
    zone_type: &'static str,
}

fn zone_body(d: &DnsZoneSpec) -> ZoneBody {
    ZoneBody {
        location: ZONE_LOCATION,
        tags: tags_of(&d.labels, &d.name),
        properties: ZoneBodyProperties {
            zone_type: "Public",
        },
    }
}

/// `path` and query of a `nextLink`, without its `api-version` (the client adds it).
fn next_page(link: &str) -> Result<(String, Vec<(String, String)>)> {
    let u = Url::parse(link)
        .map_err(|_| Error::internal(format!("ARM gave a nextLink that is not a URL: {link}")))?;
    let query = u
        .query_pairs()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("api-version"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok((u.path().to_string(), query))
}
// ---------------------------------------------------------------------------------
// Zone.

/// The zone, if it exists; a same-named zone not tagged for the installation is a
/// conflict.
async fn get_zone(c: &Context, installation: &str, zone: &str) -> Result<Option<Zone>> {
    let what = format!("Azure DNS zone {zone}");
    let found = c
        .get_ours::<Zone>(
            &zone_path(c, installation, zone),
            DNS_API,
            installation,
            &what,
            None,
        )
        .await?;
    Ok(found.map(|(z, _)| z))
}

/// The zone as it exists, with its name servers.
pub async fn observe_zone(c: &Context, d: &DnsZoneSpec) -> Result<Option<Observed<DnsZoneSpec>>> {
    let Some(z) = get_zone(c, &d.name, &d.dns_name).await? else {
        return Ok(None);
    };
    let mut a = d.clone();
    if !z.name.is_empty() {
        a.dns_name = z.name.trim_end_matches('.').to_string();
    }
    a.labels = z.tags();
    Ok(Some(Observed::ready(a, Some(z.output()))))
}

/// Create the zone, or retag it.
pub async fn ensure_zone(c: &Context, d: &DnsZoneSpec) -> Result<Progress> {
    let rid = ResourceId::new(ResourceKind::DnsZone, d.name.clone());
    let path = zone_path(c, &d.name, &d.dns_name);
    let body = zone_body(d);
    match get_zone(c, &d.name, &d.dns_name).await? {
        Some(z) if z.tags() == body.tags => return Ok(Progress::Done(Some(z.output()))),
        _ => {}
    }
    let lro = c.arm.put(&path, DNS_API, &body).await?;
    if let Some(p) = c.pending(&rid, &lro) {
        return Ok(p);
    }
    // The PUT answers with the zone; read it again if it did not.
    let z = match lro.body::<Zone>()? {
        Some(z) if z.properties.name_servers.is_some() => Some(z),
        _ => c.arm.get::<Zone>(&path, DNS_API).await?,
    };
    let z = z.ok_or_else(|| {
        Error::new(
            ErrorKind::Transient,
            format!("zone {} was written but cannot be read yet", d.dns_name),
        )
        .with_resource(rid)
    })?;
    Ok(Progress::Done(Some(z.output())))
}

/// Every record set of the zone (all pages).
async fn list_record_sets(c: &Context, installation: &str, zone: &str) -> Result<Vec<RecordSet>> {
    let mut out = Vec::new();
    let mut path = format!("{}/recordsets", zone_path(c, installation, zone));
    let mut query: Vec<(String, String)> = Vec::new();
    loop {
        let q: Vec<(&str, &str)> = query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let Some(page) = c.arm.get_with::<RecordSetPage>(&path, DNS_API, &q).await? else {
            return Ok(out);
        };
        out.extend(page.value);
        match page.next_link.filter(|l| !l.is_empty()) {
            Some(link) => (path, query) = next_page(&link)?,
            None => return Ok(out),
        }
    }
}

/// Where a record set stands when its zone is to be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// The zone's own apex `NS` and `SOA`: they go with the zone.
    ZoneInfrastructure,
    /// This installation's: deleted before the zone.
    Ours,
    /// Someone else's: the zone is not deleted.
    Foreign,
}

/// The owner of an external-dns TXT ownership record, if `value` is one
/// (`"heritage=external-dns,external-dns/owner=N,external-dns/resource=..."`).
pub(crate) fn external_dns_owner(value: &str) -> Option<String> {
    let v = value.trim().trim_matches('"');
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if !parts.contains(&"heritage=external-dns") {
        return None;
    }
    parts
        .iter()
        .find_map(|p| p.strip_prefix("external-dns/owner="))
        .map(str::to_string)
}

/// The records an external-dns TXT ownership record at `txt_name` (relative) claims:
/// `(relative name, record type)`, the type `None` for any of `A`, `AAAA`, `CNAME`.
/// The old format puts the TXT at the record's own name; the new format prefixes the
/// first label with the lower-cased type (`a-www`, `cname-*.ws`).
pub(crate) fn claimed_by(txt_name: &str) -> Vec<(String, Option<&'static str>)> {
    let name = txt_name.to_ascii_lowercase();
    let mut out = vec![(name.clone(), None)];
    for (prefix, rtype) in [("aaaa-", "AAAA"), ("cname-", "CNAME"), ("a-", "A")] {
        if let Some(rest) = name.strip_prefix(prefix) {
            if !rest.is_empty() && !rest.starts_with('.') {
                out.push((rest.to_string(), Some(rtype)));
            }
            break;
        }
    }
    out
}

/// Classify every record set of a zone for its deletion (see the module docs).
pub(crate) fn classify(sets: &[RecordSet], installation: &str) -> Vec<Standing> {
    // The A/AAAA/CNAME records this installation's external-dns claims.
    let mut claimed: BTreeSet<(String, Option<&'static str>)> = BTreeSet::new();
    for s in sets {
        if s.rtype() == "TXT"
            && s.txt_values()
                .iter()
                .any(|v| external_dns_owner(v).as_deref() == Some(installation))
        {
            claimed.extend(claimed_by(&s.name));
        }
    }
    sets.iter()
        .map(|s| {
            let rtype = s.rtype();
            let name = s.name.to_ascii_lowercase();
            if name == "@" && (rtype == "NS" || rtype == "SOA") {
                return Standing::ZoneInfrastructure;
            }
            if s.marked_for(installation) {
                return Standing::Ours;
            }
            match rtype.as_str() {
                "TXT" => {
                    let owner_ours = s
                        .txt_values()
                        .iter()
                        .any(|v| external_dns_owner(v).as_deref() == Some(installation));
                    let challenge = name
                        .split('.')
                        .next()
                        .is_some_and(|l| l == "_acme-challenge");
                    if owner_ours || challenge {
                        Standing::Ours
                    } else {
                        Standing::Foreign
                    }
                }
                "A" | "AAAA" | "CNAME" => {
                    let t = match rtype.as_str() {
                        "A" => "A",
                        "AAAA" => "AAAA",
                        _ => "CNAME",
                    };
                    if claimed.contains(&(name.clone(), None)) || claimed.contains(&(name, Some(t)))
                    {
                        Standing::Ours
                    } else {
                        Standing::Foreign
                    }
                }
                _ => Standing::Foreign,
            }
        })
        .collect()
}

/// The refusal to delete `zone` while it holds `foreign` record sets.
pub(crate) fn foreign_records_error(zone: &str, foreign: &[String], rid: &ResourceId) -> Error {
    const SHOWN: usize = 10;
    let mut list = foreign
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if foreign.len() > SHOWN {
        list.push_str(&format!(" and {} more", foreign.len() - SHOWN));
    }
    Error::new(
        ErrorKind::Conflict,
        format!(
            "zone {zone} holds {} record set(s) this installation did not make: {list}; \
             nothing was deleted: remove or move them, then destroy again",
            foreign.len()
        ),
    )
    .with_resource(rid.clone())
}

/// Delete this installation's record sets, then the zone; refuse (and delete nothing)
/// while the zone holds someone else's records.
pub async fn delete_zone(c: &Context, d: &DnsZoneSpec) -> Result<Progress> {
    let rid = ResourceId::new(ResourceKind::DnsZone, d.name.clone());
    if get_zone(c, &d.name, &d.dns_name).await?.is_none() {
        return Ok(Progress::Done(None));
    }
    let sets = list_record_sets(c, &d.name, &d.dns_name).await?;
    let standing = classify(&sets, &d.name);
    let foreign: Vec<String> = sets
        .iter()
        .zip(&standing)
        .filter(|(_, s)| **s == Standing::Foreign)
        .map(|(r, _)| format!("{} {}", r.name, r.rtype()))
        .collect();
    if !foreign.is_empty() {
        return Err(foreign_records_error(&d.dns_name, &foreign, &rid));
    }
    for (r, _) in sets
        .iter()
        .zip(&standing)
        .filter(|(_, s)| **s == Standing::Ours)
    {
        let path = record_path(c, &d.name, &d.dns_name, &r.rtype(), &r.name);
        let lro = c.arm.delete(&path, DNS_API).await?;
        if let Some(p) = c.pending(&rid, &lro) {
            return Ok(p);
        }
    }
    let lro = c
        .arm
        .delete(&zone_path(c, &d.name, &d.dns_name), DNS_API)
        .await?;
    Ok(c.pending(&rid, &lro).unwrap_or(Progress::Done(None)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    use crate::context::is_ours;
    use crate::dns::tests::set;

    fn zone_spec() -> DnsZoneSpec {
        serde_json::from_value(json!({
            "name": "gp", "dnsName": "gitpod.example.com",
            "labels": {"gitpod-installation": "gp", "team": "infra"}
        }))
        .unwrap()
    }

    #[test]
    fn zone_body_is_a_tagged_public_global_zone() {
        let body = serde_json::to_value(zone_body(&zone_spec())).unwrap();
        assert_eq!(
            body,
            json!({
                "location": "global",
                "tags": {"gitpod-installation": "gp", "team": "infra"},
                "properties": {"zoneType": "Public"}
            })
        );
    }

    #[test]
    fn zone_output_has_the_name_servers_without_trailing_dots() {
        let z: Zone = serde_json::from_value(json!({
            "id": "/subscriptions/s/resourceGroups/gp/providers/Microsoft.Network/dnszones/gitpod.example.com",
            "name": "gitpod.example.com",
            "tags": {"gitpod-installation": "gp"},
            "properties": {"nameServers": ["ns1-01.azure-dns.com.", "ns2-01.azure-dns.net."],
                           "numberOfRecordSets": 2}
        }))
        .unwrap();
        assert_eq!(
            z.output(),
            Output::DnsZone {
                zone_id: "/subscriptions/s/resourceGroups/gp/providers/Microsoft.Network/dnszones/gitpod.example.com".into(),
                name_servers: vec!["ns1-01.azure-dns.com".into(), "ns2-01.azure-dns.net".into()],
            }
        );
        assert!(is_ours(&z.tags(), "gp"));
        assert!(!is_ours(&z.tags(), "other"));
    }

    #[test]
    fn next_links_keep_their_query_but_not_the_api_version() {
        let (p, q) = next_page(
            "https://management.azure.com/subscriptions/s/resourceGroups/gp/providers/Microsoft.Network/dnszones/z/recordsets?api-version=2018-05-01&$skipToken=abc%3D",
        )
        .unwrap();
        assert_eq!(
            p,
            "/subscriptions/s/resourceGroups/gp/providers/Microsoft.Network/dnszones/z/recordsets"
        );
        assert_eq!(q, vec![("$skipToken".to_string(), "abc=".to_string())]);
        assert!(next_page("not a url").is_err());
    }

    #[test]
    fn external_dns_ownership_is_read_from_txt_values() {
        assert_eq!(
            external_dns_owner(
                "\"heritage=external-dns,external-dns/owner=gp,external-dns/resource=service/gitpod/proxy\""
            )
            .as_deref(),
            Some("gp")
        );
        assert_eq!(
            external_dns_owner("heritage=external-dns,external-dns/owner=other").as_deref(),
            Some("other")
        );
        assert_eq!(external_dns_owner("external-dns/owner=gp"), None);
        assert_eq!(external_dns_owner("v=spf1 -all"), None);
        assert_eq!(claimed_by("www"), vec![("www".to_string(), None)]);
        assert_eq!(
            claimed_by("a-*.ws"),
            vec![
                ("a-*.ws".to_string(), None),
                ("*.ws".to_string(), Some("A"))
            ]
        );
        assert_eq!(
            claimed_by("cname-gitpod"),
            vec![
                ("cname-gitpod".to_string(), None),
                ("gitpod".to_string(), Some("CNAME"))
            ]
        );
        assert_eq!(
            claimed_by("aaaa-x"),
            vec![
                ("aaaa-x".to_string(), None),
                ("x".to_string(), Some("AAAA"))
            ]
        );
    }

    fn zone_sets() -> Vec<RecordSet> {
        let owner = |o: &str| {
            format!("\"heritage=external-dns,external-dns/owner={o},external-dns/resource=service/gitpod/proxy\"")
        };
        vec![
            // 0, 1: the zone's own apex records.
            set(
                json!({"name": "@", "type": "Microsoft.Network/dnszones/NS", "properties": {"TTL": 172800}}),
            ),
            set(
                json!({"name": "@", "type": "Microsoft.Network/dnszones/SOA", "properties": {"TTL": 3600}}),
            ),
            // 2: the SDK's own record (metadata).
            set(
                json!({"name": "*.ws", "type": "Microsoft.Network/dnszones/A",
                       "properties": {"metadata": {"gitpod-installation": "gp"}, "TTL": 300,
                                      "ARecords": [{"ipv4Address": "203.0.113.7"}]}}),
            ),
            // 3, 4: external-dns's record of this installation (new TXT format) and its TXT.
            set(
                json!({"name": "api", "type": "Microsoft.Network/dnszones/A",
                       "properties": {"TTL": 300, "ARecords": [{"ipv4Address": "203.0.113.8"}]}}),
            ),
            set(
                json!({"name": "a-api", "type": "Microsoft.Network/dnszones/TXT",
                       "properties": {"TTL": 300, "TXTRecords": [{"value": [owner("gp")]}]}}),
            ),
            // 5, 6: old format: the TXT at the record's own name, in two chunks.
            set(
                json!({"name": "old", "type": "Microsoft.Network/dnszones/CNAME",
                       "properties": {"TTL": 300, "CNAMERecord": {"cname": "lb.example.net"}}}),
            ),
            set(
                json!({"name": "old", "type": "Microsoft.Network/dnszones/TXT",
                       "properties": {"TXTRecords": [{"value": ["\"heritage=external-dns,external-dns/", "owner=gp\""]}]}}),
            ),
            // 7, 8: another installation's external-dns record and TXT.
            set(
                json!({"name": "shop", "type": "Microsoft.Network/dnszones/A",
                       "properties": {"ARecords": [{"ipv4Address": "198.51.100.1"}]}}),
            ),
            set(
                json!({"name": "a-shop", "type": "Microsoft.Network/dnszones/TXT",
                       "properties": {"TXTRecords": [{"value": [owner("other")]}]}}),
            ),
            // 9: a hand-made record.
            set(
                json!({"name": "mail", "type": "Microsoft.Network/dnszones/MX",
                       "properties": {"MXRecords": [{"preference": 10, "exchange": "mx.example.net"}]}}),
            ),
            // 10: a DNS-01 challenge left over.
            set(
                json!({"name": "_acme-challenge.ws", "type": "Microsoft.Network/dnszones/TXT",
                       "properties": {"TXTRecords": [{"value": ["token"]}]}}),
            ),
            // 11: an NS delegation below the apex is someone's subzone.
            set(
                json!({"name": "dev", "type": "Microsoft.Network/dnszones/NS",
                       "properties": {"NSRecords": [{"nsdname": "ns1.example.net"}]}}),
            ),
            // 12: a record marked for another installation.
            set(json!({"name": "@", "type": "Microsoft.Network/dnszones/A",
                       "properties": {"metadata": {"gitpod-installation": "other"},
                                      "ARecords": [{"ipv4Address": "198.51.100.2"}]}})),
        ]
    }

    #[test]
    fn zone_deletion_classifies_ours_and_refuses_foreign_records() {
        use Standing::*;
        let sets = zone_sets();
        assert_eq!(
            classify(&sets, "gp"),
            vec![
                ZoneInfrastructure,
                ZoneInfrastructure,
                Ours,
                Ours,
                Ours,
                Ours,
                Ours,
                Foreign,
                Foreign,
                Foreign,
                Ours,
                Foreign,
                Foreign
            ]
        );
        // From the other installation's view, its records are its own and ours foreign.
        let other = classify(&sets, "other");
        assert_eq!(other[2], Foreign);
        assert_eq!(other[3], Foreign);
        assert_eq!(other[7], Ours);
        assert_eq!(other[8], Ours);
        assert_eq!(other[12], Ours);
        // A zone with only its apex and this installation's records may go.
        let clean: Vec<RecordSet> = sets
            .iter()
            .zip(classify(&sets, "gp"))
            .filter(|(_, s)| *s != Foreign)
            .map(|(r, _)| r.clone())
            .collect();
        assert!(classify(&clean, "gp").iter().all(|s| *s != Foreign));
        // The refusal names the records and is a conflict.
        let foreign: Vec<String> = sets
            .iter()
            .zip(classify(&sets, "gp"))
            .filter(|(_, s)| *s == Foreign)
            .map(|(r, _)| format!("{} {}", r.name, r.rtype()))
            .collect();
        assert_eq!(
            foreign,
            vec!["shop A", "a-shop TXT", "mail MX", "dev NS", "@ A"]
        );
        let rid = ResourceId::new(ResourceKind::DnsZone, "gp");
        let e = foreign_records_error("gitpod.example.com", &foreign, &rid);
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(
            e.message()
                .contains("shop A, a-shop TXT, mail MX, dev NS, @ A"),
            "{e}"
        );
        assert!(e.message().contains("nothing was deleted"), "{e}");
        let many: Vec<String> = (0..13).map(|i| format!("r{i} A")).collect();
        let e = foreign_records_error("z", &many, &rid);
        assert!(e.message().contains("and 3 more"), "{e}");
        assert!(!e.message().contains("r10 A"), "{e}");
    }
}
