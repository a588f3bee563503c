//! The zone data: what the registry's records look like as DNS records.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use conduit_registry::{DomainName, Host, Routing, Scheme, ServiceRecord};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::DnsError;

/// The zone's maps: built once per registry change, read on every query. foldhash is
/// several times faster than SipHash here, and only our own names are inserted (a query
/// only looks up).
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// A set keyed like [`Map`].
pub(crate) type Set<K> = HashSet<K, foldhash::fast::RandomState>;

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

/// One zone we are authoritative for.
#[derive(Debug, Clone)]
pub(crate) struct ZoneApex {
    /// Lower-case wire form of the apex, for suffix matching on raw packets.
    pub(crate) wire: Vec<u8>,
    /// The SOA record with the negative TTL (authority section of negative answers).
    pub(crate) negative_soa: Record,
    /// Wire form of the negative SOA's type, class, TTL, RDLENGTH and RDATA (names
    /// uncompressed), for negative answers built without hickory.
    pub(crate) negative_soa_tail: Vec<u8>,
}

impl ZoneApex {
    fn new(apex: &Name, soa: SOA, ttl: u32) -> Self {
        Self {
            wire: name_wire(apex),
            negative_soa_tail: soa_tail(&soa, ttl),
            negative_soa: Record::from_rdata(apex.clone(), ttl, RData::SOA(soa)),
        }
    }

    /// The same zone at another serial.
    pub(crate) fn with_serial(&self, serial: u32) -> Self {
        match &self.negative_soa.data {
            RData::SOA(soa) => {
                let mut soa = soa.clone();
                soa.serial = serial;
                Self::new(&self.negative_soa.name, soa, self.negative_soa.ttl)
            }
            _ => self.clone(),
        }
    }
}

/// The records of every name, built from the registry's active records. Cloning is
/// cheap: the record lists are shared.
#[derive(Debug, Default, Clone)]
pub(crate) struct Records {
    pub(crate) zones: Vec<ZoneApex>,
    /// Lower-case owner name → its records; an empty list marks an empty non-terminal.
    pub(crate) nodes: Map<Name, Arc<[Record]>>,
    pub(crate) serial: u32,
}

pub(crate) fn domain_to_name(domain: &DomainName) -> Result<Name, DnsError> {
    let mut name = Name::from_ascii(domain.as_str())
        .map_err(|e| ZoneError::Name {
            name: domain.to_string(),
            source: Box::new(e),
        })?
        .to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}

