//! Does the parent zone really delegate to the zone's name servers?
//!
//! A zone created in Cloud DNS, Route53 or Azure DNS answers nothing to the world until
//! its **parent** zone (often at a registrar, or another team's DNS) holds NS records
//! that point at the zone's name servers. Without them a DNS-01 challenge is never seen
//! by the ACME server and the certificate never issues. [`DelegationCheck::check`] asks
//! the parent zone's own authoritative servers, directly and without recursion, what
//! they delegate the zone to, and [`Delegation`] says exactly which NS records to add or
//! remove at the parent.
//!
//! # How the check works
//!
//! 1. The zone name and the expected name servers are validated (no query is made for
//!    an invalid name: [`ErrorKind::InvalidInput`]).
//! 2. The **parent zone** is found through the configured resolvers, walking up the
//!    labels of the zone: an SOA query for each ancestor until one is a zone apex (an SOA
//!    in the answer) or the answer names the enclosing zone (an SOA in the authority
//!    section).
//! 3. The parent's name servers come from an NS query for the parent, and their
//!    addresses from the glue in that answer or from A (then AAAA) queries.
//! 4. Each of the parent's name servers is asked, **directly and non-recursively**
//!    (RD=0), for the NS records of the zone, on the
//!    [authoritative port](DelegationCheck::authoritative_port) (53 unless configured).
//!    A referral (NS records for the zone in the authority section) counts as a
//!    delegation, as do NS records in the answer.
//! 5. The names found are compared with the expected ones, case-insensitively and
//!    ignoring a trailing dot.
//!
//! Queries go over UDP (with EDNS, 1232 bytes), and over TCP when an answer is truncated.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gitpod_refarch::{Error, ErrorKind, Result};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The resolver configuration read when no name servers are set explicitly.
pub const SYSTEM_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The standard DNS port, the default [authoritative port](DelegationCheck::authoritative_port).
pub const DNS_PORT: u16 = 53;

/// Largest UDP answer we advertise (EDNS); the value recommended by DNS Flag Day 2020.
const UDP_PAYLOAD: u16 = 1232;

/// Configuration of the delegation check; build it with [`DelegationCheck::new`] and the
/// setters, then call [`check`](DelegationCheck::check).
///
/// ```
/// use gitpod_refarch_bootstrap::DelegationCheck;
/// use std::time::Duration;
///
/// let check = DelegationCheck::new()
///     .name_servers(["127.0.0.1:5353".parse().unwrap()])
///     .authoritative_port(5353)
///     .timeout(Duration::from_millis(500))
///     .attempts(3);
/// # let _ = check;
/// ```
#[derive(Debug, Clone)]
pub struct DelegationCheck {
    resolvers: Resolvers,
    timeout: Duration,
    attempts: u32,
    authoritative_port: u16,
}

/// Where the resolvers come from.
#[derive(Debug, Clone)]
enum Resolvers {
    /// `nameserver` lines of a resolv.conf file, read at each check.
    ResolvConf(PathBuf),
    /// Explicit addresses.
    Explicit(Vec<SocketAddr>),
}

impl Default for DelegationCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl DelegationCheck {
    /// A check with the system resolvers (the `nameserver` lines of
    /// [`/etc/resolv.conf`](SYSTEM_RESOLV_CONF), port 53), a 2 s timeout per query
    /// attempt, 2 attempts, and authoritative servers on port 53.
    pub fn new() -> Self {
        Self {
            resolvers: Resolvers::ResolvConf(PathBuf::from(SYSTEM_RESOLV_CONF)),
            timeout: Duration::from_secs(2),
            attempts: 2,
            authoritative_port: DNS_PORT,
        }
    }

    /// Use these resolvers (tried in order) instead of the system configuration, to find
    /// the parent zone, its name servers and their addresses. They must answer recursive
    /// queries for those names, or be authoritative for them (as in tests).
    pub fn name_servers(mut self, servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.resolvers = Resolvers::Explicit(servers.into_iter().collect());
        self
    }

