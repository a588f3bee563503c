//! Split-horizon DNS: names of services a client may not reach are NXDOMAIN for it, for
//! every type; the names it may reach answer as before.

use conduit_dns::{Disposition, Transport};
use hickory_proto::op::{Message, ResponseCode};

use crate::wire::{authority, query};

#[test]
fn hidden_names_are_nxdomain_for_every_type_and_visible_ones_unchanged() {
    use conduit_registry::access::{AccessPolicy, DefaultRule, Evaluator, Grant, Label, Peer};
    let a = authority();
    let mut policy = AccessPolicy::default();
    let mut alice = Peer::new(Label::new("peer name", "alice").unwrap());
    alice.addresses.push("127.0.0.2".parse().unwrap());
    policy.peers.push(alice);
    for svc in ["grafana", "postgres"] {
        policy.grants.push(Grant::new(
            svc.parse().unwrap(),
            "peer:alice".parse().unwrap(),
        ));
    }
    let eval = Evaluator::new(&policy, DefaultRule::Deny, 1);
    let (alice, other) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
    let ask_as = |ip, name: &str, qtype: u16| {
        let mut out = Vec::new();
        let packet = query(9, 1, name, qtype, 1, Some((1232, 0, false)));
        assert_eq!(
            a.respond_to(ip, &eval, &packet, Transport::Udp, &mut out),
            Disposition::Reply
        );
        Message::from_vec(&out).unwrap()
    };
    // A, AAAA, SRV, ANY and the PTR of a direct service's address.
    let names = [
        ("grafana.internal", 1),
        ("grafana.internal", 28),
        ("grafana.internal", 255),
        ("_http._tcp.postgres.internal", 33),
        ("7.2.0.10.in-addr.arpa", 12),
    ];
    for (name, qtype) in names {
        let hidden = ask_as(other, name, qtype);
        assert_eq!(
            hidden.response_code,
            ResponseCode::NXDomain,
            "{name} {qtype}"
        );
        assert!(hidden.answers.is_empty());
        assert_eq!(
            hidden.authorities.len(),
            1,
            "the zone's SOA for negative caching"
        );
        let shown = ask_as(alice, name, qtype);
        let plain = {
            let mut out = Vec::new();
            a.respond(
                &query(9, 1, name, qtype, 1, Some((1232, 0, false))),
                Transport::Udp,
                &mut out,
            );
            Message::from_vec(&out).unwrap()
        };
        assert_eq!(
            shown, plain,
            "{name} {qtype}: alice sees what everyone saw before"
        );
        assert!(!shown.answers.is_empty(), "{name} {qtype}");
    }
    // The zone's own names and services nobody granted under a deny default.
    assert_eq!(
        ask_as(other, "internal", 6).response_code,
        ResponseCode::NoError
    );
    assert_eq!(
        ask_as(alice, "vllm.internal", 1).response_code,
        ResponseCode::NXDomain
    );
}
