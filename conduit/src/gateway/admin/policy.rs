//! `/v1/peers`, `/v1/grants` and `/v1/access/…`: the access policy over the admin API.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::super::GatewayHandle;
use super::Caller;
use super::respond::{Body, body, error, failed, json, query_value, unescape};
use crate::api::{GrantRemove, RequireCert};
use crate::audited::PolicyChange;
use conduit_registry::access::{Grant, Peer};

/// The query parameter `key` (percent-escapes decoded).
fn param(req: &Request<Incoming>, key: &str) -> Option<String> {
    query_value(req.uri().query(), key).map(unescape)
}

fn changed<T: serde::Serialize>(
    r: Result<T, crate::gateway::GatewayError>,
    status: StatusCode,
) -> Response<Body> {
    match r {
        Ok(v) => json(status, &v),
        Err(e) => failed(&e),
    }
}

fn bad(what: &str, reason: impl std::fmt::Display) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, format!("{what}: {reason}"), false)
}

/// Answers the policy's paths; `None` for any other path.
pub(crate) async fn answer(
    req: Request<Incoming>,
    gw: &GatewayHandle,
    caller: &Caller,
    parts: &[&str],
) -> Result<Response<Body>, Request<Incoming>> {
    let method = req.method().clone();
    Ok(match (method, parts) {
        (Method::GET, ["v1", "peers"]) => changed(gw.peers().await, StatusCode::OK),
        (Method::POST, ["v1", "peers"]) => {
            let peer: Peer = match body(req).await {
                Ok(p) => p,
                Err(r) => return Ok(*r),
            };
            let change = PolicyChange::AddPeer(peer);
            match gw.change_policy(&change, &caller.name).await {
                Ok(_) => changed(gw.peers().await, StatusCode::CREATED),
                Err(e) => failed(&e),
            }
        }
        (Method::DELETE, ["v1", "peers", name]) => match gw.remove_peer(name, &caller.name).await {
            Ok(()) => changed(gw.peers().await, StatusCode::OK),
            Err(e) => failed(&e),
        },
        (Method::POST, ["v1", "peers", name, "cert"]) => {
            changed(gw.peer_cert(name, &caller.name).await, StatusCode::CREATED)
        }
        (Method::POST, ["v1", "peers", name, "revoke"]) => {
            changed(gw.revoke_peer(name, &caller.name).await, StatusCode::OK)
        }
        (Method::GET, ["v1", "grants"]) => {
            let service = param(&req, "service");
            changed(gw.grants(service.as_deref()).await, StatusCode::OK)
        }
        (Method::POST, ["v1", "grants"]) => {
            let grant: Grant = match body(req).await {
                Ok(g) => g,
                Err(r) => return Ok(*r),
            };
            // Methods as typed (`get`) are stored upper case.
            let methods = grant.methods.clone();
            let grant = grant.methods(methods);
            let service = grant.service.to_string();
            match gw
                .change_policy(&PolicyChange::AddGrant(grant), &caller.name)
                .await
            {
                Ok(_) => changed(gw.grants(Some(&service)).await, StatusCode::CREATED),
                Err(e) => failed(&e),
            }
        }
        (Method::DELETE, ["v1", "grants"]) => {
            let rm: GrantRemove = match body(req).await {
                Ok(g) => g,
                Err(r) => return Ok(*r),
            };
            let (service, to) = match (rm.service.parse(), rm.to.parse()) {
                (Ok(s), Ok(t)) => (s, t),
                (Err(e), _) => return Ok(bad("service", e)),
                (_, Err(e)) => return Ok(bad("to", e)),
            };
            match gw
                .change_policy(&PolicyChange::RemoveGrant { service, to }, &caller.name)
                .await
            {
                Ok(_) => changed(gw.grants(Some(&rm.service)).await, StatusCode::OK),
                Err(e) => failed(&e),
            }
        }
        (Method::POST, ["v1", "access", "require-cert"]) => {
            let rc: RequireCert = match body(req).await {
                Ok(r) => r,
                Err(r) => return Ok(*r),
            };
            let service = match rc.service.parse() {
                Ok(s) => s,
                Err(e) => return Ok(bad("service", e)),
            };
            let change = PolicyChange::RequireCert {
                service,
                required: rc.required,
            };
            match gw.change_policy(&change, &caller.name).await {
                Ok(_) => changed(gw.grants(Some(&rc.service)).await, StatusCode::OK),
                Err(e) => failed(&e),
            }
        }
        (Method::GET, ["v1", "access", "check"]) => {
            let from = match param(&req, "from").map(|f| f.parse::<std::net::IpAddr>()) {
                Some(Ok(ip)) => ip,
                Some(Err(e)) => return Ok(bad("from", e)),
                None => return Ok(bad("from", "missing: ?from=IP&service=NAME")),
            };
            let Some(service) = param(&req, "service") else {
                return Ok(bad("service", "missing: ?from=IP&service=NAME"));
            };
            let method = param(&req, "method").unwrap_or_else(|| "GET".to_owned());
            let path = param(&req, "path").unwrap_or_else(|| "/".to_owned());
            let cert = param(&req, "cert");
            changed(
                gw.access_check(from, cert.as_deref(), &service, &method, &path),
                StatusCode::OK,
            )
        }
        _ => return Err(req),
    })
}
