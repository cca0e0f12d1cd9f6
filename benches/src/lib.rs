//! Helpers shared by the benchmarks: a reference spec, engines on the simulated cloud,
//! and the critical path of a plan under a latency profile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::{Clock, TokioClock};
use gitpod_refarch::plan::{self, Mode, Plan};
use gitpod_refarch::resource::{ResourceId, ResourceKind};
use gitpod_refarch::sim::{CallCounts, LatencyProfile, SimCloud};
use gitpod_refarch::spec::{Cloud, ReferenceArchitecture};
use gitpod_refarch::state::MemoryStateStore;
use gitpod_refarch::{Engine, Providers};

/// The GCP reference spec (the guide's).
pub fn reference_spec(name: &str) -> ReferenceArchitecture {
    ReferenceArchitecture::builder(Cloud::Gcp)
        .name(name)
        .domain(format!("{name}.example.com"))
        .gcp_project("gitpod-refarch-bench")
        .acme_email("ops@example.com")
        .build_unchecked()
}

/// One installation's engine on its own simulated cloud.
pub struct Installation {
    /// The simulated cloud.
    pub sim: Arc<SimCloud>,
    /// The engine.
    pub engine: Engine,
}

impl Installation {
    /// A fresh installation with `profile`, `concurrency` steps at once, on real time.
    pub fn new(profile: LatencyProfile, concurrency: usize) -> gitpod_refarch::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let sim = Arc::new(SimCloud::new(clock.clone(), profile));
        let engine = Engine::builder(Providers::all(sim.clone()))
            .clock(clock)
            .state(Arc::new(MemoryStateStore::new()))
            .concurrency(concurrency)
            .build()?;
        Ok(Installation { sim, engine })
    }

    /// The call counts so far.
    pub fn counts(&self) -> CallCounts {
        self.sim.counts()
    }
}

/// The longest path through the plan's dependency graph (and serial lanes), weighted
/// by the profile's create durations: the fastest possible apply.
pub fn critical_path(plan: &Plan, profile: &LatencyProfile) -> Duration {
    assert_eq!(plan.mode(), Mode::Apply);
    let mut finish: BTreeMap<ResourceId, Duration> = BTreeMap::new();
    let mut lane_free: BTreeMap<String, Duration> = BTreeMap::new();
    // Steps are in dependency order; lanes serialise in plan order.
    for s in plan.steps() {
        let ready = s
            .after
            .iter()
            .filter_map(|d| finish.get(d))
            .max()
            .copied()
            .unwrap_or_default();
        let start = ready.max(lane_free.get(&s.lane).copied().unwrap_or_default());
        let end = start + profile.create(s.id.kind);
        lane_free.insert(s.lane.clone(), end);
        finish.insert(s.id.clone(), end);
    }
    finish.values().max().copied().unwrap_or_default()
}

/// The sum of all create durations: a strictly serial apply.
pub fn serial_path(plan: &Plan, profile: &LatencyProfile) -> Duration {
    plan.steps().iter().map(|s| profile.create(s.id.kind)).sum()
}

/// Plan against an empty cloud, without any provider (pure planner input).
pub fn empty_snapshot(spec: &ReferenceArchitecture) -> plan::Snapshot {
    plan::Snapshot {
        observed: plan::candidate_ids(spec)
            .into_iter()
            .map(|id| (id, None))
            .collect(),
        in_cluster: true,
        ..Default::default()
    }
}

/// Number of resources a spec creates.
pub fn resource_count(spec: &ReferenceArchitecture) -> usize {
    plan::graph(spec).len()
}

/// Kinds, for reporting.
pub fn kinds() -> &'static [ResourceKind] {
    &ResourceKind::ALL
}
