//! The request path: host → route → upstream, as a `tower::Service`.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::body::{BodyTooLarge, ClientBodyError, IdleTimeout, RequestBody, ResponseBody};
use crate::config::ProxyConfig;
use crate::metrics::Counters;
use crate::pool::SendError;
use crate::routes::{Backend, CheckSource, HealthEvent, Route, RouteTable};
use crate::ssrf::GuardedResolver;

pub(crate) type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What every connection and task of one proxy shares.
pub(crate) struct Shared {
    pub(crate) routes: ArcSwap<RouteTable>,
    pub(crate) connector: Connector,
    pub(crate) config: ProxyConfig,
    pub(crate) counters: Arc<Counters>,
    pub(crate) health_tx: broadcast::Sender<HealthEvent>,
    pub(crate) tunnels: tokio::sync::watch::Sender<usize>,
    /// `Strict-Transport-Security` for HTTPS answers, when configured.
    pub(crate) hsts: Option<HeaderValue>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("routes", &self.routes.load().len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Counts one outcome on `backend` and publishes a transition.
    pub(crate) fn record(
        &self,
        route: &Route,
        backend: &Backend,
        ok: bool,
        source: CheckSource,
        reason: impl FnOnce() -> String,
    ) {
        if source == CheckSource::Passive && !self.config.health.passive {
            return;
        }
        let Some(healthy) = backend.record(ok, &route.health, source) else {
            return;
        };
        let reason = reason();
        if healthy {
            tracing::info!(service = %route.service, upstream = %backend.endpoint, %reason, "upstream is up");
        } else {
            tracing::warn!(service = %route.service, upstream = %backend.endpoint, ?source, %reason, "upstream is down");
        }
        let _ = self.health_tx.send(HealthEvent {
            at: std::time::SystemTime::now(),
            service: route.service.clone(),
            domain: route.domain.clone(),
            endpoint: backend.endpoint.clone(),
            healthy,
            source,
            reason,
        });
    }
}

/// Facts about the client connection a request came on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) client_ip: IpAddr,
    pub(crate) client_ip_header: HeaderValue,
    /// `for=…;proto=…`, the `Forwarded` value for this connection.
    pub(crate) forwarded_header: HeaderValue,
    /// The client is a trusted proxy: its forwarding headers are kept.
    pub(crate) trusted: bool,
    /// The listener's port when it is not the scheme's default (443, 80): upstreams get it
    /// in `Host`, so that the URLs they build point back at the gateway.
    pub(crate) port: Option<u16>,
    /// `SNI:PORT`, built once per connection: on a TLS connection the routed name is the
    /// SNI name, so requests need not format it again.
    pub(crate) sni_host_port: Option<HeaderValue>,
    /// The connection's admission record (each request marks it as recently used).
    pub(crate) admitted: Option<Arc<crate::admission::ConnState>>,
    /// The SNI name of a TLS connection (lower case).
    pub(crate) sni: Option<Box<str>>,
    pub(crate) https: bool,
    /// On a plain-HTTP connection: the HTTPS port that TLS services are redirected to.
    pub(crate) redirect_port: u16,
}

