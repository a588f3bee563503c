//! `conduit.toml`: the gateway's whole configuration, one section per subsystem.
//!
//! ```toml
//! zone = "internal"
//!
//! [dns]
//! listen = ["127.0.0.1:5353"]
//! advertise = ["127.0.0.1"]
//! forwarders = []
//!
//! [proxy]
//! listen = ["127.0.0.1:8443"]
//! http_listen = ["127.0.0.1:8080"]
//! first_byte_timeout = "5m"
//! idle_timeout = "5m"
//! max_body = "1GiB"
//! balance = "p2c"
//! tls_versions = "1.3"
//! allow_loopback_upstreams = true
//!
//! [health]
//! path = "/health"
//! interval = "30s"
//!
//! [ca]
//! leaf_lifetime = "7d"
//! key_algorithm = "ecdsa-p256"
//!
//! [monitor]
//! sources = ["host", "gpu"]
//! interval = "30s"
//!
//! [admin]
//! socket = "/run/conduit/admin.sock"
//! ```
//! Every table refuses keys it does not know, naming them; durations are written `"30s"`,
//! `"5m"`, `"7d"`; sizes `"1GiB"` or a number of bytes. `docs/configuration.md` lists every
//! key with its default. The flat keys of earlier versions (`domain`, `dns_listen`,
//! `https_listen`, `http_listen`, `advertise`, `dns_upstream`, `admin_socket`,
//! `health_interval`) are still read, each with a notice naming its new key.
//!
//! ```
//! use conduit::config::ConduitConfig;
//! let (cfg, notices) = ConduitConfig::from_toml(
//!     "zone = \"lab\"\n[proxy]\nfirst_byte_timeout = \"1s\"\n",
//!     "conduit.toml".as_ref(),
//! )?;
//! assert_eq!(cfg.zone.as_str(), "lab");
//! assert_eq!(cfg.proxy.first_byte_timeout, std::time::Duration::from_secs(1));
//! assert!(notices.is_empty());
//!
//! let err = ConduitConfig::from_toml("[proxy]\nfirst_byte = \"1s\"\n", "conduit.toml".as_ref())
//!     .unwrap_err();
//! assert!(err.to_string().contains("proxy.first_byte"), "{err}");
//! # Ok::<(), conduit::config::ConfigError>(())
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use conduit_ca::{CaConfig, KeyAlgorithm};
use conduit_dns::ZoneConfig;
use conduit_monitor::Thresholds;
use conduit_proxy::{Balance, Cidr, ProxyConfig, SsrfPolicy, TlsVersions};
use conduit_registry::{DomainName, HealthCheck};
use serde::{Deserialize, Serialize};

/// A configuration that cannot be used: which file (or layer), which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or has a value of the wrong kind.
    #[error("{}{}: {}{message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line (1-based), when known.
        line: Option<usize>,
        /// The key, with its section (`proxy.first_byte_timeout`), when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A value is well-formed but not usable.
    #[error("{origin}: key `{key}`: {problem}")]
    Invalid {
        /// Where the value came from: the file, `.env.conduit`, the environment or a flag.
        origin: String,
        /// The key.
        key: String,
        /// What is wrong and what to write instead.
        problem: String,
    },
}

