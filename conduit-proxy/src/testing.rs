//! The contract every [`Upstream`] must meet, written once and run against each in the
//! workspace (the proxy's [`ProxyHandle`](crate::ProxyHandle), an embedder's own picker):
//! give [`upstream_contract`] the registry the picker follows, the picker, and the address
//! of a live HTTP server (its health checks must pass). Panics name the broken promise.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::missing_panics_doc,
    reason = "a test suite: a failed assertion is a failed contract"
)]

use std::net::SocketAddr;
use std::time::Duration;

use conduit_registry::{DomainName, Endpoint, Registry, Routing, ServiceRecord};

use crate::Upstream;

fn host(s: &str) -> DomainName {
    s.parse().unwrap()
}

/// Waits (up to 10 s) until `upstream` picks `want` for `name`.
async fn until(upstream: &dyn Upstream, name: &str, want: Option<&Endpoint>) {
    for _ in 0..1000 {
        if upstream.select(&host(name)).as_ref() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{name}: picks {:?}, not {want:?}, 10 s after the registry changed",
        upstream.select(&host(name))
    );
}

/// Runs the whole contract against a picker following `registry` (fresh, empty): a
/// registered proxied service is picked (its one upstream); a name nobody registered is
/// not; a direct service is not proxied, so never picked; of two upstreams both are picked
/// over many requests; a deregistered service stops being picked.
pub async fn upstream_contract(registry: &dyn Registry, upstream: &dyn Upstream, live: SocketAddr) {
    let live = Endpoint::from_socket_addr(live).unwrap();
    registry
        .register(ServiceRecord::new("web".parse().unwrap(), live.clone()))
        .await
        .unwrap();
    until(upstream, "web.internal", Some(&live)).await;
    assert_eq!(upstream.select(&host("nobody.internal")), None);

    registry
        .register(
            ServiceRecord::new("direct".parse().unwrap(), live.clone())
                .with_routing(Routing::Direct),
        )
        .await
        .unwrap();
    let other: Endpoint = format!("localhost:{}", live.port()).parse().unwrap();
    registry
        .register(ServiceRecord::new("marker".parse().unwrap(), other.clone()))
        .await
        .unwrap();
    until(upstream, "marker.internal", Some(&other)).await;
    assert_eq!(
        upstream.select(&host("direct.internal")),
        None,
        "a direct service is not proxied"
    );

    registry
        .register(
            ServiceRecord::new("pair".parse().unwrap(), live.clone())
                .with_endpoints(vec![live.clone(), other.clone()]),
        )
        .await
        .unwrap();
    until(upstream, "direct.internal", None).await;
    for _ in 0..1000 {
        if upstream.select(&host("pair.internal")).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let picks: Vec<Endpoint> = (0..200)
        .filter_map(|_| upstream.select(&host("pair.internal")))
        .collect();
    assert!(
        picks.contains(&live) && picks.contains(&other),
        "both upstreams get traffic"
    );

    registry.deregister(&"web".parse().unwrap()).await.unwrap();
    until(upstream, "web.internal", None).await;
}
