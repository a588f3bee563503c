//! `GET /v1/events`: the event bus as Server-Sent Events, one producer task per client.
//! The producer sends the missed events first (or a `resync`), then live ones; it never
//! makes the gateway wait: when the client reads too slowly its subscription lags, and it
//! gets a last `dropped` event and is disconnected.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventBus, EventKind, Since, sse_frame};

/// A comment line every this often keeps proxies and clients from timing out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Frames queued for one client's connection.
const QUEUE: usize = 64;

/// A `?types=` entry that is not an event type.
#[derive(Debug, thiserror::Error)]
#[error("types: {0:?} is not an event type ({types})", types = EventKind::TYPES.join(", "))]
pub(super) struct UnknownEventType(String);

/// What a client asked for.
#[derive(Debug)]
pub(super) struct Subscription {
    /// Only these types (`?types=health,service`); `resync` and `dropped` always.
    pub(super) types: Option<HashSet<String>>,
    /// Where it resumes.
    pub(super) since: Since,
}

impl Subscription {
    /// From the query and the `Last-Event-ID` header.
    pub(super) fn parse(
        query: Option<&str>,
        last_id: Option<&str>,
    ) -> Result<Self, UnknownEventType> {
        let types = match super::admin::query_value(query, "types") {
            None => None,
            Some(list) => {
                let mut set = HashSet::new();
                for t in list.split(',').filter(|t| !t.is_empty()) {
                    if !EventKind::TYPES.contains(&t) {
                        return Err(UnknownEventType(t.to_owned()));
                    }
                    set.insert(t.to_owned());
                }
                Some(set)
            }
        };
        let since = match last_id.map(str::trim).filter(|s| !s.is_empty()) {
            Some(id) => Since::After(id.to_owned()),
            None => Since::Now,
        };
        Ok(Self { types, since })
    }

    /// Whether a kept event is of a type asked for (`resync` and `dropped` are never kept).
    pub(super) fn admits(&self, e: &Event) -> bool {
        self.types
            .as_ref()
            .is_none_or(|t| t.contains(e.type_name()))
    }

    fn wants(&self, e: &Event) -> bool {
        matches!(e.kind, EventKind::Resync { .. } | EventKind::Dropped { .. }) || self.admits(e)
    }
}

/// The response body: frames from the producer as they come.
pub(super) struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Starts a client's stream: subscribes first (nothing falls between the replay and the
/// live events), then hands the producer to `spawn`.
pub(super) fn open(
    bus: &EventBus,
    sub: Subscription,
    stop: CancellationToken,
    spawn: impl FnOnce(Pin<Box<dyn Future<Output = ()> + Send>>),
) -> SseBody {
    let live = bus.subscribe();
    let first: Vec<Arc<Event>> = match bus.replay(&sub.since) {
        Ok(missed) => missed,
        Err(e) => vec![Arc::new(bus.resync(e.to_string()))],
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    spawn(Box::pin(produce(sub, first, live, tx, stop)));
    SseBody { rx }
}

async fn produce(
    sub: Subscription,
    first: Vec<Arc<Event>>,
    mut live: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<Bytes>,
    stop: CancellationToken,
) {
    // A comment first, so the client sees the stream open at once.
    if tx
        .send(Bytes::from_static(b": conduit events\n\n"))
        .await
        .is_err()
    {
        return;
    }
    let mut last = 0;
    for e in first {
        last = last.max(e.seq());
        if sub.wants(&e) && tx.send(Bytes::from(sse_frame(&e))).await.is_err() {
            return;
        }
    }
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tx.closed() => return,
            _ = keep_alive.tick() => {
                // A client whose queue is full is reading slowly; its lag shows below.
                let _ = tx.try_send(Bytes::from_static(b": keep-alive\n\n"));
            }
            got = live.recv() => match got {
                Ok(e) => {
                    if e.seq() <= last || !sub.wants(&e) {
                        continue;
                    }
                    if tx.send(Bytes::from(sse_frame(&e))).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let dropped = Event {
                        id: String::new(),
                        at: String::new(),
                        kind: EventKind::Dropped {
                            reason: format!("{n} events behind: reconnect with Last-Event-ID"),
                        },
                    };
                    let frame = format!("event: dropped\ndata: {}\n\n", serde_json::to_string(&dropped).unwrap_or_default());
                    let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Bytes::from(frame))).await;
                    tracing::info!(behind = n, "an event stream client fell behind; disconnected");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
