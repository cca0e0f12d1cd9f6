//! DNS on the operator's own server by RFC 2136 dynamic updates with TSIG.
//!
//! [`Rfc2136Dns`] is a [`DnsProvider`] for a zone that already exists on a server the
//! platform team runs (BIND, Knot, PowerDNS, ...). It never creates or deletes the
//! zone and never asks for a new identity:
//!
//! | Resource | observe | ensure | delete |
//! |---|---|---|---|
//! | zone | SOA query (RD=0, TCP): the server must answer authoritatively (AA) with the zone's SOA, else `Precondition`; NS query for the name servers | the same (nothing to create) | nothing |
//! | identity | proves the key: a TSIG-signed UPDATE whose only change deletes a TXT set at `_gitpod-refarch-probe.<zone>` that nobody uses (no change on the server, no serial bump) | the same; reports cert-manager's `rfc2136` solver | nothing |
//! | records | A queries for DOMAIN, `*.DOMAIN`, `*.ws.DOMAIN` (RD=0) | one atomic UPDATE that replaces the A and CNAME sets of the three names; none when they already match | one UPDATE that deletes the A and CNAME sets of the three names (nothing else); none when they are absent |
//!
//! Answers to updates: NOTAUTH with a TSIG error = [`ErrorKind::Credentials`] (wrong
//! key name, algorithm, secret or clock), REFUSED = [`ErrorKind::Permission`] (the
//! zone's `update-policy` does not grant the key), no answer = [`ErrorKind::Transient`].
//! The server needs, for this SDK, cert-manager and external-dns:
//!
//! ```text
//! key "gitpod-refarch." { algorithm hmac-sha256; secret "<base64>"; };
//! zone "gitpod.example.com" {
//!     type primary; file "...";
//!     update-policy { grant gitpod-refarch. zonesub ANY; };
//!     allow-transfer { key gitpod-refarch.; };   // external-dns --rfc2136-tsig-axfr
//! };
//! ```
//!
//! The TSIG secret appears in no error, `Debug` output or check; it is in the
//! identity's output (for cert-manager and external-dns), wrapped in [`Secret`].

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress, ProviderInfo};
use gitpod_refarch::resource::{
    Desired, DnsIdentitySpec, DnsRecordsSpec, DnsResource, DnsSolver, DnsZoneSpec, Output,
};
use gitpod_refarch::spec::RecordsTarget;
use gitpod_refarch::verify::{Check, Part, VerifyContext};
use gitpod_refarch::{DnsProvider, Error, ErrorKind, Result, Secret};
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm as HickoryTsigAlgorithm;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

mod wire;

use wire::{Key, Rejected, Wire};

/// TTL of the records the SDK writes.
const RECORD_TTL: u32 = 300;

/// The name whose (absent) TXT set the key proof deletes.
const PROBE_LABEL: &str = "_gitpod-refarch-probe";

/// TSIG algorithms both this crate (hickory) and cert-manager support.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TsigAlgorithm {
    /// `hmac-sha256` (cert-manager `HMACSHA256`).
    #[default]
    HmacSha256,
    /// `hmac-sha512` (cert-manager `HMACSHA512`).
    HmacSha512,
}

impl TsigAlgorithm {
    /// The name in BIND's `key` block and external-dns's flag: `hmac-sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// The name in cert-manager's `rfc2136` solver: `HMACSHA256`.
    pub fn cert_manager_name(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "HMACSHA256",
            TsigAlgorithm::HmacSha512 => "HMACSHA512",
        }
    }

    /// Parses `hmac-sha256`/`HMACSHA256` (any case, optional trailing dot); `None` for
    /// anything else (hmac-md5 and hmac-sha1 are not supported by cert-manager and
    /// this crate together).
    pub fn from_name(name: &str) -> Option<Self> {
        let n: String = name
            .trim()
            .trim_end_matches('.')
            .chars()
            .filter(|c| *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        match n.as_str() {
            "hmacsha256" => Some(TsigAlgorithm::HmacSha256),
            "hmacsha512" => Some(TsigAlgorithm::HmacSha512),
            _ => None,
        }
    }

    fn hickory(self) -> HickoryTsigAlgorithm {
        match self {
            TsigAlgorithm::HmacSha256 => HickoryTsigAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha512 => HickoryTsigAlgorithm::HmacSha512,
        }
    }
}

