//! The bill of materials and the monthly estimate: each cloud's default spec priced
//! with the shipped catalog against totals computed here by hand from the catalog's
//! prices, a change's delta on the simulated cloud, unpriced SKUs, the JSON shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{spec, Harness};
use gitpod_refarch::cost::{BillOfMaterials, Catalog, MonthlyRange};
use gitpod_refarch::sim::LatencyProfile;
use gitpod_refarch::spec::{Cloud, PoolRole};

/// Hours per month, as the vendors' calculators count.
const H: f64 = 730.0;

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 0.005, "{what}: {a} != {b}");
}

fn unpriced(e: &gitpod_refarch::cost::Estimate) -> Vec<String> {
    let mut v: Vec<String> = e.unpriced.iter().map(|u| u.sku.clone()).collect();
    v.sort();
    v
}

#[test]
fn gcp_default_spec_against_a_hand_computed_total() {
    let bom = BillOfMaterials::for_spec(&spec(Cloud::Gcp));
    let e = bom.cost_builtin().unwrap();
    assert_eq!(e.catalog.as_deref(), Some("catalog/gcp-europe-west1.yaml"));
    // europe-west1, a regional cluster: every pool's bounds are per zone, 3 zones.
    let svc_node = 0.185892 * H; // n2d-standard-4
    let ws_node = 0.743568 * H; // n2d-standard-16
    let fixed = 0.10 * H // GKE regional cluster fee
        + 2.0 * 0.1351 * H // db-n1-standard-2 and its HA standby
        + 0.20; // Cloud DNS zone
    let min = fixed
        + 3.0 * svc_node + 3.0 * 100.0 * 0.17 // services: 1 node x 3 zones, 100 GiB pd-ssd each
        + 2.0 * (3.0 * ws_node + 3.0 * 512.0 * 0.17); // two workspace pools, 512 GiB each
    let max = fixed
        + 12.0 * svc_node + 12.0 * 100.0 * 0.17 // 4 x 3 zones
        + 2.0 * (150.0 * ws_node + 150.0 * 512.0 * 0.17); // 50 x 3 zones
    close(e.total.min, min, "min");
    close(
        e.total.spec,
        min,
        "as created (every pool starts at its minimum of 1)",
    );
    close(e.total.max, max, "max");
    close(e.total.min, 4_507.62, "min, in dollars");
    assert_eq!(
        unpriced(&e),
        [
            "database-backup/storage",
            "database-storage/ssd",
            "load-balancer/forwarding-rule"
        ]
    );
    let usage: Vec<&str> = e.usage.iter().map(|u| u.sku.as_str()).collect();
    assert_eq!(
        usage,
        [
            "object-storage/standard",
            "registry-storage/artifact-registry"
        ]
    );
}

#[test]
fn aws_default_spec_against_a_hand_computed_total() {
    let bom = BillOfMaterials::for_spec(&spec(Cloud::Aws));
    let e = bom.cost_builtin().unwrap();
    assert_eq!(e.catalog.as_deref(), Some("catalog/aws-eu-west-1.yaml"));
    let fixed = 0.10 * H // EKS
        + 0.028 * H // the Classic Load Balancer of Gitpod's proxy
        + 0.005 * H // the NAT gateway's public IPv4 (one NAT: not highly available)
        + 2.0 * 20.0 * 0.1265 // RDS gp3 storage, 20 GiB and the Multi-AZ standby's
        + 0.50; // Route 53 zone
    let svc = |n: f64| n * 0.214 * H + n * 100.0 * 0.088; // m6i.xlarge, 100 GiB gp3
    let ws = |n: f64| n * 0.856 * H + n * 512.0 * 0.088; // m6i.4xlarge, 512 GiB gp3
    close(e.total.min, fixed + svc(1.0) + 2.0 * ws(1.0), "min");
    close(e.total.max, fixed + svc(4.0) + 2.0 * ws(50.0), "max");
    close(e.total.min, 1_607.54, "min, in dollars");
    // The in-cluster registry stores its images in S3: no registry item.
    assert!(e.lines.iter().all(|l| !l.sku.starts_with("registry")));
    assert_eq!(
        unpriced(&e),
        [
            "database/db.m5.large",
            "nat/gateway",
            "object-storage/s3-standard"
        ]
    );
}

