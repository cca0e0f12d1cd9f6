//! The catalogues the fake validates against, each in one data table: GKE versions
//! and release channels (`serverConfig`), Compute regions, zones and machine types,
//! Cloud SQL tiers and database flags. The values look like today's GCP; they are
//! not fetched from it.

use serde_json::{json, Value};

use crate::error::ApiError;

// ---------------------------------------------------------------------------------
// GKE versions
// ---------------------------------------------------------------------------------

/// Every GKE version the fake offers, newest first, with the release channels that
/// offer it (`-`: none, only as a static version) and whether it is valid for the
/// control plane (`true`) or only for nodes (`false`).
const GKE_VERSIONS: &[(&str, &str, bool)] = &[
    ("1.35.0-gke.1795000", "RAPID", true),
    ("1.34.1-gke.2037000", "RAPID", true),
    ("1.34.1-gke.1829001", "RAPID REGULAR", true),
    ("1.34.0-gke.2201000", "REGULAR", true),
    ("1.33.5-gke.1308000", "REGULAR STABLE", true),
    ("1.33.5-gke.1162000", "REGULAR STABLE", true),
    ("1.33.4-gke.1350000", "STABLE", true),
    ("1.32.9-gke.1108000", "STABLE EXTENDED", true),
    ("1.32.8-gke.1134000", "EXTENDED", true),
    ("1.31.13-gke.1023000", "EXTENDED", true),
    ("1.31.12-gke.1265000", "EXTENDED", true),
    ("1.30.14-gke.1150000", "-", false),
];

/// The default version of each release channel.
const CHANNEL_DEFAULTS: &[(&str, &str)] = &[
    ("RAPID", "1.34.1-gke.2037000"),
    ("REGULAR", "1.33.5-gke.1308000"),
    ("STABLE", "1.33.5-gke.1162000"),
    ("EXTENDED", "1.32.9-gke.1108000"),
];

/// The default version of a cluster without a release channel.
const STATIC_DEFAULT: &str = "1.33.5-gke.1308000";

/// The node image types GKE offers.
const IMAGE_TYPES: &[&str] = &[
    "COS_CONTAINERD",
    "UBUNTU_CONTAINERD",
    "WINDOWS_LTSC_CONTAINERD",
];

/// `1.33.5-gke.1308000` as numbers, for ordering.
fn version_key(v: &str) -> (u32, u32, u32, u64) {
    let (semver, gke) = v.split_once("-gke.").unwrap_or((v, "0"));
    let mut parts = semver.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        gke.parse().unwrap_or(0),
    )
}

/// Whether `a` is a newer version than `b`.
pub(crate) fn newer(a: &str, b: &str) -> bool {
    version_key(a) > version_key(b)
}

fn in_channel(channels: &str, channel: Option<&str>) -> bool {
    match channel {
        None => true,
        Some(c) => channels.split(' ').any(|x| x == c),
    }
}

/// Which catalogue a version is resolved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionUse {
    /// A control plane (`initialClusterVersion`, `desiredMasterVersion`).
    Master,
    /// A node pool (`version`, `nodeVersion`, `desiredNodeVersion`).
    Node,
}

/// Resolve a requested GKE version as GKE does: `""`/`-` is the default (of the
/// channel, when enrolled), `latest` the newest offered, `1.33` and `1.33.5` the
/// newest patch of that minor or patch, and a full version must be offered as it is.
/// Anything else is GKE's 400. `channel` restricts the choice to a channel's versions.
pub(crate) fn resolve_gke_version(
    requested: &str,
    use_: VersionUse,
    channel: Option<&str>,
) -> Result<String, ApiError> {
    let offered = || {
        GKE_VERSIONS
            .iter()
            .filter(move |(_, channels, master)| {
                (use_ == VersionUse::Node || *master) && in_channel(channels, channel)
            })
            .map(|(v, _, _)| *v)
    };
    let found = match requested {
        "" | "-" => Some(
            channel
                .and_then(|c| CHANNEL_DEFAULTS.iter().find(|(name, _)| *name == c))
                .map(|(_, v)| *v)
                .unwrap_or(STATIC_DEFAULT),
        ),
        "latest" => offered().next(),
        v if v.contains("-gke.") => offered().find(|o| *o == v),
        v => {
            let prefix = format!("{v}.");
            let dash = format!("{v}-");
            offered().find(|o| o.starts_with(&prefix) || o.starts_with(&dash))
        }
    };
    found.map(str::to_string).ok_or_else(|| {
        let what = match use_ {
            VersionUse::Master => "Master",
            VersionUse::Node => "Node",
        };
        let mut message = format!("{what} version \"{requested}\" is unsupported.");
        if let Some(c) = channel {
            message.push_str(&format!(
                " Release channel {c} offers: {}.",
                offered().collect::<Vec<_>>().join(", ")
            ));
        }
        ApiError::invalid(message)
    })
}

