//! `conduit monitor`: one round of the monitor (or one every 5 s), printed.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use conduit::monitor::{HostSource, MetricSource, Poller, RemoteTarget, render};

use crate::settings::Context;
use crate::signal::shutdown;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// GPUs through NVML (the gateway host's).
    #[arg(long)]
    gpu: bool,
    /// Containers through the Docker API socket (`[monitor] docker_socket`).
    #[arg(long)]
    containers: bool,
    /// A remote host over SSH, `USER@HOST[:PORT]`, repeatable [default: `[monitor] ssh`].
    #[arg(long)]
    server: Vec<String>,
    /// JSON samples, one per line.
    #[arg(long)]
    json: bool,
    /// Prometheus text.
    #[arg(long)]
    prometheus: bool,
    /// Again every 5 s until interrupted.
    #[arg(long)]
    watch: bool,
}

pub(crate) async fn monitor(ctx: &Context, m: Args) -> anyhow::Result<ExitCode> {
    let cfg = &ctx.config.monitor;
    let mut sources: Vec<Arc<dyn MetricSource>> = vec![Arc::new(HostSource::new())];
    if m.gpu {
        let nvml = conduit::monitor::NvmlSource::new();
        if let Some(why) = nvml.unavailable_reason() {
            eprintln!("conduit: note: no GPU monitoring here: {why}");
        }
        sources.push(Arc::new(nvml));
    }
    if m.containers {
        sources.push(Arc::new(match &cfg.docker_socket {
            Some(p) => conduit::monitor::DockerSource::new(&p.to_string_lossy())?,
            None => conduit::monitor::DockerSource::from_env()?,
        }));
    }
    let servers = if m.server.is_empty() {
        cfg.ssh.clone()
    } else {
        m.server.clone()
    };
    for s in servers {
        let target = RemoteTarget::parse(&s).with_context(|| format!("--server {s:?}"))?;
        sources.push(Arc::new(conduit::monitor::SshSource::new(target)));
    }
    let mut poller = Poller::new(sources).with_thresholds(cfg.thresholds.clone());
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        let round = poller.poll_once().await;
        if m.json {
            for s in &round.samples {
                println!("{}", serde_json::to_string(s)?);
            }
        } else if m.prometheus {
            print!("{}", render::prometheus(&round.samples));
        } else {
            print!("{}", render::human(&round.samples));
        }
        for (source, error) in &round.errors {
            eprintln!("conduit: {source}: {error}");
        }
        for a in &round.alerts {
            eprintln!("conduit: alert: {}", a.message);
        }
        if !m.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            () = &mut stop => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
