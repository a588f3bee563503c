//! Registry benchmarks with 10,000 services: lookup by name, register (in memory and in
//! `services.json`), and in-process change delivery (register → the watcher has the event).
//!
//! `cargo bench -p conduit-benches --bench registry`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark code"
)]

use std::hint::black_box;

use conduit::registry::{
    Endpoint, FileOptions, FileRegistry, InMemoryRegistry, Registry, ServiceName, ServiceRecord,
};
use criterion::{Criterion, criterion_group, criterion_main};

const N: usize = 10_000;

fn record(i: usize) -> ServiceRecord {
    let name: ServiceName = format!("svc-{i}").parse().unwrap();
    let ep: Endpoint = format!("10.{}.{}.{}:8080", (i >> 16) & 255, (i >> 8) & 255, i & 255)
        .parse()
        .unwrap();
    ServiceRecord::new(name, ep)
}

async fn fill(reg: &dyn Registry) {
    for i in 0..N {
        reg.register(record(i)).await.unwrap();
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mem = InMemoryRegistry::new();
    rt.block_on(fill(&mem));

    let mut g = c.benchmark_group("registry_10k");
    let names: Vec<ServiceName> = (0..N)
        .map(|i| format!("svc-{i}").parse().unwrap())
        .collect();
    let mut k = 0usize;
    g.bench_function("lookup_by_name", |b| {
        b.iter(|| {
            k = (k + 7919) % N;
            rt.block_on(mem.get(black_box(&names[k]))).unwrap()
        })
    });

    let mut next = N;
    g.bench_function("register_in_memory", |b| {
        b.iter(|| {
            next += 1;
            rt.block_on(mem.register(record(next))).unwrap()
        })
    });

    g.bench_function("register_to_event_delivered", |b| {
        let mut w = mem.watch(rt.block_on(mem.revision()).unwrap());
        b.iter(|| {
            next += 1;
            rt.block_on(async {
                let stored = mem.register(record(next)).await.unwrap();
                let ev = w.next().await.unwrap();
                assert_eq!(ev.revision, stored.revision());
            })
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let mut opts = FileOptions::default();
    opts.follow = false;
    let file = FileRegistry::open_with(dir.path(), opts).unwrap();
    let rt_mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt_mt.block_on(fill(&file));
    g.sample_size(20);
    g.bench_function("register_durable_file", |b| {
        b.iter(|| {
            next += 1;
            rt_mt.block_on(file.register(record(next))).unwrap()
        })
    });
    g.finish();
}

criterion_group!(registry, benches);
criterion_main!(registry);
