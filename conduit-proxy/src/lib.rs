//! # conduit-proxy
//!
//! Conduit's TLS reverse proxy for LLM traffic: every registered service's domain is routed
//! to its healthy upstreams, token streams pass through unbuffered, and routes and
//! certificates change without a restart.
//!
//! * [`ProxyServer`]: HTTPS listeners (TLS 1.3, 1.2 opt-in; ALPN h2 and http/1.1) with
//!   certificates from any `rustls::server::ResolvesServerCert` (conduit-ca's
//!   `CertResolver` swaps them live), an optional plain-HTTP listener that redirects, and
//!   routes from a [`Registry`](conduit_registry::Registry)'s change stream.
//! * Routing by Host (and SNI): an unknown host gets 404, a host on a connection made for
//!   another name 421, a service whose upstreams are all down 503 with `Retry-After`.
//! * Several upstreams per service: power-of-two-choices least-outstanding (default) or
//!   round robin; pooled keep-alive connections; `https://` upstreams with a configured trust.
//! * Health: active checks on each service's path, passive failure counting, new upstreams
//!   unhealthy until their first check passes; every transition is a [`HealthEvent`].
//! * Streaming: SSE, NDJSON and chunked bodies are passed frame by frame; no total timeout,
//!   only idle timeouts; a client that goes away cancels the upstream request; WebSocket
//!   upgrades are joined both ways; request bodies are streamed with a per-route limit.
//! * Limits: header size and count, body size, header read timeout (slowloris), HTTP/2
//!   concurrent streams and reset floods (rapid reset).
//! * [`SsrfPolicy`]: refuses metadata, link-local and (unless allowed) loopback upstreams.
//! * [`ProxyHandle`]: counters and a latency histogram as Prometheus text, health events,
//!   upstream states; it also implements the [`Upstream`] trait.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use conduit_proxy::{ProxyConfig, ProxyServer, Upstream};
//! use conduit_registry::{InMemoryRegistry, Registry, ServiceRecord};
//!
//! let registry = InMemoryRegistry::new();
//! registry.register(ServiceRecord::new("grafana".parse()?, "10.0.1.50:3000".parse()?)).await?;
//! let mut config = ProxyConfig::default();
//! config.health.start_unhealthy = false; // route at once, before the first check
//! let server = ProxyServer::builder()
//!     .registry(Arc::new(registry))
//!     .listen_http_redirect("127.0.0.1:0".parse()?)
//!     .config(config)
//!     .bind()
//!     .await?;
//! let handle = server.handle();
//! assert_eq!(handle.routes()[0].as_str(), "grafana.internal");
//! let picked = handle.select(&"grafana.internal".parse()?).map(|e| e.port());
//! assert_eq!(picked, Some(3000));
//! // `server.run(shutdown_signal).await?` serves until the signal, then drains.
//! # drop(server); Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;
use std::net::SocketAddr;

use conduit_registry::{DomainName, Endpoint, RegistryError};

mod access;
mod access_json;
mod admission;
mod config;
mod conn;
mod crypto;
mod failure;
mod forward;
mod handle;
mod headers;
mod health;
mod listener;
mod llm;
mod local;
mod metrics;
mod policy;
mod pool;
mod published;
mod request_body;
mod response_body;
mod routes;
mod server;
mod service;
mod shared;
mod ssrf;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod tls;
mod tunnel;
mod upgrade;
mod workers;

pub use access::{AccessLog, AccessLogOptions, AccessRecord, AccessSink};
pub use config::{Balance, HealthPolicy, Limits, ProxyConfig, RetryPolicy, Timeouts, TlsVersions};
pub use failure::{FailureSide, UpstreamError};
pub use handle::ProxyHandle;
pub use llm::{
    ModelRouting, ModelStatus, ModelStrategy, RouteExplanation, ScoreWeights, UpstreamModels,
    UpstreamScore,
};
pub use local::{LocalBody, LocalClient, LocalFuture, LocalSite, discard_body};
pub use metrics::{LATENCY_BUCKETS, ProxyStats};
pub use policy::{AccessControl, AccessDenied, ClientAuth, ClientIdentity, IdentifyClient};
pub use published::Document;
pub use response_body::ResponseBody;
pub use routes::{CheckSource, HealthEvent, UpstreamStatus};
pub use server::{ProxyServer, ProxyServerBuilder};
pub use service::ProxyService;
pub use ssrf::{Cidr, CidrError, SsrfPolicy};

/// Picks the upstream for a request's host. Called on the hot path: no I/O, no await.
pub trait Upstream: Send + Sync + fmt::Debug {
    /// A healthy upstream for `host`, or `None` when there is no route or none is healthy.
    fn select(&self, host: &DomainName) -> Option<Endpoint>;
}

/// Errors of the proxy subsystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No route for the request's host.
    #[error("no route for host {host}")]
    NoRoute {
        /// The host.
        host: String,
    },
    /// A setting of [`ProxyConfig`] is out of range (the caller's to fix).
    #[error("invalid proxy configuration: {key} {problem}")]
    InvalidSetting {
        /// The setting (`limits.max_header_bytes`).
        key: &'static str,
        /// What is wrong (`must be positive`).
        problem: &'static str,
    },
    /// The server was built without something it needs (the caller's to fix).
    #[error("the proxy needs {what}")]
    Missing {
        /// What (`a registry`).
        what: &'static str,
    },
    /// An address or network could not be read.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The registry could not be read.
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    /// TLS could not be set up (the TLS library's error is the source).
    #[error("TLS setup: {0}")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The SSRF policy refuses an upstream.
    #[error("upstream {upstream} refused: {reason}")]
    Forbidden {
        /// The upstream address or name.
        upstream: String,
        /// Why.
        reason: String,
    },
}

/// For fuzzing and property tests only: not part of the API.
#[doc(hidden)]
pub mod internal {
    /// Feeds `bytes` to the proxy as one client connection (HTTP/1.1, or HTTP/2 when `h2`)
    /// and returns its answer. Builds a one-thread runtime; never panics.
    pub fn fuzz_request(bytes: &[u8], h2: bool) -> Vec<u8> {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return Vec::new();
        };
        rt.block_on(crate::server::serve_bytes(bytes, h2))
    }

    /// Parses a Host header value the way the proxy does, and looks it up in a table of
    /// one route; never panics.
    pub fn fuzz_host(value: &[u8]) -> Option<String> {
        let v = http::HeaderValue::from_bytes(value).ok()?;
        let mut req = http::Request::new(());
        req.headers_mut().insert(http::header::HOST, v);
        let host = crate::headers::request_host(&req)?.to_owned();
        let _ = crate::routes::fuzz_lookup(&host);
        Some(host)
    }
}
