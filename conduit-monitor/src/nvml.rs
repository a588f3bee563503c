//! NVIDIA GPUs through NVML (nvml-wrapper; libnvidia-ml is loaded at run time).

use std::sync::Arc;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;

use crate::{MetricSource, MonitorError, Sample, SampleKind};

/// Every GPU: name, uuid, temperature, utilisation (GPU and memory), VRAM used/total, power
/// draw and limit, SM clock, throttle reasons, uncorrected ECC errors, and one `gpu_process`
/// sample per process (pid, name, memory, container from its cgroup).
///
/// NVML is initialised once, in [`NvmlSource::new`]; without a driver the source is
/// *unavailable*, a normal state: [`MetricSource::sample`] returns no samples. Fields the GPU
/// does not support are absent. Every NVML call runs on the blocking pool.
#[derive(Debug, Clone)]
pub struct NvmlSource {
    nvml: Option<Arc<Nvml>>,
    target: String,
    reason: Option<String>,
}

impl Default for NvmlSource {
    fn default() -> Self {
        Self::new()
    }
}

impl NvmlSource {
    /// Initialises NVML (once per source); no driver is not an error.
    pub fn new() -> Self {
        match Nvml::init() {
            Ok(nvml) => Self {
                nvml: Some(Arc::new(nvml)),
                target: "local".into(),
                reason: None,
            },
            Err(e) => {
                tracing::info!(error = %e, "NVML unavailable: no NVIDIA GPU monitoring");
                Self {
                    nvml: None,
                    target: "local".into(),
                    reason: Some(e.to_string()),
                }
            }
        }
    }

    /// Whether NVML is loaded (a driver is present).
    pub fn is_available(&self) -> bool {
        self.nvml.is_some()
    }

    /// Why NVML is unavailable, when it is.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// `Ok(None)` for "not supported on this GPU", which makes the field absent.
fn opt<T>(r: Result<T, NvmlError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(NvmlError::NotSupported | NvmlError::NoPermission | NvmlError::NotFound) => None,
        Err(e) => {
            tracing::debug!(error = %e, "NVML field unreadable");
            None
        }
    }
}

/// The container ID (12 hex characters) in a process's /proc/PID/cgroup, for Docker, podman
/// and containerd layouts (`…/docker-<id>.scope`, `…/libpod-<id>.scope`, `…/docker/<id>`).
pub(crate) fn container_of(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.rsplit(':').next()?;
        path.split('/').rev().find_map(|part| {
            let id = part.trim_end_matches(".scope").rsplit(['-', ':']).next()?;
            (id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| id[..12].to_owned())
        })
    })
}

fn sample_blocking(nvml: &Nvml, target: &str) -> Result<Vec<Sample>, MonitorError> {
    let unavailable = |e: NvmlError| MonitorError::Backend {
        source_name: "nvml".into(),
        what: "the NVIDIA driver".into(),
        source: Box::new(e),
    };
    let count = nvml.device_count().map_err(unavailable)?;
    let mut out = Vec::new();
    for index in 0..count {
        let device = nvml.device_by_index(index).map_err(unavailable)?;
        let uuid = opt(device.uuid());
        let memory = opt(device.memory_info());
        let utilization = opt(device.utilization_rates());
        let mut gpu = Sample::new(target, SampleKind::Gpu)
            .with("index", index)
            .with_opt("name", opt(device.name()))
            .with_opt("uuid", uuid.clone())
            .with_opt(
                "temperature_celsius",
                opt(device.temperature(TemperatureSensor::Gpu)),
            )
            .with_opt(
                "utilization_ratio",
                utilization.as_ref().map(|u| f64::from(u.gpu) / 100.0),
            )
            .with_opt(
                "memory_utilization_ratio",
                utilization.as_ref().map(|u| f64::from(u.memory) / 100.0),
            )
            .with_opt("memory_used_bytes", memory.as_ref().map(|m| m.used))
            .with_opt("memory_total_bytes", memory.as_ref().map(|m| m.total))
            .with_opt(
                "power_watts",
                opt(device.power_usage()).map(|mw| f64::from(mw) / 1000.0),
            )
            .with_opt(
                "power_limit_watts",
                opt(device.enforced_power_limit()).map(|mw| f64::from(mw) / 1000.0),
            )
            .with_opt(
                "sm_clock_hertz",
                opt(device.clock_info(Clock::SM)).map(|mhz| f64::from(mhz) * 1e6),
            )
            .with_opt(
                "ecc_uncorrected_errors",
                opt(device.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)),
            );
        if let Some(reasons) = opt(device.current_throttle_reasons()) {
            gpu = gpu.with("throttle_reasons", format!("{reasons:?}"));
        }
        out.push(gpu);
        let mut processes = opt(device.running_compute_processes()).unwrap_or_default();
        processes.extend(opt(device.running_graphics_processes()).unwrap_or_default());
        processes.sort_by_key(|p| p.pid);
        processes.dedup_by_key(|p| p.pid);
        for p in processes {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid)).ok();
            let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid)).ok();
            out.push(
                Sample::new(target, SampleKind::GpuProcess)
                    .with("pid", p.pid)
                    .with_opt("gpu_uuid", uuid.clone())
                    .with_opt("name", comm.map(|c| c.trim().to_owned()))
                    .with_opt("container", cgroup.as_deref().and_then(container_of))
                    .with_opt(
                        "used_memory_bytes",
                        match p.used_gpu_memory {
                            UsedGpuMemory::Used(b) => Some(b),
                            UsedGpuMemory::Unavailable => None,
                        },
                    ),
            );
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl MetricSource for NvmlSource {
    fn name(&self) -> &str {
        "nvml"
    }

    async fn sample(&self) -> Result<Vec<Sample>, MonitorError> {
        let Some(nvml) = self.nvml.clone() else {
            return Ok(Vec::new());
        };
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || sample_blocking(&nvml, &target))
            .await
            .map_err(|e| MonitorError::Backend {
                source_name: "nvml".into(),
                what: "the sampling task".into(),
                source: Box::new(e),
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::container_of;

    #[test]
    fn container_ids_from_cgroups() {
        let id = "4f1c2a3b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";
        assert_eq!(
            container_of(&format!("0::/system.slice/docker-{id}.scope\n")).as_deref(),
            Some("4f1c2a3b5d6e")
        );
        assert_eq!(
            container_of(&format!("0::/machine.slice/libpod-{id}.scope/container\n")).as_deref(),
            Some("4f1c2a3b5d6e")
        );
        assert_eq!(
            container_of(&format!("12:memory:/docker/{id}\n")).as_deref(),
            Some("4f1c2a3b5d6e")
        );
        assert_eq!(
            container_of("0::/user.slice/user-1000.slice/session-2.scope\n"),
            None
        );
    }
}
