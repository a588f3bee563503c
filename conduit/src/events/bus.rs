//! [`EventBus`]: numbers each event, keeps the last [`REPLAY`] for clients that resume,
//! and broadcasts to live subscribers without ever waiting for them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use super::{CLIENT_BUFFER, Event, EventKind, REPLAY, ResumeError, Since};

struct Inner {
    epoch: String,
    next: AtomicU64,
    replay: Mutex<VecDeque<Arc<Event>>>,
    live: broadcast::Sender<Arc<Event>>,
}

/// The bus: publish from anywhere, subscribe with a replay.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("epoch", &self.inner.epoch)
            .field("next", &self.inner.next.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

fn now() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

impl EventBus {
    /// A bus whose ids start with this moment (milliseconds since 1970, hex).
    pub fn new() -> Self {
        let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        Self {
            inner: Arc::new(Inner {
                epoch: format!("{ms:x}"),
                next: AtomicU64::new(1),
                replay: Mutex::new(VecDeque::with_capacity(1024)),
                live: broadcast::channel(CLIENT_BUFFER).0,
            }),
        }
    }

    /// This run's id prefix.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// Publishes `kind` to every client (never waits); returns its id.
    pub fn publish(&self, kind: EventKind) -> String {
        let mut replay = self
            .inner
            .replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Numbered under the lock, so the buffer and the stream are in id order.
        let seq = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let event = Arc::new(Event {
            id: format!("{}-{seq}", self.inner.epoch),
            at: now(),
            kind,
        });
        if replay.len() == REPLAY {
            replay.pop_front();
        }
        replay.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.inner.live.send(event.clone());
        event.id.clone()
    }

    /// A live subscription; subscribe before [`EventBus::replay`] so nothing falls between.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.live.subscribe()
    }

    /// The events after `since` still kept.
    ///
    /// # Errors
    /// [`ResumeError`] when the client must re-read the state instead.
    pub fn replay(&self, since: &Since) -> Result<Vec<Arc<Event>>, ResumeError> {
        let replay = self
            .inner
            .replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match since {
            Since::Now => Ok(Vec::new()),
            Since::Before => Ok(replay.iter().cloned().collect()),
            Since::After(id) => {
                let seq = self.seq_of(id)?;
                let oldest = replay
                    .front()
                    .map_or(u64::MAX, |e| self.seq_of(&e.id).unwrap_or(0));
                let next = self.inner.next.load(Ordering::Relaxed);
                if seq + 1 < oldest && seq + 1 < next {
                    return Err(ResumeError::TooOld { id: id.clone() });
                }
                Ok(replay
                    .iter()
                    .filter(|e| self.seq_of(&e.id).is_ok_and(|s| s > seq))
                    .cloned()
                    .collect())
            }
        }
    }

    /// The sequence number of one of this run's ids.
    fn seq_of(&self, id: &str) -> Result<u64, ResumeError> {
        let (epoch, seq) = id
            .split_once('-')
            .ok_or_else(|| ResumeError::Malformed(id.to_owned()))?;
        let seq: u64 = seq
            .parse()
            .map_err(|_| ResumeError::Malformed(id.to_owned()))?;
        if epoch != self.inner.epoch {
            return Err(ResumeError::OtherRun(id.to_owned()));
        }
        Ok(seq)
    }

    /// The id of the last event published (`EPOCH-0` before the first): a client that
    /// sends it as `Last-Event-ID` gets every event after it.
    pub fn cursor(&self) -> String {
        format!("{}-{}", self.inner.epoch, self.published())
    }

    /// The last `limit` events kept whose type `wanted` admits, oldest first, and the
    /// cursor they end at (read together: nothing falls between the list and a stream
    /// resumed from the cursor).
    pub fn recent(&self, wanted: impl Fn(&Event) -> bool, limit: usize) -> (Vec<Event>, String) {
        let replay = self
            .inner
            .replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Event> = replay
            .iter()
            .rev()
            .filter(|e| wanted(e))
            .take(limit)
            .map(|e| Event::clone(e))
            .collect();
        out.reverse();
        (out, self.cursor())
    }

    /// How many events this run has published.
    pub fn published(&self) -> u64 {
        self.inner.next.load(Ordering::Relaxed) - 1
    }

    /// A `resync` event for one client, with the id of the last event published (so the
    /// client resumes from now after re-reading the state).
    pub fn resync(&self, reason: String) -> Event {
        Event {
            id: format!("{}-{}", self.inner.epoch, self.published()),
            at: now(),
            kind: EventKind::Resync { reason },
        }
    }
}
