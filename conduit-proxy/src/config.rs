//! What an operator tunes: TLS versions, limits, timeouts, balancing, retries, health.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use conduit_registry::DomainName;

use crate::ssrf::SsrfPolicy;

/// Which TLS versions clients may use; in a configuration file the lowest one, `"1.3"` or
/// `"1.2"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TlsVersions {
    /// TLS 1.3 only (the default).
    #[default]
    #[serde(rename = "1.3")]
    Tls13,
    /// TLS 1.2 and 1.3, for old clients (opt-in).
    #[serde(rename = "1.2")]
    Tls12And13,
}

/// How a request picks among a service's healthy upstreams; in a configuration file
/// `"p2c"` or `"round_robin"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Balance {
    /// Each healthy upstream in turn.
    #[serde(rename = "round_robin")]
    RoundRobin,
    /// Power of two choices: two healthy upstreams at random, the one with fewer requests in
    /// flight wins (the default: long LLM generations make load uneven).
    #[default]
    #[serde(rename = "p2c")]
    LeastOutstanding,
}

/// Limits on what a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest HTTP/1.1 request head (request line + headers) in bytes; larger → 431
    /// (default 64 KiB, at least 8 KiB).
    pub max_header_bytes: usize,
    /// Most headers in one request; more → 431 (default 100).
    pub max_headers: usize,
    /// Largest request body in bytes for routes without their own limit; larger → 413
    /// (default 1 GiB; `None` for no limit).
    pub max_body_bytes: Option<u64>,
    /// Per-route body limits, by the service's domain.
    pub route_body_bytes: HashMap<DomainName, u64>,
    /// Concurrent HTTP/2 streams per connection (default 256).
    pub h2_max_concurrent_streams: u32,
    /// Streams a client may open and reset before the server has accepted them, per
    /// connection, before the connection is closed (rapid reset, CVE-2023-44487; default 20).
    pub h2_max_pending_accept_reset_streams: usize,
    /// Streams the server may reset because of client errors before the connection is closed
    /// (CVE-2024-27316-style floods; default 256).
    pub h2_max_local_error_reset_streams: usize,
    /// Largest HTTP/2 header list in bytes (default 64 KiB).
    pub h2_max_header_list_bytes: u32,
    /// Most client connections at once (default 25,000, lowered to fit the process's file
    /// descriptor limit). At the cap, a connection still in its TLS handshake or idle
    /// between requests makes room for a new one; when none is, the new one is closed.
    pub max_connections: usize,
    /// Most client connections from one address at once (default 1,024).
    pub max_connections_per_client: usize,
    /// Most connections to one upstream at once, busy and idle (default 256): further
    /// requests (HTTP/2 streams included) wait for one of them, so no route can use up
    /// the gateway's descriptors and starve the others.
    pub max_conns_per_upstream: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: Some(1 << 30),
            route_body_bytes: HashMap::new(),
            h2_max_concurrent_streams: 256,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 256,
            h2_max_header_list_bytes: 64 * 1024,
            max_connections: 25_000,
            max_connections_per_client: 1024,
            max_conns_per_upstream: crate::conn::DEFAULT_MAX_CONNS,
        }
    }
}

impl Limits {
    /// The body limit of one route.
    pub fn body_limit(&self, domain: &DomainName) -> Option<u64> {
        self.route_body_bytes
            .get(domain)
            .copied()
            .or(self.max_body_bytes)
    }
}

/// Timeouts. There is no total timeout on a response: a token stream may run for an hour as
/// long as it keeps moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// A client's TLS handshake (default 10 s).
    pub tls_handshake: Duration,
    /// Reading a request head, from the connection's first byte or the previous response
    /// (slowloris; default 10 s).
    pub header_read: Duration,
    /// Connecting to an upstream (default 5 s); an upstream that does not answer in time
    /// counts as a failure and the request may go to another one.
    pub upstream_connect: Duration,
    /// From sending a request to the upstream's response head: the time to the first token
    /// (default 5 min: a model may be loading).
    pub upstream_first_byte: Duration,
    /// Longest silence inside a response or request body, and on a WebSocket
    /// (default 5 min).
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tls_handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            upstream_connect: Duration::from_secs(5),
            upstream_first_byte: Duration::from_secs(300),
            idle: Duration::from_secs(300),
        }
    }
}

/// When a failed request is sent again.
///
/// Only a request that never reached an upstream is retried, on another upstream: the
/// connection could not be opened, or a pooled connection was closed before the request
/// was written. Nothing of it (body included) has been read or sent then, so it goes out
/// intact. A request that reached an upstream is never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Further upstreams tried after the first (default 2; 0 disables retries).
    pub retries: u32,
    /// Also retry methods that are not idempotent (POST, PATCH; default `false`).
    pub non_idempotent: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 2,
            non_idempotent: false,
        }
    }
}

/// Health-check behaviour beyond each service's own [`HealthCheck`](conduit_registry::HealthCheck).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthPolicy {
    /// A new upstream gets no traffic until its first active check passes (default `true`).
    pub start_unhealthy: bool,
    /// Failures on real traffic that are the upstream's count towards the service's
    /// unhealthy threshold (default `true`): connection errors, timeouts, resets by the
    /// upstream, and the statuses in `passive_failure_statuses`. A client's own errors
    /// (an aborted or malformed request body, a cancelled request) never count, nor does a
    /// 5xx that is the application's answer (500, 501).
    pub passive: bool,
    /// The upstream statuses that count as its failure (default 502, 503, 504: a gateway
    /// or server in front of it, or the server itself, saying it cannot serve).
    pub passive_failure_statuses: Vec<u16>,
    /// `Retry-After` seconds sent with a 503 when every upstream is down (default 5).
    pub retry_after_secs: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            start_unhealthy: true,
            passive: true,
            passive_failure_statuses: vec![502, 503, 504],
            retry_after_secs: 5,
        }
    }
}

