//! Azure Database for MySQL flexible server (Microsoft.DBforMySQL `2024-12-30`), in
//! the VNet, with the database `gitpod`.
//!
//! **The instance** is built in phases, one long-running operation per call:
//! 1. ([`private_dns`]) the private DNS zone `N.private.mysql.database.azure.com` (Microsoft.Network
//!    `2024-06-01`, `location: global`) and its virtual network link `vnet-N` to the
//!    VNet (`registrationEnabled: false`), before the server, which needs them;
//! 2. the server: `sku` = the spec's tier with its tier derived from the name
//!    ([`sku_tier`]: `Standard_B*` Burstable, `Standard_D*` GeneralPurpose,
//!    `Standard_E*` MemoryOptimized), `version` `5.7` or `8.0.21` (the API's name for
//!    8.0), administrator `gitpod` (no `@server` suffix) with the engine's generated
//!    password, storage size and auto-grow, backup retention with geo-redundant backup
//!    off, high availability `ZoneRedundant` when the spec asks for it (not on
//!    Burstable: [`ErrorKind::InvalidInput`] naming `database.highAvailability`), and
//!    VNet integration: `delegatedSubnetResourceId` = the `mysql` subnet,
//!    `privateDnsZoneResourceId` = the zone above, `publicNetworkAccess: Disabled`.
//!    Tier, storage, HA, backup retention and tags are corrected in place (`PATCH`);
//!    a major-version change is not done in place;
//! 3. ([`configurations`]) the server parameters through the configurations API, one per call: every spec
//!    flag (values `on`/`off`/`true`/`false` written as Azure's `ON`/`OFF`),
//!    `explicit_defaults_for_timestamp=OFF` when the spec does not set it (MySQL 8.0
//!    defaults to ON; Gitpod needs OFF), and `require_secure_transport=OFF`.
//!
//! **TLS.** Azure enforces TLS by default (`require_secure_transport=ON`), and Gitpod's
//! server components use TLS to MySQL only when the installer's `database.ssl.caCert`
//! is set; the installer configuration rendered from this provider's outputs
//! ([`Output::DatabaseInstance`] and [`Output::Database`]) carries no CA certificate.
//! The server is reachable only inside the VNet (private access, public network access
//! disabled, its name resolved through the private zone linked to the VNet only), so
//! this provider turns `require_secure_transport` off instead of shipping Azure's CA
//! bundle; the traffic between the cluster and the server stays on the VNet.
//!
//! **The database** `gitpod` ([`gitpod_db`]) is created with charset `utf8mb4` and collation
//! `utf8mb4_0900_ai_ci` on 8.0 (`utf8mb4_general_ci` on 5.7). Azure has no ARM API for
//! MySQL users, so Gitpod's user is the server's administrator (`gitpod`), and its
//! password is the same engine-generated secret (made to meet Azure's complexity rule
//! when it does not: [`azure_password`]). When the engine's state has lost the
//! database's output, the administrator password is set again to the saved secret, so
//! what the installer gets is true.
//!
//! **Delete**: the server (a long-running delete), then the VNet link and the private
//! zone. With `database.deletionProtection` the instance is never deleted: that is a
//! [`ErrorKind::Conflict`] (Azure has no deletion protection of its own for flexible
//! servers; the engine also keeps protected instances out of a destroy).

pub mod configurations;
pub mod gitpod_db;
pub mod private_dns;

use std::collections::BTreeMap;

use gitpod_refarch::provider::{Inputs, Observed, Progress, DATABASE_PASSWORD};
use gitpod_refarch::resource::{
    DatabaseEndpoint, DatabaseInstanceSpec, DatabaseResource, Output, ResourceId, ResourceKind,
};
use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use serde::{Deserialize, Serialize};

use crate::arm::code_of;
use crate::context::{absent_if_foreign, tags_of, Context, MYSQL_API, MYSQL_SUBNET};
use configurations::same_value;

pub use configurations::{
    azure_value, wanted_configurations, EXPLICIT_DEFAULTS_FOR_TIMESTAMP, REQUIRE_SECURE_TRANSPORT,
};
pub use gitpod_db::{collation, delete_database, ensure_database, observe_database, CHARSET};
pub use private_dns::GLOBAL;

/// The MySQL port.
pub const PORT: u16 = 3306;

