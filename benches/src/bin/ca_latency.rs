//! `ca-latency [--samples N]`: the latency of what the CA and the audit chain do on the
//! request path, one at a time on one thread, as percentiles:
//!
//! - a P-256 leaf issued with a CRL distribution point (what every gateway leaf carries now),
//!   and without one (what it cost before);
//! - a checkpoint of the sealed chain (`Checkpoint::sign`: what the appending task pays every
//!   `[audit] checkpoint_every` records), and its check (`verify_signature`);
//! - a CRL signed with N revoked serials (what a revocation waits for).
//!
//! `cargo run --release -p conduit-benches --bin ca-latency`
#![allow(clippy::print_stdout, reason = "a benchmark program")]

use conduit_benches::percentile;
use std::time::Duration;

use conduit_audit::{Checkpoint, SealKey};
use conduit_ca::{CaConfig, IssueRequest, LocalCa};
use tokio::time::Instant;

/// Runs each measurement N times and prints p50, p99 and max.
#[derive(Debug, clap::Parser)]
#[command(name = "ca-latency")]
struct Args {
    /// Samples per measurement.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Revoked serials on the CRL measured.
    #[arg(long, default_value_t = 1000)]
    revoked: usize,
}

fn measure(label: &str, n: usize, mut f: impl FnMut()) {
    // Warm up (allocator, caches), then measure each call alone.
    for _ in 0..n.min(100) {
        f();
    }
    let mut ms: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let (p50, p99) = (percentile(&mut ms, 0.50), percentile(&mut ms, 0.99));
    let max = ms.last().copied().unwrap_or(f64::NAN);
    println!("| {label}, {n} samples | p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms |");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args { samples, revoked } = clap::Parser::parse();
    let now = time::OffsetDateTime::now_utc();
    let req = IssueRequest {
        dns_names: vec!["grafana.internal".into()],
        ..IssueRequest::default()
    };
    let mut with_cdp = CaConfig::default();
    with_cdp.crl_url = Some("http://10.8.0.1:80/ca/crl.der".into());
    with_cdp.root_crl_url = Some("http://10.8.0.1:80/ca/root-crl.der".into());
    let ca = LocalCa::generate(with_cdp, now)?;
    let plain = LocalCa::generate(CaConfig::default(), now)?;
    println!("| measurement | latency |\n| --- | --- |");
    measure("P-256 leaf with a CRL distribution point", samples, || {
        let _ = std::hint::black_box(ca.issue_at(&req, None, None, false, now));
    });
    measure("P-256 leaf without one", samples, || {
        let _ = std::hint::black_box(plain.issue_at(&req, None, None, false, now));
    });
    let dir = tempfile::tempdir()?;
    let key = SealKey::load_or_create(dir.path())?;
    let hash = "ab".repeat(32);
    let mut seq = 0u64;
    measure("checkpoint signed (Checkpoint::sign)", samples * 5, || {
        seq += 1;
        std::hint::black_box(Checkpoint::sign(seq, hash.clone(), &key));
    });
    let c = Checkpoint::sign(7, hash.clone(), &key);
    measure("checkpoint checked (verify_signature)", samples * 5, || {
        let _ = std::hint::black_box(c.verify_signature());
    });
    for i in 0..revoked {
        ca.revoke_at(&format!("{:032x}", i + 1), now)?;
    }
    measure(
        &format!("CRL signed with {revoked} revoked serials"),
        samples / 10,
        || {
            let _ = std::hint::black_box(ca.crl_at(now, Duration::from_secs(86_400)));
        },
    );
    Ok(())
}
