//! DNS messages over TCP: plain queries (RD=0) and RFC 2136 updates signed with TSIG.
//!
//! One TCP connection per exchange (two-byte length prefix, RFC 1035 §4.2.2), so an
//! answer is never truncated. An update's answer is checked in this order: its
//! response code first (a server that rejects the signature answers unsigned, so the
//! TSIG verifier would only say "no signature"), then, for NOERROR, its TSIG.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gitpod_refarch::{Error, ErrorKind, Result};
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm as HickoryTsigAlgorithm;
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The TSIG fudge (seconds of clock skew the server accepts), as BIND and
/// cert-manager use.
pub(crate) const FUDGE: u16 = 300;

/// A parsed key: the name, algorithm and decoded secret (never printed).
pub(crate) struct Key {
    pub(crate) name: Name,
    pub(crate) algorithm: HickoryTsigAlgorithm,
    pub(crate) secret: Vec<u8>,
}

impl Drop for Key {
    fn drop(&mut self) {
        self.secret.iter_mut().for_each(|b| *b = 0);
    }
}

/// How the server answered an update it did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// The response code.
    pub(crate) rcode: ResponseCode,
    /// The TSIG error of the answer (16 BADSIG, 17 BADKEY, 18 BADTIME), if it had one.
    pub(crate) tsig_error: Option<u16>,
}

/// The connection settings of one server, and a count of the updates sent to it.
#[derive(Debug)]
pub(crate) struct Wire {
    /// `host:port` as given (for messages).
    pub(crate) server: String,
    updates: AtomicU64,
}

impl Wire {
    pub(crate) fn new(server: String) -> Self {
        Wire {
            server,
            updates: AtomicU64::new(0),
        }
    }

    /// UPDATE messages sent so far.
    pub(crate) fn updates_sent(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    fn transport(&self, what: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Transient,
            format!("DNS server {}: {what}", self.server),
        )
    }

    async fn address(&self) -> Result<SocketAddr> {
        let target = with_port(&self.server).ok_or_else(|| {
            Error::invalid_input(format!(
                "dns.server '{}' is not host:port (for example 192.0.2.53:53)",
                self.server
            ))
        })?;
        let mut addrs = tokio::net::lookup_host(target.as_str())
            .await
            .map_err(|e| self.transport(format!("cannot resolve: {e}")))?;
        addrs
            .next()
            .ok_or_else(|| self.transport("the name has no address"))
    }

    /// Sends `request` (already encoded) and returns the answer and its bytes.
    async fn exchange(
        &self,
        request: &[u8],
        id: u16,
        timeout: Duration,
    ) -> Result<(Message, Vec<u8>)> {
        let addr = self.address().await?;
        let len = u16::try_from(request.len())
            .map_err(|_| Error::internal("DNS message longer than 65535 bytes"))?;
        let io = async {
            let mut stream = TcpStream::connect(addr).await?;
            let mut framed = Vec::with_capacity(request.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(request);
            stream.write_all(&framed).await?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf).await?;
            std::io::Result::Ok(buf)
        };
        let buf = match tokio::time::timeout(timeout, io).await {
            Ok(Ok(buf)) => buf,
            Ok(Err(e)) => return Err(self.transport(e)),
            Err(_) => {
                return Err(self.transport(format!(
                    "no answer over TCP within {} ms",
                    timeout.as_millis()
                )));
            }
        };
        let answer = Message::from_vec(&buf).map_err(|e| {
            Error::new(
                ErrorKind::OperationFailed,
                format!("DNS server {} sent an unreadable answer: {e}", self.server),
            )
        })?;
        if answer.id() != id || answer.message_type() != MessageType::Response {
            return Err(Error::new(
                ErrorKind::OperationFailed,
                format!(
                    "DNS server {} answered with another message id",
                    self.server
                ),
            ));
        }
        Ok((answer, buf))
    }

    /// One query for `name`/`rtype` without recursion.
    pub(crate) async fn query(
        &self,
        name: &Name,
        rtype: RecordType,
        timeout: Duration,
    ) -> Result<Message> {
        let mut m = Message::new();
        let id: u16 = rand::random();
        m.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(false);
        m.add_query(Query::query(name.clone(), rtype));
        let wire = m
            .to_vec()
            .map_err(|e| Error::internal(format!("cannot encode a DNS query: {e}")))?;
        Ok(self.exchange(&wire, id, timeout).await?.0)
    }

    /// Signs `update` with `key`, sends it and checks the answer: `Ok(Ok(()))` when
    /// applied (and the answer's TSIG verifies), `Ok(Err(rejected))` when the server
    /// refused it.
    pub(crate) async fn update(
        &self,
        update: Message,
        key: &Key,
        timeout: Duration,
    ) -> Result<std::result::Result<(), Rejected>> {
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.signed(update, key, timeout)
            .await
            .map(|r| r.map(|_| ()))
    }

    /// Asks for a zone transfer (AXFR) of `zone` signed with `key` and reads the
    /// first message only: `Ok(Ok(records))` when the server starts the transfer
    /// (its first message verifies), `Ok(Err(rejected))` when it refuses.
    pub(crate) async fn transfer_allowed(
        &self,
        zone: &Name,
        key: &Key,
        timeout: Duration,
    ) -> Result<std::result::Result<usize, Rejected>> {
        let mut m = Message::new();
        m.set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(false);
        m.add_query(Query::query(zone.clone(), RecordType::AXFR));
        Ok(self
            .signed(m, key, timeout)
            .await?
            .map(|answer| answer.answers().len()))
    }

