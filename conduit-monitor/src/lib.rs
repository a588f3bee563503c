//! # conduit-monitor
//!
//! GPUs, containers, hosts and remote servers as typed [`Sample`]s (JSON:
//! `{"timestamp", "target", "type", "metrics"}`), Prometheus text ([`render::prometheus`]) and
//! the original tool's human layout ([`render::human`]).
//!
//! Sources implement [`MetricSource`]:
//! - [`HostSource`]: this host from /proc and statvfs, no programs run;
//! - `NvmlSource` (feature `nvml`): NVIDIA GPUs through NVML, with per-process memory joined
//!   to containers through cgroups; no driver is a normal "unavailable" state;
//! - `DockerSource` (feature `docker`): containers through the Docker API socket (podman's
//!   compatible API works too);
//! - `SshSource` (feature `ssh`): a remote server's host metrics and `nvidia-smi` GPUs over one
//!   multiplexed SSH connection, host keys always checked.
//!
//! [`Poller`] samples every source on an interval, concurrently, each under its own timeout,
//! and raises [`Alert`]s with hysteresis.
//!
//! ```
//! use conduit_monitor::{AlertKind, AlertState, Sample, SampleKind, Thresholds, render};
//!
//! let gpu = Sample::new("local", SampleKind::Gpu)
//!     .with("index", 0u32)
//!     .with("name", "NVIDIA H200")
//!     .with("uuid", "GPU-1234")
//!     .with("utilization_ratio", 0.87)
//!     .with("memory_used_bytes", 72.1e9)
//!     .with("memory_total_bytes", 141.1e9)
//!     .with("temperature_celsius", 88.0);
//! assert!(render::human(&[gpu.clone()]).contains("GPU 0: NVIDIA H200 | Util: 87% | Mem: 72.1/141.1 GB | Temp: 88°C"));
//! assert!(render::prometheus(&[gpu.clone()]).contains("conduit_gpu_temperature_celsius{target=\"local\",gpu=\"0\",uuid=\"GPU-1234\"} 88"));
//!
//! let mut alerts = AlertState::new(Thresholds::default());
//! let raised = alerts.evaluate(&[gpu]);
//! assert_eq!(raised[0].kind, AlertKind::GpuTemperature);
//! assert!(raised[0].raised);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;

#[cfg(feature = "docker")]
mod docker;
#[cfg(feature = "docker")]
mod docker_logs;
mod host;
#[cfg(feature = "nvml")]
mod nvml;
mod poll;
mod proc;
pub mod render;
mod sample;
mod smi;
#[cfg(feature = "ssh")]
mod ssh;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[cfg(feature = "docker")]
pub use docker::DockerSource;
#[cfg(feature = "docker")]
#[cfg_attr(docsrs, doc(cfg(feature = "docker")))]
pub use docker_logs::{ContainerLine, ContainerLines, SERVICE_LABEL};
pub use host::HostSource;
#[cfg(feature = "nvml")]
pub use nvml::NvmlSource;
pub use poll::{Alert, AlertKind, AlertState, Poller, RemoteTarget, Round, Thresholds};
pub use sample::{Sample, SampleKind, Value};
#[cfg(feature = "ssh")]
pub use ssh::SshSource;

/// Errors of the monitoring subsystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The source could not be read.
    #[error("{source_name} is unavailable: {reason}")]
    Unavailable {
        /// The source.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// A library or the system failed reading the source (the Docker API client, NVML, a
    /// file under /proc); usually worth retrying at the next round.
    #[error("{source_name} is unavailable: {what}: {source}")]
    Backend {
        /// The source.
        source_name: String,
        /// What was being read (`/proc/stat`, the socket path).
        what: String,
        /// The library's or the system's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A setting is invalid (the caller's to fix).
    #[error("invalid monitor configuration: {key} {value:?}: {problem}")]
    InvalidSetting {
        /// The setting (`monitor.ssh`).
        key: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// A source of samples.
#[async_trait::async_trait]
pub trait MetricSource: Send + Sync + fmt::Debug {
    /// A short name for logs and errors (`host`, `docker`, `ssh:gpu-server`).
    fn name(&self) -> &str;

    /// Takes one round of samples. A source that exists but has nothing (no GPU driver)
    /// returns an empty list, not an error.
    ///
    /// # Errors
    /// [`MonitorError`] when the source cannot be read.
    async fn sample(&self) -> Result<Vec<Sample>, MonitorError>;
}

/// The text parsers behind the sources (`/proc` files, `df`, `nvidia-smi`'s CSV), reachable
/// for this crate's tests and fuzzing; not part of the stable API.
#[doc(hidden)]
pub mod internal {
    /// Parsers of /proc files and `df` output.
    pub mod proc {
        pub use crate::proc::*;
    }
    /// The `nvidia-smi` CSV parser and its query.
    pub mod smi {
        pub use crate::smi::*;
    }
}