    /// Read the resolvers from this resolv.conf-style file (its `nameserver` lines, port
    /// 53) instead of [`/etc/resolv.conf`](SYSTEM_RESOLV_CONF). The file is read at each
    /// [`check`](Self::check).
    pub fn resolv_conf(mut self, path: impl AsRef<Path>) -> Self {
        self.resolvers = Resolvers::ResolvConf(path.as_ref().to_path_buf());
        self
    }

    /// How long to wait for the answer to one query attempt (default 2 s). A server that
    /// never answers costs at most `timeout × attempts`; the parent's servers are asked
    /// concurrently.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many times to send each query before giving up on a server (default 2; at
    /// least 1).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The port on which the parent zone's authoritative servers are asked (default
    /// [53](DNS_PORT)). Only tests need another one: there the parent's name server
    /// (say `ns1.example.test`, address 127.0.0.1) is a local `named` on a random port,
    /// which its address records cannot express.
    pub fn authoritative_port(mut self, port: u16) -> Self {
        self.authoritative_port = port;
        self
    }

    /// Checks that the parent zone of `zone` delegates it to exactly
    /// `expected_name_servers` (the name servers the DNS provider assigned to the zone).
    ///
    /// Names are compared case-insensitively, with or without a trailing dot; the names
    /// in the returned [`Delegation`] are lower case and end with a dot. When the parent's
    /// servers do not all answer the same, the names any of them returned are used.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::InvalidInput`]: `zone` or a name server is not a valid host name,
    ///   `zone` has a single label, `expected_name_servers` is empty, or no resolver is
    ///   configured. Nothing is sent.
    /// - [`ErrorKind::Transient`]: no resolver answered a lookup, or none of the
    ///   parent's servers answered; the message names each server and what went wrong.
    /// - [`ErrorKind::NotFound`]: no parent zone, or no name server for it, was found.
    pub async fn check(&self, zone: &str, expected_name_servers: &[String]) -> Result<Delegation> {
        let zone_text = normalize(zone, 2).map_err(|why| {
            Error::invalid_input(format!("invalid DNS zone name {zone:?}: {why}"))
        })?;
        if expected_name_servers.is_empty() {
            return Err(Error::invalid_input(format!(
                "no expected name servers given for the zone {zone_text}"
            )));
        }
        let mut expected: Vec<String> = Vec::new();
        for ns in expected_name_servers {
            let ns = normalize(ns, 1).map_err(|why| {
                Error::invalid_input(format!("invalid name server name {ns:?}: {why}"))
            })?;
            if !expected.contains(&ns) {
                expected.push(ns);
            }
        }
        let zone_name = to_name(&zone_text)?;
        let resolvers = self.resolvers()?;

        let parent = self.find_parent(&resolvers, &zone_name).await?;
        let found = self.ask_parent(&resolvers, &parent, &zone_name).await?;
        Ok(compare(zone_text, text(&parent), found, expected))
    }

