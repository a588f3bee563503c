//! The request path as a `tower::Service`: host → route → upstream. The host and head
//! checks are in `headers`, forwarding in `forward`, upgrades in `upgrade`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::forward::forward;
use crate::headers::{
    content_length, head_size, is_upgrade, request_host, routed_host, upgrade_allowed,
};
use crate::response_body::{ResponseBody, local};
use crate::routes::Backend;
use crate::shared::{ConnInfo, Shared};
use crate::upgrade::upgrade;

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
    // Both boxed: kept across the await, they would otherwise make every request's future
    // (copied whole when it is boxed) a few hundred bytes larger.
    let log = tracing::enabled!(target: "conduit_proxy::access", tracing::Level::INFO).then(|| {
        let host = request_host(&req).unwrap_or("").to_owned();
        Box::new((req.method().clone(), req.uri().clone(), req.version(), host))
    });
    let access = s.config.access_log.as_ref().map(|sink| {
        let record = crate::access::AccessRecord {
            time: time::OffsetDateTime::now_utc(),
            client: c.client_ip,
            peer: crate::policy::peer_of(&s, &c),
            host: request_host(&req).unwrap_or("").to_owned(),
            upstream: None,
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            status: 0,
            bytes: 0,
            ttfb_us: 0,
            duration_us: 0,
            llm: None,
        };
        Box::new(crate::access::Pending {
            record,
            start,
            sink: Arc::clone(sink),
        })
    });
    let (mut resp, upstream) = route(&s, &c, req).await;
    let elapsed = start.elapsed();
    if let Some(mut pending) = access {
        let record = &mut pending.record;
        record.status = resp.status().as_u16();
        record.upstream = upstream.as_ref().map(|b| Arc::clone(&b.label));
        record.llm = resp
            .extensions_mut()
            .remove::<Arc<crate::RouteExplanation>>();
        record.ttfb_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        resp.body_mut().track(pending);
    }
    if c.https
        && let Some(v) = &s.hsts
    {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    s.counters.response(resp.status().as_u16(), elapsed);
    if let Some(log) = log {
        let (method, uri, version, host) = *log;
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

async fn route(
    s: &Arc<Shared>,
    c: &Arc<ConnInfo>,
    req: Request<Incoming>,
) -> (Response<ResponseBody>, Option<Arc<Backend>>) {
    let host = match routed_host(&req) {
        Ok(h) => h,
        Err(why) => {
            s.counters.inc(|c| &c.client_errors);
            crate::request_body::drain(req.into_body());
            return (local(StatusCode::BAD_REQUEST, why), None);
        }
    };
    if req.version() <= Version::HTTP_11 && head_size(&req) > s.config.limits.max_header_bytes {
        // hyper's read buffer bounds the head only roughly; the documented limit is exact.
        s.counters.inc(|c| &c.client_errors);
        crate::request_body::drain(req.into_body());
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
        crate::request_body::drain(req.into_body());
        return (local(StatusCode::MISDIRECTED_REQUEST, msg), None);
    }
    let site = s.local.load().as_ref().filter(|m| m.is(host)).cloned();
    if let Some(site) = site {
        if !c.https {
            let answer = redirect(&req, c.redirect_port);
            crate::request_body::drain(req.into_body());
            return (answer, None);
        }
        let client = crate::LocalClient { ip: c.client_ip };
        let answer = site.site.serve(req, client).await;
        return (answer.map(ResponseBody::local_site), None);
    }
    let table = s.routes.load();
    if !c.https
        && table.get(host).is_none_or(|r| r.tls)
        && let Some(answer) = s.published.answer(req.method(), req.uri().path())
    {
        drop(table);
        crate::request_body::drain(req.into_body());
        return (answer, None);
    }
    let Some(route) = table.get(host) else {
        s.counters.inc(|c| &c.no_route);
        let msg = format!("no service is registered for {host}");
        crate::request_body::drain(req.into_body());
        return (local(StatusCode::NOT_FOUND, msg), None);
    };
    let route = Arc::clone(route);
    drop(table);
    if !c.https && route.tls {
        // A TLS service asked for over plain HTTP: only registered names are redirected.
        let answer = redirect(&req, c.redirect_port);
        crate::request_body::drain(req.into_body());
        return (answer, None);
    }
    if let Some(denied) = crate::policy::check(s, c, &route, req.method(), req.uri().path()) {
        crate::request_body::drain(req.into_body());
        return (denied, None);
    }
    if let Some(max) = route.body_limit
        && content_length(req.headers()).is_some_and(|n| n > max)
    {
        s.counters.inc(|c| &c.too_large);
        crate::request_body::drain(req.into_body());
        let msg = format!("request body is larger than the limit of {max} bytes");
        return (local(StatusCode::PAYLOAD_TOO_LARGE, msg), None);
    }
    if is_upgrade(&req) && upgrade_allowed(&req, &s.config.upgrades) {
        // Boxed: rare, and its future is large (see `pool::send`).
        return Box::pin(upgrade(s, c, &route, req)).await;
    }
    if route.models.is_some() {
        return Box::pin(crate::llm::serve(s, c, &route, req)).await;
    }
    // Boxed: the forwarding future is built once in place on the heap instead of being
    // copied into each enclosing future (a few KiB per request otherwise).
    Box::pin(forward(s, c, &route, req)).await
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
                    conduit_registry::Engine::Http,
                    crate::routes::NewBackend::healthy(true),
                )
                .unwrap(),
            );
            let req = Request::new(crate::request_body::RequestBody::Empty);
            let send = crate::pool::send(&shared, &backend, req);
            let size = size_of_val(&send);
            assert!(size <= 1536, "the upstream send future is {size} bytes");
        });
    }
}
