//! Price catalogs: list prices as data, one file per cloud and region group, each
//! price with its unit, the public page or dataset it was read from and that figure's
//! date. The catalogs this crate ships are in `crates/gitpod-refarch/catalog/`
//! ([`Catalog::builtin`]); a team with negotiated prices loads its own
//! ([`Catalog::from_yaml`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::spec::Cloud;

/// Hours in a month, as the vendors' calculators count them (8,760 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// The catalogs shipped with the crate, as (file name, text).
const BUILTIN: &[(&str, &str)] = &[
    (
        "gcp-europe-west1.yaml",
        include_str!("../../catalog/gcp-europe-west1.yaml"),
    ),
    (
        "gcp-us-central1.yaml",
        include_str!("../../catalog/gcp-us-central1.yaml"),
    ),
    (
        "aws-eu-west-1.yaml",
        include_str!("../../catalog/aws-eu-west-1.yaml"),
    ),
    (
        "aws-us-east-1.yaml",
        include_str!("../../catalog/aws-us-east-1.yaml"),
    ),
    (
        "azure-northeurope.yaml",
        include_str!("../../catalog/azure-northeurope.yaml"),
    ),
    (
        "azure-eastus.yaml",
        include_str!("../../catalog/azure-eastus.yaml"),
    ),
];

/// What a price is per.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriceUnit {
    /// Per unit and hour (a node, a cluster, a NAT gateway).
    Hour,
    /// Per unit and day (a registry tier billed daily).
    Day,
    /// Per unit and month (a DNS zone, a disk of a fixed tier).
    Month,
    /// Per GiB and month (provisioned disk or database storage).
    GibMonth,
}

impl PriceUnit {
    /// The factor from a price in this unit to a monthly price.
    pub fn per_month(self) -> f64 {
        match self {
            PriceUnit::Hour => HOURS_PER_MONTH,
            PriceUnit::Day => HOURS_PER_MONTH / 24.0,
            PriceUnit::Month | PriceUnit::GibMonth => 1.0,
        }
    }

    /// Whether the unit prices a size in GiB (else a count of things).
    pub fn is_per_gib(self) -> bool {
        matches!(self, PriceUnit::GibMonth)
    }

    /// `hour`, `day`, `month`, `GiB-month`.
    pub fn as_str(self) -> &'static str {
        match self {
            PriceUnit::Hour => "hour",
            PriceUnit::Day => "day",
            PriceUnit::Month => "month",
            PriceUnit::GibMonth => "GiB-month",
        }
    }
}

/// One list price.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Price {
    /// The price in the catalog's currency, per [`Price::per`].
    pub price: f64,
    /// What it is per.
    pub per: PriceUnit,
    /// The key of its source in [`Catalog::sources`].
    pub source: String,
    /// The date the source gives for the figure (`YYYY-MM-DD`), if it gives one.
    #[serde(default)]
    pub as_of: Option<String>,
    /// How the figure was derived from the source, when it is not read as is.
    #[serde(default)]
    pub note: Option<String>,
}

/// Where prices were read.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    /// The public page or dataset (an address).
    pub url: String,
    /// What it is.
    pub title: String,
}

/// A price catalog for one cloud and a group of regions with the same prices.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Catalog {
    /// The cloud.
    pub cloud: Cloud,
    /// The regions these prices are for.
    pub regions: Vec<String>,
    /// ISO 4217 currency of every price (`USD`).
    pub currency: String,
    /// When the prices were read into this file (`YYYY-MM-DD`).
    pub read: String,
    /// The sources, by key.
    pub sources: BTreeMap<String, Source>,
    /// Prices by SKU (`compute/n2d-standard-4`, `disk/pd-ssd`, ...).
    pub prices: BTreeMap<String, Price>,
    /// The file it was loaded from, for messages.
    #[serde(skip)]
    pub file: String,
}

