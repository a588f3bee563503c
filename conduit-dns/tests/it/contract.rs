//! The `Resolver` contract (`conduit_dns::testing`) run against each resolver here.

use std::sync::Arc;

use conduit_dns::testing::{resolver_contract, scenario};
use conduit_dns::{Authority, DnsServer};
use conduit_registry::{InMemoryRegistry, Registry};

#[test]
fn a_built_authority_meets_the_contract() {
    let (zone, services) = scenario();
    let services: Vec<_> = services.into_iter().map(Arc::new).collect();
    let authority = Authority::build(&zone, &services, 1, false).unwrap();
    resolver_contract(&authority);
}

#[tokio::test(flavor = "current_thread")]
async fn a_running_servers_handle_meets_the_contract() {
    let (zone, services) = scenario();
    let registry = Arc::new(InMemoryRegistry::new());
    for s in services {
        registry.register(s).await.unwrap();
    }
    let server = DnsServer::builder()
        .registry(registry)
        .zones(zone)
        .listen("127.0.0.1:0".parse().unwrap())
        .bind()
        .await
        .unwrap();
    resolver_contract(&server.handle());
}
