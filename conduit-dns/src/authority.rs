//! The packet path: a query's bytes in, the response's bytes out.
//!
//! [`Authority::respond`] is the one place DNS semantics live. Answers for the names and
//! types that exist are computed once per registry change by that same code and kept as
//! wire bytes ([`Authority`] patches the ID, the RD/CD bits, the question's case and the DO
//! bit into a copy); a name that does not exist gets a negative answer assembled from a
//! per-zone template. Everything else (other types, EDNS edge cases, truncation, errors)
//! goes through hickory-proto's message model.

use std::net::IpAddr;
use std::sync::Arc;

use conduit_registry::{DomainName, ServiceRecord};
use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::precomputed::Answers;
use crate::wire::{
    AA, CD, CLASS_IN, ClientEdns, Disposition, QR, Question, RD, TYPE_OPT, Transport, error_header,
    limit, name_from_wire, patch, read_query,
};
use crate::zone::{Records, ZoneApex};
use crate::zone_config::ZoneConfig;
use crate::{Answer, QueryType, Resolver};

/// One record of the zone as served.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZoneRecord {
    /// The owner name, fully qualified.
    pub name: String,
    /// Time to live, seconds.
    pub ttl: u32,
    /// The record type (`A`, `SRV`, …).
    pub rtype: String,
    /// The data in presentation format.
    pub data: String,
}

/// The zones' data and every precomputed answer: one immutable value per registry state.
///
/// Build one with [`Authority::build`]; the server swaps in a new one on every registry
/// change. [`Authority::respond`] is the whole packet path and never panics on input.
#[derive(Debug)]
pub struct Authority {
    records: Records,
    answers: Answers,
    forwarding: bool,
    /// The active services this state was built from (what the next state is compared
    /// with).
    services: Vec<Arc<ServiceRecord>>,
    /// Whether this state was patched from the previous one (rather than built).
    patched: bool,
    /// The configuration it was built with (a state built with another is not reused).
    config: ZoneConfig,
    /// Each service's domain (lower-case wire form) and its name: whose a queried name is
    /// when names are hidden per client. Built at the first such query, so that a state
    /// served without hidden names never pays for it.
    owners: std::sync::OnceLock<hide::Owners>,
}

mod build;
mod hide;

impl Authority {
    /// Largest UDP response we send, whatever the client offers (the DNS flag day 2020
    /// value, which avoids IP fragmentation).
    pub const MAX_UDP_PAYLOAD: u16 = crate::wire::MAX_UDP_PAYLOAD;

    /// Whether [`rebuild`](Self::rebuild) patched this state from the previous one (only
    /// the names a change touched were computed) rather than building the zone again.
    pub fn was_patched(&self) -> bool {
        self.patched
    }

    /// The SOA serial of this state.
    pub fn serial(&self) -> u32 {
        self.records.serial
    }

    /// Number of names (owner names, including empty non-terminals) in the zones.
    pub fn name_count(&self) -> usize {
        self.records.nodes.len()
    }

    /// Every record, in presentation format, sorted (for listings and diagnostics).
    pub fn records(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .records
            .nodes
            .values()
            .flat_map(|r| r.iter())
            .map(ToString::to_string)
            .collect();
        out.sort();
        out
    }

    /// Every record, structured, sorted by name and type (what the admin API shows).
    pub fn record_entries(&self) -> Vec<ZoneRecord> {
        let mut out: Vec<ZoneRecord> = self
            .records
            .nodes
            .values()
            .flat_map(|r| r.iter())
            .map(|r| ZoneRecord {
                name: r.name.to_string(),
                ttl: r.ttl,
                rtype: r.record_type().to_string(),
                data: r.data.to_string(),
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.rtype, &a.data).cmp(&(&b.name, &b.rtype, &b.data)));
        out
    }

    /// Answers one query packet: writes the response into `out` (cleared first) and says
    /// what to do with it.
    pub fn respond(&self, packet: &[u8], transport: Transport, out: &mut Vec<u8>) -> Disposition {
        let (q, edns) = match read_query(packet, out) {
            Ok(read) => read,
            Err(disposition) => return disposition,
        };
        let limit = limit(transport, edns);
        if q.qclass == CLASS_IN
            && edns.is_none_or(|e| e.version == 0)
            && let Some(entry) = self.answers.get(q.key())
            && entry.write(edns.is_some(), self.records.serial, limit, out)
        {
            patch(out, &q, edns);
            return Disposition::Reply;
        }
        self.respond_parsed(packet, &q, edns, limit, out)
    }

