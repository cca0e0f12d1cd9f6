//! The parts a platform team already runs, as `gitpod-refarch` providers, and the
//! data-plane checks of `verify`.
//!
//! | Part | Type | Trait | What it does |
//! |---|---|---|---|
//! | An existing MySQL or MariaDB server | [`SelfManagedDatabase`] | `Database` | creates the `gitpod` database and a dedicated user; refuses a server with `explicit_defaults_for_timestamp` ON |
//! | DNS over RFC 2136 with TSIG | [`Rfc2136Dns`] | `DnsProvider` | reads the existing zone, writes the three records by dynamic update, reports cert-manager's `rfc2136` solver |
//! | Any OCI registry | [`ExistingRegistry`] | `Registry` | checks the push credentials, reports the `.dockerconfigjson` |
//! | S3-compatible storage | [`S3CompatibleStorage`] | `ObjectStore` | creates the bucket if allowed, reports what the installer accepts |
//!
//! Each is built from its config ([`DatabaseConfig`], [`DnsConfig`], [`RegistryConfig`],
//! [`StorageConfig`]) or, from a spec whose parts name `provider: selfManaged`, by
//! [`SelfManaged::for_spec`] (secrets read from the environment or files named in the
//! spec). [`DataPlaneVerifier`] checks the database, registry and storage with the
//! credentials in the installer bundle, whichever provider made them.

pub mod database;
pub mod dns;
mod reach;
pub mod registry;
pub mod spec;
pub mod storage;
pub mod verify;

pub use database::{DatabaseConfig, DatabaseTlsMode, SelfManagedDatabase};
pub use dns::{DnsConfig, Rfc2136Dns, TsigAlgorithm};
pub use registry::{ExistingRegistry, RegistryConfig, RegistryVerifier};
pub use spec::SelfManaged;
pub use storage::{S3CompatibleStorage, StorageConfig};
pub use verify::DataPlaneVerifier;
