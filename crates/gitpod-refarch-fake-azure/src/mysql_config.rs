//! Microsoft.DBforMySQL flexibleServers/configurations (2024-12-30): a small catalogue
//! of server parameters with their defaults per version; GET answers the default until
//! a PUT/PATCH overrides it (202 + `Location`, result = the configuration). Unknown
//! names are 404; values outside `allowedValues` are 400 `InvalidParameterValue`;
//! read-only parameters are 400 `ReadOnlyConfiguration` (invented code).

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{ArmError, ArmResult};
use crate::lro::{self, OpResult, Style};
use crate::mysql::{check_busy, SERVER_TYPE};
use crate::routes::Addr;
use crate::state::{ptr, s, Effect, State};
use crate::{Reply, Req};

const CONFIG_TYPE: &str = "Microsoft.DBforMySQL/flexibleServers/configurations";

/// One known parameter.
struct Param {
    name: &'static str,
    /// Default on 8.0 / 8.4, and on 5.7 (`None`: not on 5.7).
    default_8: &'static str,
    default_57: Option<&'static str>,
    data_type: &'static str,
    allowed: &'static str,
    dynamic: bool,
    read_only: bool,
    description: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn p(
    name: &'static str,
    default_8: &'static str,
    default_57: Option<&'static str>,
    data_type: &'static str,
    allowed: &'static str,
    dynamic: bool,
    read_only: bool,
    description: &'static str,
) -> Param {
    Param {
        name,
        default_8,
        default_57,
        data_type,
        allowed,
        dynamic,
        read_only,
        description,
    }
}

const PARAMS: &[Param] = &[
    p("explicit_defaults_for_timestamp", "ON", Some("OFF"), "Enumeration", "ON,OFF", true, false,
      "This option causes CREATE TABLE to create all TIMESTAMP columns as NULL with DEFAULT NULL attribute."),
    p("require_secure_transport", "ON", Some("ON"), "Enumeration", "ON,OFF", true, false,
      "Whether client connections to the server are required to use some form of secure transport."),
    p("sql_generate_invisible_primary_key", "ON", None, "Enumeration", "ON,OFF", true, false,
      "Whether to add an invisible primary key to InnoDB tables created without one."),
    p("log_bin_trust_function_creators", "ON", Some("ON"), "Enumeration", "ON,OFF", true, false,
      "Whether stored function creators can be trusted with binary logging."),
    p("tls_version", "TLSv1.2", Some("TLSv1.2"), "Set", "TLSv1.2,TLSv1.3", false, false,
      "Which protocols the server permits for encrypted connections."),
    p("sql_mode", "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
      Some("ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"), "Set",
      "ALLOW_INVALID_DATES,ANSI_QUOTES,ERROR_FOR_DIVISION_BY_ZERO,HIGH_NOT_PRECEDENCE,IGNORE_SPACE,NO_AUTO_VALUE_ON_ZERO,NO_BACKSLASH_ESCAPES,NO_DIR_IN_CREATE,NO_ENGINE_SUBSTITUTION,NO_UNSIGNED_SUBTRACTION,NO_ZERO_DATE,NO_ZERO_IN_DATE,ONLY_FULL_GROUP_BY,PAD_CHAR_TO_FULL_LENGTH,PIPES_AS_CONCAT,REAL_AS_FLOAT,STRICT_ALL_TABLES,STRICT_TRANS_TABLES,TIME_TRUNCATE_FRACTIONAL",
      true, false, "The current server SQL mode."),
    p("time_zone", "+00:00", Some("+00:00"), "String", "[+|-][0]{0,1}[0-9]:[0-5][0-9]|[+|-][1][0-2]:[0-5][0-9]|SYSTEM", true, false,
      "The server time zone."),
    p("max_connections", "151", Some("151"), "Integer", "10-16000", true, false,
      "The maximum permitted number of simultaneous client connections."),
    p("wait_timeout", "28800", Some("28800"), "Integer", "1-31536000", true, false,
      "The number of seconds the server waits for activity on a noninteractive connection before closing it."),
    p("innodb_lock_wait_timeout", "50", Some("50"), "Integer", "1-3600", true, false,
      "The length of time in seconds an InnoDB transaction waits for a row lock before giving up."),
    p("character_set_server", "utf8mb4", Some("latin1"), "Enumeration", "BIG5,DEC8,CP850,HP8,KOI8R,LATIN1,LATIN2,SWE7,ASCII,UJIS,SJIS,HEBREW,TIS620,EUCKR,KOI8U,GB2312,GREEK,CP1250,GBK,LATIN5,ARMSCII8,UTF8,UCS2,CP866,KEYBCS2,MACCE,MACROMAN,CP852,LATIN7,UTF8MB4,CP1251,UTF16,CP1256,CP1257,UTF32,BINARY,GEOSTD8,CP932,EUCJPMS",
      true, false, "Use charset_name as the default server character set."),
    p("lower_case_table_names", "1", Some("1"), "Integer", "1-2", false, true,
      "If set to 1, table names are stored in lowercase on disk and comparisons are not case sensitive."),
];

fn find(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

fn default_of(param: &Param, v57: bool) -> Option<&'static str> {
    if v57 {
        param.default_57
    } else {
        Some(param.default_8)
    }
}

fn render(
    sid: &str,
    param: &Param,
    value: &str,
    default: &str,
    source: &str,
    pending: bool,
) -> Value {
    let tf = |b: bool| if b { "True" } else { "False" };
    json!({
        "id": format!("{sid}/configurations/{}", param.name),
        "name": param.name,
        "type": CONFIG_TYPE,
        "properties": {
            "value": value,
            "currentValue": value,
            "description": param.description,
            "defaultValue": default,
            "dataType": param.data_type,
            "allowedValues": param.allowed,
            "source": source,
            "isReadOnly": tf(param.read_only),
            "isConfigPendingRestart": tf(pending),
            "isDynamicConfig": tf(param.dynamic),
            "documentationLink": format!("https://dev.mysql.com/doc/refman/8.0/en/server-system-variables.html#sysvar_{}", param.name),
        },
    })
}

/// Normalise and check a value; `None` when it is not allowed.
fn check_value(param: &Param, value: &str) -> Option<String> {
    let allowed: Vec<&str> = param.allowed.split(',').collect();
    match param.data_type {
        "Enumeration" => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(value))
            .map(|a| a.to_string()),
        "Set" => {
            let items: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .collect();
            let ok = items
                .iter()
                .all(|i| allowed.iter().any(|a| a.eq_ignore_ascii_case(i)));
            (ok && (!items.is_empty() || param.name == "sql_mode")).then(|| value.to_string())
        }
        "Integer" => {
            let (lo, hi) = param.allowed.split_once('-')?;
            let n: i64 = value.parse().ok()?;
            (lo.parse::<i64>().ok()? <= n && n <= hi.parse::<i64>().ok()?).then(|| n.to_string())
        }
        _ => {
            // time_zone: SYSTEM or [+-]H:MM / [+-]HH:MM within ±12:59.
            if value.eq_ignore_ascii_case("SYSTEM") {
                return Some("SYSTEM".into());
            }
            let rest = value
                .strip_prefix('+')
                .or_else(|| value.strip_prefix('-'))?;
            let (h, m) = rest.split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 12 && m <= 59).then(|| value.to_string())
        }
    }
}

