//! Forwarding one request: pick an upstream, send (on a pooled connection), and on a
//! failure decide by its type ([`UpstreamError`]) whether it counts against the upstream,
//! whether another upstream may take the request, and what the client is told.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::failure::{FailureSide, UpstreamError};
use crate::headers::{origin_form, strip_hop_by_hop, upstream_headers};
use crate::pool::SendError;
use crate::request_body::RequestBody;
use crate::response_body::{ResponseBody, local};
use crate::routes::{Backend, CheckSource, Route};
use crate::shared::{ConnInfo, Shared};

pub(crate) fn no_upstream(s: &Shared, route: &Route) -> Response<ResponseBody> {
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

/// The upstream's response as the client gets it: hop-by-hop headers removed, the body
/// streamed with the idle timeout, the in-flight count and the connection held until it ends.
pub(crate) fn pass_through(
    s: &Shared,
    resp: Response<Incoming>,
    to: Version,
    flight: Option<crate::routes::InFlight>,
    lease: Option<crate::conn::Lease>,
) -> Response<ResponseBody> {
    let (mut head, incoming) = resp.into_parts();
    strip_hop_by_hop(&mut head.headers);
    // To an HTTP/2 client (`to`) the upstream's headers go as literals, never entered in
    // the connection's HPACK dynamic table (as nginx sends them): searching and filling the
    // table for every response cost 2-3 % of the proxy's CPU on 1 KiB responses, for some
    // hundred bytes saved per response on a local network.
    if to == Version::HTTP_2 {
        for v in head.headers.values_mut() {
            v.set_sensitive(true);
        }
    }
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

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Forwards `req` on `route`: to one upstream, and (when the request never left and the
/// retry policy allows its method) to the next.
pub(crate) async fn forward(
    s: &Arc<Shared>,
    c: &ConnInfo,
    route: &Arc<Route>,
    req: Request<Incoming>,
) -> (Response<ResponseBody>, Option<Arc<Backend>>) {
    let (parts, body) = req.into_parts();
    let body = if body.is_end_stream() {
        RequestBody::Empty
    } else {
        RequestBody::stream(body, route.body_limit, s.config.timeouts.idle)
    };
    send(s, c, route, parts, body, |tried| {
        route.pick(s.config.balance, tried).map(Arc::clone)
    })
    .await
}

/// Sends a request to the upstream `pick` gives (it is told the upstreams tried, by
/// address), and again to the next when it never left and the retry policy allows.
pub(crate) async fn send(
    s: &Arc<Shared>,
    c: &ConnInfo,
    route: &Arc<Route>,
    mut parts: http::request::Parts,
    body: RequestBody,
    mut pick: impl FnMut(&[usize]) -> Option<Arc<Backend>>,
) -> (Response<ResponseBody>, Option<Arc<Backend>>) {
    upstream_headers(&mut parts.headers, c, route);
    let client_version = parts.version;
    let retry = s.config.retry;
    let may_retry = retry.retries > 0 && (retry.non_idempotent || idempotent(&parts.method));
    // Built once: a request that never left comes back intact and goes to the next upstream.
    let mut up = Request::new(body);
    *up.method_mut() = parts.method;
    *up.uri_mut() = origin_form(&parts.uri);
    *up.headers_mut() = parts.headers;
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let Some(backend) = pick(&tried) else {
            up.into_body().discard();
            if tried.is_empty() {
                return (no_upstream(s, route), None);
            }
            let msg = format!("no upstream of {} could be reached", route.domain);
            return (local(StatusCode::BAD_GATEWAY, msg), None);
        };
        let flight = backend.begin();
        let first_byte = s.config.timeouts.upstream_first_byte;
        let began = tokio::time::Instant::now();
        let sent = tokio::time::timeout(first_byte, crate::pool::send(s, &backend, up)).await;
        let SendError { error, unsent } = match sent {
            Ok(Ok((resp, lease))) => {
                backend.observe_latency(began.elapsed());
                let ok = !s
                    .config
                    .health
                    .passive_failure_statuses
                    .contains(&resp.status().as_u16());
                s.record(route, &backend, ok, CheckSource::Passive, || {
                    format!("answered {}", resp.status())
                });
                return (
                    pass_through(s, resp, client_version, Some(flight), Some(lease)),
                    Some(backend),
                );
            }
            Ok(Err(e)) => e,
            Err(_) => SendError {
                error: UpstreamError::NoResponse { after: first_byte },
                unsent: None,
            },
        };
        drop(flight);
        if error.side() == FailureSide::Upstream {
            s.record(route, &backend, false, CheckSource::Passive, || {
                error.chain()
            });
        }
        if let Some(req) = unsent {
            if error.is_retryable() && may_retry && (tried.len() as u32) < retry.retries {
                tracing::debug!(upstream = %backend.endpoint, error = %error.chain(), "retrying on another upstream");
                s.counters.inc(|c| &c.retries);
                tried.push(Arc::as_ptr(&backend) as usize);
                up = *req;
                continue;
            }
            req.into_body().discard();
        }
        return (failed(s, route, &backend, &error), Some(backend));
    }
}

/// The client's answer to a failed request, counted and logged by whose fault it was.
fn failed(
    s: &Shared,
    route: &Route,
    backend: &Backend,
    error: &UpstreamError,
) -> Response<ResponseBody> {
    match error {
        UpstreamError::BodyTooLarge { .. } => s.counters.inc(|c| &c.too_large),
        UpstreamError::BodyIdle { .. } => s.counters.inc(|c| &c.idle_timeouts),
        UpstreamError::ClientBody { .. } => {
            s.counters.inc(|c| &c.client_errors);
            tracing::debug!(service = %route.service, error = %error.chain(), "the client's request body failed");
        }
        UpstreamError::Busy => {
            s.counters.inc(|c| &c.no_healthy);
            tracing::warn!(service = %route.service, upstream = %backend.endpoint, max = s.config.limits.max_conns_per_upstream, "every connection to the upstream stayed busy");
        }
        UpstreamError::NoResponse { after } => {
            s.counters.inc(|c| &c.upstream_timeouts);
            tracing::warn!(service = %route.service, upstream = %backend.endpoint, timeout = ?after, "upstream sent no response in time");
        }
        _ => {
            s.counters.inc(|c| &c.upstream_errors);
            tracing::warn!(service = %route.service, upstream = %backend.endpoint, error = %error.chain(), "upstream request failed");
        }
    }
    let mut r = local(error.status(), error.client_message(route.domain.as_str()));
    if matches!(error, UpstreamError::Busy) {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(s.config.health.retry_after_secs),
        );
    }
    r
}