/// `serverConfig` of a location: the valid versions and every channel's versions.
pub(crate) fn server_config() -> Value {
    let master: Vec<&str> = GKE_VERSIONS
        .iter()
        .filter(|(_, _, m)| *m)
        .map(|(v, _, _)| *v)
        .collect();
    let node: Vec<&str> = GKE_VERSIONS.iter().map(|(v, _, _)| *v).collect();
    let channels: Vec<Value> = CHANNEL_DEFAULTS
        .iter()
        .map(|(channel, default)| {
            let valid: Vec<&str> = GKE_VERSIONS
                .iter()
                .filter(|(_, cs, _)| in_channel(cs, Some(channel)))
                .map(|(v, _, _)| *v)
                .collect();
            json!({
                "channel": channel,
                "defaultVersion": default,
                "validVersions": valid,
            })
        })
        .collect();
    json!({
        "defaultClusterVersion": STATIC_DEFAULT,
        "validMasterVersions": master,
        "validNodeVersions": node,
        "defaultImageType": "COS_CONTAINERD",
        "validImageTypes": IMAGE_TYPES,
        "channels": channels,
    })
}

// ---------------------------------------------------------------------------------
// Compute regions, zones and machine types
// ---------------------------------------------------------------------------------

/// Regions and the letters of their zones.
const REGIONS: &[(&str, &str)] = &[
    ("asia-east1", "abc"),
    ("asia-northeast1", "abc"),
    ("asia-southeast1", "abc"),
    ("australia-southeast1", "abc"),
    ("europe-north1", "abc"),
    ("europe-west1", "bcd"),
    ("europe-west2", "abc"),
    ("europe-west3", "abc"),
    ("europe-west4", "abc"),
    ("northamerica-northeast1", "abc"),
    ("southamerica-east1", "abc"),
    ("us-central1", "abcf"),
    ("us-east1", "bcd"),
    ("us-east4", "abc"),
    ("us-west1", "abc"),
];

/// The regions the fake knows.
pub(crate) fn regions() -> impl Iterator<Item = &'static str> {
    REGIONS.iter().map(|(r, _)| *r)
}

/// Whether `zone` is a zone of a region the fake knows.
pub(crate) fn is_zone(zone: &str) -> bool {
    zone.rsplit_once('-').is_some_and(|(region, letter)| {
        letter.len() == 1
            && REGIONS
                .iter()
                .any(|(r, letters)| *r == region && letters.contains(letter))
    })
}

/// Machine families: (family, kinds, vCPU counts, memory MB per vCPU for
/// standard / highmem / highcpu). Every zone offers every family.
#[allow(clippy::type_complexity)]
const FAMILIES: &[(&str, &[&str], &[u32], [u32; 3])] = &[
    (
        "e2",
        &["standard", "highmem", "highcpu"],
        &[2, 4, 8, 16, 32],
        [4096, 8192, 1024],
    ),
    (
        "n1",
        &["standard", "highmem", "highcpu"],
        &[1, 2, 4, 8, 16, 32, 64, 96],
        [3840, 6656, 922],
    ),
    (
        "n2",
        &["standard", "highmem", "highcpu"],
        &[2, 4, 8, 16, 32, 48, 64, 80, 96, 128],
        [4096, 8192, 1024],
    ),
    (
        "n2d",
        &["standard", "highmem", "highcpu"],
        &[2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224],
        [4096, 8192, 1024],
    ),
    (
        "n4",
        &["standard", "highmem", "highcpu"],
        &[2, 4, 8, 16, 32, 48, 64, 80],
        [4096, 8192, 2048],
    ),
    ("c2", &["standard"], &[4, 8, 16, 30, 60], [4096, 8192, 1024]),
    (
        "c2d",
        &["standard", "highmem", "highcpu"],
        &[2, 4, 8, 16, 32, 56, 112],
        [4096, 8192, 2048],
    ),
    (
        "c3",
        &["standard", "highmem", "highcpu"],
        &[4, 8, 22, 44, 88, 176],
        [4096, 8192, 2048],
    ),
    (
        "c3d",
        &["standard", "highmem", "highcpu"],
        &[4, 8, 16, 30, 60, 90, 180, 360],
        [4096, 8192, 2048],
    ),
    (
        "c4",
        &["standard", "highmem", "highcpu"],
        &[2, 4, 8, 16, 32, 48, 96, 192],
        [3840, 7864, 2048],
    ),
    (
        "t2d",
        &["standard"],
        &[1, 2, 4, 8, 16, 32, 48, 60],
        [4096, 0, 0],
    ),
];

