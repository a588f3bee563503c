//! Shutdown: connections that are open but idle are closed at once, in either protocol,
//! instead of holding the proxy for its whole grace period.

use std::time::Duration;

use conduit_proxy::ProxyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_when_the_proxy_stops() {
    let up = TestUpstream::start().await;
    let mut config = ProxyConfig::default();
    config.grace_period = Duration::from_secs(20);
    let mut p = Proxy::start(config).await;
    let d = p.register("idle", &[up.addr]).await;
    p.wait_healthy(&d, 1).await;
    // HTTP/1.1: one request answered, then the connection is kept open, idle.
    let mut h1 = tls_connect(p.addr.port(), &d, &p.root, b"http/1.1").await;
    let head = format!("GET / HTTP/1.1\r\nHost: {d}\r\n\r\n");
    h1.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = h1.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // HTTP/2: the preface and an empty SETTINGS frame, then nothing.
    let mut h2 = tls_connect(p.addr.port(), &d, &p.root, b"h2").await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let n = h2.read(&mut buf).await.unwrap();
    assert!(n >= 9 && buf[3] == 4, "no SETTINGS from the proxy");
    let stopping = p.begin_stop();
    // Each is closed by the proxy long before the grace period ends. HTTP/2 closes as RFC
    // 9113 §6.8 has it: GOAWAY, a PING to bound what is in flight, the client's PING ack,
    // then the last GOAWAY and the close.
    let mut rest = Vec::new();
    let h1_closed = tokio::time::timeout(Duration::from_secs(5), h1.read_to_end(&mut rest)).await;
    assert!(
        h1_closed.is_ok(),
        "the idle HTTP/1.1 connection was left open"
    );
    let h2_closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut frames = Vec::new();
        loop {
            let n = h2.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            frames.extend_from_slice(&buf[..n]);
            while frames.len() >= 9 {
                let len = usize::from(frames[0]) << 16
                    | usize::from(frames[1]) << 8
                    | usize::from(frames[2]);
                if frames.len() < 9 + len {
                    break;
                }
                let frame: Vec<u8> = frames.drain(..9 + len).collect();
                if frame[3] == 6 && frame[4] & 1 == 0 {
                    let mut ack = frame.clone();
                    ack[4] = 1;
                    let _ = h2.write_all(&ack).await;
                }
            }
        }
    })
    .await;
    assert!(
        h2_closed.is_ok(),
        "the idle HTTP/2 connection was left open"
    );
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the proxy waited for idle connections")
        .unwrap();
}