#[test]
fn azure_default_spec_against_a_hand_computed_total() {
    let bom = BillOfMaterials::for_spec(&spec(Cloud::Azure));
    let e = bom.cost_builtin().unwrap();
    assert_eq!(e.catalog.as_deref(), Some("catalog/azure-northeurope.yaml"));
    let fixed = 0.10 * H + 0.50; // AKS Standard tier, DNS zone
    let svc = 0.214 * H; // Standard_D4_v4
    let ws = 0.856 * H; // Standard_D16_v4
    close(e.total.min, fixed + svc + 2.0 * ws, "min");
    close(e.total.max, fixed + 4.0 * svc + 100.0 * ws, "max");
    // Dv4 sizes take no premium storage: Standard SSD tiers E10 (100 GiB) and E20
    // (512 GiB); neither is priced in northeurope, so they are listed, not free.
    assert_eq!(
        unpriced(&e),
        [
            "database-backup/storage",
            "database-storage/flexible",
            "database/Standard_D2ds_v4",
            "disk/E10",
            "disk/E20",
            "disk/E20",
            "load-balancer/standard",
            "object-storage/blob-hot-lrs",
            "public-ip/standard",
            "registry/standard",
        ]
    );
    let db = e
        .unpriced
        .iter()
        .find(|u| u.sku == "database/Standard_D2ds_v4")
        .unwrap();
    assert_eq!(db.quantity.map(|q| q.max), Some(2.0), "HA bills a standby");
    assert_eq!(db.reason, "not in the catalog");
}

#[test]
fn the_same_spec_in_us_regions_is_priced_by_their_catalogs() {
    let mut s = spec(Cloud::Aws);
    s.cluster.region = "us-east-1".into();
    s.cluster.zones = vec!["us-east-1a".into(), "us-east-1b".into()];
    let e = BillOfMaterials::for_spec(&s).cost_builtin().unwrap();
    assert_eq!(e.catalog.as_deref(), Some("catalog/aws-us-east-1.yaml"));
    assert!(e.unpriced.is_empty(), "{:?}", unpriced(&e));
    let fixed =
        0.10 * H + 0.025 * H + 0.045 * H + 0.005 * H + 2.0 * 0.171 * H + 2.0 * 20.0 * 0.115 + 0.50;
    let svc = |n: f64| n * 0.192 * H + n * 100.0 * 0.08;
    let ws = |n: f64| n * 0.768 * H + n * 512.0 * 0.08;
    close(e.total.min, fixed + svc(1.0) + 2.0 * ws(1.0), "min");
    close(e.total.max, fixed + svc(4.0) + 2.0 * ws(50.0), "max");

    // A region without a shipped catalog: everything unpriced, nothing at zero.
    s.cluster.region = "ap-southeast-2".into();
    let e = BillOfMaterials::for_spec(&s).cost_builtin().unwrap();
    assert_eq!(e.total, MonthlyRange::default());
    assert!(e.lines.is_empty());
    assert_eq!(e.unpriced.len(), BillOfMaterials::for_spec(&s).items.len());
    assert!(e.unpriced[0]
        .reason
        .contains("no price catalog for aws ap-southeast-2"));
}

#[test]
fn highly_available_nat_bills_one_nat_gateway_per_zone() {
    let mut s = spec(Cloud::Aws);
    match s.aws.as_mut() {
        Some(a) => a.highly_available_nat = true,
        None => {
            s.aws = Some(
                serde_json::from_value(serde_json::json!({"highlyAvailableNat": true})).unwrap(),
            );
        }
    }
    let bom = BillOfMaterials::for_spec(&s);
    let nat = bom.items.iter().find(|i| i.sku == "nat/gateway").unwrap();
    assert_eq!(nat.quantity.map(|q| q.min), Some(2.0), "one per zone");
}

