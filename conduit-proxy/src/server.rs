//! The server: its builder, binding, TLS settings, the route table built from the registry
//! and kept current (the registry's one follow loop), and graceful shutdown. Client
//! connections are in `listener`, the handle in `handle`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use conduit_registry::{Endpoint, ListFilter, Registry, Revision};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::server::ResolvesServerCert;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_rustls::TlsAcceptor;

use crate::ProxyError;
use crate::config::ProxyConfig;
use crate::handle::ProxyHandle;
use crate::health::Checkers;
use crate::listener::{Accept, accept_loop, h1_builder, h2_builder};
use crate::metrics::Counters;
use crate::routes::RouteTable;
use crate::service::ProxyService;
use crate::shared::{ConnInfo, Connector, Shared};
use crate::ssrf::GuardedResolver;
use crate::tls::TlsBase;
use crate::workers::Workers;

/// Builds a [`ProxyServer`].
#[derive(Default)]
pub struct ProxyServerBuilder {
    registry: Option<Arc<dyn Registry>>,
    certs: Option<Arc<dyn ResolvesServerCert>>,
    https: Vec<SocketAddr>,
    http: Vec<SocketAddr>,
    config: ProxyConfig,
}

impl std::fmt::Debug for ProxyServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyServerBuilder")
            .field("https", &self.https)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl ProxyServerBuilder {
    /// Where routes come from (required).
    #[must_use]
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Certificates by SNI (required with an HTTPS listener); swapping what it returns
    /// changes certificates without a restart. `conduit_ca::CertResolver` is one.
    #[must_use]
    pub fn certificates(mut self, certs: Arc<dyn ResolvesServerCert>) -> Self {
        self.certs = Some(certs);
        self
    }

    /// An HTTPS listener (any number; port 0 picks a free one).
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.https.push(addr);
        self
    }

    /// A plain-HTTP listener: services registered without TLS are served on it; requests
    /// for TLS services are redirected (308) to HTTPS; unknown names get 404.
    #[must_use]
    pub fn listen_http(mut self, addr: SocketAddr) -> Self {
        self.http.push(addr);
        self
    }

    /// The former name of [`listen_http`](Self::listen_http).
    #[must_use]
    pub fn listen_http_redirect(self, addr: SocketAddr) -> Self {
        self.listen_http(addr)
    }

    /// The configuration (default [`ProxyConfig::default`]).
    #[must_use]
    pub fn config(mut self, config: ProxyConfig) -> Self {
        self.config = config;
        self
    }

    /// Validates, reads the registry's routes and binds every listener.
    ///
    /// # Errors
    /// [`ProxyError::InvalidSetting`], [`ProxyError::Missing`] (no registry, listener or
    /// certificates),
    /// [`ProxyError::Bind`], [`ProxyError::Registry`], [`ProxyError::Tls`].
    pub async fn bind(self) -> Result<ProxyServer, ProxyError> {
        let config = self.config;
        config.validate()?;
        let registry = self.registry.ok_or(ProxyError::Missing {
            what: "a registry (ProxyServerBuilder::registry)",
        })?;
        if self.https.is_empty() && self.http.is_empty() {
            return Err(ProxyError::Missing {
                what: "a listener (ProxyServerBuilder::listen or listen_http)",
            });
        }
        let acceptor = match (self.https.is_empty(), self.certs) {
            (true, _) => None,
            (false, None) => {
                return Err(ProxyError::Missing {
                    what: "a certificate resolver for its HTTPS listener (ProxyServerBuilder::certificates)",
                });
            }
            (false, Some(certs)) => Some(TlsBase::new(&config, certs)?),
        };
        let since = registry.revision().await?;
        let services = registry.list(ListFilter::Active).await?;
        let mut shared = shared(config, &services)?;
        let acceptor = acceptor.map(|base| {
            let acceptor = TlsAcceptor::from(Arc::clone(&base.config));
            if let Some(s) = Arc::get_mut(&mut shared) {
                s.tls = Some(base);
            }
            acceptor
        });
        let mut https = Vec::new();
        for addr in self.https {
            https.push(bind(addr).await?);
        }
        let mut http = Vec::new();
        for addr in self.http {
            http.push(bind(addr).await?);
        }
        Ok(ProxyServer {
            shared,
            registry,
            since,
            acceptor,
            https,
            http,
        })
    }
}

