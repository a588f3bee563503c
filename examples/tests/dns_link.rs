//! The DNS server on a link smaller than its answers (a network namespace whose loopback
//! has an MTU of 800 bytes): a UDP answer is never sent in fragments, whatever the path MTU
//! cache says; one that does not fit the link is answered with TC, and the client gets the
//! whole answer over TCP.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "test code driving real processes"
)]

mod common;

use std::process::Command;

use conduit::registry::{Endpoint, Routing, ServiceRecord};
use conduit_test_support::have;

/// A direct service with 60 addresses: its A answer is about 1,000 bytes.
fn big() -> ServiceRecord {
    let endpoints: Vec<Endpoint> = (1..=60)
        .map(|i| format!("10.1.0.{i}:80").parse().unwrap())
        .collect();
    ServiceRecord::new("big".parse().unwrap(), endpoints[0].clone())
        .with_endpoints(endpoints)
        .with_routing(Routing::Direct)
}

#[test]
fn answers_bigger_than_the_link_are_sent_with_tc_never_in_fragments() {
    if !(have("unshare") && have("ip") && have("dig")) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    common::write_record(tmp.path(), big());
    let script = format!(
        r#"set -u
ip link set lo mtu 800 up
{bin} --dir {dir} --listen 127.0.0.1:5300 2>{dir}/dns.log &
DNS=$!
Q="-p 5300 @127.0.0.1 +time=2 +tries=1 +bufsize=1232"
for i in $(seq 100); do dig $Q +tcp +short big.internal | grep -q . && break; sleep 0.05; done
echo "== udp"; dig $Q +ignore big.internal A
echo "== retried"; dig $Q big.internal A
kill $DNS; wait $DNS
"#,
        bin = env!("CARGO_BIN_EXE_dns_only"),
        dir = tmp.path().display(),
    );
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(tmp.path().join("dns.log")).unwrap_or_default();
    let (udp, retried) = text
        .split_once("== retried")
        .unwrap_or_else(|| panic!("{text}\n{log}"));
    // Over UDP: an answer (not a timeout), cut to its question, with TC.
    assert!(udp.contains("status: NOERROR"), "{udp}\n{log}");
    assert!(
        udp.contains(" tc;") || udp.contains(" tc "),
        "TC expected: {udp}"
    );
    assert!(udp.contains("ANSWER: 0,"), "{udp}");
    // dig asks again over TCP and gets all 60 addresses.
    assert!(retried.contains("ANSWER: 60,"), "{retried}\n{log}");
}