impl ConnInfo {
    pub(crate) fn new(client_ip: IpAddr, sni: Option<&str>, https: bool) -> Self {
        let client_ip = crate::ssrf::canonical(client_ip);
        let proto = if https { "https" } else { "http" };
        let forwarded = match client_ip {
            IpAddr::V4(ip) => format!("for={ip};proto={proto}"),
            IpAddr::V6(ip) => format!("for=\"[{ip}]\";proto={proto}"),
        };
        Self {
            client_ip,
            client_ip_header: HeaderValue::from_str(&client_ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_header: HeaderValue::from_str(&forwarded)
                .unwrap_or(HeaderValue::from_static("for=unknown")),
            trusted: false,
            port: None,
            sni_host_port: None,
            admitted: None,
            sni: sni.map(|s| s.to_ascii_lowercase().into_boxed_str()),
            https,
            redirect_port: 443,
        }
    }

    /// The listener's port (left out of `Host` when it is the scheme's default).
    pub(crate) fn on_port(mut self, port: u16) -> Self {
        let default = if self.https { 443 } else { 80 };
        self.port = (port != default).then_some(port);
        self.sni_host_port = match (&self.sni, self.port) {
            (Some(sni), Some(port)) => HeaderValue::from_str(&format!("{sni}:{port}")).ok(),
            _ => None,
        };
        self
    }

    /// The admission record requests on this connection update.
    pub(crate) fn admitted(mut self, state: Arc<crate::admission::ConnState>) -> Self {
        self.admitted = Some(state);
        self
    }

    /// Marks the client as a trusted proxy when its address is in `trusted`.
    pub(crate) fn trusting(mut self, trusted: &[crate::Cidr]) -> Self {
        self.trusted = trusted.iter().any(|n| n.contains(self.client_ip));
        self
    }

    /// A plain-HTTP connection: services without TLS are served, the others redirected to
    /// HTTPS on `redirect_port`.
    pub(crate) fn plain(client_ip: IpAddr, redirect_port: u16) -> Self {
        Self {
            redirect_port,
            ..Self::new(client_ip, None, false)
        }
    }
}

/// The proxy as a `tower::Service`: one per client connection (it carries the connection's
/// client address and SNI name). [`ProxyServer`](crate::ProxyServer) serves it; embedders can
/// wrap it in their own layers.
#[derive(Debug, Clone)]
pub struct ProxyService {
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
}

impl ProxyService {
    pub(crate) fn new(shared: Arc<Shared>, conn: Arc<ConnInfo>) -> Self {
        Self { shared, conn }
    }
}

impl tower_service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let conn = Arc::clone(&self.conn);
        Box::pin(async move { Ok(handle(shared, conn, req).await) })
    }
}

/// A plain-text local answer.
pub(crate) fn local(status: StatusCode, text: impl Into<String>) -> Response<ResponseBody> {
    let mut text = text.into();
    text.push('\n');
    let mut r = Response::new(ResponseBody::full(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// One authority (`host[:port]`) as a host name: port and trailing dot removed; `None` when
/// it is not a plain host (user info, a bad port, characters no host name has).
fn host_of(raw: &str) -> Option<&str> {
    if raw.contains('@') {
        return None;
    }
    let host = if let Some(rest) = raw.strip_prefix('[') {
        rest.split_once(']')?.0
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    valid.then_some(host)
}

/// The request's host, or why there is no usable one. There is at most one `Host` and no
/// user info. HTTP/2: `:authority` and `host` must not disagree (RFC 9113 §8.3.1, a
/// malformed request). HTTP/1.1 absolute form: the target's authority wins and `Host` is
/// ignored (RFC 9112 §3.2.2).
pub(crate) fn routed_host<B>(req: &Request<B>) -> Result<&str, &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let header_host = match header_host {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(host_of)
                .ok_or("invalid Host header")?,
        ),
        None => None,
    };
    match (req.uri().authority(), header_host) {
        (Some(a), h) => {
            let target = host_of(a.as_str()).ok_or("invalid request target")?;
            if req.version() == Version::HTTP_2
                && h.is_some_and(|h| !h.eq_ignore_ascii_case(target))
            {
                return Err("host and :authority name different hosts");
            }
            Ok(target)
        }
        (None, Some(h)) => Ok(h),
        (None, None) => Err("missing Host"),
    }
}

/// The request's host when it has a usable one (see [`routed_host`]).
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    routed_host(req).ok()
}

async fn handle(
    s: Arc<Shared>,
    c: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let start = Instant::now();
    s.counters.inc(|c| &c.requests);
    if let Some(a) = &c.admitted {
        a.touch();
    }
    let log = tracing::enabled!(target: "conduit_proxy::access", tracing::Level::INFO).then(|| {
        let host = request_host(&req).unwrap_or("").to_owned();
        (req.method().clone(), req.uri().clone(), req.version(), host)
    });
    let (mut resp, upstream) = route(&s, &c, req).await;
    if c.https
        && let Some(v) = &s.hsts
    {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    let elapsed = start.elapsed();
    s.counters.response(resp.status().as_u16(), elapsed);
    if let Some((method, uri, version, host)) = log {
        tracing::info!(
            target: "conduit_proxy::access",
            client = %c.client_ip,
            %method,
            host = %host,
            path = uri.path(),
            ?version,
            status = resp.status().as_u16(),
            upstream = upstream.as_ref().map(|b| b.endpoint.to_string()).unwrap_or_default(),
            micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    }
    resp
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The size of an HTTP/1.x request head as sent: request line and header lines.
fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    // "METHOD TARGET HTTP/1.1\r\n"
    let line = req.method().as_str().len() + target + 11;
    req.headers()
        .iter()
        .fold(line + 2, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// Whether the protocol a request asks to upgrade to is one the configuration allows
/// (`websocket` by default). Others are not tunnelled: the request goes on as a plain one,
/// its `Upgrade` header removed (RFC 9110 lets a server ignore an upgrade).
fn upgrade_allowed<B>(req: &Request<B>, allowed: &[String]) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').all(|p| {
                let name = p.trim().split('/').next().unwrap_or("");
                allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
            })
        })
}

