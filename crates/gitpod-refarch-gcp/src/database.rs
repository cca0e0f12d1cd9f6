//! Cloud SQL for MySQL, as the guide: `MYSQL_5_7` (or `8.0`), tier
//! `db-n1-standard-2`, 20 GB SSD with auto-increase, high availability (regional) and
//! binary logging with backups, the flag `explicit_defaults_for_timestamp=off`; then
//! the database `gitpod`, the user `gitpod` with the engine's CSPRNG password, and the
//! `db-sa-<name>` account with `roles/cloudsql.client` and its key for the Cloud SQL
//! proxy that the installer deploys (`database.cloudSQL`, secret `cloudsql`).
//!
//! A deleted instance's name cannot be reused for about a week, so the instance is
//! `sql-<name>-<4 hex>` and is found by its label, never by name.

use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Inputs, Observed, Progress, DATABASE_PASSWORD};
use gitpod_refarch::resource::{
    DatabaseEndpoint, DatabaseInstanceSpec, DatabaseSpec, Output, ResourceId, ResourceKind,
};
use gitpod_refarch::{Error, Result};
use google_cloud_sql_v1::model::{
    backup_retention_settings::RetentionUnit, database_instance::SqlInstanceState,
    BackupConfiguration, BackupRetentionSettings, Database, DatabaseFlags, DatabaseInstance,
    IpConfiguration, Settings, SqlAvailabilityType, SqlDataDiskType, SqlDatabaseVersion, User,
};
use rand::Rng;

use crate::context::{operation, pending, Api, Context};
use crate::error::{found, GaxResultExt};
use crate::iam;

/// The role of the Cloud SQL proxy's account.
pub const CLIENT_ROLES: [&str; 1] = ["roles/cloudsql.client"];

/// The host of the `gitpod` user (the proxy connects from anywhere).
pub const USER_HOST: &str = "%";

/// `db-sa-<name>`.
pub fn account_id(installation: &str) -> String {
    format!("db-sa-{installation}")
}

fn version_of(v: &str) -> Result<SqlDatabaseVersion> {
    match v {
        "5.7" => Ok(SqlDatabaseVersion::Mysql57),
        "8.0" => Ok(SqlDatabaseVersion::Mysql80),
        other => Err(Error::invalid_input(format!(
            "Cloud SQL MySQL version '{other}' is not supported: use 5.7 or 8.0"
        ))),
    }
}

fn version_name(v: &SqlDatabaseVersion) -> String {
    match v {
        SqlDatabaseVersion::Mysql57 => "5.7".into(),
        SqlDatabaseVersion::Mysql80 => "8.0".into(),
        other => other.name().unwrap_or("unknown").to_string(),
    }
}

/// The installation's instance, found by label (`sql-<name>-xxxx`).
pub async fn find(c: &Context, installation: &str) -> Result<Option<DatabaseInstance>> {
    let prefix = format!("sql-{installation}-");
    let mut page: Option<String> = None;
    loop {
        let list = c
            .clients
            .sql_instances
            .list()
            .set_project(&c.project)
            .set_page_token(page.clone().unwrap_or_default())
            .send()
            .await
            .ctx("listing Cloud SQL instances")?;
        if let Some(i) = list.items.into_iter().find(|i| {
            i.name.starts_with(&prefix)
                && i.settings
                    .as_ref()
                    .and_then(|s| s.user_labels.get(INSTALLATION_LABEL))
                    == Some(&installation.to_string())
        }) {
            return Ok(Some(i));
        }
        page = Some(list.next_page_token).filter(|t| !t.is_empty());
        if page.is_none() {
            return Ok(None);
        }
    }
}

