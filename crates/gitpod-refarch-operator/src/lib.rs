//! A Kubernetes controller for gitpod-refarch.
//!
//! A [`GitpodInstallation`](crd::GitpodInstallation) is the SDK's spec (the same YAML
//! as the CLI's spec file) plus an `operator` block (credentials, where the installer
//! bundle goes, the deletion policy). The controller reconciles each one as the CLI
//! would run it: observe, plan, apply; drift repaired on a resync period; a finalizer
//! that destroys what the installation made (or retains it with `deletionPolicy:
//! Retain`). State lives in a Secret next to the resource (the bootstrap crate's
//! `KubeStateStore`), locked for each run, so the CLI and the controller never run on
//! one state at once. Replicas elect a leader on a `Lease`; installations that share a
//! cloud account share a budget of concurrent cloud calls.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use gitpod_refarch_operator::{controller, factory::SimFactory};
//!
//! let client = kube::Client::try_default().await?;
//! let config = controller::OperatorConfig::new("replica-1");
//! controller::run(client, Arc::new(SimFactory::default()), config).await?;
//! # Ok(())
//! # }
//! ```

pub mod budgets;
pub mod client;
pub mod controller;
pub mod crd;
pub mod factory;
pub mod leader;
pub mod manifests;
pub mod sources;