/// Shared-core machine types: (name, guest vCPUs, memory MB).
const SHARED_CORE: &[(&str, u32, u32)] = &[
    ("e2-micro", 2, 1024),
    ("e2-small", 2, 2048),
    ("e2-medium", 2, 4096),
    ("f1-micro", 1, 614),
    ("g1-small", 1, 1740),
];

/// One machine type: (name, guest vCPUs, memory MB, shared core).
fn machine_types() -> Vec<(String, u32, u32, bool)> {
    let mut out: Vec<(String, u32, u32, bool)> = SHARED_CORE
        .iter()
        .map(|(n, c, m)| (n.to_string(), *c, *m, true))
        .collect();
    for (family, kinds, cpus, mem) in FAMILIES {
        for (i, kind) in ["standard", "highmem", "highcpu"].iter().enumerate() {
            if !kinds.contains(kind) {
                continue;
            }
            for n in *cpus {
                // Only n1 and t2d come with a single vCPU, and only as standard.
                if *n == 1 && *kind != "standard" {
                    continue;
                }
                out.push((format!("{family}-{kind}-{n}"), *n, n * mem[i], false));
            }
        }
    }
    out
}

/// The Compute `MachineType` resource of `name` in `zone`, if offered there.
pub(crate) fn machine_type(project: &str, zone: &str, name: &str) -> Option<Value> {
    if !is_zone(zone) {
        return None;
    }
    machine_types()
        .into_iter()
        .find(|(n, _, _, _)| n == name)
        .map(|(n, cpus, mem, shared)| render_machine_type(project, zone, &n, cpus, mem, shared))
}

/// Every machine type of `zone` (empty for a zone the fake does not know).
pub(crate) fn machine_types_in(project: &str, zone: &str) -> Vec<Value> {
    if !is_zone(zone) {
        return Vec::new();
    }
    machine_types()
        .into_iter()
        .map(|(n, cpus, mem, shared)| render_machine_type(project, zone, &n, cpus, mem, shared))
        .collect()
}

fn render_machine_type(
    project: &str,
    zone: &str,
    name: &str,
    cpus: u32,
    memory_mb: u32,
    shared: bool,
) -> Value {
    // A stable id per name.
    let id = name.bytes().fold(1_000_000_000_000u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b)) % 9_000_000_000_000_000_000
    }) + 1_000_000_000_000;
    let description = if shared {
        format!("{cpus} vCPU (shared core), {} GB RAM", memory_mb / 1024)
    } else {
        format!("{cpus} vCPUs, {} GB RAM", memory_mb / 1024)
    };
    let mut v = json!({
        "kind": "compute#machineType",
        "id": id.to_string(),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
        "name": name,
        "description": description,
        "guestCpus": cpus,
        "memoryMb": memory_mb,
        "imageSpaceGb": 0,
        "maximumPersistentDisks": if shared { 16 } else { 128 },
        "maximumPersistentDisksSizeGb": if shared { "3072" } else { "263168" },
        "zone": zone,
        "selfLink": format!("https://www.googleapis.com/compute/v1/projects/{project}/zones/{zone}/machineTypes/{name}"),
        "isSharedCpu": shared,
        "architecture": if name.starts_with("t2a") { "ARM64" } else { "X86_64" },
    });
    if !shared {
        if let Some(o) = v.as_object_mut() {
            o.remove("isSharedCpu");
        }
    }
    v
}

