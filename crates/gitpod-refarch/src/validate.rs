//! Checks a [`ReferenceArchitecture`] without any network call and reports every
//! problem at once, each with its field path (`nodePools.services.maxNodes`) and a
//! plain message. Run before any provider is called; the engine refuses invalid specs.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::secret::{ProcessSources, Sources};
use crate::spec::*;

pub use crate::problem::{Problem, ValidationErrors, Warning};

impl ReferenceArchitecture {
    /// Check every value; see [`validate`].
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        validate(self)
    }
}

/// Check every value of `spec`, reading the secrets and files it names from the
/// process's environment and files ([`ProcessSources`]).
pub fn validate(spec: &ReferenceArchitecture) -> Result<(), ValidationErrors> {
    validate_with(spec, &ProcessSources)
}

/// Check every value of `spec`, reading the secrets and files it names from
/// `sources` (a controller reads them from the installation's own Secret).
pub fn validate_with(
    spec: &ReferenceArchitecture,
    sources: &dyn Sources,
) -> Result<(), ValidationErrors> {
    let mut v = Checker {
        problems: Vec::new(),
        sources,
    };
    v.spec(spec);
    if v.problems.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(v.problems))
    }
}

/// Notes about a valid spec (old versions, risky settings), reading its certificate
/// files from the process's files.
pub fn warnings(spec: &ReferenceArchitecture) -> Vec<Warning> {
    warnings_with(spec, &ProcessSources)
}

/// Notes about a valid spec (old versions, risky settings), reading its certificate
/// files from `sources`.
pub fn warnings_with(spec: &ReferenceArchitecture, sources: &dyn Sources) -> Vec<Warning> {
    let mut out = Vec::new();
    if let Some(db) = spec.database.cloud() {
        cloud_database_warnings(db, &mut out);
    }
    if let Some(st) = spec.storage.self_managed() {
        if st.endpoint.starts_with("http://") {
            out.push(Warning {
                path: "storage.endpoint".into(),
                message: "plain HTTP: keys and workspace content cross the network unencrypted \
                          (Gitpod's allowInsecureConnection); use https outside a private network"
                    .into(),
            });
        }
    }
    if let Some(r) = spec.registry.self_managed() {
        if r.insecure_http() && !host_is_loopback(host_of(r.url_without_scheme())) {
            out.push(Warning {
                path: "registry.url".into(),
                message: "plain HTTP to a registry that is not on a loopback address: nodes \
                          pull images unencrypted and must be configured to allow it"
                    .into(),
            });
        }
    }
    if spec.cloud == Cloud::Azure && !spec.storage.is_self_managed() {
        out.push(Warning {
            path: "storage".into(),
            message: "Gitpod's installer has no Azure Blob support: on Azure, object storage \
                      runs in the cluster (objectStorage.inCluster, MinIO on an Azure disk); \
                      for external storage, use an S3 or GCS object store provider"
                .into(),
        });
    }
    out.extend(crate::tls::check_spec_from(spec, sources, std::time::SystemTime::now()).warnings);
    for role in PoolRole::ALL {
        if spec.node_pools.get(role).min_nodes == 0 {
            out.push(Warning {
                path: format!("nodePools.{}.minNodes", role.field()),
                message: "0: the first workspace after scale-down waits for a node to boot".into(),
            });
        }
    }
    out
}

fn cloud_database_warnings(db: &DatabaseSettings, out: &mut Vec<Warning>) {
    if db.mysql_version == "5.7" {
        out.push(Warning {
            path: "database.mysqlVersion".into(),
            message:
                "MySQL 5.7 is past standard support on every cloud (extended support is billed); \
                      it is the guide's version, choose 8.0 once your Gitpod release supports it"
                    .into(),
        });
    }
    if !db.high_availability {
        out.push(Warning {
            path: "database.highAvailability".into(),
            message: "no failover replica: a zone outage stops Gitpod".into(),
        });
    }
}

