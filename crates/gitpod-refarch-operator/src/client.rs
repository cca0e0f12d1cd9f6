//! The controller's Kubernetes client: at most a set number of API requests in flight.
//!
//! Without a limit, a thousand installations reconciled at once open a connection
//! (and a TLS session) to the API server per concurrent request: measured, about
//! 1,200 connections at 1,000 installations, each with its buffers, and the API
//! server's own in-flight limit (`--max-requests-inflight`, 400 by default) would
//! answer the excess with 429s. Requests past the limit wait in order for a free
//! slot instead, over a few reused connections.
//!
//! A request holds its slot until its response headers arrive, so a watch, whose
//! body streams for minutes, holds none. Leader election uses a client of its own
//! ([`unlimited`]), so that a queue of reconcile requests never delays a Lease
//! renewal past its deadline.

use gitpod_refarch::{Error, ErrorKind, Result};
use kube::client::ClientBuilder;
use tower::limit::ConcurrencyLimitLayer;

/// The default limit of API requests in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("cannot build a Kubernetes client: {e}"),
    )
}

/// A client that sends at most `max_in_flight` requests at once (0 counts as 1: for no
/// limit, use [`unlimited`]).
pub fn limited(config: kube::Config, max_in_flight: usize) -> Result<kube::Client> {
    let builder = ClientBuilder::try_from(config).map_err(build_error)?;
    Ok(builder
        .with_layer(&ConcurrencyLimitLayer::new(max_in_flight.max(1)))
        .build())
}

/// A client without a limit (leader election).
pub fn unlimited(config: kube::Config) -> Result<kube::Client> {
    kube::Client::try_from(config).map_err(build_error)
}
