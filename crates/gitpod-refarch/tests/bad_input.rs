//! Documents the loader must refuse before any call, each with the field path (or, for
//! a problem of the whole document, an empty path and a location), and a property
//! test: random mutations of valid specs never panic, are refused quickly, and either
//! plan or fail with a path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gitpod_refarch::engine::{Clock, TokioClock};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::{ReferenceArchitecture, MAX_SPEC_BYTES};
use gitpod_refarch::validate::ValidationErrors;
use gitpod_refarch::{Engine, Providers};
use proptest::prelude::*;

const BASE_YAML: &str = "cloud: gcp\nname: gp\ndomain: gitpod.example.com\ngcp:\n  project: my-project-123\n\
certificates:\n  issuer: acme\n  email: ops@example.com\nnodePools:\n  services:\n    maxNodes: 6\n    \
taints:\n      - key: dedicated\n        value: gitpod\n        effect: NoSchedule\nlabels:\n  team: dev\n";

const BASE_JSON: &str = r#"{"cloud": "aws", "name": "gp", "domain": "gitpod.example.com",
 "certificates": {"issuer": "acme", "email": "ops@example.com"},
 "database": {"backups": {"enabled": true, "retentionDays": 7}},
 "cluster": {"network": {"nodeCidr": "10.100.0.0/16"}},
 "dns": {"recordsTarget": {"ipv4": "203.0.113.10"}}}"#;

fn load(text: &str, json: bool) -> Result<ReferenceArchitecture, ValidationErrors> {
    if json {
        ReferenceArchitecture::from_json(text)
    } else {
        ReferenceArchitecture::from_yaml(text)
    }
}

