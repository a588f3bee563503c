//! Listeners, TLS, connections, the registry follower and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use conduit_registry::{DomainName, Endpoint, ListFilter, Registry, Revision};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::server::ResolvesServerCert;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::{ProxyConfig, TlsVersions};
use crate::health::Checkers;
use crate::metrics::{Counters, ProxyStats};
use crate::response_body::ResponseBody;
use crate::routes::{HealthEvent, RouteTable, UpstreamStatus};
use crate::service::ProxyService;
use crate::shared::{ConnInfo, Connector, Shared};
use crate::ssrf::GuardedResolver;
use crate::{ProxyError, Upstream};

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
            (false, Some(certs)) => Some(TlsAcceptor::from(server_tls(&config, certs)?)),
        };
        let since = registry.revision().await?;
        let services = registry.list(ListFilter::Active).await?;
        let shared = shared(config, &services)?;
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
    let connector = connector(&config)?;
    let table = build_table(
        &RouteTable::default(),
        services,
        &config,
        config.ssrf.as_deref(),
    );
    let (health_tx, _) = broadcast::channel(1024);
    Ok(Arc::new(Shared {
        routes: ArcSwap::from_pointee(table),
        connector,
        counters: Arc::new(Counters::default()),
        health_tx,
        tunnels: watch::channel(0).0,
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

fn server_tls(
    config: &ProxyConfig,
    certs: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match config.tls {
        TlsVersions::Tls12And13 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        _ => &[&rustls::version::TLS13],
    };
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| ProxyError::Tls(Box::new(e)))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless resumption tickets, rotated by rustls every 6 hours.
    tls.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| ProxyError::Tls(Box::new(e)))?;
    Ok(Arc::new(tls))
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

fn build_table(
    previous: &RouteTable,
    services: &[Arc<conduit_registry::ServiceRecord>],
    config: &ProxyConfig,
    ssrf: Option<&crate::SsrfPolicy>,
) -> RouteTable {
    RouteTable::build(
        previous,
        services,
        crate::routes::NewBackend {
            healthy: !config.health.start_unhealthy,
            max_conns: config.limits.max_conns_per_upstream,
        },
        |d| config.limits.body_limit(d),
        |rec, e: &Endpoint| match ssrf.map(|p| p.check_endpoint(e)) {
            Some(Err(err)) => {
                tracing::warn!(service = %rec.name(), upstream = %e, error = %err, "upstream refused by the SSRF policy");
                false
            }
            _ => true,
        },
    )
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
        let mut loops = tokio::task::JoinSet::new();
        let ctx = || Accept {
            shared: Arc::clone(&shared),
            stop: stop.clone(),
            admission: Arc::clone(&admission),
            h1: Arc::clone(&h1),
            h2: Arc::clone(&h2),
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
        Ok(())
    }
}

fn h1_builder(config: &ProxyConfig) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(config.timeouts.header_read)
        .max_buf_size(config.limits.max_header_bytes.max(8192))
        .max_headers(config.limits.max_headers)
        .keep_alive(true);
    b
}

fn h2_builder(config: &ProxyConfig) -> http2::Builder<TokioExecutor> {
    let l = &config.limits;
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(l.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(l.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(l.h2_max_local_error_reset_streams)
        .max_header_list_size(l.h2_max_header_list_bytes)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

struct Accept {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    admission: Arc<crate::admission::Admission>,
    h1: Arc<http1::Builder>,
    h2: Arc<http2::Builder<TokioExecutor>>,
}

async fn accept_loop(
    listener: TcpListener,
    mut ctx: Accept,
    tls: Option<TlsAcceptor>,
    redirect_port: u16,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = ctx.stop.wait_for(|s| *s) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = match ctx.admission.admit(crate::ssrf::canonical(peer.ip())) {
            Ok(a) => a,
            Err(why) => {
                // Closed at once: nothing waits in the backlog behind a crowd.
                ctx.shared.counters.inc(|c| &c.connections_refused);
                tracing::debug!(%peer, ?why, "connection refused");
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = Arc::clone(&ctx.shared);
        let (h1, h2, stop) = (Arc::clone(&ctx.h1), Arc::clone(&ctx.h2), ctx.stop.clone());
        let tls = tls.clone();
        let pressure = ctx.admission.under_pressure();
        tokio::spawn(async move {
            shared.counters.inc(|c| &c.connections);
            shared.counters.inc(|c| &c.connections_open);
            let conn = Conn {
                peer,
                state: Arc::clone(&admitted.state),
                pressure,
            };
            match tls {
                Some(acceptor) => serve_tls(&shared, acceptor, tcp, conn, &h1, &h2, stop).await,
                None => serve_plain(&shared, tcp, conn, &h1, redirect_port, stop).await,
            }
            drop(admitted);
            shared.counters.dec(|c| &c.connections_open);
        });
    }
}

/// One admitted client connection.
struct Conn {
    peer: SocketAddr,
    state: Arc<crate::admission::ConnState>,
    /// Admitted while the proxy was near its cap: handshakes get less time.
    pressure: bool,
}

async fn serve_tls(
    shared: &Arc<Shared>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    conn: Conn,
    h1: &http1::Builder,
    h2: &http2::Builder<TokioExecutor>,
    stop: watch::Receiver<bool>,
) {
    let peer = conn.peer;
    let local_port = tcp.local_addr().map_or(443, |a| a.port());
    let mut handshake_time = shared.config.timeouts.tls_handshake;
    if conn.pressure {
        handshake_time = handshake_time.min(Duration::from_secs(2));
    }
    let handshake = tokio::select! {
        r = tokio::time::timeout(handshake_time, acceptor.accept(tcp)) => r,
        () = conn.state.evict.notified() => {
            tracing::debug!(%peer, "handshake dropped to make room");
            return;
        }
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            shared.counters.inc(|c| &c.tls_failures);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared.counters.inc(|c| &c.tls_failures);
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    let is_h2 = session.alpn_protocol() == Some(b"h2");
    conn.state.handshaken();
    let info = ConnInfo::new(peer.ip(), session.server_name(), true)
        .on_port(local_port)
        .trusting(&shared.config.trusted_proxies)
        .admitted(Arc::clone(&conn.state));
    let service = ProxyService::new(Arc::clone(shared), Arc::new(info));
    let io = TokioIo::new(tls);
    let result = if is_h2 {
        graceful(h2.serve_connection(io, service), stop, &conn.state).await
    } else {
        graceful(
            h1.serve_connection(io, service).with_upgrades(),
            stop,
            &conn.state,
        )
        .await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}

/// A plain-HTTP connection: services registered without TLS are proxied, TLS services are
/// redirected to HTTPS, unknown names get 404 (no open redirect).
async fn serve_plain(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    conn: Conn,
    h1: &http1::Builder,
    redirect_port: u16,
    stop: watch::Receiver<bool>,
) {
    let peer = conn.peer;
    conn.state.handshaken();
    let local_port = tcp.local_addr().map_or(80, |a| a.port());
    let info = ConnInfo::plain(peer.ip(), redirect_port)
        .on_port(local_port)
        .trusting(&shared.config.trusted_proxies)
        .admitted(Arc::clone(&conn.state));
    let service = ProxyService::new(Arc::clone(shared), Arc::new(info));
    let io = TokioIo::new(tcp);
    let served = graceful(
        h1.serve_connection(io, service).with_upgrades(),
        stop,
        &conn.state,
    );
    if let Err(e) = served.await {
        tracing::debug!(%peer, error = %e, "plain-HTTP connection ended with an error");
    }
}

/// A connection that can be asked to finish its in-flight work and close.
trait GracefulConn: Future<Output = Result<(), hyper::Error>> {
    fn begin_shutdown(self: Pin<&mut Self>);
}

impl<I, S> GracefulConn for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn begin_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> GracefulConn for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn begin_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> GracefulConn for http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn begin_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

async fn graceful<C: GracefulConn>(
    conn: C,
    mut stop: watch::Receiver<bool>,
    state: &crate::admission::ConnState,
) -> Result<(), hyper::Error> {
    let mut conn = pin!(conn);
    // Shutdown, or told to make room: the response in flight finishes, then it closes (an
    // idle keep-alive connection closes at once).
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = stop.wait_for(|s| *s) => conn.as_mut().begin_shutdown(),
        () = state.evict.notified() => conn.as_mut().begin_shutdown(),
    }
    conn.await
}

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ResponseBody>;
    type Error = std::convert::Infallible;
    type Future = <Self as tower_service::Service<Request<Incoming>>>::Future;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        tower_service::Service::call(&mut self.clone(), req)
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
        let table = build_table(
            &previous,
            &services,
            &shared.config,
            shared.config.ssrf.as_deref(),
        );
        tracing::debug!(routes = table.len(), "routes rebuilt");
        checkers.reconcile(&shared, &table);
        shared.routes.store(Arc::new(table));
    }
    // Keep checking health of the last routes until the server stops.
    std::future::pending::<()>().await;
    drop(checkers);
}

/// A handle on a running proxy: stats, health events, upstream states.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl ProxyHandle {
    /// The counters now.
    pub fn stats(&self) -> ProxyStats {
        self.shared.counters.snapshot()
    }

    /// Prometheus text: the counters, the latency histogram and each upstream's health.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write as _;
        let mut out = self.stats().prometheus();
        let _ = writeln!(
            out,
            "# HELP conduit_proxy_upstream_healthy Whether an upstream gets traffic.\n# TYPE conduit_proxy_upstream_healthy gauge"
        );
        let table = self.shared.routes.load();
        let mut routes: Vec<_> = table.routes().collect();
        routes.sort_by(|a, b| a.domain.cmp(&b.domain));
        for r in routes {
            for b in r.backends.iter() {
                let _ = writeln!(
                    out,
                    "conduit_proxy_upstream_healthy{{service=\"{}\",upstream=\"{}\"}} {}",
                    r.service,
                    b.endpoint,
                    u8::from(b.is_healthy())
                );
            }
        }
        out
    }

    /// Every upstream transition from now on (up → down, down → up).
    pub fn health_events(&self) -> broadcast::Receiver<HealthEvent> {
        self.shared.health_tx.subscribe()
    }

    /// The domains routed now.
    pub fn routes(&self) -> Vec<DomainName> {
        let mut v: Vec<_> = self
            .shared
            .routes
            .load()
            .routes()
            .map(|r| r.domain.clone())
            .collect();
        v.sort();
        v
    }

    /// The upstreams of a domain and their state; `None` without a route.
    pub fn upstreams(&self, domain: &str) -> Option<Vec<UpstreamStatus>> {
        let table = self.shared.routes.load();
        let route = table.get(domain.trim_end_matches('.'))?;
        Some(
            route
                .backends
                .iter()
                .map(|b| UpstreamStatus {
                    endpoint: b.endpoint.clone(),
                    healthy: b.is_healthy(),
                    outstanding: b.outstanding(),
                })
                .collect(),
        )
    }
}

impl Upstream for ProxyHandle {
    fn select(&self, host: &DomainName) -> Option<Endpoint> {
        let table = self.shared.routes.load();
        let route = table.get(host.as_str())?;
        route
            .pick(self.shared.config.balance, &[])
            .map(|b| b.endpoint.clone())
    }
}