struct Checker<'a> {
    problems: Vec<Problem>,
    /// Where the secrets and files the spec names are read.
    sources: &'a dyn Sources,
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn spec(&mut self, s: &ReferenceArchitecture) {
        self.name(s);
        self.domain("domain", &s.domain);
        self.cluster(s);
        for role in PoolRole::ALL {
            self.pool(s.cloud, role, s.node_pools.get(role));
        }
        self.database(s);
        self.dns(s);
        self.storage(s);
        self.registry(s);
        self.certificates(s);
        self.labels(s);
        self.cloud_sections(s);
    }

    fn name(&mut self, s: &ReferenceArchitecture) {
        // Derived names (`gke-sa-<name>`, `<name>-svc-ng-xxxx`, storage accounts) must
        // fit each cloud's limits: 15 characters on GCP/AWS, 11 on Azure.
        let max = match s.cloud {
            Cloud::Azure => 11,
            _ => 15,
        };
        let n = &s.name;
        if n.is_empty() {
            return self.err("name", "required");
        }
        if n.len() > max {
            self.err(
                "name",
                format!(
                    "{} characters; at most {max} on {} (derived resource names must fit)",
                    n.len(),
                    s.cloud
                ),
            );
        }
        if !n.starts_with(|c: char| c.is_ascii_lowercase()) {
            self.err("name", "must start with a lower-case letter");
        }
        if !n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            self.err(
                "name",
                "only lower-case letters, digits and '-' are allowed",
            );
        }
        if n.ends_with('-') {
            self.err("name", "must not end with '-'");
        }
    }

    fn domain(&mut self, path: &str, d: &str) {
        if d.is_empty() {
            return self.err(path, "required (for example gitpod.example.com)");
        }
        if d.ends_with('.') {
            return self.err(path, "write the domain without a trailing dot");
        }
        if d.starts_with("*.") {
            return self.err(
                path,
                "give the base domain; the wildcards are added for you",
            );
        }
        if d.len() > 253 {
            return self.err(path, format!("{} characters; at most 253", d.len()));
        }
        if d.chars().any(|c| c.is_ascii_uppercase()) {
            return self.err(path, "must be lower case");
        }
        let labels: Vec<&str> = d.split('.').collect();
        if labels.len() < 2 {
            return self.err(
                path,
                "must have at least two labels (for example gitpod.example.com)",
            );
        }
        for l in &labels {
            if let Some(msg) = dns_label_problem(l) {
                return self.err(path, format!("label '{l}': {msg}"));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            self.err(
                path,
                "the top-level label cannot be numeric (an IP address is not a domain)",
            );
        }
        // `*.ws.DOMAIN` must itself fit in 253 characters.
        if d.len() + 5 > 253 {
            self.err(path, "too long for the certificate name *.ws.DOMAIN");
        }
    }

    fn cluster(&mut self, s: &ReferenceArchitecture) {
        let c = &s.cluster;
        let region_ok = match s.cloud {
            Cloud::Gcp => is_gcp_region(&c.region),
            Cloud::Aws => is_aws_region(&c.region),
            Cloud::Azure => {
                !c.region.is_empty()
                    && c.region
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            }
        };
        if !region_ok {
            self.err(
                "cluster.region",
                format!("'{}' is not a {} region name", c.region, s.cloud),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, z) in c.zones.iter().enumerate() {
            let path = format!("cluster.zones[{i}]");
            if !seen.insert(z) {
                self.err(&path, format!("zone '{z}' is listed twice"));
            }
            let ok = match s.cloud {
                Cloud::Gcp => z
                    .strip_prefix(&c.region)
                    .and_then(|r| r.strip_prefix('-'))
                    .is_some_and(|r| r.len() == 1 && r.chars().all(|ch| ch.is_ascii_lowercase())),
                Cloud::Aws => z
                    .strip_prefix(&c.region)
                    .is_some_and(|r| r.len() == 1 && r.chars().all(|ch| ch.is_ascii_lowercase())),
                Cloud::Azure => matches!(z.as_str(), "1" | "2" | "3"),
            };
            if !ok {
                self.err(
                    path,
                    format!("'{z}' is not a zone of region '{}'", c.region),
                );
            }
        }
        if c.zones.len() > 4 {
            self.err(
                "cluster.zones",
                "at most 4 zones (subnets are carved from the node range per zone)",
            );
        }
        if s.cloud == Cloud::Aws && c.zones.len() < 2 {
            self.err(
                "cluster.zones",
                "EKS and RDS subnet groups need at least two availability zones",
            );
        }
        self.kubernetes_version(&c.kubernetes_version);
        if c.max_pods_per_node < 8 || c.max_pods_per_node > 256 {
            self.err(
                "cluster.maxPodsPerNode",
                "must be between 8 and 256 (the guide uses 110)",
            );
        }
        self.network(s);
    }

    fn kubernetes_version(&mut self, v: &str) {
        let path = "cluster.kubernetesVersion";
        let parts: Vec<&str> = v.split('.').collect();
        let numeric = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(numeric) {
            return self.err(path, format!("'{v}' is not a version like 1.33 or 1.33.2"));
        }
        if parts[0] != "1" {
            return self.err(path, format!("unknown Kubernetes major version in '{v}'"));
        }
        if parts[1].parse::<u32>().is_ok_and(|minor| minor < 28) {
            self.err(
                path,
                format!(
                    "'{v}' is past end of support on every managed Kubernetes; use 1.28 or later"
                ),
            );
        }
    }

    fn network(&mut self, s: &ReferenceArchitecture) {
        let n = &s.cluster.network;
        let mut nets: Vec<(&str, Ipv4Net)> = Vec::new();
        let parse = |this: &mut Self, path: &'static str, text: &str| -> Option<Ipv4Net> {
            if let Some(msg) = cidr_text_problem(text) {
                this.err(path, format!("'{text}': {msg}"));
                return None;
            }
            match text.parse::<Ipv4Net>() {
                Ok(net) => {
                    if net.network() != net.addr() {
                        this.err(
                            path,
                            format!("'{text}' has host bits set; did you mean {}?", net.trunc()),
                        );
                        return None;
                    }
                    if !net.network().is_private() {
                        this.err(path, format!("'{text}' is not a private (RFC 1918) range"));
                    } else if !rfc1918().iter().any(|p| p.contains(&net)) {
                        // The first address is private but the range runs out of its block.
                        this.err(
                            path,
                            format!(
                                "'{text}' ({} - {}) is not inside one private (RFC 1918) block: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
                                net.network(),
                                net.broadcast()
                            ),
                        );
                    }
                    Some(net)
                }
                Err(_) => {
                    this.err(
                        path,
                        format!("'{text}' is not an IPv4 CIDR like 10.0.0.0/16"),
                    );
                    None
                }
            }
        };
        if let Some(net) = parse(self, "cluster.network.nodeCidr", &n.node_cidr) {
            if !(8..=24).contains(&net.prefix_len()) {
                self.err(
                    "cluster.network.nodeCidr",
                    "prefix must be between /8 and /24 to fit nodes and subnets",
                );
            }
            nets.push(("cluster.network.nodeCidr", net));
        }
        if let Some(p) = &n.pod_cidr {
            if let Some(net) = parse(self, "cluster.network.podCidr", p) {
                if net.prefix_len() > 21 {
                    self.err(
                        "cluster.network.podCidr",
                        "prefix must be /21 or larger for 110 pods per node",
                    );
                }
                if s.cloud == Cloud::Azure {
                    self.azure_reserved_range("cluster.network.podCidr", net);
                }
                nets.push(("cluster.network.podCidr", net));
            }
        }
        if let Some(net) = parse(self, "cluster.network.serviceCidr", &n.service_cidr) {
            if net.prefix_len() > 24 {
                self.err(
                    "cluster.network.serviceCidr",
                    "prefix must be /24 or larger",
                );
            }
            // kube-apiserver refuses a service range larger than /12 (20 host bits);
            // EKS documents /12../24 for serviceIpv4Cidr, AKS "smaller than /12".
            if net.prefix_len() < 12 {
                self.err(
                    "cluster.network.serviceCidr",
                    format!(
                        "/{} is larger than {} allows: at most a /12 for the service range",
                        net.prefix_len(),
                        match s.cloud {
                            Cloud::Aws => "EKS",
                            Cloud::Gcp => "GKE (kube-apiserver)",
                            Cloud::Azure => "AKS",
                        }
                    ),
                );
            }
            if s.cloud == Cloud::Azure {
                self.azure_reserved_range("cluster.network.serviceCidr", net);
            }
            nets.push(("cluster.network.serviceCidr", net));
        }
        for i in 0..nets.len() {
            for j in (i + 1)..nets.len() {
                let (pa, a) = nets[i];
                let (pb, b) = nets[j];
                if a.contains(&b.network()) || b.contains(&a.network()) {
                    self.err(pb, format!("{b} overlaps {pa} ({a})"));
                }
            }
        }
    }

    /// AKS: "the pod and service CIDRs must not overlap 169.254.0.0/16, 172.30.0.0/16,
    /// 172.31.0.0/16 or 192.0.2.0/24" (learn.microsoft.com/azure/aks/configure-kubenet,
    /// "Limitations").
    fn azure_reserved_range(&mut self, path: &str, net: Ipv4Net) {
        for reserved in [
            "169.254.0.0/16",
            "172.30.0.0/16",
            "172.31.0.0/16",
            "192.0.2.0/24",
        ] {
            let Ok(r) = reserved.parse::<Ipv4Net>() else {
                continue;
            };
            if r.contains(&net.network()) || net.contains(&r.network()) {
                self.err(
                    path,
                    format!("{net} overlaps {reserved}, which AKS reserves"),
                );
            }
        }
    }

    fn pool(&mut self, cloud: Cloud, role: PoolRole, p: &NodePool) {
        let base = format!("nodePools.{}", role.field());
        let machine_ok = match cloud {
            Cloud::Gcp => {
                p.machine_type.contains('-')
                    && p.machine_type
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            }
            Cloud::Aws => {
                let mut it = p.machine_type.split('.');
                matches!((it.next(), it.next(), it.next()), (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty())
                    && p.machine_type.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
                    })
            }
            Cloud::Azure => {
                p.machine_type.starts_with("Standard_")
                    && p.machine_type.len() > 9
                    && p.machine_type
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
            }
        };
        if !machine_ok {
            self.err(
                format!("{base}.machineType"),
                format!("'{}' is not a {cloud} machine type", p.machine_type),
            );
        }
        let disk_types: &[&str] = match cloud {
            Cloud::Gcp => &["pd-ssd", "pd-balanced", "pd-standard", "hyperdisk-balanced"],
            Cloud::Aws => &["gp3", "gp2", "io1", "io2"],
            Cloud::Azure => &["Managed", "Ephemeral"],
        };
        if !disk_types.contains(&p.disk_type.as_str()) {
            self.err(
                format!("{base}.diskType"),
                format!("'{}' is not one of {}", p.disk_type, disk_types.join(", ")),
            );
        }
        if !(30..=65_536).contains(&p.disk_size_gb) {
            self.err(
                format!("{base}.diskSizeGb"),
                "must be between 30 and 65536 GB",
            );
        }
        if p.min_nodes > p.max_nodes {
            self.err(
                format!("{base}.minNodes"),
                format!("{} is more than maxNodes ({})", p.min_nodes, p.max_nodes),
            );
        }
        if p.max_nodes == 0 {
            self.err(format!("{base}.maxNodes"), "must be at least 1");
        }
        if p.max_nodes > 1000 {
            self.err(format!("{base}.maxNodes"), "at most 1000 nodes per pool");
        }
        for (k, v) in &p.labels {
            if let Some(msg) = qualified_name_problem(k) {
                self.err(format!("{base}.labels"), format!("key '{k}': {msg}"));
            }
            if let Some(msg) = label_value_problem(v) {
                self.err(format!("{base}.labels"), format!("value of '{k}': {msg}"));
            }
        }
        for l in role.required_labels() {
            if p.labels.get(*l).map(String::as_str) != Some("true") {
                self.err(
                    format!("{base}.labels"),
                    format!("'{l}=true' is required on this pool (Gitpod schedules by it)"),
                );
            }
        }
        for (i, t) in p.taints.iter().enumerate() {
            if let Some(msg) = qualified_name_problem(&t.key) {
                self.err(format!("{base}.taints[{i}].key"), msg);
            }
            if let Some(msg) = label_value_problem(&t.value) {
                self.err(format!("{base}.taints[{i}].value"), msg);
            }
            if !matches!(
                t.effect.as_str(),
                "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                self.err(
                    format!("{base}.taints[{i}].effect"),
                    "must be NoSchedule, PreferNoSchedule or NoExecute",
                );
            }
        }
        if let Some(img) = &p.image {
            if img.is_empty() {
                self.err(
                    format!("{base}.image"),
                    "empty; omit it for the cloud's default image",
                );
            } else if cloud == Cloud::Aws
                && img.starts_with("ami-")
                && !(img.len() >= 12 && img[4..].chars().all(|c| c.is_ascii_hexdigit()))
            {
                self.err(
                    format!("{base}.image"),
                    format!("'{img}' is not an AMI id like ami-0123456789abcdef0"),
                );
            }
        }
    }

    fn database(&mut self, s: &ReferenceArchitecture) {
        match &s.database {
            DatabaseChoice::Cloud(d) => self.cloud_database(s, d),
            DatabaseChoice::SelfManaged(d) => self.self_managed_database(d),
        }
    }

    fn self_managed_database(&mut self, d: &SelfManagedDatabaseSettings) {
        if let Some(msg) = host_problem(&d.host) {
            self.err("database.host", msg);
        }
        if d.port == 0 {
            self.err("database.port", "must be between 1 and 65535");
        }
        if d.admin_username.is_empty() {
            self.err(
                "database.adminUsername",
                "required: an administrator of the server",
            );
        } else if d.admin_username.len() > 80
            || d.admin_username
                .chars()
                .any(|c| c.is_control() || c == '\'' || c == '`')
        {
            self.err(
                "database.adminUsername",
                "at most 80 characters, without quotes or control characters",
            );
        }
        self.secret("database.adminPassword", &d.admin_password);
        if let Some(ca) = &d.tls.ca_file {
            if d.tls.mode == DatabaseTlsMode::Disabled {
                self.err(
                    "database.tls.caFile",
                    "given, but tls.mode is disabled: choose verifyCa or verifyIdentity",
                );
            } else {
                self.ca_file("database.tls.caFile", ca);
            }
        }
        if !is_mysql_identifier(&d.database_name, 64) {
            self.err(
                "database.databaseName",
                "1-64 characters: letters, digits, '_' (Gitpod expects 'gitpod')",
            );
        }
        if !is_mysql_identifier(&d.username, 32)
            || !d.username.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            self.err(
                "database.username",
                "1-32 characters, starting with a letter: letters, digits, '_'",
            );
        } else if d.username.eq_ignore_ascii_case(&d.admin_username) {
            self.err(
                "database.username",
                "must differ from adminUsername: the SDK creates this user for Gitpod alone",
            );
        } else if ["root", "mysql", "mariadb.sys"]
            .contains(&d.username.to_ascii_lowercase().as_str())
        {
            self.err(
                "database.username",
                format!("'{}' is reserved by MySQL/MariaDB", d.username),
            );
        }
    }

    /// Load a secret source now, so that a missing variable or file is a problem here.
    fn secret(&mut self, path: &str, source: &SecretSource) -> Option<crate::secret::Secret> {
        match source.load_from(self.sources, path) {
            Ok(v) => Some(v),
            Err(p) => {
                self.problems.push(p);
                None
            }
        }
    }

    fn ca_file(&mut self, path: &str, file: &str) {
        if let Err(p) = load_ca_file_from(self.sources, file, path) {
            self.problems.push(p);
        }
    }

    fn host_port(&mut self, path: &str, text: &str) {
        if let Some(msg) = host_port_problem(text) {
            self.err(path, msg);
        }
    }

    fn cloud_database(&mut self, s: &ReferenceArchitecture, d: &DatabaseSettings) {
        if !matches!(d.mysql_version.as_str(), "5.7" | "8.0") {
            self.err(
                "database.mysqlVersion",
                format!(
                    "'{}' is not a supported MySQL version (5.7 or 8.0)",
                    d.mysql_version
                ),
            );
        }
        let tier_ok = match s.cloud {
            Cloud::Gcp => d.tier.starts_with("db-") && d.tier.len() > 3,
            Cloud::Aws => d.tier.starts_with("db.") && d.tier.matches('.').count() == 2,
            Cloud::Azure => d.tier.starts_with("Standard_") && d.tier.len() > 9,
        };
        if !tier_ok {
            self.err(
                "database.tier",
                format!("'{}' is not a {} database tier", d.tier, s.cloud),
            );
        }
        if !(20..=65_536).contains(&d.storage_gb) {
            self.err("database.storageGb", "must be between 20 and 65536 GB");
        }
        if d.backups.enabled && !(1..=35).contains(&d.backups.retention_days) {
            self.err(
                "database.backups.retentionDays",
                "must be between 1 and 35 days",
            );
        }
        if d.high_availability && !d.backups.enabled {
            self.err(
                "database.backups.enabled",
                "high availability needs backups and binary logging on",
            );
        }
        match d
            .flags
            .get("explicit_defaults_for_timestamp")
            .map(|v| v.to_ascii_lowercase())
        {
            Some(v) if v == "off" || v == "0" => {}
            Some(v) => self.err(
                "database.flags.explicit_defaults_for_timestamp",
                format!("'{v}': Gitpod requires off"),
            ),
            None => self.err(
                "database.flags",
                "explicit_defaults_for_timestamp=off is required by Gitpod",
            ),
        }
        for k in d.flags.keys() {
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                self.err(
                    "database.flags",
                    format!("'{k}' is not a MySQL variable name"),
                );
            }
        }
        if !is_mysql_identifier(&d.database_name, 64) {
            self.err(
                "database.databaseName",
                "1-64 characters: letters, digits, '_' (Gitpod expects 'gitpod')",
            );
        }
        if !is_mysql_identifier(&d.username, 16)
            || !d.username.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            self.err(
                "database.username",
                "1-16 characters, starting with a letter: letters, digits, '_'",
            );
        }
        let user = d.username.to_ascii_lowercase();
        let reserved = reserved_db_users(s.cloud);
        if COMMON_RESERVED_DB_USERS.contains(&user.as_str()) || reserved.contains(&user.as_str()) {
            self.err(
                "database.username",
                format!(
                    "'{}' is reserved by MySQL or the {} managed database",
                    d.username, s.cloud
                ),
            );
        } else if s.cloud == Cloud::Azure && user.starts_with("azure_") {
            self.err(
                "database.username",
                format!(
                    "'{}': names starting with azure_ are reserved on Azure",
                    d.username
                ),
            );
        }
    }

    fn dns(&mut self, s: &ReferenceArchitecture) {
        if let Some(zone) = s.dns.zone() {
            self.domain("dns.zone", zone);
            if !s.domain.is_empty() && s.domain != *zone && !s.domain.ends_with(&format!(".{zone}"))
            {
                self.err(
                    "dns.zone",
                    format!("the domain '{}' is not inside zone '{zone}'", s.domain),
                );
            }
        }
        if let Some(d) = s.dns.self_managed() {
            self.host_port("dns.server", &d.server);
            if let Some(c) = &d.cluster_server {
                self.host_port("dns.clusterServer", c);
            }
            let key = d.tsig_key_name.trim_end_matches('.');
            if d.tsig_key_name.is_empty() {
                self.err(
                    "dns.tsigKeyName",
                    "required: the TSIG key's name (gitpod-refarch.)",
                );
            } else if key.is_empty()
                || key.len() > 253
                || key.split('.').any(|l| {
                    l.is_empty()
                        || l.len() > 63
                        || !l
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                })
            {
                self.err(
                    "dns.tsigKeyName",
                    format!(
                        "'{}' is not a DNS name (like gitpod-refarch.)",
                        d.tsig_key_name
                    ),
                );
            }
            if let Some(secret) = self.secret("dns.tsigSecret", &d.tsig_secret) {
                use base64::Engine as _;
                match base64::engine::general_purpose::STANDARD.decode(secret.expose().trim()) {
                    Ok(bytes) if !bytes.is_empty() => {}
                    _ => self.err(
                        "dns.tsigSecret",
                        "not base64 (the secret as tsig-keygen prints it)",
                    ),
                }
            }
        }
        match s.dns.records_target() {
            Some(RecordsTarget::Ipv4(ip)) => match ip.parse::<Ipv4Addr>() {
                Ok(a)
                    if a.is_unspecified()
                        || a.is_loopback()
                        || a.is_multicast()
                        || a.is_broadcast() =>
                {
                    self.err(
                        "dns.recordsTarget.ipv4",
                        format!("'{ip}' cannot be a load balancer address"),
                    )
                }
                Ok(_) => {}
                Err(_) => self.err(
                    "dns.recordsTarget.ipv4",
                    format!("'{ip}' is not an IPv4 address"),
                ),
            },
            Some(RecordsTarget::Hostname(h)) => {
                self.domain("dns.recordsTarget.hostname", h);
                // DOMAIN itself would be a CNAME at the zone apex, which DNS forbids.
                if s.zone_dns_name() == s.domain {
                    self.err(
                        "dns.recordsTarget.hostname",
                        "a host name target needs dns.zone to be a parent of the domain (a CNAME cannot sit at the zone apex); use an IPv4 target or set dns.zone",
                    );
                }
            }
            None => {}
        }
    }

    fn storage(&mut self, s: &ReferenceArchitecture) {
        if let Some(st) = s.storage.self_managed() {
            if let Some(msg) = endpoint_problem(&st.endpoint) {
                self.err("storage.endpoint", msg);
            }
            if st.region.is_empty()
                || st.region.len() > 63
                || !st
                    .region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                self.err(
                    "storage.region",
                    "1-63 lower-case letters, digits, '-' or '_' (us-east-1 for MinIO)",
                );
            }
            if let Some(msg) = bucket_problem(&st.bucket) {
                self.err("storage.bucket", msg);
            }
            self.secret("storage.accessKeyId", &st.access_key_id);
            self.secret("storage.secretAccessKey", &st.secret_access_key);
            if let Some(ca) = &st.ca_file {
                self.ca_file("storage.caFile", ca);
            }
            return;
        }
        if let Some(b) = s.storage.bucket() {
            let ok_chars = b
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !(3..=63).contains(&b.len()) || !ok_chars {
                self.err(
                    "storage.bucket",
                    "3-63 characters: lower-case letters, digits, '-' and '.'",
                );
            } else if !b.starts_with(|c: char| c.is_ascii_alphanumeric())
                || !b.ends_with(|c: char| c.is_ascii_alphanumeric())
            {
                self.err(
                    "storage.bucket",
                    "must start and end with a letter or digit",
                );
            } else if b.contains("..") || b.parse::<Ipv4Addr>().is_ok() {
                self.err(
                    "storage.bucket",
                    format!("'{b}' is not allowed as a bucket name"),
                );
            } else if let Some(msg) = reserved_bucket_problem(s.cloud, b) {
                self.err("storage.bucket", format!("'{b}': {msg}"));
            }
        }
    }

    fn registry(&mut self, s: &ReferenceArchitecture) {
        let r = match &s.registry {
            RegistryChoice::Cloud(r) => &r.repository,
            RegistryChoice::SelfManaged(r) => {
                if let Some(msg) = registry_url_problem(&r.url) {
                    self.err("registry.url", msg);
                }
                if r.username.is_empty() {
                    self.err("registry.username", "required: a user allowed to push");
                } else if r.username.contains(':') || r.username.chars().any(char::is_control) {
                    self.err(
                        "registry.username",
                        "must not contain ':' or control characters (basic auth)",
                    );
                }
                self.secret("registry.password", &r.password);
                if let Some(ca) = &r.ca_file {
                    self.ca_file("registry.caFile", ca);
                }
                return;
            }
        };
        let ok = !r.is_empty()
            && r.len() <= 63
            && r.starts_with(|c: char| c.is_ascii_lowercase())
            && r.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !r.ends_with('-');
        if !ok {
            self.err(
                "registry.repository",
                "1-63 characters: lower-case letters, digits and '-', starting with a letter",
            );
        }
    }

    fn certificates(&mut self, s: &ReferenceArchitecture) {
        match &s.certificates {
            CertificateSettings::Acme { email, server } => {
                if email.is_empty() {
                    self.err(
                        "certificates.email",
                        "required: the ACME account email for expiry notices",
                    );
                } else if email.to_ascii_lowercase().starts_with("mailto:") {
                    self.err(
                        "certificates.email",
                        "give the address alone, without 'mailto:' (cert-manager adds it)",
                    );
                } else if !is_email(email) {
                    self.err(
                        "certificates.email",
                        format!("'{email}' is not an email address"),
                    );
                }
                if let Some(msg) = acme_server_problem(server) {
                    self.err("certificates.server", msg);
                }
            }
            CertificateSettings::BringYourOwn { secret_name, .. } => {
                if dns_label_problem(secret_name).is_some()
                    || secret_name.chars().any(|c| c.is_ascii_uppercase())
                {
                    self.err(
                        "certificates.secretName",
                        "must be a Kubernetes name: lower-case letters, digits, '-', at most 63",
                    );
                }
                // The files, if any: names, expiry and key, read here (before any call).
                let check =
                    crate::tls::check_spec_from(s, self.sources, std::time::SystemTime::now());
                self.problems.extend(check.problems);
            }
        }
    }

    fn labels(&mut self, s: &ReferenceArchitecture) {
        for (k, v) in &s.labels {
            // The strictest common rules: GCP labels.
            let key_ok = !k.is_empty()
                && k.len() <= 63
                && k.starts_with(|c: char| c.is_ascii_lowercase())
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !key_ok {
                self.err("labels", format!("key '{k}': 1-63 lower-case letters, digits, '-' or '_', starting with a letter"));
            }
            if v.len() > 63
                || !v
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                self.err(
                    "labels",
                    format!("value of '{k}': at most 63 lower-case letters, digits, '-' or '_'"),
                );
            }
        }
    }

    fn cloud_sections(&mut self, s: &ReferenceArchitecture) {
        if s.cloud == Cloud::Gcp && s.gcp.is_none() {
            self.err("gcp", "required when cloud is gcp (at least gcp.project)");
        }
        if s.cloud == Cloud::Azure && s.azure.is_none() {
            self.err(
                "azure",
                "required when cloud is azure (at least azure.subscriptionId)",
            );
        }
        if let Some(g) = &s.gcp {
            let p = &g.project;
            let ok = (6..=30).contains(&p.len())
                && p.starts_with(|c: char| c.is_ascii_lowercase())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !p.ends_with('-');
            if p.is_empty() {
                self.err("gcp.project", "required");
            } else if p.contains("google") {
                // "Project IDs cannot contain restricted strings such as google":
                // cloud.google.com/resource-manager/docs/creating-managing-projects
                self.err(
                    "gcp.project",
                    format!("'{p}' contains 'google', which project ids must not"),
                );
            } else if !ok {
                self.err("gcp.project", format!("'{p}' is not a project id: 6-30 lower-case letters, digits, '-', starting with a letter"));
            }
            match &g.billing_account {
                Some(b) if !is_billing_account(b) => self.err(
                    "gcp.billingAccount",
                    format!("'{b}' is not a billing account id like 0X0X0X-0X0X0X-0X0X0X"),
                ),
                None if g.create_project => {
                    self.err("gcp.billingAccount", "required to create a project")
                }
                _ => {}
            }
        }
        if let Some(a) = &s.aws {
            if let Some(id) = &a.account_id {
                if id.len() != 12 || !id.chars().all(|c| c.is_ascii_digit()) {
                    self.err(
                        "aws.accountId",
                        format!("'{id}' is not a 12-digit account id"),
                    );
                }
            }
        }
        if let Some(z) = &s.azure {
            if z.subscription_id.is_empty() {
                self.err("azure.subscriptionId", "required");
            } else if !is_uuid(&z.subscription_id) {
                self.err(
                    "azure.subscriptionId",
                    format!("'{}' is not a subscription id (a UUID)", z.subscription_id),
                );
            }
            if let Some(rg) = &z.resource_group {
                let ok = !rg.is_empty()
                    && rg.len() <= 90
                    && rg
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
                    && !rg.ends_with('.');
                if !ok {
                    self.err(
                        "azure.resourceGroup",
                        "1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'",
                    );
                }
            }
            if let Some(r) = &z.registry_name {
                if !(5..=50).contains(&r.len()) || !r.chars().all(|c| c.is_ascii_alphanumeric()) {
                    self.err(
                        "azure.registryName",
                        format!("'{r}' is not a registry name: 5-50 letters and digits"),
                    );
                }
            }
            if let Some(n) = &z.database_server_name {
                let ok = (3..=63).contains(&n.len())
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !n.starts_with('-')
                    && !n.ends_with('-');
                if !ok {
                    self.err(
                        "azure.databaseServerName",
                        format!("'{n}' is not a server name: 3-63 lower-case letters, digits and '-', not starting or ending with '-'"),
                    );
                }
            }
        }
    }
}

