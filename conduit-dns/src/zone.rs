//! The zone data: what the registry's records look like as DNS records.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use conduit_registry::{DomainName, Host, Routing, Scheme, ServiceRecord};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::DnsError;
use crate::zone_config::{ZoneConfig, ZoneError};

/// The zone's maps: built once per registry change, read on every query. foldhash is
/// several times faster than SipHash here, and only our own names are inserted (a query
/// only looks up).
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// A set keyed like [`Map`].
pub(crate) type Set<K> = HashSet<K, foldhash::fast::RandomState>;

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
        match soa_with_serial(&self.negative_soa, serial).data {
            RData::SOA(soa) => Self::new(&self.negative_soa.name, soa, self.negative_soa.ttl),
            _ => self.clone(),
        }
    }
}

/// `record` with its serial replaced, if it is a SOA record; any other record as it is.
pub(crate) fn soa_with_serial(record: &Record, serial: u32) -> Record {
    match &record.data {
        RData::SOA(soa) => {
            let mut soa = soa.clone();
            soa.serial = serial;
            Record::from_rdata(record.name.clone(), record.ttl, RData::SOA(soa))
        }
        _ => record.clone(),
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
        for own in &config.gateway_names {
            let fqdn = domain_to_name(own)?;
            for (name, data) in proxied_names(config, &fqdn, true) {
                nodes.entry(name.clone()).or_default();
                for rdata in data {
                    add(&mut nodes, &name, rdata);
                }
            }
        }
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
