//! `Rfc2136Dns` against a real BIND 9 (see `support/named.rs`): the zone is read, the
//! TSIG key is proven (right key, wrong secret, unknown key, key without a grant), the
//! three records are written in one update, re-applied with none, switched from A to
//! CNAME and deleted without touching anything else; and the `dns.*` checks of
//! `verify`.
//!
//! Needs bind9: `apt-get install -y --no-install-recommends bind9 bind9-utils`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use gitpod_refarch::installer::InstallerBundle;
use gitpod_refarch::outputs::Outputs;
use gitpod_refarch::provider::{Inputs, Progress};
use gitpod_refarch::resource::{
    Desired, DnsIdentitySpec, DnsRecordsSpec, DnsResource, DnsSolver, DnsZoneSpec, Output,
};
use gitpod_refarch::spec::{Cloud, RecordsTarget, ReferenceArchitecture};
use gitpod_refarch::verify::{CheckStatus, Part, VerifyContext};
use gitpod_refarch::{DnsProvider, ErrorKind, Secret, Verifier};
use gitpod_refarch_selfmanaged::{DataPlaneVerifier, DnsConfig, Rfc2136Dns, TsigAlgorithm};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use support::named::{self, Named, KEY, OTHER_KEY};

/// `gitpod.example.test` inside the parent zone `example.test` (CNAME allowed), with
/// records the SDK must never touch.
const PARENT: (&str, &str) = (
    "example.test",
    "keep IN A 192.0.2.99\n\
     www IN TXT \"hello\"\n\
     _acme-challenge.gitpod IN TXT \"challenge\"\n\
     other.gitpod IN A 192.0.2.98\n",
);
/// The domain is the zone (apex: ipv4 only).
const APEX: (&str, &str) = ("gitpod.apex.test", "");

fn provider(n: &Named, zone: &str, key: &str, secret: Secret) -> Rfc2136Dns {
    Rfc2136Dns::new(DnsConfig::new(
        zone,
        n.server(),
        key,
        TsigAlgorithm::HmacSha256,
        secret,
    ))
}

fn zone_spec(zone: &str, server: &str) -> DnsZoneSpec {
    let spec = ReferenceArchitecture::builder(Cloud::Gcp)
        .name("gitpod")
        .domain(zone)
        .acme_email("ops@example.com")
        .gcp_project("my-project-123")
        .build()
        .expect("valid spec");
    let mut z = gitpod_refarch::plan::graph(&spec)
        .into_iter()
        .find_map(|n| match n.desired {
            Desired::DnsZone(z) => Some(z),
            _ => None,
        })
        .unwrap();
    z.dns_name = zone.into();
    z.server = Some(server.into());
    z
}

fn identity_spec(zone: &str) -> DnsIdentitySpec {
    let spec = ReferenceArchitecture::builder(Cloud::Gcp)
        .name("gitpod")
        .domain(zone)
        .acme_email("ops@example.com")
        .gcp_project("my-project-123")
        .build()
        .expect("valid spec");
    gitpod_refarch::plan::graph(&spec)
        .into_iter()
        .find_map(|n| match n.desired {
            Desired::DnsIdentity(i) => Some(i),
            _ => None,
        })
        .unwrap()
}

fn records(zone: &str, domain: &str, target: RecordsTarget) -> DnsRecordsSpec {
    DnsRecordsSpec::new(
        "gitpod",
        zone,
        vec![
            domain.to_string(),
            format!("*.{domain}"),
            format!("*.ws.{domain}"),
        ],
        target,
    )
}

/// One query over TCP, RD=0: the answer's A/CNAME/TXT/SOA-serial values owned by `name`.
fn dig(n: &Named, name: &str, rtype: RecordType) -> Vec<String> {
    let qname = Name::from_ascii(name).unwrap();
    let mut m = Message::new();
    m.set_id(4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false);
    m.add_query(Query::query(qname.clone(), rtype));
    let wire = m.to_vec().unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", n.port)).unwrap();
    s.write_all(&u16::try_from(wire.len()).unwrap().to_be_bytes())
        .unwrap();
    s.write_all(&wire).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).unwrap();
    let answer = Message::from_vec(&buf).unwrap();
    answer
        .answers()
        .iter()
        .filter(|r| r.name().eq_ignore_root(&qname))
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(format!("A {}", a.0)),
            RData::CNAME(c) => Some(format!("CNAME {}", c.0.to_ascii())),
            RData::TXT(t) => Some(format!("TXT {t}")),
            RData::SOA(s) => Some(format!("SOA {}", s.serial())),
            _ => None,
        })
        .collect()
}

