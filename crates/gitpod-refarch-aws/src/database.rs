//! RDS MySQL: a parameter group of the version's family with the spec's flags
//! (`explicit_defaults_for_timestamp=0`), a subnet group on the private subnets, the
//! network's database security group (3306 from the VPC only), storage encryption,
//! backups, optional Multi-AZ and deletion protection, the database `gitpod`, and the
//! master user `gitpod` with the engine's CSPRNG password. RDS creates the user and
//! database with the instance; the `database` step checks them and resets the
//! password when the state lost it.

use std::collections::BTreeMap;

use aws_sdk_rds::types::{ApplyMethod, Parameter, Tag};
use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress, DATABASE_PASSWORD};
use gitpod_refarch::resource::{
    DatabaseEndpoint, DatabaseInstanceSpec, DatabaseSpec, Output, ResourceId, ResourceKind,
};
use gitpod_refarch::{Error, ErrorKind, Result};

use crate::context::{tags_of, Context};
use crate::error::{found, Ctx};
use crate::network;

/// The instance identifier.
pub fn instance_id(name: &str) -> String {
    format!("{name}-mysql")
}

fn subnet_group(name: &str) -> String {
    format!("{name}-db")
}

fn family(version: &str) -> String {
    format!("mysql{version}")
}

fn parameter_group(name: &str, version: &str) -> String {
    format!("{name}-mysql{}", version.replace('.', ""))
}

/// RDS spells booleans 0/1.
fn rds_value(v: &str) -> String {
    match v.to_ascii_lowercase().as_str() {
        "off" | "false" => "0".into(),
        "on" | "true" => "1".into(),
        _ => v.to_string(),
    }
}

fn spec_value(v: &str, desired: &str) -> String {
    if rds_value(desired) == rds_value(v) {
        desired.to_string()
    } else {
        v.to_string()
    }
}

fn minor(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// This installation's instance (tagged for it), if it exists; a conflict if an
/// instance of that identifier belongs to someone else.
async fn describe(c: &Context, id: &str) -> Result<Option<aws_sdk_rds::types::DbInstance>> {
    let installation = id.trim_end_matches("-mysql");
    match describe_any(c, id).await? {
        Some(db)
            if !db
                .tag_list()
                .iter()
                .any(|t| t.key() == Some(INSTALLATION_LABEL) && t.value() == Some(installation)) =>
        {
            Err(Error::new(
                ErrorKind::Conflict,
                format!("database instance {id} exists but is not tagged for installation {installation}; it is left alone"),
            ))
        }
        other => Ok(other),
    }
}

async fn describe_any(c: &Context, id: &str) -> Result<Option<aws_sdk_rds::types::DbInstance>> {
    let out = found(
        c.clients
            .rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .ctx(format!("reading database instance {id}")),
    )?;
    Ok(out.and_then(|o| o.db_instances().first().cloned()))
}

async fn parameters(c: &Context, group: &str) -> Result<Option<BTreeMap<String, String>>> {
    let out = found(
        c.clients
            .rds
            .describe_db_parameters()
            .db_parameter_group_name(group)
            .source("user")
            .send()
            .await
            .ctx(format!("reading parameter group {group}")),
    )?;
    Ok(out.map(|o| {
        o.parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_name()?.to_string(),
                    p.parameter_value()?.to_string(),
                ))
            })
            .collect()
    }))
}

fn endpoint_of(db: &aws_sdk_rds::types::DbInstance) -> Output {
    let ep = db.endpoint();
    Output::DatabaseInstance {
        instance: db.db_instance_identifier().unwrap_or_default().to_string(),
        endpoint: DatabaseEndpoint::Host {
            host: ep.and_then(|e| e.address()).unwrap_or_default().to_string(),
            port: ep.and_then(|e| e.port()).unwrap_or(3306).clamp(1, 65535) as u16,
            ca_certificate_pem: None,
        },
    }
}

/// Whether the instance is in the middle of something (`storage-optimization` follows
/// every storage change for hours while the instance is fully usable: not busy).
fn busy(status: &str) -> bool {
    !matches!(
        status,
        "available"
            | "storage-optimization"
            | "failed"
            | "stopped"
            | "storage-full"
            | "incompatible-parameters"
            | "incompatible-restore"
            | "incompatible-network"
    )
}