/// A host name or IP address (no scheme, no port).
fn host_problem(host: &str) -> Option<String> {
    if host.is_empty() {
        return Some("required: a host name or IP address".into());
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    if host.contains("://") {
        return Some(format!("'{host}': give the host alone, without a scheme"));
    }
    if host.contains(':') {
        return Some(format!(
            "'{host}': give the host alone; the port has its own field"
        ));
    }
    let d = host.trim_end_matches('.');
    if d.len() > 253 {
        return Some(format!("'{host}' is longer than 253 characters"));
    }
    for l in d.split('.') {
        if let Some(msg) = dns_label_problem(l) {
            return Some(format!("'{host}' is not a host name: label '{l}': {msg}"));
        }
    }
    if d.rsplit('.')
        .next()
        .is_some_and(|t| t.chars().all(|c| c.is_ascii_digit()))
    {
        return Some(format!("'{host}' is neither an IP address nor a host name"));
    }
    None
}

/// `host:port` (`[v6]:port` for IPv6), the port 1..65535.
fn host_port_problem(text: &str) -> Option<String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Some(if text.is_empty() {
            "required: host:port (like 192.0.2.53:53)".into()
        } else {
            format!("'{text}' has no port: write host:port (like {text}:53)")
        });
    };
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Some(format!(
            "'{text}': write an IPv6 address in brackets ([2001:db8::1]:53)"
        ));
    }
    if let Some(msg) = host_problem(host) {
        return Some(msg);
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => None,
        _ => Some(format!("'{text}': the port must be between 1 and 65535")),
    }
}

