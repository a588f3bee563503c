//! Binding a listener whose address is still held: a gateway started by hand right after the
//! one before was stopped may find that one still closing its sockets (its DNS threads see
//! the stop within 100 ms, its accept loops at their next turn). The address is tried again
//! for a few seconds before the error stands, so a restart does not fail on the old process's
//! last moments, and an address another program holds is still refused, a little later.

use std::io::ErrorKind;
use std::time::Duration;

/// How long an address in use is tried again.
pub(crate) const IN_USE_WAIT: Duration = Duration::from_secs(5);
/// The pause between two tries.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Whether `e` says that a listen address is held by another socket.
pub(crate) fn dns_in_use(e: &conduit_dns::DnsError) -> bool {
    matches!(e, conduit_dns::DnsError::Bind { source, .. } if source.kind() == ErrorKind::AddrInUse)
}

/// Whether `e` says that a listen address is held by another socket.
pub(crate) fn proxy_in_use(e: &conduit_proxy::ProxyError) -> bool {
    matches!(e, conduit_proxy::ProxyError::Bind { source, .. } if source.kind() == ErrorKind::AddrInUse)
}

/// Runs `bind` until it succeeds, fails otherwise than `in_use`, or `wait` has passed.
pub(crate) async fn bind_waiting<T, E: std::fmt::Display>(
    wait: Duration,
    mut bind: impl AsyncFnMut() -> Result<T, E>,
    in_use: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut told = false;
    loop {
        match bind().await {
            Err(e) if in_use(&e) && tokio::time::Instant::now() < deadline => {
                if !told {
                    tracing::warn!(error = %e, wait = ?wait, "address in use; trying again (a gateway still stopping?)");
                    told = true;
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn listen(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, std::io::Error> {
        tokio::net::TcpListener::bind(addr).await
    }

    fn in_use(e: &std::io::Error) -> bool {
        e.kind() == ErrorKind::AddrInUse
    }

    #[tokio::test]
    async fn an_address_freed_while_waiting_is_bound() {
        let held = listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = held.local_addr().unwrap();
        let freer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(held);
        });
        let bound = bind_waiting(IN_USE_WAIT, async || listen(addr).await, in_use).await;
        assert_eq!(bound.unwrap().local_addr().unwrap(), addr);
        freer.await.unwrap();
    }

    #[tokio::test]
    async fn an_address_still_held_after_the_wait_is_refused() {
        let held = listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = held.local_addr().unwrap();
        let err = bind_waiting(
            Duration::from_millis(300),
            async || listen(addr).await,
            in_use,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn other_errors_are_not_waited_for() {
        let mut tries = 0;
        let err = bind_waiting(
            IN_USE_WAIT,
            async || {
                tries += 1;
                Err::<(), _>(std::io::Error::from(ErrorKind::PermissionDenied))
            },
            in_use,
        )
        .await
        .unwrap_err();
        assert_eq!((err.kind(), tries), (ErrorKind::PermissionDenied, 1));
    }
}
