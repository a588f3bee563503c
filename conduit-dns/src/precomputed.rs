//! The precomputed answers: for every name that exists, and the types worth it, the
//! response without and with EDNS as bytes, computed by the general path once per
//! registry state and copied on every query (the ID, flags, the question's case, the DO
//! bit and the zone's serial are written into the copy).
//!
//! The entries are shared between states: a registry change recomputes the names it
//! touches and keeps the rest. The serial is not baked in (negative answers carry the
//! zone's SOA, whose serial changes with every state): each entry knows where it sits.

use std::sync::Arc;

use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::wire::{CLASS_IN, Disposition, MAX_UDP_PAYLOAD, TC};
use crate::zone::{Map, Set, name_wire};

/// The two responses for one name and type.
#[derive(Debug)]
pub(crate) struct Precomputed {
    /// `[without EDNS, with EDNS]`.
    variants: [Box<[u8]>; 2],
    /// Where the zone's serial sits in each variant (a negative answer's SOA), if anywhere.
    serial_at: [Option<u16>; 2],
}

impl Precomputed {
    /// Appends the response (with or without EDNS) to `out` with `serial` written in,
    /// unless it is longer than `limit`; whether it did.
    pub(crate) fn write(&self, edns: bool, serial: u32, limit: usize, out: &mut Vec<u8>) -> bool {
        let i = usize::from(edns);
        let bytes = &self.variants[i];
        if bytes.len() > limit {
            return false;
        }
        let start = out.len();
        out.extend_from_slice(bytes);
        if let Some(at) = self.serial_at[i] {
            let at = start + usize::from(at);
            if let Some(slot) = out.get_mut(at..at + 4) {
                slot.copy_from_slice(&serial.to_be_bytes());
            }
        }
        true
    }
}

/// Every precomputed answer of one registry state. Cloning is cheap (entries are shared).
#[derive(Debug, Default, Clone)]
pub(crate) struct Answers {
    /// Lower-case wire qname + qtype → its responses.
    fast: Map<Arc<[u8]>, Arc<Precomputed>>,
    /// Lower-case wire form of every owner name, for the negative-answer check.
    names: Set<Arc<[u8]>>,
}

/// The general path of the state being computed: a query in, its response out.
pub(crate) type Respond<'a> = dyn Fn(&[u8], &mut Vec<u8>) -> Disposition + 'a;

