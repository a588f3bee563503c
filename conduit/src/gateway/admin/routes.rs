//! What each path and method does: services, events, certificates, the read-only views.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::GatewayHandle;
use super::Caller;
use super::respond::{Body, body, error, expect, failed, json, service};
use crate::api::{Health, MonitorSnapshot};
use crate::spec::ServiceSpec;

/// `/v1/services` and `/v1/services/{name}`.
pub(crate) async fn services(
    req: Request<Incoming>,
    gw: GatewayHandle,
    caller: &Caller,
    name: Option<String>,
) -> Response<Body> {
    let method = req.method().clone();
    match (method, name) {
        (Method::GET, None) => match gw.services().await {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => failed(&e),
        },
        (Method::POST, None) => {
            let spec: ServiceSpec = match body(req).await {
                Ok(s) => s,
                Err(r) => return *r,
            };
            match gw.register(&spec, &caller.name).await {
                Ok(v) => service(StatusCode::CREATED, &v),
                Err(e) => failed(&e),
            }
        }
        (Method::GET, Some(n)) => match gw.service(&n).await {
            Ok(v) => service(StatusCode::OK, &v),
            Err(e) => failed(&e),
        },
        (Method::PUT, Some(n)) => {
            let expect = match expect(&req) {
                Ok(e) => e,
                Err(r) => return *r,
            };
            let spec: ServiceSpec = match body(req).await {
                Ok(s) => s,
                Err(r) => return *r,
            };
            match gw.update(&n, &spec, expect, &caller.name).await {
                Ok(v) => service(StatusCode::OK, &v),
                Err(e) => failed(&e),
            }
        }
        (Method::DELETE, Some(n)) => match gw.deregister(&n, &caller.name).await {
            Ok(v) => service(StatusCode::OK, &v),
            Err(e) => failed(&e),
        },
        (m, _) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{m} is not allowed here: GET and POST /v1/services; GET, PUT and DELETE /v1/services/NAME"
            ),
            false,
        ),
    }
}

/// `GET /v1/events`: Server-Sent Events (see `super::sse`).
pub(crate) fn events(
    req: &Request<Incoming>,
    gw: &GatewayHandle,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> Response<Body> {
    let last = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok());
    let sub = match super::super::sse::Subscription::parse(req.uri().query(), last) {
        Ok(s) => s,
        Err(why) => return error(StatusCode::BAD_REQUEST, why.to_string(), false),
    };
    let body = super::super::sse::open(gw.events(), sub, stop.clone(), |producer| {
        tracker.spawn(producer);
    });
    let mut r = Response::new(body.boxed());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    r
}

/// `GET /v1/events/recent?types=…&limit=N`: the kept events as one document.
fn recent_events(req: &Request<Incoming>, gw: &GatewayHandle) -> Response<Body> {
    let sub = match super::super::sse::Subscription::parse(req.uri().query(), None) {
        Ok(s) => s,
        Err(why) => return error(StatusCode::BAD_REQUEST, why.to_string(), false),
    };
    let limit = query_limit(req, 200).min(crate::events::REPLAY);
    let (events, cursor) = gw.events().recent(|e| sub.admits(e), limit);
    json(StatusCode::OK, &crate::api::EventList { events, cursor })
}

/// The value of `?key=` (as sent, not decoded); `""` when absent.
fn query_param<'r>(req: &'r Request<Incoming>, key: &str) -> &'r str {
    super::query_value(req.uri().query(), key).unwrap_or("")
}

/// `?limit=N`, else `default`.
fn query_limit(req: &Request<Incoming>, default: usize) -> usize {
    query_param(req, "limit").parse().unwrap_or(default)
}

