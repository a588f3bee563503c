//! Binding the listen addresses: UDP as a group of sockets on one address (`SO_REUSEPORT`,
//! one per UDP thread, so that the kernel spreads queries over cores instead of every
//! thread contending for one socket), TCP as one listener.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, bind, setsockopt, socket, sockopt,
};
use tokio::net::TcpListener;

use crate::DnsError;
use crate::udp::UDP_POLL;

/// How many UDP threads (and sockets) an address gets when the builder is not told: one per
/// core this process may run on (its CPU affinity, so a server pinned to one core gets one),
/// at most this many.
const MAX_AUTO_UDP_THREADS: usize = 8;

/// The UDP threads per address for `requested` (0: one per available core).
pub(crate) fn udp_threads(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_AUTO_UDP_THREADS)
}

fn bind_error(addr: SocketAddr) -> impl FnOnce(std::io::Error) -> DnsError {
    move |source| DnsError::Bind { addr, source }
}

fn errno_error(addr: SocketAddr) -> impl FnOnce(nix::errno::Errno) -> DnsError {
    move |e| DnsError::Bind {
        addr,
        source: e.into(),
    }
}

/// `threads` UDP sockets on `addr`. With more than one they share it through
/// `SO_REUSEPORT`; the address is first bound alone, so that one held by another process
/// (another gateway, which would otherwise silently share the queries) is refused as in use.
/// Port 0 takes a free port, the same for every socket of the group.
pub(crate) fn bind_udp(
    addr: SocketAddr,
    threads: usize,
) -> Result<Vec<std::net::UdpSocket>, DnsError> {
    let alone = std::net::UdpSocket::bind(addr).map_err(bind_error(addr))?;
    if threads <= 1 {
        return Ok(vec![configure(alone, addr)?]);
    }
    let actual = alone.local_addr().map_err(bind_error(addr))?;
    drop(alone);
    (0..threads)
        .map(|_| configure(bind_shared(actual)?, actual))
        .collect()
}

/// One socket of a `SO_REUSEPORT` group on `addr`.
fn bind_shared(addr: SocketAddr) -> Result<std::net::UdpSocket, DnsError> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(errno_error(addr))?;
    setsockopt(&fd, sockopt::ReusePort, &true).map_err(errno_error(addr))?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )
    .map_err(errno_error(addr))?;
    Ok(std::net::UdpSocket::from(fd))
}

fn configure(
    socket: std::net::UdpSocket,
    addr: SocketAddr,
) -> Result<std::net::UdpSocket, DnsError> {
    // Room for bursts: the kernel caps this at net.core.rmem_max.
    if let Err(e) = setsockopt(&socket, sockopt::RcvBuf, &(4 << 20)) {
        tracing::debug!(%addr, error = %e, "cannot raise the receive buffer");
    }
    never_fragment(&socket, addr);
    // Blocking, with a timeout so that the UDP thread sees a shutdown.
    socket
        .set_read_timeout(Some(UDP_POLL))
        .map_err(bind_error(addr))?;
    Ok(socket)
}

/// Answers leave with DF set and are never fragmented, whatever the kernel's path MTU cache
/// says (`IP_PMTUDISC_PROBE`, and its IPv6 twin; the IPv4 one also for IPv4 clients of a
/// dual-stack IPv6 socket).
///
/// - Forged "fragmentation needed" ICMP cannot make answers go out in fragments, the opening
///   of fragment-based cache poisoning (BIND has sent no fragments since 9.16.19 either).
/// - An answer that fits the link leaves as before (the kernel already set DF on those),
///   but for its IPv4 ID (below). Answers are at most 1,232 bytes (`wire::MAX_UDP_PAYLOAD`),
///   which fits every IPv6 link and any IPv4 link of 1,260 bytes or more; one that does not
///   fit is answered with TC instead (`udp.rs`), and the client asks again over TCP.
/// - An IPv4 datagram with DF set needs no fresh IP ID: it leaves with 0, as RFC 6864 allows
///   for a datagram that cannot be fragmented, and the kernel no longer hashes an ID per
///   answer, 3.7 % of the CPU of a server core answering at saturation (`perf`).
///
/// Best effort: a kernel that refuses it keeps its default.
fn never_fragment(socket: &std::net::UdpSocket, addr: SocketAddr) {
    use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
    let v4 = sockopt::set_ip_mtu_discover(socket, Ipv4PathMtuDiscovery::PROBE);
    let v6 = match addr {
        SocketAddr::V4(_) => Ok(()),
        SocketAddr::V6(_) => sockopt::set_ipv6_mtu_discover(socket, Ipv6PathMtuDiscovery::PROBE),
    };
    for e in [v4.err(), v6.err()].into_iter().flatten() {
        tracing::debug!(%addr, error = %e, "cannot set the socket to ignore the path MTU");
    }
}

pub(crate) fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, DnsError> {
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error(addr))?;
    listener.set_nonblocking(true).map_err(bind_error(addr))?;
    TcpListener::from_std(listener).map_err(bind_error(addr))
}

/// UDP (a group of `threads`) and TCP on one address.
pub(crate) fn bind_both(
    addr: SocketAddr,
    threads: usize,
) -> Result<(Vec<std::net::UdpSocket>, TcpListener), DnsError> {
    if addr.port() != 0 {
        return Ok((bind_udp(addr, threads)?, bind_tcp(addr)?));
    }
    // Port 0: take a free UDP port, then the same TCP port; retry if TCP's is taken.
    let mut last = None;
    for _ in 0..16 {
        let udp = bind_udp(addr, threads)?;
        let Some(actual) = udp.first().and_then(|s| s.local_addr().ok()) else {
            continue;
        };
        match bind_tcp(actual) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(DnsError::NoFreePort { addr }))
}