/// (name, json?, document, path)
fn documents() -> Vec<(&'static str, bool, String, &'static str)> {
    let y = |s: &str| s.to_string();
    vec![
        ("yaml duplicate domain", false, y("cloud: gcp\ndomain: a.example.com\ndomain: b.example.com\n"), "domain"),
        ("yaml duplicate cloud", false, y("cloud: gcp\ncloud: aws\n"), "cloud"),
        ("yaml duplicate nested maxNodes", false, BASE_YAML.replace("maxNodes: 6\n", "maxNodes: 6\n    maxNodes: 7\n"), "nodePools.services.maxNodes"),
        ("yaml duplicate in a flow mapping", false, y("cloud: gcp\ncertificates: {issuer: acme, issuer: bringYourOwn}\n"), "certificates.issuer"),
        ("yaml duplicate inside a list item", false, BASE_YAML.replace("value: gitpod\n", "value: gitpod\n        key: other\n"), "nodePools.services.taints[0].key"),
        ("yaml duplicate label", false, BASE_YAML.replace("team: dev\n", "team: dev\n  team: ops\n"), "labels.team"),
        ("yaml duplicate gcp project", false, BASE_YAML.replace("project: my-project-123\n", "project: my-project-123\n  project: other-project-1\n"), "gcp.project"),
        ("yaml duplicate quoted and plain key", false, y("cloud: gcp\nname: gp\n\"name\": gq\n"), "name"),
        ("json duplicate name", true, BASE_JSON.replace("\"name\": \"gp\",", "\"name\": \"gp\", \"name\": \"gq\","), "name"),
        ("json duplicate backups.enabled", true, BASE_JSON.replace("\"enabled\": true,", "\"enabled\": true, \"enabled\": false,"), "database.backups.enabled"),
        ("json duplicate nodeCidr", true, BASE_JSON.replace("\"nodeCidr\": \"10.100.0.0/16\"", "\"nodeCidr\": \"10.100.0.0/16\", \"nodeCidr\": \"10.101.0.0/16\""), "cluster.network.nodeCidr"),
        ("json duplicate recordsTarget variant", true, BASE_JSON.replace("{\"ipv4\": \"203.0.113.10\"}", "{\"ipv4\": \"203.0.113.10\", \"ipv4\": \"203.0.113.11\"}"), "dns.recordsTarget.ipv4"),
        ("byo with the acme email", false, y("cloud: gcp\ncertificates: {issuer: bringYourOwn, secretName: t, email: ops@example.com}\n"), "certificates"),
        ("byo with the acme server", true, y(r#"{"cloud": "aws", "certificates": {"issuer": "bringYourOwn", "secretName": "t", "server": "https://x.example.com"}}"#), "certificates"),
        ("acme with a secret name", false, y("cloud: azure\ncertificates: {issuer: acme, email: ops@example.com, secretName: t}\n"), "certificates"),
        ("unknown issuer", false, y("cloud: gcp\ncertificates: {issuer: letsencrypt}\n"), "certificates.issuer"),
        ("records target with both variants", false, y("cloud: aws\ndns: {recordsTarget: {ipv4: 203.0.113.10, hostname: lb.example.com}}\n"), "dns.recordsTarget"),
        ("unknown registry mode", false, y("cloud: aws\nregistry: {mode: dockerhub}\n"), "registry.mode"),
        ("larger than 1 MiB", false, format!("cloud: aws\n#{}\n", "x".repeat(MAX_SPEC_BYTES)), ""),
        ("40,000 nested brackets (yaml)", false, format!("cloud: aws\nlabels: {}{}\n", "[".repeat(40_000), "]".repeat(40_000)), ""),
        ("40,000 nested objects (json)", true, format!("{}1{}", "{\"a\":".repeat(40_000), "}".repeat(40_000)), ""),
        ("40,000 nested block sequences", false, format!("cloud: aws\nlabels:\n{}x\n", "- ".repeat(40_000)), ""),
        ("brackets behind a quote the parser reads as plain text", false, format!("cloud: aws\nname: a 'b\nlabels: {}{}\n", "[".repeat(40_000), "]".repeat(40_000)), ""),
        ("two yaml documents", false, y("cloud: aws\n---\ncloud: gcp\n"), ""),
        ("aliases expanding exponentially", false, {
            let mut t = String::from("cloud: aws\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
            for i in 1..12 {
                let p = i - 1;
                t.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
            }
            t
        }, "a3[7][8][8][8]"),
    ]
}

#[test]
fn the_loader_refuses_each_document_with_its_path() {
    let mut failures = Vec::new();
    for (name, json, text, path) in documents() {
        let started = Instant::now();
        let result = load(&text, json);
        let took = started.elapsed();
        match result {
            Ok(_) => failures.push(format!("[{name}] loaded")),
            Err(e) if !e.has_path(path) => {
                failures.push(format!("[{name}] no problem at '{path}':\n{e}"))
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
            }
        }
        // Generous (a debug build on a shared machine); typical is well under 10 ms.
        assert!(took < Duration::from_millis(500), "[{name}] took {took:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_byte_order_mark_is_not_a_second_document() {
    let yaml = format!("\u{feff}{BASE_YAML}");
    assert_eq!(load(&yaml, false).unwrap(), load(BASE_YAML, false).unwrap());
    let json = format!("\u{feff}{BASE_JSON}");
    assert_eq!(load(&json, true).unwrap(), load(BASE_JSON, true).unwrap());
}

#[test]
fn a_reader_is_not_read_past_the_limit() {
    struct Counting(u64);
    impl std::io::Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(b'#');
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
    }
    let mut r = Counting(0);
    let e = ReferenceArchitecture::from_reader(&mut r, "endless", false).unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
    assert!(
        r.0 <= MAX_SPEC_BYTES as u64 + 64 * 1024,
        "read {} bytes",
        r.0
    );
}

/// A problem "with a field path": a path, or for a problem of the whole document
/// (syntax, size, nesting) a message that says where or what.
fn has_location(e: &ValidationErrors) -> bool {
    e.problems().iter().all(|p| {
        !p.path.is_empty()
            || p.message.contains("line ")
            || p.message.contains("larger than")
            || p.message.contains("nested deeper")
            || p.message.contains("must be a mapping")
            || p.message.contains("more than one document")
            || p.message.contains("values (YAML aliases")
            || p.message.contains("EOF")
    })
}

fn mutation() -> impl Strategy<Value = (usize, u8, String, usize)> {
    (
        0usize..5000,
        0u8..6,
        prop::string::string_regex("[\\[\\]{}:,\\-'\"#\\n a-z0-9./*@]{0,12}").unwrap(),
        0usize..40_000,
    )
}

fn mutate(base: &str, (at, op, text, n): (usize, u8, String, usize)) -> String {
    let mut s = base.to_string();
    let mut i = at % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    match op {
        0 => s.insert_str(i, &text),
        1 => {
            let end = (i + text.len() + 1).min(s.len());
            let mut end = end;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.replace_range(i..end, &text);
        }
        2 => {
            // Duplicate the line at i.
            let start = s[..i].rfind('\n').map_or(0, |p| p + 1);
            let end = s[i..].find('\n').map_or(s.len(), |p| i + p + 1);
            let line = s[start..end].to_string();
            s.insert_str(end, &line);
        }
        3 => s.insert_str(i, &"[".repeat(n)),
        4 => s.insert_str(
            i,
            &format!("{}{}", "{a: ".repeat(n % 2000), "}".repeat(n % 2000)),
        ),
        _ => s.truncate(i),
    }
    s
}

struct Planner {
    rt: tokio::runtime::Runtime,
    engine: Engine,
}

fn planner() -> Planner {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = rt.block_on(async {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let sim = Arc::new(SimCloud::new(clock.clone(), LatencyProfile::instant()));
        Engine::builder(Providers::all(sim))
            .clock(clock)
            .build()
            .unwrap()
    });
    Planner { rt, engine }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_specs_plan_or_fail_with_a_path(
        json in any::<bool>(),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        thread_local!(static P: Planner = planner());
        let mut text = if json { BASE_JSON.to_string() } else { BASE_YAML.to_string() };
        for m in muts {
            text = mutate(&text, m);
        }
        let started = Instant::now();
        let loaded = load(&text, json);
        let checked = loaded.as_ref().map_err(Clone::clone).and_then(|s| s.validate().map(|()| s.clone()));
        let took = started.elapsed();
        let nanos = took.as_nanos() as u64;
        if checked.is_err() && nanos > SLOWEST_NANOS.fetch_max(nanos, std::sync::atomic::Ordering::Relaxed) {
            println!("metric: proptest slowest rejection so far {took:?} ({} bytes)", text.len());
        }
        match checked {
            Ok(spec) => {
                P.with(|p| {
                    let plan = p.rt.block_on(p.engine.plan(&spec));
                    prop_assert!(plan.is_ok(), "a valid spec did not plan: {:?}", plan.err());
                    Ok(())
                })?;
            }
            Err(e) => {
                prop_assert!(took < Duration::from_millis(100), "rejection took {took:?}:\n{text}");
                prop_assert!(has_location(&e), "a problem without a path:\n{e}\n---\n{text}");
            }
        }
    }
}

/// Found by the property test: a parser error whose message did not say where.
#[test]
fn yaml_syntax_errors_say_where() {
    let e = load("]cloud: gcp\nname: gp\n", false).unwrap_err();
    assert!(has_location(&e), "{e}");
    assert!(e.to_string().contains("line 1"), "{e}");
}

static SLOWEST_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Measures the slowest rejection of the documents above (run with `--nocapture`).
#[test]
fn slowest_rejection_is_reported() {
    let mut slowest = (Duration::ZERO, "");
    for (name, json, text, _) in documents() {
        for _ in 0..3 {
            let started = Instant::now();
            let _ = load(&text, json);
            let took = started.elapsed();
            if took > slowest.0 {
                slowest = (took, name);
            }
        }
    }
    println!("metric: slowest rejection {:?} ({})", slowest.0, slowest.1);
    assert!(slowest.0 < Duration::from_millis(500), "{slowest:?}");
}