fn settings(d: &DatabaseInstanceSpec) -> Settings {
    Settings::new()
        .set_tier(&d.tier)
        .set_data_disk_type(SqlDataDiskType::PdSsd)
        .set_data_disk_size_gb(i64::from(d.storage_gb))
        .set_storage_auto_resize(d.storage_auto_increase)
        .set_availability_type(if d.high_availability {
            SqlAvailabilityType::Regional
        } else {
            SqlAvailabilityType::Zonal
        })
        .set_backup_configuration(
            BackupConfiguration::new()
                .set_enabled(d.backups_enabled)
                .set_binary_log_enabled(d.backups_enabled)
                .set_backup_retention_settings(
                    BackupRetentionSettings::new()
                        .set_retention_unit(RetentionUnit::Count)
                        .set_retained_backups(
                            i32::try_from(d.backup_retention_days).unwrap_or(i32::MAX),
                        ),
                ),
        )
        .set_database_flags(
            d.flags
                .iter()
                .map(|(k, v)| DatabaseFlags::new().set_name(k).set_value(v)),
        )
        .set_ip_configuration(IpConfiguration::new().set_ipv4_enabled(true))
        .set_deletion_protection_enabled(d.deletion_protection)
        .set_user_labels(d.labels.clone())
}

fn actual(d: &DatabaseInstanceSpec, i: &DatabaseInstance) -> DatabaseInstanceSpec {
    let mut a = d.clone();
    a.mysql_version = version_name(&i.database_version);
    if let Some(s) = &i.settings {
        a.tier = s.tier.clone();
        a.storage_gb = s
            .data_disk_size_gb
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or_default();
        a.storage_auto_increase = s.storage_auto_resize.unwrap_or(false);
        a.high_availability = s.availability_type == SqlAvailabilityType::Regional;
        let b = s.backup_configuration.clone().unwrap_or_default();
        a.backups_enabled = b.enabled.unwrap_or(false) && b.binary_log_enabled.unwrap_or(false);
        a.backup_retention_days = b
            .backup_retention_settings
            .and_then(|r| r.retained_backups)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_default();
        a.flags = s
            .database_flags
            .iter()
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect();
        a.deletion_protection = s.deletion_protection_enabled.unwrap_or(false);
        a.labels = s.user_labels.clone().into_iter().collect();
    }
    a
}

fn instance_output(c: &Context, i: &DatabaseInstance) -> Output {
    let connection_name = if i.connection_name.is_empty() {
        format!("{}:{}:{}", c.project, c.region, i.name)
    } else {
        i.connection_name.clone()
    };
    Output::DatabaseInstance {
        instance: i.name.clone(),
        endpoint: DatabaseEndpoint::CloudSql { connection_name },
    }
}

/// The instance as it exists; one still being created is reported with a wait.
pub async fn observe_instance(
    c: &Context,
    d: &DatabaseInstanceSpec,
) -> Result<Option<Observed<DatabaseInstanceSpec>>> {
    let Some(i) = find(c, &d.name).await? else {
        return Ok(None);
    };
    let a = actual(d, &i);
    if i.state == SqlInstanceState::PendingCreate {
        let id = ResourceId::new(ResourceKind::DatabaseInstance, d.name.clone());
        let op = operation(c, Api::SqlInstance, &i.name, &id);
        return Ok(Some(Observed::pending(a, op)));
    }
    Ok(Some(Observed::ready(a, Some(instance_output(c, &i)))))
}

/// Create the instance, or patch its settings to match. One operation per call.
pub async fn ensure_instance(c: &Context, d: &DatabaseInstanceSpec) -> Result<Progress> {
    let id = ResourceId::new(ResourceKind::DatabaseInstance, d.name.clone());
    let version = version_of(&d.mysql_version)?;
    let Some(i) = find(c, &d.name).await? else {
        let suffix: u16 = rand::rng().random();
        let name = format!("sql-{}-{suffix:04x}", d.name);
        let op = c
            .clients
            .sql_instances
            .insert()
            .set_project(&c.project)
            .set_body(
                DatabaseInstance::new()
                    .set_name(&name)
                    .set_region(&c.region)
                    .set_database_version(version)
                    .set_settings(settings(d)),
            )
            .send()
            .await
            .ctx(format!("creating Cloud SQL instance {name}"))?;
        return Ok(pending(c, Api::Sql, &op.name, &id));
    };
    if i.state == SqlInstanceState::PendingCreate {
        return Ok(pending(c, Api::SqlInstance, &i.name, &id));
    }
    let a = actual(d, &i);
    if a.mysql_version != d.mysql_version {
        return Err(Error::invalid_input(format!(
            "instance {} runs MySQL {}; in-place major upgrades are not done by this SDK",
            i.name, a.mysql_version
        )));
    }
    if &a != d {
        let op = c
            .clients
            .sql_instances
            .patch()
            .set_project(&c.project)
            .set_instance(&i.name)
            .set_body(DatabaseInstance::new().set_settings(settings(d)))
            .send()
            .await
            .ctx(format!("updating Cloud SQL instance {}", i.name))?;
        return Ok(pending(c, Api::Sql, &op.name, &id));
    }
    Ok(Progress::Done(Some(instance_output(c, &i))))
}