    /// Signs `request` with `key`, sends it and checks the (first) answer: its
    /// response code first, then, for NOERROR, its TSIG.
    async fn signed(
        &self,
        mut request: Message,
        key: &Key,
        timeout: Duration,
    ) -> Result<std::result::Result<Message, Rejected>> {
        let id: u16 = rand::random();
        request.set_id(id);
        let signer = TSigner::new(
            key.secret.clone(),
            key.algorithm.clone(),
            key.name.clone(),
            FUDGE,
        )
        .map_err(|e| Error::invalid_input(format!("dns.tsigAlgorithm: {e}")))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u32::try_from(d.as_secs()).ok())
            .ok_or_else(|| Error::internal("the system clock is outside the TSIG range"))?;
        let verifier = request
            .finalize(&signer, now)
            .map_err(|e| Error::internal(format!("cannot sign the DNS message: {e}")))?;
        let wire = request
            .to_vec()
            .map_err(|e| Error::internal(format!("cannot encode the DNS message: {e}")))?;
        let (answer, raw) = self.exchange(&wire, id, timeout).await?;
        let rcode = answer.response_code();
        if rcode != ResponseCode::NoError {
            return Ok(Err(Rejected {
                rcode,
                tsig_error: tsig_error(&answer),
            }));
        }
        let Some(mut verify) = verifier else {
            return Err(Error::internal("TSIG signing gave no verifier"));
        };
        verify(&raw).map_err(|e| {
            Error::new(
                ErrorKind::Credentials,
                format!(
                    "DNS server {} answered but its answer's TSIG does not verify with key {} \
                     ({e}): is another server answering on this address?",
                    self.server, key.name
                ),
            )
        })?;
        Ok(Ok(answer))
    }
}

/// `server` with a port: `host:port`, `[v6]:port`, a bare IP or host (port 53).
pub(crate) fn with_port(server: &str) -> Option<String> {
    let s = server.trim();
    if s.is_empty() || s.contains('/') || s.chars().any(char::is_whitespace) {
        return None;
    }
    if s.parse::<SocketAddr>().is_ok() {
        return Some(s.to_string());
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, 53).to_string());
    }
    if let Some(v6) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| SocketAddr::new(ip.into(), 53).to_string());
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            (!host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok_and(|p| p > 0))
                .then(|| s.to_string())
        }
        None => Some(format!("{s}:53")),
    }
}

/// The error field of the answer's TSIG record (hickory 0.25 keeps it private: read
/// it from the record's wire form: algorithm name, time (6), fudge (2), MAC size (2),
/// MAC, original id (2), error (2)).
fn tsig_error(answer: &Message) -> Option<u16> {
    let record = answer
        .signature()
        .iter()
        .find(|r| r.record_type() == RecordType::TSIG)?;
    let RData::DNSSEC(DNSSECRData::TSIG(tsig)) = record.data() else {
        return None;
    };
    let mut alg = Vec::new();
    tsig.algorithm().emit(&mut BinEncoder::new(&mut alg)).ok()?;
    let mut bytes = Vec::new();
    tsig.emit(&mut BinEncoder::new(&mut bytes)).ok()?;
    let at = alg.len() + 6 + 2 + 2 + tsig.mac().len() + 2;
    let hi = *bytes.get(at)?;
    let lo = *bytes.get(at + 1)?;
    Some(u16::from_be_bytes([hi, lo]))
}

/// A TSIG error's name.
pub(crate) fn tsig_error_name(code: u16) -> String {
    match code {
        16 => "BADSIG: the MAC does not match, so the secret differs from the server's".into(),
        17 => "BADKEY: the server has no key of this name and algorithm".into(),
        18 => "BADTIME: the clocks differ by more than the fudge".into(),
        22 => "BADTRUNC".into(),
        n => format!("TSIG error {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_port;

    #[test]
    fn ports() {
        assert_eq!(with_port("192.0.2.53:53").as_deref(), Some("192.0.2.53:53"));
        assert_eq!(with_port("192.0.2.53").as_deref(), Some("192.0.2.53:53"));
        assert_eq!(
            with_port("[2001:db8::1]:5353").as_deref(),
            Some("[2001:db8::1]:5353")
        );
        assert_eq!(
            with_port("[2001:db8::1]").as_deref(),
            Some("[2001:db8::1]:53")
        );
        assert_eq!(
            with_port("2001:db8::1").as_deref(),
            Some("[2001:db8::1]:53")
        );
        assert_eq!(
            with_port("ns1.example.com").as_deref(),
            Some("ns1.example.com:53")
        );
        assert_eq!(
            with_port("ns1.example.com:5300").as_deref(),
            Some("ns1.example.com:5300")
        );
        for bad in ["", " ", "ns1:0", "ns1:x", "http://ns1", ":53", "a b:53"] {
            assert_eq!(with_port(bad), None, "{bad}");
        }
    }
}