pub(crate) fn name_wire(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

fn reverse_name(ip: IpAddr) -> Name {
    // Writing the labels by hand keeps this infallible: every label is a hex digit or a
    // decimal octet.
    let mut labels: Vec<String> = match ip {
        IpAddr::V4(v4) => v4.octets().iter().rev().map(u8::to_string).collect(),
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .rev()
            .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
            .collect(),
    };
    labels.push(if ip.is_ipv4() { "in-addr" } else { "ip6" }.into());
    labels.push("arpa".into());
    let mut name = Name::from_labels(labels.iter().map(String::as_bytes)).unwrap_or_default();
    name.set_fqdn(true);
    name
}

impl Records {
    /// Builds the records from the active services. Services outside every zone are
    /// skipped (with a debug log); nothing here fails on registry content.
    pub(crate) fn build(
        config: &ZoneConfig,
        services: &[Arc<ServiceRecord>],
        serial: u32,
    ) -> Result<Self, DnsError> {
        let ttl = config.ttl;
        let neg = config.negative_ttl;
        let mut nodes: HashMap<Name, Vec<Record>> = HashMap::new();
        let mut zones = Vec::new();
        let add = |nodes: &mut HashMap<Name, Vec<Record>>, name: &Name, rdata: RData| {
            let list = nodes.entry(name.clone()).or_default();
            let record = Record::from_rdata(name.clone(), ttl, rdata);
            if !list.contains(&record) {
                list.push(record);
            }
        };
        let address = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };

        let forward: Vec<Name> = config
            .zones
            .iter()
            .map(domain_to_name)
            .collect::<Result<_, _>>()?;
        let reverse: Vec<Name> = config
            .reverse_zones
            .iter()
            .map(domain_to_name)
            .collect::<Result<_, _>>()?;
        let configured_ns = config.nameserver.as_ref().map(domain_to_name).transpose()?;
        for apex in forward.iter().chain(&reverse) {
            let ns_name = match &configured_ns {
                Some(ns) => ns.clone(),
                None => {
                    let base = if reverse.contains(apex) {
                        forward.first().unwrap_or(apex)
                    } else {
                        apex
                    };
                    base.prepend_label("ns").map_err(|e| ZoneError::Name {
                        name: format!("ns.{base}"),
                        source: Box::new(e),
                    })?
                }
            };
            let hostmaster = apex
                .prepend_label("hostmaster")
                .map_err(|e| ZoneError::Name {
                    name: format!("hostmaster.{apex}"),
                    source: Box::new(e),
                })?;
            let soa = SOA::new(ns_name.clone(), hostmaster, serial, 3600, 600, 86_400, neg);
            let soa_record = Record::from_rdata(apex.clone(), ttl, RData::SOA(soa.clone()));
            nodes.entry(apex.clone()).or_default().push(soa_record);
            add(&mut nodes, apex, RData::NS(NS(ns_name.clone())));
            if forward.iter().any(|z| z.zone_of(&ns_name)) {
                for ip in &config.advertise {
                    add(&mut nodes, &ns_name, address(*ip));
                }
            }
            zones.push(ZoneApex::new(apex, soa, ttl.min(neg)));
        }

        let in_forward = |name: &Name| forward.iter().any(|z| z.zone_of(name));
        let in_reverse = |name: &Name| reverse.iter().any(|z| z.zone_of(name));
        for service in services.iter().filter(|s| s.is_active()) {
            let Ok(fqdn) = domain_to_name(service.domain()) else {
                continue;
            };
            if !in_forward(&fqdn) {
                tracing::debug!(service = %service.name(), domain = %service.domain(), "outside every configured zone; not served");
                continue;
            }
            if nodes.get(&fqdn).is_some_and(|r| !r.is_empty()) {
                tracing::warn!(service = %service.name(), domain = %service.domain(), "name also used by the zone itself; the service's records are added to it");
            }
            nodes.entry(fqdn.clone()).or_default();
            match service.routing() {
                Routing::Proxied => {
                    for (name, data) in proxied_names(config, &fqdn, service.tls()) {
                        nodes.entry(name.clone()).or_default();
                        for rdata in data {
                            add(&mut nodes, &name, rdata);
                        }
                    }
                }
                Routing::Direct | _ => {
                    for endpoint in service.endpoints() {
                        match endpoint.host() {
                            Host::Ip(ip) => {
                                add(&mut nodes, &fqdn, address(*ip));
                                let rev = reverse_name(*ip);
                                if in_reverse(&rev) {
                                    add(&mut nodes, &rev, RData::PTR(PTR(fqdn.clone())));
                                }
                            }
                            Host::Name(host) => {
                                if let Ok(target) = domain_to_name(host)
                                    && target != fqdn
                                    && nodes.get(&fqdn).is_none_or(Vec::is_empty)
                                {
                                    add(&mut nodes, &fqdn, RData::CNAME(CNAME(target)));
                                }
                            }
                            _ => {}
                        }
                        let label: &[u8] = match endpoint.scheme() {
                            Scheme::Https => b"_https",
                            Scheme::Http | _ => b"_http",
                        };
                        if let Ok(srv_name) =
                            Name::from_labels([label, b"_tcp"]).and_then(|n| n.append_domain(&fqdn))
                        {
                            add(
                                &mut nodes,
                                &srv_name,
                                RData::SRV(SRV::new(0, 0, endpoint.port(), fqdn.clone())),
                            );
                        }
                    }
                    // A CNAME cannot share its name with other data (RFC 1034 §3.6.2).
                    if let Some(list) = nodes.get_mut(&fqdn)
                        && list.iter().any(|r| r.record_type() == RecordType::CNAME)
                        && list.iter().any(|r| r.record_type() != RecordType::CNAME)
                    {
                        list.retain(|r| r.record_type() != RecordType::CNAME);
                    }
                }
            }
        }
        for ip in &config.advertise {
            let rev = reverse_name(*ip);
            if in_reverse(&rev)
                && let Some(ns) = nodes
                    .get(reverse.iter().find(|z| z.zone_of(&rev)).unwrap_or(&rev))
                    .and_then(|r| {
                        r.iter().find_map(|r| match &r.data {
                            RData::NS(NS(n)) => Some(n.clone()),
                            _ => None,
                        })
                    })
            {
                add(&mut nodes, &rev, RData::PTR(PTR(ns)));
            }
        }

        // Empty non-terminals: every ancestor of a name, up to its zone's apex, exists.
        let apexes: Vec<Name> = forward.iter().chain(&reverse).cloned().collect();
        let names: Vec<Name> = nodes.keys().cloned().collect();
        for name in names {
            let Some(apex) = apexes
                .iter()
                .filter(|z| z.zone_of(&name))
                .max_by_key(|z| z.num_labels())
            else {
                continue;
            };
            let mut parent = name.base_name();
            while parent.num_labels() > apex.num_labels() {
                nodes.entry(parent.clone()).or_default();
                parent = parent.base_name();
            }
        }
        // Longest apex first, so that the first suffix match is the closest enclosing zone.
        zones.sort_by_key(|z| std::cmp::Reverse(z.wire.len()));
        Ok(Self {
            zones,
            nodes: nodes.into_iter().map(|(k, v)| (k, v.into())).collect(),
            serial,
        })
    }
}