fn serial(n: &Named, zone: &str) -> String {
    dig(n, zone, RecordType::SOA).join(",")
}

fn no_secret(n: &Named, text: &str) {
    for s in [&n.secret, &n.other_secret] {
        assert!(!text.contains(s.expose().as_str()), "secret leaked: {text}");
    }
}

#[tokio::test]
async fn the_zone_is_read_never_created_or_deleted() {
    let n = named::start(&[APEX]);
    let dns = provider(&n, "gitpod.apex.test", KEY, n.secret.clone());
    let zone = DnsResource::Zone(zone_spec("gitpod.apex.test", &n.server()));
    let info = dns.info();
    assert_eq!(info.name, "rfc2136");
    assert!(info.self_managed);

    let observed = dns.observe(&zone).await.unwrap().expect("the zone exists");
    let want = Output::DnsZone {
        zone_id: "gitpod.apex.test".into(),
        name_servers: vec!["ns1.gitpod.apex.test".into(), "ns2.gitpod.apex.test".into()],
    };
    assert_eq!(observed.output.as_ref(), Some(&want));
    assert_eq!(
        observed.actual, zone,
        "observed as desired: no change planned"
    );
    let Progress::Done(out) = dns.ensure(&zone, &Inputs::default()).await.unwrap() else {
        panic!("pending")
    };
    assert_eq!(out, Some(want));
    let Progress::Done(None) = dns.delete(&zone).await.unwrap() else {
        panic!("delete reports an output")
    };
    assert_eq!(
        serial(&n, "gitpod.apex.test"),
        "SOA 1",
        "the zone is untouched"
    );
    assert_eq!(dns.updates_sent(), 0);
}

#[tokio::test]
async fn a_zone_the_server_does_not_serve_is_a_precondition() {
    let n = named::start(&[APEX]);
    let dns = provider(&n, "absent.test", KEY, n.secret.clone());
    let e = dns
        .observe(&DnsResource::Zone(zone_spec("absent.test", &n.server())))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Precondition, "{e}");
    assert!(
        e.message().contains(&format!(
            "server {} is not authoritative for zone absent.test",
            n.server()
        )),
        "{e}"
    );
    // The update for a zone it does not serve: also a precondition, not a key problem.
    let e = dns
        .ensure(
            &DnsResource::Identity(identity_spec("absent.test")),
            &Inputs::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Precondition, "{e}");
    assert!(
        e.message()
            .contains("not authoritative for zone absent.test"),
        "{e}"
    );
    // A name inside a served zone is not its apex.
    let dns = provider(&n, "sub.gitpod.apex.test", KEY, n.secret.clone());
    let e = dns
        .observe(&DnsResource::Zone(zone_spec(
            "sub.gitpod.apex.test",
            &n.server(),
        )))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Precondition, "{e}");
}