async fn route(
    s: &Arc<Shared>,
    c: &Arc<ConnInfo>,
    req: Request<Incoming>,
) -> (Response<ResponseBody>, Option<Arc<Backend>>) {
    let host = match routed_host(&req) {
        Ok(h) => h,
        Err(why) => {
            s.counters.inc(|c| &c.client_errors);
            crate::body::drain(req.into_body());
            return (local(StatusCode::BAD_REQUEST, why), None);
        }
    };
    if req.version() <= Version::HTTP_11 && head_size(&req) > s.config.limits.max_header_bytes {
        // hyper's read buffer bounds the head only roughly; the documented limit is exact.
        s.counters.inc(|c| &c.client_errors);
        crate::body::drain(req.into_body());
        let msg = format!(
            "request head larger than {} bytes",
            s.config.limits.max_header_bytes
        );
        return (
            local(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, msg),
            None,
        );
    }
    if let Some(sni) = &c.sni
        && !sni.eq_ignore_ascii_case(host)
    {
        s.counters.inc(|c| &c.no_route);
        let msg = format!("this connection is for {sni}, not {host}; open a new connection");
        crate::body::drain(req.into_body());
        return (local(StatusCode::MISDIRECTED_REQUEST, msg), None);
    }
    let table = s.routes.load();
    let Some(route) = table.get(host) else {
        s.counters.inc(|c| &c.no_route);
        let msg = format!("no service is registered for {host}");
        crate::body::drain(req.into_body());
        return (local(StatusCode::NOT_FOUND, msg), None);
    };
    let route = Arc::clone(route);
    drop(table);
    if !c.https && route.tls {
        // A TLS service asked for over plain HTTP: only registered names are redirected.
        let answer = redirect(&req, c.redirect_port);
        crate::body::drain(req.into_body());
        return (answer, None);
    }
    if let Some(max) = route.body_limit
        && content_length(req.headers()).is_some_and(|n| n > max)
    {
        s.counters.inc(|c| &c.too_large);
        crate::body::drain(req.into_body());
        let msg = format!("request body is larger than the limit of {max} bytes");
        return (local(StatusCode::PAYLOAD_TOO_LARGE, msg), None);
    }
    if is_upgrade(&req) && upgrade_allowed(&req, &s.config.upgrades) {
        // Boxed: rare, and its future is large (see `pool::send`).
        return Box::pin(upgrade(s, c, &route, req)).await;
    }
    // Boxed: the forwarding future is built once in place on the heap instead of being
    // copied into each enclosing future (a few KiB per request otherwise).
    Box::pin(forward(s, c, &route, req)).await
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn no_upstream(s: &Shared, route: &Route) -> Response<ResponseBody> {
    s.counters.inc(|c| &c.no_healthy);
    let msg = if route.backends.is_empty() {
        format!("{} has no usable upstream", route.domain)
    } else {
        format!(
            "every upstream of {} is down ({} of {} healthy)",
            route.domain,
            route.healthy_count(),
            route.backends.len()
        )
    };
    let mut r = local(StatusCode::SERVICE_UNAVAILABLE, msg);
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(s.config.health.retry_after_secs),
    );
    r
}