/// Whether Compute offers machine type `name` (in every known zone).
pub(crate) fn is_machine_type(name: &str) -> bool {
    machine_types().iter().any(|(n, _, _, _)| n == name)
}

// ---------------------------------------------------------------------------------
// Cloud SQL tiers
// ---------------------------------------------------------------------------------

/// The listed Cloud SQL tiers: (tier, RAM in MB). `db-custom-*` tiers are valid too
/// (see the Cloud SQL module) but, as in GCP, not listed.
const SQL_TIERS: &[(&str, u64)] = &[
    ("db-f1-micro", 614),
    ("db-g1-small", 1740),
    ("db-n1-standard-1", 3840),
    ("db-n1-standard-2", 7680),
    ("db-n1-standard-4", 15360),
    ("db-n1-standard-8", 30720),
    ("db-n1-standard-16", 61440),
    ("db-n1-standard-32", 122880),
    ("db-n1-standard-64", 245760),
    ("db-n1-standard-96", 368640),
    ("db-n1-highmem-2", 13312),
    ("db-n1-highmem-4", 26624),
    ("db-n1-highmem-8", 53248),
    ("db-n1-highmem-16", 106496),
    ("db-n1-highmem-32", 212992),
    ("db-n1-highmem-64", 425984),
    ("db-n1-highmem-96", 638976),
    ("db-perf-optimized-N-2", 16384),
    ("db-perf-optimized-N-4", 32768),
    ("db-perf-optimized-N-8", 65536),
    ("db-perf-optimized-N-16", 131072),
    ("db-perf-optimized-N-32", 262144),
    ("db-perf-optimized-N-48", 393216),
    ("db-perf-optimized-N-64", 524288),
    ("db-perf-optimized-N-80", 655360),
    ("db-perf-optimized-N-96", 786432),
    ("db-perf-optimized-N-128", 864256),
];

/// Whether `tier` is a listed tier.
pub(crate) fn is_listed_tier(tier: &str) -> bool {
    SQL_TIERS.iter().any(|(t, _)| *t == tier)
}

/// `tiers.list`.
pub(crate) fn sql_tiers() -> Value {
    let regions: Vec<&str> = regions().collect();
    let items: Vec<Value> = SQL_TIERS
        .iter()
        .map(|(tier, mb)| {
            json!({
                "kind": "sql#tier",
                "tier": tier,
                "RAM": (mb * 1024 * 1024).to_string(),
                "DiskQuota": (65_536u64 * 1024 * 1024 * 1024).to_string(),
                "region": regions,
            })
        })
        .collect();
    json!({"kind": "sql#tiersList", "items": items})
}

// ---------------------------------------------------------------------------------
// Cloud SQL database flags
// ---------------------------------------------------------------------------------

/// A flag's type and allowed values.
#[derive(Debug, Clone, Copy)]
enum FlagType {
    /// `on` or `off`.
    Boolean,
    /// An integer in the range.
    Integer(i64, i64),
    /// A number in the range.
    Float(f64, f64),
    /// One of the values.
    String(&'static [&'static str]),
    /// A comma-separated list of the values (empty allowed).
    RepeatedString(&'static [&'static str]),
    /// A time zone offset `+HH:MM` from `-12:59` to `+13:00`.
    TimezoneOffset,
}

const MYSQL: &str = "MYSQL_5_6 MYSQL_5_7 MYSQL_8_0 MYSQL_8_4";
const MYSQL_5_7_8_0: &str = "MYSQL_5_7 MYSQL_8_0";
const POSTGRES: &str = "POSTGRES_13 POSTGRES_14 POSTGRES_15 POSTGRES_16 POSTGRES_17";

const SQL_MODES: &[&str] = &[
    "ALLOW_INVALID_DATES",
    "ANSI",
    "ANSI_QUOTES",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "HIGH_NOT_PRECEDENCE",
    "IGNORE_SPACE",
    "NO_AUTO_VALUE_ON_ZERO",
    "NO_BACKSLASH_ESCAPES",
    "NO_DIR_IN_CREATE",
    "NO_ENGINE_SUBSTITUTION",
    "NO_UNSIGNED_SUBTRACTION",
    "NO_ZERO_DATE",
    "NO_ZERO_IN_DATE",
    "ONLY_FULL_GROUP_BY",
    "PAD_CHAR_TO_FULL_LENGTH",
    "PIPES_AS_CONCAT",
    "REAL_AS_FLOAT",
    "STRICT_ALL_TABLES",
    "STRICT_TRANS_TABLES",
    "TRADITIONAL",
];