/// The instance as it is.
pub async fn observe_instance(
    c: &Context,
    d: &DatabaseInstanceSpec,
) -> Result<Option<Observed<DatabaseInstanceSpec>>> {
    let id = instance_id(&d.name);
    // Someone else's instance of that name is not ours: absent (ensure then refuses).
    let db = match describe(c, &id).await {
        Err(e) if e.kind() == ErrorKind::Conflict => None,
        other => other?,
    };
    let Some(db) = db else {
        return Ok(None);
    };
    let rid = ResourceId::new(ResourceKind::DatabaseInstance, d.name.clone());
    let mut a = d.clone();
    a.region = c.region.clone();
    let ev = db.engine_version().unwrap_or_default();
    a.mysql_version = if minor(ev) == minor(&d.mysql_version) {
        d.mysql_version.clone()
    } else {
        minor(ev)
    };
    a.tier = db.db_instance_class().unwrap_or_default().to_string();
    let allocated = db.allocated_storage().unwrap_or(0).max(0) as u32;
    // Storage that autoscaling grew past the spec is not drift.
    a.storage_gb = if d.storage_auto_increase && allocated >= d.storage_gb {
        d.storage_gb
    } else {
        allocated
    };
    a.storage_auto_increase = db
        .max_allocated_storage()
        .is_some_and(|m| m > db.allocated_storage().unwrap_or(0));
    a.high_availability = db.multi_az().unwrap_or(false);
    let retention = db.backup_retention_period().unwrap_or(0).max(0) as u32;
    a.backups_enabled = retention > 0;
    a.backup_retention_days = if retention > 0 {
        retention
    } else {
        d.backup_retention_days
    };
    a.deletion_protection = db.deletion_protection().unwrap_or(false);
    a.database_name = db.db_name().unwrap_or_default().to_string();
    a.admin_username = db.master_username().unwrap_or_default().to_string();
    let group = parameter_group(&d.name, &minor(ev));
    let params = parameters(c, &group).await?.unwrap_or_default();
    a.flags = d
        .flags
        .iter()
        .map(|(k, want)| {
            (
                k.clone(),
                params
                    .get(k)
                    .map(|v| spec_value(v, want))
                    .unwrap_or_default(),
            )
        })
        .collect();
    let status = db.db_instance_status().unwrap_or_default();
    if status == "deleting" {
        return Ok(Some(Observed::pending(
            a,
            c.op(format!("rds-delete:{id}"), &rid),
        )));
    }
    if busy(status) {
        return Ok(Some(Observed::pending(a, c.op(format!("rds:{id}"), &rid))));
    }
    Ok(Some(Observed::ready(a, Some(endpoint_of(&db)))))
}

async fn ensure_parameter_group(c: &Context, d: &DatabaseInstanceSpec) -> Result<String> {
    let group = parameter_group(&d.name, &d.mysql_version);
    let rds = &c.clients.rds;
    let current = match parameters(c, &group).await? {
        Some(p) => p,
        None => {
            rds.create_db_parameter_group()
                .db_parameter_group_name(&group)
                .db_parameter_group_family(family(&d.mysql_version))
                .description(format!("Gitpod installation {}", d.name))
                .set_tags(Some(rds_tags(&tags_of(&d.labels, &d.name))))
                .send()
                .await
                .ctx(format!("creating parameter group {group}"))?;
            BTreeMap::new()
        }
    };
    let changes: Vec<Parameter> = d
        .flags
        .iter()
        .filter(|(k, v)| current.get(*k).map(|x| rds_value(x)) != Some(rds_value(v)))
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_name(k)
                .parameter_value(rds_value(v))
                .apply_method(ApplyMethod::PendingReboot)
                .build()
        })
        .collect();
    if !changes.is_empty() {
        rds.modify_db_parameter_group()
            .db_parameter_group_name(&group)
            .set_parameters(Some(changes))
            .send()
            .await
            .ctx(format!("setting the flags of {group}"))?;
    }
    Ok(group)
}