/// The state every connection shares, with the routes of `services`.
pub(crate) fn shared(
    config: ProxyConfig,
    services: &[Arc<conduit_registry::ServiceRecord>],
) -> Result<Arc<Shared>, ProxyError> {
    let mut config = config;
    // Resolved once: every part sized by it (the counters, each upstream's idle stacks)
    // agrees with the threads `run` starts.
    config.threads = crate::workers::count(config.threads);
    let connector = connector(&config)?;
    let (table, _) = build_table(
        &RouteTable::default(),
        services,
        &config,
        config.ssrf.as_deref(),
    );
    let (health_tx, _) = broadcast::channel(1024);
    Ok(Arc::new(Shared {
        routes: ArcSwap::from_pointee(table),
        connector,
        counters: Arc::new(Counters::new(config.threads)),
        health_tx,
        tunnels: watch::channel(0).0,
        published: crate::published::Published::default(),
        access: arc_swap::ArcSwapOption::empty(),
        access_tx: broadcast::channel(1024).0,
        tls: None,
        local: arc_swap::ArcSwapOption::empty(),
        hsts: config
            .hsts
            .and_then(|d| http::HeaderValue::from_str(&format!("max-age={}", d.as_secs())).ok()),
        config,
    }))
}

/// Serves `bytes` as one client connection (HTTP/1.1, or HTTP/2 after its preface) to a
/// proxy with one route whose upstream is down, and returns what the proxy wrote back.
pub(crate) async fn serve_bytes(bytes: &[u8], h2: bool) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (Ok(name), Ok(ep)) = (
        conduit_registry::ServiceName::new("svc"),
        Endpoint::from_socket_addr(([127, 0, 0, 1], 9).into()),
    ) else {
        return Vec::new();
    };
    let rec = conduit_registry::ServiceRecord::new(name, ep);
    let mut config = ProxyConfig::default();
    config.timeouts.header_read = Duration::from_millis(200);
    let Ok(shared) = shared(config, &[Arc::new(rec)]) else {
        return Vec::new();
    };
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let info = Arc::new(ConnInfo::new([127, 0, 0, 1].into(), None, true));
    let service = ProxyService::new(Arc::clone(&shared), info);
    let (mut h1b, h2b) = (h1_builder(&shared.config), h2_builder(&shared.config));
    h1b.half_close(true); // answer what was sent before the write side closed
    let serving = tokio::spawn(async move {
        let io = TokioIo::new(server);
        if h2 {
            let _ = h2b.serve_connection(io, service).await;
        } else {
            let _ = h1b.serve_connection(io, service).with_upgrades().await;
        }
    });
    let _ = client.write_all(bytes).await;
    let _ = client.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut out)).await;
    serving.abort();
    out
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })
}

fn connector(config: &ProxyConfig) -> Result<Connector, ProxyError> {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(config.ssrf.clone()));
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.timeouts.upstream_connect));
    let tls = match &config.upstream_tls {
        Some(c) => (**c).clone(),
        None => {
            // No trust configured: https upstreams fail verification with a clear error.
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| ProxyError::Tls(Box::new(e)))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    };
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The route table for `services` after `previous`, and the domains whose route changed
/// (`None`: any may have).
fn build_table(
    previous: &RouteTable,
    services: &[Arc<conduit_registry::ServiceRecord>],
    config: &ProxyConfig,
    ssrf: Option<&crate::SsrfPolicy>,
) -> (RouteTable, Option<Vec<Arc<str>>>) {
    let rules = crate::routes::Rules {
        new_backend: crate::routes::NewBackend {
            healthy: !config.health.start_unhealthy,
            max_conns: config.limits.max_conns_per_upstream,
            threads: config.threads,
        },
        body_limit: |d: &conduit_registry::DomainName| config.limits.body_limit(d),
        allow: |rec: &conduit_registry::ServiceRecord, e: &Endpoint| match ssrf
            .map(|p| p.check_endpoint(e))
        {
            Some(Err(err)) => {
                tracing::warn!(service = %rec.name(), upstream = %e, error = %err, "upstream refused by the SSRF policy");
                false
            }
            _ => true,
        },
    };
    RouteTable::rebuild(previous, services, &rules)
}

