//! Cloud DNS: the public zone `zone-<name>` for the domain (its name servers are an
//! output, to delegate from the parent zone), the DNS service account `dns-sa-<name>`
//! with `roles/dns.admin` and its key for external-dns and the cert-manager DNS-01
//! solver (or, with Workload Identity, no key and `roles/iam.workloadIdentityUser` for
//! the two Kubernetes service accounts), and the records DOMAIN, `*.DOMAIN`,
//! `*.ws.DOMAIN` once a target is known.
//!
//! Destroy removes the records external-dns or the SDK made, then the zone (the guide's
//! Terraform uses `force_destroy`).

use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{
    DnsIdentitySpec, DnsRecordsSpec, DnsSolver, DnsZoneSpec, Output, ResourceId, ResourceKind,
};
use gitpod_refarch::spec::RecordsTarget;
use gitpod_refarch::{Error, Result, Secret};
use google_cloud_dns_v1::model::{managed_zone::Visibility, ManagedZone, ResourceRecordSet};

use crate::context::{foreign, is_ours, ownership_mark, Context};
use crate::error::{found, GaxResultExt};
use crate::iam;

/// The role of the DNS service account.
pub const DNS_ROLES: [&str; 1] = ["roles/dns.admin"];

/// The TTL of the Gitpod records.
pub const TTL: i32 = 300;

/// The Kubernetes service accounts that act as the DNS service account with Workload
/// Identity: `(namespace, name)`.
pub const WORKLOAD_IDENTITY_USERS: [(&str, &str); 2] = [
    ("cert-manager", "cert-manager"),
    ("external-dns", "external-dns"),
];

/// `zone-<name>`.
pub fn zone_name(installation: &str) -> String {
    format!("zone-{installation}")
}

