//! UDP: one thread per socket, batches of datagrams read with `recvmmsg` and answered with
//! one `sendmmsg`; queries the zone does not answer are forwarded on the runtime.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

use crate::shared::{Shared, forward_or_servfail, response_needs_truncation};
use crate::stats::LocalCounts;
use crate::wire::{Disposition, Transport};

/// Datagrams read (and answers sent) per system call.
const BATCH: usize = 32;
/// Largest datagram read; bigger ones are truncated by the kernel and answered FORMERR.
pub(crate) const MAX_DATAGRAM: usize = 4096;
/// How often a UDP thread idle in `recvmmsg` checks for shutdown.
pub(crate) const UDP_POLL: Duration = Duration::from_millis(100);

pub(crate) fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// One UDP socket on its own thread: block in `recvmmsg` until at least one datagram is
/// there, take up to [`BATCH`], answer them, send the answers with one `sendmmsg`. A thread
/// (rather than a task) wakes straight from the kernel, without an event loop in between,
/// which is what the latency and per-core targets need. It checks `stop` at least every
/// [`UDP_POLL`].
pub(crate) fn udp_loop(
    socket: std::net::UdpSocket,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) {
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    // Everything a batch needs is allocated once, here: the batch path allocates nothing.
    let mut bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]> = Box::new([[0u8; MAX_DATAGRAM]; BATCH]);
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut received: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    let mut replies: Vec<(usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
    let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    let mut counts = LocalCounts::new(Transport::Udp);
    while !stop.load(Ordering::Relaxed) {
        received.clear();
        {
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
            match recvmmsg(
                fd,
                &mut recv_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => received.extend(results.map(|m| (m.bytes, m.address))),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    continue;
                }
            }
        }
        let authority = shared.authority();
        let visibility = shared.visibility.load();
        replies.clear();
        for (i, &(len, addr)) in received.iter().enumerate() {
            let Some(addr) = addr else { continue };
            let packet = &bufs[i][..len];
            let disposition = match (&*visibility, to_socket_addr(&addr)) {
                (Some(policy), Some(peer)) => {
                    authority.respond_to(peer.ip(), policy, packet, Transport::Udp, &mut outs[i])
                }
                _ => authority.respond(packet, Transport::Udp, &mut outs[i]),
            };
            match disposition {
                Disposition::Reply => {
                    counts.add(&outs[i]);
                    replies.push((i, addr));
                }
                Disposition::Drop => counts.dropped += 1,
                Disposition::Forward => {
                    counts.queries += 1;
                    if let Some(peer) = to_socket_addr(&addr) {
                        spawn_forward(&runtime, &shared, &socket, packet.to_vec(), peer);
                    }
                }
            }
        }
        let mut sent = 0;
        while sent < replies.len() {
            let pending = &replies[sent..];
            let mut iovs: [[IoSlice<'_>; 1]; BATCH] = [[IoSlice::new(&[])]; BATCH];
            for (iov, (i, _)) in iovs.iter_mut().zip(pending) {
                *iov = [IoSlice::new(&outs[*i])];
            }
            let iovs = &iovs[..pending.len()];
            addrs.clear();
            addrs.extend(pending.iter().map(|(_, a)| Some(*a)));
            let cmsgs: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                fd,
                &mut send_headers,
                iovs,
                &addrs,
                cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(results) => sent += results.count().max(1),
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EMSGSIZE) => {
                    // Bigger than the link allows (answers are never fragmented, see
                    // `bind.rs`): sent again with TC, or skipped if that cannot be smaller.
                    let (i, _) = pending[0];
                    let query = &bufs[i][..received[i].0];
                    match fitted(query, &outs[i]) {
                        Some(tc) => {
                            outs[i] = tc;
                            counts.truncated += 1;
                        }
                        None => sent += 1,
                    }
                }
                Err(e) => {
                    // This destination failed (unreachable, filtered); skip it.
                    tracing::debug!(error = %e, "UDP send failed");
                    sent += 1;
                }
            }
        }
        counts.flush(&shared.counters);
    }
}

fn spawn_forward(
    runtime: &tokio::runtime::Handle,
    shared: &Arc<Shared>,
    socket: &Arc<std::net::UdpSocket>,
    query: Vec<u8>,
    peer: SocketAddr,
) {
    let shared = Arc::clone(shared);
    let socket = Arc::clone(socket);
    shared.forwards.clone().spawn_on(
        async move {
            let mut response = forward_or_servfail(&shared, &query).await;
            if response_needs_truncation(&query, response.len()) {
                let mut truncated = Vec::new();
                crate::wire::truncated_copy(&query, &response, &mut truncated);
                response = truncated;
                shared.counters.truncated.fetch_add(1, Ordering::Relaxed);
            }
            // The socket is in blocking mode (it belongs to the UDP thread): send from a
            // blocking-pool thread, never from the async one.
            let sent = tokio::task::spawn_blocking(move || match socket.send_to(&response, peer) {
                Err(e) if e.raw_os_error() == Some(nix::libc::EMSGSIZE) => {
                    let tc = fitted(&query, &response).ok_or(e)?;
                    shared.counters.truncated.fetch_add(1, Ordering::Relaxed);
                    socket.send_to(&tc, peer)
                }
                sent => sent,
            })
            .await;
            if let Ok(Err(e)) = sent {
                tracing::debug!(%peer, error = %e, "cannot send a forwarded answer");
            }
        },
        runtime,
    );
}

/// For an answer the link refused as too big: the same answer cut to its question with TC
/// set (the client asks again over TCP), or `None` when that is no smaller.
fn fitted(query: &[u8], response: &[u8]) -> Option<Vec<u8>> {
    let mut tc = Vec::new();
    crate::wire::truncated_copy(query, response, &mut tc);
    let smaller = tc.len() < response.len();
    tracing::debug!(
        bytes = response.len(),
        smaller,
        "an answer is bigger than the link's MTU; sending it with TC if smaller"
    );
    smaller.then_some(tc)
}

#[cfg(test)]
mod tests {
    use super::fitted;

    #[test]
    fn an_answer_too_big_for_the_link_is_cut_to_its_question_with_tc_once() {
        // ID 0x1234, RD, one question: big.internal A IN.
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend_from_slice(b"\x03big\x08internal\x00\x00\x01\x00\x01");
        // The answer: QR AA, one question, 60 answers (their records' bytes stand in).
        let mut answer = query.clone();
        answer[2] = 0x85;
        answer[7] = 60;
        answer.extend(std::iter::repeat_n(0xab, 60 * 16));
        let tc = fitted(&query, &answer).expect("smaller");
        assert_eq!(tc.len(), query.len(), "header and question only");
        assert_eq!(tc[2] & 0x02, 0x02, "TC set");
        assert_eq!(&tc[..2], &[0x12, 0x34], "the query's ID");
        assert_eq!(&tc[6..12], &[0; 6], "no records counted");
        assert_eq!(&tc[12..], &query[12..], "the question");
        // Already as small as it gets: nothing smaller to send.
        assert_eq!(fitted(&query, &tc), None);
    }
}
