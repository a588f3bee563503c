//! # conduit-dns
//!
//! Conduit's authoritative internal DNS: every active service in the registry answers at its
//! FQDN (`grafana.internal`), with the gateway's address for proxied services and the
//! upstream's own address for direct ones (`--no-proxy`), live: a registration is answered
//! as soon as the zone is rebuilt (milliseconds), with a higher SOA serial.
//!
//! - [`DnsServer`]: UDP (batched `recvmmsg`/`sendmmsg`) and TCP on any number of addresses,
//!   built with [`DnsServer::builder`] and run with [`DnsServer::run`] until a shutdown
//!   future completes.
//! - [`Authority`]: the packet path on its own, bytes in, bytes out, for embedding and fuzzing.
//! - [`ZoneConfig`]: zones (default `internal`), reverse zones, advertised addresses, TTLs.
//! - [`Resolver`]: what a name answers, without the wire format.
//!
//! Semantics (as NSD and Knot answer): authoritative (AA) in the configured zones; NXDOMAIN
//! for names that do not exist, NODATA (NOERROR, no answer, the SOA in the authority section)
//! for a name without the asked type, empty non-terminals included; negative TTL from the SOA
//! minimum; SOA and NS at each apex; SRV `_https._tcp.<name>` with the proxy's port; PTR in
//! configured reverse zones; case-insensitive matching with the question's case echoed;
//! EDNS(0) (payload capped at 1,232 bytes, DO echoed, BADVERS for versions above 0); TC when
//! a UDP answer does not fit; FORMERR for malformed queries, NOTIMP for other opcodes;
//! REFUSED outside the zones unless forwarders are configured. Zone transfers are refused.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use std::sync::Arc;
//! use conduit_dns::{Answer, Authority, Disposition, QueryType, Resolver, Transport, ZoneConfig};
//! use conduit_registry::{DomainName, Endpoint, ServiceName, ServiceRecord};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gateway = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
//! let config = ZoneConfig::default().with_advertise(vec![gateway]);
//! let grafana = ServiceRecord::new(ServiceName::new("grafana")?, "10.0.1.50:3000".parse::<Endpoint>()?)
//!     .in_zone(&DomainName::internal())?;
//! let authority = Authority::build(&config, &[Arc::new(grafana)], 1, false)?;
//!
//! let name: DomainName = "grafana.internal".parse()?;
//! assert_eq!(authority.resolve(&name, QueryType::A), Answer::Addresses(vec![gateway]));
//! assert_eq!(authority.resolve(&name, QueryType::Aaaa), Answer::NoData);
//!
//! // The same on the wire: a query for GRAFANA.internal A.
//! let mut query = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
//! query.extend_from_slice(b"\x07GRAFANA\x08internal\x00\x00\x01\x00\x01");
//! let mut out = Vec::new();
//! assert_eq!(authority.respond(&query, Transport::Udp, &mut out), Disposition::Reply);
//! assert_eq!(&out[..2], &[0x12, 0x34]); // the ID
//! assert_eq!(out[2] & 0x04, 0x04); // authoritative
//! assert_eq!(&out[13..20], b"GRAFANA"); // the question's case, echoed
//! assert_eq!(&out[out.len() - 4..], &[10, 0, 0, 1]); // the gateway's address
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;
use std::net::IpAddr;

use conduit_registry::{DomainName, RegistryError};

/// A zone swapped in after a registry change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZoneReload {
    /// Its SOA serial.
    pub serial: u32,
    /// How many names it has (owner names, empty non-terminals included).
    pub names: usize,
}

mod authority;
mod bind;
mod follow;
mod forward;
mod patch;
mod precomputed;
mod server;
mod shared;
mod stats;
mod tcp;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod udp;
mod wire;
mod zone;
mod zone_config;

pub use authority::{Authority, ZoneRecord};
pub use forward::Forwarder;
pub use server::{DnsHandle, DnsServer, DnsServerBuilder};
pub use stats::DnsStats;
pub use tcp::TcpSettings;
pub use wire::{Disposition, Transport};
pub use zone_config::{ZoneConfig, ZoneError};

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
    /// A UDP serving thread could not be started.
    #[error("cannot start a DNS thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The zone configuration is invalid.
    #[error("invalid DNS configuration: {0}")]
    Zone(#[from] ZoneError),
    /// A server setting is out of range (the caller's to fix).
    #[error("invalid DNS configuration: {key} {problem}")]
    InvalidSetting {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// No UDP and TCP port pair was free on the address (port 0 asked for).
    #[error("no port free for both UDP and TCP on {addr}")]
    NoFreePort {
        /// The address.
        addr: std::net::SocketAddr,
    },
    /// The registry could not be read.
    #[error("cannot read the registry: {0}")]
    Registry(#[source] RegistryError),
}