/// The database flags the fake knows: (name, type, database versions, requires restart).
const SQL_FLAGS: &[(&str, FlagType, &str, bool)] = &[
    (
        "explicit_defaults_for_timestamp",
        FlagType::Boolean,
        MYSQL_5_7_8_0,
        false,
    ),
    (
        "character_set_server",
        FlagType::String(&["utf8", "utf8mb3", "utf8mb4", "latin1", "ascii", "binary"]),
        MYSQL,
        false,
    ),
    ("default_time_zone", FlagType::TimezoneOffset, MYSQL, true),
    ("event_scheduler", FlagType::Boolean, MYSQL, false),
    (
        "innodb_lock_wait_timeout",
        FlagType::Integer(1, 1_073_741_824),
        MYSQL,
        false,
    ),
    (
        "log_bin_trust_function_creators",
        FlagType::Boolean,
        MYSQL,
        false,
    ),
    (
        "long_query_time",
        FlagType::Float(0.0, 30_000_000.0),
        MYSQL,
        false,
    ),
    (
        "max_connections",
        FlagType::Integer(10, 100_000),
        MYSQL,
        false,
    ),
    ("slow_query_log", FlagType::Boolean, MYSQL, false),
    (
        "sql_mode",
        FlagType::RepeatedString(SQL_MODES),
        MYSQL,
        false,
    ),
    (
        "wait_timeout",
        FlagType::Integer(1, 31_536_000),
        MYSQL,
        false,
    ),
    (
        "cloudsql_iam_authentication",
        FlagType::Boolean,
        MYSQL_5_7_8_0,
        false,
    ),
    (
        "cloudsql.iam_authentication",
        FlagType::Boolean,
        POSTGRES,
        false,
    ),
    (
        "log_min_duration_statement",
        FlagType::Integer(-1, 2_147_483_647),
        POSTGRES,
        false,
    ),
];

/// The flag-catalogue name of a `databaseVersion` (sent as a name or, by the official
/// Rust clients, as its enum number): `MYSQL_8_0_36` → `MYSQL_8_0`.
pub(crate) fn version_family(version: Option<&Value>) -> Option<String> {
    let name = match version? {
        Value::String(v) => v.clone(),
        Value::Number(n) => match n.as_i64()? {
            5 => "MYSQL_5_6".into(),
            6 => "MYSQL_5_7".into(),
            20
            | 41
            | 85
            | 111
            | 132
            | 148
            | 174
            | 197
            | 213
            | 238..=241
            | 355
            | 357
            | 358
            | 488
            | 489
            | 553..=556 => "MYSQL_8_0".into(),
            398 => "MYSQL_8_4".into(),
            23 => "POSTGRES_13".into(),
            110 => "POSTGRES_14".into(),
            172 => "POSTGRES_15".into(),
            272 => "POSTGRES_16".into(),
            408 => "POSTGRES_17".into(),
            _ => return None,
        },
        _ => return None,
    };
    if let Some(rest) = name.strip_prefix("MYSQL_8_0") {
        if rest.is_empty() || rest.starts_with('_') {
            return Some("MYSQL_8_0".into());
        }
    }
    Some(name)
}

fn flag_json(name: &str, t: FlagType, applies: &str, restart: bool) -> Value {
    let (type_name, extra) = match t {
        FlagType::Boolean => ("BOOLEAN", json!({})),
        FlagType::Integer(min, max) => (
            "INTEGER",
            json!({"minValue": min.to_string(), "maxValue": max.to_string()}),
        ),
        // The API's bounds are int64: a float flag's are rounded down.
        FlagType::Float(min, max) => (
            "FLOAT",
            json!({"minValue": (min as i64).to_string(), "maxValue": (max as i64).to_string()}),
        ),
        FlagType::String(values) => ("STRING", json!({ "allowedStringValues": values })),
        FlagType::RepeatedString(values) => {
            ("REPEATED_STRING", json!({ "allowedStringValues": values }))
        }
        FlagType::TimezoneOffset => ("MYSQL_TIMEZONE_OFFSET", json!({})),
    };
    let mut v = json!({
        "kind": "sql#flag",
        "name": name,
        "type": type_name,
        "appliesTo": applies.split(' ').collect::<Vec<_>>(),
        "requiresRestart": restart,
        "flagScope": "SQL_FLAG_SCOPE_DATABASE",
    });
    if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
        o.extend(e);
    }
    v
}

