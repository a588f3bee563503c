//! Sealing and verification throughput of the Capsule chain.
//!
//! `cargo bench -p conduit-benches --bench audit`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark code"
)]

use conduit_audit::{AuditEvent, CapsuleStore, Level, Outcome, SealKey};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn events(n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            let d = serde_json::json!({"name": format!("svc-{i}"), "port": 3000, "ratio": 0.25});
            AuditEvent::new(
                "service_register",
                Outcome::Success,
                "Registered",
                "bench",
                d.as_object().cloned().unwrap(),
            )
            .unwrap()
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let key = SealKey::load_or_create(dir.path()).unwrap();
    let mut store = CapsuleStore::open(dir.path().join("capsules.db")).unwrap();
    let batch = events(1000);
    let one = events(1);

    let mut g = c.benchmark_group("capsule_chain");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("seal_group_commit_1000_per_tx", |b| {
        b.iter(|| store.append(&batch, &key).unwrap())
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal_durable_one_per_tx", |b| {
        b.iter(|| store.append(&one, &key).unwrap())
    });

    let vdir = tempfile::tempdir().unwrap();
    let mut vstore = CapsuleStore::open(vdir.path().join("capsules.db")).unwrap();
    for _ in 0..10 {
        vstore.append(&batch, &key).unwrap();
    }
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("verify_full_10k", |b| {
        b.iter_batched(
            || (),
            |()| assert!(vstore.verify(Level::Full, None).unwrap().valid),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(audit, benches);
criterion_main!(audit);