/// The host part of `host[:port][/path]`.
fn host_of(url: &str) -> &str {
    let authority = url.split('/').next().unwrap_or(url);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn host_is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// A registry prefix: `[http(s)://]host[:port][/path]`, the path in OCI repository
/// components (lower-case letters, digits, separators `.`, `_`, `-`).
fn registry_url_problem(url: &str) -> Option<String> {
    if url.is_empty() {
        return Some("required: host[:port]/path (like harbor.example.com/gitpod)".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces or control characters".into());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    if rest.contains("://") {
        return Some(format!(
            "'{url}': only http:// or https:// may prefix the registry"
        ));
    }
    if rest.contains('@') || rest.contains('?') || rest.contains('#') {
        return Some(format!(
            "'{url}' is not host[:port]/path (no credentials, query or fragment)"
        ));
    }
    let rest = rest.trim_end_matches('/');
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_ok = if authority.contains(':') && !authority.ends_with(']') {
        host_port_problem(authority)
    } else {
        host_problem(authority)
    };
    if let Some(msg) = host_ok {
        return Some(format!("the registry host: {msg}"));
    }
    for component in path.split('/').filter(|_| !path.is_empty()) {
        let ok = !component.is_empty()
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && component.starts_with(|c: char| c.is_ascii_alphanumeric())
            && component.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Some(format!(
                "path component '{component}': lower-case letters, digits and '.', '_', '-', starting and ending alphanumeric"
            ));
        }
    }
    None
}

/// An S3 endpoint: an http(s) URL with a host, no path, credentials or query.
fn endpoint_problem(endpoint: &str) -> Option<String> {
    if endpoint.is_empty() {
        return Some("required: the endpoint URL (like https://minio.example.com:9000)".into());
    }
    if !endpoint.contains("://") {
        return Some(format!(
            "'{endpoint}' is not a URL: give the scheme (like https://{endpoint})"
        ));
    }
    let url = match url::Url::parse(endpoint) {
        Ok(u) => u,
        Err(e) => {
            return Some(format!(
                "'{endpoint}' is not a URL ({e}); like https://minio.example.com:9000"
            ))
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!("'{endpoint}': the scheme must be https or http"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("must not contain credentials (use accessKeyId/secretAccessKey)".into());
    }
    let host = match url.host() {
        None => return Some(format!("'{endpoint}' has no host")),
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => String::new(),
    };
    if !host.is_empty() {
        if let Some(msg) = host_problem(&host) {
            return Some(msg);
        }
    }
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Some(format!(
            "'{endpoint}': give the endpoint alone, without a path or query (the bucket has its own field)"
        ));
    }
    None
}

/// S3's bucket naming rules (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
fn bucket_problem(b: &str) -> Option<String> {
    let ok_chars = b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !(3..=63).contains(&b.len()) || !ok_chars {
        Some("3-63 characters: lower-case letters, digits, '-' and '.'".into())
    } else if !b.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !b.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some("must start and end with a letter or digit".into())
    } else if b.contains("..") || b.parse::<Ipv4Addr>().is_ok() {
        Some(format!("'{b}' is not allowed as a bucket name"))
    } else {
        None
    }
}

fn dns_label_problem(l: &str) -> Option<&'static str> {
    if l.is_empty() {
        return Some("empty label (two dots in a row?)");
    }
    if l.len() > 63 {
        return Some("longer than 63 characters");
    }
    if !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Some("only letters, digits and '-' are allowed");
    }
    if l.starts_with('-') || l.ends_with('-') {
        return Some("must not start or end with '-'");
    }
    None
}