/// One read of a database resource.
pub async fn observe(
    c: &Context,
    resource: &DatabaseResource,
) -> Result<Option<Observed<DatabaseResource>>> {
    Ok(match resource {
        DatabaseResource::Instance(d) => observe_instance(c, d)
            .await?
            .map(|o| o.map(DatabaseResource::Instance)),
        DatabaseResource::Database(d) => observe_database(c, d)
            .await?
            .map(|o| o.map(DatabaseResource::Database)),
    })
}

/// Create or update a database resource.
pub async fn ensure(c: &Context, resource: &DatabaseResource, inputs: &Inputs) -> Result<Progress> {
    match resource {
        DatabaseResource::Instance(d) => ensure_instance(c, d, inputs).await,
        DatabaseResource::Database(d) => ensure_database(c, d, inputs).await,
    }
}

/// Delete a database resource (absent is success).
pub async fn delete(c: &Context, resource: &DatabaseResource) -> Result<Progress> {
    match resource {
        DatabaseResource::Instance(d) => delete_instance(c, d).await,
        DatabaseResource::Database(d) => delete_database(c, d).await,
    }
}

// ---------------------------------------------------------------------------------
// Mapping the spec.

/// The SKU tier of a flexible-server SKU name.
pub fn sku_tier(tier: &str) -> Result<&'static str> {
    let size = tier.strip_prefix("Standard_").unwrap_or_default();
    match size.chars().next() {
        Some('B') => Ok("Burstable"),
        Some('D') => Ok("GeneralPurpose"),
        Some('E') => Ok("MemoryOptimized"),
        _ => Err(Error::invalid_input(format!(
            "database.tier: '{tier}' is not a MySQL flexible server SKU (Standard_B* \
             Burstable, Standard_D* General Purpose or Standard_E* Memory Optimized)"
        ))),
    }
}

/// The API's version name of a spec MySQL version.
pub fn server_version(mysql_version: &str) -> Result<&'static str> {
    match mysql_version {
        "5.7" => Ok("5.7"),
        "8.0" => Ok("8.0.21"),
        other => Err(Error::invalid_input(format!(
            "database.mysqlVersion: '{other}' is not offered by MySQL flexible server here \
             (5.7 or 8.0)"
        ))),
    }
}

