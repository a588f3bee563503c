//! Configurations of earlier versions and of the original tool: the flat keys of old
//! `conduit.toml` files, and `.env.conduit`.

use std::path::{Path, PathBuf};

use super::values::{parse_forwarders, parse_port, split_list, with_port};
use super::{ConduitConfig, ConfigError, ConfigNotice, InvalidValue, MonitorSource, Secret};

impl ConduitConfig {
    pub(super) fn migrate(&mut self) -> Vec<ConfigNotice> {
        let mut notices = Vec::new();
        let mut moved = |old: &str, new: &str| {
            notices.push(ConfigNotice {
                key: old.to_owned(),
                message: format!("is an old key; write `{new}` instead (still read)"),
            });
        };
        if let Some(v) = self.domain.take() {
            moved("domain", "zone");
            self.zone = v;
        }
        if let Some(v) = self.dns_listen.take() {
            moved("dns_listen", "[dns] listen");
            self.dns.listen = v;
        }
        if let Some(v) = self.https_listen.take() {
            moved("https_listen", "[proxy] listen");
            self.proxy.listen = v;
        }
        if let Some(v) = self.http_listen.take() {
            moved("http_listen", "[proxy] http_listen");
            self.proxy.http_listen = v;
        }
        if let Some(v) = self.advertise.take() {
            moved("advertise", "[dns] advertise");
            self.dns.advertise = v;
        }
        if let Some(v) = self.dns_upstream.take() {
            moved("dns_upstream", "[dns] forwarders");
            self.dns.forwarders = v;
        }
        if let Some(v) = self.admin_socket.take() {
            moved("admin_socket", "[admin] socket");
            self.admin.socket = Some(v);
        }
        if let Some(v) = self.health_interval.take() {
            moved("health_interval", "[health] interval");
            self.health.interval = v;
            self.health.timeout = self.health.timeout.min(v);
        }
        notices
    }

    /// Applies the original tool's `.env.conduit` (`CONDUIT_*=value` lines), when the file
    /// exists. Variables that have no meaning here are named in the notices.
    ///
    /// # Errors
    /// [`ConfigError::Read`], or [`ConfigError::Invalid`] for a value that cannot be used.
    pub fn apply_env_file(&mut self, path: &Path) -> Result<Vec<ConfigNotice>, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let origin = path.display().to_string();
        let mut notices = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim();
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            if !key.starts_with("CONDUIT_") {
                continue;
            }
            if let Some(n) = self.apply_legacy_var(key, value, &origin)? {
                notices.push(n);
            }
        }
        Ok(notices)
    }

    /// One variable of the original tool; a notice when it has no meaning here.
    fn apply_legacy_var(
        &mut self,
        key: &str,
        value: &str,
        origin: &str,
    ) -> Result<Option<ConfigNotice>, ConfigError> {
        let bad = |problem: String| ConfigError::invalid(origin, key, problem);
        let bad_value = |e: InvalidValue| bad(e.to_string());
        let notice = |message: &str| {
            Ok(Some(ConfigNotice {
                key: key.to_owned(),
                message: message.to_owned(),
            }))
        };
        match key {
            "CONDUIT_DOMAIN" => {
                self.zone = value
                    .parse()
                    .map_err(|e| bad(format!("{value:?} is not a zone: {e}")))?;
            }
            "CONDUIT_DNS_PORT" => {
                let port = parse_port(value).map_err(bad_value)?;
                self.dns.listen = with_port(&self.dns.listen, port);
            }
            "CONDUIT_PROXY_PORT" | "CONDUIT_CADDY_HTTPS_PORT" | "CONDUIT_HTTPS_PORT" => {
                let port = parse_port(value).map_err(bad_value)?;
                self.proxy.listen = with_port(&self.proxy.listen, port);
            }
            "CONDUIT_UPSTREAM_DNS" | "CONDUIT_DNS_UPSTREAM" => {
                self.dns.forwarders = parse_forwarders(value).map_err(bad_value)?;
            }
            "CONDUIT_HEALTH_INTERVAL" => {
                let d = humantime::parse_duration(value)
                    .map_err(|e| bad(format!("{value:?}: {e} (write 30s, 1m)")))?;
                self.health.interval = d;
                self.health.timeout = self.health.timeout.min(d);
            }
            "CONDUIT_REMOTE_SERVERS" => {
                self.monitor.ssh = split_list(value);
            }
            "CONDUIT_DOCKER_SOCKET" => {
                self.monitor.docker_socket = Some(PathBuf::from(value));
                if !self.monitor.sources.contains(&MonitorSource::Docker) {
                    self.monitor.sources.push(MonitorSource::Docker);
                }
            }
            "CONDUIT_ALLOWED_UPSTREAMS" => {
                self.proxy.allow_upstreams = split_list(value);
            }
            "CONDUIT_API_KEY" => {
                self.admin.token = Some(Secret::new(value));
            }
            "CONDUIT_CONFIG_DIR" => {
                return notice(
                    "ignored here: the state directory is chosen before this file is read (--dir)",
                );
            }
            "CONDUIT_ADMIN_PORT"
            | "CONDUIT_CADDY_ADMIN"
            | "CONDUIT_CADDY_DATA"
            | "CONDUIT_CADDY_CONFIG"
            | "CONDUIT_CADDYFILE" => {
                return notice("Caddy's setting: no meaning here (the proxy is built in)");
            }
            "CONDUIT_DNSMASQ_CONF" => {
                return notice("dnsmasq's setting: no meaning here (DNS is built in)");
            }
            "CONDUIT_CERTS_DIR" => {
                return notice("no meaning here: certificates live in STATE_DIR/tls");
            }
            "CONDUIT_BIND_HOST" | "CONDUIT_BIND_PORT" => {
                return notice("the old HTTP API's address: use `[admin] listen` with a token");
            }
            "CONDUIT_RATE_LIMIT" => {
                return notice("no meaning here: the admin API is on a unix socket by default");
            }
            _ => return notice("no meaning here; ignored"),
        }
        Ok(None)
    }
}
