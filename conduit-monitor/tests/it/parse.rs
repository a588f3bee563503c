//! Parsers (recorded outputs, then arbitrary input), alerts, the poller, target parsing.

use std::sync::Arc;
use std::time::Duration;

use conduit_monitor::internal::proc::{
    parse_df, parse_loadavg, parse_meminfo, parse_mounts, parse_net_dev, parse_stat, parse_uptime,
};
use conduit_monitor::internal::smi;
use conduit_monitor::{
    AlertKind, AlertState, MetricSource, MonitorError, Poller, RemoteTarget, Sample, SampleKind,
    Thresholds,
};
use proptest::prelude::*;

#[test]
fn recorded_proc_files() {
    let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\nintr 1 2\n";
    let (t0, cores) = parse_stat(stat).unwrap();
    assert_eq!(cores, 2);
    let later = parse_stat("cpu  200 0 100 1600 100 0 0 0 0 0\n").unwrap().0;
    // 150 busy of 1000 ticks.
    assert!((later.usage_since(&t0).unwrap() - 0.15).abs() < 1e-9);
    assert_eq!(
        parse_loadavg("0.52 0.58 0.59 2/1270 3361\n"),
        Some([0.52, 0.58, 0.59])
    );
    let m = parse_meminfo(
        "MemTotal:       16384 kB\nMemFree: 1 kB\nMemAvailable:    8192 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
    );
    assert_eq!(m.total, Some(16384 * 1024));
    assert_eq!(m.available, Some(8192 * 1024));
    assert_eq!(parse_uptime("12345.67 2345.6\n"), Some(12345.67));
    let net = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets\n    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n";
    assert_eq!(parse_net_dev(net), Some((1000, 2000)));
    let mounts = parse_mounts(
        "/dev/sda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/sda1 /bind ext4 rw 0 0\n/dev/sdb1 /my\\040data xfs rw 0 0\n",
    );
    assert_eq!(
        mounts,
        vec![
            ("/dev/sda1".into(), "/".into()),
            ("/dev/sdb1".into(), "/my data".into())
        ]
    );
    let df = parse_df(
        "Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/sda1 1000 600 400 60% /\n",
    );
    assert_eq!(df[0].used_ratio(), Some(0.6));
}

#[test]
fn recorded_nvidia_smi_csv() {
    let csv = "0, NVIDIA H200, GPU-aaaa, 62, 87, 40, 73830, 144384, 350.12, 700.00, 1980\n\
               1, NVIDIA A100-SXM4-80GB, GPU-bbbb, [N/A], [Not Supported], 0, 10, 81920, [N/A], 400.00, 1410\n\
               garbage line\n";
    let gpus = smi::parse_gpu_csv("gpu-server", csv);
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[0].text("name"), Some("NVIDIA H200"));
    assert_eq!(gpus[0].number("utilization_ratio"), Some(0.87));
    assert_eq!(
        gpus[0].number("memory_total_bytes"),
        Some(144_384.0 * 1024.0 * 1024.0)
    );
    assert_eq!(gpus[0].number("power_watts"), Some(350.12));
    // Unsupported fields are absent, never a number.
    assert_eq!(gpus[1].number("temperature_celsius"), None);
    assert_eq!(gpus[1].number("utilization_ratio"), None);
    assert_eq!(gpus[1].number("power_limit_watts"), Some(400.0));
    // A name with a comma.
    let odd = smi::parse_gpu_csv("t", "0, Tesla, K80, GPU-c, 30, 1, 1, 1, 2, 3, 4, 5\n");
    assert_eq!(odd[0].text("name"), Some("Tesla, K80"));
    assert_eq!(odd[0].text("uuid"), Some("GPU-c"));
}

proptest! {
    #[test]
    fn parsers_never_panic(text in ".{0,400}", lines in proptest::collection::vec("[ -~]{0,80}", 0..10)) {
        let joined = lines.join("\n");
        for t in [text.as_str(), joined.as_str()] {
            let _ = parse_stat(t);
            let _ = parse_loadavg(t);
            let _ = parse_meminfo(t);
            let _ = parse_uptime(t);
            let _ = parse_net_dev(t);
            let _ = parse_mounts(t);
            let _ = parse_df(t);
            for s in smi::parse_gpu_csv("t", t) {
                // Every number is finite.
                for v in s.metrics.values() {
                    if let conduit_monitor::Value::Number(n) = v { prop_assert!(n.is_finite()); }
                }
            }
        }
    }

    #[test]
    fn csv_fields_round_trip(temp in 0u32..120, util in 0u32..=100, used in 0u64..200_000, total in 1u64..200_000, name in "[A-Za-z0-9 -]{1,20}") {
        let line = format!("3, {name}, GPU-x, {temp}, {util}, 5, {used}, {total}, 100.5, 300, 1500\n");
        let gpus = smi::parse_gpu_csv("t", &line);
        prop_assert_eq!(gpus.len(), 1);
        prop_assert_eq!(gpus[0].number("temperature_celsius"), Some(f64::from(temp)));
        prop_assert_eq!(gpus[0].number("utilization_ratio"), Some(f64::from(util) / 100.0));
        prop_assert_eq!(gpus[0].text("name"), Some(name.trim()));
    }
}

