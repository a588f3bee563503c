//! Keep-alive connections to upstreams: a small LIFO stack of idle HTTP/1.1 connections per
//! upstream, no per-request task and no shared map on the request path.
//!
//! A connection is taken from its upstream's stack (or opened), the request is sent on it,
//! and the response body carries the connection ([`Lease`]) until it ends: then the
//! connection goes back on the stack. A body that does not end (the client left) drops the
//! connection, which closes it: the upstream stops generating.
//!
//! A request that never left (connect failed, or a pooled connection turned out to be
//! closed) is handed back intact, so it can go to another upstream even with a body.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use tokio::time::Instant;

use crate::body::RequestBody;
use crate::routes::Backend;
use crate::service::{Shared, error_chain};

/// How long an idle connection is kept for reuse (the upstream may close it sooner: nginx
/// after 60 s, Go servers after 90 s; one found closed is skipped).
const IDLE_FOR: Duration = Duration::from_secs(90);

/// An upstream's idle connections, most recently used last.
#[derive(Debug, Default)]
pub(crate) struct Idle {
    senders: Mutex<Vec<(SendRequest<RequestBody>, Instant)>>,
}

impl Idle {
    fn take(&self) -> Option<SendRequest<RequestBody>> {
        let mut v = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((s, since)) = v.pop() {
            // (Older ones further down are dropped when reached, or when their upstream
            // closes them; no sweep on the request path.)
            if s.is_ready() && since.elapsed() < IDLE_FOR {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<RequestBody>, max: usize) {
        let mut v = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if v.len() < max {
            v.push((sender, Instant::now()));
        }
    }
}

/// A connection in use by one response; [`Lease::release`] returns it to its upstream.
#[derive(Debug)]
pub(crate) struct Lease {
    sender: SendRequest<RequestBody>,
    idle: std::sync::Arc<Backend>,
    max: usize,
}

impl Lease {
    /// The response has been read to its end: the connection may serve another request.
    pub(crate) fn release(self) {
        let Self {
            mut sender,
            idle,
            max,
        } = self;
        if sender.is_closed() {
            return;
        }
        if sender.is_ready() {
            idle.idle.put(sender, max);
        } else {
            // The connection task has not yet seen the end of the message: wait for it
            // off the request path (rare: normally it is ready by the time the body ends).
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    idle.idle.put(sender, max);
                }
            });
        }
    }
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The request never left; here it is back.
    NotSent {
        req: Box<Request<RequestBody>>,
        why: String,
    },
    /// It failed after (part of) it was sent.
    Failed(hyper::Error),
}

/// Opens a connection (TCP, TLS for `https://` upstreams) within the connect timeout.
pub(crate) async fn connect_io(
    s: &Shared,
    base: &Uri,
) -> Result<<crate::service::Connector as tower_service::Service<Uri>>::Response, String> {
    let mut connector = s.connector.clone();
    let t = s.config.timeouts.upstream_connect;
    let io = tokio::time::timeout(t, async {
        std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut connector, cx)).await?;
        tower_service::Service::call(&mut connector, base.clone()).await
    })
    .await;
    match io {
        Ok(Ok(io)) => Ok(io),
        Ok(Err(e)) => Err(format!("cannot connect: {}", error_chain(e.as_ref()))),
        Err(_) => Err(format!("cannot connect: no answer within {t:?}")),
    }
}

async fn connect(s: &Shared, backend: &Backend) -> Result<SendRequest<RequestBody>, String> {
    let io = connect_io(s, &backend.base_uri).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| error_chain(&e))?;
    let upstream = backend.endpoint.to_string();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%upstream, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Sends `req` (origin-form URI) to `backend` on an idle connection or a new one.
pub(crate) async fn send(
    s: &Shared,
    backend: &std::sync::Arc<Backend>,
    mut req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Lease), SendError> {
    let max = s.config.pool_idle_per_upstream;
    let lease = |sender| Lease {
        sender,
        idle: std::sync::Arc::clone(backend),
        max,
    };
    while let Some(mut sender) = backend.idle.take() {
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, lease(sender))),
            Err(mut e) => match e.take_message() {
                // closed by the upstream while idle: try the next one
                Some(back) => req = back,
                None => return Err(SendError::Failed(e.into_error())),
            },
        }
    }
    // Boxed: opening a connection is the cold path, and its future is large; inline, every
    // request's future would carry (and copy) its size.
    let mut sender = match Box::pin(connect(s, backend)).await {
        Ok(sender) => sender,
        Err(why) => {
            return Err(SendError::NotSent {
                req: Box::new(req),
                why,
            });
        }
    };
    match sender.try_send_request(req).await {
        Ok(resp) => Ok((resp, lease(sender))),
        Err(mut e) => match e.take_message() {
            Some(back) => Err(SendError::NotSent {
                req: Box::new(back),
                why: format!("the new connection closed: {}", error_chain(e.error())),
            }),
            None => Err(SendError::Failed(e.into_error())),
        },
    }
}