impl std::fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The zone's server and the key allowed to update it.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// The zone (`gitpod.example.com`), existing on the server.
    pub zone: String,
    /// Where the SDK sends queries and updates (`192.0.2.53:53`, TCP).
    pub server: String,
    /// Where cert-manager and external-dns reach it from the cluster, if different.
    pub cluster_server: Option<String>,
    /// The TSIG key's name (`gitpod-refarch.`).
    pub tsig_key_name: String,
    /// Its algorithm.
    pub tsig_algorithm: TsigAlgorithm,
    /// Its secret, base64 as `tsig-keygen` prints it.
    pub tsig_secret: Secret,
}

impl DnsConfig {
    /// The zone `zone` on `server` (`host:port`), updated with the key
    /// `tsig_key_name`/`tsig_algorithm`/`tsig_secret`; the cluster reaches the same
    /// server (see [`DnsConfig::with_cluster_server`]).
    pub fn new(
        zone: impl Into<String>,
        server: impl Into<String>,
        tsig_key_name: impl Into<String>,
        tsig_algorithm: TsigAlgorithm,
        tsig_secret: Secret,
    ) -> Self {
        DnsConfig {
            zone: zone.into(),
            server: server.into(),
            cluster_server: None,
            tsig_key_name: tsig_key_name.into(),
            tsig_algorithm,
            tsig_secret,
        }
    }

    /// The address cert-manager and external-dns use from inside the cluster.
    #[must_use]
    pub fn with_cluster_server(mut self, server: impl Into<String>) -> Self {
        self.cluster_server = Some(server.into());
        self
    }
}

/// The `DnsProvider` over RFC 2136.
#[derive(Debug)]
pub struct Rfc2136Dns {
    config: DnsConfig,
    wire: Wire,
    timeout: Duration,
}

/// What the server says about the zone.
#[derive(Debug, Clone)]
struct ZoneInfo {
    serial: u32,
    name_servers: Vec<String>,
}

/// One of the records the SDK manages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    A(Ipv4Addr),
    Cname(Name),
}

impl Target {
    fn rdata(&self) -> RData {
        match self {
            Target::A(ip) => RData::A(A(*ip)),
            Target::Cname(n) => RData::CNAME(CNAME(n.clone())),
        }
    }

    fn same(&self, other: &Target) -> bool {
        match (self, other) {
            (Target::A(a), Target::A(b)) => a == b,
            (Target::Cname(a), Target::Cname(b)) => a.eq_ignore_root(b),
            _ => false,
        }
    }

    fn spec(&self) -> RecordsTarget {
        match self {
            Target::A(ip) => RecordsTarget::Ipv4(ip.to_string()),
            Target::Cname(n) => RecordsTarget::Hostname(text(n)),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::A(ip) => write!(f, "A {ip}"),
            Target::Cname(n) => write!(f, "CNAME {}", text(n)),
        }
    }
}

/// The A and CNAME records at one name.
#[derive(Debug, Clone, Default)]
struct AtName {
    records: Vec<Target>,
}

impl AtName {
    fn is(&self, target: &Target) -> bool {
        self.records.len() == 1 && self.records[0].same(target)
    }

