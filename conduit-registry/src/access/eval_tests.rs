use super::*;
use crate::access::{Label, Peer};
use crate::access::{PolicyError, StoredPolicy, Subject};

fn peer(name: &str, addrs: &[&str], tags: &[&str]) -> Peer {
    let mut p = Peer::new(Label::new("peer name", name).unwrap());
    p.addresses = addrs.iter().map(|a| a.parse().unwrap()).collect();
    p.tags = tags.iter().map(|t| Label::new("tag", t).unwrap()).collect();
    p
}

fn policy() -> AccessPolicy {
    let mut p = AccessPolicy::default();
    p.peers.push(peer("alice", &["127.0.0.2"], &["ops"]));
    p.peers.push(peer("bob", &["127.0.0.3"], &[]));
    p.peers.push(peer("carol", &["10.9.0.0/24"], &["ops"]));
    let web: ServiceName = "web".parse().unwrap();
    let llm: ServiceName = "llm".parse().unwrap();
    p.grants
        .push(Grant::new(web.clone(), "peer:alice".parse().unwrap()));
    p.grants.push(
        Grant::new(llm.clone(), "cidr:127.0.0.0/8".parse().unwrap())
            .methods(["GET"])
            .path("/v1/"),
    );
    p.grants.push(
        Grant::new(llm.clone(), "tag:ops".parse().unwrap())
            .methods(["post"])
            .path("/api/generate"),
    );
    p.grants.push(Grant::new(
        "vault".parse().unwrap(),
        "cert:bob".parse().unwrap(),
    ));
    p.require_cert.push("vault".parse().unwrap());
    p.validate().unwrap();
    p
}

fn ip(s: &str) -> Client<'static> {
    Client::from_ip(s.parse().unwrap())
}

#[test]
fn peers_tags_cidrs_methods_and_paths() {
    let e = Evaluator::new(&policy(), DefaultRule::Deny, 7);
    let (web, llm) = ("web".parse().unwrap(), "llm".parse().unwrap());
    assert_eq!(
        e.decide(ip("127.0.0.2"), &web, "GET", "/").reason,
        Reason::Grant(0)
    );
    assert_eq!(
        e.decide(ip("127.0.0.3"), &web, "GET", "/").reason,
        Reason::NoGrant
    );
    assert_eq!(
        e.decide(ip("127.0.0.3"), &llm, "GET", "/v1/models").reason,
        Reason::Grant(1)
    );
    assert!(
        !e.decide(ip("127.0.0.3"), &llm, "POST", "/api/generate")
            .allowed
    );
    assert_eq!(
        e.decide(ip("10.9.0.77"), &llm, "POST", "/api/generate")
            .reason,
        Reason::Grant(2)
    );
    assert!(
        !e.decide(ip("10.9.0.77"), &llm, "POST", "/api/delete")
            .allowed
    );
    assert!(
        !e.decide(ip("10.9.0.77"), &llm, "POST", "/api/generatex")
            .allowed
    );
    assert_eq!(
        e.decide(ip("::ffff:127.0.0.2"), &web, "GET", "/").reason,
        Reason::Grant(0)
    );
    let other = "other".parse().unwrap();
    assert_eq!(
        e.decide(ip("127.0.0.2"), &other, "GET", "/").reason,
        Reason::DefaultDeny
    );
    let open = Evaluator::new(&policy(), DefaultRule::Open, 7);
    assert_eq!(
        open.decide(ip("127.0.0.3"), &other, "GET", "/").reason,
        Reason::DefaultOpen
    );
    // A service with grants is reachable only through them, even when the default is open.
    assert_eq!(
        open.decide(ip("127.0.0.3"), &web, "GET", "/").reason,
        Reason::NoGrant
    );
}

#[test]
fn dot_segments_and_escapes_cannot_leave_a_granted_prefix() {
    let e = Evaluator::new(&policy(), DefaultRule::Deny, 1);
    let llm = "llm".parse().unwrap();
    let ops = ip("10.9.0.1");
    for sneaky in [
        "/api/generate/../delete",
        "/api/generate/%2e%2e/delete",
        "/api/generate/..%2Fdelete",
        "/api/generate%2F..%2Fdelete",
    ] {
        assert_eq!(
            e.decide(ops, &llm, "POST", sneaky).reason,
            Reason::NoGrant,
            "{sneaky}"
        );
    }
    assert!(
        e.decide(ops, &llm, "POST", "/api/generate?stream=true")
            .allowed
    );
    assert!(e.decide(ops, &llm, "POST", "//api/./generate").allowed);
}

#[test]
fn certificates() {
    let e = Evaluator::new(&policy(), DefaultRule::Deny, 1);
    let vault = "vault".parse().unwrap();
    let bob_ip: IpAddr = "127.0.0.3".parse().unwrap();
    assert_eq!(
        e.decide(Client::from_ip(bob_ip), &vault, "GET", "/").reason,
        Reason::CertRequired
    );
    let with = |c| Client {
        ip: "192.0.2.1".parse().unwrap(),
        cert: Some(c),
    };
    assert_eq!(
        e.decide(with("bob"), &vault, "GET", "/").reason,
        Reason::Grant(3)
    );
    assert_eq!(
        e.decide(with("alice"), &vault, "GET", "/").reason,
        Reason::NoGrant
    );
    assert!(e.wants_cert(&vault) && e.requires_cert(&vault));
    assert!(!e.wants_cert(&"web".parse().unwrap()));
    // DNS sees no certificate: the cert grant's peer sees the name from its addresses.
    assert!(e.visible(bob_ip, &vault));
    assert!(!e.visible("127.0.0.2".parse().unwrap(), &vault));
}

