//! The admin API's server: listeners, authentication, routing to the gateway handle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use conduit_registry::Revision;

use super::{Expect, GatewayError, GatewayHandle};
use crate::api::{ApiError, AuditTail, Health, MonitorSnapshot, ServiceView};
use crate::config::Secret;
use crate::spec::ServiceSpec;
use crate::tokens::Scope;

/// How long a client may take to send a request head (slow clients hold no connection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once per TCP listener; further ones are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// Connections served at once on the unix socket (only the gateway's user reaches it; event
/// stream clients hold theirs open).
const MAX_UNIX_CONNECTIONS: usize = 1024;

/// Binds the unix socket (replacing a stale one), created with mode 0600, or 0660 and
/// owned by `group` when one is given.
pub(crate) fn bind_unix(path: &Path, group: Option<&str>) -> Result<Listener, GatewayError> {
    let err = |source| GatewayError::Admin {
        address: path.display().to_string(),
        source,
    };
    if path.exists() {
        // A socket left by a gateway that did not stop cleanly; a live one would answer.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another gateway is listening on it (stop it, or set `[admin] socket`)",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(err)?;
    // Bound inside a private directory (0700) and given its mode there, then moved into
    // place: the socket is never reachable with a looser mode, wherever it lives.
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let private = parent.join(format!(
        ".conduit-admin-{}-{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(err)?;
    let gid = match group {
        None => None,
        Some(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Some(g.gid),
            _ => {
                return Err(err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "no group {name:?} for `[admin] socket_group`: create it (groupadd {name}) or remove the setting"
                    ),
                )));
            }
        },
    };
    let staged = private.join("admin.sock");
    let bound = UnixListener::bind(&staged)
        .and_then(|l| {
            if let Some(gid) = gid {
                nix::unistd::chown(&staged, None, Some(gid)).map_err(std::io::Error::from)?;
            }
            let mode = if gid.is_some() { 0o660 } else { 0o600 };
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&staged, path)?;
            Ok(l)
        })
        .map_err(err);
    let _ = std::fs::remove_dir_all(&private);
    Ok(Listener::Unix(bound?))
}

/// Binds the TCP listener; every request on it must carry a token `auth` knows. With `tls`,
/// clients get the certificate the resolver holds for the listener's address (or the name
/// they ask for).
pub(crate) async fn bind_tcp(
    addr: SocketAddr,
    auth: Auth,
    tls: Option<Arc<conduit_ca::CertResolver>>,
) -> Result<Listener, GatewayError> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Admin {
            address: addr.to_string(),
            source,
        })?;
    let token = Arc::new(auth);
    Ok(match tls {
        None => Listener::Tcp(l, token),
        Some(resolver) => {
            let cert = Arc::new(AdminCert {
                resolver,
                fallback: addr.ip().to_string(),
            });
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| GatewayError::Admin {
                    address: addr.to_string(),
                    source: std::io::Error::other(e),
                })?
                .with_no_client_auth()
                .with_cert_resolver(cert);
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Listener::Tls(l, tokio_rustls::TlsAcceptor::from(Arc::new(config)), token)
        }
    })
}

/// The admin listener's certificate: the one for the name a client asks for, else the one
/// for the listener's address (clients that connect by IP send no name).
#[derive(Debug)]
struct AdminCert {
    resolver: Arc<conduit_ca::CertResolver>,
    fallback: String,
}

impl rustls::server::ResolvesServerCert for AdminCert {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        hello
            .server_name()
            .and_then(|n| self.resolver.lookup(n))
            .or_else(|| self.resolver.lookup(&self.fallback))
    }
}

/// Every answer's body: a whole JSON document, or an event stream.
type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The error code of an HTTP status (see [`ApiErrorBody::code`](crate::api::ApiErrorBody)).
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PRECONDITION_FAILED | StatusCode::PRECONDITION_REQUIRED => "stale",
        StatusCode::UNPROCESSABLE_ENTITY => "refused",
        StatusCode::SERVICE_UNAVAILABLE => "not_ready",
        _ => "internal",
    }
}

fn error(status: StatusCode, message: impl Into<String>, retryable: bool) -> Response<Body> {
    json(status, &ApiError::new(code_of(status), message, retryable))
}

