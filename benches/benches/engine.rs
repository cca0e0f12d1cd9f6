//! Benchmarks of the planner and the engine on the simulated cloud.
//!
//! Figures that are ratios or counts (apply time / critical path, calls per resource,
//! peak heap) are printed as `metric:` lines next to criterion's timings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unused_must_use
)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gitpod_refarch::plan;
use gitpod_refarch::sim::LatencyProfile;
use gitpod_refarch_benches::*;
use peak_alloc::PeakAlloc;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

/// Real-time fraction of the realistic durations: a 990 s critical path takes ~0.5 s.
const SCALE: f64 = 1.0 / 2000.0;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn bench_plan(c: &mut Criterion) {
    let spec = reference_spec("gitpod");
    let empty = empty_snapshot(&spec);
    c.bench_function("plan/one-installation-all-create", |b| {
        b.iter(|| plan::plan(std::hint::black_box(&spec), std::hint::black_box(&empty)).unwrap())
    });
    // A no-op plan: everything observed as desired.
    let rt = runtime();
    let inst = Installation::new(LatencyProfile::instant(), 8).unwrap();
    rt.block_on(async {
        inst.engine
            .apply_spec(&spec)
            .await
            .unwrap()
            .into_result()
            .unwrap()
    });
    let snapshot = rt.block_on(inst.engine.observe(&spec)).unwrap();
    c.bench_function("plan/one-installation-no-op", |b| {
        b.iter(|| plan::plan(std::hint::black_box(&spec), std::hint::black_box(&snapshot)).unwrap())
    });
}

fn bench_apply(c: &mut Criterion) {
    let rt = runtime();
    let profile = LatencyProfile::realistic().scaled(SCALE);
    let spec = reference_spec("gitpod");
    let plan0 = rt
        .block_on(
            Installation::new(profile.clone(), 8)
                .unwrap()
                .engine
                .plan(&spec),
        )
        .unwrap();
    let cp = critical_path(&plan0, &profile);
    let serial = serial_path(&plan0, &profile);
    let mut group = c.benchmark_group("apply");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_millis(500));
    // Wall time of one apply with `concurrency` steps at once, as a ratio to the
    // critical path (collected per iteration).
    let mut bench = |name: &str, concurrency: usize, ratios: &mut Vec<f64>| {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let inst = Installation::new(profile.clone(), concurrency).unwrap();
                    let start = Instant::now();
                    rt.block_on(async {
                        inst.engine
                            .apply_spec(&spec)
                            .await
                            .unwrap()
                            .into_result()
                            .unwrap()
                    });
                    let t = start.elapsed();
                    ratios.push(t.as_secs_f64() / cp.as_secs_f64());
                    total += t;
                }
                total
            })
        });
    };
    let mut ratios = Vec::new();
    bench("realistic-profile", 8, &mut ratios);
    let mut serial_ratios = Vec::new();
    bench("realistic-profile-serial", 1, &mut serial_ratios);
    group.finish();
    println!(
        "metric: critical path {:.0} ms, serial sum {:.0} ms (scaled 1/{:.0})",
        cp.as_secs_f64() * 1e3,
        serial.as_secs_f64() * 1e3,
        1.0 / SCALE
    );
    println!(
        "metric: apply wall / critical path = {:.4} (median of {})",
        median(ratios.clone()),
        ratios.len()
    );
    println!(
        "metric: serial apply wall / critical path = {:.4} (median of {})",
        median(serial_ratios.clone()),
        serial_ratios.len()
    );
}

fn bench_noop(c: &mut Criterion) {
    let rt = runtime();
    let spec = reference_spec("gitpod");
    let inst = Installation::new(LatencyProfile::instant(), 8).unwrap();
    rt.block_on(async {
        inst.engine
            .apply_spec(&spec)
            .await
            .unwrap()
            .into_result()
            .unwrap()
    });
    let resources = resource_count(&spec) as f64;
    c.bench_function("reapply/no-op", |b| {
        b.iter_batched(
            || inst.sim.reset_counts(),
            |()| {
                rt.block_on(async {
                    inst.engine
                        .apply_spec(&spec)
                        .await
                        .unwrap()
                        .into_result()
                        .unwrap()
                });
                let counts = inst.counts();
                assert_eq!(counts.mutating, 0);
                counts
            },
            BatchSize::SmallInput,
        )
    });
    inst.sim.reset_counts();
    rt.block_on(async {
        inst.engine
            .apply_spec(&spec)
            .await
            .unwrap()
            .into_result()
            .unwrap()
    });
    let counts = inst.counts();
    println!(
        "metric: no-op re-apply: {} mutating calls, {} reads for {} resources ({:.2} reads/resource, {} polls)",
        counts.mutating,
        counts.reads,
        resources,
        counts.reads as f64 / resources,
        counts.polls
    );
}

fn bench_many(c: &mut Criterion) {
    let rt = runtime();
    let profile = LatencyProfile::realistic().scaled(SCALE);
    let one = {
        let inst = Installation::new(profile.clone(), 8).unwrap();
        let spec = reference_spec("gitpod");
        let start = Instant::now();
        rt.block_on(async {
            inst.engine
                .apply_spec(&spec)
                .await
                .unwrap()
                .into_result()
                .unwrap()
        });
        start.elapsed()
    };
    let mut group = c.benchmark_group("apply-100-concurrent");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_millis(500));
    let mut peaks = Vec::new();
    let mut walls = Vec::new();
    group.bench_function("realistic-profile", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                PEAK.reset_peak_usage();
                let base = PEAK.current_usage();
                let installs: Vec<(Installation, _)> = (0..100)
                    .map(|i| {
                        (
                            Installation::new(profile.clone(), 8).unwrap(),
                            reference_spec(&format!("gp{i}")),
                        )
                    })
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    let runs = installs
                        .iter()
                        .map(|(inst, spec)| inst.engine.apply_spec(spec));
                    for r in futures::future::join_all(runs).await {
                        r.unwrap().into_result().unwrap();
                    }
                });
                let t = start.elapsed();
                peaks.push(
                    (PEAK.peak_usage() - base.min(PEAK.peak_usage())) as f64 / (1024.0 * 1024.0),
                );
                walls.push(t.as_secs_f64());
                total += t;
            }
            total
        })
    });
    group.finish();
    println!(
        "metric: 100 concurrent installations: wall {:.0} ms vs one {:.0} ms (x{:.3}); peak heap {:.1} MiB (median of {})",
        median(walls.clone()) * 1e3,
        one.as_secs_f64() * 1e3,
        median(walls.clone()) / one.as_secs_f64(),
        median(peaks.clone()),
        peaks.len()
    );
}

criterion_group!(benches, bench_plan, bench_apply, bench_noop, bench_many);
criterion_main!(benches);
