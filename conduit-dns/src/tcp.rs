//! DNS over TCP (RFC 7766) that a crowd of slow or idle clients cannot starve: a total and
//! a per-client connection cap, a lifetime and a query cap per connection, and, when the
//! server is busy, idle connections closed first (their idle allowance shrinks).
//!
//! A connection over the per-client cap is accepted and closed at once, so that the
//! kernel's backlog never fills with connections nobody serves. At the total cap, the
//! connection silent for longest makes room for the new one (RFC 7766 §6.2.3); only when
//! every connection is busy is the new one refused.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::shared::{Shared, forward_or_servfail};
use crate::stats::LocalCounts;
use crate::wire::{Disposition, Transport};

/// Limits of DNS over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpSettings {
    /// How long a connection may stay silent (default 10 s).
    pub idle_timeout: Duration,
    /// How long it may stay silent when more than half of `max_connections` are open
    /// (default 1 s): idle connections make room first.
    pub busy_idle_timeout: Duration,
    /// Connections open at once (default 512).
    pub max_connections: usize,
    /// Connections open at once from one client address (default 16).
    pub max_per_client: usize,
    /// How long one connection may live, however busy (default 2 min).
    pub max_lifetime: Duration,
    /// Queries answered on one connection before it is closed (default 10,000).
    pub max_queries: u32,
}

impl Default for TcpSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            busy_idle_timeout: Duration::from_secs(1),
            max_connections: 512,
            max_per_client: 16,
            max_lifetime: Duration::from_secs(120),
            max_queries: 10_000,
        }
    }
}

/// The connection counts shared by every TCP listener of one server.
#[derive(Debug)]
pub(crate) struct TcpLimits {
    settings: TcpSettings,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    /// Every open connection, to find the one silent for longest.
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    epoch: Instant,
}

/// What the server knows of one open connection.
#[derive(Debug)]
struct ConnState {
    /// When it last finished an answer (or opened), in ms since the server's epoch.
    quiet_since_ms: AtomicU64,
    /// Told to close (to make room).
    evict: Notify,
}

/// One admitted connection; its counts are given back when it is dropped.
struct Admitted {
    limits: Arc<TcpLimits>,
    client: IpAddr,
    id: u64,
    state: Arc<ConnState>,
}

impl Admitted {
    fn quiet_from_now(&self) {
        self.state
            .quiet_since_ms
            .store(self.limits.now_ms(), Ordering::Relaxed);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.limits
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
        let mut m = self
            .limits
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

impl TcpLimits {
    pub(crate) fn new(settings: TcpSettings) -> Self {
        Self {
            settings,
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Admits a connection from `client`, or says which cap it is over. At the total cap
    /// the connection silent for longest (at least 100 ms) is told to close instead.
    fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, &'static str> {
        let mut m = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mine = m.entry(client).or_default();
        if *mine >= self.settings.max_per_client {
            return Err("per-client connection cap");
        }
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if self.open.load(Ordering::Relaxed) >= self.settings.max_connections {
            let now = self.now_ms();
            let quietest = conns
                .iter()
                .map(|(id, c)| (*id, c.quiet_since_ms.load(Ordering::Relaxed)))
                .filter(|(_, since)| now.saturating_sub(*since) >= 100)
                .min_by_key(|(_, since)| *since);
            let Some((victim, _)) = quietest else {
                return Err("connection cap (every connection busy)");
            };
            if let Some(c) = conns.remove(&victim) {
                c.evict.notify_one();
            }
        }
        *mine += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            quiet_since_ms: AtomicU64::new(self.now_ms()),
            evict: Notify::new(),
        });
        conns.insert(id, Arc::clone(&state));
        Ok(Admitted {
            limits: Arc::clone(self),
            client,
            id,
            state,
        })
    }

    /// The silence allowed now: shorter while the server is busy.
    fn idle_allowance(&self) -> Duration {
        if self.open.load(Ordering::Relaxed) * 2 > self.settings.max_connections {
            self.settings
                .busy_idle_timeout
                .min(self.settings.idle_timeout)
        } else {
            self.settings.idle_timeout
        }
    }
}

/// Accepts connections until aborted; the connections are owned by this loop (aborting it
/// closes them).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: Arc<TcpLimits>,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::debug!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = match limits.admit(peer.ip().to_canonical()) {
            Ok(a) => a,
            Err(cap) => {
                tracing::debug!(%peer, cap, "DNS TCP connection refused");
                drop(stream);
                continue;
            }
        };
        let (shared, limits) = (Arc::clone(&shared), Arc::clone(&limits));
        connections.spawn(async move {
            if let Err(e) = connection(stream, peer, &shared, &limits, &admitted).await {
                tracing::debug!(%peer, error = %e, "TCP connection ended");
            }
            drop(admitted);
        });
    }
}