/// Removes hop-by-hop headers: `Connection` and what it lists, and the fixed set.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    if let Some(listed) = h.contains_key(header::CONNECTION).then(|| {
        h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect::<Vec<_>>()
    }) {
        for name in listed {
            h.remove(name);
        }
        h.remove(header::CONNECTION);
    }
    for name in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TRAILER,
    ] {
        h.remove(name);
    }
    if let Some(te) = h.get(header::TE)
        && !te.as_bytes().eq_ignore_ascii_case(b"trailers")
    {
        h.remove(header::TE);
    }
}

/// The request head as the upstream sees it: `Host` and `X-Forwarded-Host` are the name the
/// route matched (never the client's own value, never stripped through `Connection`), and
/// the client's address is told in `X-Forwarded-For`, `X-Real-IP` and `Forwarded`; what a
/// client sent in those is dropped, unless it is a trusted proxy (then its
/// `X-Forwarded-For` is kept and ours appended).
fn upstream_headers(h: &mut HeaderMap, c: &ConnInfo, route: &Route) {
    strip_hop_by_hop(h);
    let host = match (c.port, &c.sni_host_port) {
        (None, _) => route.host_header.clone(),
        // (the route matched the SNI name: see `route`)
        (Some(_), Some(cached)) => cached.clone(),
        (Some(port), None) => HeaderValue::from_str(&format!("{}:{port}", route.domain))
            .unwrap_or_else(|_| route.host_header.clone()),
    };
    h.insert(X_FORWARDED_HOST, host.clone());
    h.insert(header::HOST, host);
    let xff = match h.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) if c.trusted && !prev.is_empty() => {
            let mut v = Vec::with_capacity(prev.len() + 2 + c.client_ip_header.len());
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(c.client_ip_header.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| c.client_ip_header.clone())
        }
        _ => c.client_ip_header.clone(),
    };
    h.insert(X_FORWARDED_FOR, xff);
    if !(c.trusted && h.contains_key(X_REAL_IP)) {
        h.insert(X_REAL_IP, c.client_ip_header.clone());
    }
    if !(c.trusted && h.contains_key(header::FORWARDED)) {
        h.insert(header::FORWARDED, c.forwarded_header.clone());
    }
    h.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if c.https { "https" } else { "http" }),
    );
}

/// The upstream's response as the client gets it: hop-by-hop headers removed, the body
/// streamed with the idle timeout, the in-flight count and the connection held until it ends.
fn pass_through(
    s: &Shared,
    resp: Response<Incoming>,
    flight: Option<crate::routes::InFlight>,
    lease: Option<crate::pool::Lease>,
) -> Response<ResponseBody> {
    let (mut head, incoming) = resp.into_parts();
    strip_hop_by_hop(&mut head.headers);
    // The upstream's protocol version is its own business (Python's http.server answers
    // HTTP/1.0); the client gets the version of its own connection.
    head.version = Version::HTTP_11;
    let body = ResponseBody::upstream(
        incoming,
        s.config.timeouts.idle,
        Arc::clone(&s.counters),
        flight,
        lease,
    );
    Response::from_parts(head, body)
}

/// The request target as the upstream sees it (origin form: path and query).
fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()))
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Walks an error's sources.
fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