    /// The addresses `name` resolves to through the configured resolvers (recursive
    /// queries; the A addresses, else the AAAA ones, of the answer, CNAMEs followed by
    /// the resolver). Empty when the name does not exist or has no address. Used by
    /// `verify` to check that the Gitpod names point at the load balancer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for an invalid name or no resolver (nothing is
    /// sent); [`ErrorKind::Transient`] when no resolver answered.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>> {
        let fqdn = normalize(name, 1)
            .map_err(|why| Error::invalid_input(format!("invalid DNS name {name:?}: {why}")))?;
        let name = to_name(&fqdn)?;
        let resolvers = self.resolvers()?;
        for rtype in [RecordType::A, RecordType::AAAA] {
            let answer = self.resolve(&resolvers, &name, rtype).await?;
            let found = addresses_in(answer.answers());
            if !found.is_empty() {
                return Ok(found);
            }
        }
        Ok(Vec::new())
    }

    fn resolvers(&self) -> Result<Vec<SocketAddr>> {
        let servers = match &self.resolvers {
            Resolvers::Explicit(servers) => servers.clone(),
            Resolvers::ResolvConf(path) => {
                let content = std::fs::read_to_string(path).map_err(|e| {
                    Error::invalid_input(format!(
                        "cannot read the resolver configuration {}",
                        path.display()
                    ))
                    .with_source(e)
                })?;
                parse_resolv_conf(&content)
            }
        };
        if servers.is_empty() {
            return Err(Error::invalid_input(match &self.resolvers {
                Resolvers::Explicit(_) => "no resolver configured (empty name server list)".into(),
                Resolvers::ResolvConf(path) => {
                    format!("no usable `nameserver` line in {}", path.display())
                }
            }));
        }
        Ok(servers)
    }

    /// Walks up from the zone's parent name until a zone apex is found.
    async fn find_parent(&self, resolvers: &[SocketAddr], zone: &Name) -> Result<Name> {
        let mut candidate = zone.base_name();
        loop {
            let answer = self.resolve(resolvers, &candidate, RecordType::SOA).await?;
            let is_apex = answer
                .answers()
                .iter()
                .any(|r| r.record_type() == RecordType::SOA && same(r.name(), &candidate));
            if is_apex {
                return Ok(candidate);
            }
            // NODATA or NXDOMAIN: the authority section names the enclosing zone.
            let enclosing = answer
                .name_servers()
                .iter()
                .find(|r| r.record_type() == RecordType::SOA && r.name().zone_of(&candidate))
                .map(|r| r.name().to_lowercase());
            if let Some(enclosing) = enclosing {
                return Ok(enclosing);
            }
            if candidate.is_root() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no parent zone found for {}", text(zone)),
                ));
            }
            candidate = candidate.base_name();
        }
    }

    /// Asks each of the parent's name servers for the zone's NS records; returns the
    /// union of what the servers that answered delegate to.
    async fn ask_parent(
        &self,
        resolvers: &[SocketAddr],
        parent: &Name,
        zone: &Name,
    ) -> Result<BTreeSet<String>> {
        let answer = self.resolve(resolvers, parent, RecordType::NS).await?;
        let mut hosts: Vec<Name> = Vec::new();
        for record in answer.answers() {
            if let RData::NS(ns) = record.data() {
                let host = ns.0.to_lowercase();
                if same(record.name(), parent) && !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
        if hosts.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("the parent zone {} has no NS records", text(parent)),
            ));
        }
        let asks = hosts
            .iter()
            .map(|host| self.ask_parent_server(resolvers, &answer, host, zone, parent));
        let results = futures::future::join_all(asks).await;

        let mut found = BTreeSet::new();
        let mut failures = Vec::new();
        let mut answered = false;
        for result in results {
            match result {
                Ok(names) => {
                    answered = true;
                    found.extend(names);
                }
                Err(why) => failures.push(why),
            }
        }
        if !answered {
            return Err(Error::new(
                ErrorKind::Transient,
                format!(
                    "none of the name servers of the parent zone {} answered for {}: {}",
                    text(parent),
                    text(zone),
                    failures.join("; ")
                ),
            ));
        }
        Ok(found)
    }

    /// One parent name server: its addresses (glue, else A then AAAA lookups), then the
    /// non-recursive NS query, trying each address until one answers.
    async fn ask_parent_server(
        &self,
        resolvers: &[SocketAddr],
        ns_answer: &Message,
        host: &Name,
        zone: &Name,
        parent: &Name,
    ) -> std::result::Result<Vec<String>, String> {
        let mut addresses = glue(ns_answer, host);
        if addresses.is_empty() {
            for rtype in [RecordType::A, RecordType::AAAA] {
                let answer = self
                    .resolve(resolvers, host, rtype)
                    .await
                    .map_err(|e| format!("{}: {}", text(host), e.message()))?;
                addresses = addresses_in(answer.answers());
                if !addresses.is_empty() {
                    break;
                }
            }
        }
        if addresses.is_empty() {
            return Err(format!("{} has no address", text(host)));
        }
        let mut failures = Vec::new();
        for ip in addresses {
            let server = SocketAddr::new(ip, self.authoritative_port);
            let result = match self.query(server, zone, RecordType::NS, false).await {
                Ok(answer) => delegation_in(&answer, zone, parent),
                Err(why) => Err(why),
            };
            match result {
                Ok(names) => return Ok(names),
                Err(why) => failures.push(format!("{} ({server}): {why}", text(host))),
            }
        }
        Err(failures.join("; "))
    }

    /// A recursive query to the resolvers, in order, until one answers usefully.
    async fn resolve(
        &self,
        resolvers: &[SocketAddr],
        name: &Name,
        rtype: RecordType,
    ) -> Result<Message> {
        let mut failures = Vec::new();
        for &server in resolvers {
            match self.query(server, name, rtype, true).await {
                Ok(answer) => match answer.response_code() {
                    ResponseCode::NoError | ResponseCode::NXDomain => return Ok(answer),
                    code => failures.push(format!("resolver {server}: answered {code}")),
                },
                Err(why) => failures.push(format!("resolver {server}: {why}")),
            }
        }
        Err(Error::new(
            ErrorKind::Transient,
            format!(
                "no resolver answered the {rtype} query for {}: {}",
                text(name),
                failures.join("; ")
            ),
        ))
    }

    /// One query to one server: UDP with `attempts` tries of `timeout` each, then TCP if
    /// the answer is truncated.
    async fn query(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
        recursion: bool,
    ) -> std::result::Result<Message, String> {
        let id: u16 = rand::random();
        let mut request = Message::new();
        request
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(recursion)
            .add_query(Query::query(name.clone(), rtype));
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_PAYLOAD);
        request.set_edns(edns);
        let bytes = request
            .to_vec()
            .map_err(|e| format!("cannot encode the query: {e}"))?;

        let mut last = String::new();
        for _ in 0..self.attempts {
            match tokio::time::timeout(self.timeout, udp_exchange(server, &bytes, id)).await {
                Ok(Ok(answer)) if answer.truncated() => {
                    return match tokio::time::timeout(
                        self.timeout,
                        tcp_exchange(server, &bytes, id),
                    )
                    .await
                    {
                        Ok(Ok(answer)) => Ok(answer),
                        Ok(Err(e)) => Err(format!("TCP after a truncated answer: {e}")),
                        Err(_) => Err(format!(
                            "TCP after a truncated answer: timed out after {:?}",
                            self.timeout
                        )),
                    };
                }
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no answer within {:?}", self.timeout),
            }
        }
        Err(format!("{last} ({} attempts)", self.attempts))
    }
}

