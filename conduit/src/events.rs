//! The gateway's live events ([`Event`]) and their bus ([`EventBus`]): every subsystem
//! publishes, the admin API's `GET /v1/events` streams them (Server-Sent Events) to any
//! number of clients. Publishing never waits: each client has a bounded buffer, and one that
//! falls behind is dropped with a last event saying so.
//!
//! Ids are `EPOCH-SEQ`: `EPOCH` is the gateway's start (so ids are unique across restarts),
//! `SEQ` counts from 1. A client that reconnects with `Last-Event-ID` gets what it missed
//! from the replay buffer (the last [`REPLAY`] events), or a `resync` event when its id is
//! from another run or older than the buffer.
//!
//! ```
//! use conduit::events::{EventBus, EventKind, Since};
//! let bus = EventBus::new();
//! let first = bus.publish(EventKind::Resync { reason: "example".into() });
//! let second = bus.publish(EventKind::Resync { reason: "again".into() });
//! // a client that saw `first` gets exactly `second`
//! let missed = bus.replay(&Since::After(first.clone())).unwrap_or_default();
//! assert_eq!(missed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [second.as_str()]);
//! assert!(first.starts_with(bus.epoch()));
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Events kept for clients that reconnect.
pub const REPLAY: usize = 10_000;
/// Events a client may fall behind by before it is dropped.
pub const CLIENT_BUFFER: usize = 1024;

/// One event: `id`, when, and what happened. (Unknown fields are ignored when reading:
/// serde cannot refuse them beside a flattened field; [`EventKind`] refuses its own.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `EPOCH-SEQ`, unique across gateway restarts.
    pub id: String,
    /// When it happened (UTC, RFC 3339).
    pub at: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// Its sequence number within its run (the part after the `-`).
    pub fn seq(&self) -> u64 {
        self.id
            .rsplit_once('-')
            .and_then(|(_, s)| s.parse().ok())
            .unwrap_or(0)
    }

    /// The SSE `event:` name of this event.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// What happened, by type (the SSE `event:` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum EventKind {
    /// A service was registered, updated or deregistered.
    Service {
        /// `registered`, `updated` or `deregistered`.
        change: String,
        /// The service.
        name: String,
        /// Its domain.
        domain: String,
        /// The registry revision of the change.
        revision: u64,
    },
    /// An upstream went up or down.
    Health {
        /// The service.
        service: String,
        /// The upstream.
        upstream: String,
        /// Whether it gets traffic now.
        healthy: bool,
        /// Why.
        reason: String,
    },
    /// A certificate was issued, renewed, rotated or revoked, or renewal failed.
    Certificate {
        /// `issued`, `renewed`, `rotated`, `revoked`, `renewal_failed`, `issue_failed`.
        change: String,
        /// The service (or `*` for a renewal round).
        name: String,
        /// What, in words.
        message: String,
    },
    /// A monitor alert was raised or cleared.
    Monitor {
        /// Raised (`true`) or cleared.
        raised: bool,
        /// The machine.
        target: String,
        /// What (a GPU, a disk, a container).
        subject: String,
        /// What, in words.
        message: String,
    },
    /// An audit record was appended.
    Audit {
        /// Its action (`service_register`, …).
        action: String,
        /// Success or failure.
        success: bool,
        /// Who.
        user: String,
        /// What, in words.
        message: String,
        /// Its position in the sealed chain, when sealed.
        sequence: Option<u64>,
        /// The record's own time, `YYYY-MM-DDTHH:MM:SSZ`.
        timestamp: String,
        /// The record's own fields (free-form in the audit format, as in
        /// [`AuditEntry`](crate::api::AuditEntry)).
        details: serde_json::Map<String, serde_json::Value>,
    },
    /// The alerts were delivered to Alertmanager (or a delivery failed).
    Alert {
        /// Alerts firing now.
        firing: u64,
        /// Alerts resolved since the last delivery.
        resolved: u64,
        /// Whether this Alertmanager took them.
        delivered: bool,
        /// What, in words (naming the Alertmanager).
        message: String,
    },
    /// The access policy: a new revision in force (`policy`) or a request refused
    /// (`denied`; every refusal, where the audit log keeps one per client per interval).
    Access {
        /// `policy` or `denied`.
        change: String,
        /// The refused client's address.
        client: Option<String>,
        /// The service it asked for.
        service: Option<String>,
        /// What, in words.
        message: String,
    },
    /// The client must re-read the state: its `Last-Event-ID` is from another run of the
    /// gateway or older than the replay buffer.
    Resync {
        /// Why.
        reason: String,
    },
    /// The client fell too far behind and is disconnected; reconnect with `Last-Event-ID`.
    Dropped {
        /// Why.
        reason: String,
    },
}