async fn forward(
    s: &Arc<Shared>,
    c: &ConnInfo,
    route: &Arc<Route>,
    req: Request<Incoming>,
) -> (Response<ResponseBody>, Option<Arc<Backend>>) {
    let (mut parts, body) = req.into_parts();
    upstream_headers(&mut parts.headers, c, route);
    let body = if body.is_end_stream() {
        RequestBody::Empty
    } else {
        RequestBody::stream(body, route.body_limit, s.config.timeouts.idle)
    };
    let retry = s.config.retry;
    let may_retry = retry.retries > 0 && (retry.non_idempotent || idempotent(&parts.method));
    // Built once: a request that never left comes back intact and goes to the next upstream.
    let mut up = Request::new(body);
    *up.method_mut() = parts.method;
    *up.uri_mut() = origin_form(&parts.uri);
    *up.headers_mut() = parts.headers;
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let Some(backend) = route.pick(s.config.balance, &tried) else {
            up.into_body().discard();
            if tried.is_empty() {
                return (no_upstream(s, route), None);
            }
            let msg = format!("no upstream of {} could be reached", route.domain);
            return (local(StatusCode::BAD_GATEWAY, msg), None);
        };
        let backend = Arc::clone(backend);
        let flight = backend.begin();
        let first_byte = s.config.timeouts.upstream_first_byte;
        let sent = tokio::time::timeout(first_byte, crate::pool::send(s, &backend, up)).await;
        match sent {
            Ok(Ok((resp, lease))) => {
                let ok = !s
                    .config
                    .health
                    .passive_failure_statuses
                    .contains(&resp.status().as_u16());
                s.record(route, &backend, ok, CheckSource::Passive, || {
                    format!("answered {}", resp.status())
                });
                return (
                    pass_through(s, resp, Some(flight), Some(lease)),
                    Some(backend),
                );
            }
            Ok(Err(SendError::NotSent { req, why })) => {
                drop(flight);
                s.record(route, &backend, false, CheckSource::Passive, || why.clone());
                if may_retry && (tried.len() as u32) < retry.retries {
                    tracing::debug!(upstream = %backend.endpoint, error = %why, "retrying on another upstream");
                    s.counters.inc(|c| &c.retries);
                    tried.push(Arc::as_ptr(&backend) as usize);
                    up = *req;
                    continue;
                }
                req.into_body().discard();
                s.counters.inc(|c| &c.upstream_errors);
                tracing::warn!(service = %route.service, upstream = %backend.endpoint, error = %why, "upstream unreachable");
                // The details (address, error) go to the log, not to the client.
                let msg = format!("{}: the upstream could not be reached", route.domain);
                return (local(StatusCode::BAD_GATEWAY, msg), Some(backend));
            }
            Ok(Err(SendError::Busy { req })) => {
                // The gateway's own cap on connections to this upstream: not its failure.
                drop(flight);
                if may_retry && (tried.len() as u32) < retry.retries {
                    s.counters.inc(|c| &c.retries);
                    tried.push(Arc::as_ptr(&backend) as usize);
                    up = *req;
                    continue;
                }
                req.into_body().discard();
                s.counters.inc(|c| &c.no_healthy);
                tracing::warn!(service = %route.service, upstream = %backend.endpoint, max = s.config.limits.max_conns_per_upstream, "every connection to the upstream stayed busy");
                let mut r = local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{}: the upstream is busy", route.domain),
                );
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(s.config.health.retry_after_secs),
                );
                return (r, Some(backend));
            }
            Ok(Err(SendError::Failed(e))) => {
                drop(flight);
                if let Some(big) = find_cause::<BodyTooLarge>(&e) {
                    s.counters.inc(|c| &c.too_large);
                    return (
                        local(StatusCode::PAYLOAD_TOO_LARGE, big.to_string()),
                        Some(backend),
                    );
                }
                if let Some(idle) = find_cause::<IdleTimeout>(&e) {
                    s.counters.inc(|c| &c.idle_timeouts);
                    let msg = format!("request body: {idle}");
                    return (local(StatusCode::REQUEST_TIMEOUT, msg), Some(backend));
                }
                if find_cause::<ClientBodyError>(&e).is_some() {
                    // The client's fault: not the upstream's health.
                    s.counters.inc(|c| &c.client_errors);
                    tracing::debug!(service = %route.service, error = %error_chain(&e), "the client's request body failed");
                    let msg = format!(
                        "{}: the request body was cut short or malformed",
                        route.domain
                    );
                    return (local(StatusCode::BAD_REQUEST, msg), Some(backend));
                }
                let why = error_chain(&e);
                s.record(route, &backend, false, CheckSource::Passive, || why.clone());
                s.counters.inc(|c| &c.upstream_errors);
                tracing::warn!(service = %route.service, upstream = %backend.endpoint, error = %why, "upstream request failed");
                let msg = format!("{}: the upstream failed to answer", route.domain);
                return (local(StatusCode::BAD_GATEWAY, msg), Some(backend));
            }
            Err(_) => {
                drop(flight);
                s.counters.inc(|c| &c.upstream_timeouts);
                s.record(route, &backend, false, CheckSource::Passive, || {
                    format!("no response within {first_byte:?}")
                });
                tracing::warn!(service = %route.service, upstream = %backend.endpoint, timeout = ?first_byte, "upstream sent no response in time");
                let msg = format!(
                    "{}: the upstream sent no response within {first_byte:?}",
                    route.domain
                );
                return (local(StatusCode::GATEWAY_TIMEOUT, msg), Some(backend));
            }
        }
    }
}