/// `flags.list`, optionally only the flags of one database version.
pub(crate) fn sql_flags(database_version: Option<&str>) -> Value {
    let family = database_version.and_then(|v| version_family(Some(&json!(v))));
    let items: Vec<Value> = SQL_FLAGS
        .iter()
        .filter(|(_, _, applies, _)| {
            family
                .as_deref()
                .is_none_or(|f| applies.split(' ').any(|a| a == f))
        })
        .map(|(n, t, a, r)| flag_json(n, *t, a, *r))
        .collect();
    json!({"kind": "sql#flagsList", "items": items})
}

fn value_ok(t: FlagType, value: &str) -> bool {
    match t {
        FlagType::Boolean => value.eq_ignore_ascii_case("on") || value.eq_ignore_ascii_case("off"),
        FlagType::Integer(min, max) => value.parse::<i64>().is_ok_and(|n| (min..=max).contains(&n)),
        FlagType::Float(min, max) => value
            .parse::<f64>()
            .is_ok_and(|n| n.is_finite() && n >= min && n <= max),
        FlagType::String(values) => values.iter().any(|v| v.eq_ignore_ascii_case(value)),
        FlagType::RepeatedString(values) => value
            .split(',')
            .filter(|x| !x.is_empty())
            .all(|x| values.iter().any(|v| v.eq_ignore_ascii_case(x.trim()))),
        FlagType::TimezoneOffset => {
            let b = value.as_bytes();
            let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
            if b.len() != 6 || !(b[0] == b'+' || b[0] == b'-') || b[3] != b':' {
                return false;
            }
            if !digits(1..3) || !digits(4..6) {
                return false;
            }
            let h: u32 = value[1..3].parse().unwrap_or(99);
            let m: u32 = value[4..6].parse().unwrap_or(99);
            m < 60
                && if b[0] == b'+' {
                    h * 60 + m <= 13 * 60
                } else {
                    h * 60 + m <= 12 * 60 + 59
                }
        }
    }
}

fn allowed(t: FlagType) -> String {
    match t {
        FlagType::Boolean => "on, off".into(),
        FlagType::Integer(min, max) => format!("an integer from {min} to {max}"),
        FlagType::Float(min, max) => format!("a number from {min} to {max}"),
        FlagType::String(v) => v.join(", "),
        FlagType::RepeatedString(v) => format!("a comma-separated list of {}", v.join(", ")),
        FlagType::TimezoneOffset => "an offset from -12:59 to +13:00".into(),
    }
}

