//! The poller's own CPU: `monitor-load TARGETS SECONDS INTERVAL_MS` polls TARGETS host
//! sources (each a full /proc + statvfs read) every INTERVAL_MS for SECONDS and prints the
//! process's CPU time as a share of one core (from /proc/self/stat).
#![allow(
    clippy::print_stdout,
    clippy::panic,
    reason = "a benchmark program: prints its result, stops on setup failure"
)]

use std::sync::Arc;
use std::time::Duration;

use conduit_monitor::{HostSource, MetricSource, Poller};

fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<u64> = after
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // utime and stime are fields 14 and 15; after ") " state is field 3, so index 11 and 12.
    f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)
}

/// Polls TARGETS host sources every INTERVAL_MS for SECONDS; prints the CPU share.
#[derive(Debug, clap::Parser)]
#[command(name = "monitor-load")]
struct Args {
    /// How many host sources.
    #[arg(default_value_t = 20)]
    targets: u64,
    /// For how long.
    #[arg(default_value_t = 30)]
    seconds: u64,
    /// Between rounds, milliseconds.
    #[arg(default_value_t = 5000)]
    interval_ms: u64,
}

fn main() {
    let Args {
        targets,
        seconds,
        interval_ms,
    } = clap::Parser::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let sources: Vec<Arc<dyn MetricSource>> = (0..targets)
        .map(|i| Arc::new(HostSource::with_target(format!("t{i}"))) as Arc<dyn MetricSource>)
        .collect();
    let poller = Poller::new(sources).with_interval(Duration::from_millis(interval_ms));
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let before = cpu_ticks();
    let rounds = rt.block_on(async move {
        let run = tokio::spawn(poller.run(tx, tokio::time::sleep(Duration::from_secs(seconds))));
        let mut rounds = 0u64;
        while rx.recv().await.is_some() {
            rounds += 1;
        }
        let _ = run.await;
        rounds
    });
    let ticks = cpu_ticks() - before;
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "{targets} targets, {rounds} rounds in {seconds} s at {interval_ms} ms: CPU {:.3} s = {:.3} % of one core",
        ticks as f64 / hz,
        ticks as f64 / hz / seconds as f64 * 100.0
    );
}