fn rds_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Create or update the instance (and its groups).
pub async fn ensure_instance(
    c: &Context,
    d: &DatabaseInstanceSpec,
    inputs: &Inputs,
) -> Result<Progress> {
    let id = instance_id(&d.name);
    let rid = ResourceId::new(ResourceKind::DatabaseInstance, d.name.clone());
    let op = || c.op(format!("rds:{id}"), &rid);
    let rds = &c.clients.rds;
    let group = ensure_parameter_group(c, d).await?;
    let Some(db) = describe(c, &id).await? else {
        let net = network::lookup(c, &d.name).await?.ok_or_else(|| {
            Error::new(ErrorKind::NotFound, "the network does not exist yet")
                .with_resource(rid.clone())
        })?;
        let sg = net.db_security_group.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "the database security group does not exist yet",
            )
            .with_resource(rid.clone())
        })?;
        let sng = subnet_group(&d.name);
        let has_group = found(
            rds.describe_db_subnet_groups()
                .db_subnet_group_name(&sng)
                .send()
                .await
                .ctx("reading the subnet group"),
        )?
        .is_some();
        if !has_group {
            rds.create_db_subnet_group()
                .db_subnet_group_name(&sng)
                .db_subnet_group_description(format!("Gitpod installation {}", d.name))
                .set_subnet_ids(Some(net.private.iter().map(|(_, s)| s.clone()).collect()))
                .set_tags(Some(rds_tags(&tags_of(&d.labels, &d.name))))
                .send()
                .await
                .ctx(format!("creating subnet group {sng}"))?;
        }
        let password = inputs.secret(DATABASE_PASSWORD)?;
        let mut req = rds
            .create_db_instance()
            .db_instance_identifier(&id)
            .engine("mysql")
            .engine_version(&d.mysql_version)
            .db_instance_class(&d.tier)
            .allocated_storage(d.storage_gb as i32)
            .storage_type("gp3")
            .storage_encrypted(true)
            .multi_az(d.high_availability)
            .backup_retention_period(if d.backups_enabled {
                d.backup_retention_days as i32
            } else {
                0
            })
            .deletion_protection(d.deletion_protection)
            .master_username(&d.admin_username)
            .master_user_password(password.expose())
            .db_name(&d.database_name)
            .vpc_security_group_ids(sg)
            .db_subnet_group_name(&sng)
            .db_parameter_group_name(&group)
            .publicly_accessible(false)
            .copy_tags_to_snapshot(true)
            .set_tags(Some(rds_tags(&tags_of(&d.labels, &d.name))));
        if d.storage_auto_increase {
            req = req.max_allocated_storage((d.storage_gb * 5).max(100) as i32);
        }
        req.send()
            .await
            .ctx(format!("creating database instance {id}"))?;
        return Ok(Progress::Pending(op()));
    };
    let status = db.db_instance_status().unwrap_or_default();
    if status == "deleting" {
        return Err(Error::new(
            ErrorKind::OperationInProgress,
            format!("{id} is being deleted"),
        )
        .with_resource(rid));
    }
    if busy(status) {
        return Ok(Progress::Pending(op()));
    }
    if status != "available" {
        return Err(
            Error::new(ErrorKind::OperationFailed, format!("{id} is {status}")).with_resource(rid),
        );
    }
    // In-place changes.
    let retention = if d.backups_enabled {
        d.backup_retention_days as i32
    } else {
        0
    };
    let max_storage = d
        .storage_auto_increase
        .then(|| (d.storage_gb * 5).max(100) as i32);
    let current_group = db
        .db_parameter_groups()
        .first()
        .and_then(|g| g.db_parameter_group_name())
        .unwrap_or_default();
    let allocated = db.allocated_storage().unwrap_or(0);
    // With autoscaling, storage may have grown past the spec: only grow, never shrink.
    let storage_ok = allocated == d.storage_gb as i32
        || (d.storage_auto_increase && allocated > d.storage_gb as i32);
    let same = minor(db.engine_version().unwrap_or_default()) == minor(&d.mysql_version)
        && db.db_instance_class() == Some(d.tier.as_str())
        && storage_ok
        && db.multi_az() == Some(d.high_availability)
        && db.backup_retention_period() == Some(retention)
        && db.deletion_protection() == Some(d.deletion_protection)
        && current_group == group
        && (max_storage.is_some()
            == db
                .max_allocated_storage()
                .is_some_and(|m| m > db.allocated_storage().unwrap_or(0)));
    if same {
        return Ok(Progress::Done(Some(endpoint_of(&db))));
    }
    let mut req = rds
        .modify_db_instance()
        .db_instance_identifier(&id)
        .apply_immediately(true)
        .db_instance_class(&d.tier)
        .multi_az(d.high_availability)
        .backup_retention_period(retention)
        .deletion_protection(d.deletion_protection)
        .db_parameter_group_name(&group);
    if !storage_ok {
        req = req.allocated_storage(d.storage_gb as i32);
    }
    if minor(db.engine_version().unwrap_or_default()) != minor(&d.mysql_version) {
        req = req
            .engine_version(&d.mysql_version)
            .allow_major_version_upgrade(true);
    }
    // Autoscaling off: RDS wants the maximum equal to the allocated storage.
    req = req.max_allocated_storage(max_storage.unwrap_or(allocated.max(d.storage_gb as i32)));
    req.send()
        .await
        .ctx(format!("modifying database instance {id}"))?;
    Ok(Progress::Pending(op()))
}

