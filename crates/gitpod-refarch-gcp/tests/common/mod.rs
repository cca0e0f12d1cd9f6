//! What the GCP tests share: the spec, the provider configuration for the fake, and an
//! engine with short retry and wait policies.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::{RetryPolicy, WaitPolicy};
use gitpod_refarch::spec::{RecordsTarget, ReferenceArchitecture};
use gitpod_refarch::state::MemoryStateStore;
use gitpod_refarch::{Engine, Providers};
use gitpod_refarch_fake_gcp::{FakeConfig, FakeGcp};
use gitpod_refarch_gcp::{GcpConfig, GcpProvider};

/// The project the fake knows.
pub const PROJECT: &str = "gitpod-e2e";
/// The region of the spec.
pub const REGION: &str = "europe-west1";

/// The reference architecture `gp` in [`PROJECT`], with an IPv4 records target.
pub fn spec() -> ReferenceArchitecture {
    let mut s = ReferenceArchitecture::from_yaml(&format!(
        "cloud: gcp\nname: gp\ndomain: gitpod.example.com\ngcp:\n  project: {PROJECT}\n\
         certificates:\n  issuer: acme\n  email: ops@example.com\n  \
         server: https://acme-v02.api.letsencrypt.org/directory\n"
    ))
    .unwrap();
    s.dns
        .set_records_target(Some(RecordsTarget::Ipv4("203.0.113.10".into())));
    s.validate().unwrap();
    s
}

/// The provider configuration for a fake at `url`, polling often.
pub fn config(url: &str) -> GcpConfig {
    GcpConfig::new(PROJECT, REGION)
        .endpoint_url(url)
        .poll_interval(Duration::from_millis(5))
}

/// A fake where [`PROJECT`] exists.
pub async fn fake(cfg: FakeConfig) -> FakeGcp {
    FakeGcp::start(cfg.with_projects([PROJECT])).await.unwrap()
}

/// An engine with short backoffs and waits.
pub fn engine(p: Arc<GcpProvider>, store: Arc<MemoryStateStore>) -> Engine {
    engine_for(Providers::all(p), store)
}

/// The same for any providers.
pub fn engine_for(providers: Providers, store: Arc<MemoryStateStore>) -> Engine {
    let mut retry = RetryPolicy::default();
    retry.initial_backoff = Duration::from_millis(5);
    retry.max_backoff = Duration::from_millis(100);
    retry.max_attempts = 40;
    retry.budget = Duration::from_secs(60);
    retry.propagation_budget = Duration::from_secs(60);
    let mut wait = WaitPolicy::default();
    wait.min_delay = Duration::from_millis(2);
    wait.max_delay = Duration::from_millis(20);
    wait.timeout = Duration::from_secs(60);
    Engine::builder(providers)
        .state(store)
        .retry(retry)
        .wait(wait)
        .build()
        .unwrap()
}
