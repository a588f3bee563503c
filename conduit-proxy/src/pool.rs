//! Sending a request to an upstream within its connection cap: on an idle connection, a
//! new one in a free slot, or (with every slot taken) whichever comes first of a slot freed
//! and a connection coming back, for as long as a response may take to start. One busy
//! route thus never uses up the descriptors the others need.
//!
//! A request that never left (connect failed, or a pooled connection turned out to be
//! closed) is handed back intact, so it can go to another upstream even with a body.

use std::sync::Arc;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::conn::{Conn, Lease};
use crate::failure::UpstreamError;
use crate::request_body::RequestBody;
use crate::routes::Backend;
use crate::shared::{Connector, Shared};

/// Why a request got no response, and the request itself when it never left (so that
/// another upstream may take it).
#[derive(Debug)]
pub(crate) struct SendError {
    pub(crate) error: UpstreamError,
    /// The request, intact, when it never left.
    pub(crate) unsent: Option<Box<Request<RequestBody>>>,
}

impl SendError {
    fn unsent(error: UpstreamError, req: Request<RequestBody>) -> Self {
        Self {
            error,
            unsent: Some(Box::new(req)),
        }
    }

    fn after_send(e: hyper::Error) -> Self {
        Self {
            error: UpstreamError::after_send(e),
            unsent: None,
        }
    }
}

/// Opens a connection (TCP, TLS for `https://` upstreams) within the connect timeout.
pub(crate) async fn connect_io(
    s: &Shared,
    base: &Uri,
) -> Result<<Connector as tower_service::Service<Uri>>::Response, UpstreamError> {
    let mut connector = s.connector.clone();
    let t = s.config.timeouts.upstream_connect;
    let io = tokio::time::timeout(t, async {
        std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut connector, cx)).await?;
        tower_service::Service::call(&mut connector, base.clone()).await
    })
    .await;
    match io {
        Ok(Ok(io)) => Ok(io),
        Ok(Err(source)) => Err(UpstreamError::Connect { source }),
        Err(_) => Err(UpstreamError::ConnectTimeout { after: t }),
    }
}

/// Why no connection was opened.
enum Opened {
    /// Every slot stayed busy.
    Busy,
    /// Connecting failed.
    Failed(UpstreamError),
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
            // Another thread's idle connection before waiting; unusable ones give their
            // slots back.
            if let Some(conn) = idle.take_any() {
                return Ok(Got::Reused(conn));
            }
            idle.purge();
            let deadline = Instant::now() + s.config.timeouts.upstream_first_byte;
            loop {
                tokio::select! {
                    p = Arc::clone(&idle.slots).acquire_owned() => match p {
                        Ok(p) => break p,
                        Err(_) => return Err(Opened::Busy),
                    },
                    () = idle.returned.notified() => {
                        if let Some(conn) = idle.take_any() {
                            return Ok(Got::Reused(conn));
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => return Err(Opened::Busy),
                }
            }
        }
    };
    Ok(Got::New(Conn {
        sender: connect(s, backend, slot).await.map_err(Opened::Failed)?,
        thread: crate::workers::current(),
    }))
}

/// A new connection, holding `slot` until it is closed: its task (on this thread's runtime)
/// ends, and closes the socket, only after the last sender is gone, so a slot given back
/// by the sender alone would let another thread open one more before this one is closed.
async fn connect(
    s: &Shared,
    backend: &Backend,
    slot: OwnedSemaphorePermit,
) -> Result<SendRequest<RequestBody>, UpstreamError> {
    let io = connect_io(s, &backend.base_uri).await?;
    let (sender, conn) =
        http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::ClosedBeforeSend {
                source: Box::new(e),
            })?;
    let upstream = backend.endpoint.to_string();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%upstream, error = %e, "upstream connection ended with an error");
        }
        drop(slot);
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
    let lease = |conn| Lease::new(conn, Arc::clone(&backend.idle), max);
    loop {
        while let Some(mut conn) = backend.idle.take() {
            match conn.sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, lease(conn))),
                Err(mut e) => match e.take_message() {
                    // closed by the upstream while idle: try the next one
                    Some(back) => req = back,
                    None => return Err(SendError::after_send(e.into_error())),
                },
            }
        }
        // Boxed: waiting for a slot and opening a connection are the cold path, and their
        // futures are large; inline, every request's future would carry (and copy) their
        // size.
        let (mut conn, fresh) = match Box::pin(open(s, backend)).await {
            Ok(Got::New(conn)) => (conn, true),
            Ok(Got::Reused(conn)) => (conn, false),
            Err(Opened::Busy) => return Err(SendError::unsent(UpstreamError::Busy, req)),
            Err(Opened::Failed(error)) => return Err(SendError::unsent(error, req)),
        };
        match conn.sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, lease(conn))),
            Err(mut e) => match e.take_message() {
                // a returned connection closed meanwhile: look again
                Some(back) if !fresh => req = back,
                Some(back) => {
                    let error = UpstreamError::ClosedBeforeSend {
                        source: Box::new(e.into_error()),
                    };
                    return Err(SendError::unsent(error, back));
                }
                None => return Err(SendError::after_send(e.into_error())),
            },
        }
    }
}
