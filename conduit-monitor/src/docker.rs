//! Containers through the Docker API socket (bollard); podman's compatible API works too.

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions, StatsOptions};
use futures_util::StreamExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{MetricSource, MonitorError, Sample, SampleKind};

/// Every container (running or not): name, image, state, health, restart count, uptime, and
/// for running ones CPU use, memory use and limit, network bytes.
#[derive(Debug)]
pub struct DockerSource {
    socket: String,
    target: String,
    /// Connected on first use (and again after a failure): the engine may start later.
    docker: std::sync::Mutex<Option<Docker>>,
    /// Per container: CPU time and system CPU time at the previous sample.
    previous: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
}

impl DockerSource {
    /// The socket from `CONDUIT_DOCKER_SOCKET`, else `/var/run/docker.sock`.
    pub fn from_env() -> Result<Self, MonitorError> {
        let socket = std::env::var("CONDUIT_DOCKER_SOCKET")
            .unwrap_or_else(|_| "/var/run/docker.sock".into());
        Self::new(&socket)
    }

    /// A client of the API on this unix socket (`/run/podman/podman.sock`, `unix:///…`).
    /// Connecting is lazy: a missing socket shows up as an unavailable source when sampled.
    pub fn new(socket: &str) -> Result<Self, MonitorError> {
        if socket.trim().is_empty() {
            return Err(MonitorError::InvalidSetting {
                key: "monitor.docker_socket",
                value: socket.to_owned(),
                problem: "the socket path is empty",
            });
        }
        Ok(Self {
            socket: socket.to_owned(),
            target: "local".into(),
            docker: std::sync::Mutex::new(None),
            previous: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    pub(crate) fn client(&self) -> Result<Docker, MonitorError> {
        let mut guard = self
            .docker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(docker) = guard.as_ref() {
            return Ok(docker.clone());
        }
        let docker = Docker::connect_with_unix(&self.socket, 10, bollard::API_DEFAULT_VERSION)
            .map_err(|e| self.unavailable(e))?;
        *guard = Some(docker.clone());
        Ok(docker)
    }

    /// Names the target the samples carry (default `local`).
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    /// The socket, as errors name it.
    pub(crate) fn socket_name(&self) -> String {
        self.socket.clone()
    }

    pub(crate) fn unavailable(
        &self,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> MonitorError {
        MonitorError::Backend {
            source_name: "docker".into(),
            what: self.socket.clone(),
            source: Box::new(e),
        }
    }

    async fn container(&self, docker: &Docker, id: &str) -> Result<Sample, MonitorError> {
        let info = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.unavailable(e))?;
        let name = info
            .name
            .as_deref()
            .unwrap_or(id)
            .trim_start_matches('/')
            .to_owned();
        let state = info.state.as_ref();
        let status = state.and_then(|s| s.status).map(|s| s.to_string());
        let running = state.and_then(|s| s.running).unwrap_or(false);
        let health = state
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .map(|h| h.to_string())
            .filter(|h| !h.is_empty() && h != "none");
        let uptime = state
            .and_then(|s| s.started_at.as_deref())
            .filter(|_| running)
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .map(|started| {
                (OffsetDateTime::now_utc() - started)
                    .as_seconds_f64()
                    .max(0.0)
            });
        let mut sample = Sample::new(self.target.as_str(), SampleKind::Container)
            .with("name", name.as_str())
            .with("id", id)
            .with_opt("image", info.config.as_ref().and_then(|c| c.image.clone()))
            .with_opt("state", status)
            .with("running", running)
            .with_opt("health", health)
            .with_opt(
                "restart_count",
                info.restart_count.and_then(|c| u64::try_from(c).ok()),
            )
            .with_opt(
                "exit_code",
                state
                    .and_then(|s| s.exit_code)
                    .filter(|_| !running)
                    .map(|c| c as f64),
            )
            .with_opt("uptime_seconds", uptime);
        if running {
            // one_shot: answer at once instead of waiting a second for a CPU delta; the
            // delta is taken between our own samples instead (absent on the first).
            let options = StatsOptions {
                stream: false,
                one_shot: true,
            };
            let mut stream = docker.stats(id, Some(options));
            if let Some(Ok(stats)) = stream.next().await {
                let cpu = stats.cpu_stats.as_ref();
                let pre = stats.precpu_stats.as_ref();
                let total = |c: Option<&bollard::models::ContainerCpuStats>| {
                    c.and_then(|c| c.cpu_usage.as_ref())
                        .and_then(|u| u.total_usage)
                };
                let system = |c: Option<&bollard::models::ContainerCpuStats>| {
                    c.and_then(|c| c.system_cpu_usage)
                };
                // As `docker stats`: container delta / system delta × CPUs, here as a ratio of one CPU.
                let now = (total(cpu), system(cpu));
                let before = match now {
                    (Some(t), Some(sys)) => self
                        .previous
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(id.to_owned(), (t, sys)),
                    _ => None,
                };
                let (t0, s0) = match before {
                    Some((t, sys)) => (Some(t), Some(sys)),
                    None => (total(pre), system(pre)),
                };
                let usage = match (now.0, t0, now.1, s0) {
                    (Some(t1), Some(t0), Some(s1), Some(s0)) if s1 > s0 && t1 >= t0 => {
                        let cpus = cpu
                            .and_then(|c| c.online_cpus)
                            .filter(|n| *n > 0)
                            .unwrap_or(1);
                        Some((t1 - t0) as f64 / (s1 - s0) as f64 * f64::from(cpus))
                    }
                    _ => None,
                };
                let memory = stats.memory_stats.as_ref();
                // Page cache is reclaimable: `docker stats` subtracts inactive_file.
                let cache = memory
                    .and_then(|m| m.stats.as_ref())
                    .and_then(|s| {
                        s.get("inactive_file")
                            .or_else(|| s.get("total_inactive_file"))
                            .copied()
                    })
                    .unwrap_or(0);
                let (rx, tx) = stats.networks.as_ref().map_or((None, None), |n| {
                    (
                        Some(n.values().filter_map(|i| i.rx_bytes).sum::<u64>()),
                        Some(n.values().filter_map(|i| i.tx_bytes).sum::<u64>()),
                    )
                });
                sample = sample
                    .with_opt("cpu_usage_ratio", usage)
                    .with_opt(
                        "memory_used_bytes",
                        memory
                            .and_then(|m| m.usage)
                            .map(|u| u.saturating_sub(cache)),
                    )
                    .with_opt(
                        "memory_limit_bytes",
                        memory
                            .and_then(|m| m.limit)
                            .filter(|l| *l > 0 && *l < u64::MAX / 2),
                    )
                    .with_opt("network_receive_bytes_total", rx)
                    .with_opt("network_transmit_bytes_total", tx);
            }
        }
        Ok(sample)
    }
}

#[async_trait::async_trait]
impl MetricSource for DockerSource {
    fn name(&self) -> &str {
        "docker"
    }

    async fn sample(&self) -> Result<Vec<Sample>, MonitorError> {
        let docker = self.client()?;
        let list = match docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
        {
            Ok(list) => list,
            Err(e) => {
                // Reconnect next time (the engine may have restarted).
                *self
                    .docker
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                return Err(self.unavailable(e));
            }
        };
        // Concurrently: `stats` waits about a second for its CPU delta.
        let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
        let docker = &docker;
        let futures = ids.iter().map(|id| async move {
            tokio::time::timeout(Duration::from_secs(5), self.container(docker, id)).await
        });
        let mut out = Vec::new();
        for result in futures_util::future::join_all(futures).await {
            match result {
                Ok(Ok(sample)) => out.push(sample),
                // A container removed between the list and the inspect: skip it.
                Ok(Err(e)) => tracing::debug!(error = %e, "container vanished or unreadable"),
                Err(_) => tracing::debug!("container stats timed out"),
            }
        }
        out.sort_by(|a, b| a.text("name").cmp(&b.text("name")));
        Ok(out)
    }
}
