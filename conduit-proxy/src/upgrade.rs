//! WebSocket (or any allowed HTTP/1.1 upgrade): the upgrade request goes to an upstream on
//! a connection of its own; on `101` both sides are joined byte for byte, with an idle
//! timeout.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::failure::{FailureSide, UpstreamError};
use crate::forward::{no_upstream, pass_through};
use crate::headers::{origin_form, upstream_headers};
use crate::request_body::RequestBody;
use crate::response_body::{ResponseBody, local};
use crate::routes::{Backend, CheckSource, Route};
use crate::shared::{ConnInfo, Shared};

/// WebSocket (or any HTTP/1.1 upgrade): the upgrade request goes to an upstream on a
/// connection of its own; on `101` both sides are joined byte for byte.
pub(crate) async fn upgrade(
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
    let fail = |error: UpstreamError| {
        if error.side() == FailureSide::Upstream {
            s.record(route, &backend, false, CheckSource::Passive, || {
                error.chain()
            });
        }
        tracing::warn!(service = %route.service, upstream = %backend.endpoint, error = %error.chain(), "upgrade to the upstream failed");
        local(
            StatusCode::BAD_GATEWAY,
            format!("{}: the upstream could not take the upgrade", route.domain),
        )
    };
    let io = match crate::pool::connect_io(s, &backend.base_uri).await {
        Ok(io) => io,
        Err(error) => {
            s.counters.inc(|c| &c.upstream_errors);
            return (fail(error), Some(backend));
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake::<_, RequestBody>(io).await
    {
        Ok(x) => x,
        Err(e) => {
            let error = UpstreamError::ClosedBeforeSend {
                source: Box::new(e),
            };
            return (fail(error), Some(backend));
        }
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
            return (fail(UpstreamError::after_send(e)), Some(backend));
        }
        Err(_) => {
            return (
                fail(UpstreamError::NoResponse {
                    after: s.config.timeouts.upstream_first_byte,
                }),
                Some(backend),
            );
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return (
            pass_through(s, resp, Version::HTTP_11, None, None),
            Some(backend),
        );
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
