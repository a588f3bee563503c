//! NVML on a real NVIDIA GPU.

#[cfg(feature = "nvml")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an NVIDIA GPU"]
async fn nvml_reads_every_gpu() {
    use conduit_monitor::{MetricSource, NvmlSource, SampleKind, render};
    let source = NvmlSource::new();
    assert!(source.is_available(), "{:?}", source.unavailable_reason());
    conduit_monitor::testing::source_contract(&source).await;
    let samples = source.sample().await.unwrap();
    let gpus: Vec<_> = samples
        .iter()
        .filter(|s| s.kind == SampleKind::Gpu)
        .collect();
    assert!(!gpus.is_empty());
    for g in &gpus {
        assert!(g.text("uuid").unwrap().starts_with("GPU-"));
        assert!(g.number("memory_total_bytes").unwrap() > 1e9);
        assert!(g.number("temperature_celsius").unwrap() > 0.0);
    }
    // nvidia-smi agrees on the memory total (MiB).
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.total", "--format=csv,noheader,nounits"])
        .output()
        .unwrap();
    let smi: f64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ours = gpus[0].number("memory_total_bytes").unwrap() / 1024.0 / 1024.0;
    assert!(
        (ours - smi).abs() <= 1.0,
        "NVML {ours} MiB vs nvidia-smi {smi} MiB"
    );
    eprintln!("{}", render::human(&samples));
}

#[cfg(feature = "nvml")]
#[tokio::test]
async fn nvml_without_a_driver_is_unavailable_not_an_error() {
    use conduit_monitor::{MetricSource, NvmlSource};
    let source = NvmlSource::new();
    if !source.is_available() {
        assert!(source.sample().await.unwrap().is_empty());
        assert!(source.unavailable_reason().is_some());
    }
}