    fn describe(&self) -> String {
        if self.records.is_empty() {
            "nothing".into()
        } else {
            self.records
                .iter()
                .map(Target::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// A name without its trailing dot, lower case.
fn text(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// A fully qualified, lower-case name, or `None` if `s` is not a DNS name.
fn fqdn(s: &str) -> Option<Name> {
    let s = s.trim();
    if s.is_empty() || s == "." || s.chars().any(char::is_whitespace) {
        return None;
    }
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    (!n.is_root()).then(|| n.to_lowercase())
}

fn precondition(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Precondition, msg)
}

impl Rfc2136Dns {
    /// A provider for the zone and key in `config` (each exchange gets 10 s).
    pub fn new(config: DnsConfig) -> Self {
        let wire = Wire::new(config.server.clone());
        Rfc2136Dns {
            config,
            wire,
            timeout: Duration::from_secs(10),
        }
    }

    /// The budget of one exchange with the server (connect, send, answer).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Its config.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// How many UPDATE messages this provider has sent (every key proof and every
    /// change of records; a re-apply of unchanged records sends none).
    pub fn updates_sent(&self) -> u64 {
        self.wire.updates_sent()
    }

    /// Checks the config without any network call: the zone and key names, the
    /// server's `host:port` and the secret's base64 (each error names its field).
    pub fn check_config(&self) -> Result<()> {
        self.zone()?;
        self.key()?;
        if let Some(s) = &self.config.cluster_server {
            wire::with_port(s).ok_or_else(|| {
                Error::invalid_input(format!(
                    "dns.clusterServer '{s}' is not host:port (for example 10.0.0.53:53)"
                ))
            })?;
        }
        wire::with_port(&self.config.server).ok_or_else(|| {
            Error::invalid_input(format!(
                "dns.server '{}' is not host:port (for example 192.0.2.53:53)",
                self.config.server
            ))
        })?;
        Ok(())
    }

    fn zone(&self) -> Result<Name> {
        fqdn(&self.config.zone).ok_or_else(|| {
            Error::invalid_input(format!("dns.zone '{}' is not a DNS name", self.config.zone))
        })
    }

    fn zone_text(&self) -> String {
        self.config
            .zone
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase()
    }

    fn key(&self) -> Result<Key> {
        let name = fqdn(&self.config.tsig_key_name).ok_or_else(|| {
            Error::invalid_input(format!(
                "dns.tsigKeyName '{}' is not a DNS name",
                self.config.tsig_key_name
            ))
        })?;
        let b64: String = self
            .config
            .tsig_secret
            .expose()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if b64.is_empty() {
            return Err(Error::invalid_input("dns.tsigSecret is empty"));
        }
        let secret = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| {
                Error::invalid_input(
                    "dns.tsigSecret is not base64 (the `secret` of the server's `key` block, \
                     as tsig-keygen prints it)",
                )
            })?;
        Ok(Key {
            name,
            algorithm: self.config.tsig_algorithm.hickory(),
            secret,
        })
    }

    fn key_text(&self) -> String {
        let k = self.config.tsig_key_name.trim();
        if k.ends_with('.') {
            k.to_string()
        } else {
            format!("{k}.")
        }
    }

    /// The spec's zone must be this provider's zone.
    fn same_zone(&self, what: &str, spec_zone: &str) -> Result<Name> {
        let zone = self.zone()?;
        match fqdn(spec_zone) {
            Some(z) if z.eq_ignore_root(&zone) => Ok(zone),
            _ => Err(Error::invalid_input(format!(
                "{what}: the plan's zone '{spec_zone}' is not dns.zone '{}' of the RFC 2136 provider",
                self.zone_text()
            ))),
        }
    }

    fn not_authoritative(&self, detail: impl std::fmt::Display) -> Error {
        precondition(format!(
            "server {} is not authoritative for zone {} ({detail}): add the zone to the \
             server as a primary zone, or correct dns.zone / dns.server",
            self.config.server,
            self.zone_text()
        ))
    }

    /// SOA (must be authoritative) and NS of the zone.
    async fn read_zone(&self, timeout: Duration) -> Result<ZoneInfo> {
        let zone = self.zone()?;
        let soa = self.wire.query(&zone, RecordType::SOA, timeout).await?;
        if soa.response_code() != ResponseCode::NoError {
            return Err(self.not_authoritative(format!("answered {}", soa.response_code())));
        }
        if !soa.authoritative() {
            return Err(self.not_authoritative("the answer is not authoritative (no AA flag)"));
        }
        let serial = soa
            .answers()
            .iter()
            .filter(|r| r.name().eq_ignore_root(&zone))
            .find_map(|r| match r.data() {
                RData::SOA(s) => Some(s.serial()),
                _ => None,
            })
            .ok_or_else(|| {
                self.not_authoritative(format!(
                    "no SOA record owned by {} in the answer: it is not the zone's apex",
                    self.zone_text()
                ))
            })?;
        let ns = self.wire.query(&zone, RecordType::NS, timeout).await?;
        if ns.response_code() != ResponseCode::NoError || !ns.authoritative() {
            return Err(self.not_authoritative(format!(
                "the NS query answered {}{}",
                ns.response_code(),
                if ns.authoritative() {
                    ""
                } else {
                    " without AA"
                }
            )));
        }
        let mut name_servers: Vec<String> = ns
            .answers()
            .iter()
            .filter(|r| r.name().eq_ignore_root(&zone))
            .filter_map(|r| match r.data() {
                RData::NS(n) => Some(text(&n.0)),
                _ => None,
            })
            .collect();
        name_servers.sort();
        name_servers.dedup();
        Ok(ZoneInfo {
            serial,
            name_servers,
        })
    }

    fn zone_output(&self, info: &ZoneInfo) -> Output {
        Output::DnsZone {
            zone_id: self.zone_text(),
            name_servers: info.name_servers.clone(),
        }
    }

    /// The error for an update the server refused.
    fn rejected(&self, r: Rejected) -> Error {
        let key = self.key_text();
        let zone = self.zone_text();
        match (r.rcode, r.tsig_error) {
            (ResponseCode::NotAuth, Some(e)) if e != 0 => Error::new(
                ErrorKind::Credentials,
                format!(
                    "TSIG rejected by {} for key {key} ({}): check key name, algorithm, \
                     secret and clock skew (fudge 300 s)",
                    self.config.server,
                    wire::tsig_error_name(e)
                ),
            ),
            // Signed with a valid MAC but NOTAUTH: the zone is not the server's.
            (ResponseCode::NotAuth, Some(_)) => {
                self.not_authoritative("it answered NOTAUTH to a signed update")
            }
            (ResponseCode::NotAuth, None) => Error::new(
                ErrorKind::Credentials,
                format!(
                    "TSIG rejected by {} for key {key} (NOTAUTH): check key name, algorithm, \
                     secret and clock skew (fudge 300 s); or the server is not the primary \
                     of zone {zone}",
                    self.config.server
                ),
            ),
            (ResponseCode::Refused, _) => Error::new(
                ErrorKind::Permission,
                format!(
                    "the server's update-policy does not grant key {key} on zone {zone} \
                     ({} answered REFUSED): add `update-policy {{ grant {key} zonesub ANY; }};` \
                     to the zone",
                    self.config.server
                ),
            ),
            (ResponseCode::NotZone, _) => Error::invalid_input(format!(
                "{} answered NOTZONE: a name is outside zone {zone}",
                self.config.server
            )),
            (ResponseCode::ServFail, _) => Error::new(
                ErrorKind::Transient,
                format!(
                    "{} answered SERVFAIL to an update of zone {zone}",
                    self.config.server
                ),
            ),
            (ResponseCode::NXRRSet | ResponseCode::YXRRSet | ResponseCode::NXDomain, _) => self
                .not_authoritative(format!(
                    "the prerequisite that its SOA exists failed ({})",
                    r.rcode
                )),
            (rc, _) => Error::new(
                ErrorKind::OperationFailed,
                format!(
                    "{} answered {rc} to an update of zone {zone}",
                    self.config.server
                ),
            ),
        }
    }

    /// An UPDATE for the zone, without prerequisites or changes yet.
    fn update_message(zone: &Name) -> Message {
        let mut m = Message::new();
        m.set_message_type(MessageType::Query)
            .set_op_code(OpCode::Update)
            .set_recursion_desired(false);
        let mut z = Query::new();
        z.set_name(zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        m.add_zone(z);
        m
    }

    /// RFC 2136 §2.5.2: delete the `rtype` set at `name` (a no-op when absent).
    fn delete_set(name: &Name, rtype: RecordType) -> Record {
        let mut r = Record::update0(name.clone(), 0, rtype);
        r.set_dns_class(DNSClass::ANY);
        r
    }

    async fn send(&self, update: Message, timeout: Duration) -> Result<()> {
        let key = self.key()?;
        match self.wire.update(update, &key, timeout).await? {
            Ok(()) => Ok(()),
            Err(r) => Err(self.rejected(r)),
        }
    }

    /// Proves that the server accepts the key for the zone: an UPDATE whose
    /// prerequisite (the zone's SOA exists) always holds and whose only change deletes
    /// the absent TXT set at `_gitpod-refarch-probe.<zone>` (the server checks its
    /// `update-policy` for it and changes nothing).
    async fn prove_key(&self, timeout: Duration) -> Result<()> {
        let zone = self.zone()?;
        self.key()?;
        let probe = Name::from_ascii(PROBE_LABEL)
            .and_then(|p| p.append_domain(&zone))
            .map_err(|e| {
                Error::invalid_input(format!(
                    "dns.zone '{}' is too long for a probe name: {e}",
                    self.zone_text()
                ))
            })?;
        let mut m = Self::update_message(&zone);
        let mut prereq = Record::update0(zone.clone(), 0, RecordType::SOA);
        prereq.set_dns_class(DNSClass::ANY);
        m.add_pre_requisite(prereq);
        m.add_update(Self::delete_set(&probe, RecordType::TXT));
        self.send(m, timeout).await
    }

    /// Proves that the server lets the key transfer the zone (AXFR, as external-dns
    /// does with `--rfc2136-tsig-axfr`): reads the first message only.
    async fn prove_transfer(&self, timeout: Duration) -> Result<()> {
        let zone = self.zone()?;
        let key = self.key()?;
        match self.wire.transfer_allowed(&zone, &key, timeout).await? {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err(precondition(format!(
                "{} started a transfer of zone {} with no records",
                self.config.server,
                self.zone_text()
            ))),
            Err(r) if r.rcode == ResponseCode::Refused => Err(Error::new(
                ErrorKind::Permission,
                format!(
                    "{} refuses zone transfers (AXFR) of {} to key {}: external-dns reads the \
                     zone that way (--rfc2136-tsig-axfr)",
                    self.config.server,
                    self.zone_text(),
                    self.key_text()
                ),
            )),
            Err(r) => Err(self.rejected(r)),
        }
    }

    fn identity_output(&self) -> Output {
        let nameserver = self
            .config
            .cluster_server
            .clone()
            .unwrap_or_else(|| self.config.server.clone());
        Output::DnsIdentity {
            principal: self.key_text(),
            credentials: Some(self.config.tsig_secret.clone()),
            solver: Some(DnsSolver::Rfc2136 {
                nameserver,
                tsig_key_name: self.key_text(),
                tsig_algorithm: self.config.tsig_algorithm.cert_manager_name().into(),
                tsig_secret: self.config.tsig_secret.clone(),
            }),
        }
    }

    /// The three names, each inside the zone (checked before any message is built).
    fn record_names(&self, spec: &DnsRecordsSpec) -> Result<Vec<Name>> {
        let zone = self.same_zone("dns-records", &spec.zone_dns_name)?;
        if spec.names.is_empty() {
            return Err(Error::invalid_input("dns-records: no names"));
        }
        spec.names
            .iter()
            .map(|s| {
                let n = fqdn(s).ok_or_else(|| {
                    Error::invalid_input(format!("dns-records: '{s}' is not a DNS name"))
                })?;
                if zone.zone_of(&n) {
                    Ok(n)
                } else {
                    Err(Error::invalid_input(format!(
                        "dns-records: {s} is not inside zone {} (dns.zone must be the domain or \
                         a parent of it)",
                        self.zone_text()
                    )))
                }
            })
            .collect()
    }

    /// The wanted record, or `None` for the empty hostname (records no longer wanted).
    fn target(zone: &Name, names: &[Name], t: &RecordsTarget) -> Result<Option<Target>> {
        match t {
            RecordsTarget::Ipv4(ip) => ip
                .trim()
                .parse::<Ipv4Addr>()
                .map(|ip| Some(Target::A(ip)))
                .map_err(|_| {
                    Error::invalid_input(format!(
                        "dns.recordsTarget.ipv4 '{ip}' is not an IPv4 address"
                    ))
                }),
            RecordsTarget::Hostname(h) if h.trim().is_empty() => Ok(None),
            RecordsTarget::Hostname(h) => {
                let n = fqdn(h).ok_or_else(|| {
                    Error::invalid_input(format!(
                        "dns.recordsTarget.hostname '{h}' is not a DNS name"
                    ))
                })?;
                if let Some(apex) = names.iter().find(|n| n.eq_ignore_root(zone)) {
                    return Err(Error::invalid_input(format!(
                        "dns.recordsTarget.hostname: {} is the apex of zone {}, where a CNAME is \
                         not allowed: use an ipv4 target, or set dns.zone to a parent of the domain",
                        text(apex),
                        text(zone)
                    )));
                }
                Ok(Some(Target::Cname(n)))
            }
            _ => Err(Error::invalid_input(
                "dns.recordsTarget: this kind of target is not supported over RFC 2136",
            )),
        }
    }

    /// The A and CNAME records at each name, as the server answers them (RD=0, AA).
    async fn read_records(&self, names: &[Name], timeout: Duration) -> Result<Vec<AtName>> {
        let reads = names.iter().map(|n| self.read_at(n, timeout));
        futures::future::try_join_all(reads).await
    }

    async fn read_at(&self, name: &Name, timeout: Duration) -> Result<AtName> {
        let m = self.wire.query(name, RecordType::A, timeout).await?;
        match m.response_code() {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            rc => {
                return Err(self.not_authoritative(format!("{} answered {rc}", text(name))));
            }
        }
        if !m.authoritative() {
            return Err(
                self.not_authoritative(format!("the answer for {} has no AA flag", text(name)))
            );
        }
        let records = m
            .answers()
            .iter()
            .filter(|r| r.name().eq_ignore_root(name))
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(Target::A(a.0)),
                RData::CNAME(c) => Some(Target::Cname(c.0.clone())),
                _ => None,
            })
            .collect();
        Ok(AtName { records })
    }

    async fn observe_records(
        &self,
        spec: &DnsRecordsSpec,
    ) -> Result<Option<Observed<DnsRecordsSpec>>> {
        let names = self.record_names(spec)?;
        let zone = self.zone()?;
        // A target the spec cannot express is still read (and then replaced or deleted).
        let wanted = Self::target(&zone, &names, &spec.target).ok().flatten();
        let found = self.read_records(&names, self.timeout).await?;
        let Some(first) = found.iter().find_map(|f| f.records.first().cloned()) else {
            return Ok(None);
        };
        let present: Vec<String> = spec
            .names
            .iter()
            .zip(&found)
            .filter(|(_, f)| !f.records.is_empty())
            .map(|(s, _)| s.clone())
            .collect();
        let mut actual = spec.clone();
        actual.names = present.clone();
        let uniform = found
            .iter()
            .filter(|f| !f.records.is_empty())
            .all(|f| f.is(&first));
        actual.target = match &wanted {
            Some(w) if w.same(&first) => spec.target.clone(),
            _ => first.spec(),
        };
        let mut observed = Observed::ready(actual, Some(Output::DnsRecords { names: present }));
        if !uniform {
            let detail: Vec<String> = names
                .iter()
                .zip(&found)
                .map(|(n, f)| format!("{} has {}", text(n), f.describe()))
                .collect();
            observed = observed.with_drift(format!("the records differ: {}", detail.join("; ")));
        }
        Ok(Some(observed))
    }

    async fn ensure_records(&self, spec: &DnsRecordsSpec) -> Result<Progress> {
        let names = self.record_names(spec)?;
        let zone = self.zone()?;
        let target = Self::target(&zone, &names, &spec.target)?
            .ok_or_else(|| Error::invalid_input("dns.recordsTarget.hostname is empty"))?;
        self.key()?;
        let found = self.read_records(&names, self.timeout).await?;
        if !found.iter().all(|f| f.is(&target)) {
            let mut m = Self::update_message(&zone);
            for n in &names {
                m.add_update(Self::delete_set(n, RecordType::A));
                m.add_update(Self::delete_set(n, RecordType::CNAME));
                m.add_update(Record::from_rdata(n.clone(), RECORD_TTL, target.rdata()));
            }
            self.send(m, self.timeout).await?;
            // A server may ignore a change it does not allow and still answer NOERROR
            // (BIND: a CNAME next to other data): read back.
            let after = self.read_records(&names, self.timeout).await?;
            if let Some((n, f)) = names.iter().zip(&after).find(|(_, f)| !f.is(&target)) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{} accepted the update but {} has {} instead of {target}: another \
                         record at that name (a CNAME cannot coexist with other data) or a \
                         server rule kept it; remove it, or use an ipv4 target",
                        self.config.server,
                        text(n),
                        f.describe()
                    ),
                ));
            }
        }
        Ok(Progress::Done(Some(Output::DnsRecords {
            names: spec.names.clone(),
        })))
    }

    async fn delete_records(&self, spec: &DnsRecordsSpec) -> Result<Progress> {
        let names = self.record_names(spec)?;
        let zone = self.zone()?;
        self.key()?;
        let found = self.read_records(&names, self.timeout).await?;
        if found.iter().any(|f| !f.records.is_empty()) {
            let mut m = Self::update_message(&zone);
            for n in &names {
                m.add_update(Self::delete_set(n, RecordType::A));
                m.add_update(Self::delete_set(n, RecordType::CNAME));
            }
            self.send(m, self.timeout).await?;
        }
        Ok(Progress::Done(None))
    }

    async fn observe_zone(&self, spec: &DnsZoneSpec) -> Result<Observed<DnsZoneSpec>> {
        self.same_zone("dns-zone", &spec.dns_name)?;
        let info = self.read_zone(self.timeout).await?;
        let mut actual = spec.clone();
        if spec.server.is_some() {
            actual.server = Some(self.config.server.clone());
        }
        Ok(Observed::ready(actual, Some(self.zone_output(&info))))
    }

    async fn observe_identity(&self, spec: &DnsIdentitySpec) -> Result<Observed<DnsIdentitySpec>> {
        self.same_zone("dns-identity", &spec.zone_dns_name)?;
        self.prove_key(self.timeout).await?;
        Ok(Observed::ready(spec.clone(), Some(self.identity_output())))
    }
}

