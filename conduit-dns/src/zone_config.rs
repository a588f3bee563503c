//! What the DNS server is configured to serve: the zones, the addresses it gives out, the
//! TTLs and ports, checked before any socket is bound.

use std::collections::HashSet;
use std::net::IpAddr;

use conduit_registry::DomainName;

/// What the server serves and how: the zones, the addresses it gives out, the TTLs.
///
/// Built with [`ZoneConfig::new`] and the `with_*` methods; checked by
/// [`ZoneConfig::validate`] before any socket is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    pub(crate) zones: Vec<DomainName>,
    pub(crate) reverse_zones: Vec<DomainName>,
    pub(crate) advertise: Vec<IpAddr>,
    pub(crate) ttl: u32,
    pub(crate) negative_ttl: u32,
    pub(crate) https_port: u16,
    pub(crate) http_port: u16,
    pub(crate) nameserver: Option<DomainName>,
    /// Names the gateway serves itself (its dashboard), answered like a proxied service.
    pub(crate) gateway_names: Vec<DomainName>,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self::new(vec![DomainName::internal()])
    }
}

impl ZoneConfig {
    /// Record TTL when none is configured (seconds).
    pub const DEFAULT_TTL: u32 = 30;

    /// A configuration serving `zones` with the defaults: TTL and negative TTL 30 s,
    /// HTTPS port 443 in SRV records, no advertised address, no reverse zone.
    pub fn new(zones: Vec<DomainName>) -> Self {
        Self {
            zones,
            reverse_zones: Vec::new(),
            advertise: Vec::new(),
            ttl: Self::DEFAULT_TTL,
            negative_ttl: Self::DEFAULT_TTL,
            https_port: 443,
            http_port: 80,
            nameserver: None,
            gateway_names: Vec::new(),
        }
    }

    /// The gateway's address(es): what proxied names answer (A for IPv4, AAAA for IPv6).
    pub fn with_advertise(mut self, addrs: Vec<IpAddr>) -> Self {
        self.advertise = addrs;
        self
    }

    /// Reverse zones (`10.in-addr.arpa`, `8.b.d.0.1.0.0.2.ip6.arpa`) answered with PTR records
    /// for the advertised addresses and direct upstreams inside them.
    pub fn with_reverse_zones(mut self, zones: Vec<DomainName>) -> Self {
        self.reverse_zones = zones;
        self
    }

    /// TTL of positive answers, in seconds.
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// TTL of negative answers (the SOA minimum), in seconds.
    pub fn with_negative_ttl(mut self, ttl: u32) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The port SRV `_https._tcp` records give for proxied services (the proxy's port).
    pub fn with_https_port(mut self, port: u16) -> Self {
        self.https_port = port;
        self
    }

    /// The port SRV `_http._tcp` records give for proxied services without TLS (the
    /// proxy's plain-HTTP port; default 80).
    pub fn with_http_port(mut self, port: u16) -> Self {
        self.http_port = port;
        self
    }

    /// The name server's own name (default `ns.<zone>` in each zone), answering the
    /// advertised addresses.
    pub fn with_nameserver(mut self, name: DomainName) -> Self {
        self.nameserver = Some(name);
        self
    }

    /// A name the gateway's proxy answers itself (its dashboard, `conduit.internal`):
    /// served like a proxied TLS service (the advertised addresses, `_https._tcp` SRV).
    pub fn with_gateway_name(mut self, name: DomainName) -> Self {
        if !self.gateway_names.contains(&name) {
            self.gateway_names.push(name);
        }
        self
    }

    /// The forward zones served.
    pub fn zones(&self) -> &[DomainName] {
        &self.zones
    }

    /// The advertised addresses.
    pub fn advertise(&self) -> &[IpAddr] {
        &self.advertise
    }

    /// Checks the configuration; the error names the problem.
    ///
    /// # Errors
    /// The first [`ZoneError`] found.
    pub fn validate(&self) -> Result<(), ZoneError> {
        if self.zones.is_empty() {
            return Err(ZoneError::NoZone);
        }
        let mut seen = HashSet::new();
        for zone in self.zones.iter().chain(&self.reverse_zones) {
            if !seen.insert(zone.as_str()) {
                return Err(ZoneError::Duplicate(zone.clone()));
            }
        }
        for zone in &self.reverse_zones {
            let s = zone.as_str();
            if !(s.ends_with("in-addr.arpa") || s.ends_with("ip6.arpa")) {
                return Err(ZoneError::NotReverse(zone.clone()));
            }
        }
        if let Some(zone) = self.zones.iter().find(|z| z.as_str().ends_with("arpa")) {
            return Err(ZoneError::ReverseAsForward(zone.clone()));
        }
        if self.ttl > 86_400 * 7 || self.negative_ttl > 86_400 {
            return Err(ZoneError::Ttl);
        }
        if let Some(ns) = &self.nameserver
            && !self.zones.iter().any(|z| ns.is_within(z))
        {
            return Err(ZoneError::NameServerOutside(ns.clone()));
        }
        if let Some(name) = self
            .gateway_names
            .iter()
            .find(|n| !self.zones.iter().any(|z| n.is_within(z) && *n != z))
        {
            return Err(ZoneError::GatewayNameOutside(name.clone()));
        }
        if let Some(addr) = self
            .advertise
            .iter()
            .find(|a| a.is_unspecified() || a.is_multicast())
        {
            return Err(ZoneError::Advertise(*addr));
        }
        Ok(())
    }
}

/// What is wrong with a zone configuration (the caller's to fix; a retry does not help).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    /// No zone at all.
    #[error("no zone configured")]
    NoZone,
    /// One zone twice.
    #[error("zone {0} is configured twice")]
    Duplicate(DomainName),
    /// A reverse zone outside `in-addr.arpa` and `ip6.arpa`.
    #[error("reverse zone {0} is not under in-addr.arpa or ip6.arpa")]
    NotReverse(DomainName),
    /// A reverse zone given as a forward one.
    #[error("zone {0} is a reverse zone; configure it as one (with_reverse_zones)")]
    ReverseAsForward(DomainName),
    /// A TTL out of range.
    #[error("TTL above a week (or negative TTL above a day)")]
    Ttl,
    /// The name server's name is in none of the zones.
    #[error("name server {0} is outside every configured zone")]
    NameServerOutside(DomainName),
    /// A gateway name (its dashboard's) below none of the zones.
    #[error("the gateway's own name {0} is not inside any configured zone")]
    GatewayNameOutside(DomainName),
    /// An advertised address clients cannot use.
    #[error("advertised address {0} cannot be given to clients")]
    Advertise(IpAddr),
    /// A name the DNS library cannot represent.
    #[error("{name} is not a usable DNS name: {source}")]
    Name {
        /// The name.
        name: String,
        /// The DNS library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