impl Catalog {
    /// Parse a catalog (YAML) and check it: every price positive and finite, every
    /// source named, every date a date.
    pub fn from_yaml(file: &str, text: &str) -> Result<Catalog> {
        let mut c: Catalog = serde_yaml_ng::from_str(text).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("price catalog {file}: {e}"),
            )
        })?;
        c.file = file.to_string();
        let bad = |what: String| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("price catalog {file}: {what}"),
            )
        };
        if c.currency.len() != 3 || !c.currency.chars().all(|ch| ch.is_ascii_uppercase()) {
            return Err(bad(format!(
                "currency '{}' is not an ISO 4217 code",
                c.currency
            )));
        }
        if c.regions.is_empty() {
            return Err(bad("regions is empty".into()));
        }
        days_since_epoch(&c.read)
            .ok_or_else(|| bad(format!("read '{}' is not YYYY-MM-DD", c.read)))?;
        for (sku, p) in &c.prices {
            if !(p.price.is_finite() && p.price > 0.0) {
                return Err(bad(format!(
                    "prices.{sku}: {} is not a positive price (an unknown price is left out, never 0)",
                    p.price
                )));
            }
            if !c.sources.contains_key(&p.source) {
                return Err(bad(format!(
                    "prices.{sku}.source: no source '{}'",
                    p.source
                )));
            }
            if let Some(d) = &p.as_of {
                days_since_epoch(d)
                    .ok_or_else(|| bad(format!("prices.{sku}.asOf: '{d}' is not YYYY-MM-DD")))?;
            }
        }
        Ok(c)
    }

    /// Every catalog shipped with the crate.
    pub fn builtin_all() -> Result<Vec<Catalog>> {
        BUILTIN
            .iter()
            .map(|(file, text)| Catalog::from_yaml(&format!("catalog/{file}"), text))
            .collect()
    }

    /// The shipped catalog for a cloud's region, if there is one.
    pub fn builtin(cloud: Cloud, region: &str) -> Result<Option<Catalog>> {
        Ok(Catalog::builtin_all()?
            .into_iter()
            .find(|c| c.cloud == cloud && c.regions.iter().any(|r| r == region)))
    }

    /// The price of a SKU, if the catalog has it.
    pub fn price(&self, sku: &str) -> Option<&Price> {
        self.prices.get(sku)
    }

    /// The oldest date of the catalog's prices: the oldest `asOf`, or the date the
    /// catalog was read when no price is dated.
    pub fn oldest_price(&self) -> &str {
        self.prices
            .values()
            .filter_map(|p| p.as_of.as_deref())
            .filter(|d| days_since_epoch(d).is_some())
            .min()
            .unwrap_or(&self.read)
    }

    /// How many days old the oldest price is at `today_unix_days` (days since
    /// 1970-01-01), or `None` if a date cannot be read.
    pub fn age_days(&self, today_unix_days: i64) -> Option<i64> {
        days_since_epoch(self.oldest_price()).map(|d| today_unix_days - d)
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (days-from-civil), `None` if it is
/// not one.
pub fn days_since_epoch(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max = *month_days.get(usize::try_from(m - 1).ok()?)?;
    if !(1..=max).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(days_since_epoch("1970-01-01"), Some(0));
        assert_eq!(days_since_epoch("2000-03-01"), Some(11_017));
        assert_eq!(days_since_epoch("2026-11-30"), Some(20_787));
        assert_eq!(days_since_epoch("2024-02-29"), Some(19_782));
        assert_eq!(days_since_epoch("2023-02-29"), None);
        assert_eq!(days_since_epoch("2026-13-01"), None);
        assert_eq!(days_since_epoch("26-11-30"), None);
        assert_eq!(days_since_epoch("2026-11-30-1"), None);
    }

    #[test]
    fn shipped_catalogs_load_and_cover_the_default_regions() {
        let all = Catalog::builtin_all().expect("catalogs");
        assert_eq!(all.len(), BUILTIN.len());
        for (cloud, region) in [
            (Cloud::Gcp, "europe-west1"),
            (Cloud::Aws, "eu-west-1"),
            (Cloud::Azure, "northeurope"),
        ] {
            let c = Catalog::builtin(cloud, region)
                .expect("load")
                .expect("a catalog");
            assert_eq!(c.currency, "USD");
            assert!(c.age_days(days_since_epoch(&c.read).unwrap_or(0)).is_some());
        }
    }

    #[test]
    fn a_zero_price_or_an_unnamed_source_is_refused() {
        let base = "cloud: gcp\nregions: [r]\ncurrency: USD\nread: 2026-11-30\nsources:\n  s: {url: 'https://x', title: x}\nprices:\n";
        let zero = format!("{base}  compute/a: {{price: 0, per: hour, source: s}}\n");
        let e = Catalog::from_yaml("t.yaml", &zero).unwrap_err();
        assert!(e.to_string().contains("never 0"), "{e}");
        let nosrc = format!("{base}  compute/a: {{price: 1, per: hour, source: t}}\n");
        let e = Catalog::from_yaml("t.yaml", &nosrc).unwrap_err();
        assert!(e.to_string().contains("no source 't'"), "{e}");
        let date =
            format!("{base}  compute/a: {{price: 1, per: hour, source: s, asOf: 2026-02-30}}\n");
        assert!(Catalog::from_yaml("t.yaml", &date).is_err());
        let ok =
            format!("{base}  compute/a: {{price: 1, per: hour, source: s, asOf: 2025-03-06}}\n");
        let c = Catalog::from_yaml("t.yaml", &ok).unwrap();
        assert_eq!(c.oldest_price(), "2025-03-06");
        assert_eq!(
            c.age_days(days_since_epoch("2026-11-30").unwrap()),
            Some(634)
        );
    }
}
