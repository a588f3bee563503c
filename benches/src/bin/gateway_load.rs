//! `gateway-load`: the gateway's two targets, measured in one process.
//!
//! 1. Memory with `--services N` (default 1,000) registered, each with a certificate, a DNS
//!    name, a route and a health check: the process's resident set (VmRSS) once all are
//!    served. The figure includes this program's own registry handle and upstream, so it is an
//!    upper bound for the gateway.
//! 2. Register → served: `--samples M` (default 100) more registrations, one at a time, each
//!    timed from the registry write (what `conduit register` does) until both a DNS query
//!    answers the name and an HTTPS request through the proxy gets 200 (new TLS connection
//!    with the name's certificate, the route, the first health check passed).
//!
//! 3. With `--via api`, registrations go through the admin API on the unix socket
//!    (`POST /v1/services`) instead of the registry file, and the bench also measures (a) how
//!    long after the registration call started an event-stream client (`GET /v1/events`)
//!    sees its `service` event, (b) how long after the gateway published it (the change
//!    committed), and (c) the memory of 1,000 idle event-stream clients.
//!
//! The gateway runs on a thread of its own with a single-threaded runtime, as `conduit
//! serve` runs it; the clients run on the main thread.
//! ```text
//! cargo run --release -p conduit-benches --bin gateway-load -- [--services N] [--samples M] [--via api]
//! ```
#![allow(clippy::print_stdout, reason = "a benchmark program")]

use conduit_benches::percentile;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conduit::gateway::{Gateway, GatewayConfig};
use conduit::state::StateDir;
use conduit_registry::{Endpoint, FileRegistry, Registry, ServiceName, ServiceRecord};
use http::{Request, Response};
use http_body_util::{Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn upstream(listener: tokio::net::TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// A UDP A query for `name`; true when the answer is NOERROR with at least one record.
async fn dns_answers(server: SocketAddr, name: &str, id: u16) -> bool {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let Ok(sock) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
        return false;
    };
    if sock.send_to(&q, server).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    match tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => buf[3] & 0x0f == 0 && u16::from_be_bytes([buf[6], buf[7]]) > 0,
        _ => false,
    }
}

