//! One file per in-cluster resource, each with how it is observed, ensured, deleted
//! and waited for. Every `ensure` first checks whether the cluster already matches, so
//! a second apply (or the round after a wait) changes nothing.
//!
//! Operation ids: `cert-manager/<ns>`, `external-dns/<ns>`, `issuer/<name>`,
//! `certificate/<ns>/<name>`, and `namespace-gone/<ns>` for a teardown
//! ([`crate::teardown`]).

pub(crate) mod cert_manager;
pub(crate) mod certificate;
pub(crate) mod cluster_access;
pub(crate) mod external_dns;
pub(crate) mod gitpod_namespace;
pub(crate) mod issuer;
