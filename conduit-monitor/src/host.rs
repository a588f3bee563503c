//! The local host, from /proc and statvfs (no programs run).

use std::path::PathBuf;
use std::sync::Arc;

use crate::proc::{
    CpuTracker, DiskUse, parse_loadavg, parse_meminfo, parse_mounts, parse_net_dev, parse_stat,
    parse_uptime,
};
use crate::{MetricSource, MonitorError, Sample, SampleKind};

/// The host this process runs on: CPU use (from /proc/stat deltas between samples; since boot
/// on the first), cores, load, memory, swap, uptime, network bytes, and every mounted disk.
#[derive(Debug)]
pub struct HostSource {
    inner: Arc<HostInner>,
}

#[derive(Debug)]
struct HostInner {
    target: String,
    proc_root: PathBuf,
    previous: CpuTracker,
}

impl Default for HostSource {
    fn default() -> Self {
        Self::new()
    }
}

impl HostSource {
    /// Samples this host as target `local`.
    pub fn new() -> Self {
        Self::with_target("local")
    }

    /// Samples this host under another target name.
    pub fn with_target(target: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(HostInner {
                target: target.into(),
                proc_root: PathBuf::from("/proc"),
                previous: CpuTracker::default(),
            }),
        }
    }
}

impl HostInner {
    fn read(&self, file: &str) -> Result<String, MonitorError> {
        let path = self.proc_root.join(file);
        std::fs::read_to_string(&path).map_err(|e| MonitorError::Backend {
            source_name: "host".into(),
            what: path.display().to_string(),
            source: Box::new(e),
        })
    }

    fn sample_blocking(&self) -> Result<Vec<Sample>, MonitorError> {
        let stat = self.read("stat")?;
        let (times, cores) = parse_stat(&stat).ok_or_else(|| MonitorError::Unavailable {
            source_name: "host".into(),
            reason: "/proc/stat has no cpu line".into(),
        })?;
        let usage = self.previous.usage(times);
        let memory = parse_meminfo(&self.read("meminfo")?);
        let load = parse_loadavg(&self.read("loadavg").unwrap_or_default());
        let uptime = parse_uptime(&self.read("uptime").unwrap_or_default());
        let net = parse_net_dev(&self.read("net/dev").unwrap_or_default());
        let mut samples = vec![host_sample(
            &self.target,
            usage,
            cores,
            load,
            &memory,
            uptime,
            net,
        )];
        for (device, mount) in parse_mounts(&self.read("mounts").unwrap_or_default()) {
            match nix::sys::statvfs::statvfs(mount.as_str()) {
                Ok(st) => {
                    let frsize = st.fragment_size();
                    let total = st.blocks().saturating_mul(frsize);
                    let free = st.blocks_free().saturating_mul(frsize);
                    let available = st.blocks_available().saturating_mul(frsize);
                    if total == 0 {
                        continue;
                    }
                    let disk = DiskUse {
                        mount,
                        device,
                        total,
                        used: total.saturating_sub(free),
                        available,
                    };
                    samples.push(disk_sample(&self.target, &disk));
                }
                Err(e) => tracing::debug!(%mount, error = %e, "statvfs failed"),
            }
        }
        Ok(samples)
    }
}

/// The host sample from parsed values (shared with the SSH source).
pub(crate) fn host_sample(
    target: &str,
    usage: Option<f64>,
    cores: u32,
    load: Option<[f64; 3]>,
    memory: &crate::proc::Memory,
    uptime: Option<f64>,
    net: Option<(u64, u64)>,
) -> Sample {
    let mut s = Sample::new(target, SampleKind::Host)
        .with_opt("cpu_usage_ratio", usage)
        .with_opt("memory_total_bytes", memory.total)
        .with_opt("memory_available_bytes", memory.available)
        .with_opt(
            "memory_used_bytes",
            memory
                .total
                .zip(memory.available)
                .map(|(t, a)| t.saturating_sub(a)),
        )
        .with_opt("swap_total_bytes", memory.swap_total)
        .with_opt(
            "swap_used_bytes",
            memory
                .swap_total
                .zip(memory.swap_free)
                .map(|(t, f)| t.saturating_sub(f)),
        )
        .with_opt("uptime_seconds", uptime);
    if cores > 0 {
        s = s.with("cpu_cores", cores);
    }
    if let Some([l1, l5, l15]) = load {
        s = s.with("load1", l1).with("load5", l5).with("load15", l15);
    }
    if let Some((rx, tx)) = net {
        s = s
            .with("network_receive_bytes_total", rx)
            .with("network_transmit_bytes_total", tx);
    }
    s
}

pub(crate) fn disk_sample(target: &str, disk: &DiskUse) -> Sample {
    Sample::new(target, SampleKind::Disk)
        .with("mount", disk.mount.as_str())
        .with("device", disk.device.as_str())
        .with("size_bytes", disk.total)
        .with("used_bytes", disk.used)
        .with("available_bytes", disk.available)
        .with_opt("used_ratio", disk.used_ratio())
}

#[async_trait::async_trait]
impl MetricSource for HostSource {
    fn name(&self) -> &str {
        "host"
    }

    async fn sample(&self) -> Result<Vec<Sample>, MonitorError> {
        // /proc reads and statvfs block (a hung NFS mount blocks statvfs): off the async threads.
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.sample_blocking())
            .await
            .map_err(|e| MonitorError::Backend {
                source_name: "host".into(),
                what: "the sampling task".into(),
                source: Box::new(e),
            })?
    }
}
