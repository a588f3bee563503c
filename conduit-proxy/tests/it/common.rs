//! Fixtures: an upstream HTTP server with streaming endpoints, the proxy with an in-memory
//! registry and our CA's certificates, and client helpers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use conduit_ca::{CaConfig, CertIssuer, CertResolver, IssueRequest, LocalCa, certified_key};
use conduit_proxy::{ProxyConfig, ProxyHandle, ProxyServer};
use conduit_registry::{
    Endpoint, HealthCheck, InMemoryRegistry, Registry, ServiceName, ServiceRecord,
};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// Whether a real peer is installed; under CI a missing one fails the test.
pub(crate) use conduit_test_support::have;

/// Whether a Python module is importable; in CI a missing one fails the test.
pub(crate) fn have_python_module(module: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert_eq!(
            std::env::var_os("CI"),
            None,
            "CI must install python3 {module}"
        );
        eprintln!("skipping: python3 module {module} is not installed");
    }
    found
}

/// An upstream body: complete, or fed through a channel (streams).
pub(crate) enum UpBody {
    Full(Option<Bytes>),
    Chan(mpsc::Receiver<Bytes>),
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Chan(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<UpBody> {
    let mut r = Response::new(UpBody::Full(Some(body.into())));
    *r.status_mut() = status;
    r
}

/// What the upstream saw.
#[derive(Debug, Default)]
pub(crate) struct UpState {
    /// Requests answered (health checks included).
    pub(crate) hits: AtomicUsize,
    /// A streaming client went away before the stream ended.
    pub(crate) stream_cancelled: AtomicBool,
}

fn query(req: &Request<Incoming>, key: &str, default: u64) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

async fn upstream(req: Request<Incoming>, state: Arc<UpState>) -> Response<UpBody> {
    state.hits.fetch_add(1, Ordering::Relaxed);
    match req.uri().path() {
        "/health" => full(StatusCode::OK, "ok"),
        "/status/503" => full(StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        "/status/500" => full(StatusCode::INTERNAL_SERVER_ERROR, "the application failed"),
        "/status/501" => full(StatusCode::NOT_IMPLEMENTED, "not implemented"),
        "/big" => full(StatusCode::OK, vec![b'b'; 100 * 1024]),
        "/sse" | "/ndjson" => {
            let (n, ms) = (query(&req, "n", 10), query(&req, "ms", 100));
            let sse = req.uri().path() == "/sse";
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                for i in 0..n {
                    let chunk = if sse {
                        format!("event: token\ndata: {{\"i\":{i}}}\n\n")
                    } else {
                        format!("{{\"i\":{i}}}\n")
                    };
                    if tx.send(Bytes::from(chunk)).await.is_err() {
                        state.stream_cancelled.store(true, Ordering::Relaxed);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            });
            let mut r = Response::new(UpBody::Chan(rx));
            let ct = if sse {
                "text/event-stream; charset=utf-8"
            } else {
                "application/x-ndjson"
            };
            r.headers_mut().insert("content-type", ct.parse().unwrap());
            r
        }
        path => {
            let mut text = format!("method: {}\npath: {}\n", req.method(), path);
            for h in [
                "host",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-real-ip",
                "forwarded",
                "connection",
                "keep-alive",
                "x-secret",
            ] {
                if let Some(v) = req.headers().get(h) {
                    text.push_str(&format!("{h}: {}\n", v.to_str().unwrap_or("?")));
                }
            }
            let mut body = req.into_body();
            let mut n = 0;
            while let Some(Ok(f)) = body.frame().await {
                n += f.data_ref().map_or(0, Bytes::len);
            }
            text.push_str(&format!("body-bytes: {n}\n"));
            full(StatusCode::OK, text)
        }
    }
}

/// A plain-HTTP upstream on loopback that can be stopped (every connection closed) and
/// started again on the same port.
pub(crate) struct TestUpstream {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<UpState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestUpstream {
    pub(crate) async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub(crate) async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpState::default());
        let (stop, mut stopped) = oneshot::channel::<()>();
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => return, // drops `conns`: every connection closes
                    a = listener.accept() => {
                        let Ok((tcp, _)) = a else { continue };
                        let st = Arc::clone(&st);
                        conns.spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                let st = Arc::clone(&st);
                                async move { Ok::<_, Infallible>(upstream(req, st).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tcp), svc)
                                .await;
                        });
                    }
                }
            }
        });
        Self {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Fast health checks for tests.
pub(crate) fn fast_health() -> HealthCheck {
    let mut h = HealthCheck::default();
    h.interval = Duration::from_millis(200);
    h.timeout = Duration::from_millis(150);
    h
}

/// The proxy on 127.0.0.1:0 (HTTPS and a redirecting HTTP listener), an in-memory registry,
/// our CA's certificates, and the root in a PEM file for clients.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    pub(crate) http_addr: SocketAddr,
    pub(crate) handle: ProxyHandle,
    pub(crate) registry: Arc<InMemoryRegistry>,
    pub(crate) certs: Arc<CertResolver>,
    pub(crate) ca: LocalCa,
    pub(crate) root: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    pub(crate) async fn start(config: ProxyConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::generate(CaConfig::default(), time::OffsetDateTime::now_utc()).unwrap();
        let root = dir.path().join("root.pem");
        std::fs::write(&root, ca.root_pem()).unwrap();
        let registry = Arc::new(InMemoryRegistry::new());
        let certs = Arc::new(CertResolver::new());
        let server = ProxyServer::builder()
            .registry(registry.clone())
            .certificates(certs.clone())
            .listen("127.0.0.1:0".parse().unwrap())
            .listen_http_redirect("127.0.0.1:0".parse().unwrap())
            .config(config)
            .bind()
            .await
            .unwrap();
        let addr = server.https_addrs()[0];
        let http_addr = server.http_addrs()[0];
        let handle = server.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            http_addr,
            handle,
            registry,
            certs,
            ca,
            root,
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Issues and installs a certificate for `domain`.
    pub(crate) async fn certify(&self, domain: &str) {
        let mut req = IssueRequest::default();
        req.dns_names = vec![domain.to_owned()];
        let leaf = self.ca.issue(&req).await.unwrap();
        self.certs
            .install(&req.dns_names, certified_key(&leaf).unwrap());
    }

    /// Registers `name.internal` → `upstreams` with fast health checks and a certificate.
    pub(crate) async fn register(&self, name: &str, upstreams: &[SocketAddr]) -> String {
        self.register_with(name, upstreams, fast_health()).await
    }

    /// Registers with a given health check.
    pub(crate) async fn register_with(
        &self,
        name: &str,
        upstreams: &[SocketAddr],
        health: HealthCheck,
    ) -> String {
        let eps: Vec<Endpoint> = upstreams
            .iter()
            .map(|a| Endpoint::from_socket_addr(*a).unwrap())
            .collect();
        let rec = ServiceRecord::new(ServiceName::new(name).unwrap(), eps[0].clone())
            .with_endpoints(eps)
            .with_health(health);
        let domain = rec.domain().as_str().to_owned();
        self.certify(&domain).await;
        self.registry.register(rec).await.unwrap();
        domain
    }

    /// Waits until `domain` has `n` healthy upstreams.
    pub(crate) async fn wait_healthy(&self, domain: &str, n: usize) {
        for _ in 0..300 {
            let healthy = self
                .handle
                .upstreams(domain)
                .map_or(0, |u| u.iter().filter(|u| u.healthy).count());
            if healthy == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{domain} did not reach {n} healthy upstreams in 6 s: {:?}",
            self.handle.upstreams(domain)
        );
    }

    /// `curl` for `https://domain:port/path` resolved to the proxy, our root trusted.
    pub(crate) fn curl(&self, domain: &str, path: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&self.root)
            .arg("--resolve")
            .arg(format!("{domain}:{}:127.0.0.1", self.addr.port()))
            .arg(format!("https://{domain}:{}{path}", self.addr.port()));
        c
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    /// Starts shutdown without waiting for it.
    pub(crate) fn begin_stop(&mut self) -> JoinHandle<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().unwrap()
    }
}

