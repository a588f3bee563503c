//! Building an [`Authority`]: from the services alone, or from the previous state, patched
//! (a small change to proxied services) or rebuilt with every unchanged name's answers
//! carried over.

use std::sync::Arc;

use conduit_registry::ServiceRecord;
use hickory_proto::rr::rdata::{NS, SRV};
use hickory_proto::rr::{Name, RData, Record};

use super::Authority;
use crate::DnsError;
use crate::precomputed::Answers;
use crate::wire::Transport;
use crate::zone::Records;
use crate::zone_config::ZoneConfig;

impl Authority {
    /// Builds the zones from the active `services` and precomputes their answers.
    /// `serial` is the SOA serial; `forwarding` says whether names outside the zones are
    /// forwarded ([`Disposition::Forward`](crate::Disposition::Forward)) or refused.
    pub fn build(
        config: &ZoneConfig,
        services: &[Arc<ServiceRecord>],
        serial: u32,
        forwarding: bool,
    ) -> Result<Self, DnsError> {
        config.validate()?;
        Self::full(None, config, services, serial, forwarding)
    }

    /// The same state as [`build`](Self::build), computed from `previous`: what a
    /// registry change costs is what the names it touches cost. A change to proxied
    /// services one label below a zone's apex (the common case: a service registered,
    /// updated or removed) replaces just their names; any other change rebuilds the
    /// records and carries over the answers of every name whose records (and those of the
    /// names its SRV and NS records point at) did not change. With another `config` or
    /// `forwarding` than `previous` had, it is [`build`](Self::build).
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn rebuild(
        previous: &Self,
        config: &ZoneConfig,
        services: &[Arc<ServiceRecord>],
        serial: u32,
        forwarding: bool,
    ) -> Result<Self, DnsError> {
        config.validate()?;
        let same = forwarding == previous.forwarding && *config == previous.config;
        if same && let Some(plan) = crate::patch::plan(config, &previous.services, services) {
            return Ok(previous.patched(config, &plan, services, serial));
        }
        Self::full(
            same.then_some(previous),
            config,
            services,
            serial,
            forwarding,
        )
    }

    /// Builds the records, then the answers, carrying over those of `previous` (built with
    /// the same settings) that are still right.
    fn full(
        previous: Option<&Self>,
        config: &ZoneConfig,
        services: &[Arc<ServiceRecord>],
        serial: u32,
        forwarding: bool,
    ) -> Result<Self, DnsError> {
        let mut authority = Self::records_only(config, services, serial, forwarding)?;
        authority.precompute(previous);
        Ok(authority)
    }

    /// The records alone, no answer precomputed: every query takes the general path, with
    /// the same answers, until [`answered`](Self::answered) replaces it. What a server
    /// starts with, so that a large zone is served at once rather than after its answers.
    pub(crate) fn unanswered(
        config: &ZoneConfig,
        services: &[Arc<ServiceRecord>],
        serial: u32,
        forwarding: bool,
    ) -> Result<Self, DnsError> {
        config.validate()?;
        Self::records_only(config, services, serial, forwarding)
    }

    /// The records of an already validated `config`, every name known, no answer.
    fn records_only(
        config: &ZoneConfig,
        services: &[Arc<ServiceRecord>],
        serial: u32,
        forwarding: bool,
    ) -> Result<Self, DnsError> {
        let records = Records::build(config, services, serial)?;
        let mut answers = Answers::default();
        for name in records.nodes.keys() {
            answers.know(name);
        }
        Ok(Self {
            records,
            answers,
            forwarding,
            services: services.to_vec(),
            patched: false,
            config: config.clone(),
            owners: std::sync::OnceLock::new(),
        })
    }

    /// The same state (the same records, shared) with every answer precomputed.
    pub(crate) fn answered(&self) -> Self {
        let mut next = Self {
            records: self.records.clone(),
            answers: Answers::default(),
            forwarding: self.forwarding,
            services: self.services.clone(),
            patched: false,
            config: self.config.clone(),
            owners: std::sync::OnceLock::new(),
        };
        next.precompute(None);
        next
    }