/// Kubernetes qualified name: `[prefix/]name`.
fn qualified_name_problem(k: &str) -> Option<String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if p.is_empty()
            || p.len() > 253
            || p.split('.').any(|l| dns_label_problem(l).is_some())
            || p.chars().any(|c| c.is_ascii_uppercase())
        {
            return Some(format!("prefix '{p}' is not a lower-case DNS subdomain"));
        }
    }
    if name.is_empty() || name.len() > 63 {
        return Some("the name part must be 1-63 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("the name part allows letters, digits, '-', '_' and '.'".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Some("the name part must start and end with a letter or digit".into());
    }
    None
}

fn label_value_problem(v: &str) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    if v.len() > 63 {
        return Some("at most 63 characters".into());
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || !v.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !v.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Some(format!(
            "'{v}' allows letters, digits, '-', '_', '.', starting and ending alphanumeric"
        ));
    }
    None
}

fn is_gcp_region(r: &str) -> bool {
    let mut parts = r.split('-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) => {
            !a.is_empty()
                && a.chars().all(|c| c.is_ascii_lowercase())
                && b.len() >= 2
                && b.chars().last().is_some_and(|c| c.is_ascii_digit())
                && b.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }
        _ => false,
    }
}

fn is_aws_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    (3..=4).contains(&parts.len())
        && parts[0].len() == 2
        && parts
            .iter()
            .take(parts.len() - 1)
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn is_mysql_identifier(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_email(e: &str) -> bool {
    // RFC 5322 dot-atom local part and a DNS domain with a non-numeric top label.
    let Some((local, domain)) = e.rsplit_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let labels: Vec<&str> = domain.split('.').collect();
    !local.is_empty()
        && local.len() <= 64
        && e.len() <= 254
        && local
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(atext))
        && labels.len() >= 2
        && labels.iter().all(|l| dns_label_problem(l).is_none())
        && labels
            .last()
            .is_some_and(|t| !t.chars().all(|c| c.is_ascii_digit()))
}

