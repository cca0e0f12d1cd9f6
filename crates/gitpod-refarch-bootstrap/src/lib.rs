//! In-cluster bootstrap for gitpod-refarch. **Work in progress**: only the DNS
//! delegation check exists so far.
//!
//! ```no_run
//! use gitpod_refarch_bootstrap::delegation::DelegationCheck;
//! use std::time::Duration;
//!
//! # async fn demo() -> gitpod_refarch::Result<()> {
//! // The name servers Cloud DNS (or Route53, ...) assigned to the zone it created.
//! let expected: Vec<String> = (1..=4)
//!     .map(|i| format!("ns-cloud-a{i}.googledomains.com."))
//!     .collect();
//! let delegation = DelegationCheck::new() // the resolvers of /etc/resolv.conf
//!     .timeout(Duration::from_secs(2))
//!     .check("gitpod.example.com", &expected)
//!     .await?;
//! if !delegation.is_delegated() {
//!     // Tells the user exactly which NS records to add (or remove) at the parent zone.
//!     eprintln!("{delegation}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The rest of the bootstrap (installing cert-manager, the DNS-01 issuer and the
//! certificate, then waiting for it) is **not built yet**. The delegation check comes
//! first because a zone the parent does not delegate to is the most common reason a
//! DNS-01 certificate never issues: the ACME server asks the public DNS, which never sees
//! the challenge records written into the new zone.
//!
//! Errors are the core crate's [`gitpod_refarch::Error`], with its
//! [`ErrorKind`](gitpod_refarch::ErrorKind)s: `InvalidInput` for a bad zone or name
//! server name (before any query), `Transient` when a resolver or server does not answer
//! (naming it), `NotFound` when no parent zone or parent name server can be found.

pub mod delegation;

pub use delegation::{Delegation, DelegationCheck};