/// The spec's MySQL version of an API version name (`8.0.21` is 8.0).
pub fn spec_version(server_version: &str) -> String {
    server_version
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

/// Refuse what Azure would refuse, naming the spec field.
fn check(d: &DatabaseInstanceSpec) -> Result<()> {
    let tier = sku_tier(&d.tier)?;
    server_version(&d.mysql_version)?;
    if d.high_availability && tier == "Burstable" {
        return Err(Error::invalid_input(format!(
            "database.highAvailability: Burstable servers ({}) have no high availability; \
             choose a Standard_D* or Standard_E* tier, or turn it off",
            d.tier
        )));
    }
    Ok(())
}

/// The administrator password Azure gets for the engine's generated secret: the secret
/// itself when it has three of Azure's four character classes (upper case, lower case,
/// digits, others), else the secret with `aA1` appended. The engine's 32 random letters
/// and digits lack a class now and then (no digit about once in 280); the result is a
/// function of the secret alone, so every call and the output agree.
pub fn azure_password(secret: &Secret) -> Secret {
    let p = secret.expose();
    let classes = [
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .into_iter()
    .filter(|b| *b)
    .count();
    if classes >= 3 && p.chars().count() >= 8 {
        secret.clone()
    } else {
        Secret::new(format!("{p}aA1"))
    }
}

/// Backup retention: Azure always keeps backups (1-35 days); "off" is the minimum.
fn retention_days(d: &DatabaseInstanceSpec) -> u32 {
    if d.backups_enabled {
        d.backup_retention_days.clamp(1, 35)
    } else {
        1
    }
}

// ---------------------------------------------------------------------------------
// Wire types.

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Sku {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tier: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Storage {
    #[serde(
        rename = "storageSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    storage_size_gb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auto_grow: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Backup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_retention_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    geo_redundant_backup: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HighAvailability {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_network_access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delegated_subnet_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_dns_zone_resource_id: Option<String>,
}

/// The body of the server PUT (create).
#[derive(Serialize)]
struct ServerBody<'a> {
    location: &'a str,
    tags: BTreeMap<String, String>,
    sku: Sku,
    properties: ServerBodyProperties,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerBodyProperties {
    administrator_login: String,
    #[serde(serialize_with = "expose")]
    administrator_login_password: Secret,
    version: &'static str,
    create_mode: &'static str,
    storage: Storage,
    backup: Backup,
    high_availability: HighAvailability,
    network: Network,
}

/// Serialize a secret's value (only ever into a request body).
fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

/// The body of a server PATCH: what can change in place.
#[derive(Debug, Serialize)]
struct ServerPatch {
    tags: BTreeMap<String, String>,
    sku: Sku,
    properties: ServerPatchProperties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerPatchProperties {
    storage: Storage,
    backup: Backup,
    high_availability: HighAvailability,
}

/// A server as ARM returns it.
#[derive(Debug, Clone, Default, Deserialize)]
struct Server {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    sku: Sku,
    #[serde(default)]
    properties: ServerProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerProperties {
    #[serde(default)]
    administrator_login: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    fully_qualified_domain_name: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    storage: Storage,
    #[serde(default)]
    backup: Backup,
    #[serde(default)]
    high_availability: HighAvailability,
    #[serde(default)]
    network: Network,
}

impl Server {
    fn tags(&self) -> BTreeMap<String, String> {
        self.tags.clone().unwrap_or_default()
    }

    fn state(&self) -> &str {
        self.properties.state.as_deref().unwrap_or("Ready")
    }

    /// Whether an operation is running on it (`Updating`, `Starting`, ...).
    fn busy(&self) -> bool {
        !matches!(
            self.state().to_ascii_lowercase().as_str(),
            "ready" | "stopped" | "disabled" | "dropping"
        )
    }

    fn output(&self) -> Output {
        let host = self
            .properties
            .fully_qualified_domain_name
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("{}.mysql.database.azure.com", self.name));
        Output::DatabaseInstance {
            instance: self.name.clone(),
            endpoint: DatabaseEndpoint::Host {
                host,
                port: PORT,
                ca_certificate_pem: None,
            },
        }
    }
}

/// The server-create body.
fn server_body<'a>(
    d: &DatabaseInstanceSpec,
    region: &'a str,
    password: &Secret,
    subnet_id: &str,
    private_zone_id: &str,
) -> Result<ServerBody<'a>> {
    check(d)?;
    Ok(ServerBody {
        location: region,
        tags: tags_of(&d.labels, &d.name),
        sku: Sku {
            name: d.tier.clone(),
            tier: sku_tier(&d.tier)?.to_string(),
        },
        properties: ServerBodyProperties {
            administrator_login: d.admin_username.clone(),
            administrator_login_password: password.clone(),
            version: server_version(&d.mysql_version)?,
            create_mode: "Default",
            storage: storage_of(d),
            backup: backup_of(d),
            high_availability: ha_of(d),
            network: Network {
                public_network_access: Some("Disabled".into()),
                delegated_subnet_resource_id: Some(subnet_id.to_string()),
                private_dns_zone_resource_id: Some(private_zone_id.to_string()),
            },
        },
    })
}

fn storage_of(d: &DatabaseInstanceSpec) -> Storage {
    Storage {
        storage_size_gb: Some(d.storage_gb),
        auto_grow: Some(enabled(d.storage_auto_increase)),
    }
}

fn backup_of(d: &DatabaseInstanceSpec) -> Backup {
    Backup {
        backup_retention_days: Some(retention_days(d)),
        geo_redundant_backup: Some("Disabled".into()),
    }
}

fn ha_of(d: &DatabaseInstanceSpec) -> HighAvailability {
    HighAvailability {
        mode: Some(if d.high_availability {
            "ZoneRedundant".into()
        } else {
            "Disabled".into()
        }),
    }
}

fn enabled(b: bool) -> String {
    if b {
        "Enabled".into()
    } else {
        "Disabled".into()
    }
}

/// The in-place update body.
fn server_patch(d: &DatabaseInstanceSpec, grow_to: Option<u32>) -> Result<ServerPatch> {
    check(d)?;
    Ok(ServerPatch {
        tags: tags_of(&d.labels, &d.name),
        sku: Sku {
            name: d.tier.clone(),
            tier: sku_tier(&d.tier)?.to_string(),
        },
        properties: ServerPatchProperties {
            storage: Storage {
                storage_size_gb: grow_to,
                auto_grow: Some(enabled(d.storage_auto_increase)),
            },
            backup: Backup {
                backup_retention_days: Some(retention_days(d)),
                geo_redundant_backup: None,
            },
            high_availability: ha_of(d),
        },
    })
}

/// The instance as it is, in the spec's shape; `flags` are the server's values of the
/// spec's flags. Storage grown past the spec by auto-grow is not a difference; neither
/// is the retention of "backups off" (Azure keeps 1 day at least).
fn actual_of(
    d: &DatabaseInstanceSpec,
    s: &Server,
    flags: BTreeMap<String, String>,
) -> DatabaseInstanceSpec {
    let mut a = d.clone();
    let p = &s.properties;
    a.mysql_version = p.version.as_deref().map(spec_version).unwrap_or_default();
    a.tier = s.sku.name.clone();
    let size = p.storage.storage_size_gb.unwrap_or_default();
    a.storage_auto_increase = p.storage.auto_grow.as_deref() == Some("Enabled");
    a.storage_gb = if a.storage_auto_increase && size >= d.storage_gb {
        d.storage_gb
    } else {
        size
    };
    a.high_availability = p
        .high_availability
        .mode
        .as_deref()
        .is_some_and(|m| m != "Disabled");
    let retention = p.backup.backup_retention_days.unwrap_or_default();
    if retention != retention_days(d) {
        a.backups_enabled = true;
        a.backup_retention_days = retention;
    }
    a.admin_username = p.administrator_login.clone().unwrap_or_default();
    a.labels = s.tags();
    a.flags = flags;
    a
}

/// What differs between the desired instance and the observed one, in words (the
/// planner shows the same as field changes; `ensure` acts on it).
pub(crate) fn differences(d: &DatabaseInstanceSpec, a: &DatabaseInstanceSpec) -> Vec<String> {
    let mut out = Vec::new();
    if a.mysql_version != d.mysql_version {
        out.push(format!(
            "MySQL {} runs, not {}",
            a.mysql_version, d.mysql_version
        ));
    }
    if a.tier != d.tier {
        out.push(format!("tier is {}, not {}", a.tier, d.tier));
    }
    if a.storage_gb != d.storage_gb {
        out.push(format!(
            "storage is {} GB, not {} GB",
            a.storage_gb, d.storage_gb
        ));
    }
    if a.storage_auto_increase != d.storage_auto_increase {
        out.push(format!(
            "storage auto-grow is {}",
            if a.storage_auto_increase { "on" } else { "off" }
        ));
    }
    if a.high_availability != d.high_availability {
        out.push(format!(
            "high availability is {}",
            if a.high_availability { "on" } else { "off" }
        ));
    }
    if a.backups_enabled != d.backups_enabled || a.backup_retention_days != d.backup_retention_days
    {
        out.push(format!(
            "backups are kept {} days, not {}",
            a.backup_retention_days,
            retention_days(d)
        ));
    }
    for (k, v) in &d.flags {
        match a.flags.get(k) {
            Some(found) if same_value(found, v) => {}
            Some(found) => out.push(format!("flag {k} is {found}, not {v}")),
            None => out.push(format!("flag {k} is not set")),
        }
    }
    if a.labels != d.labels {
        out.push("tags differ".to_string());
    }
    out
}

/// Why a server is not in the VNet as this provider makes it (private access through
/// `subnet_id`), if it is not. Azure fixes the networking mode at creation.
fn network_problem(s: &Server, subnet_id: &str) -> Option<String> {
    let n = &s.properties.network;
    let subnet = n
        .delegated_subnet_resource_id
        .as_deref()
        .unwrap_or_default();
    if !subnet.eq_ignore_ascii_case(subnet_id) {
        return Some(format!(
            "server {} is not in subnet {subnet_id} (it is in '{subnet}')",
            s.name
        ));
    }
    if n.public_network_access.as_deref() == Some("Enabled") {
        return Some(format!("server {} has public network access", s.name));
    }
    None
}

// ---------------------------------------------------------------------------------
// The server: its id, the read, a taken name.

fn server_path(c: &Context, installation: &str) -> String {
    c.resource_path(
        installation,
        "Microsoft.DBforMySQL/flexibleServers",
        &c.database_server_name(installation),
    )
}

/// The server, if it exists; a same-named one not tagged for the installation is a
/// conflict naming `azure.databaseServerName`.
async fn get_server(c: &Context, installation: &str) -> Result<Option<Server>> {
    let what = format!(
        "MySQL flexible server {}",
        c.database_server_name(installation)
    );
    let found = c
        .get_ours::<Server>(
            &server_path(c, installation),
            MYSQL_API,
            installation,
            &what,
            Some("azure.databaseServerName"),
        )
        .await?;
    Ok(found.map(|(s, _)| s))
}

/// A conflict from ARM when creating the server (its name is global), said in the
/// spec's words.
fn name_taken(c: &Context, installation: &str, e: Error) -> Error {
    let code = code_of(&e).unwrap_or_default();
    let taken = code.contains("AlreadyExists")
        || code.contains("AlreadyInUse")
        || code.contains("NotAvailable")
        || e.kind() == ErrorKind::Conflict;
    if !taken {
        return e;
    }
    Error::new(
        ErrorKind::Conflict,
        format!(
            "the MySQL flexible server name {} is taken (server names are global across \
             Azure): set azure.databaseServerName to another name",
            c.database_server_name(installation)
        ),
    )
    .with_resource(ResourceId::new(
        ResourceKind::DatabaseInstance,
        installation.to_string(),
    ))
    .with_source(e)
}

// ---------------------------------------------------------------------------------
// The instance.

/// The instance as it exists. The private zone or link without the server is an
/// instance half made (drift), so that an apply finishes it and a destroy removes it.
pub async fn observe_instance(
    c: &Context,
    d: &DatabaseInstanceSpec,
) -> Result<Option<Observed<DatabaseInstanceSpec>>> {
    let rid = ResourceId::new(ResourceKind::DatabaseInstance, d.name.clone());
    let dns = private_dns::observe(c, d).await?;
    let Some(s) = get_server(c, &d.name).await? else {
        if !dns.zone {
            return Ok(None);
        }
        return Ok(Some(
            Observed::ready(d.clone(), None).with_drift("the MySQL server is not created yet"),
        ));
    };
    let found = configurations::read(c, d).await?;
    let (flags, parameter_drift) = configurations::observed(d, &found);
    let a = actual_of(d, &s, flags);
    if s.busy() || s.state().eq_ignore_ascii_case("dropping") {
        let op = crate::arm::watch_id(&server_path(c, &d.name), MYSQL_API);
        return Ok(Some(Observed::pending(a, c.op(op, &rid, None))));
    }
    let mut o = Observed::ready(a, Some(s.output()));
    // What the spec's shape cannot say.
    for why in parameter_drift {
        o = o.with_drift(why);
    }
    o = o.with_drift_if(dns.link_drift);
    if !s.state().eq_ignore_ascii_case("ready") {
        o = o.with_drift(format!("the server is {}", s.state()));
    }
    o = o.with_drift_if(network_problem(&s, &c.subnet_path(&d.name, MYSQL_SUBNET)));
    Ok(Some(o))
}

/// Make the private zone, its link, the server, then its parameters (one operation per
/// call).
pub async fn ensure_instance(
    c: &Context,
    d: &DatabaseInstanceSpec,
    inputs: &Inputs,
) -> Result<Progress> {
    check(d)?;
    let rid = ResourceId::new(ResourceKind::DatabaseInstance, d.name.clone());
    // 1. The private DNS zone and its link to the VNet.
    if let Some(p) = private_dns::ensure(c, d, &rid).await? {
        return Ok(p);
    }
    // 2. The server.
    let path = server_path(c, &d.name);
    let Some(s) = get_server(c, &d.name).await? else {
        let password = &azure_password(inputs.secret(DATABASE_PASSWORD)?);
        let body = server_body(
            d,
            &c.region,
            password,
            &c.subnet_path(&d.name, MYSQL_SUBNET),
            &private_dns::zone_path(c, &d.name),
        )?;
        let lro = c
            .arm
            .put(&path, MYSQL_API, &body)
            .await
            .map_err(|e| name_taken(c, &d.name, e))?;
        gitpod_db::remember_password(c, &d.name, password);
        if let Some(p) = c.pending(&rid, &lro) {
            return Ok(p);
        }
        return Ok(c.watch(&rid, &path, MYSQL_API));
    };
    if s.busy() {
        return Ok(c.watch(&rid, &path, MYSQL_API));
    }
    match s.state().to_ascii_lowercase().as_str() {
        "ready" => {}
        "dropping" => {
            return Err(Error::new(
                ErrorKind::OperationInProgress,
                format!("MySQL server {} is being deleted", s.name),
            )
            .with_resource(rid))
        }
        other => {
            return Err(Error::new(
                ErrorKind::Precondition,
                format!(
                    "MySQL server {} is {other}: start it (or repair it) and apply again",
                    s.name
                ),
            )
            .with_resource(rid))
        }
    }
    if let Some(why) = network_problem(&s, &c.subnet_path(&d.name, MYSQL_SUBNET)) {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{why}; a flexible server's networking is fixed when it is created: delete \
                 the server (or choose another azure.databaseServerName) to have it made again"
            ),
        )
        .with_resource(rid));
    }
    let found = configurations::read(c, d).await?;
    let a = actual_of(d, &s, BTreeMap::new());
    if a.mysql_version != d.mysql_version {
        return Err(Error::invalid_input(format!(
            "database.mysqlVersion: server {} runs MySQL {}; this SDK does not upgrade major \
             versions in place",
            s.name, a.mysql_version
        ))
        .with_resource(rid));
    }
    let size = s.properties.storage.storage_size_gb.unwrap_or_default();
    if size > d.storage_gb && !d.storage_auto_increase {
        return Err(Error::invalid_input(format!(
            "database.storageGb: server {} has {size} GB, and flexible-server storage cannot \
             shrink to {} GB",
            s.name, d.storage_gb
        ))
        .with_resource(rid));
    }
    // `flags` are compared below, one parameter per call.
    let mut shape = d.clone();
    shape.flags = BTreeMap::new();
    if !differences(&shape, &a).is_empty() {
        let grow_to = (size < d.storage_gb).then_some(d.storage_gb);
        let lro = c
            .arm
            .patch(&path, MYSQL_API, &server_patch(d, grow_to)?)
            .await?;
        if let Some(p) = c.pending(&rid, &lro) {
            return Ok(p);
        }
        return Ok(c.watch(&rid, &path, MYSQL_API));
    }
    // 3. The server parameters.
    if let Some(p) = configurations::ensure(c, d, &rid, &found).await? {
        return Ok(p);
    }
    Ok(Progress::Done(Some(s.output())))
}

