//! `audit-load DIR N [CONCURRENCY]`: seals N audit events into DIR/capsules.db through the
//! `AuditLog` (JSONL + CapsuleSink, group commit) from CONCURRENCY tasks, then verifies the
//! chain at the full level. Prints `sealed_per_second R` and `verified_per_second R`.
//! Used by `benches/audit-vs-reference.sh`.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark driver"
)]

use std::sync::Arc;

/// The allocator `conduit` runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use conduit_audit::{
    AuditEvent, AuditLog, AuditSink, CapsuleOptions, CapsuleSink, CapsuleStore, JsonlOptions,
    JsonlSink, Level, Outcome, SealKey,
};

/// Seals N audit events into DIR/capsules.db, then verifies the chain.
#[derive(Debug, clap::Parser)]
#[command(name = "audit-load")]
struct Args {
    /// Where the log and the chain go.
    dir: std::path::PathBuf,
    /// How many events.
    n: usize,
    /// How many tasks append at once.
    #[arg(default_value_t = 64)]
    concurrency: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args {
        dir,
        n,
        concurrency: conc,
    } = clap::Parser::parse();
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let key = SealKey::load_or_create(&dir)?;
    let log = Arc::new(AuditLog::new(
        JsonlSink::open(dir.join("audit.log"), JsonlOptions::default())?,
        Some(CapsuleSink::open(
            dir.join("capsules.db"),
            Some(key),
            CapsuleOptions::default(),
        )?),
    ));
    let start = std::time::SystemTime::now();
    rt.block_on(async {
        let per = n.div_ceil(conc);
        let tasks: Vec<_> = (0..conc)
            .map(|t| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    for i in 0..per {
                        let d = serde_json::json!({"task": t, "i": i, "ratio": 0.25});
                        let ev = AuditEvent::new(
                            "service_register",
                            Outcome::Success,
                            format!("Registered svc-{t}-{i}"),
                            "bench",
                            d.as_object().cloned().unwrap_or_default(),
                        )?;
                        log.append(ev).await?;
                    }
                    Ok::<(), conduit_audit::AuditError>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    let sealed = start.elapsed()?.as_secs_f64();
    let store = CapsuleStore::open(dir.join("capsules.db"))?;
    let total = store.len()?;
    let vstart = std::time::SystemTime::now();
    let report = store.verify(Level::Full, None)?;
    let verified = vstart.elapsed()?.as_secs_f64();
    if !report.valid {
        eprintln!("chain invalid: {:?}", report.errors);
        std::process::exit(1);
    }
    println!("sealed_per_second {:.1}", total as f64 / sealed);
    println!("verified_per_second {:.1}", total as f64 / verified);
    Ok(())
}
