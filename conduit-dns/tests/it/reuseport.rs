//! Several UDP threads on one address (`SO_REUSEPORT`): every query is answered whichever
//! socket the kernel hands it to, and an address another server holds is refused as in use.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conduit_dns::{DnsError, DnsServer};
use conduit_registry::{InMemoryRegistry, Registry};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use crate::common::{GATEWAY_V4, config, proxied};
use crate::wire::query;

async fn bind(addr: SocketAddr, threads: usize) -> Result<DnsServer, DnsError> {
    let registry = Arc::new(InMemoryRegistry::new());
    registry
        .register(proxied("grafana", "10.0.0.7:3000"))
        .await
        .unwrap();
    DnsServer::builder()
        .registry(registry)
        .zones(config())
        .listen(addr)
        .udp_threads(threads)
        .bind()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_sockets_on_one_address_answer_every_client() {
    let server = bind("127.0.0.1:0".parse().unwrap(), 4).await.unwrap();
    let addrs = server.udp_addrs();
    assert_eq!(
        addrs.len(),
        1,
        "one address however many threads: {addrs:?}"
    );
    let addr = addrs[0];
    assert_eq!(server.tcp_addrs(), vec![addr]);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    // 64 clients on 64 source ports: the kernel spreads them over the four sockets by hash.
    for i in 0..64u16 {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let q = query(i, 0x01, "grafana.internal", 1, 1, None);
        client.send_to(&q, addr).await.unwrap();
        let mut buf = [0u8; 512];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buf))
            .await
            .expect("an answer within 2 s")
            .unwrap();
        assert_eq!(from, addr);
        let answer = &buf[..n];
        assert_eq!(
            u16::from_be_bytes([answer[0], answer[1]]),
            i,
            "the query's id"
        );
        assert_eq!(answer[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([answer[6], answer[7]]), 1, "one answer");
        let ip: std::net::Ipv4Addr = GATEWAY_V4.parse().unwrap();
        assert_eq!(answer[n - 4..], ip.octets(), "the advertised address");
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_another_server_holds_is_refused_as_in_use() {
    let first = bind("127.0.0.1:0".parse().unwrap(), 2).await.unwrap();
    let addr = first.udp_addrs()[0];
    for threads in [1, 2] {
        match bind(addr, threads).await {
            Err(DnsError::Bind { addr: at, source }) => {
                assert_eq!(at, addr);
                assert_eq!(source.kind(), ErrorKind::AddrInUse, "{source}");
            }
            Err(other) => panic!("{threads} threads: {other}"),
            Ok(_) => panic!("{threads} threads: a second server bound {addr}"),
        }
    }
    drop(first);
    // Free again once the first is gone.
    bind(addr, 2).await.unwrap();
}
