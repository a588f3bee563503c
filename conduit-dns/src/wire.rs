//! The DNS wire format on the fast path: a query's question and EDNS read straight from
//! the packet, error headers, truncation and SERVFAIL written without a message model, and
//! the patching of a precomputed answer (ID, flags, the question's case, EDNS).

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

/// Largest UDP response we send, whatever the client offers (the DNS flag day 2020 value,
/// which avoids IP fragmentation).
pub(crate) const MAX_UDP_PAYLOAD: u16 = 1232;

/// How a query arrived; decides the response size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: 512 bytes, or the EDNS payload size (capped at [`Authority::MAX_UDP_PAYLOAD`](crate::Authority::MAX_UDP_PAYLOAD)).
    Udp,
    /// TCP: up to 65,535 bytes.
    Tcp,
}

/// What the caller should do with a packet after [`Authority::respond`](crate::Authority::respond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Send the bytes written to `out`.
    Reply,
    /// Send nothing (not a query, or too short to answer).
    Drop,
    /// The name is outside every zone and forwarding is on: forward the query as is.
    Forward,
}

pub(crate) const TYPE_OPT: u16 = 41;
pub(crate) const CLASS_IN: u16 = 1;
pub(crate) const QR: u8 = 0x80;
pub(crate) const AA: u8 = 0x04;
pub(crate) const TC: u8 = 0x02;
pub(crate) const RD: u8 = 0x01;
pub(crate) const CD: u8 = 0x10;

/// The question of a query, read straight from the packet.
#[derive(Debug)]
pub(crate) struct Question<'a> {
    pub(crate) id: [u8; 2],
    pub(crate) flags: [u8; 2],
    /// The name as sent (case preserved).
    pub(crate) qname: &'a [u8],
    /// Lower-case name followed by the type, big-endian: the fast-path key.
    pub(crate) key: [u8; 257],
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
    /// Offset just past the question.
    pub(crate) end: usize,
}

impl Question<'_> {
    pub(crate) fn key(&self) -> &[u8] {
        &self.key[..self.qname.len() + 2]
    }
    pub(crate) fn lower(&self) -> &[u8] {
        &self.key[..self.qname.len()]
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientEdns {
    pub(crate) payload: u16,
    pub(crate) version: u8,
    pub(crate) dnssec_ok: bool,
}

#[allow(
    clippy::large_enum_variant,
    reason = "lives on the stack for one packet; boxing would allocate per query"
)]
pub(crate) enum Parsed<'a> {
    Ok(Question<'a>),
    Drop,
    /// The header is readable; answer with this code and no question.
    Error(ResponseCode),
}

pub(crate) fn parse_question(p: &[u8]) -> Parsed<'_> {
    if p.len() < 12 || p[2] & QR != 0 {
        return Parsed::Drop;
    }
    let opcode = (p[2] >> 3) & 0x0f;
    if opcode != 0 {
        return Parsed::Error(ResponseCode::NotImp);
    }
    if u16::from_be_bytes([p[4], p[5]]) != 1 {
        return Parsed::Error(ResponseCode::FormErr);
    }
    let mut key = [0u8; 257];
    let mut i = 12;
    loop {
        let Some(&len) = p.get(i) else {
            return Parsed::Error(ResponseCode::FormErr);
        };
        // No compression in a question (there is nothing before it to point to) and no
        // extended label types.
        if len & 0xc0 != 0 || i - 12 + 1 + usize::from(len) > 255 {
            return Parsed::Error(ResponseCode::FormErr);
        }
        let Some(label) = p.get(i + 1..i + 1 + usize::from(len)) else {
            return Parsed::Error(ResponseCode::FormErr);
        };
        key[i - 12] = len;
        for (k, b) in key[i - 12 + 1..].iter_mut().zip(label) {
            *k = b.to_ascii_lowercase();
        }
        i += 1 + usize::from(len);
        if len == 0 {
            break;
        }
    }
    let qname = &p[12..i];
    let Some(tail) = p.get(i..i + 4) else {
        return Parsed::Error(ResponseCode::FormErr);
    };
    key[qname.len()] = tail[0];
    key[qname.len() + 1] = tail[1];
    Parsed::Ok(Question {
        id: [p[0], p[1]],
        flags: [p[2], p[3]],
        qname,
        key,
        qtype: u16::from_be_bytes([tail[0], tail[1]]),
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
        end: i + 4,
    })
}

pub(crate) enum EdnsParse {
    Simple(Option<ClientEdns>),
    FormErr,
}

/// Reads the EDNS OPT record of a query: inline for the usual shape (no answer or authority
/// records, the OPT record alone in the additional section), through hickory otherwise.
pub(crate) fn parse_edns(p: &[u8], q: &Question<'_>) -> EdnsParse {
    let counts = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
    let (an, ns, ar) = (counts(6), counts(8), counts(10));
    if an == 0 && ns == 0 {
        if ar == 0 {
            return if q.end == p.len() {
                EdnsParse::Simple(None)
            } else {
                // Trailing bytes after the question: harmless, but read the message properly.
                parse_edns_hickory(p)
            };
        }
        if ar == 1
            && let Some(rr) = p.get(q.end..q.end + 11)
            && rr[0] == 0
            && u16::from_be_bytes([rr[1], rr[2]]) == TYPE_OPT
        {
            let rdlen = usize::from(u16::from_be_bytes([rr[9], rr[10]]));
            if q.end + 11 + rdlen == p.len() {
                return EdnsParse::Simple(Some(ClientEdns {
                    payload: u16::from_be_bytes([rr[3], rr[4]]),
                    version: rr[6],
                    dnssec_ok: rr[7] & 0x80 != 0,
                }));
            }
        }
    }
    parse_edns_hickory(p)
}