/// A new TLS connection for `name` and `GET /`; true on 200.
async fn https_ok(connector: &tokio_rustls::TlsConnector, addr: SocketAddr, name: &str) -> bool {
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let Ok(sni) = rustls::pki_types::ServerName::try_from(name.to_owned()) else {
        return false;
    };
    let Ok(tls) = connector.connect(sni, tcp).await else {
        return false;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let Ok(req) = Request::get("/")
        .header("host", name)
        .body(Empty::<Bytes>::new())
    else {
        return false;
    };
    matches!(sender.send_request(req).await, Ok(r) if r.status() == 200)
}

/// Registers services into a running gateway and measures register → served.
#[derive(Debug, clap::Parser)]
#[command(name = "gateway-load")]
struct Args {
    /// How many services are registered first.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// How many register → served delays are measured.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// `file` (the registry file, as a process writing it) or `api` (the admin API).
    #[arg(long, default_value = "file")]
    via: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let Args {
        services,
        samples,
        via,
    } = clap::Parser::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_writer(std::io::stderr)
        .init();
    let api = match via.as_str() {
        "file" => false,
        "api" => true,
        other => anyhow::bail!("--via {other:?}: file or api"),
    };
    let dir = tempfile::tempdir()?;
    // The upstream on a thread of its own too (it is another program in real life); it
    // ends with this process.
    let up = std::net::TcpListener::bind("127.0.0.1:0")?;
    up.set_nonblocking(true)?;
    let up_ep = Endpoint::from_socket_addr(up.local_addr()?)?;
    let upstream_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        upstream_rt.block_on(async move {
            if let Ok(up) = tokio::net::TcpListener::from_std(up) {
                upstream(up).await;
            }
        });
    });
    let rss_start = rss_mib();

    let mut cfg = GatewayConfig::new(dir.path());
    cfg.settings.dns.listen = vec!["127.0.0.1:0".parse()?];
    cfg.settings.proxy.listen = vec!["127.0.0.1:0".parse()?];
    cfg.settings.proxy.http_listen = Vec::new();
    // The gateway on a thread of its own with its own single-threaded runtime (as `conduit
    // serve` runs it); this program's clients on this one, so their TLS handshakes and
    // polling do not take the gateway's thread.
    let (ready, gateway) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let gw = Gateway::start(cfg).await?;
            let addrs = (
                gw.admin_socket().map(std::path::Path::to_path_buf),
                gw.dns_addrs()[0],
                gw.https_addrs()[0],
                gw.handle(),
            );
            if ready.send(addrs).is_err() {
                return Ok(());
            }
            gw.run(async {
                let _ = stopped.await;
            })
            .await?;
            Ok(())
        })
    });
    let Ok((socket, dns, https, handle)) = gateway.await else {
        return match running.join() {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("the gateway thread panicked")),
        };
    };
    let admin =
        conduit::admin::AdminClient::new(socket.ok_or_else(|| anyhow::anyhow!("no admin socket"))?);

    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(StateDir::new(dir.path()).root_pem())?;
    use rustls::pki_types::pem::PemObject as _;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));

    // 1. N services
    let registry = FileRegistry::open(dir.path())?;
    let t0 = Instant::now();
    for i in 0..services {
        let rec = ServiceRecord::new(ServiceName::new(&format!("svc{i}"))?, up_ep.clone());
        registry.register(rec).await?;
    }
    let last = format!("svc{}.internal", services - 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(dns_answers(dns, &last, 1).await && https_ok(&connector, https, &last).await) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{last} not served within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loaded = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await; // let the health checks settle
    let rss = rss_mib();
    // Through the API, this program's own registry handle (and the thread that follows the
    // file for it, parsing it after each of the gateway's writes) is closed: only the
    // gateway's is left, as with `conduit register` talking to a running gateway.
    let registry = (!api).then_some(registry);

    // 2. register → served (and, through the API, → the event seen by a stream client)
    let seen: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    // When each `service` event was published (an in-process subscriber of the gateway's
    // bus, woken at once): the event's latency to the stream client is measured from here.
    let published: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> =
        Arc::default();
    let publisher = api.then(|| {
        let (mut bus, published) = (handle.events().subscribe(), published.clone());
        tokio::spawn(async move {
            while let Ok(e) = bus.recv().await {
                if let conduit::events::EventKind::Service { name, .. } = &e.kind
                    && let Ok(mut m) = published.lock()
                {
                    m.insert(name.clone(), Instant::now());
                }
            }
        })
    });
    let watcher = api.then(|| {
        let (admin, seen) = (admin.clone(), seen.clone());
        tokio::spawn(async move {
            let r = admin
                .events(&["service".to_owned()], None, |e| {
                    if let conduit::events::EventKind::Service { name, .. } = e.kind
                        && let Ok(mut m) = seen.lock()
                    {
                        m.insert(name, Instant::now());
                    }
                    true
                })
                .await;
            if let Err(e) = r {
                println!("(the event stream client failed: {e})");
            }
        })
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat = Vec::with_capacity(samples);
    let mut event_lat = Vec::with_capacity(samples);
    let mut delivery_lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("lat{i}");
        let fqdn = format!("{name}.internal");
        let rec = ServiceRecord::new(ServiceName::new(&name)?, up_ep.clone());
        let start = Instant::now();
        tracing::info!(%name, "registration started");
        if api {
            let spec = conduit::spec::ServiceSpec::new(name.clone(), vec![up_ep.to_string()]);
            admin.register(&spec).await?;
        } else {
            let registry = registry
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no registry handle"))?;
            registry.register(rec).await?;
        }
        let mut dns_ok = false;
        loop {
            dns_ok = dns_ok || dns_answers(dns, &fqdn, i as u16).await;
            if dns_ok && https_ok(&connector, https, &fqdn).await {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(10),
                "{fqdn} not served in 10 s (DNS answered: {dns_ok})"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tracing::info!(%name, "served");
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
        if api {
            // (the stream client is a task of this thread: give it its turn)
            for _ in 0..1000 {
                let t = seen.lock().ok().and_then(|m| m.get(&name).copied());
                if let Some(t) = t {
                    event_lat.push((t - start).as_secs_f64() * 1000.0);
                    let p = published.lock().ok().and_then(|m| m.get(&name).copied());
                    if let Some(p) = p {
                        delivery_lat.push((t - p).as_secs_f64() * 1000.0);
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    for task in [watcher, publisher].into_iter().flatten() {
        task.abort();
    }
    // 3. 1,000 idle event-stream clients
    let mut idle_clients = None;
    if api {
        let before = rss_mib();
        let mut conns = Vec::with_capacity(1000);
        for _ in 0..1000 {
            use tokio::io::AsyncWriteExt as _;
            let mut s = tokio::net::UnixStream::connect(admin.socket()).await?;
            s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: conduit\r\n\r\n")
                .await?;
            conns.push(s);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        idle_clients = Some(rss_mib() - before);
        drop(conns);
    }
    let _ = stop.send(());
    match running.join() {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the gateway thread panicked"),
    }

    println!("gateway with {services} services (each: DNS name, certificate, route, health check)");
    println!("| measure | value |\n|---|---|");
    println!(
        "| time to register and serve all {services} | {:.1} s |",
        loaded.as_secs_f64()
    );
    println!(
        "| resident memory (VmRSS), process total | {rss:.1} MiB (at start {rss_start:.1} MiB) |"
    );
    if !event_lat.is_empty() {
        println!(
            "| registration call started → its `service` event at an SSE client, {} samples | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms |",
            event_lat.len(),
            percentile(&mut event_lat, 0.5),
            percentile(&mut event_lat, 0.99),
            percentile(&mut event_lat, 1.0)
        );
    }
    if !delivery_lat.is_empty() {
        println!(
            "| `service` event published → at the SSE client, {} samples | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms |",
            delivery_lat.len(),
            percentile(&mut delivery_lat, 0.5),
            percentile(&mut delivery_lat, 0.99),
            percentile(&mut delivery_lat, 1.0)
        );
    }
    if let Some(m) = idle_clients {
        println!("| 1,000 idle event-stream clients (both ends in this process) | +{m:.1} MiB |");
    }
    println!(
        "| register → served via {via} (DNS + HTTPS 200), {samples} samples | p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.9),
        percentile(&mut lat, 0.99),
        percentile(&mut lat, 1.0)
    );
    Ok(())
}