fn gpu(temp: f64, used: f64) -> Sample {
    Sample::new("local", SampleKind::Gpu)
        .with("index", 0u32)
        .with("uuid", "GPU-1")
        .with("temperature_celsius", temp)
        .with("memory_used_bytes", used)
        .with("memory_total_bytes", 100.0)
}

#[test]
fn alerts_have_hysteresis() {
    let mut a = AlertState::new(Thresholds::default());
    assert!(a.evaluate(&[gpu(80.0, 10.0)]).is_empty());
    let raised = a.evaluate(&[gpu(86.0, 95.0)]);
    assert_eq!(raised.len(), 2);
    assert!(raised.iter().all(|r| r.raised));
    assert!(raised.iter().any(|r| r.kind == AlertKind::GpuTemperature));
    assert!(raised.iter().any(|r| r.kind == AlertKind::Vram));
    // Hovering just under the threshold: no flapping.
    assert!(a.evaluate(&[gpu(84.0, 89.0)]).is_empty());
    assert!(a.evaluate(&[gpu(86.0, 91.0)]).is_empty());
    let cleared = a.evaluate(&[gpu(79.0, 50.0)]);
    assert_eq!(cleared.len(), 2);
    assert!(cleared.iter().all(|r| !r.raised));

    let container = |health: &str, restarts: u32| {
        Sample::new("local", SampleKind::Container)
            .with("name", "ollama")
            .with("state", "running")
            .with("health", health)
            .with("restart_count", restarts)
    };
    assert!(a.evaluate(&[container("healthy", 0)]).is_empty());
    let r = a.evaluate(&[container("unhealthy", 1)]);
    assert_eq!(r.len(), 2, "{r:?}");
    let r = a.evaluate(&[container("healthy", 1)]);
    assert_eq!(r.len(), 2, "both clear: {r:?}");
    let disk = Sample::new("local", SampleKind::Disk)
        .with("mount", "/")
        .with("used_ratio", 0.95);
    assert_eq!(a.evaluate(&[disk])[0].kind, AlertKind::Disk);
}

#[derive(Debug)]
struct Slow(Duration, &'static str);

#[async_trait::async_trait]
impl MetricSource for Slow {
    fn name(&self) -> &str {
        self.1
    }
    async fn sample(&self) -> Result<Vec<Sample>, MonitorError> {
        tokio::time::sleep(self.0).await;
        Ok(vec![Sample::new(self.1, SampleKind::Host)])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_source_never_delays_the_others() {
    let mut poller = Poller::new(vec![
        Arc::new(Slow(Duration::from_millis(10), "fast-a")),
        Arc::new(Slow(Duration::from_secs(3600), "dead")),
        Arc::new(Slow(Duration::from_millis(20), "fast-b")),
    ])
    .with_timeout(Duration::from_millis(300));
    let started = tokio::time::Instant::now();
    let round = poller.poll_once().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let targets: Vec<&str> = round.samples.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, vec!["fast-a", "fast-b"]);
    assert_eq!(round.errors.len(), 1);
    assert_eq!(round.errors[0].0, "dead");
}

#[test]
fn remote_servers_from_the_environment_form() {
    let list =
        RemoteTarget::parse_list("10.0.1.20:gpu-server, admin@10.0.1.21 ,ops@box:render").unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(
        (
            list[0].host.as_str(),
            list[0].name.as_str(),
            list[0].user.as_deref()
        ),
        ("10.0.1.20", "gpu-server", None)
    );
    assert_eq!(
        (
            list[1].host.as_str(),
            list[1].name.as_str(),
            list[1].user.as_deref()
        ),
        ("10.0.1.21", "10.0.1.21", Some("admin"))
    );
    assert_eq!(list[2].name, "render");
    for bad in ["-oProxyCommand=x", "a b", "host:na me", "u;rm@h"] {
        let e = RemoteTarget::parse(bad).unwrap_err().to_string();
        assert!(e.contains(bad), "{e}");
    }
}