/// Poll an instance create/modify (`rds:`) or delete (`rds-delete:`).
pub async fn poll(c: &Context, op: &Operation) -> Result<Progress> {
    let (deleting, id) = match op.id.split_once(':') {
        Some(("rds", i)) => (false, i),
        Some(("rds-delete", i)) => (true, i),
        _ => return Ok(Progress::Done(None)),
    };
    let again = || Ok(Progress::Pending(c.op(op.id.clone(), &op.resource)));
    match (describe(c, id).await?, deleting) {
        (None, true) => Ok(Progress::Done(None)),
        (None, false) => Err(
            Error::new(ErrorKind::OperationFailed, format!("{id} disappeared"))
                .with_resource(op.resource.clone()),
        ),
        (Some(_), true) => again(),
        (Some(db), false) => {
            let status = db.db_instance_status().unwrap_or_default();
            if !busy(status) && matches!(status, "available" | "storage-optimization") {
                Ok(Progress::Done(None))
            } else if busy(status) {
                again()
            } else {
                Err(
                    Error::new(ErrorKind::OperationFailed, format!("{id} is {status}"))
                        .with_resource(op.resource.clone()),
                )
            }
        }
    }
}

/// Delete the instance (no final snapshot), then its subnet and parameter groups.
pub async fn delete_instance(
    c: &Context,
    rid: &ResourceId,
    d: &DatabaseInstanceSpec,
) -> Result<Progress> {
    let id = instance_id(&d.name);
    let rds = &c.clients.rds;
    let existing = match describe(c, &id).await {
        Err(e) if e.kind() == ErrorKind::Conflict => return Ok(Progress::Done(None)),
        other => other?,
    };
    if let Some(db) = existing {
        if db.db_instance_status() != Some("deleting") {
            rds.delete_db_instance()
                .db_instance_identifier(&id)
                .skip_final_snapshot(true)
                .delete_automated_backups(true)
                .send()
                .await
                .ctx(format!("deleting database instance {id}"))?;
        }
        return Ok(Progress::Pending(c.op(format!("rds-delete:{id}"), rid)));
    }
    // Only once the instance is gone: moto (and AWS) misbehave when groups go first.
    found(
        rds.delete_db_subnet_group()
            .db_subnet_group_name(subnet_group(&d.name))
            .send()
            .await
            .ctx("deleting the subnet group"),
    )?;
    for v in ["5.7", "8.0"] {
        found(
            rds.delete_db_parameter_group()
                .db_parameter_group_name(parameter_group(&d.name, v))
                .send()
                .await
                .ctx("deleting the parameter group"),
        )?;
    }
    Ok(Progress::Done(None))
}

/// The database and user, as RDS reports them.
pub async fn observe_database(
    c: &Context,
    d: &DatabaseSpec,
) -> Result<Option<Observed<DatabaseSpec>>> {
    let db = match describe(c, &instance_id(&d.instance)).await {
        Err(e) if e.kind() == ErrorKind::Conflict => None,
        other => other?,
    };
    let Some(db) = db else {
        return Ok(None);
    };
    if db.db_name().is_none() {
        return Ok(None);
    }
    let mut a = d.clone();
    a.database_name = db.db_name().unwrap_or_default().to_string();
    a.username = db.master_username().unwrap_or_default().to_string();
    // The password cannot be read back: outputs come from state.
    Ok(Some(Observed::ready(a, None)))
}

/// Check the database and user; reset the password if the state lost it.
pub async fn ensure_database(c: &Context, d: &DatabaseSpec, inputs: &Inputs) -> Result<Progress> {
    let id = instance_id(&d.instance);
    let rid = ResourceId::new(ResourceKind::Database, d.database_name.clone());
    let db = describe(c, &id).await?.ok_or_else(|| {
        Error::new(ErrorKind::NotFound, format!("{id} does not exist")).with_resource(rid.clone())
    })?;
    if db.db_name() != Some(d.database_name.as_str())
        || db.master_username() != Some(d.username.as_str())
    {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{id} has database {:?} and user {:?}; RDS cannot rename them: replace the instance",
                db.db_name(),
                db.master_username()
            ),
        )
        .with_resource(rid));
    }
    let password = inputs.secret(DATABASE_PASSWORD)?;
    if inputs.get(&rid).is_none() {
        // The state does not know whether the instance has this password: set it.
        c.clients
            .rds
            .modify_db_instance()
            .db_instance_identifier(&id)
            .master_user_password(password.expose())
            .apply_immediately(true)
            .send()
            .await
            .ctx(format!("setting the password of {}", d.username))?;
    }
    Ok(Progress::Done(Some(Output::Database {
        database: d.database_name.clone(),
        username: d.username.clone(),
        password: password.clone(),
        client_credentials: None,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        assert_eq!(parameter_group("gp", "5.7"), "gp-mysql57");
        assert_eq!(family("8.0"), "mysql8.0");
        assert_eq!(rds_value("off"), "0");
        assert_eq!(spec_value("0", "off"), "off");
        assert_eq!(spec_value("1", "off"), "1");
    }
}
