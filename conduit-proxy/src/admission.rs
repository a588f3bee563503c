//! Which client connections are served: a total and a per-client cap, and at the total cap
//! the cheapest connection to lose makes room for the new one: first one still in its TLS
//! handshake (the longest-waiting first), then the one whose last request is oldest (an
//! idle keep-alive connection closes at once; a busy one finishes its response first).
//! A connection over the per-client cap, or arriving when nothing can make room, is
//! closed at once: nothing waits in the kernel's backlog.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::future::Future;
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The shared counts of every listener of one proxy.
#[derive(Debug)]
pub(crate) struct Admission {
    max: usize,
    max_per_client: usize,
    /// One permit per open connection; `max` plus some slack for connections told to make
    /// room that have not closed yet. Shutdown waits for all of them.
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) total_permits: usize,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    /// A logical clock: each connection start and each request takes the next tick.
    clock: Arc<AtomicU64>,
}

/// What admission knows of one open connection.
#[derive(Debug)]
pub(crate) struct ConnState {
    id: u64,
    /// Still in the TLS handshake.
    handshaking: AtomicBool,
    /// The tick of its start or its latest request.
    last: AtomicU64,
    /// Told to close (to make room, or the proxy is stopping).
    pub(crate) closing: Closing,
    clock: Arc<AtomicU64>,
}

/// A connection told to close: a flag, and the waker of the connection's task (the one
/// task that waits for it). Polled at every wake-up of the connection, so it is a load and a
/// waker check, not a lock (a `Notify` and a `watch` there cost two locks per poll).
#[derive(Debug, Default)]
pub(crate) struct Closing {
    told: AtomicBool,
    waker: AtomicWaker,
}

impl Closing {
    /// Tells the connection to close (for good: it stays told).
    pub(crate) fn tell(&self) {
        self.told.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Completes once told; polled by the connection's own task only.
    pub(crate) fn told(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.told.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // Told between the check and the registration: the wake may have missed it.
            if self.told.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

impl ConnState {
    /// A request started on it.
    pub(crate) fn touch(&self) {
        self.last.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    /// Its TLS handshake is done.
    pub(crate) fn handshaken(&self) {
        self.handshaking.store(false, Ordering::Relaxed);
    }
}

/// An admitted connection; it gives its counts back when dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    client: IpAddr,
    pub(crate) state: Arc<ConnState>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let a = &self.admission;
        a.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.state.id);
        a.open.fetch_sub(1, Ordering::Relaxed);
        let mut m = a.per_client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// This client has its share already.
    PerClient,
    /// Full, and nothing could make room.
    Full,
}

impl Admission {
    pub(crate) fn new(max: usize, max_per_client: usize) -> Arc<Self> {
        let total_permits = max + (max / 16).max(16);
        Arc::new(Self {
            max,
            max_per_client,
            permits: Arc::new(Semaphore::new(total_permits)),
            total_permits,
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            clock: Arc::new(AtomicU64::new(1)),
        })
    }

    /// Tells every open connection to close (the proxy is stopping; no more are admitted).
    pub(crate) fn close_all(&self) {
        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        for c in conns.values() {
            c.closing.tell();
        }
    }

    /// More than three quarters of the cap open.
    pub(crate) fn under_pressure(&self) -> bool {
        self.open.load(Ordering::Relaxed) * 4 > self.max * 3
    }

    /// Admits a connection from `client`, making room when the cap is reached.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Refused> {
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mine = per_client.entry(client).or_default();
        if *mine >= self.max_per_client {
            return Err(Refused::PerClient);
        }
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if self.open.load(Ordering::Relaxed) >= self.max {
            // The cheapest to lose: a handshake that is taking longest, else the connection
            // whose last request is oldest.
            let victim = conns
                .values()
                .min_by_key(|c| {
                    (
                        !c.handshaking.load(Ordering::Relaxed),
                        c.last.load(Ordering::Relaxed),
                    )
                })
                .map(|c| c.id);
            if let Some(c) = victim.and_then(|id| conns.remove(&id)) {
                c.closing.tell();
            }
        }
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| Refused::Full)?;
        *mine += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let id = tick;
        let state = Arc::new(ConnState {
            id,
            handshaking: AtomicBool::new(true),
            last: AtomicU64::new(tick),
            closing: Closing::default(),
            clock: Arc::clone(&self.clock),
        });
        conns.insert(id, Arc::clone(&state));
        Ok(Admitted {
            admission: Arc::clone(self),
            client,
            state,
            _permit: permit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_make_room_first_then_the_oldest_idle() {
        let a = Admission::new(3, 2);
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = a.admit(x).unwrap();
        let second = a.admit(x).unwrap();
        assert_eq!(a.admit(x).err(), Some(Refused::PerClient));
        let third = a.admit(y).unwrap();
        first.state.handshaken();
        third.state.handshaken();
        // full: the one still handshaking (second) is told to go
        let _fourth = a.admit(y).unwrap();
        assert!(a.under_pressure());
        let told = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_millis(50),
                    second.state.closing.told(),
                )
                .await
                .is_ok()
            });
        assert!(told);
        drop(second);
    }
}
