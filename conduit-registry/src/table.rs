//! The registry's state machine, shared by every backend in this crate: records in creation
//! order, indexes by name and domain, and the rules of register / update / deregister.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{
    ChangeKind, DomainName, ListFilter, Precondition, RegistryError, RegistryEvent, Revision,
    ServiceName, ServiceRecord, Timestamp,
};

/// All records plus the registry revision. Cloning is cheap-ish (records are shared `Arc`s).
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    revision: Revision,
    records: Vec<Arc<ServiceRecord>>,
    /// Active record per name.
    active: HashMap<ServiceName, usize>,
    /// Most recent record per name (active or not).
    latest: HashMap<ServiceName, usize>,
    /// Active record per domain.
    domains: HashMap<DomainName, usize>,
}

impl Table {
    /// Builds a table from stored records, checking every invariant; the error says which.
    pub(crate) fn from_records(
        revision: Revision,
        records: Vec<ServiceRecord>,
    ) -> Result<Self, String> {
        let mut t = Self {
            revision,
            ..Self::default()
        };
        let mut revs = HashMap::new();
        for (i, r) in records.into_iter().enumerate() {
            r.validate().map_err(|e| format!("entry {i}: {e}"))?;
            if r.revision() > revision || r.create_revision() > r.revision() {
                return Err(format!(
                    "entry {i} ({}): revisions {}/{} are inconsistent with registry revision {revision}",
                    r.name(),
                    r.create_revision(),
                    r.revision()
                ));
            }
            if let Some(j) = revs.insert(r.revision(), i) {
                return Err(format!(
                    "entries {j} and {i} share revision {}",
                    r.revision()
                ));
            }
            t.insert(i, r)?;
        }
        Ok(t)
    }

    fn insert(&mut self, i: usize, r: ServiceRecord) -> Result<(), String> {
        if r.is_active() {
            if let Some(&j) = self.active.get(r.name()) {
                return Err(format!(
                    "entries {j} and {i} are both active for service {}",
                    r.name()
                ));
            }
            if let Some(&j) = self.domains.get(r.domain()) {
                return Err(format!(
                    "entries {j} and {i} are both active for domain {}",
                    r.domain()
                ));
            }
            self.active.insert(r.name().clone(), i);
            self.domains.insert(r.domain().clone(), i);
        }
        self.latest.insert(r.name().clone(), i);
        self.records.push(Arc::new(r));
        Ok(())
    }

    pub(crate) fn revision(&self) -> Revision {
        self.revision
    }

    /// Makes sure the next change gets a revision above `floor` (after a restore from an older
    /// file, revisions must still never go backwards for this process's watchers).
    pub(crate) fn raise_revision(&mut self, floor: Revision) {
        self.revision = self.revision.max(floor);
    }

    pub(crate) fn records(&self) -> &[Arc<ServiceRecord>] {
        &self.records
    }

    pub(crate) fn get(&self, name: &ServiceName) -> Option<Arc<ServiceRecord>> {
        let i = self.active.get(name).or_else(|| self.latest.get(name))?;
        self.records.get(*i).cloned()
    }

    pub(crate) fn list(&self, filter: ListFilter) -> Vec<Arc<ServiceRecord>> {
        match filter {
            ListFilter::All => self.records.clone(),
            ListFilter::Active => self
                .records
                .iter()
                .filter(|r| r.is_active())
                .cloned()
                .collect(),
        }
    }

    /// Current state of every record changed after `since`, oldest change first.
    pub(crate) fn changes_since(&self, since: Revision) -> Vec<RegistryEvent> {
        let mut out: Vec<RegistryEvent> = self
            .records
            .iter()
            .filter(|r| r.revision() > since)
            .map(|r| RegistryEvent::from_record(Arc::clone(r)))
            .collect();
        out.sort_by_key(|e| e.revision);
        out
    }