#[async_trait]
impl DnsProvider for Rfc2136Dns {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("rfc2136").with_self_managed(true)
    }

    async fn observe(&self, resource: &DnsResource) -> Result<Option<Observed<DnsResource>>> {
        Ok(match resource {
            DnsResource::Zone(z) => Some(self.observe_zone(z).await?.map(DnsResource::Zone)),
            DnsResource::Identity(i) => {
                Some(self.observe_identity(i).await?.map(DnsResource::Identity))
            }
            DnsResource::Records(r) => self
                .observe_records(r)
                .await?
                .map(|o| o.map(DnsResource::Records)),
        })
    }

    async fn ensure(&self, resource: &DnsResource, _inputs: &Inputs) -> Result<Progress> {
        match resource {
            DnsResource::Zone(z) => {
                let o = self.observe_zone(z).await?;
                Ok(Progress::Done(o.output))
            }
            DnsResource::Identity(i) => {
                self.same_zone("dns-identity", &i.zone_dns_name)?;
                self.prove_key(self.timeout).await?;
                Ok(Progress::Done(Some(self.identity_output())))
            }
            DnsResource::Records(r) => self.ensure_records(r).await,
        }
    }

    async fn delete(&self, resource: &DnsResource) -> Result<Progress> {
        match resource {
            // The zone and the key belong to the operator: nothing to delete.
            DnsResource::Zone(_) | DnsResource::Identity(_) => Ok(Progress::Done(None)),
            DnsResource::Records(r) => self.delete_records(r).await,
        }
    }

    async fn poll(&self, op: &Operation) -> Result<Progress> {
        Err(Error::internal(format!(
            "the RFC 2136 provider starts no operations (asked to poll '{}')",
            op.id
        )))
    }
}

