//! The state every backend in this crate keeps in memory: [`State`] (the table and its
//! change feed) and [`PolicyCell`] (the access policy and its watchers).

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use crate::access::{AccessPolicy, StoredPolicy};
use crate::table::Table;
use crate::watch::{ChangeFeed, DEFAULT_JOURNAL_CAPACITY};
use crate::{RegistryError, RegistryEvent, Revision, ServiceRecord, Watch};

/// Where the registry's state lives in memory: the table plus its change feed. Shared by the
/// in-memory and file backends.
pub(crate) struct State {
    table: RwLock<Table>,
    feed: ChangeFeed,
    pub(crate) policy: PolicyCell,
}

impl State {
    pub(crate) fn new(table: Table) -> Arc<Self> {
        Arc::new_cyclic(|weak: &Weak<Self>| {
            let weak = weak.clone();
            let head = table.revision();
            Self {
                table: RwLock::new(table),
                feed: ChangeFeed::new(
                    head,
                    DEFAULT_JOURNAL_CAPACITY,
                    Box::new(move |since| {
                        weak.upgrade()
                            .map(|s| s.read().changes_since(since))
                            .unwrap_or_default()
                    }),
                ),
                policy: PolicyCell::default(),
            }
        })
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one change to the table and publishes it.
    pub(crate) fn apply(
        &self,
        op: impl FnOnce(&mut Table) -> Result<RegistryEvent, RegistryError>,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
        let mut t = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let ev = op(&mut t)?;
        let rec = Arc::clone(&ev.record);
        self.feed.publish([ev]);
        Ok(rec)
    }

    /// Adopts a table read from storage and publishes what changed since ours.
    pub(crate) fn absorb(&self, next: Table) {
        let mut t = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if next.revision() < t.revision() {
            tracing::warn!(
                ours = %t.revision(),
                theirs = %next.revision(),
                "registry revision went backwards (restored from an older file?); adopting it"
            );
        }
        let events = next.changes_since(t.revision());
        *t = next;
        self.feed.publish(events);
    }

    #[cfg(feature = "etcd")]
    /// Takes in records another writer stored, in revision order, publishing each that is
    /// new; stops at the first the table refuses (the rest wait for a re-read).
    pub(crate) fn absorb_remote(
        &self,
        mut records: Vec<ServiceRecord>,
    ) -> Result<(), RegistryError> {
        records.sort_by_key(ServiceRecord::revision);
        let mut t = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let mut events = Vec::new();
        let mut outcome = Ok(());
        for rec in records {
            match t.put_remote(rec) {
                Ok(ev) => events.extend(ev),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        self.feed.publish(events);
        outcome
    }

    pub(crate) fn watch(&self, since: Revision) -> Watch {
        self.feed.watch(since)
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.read();
        f.debug_struct("State")
            .field("revision", &t.revision())
            .field("records", &t.records().len())
            .finish()
    }
}

/// The access policy in memory and its watchers (shared by the in-memory and file backends).
#[derive(Debug)]
pub(crate) struct PolicyCell(tokio::sync::watch::Sender<Arc<StoredPolicy>>);

impl Default for PolicyCell {
    fn default() -> Self {
        Self(tokio::sync::watch::Sender::new(Arc::default()))
    }
}

impl PolicyCell {
    pub(crate) fn get(&self) -> Arc<StoredPolicy> {
        Arc::clone(&self.0.borrow())
    }

    pub(crate) fn subscribe(&self) -> crate::access::PolicyWatch {
        self.0.subscribe()
    }

    /// Adopts a policy read from storage (published when its revision differs).
    pub(crate) fn absorb(&self, stored: StoredPolicy) {
        self.0.send_if_modified(|cur| {
            let changed = cur.revision != stored.revision || cur.policy != stored.policy;
            if changed {
                *cur = Arc::new(stored);
            }
            changed
        });
    }

    /// Checks and stores a new policy in memory (the in-memory backend).
    pub(crate) fn replace(
        &self,
        policy: AccessPolicy,
        expected: u64,
    ) -> Result<Arc<StoredPolicy>, RegistryError> {
        let next = next_policy(&self.get(), policy, expected)?;
        self.0.send_replace(Arc::clone(&next));
        Ok(next)
    }
}

/// The policy that replaces `current`: validated, at `expected + 1`.
pub(crate) fn next_policy(
    current: &StoredPolicy,
    policy: AccessPolicy,
    expected: u64,
) -> Result<Arc<StoredPolicy>, RegistryError> {
    if current.revision != expected {
        return Err(RegistryError::PolicyConflict {
            expected,
            actual: current.revision,
        });
    }
    policy.validate()?;
    Ok(Arc::new(StoredPolicy::new(expected + 1, policy)))
}