/// The status that tells whose fault a failed action was.
fn status_of(e: &GatewayError) -> StatusCode {
    use conduit_registry::RegistryError as R;
    match e {
        GatewayError::Spec(s) if s.is_refused_by_policy() => StatusCode::UNPROCESSABLE_ENTITY,
        GatewayError::Spec(_) => StatusCode::BAD_REQUEST,
        GatewayError::Registry(R::NotFound { .. }) => StatusCode::NOT_FOUND,
        GatewayError::Registry(R::Conflict { .. }) => StatusCode::PRECONDITION_FAILED,
        GatewayError::Registry(R::AlreadyExists { .. } | R::DomainTaken { .. }) => {
            StatusCode::CONFLICT
        }
        GatewayError::Registry(R::InvalidRecord { .. }) => StatusCode::BAD_REQUEST,
        GatewayError::Ca(conduit_ca::CaError::Unknown { .. }) => StatusCode::NOT_FOUND,
        GatewayError::Ca(_) => StatusCode::CONFLICT,
        e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn failed(e: &GatewayError) -> Response<Body> {
    error(status_of(e), e.to_string(), e.is_retryable())
}

/// A stored service, with its revision as the `ETag`.
fn service(status: StatusCode, view: &ServiceView) -> Response<Body> {
    let mut r = json(status, view);
    if let Ok(v) = header::HeaderValue::from_str(&format!("\"{}\"", view.revision)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// The revision an `If-Match` asks for: `"7"` or `7`; `*` (or no header) is any.
fn expect(req: &Request<Incoming>) -> Result<Expect, Box<Response<Body>>> {
    let Some(v) = req.headers().get(header::IF_MATCH) else {
        return Ok(Expect::Any);
    };
    let text = v.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(Expect::Any);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u64>()
        .map(|r| Expect::Revision(Revision(r)))
        .map_err(|_| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("If-Match {text:?}: expected a revision as given in ETag"),
                false,
            ))
        })
}

/// The largest request body the admin API reads.
const MAX_BODY: usize = 1024 * 1024;

/// Reads a JSON body of type `T`.
async fn body<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Box<Response<Body>>> {
    use http_body_util::BodyExt as _;
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
                false,
            )));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("the request body is not what this endpoint takes: {e}"),
            false,
        ))
    })
}