#[test]
fn visibility() {
    let e = Evaluator::new(&policy(), DefaultRule::Deny, 1);
    let web = "web".parse().unwrap();
    assert!(e.visible("127.0.0.2".parse().unwrap(), &web));
    assert!(!e.visible("127.0.0.3".parse().unwrap(), &web));
    assert!(!e.visible("127.0.0.3".parse().unwrap(), &"other".parse().unwrap()));
    let open = Evaluator::new(&policy(), DefaultRule::Open, 1);
    assert!(open.visible("127.0.0.3".parse().unwrap(), &"other".parse().unwrap()));
}

#[test]
fn explanations_name_the_grant_or_the_default() {
    let e = Evaluator::new(&policy(), DefaultRule::Deny, 1);
    let web = "web".parse().unwrap();
    let d = e.decide(ip("127.0.0.2"), &web, "GET", "/");
    assert_eq!(e.explain(d, &web), "grant peer:alice → web");
    let other = "other".parse().unwrap();
    let d = e.decide(ip("127.0.0.2"), &other, "GET", "/");
    assert_eq!(
        e.explain(d, &other),
        "no grant names other; [access] default = \"deny\""
    );
}

#[test]
fn validation_refuses_the_whole_policy() {
    let mut p = policy();
    p.grants.push(Grant::new(
        "web".parse().unwrap(),
        "peer:mallory".parse().unwrap(),
    ));
    assert!(
        p.validate()
            .unwrap_err()
            .to_string()
            .contains("peer mallory, which does not exist")
    );
    let mut p = policy();
    p.grants.push(Grant::new(
        "web".parse().unwrap(),
        "peer:alice".parse().unwrap(),
    ));
    assert_eq!(
        p.validate().unwrap_err().to_string(),
        "grant peer:alice → web already exists"
    );
    let mut p = policy();
    p.grants
        .push(Grant::new("web".parse().unwrap(), "peer:bob".parse().unwrap()).path("/a/../b"));
    assert!(matches!(p.validate(), Err(PolicyError::BadPath { .. })));
    let mut p = policy();
    p.peers.push(peer("alice", &[], &[]));
    assert_eq!(
        p.validate(),
        Err(PolicyError::DuplicatePeer(
            Label::new("peer name", "alice").unwrap()
        ))
    );
    assert_eq!(
        "user:x".parse::<Subject>().unwrap_err().to_string(),
        "\"user:x\" is not peer:NAME, tag:TAG, cidr:NETWORK or cert:NAME"
    );
    assert!(
        "cidr:10.0.0.0/33"
            .parse::<Subject>()
            .unwrap_err()
            .to_string()
            .contains("longer than 32")
    );
}

#[test]
fn policy_round_trips_through_json() {
    let p = StoredPolicy::new(3, policy());
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"to\":\"tag:ops\""), "{json}");
    let back: StoredPolicy = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn addresses_of_every_prefix_length_and_family_name_their_peers() {
    let mut p = policy();
    p.peers
        .push(peer("dave", &["fd00:8::/64", "10.9.0.7"], &[]));
    p.peers.push(peer("erin", &["10.0.0.0/8"], &["ops"]));
    let web: ServiceName = "web".parse().unwrap();
    p.grants
        .push(Grant::new(web.clone(), "peer:dave".parse().unwrap()));
    p.validate().unwrap();
    let e = Evaluator::new(&p, DefaultRule::Deny, 1);
    // dave's /64, his host address inside carol's /24, and an address of erin's /8 only.
    assert_eq!(
        e.decide(ip("fd00:8::1234"), &web, "GET", "/").reason,
        Reason::Grant(4)
    );
    assert!(!e.decide(ip("fd00:9::1"), &web, "GET", "/").allowed);
    assert_eq!(
        e.decide(ip("10.9.0.7"), &web, "GET", "/").reason,
        Reason::Grant(4)
    );
    assert!(!e.decide(ip("10.9.0.8"), &web, "GET", "/").allowed);
    // 10.9.0.8 is carol's (/24) and erin's (/8): both ops, so the tag grant holds.
    let llm: ServiceName = "llm".parse().unwrap();
    assert_eq!(
        e.decide(ip("10.9.0.8"), &llm, "POST", "/api/generate")
            .reason,
        Reason::Grant(2)
    );
    assert_eq!(
        e.decide(ip("10.200.1.1"), &llm, "POST", "/api/generate")
            .reason,
        Reason::Grant(2)
    );
    assert!(
        !e.decide(ip("11.0.0.1"), &llm, "POST", "/api/generate")
            .allowed
    );
}
