//! What an installation costs: the bill of materials of a plan and a monthly estimate
//! from a price catalog.
//!
//! ```
//! use gitpod_refarch::cost::{BillOfMaterials, Catalog};
//! use gitpod_refarch::spec::{Cloud, ReferenceArchitecture};
//!
//! let spec = ReferenceArchitecture::builder(Cloud::Aws)
//!     .name("gitpod")
//!     .domain("gitpod.example.com")
//!     .acme_email("ops@example.com")
//!     .build()?;
//! let bom = BillOfMaterials::for_spec(&spec);
//! let catalog = Catalog::builtin(Cloud::Aws, "eu-west-1")?.expect("a shipped catalog");
//! let estimate = bom.cost(&catalog)?;
//! println!("{} / month", estimate.total.display(&estimate.currency));
//! for item in &estimate.unpriced {
//!     println!("unpriced: {} ({})", item.sku, item.description);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`BillOfMaterials`]: every billable item a plan creates or keeps
//!   ([`Plan::bill_of_materials`](crate::Plan::bill_of_materials), or
//!   [`BillOfMaterials::for_spec`] without looking at the cloud), with its SKU
//!   (`compute/n2d-standard-16`, `disk/pd-ssd`, `database/db.m5.large`, ...) and the
//!   quantity at the pools' minimum, as the spec creates them, and at their maximum.
//!   Which SKUs a resource bills is each cloud's pricing model ([`bom`]); items whose
//!   quantity depends on use (stored objects, images, backups) are listed with their
//!   unit price, never in the totals.
//! - [`Catalog`]: list prices as data, one file per cloud and region group, each price
//!   with its source and date.
//! - [`Estimate`]: per item and in total, a [`MonthlyRange`] (minimum, as specified,
//!   maximum). A SKU the catalog lacks is [`Estimate::unpriced`], never priced at 0; a
//!   catalog older than a set age is flagged ([`Estimate::staleness`]).
//!
//! Not estimated: data transfer, requests, load balancer traffic units, taxes,
//! discounts (committed use, savings plans, reservations) and free tiers.

pub mod bom;
mod catalog;

use serde::Serialize;

pub use catalog::{days_since_epoch, Catalog, Price, PriceUnit, Source, HOURS_PER_MONTH};

use crate::error::{Error, ErrorKind, Result};
use crate::resource::{Desired, ResourceId};
use crate::spec::Cloud;

/// How an item is counted.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// A number of things (nodes, clusters, zones, disks of a tier).
    Count,
    /// A size in GiB (provisioned disk or database storage).
    Gib,
}

/// A quantity over the range the installation can scale: pools at their minimum, as
/// the spec creates them, and at their maximum. Fixed items have the same three.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantity {
    /// Node pools at their minimum.
    pub min: f64,
    /// As apply creates the installation (each pool at its starting size).
    pub spec: f64,
    /// Node pools at their maximum.
    pub max: f64,
}

impl Quantity {
    /// The same quantity at every point.
    pub fn fixed(n: f64) -> Self {
        Quantity {
            min: n,
            spec: n,
            max: n,
        }
    }

    /// Scaled by a factor.
    pub fn times(self, f: f64) -> Self {
        Quantity {
            min: self.min * f,
            spec: self.spec * f,
            max: self.max * f,
        }
    }
}

/// One billable item.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BillItem {
    /// The plan's resource it belongs to.
    pub resource: ResourceId,
    /// The catalog key (`compute/m6i.4xlarge`).
    pub sku: String,
    /// What it is, for people.
    pub description: String,
    /// How it is counted.
    pub measure: Measure,
    /// How many; `None` when it depends on use (listed with its unit price, not in
    /// the totals).
    pub quantity: Option<Quantity>,
}

/// Every billable item of an installation, for one cloud and region.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BillOfMaterials {
    /// The cloud billing the items.
    pub cloud: Cloud,
    /// The region.
    pub region: String,
    /// The items, in the plan's order.
    pub items: Vec<BillItem>,
}

