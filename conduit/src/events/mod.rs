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

mod bus;

use serde::{Deserialize, Serialize};

pub use bus::EventBus;

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
    /// The shared registry store became unreachable (the gateway serves its last-known
    /// registry and refuses changes) or answers again (what changed meanwhile is applied).
    Registry {
        /// Whether it answers now.
        reachable: bool,
        /// The store (`etcd://HOST:PORT/PREFIX`).
        store: String,
        /// Since when (`YYYY-MM-DDTHH:MM:SSZ`).
        since: String,
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
            Self::Registry { .. } => "registry",
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
        "registry",
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