/// The verify checks of the self-managed DNS server: `dns.zone` (the server answers
/// authoritatively for the zone), `dns.tsig` (it accepts the key for an update),
/// `dns.transfer` (it lets the key transfer the zone, as external-dns needs) and
/// `dns.records-at-server` (the three names point at the spec's target, when it has one).
pub(crate) async fn checks(
    dns: &Rfc2136Dns,
    ctx: &VerifyContext<'_>,
    reach: &crate::reach::Reach,
) -> Vec<Check> {
    let zone = dns.zone_text();
    let server = dns.config.server.clone();
    let what = format!("DNS server {server}");
    let mut out = Vec::new();

    let t = Instant::now();
    let zone_check = match dns.read_zone(reach.timeout).await {
        Ok(info) => Check::pass(
            "dns.zone",
            Part::Dns,
            format!(
                "{server} is authoritative for {zone} (SOA serial {}, NS {})",
                info.serial,
                info.name_servers.join(", ")
            ),
        ),
        Err(e) => error_check("dns.zone", &what, e, reach).fix(
            "add the zone to the server as a primary zone (`zone \"...\" { type primary; ... }`), \
             or correct dns.zone / dns.server",
        ),
    };
    let zone_ok = zone_check.passed();
    out.push(zone_check.took(t.elapsed()));

    let t = Instant::now();
    let key = dns.key_text();
    let tsig = match dns.prove_key(reach.timeout).await {
        Ok(()) => Check::pass(
            "dns.tsig",
            Part::Dns,
            format!(
                "{server} accepts key {key} ({}) for updates of {zone}",
                dns.config.tsig_algorithm
            ),
        ),
        Err(e) => {
            let fix = match e.kind() {
                ErrorKind::Credentials => format!(
                    "make dns.tsigKeyName, dns.tsigAlgorithm and dns.tsigSecret match the \
                     server's `key \"{key}\"` block, and sync both clocks (NTP): skew over \
                     300 s is rejected"
                ),
                ErrorKind::Permission => format!(
                    "grant the key in the zone: `update-policy {{ grant {key} zonesub ANY; }};` \
                     and `allow-transfer {{ key {key}; }};` (external-dns reads the zone by AXFR)"
                ),
                _ => "add the zone to the server as a primary zone, or correct dns.zone / \
                      dns.server"
                    .to_string(),
            };
            error_check("dns.tsig", &what, e, reach).fix(fix)
        }
    };
    let tsig_ok = tsig.passed();
    out.push(tsig.took(t.elapsed()));

    let t = Instant::now();
    let transfer = if !tsig_ok {
        Check::skipped(
            "dns.transfer",
            Part::Dns,
            "the server does not accept the key (see dns.tsig)",
        )
    } else {
        match dns.prove_transfer(reach.timeout).await {
            Ok(()) => Check::pass(
                "dns.transfer",
                Part::Dns,
                format!(
                    "{server} allows key {key} to transfer {zone} (AXFR), as external-dns does"
                ),
            ),
            Err(e) => error_check("dns.transfer", &what, e, reach).fix(format!(
                "allow the key to transfer the zone: `allow-transfer {{ key {key}; }};` in zone \
                 \"{zone}\""
            )),
        }
    };
    out.push(transfer.took(t.elapsed()));

    let t = Instant::now();
    let records = records_check(dns, ctx, reach, zone_ok, &what).await;
    out.push(records.took(t.elapsed()));
    out
}

