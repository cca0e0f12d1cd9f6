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
    Desired, DnsIdentitySpec, DnsRecordsSpec, DnsSolver, DnsZoneSpec, Output, ResourceId,
    ResourceKind,
};
use gitpod_refarch::spec::RecordsTarget;
use gitpod_refarch::{Error, Result, Secret};
use google_cloud_dns_v1::model::{managed_zone::Visibility, ManagedZone, ResourceRecordSet};

use crate::error::{found, GaxResultExt};
use crate::{foreign, iam, is_ours, Context};

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
pub async fn observe_zone(c: &Context, d: &DnsZoneSpec) -> Result<Option<Observed>> {
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
    Ok(Some(Observed::ready(
        Desired::DnsZone(a),
        Some(zone_output(&z)),
    )))
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
                    .set_description(crate::ownership_mark(&d.name))
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

/// Ready when the account exists and holds `roles/dns.admin`. Its key cannot be read
/// back: the output comes from the state store.
pub async fn observe_identity(c: &Context, d: &DnsIdentitySpec) -> Result<Option<Observed>> {
    let id = account_id(&d.name);
    if !iam::account_ready(c, &id, &d.name, &DNS_ROLES).await? {
        return Ok(None);
    }
    let output = c.config.workload_identity.then(|| Output::DnsIdentity {
        principal: iam::email(c, &id),
        credentials: None,
        solver: Some(solver(c, &id, None)),
    });
    Ok(Some(Observed::ready(
        Desired::DnsIdentity(d.clone()),
        output,
    )))
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

/// The records as they exist: all present with the same data, or absent.
pub async fn observe_records(c: &Context, d: &DnsRecordsSpec) -> Result<Option<Observed>> {
    let zone = zone_name(&d.installation);
    let (rtype, data) = record_of(&d.target)?;
    let mut found_all = true;
    let mut found_any = false;
    for n in &d.names {
        match get_rrset(c, &zone, &fqdn(n), rtype).await? {
            Some(r) if r.rrdatas == [data.clone()] => found_any = true,
            Some(_) => {
                found_any = true;
                found_all = false;
            }
            None => found_all = false,
        }
    }
    if !found_any {
        return Ok(None);
    }
    let mut a = d.clone();
    if !found_all {
        a.target = RecordsTarget::Hostname(String::new());
    }
    Ok(Some(Observed::ready(
        Desired::DnsRecords(a),
        found_all.then(|| Output::DnsRecords {
            names: d.names.clone(),
        }),
    )))
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