/// Sends one UDP query and waits for the answer with the same id (other datagrams are
/// ignored).
async fn udp_exchange(server: SocketAddr, request: &[u8], id: u16) -> std::io::Result<Message> {
    let local: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(request).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let len = socket.recv(&mut buf).await?;
        if let Ok(answer) = Message::from_vec(&buf[..len]) {
            if answer.id() == id && answer.message_type() == MessageType::Response {
                return Ok(answer);
            }
        }
    }
}

/// Sends one query over TCP (two-byte length prefix) and reads the answer.
async fn tcp_exchange(server: SocketAddr, request: &[u8], id: u16) -> std::io::Result<Message> {
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidData, msg);
    let len = u16::try_from(request.len()).map_err(|_| invalid("query too long".into()))?;
    let mut stream = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    let answer = Message::from_vec(&buf).map_err(|e| invalid(format!("bad answer: {e}")))?;
    if answer.id() != id {
        return Err(invalid("answer with another id".into()));
    }
    Ok(answer)
}

/// What a parent server's answer says about the zone: the NS names it delegates to
/// (referral in the authority section, or an answer), none if it authoritatively has no
/// delegation, or why the answer is unusable.
fn delegation_in(
    answer: &Message,
    zone: &Name,
    parent: &Name,
) -> std::result::Result<Vec<String>, String> {
    match answer.response_code() {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => return Err(format!("answered {code}")),
    }
    let names: Vec<String> = answer
        .answers()
        .iter()
        .chain(answer.name_servers())
        .filter(|r| same(r.name(), zone))
        .filter_map(|r| match r.data() {
            RData::NS(ns) => Some(text(&ns.0)),
            _ => None,
        })
        .collect();
    if !names.is_empty() || answer.authoritative() {
        return Ok(names);
    }
    Err(format!(
        "not authoritative for {} (answered without the AA flag and without a referral)",
        text(parent)
    ))
}

/// Addresses of `host` in the additional section (glue), IPv4 first.
fn glue(answer: &Message, host: &Name) -> Vec<IpAddr> {
    let records: Vec<_> = answer
        .additionals()
        .iter()
        .filter(|r| same(r.name(), host))
        .cloned()
        .collect();
    addresses_in(&records)
}

