//! CA benchmarks: P-256 leaf issuance, resolver lookup with 10,000 leaves held in memory.
//!
//! `cargo bench -p conduit-benches --bench ca`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark code"
)]

use std::hint::black_box;

use conduit_ca::{CaConfig, CertResolver, IssueRequest, LocalCa, certified_key};
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let now = time::OffsetDateTime::now_utc();
    let ca = LocalCa::generate(CaConfig::default(), now).unwrap();
    let req = IssueRequest {
        dns_names: vec!["grafana.internal".into()],
        ip_addresses: vec!["10.8.0.2".parse().unwrap()],
        client_auth: false,
    };
    let mut g = c.benchmark_group("ca");
    g.bench_function("issue_p256_leaf", |b| {
        b.iter(|| {
            ca.issue_at(black_box(&req), None, None, false, now)
                .unwrap()
        })
    });

    // 10,000 leaves held in memory behind the resolver
    let resolver = CertResolver::new();
    let key = certified_key(&ca.issue_at(&req, None, None, false, now).unwrap()).unwrap();
    let names: Vec<String> = (0..10_000).map(|i| format!("svc-{i}.internal")).collect();
    let mut entries = Vec::with_capacity(names.len());
    for chunk in names.chunks(1000) {
        let leaf = ca.issue_at(
            &IssueRequest {
                dns_names: chunk.to_vec(),
                ip_addresses: vec![],
                client_auth: false,
            },
            None,
            None,
            false,
            now,
        );
        let k = leaf
            .map(|l| certified_key(&l).unwrap())
            .unwrap_or_else(|_| key.clone());
        entries.extend(chunk.iter().map(|n| (n.clone(), k.clone())));
    }
    resolver.replace_all(entries);
    assert_eq!(resolver.len(), 10_000);
    let mut i = 0usize;
    g.bench_function("resolver_lookup_10k", |b| {
        b.iter(|| {
            i = (i + 7919) % names.len();
            resolver.lookup(black_box(&names[i])).unwrap()
        })
    });
    g.finish();
}

criterion_group!(ca, benches);
criterion_main!(ca);