/// The wanted records of the plan (names and target), if the spec has a target.
fn wanted_records(ctx: &VerifyContext<'_>) -> Option<DnsRecordsSpec> {
    gitpod_refarch::plan::graph(ctx.spec)
        .into_iter()
        .find_map(|n| match n.desired {
            Desired::DnsRecords(r) => Some(r),
            _ => None,
        })
}

async fn records_check(
    dns: &Rfc2136Dns,
    ctx: &VerifyContext<'_>,
    reach: &crate::reach::Reach,
    zone_ok: bool,
    what: &str,
) -> Check {
    const ID: &str = "dns.records-at-server";
    let Some(spec) = wanted_records(ctx) else {
        return Check::skipped(
            ID,
            Part::Dns,
            "records come from external-dns once Gitpod's proxy has a load balancer; the \
             cluster verifier checks them",
        );
    };
    if !zone_ok {
        return Check::skipped(ID, Part::Dns, "the zone check failed");
    }
    let prepared = dns.record_names(&spec).and_then(|names| {
        let zone = dns.zone()?;
        let target = Rfc2136Dns::target(&zone, &names, &spec.target)?
            .ok_or_else(|| Error::invalid_input("dns.recordsTarget.hostname is empty"))?;
        Ok((names, target))
    });
    let (names, target) = match prepared {
        Ok(p) => p,
        Err(e) => {
            return Check::fail(
                ID,
                Part::Dns,
                e.message().to_string(),
                "the spec's records cannot be written",
            )
            .fix("correct dns.recordsTarget or dns.zone");
        }
    };
    match dns.read_records(&names, reach.timeout).await {
        Ok(found) => {
            let wrong: Vec<String> = names
                .iter()
                .zip(&found)
                .filter(|(_, f)| !f.is(&target))
                .map(|(n, f)| format!("{} has {}", text(n), f.describe()))
                .collect();
            if wrong.is_empty() {
                Check::pass(
                    ID,
                    Part::Dns,
                    format!(
                        "{} point at {target} on {}",
                        names.iter().map(text).collect::<Vec<_>>().join(", "),
                        dns.config.server
                    ),
                )
            } else {
                Check::fail(
                    ID,
                    Part::Dns,
                    format!("expected {target}: {}", wrong.join("; ")),
                    "Gitpod's URLs and workspaces would not reach its proxy",
                )
                .fix("run apply again (it writes the three records), and check that nothing else changes them")
            }
        }
        Err(e) => error_check(ID, what, e, reach)
            .fix("check that the server answers queries for the zone"),
    }
}

