//! The metric sources `[monitor]` names, built for this build's features.

use std::sync::Arc;

use conduit_monitor::{HostSource, MetricSource};

use super::GatewayError;
use crate::config::{ConduitConfig, ConfigError, MonitorSource};

/// The metric sources `settings.monitor` names. GPU monitoring is skipped quietly on a host
/// without NVML; a source this build lacks is a configuration error.
///
/// # Errors
/// [`GatewayError::Config`] or [`GatewayError::Monitor`].
pub(super) fn from_settings(
    settings: &ConduitConfig,
    origin: &str,
) -> Result<Vec<Arc<dyn MetricSource>>, GatewayError> {
    let m = &settings.monitor;
    let missing = |what: &str, feature: &str| {
        GatewayError::Config(ConfigError::Invalid {
            origin: origin.to_owned(),
            key: "monitor.sources".to_owned(),
            problem: format!("{what} monitoring is not in this build (cargo feature `{feature}`)"),
        })
    };
    let mut out: Vec<Arc<dyn MetricSource>> = Vec::new();
    for source in &m.sources {
        match source {
            MonitorSource::Host => out.push(Arc::new(HostSource::new())),
            MonitorSource::Gpu => {
                #[cfg(feature = "gpu")]
                {
                    let nvml = conduit_monitor::NvmlSource::new();
                    if nvml.is_available() {
                        out.push(Arc::new(nvml));
                    }
                }
            }
            MonitorSource::Docker => {
                #[cfg(feature = "docker")]
                out.push(Arc::new(match &m.docker_socket {
                    Some(p) => conduit_monitor::DockerSource::new(&p.to_string_lossy())?,
                    None => conduit_monitor::DockerSource::from_env()?,
                }));
                #[cfg(not(feature = "docker"))]
                return Err(missing("container", "docker"));
            }
        }
    }
    #[cfg(feature = "ssh")]
    for target in &m.ssh {
        out.push(Arc::new(conduit_monitor::SshSource::new(
            conduit_monitor::RemoteTarget::parse(target)?,
        )));
    }
    #[cfg(not(feature = "ssh"))]
    if !m.ssh.is_empty() {
        return Err(missing("remote (SSH)", "ssh"));
    }
    let _ = missing;
    Ok(out)
}
