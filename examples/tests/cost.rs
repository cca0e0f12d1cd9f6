//! `plan`'s cost: the monthly range under the plan, `--cost`'s table, the `cost`
//! object of `--plan-json`, the change an edit makes, and a bad catalog refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitpod-refarch"))
        .current_dir(dir)
        .args(["--time-scale", "0.0002"])
        .args(args)
        .output()
        .expect("runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const SPEC: &str = "cloud: gcp\nname: gitpod\ndomain: gitpod.example.com\ngcp:\n  project: gitpod-refarch-demo\ncertificates:\n  issuer: acme\n  email: ops@example.com\n";

#[test]
fn plan_prints_the_monthly_range_the_table_and_the_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spec.yaml"), SPEC).unwrap();
    let o = run(dir.path(), &["--spec", "spec.yaml", "plan"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    // europe-west1 with the shipped catalog: $4,508 with every pool at its minimum.
    assert!(
        out.contains("cost: $4,508 .. $191,056 / month (node pools at min .. max; $4,508 as created), plus 3 unpriced item(s); prices: catalog/gcp-europe-west1.yaml"),
        "{out}"
    );
    assert!(
        out.contains(
            "unpriced (not in the total, never counted as free): load-balancer/forwarding-rule"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "warning: the price catalog catalog/gcp-europe-west1.yaml has prices from 2024-03-18"
        ),
        "{out}"
    );
    assert!(!out.contains("cost change"), "nothing exists yet: {out}");

    let o = run(dir.path(), &["--spec", "spec.yaml", "plan", "--cost"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let row = out
        .lines()
        .find(|l| l.starts_with("node-pool/regular-ws") && l.contains("compute/n2d-standard-16"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("3..150"), "{row}");
    assert!(row.contains("$1,628") && row.contains("$81,421"), "{row}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("total") && l.contains("$191,056")),
        "{out}"
    );
    assert!(out.contains("billed by use (not in the total):"), "{out}");

    let o = run(dir.path(), &["--spec", "spec.yaml", "plan", "--plan-json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["steps"].as_array().is_some_and(|s| !s.is_empty()));
    let cost = &v["cost"];
    assert_eq!(cost["currency"], "USD");
    assert!(
        (cost["total"]["min"].as_f64().unwrap() - 4_507.617).abs() < 0.01,
        "{cost}"
    );
    assert!(cost["change"].is_null());
    assert!(cost["stale"].as_str().unwrap().contains("2024-03-18"));
    assert_eq!(cost["unpriced"].as_array().unwrap().len(), 3);
}

#[test]
fn an_edit_shows_its_cost_change_and_a_bad_catalog_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spec.yaml"), SPEC).unwrap();
    let o = run(dir.path(), &["--spec", "spec.yaml", "apply"]);
    assert!(o.status.success(), "{}", text(&o));
    let more = format!("{SPEC}nodePools:\n  regularWorkspaces:\n    maxNodes: 100\n");
    std::fs::write(dir.path().join("spec.yaml"), more).unwrap();
    let o = run(dir.path(), &["--spec", "spec.yaml", "plan"]);
    assert!(o.status.success(), "{}", text(&o));
    // 50 more n2d-standard-16 nodes per zone (3 zones), 512 GiB pd-ssd each.
    assert!(
        text(&o).contains("cost change: +$0 .. +$94,477 / month"),
        "{}",
        text(&o)
    );

    std::fs::write(dir.path().join("bad.yaml"), "cloud: gcp\nregions: []\n").unwrap();
    let o = run(
        dir.path(),
        &["--spec", "spec.yaml", "plan", "--catalog", "bad.yaml"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("bad.yaml"), "{}", text(&o));

    // A team's own catalog: its prices, its name in the output.
    let own = "cloud: gcp\nregions: [europe-west1]\ncurrency: EUR\nread: 2026-11-30\nsources:\n  contract: {url: 'https://example.com/contract', title: our contract}\nprices:\n  kubernetes/gke-regional: {price: 0.09, per: hour, source: contract, asOf: 2026-11-01}\n";
    std::fs::write(dir.path().join("own.yaml"), own).unwrap();
    let o = run(
        dir.path(),
        &["--spec", "spec.yaml", "plan", "--catalog", "own.yaml"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("cost: €66 / month"), "{out}");
    assert!(
        out.contains("prices: own.yaml, oldest from 2026-11-01"),
        "{out}"
    );
    assert!(!out.contains("warning: the price catalog"), "{out}");
}