    /// `self` after `plan`: the records of the names it replaces, the apexes at the new
    /// serial, and the answers of those names computed again; every other answer shared.
    fn patched(
        &self,
        config: &ZoneConfig,
        plan: &crate::patch::Plan,
        services: &[Arc<ServiceRecord>],
        serial: u32,
    ) -> Self {
        let mut next = Self {
            records: self.records.patched(config, plan, serial),
            answers: self.answers.clone(),
            forwarding: self.forwarding,
            services: services.to_vec(),
            patched: true,
            config: self.config.clone(),
            owners: std::sync::OnceLock::new(),
        };
        let pinned: Vec<&Name> = self
            .records
            .nodes
            .iter()
            .filter(|(_, records)| Answers::pinned(records))
            .map(|(name, _)| name)
            .collect();
        for name in plan.gone.iter().chain(pinned.iter().copied()) {
            if let Some(records) = self.records.nodes.get(name) {
                next.answers.remove(name, records);
            }
        }
        let mut answers = std::mem::take(&mut next.answers);
        let redo = plan.added.iter().map(|(name, _)| name).chain(pinned);
        for name in redo {
            if let Some(records) = next.records.nodes.get(name) {
                answers.compute(name, records, serial, &|q, out| {
                    next.respond_slow(q, Transport::Udp, out)
                });
            }
        }
        next.answers = answers;
        next
    }

    /// Whether the answers for `name` in `previous` are still right, bar the serial: the
    /// name is not an apex, its records are the same, and they are of types whose answers
    /// hold only the name's own records (plus, for SRV and NS, the addresses of their
    /// targets, which must be the same too).
    fn carries_over(&self, previous: &Self, name: &Name, records: &[Record]) -> bool {
        let ours = &self.records.nodes;
        let theirs = &previous.records.nodes;
        if theirs.get(name).map(|r| &**r) != Some(records) || Answers::pinned(records) {
            return false;
        }
        records.iter().all(|r| match &r.data {
            RData::A(_) | RData::AAAA(_) | RData::PTR(_) | RData::TXT(_) => true,
            RData::SRV(SRV { target, .. }) | RData::NS(NS(target)) => {
                ours.get(target) == theirs.get(target)
            }
            _ => false,
        })
    }

    /// Computes the answers of every name, taking those `previous` has for names that
    /// [carry over](Self::carries_over).
    fn precompute(&mut self, previous: Option<&Self>) {
        let mut answers = Answers::default();
        let serial = self.records.serial;
        for (name, records) in &self.records.nodes {
            let carried = previous.is_some_and(|p| {
                self.carries_over(p, name, records) && answers.carry(&p.answers, name, records)
            });
            if !carried {
                answers.compute(name, records, serial, &|q, out| {
                    self.respond_slow(q, Transport::Udp, out)
                });
            }
        }
        self.answers = answers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Transport;

    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for label in name.split('.') {
            q.push(u8::try_from(label.len()).unwrap());
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        if edns {
            q.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn a_zone_without_precomputed_answers_answers_the_same() {
        let config = ZoneConfig::default();
        let services: Vec<Arc<ServiceRecord>> = (0..20)
            .map(|i| {
                Arc::new(ServiceRecord::new(
                    format!("s{i}").parse().unwrap(),
                    format!("10.0.0.{}:80", i + 1).parse().unwrap(),
                ))
            })
            .collect();
        let built = Authority::build(&config, &services, 7, false).unwrap();
        let unanswered = Authority::unanswered(&config, &services, 7, false).unwrap();
        let answered = unanswered.answered();
        for name in [
            "s3.internal",
            "S19.Internal",
            "nope.internal",
            "internal",
            "x.s3.internal",
            "elsewhere.test",
        ] {
            for qtype in [1u16, 28, 6, 2, 33, 255, 16] {
                for edns in [false, true] {
                    let q = query(name, qtype, edns);
                    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
                    let da = built.respond(&q, Transport::Udp, &mut a);
                    let db = unanswered.respond(&q, Transport::Udp, &mut b);
                    let dc = answered.respond(&q, Transport::Udp, &mut c);
                    assert_eq!((da, &a), (db, &b), "{name} type {qtype} edns {edns}");
                    assert_eq!((da, &a), (dc, &c), "{name} type {qtype} edns {edns}");
                }
            }
        }
    }
}
