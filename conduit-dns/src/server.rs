//! The server: UDP and TCP listeners around an [`Authority`] kept current from the registry.

use std::future::Future;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conduit_registry::{ListFilter, Registry, Revision, ServiceRecord};
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, setsockopt,
    sockopt,
};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::authority::{Authority, Disposition, Transport};
use crate::forward::Forwarder;
use crate::zone::ZoneConfig;
use crate::{Answer, DnsError, QueryType, Resolver};

/// Datagrams read (and answers sent) per system call.
const BATCH: usize = 32;
/// Largest datagram read; bigger ones are truncated by the kernel and answered FORMERR.
const MAX_DATAGRAM: usize = 4096;
/// How often a UDP thread idle in `recvmmsg` checks for shutdown.
const UDP_POLL: Duration = Duration::from_millis(100);

/// Counters of a running server (all since start).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    udp_queries: AtomicU64,
    tcp_queries: AtomicU64,
    nxdomain: AtomicU64,
    refused: AtomicU64,
    formerr: AtomicU64,
    servfail: AtomicU64,
    truncated: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    rebuilds: AtomicU64,
}

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsStats {
    /// Queries received over UDP.
    pub udp_queries: u64,
    /// Queries received over TCP.
    pub tcp_queries: u64,
    /// Answers with NXDOMAIN.
    pub nxdomain: u64,
    /// Answers with REFUSED.
    pub refused: u64,
    /// Answers with FORMERR.
    pub formerr: u64,
    /// Answers with SERVFAIL.
    pub servfail: u64,
    /// UDP answers sent truncated (TC).
    pub truncated: u64,
    /// Queries forwarded to an upstream resolver.
    pub forwarded: u64,
    /// Packets dropped without an answer.
    pub dropped: u64,
    /// Zone rebuilds after registry changes.
    pub rebuilds: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    authority: RwLock<Arc<Authority>>,
    forwarder: Option<Forwarder>,
    pub(crate) counters: Counters,
    /// Forwarded UDP queries in flight (spawned from the UDP threads); waited for at
    /// shutdown.
    forwards: tokio_util::task::TaskTracker,
}

impl Shared {
    pub(crate) fn authority(&self) -> Arc<Authority> {
        match self.authority.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn install(&self, authority: Authority) {
        let authority = Arc::new(authority);
        match self.authority.write() {
            Ok(mut guard) => *guard = authority,
            Err(poisoned) => *poisoned.into_inner() = authority,
        }
    }
}

/// A cheap, cloneable view of a running (or built) server: its current answers and counters.
#[derive(Debug, Clone)]
pub struct DnsHandle {
    shared: Arc<Shared>,
}

impl DnsHandle {
    /// The current zone state.
    pub fn authority(&self) -> Arc<Authority> {
        self.shared.authority()
    }

    /// The current SOA serial; it increases on every registry change.
    pub fn serial(&self) -> u32 {
        self.shared.authority().serial()
    }

    /// The counters so far.
    pub fn stats(&self) -> DnsStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DnsStats {
            udp_queries: get(&c.udp_queries),
            tcp_queries: get(&c.tcp_queries),
            nxdomain: get(&c.nxdomain),
            refused: get(&c.refused),
            formerr: get(&c.formerr),
            servfail: get(&c.servfail),
            truncated: get(&c.truncated),
            forwarded: get(&c.forwarded),
            dropped: get(&c.dropped),
            rebuilds: get(&c.rebuilds),
        }
    }
}

impl Resolver for DnsHandle {
    fn resolve(&self, name: &conduit_registry::DomainName, qtype: QueryType) -> Answer {
        self.shared.authority().resolve(name, qtype)
    }
}