impl ConfigError {
    fn invalid(origin: &str, key: &str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Something the operator should know about a configuration that is still used: an old key,
/// an original-tool variable without meaning here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigNotice {
    /// The key or variable.
    pub key: String,
    /// What happens with it.
    pub message: String,
}

impl std::fmt::Display for ConfigNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A secret (the admin token): read from the configuration, never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// The whole configuration of a gateway: `conduit.toml`, then `.env.conduit`, the
/// environment and flags on top.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ConduitConfig {
    /// The DNS zone every service name is in (default `internal`).
    pub zone: DomainName,
    /// `[dns]`.
    pub dns: DnsSettings,
    /// `[proxy]`.
    pub proxy: ProxySettings,
    /// `[health]`: the health check a service gets when `conduit register` does not say.
    pub health: HealthCheck,
    /// `[ca]`.
    pub ca: CaSettings,
    /// `[monitor]`.
    pub monitor: MonitorSettings,
    /// `[admin]`.
    pub admin: AdminSettings,
    // The flat keys of earlier versions, moved into their sections by `from_toml`.
    #[serde(skip_serializing)]
    domain: Option<DomainName>,
    #[serde(skip_serializing)]
    dns_listen: Option<Vec<SocketAddr>>,
    #[serde(skip_serializing)]
    https_listen: Option<Vec<SocketAddr>>,
    #[serde(skip_serializing)]
    http_listen: Option<Vec<SocketAddr>>,
    #[serde(skip_serializing)]
    advertise: Option<Vec<IpAddr>>,
    #[serde(skip_serializing)]
    dns_upstream: Option<Vec<SocketAddr>>,
    #[serde(skip_serializing)]
    admin_socket: Option<PathBuf>,
    #[serde(skip_serializing, with = "humantime_serde")]
    health_interval: Option<Duration>,
}

/// `[dns]`: the authoritative server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DnsSettings {
    /// UDP and TCP listeners (default `127.0.0.1:5353`; empty: no DNS).
    pub listen: Vec<SocketAddr>,
    /// The addresses proxied names resolve to: the gateway's own (default `127.0.0.1`).
    pub advertise: Vec<IpAddr>,
    /// Resolvers for names outside the zone (default none: REFUSED, the air-gapped default).
    pub forwarders: Vec<SocketAddr>,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5353))],
            advertise: vec![IpAddr::from([127, 0, 0, 1])],
            forwarders: Vec::new(),
        }
    }
}

/// `[proxy]`: the TLS reverse proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ProxySettings {
    /// HTTPS listeners (default `127.0.0.1:8443`; empty: no proxy).
    pub listen: Vec<SocketAddr>,
    /// Plain-HTTP listeners (default `127.0.0.1:8080`): services registered with `--no-tls`
    /// are served there, every other registered name is redirected to HTTPS.
    pub http_listen: Vec<SocketAddr>,
    /// From a request sent to the upstream's first response byte (default 5 min: a model
    /// may be loading). Not a total: a stream may run for hours.
    #[serde(with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// Longest silence inside a body or an upgraded stream (default 5 min).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connecting to an upstream (default 5 s).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Largest request body, in bytes or `"512MiB"`/`"1GiB"`; `"unlimited"` for none
    /// (default 1 GiB).
    #[serde(with = "byte_size")]
    pub max_body: Option<u64>,
    /// `"p2c"` (default: fewer requests in flight of two at random) or `"round_robin"`.
    pub balance: Balance,
    /// The lowest TLS version offered: `"1.3"` (default) or `"1.2"`.
    pub tls_versions: TlsVersions,
    /// `Strict-Transport-Security` max-age on HTTPS answers (default: not sent).
    #[serde(with = "humantime_serde")]
    pub hsts: Option<Duration>,
    /// Allow upstreams on loopback addresses (default `true`: services on the gateway host
    /// itself are common). Link-local and cloud-metadata addresses are always refused
    /// unless listed in `allow_upstreams`.
    pub allow_loopback_upstreams: bool,
    /// When not empty, the only upstreams allowed: networks (`10.0.0.0/8`, an address) and
    /// host names (the name and the names below it).
    pub allow_upstreams: Vec<String>,
    /// How long a shutdown waits for requests and streams in flight (default 30 s).
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Protocols a client may upgrade to (default `["websocket"]`); others (`h2c`) are not
    /// tunnelled.
    pub upgrades: Vec<String>,
    /// Proxies in front of the gateway (networks) whose `X-Forwarded-For`, `X-Real-IP` and
    /// `Forwarded` are kept; everyone else's are replaced (default none).
    pub trusted_proxies: Vec<String>,
    /// Upstream answers that count as its failure for passive health (default 502, 503,
    /// 504; a 500 or 501 is the application's answer).
    pub passive_failure_statuses: Vec<u16>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        let p = ProxyConfig::default();
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8443))],
            http_listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            first_byte_timeout: p.timeouts.upstream_first_byte,
            idle_timeout: p.timeouts.idle,
            connect_timeout: p.timeouts.upstream_connect,
            max_body: p.limits.max_body_bytes,
            balance: p.balance,
            tls_versions: p.tls,
            hsts: None,
            allow_loopback_upstreams: true,
            allow_upstreams: Vec::new(),
            grace_period: p.grace_period,
            upgrades: p.upgrades.clone(),
            trusted_proxies: Vec::new(),
            passive_failure_statuses: p.health.passive_failure_statuses.clone(),
        }
    }
}

