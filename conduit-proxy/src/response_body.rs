//! The response body: a local answer, or the upstream's body passed through frame by frame
//! with an idle timeout, holding the upstream connection until it ends.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::conn::Lease;
use crate::metrics::Counters;
use crate::request_body::{BoxError, IdleTimeout, IdleTimer, poll_with_idle};
use crate::routes::InFlight;

/// What goes to the client: a local answer, or the upstream's body passed through frame by
/// frame (each chunk of an SSE or NDJSON stream is written as soon as it arrives).
pub struct ResponseBody {
    kind: Kind,
    /// The access record completed when the body ends, and the bytes sent so far.
    access: Option<Box<crate::access::Pending>>,
}

enum Kind {
    Full(Option<Bytes>),
    /// A local site's answer.
    Local(crate::LocalBody),
    Upstream {
        inner: Incoming,
        idle: IdleTimer,
        counters: Arc<Counters>,
        flight: Option<InFlight>,
        /// The upstream connection, returned to its pool when the body has ended.
        lease: Option<Lease>,
    },
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(a) = self.access.take() {
            a.finish();
        }
        // A body hyper never polled because it was empty (HEAD, 204, 304, length 0) still
        // ended; any other unfinished body drops its connection (closing it).
        if let Kind::Upstream { inner, lease, .. } = &mut self.kind
            && inner.is_end_stream()
            && let Some(l) = lease.take()
        {
            l.release();
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(b) => f
                .debug_struct("ResponseBody")
                .field("len", &b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Upstream { .. } => f.write_str("ResponseBody(upstream stream)"),
            Kind::Local(_) => f.write_str("ResponseBody(local site)"),
        }
    }
}

impl ResponseBody {
    /// A complete local body.
    pub(crate) fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        Self {
            kind: Kind::Full((!b.is_empty()).then_some(b)),
            access: None,
        }
    }

    /// A local site's body, passed through as it comes.
    pub(crate) fn local_site(body: crate::LocalBody) -> Self {
        Self {
            kind: Kind::Local(body),
            access: None,
        }
    }

    /// Completes `pending` with the bytes sent when this body ends (or is dropped).
    pub(crate) fn track(&mut self, pending: Box<crate::access::Pending>) {
        self.access = Some(pending);
    }

    /// The upstream's body; the in-flight guard ends with it, the connection goes back to
    /// its pool when it has been read to the end.
    pub(crate) fn upstream(
        inner: Incoming,
        idle: Duration,
        counters: Arc<Counters>,
        flight: Option<InFlight>,
        lease: Option<Lease>,
    ) -> Self {
        Self {
            kind: Kind::Upstream {
                inner,
                idle: IdleTimer::new(idle),
                counters,
                flight,
                lease,
            },
            access: None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = match &mut this.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Local(body) => match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(f)) => Poll::Ready(Some(Ok(f))),
                Some(Err(never)) => match never {},
                None => Poll::Ready(None),
            },
            Kind::Upstream {
                inner,
                idle,
                counters,
                flight,
                lease,
            } => {
                let f = ready!(poll_with_idle(inner, idle, cx));
                match &f {
                    None => {
                        flight.take();
                        if let Some(l) = lease.take() {
                            l.release();
                        }
                    }
                    Some(Err(e)) => {
                        flight.take();
                        lease.take();
                        if e.is::<IdleTimeout>() {
                            counters.inc(|c| &c.idle_timeouts);
                        }
                        tracing::debug!(error = %e, "upstream response body ended with an error");
                    }
                    Some(Ok(_)) => {}
                }
                Poll::Ready(f)
            }
        };
        if let (Some(a), Poll::Ready(Some(Ok(f)))) = (&mut this.access, &frame)
            && let Some(d) = f.data_ref()
        {
            a.record.bytes += d.len() as u64;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Local(body) => body.is_end_stream(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
            Kind::Local(body) => body.size_hint(),
        }
    }
}

/// A plain-text local answer.
pub(crate) fn local(status: StatusCode, text: impl Into<String>) -> Response<ResponseBody> {
    let mut text = text.into();
    text.push('\n');
    let mut r = Response::new(ResponseBody::full(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