#[derive(Debug, Clone, Copy)]
enum Listen {
    Both(SocketAddr),
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

/// Builds a [`DnsServer`]: `DnsServer::builder().registry(r).listen(addr).bind().await?`.
#[derive(Debug)]
pub struct DnsServerBuilder {
    registry: Option<Arc<dyn Registry>>,
    config: ZoneConfig,
    listen: Vec<Listen>,
    forwarders: Vec<SocketAddr>,
    forward_timeout: Duration,
    tcp: crate::tcp::TcpSettings,
}

impl DnsServerBuilder {
    /// The registry whose active services are served, followed live.
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The zones and what they answer (default: zone `internal`, no advertised address).
    pub fn zones(mut self, config: ZoneConfig) -> Self {
        self.config = config;
        self
    }

    /// Listens on `addr` over UDP and TCP (port 0: one free port, the same for both).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen.push(Listen::Both(addr));
        self
    }

    /// Listens on `addr` over UDP only.
    pub fn listen_udp(mut self, addr: SocketAddr) -> Self {
        self.listen.push(Listen::Udp(addr));
        self
    }

    /// Listens on `addr` over TCP only.
    pub fn listen_tcp(mut self, addr: SocketAddr) -> Self {
        self.listen.push(Listen::Tcp(addr));
        self
    }

    /// Forwards names outside the zones to these resolvers, in order, instead of refusing
    /// them. Names inside the zones are never forwarded.
    pub fn forwarders(mut self, upstreams: Vec<SocketAddr>) -> Self {
        self.forwarders = upstreams;
        self
    }

    /// How long to wait for each forwarding resolver (default 2 s).
    pub fn forward_timeout(mut self, timeout: Duration) -> Self {
        self.forward_timeout = timeout;
        self
    }

    /// How long an idle TCP connection is kept (default 10 s).
    pub fn tcp_idle_timeout(mut self, timeout: Duration) -> Self {
        self.tcp.idle_timeout = timeout;
        self
    }

    /// The most TCP connections served at once (default 512).
    pub fn max_tcp_connections(mut self, max: usize) -> Self {
        self.tcp.max_connections = max.max(1);
        self
    }

    /// Every TCP limit at once (see [`TcpSettings`](crate::TcpSettings)).
    pub fn tcp_settings(mut self, settings: crate::tcp::TcpSettings) -> Self {
        self.tcp = settings;
        self
    }

    /// Validates the configuration, loads the registry's active services and binds every
    /// listen address. Nothing is bound if the configuration is invalid.
    pub async fn bind(self) -> Result<DnsServer, DnsError> {
        self.config.validate()?;
        if self.listen.is_empty() {
            return Err(DnsError::Config("no listen address".into()));
        }
        if self.forward_timeout.is_zero() {
            return Err(DnsError::Config(
                "forward timeout must be above zero".into(),
            ));
        }
        for zone in self.config.zones() {
            if zone.is_mdns() {
                tracing::warn!(%zone, "zone .local clashes with mDNS (multi-second lookups on macOS); prefer .internal");
            }
        }
        let (services, revision) = match &self.registry {
            Some(registry) => load(registry.as_ref()).await?,
            None => (Vec::new(), Revision::default()),
        };
        let forwarding = !self.forwarders.is_empty();
        let authority = Authority::build(&self.config, &services, next_serial(0), forwarding)?;
        let shared = Arc::new(Shared {
            authority: RwLock::new(Arc::new(authority)),
            forwarder: forwarding
                .then(|| Forwarder::new(self.forwarders.clone(), self.forward_timeout)),
            counters: Counters::default(),
            forwards: tokio_util::task::TaskTracker::new(),
        });

        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for listen in &self.listen {
            match *listen {
                Listen::Udp(addr) => udp.push(bind_udp(addr)?),
                Listen::Tcp(addr) => tcp.push(bind_tcp(addr)?),
                Listen::Both(addr) => {
                    let (u, t) = bind_both(addr)?;
                    udp.push(u);
                    tcp.push(t);
                }
            }
        }
        Ok(DnsServer {
            udp,
            tcp,
            shared,
            registry: self.registry,
            config: self.config,
            revision,
            tcp_settings: self.tcp,
        })
    }
}

