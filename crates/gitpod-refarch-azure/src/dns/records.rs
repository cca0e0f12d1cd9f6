//! The Gitpod records: DOMAIN, `*.DOMAIN`, `*.ws.DOMAIN` as record sets relative to the
//! zone, `A` for an IPv4 target or `CNAME` for a host name, TTL [`TTL`], marked as this
//! installation's in their `metadata`. Only marked records are changed over or deleted
//! when the target type changes or the records go.

use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Observed, Progress};
use gitpod_refarch::resource::{DnsRecordsSpec, Output, ResourceId, ResourceKind};
use gitpod_refarch::spec::RecordsTarget;
use gitpod_refarch::{Error, Result};

use super::{record_body, record_path, relative_name, zone_path, RecordSet, Zone, TTL};
use crate::context::{Context, DNS_API};

/// Whether the spec no longer wants the records (target `Hostname("")`).
fn unwanted(d: &DnsRecordsSpec) -> bool {
    matches!(&d.target, RecordsTarget::Hostname(h) if h.is_empty())
}

/// The target a found record set points at.
fn target_of(rtype: &str, data: &str) -> RecordsTarget {
    if rtype == "CNAME" {
        RecordsTarget::Hostname(data.to_string())
    } else {
        RecordsTarget::Ipv4(data.to_string())
    }
}

async fn get_record(
    c: &Context,
    d: &DnsRecordsSpec,
    rtype: &str,
    relative: &str,
) -> Result<Option<RecordSet>> {
    let path = record_path(c, &d.installation, &d.zone_dns_name, rtype, relative);
    c.arm.get(&path, DNS_API).await
}

/// A record set found at one of the names.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// `A` or `CNAME`.
    rtype: String,
    /// What it points at.
    data: String,
    /// Its TTL.
    ttl: Option<i64>,
    /// Whether its metadata marks it as this installation's.
    ours: bool,
}

/// Why the records found (`seen`: per name, the set there) differ from the wanted
/// `want_type` record to `want_data`.
pub(crate) fn records_drift(
    seen: &[(String, Option<Found>)],
    want_type: &str,
    want_data: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, found) in seen {
        let Some(f) = found else {
            out.push(format!("record {name} {want_type} is missing"));
            continue;
        };
        if f.data != want_data {
            out.push(format!(
                "record {name} {want_type} points to {}, not {want_data}",
                f.data
            ));
        } else if f.ttl != Some(TTL) {
            let ttl = f.ttl.map_or_else(|| "unset".to_string(), |t| t.to_string());
            out.push(format!(
                "record {name} {want_type} has TTL {ttl}, not {TTL}"
            ));
        }
        if !f.ours {
            out.push(format!(
                "record {name} {want_type} is not marked as this installation's (metadata \
                 {INSTALLATION_LABEL}); it will be taken over"
            ));
        }
    }
    out
}

/// The records as they exist: all present with one target (another one when the spec
/// changed it), or absent; missing ones, other targets, another TTL or a missing mark
/// are drift. For records the spec no longer wants (target `Hostname("")`), the marked
/// `A` or `CNAME` records found at the names, so that they are deleted.
pub async fn observe(c: &Context, d: &DnsRecordsSpec) -> Result<Option<Observed<DnsRecordsSpec>>> {
    let unwanted = unwanted(d);
    let want = if unwanted {
        None
    } else {
        let (t, body) = record_body(&d.target, &d.installation)?;
        let data = match (&body.properties.a_records, &body.properties.cname_record) {
            (Some(a), _) => a
                .iter()
                .map(|r| r.ipv4_address.clone())
                .collect::<Vec<_>>()
                .join(","),
            (_, Some(cn)) => cn.cname.clone(),
            _ => String::new(),
        };
        Some((t, data))
    };
    let types: &[&str] = match &want {
        Some((t, _)) if *t == "A" => &["A"],
        Some(_) => &["CNAME"],
        None => &["A", "CNAME"],
    };
    let mut seen: Vec<(String, Option<Found>)> = Vec::new();
    for n in &d.names {
        let relative = relative_name(n, &d.zone_dns_name)?;
        let mut here = None;
        for rtype in types {
            if let Some(r) = get_record(c, d, rtype, &relative).await? {
                here = Some(Found {
                    rtype: (*rtype).to_string(),
                    data: r.data(),
                    ttl: r.properties.ttl,
                    ours: r.marked_for(&d.installation),
                });
                break;
            }
        }
        seen.push((n.clone(), here));
    }
    let Some((want_type, want_data)) = want else {
        // Only what is marked ours is reported (and so deleted).
        let Some(first) = seen.iter().filter_map(|(_, f)| f.as_ref()).find(|f| f.ours) else {
            return Ok(None);
        };
        let mut a = d.clone();
        a.target = target_of(&first.rtype, &first.data);
        return Ok(Some(Observed::ready(a, None)));
    };
    let present: Vec<&Found> = seen.iter().filter_map(|(_, f)| f.as_ref()).collect();
    let Some(&first) = present.first() else {
        return Ok(None);
    };
    let mut a = d.clone();
    let output = Some(Output::DnsRecords {
        names: d.names.clone(),
    });
    let all_agree = present.len() == d.names.len() && present.iter().all(|f| f.data == first.data);
    if all_agree && first.data != want_data {
        // All of them point elsewhere: the shape says where.
        a.target = target_of(&first.rtype, &first.data);
        return Ok(Some(Observed::ready(a, output)));
    }
    let mut o = Observed::ready(a, output);
    o.drift = records_drift(&seen, want_type, &want_data);
    Ok(Some(o))
}

