//! Hostile clients: what a client does with its own request never takes a service down,
//! never reaches the upstream under another name, and never steers the gateway.

use std::time::Duration;

use conduit_proxy::{HealthEvent, ProxyConfig};
use tokio::io::AsyncWriteExt;

use crate::common::*;

fn config() -> ProxyConfig {
    let mut c = ProxyConfig::default();
    c.grace_period = Duration::from_secs(5);
    c
}

/// Health checks far apart: only passive failures could mark the upstream down.
fn slow_health() -> conduit_registry::HealthCheck {
    let mut h = conduit_registry::HealthCheck::default();
    h.interval = Duration::from_secs(600);
    h.timeout = Duration::from_secs(5);
    h
}

/// Sends `bytes` on a new TLS connection and closes it without reading.
async fn send_and_close(p: &Proxy, domain: &str, bytes: &[u8]) {
    let mut tls = tls_connect(p.addr.port(), domain, &p.root, b"http/1.1").await;
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    // give the proxy time to start forwarding, then vanish
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_and_application_5xx_never_mark_the_upstream_down() {
    if !have("curl") {
        return;
    }
    let up = TestUpstream::start().await;
    let p = Proxy::start(config()).await;
    let d = p.register_with("victim", &[up.addr], slow_health()).await;
    p.wait_healthy(&d, 1).await;
    let mut events = p.handle.health_events();
    for _ in 0..2 {
        // an aborted upload: 100 bytes of a declared 100000, then gone
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: {d}\r\nContent-Length: 100000\r\n\r\n{}",
            "x".repeat(100)
        );
        send_and_close(&p, &d, head.as_bytes()).await;
        // a malformed chunked body
        let bad = format!(
            "POST /upload HTTP/1.1\r\nHost: {d}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nnot hex\r\n0\r\n\r\n"
        );
        let answer = raw_tls(p.addr.port(), &d, &p.root, b"http/1.1", bad.as_bytes()).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
        // the application's own 5xx answers
        for path in ["/status/500", "/status/501"] {
            assert_eq!(
                fetch(p.curl(&d, path)).await.0,
                path[8..].parse::<u16>().unwrap()
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ups = p.handle.upstreams(&d).unwrap();
    assert!(ups[0].healthy, "{ups:?}");
    let mut downs: Vec<HealthEvent> = Vec::new();
    while let Ok(ev) = events.try_recv() {
        downs.push(ev);
    }
    assert!(downs.is_empty(), "no health change expected: {downs:?}");
    for _ in 0..20 {
        assert_eq!(fetch(p.curl(&d, "/")).await.0, 200);
    }
    // The upstream saying it cannot serve still counts: two 503s mark it down.
    for _ in 0..2 {
        assert_eq!(fetch(p.curl(&d, "/status/503")).await.0, 503);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!p.handle.upstreams(&d).unwrap()[0].healthy);
    p.stop().await;
}

/// The upstream's echo of a request sent raw over TLS (HTTP/1.1).
async fn echo(p: &Proxy, d: &str, head: &str) -> String {
    raw_tls(p.addr.port(), d, &p.root, b"http/1.1", head.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_get_the_routed_host_and_the_gateways_own_forwarding_headers() {
    let up = TestUpstream::start().await;
    let p = Proxy::start(config()).await;
    let d = p.register("rec", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    // absolute form with another Host: the target wins (RFC 9112 §3.2.2)
    let out = echo(
        &p,
        &d,
        &format!("GET https://{d}/ HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let authority = format!("{d}:{}", p.addr.port());
    assert!(out.contains(&format!("host: {authority}\n")), "{out}");
    assert!(
        out.contains(&format!("x-forwarded-host: {authority}\n")),
        "{out}"
    );
    assert!(out.contains("x-forwarded-for: 127.0.0.1\n"), "{out}");
    assert!(out.contains("x-real-ip: 127.0.0.1\n"), "{out}");
    assert!(
        out.contains("forwarded: for=127.0.0.1;proto=https\n"),
        "{out}"
    );
    assert!(!out.contains("6.6.6.6") && !out.contains("evil"), "{out}");
    // `Connection: Host` cannot strip Host
    let out = echo(
        &p,
        &d,
        &format!("GET / HTTP/1.1\r\nHost: {d}\r\nConnection: Host, close\r\n\r\n"),
    )
    .await;
    assert!(
        out.contains(&format!("host: {d}:{}\n", p.addr.port())),
        "{out}"
    );
    // two Host headers, or user info in it: refused
    for bad in [
        format!("GET / HTTP/1.1\r\nHost: {d}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: evil@{d}\r\nConnection: close\r\n\r\n"),
    ] {
        let out = echo(&p, &d, &bad).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{bad:?}: {out}");
    }
    // a head over the documented 64 KiB limit, however it arrives
    let mut big = format!("GET / HTTP/1.1\r\nHost: {d}\r\nConnection: close\r\n");
    for i in 0..70 {
        big.push_str(&format!("X-Pad-{i}: {}\r\n", "p".repeat(1000)));
    }
    big.push_str("\r\n");
    let out = echo(&p, &d, &big).await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(200)]
    );
    // HTTP/2 with :authority and a different host: malformed (RFC 9113 §8.3.1)
    let tls = tls_connect(p.addr.port(), &d, &p.root, b"h2").await;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(format!("https://{d}/"))
        .header("host", "evil.example")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    p.stop().await;
}

/// An upstream that switches protocols whenever it is asked to (and echoes bytes after),
/// and answers "no upgrade" otherwise: what an h2c-capable or careless server does.
async fn switching_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if let Some(proto) = text.lines().find_map(|l| l.strip_prefix("upgrade: ")) {
                    let ans = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\n\r\n"
                    );
                    let _ = s.write_all(ans.as_bytes()).await;
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                } else {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nno upgrade\n")
                        .await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_websocket_is_tunnelled_and_tunnels_have_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = switching_upstream().await;
    let mut cfg = config();
    cfg.timeouts.idle = Duration::from_secs(1);
    let p = Proxy::start(cfg).await;
    let d = p.register("ws", &[up]).await;
    p.wait_healthy(&d, 1).await;
    // h2c: not tunnelled; the upstream sees a plain request
    let out = echo(
        &p,
        &d,
        &format!("GET / HTTP/1.1\r\nHost: {d}\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.contains("no upgrade"),
        "{out}"
    );
    // websocket: tunnelled, kept while it moves, cut after 1 s of silence
    let mut tls = tls_connect(p.addr.port(), &d, &p.root, b"http/1.1").await;
    let req = format!(
        "GET /chat HTTP/1.1\r\nHost: {d}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tls.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    for i in 0..4u8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tls.write_all(&[i]).await.unwrap();
        let mut got = [0u8; 1];
        tls.read_exact(&mut got).await.unwrap();
        assert_eq!(
            got[0], i,
            "echoed while active (2 s in all, past the idle timeout)"
        );
    }
    let start = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "closed: {n:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "cut after the idle timeout: {took:?}"
    );
    p.stop().await;
}
