//! Differential test: the same records served by our server and by NSD (started here), the
//! same queries through `dig`, the same rcode, flags, answer and authority sections.
//!
//! Deliberate differences, not compared: the additional section (NSD adds address records
//! for the targets of more record types than we do). NSD is run with
//! `minimal-responses: yes`, the modern default of authoritative servers, which is what we do.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{Server, config, dig, dig_batch, direct, have, proxied};

struct Nsd(Child);

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    // TCP on the same port must be free as well.
    std::net::TcpListener::bind(("127.0.0.1", port)).map_or_else(|_| free_port(), |_| port)
}

fn start_nsd(dir: &std::path::Path, zones: &[(&str, String)]) -> (Nsd, SocketAddr) {
    let port = free_port();
    let mut conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  \
         zonelistfile: \"{d}/zone.list\"\n  database: \"\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  \
         xfrdir: \"{d}\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n  refuse-any: no\n  minimal-responses: yes\n\
         remote-control:\n  control-enable: no\n",
        d = dir.display()
    );
    for (zone, text) in zones {
        let file = format!("{zone}.zone");
        std::fs::write(dir.join(&file), text).unwrap();
        write!(conf, "zone:\n  name: {zone}\n  zonefile: {file}\n").unwrap();
    }
    std::fs::write(dir.join("nsd.conf"), conf).unwrap();
    let child = Command::new("nsd")
        .args(["-d", "-c"])
        .arg(dir.join("nsd.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let nsd = Nsd(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..100 {
        if dig(addr, &["internal", "SOA"]).status == "NOERROR" {
            return (nsd, addr);
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "the test body's own thread; the servers run on the runtime workers"
        )]
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("nsd.log")).unwrap_or_default();
    panic!("NSD did not start: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_answers_as_nsd() {
    if !have("dig") || !have("nsd") {
        return;
    }
    let server = Server::start(config(), vec![]).await;
    server.register(proxied("grafana", "10.0.1.50:3000")).await;
    server
        .register(proxied("vllm", "10.0.1.51:8000").with_tls(false))
        .await;
    server
        .register(direct("postgres", &["10.0.2.7:5432", "10.0.2.8:5432"]))
        .await;
    let many: Vec<String> = (1..=60).map(|i| format!("10.1.0.{i}:80")).collect();
    server
        .register(direct(
            "big",
            &many.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
        .await;

    // Our records, as zone files for NSD.
    let records = server.handle.authority().records();
    let zone_text = |suffix: &str| -> String {
        let mut lines: Vec<&String> = records
            .iter()
            .filter(|r| {
                r.split_whitespace()
                    .next()
                    .is_some_and(|o| o.ends_with(suffix))
            })
            .collect();
        lines.sort_by_key(|r| !r.contains(" IN SOA "));
        lines.iter().map(|l| format!("{l}\n")).collect()
    };
    let (internal, reverse) = (zone_text("internal."), zone_text("in-addr.arpa."));
    assert!(internal.starts_with("internal. 30 IN SOA"), "{internal}");
    let dir = tempfile::tempdir().unwrap();
    let (_nsd, nsd) = start_nsd(
        dir.path(),
        &[("internal", internal), ("10.in-addr.arpa", reverse)],
    );

    let names = [
        "grafana.internal",
        "GrAfAnA.internal",
        "vllm.internal",
        "postgres.internal",
        "internal",
        "ns.internal",
        "_https._tcp.grafana.internal",
        "_http._tcp.vllm.internal",
        "_tcp.grafana.internal",
        "_http._tcp.postgres.internal",
        "nosuch.internal",
        "a.b.grafana.internal",
        "big.internal",
        "7.2.0.10.in-addr.arpa",
        "1.0.0.10.in-addr.arpa",
        "9.9.9.10.in-addr.arpa",
        "10.in-addr.arpa",
        "example.com",
        "internal.example",
        "arpa",
    ];
    let types = [
        "A", "AAAA", "MX", "TXT", "SRV", "SOA", "NS", "PTR", "CNAME", "ANY",
    ];
    let variants: [&[&str]; 4] = [&[], &["+tcp"], &["+noedns", "+ignore"], &["+dnssec"]];
    let mut queries: Vec<Vec<&str>> = Vec::new();
    for name in names {
        for qtype in types {
            for variant in variants {
                let mut args: Vec<&str> = variant.to_vec();
                args.extend([name, qtype]);
                queries.push(args);
            }
        }
    }
    let ours = dig_batch(server.addr, &queries);
    let theirs = dig_batch(nsd, &queries);
    let mut compared = 0;
    let mut differences = Vec::new();
    let key = |d: &crate::common::Dig| {
        (
            d.status.clone(),
            d.flags.clone(),
            d.answer.clone(),
            d.authority.clone(),
            d.edns.clone(),
        )
    };
    for ((args, ours), theirs) in queries.iter().zip(&ours).zip(&theirs) {
        compared += 1;
        assert!(!ours.status.is_empty(), "{}", ours.raw);
        if key(ours) != key(theirs) {
            differences.push(format!(
                "{args:?}\n--- ours:\n{}\n--- nsd:\n{}",
                ours.raw, theirs.raw
            ));
        }
    }
    for extra in [
        &["+edns=1", "+noednsnegotiation", "grafana.internal"][..],
        &["-c", "CH", "grafana.internal", "TXT"],
    ] {
        let (ours, theirs) = (dig(server.addr, extra), dig(nsd, extra));
        compared += 1;
        if (ours.status.clone(), ours.answer.clone())
            != (theirs.status.clone(), theirs.answer.clone())
        {
            differences.push(format!(
                "{extra:?}\n--- ours:\n{}\n--- nsd:\n{}",
                ours.raw, theirs.raw
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {compared} differ:\n{}",
        differences.len(),
        differences.join("\n\n")
    );
    eprintln!("{compared} queries, the same answers as NSD");
    server.stop().await;
}