#[tokio::test]
async fn the_identity_proves_the_key_and_reports_the_solver() {
    let n = named::start(&[APEX]);
    let dns = Rfc2136Dns::new(
        DnsConfig::new(
            "gitpod.apex.test",
            n.server(),
            KEY,
            TsigAlgorithm::HmacSha256,
            n.secret.clone(),
        )
        .with_cluster_server("10.0.0.53:53"),
    );
    let identity = DnsResource::Identity(identity_spec("gitpod.apex.test"));
    let Progress::Done(Some(out)) = dns.ensure(&identity, &Inputs::default()).await.unwrap() else {
        panic!("no output")
    };
    let Output::DnsIdentity {
        principal,
        credentials,
        solver:
            Some(DnsSolver::Rfc2136 {
                nameserver,
                tsig_key_name,
                tsig_algorithm,
                tsig_secret,
            }),
    } = out
    else {
        panic!("not an rfc2136 identity: {out:?}")
    };
    assert_eq!(principal, KEY);
    assert_eq!(credentials.as_ref(), Some(&n.secret));
    assert_eq!(nameserver, "10.0.0.53:53");
    assert_eq!(tsig_key_name, KEY);
    assert_eq!(tsig_algorithm, "HMACSHA256");
    assert_eq!(tsig_secret, n.secret);
    assert_eq!(dns.updates_sent(), 1, "one UPDATE proves the key");
    assert_eq!(
        serial(&n, "gitpod.apex.test"),
        "SOA 1",
        "the proof changes nothing"
    );

    let observed = dns.observe(&identity).await.unwrap().unwrap();
    assert_eq!(observed.actual, identity);
    assert!(observed.output.is_some());
    let Progress::Done(None) = dns.delete(&identity).await.unwrap() else {
        panic!("delete reports an output")
    };
    assert_eq!(dns.updates_sent(), 2, "delete sends nothing");
    no_secret(&n, &format!("{dns:?} {observed:?}"));
}

#[tokio::test]
async fn a_wrong_key_is_credentials_and_a_key_without_grant_is_permission() {
    let n = named::start(&[APEX]);
    let identity = DnsResource::Identity(identity_spec("gitpod.apex.test"));
    let inputs = Inputs::default();

    // Right name, wrong secret: BADSIG.
    let dns = provider(&n, "gitpod.apex.test", KEY, Secret::generate_base64_key(32));
    let e = dns.ensure(&identity, &inputs).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
    assert!(
        e.message()
            .contains("check key name, algorithm, secret and clock skew (fudge 300 s)"),
        "{e}"
    );
    assert!(e.message().contains("TSIG rejected"), "{e}");
    assert!(e.message().contains("BADSIG"), "{e}");
    no_secret(
        &n,
        &format!("{e:?} {e} {}", dns.config().tsig_secret.expose()),
    );

    // A key the server does not know: BADKEY.
    let dns = provider(&n, "gitpod.apex.test", "unknown-key.", n.secret.clone());
    let e = dns.observe(&identity).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
    assert!(e.message().contains("BADKEY"), "{e}");
    no_secret(&n, &format!("{e:?} {e}"));

    // The right secret under another algorithm: rejected too.
    let dns = Rfc2136Dns::new(DnsConfig::new(
        "gitpod.apex.test",
        n.server(),
        KEY,
        TsigAlgorithm::HmacSha512,
        n.secret.clone(),
    ));
    let e = dns.ensure(&identity, &inputs).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");

    // A valid key the zone's update-policy does not grant: REFUSED.
    let dns = provider(&n, "gitpod.apex.test", OTHER_KEY, n.other_secret.clone());
    let e = dns.ensure(&identity, &inputs).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
    assert!(
        e.message().contains(
            "the server's update-policy does not grant key other-key. on zone gitpod.apex.test"
        ),
        "{e}"
    );
    no_secret(&n, &format!("{e:?} {e}"));
    assert_eq!(serial(&n, "gitpod.apex.test"), "SOA 1");
}

