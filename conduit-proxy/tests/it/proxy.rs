//! End-to-end: real clients through the proxy to real upstreams.

use std::sync::atomic::Ordering;
use std::time::Duration;

use conduit_proxy::{ProxyConfig, TlsVersions};
use tokio::io::AsyncReadExt;

use crate::common::*;

fn config() -> ProxyConfig {
    let mut c = ProxyConfig::default();
    c.grace_period = Duration::from_secs(5);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http1_and_http2_with_forwarded_headers() {
    if !have("curl") {
        return;
    }
    let up = TestUpstream::start().await;
    let p = Proxy::start(config()).await;
    let d = p.register("svc", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let mut c = p.curl(&d, "/echo?x=1");
        c.args([
            flag,
            "-H",
            "Connection: keep-alive, x-secret",
            "-H",
            "X-Secret: s",
            "-H",
            "X-Forwarded-For: 192.0.2.7",
        ]);
        let (code, v, body) = fetch(c).await;
        assert_eq!((code, v.as_str()), (200, version), "{body}");
        assert!(body.contains("method: GET\npath: /echo\n"), "{body}");
        assert!(
            body.contains(&format!("host: {d}:{}", p.addr.port())),
            "{body}"
        );
        // the client's own X-Forwarded-For is not trusted: the gateway says who the client is
        assert!(body.contains("x-forwarded-for: 127.0.0.1\n"), "{body}");
        assert!(body.contains("x-forwarded-proto: https"), "{body}");
        assert!(
            body.contains(&format!("x-forwarded-host: {d}:{}", p.addr.port())),
            "{body}"
        );
        if version == "1.1" {
            // (HTTP/2 has no Connection header: curl drops it and X-Secret is an ordinary header.)
            assert!(
                !body.contains("x-secret"),
                "header listed in Connection leaked: {body}"
            );
        }
    }
    // A streamed upload (chunked) arrives whole.
    let mut c = p.curl(&d, "/upload");
    let upload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(upload.path(), "u".repeat(300_000)).unwrap();
    c.args(["-H", "Transfer-Encoding: chunked", "--data-binary"]);
    c.arg(format!("@{}", upload.path().display()));
    let (code, _, body) = fetch(c).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("method: POST") && body.contains("body-bytes: 300000"),
        "{body}"
    );
    // 100 KiB download
    let (code, _, body) = fetch(p.curl(&d, "/big")).await;
    assert_eq!((code, body.len()), (200, 100 * 1024));
    let stats = p.handle.stats();
    assert!(
        stats.requests >= 4 && stats.responses_by_class[1] >= 4,
        "{stats:?}"
    );
    assert!(
        p.handle
            .prometheus()
            .contains("conduit_proxy_requests_total")
    );
    p.stop().await;
}

const PY_CLIENT: &str = r#"
import socket, ssl, sys, http.client
port, host, cafile, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=host)
print("version", sock.version())
sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
resp = http.client.HTTPResponse(sock)
resp.begin()
print("status", resp.status)
print(resp.read().decode())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ssl_trusts_the_chain() {
    let up = TestUpstream::start().await;
    let p = Proxy::start(config()).await;
    let d = p.register("py", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    let args = [
        p.addr.port().to_string(),
        d.clone(),
        p.root.display().to_string(),
        "/hello".to_owned(),
    ];
    let out = python(PY_CLIENT, &args).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("version TLSv1.3")
            && text.contains("status 200")
            && text.contains("path: /hello"),
        "{text}"
    );
    p.stop().await;
}

const PY_SSE: &str = r#"
import socket, ssl, sys, time
port, host, cafile, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=host)
sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n".encode())
t0 = time.monotonic()
buf = b""
while True:
    data = sock.recv(65536)
    if not data:
        break
    buf += data
    n = buf.count(b"data: ")
    print(f"{time.monotonic() - t0:.4f} {n}", flush=True)
"#;