/// Check the `databaseFlags` of an instance of `database_version` (a name or enum
/// number) against the catalogue: an unknown flag, a value out of its type or range,
/// a flag of another database version or a flag set twice is Cloud SQL's 400.
pub(crate) fn check_sql_flags(
    flags: &Value,
    database_version: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(items) = flags.as_array() else {
        return Ok(());
    };
    let family = version_family(database_version);
    let mut seen = Vec::new();
    for f in items {
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        let value = f.get("value").and_then(Value::as_str).unwrap_or("");
        let invalid = |detail: String| {
            ApiError::invalid(format!("Invalid Flag Name or Value: {name}. {detail}"))
                .with_reason("invalidFlagValue")
        };
        let Some((_, t, applies, _)) = SQL_FLAGS.iter().find(|(n, _, _, _)| *n == name) else {
            return Err(invalid(
                "No such flag; flags.list answers the flags Cloud SQL supports.".into(),
            ));
        };
        if let Some(fam) = &family {
            if !applies.split(' ').any(|a| a == fam) {
                return Err(invalid(format!(
                    "The flag is not supported for {fam} (it applies to {}).",
                    applies.replace(' ', ", ")
                )));
            }
        }
        if !value_ok(*t, value) {
            return Err(invalid(format!(
                "'{value}' is not allowed; allowed: {}.",
                allowed(*t)
            )));
        }
        if seen.contains(&name) {
            return Err(invalid("The flag is set more than once.".into()));
        }
        seen.push(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_versions() {
        let m = VersionUse::Master;
        assert_eq!(resolve_gke_version("", m, None).unwrap(), STATIC_DEFAULT);
        assert_eq!(
            resolve_gke_version("latest", m, None).unwrap(),
            "1.35.0-gke.1795000"
        );
        assert_eq!(
            resolve_gke_version("1.33", m, None).unwrap(),
            "1.33.5-gke.1308000"
        );
        assert_eq!(
            resolve_gke_version("1.33.4", m, None).unwrap(),
            "1.33.4-gke.1350000"
        );
        assert_eq!(
            resolve_gke_version("1.34", m, Some("REGULAR")).unwrap(),
            "1.34.1-gke.1829001"
        );
        assert!(resolve_gke_version("1.3", m, None).is_err());
        assert!(resolve_gke_version("1.22.12-gke.1200", m, None).is_err());
        assert!(resolve_gke_version("1.30", m, None).is_err());
        assert!(resolve_gke_version("1.30", VersionUse::Node, None).is_ok());
        assert!(resolve_gke_version("1.35", m, Some("STABLE")).is_err());
        assert!(newer("1.34.0-gke.1", "1.33.9-gke.9"));
        assert!(newer("1.33.10-gke.1", "1.33.9-gke.9"));
    }

    #[test]
    fn machine_types_and_zones() {
        assert!(is_zone("us-central1-f"));
        assert!(!is_zone("us-central1-d"));
        assert!(!is_zone("europe-west1"));
        assert!(is_machine_type("n2d-standard-16"));
        assert!(is_machine_type("e2-medium"));
        assert!(is_machine_type("n1-standard-1"));
        assert!(!is_machine_type("n2d-standard-1"));
        assert!(!is_machine_type("e2-standard-360"));
        assert!(!is_machine_type("n2d-giant-16"));
        let mt = machine_type("p", "europe-west1-b", "n2d-standard-4").unwrap();
        assert_eq!(mt["guestCpus"], 4);
        assert_eq!(mt["memoryMb"], 16384);
        assert!(machine_type("p", "europe-west1-a", "n2d-standard-4").is_none());
    }

    #[test]
    fn flags() {
        let v57 = json!("MYSQL_5_7");
        let ok = json!([{"name": "explicit_defaults_for_timestamp", "value": "off"}]);
        assert!(check_sql_flags(&ok, Some(&v57)).is_ok());
        assert!(check_sql_flags(&ok, Some(&json!(6))).is_ok());
        assert!(check_sql_flags(&ok, Some(&json!("MYSQL_8_0_36"))).is_ok());
        assert!(check_sql_flags(&ok, Some(&json!("MYSQL_8_4"))).is_err());
        assert!(check_sql_flags(&ok, Some(&json!("POSTGRES_16"))).is_err());
        for bad in [
            json!([{"name": "explicit_defaults_for_timestamp", "value": "maybe"}]),
            json!([{"name": "no_such_flag", "value": "on"}]),
            json!([{"name": "max_connections", "value": "5"}]),
            json!([{"name": "default_time_zone", "value": "+14:00"}]),
            json!([{"name": "sql_mode", "value": "TRADITIONAL,NOPE"}]),
        ] {
            assert!(check_sql_flags(&bad, Some(&v57)).is_err(), "{bad}");
        }
        for good in [
            json!([{"name": "max_connections", "value": "500"}]),
            json!([{"name": "default_time_zone", "value": "-05:30"}]),
            json!([{"name": "sql_mode", "value": "TRADITIONAL,ANSI_QUOTES"}]),
            json!([{"name": "long_query_time", "value": "0.5"}]),
        ] {
            assert!(check_sql_flags(&good, Some(&v57)).is_ok(), "{good}");
        }
        let listed = sql_flags(Some("MYSQL_5_7"));
        assert!(listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "explicit_defaults_for_timestamp"));
        assert!(!sql_flags(Some("POSTGRES_15"))["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "explicit_defaults_for_timestamp"));
    }
}
