//! The admin API: JSON over HTTP/1.1 on a unix socket (0600, the gateway's user only), and optionally on a
//! TCP address where every request must carry `Authorization: Bearer TOKEN` (a TCP listener
//! without a token is refused at start).
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /v1/status` | every active service: domain, upstreams and their health, certificate expiry |
//! | `GET /metrics` | Prometheus text (proxy and DNS counters, upstream health) |
//! | `GET /v1/health` | `{"ok":true}` while the gateway runs |
//! | `GET /v1/monitor` | the last monitor round's samples (host, GPU, containers, remote hosts) |
//! | `GET /v1/dns` | the zone's records as served now, and the SOA serial |
//! | `GET /v1/audit?limit=N` | the last N audit records (default 50) |
//!
//! | `POST /v1/certs/{name}/rotate` | a new key and leaf for the service (audited `cert_rotate`) |
//! | `POST /v1/certs/{name}/revoke` | its leaf revoked (CRL saved) and a new one served (audited `cert_revoke`) |
//!
//! Services change through the registry (`conduit register`), which the gateway follows;
//! every other method or path is refused (405 / 404), and a failed action changes nothing
//! and answers 409 with the reason: the API fails closed.

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::gateway::{GatewayError, GatewayHandle};

/// Binds the socket (replacing a stale one) with mode 0600.
pub(crate) fn bind(path: &Path) -> Result<Listener, GatewayError> {
    let err = |source| GatewayError::Admin {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        // A socket left by a gateway that did not stop cleanly; a live one would answer.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another gateway is listening on it",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(Listener::Unix(listener))
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn answer(req: Request<Incoming>, gw: GatewayHandle) -> Response<Full<Bytes>> {
    if req.method() == Method::POST {
        // /v1/certs/{name}/rotate | /v1/certs/{name}/revoke
        let parts: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
        let user = gw.audit_user().to_owned();
        let result = match parts.as_slice() {
            ["v1", "certs", name, "rotate"] => gw.rotate(name, &user).await,
            ["v1", "certs", name, "revoke"] => gw.revoke(name, &user).await,
            _ => {
                return json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": format!("no such action: POST {}", req.uri().path())}),
                );
            }
        };
        return match result {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => json(
                StatusCode::CONFLICT,
                &serde_json::json!({"error": e.to_string()}),
            ),
        };
    }
    if req.method() != Method::GET {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "change services with `conduit register`; certificates with POST /v1/certs/NAME/rotate|revoke"}),
        );
    }
    match req.uri().path() {
        "/v1/health" => json(StatusCode::OK, &serde_json::json!({"ok": true})),
        "/v1/monitor" => json(
            StatusCode::OK,
            &serde_json::json!({"samples": gw.samples()}),
        ),
        "/v1/dns" => json(StatusCode::OK, &gw.dns()),
        "/v1/audit" => {
            let limit = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("limit="))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(50)
                .min(10_000);
            match gw.audit_tail(limit).await {
                Ok(v) => json(StatusCode::OK, &serde_json::json!({"events": v})),
                Err(e) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({"error": e.to_string()}),
                ),
            }
        }
        "/v1/status" => match gw.status().await {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": e.to_string()}),
            ),
        },
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(gw.metrics())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        other => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": format!("no such endpoint: {other}")}),
        ),
    }
}

/// Whether a request carries the token (`Authorization: Bearer TOKEN`), compared in
/// constant time.
fn authorized<B>(req: &Request<B>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    let want = token.as_bytes();
    if given.len() != want.len() {
        return false;
    }
    given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Serves one connection; with a token, every request must carry it (401 otherwise).
fn serve_conn<I>(io: I, gw: GatewayHandle, token: Option<Arc<str>>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let svc = hyper::service::service_fn(move |req| {
            let (gw, token) = (gw.clone(), token.clone());
            async move {
                if let Some(t) = &token
                    && !authorized(&req, t)
                {
                    return Ok::<_, Infallible>(json(
                        StatusCode::UNAUTHORIZED,
                        &serde_json::json!({"error": "missing or wrong bearer token"}),
                    ));
                }
                Ok(answer(req, gw).await)
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), svc)
            .await;
    });
}

/// A bound admin listener.
#[derive(Debug)]
pub(crate) enum Listener {
    /// The unix socket (its mode is the authentication).
    Unix(UnixListener),
    /// TCP: every request must carry the token.
    Tcp(tokio::net::TcpListener, Arc<str>),
}

impl Listener {
    /// Accepts one connection and starts serving it.
    async fn accept(&self, gw: &GatewayHandle) {
        match self {
            Self::Unix(l) => {
                if let Ok((stream, _)) = l.accept().await {
                    serve_conn(stream, gw.clone(), None);
                }
            }
            Self::Tcp(l, token) => {
                if let Ok((stream, _)) = l.accept().await {
                    serve_conn(stream, gw.clone(), Some(token.clone()));
                }
            }
        }
    }
}

/// Serves the admin API on `listener` until `stop` completes.
pub(crate) async fn serve(listener: Listener, gw: GatewayHandle, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = listener.accept(&gw) => {}
        }
    }
}

/// `GET path` on the admin socket; the status and the body as text.
///
/// # Errors
/// The connection or the request failed (no gateway running there).
pub async fn get(socket: &Path, path: &str) -> Result<(u16, String), std::io::Error> {
    call(socket, Method::GET, path).await
}

/// `POST path` (no body) on the admin socket; the status and the body as text.
///
/// # Errors
/// The connection or the request failed (no gateway running there).
pub async fn post(socket: &Path, path: &str) -> Result<(u16, String), std::io::Error> {
    call(socket, Method::POST, path).await
}

async fn call(socket: &Path, method: Method, path: &str) -> Result<(u16, String), std::io::Error> {
    use http_body_util::{BodyExt as _, Empty};
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "conduit")
        .body(Empty::<Bytes>::new())
        .map_err(std::io::Error::other)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