/// A failed check from an error (unreachable: per `reach`).
fn error_check(id: &str, what: &str, e: Error, reach: &crate::reach::Reach) -> Check {
    if e.kind() == ErrorKind::Transient {
        return reach.unreachable(id, Part::Dns, what, e.message());
    }
    Check::fail(
        id,
        Part::Dns,
        e.message().to_string(),
        match e.kind() {
            ErrorKind::Credentials => {
                "cert-manager and external-dns sign with this key: their updates would be rejected"
            }
            ErrorKind::Permission => {
                "cert-manager (DNS-01 TXT records) and external-dns could not change the zone"
            }
            _ => "Gitpod's names and certificates live in this zone on this server",
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn algorithm_names() {
        for (s, a) in [
            ("hmac-sha256", TsigAlgorithm::HmacSha256),
            ("HMACSHA256", TsigAlgorithm::HmacSha256),
            ("hmac-sha512.", TsigAlgorithm::HmacSha512),
        ] {
            assert_eq!(TsigAlgorithm::from_name(s), Some(a));
        }
        assert_eq!(TsigAlgorithm::from_name("hmac-md5"), None);
        assert_eq!(TsigAlgorithm::HmacSha512.cert_manager_name(), "HMACSHA512");
    }

    fn provider(zone: &str, secret: &str) -> Rfc2136Dns {
        Rfc2136Dns::new(DnsConfig::new(
            zone,
            "127.0.0.1:1",
            "k.",
            TsigAlgorithm::HmacSha256,
            Secret::new(secret.into()),
        ))
    }

    #[test]
    fn names_outside_the_zone_and_apex_cnames_are_refused_before_any_call() {
        let p = provider("example.test", "c2VjcmV0");
        let spec = DnsRecordsSpec::new(
            "i",
            "example.test",
            vec!["gitpod.other.test".into()],
            RecordsTarget::Ipv4("192.0.2.1".into()),
        );
        let e = p.record_names(&spec).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("not inside zone example.test"), "{e}");

        let zone = p.zone().unwrap();
        let names = vec![
            fqdn("example.test").unwrap(),
            fqdn("*.example.test").unwrap(),
        ];
        let e = Rfc2136Dns::target(
            &zone,
            &names,
            &RecordsTarget::Hostname("lb.example.net".into()),
        )
        .unwrap_err();
        assert!(e.message().contains("apex"), "{e}");
    }

    #[test]
    fn a_bad_secret_is_invalid_input_without_its_value() {
        let p = provider("example.test", "not base64 !!! value-xyz");
        let e = p.check_config().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("dns.tsigSecret"));
        assert!(!e.message().contains("value-xyz"));
        assert!(!format!("{p:?}").contains("value-xyz"));
    }
}