async fn load(registry: &dyn Registry) -> Result<(Vec<Arc<ServiceRecord>>, Revision), DnsError> {
    // The revision first: a change between the two calls is then seen again by the watch.
    let revision = registry.revision().await.map_err(DnsError::Registry)?;
    let services = registry
        .list(ListFilter::Active)
        .await
        .map_err(DnsError::Registry)?;
    Ok((services, revision))
}

/// A SOA serial that always increases: one more than the last, or the time in seconds when
/// that is larger (so it also increases across restarts).
fn next_serial(previous: u32) -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0);
    previous.wrapping_add(1).max(now)
}

fn bind_error(addr: SocketAddr) -> impl FnOnce(std::io::Error) -> DnsError {
    move |source| DnsError::Bind { addr, source }
}

fn bind_udp(addr: SocketAddr) -> Result<std::net::UdpSocket, DnsError> {
    let socket = std::net::UdpSocket::bind(addr).map_err(bind_error(addr))?;
    // Room for bursts: the kernel caps this at net.core.rmem_max.
    if let Err(e) = setsockopt(&socket, sockopt::RcvBuf, &(4 << 20)) {
        tracing::debug!(%addr, error = %e, "cannot raise the receive buffer");
    }
    // Blocking, with a timeout so that the UDP thread sees a shutdown.
    socket
        .set_read_timeout(Some(UDP_POLL))
        .map_err(bind_error(addr))?;
    Ok(socket)
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, DnsError> {
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error(addr))?;
    listener.set_nonblocking(true).map_err(bind_error(addr))?;
    TcpListener::from_std(listener).map_err(bind_error(addr))
}

fn bind_both(addr: SocketAddr) -> Result<(std::net::UdpSocket, TcpListener), DnsError> {
    if addr.port() != 0 {
        return Ok((bind_udp(addr)?, bind_tcp(addr)?));
    }
    // Port 0: take a free UDP port, then the same TCP port; retry if TCP's is taken.
    let mut last = None;
    for _ in 0..16 {
        let udp = bind_udp(addr)?;
        let actual = udp.local_addr().map_err(bind_error(addr))?;
        match bind_tcp(actual) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| DnsError::Config(format!("no free port on {addr}"))))
}

/// An authoritative DNS server for the registry's names; see the crate documentation.
#[derive(Debug)]
pub struct DnsServer {
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<TcpListener>,
    shared: Arc<Shared>,
    registry: Option<Arc<dyn Registry>>,
    config: ZoneConfig,
    revision: Revision,
    tcp_settings: crate::tcp::TcpSettings,
}

impl DnsServer {
    /// A builder with the defaults: zone `internal`, no listen address, no registry
    /// (an empty zone), no forwarding.
    pub fn builder() -> DnsServerBuilder {
        DnsServerBuilder {
            registry: None,
            config: ZoneConfig::default(),
            listen: Vec::new(),
            forwarders: Vec::new(),
            forward_timeout: Duration::from_secs(2),
            tcp: crate::tcp::TcpSettings::default(),
        }
    }

