//! The sections of `conduit.toml`: `[dns]`, `[proxy]`, `[ca]`, `[monitor]`, `[admin]`
//! (`[health]` is the registry's own `HealthCheck`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use conduit_ca::{CaConfig, KeyAlgorithm};
use conduit_monitor::Thresholds;
use conduit_proxy::{Balance, ProxyConfig, TlsVersions};
use serde::{Deserialize, Serialize};

use super::Secret;
use super::values::byte_size;

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
    /// One JSON line per request in `STATE_DIR/access.log` (client, host, upstream,
    /// method, path, status, bytes, time to first byte, duration), written when the
    /// response ends (default `true`).
    pub access_log: bool,
    /// Rotate `access.log` at this size (default 100 MB; `"unlimited"`: never).
    #[serde(with = "byte_size")]
    pub access_log_max_size: Option<u64>,
    /// Rotated access logs kept, `access.log.1` … (default 5).
    pub access_log_keep: u32,
    /// Threads serving client connections (default 0: one per core the gateway may run
    /// on, at most 16; at most 1024).
    pub threads: usize,
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
            access_log: true,
            access_log_max_size: Some(100_000_000),
            access_log_keep: 5,
            threads: p.threads,
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

/// `[audit]`: signed checkpoints of the sealed chain, and the witnesses they go to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuditSettings {
    /// A checkpoint after this many records (default 1000; 0: only on the interval).
    pub checkpoint_every: u64,
    /// A checkpoint at least this often while records are added (default 10 min).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Witnesses each checkpoint is sent to: other gateways' (or any compatible)
    /// `https://HOST:PORT/v1/audit/witness`; plain `http://` only on loopback.
    pub witnesses: Vec<String>,
    /// The bearer token sent to the witnesses (a `witness` token on theirs:
    /// `conduit token add NAME --witness`); never printed.
    pub witness_token: Option<Secret>,
    /// A root certificate (PEM) the witnesses' TLS certificates chain to, besides this
    /// gateway's own root (gateways sharing an offline root need none).
    pub witness_ca: Option<PathBuf>,
    /// How often the gateway verifies its own sealed chain (every record's hash and link,
    /// and the latest checkpoint) off the request path (default 6 h; at least 1 s).
    #[serde(with = "humantime_serde")]
    pub verify_interval: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(600),
            witnesses: Vec::new(),
            witness_token: None,
            witness_ca: None,
            verify_interval: Duration::from_secs(6 * 3600),
        }
    }
}

/// `[alerts]`: delivery to Alertmanager.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AlertSettings {
    /// Alertmanager base URLs (`http://127.0.0.1:9093`); alerts go to each one's
    /// `/api/v2/alerts`. Empty: alerts stay in the audit log and the events.
    pub alertmanager: Vec<String>,
    /// How often active alerts are sent again (default 1 min; Alertmanager resolves an
    /// alert it has not heard of for a while).
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    /// A served certificate this close to its expiry is an alert (default 24 h: renewal
    /// has failed for days by then).
    #[serde(with = "humantime_serde")]
    pub certificate_expiry_warning: Duration,
    /// A root certificate (PEM) an `https://` Alertmanager's certificate chains to,
    /// besides this gateway's own root.
    pub ca: Option<PathBuf>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            alertmanager: Vec::new(),
            resend_interval: Duration::from_secs(60),
            certificate_expiry_warning: Duration::from_secs(24 * 3600),
            ca: None,
        }
    }
}

/// `[access]`: who may reach what (the peers and grants themselves are in the registry's
/// store: `conduit peer`, `conduit grant`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AccessSettings {
    /// A service no grant names: `open` (reachable by every client, the behaviour before
    /// grants existed) or `deny`.
    pub default: conduit_registry::access::DefaultRule,
    /// Split-horizon DNS: a client gets NXDOMAIN for the names of services it may not reach.
    pub hide_names: bool,
    /// At most one `access_denied` audit record per client per this interval (default
    /// 1 min); the record counts the refusals it stands for.
    #[serde(with = "humantime_serde")]
    pub denied_audit_interval: Duration,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            default: conduit_registry::access::DefaultRule::Open,
            hide_names: false,
            denied_audit_interval: Duration::from_secs(60),
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
    /// A group whose members may use the socket too (mode 0660, that group): operators
    /// without root, each audited by name (the kernel gives the peer's user).
    pub socket_group: Option<String>,
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
