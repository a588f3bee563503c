//! Forwarding names outside the zones to configured resolvers (off by default: air-gap).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Forwards queries to upstream resolvers, one after the other until one answers.
///
/// Each query goes out from a fresh socket (a random source port) with a random ID; a reply
/// counts only if its ID and question match. A truncated UDP reply is retried over TCP to
/// the same resolver. The resolver that answered last is tried first next time.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    preferred: AtomicUsize,
}

impl Forwarder {
    /// Forwards to `upstreams` (tried in order), waiting `timeout` for each.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self {
            upstreams,
            timeout,
            preferred: AtomicUsize::new(0),
        }
    }

    /// The configured resolvers.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The response to `query` from the first resolver that answers in time, with the
    /// query's own ID; `None` when none did (answer SERVFAIL).
    pub async fn forward(&self, query: &[u8]) -> Option<Vec<u8>> {
        let question_end = crate::wire::question_end(query)?;
        let n = self.upstreams.len();
        let first = self.preferred.load(Ordering::Relaxed);
        for i in 0..n {
            let index = (first + i) % n;
            let upstream = self.upstreams[index];
            match tokio::time::timeout(self.timeout, exchange(upstream, query, question_end)).await
            {
                Ok(Ok(mut response)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    response[..2].copy_from_slice(&query[..2]);
                    return Some(response);
                }
                Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "forwarding failed"),
                Err(_) => tracing::debug!(%upstream, "forwarding timed out"),
            }
        }
        None
    }
}

fn matches(query: &[u8], question_end: usize, id: [u8; 2], response: &[u8]) -> bool {
    response.len() >= question_end
        && response[..2] == id
        && response[2] & 0x80 != 0
        && response[4..6] == [0, 1]
        && response[12..question_end].eq_ignore_ascii_case(&query[12..question_end])
}

async fn exchange(
    upstream: SocketAddr,
    query: &[u8],
    question_end: usize,
) -> std::io::Result<Vec<u8>> {
    let id: [u8; 2] = rand::random::<u16>().to_be_bytes();
    let mut ours = query.to_vec();
    ours[..2].copy_from_slice(&id);
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(&ours).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await?;
        let response = &buf[..n];
        if !matches(&ours, question_end, id, response) {
            continue; // a stray or spoofed datagram: keep waiting
        }
        if response[2] & 0x02 != 0 {
            return exchange_tcp(upstream, &ours, question_end, id).await;
        }
        return Ok(response.to_vec());
    }
}

async fn exchange_tcp(
    upstream: SocketAddr,
    query: &[u8],
    question_end: usize,
    id: [u8; 2],
) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len()).map_err(|_| std::io::Error::other("query too long"))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let n = usize::from(stream.read_u16().await?);
    let mut response = vec![0u8; n];
    stream.read_exact(&mut response).await?;
    if matches(query, question_end, id, &response) {
        Ok(response)
    } else {
        Err(std::io::Error::other(
            "TCP response does not match the query",
        ))
    }
}
