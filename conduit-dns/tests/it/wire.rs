//! The packet path without sockets: the precomputed fast path agrees with the general path
//! on every query, and no input panics.

use std::sync::Arc;

use conduit_dns::{Authority, Disposition, Transport};
use hickory_proto::op::{Message, ResponseCode};
use proptest::prelude::*;

use crate::common::{config, direct, proxied};

pub(crate) fn authority() -> &'static Authority {
    static AUTHORITY: std::sync::OnceLock<Authority> = std::sync::OnceLock::new();
    AUTHORITY.get_or_init(build)
}

fn build() -> Authority {
    let services = vec![
        Arc::new(proxied("grafana", "10.0.1.50:3000")),
        Arc::new(proxied("vllm", "10.0.1.51:8000").with_tls(false)),
        Arc::new(direct("postgres", &["10.0.2.7:5432", "10.0.2.8:5432"])),
        Arc::new(direct("alias", &["db.example:5432"])),
        Arc::new(direct(
            "big",
            &(1..=60)
                .map(|i| format!("10.1.0.{i}:80"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )),
    ];
    Authority::build(&config(), &services, 7, false).unwrap()
}

pub(crate) fn query(
    id: u16,
    flags: u8,
    name: &str,
    qtype: u16,
    qclass: u16,
    edns: Option<(u16, u8, bool)>,
) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[
        flags,
        0x20 & flags,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(edns.is_some()),
    ]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    if let Some((payload, version, dnssec_ok)) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&payload.to_be_bytes());
        q.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    q
}

fn ask(a: &Authority, packet: &[u8], transport: Transport) -> Message {
    let mut out = Vec::new();
    assert_eq!(a.respond(packet, transport, &mut out), Disposition::Reply);
    Message::from_vec(&out).unwrap()
}

#[test]
fn semantics_of_the_general_cases() {
    let a = authority();
    let m = ask(
        a,
        &query(1, 1, "grafana.internal", 1, 1, None),
        Transport::Udp,
    );
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.authoritative && m.recursion_desired && !m.recursion_available);
    assert_eq!(m.answers.len(), 1);

    // A direct service on a host name: a CNAME to it.
    let m = ask(
        a,
        &query(2, 0, "alias.internal", 1, 1, None),
        Transport::Udp,
    );
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        m.answers[0].record_type(),
        hickory_proto::rr::RecordType::CNAME
    );

    // ANY: one RRset (RFC 8482), here both addresses of the A RRset.
    let m = ask(
        a,
        &query(3, 0, "postgres.internal", 255, 1, None),
        Transport::Udp,
    );
    assert_eq!(m.answers.len(), 2);
    assert!(
        m.answers
            .iter()
            .all(|r| r.record_type() == hickory_proto::rr::RecordType::A)
    );

    // A plain-HTTP proxied service has `_http._tcp` on port 80, not `_https._tcp`.
    let m = ask(
        a,
        &query(4, 0, "_http._tcp.vllm.internal", 33, 1, None),
        Transport::Udp,
    );
    assert_eq!(m.answers.len(), 1);
    let m = ask(
        a,
        &query(5, 0, "_https._tcp.vllm.internal", 33, 1, None),
        Transport::Udp,
    );
    assert_eq!(m.response_code, ResponseCode::NXDomain);

    // TC over UDP without EDNS, whole over TCP.
    let m = ask(a, &query(6, 0, "big.internal", 1, 1, None), Transport::Udp);
    assert!(m.truncation && m.answers.is_empty());
    let m = ask(a, &query(6, 0, "big.internal", 1, 1, None), Transport::Tcp);
    assert!(!m.truncation);
    assert_eq!(m.answers.len(), 60);

    // EDNS payload below 512 counts as 512; above 1232 as 1232.
    let m = ask(
        a,
        &query(7, 0, "grafana.internal", 1, 1, Some((100, 0, false))),
        Transport::Udp,
    );
    assert_eq!(m.edns.as_ref().unwrap().max_payload(), 1232);
    // QTYPE OPT is malformed.
    let m = ask(
        a,
        &query(8, 0, "grafana.internal", 41, 1, None),
        Transport::Udp,
    );
    assert_eq!(m.response_code, ResponseCode::FormErr);
}

#[test]
fn serial_and_records_are_exposed() {
    let a = authority();
    assert_eq!(a.serial(), 7);
    let records = a.records();
    assert!(
        records
            .iter()
            .any(|r| r.starts_with("grafana.internal. 30 IN A 10.0.0.1")),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.contains("IN SOA ns.internal. hostmaster.internal. 7 ")),
        "{records:?}"
    );
}