/// WebSocket (or any HTTP/1.1 upgrade): the upgrade request goes to an upstream on a
/// connection of its own; on `101` both sides are joined byte for byte.
async fn upgrade(
    s: &Arc<Shared>,
    c: &ConnInfo,
    route: &Arc<Route>,
    mut req: Request<Incoming>,
) -> (Response<ResponseBody>, Option<Arc<Backend>>) {
    let Some(backend) = route.pick(s.config.balance, &[]) else {
        return (no_upstream(s, route), None);
    };
    let backend = Arc::clone(backend);
    let client_side = hyper::upgrade::on(&mut req);
    let (mut parts, _body) = req.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    upstream_headers(&mut parts.headers, c, route);
    if let Some(p) = protocol {
        parts.headers.insert(header::UPGRADE, p);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let fail = |why: String| {
        tracing::warn!(service = %route.service, upstream = %backend.endpoint, error = %why, "upgrade to the upstream failed");
        local(
            StatusCode::BAD_GATEWAY,
            format!("{}: the upstream could not take the upgrade", route.domain),
        )
    };
    let io = match crate::pool::connect_io(s, &backend.base_uri).await {
        Ok(io) => io,
        Err(why) => {
            s.record(route, &backend, false, CheckSource::Passive, || why.clone());
            s.counters.inc(|c| &c.upstream_errors);
            return (fail(why), Some(backend));
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake::<_, RequestBody>(io).await
    {
        Ok(x) => x,
        Err(e) => return (fail(error_chain(&e)), Some(backend)),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream upgrade connection ended");
        }
    });
    let mut up = Request::new(RequestBody::Empty);
    *up.method_mut() = parts.method;
    *up.uri_mut() = origin_form(&parts.uri);
    *up.headers_mut() = parts.headers;
    let mut resp = match tokio::time::timeout(
        s.config.timeouts.upstream_first_byte,
        sender.send_request(up),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let why = error_chain(&e);
            s.record(route, &backend, false, CheckSource::Passive, || why.clone());
            return (fail(why), Some(backend));
        }
        Err(_) => {
            return (
                fail("no upgrade response in time".to_owned()),
                Some(backend),
            );
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return (pass_through(s, resp, None, None), Some(backend));
    }
    let upstream_side = hyper::upgrade::on(&mut resp);
    let shared = Arc::clone(s);
    let service = route.service.clone();
    let client_ip = c.client_ip;
    let idle = s.config.timeouts.idle;
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client_side, upstream_side) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        shared.counters.inc(|c| &c.tunnels);
        shared.counters.inc(|c| &c.tunnels_open);
        shared.tunnels.send_modify(|n| *n += 1);
        tracing::info!(target: "conduit_proxy::access", client = %client_ip, %service, "upgraded connection opened");
        let activity = crate::tunnel::Activity::new();
        let mut client = crate::tunnel::Watched::new(TokioIo::new(client), activity.clone());
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match r {
                Ok((up, down)) => tracing::info!(target: "conduit_proxy::access", client = %client_ip, %service, up, down, "upgraded connection closed"),
                Err(e) => tracing::info!(target: "conduit_proxy::access", client = %client_ip, %service, error = %e, "upgraded connection ended"),
            },
            () = activity.idle_for(idle) => {
                shared.counters.inc(|c| &c.idle_timeouts);
                tracing::info!(target: "conduit_proxy::access", client = %client_ip, %service, ?idle, "upgraded connection idle: closed");
            }
        }
        shared.tunnels.send_modify(|n| *n = n.saturating_sub(1));
        shared.counters.dec(|c| &c.tunnels_open);
    });
    let (head, _) = resp.into_parts();
    (
        Response::from_parts(head, ResponseBody::full(Bytes::new())),
        Some(backend),
    )
}

