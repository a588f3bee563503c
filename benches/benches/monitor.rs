//! Monitor benchmarks: one full local host sample (/proc + statvfs of every disk), and
//! Prometheus rendering of 20 targets' samples.
//!
//! `cargo bench -p conduit-benches --bench monitor`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark code"
)]

use conduit_monitor::{HostSource, MetricSource, render};
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let host = HostSource::new();
    let mut g = c.benchmark_group("monitor");
    g.bench_function("host_sample", |b| {
        b.iter(|| rt.block_on(host.sample()).unwrap())
    });
    let one = rt.block_on(host.sample()).unwrap();
    let mut twenty = Vec::new();
    for i in 0..20 {
        twenty.extend(one.iter().cloned().map(|mut s| {
            s.target = format!("server-{i}");
            s
        }));
    }
    g.bench_function("prometheus_20_targets", |b| {
        b.iter(|| render::prometheus(&twenty))
    });
    g.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