impl Answers {
    /// The responses to a lower-case wire qname followed by its qtype.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Precomputed> {
        self.fast.get(key).map(|p| &**p)
    }

    /// Whether a lower-case wire name exists (with records or as an empty non-terminal).
    pub(crate) fn has_name(&self, lower: &[u8]) -> bool {
        self.names.contains(lower)
    }

    /// Whether `records` hold the zone's SOA (an apex): some answers of such a name (SOA,
    /// ANY) carry the serial where [`Precomputed`] does not rewrite it, so its entries are
    /// recomputed for every state and never carried over.
    pub(crate) fn pinned(records: &[Record]) -> bool {
        records.iter().any(|r| matches!(r.data, RData::SOA(_)))
    }

    /// Computes and stores the answers of `name`, asking `respond` (the general path of the
    /// state these answers belong to, whose serial is `serial`).
    pub(crate) fn compute(
        &mut self,
        name: &Name,
        records: &[Record],
        serial: u32,
        respond: &Respond<'_>,
    ) {
        let wire = name_wire(name);
        self.names.insert(wire.as_slice().into());
        let mut query = Vec::with_capacity(wire.len() + 30);
        let mut out = Vec::with_capacity(512);
        for qtype in qtypes(records) {
            let mut variants: [Box<[u8]>; 2] = Default::default();
            let mut serial_at = [None; 2];
            let mut complete = true;
            for (i, with_edns) in [false, true].into_iter().enumerate() {
                query.clear();
                query.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(with_edns)]);
                query.extend_from_slice(&wire);
                query.extend_from_slice(&u16::from(qtype).to_be_bytes());
                query.extend_from_slice(&CLASS_IN.to_be_bytes());
                if with_edns {
                    query.extend_from_slice(&[0, 0, 41]);
                    query.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
                    query.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                }
                let usable = respond(&query, &mut out) == Disposition::Reply
                    && out.len() > 12
                    && out[2] & TC == 0
                    && (!with_edns
                        || (out.len() >= 23
                            && out[out.len() - 11] == 0
                            && out[out.len() - 10..out.len() - 8] == [0, 41]
                            && out[out.len() - 2..] == [0, 0]));
                let located = if usable {
                    locate_serial(&out, with_edns, serial)
                } else {
                    Err(())
                };
                let Ok(at) = located else {
                    complete = false;
                    break;
                };
                serial_at[i] = at;
                variants[i] = out.as_slice().into();
            }
            if complete {
                self.fast.insert(
                    key(&wire, qtype).into(),
                    Arc::new(Precomputed {
                        variants,
                        serial_at,
                    }),
                );
            }
        }
    }

    /// Takes every answer of `name` from `from` (which has the same records for it); false,
    /// with nothing taken, when `from` lacks one of them.
    pub(crate) fn carry(&mut self, from: &Self, name: &Name, records: &[Record]) -> bool {
        let wire = name_wire(name);
        let mut taken = Vec::new();
        for qtype in qtypes(records) {
            match from.fast.get_key_value(key(&wire, qtype).as_slice()) {
                Some((k, v)) => taken.push((Arc::clone(k), Arc::clone(v))),
                None => return false,
            }
        }
        self.fast.extend(taken);
        match from.names.get(wire.as_slice()) {
            Some(w) => self.names.insert(Arc::clone(w)),
            None => self.names.insert(wire.as_slice().into()),
        };
        true
    }

    /// Knows `name` exists (its answers are not precomputed: queries for it take the
    /// general path), so that no negative answer is given for it.
    pub(crate) fn know(&mut self, name: &Name) {
        self.names.insert(name_wire(name).as_slice().into());
    }

    /// Forgets `name` and its answers (`records` are the ones it had).
    pub(crate) fn remove(&mut self, name: &Name, records: &[Record]) {
        let wire = name_wire(name);
        for qtype in qtypes(records) {
            self.fast.remove(key(&wire, qtype).as_slice());
        }
        self.names.remove(wire.as_slice());
    }
}

/// The types answered from the precomputed entries for a name with `records`: its own,
/// plus A and AAAA (the ones clients ask for most, answered negatively when absent).
fn qtypes(records: &[Record]) -> Vec<RecordType> {
    let mut types: Vec<RecordType> = records.iter().map(Record::record_type).collect();
    types.extend([RecordType::A, RecordType::AAAA]);
    types.sort_unstable();
    types.dedup();
    types
}

fn key(wire: &[u8], qtype: RecordType) -> Vec<u8> {
    let mut key = Vec::with_capacity(wire.len() + 2);
    key.extend_from_slice(wire);
    key.extend_from_slice(&u16::from(qtype).to_be_bytes());
    key
}

/// Where `serial` sits in a response: nowhere in an answer without an authority section;
/// in a negative answer (no answers, one authority record: the SOA, last before the OPT
/// record of 11 bytes when there is EDNS), 20 bytes before the SOA's end. `Err` for any
/// other shape, or when the bytes there are not the serial: not precomputed.
fn locate_serial(out: &[u8], with_edns: bool, serial: u32) -> Result<Option<u16>, ()> {
    let count = |at: usize| u16::from_be_bytes([out[at], out[at + 1]]);
    match (count(6), count(8)) {
        (1.., 0) => Ok(None),
        (0, 1) => {
            let end = out.len() - if with_edns { 11 } else { 0 };
            let at = end.checked_sub(20).ok_or(())?;
            if out.get(at..at + 4) == Some(&serial.to_be_bytes()[..]) {
                u16::try_from(at).map(Some).map_err(|_| ())
            } else {
                Err(())
            }
        }
        _ => Err(()),
    }
}