pub(crate) fn parse_edns_hickory(p: &[u8]) -> EdnsParse {
    match Message::from_vec(p) {
        Ok(message) => {
            let opts = message
                .additionals
                .iter()
                .filter(|r| r.record_type() == RecordType::OPT)
                .count();
            if opts > 0 {
                // hickory keeps the OPT record out of `additionals`; any left is a second one.
                return EdnsParse::FormErr;
            }
            EdnsParse::Simple(message.edns.as_ref().map(|e| ClientEdns {
                payload: e.max_payload(),
                version: e.version(),
                dnssec_ok: e.flags().dnssec_ok,
            }))
        }
        Err(_) => EdnsParse::FormErr,
    }
}

/// A header-only error response: the query's ID and opcode, the code, nothing else.
pub(crate) fn error_header(p: &[u8], code: ResponseCode, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&p[..2]);
    out.push(QR | (p[2] & 0x78) | (p[2] & RD));
    out.push(code.low());
    out.extend_from_slice(&[0; 8]);
}

/// The question and EDNS of a query; or, for a query that cannot be answered normally, the
/// error response already written to `out` (or nothing, to drop it).
pub(crate) fn read_query<'a>(
    packet: &'a [u8],
    out: &mut Vec<u8>,
) -> Result<(Question<'a>, Option<ClientEdns>), Disposition> {
    out.clear();
    let q = match parse_question(packet) {
        Parsed::Ok(q) => q,
        Parsed::Drop => return Err(Disposition::Drop),
        Parsed::Error(code) => {
            error_header(packet, code, out);
            return Err(Disposition::Reply);
        }
    };
    match parse_edns(packet, &q) {
        EdnsParse::Simple(edns) => Ok((q, edns)),
        EdnsParse::FormErr => {
            error_header(packet, ResponseCode::FormErr, out);
            Err(Disposition::Reply)
        }
    }
}

/// The largest response this query may get over `transport`.
pub(crate) fn limit(transport: Transport, edns: Option<ClientEdns>) -> usize {
    match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(edns.map_or(512, |e| e.payload.clamp(512, MAX_UDP_PAYLOAD))),
    }
}

/// Copies what differs between queries into a precomputed response: the ID, the RD and CD
/// bits, the question's case and the DO bit.
pub(crate) fn patch(out: &mut [u8], q: &Question<'_>, edns: Option<ClientEdns>) {
    out[0] = q.id[0];
    out[1] = q.id[1];
    out[2] = (out[2] & !RD) | (q.flags[0] & RD);
    out[3] = (out[3] & !CD) | (q.flags[1] & CD);
    out[12..12 + q.qname.len()].copy_from_slice(q.qname);
    if edns.is_some_and(|e| e.dnssec_ok) {
        let at = out.len() - 4;
        out[at] |= 0x80;
    }
}

/// A name from a lower-case wire name that [`parse_question`] has checked.
pub(crate) fn name_from_wire(wire: &[u8]) -> Name {
    let mut labels = Vec::new();
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            break;
        }
        labels.push(
            wire.get(i + 1..i + 1 + usize::from(len))
                .unwrap_or_default(),
        );
        i += 1 + usize::from(len);
    }
    let mut name = Name::from_labels(labels).unwrap_or_default();
    name.set_fqdn(true);
    name
}

/// Offset just past the question of a well-formed query.
pub(crate) fn question_end(query: &[u8]) -> Option<usize> {
    match parse_question(query) {
        Parsed::Ok(q) => Some(q.end),
        _ => None,
    }
}

/// The UDP size limit a query's sender accepts (512, or its EDNS payload size capped at
/// [`MAX_UDP_PAYLOAD`]).
pub(crate) fn udp_limit_of(query: &[u8]) -> usize {
    match parse_question(query) {
        Parsed::Ok(q) => match parse_edns(query, &q) {
            EdnsParse::Simple(edns) => limit(Transport::Udp, edns),
            EdnsParse::FormErr => 512,
        },
        _ => 512,
    }
}

/// `response` cut down to its header and question, with TC set: the client retries over TCP.
pub(crate) fn truncated_copy(query: &[u8], response: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let end = question_end(query).unwrap_or(12);
    if response.len() < end {
        servfail(query, out);
        return;
    }
    out.extend_from_slice(&response[..end]);
    out[2] |= TC;
    out[6..12].fill(0);
}

/// A SERVFAIL answer to `query`, with its question when it has a readable one.
pub(crate) fn servfail(query: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if query.len() < 12 {
        return;
    }
    error_header(query, ResponseCode::ServFail, out);
    if let Parsed::Ok(q) = parse_question(query) {
        out[3] |= q.flags[1] & CD;
        out[5] = 1;
        out.extend_from_slice(&query[12..q.end]);
    }
}