/// The A then AAAA addresses among `records`.
fn addresses_in(records: &[hickory_proto::rr::Record]) -> Vec<IpAddr> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for record in records {
        match record.data() {
            RData::A(a) => v4.push(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => v6.push(IpAddr::V6(aaaa.0)),
            _ => {}
        }
    }
    v4.extend(v6);
    v4
}

/// `nameserver` lines of a resolv.conf file, port 53. Scoped IPv6 addresses
/// (`fe80::1%eth0`) are skipped.
fn parse_resolv_conf(content: &str) -> Vec<SocketAddr> {
    content
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .collect()
}

fn same(a: &Name, b: &Name) -> bool {
    a.to_lowercase().eq_case(&b.to_lowercase())
}

/// Lower case, fully qualified (trailing dot).
fn text(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

fn to_name(fqdn: &str) -> Result<Name> {
    Name::from_ascii(fqdn)
        .map_err(|e| Error::invalid_input(format!("invalid DNS name {fqdn:?}")).with_source(e))
}

/// Validates a host name (letters, digits, hyphens; labels of 1 to 63 characters, not
/// starting or ending with a hyphen; at most 253 characters; at least `min_labels`
/// labels) and returns it in lower case with a trailing dot.
fn normalize(input: &str, min_labels: usize) -> std::result::Result<String, String> {
    let trimmed = input.strip_suffix('.').unwrap_or(input);
    if trimmed.is_empty() {
        return Err("empty name".into());
    }
    if trimmed.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    let lower = trimmed.to_ascii_lowercase();
    let labels: Vec<&str> = lower.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err("empty label".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "label {label:?} has a character other than a letter, digit or hyphen"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with a hyphen"));
        }
    }
    if labels.len() < min_labels {
        return Err(format!("needs at least {min_labels} labels"));
    }
    Ok(format!("{lower}."))
}

fn ns_line(zone: &str, ns: &str) -> String {
    format!("{zone} NS {ns}")
}

fn compare(
    zone: String,
    parent: String,
    found: BTreeSet<String>,
    expected: Vec<String>,
) -> Delegation {
    if found.is_empty() {
        let missing = expected.iter().map(|ns| ns_line(&zone, ns)).collect();
        return Delegation::NotDelegated {
            zone,
            parent,
            missing,
        };
    }
    let expected_set: BTreeSet<&String> = expected.iter().collect();
    if found.len() == expected_set.len() && found.iter().all(|ns| expected_set.contains(ns)) {
        return Delegation::Delegated {
            zone,
            parent,
            name_servers: found.into_iter().collect(),
        };
    }
    let to_add = expected
        .iter()
        .filter(|ns| !found.contains(*ns))
        .map(|ns| ns_line(&zone, ns))
        .collect();
    let to_remove = found
        .iter()
        .filter(|ns| !expected_set.contains(ns))
        .map(|ns| ns_line(&zone, ns))
        .collect();
    Delegation::Mismatch {
        zone,
        parent,
        found: found.into_iter().collect(),
        expected,
        to_add,
        to_remove,
    }
}

/// The outcome of a [`DelegationCheck::check`]. Names are lower case with a trailing
/// dot; record lines are zone-file lines such as
/// `gitpod.example.com. NS ns-cloud-a1.googledomains.com.`, to add to (or remove from)
/// the **parent** zone. [`Display`](fmt::Display) tells the user what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delegation {
    /// The parent delegates the zone to exactly the expected name servers.
    #[non_exhaustive]
    Delegated {
        /// The zone checked.
        zone: String,
        /// Its parent zone.
        parent: String,
        /// The name servers the parent delegates to (sorted).
        name_servers: Vec<String>,
    },
    /// The parent has no NS records for the zone.
    #[non_exhaustive]
    NotDelegated {
        /// The zone checked.
        zone: String,
        /// Its parent zone, where the records must be added.
        parent: String,
        /// The NS record lines to add to the parent, one per expected name server.
        missing: Vec<String>,
    },
    /// The parent delegates the zone, but not to exactly the expected name servers.
    #[non_exhaustive]
    Mismatch {
        /// The zone checked.
        zone: String,
        /// Its parent zone, where the records must be changed.
        parent: String,
        /// The name servers the parent delegates to (sorted).
        found: Vec<String>,
        /// The expected name servers (in the order given, without duplicates).
        expected: Vec<String>,
        /// NS record lines to add to the parent.
        to_add: Vec<String>,
        /// NS record lines to remove from the parent.
        to_remove: Vec<String>,
    },
}

