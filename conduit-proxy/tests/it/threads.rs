//! Serving on several threads: connections spread over them, each thread's runtime serves
//! its own to the end, and the threads end with the proxy.

use std::time::Duration;

use conduit_proxy::ProxyConfig;

use crate::common::*;

/// The proxy's extra serving threads alive in this process (nextest runs each test alone).
fn proxy_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("conduit-proxy-"))
        .count()
}

/// Whether `done` holds within `limit` (checked every 5 ms).
async fn within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    tokio::time::timeout(limit, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_ok()
}

/// An HTTP/1.1 client on a connection of its own (kept open while the sender lives).
async fn client(
    p: &Proxy,
    domain: &str,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let tls = tls_connect(p.addr.port(), domain, &p.root, b"http/1.1").await;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// One GET / on `sender`'s connection, read to its end; its status.
async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    domain: &str,
) -> u16 {
    use http_body_util::BodyExt as _;
    let req = http::Request::get("/")
        .header("host", domain)
        .body(http_body_util::Empty::new())
        .unwrap();
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_the_threads_which_end_with_the_proxy() {
    let up = TestUpstream::start().await;
    let mut config = ProxyConfig::default();
    config.threads = 3;
    config.grace_period = Duration::from_secs(20);
    let p = Proxy::start(config).await;
    let d = p.register("threads", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    assert_eq!(proxy_threads(), 2, "the caller's runtime and two threads");
    // Six keep-alive connections, two requests each: two connections on each thread.
    let mut conns = Vec::new();
    for _ in 0..6 {
        let mut sender = client(&p, &d).await;
        for _ in 0..2 {
            assert_eq!(get(&mut sender, &d).await, 200);
        }
        conns.push(sender);
    }
    assert_eq!(p.handle.stats().connections_open_by_thread, [2, 2, 2]);
    let metrics = p.handle.stats().prometheus();
    assert!(
        metrics.contains("conduit_proxy_thread_connections_open{thread=\"2\"} 2"),
        "{metrics}"
    );
    // HTTP/2 too, on whichever thread has the fewest.
    if have("curl") {
        let (code, version, body) = fetch(p.curl(&d, "/")).await;
        assert_eq!((code, version.as_str()), (200, "2"), "{body}");
    }
    // Stopping closes the idle connections at once (on every thread) and ends the threads.
    let handle = p.handle.clone();
    tokio::time::timeout(Duration::from_secs(10), p.stop())
        .await
        .expect("the proxy stopped within its grace period");
    for sender in conns {
        let closed = within(Duration::from_secs(5), || sender.is_closed()).await;
        assert!(closed, "a connection was left open");
    }
    // Joined by `stop`; the kernel may list a joined thread for a moment longer.
    let gone = within(Duration::from_secs(2), || proxy_threads() == 0).await;
    assert!(gone, "a serving thread outlived the proxy");
    assert_eq!(handle.stats().connections_open_by_thread, [0, 0, 0]);
}