impl BillOfMaterials {
    /// The items of these resources (desired or observed).
    pub fn from_resources<'a>(
        cloud: Cloud,
        region: &str,
        resources: impl IntoIterator<Item = &'a Desired>,
    ) -> Self {
        let resources: Vec<&Desired> = resources.into_iter().collect();
        BillOfMaterials {
            cloud,
            region: region.to_string(),
            items: bom::items(cloud, &resources),
        }
    }

    /// The monthly estimate with a catalog's prices. The catalog must be for this
    /// cloud and region.
    pub fn cost(&self, catalog: &Catalog) -> Result<Estimate> {
        if catalog.cloud != self.cloud || !catalog.regions.contains(&self.region) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the price catalog {} is for {} {}, not {} {}",
                    catalog.file,
                    catalog.cloud.as_str(),
                    catalog.regions.join(", "),
                    self.cloud.as_str(),
                    self.region
                ),
            ));
        }
        let mut e = Estimate {
            currency: catalog.currency.clone(),
            catalog: Some(catalog.file.clone()),
            prices_as_of: Some(catalog.oldest_price().to_string()),
            lines: Vec::new(),
            usage: Vec::new(),
            unpriced: Vec::new(),
            total: MonthlyRange::default(),
        };
        for item in &self.items {
            let Some(price) = catalog.price(&item.sku) else {
                e.unpriced.push(Unpriced::new(item, "not in the catalog"));
                continue;
            };
            let fits = match item.measure {
                Measure::Gib => price.per.is_per_gib(),
                Measure::Count => !price.per.is_per_gib(),
            };
            if !fits {
                e.unpriced.push(Unpriced::new(
                    item,
                    &format!("the catalog prices it per {}", price.per.as_str()),
                ));
                continue;
            }
            match item.quantity {
                None => e.usage.push(UsageLine {
                    resource: item.resource.clone(),
                    sku: item.sku.clone(),
                    description: item.description.clone(),
                    unit_price: price.price,
                    per: price.per,
                }),
                Some(q) => {
                    let monthly = q.times(price.price * price.per.per_month());
                    let monthly = MonthlyRange {
                        min: monthly.min,
                        spec: monthly.spec,
                        max: monthly.max,
                    };
                    e.total = e.total.plus(&monthly);
                    e.lines.push(EstimateLine {
                        resource: item.resource.clone(),
                        sku: item.sku.clone(),
                        description: item.description.clone(),
                        quantity: q,
                        measure: item.measure,
                        unit_price: price.price,
                        per: price.per,
                        monthly,
                    });
                }
            }
        }
        Ok(e)
    }

    /// Every item unpriced (no catalog for this cloud and region), with the reason.
    pub fn unpriced(&self, reason: &str) -> Estimate {
        Estimate {
            currency: "USD".into(),
            catalog: None,
            prices_as_of: None,
            lines: Vec::new(),
            usage: Vec::new(),
            unpriced: self
                .items
                .iter()
                .map(|i| Unpriced::new(i, reason))
                .collect(),
            total: MonthlyRange::default(),
        }
    }

    /// The estimate with the shipped catalog of this cloud and region, or every item
    /// unpriced when the crate ships none for it.
    pub fn cost_builtin(&self) -> Result<Estimate> {
        match Catalog::builtin(self.cloud, &self.region)? {
            Some(c) => self.cost(&c),
            None => Ok(self.unpriced(&format!(
                "no price catalog for {} {}",
                self.cloud.as_str(),
                self.region
            ))),
        }
    }
}

/// A monthly amount over the installation's range.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MonthlyRange {
    /// Node pools at their minimum.
    pub min: f64,
    /// As the spec creates the installation.
    pub spec: f64,
    /// Node pools at their maximum.
    pub max: f64,
}

impl MonthlyRange {
    fn plus(&self, o: &MonthlyRange) -> MonthlyRange {
        MonthlyRange {
            min: self.min + o.min,
            spec: self.spec + o.spec,
            max: self.max + o.max,
        }
    }

    /// `self - before`, bound by bound.
    pub fn minus(&self, before: &MonthlyRange) -> MonthlyRange {
        MonthlyRange {
            min: self.min - before.min,
            spec: self.spec - before.spec,
            max: self.max - before.max,
        }
    }

