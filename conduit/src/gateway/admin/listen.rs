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

/// The longest path a unix socket can be bound at (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

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
    // Bound inside a private directory (0700) and given its mode there, then moved into
    // place: the socket is never reachable with a looser mode, wherever it lives. Short
    // names: a unix socket's path has room for 107 bytes, and both paths must fit.
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    // `/.a` + at most 6 hex digits (pid_max is 2^22) + `/s`: no longer than `/admin.sock`.
    let private = parent.join(format!(".a{:x}", std::process::id()));
    let staged = private.join("s");
    let (len, staged_len) = (
        path.as_os_str().as_bytes().len(),
        staged.as_os_str().as_bytes().len(),
    );
    if len.max(staged_len) > MAX_SOCKET_PATH {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "too long for a unix socket ({len} bytes, {staged_len} in the private directory it is bound in first; at most {MAX_SOCKET_PATH}): set `[admin] socket` to a shorter path, such as /run/conduit/admin.sock"
            ),
        )));
    }
    std::fs::create_dir_all(&parent).map_err(err)?;
    // One left by a crashed process with this process's id belongs to no live process.
    let _ = std::fs::remove_dir_all(&private);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory under `base` whose path is `len` bytes long.
    fn dir_of_length(base: &Path, len: usize) -> PathBuf {
        let have = base.as_os_str().len() + 1;
        let dir = base.join("d".repeat(len - have));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(dir.as_os_str().len(), len);
        dir
    }

    /// What the directory of `path` holds.
    fn entries(path: &Path) -> Vec<std::ffi::OsString> {
        std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    }

    #[tokio::test]
    async fn a_socket_path_that_fits_is_bound_even_in_a_deep_directory() {
        let base = tempfile::tempdir().unwrap();
        // 95 + "/admin.sock" = 106 bytes: fits, and so must the private staging path.
        let path = dir_of_length(base.path(), 95).join("admin.sock");
        let Ok(Listener::Unix(_listener)) = bind_unix(&path, None) else {
            panic!("{} was not bound", path.display());
        };
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        // The private staging directory is gone.
        assert_eq!(entries(&path), vec![std::ffi::OsString::from("admin.sock")]);
    }

    #[tokio::test]
    async fn a_socket_path_too_long_names_the_setting_that_fixes_it() {
        let base = tempfile::tempdir().unwrap();
        let path = dir_of_length(base.path(), 110).join("admin.sock");
        let Err(e) = bind_unix(&path, None) else {
            panic!("{} was bound", path.display());
        };
        let message = e.to_string();
        assert!(
            message.contains("too long for a unix socket (121 bytes")
                && message.contains("at most 107): set `[admin] socket` to a shorter path"),
            "{message}"
        );
        // Nothing was created beside it: no socket, no staging directory.
        assert_eq!(entries(&path), Vec::<std::ffi::OsString>::new());
    }
}