    /// The same as [`respond`](Self::respond) without the precomputed answers: the
    /// reference the fast path is tested against.
    #[doc(hidden)]
    pub fn respond_slow(
        &self,
        packet: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Disposition {
        let (q, edns) = match read_query(packet, out) {
            Ok(read) => read,
            Err(disposition) => return disposition,
        };
        let limit = limit(transport, edns);
        self.build_response(&q, edns, limit, out)
    }

    fn respond_parsed(
        &self,
        packet: &[u8],
        q: &Question<'_>,
        edns: Option<ClientEdns>,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Disposition {
        // A name that does not exist in a zone: the negative answer from the zone's template.
        if q.qclass == CLASS_IN
            && edns.is_none_or(|e| e.version == 0)
            && q.qtype != TYPE_OPT
            && !matches!(q.qtype, 251 | 252)
            && let Some((zone, offset)) = self.zone_of(q.lower())
            && !self.answers.has_name(q.lower())
            && self.negative(packet, q, edns, zone, offset, limit, out)
        {
            return Disposition::Reply;
        }
        self.build_response(q, edns, limit, out)
    }

    /// Writes the zone's negative answer (NXDOMAIN with its SOA) for `q`; `false` when it
    /// does not fit in `limit`.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one query, read once"
    )]
    fn negative(
        &self,
        packet: &[u8],
        q: &Question<'_>,
        edns: Option<ClientEdns>,
        zone: &ZoneApex,
        offset: usize,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        let soa = &zone.negative_soa_tail;
        let total = q.end + 2 + soa.len() + if edns.is_some() { 11 } else { 0 };
        if total > limit {
            return false;
        }
        out.clear();
        out.extend_from_slice(&q.id);
        out.push(QR | AA | (q.flags[0] & RD));
        out.push((q.flags[1] & CD) | ResponseCode::NXDomain.low());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 1, 0, u8::from(edns.is_some())]);
        out.extend_from_slice(&packet[12..q.end]);
        out.extend_from_slice(&(0xc000 | (12 + offset as u16)).to_be_bytes());
        out.extend_from_slice(soa);
        if let Some(e) = edns {
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&Self::MAX_UDP_PAYLOAD.to_be_bytes());
            out.extend_from_slice(&[0, 0, if e.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        true
    }

    /// The closest enclosing zone of a lower-case wire name, with the offset of the zone's
    /// apex inside the name.
    fn zone_of(&self, lower: &[u8]) -> Option<(&ZoneApex, usize)> {
        self.records.zones.iter().find_map(|zone| {
            let offset = lower.len().checked_sub(zone.wire.len())?;
            if lower[offset..] != zone.wire[..] {
                return None;
            }
            // The suffix must start on a label boundary.
            let mut i = 0;
            while i < offset {
                i += 1 + usize::from(lower[i]);
            }
            (i == offset).then_some((zone, offset))
        })
    }

    /// The general path: hickory-proto's message model.
    fn build_response(
        &self,
        q: &Question<'_>,
        edns: Option<ClientEdns>,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Disposition {
        out.clear();
        let qtype = RecordType::from(q.qtype);
        let qname = name_from_wire(q.lower());
        let mut message = Message::response(u16::from_be_bytes(q.id), OpCode::Query);
        message.metadata.recursion_desired = q.flags[0] & RD != 0;
        message.metadata.checking_disabled = q.flags[1] & CD != 0;
        let mut query = Query::query(qname.clone(), qtype);
        query.set_query_class(DNSClass::from(q.qclass));
        message.add_query(query);
        if let Some(e) = edns {
            let mut ours = Edns::new();
            ours.set_max_payload(Self::MAX_UDP_PAYLOAD);
            ours.set_version(0);
            ours.set_dnssec_ok(e.dnssec_ok);
            message.set_edns(ours);
        }

        if edns.is_some_and(|e| e.version > 0) {
            message.metadata.response_code = ResponseCode::BADVERS;
        } else if q.qtype == TYPE_OPT {
            message.metadata.response_code = ResponseCode::FormErr;
        } else if q.qclass != CLASS_IN {
            message.metadata.response_code = ResponseCode::Refused;
        } else {
            match self.zone_of(q.lower()) {
                None if self.forwarding => return Disposition::Forward,
                None => message.metadata.response_code = ResponseCode::Refused,
                Some(_) if matches!(qtype, RecordType::AXFR | RecordType::IXFR) => {
                    // Zone transfers are not offered.
                    message.metadata.response_code = ResponseCode::Refused;
                }
                Some((zone, _)) => {
                    message.metadata.authoritative = true;
                    self.answer(&qname, qtype, zone, &mut message);
                }
            }
        }

        let Ok(mut bytes) = message.to_vec() else {
            error_header(
                &[q.id[0], q.id[1], q.flags[0], q.flags[1]],
                ResponseCode::ServFail,
                out,
            );
            return Disposition::Reply;
        };
        if bytes.len() > limit {
            message.answers.clear();
            message.authorities.clear();
            message.additionals.clear();
            message.metadata.truncation = true;
            match message.to_vec() {
                Ok(b) => bytes = b,
                Err(_) => {
                    error_header(
                        &[q.id[0], q.id[1], q.flags[0], q.flags[1]],
                        ResponseCode::ServFail,
                        out,
                    );
                    return Disposition::Reply;
                }
            }
        }
        out.extend_from_slice(&bytes);
        // Echo the question's case: the answer names point at it.
        if out.len() >= 12 + q.qname.len() {
            out[12..12 + q.qname.len()].copy_from_slice(q.qname);
        }
        Disposition::Reply
    }

    /// Fills the sections for a name inside `zone`.
    fn answer(&self, qname: &Name, qtype: RecordType, zone: &ZoneApex, message: &mut Message) {
        let Some(records) = self.records.nodes.get(qname) else {
            message.metadata.response_code = ResponseCode::NXDomain;
            message.add_authority(zone.negative_soa.clone());
            return;
        };
        let cname = records
            .iter()
            .find(|r| r.record_type() == RecordType::CNAME);
        if let Some(cname) = cname
            && !matches!(qtype, RecordType::CNAME | RecordType::ANY)
        {
            message.add_answer(cname.clone());
            if let RData::CNAME(target) = &cname.data
                && let Some(target_records) = self.records.nodes.get(&target.0)
            {
                message.add_answers(
                    target_records
                        .iter()
                        .filter(|r| r.record_type() == qtype)
                        .cloned(),
                );
            }
            return;
        }
        // ANY gets one RRset (RFC 8482, as NSD answers): no amplification, and the
        // client still learns the name exists.
        let qtype = match (qtype, records.first()) {
            (RecordType::ANY, Some(first)) => first.record_type(),
            _ => qtype,
        };
        let matching: Vec<Record> = records
            .iter()
            .filter(|r| r.record_type() == qtype)
            .cloned()
            .collect();
        if matching.is_empty() {
            message.add_authority(zone.negative_soa.clone());
            return;
        }
        // Addresses of the targets of SRV and NS records, when we have them.
        let mut extra = Vec::new();
        for record in &matching {
            let target = match &record.data {
                RData::SRV(srv) => Some(&srv.target),
                RData::NS(ns) => Some(&ns.0),
                _ => None,
            };
            if let Some(target) = target
                && let Some(target_records) = self.records.nodes.get(target)
            {
                extra.extend(
                    target_records
                        .iter()
                        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
                        .filter(|r| !extra.contains(*r))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
        }
        message.add_answers(matching);
        message.add_additionals(extra);
    }

    fn lookup(&self, name: &DomainName) -> Option<&[Record]> {
        let mut qname = Name::from_ascii(name.as_str()).ok()?.to_lowercase();
        qname.set_fqdn(true);
        self.records.nodes.get(&qname).map(|r| &**r)
    }

    fn in_zone(&self, name: &DomainName) -> bool {
        let Ok(mut qname) = Name::from_ascii(name.as_str()) else {
            return false;
        };
        qname.set_fqdn(true);
        self.zone_of(&crate::zone::name_wire(&qname)).is_some()
    }
}

impl Resolver for Authority {
    fn resolve(&self, name: &DomainName, qtype: QueryType) -> Answer {
        if !self.in_zone(name) {
            return Answer::Refused;
        }
        let Some(records) = self.lookup(name) else {
            return Answer::NxDomain;
        };
        let addrs: Vec<IpAddr> = records
            .iter()
            .filter_map(|r| match (&r.data, qtype) {
                (RData::A(a), QueryType::A) => Some(IpAddr::V4(a.0)),
                (RData::AAAA(a), QueryType::Aaaa) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        if addrs.is_empty() {
            Answer::NoData
        } else {
            Answer::Addresses(addrs)
        }
    }
}
