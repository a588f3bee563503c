//! Client connections: the accept loops (admission first), TLS handshakes, HTTP/1.1 and
//! HTTP/2 serving with the configured limits, and each connection's graceful close.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::ProxyConfig;
use crate::response_body::ResponseBody;
use crate::service::ProxyService;
use crate::shared::{ConnInfo, Shared};

pub(crate) fn h1_builder(config: &ProxyConfig) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(config.timeouts.header_read)
        .max_buf_size(config.limits.max_header_bytes.max(8192))
        .max_headers(config.limits.max_headers)
        .keep_alive(true);
    b
}

pub(crate) fn h2_builder(config: &ProxyConfig) -> http2::Builder<TokioExecutor> {
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

pub(crate) struct Accept {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) admission: Arc<crate::admission::Admission>,
    pub(crate) h1: Arc<http1::Builder>,
    pub(crate) h2: Arc<http2::Builder<TokioExecutor>>,
    /// The threads connections are served on.
    pub(crate) workers: Arc<crate::workers::Workers>,
}

pub(crate) async fn accept_loop(
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
        let (h1, h2) = (Arc::clone(&ctx.h1), Arc::clone(&ctx.h2));
        let tls = tls.clone();
        let pressure = ctx.admission.under_pressure();
        ctx.workers.spawn(tcp, move |tcp| async move {
            shared.counters.inc(|c| &c.connections);
            shared.counters.inc(|c| &c.connections_open);
            let conn = Conn {
                peer,
                state: Arc::clone(&admitted.state),
                pressure,
            };
            match tls {
                Some(acceptor) => serve_tls(&shared, acceptor, tcp, conn, &h1, &h2).await,
                None => serve_plain(&shared, tcp, conn, &h1, redirect_port).await,
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
) {
    let peer = conn.peer;
    let local_port = tcp.local_addr().map_or(443, |a| a.port());
    let mut handshake_time = shared.config.timeouts.tls_handshake;
    if conn.pressure {
        handshake_time = handshake_time.min(Duration::from_secs(2));
    }
    // The policy at the handshake: it says which names are asked for a certificate and
    // who a certificate names.
    let enforced = shared.access.load_full().filter(|e| e.mtls.is_some());
    let handshake = tokio::select! {
        r = tokio::time::timeout(handshake_time, handshake(shared, &acceptor, enforced.as_deref(), tcp)) => r,
        () = conn.state.closing.told() => {
            tracing::debug!(%peer, "handshake dropped: making room, or the proxy is stopping");
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
    let mut info = ConnInfo::new(peer.ip(), session.server_name(), true);
    if let (Some(e), Some(leaf)) = (
        &enforced,
        session.peer_certificates().and_then(|c| c.first()),
    ) && let Some(auth) = &e.control.client_auth
    {
        // Verified by the handshake; named here, once per connection.
        info.cert = (auth.identify)(leaf);
    }
    let info = info
        .on_port(local_port)
        .trusting(&shared.config.trusted_proxies)
        .admitted(Arc::clone(&conn.state));
    let service = ProxyService::new(Arc::clone(shared), Arc::new(info));
    let io = TokioIo::new(tls);
    let result = if is_h2 {
        graceful(h2.serve_connection(io, service), &conn.state).await
    } else {
        graceful(
            h1.serve_connection(io, service).with_upgrades(),
            &conn.state,
        )
        .await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}

/// The TLS handshake: with a policy that asks some names for client certificates, the
/// ClientHello is read first and its SNI picks the configuration.
async fn handshake(
    shared: &Shared,
    acceptor: &TlsAcceptor,
    enforced: Option<&crate::policy::Enforced>,
    tcp: TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let Some(enforced) = enforced else {
        return acceptor.accept(tcp).await;
    };
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
    let config = start
        .client_hello()
        .server_name()
        .and_then(|sni| enforced.mtls_for(shared, sni))
        .unwrap_or_else(|| Arc::clone(acceptor.config()));
    start.into_stream(config).await
}

/// A plain-HTTP connection: services registered without TLS are proxied, TLS services are
/// redirected to HTTPS, unknown names get 404 (no open redirect).
async fn serve_plain(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    conn: Conn,
    h1: &http1::Builder,
    redirect_port: u16,
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
    state: &crate::admission::ConnState,
) -> Result<(), hyper::Error> {
    let mut conn = pin!(conn);
    // Shutdown, or told to make room: the response in flight finishes, then it closes (an
    // idle keep-alive connection closes at once).
    tokio::select! {
        r = conn.as_mut() => return r,
        () = state.closing.told() => conn.as_mut().begin_shutdown(),
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
