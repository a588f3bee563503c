//! Keep-alive connections to one upstream: a small LIFO stack of idle HTTP/1.1 connections
//! per serving thread and the cap on all of them (idle and busy), with no per-request task
//! and no shared map on the request path. The response body carries its connection
//! ([`Lease`]) until it ends: then the connection goes back on its stack. A body that does
//! not end (the client left) drops the connection, which closes it: the upstream stops
//! generating.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::request_body::RequestBody;

/// How long an idle connection is kept for reuse (the upstream may close it sooner: nginx
/// after 60 s, Go servers after 90 s; one found closed is skipped).
const IDLE_FOR: Duration = Duration::from_secs(90);

/// Connections open to one upstream at once, unless configured otherwise.
pub(crate) const DEFAULT_MAX_CONNS: usize = 256;

/// One connection to an upstream (its task holds its slot in the upstream's cap until the
/// connection is closed, which dropping this starts).
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) sender: SendRequest<RequestBody>,
    /// The serving thread whose runtime drives it (see `crate::workers`).
    pub(crate) thread: usize,
}

/// Idle connections, most recently used last.
type Stack = Mutex<Vec<(Conn, Instant)>>;

/// An upstream's connections: the idle ones, one stack per serving thread (a connection
/// is driven by the runtime that opened it, so a request takes one of its own thread's),
/// and the cap on all of them (idle and busy).
#[derive(Debug)]
pub(crate) struct Idle {
    stacks: Box<[Stack]>,
    pub(crate) slots: Arc<Semaphore>,
    /// A connection came back: a request waiting for a slot may take it instead.
    pub(crate) returned: Notify,
}

fn usable(c: &Conn, since: Instant) -> bool {
    c.sender.is_ready() && since.elapsed() < IDLE_FOR
}

/// The most recently used connection of `stack` that can still be used; the unusable ones
/// above it go (older ones further down are dropped when reached, or when their upstream
/// closes them; no sweep on the request path).
fn pop(stack: &Stack) -> Option<Conn> {
    let mut v = stack.lock().unwrap_or_else(PoisonError::into_inner);
    while let Some((c, since)) = v.pop() {
        if usable(&c, since) {
            return Some(c);
        }
    }
    None
}

impl Idle {
    pub(crate) fn new(max_conns: usize, threads: usize) -> Self {
        Self {
            stacks: (0..threads.max(1)).map(|_| Stack::default()).collect(),
            slots: Arc::new(Semaphore::new(max_conns.max(1))),
            returned: Notify::new(),
        }
    }

    fn stack(&self, thread: usize) -> &Stack {
        &self.stacks[thread % self.stacks.len()]
    }

    /// An idle connection of this thread's.
    pub(crate) fn take(&self) -> Option<Conn> {
        pop(self.stack(crate::workers::current()))
    }

    /// An idle connection of this thread's or, when it has none, of another thread's (with
    /// every slot taken, better than waiting).
    pub(crate) fn take_any(&self) -> Option<Conn> {
        let here = crate::workers::current() % self.stacks.len();
        let n = self.stacks.len();
        (0..n).find_map(|k| pop(&self.stacks[(here + k) % n]))
    }

    /// Drops the idle connections that can no longer be used (closed by their upstream,
    /// or kept too long); their slots come back as they close.
    pub(crate) fn purge(&self) {
        for stack in &self.stacks {
            let mut v = stack.lock().unwrap_or_else(PoisonError::into_inner);
            v.retain(|(c, since)| usable(c, *since));
        }
    }

    fn put(&self, conn: Conn, max: usize) {
        let mut v = self
            .stack(conn.thread)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
    idle: Arc<Idle>,
    max: usize,
}

impl Lease {
    /// `conn`, to go back to `idle` (which keeps at most `max` idle) when released.
    pub(crate) fn new(conn: Conn, idle: Arc<Idle>, max: usize) -> Self {
        Self { conn, idle, max }
    }

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
            idle.put(conn, max);
        } else {
            // The connection task has not yet seen the end of the message: wait for it
            // off the request path (rare: normally it is ready by the time the body ends).
            tokio::spawn(async move {
                if conn.sender.ready().await.is_ok() {
                    idle.put(conn, max);
                }
            });
        }
    }
}