/// Arrival times of events: (seconds since the request, events seen so far).
fn arrivals(out: &str) -> Vec<(f64, usize)> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(t, n)| Some((t.parse().ok()?, n.parse().ok()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_ndjson_arrive_event_by_event() {
    let up = TestUpstream::start().await;
    let p = Proxy::start(config()).await;
    let d = p.register("llm", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    for path in ["/sse?n=10&ms=100", "/ndjson?n=10&ms=100"] {
        let path = if path.starts_with("/ndjson") {
            // NDJSON lines have no "data: "; count lines instead through curl.
            let mut c = p.curl(&d, path);
            c.args(["-N", "--trace-time", "-v"]);
            let (code, _, body) = fetch(c).await;
            assert_eq!(code, 200, "{body}");
            assert_eq!(body.matches("{\"i\":").count(), 10, "{body}");
            continue;
        } else {
            path
        };
        let args = [
            p.addr.port().to_string(),
            d.clone(),
            p.root.display().to_string(),
            path.to_owned(),
        ];
        let out = python(PY_SSE, &args).await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let a = arrivals(&text);
        let last = a.last().copied().unwrap_or_default();
        assert_eq!(last.1, 10, "all ten events: {text}");
        // The first event arrives long before the last one was sent (not in one lump at the end)...
        let first = a.iter().find(|(_, n)| *n >= 1).unwrap().0;
        assert!(first < 0.5, "first event after {first}s: {text}");
        assert!(
            last.0 - first > 0.6,
            "events spread over {}s: {text}",
            last.0 - first
        );
        // ...and events come in separate reads (generous: at least 6 of 10 reads see new events).
        let distinct = a.windows(2).filter(|w| w[1].1 > w[0].1).count() + 1;
        assert!(distinct >= 6, "{distinct} separate arrivals: {text}");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_stream() {
    if !have("curl") {
        return;
    }
    let up = TestUpstream::start().await;
    let p = Proxy::start(config()).await;
    let d = p.register("cancel", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    let mut c = p.curl(&d, "/sse?n=1000&ms=20");
    c.args(["-N", "--max-time", "0.5"]);
    let _ = c.output().await.unwrap();
    for _ in 0..100 {
        if up.state.stream_cancelled.load(Ordering::Relaxed) {
            p.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the upstream kept streaming after the client left");
}

const PY_WS_SERVER: &str = r#"
import asyncio, sys, websockets
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()
asyncio.run(main())
"#;

const PY_WS_CLIENT: &str = r#"
import asyncio, ssl, sys, websockets
port, host, cafile = sys.argv[1], sys.argv[2], sys.argv[3]
async def main():
    ctx = ssl.create_default_context(cafile=cafile)
    async with websockets.connect(f"wss://{host}:{port}/ws", ssl=ctx,
            host="127.0.0.1", port=int(port), server_hostname=host) as ws:
        for msg in ["hello", "x" * 100000, "bye"]:
            await ws.send(msg)
            back = await ws.recv()
            assert back == msg, (len(back), len(msg))
        await ws.send(b"\x00\x01binary")
        assert await ws.recv() == b"\x00\x01binary"
    print("echo ok")
asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_both_ways() {
    if !have_python_module("websockets") {
        return;
    }
    let mut server = tokio::process::Command::new("python3")
        .args(["-c", PY_WS_SERVER])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = server.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while stdout.read(&mut b).await.unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let port: u16 = String::from_utf8(line).unwrap().trim().parse().unwrap();
    let mut cfg = config();
    // The echo server answers 426 to anything but an upgrade: route at once and check
    // rarely (one failed check is below the threshold of two).
    cfg.health.start_unhealthy = false;
    let p = Proxy::start(cfg).await;
    let mut rare = conduit_registry::HealthCheck::default();
    rare.interval = Duration::from_secs(3600);
    let d = p
        .register_with("ws", &[([127, 0, 0, 1], port).into()], rare)
        .await;
    // wait for the route (start healthy: no check needed)
    for _ in 0..100 {
        if p.handle.upstreams(&d).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let args = [
        p.addr.port().to_string(),
        d.clone(),
        p.root.display().to_string(),
    ];
    let out = python(PY_WS_CLIENT, &args).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("echo ok"), "{text}");
    assert_eq!(p.handle.stats().websockets, 1);
    server.kill().await.unwrap();
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_then_up_again() {
    if !have("curl") {
        return;
    }
    let mut up = TestUpstream::start().await;
    let addr = up.addr;
    let p = Proxy::start(config()).await;
    let mut events = p.handle.health_events();
    let d = p.register("flaky", &[addr]).await;
    // new upstreams start unhealthy: the first passing check brings it up
    let ev = tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(ev.healthy && ev.domain.as_str() == d, "{ev:?}");
    assert_eq!(fetch(p.curl(&d, "/")).await.0, 200);
    up.stop().await;
    let ev = tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(!ev.healthy && ev.endpoint.port() == addr.port(), "{ev:?}");
    let mut c = p.curl(&d, "/");
    c.arg("-i");
    let (code, _, body) = fetch(c).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.to_ascii_lowercase().contains("retry-after: 5"),
        "{body}"
    );
    assert!(
        body.contains("every upstream of flaky.internal is down"),
        "{body}"
    );
    let _up = TestUpstream::start_on(addr).await;
    let ev = tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(ev.healthy, "{ev:?}");
    assert_eq!(fetch(p.curl(&d, "/")).await.0, 200);
    assert!(
        p.handle
            .prometheus()
            .contains("conduit_proxy_upstream_healthy{service=\"flaky\"")
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_the_registry_without_restart() {
    if !have("curl") {
        return;
    }
    let up = TestUpstream::start().await;
    let p = Proxy::start(config()).await;
    p.certify("late.internal").await;
    let (code, _, body) = fetch(p.curl("late.internal", "/")).await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("no service is registered for late.internal"),
        "{body}"
    );
    let d = p.register("late", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    assert_eq!(fetch(p.curl(&d, "/")).await.0, 200);
    deregister(&p, "late").await;
    for _ in 0..100 {
        if p.handle.upstreams(&d).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fetch(p.curl(&d, "/")).await.0, 404);
    // A host on a connection made for another name: 421.
    let d2 = p.register("other", &[up.addr]).await;
    p.wait_healthy(&d2, 1).await;
    let mut c = p.curl(&d2, "/");
    c.args(["-H", "Host: late.internal"]);
    assert_eq!(fetch(c).await.0, 421);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_requests_that_never_left_are_retried() {
    if !have("curl") {
        return;
    }
    let up = TestUpstream::start().await;
    // a port with nothing behind it
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = config();
    cfg.health.start_unhealthy = false;
    cfg.balance = conduit_proxy::Balance::RoundRobin;
    let p = Proxy::start(cfg).await;
    // Health checks out of the way: the dead upstream stays in rotation.
    let mut patient = conduit_registry::HealthCheck::default();
    patient.interval = Duration::from_secs(3600);
    patient.unhealthy_threshold = std::num::NonZeroU32::new(100).unwrap();
    let d = p.register_with("two", &[dead, up.addr], patient).await;
    for _ in 0..100 {
        if p.handle.upstreams(&d).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Round robin: the first request goes to the dead one. A POST is not retried.
    let mut c = p.curl(&d, "/");
    c.args(["--data-binary", "x=1"]);
    let (code, _, body) = fetch(c).await;
    assert_eq!(code, 502, "{body}");
    // which service failed, never the upstream's address or the error (that is logged)
    assert_eq!(body, format!("{d}: the upstream could not be reached\n"));
    assert_eq!(p.handle.stats().retries, 0);
    // The second goes to the live one; the third to the dead one, then again to the live one.
    for _ in 0..2 {
        let (code, _, body) = fetch(p.curl(&d, "/")).await;
        assert_eq!(code, 200, "{body}");
    }
    assert_eq!(p.handle.stats().retries, 1);
    // An upstream answering 5xx counts as a passive failure but is passed through as is.
    let (code, _, body) = fetch(p.curl(&d, "/status/503")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("overloaded"), "{body}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_malformed_requests_get_4xx() {
    if !have("curl") {
        return;
    }
    let up = TestUpstream::start().await;
    let mut cfg = config();
    cfg.limits.max_body_bytes = Some(1024);
    let p = Proxy::start(cfg).await;
    let d = p.register("strict", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    // body over the limit: declared, then streamed (chunked)
    let mut c = p.curl(&d, "/");
    c.args(["--data-binary", &"a".repeat(2048)]);
    assert_eq!(fetch(c).await.0, 413);
    let mut c = p.curl(&d, "/");
    c.args([
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &"a".repeat(4096),
    ]);
    assert_eq!(fetch(c).await.0, 413);
    // raw requests over TLS
    let raw = |req: Vec<u8>, alpn: &'static [u8]| {
        let root = p.root.clone();
        let port = p.addr.port();
        let d = d.clone();
        async move { raw_tls(port, &d, &root, alpn, &req).await }
    };
    let bad_header = format!("GET / HTTP/1.1\r\nHost: {d}\r\nBad Header\r\n\r\n");
    assert!(
        raw(bad_header.into_bytes(), b"http/1.1")
            .await
            .starts_with("HTTP/1.1 400")
    );
    // A head over the 64 KiB limit (sent exactly up to it, so that nothing is left unread:
    // unread bytes at close make the kernel reset the connection, losing the answer).
    let mut huge = format!("GET / HTTP/1.1\r\nHost: {d}\r\nX-Big: ");
    huge.push_str(&"h".repeat(64 * 1024 - huge.len()));
    assert!(
        raw(huge.into_bytes(), b"http/1.1")
            .await
            .starts_with("HTTP/1.1 431")
    );
    let mut many = format!("GET / HTTP/1.1\r\nHost: {d}\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(
        raw(many.into_bytes(), b"http/1.1")
            .await
            .starts_with("HTTP/1.1 431")
    );
    let no_host = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    assert!(raw(no_host, b"http/1.1").await.starts_with("HTTP/1.1 400"));
    let garbage = b"\x16\x03\x01garbage\r\n\r\n".to_vec();
    let answer = raw(garbage, b"http/1.1").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    // HTTP/2: the preface, then a frame on stream 0 that must not be there (HEADERS on 0).
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // empty SETTINGS
    h2.extend_from_slice(&[0, 0, 4, 1, 4, 0, 0, 0, 0, 0x82, 0x86, 0x84, 0x41]); // HEADERS on stream 0
    let answer = raw(h2, b"h2").await;
    // The server answers with SETTINGS and a GOAWAY (type 7) carrying PROTOCOL_ERROR (1).
    assert!(answer.contains("GOAWAY") || answer.is_empty(), "{answer:?}");
    // The proxy still serves.
    assert_eq!(fetch(p.curl(&d, "/")).await.0, 200);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_when_enabled_and_http_redirects() {
    if !have("curl") {
        return;
    }
    let up = TestUpstream::start().await;
    let p = Proxy::start(config()).await;
    let d = p.register("old", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    let mut c = p.curl(&d, "/");
    c.args(["--tlsv1.2", "--tls-max", "1.2"]);
    let (code, _, err) = fetch(c).await;
    assert_eq!(code, 0, "TLS 1.2 must be refused by default: {err}");
    // plain HTTP → 308 to https on the HTTPS listener's port
    let plain = |host: String, path: &'static str| {
        let port = p.http_addr.port();
        async move {
            let out = tokio::process::Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{redirect_url}",
                ])
                .args(["-H", &format!("Host: {host}")])
                .arg(format!("http://127.0.0.1:{port}{path}"))
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    assert_eq!(
        plain(d.clone(), "/a?b=c").await,
        format!("308 https://{d}:{}/a?b=c", p.addr.port())
    );
    // only registered names are redirected: no open redirect for any Host
    assert_eq!(plain("evil.example".to_owned(), "/").await, "404 ");
    // no HSTS unless configured
    let mut c = p.curl(&d, "/");
    c.arg("-D").arg("/dev/stdout");
    let (_, _, head) = fetch(c).await;
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("strict-transport-security"),
        "{head}"
    );
    p.stop().await;
    let mut cfg = config();
    cfg.tls = TlsVersions::Tls12And13;
    cfg.hsts = Some(Duration::from_secs(86400));
    let p = Proxy::start(cfg).await;
    let d = p.register("old", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    let mut c = p.curl(&d, "/");
    c.args(["--tlsv1.2", "--tls-max", "1.2", "-D", "/dev/stdout"]);
    let (code, _, head) = fetch(c).await;
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=86400"),
        "{head}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_survive_reloads_and_graceful_shutdown() {
    let up = TestUpstream::start().await;
    let mut p = Proxy::start(config()).await;
    let d = p.register("drain", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    let args = [
        p.addr.port().to_string(),
        d.clone(),
        p.root.display().to_string(),
        "/sse?n=10&ms=100".to_owned(),
    ];
    let client = tokio::spawn(async move { python(PY_SSE, &args).await });
    // the stream is under way (Python may take a while to start on a loaded machine)
    for _ in 0..500 {
        if p.handle.stats().requests >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    // a certificate reload and a route change mid-stream
    p.certify(&d).await;
    let other = p.register("unrelated", &[up.addr]).await;
    p.wait_healthy(&other, 1).await;
    // then shut down: the stream must still finish
    let stopping = p.begin_stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = tokio::net::TcpStream::connect(p.addr).await;
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "new connections must be refused while draining"
    );
    let out = client.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(arrivals(&text).last().map(|a| a.1), Some(10), "{text}");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_are_cut_long_ones_are_not() {
    if !have("curl") {
        return;
    }
    let up = TestUpstream::start().await;
    let mut cfg = config();
    cfg.timeouts.idle = Duration::from_millis(400);
    let p = Proxy::start(cfg).await;
    let d = p.register("idle", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    // 12 events 100 ms apart: 1.2 s in all, three times the idle timeout, never idle for long.
    let (code, _, body) = fetch(p.curl(&d, "/sse?n=12&ms=100")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body.matches("data: ").count(), 12, "{body}");
    // Silent for 1 s after the first event: cut.
    let mut c = p.curl(&d, "/sse?n=3&ms=1000");
    c.arg("-N");
    let (_, _, body) = fetch(c).await;
    assert_eq!(body.matches("data: ").count(), 1, "{body}");
    assert_eq!(p.handle.stats().idle_timeouts, 1);
    p.stop().await;
}

/// HPACK for `GET https://{host}/`: indexed :method GET, :scheme https, :path /, then
/// :authority as a literal without indexing.
fn h2_get_headers(stream: u32, host: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x84, 0x01, host.len() as u8];
    block.extend_from_slice(host.as_bytes());
    let mut f = Vec::new();
    let len = block.len() as u32;
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(&[1, 0x5]); // HEADERS, END_STREAM | END_HEADERS
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(&block);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_closes_the_connection() {
    let up = TestUpstream::start().await;
    let p = Proxy::start(config()).await;
    let d = p.register("reset", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    // CVE-2023-44487: open streams and reset them at once, many times, in one write.
    let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frames.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
    for i in 0..500u32 {
        let stream = 1 + 2 * i;
        frames.extend_from_slice(&h2_get_headers(stream, &d));
        frames.extend_from_slice(&[0, 0, 4, 3, 0]); // RST_STREAM
        frames.extend_from_slice(&stream.to_be_bytes());
        frames.extend_from_slice(&8u32.to_be_bytes()); // CANCEL
    }
    let answer = raw_tls(p.addr.port(), &d, &p.root, b"h2", &frames).await;
    assert_eq!(
        answer, "GOAWAY",
        "the connection must be closed with a GOAWAY"
    );
    // and the proxy still serves
    assert_eq!(fetch(p.curl(&d, "/")).await.0, 200);
    p.stop().await;
}