    fn check_domain(
        &self,
        rec: &ServiceRecord,
        except: Option<usize>,
    ) -> Result<(), RegistryError> {
        match self.domains.get(rec.domain()) {
            Some(&j) if Some(j) != except => Err(RegistryError::DomainTaken {
                domain: rec.domain().clone(),
                owner: self.records[j].name().clone(),
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn register(
        &mut self,
        mut rec: ServiceRecord,
        now: Timestamp,
    ) -> Result<RegistryEvent, RegistryError> {
        rec.stamp_registered(self.revision.next(), now);
        rec.validate()?;
        if self.active.contains_key(rec.name()) {
            return Err(RegistryError::AlreadyExists {
                name: rec.name().clone(),
            });
        }
        self.check_domain(&rec, None)?;
        self.revision = self.revision.next();
        let i = self.records.len();
        self.insert(i, rec).map_err(RegistryError::Worker)?;
        Ok(RegistryEvent::new(
            ChangeKind::Registered,
            Arc::clone(&self.records[i]),
        ))
    }

    pub(crate) fn update(
        &mut self,
        mut rec: ServiceRecord,
        pre: Precondition,
        now: Timestamp,
    ) -> Result<RegistryEvent, RegistryError> {
        let Some(&i) = self.active.get(rec.name()) else {
            return Err(RegistryError::NotFound {
                name: rec.name().clone(),
            });
        };
        let prev = Arc::clone(&self.records[i]);
        if let Precondition::Revision(expected) = pre
            && prev.revision() != expected
        {
            return Err(RegistryError::Conflict {
                name: rec.name().clone(),
                expected,
                actual: prev.revision(),
            });
        }
        rec.stamp_updated(&prev, self.revision.next(), now);
        rec.validate()?;
        self.check_domain(&rec, Some(i))?;
        self.revision = self.revision.next();
        self.domains.remove(prev.domain());
        self.domains.insert(rec.domain().clone(), i);
        self.records[i] = Arc::new(rec);
        Ok(RegistryEvent::new(
            ChangeKind::Updated,
            Arc::clone(&self.records[i]),
        ))
    }

    pub(crate) fn deregister(
        &mut self,
        name: &ServiceName,
        now: Timestamp,
    ) -> Result<RegistryEvent, RegistryError> {
        let Some(i) = self.active.remove(name) else {
            return Err(RegistryError::NotFound { name: name.clone() });
        };
        self.revision = self.revision.next();
        let mut rec = ServiceRecord::clone(&self.records[i]);
        rec.stamp_deregistered(self.revision, now);
        self.domains.remove(rec.domain());
        self.records[i] = Arc::new(rec);
        Ok(RegistryEvent::new(
            ChangeKind::Deregistered,
            Arc::clone(&self.records[i]),
        ))
    }

    /// Checks every invariant; used by the property tests and after loading.
    #[cfg(feature = "etcd")]
    /// Takes in a record as another writer stored it (a shared store's change stream): a
    /// new record is appended, a known one (same creation revision) replaced. Records at or
    /// below the table's revision are already here and give `None`; the table's revision
    /// becomes the record's. Refused, changing nothing, when the record would break the
    /// table's invariants (two active records for one name or domain).
    pub(crate) fn put_remote(
        &mut self,
        rec: ServiceRecord,
    ) -> Result<Option<RegistryEvent>, RegistryError> {
        if rec.revision() <= self.revision {
            return Ok(None);
        }
        rec.validate()?;
        let at = self
            .records
            .binary_search_by_key(&rec.create_revision(), |r| r.create_revision());
        let i = match at {
            Ok(i) => i,
            Err(i) if i == self.records.len() => i,
            Err(_) => {
                return Err(RegistryError::Worker(format!(
                    "the store holds record {} created at revision {}, older than records \
                     already read; re-read the store",
                    rec.name(),
                    rec.create_revision()
                )));
            }
        };
        if rec.is_active() {
            let clash = |held: Option<&usize>| held.is_some_and(|&j| j != i);
            if clash(self.active.get(rec.name())) {
                return Err(RegistryError::AlreadyExists {
                    name: rec.name().clone(),
                });
            }
            if let Some(&j) = self.domains.get(rec.domain()).filter(|&&j| j != i) {
                return Err(RegistryError::DomainTaken {
                    domain: rec.domain().clone(),
                    owner: self.records[j].name().clone(),
                });
            }
        }
        if let Some(prev) = self.records.get(i).cloned() {
            if self.active.get(prev.name()) == Some(&i) {
                self.active.remove(prev.name());
            }
            if self.domains.get(prev.domain()) == Some(&i) {
                self.domains.remove(prev.domain());
            }
        }
        if rec.is_active() {
            self.active.insert(rec.name().clone(), i);
            self.domains.insert(rec.domain().clone(), i);
        }
        let latest = self.latest.entry(rec.name().clone()).or_insert(i);
        *latest = (*latest).max(i);
        self.revision = rec.revision();
        let rec = Arc::new(rec);
        if i == self.records.len() {
            self.records.push(Arc::clone(&rec));
        } else {
            self.records[i] = Arc::clone(&rec);
        }
        Ok(Some(RegistryEvent::from_record(rec)))
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let recs: Vec<ServiceRecord> = self
            .records
            .iter()
            .map(|r| ServiceRecord::clone(r))
            .collect();
        let rebuilt = Self::from_records(self.revision, recs)?;
        if rebuilt.active != self.active
            || rebuilt.domains != self.domains
            || rebuilt.latest != self.latest
        {
            return Err("indexes out of sync with records".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Register(u8, u8, u16),
        Update(u8, u8, u16, bool),
        Deregister(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6u8, 0..6u8, 1..5u16).prop_map(|(n, d, p)| Op::Register(n, d, p)),
            (0..6u8, 0..6u8, 1..5u16, any::<bool>())
                .prop_map(|(n, d, p, c)| Op::Update(n, d, p, c)),
            (0..6u8).prop_map(Op::Deregister),
        ]
    }

    fn rec(n: u8, d: u8, p: u16) -> ServiceRecord {
        ServiceRecord::new(
            format!("s{n}").parse().unwrap(),
            format!("10.0.0.1:{p}").parse().unwrap(),
        )
        .with_domain(format!("d{d}.internal").parse().unwrap())
    }

    proptest! {
        /// Any sequence of register / update / deregister keeps every invariant, agrees with
        /// a simple model on what succeeds, and bumps the revision once per success.
        #[test]
        fn any_sequence_keeps_invariants(ops in proptest::collection::vec(op(), 1..60)) {
            let mut t = Table::default();
            // model: active name -> domain
            let mut model: HashMap<u8, u8> = HashMap::new();
            let mut total = 0usize;
            let now = Timestamp::from_unix_seconds(1_700_000_000).unwrap();
            for op in ops {
                let before = t.revision();
                let ok = match op {
                    Op::Register(n, d, p) => {
                        let expect = !model.contains_key(&n) && !model.values().any(|&v| v == d);
                        let r = t.register(rec(n, d, p), now);
                        prop_assert_eq!(r.is_ok(), expect, "register {} {}: {:?}", n, d, r.err());
                        if expect { model.insert(n, d); total += 1; }
                        expect
                    }
                    Op::Update(n, d, p, cas) => {
                        let cur = t.get(&format!("s{n}").parse().unwrap()).filter(|r| r.is_active());
                        let pre = if cas { Precondition::Revision(Revision(cur.as_ref().map_or(0, |r| r.revision().0))) } else { Precondition::Overwrite };
                        let expect = model.contains_key(&n) && !model.iter().any(|(&k, &v)| v == d && k != n);
                        let r = t.update(rec(n, d, p), pre, now);
                        prop_assert_eq!(r.is_ok(), expect, "update {} {}: {:?}", n, d, r.err());
                        if expect {
                            let r = r.unwrap();
                            prop_assert_eq!(r.record.create_revision(), cur.unwrap().create_revision());
                            model.insert(n, d);
                        }
                        expect
                    }
                    Op::Deregister(n) => {
                        let expect = model.remove(&n).is_some();
                        let r = t.deregister(&format!("s{n}").parse().unwrap(), now);
                        prop_assert_eq!(r.is_ok(), expect);
                        if expect {
                            let r = r.unwrap();
                            prop_assert!(!r.record.is_active());
                            prop_assert_eq!(r.record.deregistered_at(), Some(now));
                        }
                        expect
                    }
                };
                prop_assert_eq!(t.revision().0, before.0 + u64::from(ok));
                t.check_invariants().map_err(TestCaseError::fail)?;
            }
            prop_assert_eq!(t.list(ListFilter::All).len(), total, "history is never deleted");
            prop_assert_eq!(t.list(ListFilter::Active).len(), model.len());
            // Replaying every change from zero gives each record's latest state once.
            let replay = t.changes_since(Revision::ZERO);
            prop_assert_eq!(replay.len(), total);
            prop_assert!(replay.windows(2).all(|w| w[0].revision < w[1].revision));
        }

        #[test]
        fn service_name_display_round_trips(s in "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?") {
            let n: ServiceName = s.parse().unwrap();
            prop_assert_eq!(n.as_str(), s.to_ascii_lowercase());
            let again: ServiceName = n.to_string().parse().unwrap();
            prop_assert_eq!(&again, &n);
            let json = serde_json::to_string(&n).unwrap();
            prop_assert_eq!(serde_json::from_str::<ServiceName>(&json).unwrap(), n);
        }

        #[test]
        fn arbitrary_names_never_panic_and_valid_ones_round_trip(s in "\\PC{0,80}") {
            if let Ok(n) = s.parse::<ServiceName>() {
                prop_assert_eq!(n.to_string().parse::<ServiceName>().unwrap(), n);
            }
            if let Ok(d) = s.parse::<DomainName>() {
                prop_assert_eq!(d.to_string().parse::<DomainName>().unwrap(), d);
            }
        }
    }
}