/// Delete the instance (the engine keeps deletion-protected ones).
pub async fn delete_instance(c: &Context, d: &DatabaseInstanceSpec) -> Result<Progress> {
    let id = &ResourceId::new(ResourceKind::DatabaseInstance, d.name.clone());
    let Some(i) = find(c, &d.name).await? else {
        return Ok(Progress::Done(None));
    };
    if i.state == SqlInstanceState::PendingCreate {
        return Ok(pending(c, Api::SqlInstance, &i.name, id));
    }
    let r = c
        .clients
        .sql_instances
        .delete()
        .set_project(&c.project)
        .set_instance(&i.name)
        .send()
        .await;
    match found(r, format!("deleting Cloud SQL instance {}", i.name))? {
        Some(op) => Ok(pending(c, Api::Sql, &op.name, id)),
        None => Ok(Progress::Done(None)),
    }
}

async fn get_database(c: &Context, instance: &str, name: &str) -> Result<Option<Database>> {
    found(
        c.clients
            .sql_databases
            .get()
            .set_project(&c.project)
            .set_instance(instance)
            .set_database(name)
            .send()
            .await,
        format!("reading database {name}"),
    )
}

async fn get_user(c: &Context, instance: &str, name: &str) -> Result<Option<User>> {
    found(
        c.clients
            .sql_users
            .get()
            .set_project(&c.project)
            .set_instance(instance)
            .set_name(name)
            .set_host(USER_HOST)
            .send()
            .await,
        format!("reading user {name}"),
    )
}

/// The database as it exists: a user or client account (or its role) still missing is
/// drift. The password and key cannot be read back: the output comes from the state
/// store.
pub async fn observe_database(
    c: &Context,
    d: &DatabaseSpec,
) -> Result<Option<Observed<DatabaseSpec>>> {
    let Some(i) = find(c, &d.instance).await? else {
        return Ok(None);
    };
    if i.state != SqlInstanceState::Runnable
        || get_database(c, &i.name, &d.database_name).await?.is_none()
    {
        return Ok(None);
    }
    let mut o = Observed::ready(d.clone(), None);
    if get_user(c, &i.name, &d.username).await?.is_none() {
        o = o.with_drift(format!(
            "user {} of instance {} is missing",
            d.username, i.name
        ));
    }
    let sa = account_id(&d.instance);
    match iam::account_drift(c, &sa, &d.instance, &CLIENT_ROLES).await? {
        Some(drift) => o.drift.extend(drift),
        None => {
            o = o.with_drift(format!(
                "the Cloud SQL client account {} is missing",
                iam::email(c, &sa)
            ))
        }
    }
    Ok(Some(o))
}

