//! Everything the registry parses from outside: names, domains, endpoints, services.json.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(n) = s.parse::<conduit_registry::ServiceName>() {
            assert_eq!(n.to_string().parse::<conduit_registry::ServiceName>().ok(), Some(n));
        }
        if let Ok(d) = s.parse::<conduit_registry::DomainName>() {
            assert_eq!(d.to_string().parse::<conduit_registry::DomainName>().ok(), Some(d));
        }
        if let Ok(e) = s.parse::<conduit_registry::Endpoint>() {
            assert_eq!(e.to_string().parse::<conduit_registry::Endpoint>().ok(), Some(e));
        }
    }
    let _ = conduit_registry::internal::fuzz_parse_services_json(data);
});