fn is_billing_account(b: &str) -> bool {
    let parts: Vec<&str> = b.split('-').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            p.len() == 6
                && p.chars()
                    .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
        })
}

fn is_uuid(u: &str) -> bool {
    let lens = [8, 4, 4, 4, 12];
    let parts: Vec<&str> = u.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip(lens)
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The three RFC 1918 blocks.
fn rfc1918() -> Vec<Ipv4Net> {
    [
        (Ipv4Addr::new(10, 0, 0, 0), 8),
        (Ipv4Addr::new(172, 16, 0, 0), 12),
        (Ipv4Addr::new(192, 168, 0, 0), 16),
    ]
    .into_iter()
    .filter_map(|(a, p)| Ipv4Net::new(a, p).ok())
    .collect()
}

/// The CIDR's text, before parsing: four decimal octets without leading zeros (`010`
/// reads as octal to some tools and as decimal to others) and a prefix likewise.
fn cidr_text_problem(text: &str) -> Option<&'static str> {
    let (addr, prefix) = text.split_once('/')?;
    let no_leading_zero = |p: &str| !(p.is_empty() || p.len() > 1 && p.starts_with('0'));
    if addr.split('.').any(|o| !no_leading_zero(o)) || !no_leading_zero(prefix) {
        return Some("leading zeros are not allowed (write 10.0.0.0/16, not 010.0.0.0/016)");
    }
    None
}

