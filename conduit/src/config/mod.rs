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
use std::time::Duration;

use conduit_registry::{DomainName, HealthCheck};
use serde::{Deserialize, Serialize};

mod dashboard;
mod legacy;
mod llm;
mod parts;
mod registry;
mod sections;
mod values;

pub use dashboard::DashboardSettings;
pub use llm::{LlmSettings, LlmWeights};
pub use registry::RegistrySettings;
pub use sections::{
    AccessSettings, AdminSettings, AlertSettings, AuditSettings, CaSettings, DnsSettings,
    MonitorSettings, MonitorSource, ProxySettings,
};
use values::parse_error;
pub use values::{InvalidValue, parse_forwarders, parse_port, with_port};

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
    pub(crate) fn invalid(origin: &str, key: &str, problem: impl Into<String>) -> Self {
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
    /// `[audit]`.
    pub audit: AuditSettings,
    /// `[alerts]`.
    pub alerts: AlertSettings,
    /// `[access]`.
    pub access: AccessSettings,
    /// `[llm]`.
    pub llm: LlmSettings,
    /// `[dashboard]`.
    pub dashboard: DashboardSettings,
    /// `[registry]`.
    pub registry: RegistrySettings,
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
            audit: AuditSettings::default(),
            alerts: AlertSettings::default(),
            access: AccessSettings::default(),
            llm: LlmSettings::default(),
            dashboard: DashboardSettings::default(),
            registry: RegistrySettings::default(),
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
        self.dashboard
            .validate(&self.zone, origin)
            .map_err(|e| *e)?;
        self.registry.validate(origin).map_err(|e| *e)?;
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
        if self.audit.verify_interval < Duration::from_secs(1) {
            return bad("audit.verify_interval", "must be at least 1s".to_owned());
        }
        if self.audit.checkpoint_interval < Duration::from_secs(1) {
            return bad(
                "audit.checkpoint_interval",
                "must be at least 1s".to_owned(),
            );
        }
        for a in &self.alerts.alertmanager {
            if let Err(e) = crate::gateway::Target::parse(a) {
                return bad("alerts.alertmanager", e.to_string());
            }
        }
        if self.alerts.resend_interval < Duration::from_secs(1) {
            return bad("alerts.resend_interval", "must be at least 1s".to_owned());
        }
        for w in &self.audit.witnesses {
            if let Err(e) = crate::gateway::WitnessUrl::parse(w) {
                return bad("audit.witnesses", e.to_string());
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

    /// The configuration as TOML, secrets redacted (`conduit config show`).
    ///
    /// # Errors
    /// Only if a value cannot be written as TOML (none today).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

#[cfg(test)]
mod tests;