/// `[ca]`: the internal certificate authority.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CaSettings {
    /// Lifetime of a service's certificate (default 7 days, at most a year); renewed at
    /// two thirds of it.
    #[serde(with = "humantime_serde")]
    pub leaf_lifetime: Duration,
    /// Lifetime of the gateway's intermediate (default 7 days); renewed automatically.
    #[serde(with = "humantime_serde")]
    pub intermediate_lifetime: Duration,
    /// `"ecdsa-p256"` (default: what every browser accepts) or `"ed25519"`
    /// (service-to-service only).
    pub key_algorithm: KeyAlgorithm,
    /// How often certificates are checked for renewal (default 1 h).
    #[serde(with = "humantime_serde")]
    pub renew_check_interval: Duration,
}

impl Default for CaSettings {
    fn default() -> Self {
        let c = CaConfig::default();
        Self {
            leaf_lifetime: c.leaf_lifetime,
            intermediate_lifetime: c.intermediate_lifetime,
            key_algorithm: c.key_algorithm,
            renew_check_interval: Duration::from_secs(3600),
        }
    }
}

/// What the monitor samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MonitorSource {
    /// This host: CPU, load, memory, disk, uptime (from /proc).
    Host,
    /// This host's NVIDIA GPUs through NVML, when the driver is there.
    Gpu,
    /// Containers through the Docker API socket (`docker_socket`).
    Docker,
}

/// `[monitor]`: host, GPU, container and remote monitoring.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MonitorSettings {
    /// The local sources (default `["host", "gpu"]`; a host without a GPU is normal).
    pub sources: Vec<MonitorSource>,
    /// Remote hosts over SSH, `USER@HOST[:PORT]`.
    pub ssh: Vec<String>,
    /// The Docker API socket for `"docker"` (default `/var/run/docker.sock`).
    pub docker_socket: Option<PathBuf>,
    /// Time between rounds (default 30 s, at least 1 s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Alert thresholds.
    pub thresholds: Thresholds,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            sources: vec![MonitorSource::Host, MonitorSource::Gpu],
            ssh: Vec::new(),
            docker_socket: None,
            interval: Duration::from_secs(30),
            thresholds: Thresholds::default(),
        }
    }
}

/// `[admin]`: the admin API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdminSettings {
    /// The unix socket (default `STATE_DIR/admin.sock`), mode 0600.
    pub socket: Option<PathBuf>,
    /// Also serve on this TCP address; a token is then required.
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token for `listen`.
    pub token_file: Option<PathBuf>,
    /// The bearer token itself (prefer `token_file` or `CONDUIT_ADMIN_TOKEN`); never printed.
    pub token: Option<Secret>,
    /// TLS on `listen`, with a certificate from the gateway's CA (default: on unless
    /// `listen` is a loopback address). Plain HTTP off loopback is refused: the token
    /// would cross the network in clear.
    pub tls: Option<bool>,
}

impl Default for ConduitConfig {
    fn default() -> Self {
        Self {
            zone: DomainName::internal(),
            dns: DnsSettings::default(),
            proxy: ProxySettings::default(),
            health: HealthCheck::default(),
            ca: CaSettings::default(),
            monitor: MonitorSettings::default(),
            admin: AdminSettings::default(),
            domain: None,
            dns_listen: None,
            https_listen: None,
            http_listen: None,
            advertise: None,
            dns_upstream: None,
            admin_socket: None,
            health_interval: None,
        }
    }
}

