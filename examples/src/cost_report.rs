//! The cost part of `plan`: the monthly range next to the plan, the change a plan
//! makes, the table of `--cost`, and the `cost` object of `--plan-json`.

use std::fmt::Write as _;
use std::path::Path;

use gitpod_refarch::cost::{money, BillOfMaterials, Catalog, Estimate, Measure, MonthlyRange};
use gitpod_refarch::Plan;
use serde::Serialize;

/// Read a catalog file the user named (bad input: exit 2 before any call).
pub fn load_catalog(path: &Path) -> Result<Catalog, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--catalog {}: {e}", path.display()))?;
    Catalog::from_yaml(&path.display().to_string(), &text).map_err(|e| e.to_string())
}

/// The plan's estimate, the estimate of what exists now and the change.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanCost {
    /// Once the plan is applied.
    #[serde(flatten)]
    pub after: Estimate,
    /// The change from what exists now (`None`: nothing exists yet).
    pub change: Option<MonthlyRange>,
    /// A warning when the catalog's prices are old.
    pub stale: Option<String>,
}

fn estimate(bom: &BillOfMaterials, catalog: Option<&Catalog>) -> Result<Estimate, String> {
    match catalog {
        Some(c) => bom.cost(c),
        None => bom.cost_builtin(),
    }
    .map_err(|e| e.to_string())
}

fn today_unix_days() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs() / 86_400).unwrap_or(0))
}

impl PlanCost {
    /// Price a plan.
    pub fn of(plan: &Plan, catalog: Option<&Catalog>, max_age_days: i64) -> Result<Self, String> {
        let after = estimate(&plan.bill_of_materials(), catalog)?;
        let current = plan.current_bill_of_materials();
        let change = if current.items.is_empty() {
            None
        } else {
            Some(after.delta(&estimate(&current, catalog)?))
        };
        let stale = after.staleness(today_unix_days(), max_age_days);
        Ok(PlanCost {
            after,
            change,
            stale,
        })
    }

    /// The lines printed under every plan.
    pub fn summary(&self) -> String {
        let e = &self.after;
        let cur = e.currency.as_str();
        let mut out = String::new();
        if e.lines.is_empty() && e.unpriced.is_empty() {
            let _ = writeln!(out, "cost: nothing billable");
            return out;
        }
        let _ = write!(
            out,
            "cost: {} / month (node pools at min .. max; {} as created)",
            e.total.display(cur),
            money(e.total.spec, cur, false)
        );
        if !e.unpriced.is_empty() {
            let _ = write!(out, ", plus {} unpriced item(s)", e.unpriced.len());
        }
        if let Some(c) = &e.catalog {
            let _ = write!(
                out,
                "; prices: {c}, oldest from {}",
                e.prices_as_of.as_deref().unwrap_or("?")
            );
        }
        out.push('\n');
        if let Some(d) = &self.change {
            let _ = writeln!(out, "cost change: {} / month", d.display_delta(cur));
        }
        if !e.unpriced.is_empty() {
            let skus: Vec<&str> = e.unpriced.iter().map(|u| u.sku.as_str()).collect();
            let _ = writeln!(
                out,
                "unpriced (not in the total, never counted as free): {}",
                skus.join(", ")
            );
        }
        if !e.usage.is_empty() {
            let _ = writeln!(
                out,
                "billed by use (not in the total): {} item(s); --cost lists their prices",
                e.usage.len()
            );
        }
        if let Some(w) = &self.stale {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }

    /// The `--cost` table.
    pub fn table(&self) -> String {
        let e = &self.after;
        let cur = e.currency.as_str();
        let mut rows: Vec<[String; 7]> = vec![[
            "RESOURCE".into(),
            "SKU".into(),
            "QUANTITY".into(),
            "PRICE".into(),
            "MIN/MONTH".into(),
            "AS CREATED".into(),
            "MAX/MONTH".into(),
        ]];
        for l in &e.lines {
            let unit = match l.measure {
                Measure::Gib => " GiB",
                _ => "",
            };
            let q = if l.quantity.min == l.quantity.max {
                format!("{}{unit}", l.quantity.min)
            } else {
                format!("{}..{}{unit}", l.quantity.min, l.quantity.max)
            };
            rows.push([
                l.resource.to_string(),
                l.sku.clone(),
                q,
                format!("{} {}/{}", l.unit_price, cur, l.per.as_str()),
                money(l.monthly.min, cur, false),
                money(l.monthly.spec, cur, false),
                money(l.monthly.max, cur, false),
            ]);
        }
        rows.push([
            "total".into(),
            String::new(),
            String::new(),
            String::new(),
            money(e.total.min, cur, false),
            money(e.total.spec, cur, false),
            money(e.total.max, cur, false),
        ]);
        let mut widths = [0usize; 7];
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::from("\n");
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i >= 4 {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        if !e.usage.is_empty() {
            let _ = writeln!(out, "\nbilled by use (not in the total):");
            for u in &e.usage {
                let _ = writeln!(
                    out,
                    "  {:<40} {} {}/{}  {}",
                    u.sku,
                    u.unit_price,
                    cur,
                    u.per.as_str(),
                    u.description
                );
            }
        }
        if !e.unpriced.is_empty() {
            let _ = writeln!(out, "\nunpriced (not in the total):");
            for u in &e.unpriced {
                let _ = writeln!(out, "  {:<40} {}: {}", u.sku, u.description, u.reason);
            }
        }
        let _ = writeln!(
            out,
            "\nnot estimated: data transfer, requests, load balancer capacity units, taxes, \
             discounts and free tiers"
        );
        out
    }
}