#[tokio::test]
async fn records_apply_reapply_switch_and_delete_touch_only_the_three_names() {
    let n = named::start(&[PARENT]);
    let dns = provider(&n, "example.test", KEY, n.secret.clone());
    let domain = "gitpod.example.test";
    let names = [
        domain.to_string(),
        format!("*.{domain}"),
        format!("*.ws.{domain}"),
    ];
    let a = DnsResource::Records(records(
        "example.test",
        domain,
        RecordsTarget::Ipv4("203.0.113.10".into()),
    ));
    let inputs = Inputs::default();

    assert!(dns.observe(&a).await.unwrap().is_none(), "nothing yet");
    assert_eq!(dns.updates_sent(), 0, "observe sends no update");

    // Apply: one atomic update.
    let Progress::Done(out) = dns.ensure(&a, &inputs).await.unwrap() else {
        panic!("pending")
    };
    assert_eq!(
        out,
        Some(Output::DnsRecords {
            names: names.to_vec()
        })
    );
    assert_eq!(dns.updates_sent(), 1);
    for name in &names {
        assert_eq!(dig(&n, name, RecordType::A), ["A 203.0.113.10"], "{name}");
    }
    let after_apply = serial(&n, "example.test");

    // Re-apply: observed as desired (the planner plans nothing) and ensure writes
    // nothing either.
    let observed = dns.observe(&a).await.unwrap().unwrap();
    assert_eq!(observed.actual, a);
    assert!(observed.drift.is_empty(), "{:?}", observed.drift);
    let Progress::Done(_) = dns.ensure(&a, &inputs).await.unwrap() else {
        panic!("pending")
    };
    assert_eq!(dns.updates_sent(), 1, "re-apply sends no update");
    assert_eq!(serial(&n, "example.test"), after_apply);

    // Switch to a hostname: the A sets go, the CNAMEs come, in one update.
    let cname = DnsResource::Records(records(
        "example.test",
        domain,
        RecordsTarget::Hostname("lb.example.net".into()),
    ));
    let observed = dns.observe(&cname).await.unwrap().unwrap();
    assert_ne!(observed.actual, cname, "the target change is seen");
    let Progress::Done(_) = dns.ensure(&cname, &inputs).await.unwrap() else {
        panic!("pending")
    };
    assert_eq!(dns.updates_sent(), 2);
    for name in &names {
        assert_eq!(
            dig(&n, name, RecordType::CNAME),
            ["CNAME lb.example.net."],
            "{name}"
        );
        assert_eq!(
            dig(&n, name, RecordType::A),
            ["CNAME lb.example.net."],
            "{name}"
        );
    }
    assert_eq!(dns.observe(&cname).await.unwrap().unwrap().actual, cname);

    // One name changed behind our back: drift, and ensure repairs it.
    let hand = provider(&n, "example.test", KEY, n.secret.clone());
    let Progress::Done(_) = hand
        .ensure(
            &DnsResource::Records(DnsRecordsSpec::new(
                "gitpod",
                "example.test",
                vec![format!("*.ws.{domain}")],
                RecordsTarget::Ipv4("192.0.2.7".into()),
            )),
            &inputs,
        )
        .await
        .unwrap()
    else {
        panic!("pending")
    };
    let observed = dns.observe(&cname).await.unwrap().unwrap();
    assert!(
        observed
            .drift
            .iter()
            .any(|d| d.contains("*.ws.gitpod.example.test has A 192.0.2.7")),
        "{:?}",
        observed.drift
    );
    let Progress::Done(_) = dns.ensure(&cname, &inputs).await.unwrap() else {
        panic!("pending")
    };
    assert_eq!(
        dig(&n, &format!("*.ws.{domain}"), RecordType::A),
        ["CNAME lb.example.net."]
    );

    // Delete (as the planner asks for records no longer wanted: an empty hostname).
    let gone = DnsResource::Records(records(
        "example.test",
        domain,
        RecordsTarget::Hostname(String::new()),
    ));
    let before = dns.updates_sent();
    let Progress::Done(None) = dns.delete(&gone).await.unwrap() else {
        panic!("delete reports an output")
    };
    assert_eq!(dns.updates_sent(), before + 1, "one update deletes");
    for name in &names {
        assert!(dig(&n, name, RecordType::A).is_empty(), "{name}");
    }
    assert!(dns.observe(&gone).await.unwrap().is_none());
    // Everything else is still there.
    assert_eq!(
        dig(&n, "keep.example.test", RecordType::A),
        ["A 192.0.2.99"]
    );
    assert_eq!(dig(&n, "www.example.test", RecordType::TXT), ["TXT hello"]);
    assert_eq!(
        dig(&n, "_acme-challenge.gitpod.example.test", RecordType::TXT),
        ["TXT challenge"]
    );
    assert_eq!(
        dig(&n, "other.gitpod.example.test", RecordType::A),
        ["A 192.0.2.98"]
    );
    // Deleting again sends nothing.
    let Progress::Done(None) = dns.delete(&gone).await.unwrap() else {
        panic!("delete reports an output")
    };
    assert_eq!(dns.updates_sent(), before + 1);
}