impl ConduitConfig {
    /// Parses a configuration file's text; `path` names it in errors. Old flat keys are
    /// moved to their sections, each with a notice.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] naming the line and key.
    pub fn from_toml(text: &str, path: &Path) -> Result<(Self, Vec<ConfigNotice>), ConfigError> {
        let mut cfg: Self = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        let notices = cfg.migrate();
        // A short interval with the default timeout: the timeout follows the interval.
        let h = &mut cfg.health;
        if h.timeout > h.interval && h.timeout == HealthCheck::default().timeout {
            h.timeout = h.interval;
        }
        Ok((cfg, notices))
    }

    /// Reads `path`. A missing file gives the defaults when `required` is false.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path, required: bool) -> Result<(Self, Vec<ConfigNotice>), ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok((Self::default(), Vec::new()))
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn migrate(&mut self) -> Vec<ConfigNotice> {
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

    /// Checks every value that can be checked before anything is opened or bound.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key; `origin` names where the configuration came
    /// from.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: String| Err(ConfigError::invalid(origin, key, problem));
        if self.dns.listen.is_empty() && self.proxy.listen.is_empty() {
            return bad(
                "dns.listen",
                "nothing to serve: give a DNS listener or an HTTPS listener (`[proxy] listen`)"
                    .to_owned(),
            );
        }
        if self.dns.advertise.is_empty() {
            return bad(
                "dns.advertise",
                "empty: DNS needs the gateway's address for proxied names".to_owned(),
            );
        }
        self.zone_config()
            .validate()
            .or_else(|e| bad("zone", e.to_string()))?;
        for (key, d) in [
            ("proxy.first_byte_timeout", self.proxy.first_byte_timeout),
            ("proxy.idle_timeout", self.proxy.idle_timeout),
            ("proxy.connect_timeout", self.proxy.connect_timeout),
            ("ca.renew_check_interval", self.ca.renew_check_interval),
        ] {
            if d.is_zero() {
                return bad(key, "must be more than 0s".to_owned());
            }
        }
        if self.proxy.hsts.is_some_and(|d| d.is_zero()) {
            return bad(
                "proxy.hsts",
                "0s tells browsers to forget the policy; leave the key out instead".to_owned(),
            );
        }
        self.ssrf_policy(origin)?;
        self.proxy_config(origin)?;
        if let Some(status) = self
            .proxy
            .passive_failure_statuses
            .iter()
            .find(|s| !(500..=599).contains(*s))
        {
            return bad(
                "proxy.passive_failure_statuses",
                format!("{status} is not a 5xx status"),
            );
        }
        self.health
            .validate()
            .or_else(|e| bad("health", e.to_string()))?;
        const YEAR: Duration = Duration::from_secs(366 * 24 * 3600);
        const HOUR: Duration = Duration::from_secs(3600);
        if self.ca.leaf_lifetime < HOUR || self.ca.leaf_lifetime > YEAR {
            return bad(
                "ca.leaf_lifetime",
                "must be between 1h and 1 year (e.g. \"7d\")".to_owned(),
            );
        }
        if self.ca.intermediate_lifetime < HOUR {
            return bad(
                "ca.intermediate_lifetime",
                "must be at least 1h (e.g. \"7d\")".to_owned(),
            );
        }
        if self.monitor.interval < Duration::from_secs(1) {
            return bad("monitor.interval", "must be at least 1s".to_owned());
        }
        let t = &self.monitor.thresholds;
        for (key, v) in [
            ("monitor.thresholds.vram_above", t.vram_above),
            ("monitor.thresholds.disk_above", t.disk_above),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(key, format!("{v} is not a share between 0 and 1"));
            }
        }
        for s in &self.monitor.ssh {
            if let Err(e) = conduit_monitor::RemoteTarget::parse(s) {
                return bad("monitor.ssh", format!("{s:?}: {e}"));
            }
        }
        if let Some(addr) = self.admin.listen {
            if !self.admin_tls() && !addr.ip().is_loopback() {
                return bad(
                    "admin.tls",
                    format!(
                        "plain HTTP on {addr} would send the admin token across the network in clear: leave `tls` out (TLS is the default off loopback) or listen on loopback"
                    ),
                );
            }
            match self.admin_token(origin)? {
                None => {
                    return bad(
                        "admin.listen",
                        format!(
                            "refusing the admin API on TCP {addr} without a token: set `[admin] token_file` or CONDUIT_ADMIN_TOKEN"
                        ),
                    );
                }
                Some(t) if t.expose().len() < 16 => {
                    return bad("admin.token", "must be at least 16 characters".to_owned());
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Whether the admin API's TCP listener speaks TLS (`[admin] tls`, default: unless it
    /// listens on loopback).
    pub fn admin_tls(&self) -> bool {
        self.admin
            .tls
            .unwrap_or_else(|| self.admin.listen.is_some_and(|a| !a.ip().is_loopback()))
    }

    /// The admin token: `[admin] token`, else the file `[admin] token_file` names.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the token file cannot be read.
    pub fn admin_token(&self, _origin: &str) -> Result<Option<Secret>, ConfigError> {
        if let Some(t) = &self.admin.token {
            return Ok(Some(t.clone()));
        }
        match &self.admin.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| Some(Secret::new(t.trim())))
                .map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                }),
            None => Ok(None),
        }
    }

    /// The DNS zone configuration: the zone, the advertised addresses and the ports SRV
    /// records give (HTTPS and plain HTTP listeners).
    pub fn zone_config(&self) -> ZoneConfig {
        let mut z =
            ZoneConfig::new(vec![self.zone.clone()]).with_advertise(self.dns.advertise.clone());
        if let Some(port) = self.proxy.listen.first().map(SocketAddr::port) {
            z = z.with_https_port(port);
        }
        if let Some(port) = self.proxy.http_listen.first().map(SocketAddr::port) {
            z = z.with_http_port(port);
        }
        z
    }

    /// The SSRF guard for upstreams: metadata and link-local refused, loopback per
    /// `allow_loopback_upstreams`, the allow-list when given.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an entry of `proxy.allow_upstreams` that is neither a
    /// network nor a name.
    pub fn ssrf_policy(&self, origin: &str) -> Result<SsrfPolicy, ConfigError> {
        let mut networks = Vec::new();
        let mut names = Vec::new();
        for entry in &self.proxy.allow_upstreams {
            if let Some(c) = parse_cidr(entry) {
                networks.push(c);
            } else {
                let name: DomainName = entry.parse().map_err(|e| {
                    ConfigError::invalid(
                        origin,
                        "proxy.allow_upstreams",
                        format!("{entry:?} is neither a network (10.0.0.0/8) nor a name: {e}"),
                    )
                })?;
                names.push(name);
            }
        }
        Ok(SsrfPolicy::default()
            .allow_loopback(self.proxy.allow_loopback_upstreams)
            .allow_networks(networks)
            .allow_names(names))
    }

    /// The proxy's configuration.
    ///
    /// # Errors
    /// As [`ConduitConfig::ssrf_policy`].
    pub fn proxy_config(&self, origin: &str) -> Result<ProxyConfig, ConfigError> {
        let p = &self.proxy;
        let mut c = ProxyConfig::default();
        c.tls = p.tls_versions;
        c.balance = p.balance;
        c.timeouts.upstream_first_byte = p.first_byte_timeout;
        c.timeouts.idle = p.idle_timeout;
        c.timeouts.upstream_connect = p.connect_timeout;
        c.limits.max_body_bytes = p.max_body;
        c.hsts = p.hsts;
        c.grace_period = p.grace_period;
        c.ssrf = Some(Arc::new(self.ssrf_policy(origin)?));
        c.upgrades = p.upgrades.clone();
        c.health.passive_failure_statuses = p.passive_failure_statuses.clone();
        c.trusted_proxies = p
            .trusted_proxies
            .iter()
            .map(|t| {
                parse_cidr(t).ok_or_else(|| {
                    ConfigError::invalid(
                        origin,
                        "proxy.trusted_proxies",
                        format!("{t:?} is not a network (10.0.0.0/8) or an address"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(c)
    }

    /// The CA's configuration: constrained to the zone.
    pub fn ca_config(&self) -> CaConfig {
        let mut c = CaConfig::default();
        c.zones = vec![self.zone.as_str().to_owned()];
        c.leaf_lifetime = self.ca.leaf_lifetime;
        c.intermediate_lifetime = self.ca.intermediate_lifetime;
        c.key_algorithm = self.ca.key_algorithm;
        c
    }

    /// The configuration as TOML, secrets redacted (`conduit config show`).
    ///
    /// # Errors
    /// Only if a value cannot be written as TOML (none today).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

/// `10.0.0.0/8`, `fd00::/8` or a bare address.
fn parse_cidr(s: &str) -> Option<Cidr> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
        None => {
            let a = s.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    Cidr::new(addr, prefix).ok()
}

/// A value of a flag, an environment variable or `.env.conduit` that is not what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not {expected}")]
pub struct InvalidValue {
    /// What was given.
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

/// A port number from an environment variable or flag.
///
/// # Errors
/// [`InvalidValue`] naming the value.
pub fn parse_port(value: &str) -> Result<u16, InvalidValue> {
    value.trim().parse().map_err(|_| InvalidValue {
        value: value.to_owned(),
        expected: "a port (1-65535)",
    })
}

/// The same listeners on another port (the original tool's `*_PORT` variables); loopback
/// when there were none.
pub fn with_port(listen: &[SocketAddr], port: u16) -> Vec<SocketAddr> {
    if listen.is_empty() {
        return vec![SocketAddr::from(([127, 0, 0, 1], port))];
    }
    listen
        .iter()
        .map(|a| SocketAddr::new(a.ip(), port))
        .collect()
}

/// `1.1.1.1,10.0.0.2:5353`: resolvers, port 53 when not given.
///
/// # Errors
/// [`InvalidValue`] naming the entry.
pub fn parse_forwarders(value: &str) -> Result<Vec<SocketAddr>, InvalidValue> {
    split_list(value)
        .iter()
        .map(|a| {
            a.parse::<SocketAddr>()
                .or_else(|_| a.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| InvalidValue {
                    value: a.clone(),
                    expected: "an address (IP or IP:PORT)",
                })
        })
        .collect()
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Turns a TOML error into one line naming the file, the line and the key.
fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().replace('\n', " ");
    let Some(span) = e.span() else {
        return ConfigError::Parse {
            path: path.to_owned(),
            line: None,
            key: None,
            message,
        };
    };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    // The section: the last `[table]` header above the error.
    let section = text
        .lines()
        .take(line_no.saturating_sub(1))
        .filter_map(|l| {
            let l = l.trim();
            (l.starts_with('[') && !l.starts_with("[[")).then(|| l.trim_matches(['[', ']', ' ']))
        })
        .last()
        .map(str::to_owned);
    // The key: named in the message (unknown field `x`), else the one on the line.
    let key = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(k, _)| k.to_owned())
        .or_else(|| {
            line.split_once('=')
                .map(|(k, _)| k.trim().to_owned())
                .filter(|k| !k.is_empty() && !k.starts_with('['))
        });
    let header = line.trim();
    let key = if header.starts_with('[') {
        // A table header: its own dotted name is the key.
        Some(header.trim_matches(['[', ']', ' ']).to_owned())
    } else {
        match (section, key) {
            (Some(s), Some(k)) => Some(format!("{s}.{k}")),
            (_, k) => k,
        }
    };
    ConfigError::Parse {
        path: path.to_owned(),
        line: Some(line_no),
        key,
        message,
    }
}

/// Sizes: a number of bytes, or a string with a unit (`"512MiB"`, `"1GiB"`, `"10MB"`),
/// or `"unlimited"`.
mod byte_size {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_str("unlimited"),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Some(n)),
            Raw::Text(t) => parse(&t).map_err(D::Error::custom),
        }
    }

    pub(super) fn parse(t: &str) -> Result<Option<u64>, String> {
        let t = t.trim();
        if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{t:?} is not a size (write 1048576, \"512MiB\" or \"1GiB\")"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            "tb" => 1_000_000_000_000,
            "tib" | "t" => 1 << 40,
            other => {
                return Err(format!(
                    "{other:?} is not a size unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(Some)
            .ok_or_else(|| format!("{t:?} is too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(ConduitConfig, Vec<ConfigNotice>), ConfigError> {
        ConduitConfig::from_toml(text, Path::new("conduit.toml"))
    }

    #[test]
    fn defaults_validate() {
        ConduitConfig::default().validate("defaults").unwrap();
        let (c, n) = parse("").unwrap();
        assert!(n.is_empty());
        assert_eq!(c.proxy.http_listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert!(c.proxy.allow_loopback_upstreams);
    }

    #[test]
    fn unknown_keys_are_named_with_their_section() {
        for (text, key, line) in [
            ("bogus = 1\n", "bogus", 1),
            (
                "[proxy]\nlisten = []\nfirst_byte = \"1s\"\n",
                "proxy.first_byte",
                3,
            ),
            (
                "[monitor.thresholds]\ngpu_hot = 3\n",
                "monitor.thresholds.gpu_hot",
                2,
            ),
            ("[nosuch]\n", "nosuch", 1),
        ] {
            let e = parse(text).unwrap_err();
            match &e {
                ConfigError::Parse {
                    line: l, key: k, ..
                } => {
                    assert_eq!(*l, Some(line), "{e}");
                    assert_eq!(k.as_deref(), Some(key), "{e}");
                }
                other => panic!("{other:?}"),
            }
            let msg = e.to_string();
            assert!(msg.starts_with("conduit.toml line"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn wrong_values_name_the_key() {
        let e = parse("[proxy]\nidle_timeout = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("key `proxy.idle_timeout`"), "{e}");
        let e = parse("[proxy]\nbalance = \"random\"\n").unwrap_err();
        assert!(e.to_string().contains("proxy.balance"), "{e}");
        let e = parse("[proxy]\nmax_body = \"12 parsecs\"\n").unwrap_err();
        assert!(e.to_string().contains("proxy.max_body"), "{e}");
    }

    #[test]
    fn sizes_durations_and_enums() {
        let (c, _) = parse(
            "[proxy]\nmax_body = \"512MiB\"\nbalance = \"round_robin\"\ntls_versions = \"1.2\"\nhsts = \"365d\"\n[ca]\nkey_algorithm = \"ed25519\"\nleaf_lifetime = \"30d\"\n",
        )
        .unwrap();
        assert_eq!(c.proxy.max_body, Some(512 << 20));
        assert_eq!(c.proxy.balance, Balance::RoundRobin);
        assert_eq!(c.proxy.tls_versions, TlsVersions::Tls12And13);
        assert_eq!(c.proxy.hsts, Some(Duration::from_secs(365 * 86400)));
        assert_eq!(c.ca.key_algorithm, KeyAlgorithm::Ed25519);
        assert_eq!(c.ca_config().leaf_lifetime, Duration::from_secs(30 * 86400));
        let (c, _) = parse("[proxy]\nmax_body = \"unlimited\"\n").unwrap();
        assert_eq!(c.proxy.max_body, None);
        let (c, _) = parse("[proxy]\nmax_body = 1000\n").unwrap();
        assert_eq!(
            c.proxy_config("t").unwrap().limits.max_body_bytes,
            Some(1000)
        );
    }

    #[test]
    fn old_flat_keys_still_work_with_a_notice() {
        let (c, n) = parse(
            "domain = \"lab\"\ndns_listen = [\"127.0.0.1:53\"]\nadmin_socket = \"/tmp/a.sock\"\nhealth_interval = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(c.zone.as_str(), "lab");
        assert_eq!(c.dns.listen, vec!["127.0.0.1:53".parse().unwrap()]);
        assert_eq!(c.admin.socket.as_deref(), Some(Path::new("/tmp/a.sock")));
        assert_eq!(c.health.interval, Duration::from_secs(2));
        let keys: Vec<&str> = n.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(
            keys,
            ["domain", "dns_listen", "admin_socket", "health_interval"]
        );
        assert!(n[1].message.contains("[dns] listen"), "{}", n[1]);
    }

    #[test]
    fn validation_names_the_key() {
        let (mut c, _) = parse("[ca]\nleaf_lifetime = \"2y\"\n").unwrap();
        let e = c.validate("conduit.toml").unwrap_err();
        assert!(e.to_string().contains("`ca.leaf_lifetime`"), "{e}");
        c.ca = CaSettings::default();
        c.admin.listen = Some("127.0.0.1:9999".parse().unwrap());
        let e = c.validate("conduit.toml").unwrap_err();
        assert!(e.to_string().contains("without a token"), "{e}");
        c.admin.token = Some(Secret::new("short"));
        let e = c.validate("conduit.toml").unwrap_err();
        assert!(e.to_string().contains("16 characters"), "{e}");
        c.admin.token = Some(Secret::new("0123456789abcdef0123"));
        c.validate("conduit.toml").unwrap();
        assert!(!c.admin_tls(), "plain on loopback by default");
        c.admin.listen = Some("10.8.0.1:9443".parse().unwrap());
        assert!(c.admin_tls(), "TLS off loopback by default");
        c.admin.tls = Some(false);
        let e = c.validate("conduit.toml").unwrap_err();
        assert!(
            e.to_string().contains("`admin.tls`") && e.to_string().contains("in clear"),
            "{e}"
        );
        c.admin.tls = None;
        let shown = c.to_toml().unwrap();
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let (c, _) =
            parse("[proxy]\nallow_upstreams = [\"10.0.0.0/8\", \"not a name!\"]\n").unwrap();
        let e = c.validate("conduit.toml").unwrap_err();
        assert!(e.to_string().contains("proxy.allow_upstreams"), "{e}");
    }

    #[test]
    fn shown_configuration_parses_back() {
        let c = ConduitConfig::default();
        let text = c.to_toml().unwrap();
        let (back, n) = parse(&text).unwrap();
        assert!(n.is_empty());
        assert_eq!(back.proxy.listen, c.proxy.listen);
        assert_eq!(back.health, c.health);
    }

    #[test]
    fn the_original_env_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env.conduit");
        std::fs::write(
            &path,
            "# original\nCONDUIT_DOMAIN=lab\nexport CONDUIT_DNS_PORT=5300\nCONDUIT_UPSTREAM_DNS=\"10.0.0.2\"\nCONDUIT_CADDY_ADMIN=localhost:2019\nCONDUIT_ALLOWED_UPSTREAMS=10.0.0.0/8,gpu.lan\nOTHER=1\n",
        )
        .unwrap();
        let mut c = ConduitConfig::default();
        let n = c.apply_env_file(&path).unwrap();
        assert_eq!(c.zone.as_str(), "lab");
        assert_eq!(c.dns.listen, vec!["127.0.0.1:5300".parse().unwrap()]);
        assert_eq!(c.dns.forwarders, vec!["10.0.0.2:53".parse().unwrap()]);
        assert_eq!(c.proxy.allow_upstreams, ["10.0.0.0/8", "gpu.lan"]);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].key, "CONDUIT_CADDY_ADMIN");
        std::fs::write(&path, "CONDUIT_DNS_PORT=port\n").unwrap();
        let e = c.apply_env_file(&path).unwrap_err();
        assert!(e.to_string().contains("CONDUIT_DNS_PORT"), "{e}");
        assert!(
            ConduitConfig::default()
                .apply_env_file(&dir.path().join("none"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(byte_size::parse("1GiB"), Ok(Some(1 << 30)));
        assert_eq!(byte_size::parse("10 MB"), Ok(Some(10_000_000)));
        assert_eq!(byte_size::parse("none"), Ok(None));
        assert!(
            byte_size::parse("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
        assert!(byte_size::parse("GiB").unwrap_err().contains("not a size"));
    }
}
