//! The configuration every command starts from: the state directory, `conduit.toml` (or
//! `--config`), the original tool's `.env.conduit`, then the environment through clap's
//! `env` support. `serve` adds its own flags on top.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use conduit::admin::AdminClient;
use conduit::config::{ConduitConfig, ConfigNotice, MonitorSource, Secret, with_port};
use conduit::registry::DomainName;
use conduit::state::StateDir;

/// Options every command takes; each also reads its environment variable.
#[derive(clap::Args)]
pub(crate) struct Global {
    /// The state directory [default: ~/.config/qp-conduit].
    #[arg(long, global = true, env = "CONDUIT_CONFIG_DIR")]
    dir: Option<PathBuf>,
    /// The configuration file [default: DIR/conduit.toml].
    #[arg(long, global = true, env = "CONDUIT_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// The DNS zone (`zone` in conduit.toml).
    #[arg(long, global = true, env = "CONDUIT_DOMAIN")]
    domain_zone: Option<DomainName>,
    /// The admin API's unix socket (`[admin] socket`).
    #[arg(long, global = true, env = "CONDUIT_ADMIN_SOCKET")]
    pub(crate) admin_socket: Option<PathBuf>,
    /// The DNS port on the configured addresses (`[dns] listen`).
    #[arg(long, global = true, env = "CONDUIT_DNS_PORT", hide = true)]
    dns_port: Option<u16>,
    /// The HTTPS port on the configured addresses (`[proxy] listen`).
    #[arg(long, global = true, env = "CONDUIT_HTTPS_PORT", hide = true)]
    https_port: Option<u16>,
    /// Resolvers for names outside the zone, comma-separated (`[dns] forwarders`).
    #[arg(long, global = true, env = "CONDUIT_DNS_UPSTREAM", value_delimiter = ',', hide = true, value_parser = parse_forwarder)]
    dns_upstream: Option<Vec<SocketAddr>>,
    /// The health-check interval of new services (`[health] interval`).
    #[arg(long, global = true, env = "CONDUIT_HEALTH_INTERVAL", hide = true, value_parser = humantime::parse_duration)]
    health_interval: Option<Duration>,
    /// Remote hosts to monitor, comma-separated (`[monitor] ssh`).
    #[arg(
        long,
        global = true,
        env = "CONDUIT_REMOTE_SERVERS",
        value_delimiter = ',',
        hide = true
    )]
    remote_servers: Option<Vec<String>>,
    /// The Docker API socket (`[monitor] docker_socket`; adds the `docker` source).
    #[arg(long, global = true, env = "CONDUIT_DOCKER_SOCKET", hide = true)]
    docker_socket: Option<PathBuf>,
    /// The admin API's bearer token for `[admin] listen` (`[admin] token`).
    #[arg(
        long,
        global = true,
        env = "CONDUIT_ADMIN_TOKEN",
        hide = true,
        hide_env_values = true
    )]
    admin_token: Option<String>,
}

fn parse_forwarder(s: &str) -> Result<SocketAddr, conduit::config::InvalidValue> {
    conduit::config::parse_forwarders(s)?
        .into_iter()
        .next()
        .ok_or_else(|| conduit::config::InvalidValue {
            value: s.to_owned(),
            expected: "an address (IP or IP:PORT)",
        })
}

/// The state directory and the effective configuration.
pub(crate) struct Context {
    pub(crate) state: StateDir,
    pub(crate) config: ConduitConfig,
    /// Where the configuration came from (the file's path), for error messages.
    pub(crate) origin: String,
}

impl Global {
    /// The state directory alone.
    pub(crate) fn state(&self) -> anyhow::Result<StateDir> {
        match &self.dir {
            Some(d) => Ok(StateDir::new(d)),
            None => StateDir::from_env().context("set CONDUIT_CONFIG_DIR or HOME, or pass --dir"),
        }
    }

    /// The configuration file and whether it must exist (it must when named).
    pub(crate) fn config_file(&self, state: &StateDir) -> (PathBuf, bool) {
        match &self.config {
            Some(f) => (f.clone(), true),
            None => (state.config_file(), false),
        }
    }

    /// Reads the configuration and applies `.env.conduit` and the environment; the notices
    /// (old keys, variables without meaning here) are printed by `serve` and `config check`
    /// only, not by every command.
    pub(crate) fn load(&self) -> anyhow::Result<(Context, Vec<ConfigNotice>)> {
        let state = self.state()?;
        let (path, required) = self.config_file(&state);
        let (mut config, mut notices) = ConduitConfig::load(&path, required)?;
        notices.extend(config.apply_env_file(&state.env_file())?);
        self.apply(&mut config);
        Ok((
            Context {
                state,
                config,
                origin: path.display().to_string(),
            },
            notices,
        ))
    }

    /// The environment (and the global flags) over the file.
    fn apply(&self, c: &mut ConduitConfig) {
        if let Some(z) = &self.domain_zone {
            c.zone = z.clone();
        }
        if let Some(s) = &self.admin_socket {
            c.admin.socket = Some(s.clone());
        }
        if let Some(p) = self.dns_port {
            c.dns.listen = with_port(&c.dns.listen, p);
        }
        if let Some(p) = self.https_port {
            c.proxy.listen = with_port(&c.proxy.listen, p);
        }
        if let Some(f) = &self.dns_upstream {
            c.dns.forwarders = f.clone();
        }
        if let Some(i) = self.health_interval {
            c.health.interval = i;
            c.health.timeout = c.health.timeout.min(i);
        }
        if let Some(r) = &self.remote_servers {
            c.monitor.ssh = r.iter().filter(|s| !s.trim().is_empty()).cloned().collect();
        }
        if let Some(d) = &self.docker_socket {
            c.monitor.docker_socket = Some(d.clone());
            if !c.monitor.sources.contains(&MonitorSource::Docker) {
                c.monitor.sources.push(MonitorSource::Docker);
            }
        }
        if let Some(t) = self.admin_token.as_deref().filter(|t| !t.is_empty()) {
            c.admin.token = Some(Secret::new(t));
        }
    }
}

pub(crate) fn warn(notices: &[ConfigNotice]) {
    for n in notices {
        eprintln!("conduit: warning: {n}");
    }
}

impl Context {
    /// The admin API's socket as configured.
    pub(crate) fn admin_socket(&self) -> PathBuf {
        self.config
            .admin
            .socket
            .clone()
            .unwrap_or_else(|| self.state.admin_socket())
    }

    /// A client for the running gateway's admin API.
    pub(crate) fn admin(&self) -> AdminClient {
        AdminClient::new(self.admin_socket())
    }
}

/// Who the audit records of a command that writes the state itself name: this process's
/// real user, from the operating system (never `$USER`, which anyone can set).
pub(crate) fn user() -> String {
    conduit::identity::current_user()
}