/// Length-prefixed queries on one connection, answered in order, until the client closes,
/// stays silent past its allowance, or reaches the lifetime or query cap.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    limits: &TcpLimits,
    me: &Admitted,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let settings = limits.settings;
    let born = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    let mut counts = LocalCounts::new(Transport::Tcp);
    let mut answered: u32 = 0;
    let mut quiet_since = Instant::now();
    loop {
        // A whole message in the buffer?
        if buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if buf.len() >= 2 + len {
                let query: Vec<u8> = buf.drain(..2 + len).skip(2).collect();
                answer(&mut stream, peer, shared, &query, &mut out, &mut counts).await?;
                answered += 1;
                quiet_since = Instant::now();
                me.quiet_from_now();
                if answered >= settings.max_queries {
                    tracing::debug!(%peer, answered, "DNS TCP query cap reached");
                    return Ok(());
                }
                continue;
            }
        }
        if born.elapsed() >= settings.max_lifetime {
            tracing::debug!(%peer, "DNS TCP connection lifetime reached");
            return Ok(());
        }
        // Read in short slices so that a connection that became idle while the server got
        // busy is closed by the shorter allowance, not the one it started with.
        let slice = Duration::from_millis(250);
        let read = tokio::select! {
            r = tokio::time::timeout(slice, stream.read_buf(&mut buf)) => r,
            () = me.state.evict.notified() => {
                tracing::debug!(%peer, "idle DNS TCP connection closed to make room");
                return Ok(());
            }
        };
        match read {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                if quiet_since.elapsed() >= limits.idle_allowance() {
                    return Ok(());
                }
            }
        }
    }
}

async fn answer(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    query: &[u8],
    out: &mut Vec<u8>,
    counts: &mut LocalCounts,
) -> std::io::Result<()> {
    let authority = shared.authority();
    let disposition = match &*shared.visibility.load() {
        Some(policy) => authority.respond_to(peer.ip(), policy, query, Transport::Tcp, out),
        None => authority.respond(query, Transport::Tcp, out),
    };
    match disposition {
        Disposition::Reply => counts.add(out),
        Disposition::Drop => counts.dropped += 1,
        Disposition::Forward => counts.queries += 1,
    }
    counts.flush(&shared.counters);
    let forwarded;
    let response: &[u8] = match disposition {
        Disposition::Reply => out,
        Disposition::Drop => return Ok(()),
        Disposition::Forward => {
            forwarded = forward_or_servfail(shared, query).await;
            &forwarded
        }
    };
    let Ok(n) = u16::try_from(response.len()) else {
        return Ok(());
    };
    let mut framed = Vec::with_capacity(response.len() + 2);
    framed.extend_from_slice(&n.to_be_bytes());
    framed.extend_from_slice(response);
    stream.write_all(&framed).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_client_and_in_all() {
        let limits = Arc::new(TcpLimits::new(TcpSettings {
            max_connections: 3,
            max_per_client: 2,
            ..TcpSettings::default()
        }));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some("per-client connection cap"));
        let _b1 = limits.admit(b).unwrap();
        // full, and nobody silent for 100 ms yet: refused
        assert_eq!(
            limits.admit(b).err(),
            Some("connection cap (every connection busy)")
        );
        // busy (3 of 3 open): the short allowance
        assert_eq!(limits.idle_allowance(), Duration::from_secs(1));
        drop(a1);
        let _b2 = limits.admit(b).unwrap();
    }
}
