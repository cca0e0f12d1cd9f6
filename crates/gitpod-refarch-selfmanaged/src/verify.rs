//! The data-plane checks of `verify`: database, registry and object storage with the
//! credentials in the installer bundle (what Gitpod will get), whichever provider
//! made them; and the self-managed DNS server when one is configured.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::verify::{Check, Part, VerifyContext};
use gitpod_refarch::Verifier;

use crate::reach::Reach;
use crate::Rfc2136Dns;

/// Checks the database, registry and object storage as Gitpod will use them, and the
/// self-managed DNS server when one is given.
#[derive(Clone)]
pub struct DataPlaneVerifier {
    self_managed: BTreeSet<Part>,
    dns: Option<Arc<Rfc2136Dns>>,
    registry_ca: Option<String>,
    timeout: Duration,
}

impl Default for DataPlaneVerifier {
    fn default() -> Self {
        DataPlaneVerifier::new()
    }
}

impl std::fmt::Debug for DataPlaneVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlaneVerifier")
            .field("self_managed", &self.self_managed)
            .field("dns", &self.dns.as_ref().map(|d| d.config().zone.clone()))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl DataPlaneVerifier {
    /// Checks for database, registry and storage; every part treated as cloud-managed
    /// (unreachable = skipped) until marked with [`DataPlaneVerifier::self_managed`].
    pub fn new() -> Self {
        DataPlaneVerifier {
            self_managed: BTreeSet::new(),
            dns: None,
            registry_ca: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// `part` is self-managed: the SDK reached it during apply, so unreachable is a
    /// failure.
    #[must_use]
    pub fn self_managed(mut self, part: Part) -> Self {
        self.self_managed.insert(part);
        self
    }

    /// Also check the self-managed DNS server (zone, TSIG key, records).
    #[must_use]
    pub fn dns(mut self, dns: Arc<Rfc2136Dns>) -> Self {
        self.self_managed.insert(Part::Dns);
        self.dns = Some(dns);
        self
    }

    /// Trust this CA (PEM) for the registry's certificate (the installer's bundle
    /// carries none for the registry).
    #[must_use]
    pub fn registry_ca(mut self, ca_pem: impl Into<String>) -> Self {
        self.registry_ca = Some(ca_pem.into());
        self
    }

    /// The budget of each network step (default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn reach(&self, part: Part) -> Reach {
        Reach {
            expect_reachable: self.self_managed.contains(&part),
            timeout: self.timeout,
        }
    }
}

#[async_trait::async_trait]
impl Verifier for DataPlaneVerifier {
    fn name(&self) -> &str {
        "data-plane"
    }

    fn parts(&self) -> Vec<Part> {
        let mut p = vec![Part::Database, Part::Registry, Part::Storage];
        if self.dns.is_some() {
            p.push(Part::Dns);
        }
        p
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Vec<Check> {
        let db = self.reach(Part::Database);
        let reg = self.reach(Part::Registry);
        let st = self.reach(Part::Storage);
        let dns = self.reach(Part::Dns);
        let (a, b, c, d) = futures::join!(
            crate::database::checks(ctx, &db),
            crate::registry::checks_with_ca(ctx, &reg, self.registry_ca.as_deref()),
            crate::storage::checks(ctx, &st),
            async {
                match &self.dns {
                    Some(d) => crate::dns::checks(d, ctx, &dns).await,
                    None => Vec::new(),
                }
            }
        );
        a.into_iter().chain(b).chain(c).chain(d).collect()
    }
}
