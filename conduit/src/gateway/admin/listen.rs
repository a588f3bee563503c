//! The admin listeners: the unix socket (0600, or 0660 for `[admin] socket_group`), TCP
//! with TLS from our CA unless on loopback; accepting within the connection caps, and each
//! connection served until it ends or the gateway stops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::{GatewayError, GatewayHandle};
use super::respond::error;
use super::routes::answer;
use super::{Auth, Caller, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_UNIX_CONNECTIONS};

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
            if let Some(refused) = caller.refuse(req.method(), req.uri().path()) {
                return Ok(refused);
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