/// Runs curl with `-w` appended and returns (status, http version, body).
pub(crate) async fn fetch(mut cmd: tokio::process::Command) -> (u16, String, String) {
    let out = cmd
        .arg("-w")
        .arg("\n@@%{http_code} %{http_version}")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once("\n@@").unwrap_or((&text, "0 0"));
    let (code, version) = tail.split_once(' ').unwrap_or(("0", "0"));
    (
        code.trim().parse().unwrap_or(0),
        version.trim().to_owned(),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

pub(crate) async fn python(script: &str, args: &[String]) -> std::process::Output {
    tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .await
        .unwrap()
}

/// Deregisters `name`.
pub(crate) async fn deregister(p: &Proxy, name: &str) {
    p.registry
        .deregister(&ServiceName::new(name).unwrap())
        .await
        .unwrap();
}

/// Sends raw bytes over TLS (our root trusted) and returns what came back (lossy text; an
/// HTTP/2 GOAWAY frame is reported as "GOAWAY").
pub(crate) async fn raw_tls(
    port: u16,
    host: &str,
    root: &std::path::Path,
    alpn: &[u8],
    req: &[u8],
) -> String {
    let mut tls = tls_connect(port, host, root, alpn).await;
    tls.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut out)).await;
    if alpn == b"h2" {
        // walk the frames
        let mut i = 0;
        while i + 9 <= out.len() {
            let len = (usize::from(out[i]) << 16)
                | (usize::from(out[i + 1]) << 8)
                | usize::from(out[i + 2]);
            if out[i + 3] == 7 {
                return "GOAWAY".to_owned();
            }
            i += 9 + len;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A TLS connection to the proxy on 127.0.0.1:`port` for `host` (our root trusted).
pub(crate) async fn tls_connect(
    port: u16,
    host: &str,
    root: &std::path::Path,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(root).unwrap();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

pub(crate) fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}
