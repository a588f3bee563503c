//! The change stream: [`RegistryEvent`], [`ChangeFeed`] (what a backend publishes into) and
//! [`Watch`] (what a consumer reads from).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::watch;

use crate::{Revision, ServiceRecord};

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A new active record.
    Registered,
    /// An active record changed (upstreams, health check, domain, …).
    Updated,
    /// The record became inactive.
    Deregistered,
}

/// One change, at one registry revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEvent {
    /// The registry revision of this change.
    pub revision: Revision,
    /// What happened.
    pub kind: ChangeKind,
    /// The record as it is after the change.
    pub record: Arc<ServiceRecord>,
}

impl RegistryEvent {
    /// An event for `record` at its own revision.
    pub fn new(kind: ChangeKind, record: Arc<ServiceRecord>) -> Self {
        Self {
            revision: record.revision(),
            kind,
            record,
        }
    }

    /// The event that describes a record's current state: `Deregistered` when inactive,
    /// `Registered` when its last change created it, `Updated` otherwise. Used where single
    /// changes were coalesced (another process's writes, a watcher that fell far behind).
    pub fn from_record(record: Arc<ServiceRecord>) -> Self {
        let kind = if !record.is_active() {
            ChangeKind::Deregistered
        } else if record.create_revision() == record.revision() {
            ChangeKind::Registered
        } else {
            ChangeKind::Updated
        };
        Self::new(kind, record)
    }
}

/// Rebuilds the changes after a revision from a backend's current state, for watchers that
/// start before the retained journal.
pub type Compactor = Box<dyn Fn(Revision) -> Vec<RegistryEvent> + Send + Sync>;

/// Default number of events a feed keeps for exact replay.
pub const DEFAULT_JOURNAL_CAPACITY: usize = 16_384;

struct Journal {
    events: VecDeque<RegistryEvent>,
    /// Events at or below this revision may be missing from `events`.
    floor: Revision,
    capacity: usize,
}

struct FeedInner {
    journal: Mutex<Journal>,
    head: watch::Sender<Revision>,
    compactor: Compactor,
}

/// The fan-out of one registry's changes to any number of [`Watch`]es.
///
/// A backend calls [`ChangeFeed::publish`] after every change (its own, or one it learned of
/// from another process or a distributed store). The feed keeps the most recent events for
/// exact replay; a watcher that asks for older revisions gets the current state of every
/// record changed since (the backend's [`Compactor`]), like etcd after compaction.
#[derive(Clone)]
pub struct ChangeFeed {
    inner: Arc<FeedInner>,
}

impl fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("head", &*self.inner.head.borrow())
            .finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// A feed whose history starts at `head` (changes up to it are served by `compactor`).
    pub fn new(head: Revision, capacity: usize, compactor: Compactor) -> Self {
        let (tx, _) = watch::channel(head);
        Self {
            inner: Arc::new(FeedInner {
                journal: Mutex::new(Journal {
                    events: VecDeque::new(),
                    floor: head,
                    capacity: capacity.max(1),
                }),
                head: tx,
                compactor,
            }),
        }
    }

    /// Records changes (in revision order) and wakes every watcher.
    pub fn publish(&self, events: impl IntoIterator<Item = RegistryEvent>) {
        let mut j = self
            .inner
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut head = *self.inner.head.borrow();
        for e in events {
            if e.revision <= head {
                continue; // already published (a write of ours seen again by the file watcher)
            }
            head = e.revision;
            if j.events.len() == j.capacity
                && let Some(old) = j.events.pop_front()
            {
                j.floor = old.revision;
            }
            j.events.push_back(e);
        }
        self.inner.head.send_replace(head);
    }

    /// The last published revision.
    pub fn head(&self) -> Revision {
        *self.inner.head.borrow()
    }

    /// A watcher that yields every change after `since`.
    pub fn watch(&self, since: Revision) -> Watch {
        Watch {
            feed: Arc::downgrade(&self.inner),
            rx: self.inner.head.subscribe(),
            seen: since,
            pending: VecDeque::new(),
        }
    }
}

impl FeedInner {
    fn events_after(&self, seen: Revision) -> Vec<RegistryEvent> {
        {
            let j = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            if seen >= j.floor {
                return j
                    .events
                    .iter()
                    .filter(|e| e.revision > seen)
                    .cloned()
                    .collect();
            }
        }
        // Not under the journal lock: the compactor takes the backend's own lock.
        (self.compactor)(seen)
    }
}

/// A stream of [`RegistryEvent`]s, from a revision on.
///
/// Every change is delivered in revision order. Changes made by another process, or older
/// than the feed's journal, arrive coalesced: one event per record with its latest state.
pub struct Watch {
    feed: Weak<FeedInner>,
    rx: watch::Receiver<Revision>,
    seen: Revision,
    pending: VecDeque<RegistryEvent>,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("seen", &self.seen)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Watch {
    /// The next change; `None` once the registry (every holder of its feed) is gone.
    ///
    /// # Cancel safety
    /// Cancel-safe: an event is only taken from the watcher when this returns it, so it can be
    /// used in `tokio::select!` without losing changes.
    pub async fn next(&mut self) -> Option<RegistryEvent> {
        loop {
            if let Some(e) = self.try_next() {
                return Some(e);
            }
            if self.rx.changed().await.is_err() {
                return self.try_next();
            }
        }
    }

    /// The next change if one is ready, without waiting.
    pub fn try_next(&mut self) -> Option<RegistryEvent> {
        if self.pending.is_empty() {
            self.rx.borrow_and_update();
            let feed = self.feed.upgrade()?;
            self.pending.extend(feed.events_after(self.seen));
        }
        let e = self.pending.pop_front()?;
        self.seen = self.seen.max(e.revision);
        Some(e)
    }

    /// The revision of the last event returned (or the starting revision).
    pub fn revision(&self) -> Revision {
        self.seen
    }
}
