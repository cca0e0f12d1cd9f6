//! Route53: the public hosted zone for the domain, a DNS user whose policy allows
//! record changes in that zone only (for external-dns and the cert-manager DNS-01
//! solver), and the DOMAIN, `*.DOMAIN`, `*.ws.DOMAIN` records when a target is known.
//!
//! A zone belongs to the installation when its caller reference starts with
//! `gitpod-refarch:<installation>:`; a zone of the same name made by anyone else is
//! never adopted (and so never deleted): `ensure` stops with a conflict instead.

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet, RrType,
};
use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{
    DnsIdentitySpec, DnsRecordsSpec, DnsSolver, DnsZoneSpec, Output, ResourceId, ResourceKind,
};
use gitpod_refarch::spec::RecordsTarget;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};

use crate::context::{tags_of, Context};
use crate::error::{found, Ctx};
use crate::iam;

fn caller_prefix(installation: &str) -> String {
    format!("gitpod-refarch:{installation}:")
}

fn bare_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_string()
}

fn norm(name: &str) -> String {
    name.replace("\\052", "*").trim_end_matches('.').to_string()
}

fn build_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::internal("a Route53 request could not be built").with_source(e)
}

/// Zones named `dns_name`: (id, owned by `installation`).
async fn zones_named(
    c: &Context,
    dns_name: &str,
    installation: &str,
) -> Result<Vec<(String, bool)>> {
    let out = c
        .clients
        .route53
        .list_hosted_zones_by_name()
        .dns_name(dns_name)
        .max_items(50)
        .send()
        .await
        .ctx(format!("looking up the zone {dns_name}"))?;
    Ok(out
        .hosted_zones()
        .iter()
        .filter(|z| norm(z.name()) == dns_name)
        .map(|z| {
            (
                bare_id(z.id()),
                z.caller_reference()
                    .starts_with(&caller_prefix(installation)),
            )
        })
        .collect())
}

async fn owned_zone(
    c: &Context,
    dns_name: &str,
    installation: Option<&str>,
) -> Result<Option<String>> {
    let zones = match installation {
        Some(i) => zones_named(c, dns_name, i).await?,
        None => return Ok(None),
    };
    let owned: Vec<String> = zones
        .into_iter()
        .filter(|(_, o)| *o)
        .map(|(id, _)| id)
        .collect();
    match owned.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{} zones named {dns_name} belong to this installation ({}); delete the extra ones",
                many.len(),
                many.join(", ")
            ),
        )),
    }
}

async fn name_servers(c: &Context, zone_id: &str) -> Result<Vec<String>> {
    let z = c
        .clients
        .route53
        .get_hosted_zone()
        .id(zone_id)
        .send()
        .await
        .ctx(format!("reading zone {zone_id}"))?;
    Ok(z.delegation_set()
        .map(|d| d.name_servers().to_vec())
        .unwrap_or_default())
}

/// The zone, if this installation made it.
pub async fn observe_zone(c: &Context, d: &DnsZoneSpec) -> Result<Option<Observed<DnsZoneSpec>>> {
    let Some(id) = owned_zone(c, &d.dns_name, Some(&d.name)).await? else {
        return Ok(None);
    };
    let ns = name_servers(c, &id).await?;
    Ok(Some(Observed::ready(
        d.clone(),
        Some(Output::DnsZone {
            zone_id: id,
            name_servers: ns,
        }),
    )))
}

/// Create the zone (once) and tag it.
pub async fn ensure_zone(c: &Context, d: &DnsZoneSpec) -> Result<Progress> {
    let r53 = &c.clients.route53;
    let zones = zones_named(c, &d.dns_name, &d.name).await?;
    let id = match zones.iter().find(|(_, owned)| *owned) {
        Some((id, _)) => id.clone(),
        None if !zones.is_empty() => {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "a hosted zone for {} already exists that installation {} did not create; delete it or choose dns.zone",
                    d.dns_name, d.name
                ),
            )
            .with_resource(ResourceId::new(ResourceKind::DnsZone, d.name.clone())))
        }
        None => {
            let nonce = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|t| t.as_millis())
                .unwrap_or_default();
            let out = r53
                .create_hosted_zone()
                .name(&d.dns_name)
                .caller_reference(format!("{}{}:{nonce}", caller_prefix(&d.name), d.dns_name))
                .hosted_zone_config(HostedZoneConfig::builder().comment(format!("Gitpod installation {}", d.name)).private_zone(false).build())
                .send()
                .await
                .ctx(format!("creating the zone {}", d.dns_name))?;
            let id = bare_id(out.hosted_zone().map(|z| z.id()).unwrap_or_default());
            let tags: Vec<aws_sdk_route53::types::Tag> = tags_of(&d.labels, &d.name)
                .into_iter()
                .map(|(k, v)| aws_sdk_route53::types::Tag::builder().key(k).value(v).build())
                .collect();
            r53.change_tags_for_resource()
                .resource_type(aws_sdk_route53::types::TagResourceType::Hostedzone)
                .resource_id(&id)
                .set_add_tags(Some(tags))
                .send()
                .await
                .ctx("tagging the zone")?;
            id
        }
    };
    let ns = name_servers(c, &id).await?;
    Ok(Progress::Done(Some(Output::DnsZone {
        zone_id: id,
        name_servers: ns,
    })))
}