#[tokio::test]
async fn bad_records_are_refused_before_any_call() {
    let n = named::start(&[APEX]);
    let dns = provider(&n, "gitpod.apex.test", KEY, n.secret.clone());
    let inputs = Inputs::default();
    // A CNAME at the zone apex.
    let apex_cname = DnsResource::Records(records(
        "gitpod.apex.test",
        "gitpod.apex.test",
        RecordsTarget::Hostname("lb.example.net".into()),
    ));
    let e = dns.ensure(&apex_cname, &inputs).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("apex"), "{e}");
    // Names outside the zone (hickory's update helpers would panic on them).
    let outside = DnsResource::Records(records(
        "gitpod.apex.test",
        "gitpod.elsewhere.test",
        RecordsTarget::Ipv4("203.0.113.10".into()),
    ));
    for r in [
        dns.ensure(&outside, &inputs).await,
        dns.delete(&outside).await,
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(
            e.message().contains("not inside zone gitpod.apex.test"),
            "{e}"
        );
    }
    // Not an address.
    let bad = DnsResource::Records(records(
        "gitpod.apex.test",
        "gitpod.apex.test",
        RecordsTarget::Ipv4("203.0.113".into()),
    ));
    let e = dns.ensure(&bad, &inputs).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(dns.updates_sent(), 0);

    // The apex with an address is fine.
    let a = DnsResource::Records(records(
        "gitpod.apex.test",
        "gitpod.apex.test",
        RecordsTarget::Ipv4("203.0.113.10".into()),
    ));
    let Progress::Done(_) = dns.ensure(&a, &inputs).await.unwrap() else {
        panic!("pending")
    };
    assert_eq!(
        dig(&n, "gitpod.apex.test", RecordType::A),
        ["A 203.0.113.10"]
    );
    // The apex's SOA and NS are still there.
    assert_eq!(
        dns.observe(&DnsResource::Zone(zone_spec(
            "gitpod.apex.test",
            &n.server()
        )))
        .await
        .unwrap()
        .unwrap()
        .output
        .map(|o| matches!(o, Output::DnsZone { name_servers, .. } if name_servers.len() == 2)),
        Some(true)
    );
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dns = Rfc2136Dns::new(DnsConfig::new(
        "gitpod.apex.test",
        format!("127.0.0.1:{port}"),
        KEY,
        TsigAlgorithm::HmacSha256,
        Secret::generate_base64_key(32),
    ));
    let e = dns
        .observe(&DnsResource::Zone(zone_spec("gitpod.apex.test", "x")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
}

fn verify_spec(domain: &str, target: Option<RecordsTarget>) -> ReferenceArchitecture {
    let mut b = ReferenceArchitecture::builder(Cloud::Gcp)
        .name("gitpod")
        .domain(domain)
        .acme_email("ops@example.com")
        .gcp_project("my-project-123");
    if let Some(t) = target {
        b = b.records_target(t);
    }
    b.build().expect("valid spec")
}

async fn dns_checks(
    dns: Rfc2136Dns,
    spec: &ReferenceArchitecture,
) -> BTreeMap<String, gitpod_refarch::Check> {
    let outputs = Outputs::new(BTreeMap::new());
    let bundle = InstallerBundle {
        config: serde_json::Value::Null,
        secrets: Vec::new(),
        cert_manager: Vec::new(),
    };
    let ctx = VerifyContext::new(spec, &outputs, &bundle);
    let v = DataPlaneVerifier::new().dns(Arc::new(dns));
    assert!(v.parts().contains(&Part::Dns));
    v.verify(&ctx)
        .await
        .into_iter()
        .filter(|c| c.part == Part::Dns)
        .map(|c| (c.id.clone(), c))
        .collect()
}

#[tokio::test]
async fn verify_checks_pass_and_a_wrong_key_fails_dns_tsig_with_the_fix() {
    let n = named::start(&[APEX]);
    let zone = "gitpod.apex.test";
    let target = RecordsTarget::Ipv4("203.0.113.10".into());
    let spec = verify_spec(zone, Some(target.clone()));
    let dns = provider(&n, zone, KEY, n.secret.clone());
    let a = DnsResource::Records(records(zone, zone, target));
    let Progress::Done(_) = dns.ensure(&a, &Inputs::default()).await.unwrap() else {
        panic!("pending")
    };

    let checks = dns_checks(provider(&n, zone, KEY, n.secret.clone()), &spec).await;
    for id in [
        "dns.zone",
        "dns.tsig",
        "dns.transfer",
        "dns.records-at-server",
    ] {
        let c = checks
            .get(id)
            .unwrap_or_else(|| panic!("no {id} in {checks:?}"));
        assert_eq!(c.status, CheckStatus::Pass, "{c:?}");
    }
    let json = serde_json::to_string(&checks).unwrap();
    no_secret(&n, &json);

    // A wrong secret: dns.tsig fails and says what to fix; the zone still passes.
    let checks = dns_checks(
        provider(&n, zone, KEY, Secret::generate_base64_key(32)),
        &spec,
    )
    .await;
    assert_eq!(checks["dns.zone"].status, CheckStatus::Pass);
    let tsig = &checks["dns.tsig"];
    assert_eq!(tsig.status, CheckStatus::Fail, "{tsig:?}");
    assert!(tsig.summary.contains("TSIG rejected"), "{tsig:?}");
    let fix = tsig.fix.as_deref().unwrap();
    assert!(
        fix.contains("dns.tsigSecret") && fix.contains("clocks"),
        "{fix}"
    );
    no_secret(&n, &serde_json::to_string(&checks).unwrap());

    assert_eq!(checks["dns.transfer"].status, CheckStatus::Skipped);

    // A key without a grant: the fix names the update-policy.
    let checks = dns_checks(provider(&n, zone, OTHER_KEY, n.other_secret.clone()), &spec).await;
    let tsig = &checks["dns.tsig"];
    assert_eq!(tsig.status, CheckStatus::Fail, "{tsig:?}");
    assert!(
        tsig.fix.as_deref().unwrap().contains("update-policy"),
        "{tsig:?}"
    );

    // Records changed to something else: dns.records fails.
    let other = DnsResource::Records(records(
        zone,
        zone,
        RecordsTarget::Ipv4("203.0.113.11".into()),
    ));
    let Progress::Done(_) = dns.ensure(&other, &Inputs::default()).await.unwrap() else {
        panic!("pending")
    };
    let checks = dns_checks(provider(&n, zone, KEY, n.secret.clone()), &spec).await;
    let rec = &checks["dns.records-at-server"];
    assert_eq!(rec.status, CheckStatus::Fail, "{rec:?}");
    assert!(rec.summary.contains("expected A 203.0.113.10"), "{rec:?}");
    assert!(rec.fix.is_some());

    // Without a records target: skipped with the reason.
    let checks = dns_checks(
        provider(&n, zone, KEY, n.secret.clone()),
        &verify_spec(zone, None),
    )
    .await;
    let rec = &checks["dns.records-at-server"];
    assert_eq!(rec.status, CheckStatus::Skipped, "{rec:?}");
    assert!(rec.summary.contains("external-dns"), "{rec:?}");

    // A zone the server does not serve: dns.zone fails with the fix.
    let checks = dns_checks(
        provider(&n, "absent.test", KEY, n.secret.clone()),
        &verify_spec("absent.test", None),
    )
    .await;
    let z = &checks["dns.zone"];
    assert_eq!(z.status, CheckStatus::Fail, "{z:?}");
    assert!(
        z.summary
            .contains("is not authoritative for zone absent.test"),
        "{z:?}"
    );
    assert!(z.fix.as_deref().unwrap().contains("primary"), "{z:?}");
}

#[tokio::test]
async fn verify_fails_dns_transfer_when_the_key_may_not_read_the_zone() {
    let n = named::start_without_transfer(&[APEX]);
    let zone = "gitpod.apex.test";
    let checks = dns_checks(
        provider(&n, zone, KEY, n.secret.clone()),
        &verify_spec(zone, None),
    )
    .await;
    assert_eq!(checks["dns.tsig"].status, CheckStatus::Pass);
    let t = &checks["dns.transfer"];
    assert_eq!(t.status, CheckStatus::Fail, "{t:?}");
    assert!(t.summary.contains("refuses zone transfers"), "{t:?}");
    assert!(
        t.fix
            .as_deref()
            .unwrap()
            .contains("allow-transfer { key gitpod-refarch.; }"),
        "{t:?}"
    );
}
