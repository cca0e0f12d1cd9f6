//! Path parsing: ARM paths are hierarchical and case-insensitive in their fixed
//! segments (`resourceGroups` = `resourcegroups`), so they are parsed rather than
//! matched against templates. Also the pinned api-versions and canonical type names.

/// The api-version the fake serves for a provider namespace and first resource type
/// (both lower case), or `None` for a namespace the fake does not know.
pub(crate) fn api_version(ns: &str, first_type: &str) -> Option<&'static str> {
    Some(match ns {
        "microsoft.resources" => "2025-04-01",
        "microsoft.network" => match first_type {
            "dnszones" => "2018-05-01",
            "privatednszones" => "2024-06-01",
            _ => "2025-05-01",
        },
        "microsoft.containerservice" => "2026-08-01",
        "microsoft.managedidentity" => "2024-11-30",
        "microsoft.authorization" => "2022-04-01",
        "microsoft.containerregistry" => "2025-11-01",
        "microsoft.dbformysql" => "2024-12-30",
        _ => return None,
    })
}

/// Provider namespaces the fake knows (canonical casing) and whether they start
/// registered.
pub(crate) const NAMESPACES: &[(&str, bool)] = &[
    ("Microsoft.Resources", true),
    ("Microsoft.Authorization", true),
    ("Microsoft.Network", false),
    ("Microsoft.ContainerService", false),
    ("Microsoft.Compute", false),
    ("Microsoft.ManagedIdentity", false),
    ("Microsoft.ContainerRegistry", false),
    ("Microsoft.DBforMySQL", false),
    ("Microsoft.Storage", false),
    ("Microsoft.OperationalInsights", false),
    ("Microsoft.OperationsManagement", false),
];

/// The canonical casing of a namespace the fake knows.
pub(crate) fn canonical_ns(ns: &str) -> Option<&'static str> {
    NAMESPACES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(ns))
        .map(|(n, _)| *n)
}

/// The canonical casing of a resource type segment.
pub(crate) fn canonical_type(t: &str) -> String {
    const KNOWN: &[&str] = &[
        "virtualNetworks",
        "subnets",
        "managedClusters",
        "agentPools",
        "dnsZones",
        "privateDnsZones",
        "virtualNetworkLinks",
        "userAssignedIdentities",
        "federatedIdentityCredentials",
        "registries",
        "scopeMaps",
        "tokens",
        "flexibleServers",
        "databases",
        "configurations",
        "firewallRules",
        "roleAssignments",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(t))
        .map(|k| k.to_string())
        .unwrap_or_else(|| t.to_string())
}