pub(crate) async fn answer(
    req: Request<Incoming>,
    gw: GatewayHandle,
    caller: Caller,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/v1/events" && req.method() == Method::GET {
        return events(&req, &gw, &stop, &tracker);
    }
    if path == "/v1/events/recent" && req.method() == Method::GET {
        return recent_events(&req, &gw);
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "services"] => return services(req, gw, &caller, None).await,
        ["v1", "services", name] => {
            let name = (*name).to_owned();
            return services(req, gw, &caller, Some(name)).await;
        }
        _ => {}
    }
    let req = match super::policy::answer(req, &gw, &caller, parts.as_slice()).await {
        Ok(answered) => return answered,
        Err(req) => req,
    };
    match (req.method().clone(), parts.as_slice()) {
        (Method::GET, ["v1", "tokens"]) => {
            return match gw.tokens() {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => failed(&e),
            };
        }
        (Method::POST, ["v1", "tokens"]) => {
            let add: crate::api::TokenAdd = match body(req).await {
                Ok(b) => b,
                Err(r) => return *r,
            };
            return match gw.add_token(&add.name, add.scope, &caller.name).await {
                Ok(v) => json(StatusCode::CREATED, &v),
                Err(e) => failed(&e),
            };
        }
        (Method::DELETE, ["v1", "tokens", name]) => {
            return match gw.revoke_token(name, &caller.name).await {
                // The tokens left.
                Ok(()) => match gw.tokens() {
                    Ok(v) => json(StatusCode::OK, &v),
                    Err(e) => failed(&e),
                },
                Err(e) => failed(&e),
            };
        }
        _ => {}
    }
    if req.method() == Method::POST && path == "/v1/audit/witness" {
        let witnessed: crate::api::WitnessRequest = match body(req).await {
            Ok(b) => b,
            Err(r) => return *r,
        };
        return match gw.witness(witnessed, &caller.name).await {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => failed(&e),
        };
    }
    if path == "/v1/audit/checkpoint" && matches!(*req.method(), Method::GET | Method::POST) {
        let c = if req.method() == Method::POST {
            gw.checkpoint_now().await
        } else {
            gw.checkpoint()
        };
        return match c {
            Some(c) => json(StatusCode::OK, &c),
            None => error(
                StatusCode::NOT_FOUND,
                "no checkpoint: the sealed chain is empty, or this gateway's audit log is not its state directory's",
                false,
            ),
        };
    }
    if req.method() == Method::POST && path == "/v1/ca/intermediate" {
        let install: crate::api::IntermediateInstall = match body(req).await {
            Ok(b) => b,
            Err(r) => return *r,
        };
        return match gw.install_intermediate(&install.pem, &caller.name).await {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => failed(&e),
        };
    }
    if req.method() == Method::POST {
        // /v1/certs/{name}/rotate | /v1/certs/{name}/revoke
        return match parts.as_slice() {
            ["v1", "certs", name, "rotate"] => match gw.rotate(name, &caller.name).await {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => failed(&e),
            },
            ["v1", "certs", name, "revoke"] => match gw.revoke(name, &caller.name).await {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => failed(&e),
            },
            _ => error(
                StatusCode::NOT_FOUND,
                format!("no such action: POST {path}"),
                false,
            ),
        };
    }
    if req.method() != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "change services through /v1/services (or `conduit register`); certificates with POST /v1/certs/NAME/rotate|revoke",
            false,
        );
    }
    match path.as_str() {
        "/v1/health" => json(StatusCode::OK, &Health { ok: true }),
        "/v1/monitor" => json(
            StatusCode::OK,
            &MonitorSnapshot {
                samples: gw.samples(),
            },
        ),
        "/v1/dns" => json(StatusCode::OK, &gw.dns()),
        "/v1/certs" => json(StatusCode::OK, &gw.certificates()),
        "/v1/audit/witnesses" => json(StatusCode::OK, &gw.witnesses()),
        "/v1/dns/resolve" => {
            let ipv6 = match query_param(&req, "type") {
                "" | "A" | "a" => false,
                "AAAA" | "aaaa" => true,
                other => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("type={other}: the resolver asks for A or AAAA"),
                        false,
                    );
                }
            };
            match gw.resolve(query_param(&req, "name"), ipv6).await {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => failed(&e),
            }
        }
        "/v1/audit" => {
            let limit = query_limit(&req, 50).min(10_000);
            match gw.audit_tail(limit).await {
                Ok(tail) => json(StatusCode::OK, &tail),
                Err(e) => failed(&e),
            }
        }
        "/v1/status" => match gw.status().await {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => failed(&e),
        },
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(gw.metrics())).boxed());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        other => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {other}"),
            false,
        ),
    }
}
