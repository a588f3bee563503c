//! The DNS packet path: any bytes, over UDP and TCP, never panic; the precomputed fast path
//! answers exactly what the general path answers.
#![no_main]

use std::sync::{Arc, OnceLock};

use conduit_dns::{Authority, Transport, ZoneConfig};
use conduit_registry::{DomainName, Endpoint, Routing, ServiceName, ServiceRecord};
use libfuzzer_sys::fuzz_target;

fn authority() -> &'static Authority {
    static A: OnceLock<Authority> = OnceLock::new();
    A.get_or_init(|| {
        let zone = DomainName::internal();
        let record = |name: &str, upstream: &str| {
            ServiceRecord::new(ServiceName::new(name).unwrap(), upstream.parse::<Endpoint>().unwrap())
                .in_zone(&zone)
                .unwrap()
        };
        let services = vec![
            Arc::new(record("grafana", "10.0.1.50:3000")),
            Arc::new(record("postgres", "10.0.2.7:5432").with_routing(Routing::Direct)),
            Arc::new(record("alias", "db.example:5432").with_routing(Routing::Direct)),
        ];
        let config = ZoneConfig::default()
            .with_advertise(vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()])
            .with_reverse_zones(vec!["10.in-addr.arpa".parse().unwrap()]);
        Authority::build(&config, &services, 1, false).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let a = authority();
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    for transport in [Transport::Udp, Transport::Tcp] {
        let d1 = a.respond(data, transport, &mut fast);
        let d2 = a.respond_slow(data, transport, &mut slow);
        assert_eq!(d1, d2);
    }
});