/// A parsed ARM resource address under a resource group:
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{segs...}`.
#[derive(Debug, Clone)]
pub(crate) struct Addr {
    pub sub: String,
    pub rg: String,
    /// Canonical namespace.
    pub ns: &'static str,
    /// Decoded segments after the namespace: type, name, type, name, ... with an
    /// optional trailing collection type or action.
    pub segs: Vec<String>,
}

impl Addr {
    /// The lower-case type chain, e.g. `["virtualnetworks", "subnets"]`.
    pub(crate) fn types(&self) -> Vec<String> {
        self.segs
            .iter()
            .step_by(2)
            .map(|s| s.to_ascii_lowercase())
            .collect()
    }

    /// The name at depth `i` (0 = the top resource), if any.
    pub(crate) fn name(&self, i: usize) -> Option<&str> {
        self.segs.get(2 * i + 1).map(String::as_str)
    }

    /// True when the path ends with a type or action segment (no name after it).
    pub(crate) fn trailing(&self) -> Option<&str> {
        if self.segs.len() % 2 == 1 {
            self.segs.last().map(String::as_str)
        } else {
            None
        }
    }

    /// Resource group id.
    pub(crate) fn rg_id(&self) -> String {
        format!("/subscriptions/{}/resourceGroups/{}", self.sub, self.rg)
    }

    /// Canonical id of the resource at `depth` (0 = top), using canonical type names.
    pub(crate) fn id_at(&self, depth: usize) -> String {
        let mut id = format!("{}/providers/{}", self.rg_id(), self.ns);
        for i in 0..=depth {
            let (Some(t), Some(n)) = (self.segs.get(2 * i), self.segs.get(2 * i + 1)) else {
                break;
            };
            id.push('/');
            id.push_str(&canonical_type(t));
            id.push('/');
            id.push_str(n);
        }
        id
    }
}

/// What a request addresses.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Entra ID `POST /{tenant}/oauth2/v2.0/token`.
    Token { tenant: String },
    /// Entra ID `GET /{tenant}/v2.0/.well-known/openid-configuration`.
    OpenId { tenant: String },
    /// An operation status (`async`) or result (`location`) URL the fake handed out.
    Poll {
        sub: String,
        id: String,
        location: bool,
    },
    /// `/subscriptions/{sub}/resourcegroups`.
    ResourceGroups { sub: String },
    /// `/subscriptions/{sub}/resourcegroups/{rg}`.
    ResourceGroup { sub: String, rg: String },
    /// `/subscriptions/{sub}/resourcegroups/{rg}/resources`.
    RgResources { sub: String, rg: String },
    /// `/subscriptions/{sub}/providers`.
    Providers { sub: String },
    /// `/subscriptions/{sub}/providers/{ns}` (and `/register` when `register`).
    Provider {
        sub: String,
        ns: String,
        register: bool,
    },
    /// `/subscriptions/{sub}/providers/{ns}/...` other than the above (name checks).
    SubAction {
        sub: String,
        ns: &'static str,
        rest: Vec<String>,
    },
    /// A resource (or collection, or action) in a resource group.
    Resource(Addr),
    /// `/{scope}/providers/Microsoft.Authorization/roleAssignments[/{name}]`.
    RoleAssignment { scope: String, name: Option<String> },
    /// Nothing the fake serves.
    Unknown,
}

impl Route {
    /// The lower-case namespace and first resource type, for the api-version check.
    pub(crate) fn api_key(&self) -> Option<(String, String)> {
        match self {
            Route::Token { .. } | Route::OpenId { .. } | Route::Unknown | Route::Poll { .. } => {
                None
            }
            Route::ResourceGroups { .. }
            | Route::ResourceGroup { .. }
            | Route::RgResources { .. }
            | Route::Providers { .. }
            | Route::Provider { .. } => Some(("microsoft.resources".into(), String::new())),
            Route::SubAction { ns, .. } => Some((ns.to_ascii_lowercase(), String::new())),
            Route::Resource(a) => Some((
                a.ns.to_ascii_lowercase(),
                a.segs
                    .first()
                    .map(|s| s.to_ascii_lowercase())
                    .unwrap_or_default(),
            )),
            Route::RoleAssignment { .. } => Some(("microsoft.authorization".into(), String::new())),
        }
    }

    /// The resource type used in counters, e.g. `Microsoft.Network/virtualNetworks/subnets`.
    pub(crate) fn type_name(&self) -> String {
        match self {
            Route::Token { .. } | Route::OpenId { .. } => "EntraID/token".into(),
            Route::Poll { .. } => "operations".into(),
            Route::ResourceGroups { .. } | Route::ResourceGroup { .. } => {
                "Microsoft.Resources/resourceGroups".into()
            }
            Route::RgResources { .. } => "Microsoft.Resources/resources".into(),
            Route::Providers { .. } | Route::Provider { .. } => {
                "Microsoft.Resources/providers".into()
            }
            Route::SubAction { ns, rest, .. } => {
                format!("{ns}/{}", rest.last().map(String::as_str).unwrap_or(""))
            }
            Route::Resource(a) => {
                let mut t = a.ns.to_string();
                for (i, seg) in a.segs.iter().enumerate() {
                    if i % 2 == 0 {
                        t.push('/');
                        t.push_str(&canonical_type(seg));
                    }
                }
                t
            }
            Route::RoleAssignment { .. } => "Microsoft.Authorization/roleAssignments".into(),
            Route::Unknown => "unknown".into(),
        }
    }
}

/// Parse a request path (raw, percent-encoded).
pub(crate) fn parse(path: &str) -> Route {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();

    // Role assignments at any scope.
    if let Some(i) = (0..l.len().saturating_sub(2))
        .rev()
        .find(|&i| l[i] == "providers" && l[i + 1] == "microsoft.authorization")
    {
        if l.get(i + 2) == Some(&"roleassignments") && l.len() <= i + 4 {
            let scope = format!("/{}", segs[..i].join("/"));
            return Route::RoleAssignment {
                scope: if scope == "/" { String::new() } else { scope },
                name: segs.get(i + 3).cloned(),
            };
        }
    }

    match l.as_slice() {
        [_, "oauth2", "v2.0", "token"] => Route::Token {
            tenant: segs[0].clone(),
        },
        [_, "v2.0", ".well-known", "openid-configuration"] => Route::OpenId {
            tenant: segs[0].clone(),
        },
        ["subscriptions", _, "providers", _, "locations", _, kind, _]
            if *kind == "operations" || *kind == "operationresults" =>
        {
            Route::Poll {
                sub: segs[1].clone(),
                id: segs[7].clone(),
                location: *kind == "operationresults",
            }
        }
        ["subscriptions", _, "resourcegroups"] => Route::ResourceGroups {
            sub: segs[1].clone(),
        },
        ["subscriptions", _, "resourcegroups", _] => Route::ResourceGroup {
            sub: segs[1].clone(),
            rg: segs[3].clone(),
        },
        ["subscriptions", _, "resourcegroups", _, "resources"] => Route::RgResources {
            sub: segs[1].clone(),
            rg: segs[3].clone(),
        },
        ["subscriptions", _, "providers"] => Route::Providers {
            sub: segs[1].clone(),
        },
        ["subscriptions", _, "providers", _] => Route::Provider {
            sub: segs[1].clone(),
            ns: segs[3].clone(),
            register: false,
        },
        ["subscriptions", _, "providers", _, "register"] => Route::Provider {
            sub: segs[1].clone(),
            ns: segs[3].clone(),
            register: true,
        },
        ["subscriptions", _, "providers", ns, ..] => match canonical_ns(ns) {
            Some(ns) => Route::SubAction {
                sub: segs[1].clone(),
                ns,
                rest: segs[4..].to_vec(),
            },
            None => Route::Unknown,
        },
        ["subscriptions", _, "resourcegroups", _, "providers", ns, _, ..] => {
            match canonical_ns(ns) {
                Some(ns) => Route::Resource(Addr {
                    sub: segs[1].clone(),
                    rg: segs[3].clone(),
                    ns,
                    segs: segs[6..].to_vec(),
                }),
                None => Route::Unknown,
            }
        }
        _ => Route::Unknown,
    }
}

/// Decode `%XX` escapes (and, with `plus`, `+` as a space).
pub(crate) fn percent_decode_with(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decode a path segment.
pub(crate) fn percent_decode(s: &str) -> String {
    percent_decode_with(s, false)
}

/// Parse a query string (or a form body) into decoded pairs, in order.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode_with(k, true), percent_decode_with(v, true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        match parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/a") {
            Route::Resource(a) => {
                assert_eq!(a.types(), ["virtualnetworks", "subnets"]);
                assert_eq!(a.name(1), Some("a"));
                assert_eq!(
                    a.id_at(1),
                    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/a"
                );
            }
            other => panic!("{other:?}"),
        }
        match parse("/subscriptions/s/resourcegroups/rg/providers/microsoft.network/dnszones/z/A") {
            Route::Resource(a) => assert_eq!(a.trailing(), Some("A")),
            other => panic!("{other:?}"),
        }
        match parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/dnszones/z/providers/Microsoft.Authorization/roleAssignments/g") {
            Route::RoleAssignment { scope, name } => {
                assert_eq!(scope, "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/dnszones/z");
                assert_eq!(name.as_deref(), Some("g"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("/t/oauth2/v2.0/token"), Route::Token { .. }));
        assert!(matches!(
            parse(
                "/subscriptions/s/providers/Microsoft.DBforMySQL/locations/x/checkNameAvailability"
            ),
            Route::SubAction { .. }
        ));
        assert!(matches!(
            parse("/subscriptions/s/providers/Microsoft.ContainerService/locations/x/operations/1"),
            Route::Poll {
                location: false,
                ..
            }
        ));
        assert_eq!(percent_decode("a%2Fb%4"), "a/b%4");
        assert_eq!(
            parse_query("a=b+c&%24filter=x"),
            vec![("a".into(), "b c".into()), ("$filter".into(), "x".into())]
        );
    }
}