    /// `$1,234 .. $5,678` (whole units; one amount when min and max are equal).
    pub fn display(&self, currency: &str) -> String {
        let (a, b) = (
            money(self.min, currency, false),
            money(self.max, currency, false),
        );
        if a == b {
            a
        } else {
            format!("{a} .. {b}")
        }
    }

    /// `+$2,310 .. +$23,100` (signed), for a change.
    pub fn display_delta(&self, currency: &str) -> String {
        let (a, b) = (
            money(self.min, currency, true),
            money(self.max, currency, true),
        );
        if a == b {
            a
        } else {
            format!("{a} .. {b}")
        }
    }
}

/// An amount rounded to whole units with thousands separators: `$1,234`,
/// `-$56`, `+$0`, or `1,234 EUR` for a currency without a symbol here.
pub fn money(amount: f64, currency: &str, signed: bool) -> String {
    let rounded = amount.round();
    let negative = rounded < 0.0;
    let digits = format!("{:.0}", rounded.abs());
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if negative {
        "-"
    } else if signed {
        "+"
    } else {
        ""
    };
    match currency {
        "USD" => format!("{sign}${grouped}"),
        "EUR" => format!("{sign}€{grouped}"),
        other => format!("{sign}{grouped} {other}"),
    }
}

/// One priced item of an estimate.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EstimateLine {
    /// The resource.
    pub resource: ResourceId,
    /// The SKU.
    pub sku: String,
    /// What it is.
    pub description: String,
    /// How many.
    pub quantity: Quantity,
    /// How it is counted.
    pub measure: Measure,
    /// The catalog's price.
    pub unit_price: f64,
    /// What the price is per.
    pub per: PriceUnit,
    /// Per month.
    pub monthly: MonthlyRange,
}

/// An item billed by use: its unit price, not in the totals.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageLine {
    /// The resource.
    pub resource: ResourceId,
    /// The SKU.
    pub sku: String,
    /// What it is.
    pub description: String,
    /// The catalog's price.
    pub unit_price: f64,
    /// What the price is per.
    pub per: PriceUnit,
}

/// An item the catalog has no price for: never counted as free.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unpriced {
    /// The resource.
    pub resource: ResourceId,
    /// The SKU.
    pub sku: String,
    /// What it is.
    pub description: String,
    /// How many, if it is counted.
    pub quantity: Option<Quantity>,
    /// Why it has no price.
    pub reason: String,
}

impl Unpriced {
    fn new(item: &BillItem, reason: &str) -> Self {
        Unpriced {
            resource: item.resource.clone(),
            sku: item.sku.clone(),
            description: item.description.clone(),
            quantity: item.quantity,
            reason: reason.to_string(),
        }
    }
}

/// A monthly estimate: per item, in total, what is billed by use and what the
/// catalog could not price.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The currency of every amount.
    pub currency: String,
    /// The catalog used (`None`: none for this cloud and region).
    pub catalog: Option<String>,
    /// The date of the catalog's oldest price.
    pub prices_as_of: Option<String>,
    /// The priced items.
    pub lines: Vec<EstimateLine>,
    /// Items billed by use (unit prices only).
    pub usage: Vec<UsageLine>,
    /// Items without a price: the total leaves them out and says so.
    pub unpriced: Vec<Unpriced>,
    /// The sum of the priced items.
    pub total: MonthlyRange,
}

impl Estimate {
    /// A warning when the catalog's oldest price is more than `max_age_days` old at
    /// `today_unix_days` (days since 1970-01-01).
    pub fn staleness(&self, today_unix_days: i64, max_age_days: i64) -> Option<String> {
        let as_of = self.prices_as_of.as_deref()?;
        let age = today_unix_days - days_since_epoch(as_of)?;
        (age > max_age_days).then(|| {
            format!(
                "the price catalog {} has prices from {as_of} ({age} days old, more than \
                 {max_age_days}): check them against the vendor's calculator",
                self.catalog.as_deref().unwrap_or("?")
            )
        })
    }

    /// The change from `before` to this estimate.
    pub fn delta(&self, before: &Estimate) -> MonthlyRange {
        self.total.minus(&before.total)
    }
}
