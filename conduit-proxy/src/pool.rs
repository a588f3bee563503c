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
//!
//! Each upstream has a cap on its connections, idle and busy (`max_conns_per_upstream`):
//! with every slot taken, a request (an HTTP/2 stream as much as an HTTP/1.1 request)
//! waits for a connection to come back or a slot to free, instead of opening one more. One
//! busy route thus never uses up the descriptors the others need.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

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

/// Connections open to one upstream at once, unless configured otherwise.
pub(crate) const DEFAULT_MAX_CONNS: usize = 256;

/// One connection to an upstream and its slot in the upstream's cap (given back when the
/// connection is dropped).
#[derive(Debug)]
struct Conn {
    sender: SendRequest<RequestBody>,
    _slot: OwnedSemaphorePermit,
}

/// An upstream's connections: the idle ones, most recently used last, and the cap on all
/// of them (idle and busy).
#[derive(Debug)]
pub(crate) struct Idle {
    senders: Mutex<Vec<(Conn, Instant)>>,
    slots: Arc<Semaphore>,
    /// A connection came back: a request waiting for a slot may take it instead.
    returned: Notify,
}

impl Idle {
    pub(crate) fn new(max_conns: usize) -> Self {
        Self {
            senders: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max_conns.max(1))),
            returned: Notify::new(),
        }
    }

    fn take(&self) -> Option<Conn> {
        let mut v = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((c, since)) = v.pop() {
            // (Older ones further down are dropped when reached, or when their upstream
            // closes them; no sweep on the request path.)
            if c.sender.is_ready() && since.elapsed() < IDLE_FOR {
                return Some(c);
            }
        }
        None
    }

    /// Drops the idle connections that can no longer be used (closed by their upstream,
    /// or kept too long), giving their slots back.
    fn purge(&self) {
        let mut v = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        v.retain(|(c, since)| c.sender.is_ready() && since.elapsed() < IDLE_FOR);
    }

    fn put(&self, conn: Conn, max: usize) {
        let mut v = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if v.len() < max {
            v.push((conn, Instant::now()));
            drop(v);
            self.returned.notify_one();
        }
    }
}

/// A connection in use by one response; [`Lease::release`] returns it to its upstream.
#[derive(Debug)]
pub(crate) struct Lease {
    conn: Conn,
    idle: Arc<Backend>,
    max: usize,
}

impl Lease {
    /// The response has been read to its end: the connection may serve another request.
    pub(crate) fn release(self) {
        let Self {
            mut conn,
            idle,
            max,
        } = self;
        if conn.sender.is_closed() {
            return;
        }
        if conn.sender.is_ready() {
            idle.idle.put(conn, max);
        } else {
            // The connection task has not yet seen the end of the message: wait for it
            // off the request path (rare: normally it is ready by the time the body ends).
            tokio::spawn(async move {
                if conn.sender.ready().await.is_ok() {
                    idle.idle.put(conn, max);
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
    /// Every connection the upstream may have was busy for as long as a response may take
    /// to start: the gateway's cap, not the upstream's failure. The request never left.
    Busy { req: Box<Request<RequestBody>> },
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

/// Why no connection was opened.
enum Opened {
    /// Every slot stayed busy.
    Busy,
    /// Connecting failed.
    Failed(String),
}

/// A connection for one request.
enum Got {
    /// Opened in a free slot.
    New(Conn),
    /// Another request's, come back while this one waited for a slot.
    Reused(Conn),
}

/// A connection within the upstream's cap: a new one in a free slot, or, with every slot
/// taken, whichever comes first of a slot freed and a connection coming back, for as long
/// as a response may take to start.
async fn open(s: &Shared, backend: &Backend) -> Result<Got, Opened> {
    let idle = &backend.idle;
    let slot = match Arc::clone(&idle.slots).try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            // Unusable idle connections give their slots back first.
            idle.purge();
            let deadline = Instant::now() + s.config.timeouts.upstream_first_byte;
            loop {
                tokio::select! {
                    p = Arc::clone(&idle.slots).acquire_owned() => match p {
                        Ok(p) => break p,
                        Err(_) => return Err(Opened::Busy),
                    },
                    () = idle.returned.notified() => {
                        if let Some(conn) = idle.take() {
                            return Ok(Got::Reused(conn));
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => return Err(Opened::Busy),
                }
            }
        }
    };
    Ok(Got::New(Conn {
        sender: connect(s, backend).await.map_err(Opened::Failed)?,
        _slot: slot,
    }))
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
    backend: &Arc<Backend>,
    mut req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Lease), SendError> {
    let max = s.config.pool_idle_per_upstream;
    let lease = |conn| Lease {
        conn,
        idle: Arc::clone(backend),
        max,
    };
    loop {
        while let Some(mut conn) = backend.idle.take() {
            match conn.sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, lease(conn))),
                Err(mut e) => match e.take_message() {
                    // closed by the upstream while idle: try the next one
                    Some(back) => req = back,
                    None => return Err(SendError::Failed(e.into_error())),
                },
            }
        }
        // Boxed: waiting for a slot and opening a connection are the cold path, and their
        // futures are large; inline, every request's future would carry (and copy) their
        // size.
        let (mut conn, fresh) = match Box::pin(open(s, backend)).await {
            Ok(Got::New(conn)) => (conn, true),
            Ok(Got::Reused(conn)) => (conn, false),
            Err(Opened::Busy) => return Err(SendError::Busy { req: Box::new(req) }),
            Err(Opened::Failed(why)) => {
                return Err(SendError::NotSent {
                    req: Box::new(req),
                    why,
                });
            }
        };
        match conn.sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, lease(conn))),
            Err(mut e) => match e.take_message() {
                // a returned connection closed meanwhile: look again
                Some(back) if !fresh => req = back,
                Some(back) => {
                    return Err(SendError::NotSent {
                        req: Box::new(back),
                        why: format!("the new connection closed: {}", error_chain(e.error())),
                    });
                }
                None => return Err(SendError::Failed(e.into_error())),
            },
        }
    }
}