/// Create the database, then the user (one operation per call), then the client
/// account with its role and key.
pub async fn ensure_database(c: &Context, d: &DatabaseSpec, inputs: &Inputs) -> Result<Progress> {
    let id = ResourceId::new(ResourceKind::Database, d.database_name.clone());
    let i = find(c, &d.instance)
        .await?
        .ok_or_else(|| Error::internal(format!("no Cloud SQL instance for {}", d.instance)))?;
    if i.state == SqlInstanceState::PendingCreate {
        return Ok(pending(c, Api::SqlInstance, &i.name, &id));
    }
    let known = match inputs.get(&id) {
        Some(
            o @ Output::Database {
                client_credentials: Some(_),
                ..
            },
        ) => Some(o.clone()),
        _ => None,
    };
    let password = inputs.secret(DATABASE_PASSWORD)?.clone();
    if get_database(c, &i.name, &d.database_name).await?.is_none() {
        let op = c
            .clients
            .sql_databases
            .insert()
            .set_project(&c.project)
            .set_instance(&i.name)
            .set_body(
                Database::new()
                    .set_name(&d.database_name)
                    .set_charset("utf8")
                    .set_collation("utf8_general_ci"),
            )
            .send()
            .await
            .ctx(format!("creating database {}", d.database_name))?;
        return Ok(pending(c, Api::Sql, &op.name, &id));
    }
    let user = || {
        User::new()
            .set_name(&d.username)
            .set_host(USER_HOST)
            .set_password(password.expose())
    };
    let marker = format!("{}/{}", i.name, d.username);
    let set_here = c
        .passwords_set
        .lock()
        .map(|s| s.contains(&marker))
        .unwrap_or(false);
    let remember = || {
        if let Ok(mut s) = c.passwords_set.lock() {
            s.insert(marker.clone());
        }
    };
    match get_user(c, &i.name, &d.username).await? {
        None => {
            let op = c
                .clients
                .sql_users
                .insert()
                .set_project(&c.project)
                .set_instance(&i.name)
                .set_body(user())
                .send()
                .await
                .ctx(format!("creating user {}", d.username))?;
            remember();
            return Ok(pending(c, Api::Sql, &op.name, &id));
        }
        // The user exists but the state store has no outputs (lost, or an earlier run
        // stopped before saving them): set the saved password once, so that what the
        // installer gets is true.
        Some(_) if known.is_none() && !set_here => {
            let op = c
                .clients
                .sql_users
                .update()
                .set_project(&c.project)
                .set_instance(&i.name)
                .set_name(&d.username)
                .set_host(USER_HOST)
                .set_body(user())
                .send()
                .await
                .ctx(format!("setting the password of {}", d.username))?;
            remember();
            return Ok(pending(c, Api::Sql, &op.name, &id));
        }
        Some(_) => {}
    }
    let sa = account_id(&d.instance);
    iam::ensure_account(c, &sa, "Gitpod Cloud SQL proxy", &d.instance).await?;
    iam::set_project_roles(c, &iam::member(c, &sa), &CLIENT_ROLES, true).await?;
    if let Some(k) = known {
        return Ok(Progress::Done(Some(k)));
    }
    let key = iam::create_key(c, &sa).await?;
    Ok(Progress::Done(Some(Output::Database {
        database: d.database_name.clone(),
        username: d.username.clone(),
        password,
        client_credentials: Some(key),
    })))
}

/// Delete the client account; the user and database go with the instance, or are
/// removed here when the instance stays (deletion protection).
pub async fn delete_database(c: &Context, d: &DatabaseSpec) -> Result<Progress> {
    let id = &ResourceId::new(ResourceKind::Database, d.database_name.clone());
    iam::delete_account(c, &account_id(&d.instance), &d.instance, &CLIENT_ROLES).await?;
    let Some(i) = find(c, &d.instance).await? else {
        return Ok(Progress::Done(None));
    };
    if i.state != SqlInstanceState::Runnable {
        return Ok(Progress::Done(None));
    }
    if get_user(c, &i.name, &d.username).await?.is_some() {
        let r = c
            .clients
            .sql_users
            .delete()
            .set_project(&c.project)
            .set_instance(&i.name)
            .set_name(&d.username)
            .set_host(USER_HOST)
            .send()
            .await;
        if let Some(op) = found(r, format!("deleting user {}", d.username))? {
            return Ok(pending(c, Api::Sql, &op.name, id));
        }
    }
    if get_database(c, &i.name, &d.database_name).await?.is_some() {
        let r = c
            .clients
            .sql_databases
            .delete()
            .set_project(&c.project)
            .set_instance(&i.name)
            .set_database(&d.database_name)
            .send()
            .await;
        if let Some(op) = found(r, format!("deleting database {}", d.database_name))? {
            return Ok(pending(c, Api::Sql, &op.name, id));
        }
    }
    Ok(Progress::Done(None))
}
