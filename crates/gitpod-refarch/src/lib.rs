//! Provision, verify and tear down the Gitpod self-hosted **single-cluster reference
//! architecture** from Rust.
//!
//! ```no_run
//! use std::sync::Arc;
//! use gitpod_refarch::{Engine, Providers, spec::{Cloud, ReferenceArchitecture}};
//! use gitpod_refarch::sim::{LatencyProfile, SimCloud};
//! use gitpod_refarch::engine::TokioClock;
//!
//! # async fn run() -> Result<(), gitpod_refarch::Error> {
//! // 1. Describe the installation; every field not set takes the cloud's defaults.
//! let spec = ReferenceArchitecture::builder(Cloud::Aws)
//!     .name("gitpod")
//!     .domain("gitpod.example.com")
//!     .acme_email("ops@example.com")
//!     .build()?;
//!
//! // 2. Pick providers: any mix of cloud crates, or the simulated cloud.
//! let clock = Arc::new(TokioClock::new());
//! let sim = Arc::new(SimCloud::new(clock.clone(), LatencyProfile::realistic().scaled(0.001)));
//! let engine = Engine::builder(Providers::all(sim)).clock(clock).build()?;
//!
//! // 3. Plan (one read per resource), look at it, apply it.
//! let plan = engine.plan(&spec).await?;
//! println!("{plan}");
//! let report = engine.apply(&plan).await?.into_result()?;
//! println!("delegate to: {:?}", report.outputs.name_servers());
//!
//! // 4. The installer config and secrets, with a fresh encryption key.
//! engine.installer_bundle(&spec).await?.write_to(std::path::Path::new("out"))?;
//!
//! // 5. Tear it all down again.
//! engine.destroy(&spec).await?.into_result()?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`spec`]: the typed spec ([`spec::ReferenceArchitecture`]) with per-cloud
//!   defaults, loaded from YAML/JSON or built in code; [`validate`] checks it
//!   without any network call and reports every problem at once.
//! - [`resource`]: the cloud-neutral resources, their desired state and outputs.
//! - [`provider`]: the five traits a cloud crate implements ([`ClusterProvider`],
//!   [`DnsProvider`], [`ObjectStore`], [`Registry`], [`Database`]).
//! - [`plan`]: the pure planner and the immutable [`Plan`].
//! - [`cost`]: a plan's bill of materials ([`Plan::bill_of_materials`]) priced with a
//!   [`cost::Catalog`] of list prices into a monthly range.
//! - [`engine`]: observe, apply and destroy, with retries, waiters, events,
//!   cancellation and the [`state`] journal.
//! - [`installer`]: the Gitpod installer config and secrets.
//! - [`sim`] (feature `sim`): the simulated cloud.
//! - [`verify`]: the [`Verifier`] trait and [`VerifyReport`] (checks as pass, fail or
//!   skipped, with the fix).
//! - [`secret`]: [`Secret`], which never prints.
//!
//! The core makes no network call and knows no cloud: cloud crates
//! (`gitpod-refarch-gcp`, `-aws`, `-azure`) implement the traits.

pub mod cost;
pub mod engine;
pub mod error;
pub mod installer;
pub mod outputs;
pub mod plan;
mod private_file;
pub mod problem;
pub mod provider;
pub mod resource;
pub mod secret;
#[cfg(feature = "sim")]
pub mod sim;
pub mod spec;
pub mod state;
pub mod tls;
pub mod validate;
pub mod verify;

/// The attribute the provider traits are declared with: implement them with
/// `#[gitpod_refarch::async_trait]`.
pub use async_trait::async_trait;
pub use engine::{Engine, EngineBuilder, RunReport};
pub use error::{Error, ErrorKind, Result};
pub use plan::Plan;
pub use provider::{
    ClusterBootstrap, ClusterCredentials, ClusterProvider, Database, DnsProvider, ObjectStore,
    Providers, ProvidersBuilder, Registry,
};
pub use secret::Secret;
pub use spec::ReferenceArchitecture;
pub use verify::{Check, CheckStatus, Verifier, VerifyReport};