#[test]
fn a_catalog_of_another_cloud_or_region_is_refused() {
    let bom = BillOfMaterials::for_spec(&spec(Cloud::Gcp));
    let aws = Catalog::builtin(Cloud::Aws, "eu-west-1").unwrap().unwrap();
    let e = bom.cost(&aws).unwrap_err();
    assert!(
        e.to_string()
            .contains("is for aws eu-west-1, not gcp europe-west1"),
        "{e}"
    );
}

#[test]
fn old_prices_are_flagged() {
    let e = BillOfMaterials::for_spec(&spec(Cloud::Gcp))
        .cost_builtin()
        .unwrap();
    assert_eq!(e.prices_as_of.as_deref(), Some("2024-03-18"));
    let day = gitpod_refarch::cost::days_since_epoch;
    assert!(e.staleness(day("2024-06-01").unwrap(), 180).is_none());
    let w = e.staleness(day("2026-11-30").unwrap(), 180).unwrap();
    assert!(w.contains("prices from 2024-03-18 (987 days old"), "{w}");
}

#[tokio::test(start_paused = true)]
async fn raising_a_pools_max_shows_the_change_and_applying_it_leaves_none() {
    let h = Harness::new(LatencyProfile::instant());
    let mut s = spec(Cloud::Gcp);
    // Before the first apply nothing exists: no "before".
    let plan = h.engine().plan(&s).await.unwrap();
    assert!(plan.current_bill_of_materials().items.is_empty());
    let _report = h
        .engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();

    s.node_pools.get_mut(PoolRole::RegularWorkspaces).max_nodes = 100;
    let plan = h.engine().plan(&s).await.unwrap();
    let after = plan.bill_of_materials().cost_builtin().unwrap();
    let before = plan.current_bill_of_materials().cost_builtin().unwrap();
    let d = after.delta(&before);
    // 50 more nodes per zone, 3 zones: n2d-standard-16 and 512 GiB of pd-ssd each.
    let per_node = 0.743568 * H + 512.0 * 0.17;
    close(d.min, 0.0, "min unchanged");
    close(d.spec, 0.0, "as created unchanged");
    close(d.max, 150.0 * per_node, "max");
    assert_eq!(d.display_delta("USD"), "+$0 .. +$94,477");

    // A destroy plan keeps nothing: the change is the whole bill, negative.
    let _report = h
        .engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let destroy = h.engine().plan_destroy(&s).await.unwrap();
    let left = destroy.bill_of_materials().cost_builtin().unwrap();
    assert_eq!(left.total, MonthlyRange::default());
    let now = destroy.current_bill_of_materials().cost_builtin().unwrap();
    close(
        now.total.max,
        after.total.max,
        "what exists is what was applied",
    );
}

#[test]
fn the_estimate_serializes_with_its_ranges_and_unpriced_items() {
    let e = BillOfMaterials::for_spec(&spec(Cloud::Gcp))
        .cost_builtin()
        .unwrap();
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["currency"], "USD");
    for k in ["min", "spec", "max"] {
        assert!(v["total"][k].as_f64().unwrap() > 0.0, "total.{k}");
    }
    let line = &v["lines"][0];
    assert_eq!(
        line["resource"],
        serde_json::json!({"kind": "cluster", "name": "gp"})
    );
    assert_eq!(line["sku"], "kubernetes/gke-regional");
    assert_eq!(line["per"], "hour");
    assert_eq!(line["quantity"]["max"], 1.0);
    assert!(v["unpriced"].as_array().unwrap().iter().any(|u| u["sku"]
        == "load-balancer/forwarding-rule"
        && u["reason"] == "not in the catalog"));
    assert_eq!(v["usage"][0]["per"], "gib-month");
}