/// Create or correct the three record sets.
pub async fn ensure(c: &Context, d: &DnsRecordsSpec) -> Result<Progress> {
    let rid = ResourceId::new(ResourceKind::DnsRecords, d.zone_dns_name.clone());
    let (rtype, body) = record_body(&d.target, &d.installation)?;
    let other = if rtype == "A" { "CNAME" } else { "A" };
    let want_data = body
        .properties
        .a_records
        .as_ref()
        .map(|a| {
            a.iter()
                .map(|r| r.ipv4_address.clone())
                .collect::<Vec<_>>()
                .join(",")
        })
        .or_else(|| {
            body.properties
                .cname_record
                .as_ref()
                .map(|c| c.cname.clone())
        })
        .unwrap_or_default();
    for n in &d.names {
        let relative = relative_name(n, &d.zone_dns_name)?;
        if rtype == "CNAME" && relative == "@" {
            return Err(Error::invalid_input(
                "Azure DNS cannot put a CNAME at the zone apex: give an IPv4 records target \
                 (dns.recordsTarget), or use a zone above the domain",
            ));
        }
        // A CNAME cannot share its name: our record of the other type goes first.
        if let Some(r) = get_record(c, d, other, &relative).await? {
            if r.marked_for(&d.installation) {
                let path = record_path(c, &d.installation, &d.zone_dns_name, other, &relative);
                let lro = c.arm.delete(&path, DNS_API).await?;
                if let Some(p) = c.pending(&rid, &lro) {
                    return Ok(p);
                }
            }
        }
        let current = get_record(c, d, rtype, &relative).await?;
        let same = current.as_ref().is_some_and(|r| {
            r.data() == want_data && r.properties.ttl == Some(TTL) && r.marked_for(&d.installation)
        });
        if !same {
            let path = record_path(c, &d.installation, &d.zone_dns_name, rtype, &relative);
            let lro = c.arm.put(&path, DNS_API, &body).await?;
            if let Some(p) = c.pending(&rid, &lro) {
                return Ok(p);
            }
        }
    }
    Ok(Progress::Done(Some(Output::DnsRecords {
        names: d.names.clone(),
    })))
}

/// Delete the three record sets (`A` or `CNAME`) where they are marked as this
/// installation's. An absent zone or record is fine; others' records stay.
pub async fn delete(c: &Context, d: &DnsRecordsSpec) -> Result<Progress> {
    let rid = ResourceId::new(ResourceKind::DnsRecords, d.zone_dns_name.clone());
    let zone: Option<Zone> = c
        .arm
        .get(&zone_path(c, &d.installation, &d.zone_dns_name), DNS_API)
        .await?;
    if zone.is_none() {
        return Ok(Progress::Done(None));
    }
    for n in &d.names {
        let relative = relative_name(n, &d.zone_dns_name)?;
        for rtype in ["A", "CNAME"] {
            let Some(r) = get_record(c, d, rtype, &relative).await? else {
                continue;
            };
            if !r.marked_for(&d.installation) {
                continue;
            }
            let path = record_path(c, &d.installation, &d.zone_dns_name, rtype, &relative);
            let lro = c.arm.delete(&path, DNS_API).await?;
            if let Some(p) = c.pending(&rid, &lro) {
                return Ok(p);
            }
        }
    }
    Ok(Progress::Done(None))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn records_drift_names_each_difference() {
        let f = |data: &str, ttl: Option<i64>, ours: bool| {
            Some(Found {
                rtype: "A".into(),
                data: data.into(),
                ttl,
                ours,
            })
        };
        let seen = vec![
            (
                "gitpod.example.com".to_string(),
                f("203.0.113.7", Some(300), true),
            ),
            ("*.gitpod.example.com".to_string(), None),
            (
                "*.ws.gitpod.example.com".to_string(),
                f("203.0.113.9", Some(300), true),
            ),
        ];
        assert_eq!(
            records_drift(&seen, "A", "203.0.113.7"),
            vec![
                "record *.gitpod.example.com A is missing".to_string(),
                "record *.ws.gitpod.example.com A points to 203.0.113.9, not 203.0.113.7"
                    .to_string(),
            ]
        );
        let seen = vec![(
            "gitpod.example.com".to_string(),
            f("203.0.113.7", Some(3600), false),
        )];
        let d = records_drift(&seen, "A", "203.0.113.7");
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("TTL 3600, not 300"));
        assert!(d[1].contains("not marked"));
        let ok = vec![(
            "gitpod.example.com".to_string(),
            f("203.0.113.7", Some(300), true),
        )];
        assert!(records_drift(&ok, "A", "203.0.113.7").is_empty());
    }

    #[test]
    fn found_records_say_their_target() {
        assert_eq!(
            target_of("CNAME", "lb.example.net"),
            RecordsTarget::Hostname("lb.example.net".into())
        );
        assert_eq!(
            target_of("A", "203.0.113.7"),
            RecordsTarget::Ipv4("203.0.113.7".into())
        );
    }
}
