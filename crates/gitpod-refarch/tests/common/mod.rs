//! Shared helpers for the integration tests (included with `mod common;`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use gitpod_refarch::engine::{Clock, Event, EventSink, RetryPolicy, TokioClock, WaitPolicy};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::{Cloud, ReferenceArchitecture};
use gitpod_refarch::state::MemoryStateStore;
use gitpod_refarch::{Engine, Providers};

pub fn spec(cloud: Cloud) -> ReferenceArchitecture {
    let b = ReferenceArchitecture::builder(cloud)
        .name("gp")
        .domain("gitpod.example.com")
        .acme_email("ops@example.com");
    let b = match cloud {
        Cloud::Gcp => b.gcp_project("my-project-123"),
        Cloud::Azure => b.azure_subscription("0f8fad5b-d9cb-469f-a165-70867728950e"),
        _ => b,
    };
    b.build().expect("valid spec")
}

pub struct Harness {
    pub clock: Arc<dyn Clock>,
    pub sim: Arc<SimCloud>,
    pub store: Arc<MemoryStateStore>,
    pub events: Arc<Mutex<Vec<Event>>>,
}

impl Harness {
    pub fn new(profile: LatencyProfile) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let sim = Arc::new(SimCloud::new(clock.clone(), profile));
        Harness {
            clock,
            sim,
            store: Arc::new(MemoryStateStore::new()),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A fresh engine over the same cloud and state (as a new process would be).
    pub fn engine(&self) -> Engine {
        self.engine_with(|b| b)
    }

    pub fn engine_with(
        &self,
        f: impl FnOnce(gitpod_refarch::EngineBuilder) -> gitpod_refarch::EngineBuilder,
    ) -> Engine {
        let events = self.events.clone();
        let sink: EventSink = Arc::new(move |e: &Event| events.lock().unwrap().push(e.clone()));
        let b = Engine::builder(Providers::all(self.sim.clone()).with_in_cluster(self.sim.clone()))
            .clock(self.clock.clone())
            .state(self.store.clone())
            .retry(RetryPolicy::default())
            .wait(WaitPolicy::default())
            .on_event(sink);
        f(b).build().expect("engine")
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}