/// The names a proxied service at `fqdn` owns and their data: the name itself (the
/// advertised addresses), `_tcp` under it (an empty non-terminal) and the SRV record
/// giving the proxy's port (`_https._tcp`, or `_http._tcp` without TLS).
pub(crate) fn proxied_names(
    config: &ZoneConfig,
    fqdn: &Name,
    tls: bool,
) -> Vec<(Name, Vec<RData>)> {
    let mut out = vec![(
        fqdn.clone(),
        config
            .advertise
            .iter()
            .map(|ip| match *ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            })
            .collect(),
    )];
    let (label, port): (&[u8], u16) = if tls {
        (b"_https", config.https_port)
    } else {
        (b"_http", config.http_port)
    };
    if let Ok(tcp) = Name::from_labels([&b"_tcp"[..]]).and_then(|n| n.append_domain(fqdn))
        && let Ok(srv_name) = Name::from_labels([label]).and_then(|n| n.append_domain(&tcp))
    {
        out.push((tcp, Vec::new()));
        out.push((
            srv_name,
            vec![RData::SRV(SRV::new(0, 0, port, fqdn.clone()))],
        ));
    }
    out
}

/// TYPE, CLASS, TTL, RDLENGTH and RDATA of a SOA record, names written in full.
fn soa_tail(soa: &SOA, ttl: u32) -> Vec<u8> {
    let mut rdata = name_wire(&soa.mname);
    rdata.extend(name_wire(&soa.rname));
    for v in [
        soa.serial,
        soa.refresh as u32,
        soa.retry as u32,
        soa.expire as u32,
        soa.minimum,
    ] {
        rdata.extend(v.to_be_bytes());
    }
    let mut out = Vec::with_capacity(rdata.len() + 10);
    out.extend(u16::from(RecordType::SOA).to_be_bytes());
    out.extend(1u16.to_be_bytes());
    out.extend(ttl.to_be_bytes());
    out.extend((rdata.len() as u16).to_be_bytes());
    out.extend(rdata);
    out
}
