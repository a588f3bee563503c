//! `dig` and `kdig` against a running server, over UDP and TCP.

use std::process::Command;
use std::time::Duration;

use conduit_dns::ZoneConfig;
use conduit_registry::{Registry, ServiceName};

use crate::common::{GATEWAY_V4, Server, config, dig, direct, have, parse_dig, proxied};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_aaaa_nxdomain_nodata_over_udp_and_tcp() {
    if !have("dig") {
        return;
    }
    let server = Server::start(config(), vec![]).await;
    server.register(proxied("grafana", "10.0.1.50:3000")).await;
    for transport in ["+notcp", "+tcp"] {
        let a = dig(server.addr, &[transport, "grafana.internal", "A"]);
        assert_eq!(a.status, "NOERROR", "{}", a.raw);
        assert!(a.has_flag("aa") && a.has_flag("qr"), "{}", a.raw);
        assert!(!a.has_flag("ra"), "no recursion offered: {}", a.raw);
        assert_eq!(a.answer, vec!["grafana.internal. 30 IN A 10.0.0.1"]);

        let aaaa = dig(server.addr, &[transport, "grafana.internal", "AAAA"]);
        assert_eq!(aaaa.answer, vec!["grafana.internal. 30 IN AAAA fd00::1"]);

        let nx = dig(server.addr, &[transport, "nosuch.internal", "A"]);
        assert_eq!(nx.status, "NXDOMAIN");
        assert!(nx.has_flag("aa"));
        assert!(nx.answer.is_empty());
        assert_eq!(nx.authority.len(), 1);
        assert!(
            nx.authority[0].starts_with("internal. 30 IN SOA ns.internal. hostmaster.internal. "),
            "{}",
            nx.raw
        );
        assert!(
            nx.authority[0].ends_with(" 3600 600 86400 30"),
            "{}",
            nx.raw
        );

        let nodata = dig(server.addr, &[transport, "grafana.internal", "MX"]);
        assert_eq!(nodata.status, "NOERROR");
        assert!(nodata.has_flag("aa"));
        assert!(nodata.answer.is_empty(), "{}", nodata.raw);
        assert_eq!(nodata.authority.len(), 1, "{}", nodata.raw);
        assert!(nodata.authority[0].contains(" IN SOA "));

        // Below an existing name: nothing there (no wildcards).
        let below = dig(server.addr, &[transport, "a.grafana.internal", "A"]);
        assert_eq!(below.status, "NXDOMAIN");
    }
    if have("kdig") {
        let out = Command::new("kdig")
            .arg(format!("@{}", server.addr.ip()))
            .args([
                "-p",
                &server.addr.port().to_string(),
                "+tcp",
                "grafana.internal",
                "A",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("status: NOERROR"), "{text}");
        assert!(text.contains("Flags: qr aa"), "{text}");
        assert!(
            text.contains("grafana.internal.  \t30\tIN\tA\t10.0.0.1") || text.contains("10.0.0.1"),
            "{text}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apex_srv_ptr_and_empty_non_terminals() {
    if !have("dig") {
        return;
    }
    let server = Server::start(config(), vec![]).await;
    server.register(proxied("grafana", "10.0.1.50:3000")).await;
    server
        .register(direct("postgres", &["10.0.2.7:5432"]))
        .await;

    let soa = dig(server.addr, &["internal", "SOA"]);
    assert_eq!(soa.answer.len(), 1);
    assert!(soa.has_flag("aa"));
    let ns = dig(server.addr, &["internal", "NS"]);
    assert_eq!(ns.answer, vec!["internal. 30 IN NS ns.internal."]);
    assert!(
        ns.additional
            .contains(&"ns.internal. 30 IN A 10.0.0.1".to_owned()),
        "{}",
        ns.raw
    );
    // The apex has no address: NODATA.
    let apex_a = dig(server.addr, &["internal", "A"]);
    assert_eq!(
        (apex_a.status.as_str(), apex_a.answer.len()),
        ("NOERROR", 0)
    );

    let srv = dig(server.addr, &["_https._tcp.grafana.internal", "SRV"]);
    assert_eq!(
        srv.answer,
        vec!["_https._tcp.grafana.internal. 30 IN SRV 0 0 8443 grafana.internal."]
    );
    let direct_srv = dig(server.addr, &["_http._tcp.postgres.internal", "SRV"]);
    assert_eq!(
        direct_srv.answer,
        vec!["_http._tcp.postgres.internal. 30 IN SRV 0 0 5432 postgres.internal."]
    );
    // `_tcp.grafana.internal` exists only as the parent of the SRV name: NODATA, not NXDOMAIN.
    let ent = dig(server.addr, &["_tcp.grafana.internal", "A"]);
    assert_eq!(ent.status, "NOERROR", "{}", ent.raw);
    assert!(ent.answer.is_empty());

    // A direct service answers its upstream's own address, and has a PTR.
    let pg = dig(server.addr, &["postgres.internal"]);
    assert_eq!(pg.answer, vec!["postgres.internal. 30 IN A 10.0.2.7"]);
    let ptr = dig(server.addr, &["-x", "10.0.2.7"]);
    assert_eq!(
        ptr.answer,
        vec!["7.2.0.10.in-addr.arpa. 30 IN PTR postgres.internal."]
    );
    assert!(ptr.has_flag("aa"));
    let gateway_ptr = dig(server.addr, &["-x", "10.0.0.1"]);
    assert_eq!(
        gateway_ptr.answer,
        vec!["1.0.0.10.in-addr.arpa. 30 IN PTR ns.internal."]
    );
    let no_ptr = dig(server.addr, &["-x", "10.9.9.9"]);
    assert_eq!(no_ptr.status, "NXDOMAIN");
    assert!(
        no_ptr.authority[0].starts_with("10.in-addr.arpa. 30 IN SOA "),
        "{}",
        no_ptr.raw
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_names_outside_the_zones_and_echoes_mixed_case() {
    if !have("dig") {
        return;
    }
    let server = Server::start(config(), vec![]).await;
    server.register(proxied("grafana", "10.0.1.50:3000")).await;
    let refused = dig(server.addr, &["example.com", "A"]);
    assert_eq!(refused.status, "REFUSED");
    assert!(!refused.has_flag("aa"));
    let other = dig(server.addr, &["internal.example", "A"]);
    assert_eq!(
        other.status, "REFUSED",
        "a suffix match is not a zone match"
    );

    let mixed = dig(server.addr, &["GrAfAnA.InTeRnAl", "A"]);
    assert_eq!(mixed.answer, vec!["GrAfAnA.InTeRnAl. 30 IN A 10.0.0.1"]);
    assert!(
        mixed.raw.contains(";GrAfAnA.InTeRnAl.\t\tIN\tA"),
        "{}",
        mixed.raw
    );
    let mixed_nx = dig(server.addr, &["NoSuch.INTERNAL", "A"]);
    assert_eq!(mixed_nx.status, "NXDOMAIN");
    assert!(
        mixed_nx.raw.contains(";NoSuch.INTERNAL."),
        "{}",
        mixed_nx.raw
    );

    // Another class: refused. A zone transfer: refused.
    assert_eq!(
        dig(server.addr, &["-c", "CH", "grafana.internal", "TXT"]).status,
        "REFUSED"
    );
    let axfr = Command::new("dig")
        .arg(format!("@{}", server.addr.ip()))
        .args([
            "-p",
            &server.addr.port().to_string(),
            "+time=2",
            "internal",
            "AXFR",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&axfr.stdout);
    assert!(
        text.contains("Transfer failed") || text.contains("REFUSED"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_payload_do_bit_and_badvers() {
    if !have("dig") {
        return;
    }
    let server = Server::start(config(), vec![]).await;
    server.register(proxied("grafana", "10.0.1.50:3000")).await;
    let plain = dig(server.addr, &["+noedns", "grafana.internal"]);
    assert_eq!(plain.edns, None, "no OPT without one in the query");
    let edns = dig(server.addr, &["+bufsize=4096", "grafana.internal"]);
    assert_eq!(edns.edns.as_deref(), Some("version: 0, flags:; udp: 1232"));
    let dnssec = dig(server.addr, &["+dnssec", "grafana.internal"]);
    assert_eq!(
        dnssec.edns.as_deref(),
        Some("version: 0, flags: do; udp: 1232")
    );
    let dnssec_nx = dig(server.addr, &["+dnssec", "nosuch.internal"]);
    assert_eq!(
        dnssec_nx.edns.as_deref(),
        Some("version: 0, flags: do; udp: 1232")
    );
    let badvers = dig(
        server.addr,
        &["+edns=1", "+noednsnegotiation", "grafana.internal"],
    );
    assert_eq!(badvers.status, "BADVERS", "{}", badvers.raw);
    assert!(badvers.answer.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncates_large_udp_answers_and_tcp_carries_them() {
    if !have("dig") {
        return;
    }
    let server = Server::start(config(), vec![]).await;
    let upstreams: Vec<String> = (1..=60).map(|i| format!("10.1.0.{i}:80")).collect();
    let refs: Vec<&str> = upstreams.iter().map(String::as_str).collect();
    server.register(direct("big", &refs)).await;
    // 60 A records do not fit in 512 bytes.
    let truncated = dig(server.addr, &["+noedns", "+ignore", "big.internal"]);
    assert!(truncated.has_flag("tc"), "{}", truncated.raw);
    assert!(truncated.answer.is_empty());
    // dig retries over TCP on TC by default.
    let retried = dig(server.addr, &["+noedns", "big.internal"]);
    assert!(!retried.has_flag("tc"));
    assert_eq!(retried.answer.len(), 60, "{}", retried.raw);
    // With EDNS and 1,232 bytes they fit.
    let edns = dig(server.addr, &["+bufsize=1232", "+ignore", "big.internal"]);
    assert!(!edns.has_flag("tc"), "{}", edns.raw);
    assert_eq!(edns.answer.len(), 60);
    let tcp = dig(server.addr, &["+tcp", "big.internal"]);
    assert_eq!(tcp.answer.len(), 60);
    assert!(server.handle.stats().truncated >= 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_changes_are_answered_without_restart() {
    if !have("dig") {
        return;
    }
    let server = Server::start(config(), vec![]).await;
    let serial = |d: &crate::common::Dig| -> u32 {
        d.answer[0]
            .split_whitespace()
            .nth(6)
            .unwrap()
            .parse()
            .unwrap()
    };
    let first = serial(&dig(server.addr, &["internal", "SOA"]));
    assert_eq!(dig(server.addr, &["ollama.internal"]).status, "NXDOMAIN");

    // Register through the registry and poll with dig: answered within 100 ms.
    server
        .registry
        .register(direct("ollama", &["10.0.3.9:11434"]))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    loop {
        let d = dig(server.addr, &["ollama.internal"]);
        if d.status == "NOERROR" {
            assert_eq!(d.answer, vec!["ollama.internal. 30 IN A 10.0.3.9"]);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "never answered: {}",
            d.raw
        );
    }
    eprintln!(
        "register answered after {:?} (dig included)",
        started.elapsed()
    );
    let second = serial(&dig(server.addr, &["internal", "SOA"]));
    assert!(second > first, "serial {second} after {first}");

    let before = server.handle.stats().rebuilds;
    server
        .registry
        .deregister(&ServiceName::new("ollama").unwrap())
        .await
        .unwrap();
    server.wait_rebuild(before).await;
    assert_eq!(dig(server.addr, &["ollama.internal"]).status, "NXDOMAIN");
    assert!(serial(&dig(server.addr, &["internal", "SOA"])) > second);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_outside_names_with_failover_and_never_internal_ones() {
    if !have("dig") {
        return;
    }
    // The "upstream resolver": another of our servers, authoritative for `example`.
    let upstream = Server::start(
        ZoneConfig::new(vec!["example".parse().unwrap()])
            .with_advertise(vec!["192.0.2.1".parse().unwrap()]),
        vec![],
    )
    .await;
    upstream
        .register(
            proxied("www", "10.0.0.5:80")
                .in_zone(&"example".parse().unwrap())
                .unwrap(),
        )
        .await;
    // A dead resolver first: the forwarder fails over to the live one.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let server = Server::start(config(), vec![dead_addr, upstream.addr]).await;
    server.register(proxied("grafana", "10.0.1.50:3000")).await;

    let forwarded = dig(server.addr, &["www.example", "A"]);
    assert_eq!(forwarded.status, "NOERROR", "{}", forwarded.raw);
    assert_eq!(forwarded.answer, vec!["www.example. 30 IN A 192.0.2.1"]);
    assert!(
        forwarded.has_flag("aa"),
        "the upstream's flags pass through"
    );
    let forwarded_tcp = dig(server.addr, &["+tcp", "nosuch.example", "A"]);
    assert_eq!(forwarded_tcp.status, "NXDOMAIN");

    let seen = upstream.handle.stats();
    assert_eq!(dig(server.addr, &["grafana.internal"]).answer.len(), 1);
    assert_eq!(dig(server.addr, &["nosuch.internal"]).status, "NXDOMAIN");
    let after = upstream.handle.stats();
    assert_eq!(
        after.udp_queries + after.tcp_queries,
        seen.udp_queries + seen.tcp_queries,
        "internal names never leave the server"
    );
    assert!(server.handle.stats().forwarded >= 2);

    // Every resolver dead: SERVFAIL.
    upstream.stop().await;
    let failed = dig(server.addr, &["www.example", "A"]);
    assert_eq!(failed.status, "SERVFAIL", "{}", failed.raw);
    server.stop().await;
    drop(dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_nothing_and_the_server_keeps_serving() {
    if !have("dig") {
        return;
    }
    let server = Server::start(config(), vec![]).await;
    server.register(proxied("grafana", "10.0.1.50:3000")).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server.addr).await.unwrap();
    let cases: Vec<(Vec<u8>, Option<u8>)> = vec![
        (vec![1, 2, 3], None), // shorter than a header
        (vec![0xab, 0xcd, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0], None), // a response: dropped
        (vec![0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], Some(1)), // no question
        (
            vec![0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'g'],
            Some(1),
        ), // cut label
        (
            vec![
                0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
            ],
            Some(1),
        ), // pointer loop
        (
            vec![0xab, 0xcd, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1],
            Some(4),
        ), // UPDATE: NOTIMP
    ];
    let mut buf = [0u8; 1500];
    for (packet, expected) in cases {
        socket.send(&packet).await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await;
        match (expected, got) {
            (None, Err(_)) => {}
            (Some(rcode), Ok(Ok(n))) => {
                assert!(n >= 12);
                assert_eq!(&buf[..2], &[0xab, 0xcd]);
                assert_eq!(buf[3] & 0x0f, rcode, "packet {packet:?}");
            }
            (e, g) => panic!("packet {packet:?}: expected {e:?}, got {g:?}"),
        }
    }
    // Two OPT records: FORMERR (RFC 6891 §6.1.1).
    let mut two_opts = vec![0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2];
    two_opts.extend_from_slice(b"\x07grafana\x08internal\x00\x00\x01\x00\x01");
    for _ in 0..2 {
        two_opts.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    socket.send(&two_opts).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf[3] & 0x0f, 1, "{:?}", &buf[..n]);
    // Still serving.
    assert_eq!(dig(server.addr, &["grafana.internal"]).answer.len(), 1);
    assert!(server.handle.stats().formerr >= 4);
    server.stop().await;
}

#[test]
fn dig_output_parser_reads_sections() {
    let d = parse_dig(
        ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n;; flags: qr aa rd; QUERY: 1\n\n;; AUTHORITY SECTION:\ninternal.\t\t30\tIN\tSOA\tns.internal. h. 1 2 3 4 5\n\n",
    );
    assert_eq!(d.status, "NXDOMAIN");
    assert_eq!(d.flags, vec!["qr", "aa", "rd"]);
    assert_eq!(
        d.authority,
        vec!["internal. 30 IN SOA ns.internal. h. 1 2 3 4 5"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_name_is_answered_like_a_proxied_service() {
    if !have("dig") {
        return;
    }
    let server = Server::start(
        config().with_gateway_name("conduit.internal".parse().unwrap()),
        vec![],
    )
    .await;
    let a = dig(server.addr, &["conduit.internal", "A"]);
    assert_eq!(
        a.answer,
        vec![format!("conduit.internal. 30 IN A {GATEWAY_V4}")]
    );
    let srv = dig(server.addr, &["_https._tcp.conduit.internal", "SRV"]);
    assert_eq!(
        srv.answer,
        vec!["_https._tcp.conduit.internal. 30 IN SRV 0 0 8443 conduit.internal."]
    );
    // A registry change elsewhere in the zone leaves it in place.
    server.register(proxied("grafana", "10.0.1.50:3000")).await;
    assert_eq!(dig(server.addr, &["grafana.internal"]).answer.len(), 1);
    assert_eq!(dig(server.addr, &["conduit.internal", "A"]).answer.len(), 1);
    // A name outside the zones is a configuration error.
    let outside = config().with_gateway_name("conduit.example".parse().unwrap());
    assert_eq!(
        outside.validate().unwrap_err().to_string(),
        "the gateway's own name conduit.example is not inside any configured zone"
    );
}