/// A bound proxy: call [`ProxyServer::run`].
pub struct ProxyServer {
    shared: Arc<Shared>,
    registry: Arc<dyn Registry>,
    since: Revision,
    acceptor: Option<TlsAcceptor>,
    https: Vec<TcpListener>,
    http: Vec<TcpListener>,
}

impl std::fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyServer")
            .field("https", &self.https_addrs())
            .field("http", &self.http_addrs())
            .finish_non_exhaustive()
    }
}

impl ProxyServer {
    /// A builder.
    pub fn builder() -> ProxyServerBuilder {
        ProxyServerBuilder::default()
    }

    /// The HTTPS listeners' addresses (with the ports picked for port 0).
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.https
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The plain-HTTP listeners' addresses.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// A handle for stats, health events and route lookups; valid after `run` returns.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests and streams in
    /// flight finish within the grace period and returns.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for fatal listener errors.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        let Self {
            shared,
            registry,
            since,
            acceptor,
            https,
            http,
        } = self;
        let (stop_tx, stop) = watch::channel(false);
        let mut checkers = Checkers::default();
        checkers.reconcile(&shared, &shared.routes.load());
        let follower = tokio::spawn(follow(Arc::clone(&shared), registry, since, checkers));
        let admission = crate::admission::Admission::new(
            shared.config.limits.max_connections,
            shared.config.limits.max_connections_per_client,
        );
        let h1 = Arc::new(h1_builder(&shared.config));
        let h2 = Arc::new(h2_builder(&shared.config));
        let redirect_port = shared
            .config
            .redirect_port
            .or_else(|| {
                https
                    .first()
                    .and_then(|l| l.local_addr().ok())
                    .map(|a| a.port())
            })
            .unwrap_or(443);
        let workers = Arc::new(Workers::start(
            shared.config.threads,
            Arc::clone(&shared.counters),
        ));
        let mut loops = tokio::task::JoinSet::new();
        let ctx = || Accept {
            shared: Arc::clone(&shared),
            stop: stop.clone(),
            admission: Arc::clone(&admission),
            h1: Arc::clone(&h1),
            h2: Arc::clone(&h2),
            workers: Arc::clone(&workers),
        };
        // (`bind` makes an acceptor whenever there is an HTTPS listener.)
        let tls = https.into_iter().map(|l| (l, acceptor.clone()));
        let plain = http.into_iter().map(|l| (l, None));
        for (listener, tls) in tls.chain(plain) {
            loops.spawn(accept_loop(listener, ctx(), tls, redirect_port));
        }
        shutdown.await;
        tracing::info!("proxy shutting down: no new connections, draining");
        let _ = stop_tx.send(true);
        while loops.join_next().await.is_some() {}
        // No more are admitted: every open connection finishes its response and closes.
        admission.close_all();
        follower.abort();
        let total = admission.total_permits;
        let drained = tokio::time::timeout(shared.config.grace_period, async {
            // Every connection holds a permit until it ends; upgraded streams are counted apart.
            let _all = admission
                .permits
                .acquire_many(u32::try_from(total).unwrap_or(u32::MAX))
                .await;
            let mut tunnels = shared.tunnels.subscribe();
            let _ = tunnels.wait_for(|n| *n == 0).await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = shared.counters.snapshot().connections_open,
                "grace period over; closing the connections left"
            );
        }
        // The accept loops (the only other holders) have ended.
        if let Some(workers) = Arc::into_inner(workers) {
            workers.stop().await;
        }
        Ok(())
    }
}

/// Rebuilds the route table on every registry change (the registry's one follow loop) and
/// swaps it in.
async fn follow(
    shared: Arc<Shared>,
    registry: Arc<dyn Registry>,
    since: Revision,
    mut checkers: Checkers,
) {
    let mut follower = conduit_registry::RegistryFollower::new(registry, since, "routes");
    while let Some(services) = follower.next().await {
        let previous = shared.routes.load_full();
        let (table, changed) = build_table(
            &previous,
            &services,
            &shared.config,
            shared.config.ssrf.as_deref(),
        );
        tracing::debug!(routes = table.len(), changed = ?changed.as_ref().map(Vec::len), "routes rebuilt");
        match changed {
            Some(domains) => checkers.reconcile_domains(&shared, &table, &domains),
            None => checkers.reconcile(&shared, &table),
        }
        shared.routes.store(Arc::new(table));
    }
    // Keep checking health of the last routes until the server stops.
    std::future::pending::<()>().await;
    drop(checkers);
}