/// Everything the proxy can be told. Start from [`ProxyConfig::default`] and change fields.
///
/// ```
/// use std::time::Duration;
/// let mut cfg = conduit_proxy::ProxyConfig::default();
/// cfg.timeouts.idle = Duration::from_secs(600);
/// cfg.limits.max_body_bytes = Some(16 << 30); // model uploads
/// assert_eq!(cfg.tls, conduit_proxy::TlsVersions::Tls13);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// TLS versions offered to clients.
    pub tls: TlsVersions,
    /// Request limits.
    pub limits: Limits,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Load balancing.
    pub balance: Balance,
    /// Retries.
    pub retry: RetryPolicy,
    /// Health-check behaviour.
    pub health: HealthPolicy,
    /// Refuse upstreams (at route build and at connect time) that this policy refuses;
    /// `None` (the default) trusts the registry.
    pub ssrf: Option<Arc<SsrfPolicy>>,
    /// Trust for `https://` upstreams; `None` (the default) refuses them with a clear error.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// How long a shutdown waits for requests and streams in flight (default 30 s).
    pub grace_period: Duration,
    /// Idle keep-alive connections kept per upstream and serving thread (default 256), each
    /// reused for up to 90 s; busy and idle together stay within
    /// `limits.max_conns_per_upstream`.
    pub pool_idle_per_upstream: usize,
    /// The HTTPS port the plain-HTTP listener redirects to; `None` = the first HTTPS
    /// listener's port.
    pub redirect_port: Option<u16>,
    /// Protocols a client may upgrade a connection to (default `["websocket"]`); any other
    /// `Upgrade` (such as `h2c`) is not tunnelled: the request goes on as a plain one.
    pub upgrades: Vec<String>,
    /// Clients whose `X-Forwarded-For`, `X-Real-IP` and `Forwarded` are kept (another proxy
    /// in front of this one); from everyone else those headers are replaced.
    pub trusted_proxies: Vec<crate::Cidr>,
    /// `Strict-Transport-Security: max-age=…` on every HTTPS answer; `None` (the default)
    /// sends none (browsers would then refuse plain HTTP for the name for that long).
    pub hsts: Option<Duration>,
    /// Where each request's access record goes when its response ends (an
    /// [`AccessLog`](crate::AccessLog) file); `None` (the default) keeps none.
    pub access_log: Option<Arc<dyn crate::AccessSink>>,
    /// Routing to model servers (services of kind `openai`, `vllm`, `ollama`).
    pub llm: crate::ModelRouting,
    /// Threads that serve client connections (default 0: one per core this process may run
    /// on, at most 16). The first is the runtime [`ProxyServer::run`](crate::ProxyServer::run)
    /// is called on; each other is an OS thread with a runtime of its own. A proxy pinned to
    /// one core serves on the caller's runtime alone.
    pub threads: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            tls: TlsVersions::default(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            balance: Balance::default(),
            retry: RetryPolicy::default(),
            health: HealthPolicy::default(),
            ssrf: None,
            upstream_tls: None,
            grace_period: Duration::from_secs(30),
            pool_idle_per_upstream: 256,
            redirect_port: None,
            hsts: None,
            access_log: None,
            trusted_proxies: Vec::new(),
            upgrades: vec!["websocket".to_owned()],
            llm: crate::ModelRouting::default(),
            threads: 0,
        }
    }
}

impl ProxyConfig {
    /// Checks the values that can be wrong.
    ///
    /// # Errors
    /// [`ProxyError::InvalidSetting`](crate::ProxyError::InvalidSetting) naming the field.
    pub fn validate(&self) -> Result<(), crate::ProxyError> {
        let bad = |key: &'static str, problem: &'static str| {
            Err(crate::ProxyError::InvalidSetting { key, problem })
        };
        if self.limits.max_header_bytes < 8192 {
            return bad("limits.max_header_bytes", "must be at least 8192");
        }
        if self.limits.max_headers == 0 {
            return bad("limits.max_headers", "must be positive");
        }
        if self.limits.h2_max_concurrent_streams == 0 {
            return bad("limits.h2_max_concurrent_streams", "must be positive");
        }
        if self.limits.max_connections == 0 {
            return bad("limits.max_connections", "must be positive");
        }
        if self.limits.max_connections_per_client == 0 {
            return bad("limits.max_connections_per_client", "must be positive");
        }
        if self.limits.max_conns_per_upstream == 0 {
            return bad("limits.max_conns_per_upstream", "must be positive");
        }
        if self.threads > crate::workers::MAX_THREADS {
            return bad("threads", "must be at most 1024");
        }
        let t = &self.timeouts;
        for (name, d) in [
            ("timeouts.tls_handshake", t.tls_handshake),
            ("timeouts.header_read", t.header_read),
            ("timeouts.upstream_connect", t.upstream_connect),
            ("timeouts.upstream_first_byte", t.upstream_first_byte),
            ("timeouts.idle", t.idle),
        ] {
            if d.is_zero() {
                return bad(name, "must be positive");
            }
        }
        self.llm.validate()
    }
}