/// The plain-HTTP listener's answer: a permanent redirect to the same URL over HTTPS.
pub(crate) fn redirect<B>(req: &Request<B>, https_port: u16) -> Response<ResponseBody> {
    let Some(host) = request_host(req) else {
        return local(StatusCode::BAD_REQUEST, "missing or invalid Host");
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let location = if https_port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{https_port}{pq}")
    };
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            let mut r = local(
                StatusCode::PERMANENT_REDIRECT,
                format!("moved to {location}"),
            );
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => local(StatusCode::BAD_REQUEST, "invalid request target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        let r = |h: &str| Request::builder().header("host", h).body(()).unwrap();
        assert_eq!(request_host(&r("svc.internal")), Some("svc.internal"));
        assert_eq!(request_host(&r("svc.internal:8443")), Some("svc.internal"));
        assert_eq!(request_host(&r("svc.internal.")), Some("svc.internal"));
        assert_eq!(request_host(&r("[::1]:443")), Some("::1"));
        assert_eq!(request_host(&r("svc:abc")), None);
        assert_eq!(request_host(&r("")), None);
        assert_eq!(request_host(&r("a b")), None);
        assert_eq!(request_host(&r("a/b")), None);
        assert_eq!(
            routed_host(&r("evil@svc.internal")),
            Err("invalid Host header")
        );
        let req = |uri: &str, hosts: &[&str]| {
            let mut b = Request::builder().uri(uri);
            for h in hosts {
                b = b.header("host", *h);
            }
            b.body(()).unwrap()
        };
        // absolute form / :authority and Host must agree (case and port aside)
        assert_eq!(
            routed_host(&req("https://Svc.Internal/x", &["svc.internal:443"])),
            Ok("Svc.Internal")
        );
        // HTTP/1.1 absolute form: the target wins, Host is ignored
        assert_eq!(
            routed_host(&req("https://svc.internal/x", &["evil.example"])),
            Ok("svc.internal")
        );
        // HTTP/2: :authority and host must agree
        let mut h2 = req("https://svc.internal/x", &["evil.example"]);
        *h2.version_mut() = Version::HTTP_2;
        assert_eq!(
            routed_host(&h2),
            Err("host and :authority name different hosts")
        );
        assert_eq!(
            routed_host(&req("https://svc.internal/x", &[])),
            Ok("svc.internal")
        );
        assert_eq!(
            routed_host(&req("https://u@svc.internal/x", &[])),
            Err("invalid request target")
        );
        assert_eq!(
            routed_host(&req("/x", &["svc.internal", "svc.internal"])),
            Err("more than one Host header")
        );
        assert_eq!(routed_host(&req("/x", &[])), Err("missing Host"));
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("te") && h.contains_key("x-kept"));
    }

    fn route(domain: &str) -> Arc<Route> {
        let rec = conduit_registry::ServiceRecord::new(
            domain.split('.').next().unwrap().parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        );
        let t = RouteTable::build(
            &RouteTable::default(),
            &[Arc::new(rec)],
            crate::routes::NewBackend::healthy(true),
            |_| None,
            |_, _| true,
        );
        Arc::clone(t.get(domain).unwrap())
    }

    #[test]
    fn forwarded_headers() {
        let c = ConnInfo::new(
            "::ffff:10.8.0.5".parse().unwrap(),
            Some("svc.internal"),
            true,
        );
        let r = route("svc.internal");
        let client_says = || {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
            h.insert("x-real-ip", HeaderValue::from_static("192.0.2.1"));
            h.insert("forwarded", HeaderValue::from_static("for=192.0.2.1"));
            h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
            h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
            h.insert("host", HeaderValue::from_static("evil.example"));
            h.insert(
                "connection",
                HeaderValue::from_static("host, x-forwarded-for"),
            );
            h
        };
        // an ordinary client: its own values are replaced, Host is the routed name
        let mut h = client_says();
        upstream_headers(&mut h, &c, &r);
        assert_eq!(h["x-forwarded-for"], "10.8.0.5");
        assert_eq!(h["x-real-ip"], "10.8.0.5");
        assert_eq!(h["forwarded"], "for=10.8.0.5;proto=https");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["host"], "svc.internal");
        assert_eq!(h["x-forwarded-host"], "svc.internal");
        assert_eq!(h.get_all("host").iter().count(), 1);
        // a trusted proxy in front: its chain is kept and extended
        let trusted = ConnInfo::new("10.8.0.5".parse().unwrap(), None, true)
            .trusting(&[crate::Cidr::new("10.8.0.0".parse().unwrap(), 24).unwrap()]);
        let mut h = client_says();
        h.remove("connection");
        upstream_headers(&mut h, &trusted, &r);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.8.0.5");
        assert_eq!(h["x-real-ip"], "192.0.2.1");
        assert_eq!(h["forwarded"], "for=192.0.2.1");
        assert_eq!(h["host"], "svc.internal");
        let v6 = ConnInfo::new("fd00::5".parse().unwrap(), None, false);
        assert_eq!(v6.forwarded_header, "for=\"[fd00::5]\";proto=http");
    }

    #[test]
    fn redirects_keep_path_and_port() {
        let req = Request::builder()
            .uri("/a/b?c=d")
            .header("host", "svc.internal:8080")
            .body(())
            .unwrap();
        let r = redirect(&req, 8443);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()["location"], "https://svc.internal:8443/a/b?c=d");
        assert_eq!(
            redirect(&req, 443).headers()["location"],
            "https://svc.internal/a/b?c=d"
        );
    }
}
/// The request path's futures are moved (copied) between their states on every request; a
/// few KiB each was a 20 % throughput loss. These bounds keep the cold paths boxed.
#[cfg(test)]
mod future_size {
    use std::sync::Arc;

    use http::Request;
    use hyper::body::Incoming;

    fn size_of_output<F: FnOnce(Request<Incoming>) -> R, R>(_: &F) -> usize {
        size_of::<R>()
    }

    #[test]
    fn request_futures_stay_small() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let shared = crate::server::shared(crate::ProxyConfig::default(), &[]).unwrap();
            let conn = Arc::new(super::ConnInfo::new([127, 0, 0, 1].into(), None, true));
            let handle = move |r: Request<Incoming>| super::handle(shared, conn, r);
            let size = size_of_output(&handle);
            assert!(size <= 2048, "the per-request future is {size} bytes");
            let shared = crate::server::shared(crate::ProxyConfig::default(), &[]).unwrap();
            let backend = Arc::new(
                crate::routes::Backend::new(
                    "127.0.0.1:9".parse().unwrap(),
                    crate::routes::NewBackend::healthy(true),
                )
                .unwrap(),
            );
            let req = Request::new(crate::body::RequestBody::Empty);
            let send = crate::pool::send(&shared, &backend, req);
            let size = size_of_val(&send);
            assert!(size <= 1536, "the upstream send future is {size} bytes");
        });
    }
}