/// `/v1/services` and `/v1/services/{name}`.
async fn services(
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
fn events(
    req: &Request<Incoming>,
    gw: &GatewayHandle,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> Response<Body> {
    let last = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok());
    let sub = match super::sse::Subscription::parse(req.uri().query(), last) {
        Ok(s) => s,
        Err(why) => return error(StatusCode::BAD_REQUEST, why, false),
    };
    let body = super::sse::open(gw.events(), sub, stop.clone(), |producer| {
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

async fn answer(
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
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "services"] => return services(req, gw, &caller, None).await,
        ["v1", "services", name] => {
            let name = (*name).to_owned();
            return services(req, gw, &caller, Some(name)).await;
        }
        _ => {}
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
                Ok(events) => json(StatusCode::OK, &AuditTail { events }),
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

/// Who is calling, from the transport (never from the request): the unix socket's peer
/// user, or the bearer token's name on TCP.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The name audit records carry.
    pub(crate) name: String,
    /// What it may do (the unix socket's peers: everything).
    pub(crate) scope: Scope,
}

impl Caller {
    /// A TCP caller before its token is read (every request is authenticated on its own).
    fn unknown() -> Self {
        Self {
            name: "unknown".to_owned(),
            scope: Scope::Read,
        }
    }

    /// The peer of a unix-socket connection, by the kernel's `SO_PEERCRED`: its user's
    /// name, else `uid:N`.
    fn of_unix(s: &tokio::net::UnixStream) -> Self {
        let name = match s.peer_cred() {
            Ok(c) => crate::identity::user_name(c.uid()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the admin peer's credentials");
                "unknown".to_owned()
            }
        };
        Self {
            name,
            scope: Scope::Admin,
        }
    }
}

/// Who may use the TCP listener: the named tokens of the state directory (read again when
/// they change), and the configuration's one `[admin] token` as `legacy` where there is no
/// state directory to import it into.
#[derive(Debug)]
pub(crate) struct Auth {
    pub(crate) store: Option<crate::tokens::TokenStore>,
    pub(crate) legacy: Option<Secret>,
}

impl Auth {
    /// The caller a request's bearer token makes, if any.
    fn caller<B>(&self, req: &Request<B>) -> Option<Caller> {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))?
            .trim();
        if let Some((name, scope)) = self.store.as_ref().and_then(|s| s.check(given)) {
            return Some(Caller {
                name: format!("token:{name}"),
                scope,
            });
        }
        let want = self.legacy.as_ref()?.expose().as_bytes();
        let g = given.as_bytes();
        let same =
            g.len() == want.len() && g.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        same.then(|| Caller {
            name: "token:legacy".to_owned(),
            scope: Scope::Admin,
        })
    }
}

/// Serves one connection until it ends or `stop` fires (then the request in flight is
/// answered and the connection closed); with a token, every request must carry it.
async fn serve_conn<I>(
    io: I,
    gw: GatewayHandle,
    auth: Option<Arc<Auth>>,
    caller: Caller,
    stop: CancellationToken,
    tracker: TaskTracker,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stop_conn = stop.clone();
    let svc = hyper::service::service_fn(move |req| {
        let (gw, auth, caller) = (gw.clone(), auth.clone(), caller.clone());
        let (stop, tracker) = (stop_conn.clone(), tracker.clone());
        async move {
            let caller = match &auth {
                None => caller,
                Some(a) => match a.caller(&req) {
                    Some(c) => c,
                    None => {
                        return Ok::<_, Infallible>(error(
                            StatusCode::UNAUTHORIZED,
                            "missing, wrong or revoked bearer token (`conduit token add NAME` makes one)",
                            false,
                        ));
                    }
                },
            };
            if caller.scope == Scope::Read && req.method() != Method::GET {
                return Ok(error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{} is read-only: {} needs an admin token",
                        caller.name,
                        req.method()
                    ),
                    false,
                ));
            }
            Ok(answer(req, gw, caller, stop, tracker).await)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// A bound admin listener.
pub(crate) enum Listener {
    /// The unix socket (its mode is the authentication).
    Unix(UnixListener),
    /// Plain TCP on loopback: every request must carry the token.
    Tcp(tokio::net::TcpListener, Arc<Auth>),
    /// TLS: every request must carry the token.
    Tls(
        tokio::net::TcpListener,
        tokio_rustls::TlsAcceptor,
        Arc<Auth>,
    ),
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(l) => f.debug_tuple("Unix").field(l).finish(),
            Self::Tcp(l, _) => f.debug_tuple("Tcp").field(l).finish(),
            Self::Tls(l, _, _) => f.debug_tuple("Tls").field(l).finish(),
        }
    }
}

/// Serves the admin API on `listener` until `stop` fires; each connection is a task on
/// `tracker`, so the gateway waits for it at shutdown.
pub(crate) async fn serve(
    listener: Listener,
    gw: GatewayHandle,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let cap = match &listener {
        Listener::Unix(_) => MAX_UNIX_CONNECTIONS,
        _ => MAX_CONNECTIONS,
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    loop {
        let (gw, stop2, tracker2) = (gw.clone(), stop.clone(), tracker.clone());
        tokio::select! {
            () = stop.cancelled() => return,
            accepted = accept(&listener) => {
                // Over the cap: closed at once, so nothing waits in the backlog.
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    tracing::debug!("admin connection refused: {cap} already open");
                    drop(accepted);
                    continue;
                };
                match accepted {
                Ok(Accepted::Unix(s)) => {
                    let caller = Caller::of_unix(&s);
                    tracker.spawn(async move {
                        serve_conn(s, gw, None, caller, stop2, tracker2).await;
                        drop(permit);
                    });
                }
                Ok(Accepted::Tcp(s, token)) => {
                    tracker.spawn(async move {
                        serve_conn(s, gw, Some(token), Caller::unknown(), stop2, tracker2).await;
                        drop(permit);
                    });
                }
                Ok(Accepted::Tls(s, acceptor, token)) => {
                    tracker.spawn(async move {
                        // The handshake gets the same time as a request head.
                        if let Ok(Ok(tls)) = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(s)).await {
                            serve_conn(tls, gw, Some(token), Caller::unknown(), stop2, tracker2).await;
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }},
        }
    }
}

enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, Arc<Auth>),
    Tls(tokio::net::TcpStream, tokio_rustls::TlsAcceptor, Arc<Auth>),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
        Listener::Tcp(l, token) => Ok(Accepted::Tcp(l.accept().await?.0, token.clone())),
        Listener::Tls(l, acceptor, token) => Ok(Accepted::Tls(
            l.accept().await?.0,
            acceptor.clone(),
            token.clone(),
        )),
    }
}