/// Delete the zone if this installation made it, with every record in it but its own
/// SOA and NS (external-dns and cert-manager leave TXT records behind).
pub async fn delete_zone(c: &Context, d: &DnsZoneSpec) -> Result<Progress> {
    if let Some(zone) = owned_zone(c, &d.dns_name, Some(&d.name)).await? {
        let sets = list_records(c, &zone).await?;
        let extra: Vec<ResourceRecordSet> = sets
            .into_iter()
            .filter(|s| {
                !(matches!(s.r#type(), RrType::Soa | RrType::Ns) && norm(s.name()) == d.dns_name)
            })
            .collect();
        delete_sets(c, &zone, extra).await?;
        found(
            c.clients
                .route53
                .delete_hosted_zone()
                .id(&zone)
                .send()
                .await
                .ctx(format!("deleting zone {}", d.dns_name)),
        )?;
    }
    Ok(Progress::Done(None))
}

fn dns_user(name: &str) -> String {
    format!("{name}-dns")
}

/// The DNS user's policy: change records in this zone only.
pub fn dns_policy(zone_id: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets", "route53:ListTagsForResource"],
             "Resource": [format!("arn:aws:route53:::hostedzone/{zone_id}")]},
            {"Effect": "Allow", "Action": ["route53:GetChange"], "Resource": ["arn:aws:route53:::change/*"]},
            {"Effect": "Allow", "Action": ["route53:ListHostedZones", "route53:ListHostedZonesByName"], "Resource": ["*"]}
        ]
    })
}

/// The DNS user, if it exists.
pub async fn observe_identity(
    c: &Context,
    d: &DnsIdentitySpec,
) -> Result<Option<Observed<DnsIdentitySpec>>> {
    if !iam::user_is_ours(c, &dns_user(&d.name), &d.name).await? {
        return Ok(None);
    }
    // The access key's secret cannot be read back: outputs come from state.
    Ok(Some(Observed::ready(d.clone(), None)))
}

/// Create the user and its policy; issue a key unless state already holds one.
pub async fn ensure_identity(
    c: &Context,
    d: &DnsIdentitySpec,
    inputs: &Inputs,
) -> Result<Progress> {
    let zone_id = match inputs.of_kind(ResourceKind::DnsZone)? {
        Output::DnsZone { zone_id, .. } => zone_id.clone(),
        _ => return Err(Error::internal("the zone output has the wrong kind")),
    };
    let user = dns_user(&d.name);
    let own = ResourceId::new(ResourceKind::DnsIdentity, d.name.clone());
    let known = inputs.get(&own).cloned();
    let tags = tags_of(&Default::default(), &d.name);
    let key = iam::ensure_user(c, &user, &dns_policy(&zone_id), &tags, known.is_none()).await?;
    let out = match (key, known) {
        (Some((id, secret)), _) => Output::DnsIdentity {
            principal: format!("arn:aws:iam::{}:user/{user}", c.account),
            credentials: Some(Secret::new(
                serde_json::json!({"accessKeyId": id, "secretAccessKey": secret.expose()})
                    .to_string(),
            )),
            solver: Some(DnsSolver::Route53 {
                region: c.region.clone(),
                hosted_zone_id: zone_id.trim_start_matches("/hostedzone/").to_string(),
                access_key_id: id,
                secret_access_key: secret,
            }),
        },
        (None, Some(o)) => o,
        (None, None) => return Err(Error::internal("no DNS credentials")),
    };
    Ok(Progress::Done(Some(out)))
}

/// Delete the DNS user.
pub async fn delete_identity(c: &Context, name: &str) -> Result<Progress> {
    iam::delete_user(c, &dns_user(name), name).await?;
    Ok(Progress::Done(None))
}

async fn list_records(c: &Context, zone_id: &str) -> Result<Vec<ResourceRecordSet>> {
    let mut all = Vec::new();
    let mut start: Option<(String, RrType, Option<String>)> = None;
    loop {
        let mut req = c
            .clients
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id);
        if let Some((n, t, ident)) = &start {
            req = req
                .start_record_name(n)
                .start_record_type(t.clone())
                .set_start_record_identifier(ident.clone());
        }
        let out = req
            .send()
            .await
            .ctx(format!("listing records of zone {zone_id}"))?;
        all.extend(out.resource_record_sets().iter().cloned());
        match (
            out.is_truncated(),
            out.next_record_name(),
            out.next_record_type(),
        ) {
            (true, Some(n), Some(t)) => {
                start = Some((
                    n.to_string(),
                    t.clone(),
                    out.next_record_identifier().map(str::to_string),
                ))
            }
            _ => break,
        }
    }
    Ok(all)
}