impl Delegation {
    /// Whether the parent delegates the zone to exactly the expected name servers.
    pub fn is_delegated(&self) -> bool {
        matches!(self, Self::Delegated { .. })
    }

    /// The zone checked (lower case, trailing dot).
    pub fn zone(&self) -> &str {
        match self {
            Self::Delegated { zone, .. }
            | Self::NotDelegated { zone, .. }
            | Self::Mismatch { zone, .. } => zone,
        }
    }

    /// The parent zone (lower case, trailing dot).
    pub fn parent(&self) -> &str {
        match self {
            Self::Delegated { parent, .. }
            | Self::NotDelegated { parent, .. }
            | Self::Mismatch { parent, .. } => parent,
        }
    }

    /// The NS record lines to add to the parent zone (empty when delegated).
    pub fn records_to_add(&self) -> &[String] {
        match self {
            Self::Delegated { .. } => &[],
            Self::NotDelegated { missing, .. } => missing,
            Self::Mismatch { to_add, .. } => to_add,
        }
    }

    /// The NS record lines to remove from the parent zone (empty unless mismatched).
    pub fn records_to_remove(&self) -> &[String] {
        match self {
            Self::Mismatch { to_remove, .. } => to_remove,
            Self::Delegated { .. } | Self::NotDelegated { .. } => &[],
        }
    }
}

impl fmt::Display for Delegation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delegated {
                zone,
                parent,
                name_servers,
            } => write!(
                f,
                "{zone} is delegated by its parent zone {parent} to {}",
                name_servers.join(", ")
            ),
            Self::NotDelegated {
                zone,
                parent,
                missing,
            } => {
                writeln!(
                    f,
                    "{zone} is not delegated: its parent zone {parent} has no NS records for it, \
                     so nothing in {zone} is visible (and DNS-01 certificates cannot issue)."
                )?;
                write!(
                    f,
                    "Add these records to the parent zone {parent} (where it is hosted, or at \
                     the registrar):"
                )?;
                for line in missing {
                    write!(f, "\n  {line}")?;
                }
                Ok(())
            }
            Self::Mismatch {
                zone,
                parent,
                found,
                expected,
                to_add,
                to_remove,
            } => {
                writeln!(
                    f,
                    "{zone} is delegated by its parent zone {parent} to the wrong name servers."
                )?;
                writeln!(f, "  delegated to: {}", found.join(", "))?;
                write!(f, "  expected:     {}", expected.join(", "))?;
                if !to_add.is_empty() {
                    write!(f, "\nAdd these records to the parent zone {parent}:")?;
                    for line in to_add {
                        write!(f, "\n  {line}")?;
                    }
                }
                if !to_remove.is_empty() {
                    write!(f, "\nRemove these records from the parent zone {parent}:")?;
                    for line in to_remove {
                        write!(f, "\n  {line}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        assert_eq!(
            normalize("Gitpod.Example.COM.", 2).as_deref(),
            Ok("gitpod.example.com.")
        );
        assert_eq!(normalize("a.b", 2).as_deref(), Ok("a.b."));
        for bad in [
            "", ".", "com", "a..b", "-a.b", "a-.b", "a b.c", "a_b.c", "*.a.b", "a.b..",
        ] {
            assert!(normalize(bad, 2).is_err(), "{bad:?} accepted");
        }
        assert!(normalize(&format!("{}.com", "a".repeat(64)), 2).is_err());
    }

    #[test]
    fn parses_resolv_conf() {
        let servers = parse_resolv_conf(
            "# comment\nsearch x\nnameserver 10.0.0.10\nnameserver ::1\nnameserver fe80::1%eth0\noptions ndots:5\n",
        );
        assert_eq!(
            servers,
            vec![
                SocketAddr::from(([10, 0, 0, 10], 53)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 53)),
            ]
        );
    }
}
