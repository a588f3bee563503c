//! The contract every [`Resolver`] must meet, written once and run against each resolver
//! in the workspace (a built [`Authority`](crate::Authority), a running server's
//! [`DnsHandle`](crate::DnsHandle)): build the resolver from [`scenario`], then call
//! [`resolver_contract`]. Panics name the broken promise.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::missing_panics_doc,
    reason = "a test suite: a failed assertion is a failed contract"
)]

use std::net::IpAddr;

use conduit_registry::{DomainName, Routing, ServiceRecord};

use crate::{Answer, QueryType, Resolver, ZoneConfig};

/// The zone and the services every resolver under contract is built from: zone
/// `internal` advertising 10.8.0.1 and fd00::1; `grafana` proxied; `db` direct on
/// 10.0.1.60; `v6` direct on fd00::60.
pub fn scenario() -> (ZoneConfig, Vec<ServiceRecord>) {
    let zone = ZoneConfig::new(vec!["internal".parse().unwrap()]).with_advertise(vec![
        "10.8.0.1".parse().unwrap(),
        "fd00::1".parse().unwrap(),
    ]);
    let rec = |name: &str, up: &str| ServiceRecord::new(name.parse().unwrap(), up.parse().unwrap());
    let services = vec![
        rec("grafana", "10.0.1.50:3000"),
        rec("db", "10.0.1.60:5432").with_routing(Routing::Direct),
        rec("v6", "[fd00::60]:80").with_routing(Routing::Direct),
    ];
    (zone, services)
}

fn name(s: &str) -> DomainName {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Runs the whole contract against a resolver built from [`scenario`]:
/// - a proxied service resolves to the advertised addresses, per family;
/// - a direct service resolves to its own address, and the other family is `NoData`;
/// - names compare without regard to case;
/// - a name in the zone that is not registered is `NxDomain`, one outside every zone
///   `Refused`.
pub fn resolver_contract(resolver: &dyn Resolver) {
    let cases = [
        (
            "grafana.internal",
            QueryType::A,
            Answer::Addresses(vec![ip("10.8.0.1")]),
        ),
        (
            "grafana.internal",
            QueryType::Aaaa,
            Answer::Addresses(vec![ip("fd00::1")]),
        ),
        (
            "GraFana.Internal",
            QueryType::A,
            Answer::Addresses(vec![ip("10.8.0.1")]),
        ),
        (
            "db.internal",
            QueryType::A,
            Answer::Addresses(vec![ip("10.0.1.60")]),
        ),
        ("db.internal", QueryType::Aaaa, Answer::NoData),
        (
            "v6.internal",
            QueryType::Aaaa,
            Answer::Addresses(vec![ip("fd00::60")]),
        ),
        ("v6.internal", QueryType::A, Answer::NoData),
        ("missing.internal", QueryType::A, Answer::NxDomain),
        ("grafana.example.com", QueryType::A, Answer::Refused),
    ];
    for (n, qtype, want) in cases {
        assert_eq!(resolver.resolve(&name(n), qtype), want, "{n} {qtype:?}");
    }
}