    /// The bound UDP addresses (with the actual ports).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// The bound TCP addresses (with the actual ports).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// A handle to the answers and counters, usable while the server runs.
    pub fn handle(&self) -> DnsHandle {
        DnsHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves until `shutdown` completes, following the registry: every change is answered
    /// as soon as the zone is rebuilt (milliseconds), with a higher serial. If the registry
    /// goes away the last state keeps being served.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DnsError> {
        let mut tasks = JoinSet::new();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for socket in self.udp {
            let (shared, runtime, thread_stop) = (
                Arc::clone(&self.shared),
                tokio::runtime::Handle::current(),
                Arc::clone(&stop),
            );
            let spawned = std::thread::Builder::new()
                .name("conduit-dns-udp".into())
                .spawn(move || udp_loop(socket, shared, runtime, thread_stop));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(DnsError::Thread(e));
                }
            }
        }
        let limits = Arc::new(crate::tcp::TcpLimits::new(self.tcp_settings));
        for listener in self.tcp {
            tasks.spawn(crate::tcp::accept_loop(
                listener,
                Arc::clone(&self.shared),
                Arc::clone(&limits),
            ));
        }
        if let Some(registry) = self.registry {
            tasks.spawn(follow(
                registry,
                self.config,
                Arc::clone(&self.shared),
                self.revision,
            ));
        }
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(done) = tasks.join_next() => {
                    if let Err(e) = done && e.is_panic() {
                        tracing::error!(error = %e, "a DNS server task panicked");
                    }
                    if tasks.is_empty() {
                        break;
                    }
                }
            }
        }
        // The accept loops own their connections (a JoinSet each): aborting them closes
        // every TCP connection.
        tasks.shutdown().await;
        stop.store(true, Ordering::Relaxed);
        // Forwarded queries end within the forwarder's timeout.
        self.shared.forwards.close();
        if tokio::time::timeout(Duration::from_secs(10), self.shared.forwards.wait())
            .await
            .is_err()
        {
            tracing::warn!("forwarded DNS queries still running at shutdown");
        }
        // The UDP threads notice within UDP_POLL.
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a DNS UDP thread panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("cannot join the DNS UDP threads");
        }
        Ok(())
    }
}

/// Rebuilds the zone on every registry change (the registry's one follow loop) and swaps it
/// in.
async fn follow(
    registry: Arc<dyn Registry>,
    config: ZoneConfig,
    shared: Arc<Shared>,
    since: Revision,
) {
    let mut follower = conduit_registry::RegistryFollower::new(registry, since, "DNS zone");
    while let Some(services) = follower.next().await {
        rebuild(&config, &shared, services).await;
    }
}

async fn rebuild(config: &ZoneConfig, shared: &Arc<Shared>, services: Vec<Arc<ServiceRecord>>) {
    let previous = shared.authority().serial();
    let forwarding = shared.forwarder.is_some();
    let cfg = config.clone();
    let built = tokio::task::spawn_blocking(move || {
        Authority::build(&cfg, &services, next_serial(previous), forwarding)
    })
    .await;
    match built {
        Ok(Ok(authority)) => {
            tracing::debug!(
                serial = authority.serial(),
                names = authority.name_count(),
                "zone rebuilt"
            );
            shared.install(authority);
            shared.counters.rebuilds.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot rebuild the zone; serving the last state")
        }
        Err(e) => {
            tracing::warn!(error = %e, "zone rebuild task failed; serving the last state")
        }
    }
}

fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// One UDP socket on its own thread: block in `recvmmsg` until at least one datagram is
/// there, take up to [`BATCH`], answer them, send the answers with one `sendmmsg`. A thread
/// (rather than a task) wakes straight from the kernel, without an event loop in between,
/// which is what the latency and per-core targets need. It checks `stop` at least every
/// [`UDP_POLL`].
fn udp_loop(
    socket: std::net::UdpSocket,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) {
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; MAX_DATAGRAM]; BATCH];
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut received: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    let mut replies: Vec<(usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
    let mut counts = LocalCounts::new(Transport::Udp);
    while !stop.load(Ordering::Relaxed) {
        received.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(
                fd,
                &mut recv_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => received.extend(results.map(|m| (m.bytes, m.address))),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    continue;
                }
            }
        }
        let authority = shared.authority();
        replies.clear();
        for (i, &(len, addr)) in received.iter().enumerate() {
            let Some(addr) = addr else { continue };
            let packet = &bufs[i][..len];
            match authority.respond(packet, Transport::Udp, &mut outs[i]) {
                Disposition::Reply => {
                    counts.add(&outs[i]);
                    replies.push((i, addr));
                }
                Disposition::Drop => counts.dropped += 1,
                Disposition::Forward => {
                    counts.queries += 1;
                    if let Some(peer) = to_socket_addr(&addr) {
                        spawn_forward(&runtime, &shared, &socket, packet.to_vec(), peer);
                    }
                }
            }
        }
        counts.flush(&shared.counters);
        let mut sent = 0;
        while sent < replies.len() {
            let pending = &replies[sent..];
            let iovs: Vec<[IoSlice<'_>; 1]> = pending
                .iter()
                .map(|(i, _)| [IoSlice::new(&outs[*i])])
                .collect();
            let addrs: Vec<Option<SockaddrStorage>> =
                pending.iter().map(|(_, a)| Some(*a)).collect();
            let cmsgs: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                fd,
                &mut send_headers,
                &iovs,
                &addrs,
                cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(results) => sent += results.count().max(1),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    // This destination failed (unreachable, filtered); skip it.
                    tracing::debug!(error = %e, "UDP send failed");
                    sent += 1;
                }
            }
        }
    }
}

