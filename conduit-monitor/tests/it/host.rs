//! HostSource against this machine, checked with `free` and `df`.

use conduit_monitor::{HostSource, MetricSource, SampleKind, render};

use crate::{have, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_match_free_and_df() {
    let source = HostSource::new();
    let first = source.sample().await.unwrap();
    let samples = source.sample().await.unwrap();
    assert!(!first.is_empty());
    let host = samples.iter().find(|s| s.kind == SampleKind::Host).unwrap();
    assert_eq!(host.target, "local");
    let cores = host.number("cpu_cores").unwrap();
    assert_eq!(
        cores as usize,
        std::thread::available_parallelism()
            .map_or(0, usize::from)
            .max(cores as usize)
    );
    let usage = host.number("cpu_usage_ratio").unwrap();
    assert!((0.0..=1.0).contains(&usage));
    assert!(host.number("load1").unwrap() >= 0.0);
    assert!(host.number("uptime_seconds").unwrap() > 0.0);
    assert!(
        host.number("network_receive_bytes_total").is_some()
            || std::fs::read_to_string("/proc/net/dev")
                .unwrap()
                .lines()
                .count()
                <= 3
    );

    if have("free") {
        // free -b: "Mem: total used free shared buff/cache available"
        let free = run("free", &["-b"]);
        let mem: Vec<f64> = free
            .lines()
            .find(|l| l.starts_with("Mem:"))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(host.number("memory_total_bytes").unwrap(), mem[0], "{free}");
        let available = host.number("memory_available_bytes").unwrap();
        let slack = 64.0 * 1024.0 * 1024.0; // memory moves between the two reads
        assert!(
            (available - mem[5]).abs() < slack,
            "available {available} vs free's {}",
            mem[5]
        );
    }
    if have("df") {
        let root = samples
            .iter()
            .find(|s| s.kind == SampleKind::Disk && s.text("mount") == Some("/"))
            .expect("the root filesystem");
        let df = run("df", &["-P", "-B1", "/"]);
        let f: Vec<f64> = df
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .skip(1)
            .take(3)
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(root.number("size_bytes").unwrap(), f[0], "{df}");
        let slack = 256.0 * 1024.0 * 1024.0; // other processes write meanwhile
        assert!(
            (root.number("used_bytes").unwrap() - f[1]).abs() < slack,
            "{df}"
        );
        assert!(
            (root.number("available_bytes").unwrap() - f[2]).abs() < slack,
            "{df}"
        );
    }
    let text = render::human(&samples);
    assert!(
        text.contains("== local") && text.contains("CPU: ") && text.contains("Disk /:"),
        "{text}"
    );
    let prom = render::prometheus(&samples);
    assert!(
        prom.contains("# TYPE conduit_host_memory_total_bytes gauge"),
        "{prom}"
    );
    assert!(
        prom.contains("# TYPE conduit_host_network_receive_bytes_total counter"),
        "{prom}"
    );
    assert!(
        prom.contains("conduit_disk_used_ratio{target=\"local\",mount=\"/\"}"),
        "{prom}"
    );
    // JSON in the documented shape.
    let json = serde_json::to_value(host).unwrap();
    assert_eq!(json["type"], "host");
    assert_eq!(json["target"], "local");
    assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(json["metrics"]["memory_total_bytes"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_source_meets_the_contract() {
    conduit_monitor::testing::source_contract(&HostSource::new()).await;
}