fn arb_name() -> impl Strategy<Value = String> {
    let names = prop_oneof![
        Just("grafana.internal".to_owned()),
        Just("vllm.internal".to_owned()),
        Just("postgres.internal".to_owned()),
        Just("alias.internal".to_owned()),
        Just("big.internal".to_owned()),
        Just("internal".to_owned()),
        Just("ns.internal".to_owned()),
        Just("_https._tcp.grafana.internal".to_owned()),
        Just("_tcp.grafana.internal".to_owned()),
        Just("7.2.0.10.in-addr.arpa".to_owned()),
        Just("10.in-addr.arpa".to_owned()),
        Just("example.com".to_owned()),
        Just("x.grafana.internal".to_owned()),
        "[a-z0-9-]{1,12}\\.internal",
        "[a-z]{1,10}\\.[a-z]{1,5}",
    ];
    (names, any::<u64>()).prop_map(|(name, mask)| {
        // Random case.
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

fn arb_qtype() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(1u16),
        Just(28),
        Just(2),
        Just(6),
        Just(12),
        Just(5),
        Just(15),
        Just(16),
        Just(33),
        Just(255),
        Just(252),
        any::<u16>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The precomputed answers and the negative-answer templates say exactly what the
    /// general path says.
    #[test]
    fn fast_path_agrees_with_the_general_path(
        id in any::<u16>(),
        flags in prop_oneof![Just(0u8), Just(1u8)],
        name in arb_name(),
        qtype in arb_qtype(),
        qclass in prop_oneof![Just(1u16), Just(1u16), Just(3u16), Just(255u16)],
        edns in proptest::option::of((any::<u16>(), prop_oneof![Just(0u8), Just(0u8), Just(1u8)], any::<bool>())),
        tcp in any::<bool>(),
    ) {
        let a = authority();
        let packet = query(id, flags, &name, qtype, qclass, edns);
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        let d1 = a.respond(&packet, transport, &mut fast);
        let d2 = a.respond_slow(&packet, transport, &mut slow);
        prop_assert_eq!(d1, d2);
        if d1 == Disposition::Reply {
            let (f, s) = (Message::from_vec(&fast).unwrap(), Message::from_vec(&slow).unwrap());
            prop_assert_eq!(&f, &s);
            // The question comes back exactly as asked (case included).
            let qlen = packet.len() - 12 - if edns.is_some() { 11 } else { 0 };
            if s.response_code != ResponseCode::FormErr {
                prop_assert_eq!(&fast[12..12 + qlen], &packet[12..12 + qlen]);
            }
            prop_assert_eq!(&fast[..2], &id.to_be_bytes()[..]);
            if !tcp {
                let limit = edns.map_or(512, |(p, _, _)| usize::from(p.clamp(512, 1232)));
                prop_assert!(fast.len() <= limit);
            }
        }
    }

    /// Arbitrary bytes, and valid queries with bytes flipped, never panic.
    #[test]
    fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), name in arb_name()) {
        let a = authority();
        let mut out = Vec::new();
        let _ = a.respond(&bytes, Transport::Udp, &mut out);
        let mut packet = query(1, 1, &name, 1, 1, Some((1232, 0, true)));
        for (at, value) in flips {
            let i = at % packet.len();
            packet[i] = value;
        }
        let _ = a.respond(&packet, Transport::Udp, &mut out);
        let _ = a.respond(&packet, Transport::Tcp, &mut out);
    }
}

