//! # conduit-dns
//!
//! Conduit's authoritative internal DNS: every active service in the registry answers at its
//! FQDN (`grafana.internal`), with the gateway's address for proxied services and the
//! upstream's own address for direct ones.
//!
//! This crate currently defines the [`Resolver`] trait, the contract between the registry
//! and a DNS server; the server itself is the subject of its own issue.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use conduit_dns::{Answer, QueryType, Resolver};
//! use conduit_registry::DomainName;
//!
//! #[derive(Debug)]
//! struct Fixed;
//! impl Resolver for Fixed {
//!     fn resolve(&self, name: &DomainName, qtype: QueryType) -> Answer {
//!         match (name.as_str(), qtype) {
//!             ("grafana.internal", QueryType::A) => Answer::Addresses(vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]),
//!             ("grafana.internal", _) => Answer::NoData,
//!             _ => Answer::NxDomain,
//!         }
//!     }
//! }
//! let name: DomainName = "grafana.internal".parse().unwrap();
//! assert_eq!(Fixed.resolve(&name, QueryType::Aaaa), Answer::NoData);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;
use std::net::IpAddr;

use conduit_registry::DomainName;

/// The record types a registry-driven zone answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueryType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
}

/// What a resolver knows about a name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// The name has records of that type.
    Addresses(Vec<IpAddr>),
    /// The name exists but has no record of that type (NOERROR, empty answer).
    NoData,
    /// The name does not exist in a zone we serve.
    NxDomain,
    /// The name is outside every zone we serve.
    Refused,
}

/// Answers names from the registry's current state.
pub trait Resolver: Send + Sync + fmt::Debug {
    /// The answer for `name` and `qtype`.
    fn resolve(&self, name: &DomainName, qtype: QueryType) -> Answer;
}

/// Errors of the DNS subsystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}
