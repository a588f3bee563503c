//! # conduit-proxy
//!
//! Conduit's TLS reverse proxy: routes each registered FQDN to its healthy upstreams.
//!
//! This crate currently defines the [`Upstream`] trait, the routing contract; the proxy
//! itself is the subject of its own issue.
//!
//! ```
//! use conduit_proxy::Upstream;
//! use conduit_registry::{DomainName, Endpoint};
//!
//! #[derive(Debug)]
//! struct One(Endpoint);
//! impl Upstream for One {
//!     fn select(&self, _host: &DomainName) -> Option<Endpoint> { Some(self.0.clone()) }
//! }
//! let up = One("10.0.1.50:3000".parse().unwrap());
//! let host: DomainName = "grafana.internal".parse().unwrap();
//! assert_eq!(up.select(&host).map(|e| e.port()), Some(3000));
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;

use conduit_registry::{DomainName, Endpoint};

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
}