/// The Gitpod records in the installation's zone.
pub async fn observe_records(
    c: &Context,
    r: &DnsRecordsSpec,
) -> Result<Option<Observed<DnsRecordsSpec>>> {
    let Some(zone_id) = owned_zone(c, &r.zone_dns_name, Some(&r.installation)).await? else {
        return Ok(None);
    };
    let sets = list_records(c, &zone_id).await?;
    let ours: Vec<&ResourceRecordSet> = sets
        .iter()
        .filter(|s| {
            matches!(s.r#type(), RrType::A | RrType::Cname) && r.names.contains(&norm(s.name()))
        })
        .collect();
    let Some(first) = ours.first() else {
        return Ok(None);
    };
    let value = first
        .resource_records()
        .first()
        .map(|v| norm(v.value()))
        .unwrap_or_default();
    let target = if *first.r#type() == RrType::A {
        RecordsTarget::Ipv4(value)
    } else {
        RecordsTarget::Hostname(value)
    };
    let found_names: Vec<String> = r
        .names
        .iter()
        .filter(|n| ours.iter().any(|s| &norm(s.name()) == *n))
        .cloned()
        .collect();
    let mut actual = r.clone();
    actual.names = found_names.clone();
    actual.target = target;
    Ok(Some(Observed::ready(
        actual,
        Some(Output::DnsRecords { names: found_names }),
    )))
}

fn record_set(name: &str, target: &RecordsTarget) -> Result<ResourceRecordSet> {
    let (t, v) = match target {
        RecordsTarget::Ipv4(ip) => (RrType::A, ip.clone()),
        RecordsTarget::Hostname(h) => (RrType::Cname, h.clone()),
        _ => return Err(Error::invalid_input("unsupported records target")),
    };
    ResourceRecordSet::builder()
        .name(name)
        .r#type(t)
        .ttl(300)
        .resource_records(
            ResourceRecord::builder()
                .value(v)
                .build()
                .map_err(build_err)?,
        )
        .build()
        .map_err(build_err)
}

/// Upsert the three records.
pub async fn ensure_records(c: &Context, d: &DnsRecordsSpec, inputs: &Inputs) -> Result<Progress> {
    let zone_id = match inputs.of_kind(ResourceKind::DnsZone)? {
        Output::DnsZone { zone_id, .. } => zone_id.clone(),
        _ => return Err(Error::internal("the zone output has the wrong kind")),
    };
    let mut batch = ChangeBatch::builder().comment("gitpod-refarch");
    for n in &d.names {
        batch = batch.changes(
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(record_set(n, &d.target)?)
                .build()
                .map_err(build_err)?,
        );
    }
    c.clients
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(batch.build().map_err(build_err)?)
        .send()
        .await
        .ctx("upserting the Gitpod records")?;
    Ok(Progress::Done(Some(Output::DnsRecords {
        names: d.names.clone(),
    })))
}

/// Delete the Gitpod records (as they are) from the installation's zone.
pub async fn delete_records(c: &Context, r: &DnsRecordsSpec) -> Result<Progress> {
    if let Some(zone_id) = owned_zone(c, &r.zone_dns_name, Some(&r.installation)).await? {
        let sets = list_records(c, &zone_id).await?;
        let doomed: Vec<ResourceRecordSet> = sets
            .into_iter()
            .filter(|s| {
                matches!(s.r#type(), RrType::A | RrType::Cname) && r.names.contains(&norm(s.name()))
            })
            .collect();
        delete_sets(c, &zone_id, doomed).await?;
    }
    Ok(Progress::Done(None))
}

async fn delete_sets(c: &Context, zone_id: &str, sets: Vec<ResourceRecordSet>) -> Result<()> {
    if sets.is_empty() {
        return Ok(());
    }
    let mut batch = ChangeBatch::builder();
    for s in sets {
        batch = batch.changes(
            Change::builder()
                .action(ChangeAction::Delete)
                .resource_record_set(s)
                .build()
                .map_err(build_err)?,
        );
    }
    c.clients
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch.build().map_err(build_err)?)
        .send()
        .await
        .ctx(format!("deleting records of zone {zone_id}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(norm("\\052.gitpod.example.com."), "*.gitpod.example.com");
        assert_eq!(bare_id("/hostedzone/Z1"), "Z1");
    }

    #[test]
    fn the_dns_policy_is_scoped_to_the_zone() {
        let p = dns_policy("Z123");
        let s = p.to_string();
        assert!(s.contains("hostedzone/Z123"));
        assert!(!s.contains("hostedzone/*"));
    }
}
