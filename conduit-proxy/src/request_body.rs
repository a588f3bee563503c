//! The request body: streamed frame by frame to the upstream, never collected, with a byte
//! limit and an idle timeout; and the errors a body reports (too large, idle, the client's
//! own failure) so the request path can tell whose fault a failure was.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Any error inside a body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body was larger than the route allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTooLarge(pub(crate) u64);

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body is larger than the limit of {} bytes",
            self.0
        )
    }
}
impl std::error::Error for BodyTooLarge {}

/// Nothing moved within the idle timeout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleTimeout(pub(crate) Duration);

impl fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no data for {:?} (idle timeout)", self.0)
    }
}
impl std::error::Error for IdleTimeout {}

/// The client's request body failed (aborted, malformed chunking, reset): the client's
/// fault, never counted against the upstream.
#[derive(Debug)]
pub(crate) struct ClientBodyError(pub(crate) BoxError);

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the client's request body failed: {}", self.0)
    }
}
impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// An idle timer armed only while the inner body is pending.
pub(crate) struct IdleTimer {
    after: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    pub(crate) fn new(after: Duration) -> Self {
        Self { after, sleep: None }
    }

    /// Called when the inner body had nothing: `Ready` once the timeout has passed.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let after = self.after;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        sleep.as_mut().poll(cx)
    }

    /// Called when a frame arrived.
    fn progress(&mut self) {
        if let Some(s) = self.sleep.as_mut() {
            s.as_mut().reset(Instant::now() + self.after);
        }
    }
}

use std::future::Future as _;

pub(crate) fn poll_with_idle(
    inner: &mut Incoming,
    idle: &mut IdleTimer,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    match Pin::new(inner).poll_frame(cx) {
        Poll::Ready(f) => {
            idle.progress();
            Poll::Ready(f.map(|r| r.map_err(BoxError::from)))
        }
        Poll::Pending => {
            ready!(idle.poll_expired(cx));
            Poll::Ready(Some(Err(Box::new(IdleTimeout(idle.after)))))
        }
    }
}

/// Reads and discards what is left of a refused request body (at most 8 MiB, for at most
/// 5 s) so that the client reads our answer instead of a connection reset: closing a socket
/// with unread data makes the kernel send RST, which can destroy the response in flight.
pub(crate) fn drain(mut body: Incoming) {
    use http_body_util::BodyExt as _;
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let mut left: usize = 8 << 20;
            while let Some(Ok(f)) = body.frame().await {
                left = left.saturating_sub(f.data_ref().map_or(0, Bytes::len));
                if left == 0 {
                    break;
                }
            }
        })
        .await;
    });
}

/// What goes to the upstream: the client's body, streamed, with the route's limit.
pub(crate) enum RequestBody {
    /// No body (health checks, bodiless requests being retried).
    Empty,
    /// Frames already read (the model look-ahead), then the rest.
    Replay(Box<Replay>),
    /// The client's body.
    Stream {
        inner: Option<Incoming>,
        limit: Option<u64>,
        seen: u64,
        idle: IdleTimer,
    },
}

/// The frames a look-ahead read, sent before the rest of the body.
pub(crate) struct Replay {
    head: std::collections::VecDeque<Frame<Bytes>>,
    rest: RequestBody,
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Replay(r) => f
                .debug_struct("Replay")
                .field("head", &r.head.len())
                .field("rest", &r.rest)
                .finish(),
            Self::Stream { seen, limit, .. } => f
                .debug_struct("Stream")
                .field("seen", seen)
                .field("limit", limit)
                .finish_non_exhaustive(),
        }
    }
}

impl RequestBody {
    pub(crate) fn stream(inner: Incoming, limit: Option<u64>, idle: Duration) -> Self {
        Self::Stream {
            inner: Some(inner),
            limit,
            seen: 0,
            idle: IdleTimer::new(idle),
        }
    }

    /// `head` (frames already read from `rest`), then `rest`.
    pub(crate) fn replay(head: std::collections::VecDeque<Frame<Bytes>>, rest: Self) -> Self {
        Self::Replay(Box::new(Replay { head, rest }))
    }
}

impl RequestBody {
    /// Throws away what the client has not sent yet (see [`drain`]), for a request answered
    /// without being forwarded.
    pub(crate) fn discard(self) {
        match self {
            Self::Stream {
                inner: Some(inner), ..
            } => drain(inner),
            Self::Replay(r) => r.rest.discard(),
            _ => {}
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Replay(r) => match r.head.pop_front() {
                Some(f) => Poll::Ready(Some(Ok(f))),
                None => Pin::new(&mut r.rest).poll_frame(cx),
            },
            Self::Stream {
                inner,
                limit,
                seen,
                idle,
            } => {
                let Some(body) = inner.as_mut() else {
                    return Poll::Ready(None);
                };
                // Every error of the request body is the client's (a stall is still told
                // apart, for its own answer).
                let frame = ready!(poll_with_idle(body, idle, cx)).map(|r| {
                    r.map_err(|e| -> BoxError {
                        if e.is::<IdleTimeout>() {
                            e
                        } else {
                            Box::new(ClientBodyError(e))
                        }
                    })
                });
                if let (Some(Ok(f)), Some(max)) = (&frame, *limit)
                    && let Some(d) = f.data_ref()
                {
                    *seen += d.len() as u64;
                    if *seen > max {
                        if let Some(rest) = inner.take() {
                            drain(rest);
                        }
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(max)))));
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Replay(r) => r.head.is_empty() && r.rest.is_end_stream(),
            Self::Stream { inner, .. } => inner.as_ref().is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Replay(r) => {
                let held: u64 = r
                    .head
                    .iter()
                    .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
                    .sum();
                let rest = r.rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + held);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + held);
                }
                hint
            }
            Self::Stream { inner, .. } => inner
                .as_ref()
                .map_or(SizeHint::with_exact(0), Body::size_hint),
        }
    }
}