/// Every response of `a` and `b` to each owner name of either, for the common types, with
/// and without EDNS, byte for byte.
fn assert_same_answers(a: &Authority, b: &Authority, step: usize) {
    let mut owners: Vec<String> = a
        .records()
        .into_iter()
        .chain(b.records())
        .filter_map(|r| r.split(' ').next().map(str::to_owned))
        .collect();
    owners.sort();
    owners.dedup();
    owners.push("gone.internal".to_owned());
    for name in &owners {
        for qtype in [1u16, 2, 5, 6, 12, 16, 28, 33, 255] {
            for edns in [None, Some((1232, 0, false)), Some((4096, 0, true))] {
                let q = query(0x1234, 1, name, qtype, 1, edns);
                for transport in [Transport::Udp, Transport::Tcp] {
                    let (mut x, mut y) = (Vec::new(), Vec::new());
                    assert_eq!(
                        a.respond(&q, transport, &mut x),
                        b.respond(&q, transport, &mut y)
                    );
                    assert_eq!(
                        x, y,
                        "step {step}: {name} type {qtype} {edns:?} {transport:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_rebuild_from_the_previous_state_answers_as_a_full_build() {
    use conduit_registry::DomainName;
    let base = vec![
        Arc::new(proxied("grafana", "10.0.1.50:3000")),
        Arc::new(proxied("vllm", "10.0.1.51:8000").with_tls(false)),
        Arc::new(direct("postgres", &["10.0.2.7:5432", "10.0.2.8:5432"])),
        Arc::new(direct("alias", &["db.example:5432"])),
    ];
    // (services, whether only their names are replaced)
    let mut steps = vec![(base.clone(), false)];
    let mut s = base.clone();
    // A new proxied service; an address of a direct one changes (A and PTR); a proxied
    // service leaves; one switches from proxied to direct; a CNAME's target becomes a
    // served name; nothing changes but the serial.
    s.push(Arc::new(proxied("ollama", "10.0.1.52:11434")));
    steps.push((s.clone(), true));
    s[2] = Arc::new(direct("postgres", &["10.0.2.9:5432"]));
    steps.push((s.clone(), false));
    s.remove(0);
    steps.push((s.clone(), true));
    s[0] = Arc::new(direct("vllm", &["10.0.1.51:8000"]));
    steps.push((s.clone(), false));
    s.push(Arc::new(direct("db", &["10.0.3.3:5432"])));
    s[2] = Arc::new(direct("alias", &["db.internal:5432"]));
    steps.push((s.clone(), false));
    steps.push((s.clone(), true));
    // A service below another (x.ollama.internal makes ollama.internal an empty
    // non-terminal when ollama leaves); then ollama changes and leaves.
    let deep =
        proxied("x", "10.0.1.60:80").with_domain(DomainName::new("x.ollama.internal").unwrap());
    s.push(Arc::new(deep));
    steps.push((s.clone(), false));
    let at = s
        .iter()
        .position(|r| r.name().as_str() == "ollama")
        .unwrap();
    s[at] = Arc::new(proxied("ollama", "10.0.1.53:11434").with_tls(false));
    steps.push((s.clone(), false));
    s.remove(at);
    steps.push((s.clone(), false));
    // A proxied service that a direct one points at by name, then changed.
    s.push(Arc::new(proxied("web", "10.0.1.70:80")));
    steps.push((s.clone(), true));
    s.push(Arc::new(direct("alias2", &["web.internal:80"])));
    steps.push((s.clone(), false));
    let at = s.iter().position(|r| r.name().as_str() == "web").unwrap();
    s[at] = Arc::new(proxied("web", "10.0.1.71:80").with_tls(false));
    steps.push((s.clone(), false));
    // A service on the name server's own name; then one more plain service.
    s.push(Arc::new(proxied("ns", "10.0.1.80:80")));
    steps.push((s.clone(), false));
    s.push(Arc::new(proxied("grafana", "10.0.1.50:3000")));
    steps.push((s.clone(), true));
    // Several at once: registered, updated, removed.
    let n = s.len();
    s.truncate(n - 1);
    s.push(Arc::new(proxied("a1", "10.0.1.90:80")));
    s.push(Arc::new(proxied("a2", "10.0.1.91:80").with_tls(false)));
    steps.push((s.clone(), true));

    let cfg = config();
    let mut previous = Authority::build(&cfg, &steps[0].0, 100, false).unwrap();
    for (i, (services, patch)) in steps.iter().enumerate().skip(1) {
        let serial = 100 + i as u32;
        let full = Authority::build(&cfg, services, serial, false).unwrap();
        let next = Authority::rebuild(&previous, &cfg, services, serial, false).unwrap();
        assert_eq!(next.serial(), serial);
        assert_eq!(next.was_patched(), *patch, "step {i}");
        assert_eq!(next.records(), full.records(), "step {i}");
        assert_same_answers(&full, &next, i);
        previous = next;
    }
    // Other settings: nothing is patched or carried over, and the answers are still right.
    let other = config().with_https_port(9443);
    let full = Authority::build(&other, &steps[1].0, 199, false).unwrap();
    let next = Authority::rebuild(&previous, &other, &steps[1].0, 199, false).unwrap();
    assert!(!next.was_patched());
    assert_same_answers(&full, &next, 98);
    let full = Authority::build(&other, &steps[1].0, 200, true).unwrap();
    let next = Authority::rebuild(&previous, &other, &steps[1].0, 200, true).unwrap();
    assert!(!next.was_patched());
    assert_same_answers(&full, &next, 99);
}