/// `dns-sa-<name>`.
pub fn account_id(installation: &str) -> String {
    format!("dns-sa-{installation}")
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

async fn get_zone(c: &Context, installation: &str) -> Result<Option<ManagedZone>> {
    let name = zone_name(installation);
    let z = found(
        c.clients
            .zones
            .get()
            .set_project(&c.project)
            .set_managed_zone(&name)
            .send()
            .await,
        format!("reading zone {name}"),
    )?;
    match z {
        Some(z) if !is_ours(&z.labels.clone().into_iter().collect(), installation) => {
            Err(foreign(&format!("Cloud DNS zone {name}"), installation))
        }
        other => Ok(other),
    }
}

fn zone_output(z: &ManagedZone) -> Output {
    Output::DnsZone {
        zone_id: z.name.clone().unwrap_or_default(),
        name_servers: z.name_servers.clone(),
    }
}

/// The zone as it exists.
pub async fn observe_zone(c: &Context, d: &DnsZoneSpec) -> Result<Option<Observed<DnsZoneSpec>>> {
    let Some(z) = get_zone(c, &d.name).await? else {
        return Ok(None);
    };
    let mut a = d.clone();
    a.dns_name = z
        .dns_name
        .clone()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_string();
    a.labels = z.labels.clone().into_iter().collect();
    Ok(Some(Observed::ready(a, Some(zone_output(&z)))))
}

/// Create the public zone; relabel it when labels change.
pub async fn ensure_zone(c: &Context, d: &DnsZoneSpec) -> Result<Progress> {
    let name = zone_name(&d.name);
    let z = match get_zone(c, &d.name).await? {
        Some(z)
            if z.labels
                .clone()
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()
                != d.labels =>
        {
            c.clients
                .zones
                .patch()
                .set_project(&c.project)
                .set_managed_zone(&name)
                .set_body(ManagedZone::new().set_labels(d.labels.clone()))
                .send()
                .await
                .ctx(format!("relabelling zone {name}"))?;
            z.set_labels(d.labels.clone())
        }
        Some(z) => z,
        None => c
            .clients
            .zones
            .create()
            .set_project(&c.project)
            .set_body(
                ManagedZone::new()
                    .set_name(&name)
                    .set_dns_name(fqdn(&d.dns_name))
                    .set_description(ownership_mark(&d.name))
                    .set_visibility(Visibility::Public)
                    .set_labels(d.labels.clone()),
            )
            .send()
            .await
            .ctx(format!("creating zone {name}"))?,
    };
    Ok(Progress::Done(Some(zone_output(&z))))
}

/// Delete every record set but the apex NS/SOA, then the zone.
pub async fn delete_zone(c: &Context, d: &DnsZoneSpec) -> Result<Progress> {
    let name = zone_name(&d.name);
    let Some(z) = get_zone(c, &d.name).await? else {
        return Ok(Progress::Done(None));
    };
    let apex = z.dns_name.clone().unwrap_or_default();
    let mut page: Option<String> = None;
    loop {
        let list = c
            .clients
            .rrsets
            .list()
            .set_project(&c.project)
            .set_managed_zone(&name)
            .set_or_clear_page_token(page.clone())
            .send()
            .await
            .ctx(format!("listing the records of {name}"))?;
        for r in &list.rrsets {
            let (rname, rtype) = (
                r.name.clone().unwrap_or_default(),
                r.r#type.clone().unwrap_or_default(),
            );
            if rname == apex && (rtype == "NS" || rtype == "SOA") {
                continue;
            }
            delete_rrset(c, &name, &rname, &rtype).await?;
        }
        page = list.next_page_token.filter(|t| !t.is_empty());
        if page.is_none() {
            break;
        }
    }
    let r = c
        .clients
        .zones
        .delete()
        .set_project(&c.project)
        .set_managed_zone(&name)
        .send()
        .await;
    found(r, format!("deleting zone {name}"))?;
    Ok(Progress::Done(None))
}

async fn delete_rrset(c: &Context, zone: &str, name: &str, rtype: &str) -> Result<()> {
    let r = c
        .clients
        .rrsets
        .delete()
        .set_project(&c.project)
        .set_managed_zone(zone)
        .set_name(name)
        .set_type(rtype)
        .send()
        .await;
    found(r, format!("deleting record {name} {rtype}")).map(|_| ())
}

fn wi_members(c: &Context) -> Vec<String> {
    WORKLOAD_IDENTITY_USERS
        .iter()
        .map(|(ns, sa)| format!("serviceAccount:{}.svc.id.goog[{ns}/{sa}]", c.project))
        .collect()
}

/// The account as it exists; not holding `roles/dns.admin` is its drift. Its key
/// cannot be read back: the output comes from the state store.
pub async fn observe_identity(
    c: &Context,
    d: &DnsIdentitySpec,
) -> Result<Option<Observed<DnsIdentitySpec>>> {
    let id = account_id(&d.name);
    let Some(drift) = iam::account_drift(c, &id, &d.name, &DNS_ROLES).await? else {
        return Ok(None);
    };
    let output = c.config.workload_identity.then(|| Output::DnsIdentity {
        principal: iam::email(c, &id),
        credentials: None,
        solver: Some(solver(c, &id, None)),
    });
    let mut o = Observed::ready(d.clone(), output);
    o.drift = drift;
    Ok(Some(o))
}

/// Create the account, grant the role, and make a key (only when the state store has
/// none: a lost key cannot be read back, so a new one replaces it).
pub async fn ensure_identity(
    c: &Context,
    d: &DnsIdentitySpec,
    inputs: &Inputs,
) -> Result<Progress> {
    let id = account_id(&d.name);
    iam::ensure_account(c, &id, "Gitpod external-dns and cert-manager", &d.name).await?;
    iam::set_project_roles(c, &iam::member(c, &id), &DNS_ROLES, true).await?;
    let principal = iam::email(c, &id);
    if c.config.workload_identity {
        iam::set_account_binding(c, &id, "roles/iam.workloadIdentityUser", &wi_members(c)).await?;
        return Ok(Progress::Done(Some(Output::DnsIdentity {
            principal,
            credentials: None,
            solver: Some(solver(c, &id, None)),
        })));
    }
    let own = ResourceId::new(ResourceKind::DnsIdentity, d.name.clone());
    if let Some(
        known @ Output::DnsIdentity {
            credentials: Some(_),
            ..
        },
    ) = inputs.get(&own)
    {
        return Ok(Progress::Done(Some(known.clone())));
    }
    let key = iam::create_key(c, &id).await?;
    Ok(Progress::Done(Some(Output::DnsIdentity {
        principal,
        credentials: Some(key.clone()),
        solver: Some(solver(c, &id, Some(key))),
    })))
}

/// Cloud DNS for cert-manager and external-dns: the project, the account (for the
/// Workload Identity annotation) and its key, if any.
fn solver(c: &Context, id: &str, key: Option<Secret>) -> DnsSolver {
    DnsSolver::CloudDns {
        project: c.project.clone(),
        service_account: iam::email(c, id),
        key,
    }
}

/// Revoke the role and delete the account.
pub async fn delete_identity(c: &Context, installation: &str) -> Result<Progress> {
    iam::delete_account(c, &account_id(installation), installation, &DNS_ROLES).await?;
    Ok(Progress::Done(None))
}

fn record_of(target: &RecordsTarget) -> Result<(&'static str, String)> {
    match target {
        RecordsTarget::Ipv4(ip) => Ok(("A", ip.clone())),
        RecordsTarget::Hostname(h) => Ok(("CNAME", fqdn(h))),
        _ => Err(Error::invalid_input("unsupported records target")),
    }
}

async fn get_rrset(
    c: &Context,
    zone: &str,
    name: &str,
    rtype: &str,
) -> Result<Option<ResourceRecordSet>> {
    found(
        c.clients
            .rrsets
            .get()
            .set_project(&c.project)
            .set_managed_zone(zone)
            .set_name(name)
            .set_type(rtype)
            .send()
            .await,
        format!("reading record {name} {rtype}"),
    )
}

/// A record set found at one of the names.
struct Found {
    /// `A` or `CNAME`.
    rtype: String,
    /// Its data, joined.
    data: String,
    /// Its TTL.
    ttl: Option<i32>,
}

impl Found {
    /// The target it points at.
    fn target(&self) -> RecordsTarget {
        if self.rtype == "CNAME" {
            RecordsTarget::Hostname(self.data.trim_end_matches('.').to_string())
        } else {
            RecordsTarget::Ipv4(self.data.clone())
        }
    }
}

/// The records as they exist. All present with the same target (another one when the
/// spec's changed), or absent; some missing, pointing elsewhere than the others, or
/// with another TTL, is drift. For records the spec no longer wants (target
/// `Hostname("")`), the A or CNAME records found at the names, so that they are
/// deleted.
pub async fn observe_records(
    c: &Context,
    d: &DnsRecordsSpec,
) -> Result<Option<Observed<DnsRecordsSpec>>> {
    let zone = zone_name(&d.installation);
    let unwanted = matches!(&d.target, RecordsTarget::Hostname(h) if h.is_empty());
    let (want_type, want_data) = record_of(&d.target)?;
    let types: &[&str] = if unwanted {
        &["A", "CNAME"]
    } else {
        &[want_type]
    };
    // Per name, the record set there, if any.
    let mut seen: Vec<(String, Option<Found>)> = Vec::new();
    for n in &d.names {
        let name = fqdn(n);
        let mut here = None;
        for rtype in types {
            if let Some(r) = get_rrset(c, &zone, &name, rtype).await? {
                here = Some(Found {
                    rtype: rtype.to_string(),
                    data: r.rrdatas.join(","),
                    ttl: r.ttl,
                });
                break;
            }
        }
        seen.push((name, here));
    }
    let present: Vec<&Found> = seen.iter().filter_map(|(_, f)| f.as_ref()).collect();
    let Some(&first) = present.first() else {
        return Ok(None);
    };
    let mut a = d.clone();
    if unwanted {
        a.target = first.target();
        return Ok(Some(Observed::ready(a, None)));
    }
    let output = Some(Output::DnsRecords {
        names: d.names.clone(),
    });
    let all_agree = present.len() == d.names.len() && present.iter().all(|f| f.data == first.data);
    if all_agree && first.data != want_data {
        // All of them point elsewhere: the shape says where.
        a.target = first.target();
        return Ok(Some(Observed::ready(a, output)));
    }
    let mut o = Observed::ready(a, output);
    for (name, found) in &seen {
        let Some(f) = found else {
            o = o.with_drift(format!("record {name} {want_type} is missing"));
            continue;
        };
        if f.data != want_data {
            o = o.with_drift(format!(
                "record {name} {want_type} points to {}, not {want_data}",
                f.data
            ));
        } else if f.ttl != Some(TTL) {
            let ttl = f.ttl.map_or_else(|| "unset".to_string(), |t| t.to_string());
            o = o.with_drift(format!(
                "record {name} {want_type} has TTL {ttl}, not {TTL}"
            ));
        }
    }
    Ok(Some(o))
}

/// Create or correct the three records.
pub async fn ensure_records(c: &Context, d: &DnsRecordsSpec) -> Result<Progress> {
    let zone = zone_name(&d.installation);
    let (rtype, data) = record_of(&d.target)?;
    if rtype == "CNAME" && d.names.iter().any(|n| fqdn(n) == fqdn(&d.zone_dns_name)) {
        return Err(Error::invalid_input(
            "Cloud DNS cannot put a CNAME at the zone apex: give an IPv4 records target, \
             or use a zone above the domain",
        ));
    }
    for n in &d.names {
        let name = fqdn(n);
        let want = ResourceRecordSet::new()
            .set_name(&name)
            .set_type(rtype)
            .set_ttl(TTL)
            .set_rrdatas([data.clone()]);
        match get_rrset(c, &zone, &name, rtype).await? {
            Some(r) if r.rrdatas == [data.clone()] && r.ttl == Some(TTL) => {}
            Some(_) => {
                c.clients
                    .rrsets
                    .patch()
                    .set_project(&c.project)
                    .set_managed_zone(&zone)
                    .set_name(&name)
                    .set_type(rtype)
                    .set_body(want)
                    .send()
                    .await
                    .ctx(format!("updating record {name}"))?;
            }
            None => {
                c.clients
                    .rrsets
                    .create()
                    .set_project(&c.project)
                    .set_managed_zone(&zone)
                    .set_body(want)
                    .send()
                    .await
                    .ctx(format!("creating record {name}"))?;
            }
        }
    }
    Ok(Progress::Done(Some(Output::DnsRecords {
        names: d.names.clone(),
    })))
}

/// Delete the three records (A or CNAME). Absent zone or records are fine.
pub async fn delete_records(c: &Context, d: &DnsRecordsSpec) -> Result<Progress> {
    if get_zone(c, &d.installation).await?.is_none() {
        return Ok(Progress::Done(None));
    }
    let zone = zone_name(&d.installation);
    for n in &d.names {
        for rtype in ["A", "CNAME"] {
            if get_rrset(c, &zone, &fqdn(n), rtype).await?.is_some() {
                delete_rrset(c, &zone, &fqdn(n), rtype).await?;
            }
        }
    }
    Ok(Progress::Done(None))
}