/// Counters kept by one UDP thread or TCP connection and added to the shared ones in one
/// go (per UDP batch, per TCP query).
#[derive(Debug)]
pub(crate) struct LocalCounts {
    transport: Transport,
    pub(crate) queries: u64,
    nxdomain: u64,
    refused: u64,
    formerr: u64,
    servfail: u64,
    truncated: u64,
    pub(crate) dropped: u64,
}

impl LocalCounts {
    pub(crate) fn new(transport: Transport) -> Self {
        Self {
            transport,
            queries: 0,
            nxdomain: 0,
            refused: 0,
            formerr: 0,
            servfail: 0,
            truncated: 0,
            dropped: 0,
        }
    }

    /// Counts one query answered with `response` (its rcode and TC bit).
    pub(crate) fn add(&mut self, response: &[u8]) {
        self.queries += 1;
        if response.len() < 4 {
            return;
        }
        self.truncated += u64::from(response[2] & 0x02 != 0);
        match response[3] & 0x0f {
            1 => self.formerr += 1,
            2 => self.servfail += 1,
            3 => self.nxdomain += 1,
            5 => self.refused += 1,
            _ => {}
        }
    }

    pub(crate) fn flush(&mut self, c: &Counters) {
        let queries = match self.transport {
            Transport::Udp => &c.udp_queries,
            Transport::Tcp => &c.tcp_queries,
        };
        let pairs = [
            (queries, self.queries),
            (&c.nxdomain, self.nxdomain),
            (&c.refused, self.refused),
            (&c.formerr, self.formerr),
            (&c.servfail, self.servfail),
            (&c.truncated, self.truncated),
            (&c.dropped, self.dropped),
        ];
        for (counter, n) in pairs {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        *self = Self::new(self.transport);
    }
}

fn spawn_forward(
    runtime: &tokio::runtime::Handle,
    shared: &Arc<Shared>,
    socket: &Arc<std::net::UdpSocket>,
    query: Vec<u8>,
    peer: SocketAddr,
) {
    let shared = Arc::clone(shared);
    let socket = Arc::clone(socket);
    shared.forwards.clone().spawn_on(
        async move {
            let mut response = forward_or_servfail(&shared, &query).await;
            if response_needs_truncation(&query, response.len()) {
                let mut truncated = Vec::new();
                crate::authority::truncated_copy(&query, &response, &mut truncated);
                response = truncated;
            }
            // The socket is in blocking mode (it belongs to the UDP thread): send from a
            // blocking-pool thread, never from the async one.
            let sent = tokio::task::spawn_blocking(move || socket.send_to(&response, peer)).await;
            if let Ok(Err(e)) = sent {
                tracing::debug!(%peer, error = %e, "cannot send a forwarded answer");
            }
        },
        runtime,
    );
}

/// Whether a forwarded answer of `len` bytes is too big for the client's UDP limit.
fn response_needs_truncation(query: &[u8], len: usize) -> bool {
    len > crate::authority::udp_limit_of(query)
}

pub(crate) async fn forward_or_servfail(shared: &Shared, query: &[u8]) -> Vec<u8> {
    shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    let answer = match &shared.forwarder {
        Some(forwarder) => forwarder.forward(query).await,
        None => None,
    };
    answer.unwrap_or_else(|| {
        shared.counters.servfail.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        crate::authority::servfail(query, &mut out);
        out
    })
}
