//! 600 slow DNS-over-TCP clients (one query, then silence, as if they would ask again every
//! 8 s) cannot starve an ordinary client: per-client and total caps, and idle connections
//! closed first while the server is busy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conduit_dns::{DnsServer, ZoneConfig};
use conduit_registry::{InMemoryRegistry, Registry as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// A length-prefixed query for `name` A.
fn tcp_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = vec![0, 0];
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let len = u16::try_from(q.len() - 2).unwrap().to_be_bytes();
    q[..2].copy_from_slice(&len);
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_tcp_clients_leave_dig_answered() {
    if !have("dig") {
        return;
    }
    let registry = Arc::new(InMemoryRegistry::new());
    registry
        .register(proxied("grafana", "10.0.1.5:3000"))
        .await
        .unwrap();
    let server = DnsServer::builder()
        .registry(registry.clone())
        .zones(
            ZoneConfig::new(vec!["internal".parse().unwrap()])
                .with_advertise(vec!["10.0.0.1".parse().unwrap()]),
        )
        .listen("127.0.0.1:0".parse().unwrap())
        .bind()
        .await
        .unwrap();
    let addr = server.tcp_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    // 600 clients from 60 addresses: each sends one query, reads the answer, then waits.
    let mut slow = Vec::new();
    for i in 0..600u16 {
        let src: SocketAddr = format!("127.0.1.{}:0", 1 + i / 10).parse().unwrap();
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(src).unwrap();
        let Ok(mut s) = sock.connect(addr).await else {
            continue;
        };
        if s.write_all(&tcp_query(i, "grafana.internal")).await.is_ok() {
            slow.push(s);
        }
    }
    // Some were answered, some refused at once (over a cap): none can starve the rest.
    let mut answered = 0;
    for s in &mut slow {
        let mut len = [0u8; 2];
        if tokio::time::timeout(Duration::from_millis(50), s.read_exact(&mut len))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            answered += 1;
        }
    }
    assert!(
        answered >= 100,
        "only {answered} of 600 slow clients were answered"
    );
    // The crowd is idle now: at the cap, a connection silent for 100 ms makes room, and one
    // answered less than 100 ms ago is busy (tcp.rs). On a fast machine the loop above ends
    // within that, so the crowd is given its 100 ms of silence first.
    tokio::time::sleep(Duration::from_millis(150)).await;
    // An ordinary client from elsewhere is answered, now and while they stay connected.
    for _ in 0..3 {
        let d = tokio::task::spawn_blocking(move || {
            dig(addr, &["+tcp", "-b", "127.0.0.2", "grafana.internal", "A"])
        })
        .await
        .unwrap();
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        assert_eq!(d.answer.len(), 1, "{}", d.raw);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Idle connections were closed while the server was busy (1 s allowance, not 10 s),
    // until no more than half of the cap was open.
    let mut closed = 0;
    for s in &mut slow {
        // what is left of an answer, then the end of the stream (or nothing: still open)
        let mut b = [0u8; 512];
        loop {
            match tokio::time::timeout(Duration::from_millis(5), s.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => {}
                Err(_) => break,
            }
        }
    }
    assert!(
        closed >= 600 - 256,
        "only {closed} of the idle connections were closed"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
