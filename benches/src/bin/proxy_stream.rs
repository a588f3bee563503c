//! `proxy-stream`: what streaming through conduit-proxy adds per chunk.
//!
//! An upstream in this process sends an SSE event every `--interval-ms` (default 10) carrying
//! its send time; a client reads the stream once straight from the upstream (plain HTTP) and
//! once through the proxy (TLS 1.3, HTTP/1.1), and prints the per-chunk delay (receive time −
//! send time) of both and the difference: the proxy's cost per chunk, TLS included.
//!
//! ```text
//! cargo run --release -p conduit-benches --bin proxy-stream -- [--chunks N] [--interval-ms MS]
//! ```
#![allow(clippy::print_stdout, reason = "a benchmark program")]

use conduit_benches::percentile;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use conduit_ca::{CaConfig, CertIssuer, CertResolver, IssueRequest, LocalCa, certified_key};
use conduit_proxy::{ProxyConfig, ProxyServer};
use conduit_registry::{Endpoint, InMemoryRegistry, Registry, ServiceName, ServiceRecord};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::time::Instant;

struct Chan(mpsc::Receiver<Bytes>);

impl Body for Chan {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Serves `/stream`: `chunks` events, one every `interval`, each carrying its send time in
/// nanoseconds since `epoch`.
async fn upstream(
    listener: tokio::net::TcpListener,
    epoch: Instant,
    chunks: u32,
    interval: Duration,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let _ = tcp.set_nodelay(true); // as real servers do (Go, nginx)
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                move |_req: Request<hyper::body::Incoming>| async move {
                    let (tx, rx) = mpsc::channel(4);
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(interval);
                        for _ in 0..chunks {
                            tick.tick().await;
                            let sent = epoch.elapsed().as_nanos();
                            if tx
                                .send(Bytes::from(format!("data: {sent}\n\n")))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    });
                    let mut r = Response::new(Chan(rx));
                    r.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("text/event-stream"),
                    );
                    Ok::<_, Infallible>(r)
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Reads one stream and returns each event's delay in microseconds.
async fn read_stream<I>(io: I, host: &str, epoch: Instant) -> anyhow::Result<Vec<f64>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let req = Request::get("/stream")
        .header("host", host)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    let mut body = resp.into_body();
    let mut delays = Vec::new();
    let mut pending = String::new();
    while let Some(frame) = body.frame().await {
        let now = epoch.elapsed().as_nanos();
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if let Some(sent) = event
                .trim()
                .strip_prefix("data: ")
                .and_then(|s| s.parse::<u128>().ok())
            {
                delays.push(now.saturating_sub(sent) as f64 / 1000.0);
            }
        }
    }
    Ok(delays)
}

/// Streams chunks through the proxy and measures each chunk's delay.
#[derive(Debug, clap::Parser)]
#[command(name = "proxy-stream")]
struct Args {
    /// How many chunks the upstream sends.
    #[arg(long, default_value_t = 500)]
    chunks: u32,
    /// Between chunks, milliseconds.
    #[arg(long, default_value_t = 10)]
    interval_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let Args {
        chunks,
        interval_ms,
    } = clap::Parser::parse();
    // The proxy on a thread and runtime of its own, as it runs in production.
    let proxy_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let epoch = Instant::now();
    let up = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let up_addr = up.local_addr()?;
    rt.spawn(upstream(
        up,
        epoch,
        chunks,
        Duration::from_millis(interval_ms),
    ));

    let ca = LocalCa::generate(CaConfig::default(), time::OffsetDateTime::now_utc())?;
    let req = IssueRequest {
        dns_names: vec!["svc.internal".into()],
        ..IssueRequest::default()
    };
    let leaf = rt.block_on(ca.issue(&req))?;
    let certs = Arc::new(CertResolver::new());
    certs.install(&req.dns_names, certified_key(&leaf)?);
    let registry = Arc::new(InMemoryRegistry::new());
    let rec = ServiceRecord::new(
        ServiceName::new("svc")?,
        Endpoint::from_socket_addr(up_addr)?,
    );
    rt.block_on(registry.register(rec))?;
    let mut config = ProxyConfig::default();
    config.health.start_unhealthy = false;
    let server = proxy_rt.block_on(
        ProxyServer::builder()
            .registry(registry)
            .certificates(certs)
            .listen("127.0.0.1:0".parse()?)
            .config(config)
            .bind(),
    )?;
    let proxy_addr: SocketAddr = server.https_addrs()[0];
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy_thread = std::thread::spawn(move || {
        proxy_rt.block_on(server.run(async {
            let _ = stop_rx.await;
        }))
    });

    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(
        ca.root_der().to_vec(),
    ))?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));

    let (mut direct, mut proxied) = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(up_addr).await?;
        tcp.set_nodelay(true)?;
        let direct = read_stream(TokioIo::new(tcp), "svc.internal", epoch).await?;
        let tcp = tokio::net::TcpStream::connect(proxy_addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("svc.internal")?;
        let tls = connector.connect(name, tcp).await?;
        let proxied = read_stream(TokioIo::new(tls), "svc.internal", epoch).await?;
        anyhow::Ok((direct, proxied))
    })?;
    let _ = stop_tx.send(());
    let _ = proxy_thread.join();
    anyhow::ensure!(
        direct.len() == chunks as usize && proxied.len() == chunks as usize,
        "lost events"
    );
    println!(
        "{chunks} SSE events, one every {interval_ms} ms; delay from upstream send to client receive (µs)"
    );
    println!("| path | p50 | p90 | p99 | max |\n|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (name, v) in [
        ("direct (plain HTTP)", &mut direct),
        ("through conduit-proxy (TLS 1.3)", &mut proxied),
    ] {
        let r = [
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99),
            percentile(v, 1.0),
        ];
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} |",
            r[0], r[1], r[2], r[3]
        );
        rows.push(r);
    }
    println!(
        "added by the proxy per chunk: p50 {:.0} µs, p99 {:.0} µs",
        rows[1][0] - rows[0][0],
        rows[1][2] - rows[0][2]
    );
    Ok(())
}