impl EventKind {
    /// The SSE `event:` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Service { .. } => "service",
            Self::Health { .. } => "health",
            Self::Certificate { .. } => "certificate",
            Self::Monitor { .. } => "monitor",
            Self::Audit { .. } => "audit",
            Self::Alert { .. } => "alert",
            Self::Access { .. } => "access",
            Self::Resync { .. } => "resync",
            Self::Dropped { .. } => "dropped",
        }
    }

    /// Every type a client may ask for with `?types=`.
    pub const TYPES: &'static [&'static str] = &[
        "service",
        "health",
        "certificate",
        "monitor",
        "audit",
        "alert",
        "access",
    ];
}

/// Where a client starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// From now on (no `Last-Event-ID`).
    Now,
    /// From the start of the replay buffer (a client that wants everything kept).
    Before,
    /// After this id (`Last-Event-ID`).
    After(String),
}

/// Why a client cannot resume where it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// The id is from another run of the gateway.
    #[error("event {0} is from another run of the gateway")]
    OtherRun(String),
    /// The id is older than the replay buffer.
    #[error("event {id} is older than the last {REPLAY} events kept")]
    TooOld {
        /// The id.
        id: String,
    },
    /// The id is not one this gateway gives.
    #[error("{0:?} is not an event id")]
    Malformed(String),
}

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

/// One event as a Server-Sent Events frame: `id:`, `event:`, one JSON `data:` line.
pub fn sse_frame(e: &Event) -> String {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".to_owned());
    format!("id: {}\nevent: {}\ndata: {data}\n\n", e.id, e.type_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(n: u64) -> EventKind {
        EventKind::Service {
            change: "registered".into(),
            name: format!("s{n}"),
            domain: format!("s{n}.internal"),
            revision: n,
        }
    }

    #[test]
    fn resume_gets_exactly_what_was_missed() {
        let bus = EventBus::new();
        let ids: Vec<String> = (1..=5).map(|n| bus.publish(service(n))).collect();
        let missed = bus.replay(&Since::After(ids[1].clone())).unwrap();
        let got: Vec<&str> = missed.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(got, [ids[2].as_str(), ids[3].as_str(), ids[4].as_str()]);
        assert!(
            bus.replay(&Since::After(ids[4].clone()))
                .unwrap()
                .is_empty()
        );
        let other = EventBus::new();
        // (a different epoch: a different millisecond or the same run; ids never collide)
        if other.epoch() != bus.epoch() {
            assert!(matches!(
                other.replay(&Since::After(ids[0].clone())),
                Err(ResumeError::OtherRun(_))
            ));
        }
        assert!(matches!(
            bus.replay(&Since::After("nonsense".into())),
            Err(ResumeError::Malformed(_))
        ));
    }

    #[test]
    fn an_id_older_than_the_buffer_must_resync() {
        let bus = EventBus::new();
        let first = bus.publish(service(0));
        for n in 1..=(REPLAY as u64 + 5) {
            bus.publish(service(n));
        }
        assert!(matches!(
            bus.replay(&Since::After(first)),
            Err(ResumeError::TooOld { .. })
        ));
        assert_eq!(bus.replay(&Since::Before).unwrap().len(), REPLAY);
    }

    #[test]
    fn frames_are_sse() {
        let bus = EventBus::new();
        bus.publish(service(7));
        let e = bus.replay(&Since::Before).unwrap()[0].clone();
        let f = sse_frame(&e);
        assert!(
            f.starts_with(&format!("id: {}\nevent: service\ndata: {{", e.id)),
            "{f}"
        );
        assert!(f.ends_with("}\n\n"));
        let back: Event =
            serde_json::from_str(f.lines().nth(2).unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
        assert_eq!(back, *e);
    }
}