/// Delete the server, then the link and the private zone. Refused under deletion
/// protection; a same-named server, zone or link not tagged ours stays.
pub async fn delete_instance(c: &Context, d: &DatabaseInstanceSpec) -> Result<Progress> {
    let rid = ResourceId::new(ResourceKind::DatabaseInstance, d.name.clone());
    if d.deletion_protection {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "database.deletionProtection is on: MySQL server {} is kept; turn it off to \
                 delete it",
                c.database_server_name(&d.name)
            ),
        )
        .with_resource(rid));
    }
    let path = server_path(c, &d.name);
    if let Some(s) = absent_if_foreign(get_server(c, &d.name).await)? {
        if s.state().eq_ignore_ascii_case("dropping") {
            return Ok(c.watch(&rid, &path, MYSQL_API));
        }
        let lro = c.arm.delete(&path, MYSQL_API).await?;
        if let Some(p) = c.pending(&rid, &lro) {
            return Ok(p);
        }
    }
    Ok(private_dns::delete(c, d, &rid)
        .await?
        .unwrap_or(Progress::Done(None)))
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::{json, Value};

    /// A MySQL 8.0 instance `gp` in General Purpose with HA, changed by `over`.
    pub(crate) fn spec(over: Value) -> DatabaseInstanceSpec {
        let mut v = json!({
            "name": "gp", "region": "northeurope", "mysqlVersion": "8.0",
            "tier": "Standard_D2ds_v4", "storageGb": 20, "storageAutoIncrease": true,
            "highAvailability": true, "backupsEnabled": true, "backupRetentionDays": 7,
            "flags": {"explicit_defaults_for_timestamp": "off"}, "deletionProtection": false,
            "databaseName": "gitpod", "adminUsername": "gitpod",
            "labels": {"gitpod-installation": "gp"}
        });
        if let (Some(m), Some(o)) = (v.as_object_mut(), over.as_object()) {
            for (k, x) in o {
                m.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn server(over: Value) -> Server {
        let mut v = json!({
            "name": "mysql-gp-12345678",
            "tags": {"gitpod-installation": "gp"},
            "sku": {"name": "Standard_D2ds_v4", "tier": "GeneralPurpose"},
            "properties": {
                "administratorLogin": "gitpod", "version": "8.0.21", "state": "Ready",
                "fullyQualifiedDomainName": "mysql-gp-12345678.mysql.database.azure.com",
                "storage": {"storageSizeGB": 20, "autoGrow": "Enabled", "iops": 360},
                "backup": {"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"},
                "highAvailability": {"mode": "ZoneRedundant", "state": "Healthy"},
                "network": {"publicNetworkAccess": "Disabled"}
            }
        });
        merge(&mut v, &over);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut Value, b: &Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b.clone(),
        }
    }

    #[test]
    fn tiers_and_versions_map_to_the_api() {
        assert_eq!(sku_tier("Standard_B1ms").unwrap(), "Burstable");
        assert_eq!(sku_tier("Standard_D2ds_v4").unwrap(), "GeneralPurpose");
        assert_eq!(sku_tier("Standard_E4ds_v5").unwrap(), "MemoryOptimized");
        let e = sku_tier("db-n1-standard-2").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().starts_with("database.tier"));
        assert!(sku_tier("Standard_F2").is_err());
        assert_eq!(server_version("5.7").unwrap(), "5.7");
        assert_eq!(server_version("8.0").unwrap(), "8.0.21");
        assert!(server_version("8.4")
            .unwrap_err()
            .message()
            .starts_with("database.mysqlVersion"));
        assert_eq!(spec_version("8.0.21"), "8.0");
        assert_eq!(spec_version("5.7"), "5.7");
    }

    #[test]
    fn passwords_meet_azures_complexity_rule() {
        let ok = Secret::new("Abcdefgh1234".to_string());
        assert_eq!(azure_password(&ok).expose(), "Abcdefgh1234");
        // Letters only (two classes): made complex, deterministically.
        let letters = Secret::new("AbcdefghIjklmnop".to_string());
        assert_eq!(azure_password(&letters).expose(), "AbcdefghIjklmnopaA1");
        assert_eq!(azure_password(&letters), azure_password(&letters));
        assert_eq!(
            azure_password(&Secret::new("abc123!".to_string())).expose(),
            "abc123!aA1"
        );
        assert_eq!(
            azure_password(&Secret::new("abcd1234!".to_string())).expose(),
            "abcd1234!"
        );
        // Whatever the engine generates passes.
        for _ in 0..200 {
            let p = azure_password(&Secret::generate_password(32));
            let e = p.expose();
            assert!(
                e.chars().any(|c| c.is_ascii_uppercase()) as u8
                    + e.chars().any(|c| c.is_ascii_lowercase()) as u8
                    + e.chars().any(|c| c.is_ascii_digit()) as u8
                    >= 3
            );
        }
    }

    #[test]
    fn ha_on_burstable_is_refused_naming_the_field() {
        let e = check(&spec(json!({"tier": "Standard_B2s"}))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().starts_with("database.highAvailability"), "{e}");
        assert!(check(&spec(
            json!({"tier": "Standard_B2s", "highAvailability": false})
        ))
        .is_ok());
    }

    #[test]
    fn the_server_body_is_private_zone_redundant_and_carries_the_password() {
        let subnet = "/subscriptions/s/resourceGroups/gp/providers/Microsoft.Network/virtualNetworks/vnet-gp/subnets/mysql";
        let zone = "/subscriptions/s/resourceGroups/gp/providers/Microsoft.Network/privateDnsZones/gp.private.mysql.database.azure.com";
        let body = server_body(
            &spec(json!({})),
            "northeurope",
            &Secret::new("pw-1".into()),
            subnet,
            zone,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({
                "location": "northeurope",
                "tags": {"gitpod-installation": "gp"},
                "sku": {"name": "Standard_D2ds_v4", "tier": "GeneralPurpose"},
                "properties": {
                    "administratorLogin": "gitpod",
                    "administratorLoginPassword": "pw-1",
                    "version": "8.0.21",
                    "createMode": "Default",
                    "storage": {"storageSizeGB": 20, "autoGrow": "Enabled"},
                    "backup": {"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"},
                    "highAvailability": {"mode": "ZoneRedundant"},
                    "network": {
                        "publicNetworkAccess": "Disabled",
                        "delegatedSubnetResourceId": subnet,
                        "privateDnsZoneResourceId": zone
                    }
                }
            })
        );
        // Backups "off" keep Azure's minimum; no HA is Disabled; 5.7 stays 5.7.
        let b = server_body(
            &spec(json!({"mysqlVersion": "5.7", "backupsEnabled": false, "highAvailability": false, "tier": "Standard_B1ms", "storageAutoIncrease": false})),
            "northeurope", &Secret::new("pw".into()), subnet, zone,
        )
        .unwrap();
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["properties"]["version"], "5.7");
        assert_eq!(v["sku"]["tier"], "Burstable");
        assert_eq!(v["properties"]["backup"]["backupRetentionDays"], 1);
        assert_eq!(v["properties"]["highAvailability"]["mode"], "Disabled");
        assert_eq!(v["properties"]["storage"]["autoGrow"], "Disabled");
    }

    #[test]
    fn the_patch_grows_storage_only_when_asked_and_never_sends_the_password_or_network() {
        let v =
            serde_json::to_value(server_patch(&spec(json!({"storageGb": 64})), Some(64)).unwrap())
                .unwrap();
        assert_eq!(
            v["properties"]["storage"],
            json!({"storageSizeGB": 64, "autoGrow": "Enabled"})
        );
        assert_eq!(v["properties"]["backup"], json!({"backupRetentionDays": 7}));
        assert!(v["properties"].get("administratorLoginPassword").is_none());
        assert!(v["properties"].get("network").is_none());
        let v = serde_json::to_value(server_patch(&spec(json!({})), None).unwrap()).unwrap();
        assert_eq!(v["properties"]["storage"], json!({"autoGrow": "Enabled"}));
    }

    #[test]
    fn a_matching_server_has_no_differences() {
        let d = spec(json!({}));
        let flags = BTreeMap::from([(
            "explicit_defaults_for_timestamp".to_string(),
            "off".to_string(),
        )]);
        let a = actual_of(&d, &server(json!({})), flags.clone());
        assert_eq!(a, d);
        assert!(differences(&d, &a).is_empty());
        // Storage grown by auto-grow is no difference.
        let grown = actual_of(
            &d,
            &server(json!({"properties": {"storage": {"storageSizeGB": 128}}})),
            flags,
        );
        assert!(differences(&d, &grown).is_empty());
    }

    #[test]
    fn differences_name_tier_storage_ha_backup_and_flags() {
        let d = spec(json!({}));
        let s = server(json!({
            "sku": {"name": "Standard_E4ds_v5", "tier": "MemoryOptimized"},
            "properties": {
                "storage": {"storageSizeGB": 10, "autoGrow": "Disabled"},
                "backup": {"backupRetentionDays": 14},
                "highAvailability": {"mode": "Disabled", "state": "NotEnabled"}
            }
        }));
        let flags = BTreeMap::from([(
            "explicit_defaults_for_timestamp".to_string(),
            "ON".to_string(),
        )]);
        let a = actual_of(&d, &s, flags);
        assert_eq!(
            differences(&d, &a),
            vec![
                "tier is Standard_E4ds_v5, not Standard_D2ds_v4".to_string(),
                "storage is 10 GB, not 20 GB".to_string(),
                "storage auto-grow is off".to_string(),
                "high availability is off".to_string(),
                "backups are kept 14 days, not 7".to_string(),
                "flag explicit_defaults_for_timestamp is ON, not off".to_string(),
            ]
        );
        let missing = actual_of(&d, &server(json!({})), BTreeMap::new());
        assert_eq!(
            differences(&d, &missing),
            vec!["flag explicit_defaults_for_timestamp is not set".to_string()]
        );
        let v57 = actual_of(
            &d,
            &server(json!({"properties": {"version": "5.7"}})),
            BTreeMap::new(),
        );
        assert!(differences(&d, &v57)[0].contains("MySQL 5.7 runs, not 8.0"));
    }

    #[test]
    fn servers_outside_the_vnet_are_named() {
        let subnet = "/subscriptions/s/resourceGroups/gp/providers/Microsoft.Network/virtualNetworks/vnet-gp/subnets/mysql";
        let inside = server(
            json!({"properties": {"network": {"delegatedSubnetResourceId": subnet.to_lowercase()}}}),
        );
        assert_eq!(network_problem(&inside, subnet), None);
        let public = server(json!({"properties": {"network": {"publicNetworkAccess": "Enabled"}}}));
        assert!(network_problem(&public, subnet)
            .unwrap()
            .contains("not in subnet"));
        let both = server(
            json!({"properties": {"network": {"delegatedSubnetResourceId": subnet, "publicNetworkAccess": "Enabled"}}}),
        );
        assert!(network_problem(&both, subnet)
            .unwrap()
            .contains("public network access"));
    }

    #[test]
    fn server_state_and_endpoint() {
        let s = server(json!({}));
        assert!(!s.busy());
        assert_eq!(
            s.output(),
            Output::DatabaseInstance {
                instance: "mysql-gp-12345678".into(),
                endpoint: DatabaseEndpoint::Host {
                    host: "mysql-gp-12345678.mysql.database.azure.com".into(),
                    port: 3306,
                    ca_certificate_pem: None,
                }
            }
        );
        assert!(server(json!({"properties": {"state": "Updating"}})).busy());
        assert!(server(json!({"properties": {"state": "Starting"}})).busy());
        assert!(!server(json!({"properties": {"state": "Stopped"}})).busy());
        let no_fqdn = server(json!({"properties": {"fullyQualifiedDomainName": null}}));
        let Output::DatabaseInstance {
            endpoint: DatabaseEndpoint::Host { host, .. },
            ..
        } = no_fqdn.output()
        else {
            unreachable!("a host endpoint")
        };
        assert_eq!(host, "mysql-gp-12345678.mysql.database.azure.com");
    }
}