/// The ACME directory URL, parsed: https (plain http only to a loopback host), a valid
/// host, no credentials, no white space.
fn acme_server_problem(server: &str) -> Option<String> {
    if server.is_empty() {
        return Some("required: the ACME directory URL".into());
    }
    if server.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces or control characters".into());
    }
    let url = match url::Url::parse(server) {
        Ok(u) => u,
        Err(e) => {
            return Some(format!(
                "not a URL ({e}); for example {LETS_ENCRYPT_PRODUCTION}"
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Some("must not contain credentials".into());
    }
    let loopback = match url.host() {
        None => return Some("has no host".into()),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            if d != "localhost"
                && (d.split('.').count() < 2
                    || d.split('.').any(|l| dns_label_problem(l).is_some()))
            {
                return Some(format!("'{d}' is not a valid host name"));
            }
            d == "localhost"
        }
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
    };
    match url.scheme() {
        "https" => None,
        "http" if loopback => None,
        "http" => Some(
            "plain http is allowed only for a loopback host (a local test CA); use https".into(),
        ),
        other => Some(format!(
            "scheme '{other}': the ACME directory must be an https URL"
        )),
    }
}

/// User names every MySQL reserves (`mysql.sys` and the like are already refused by
/// the identifier rule), and `admin`, the administrator the providers create.
const COMMON_RESERVED_DB_USERS: &[&str] = &["root", "mysql", "admin"];

/// User names each managed MySQL reserves for itself.
fn reserved_db_users(cloud: Cloud) -> &'static [&'static str] {
    match cloud {
        // Cloud SQL's own users (cloud.google.com/sql/docs/mysql/users, "System users"
        // and "cloudsqlsuperuser").
        Cloud::Gcp => &[
            "cloudsqlsuperuser",
            "cloudsqladmin",
            "cloudsqlagent",
            "cloudsqlreplica",
            "cloudsqlimport",
            "cloudsqlexport",
            "cloudsqloneshot",
            "cloudsqlapplier",
            "cloudsqlobservabilityadmin",
            "cloudsqliamuser",
            "cloudsqliamserviceaccount",
        ],
        // RDS's own users (docs.aws.amazon.com/AmazonRDS/latest/UserGuide/
        // MySQL.Concepts.PredefinedUsers.html) and "admin", the master user's default.
        Cloud::Aws => &[
            "rdsadmin",
            "rdsrepladmin",
            "rdsproxyadmin",
            "rds_superuser_role",
        ],
        // Azure Database for MySQL flexible server: "The admin login name can't be
        // azure_superuser, admin, administrator, root, guest, or public"
        // (learn.microsoft.com/azure/mysql/flexible-server/quickstart-create-server-portal).
        Cloud::Azure => &[
            "azure_superuser",
            "admin",
            "administrator",
            "root",
            "guest",
            "public",
        ],
    }
}

