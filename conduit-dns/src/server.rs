//! The server: its builder, its listeners (UDP threads in `udp`, TCP in `tcp`) around an
//! [`Authority`] kept current from the registry (`follow`), and the handle on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use conduit_registry::{Registry, Revision};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::authority::Authority;
use crate::bind::{bind_both, bind_tcp, bind_udp, udp_threads};
use crate::follow::{follow, load, next_serial};
use crate::forward::Forwarder;
use crate::shared::Shared;
use crate::stats::{Counters, DnsStats};
use crate::udp::udp_loop;
use crate::zone_config::ZoneConfig;
use crate::{Answer, DnsError, QueryType, Resolver};

/// A cheap, cloneable view of a running (or built) server: its current answers and counters.
#[derive(Debug, Clone)]
pub struct DnsHandle {
    shared: Arc<Shared>,
}

impl DnsHandle {
    /// Hides from each client the names of services `policy` does not let it reach (they
    /// get NXDOMAIN for every type), from the next query on; `None` shows every name.
    pub fn set_visibility(&self, policy: Option<Arc<conduit_registry::access::Evaluator>>) {
        self.shared.visibility.store(policy);
    }

    /// The current zone state.
    pub fn authority(&self) -> Arc<Authority> {
        self.shared.authority()
    }

    /// Each zone swapped in after a registry change (the latest only: a watcher that falls
    /// behind sees the newest).
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<Option<crate::ZoneReload>> {
        self.shared.reloads.subscribe()
    }

    /// The current SOA serial; it increases on every registry change.
    pub fn serial(&self) -> u32 {
        self.shared.authority().serial()
    }

    /// The counters so far.
    pub fn stats(&self) -> DnsStats {
        self.shared.counters.snapshot()
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
    udp_threads: usize,
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

    /// UDP threads per address, each with its own socket on it (`SO_REUSEPORT`: the kernel
    /// spreads queries over them). Default (and 0): one per core this process may run on,
    /// at most 8 — one for a server pinned to one core.
    pub fn udp_threads(mut self, threads: usize) -> Self {
        self.udp_threads = threads;
        self
    }

    /// Validates the configuration, loads the registry's active services and binds every
    /// listen address. Nothing is bound if the configuration is invalid.
    pub async fn bind(self) -> Result<DnsServer, DnsError> {
        self.config.validate()?;
        if self.listen.is_empty() {
            return Err(DnsError::InvalidSetting {
                key: "listen",
                problem: "needs at least one address",
            });
        }
        if self.forward_timeout.is_zero() {
            return Err(DnsError::InvalidSetting {
                key: "forward_timeout",
                problem: "must be above zero",
            });
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
        // Served at once; the follower precomputes the answers off the async threads.
        let authority = Authority::unanswered(&self.config, &services, next_serial(0), forwarding)?;
        let shared = Arc::new(Shared {
            authority: RwLock::new(Arc::new(authority)),
            forwarder: forwarding
                .then(|| Forwarder::new(self.forwarders.clone(), self.forward_timeout)),
            counters: Counters::default(),
            forwards: tokio_util::task::TaskTracker::new(),
            reloads: tokio::sync::watch::Sender::new(None),
            visibility: arc_swap::ArcSwapOption::empty(),
        });

        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let threads = udp_threads(self.udp_threads);
        for listen in &self.listen {
            match *listen {
                Listen::Udp(addr) => udp.extend(bind_udp(addr, threads)?),
                Listen::Tcp(addr) => tcp.push(bind_tcp(addr)?),
                Listen::Both(addr) => {
                    let (u, t) = bind_both(addr, threads)?;
                    udp.extend(u);
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
            udp_threads: 0,
        }
    }

    /// The bound UDP addresses (with the actual ports), each once however many threads
    /// serve it.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in self.udp.iter().filter_map(|s| s.local_addr().ok()) {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        addrs
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
        } else {
            let shared = Arc::clone(&self.shared);
            tasks.spawn(async move { crate::follow::answer(&shared).await });
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