pub(crate) fn handle(st: &mut State, req: &Req, a: &Addr) -> ArmResult {
    let sid = a.id_at(0);
    let Some(server) = st.get(&sid).cloned() else {
        return Err(ArmError::not_found(SERVER_TYPE, &sid));
    };
    let sid = s(&server, "id").to_string();
    let v57 = ptr(&server, "/properties/version") == "5.7";
    if a.segs.len() == 3 {
        if req.verb != "GET" {
            return Err(crate::process::not_served(req));
        }
        let value: Vec<Value> = PARAMS
            .iter()
            .filter_map(|param| {
                let id = format!("{sid}/configurations/{}", param.name);
                st.get(&id).cloned().or_else(|| {
                    default_of(param, v57)
                        .map(|d| render(&sid, param, d, d, "system-default", false))
                })
            })
            .collect();
        return Ok(Reply::json(200, json!({ "value": value })));
    }
    let name = a.name(1).unwrap_or("");
    let Some(param) = find(name).filter(|p| default_of(p, v57).is_some()) else {
        return Err(ArmError::new(
            404,
            "ResourceNotFound",
            format!("The configuration '{name}' does not exist for server '{}' (fake-azure knows a small catalogue).", s(&server, "name")),
        ));
    };
    let default = default_of(param, v57).unwrap_or("");
    let id = format!("{sid}/configurations/{}", param.name);
    match req.verb.as_str() {
        "GET" => Ok(Reply::json(
            200,
            st.get(&id)
                .cloned()
                .unwrap_or_else(|| render(&sid, param, default, default, "system-default", false)),
        )),
        "PUT" | "PATCH" => {
            check_busy(st, &sid)?;
            if param.read_only {
                return Err(ArmError::bad(
                    "ReadOnlyConfiguration",
                    format!("The configuration '{}' is read-only.", param.name),
                ));
            }
            let raw = ptr(&req.body, "/properties/value");
            let Some(value) = check_value(param, raw) else {
                return Err(ArmError::bad(
                    "InvalidParameterValue",
                    format!("The value '{raw}' for configuration '{}' is not valid. Allowed values: {}.", param.name, param.allowed),
                ));
            };
            let source = match ptr(&req.body, "/properties/source") {
                "" => "user-override",
                src => src,
            };
            let pending = !param.dynamic && value != default;
            st.apply(Effect::Insert(
                id.clone(),
                render(&sid, param, &value, default, source, pending),
            ));
            let op = lro::new_op(
                st,
                &a.sub,
                "Microsoft.DBforMySQL",
                s(&server, "location"),
                "flexibleServers.configurations.update",
                &id,
                Duration::from_secs(20),
            )
            .lock(&sid)
            .result(OpResult::Resource(id.clone()));
            let headers = lro::start(st, op, Style::Location);
            Ok(Reply::empty(202).with_headers(headers))
        }
        _ => Err(crate::process::not_served(req)),
    }
}