/// Names each cloud's object storage reserves.
fn reserved_bucket_problem(cloud: Cloud, b: &str) -> Option<String> {
    match cloud {
        // docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
        Cloud::Aws => {
            for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
                if b.starts_with(prefix) {
                    return Some(format!("S3 reserves the prefix '{prefix}'"));
                }
            }
            for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
                if b.ends_with(suffix) {
                    return Some(format!("S3 reserves the suffix '{suffix}'"));
                }
            }
            None
        }
        // cloud.google.com/storage/docs/buckets#naming: "cannot begin with the goog
        // prefix", "cannot contain google or close misspellings, such as g00gle".
        Cloud::Gcp => {
            if b.starts_with("goog") {
                return Some("Cloud Storage reserves the prefix 'goog'".into());
            }
            let folded: String = b
                .chars()
                .map(|c| match c {
                    '0' => 'o',
                    '1' => 'l',
                    '3' => 'e',
                    c => c,
                })
                .collect();
            if folded.contains("google") || folded.contains("gogle") || folded.contains("googel") {
                return Some(
                    "Cloud Storage names must not contain 'google' or a close misspelling".into(),
                );
            }
            if b.starts_with("xn--") {
                return Some("punycode prefix 'xn--' is not allowed".into());
            }
            None
        }
        // Azure blob container names: lower-case letters, digits and single '-'
        // (learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata).
        Cloud::Azure => {
            if b.contains('.') || b.contains("--") {
                return Some(
                    "Azure container names allow letters, digits and single '-' only".into(),
                );
            }
            None
        }
    }
}
