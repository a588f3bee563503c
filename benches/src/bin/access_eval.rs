//! `access-eval [--services N] [--grants G] [--peers P] [--samples S]`: what the access
//! policy costs, one call at a time on one thread, as percentiles:
//!
//! - a decision (`Evaluator::decide`) for random clients, services, methods and paths, for a
//!   client no grant names, and for a path with escapes and dot segments (decoded first);
//! - a DNS visibility check (`Evaluator::visible`);
//! - compiling the whole policy (what each change costs, off the request path) and
//!   validating it (what each change is checked with).
//!
//! `cargo run --release -p conduit-benches --bin access-eval`
#![allow(clippy::print_stdout, reason = "a benchmark program")]

use conduit_benches::percentile;
use std::net::{IpAddr, Ipv4Addr};

use conduit_registry::ServiceName;
use conduit_registry::access::{
    AccessPolicy, Client, DefaultRule, Evaluator, Grant, Label, Peer, Subject,
};
use tokio::time::Instant;

/// The policy's size and how many samples to take.
#[derive(Debug, clap::Parser)]
#[command(name = "access-eval")]
struct Args {
    /// Services with grants.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Grants per service.
    #[arg(long, default_value_t = 100)]
    grants: usize,
    /// Peers (each with one address; one in four with a second network).
    #[arg(long, default_value_t = 2000)]
    peers: usize,
    /// Samples per measurement.
    #[arg(long, default_value_t = 200_000)]
    samples: usize,
}

/// A small deterministic generator (xorshift), so every run measures the same policy.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn peer_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 8, (i / 250) as u8, (i % 250 + 1) as u8))
}

fn policy(a: &Args, rng: &mut Rng) -> Result<AccessPolicy, Box<dyn std::error::Error>> {
    let mut p = AccessPolicy::default();
    let tags = 50;
    for i in 0..a.peers {
        let mut peer = Peer::new(Label::new("peer name", &format!("peer-{i}"))?);
        peer.addresses.push(format!("{}", peer_ip(i)).parse()?);
        if i % 4 == 0 {
            peer.addresses
                .push(format!("10.{}.{}.0/24", 9 + i % 7, i % 250).parse()?);
        }
        peer.tags
            .push(Label::new("tag", &format!("tag-{}", i % tags))?);
        p.peers.push(peer);
    }
    const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
    const PATHS: [&str; 4] = ["/v1/", "/api/generate", "/api/tags", "/metrics"];
    for s in 0..a.services {
        let service: ServiceName = format!("svc-{s}").parse()?;
        let mut seen = std::collections::HashSet::new();
        while seen.len() < a.grants {
            let to: Subject = match rng.below(10) {
                0..=3 => format!("peer:peer-{}", rng.below(a.peers)).parse()?,
                4..=6 => format!("tag:tag-{}", rng.below(tags)).parse()?,
                7..=8 => format!("cidr:10.{}.{}.0/24", 9 + rng.below(7), rng.below(250)).parse()?,
                _ => format!("cert:peer-{}", rng.below(a.peers)).parse()?,
            };
            let mut g = Grant::new(service.clone(), to);
            if rng.below(2) == 0 {
                g = g.methods([METHODS[rng.below(4)]]).path(PATHS[rng.below(4)]);
            }
            if seen.insert(g.to_string()) {
                p.grants.push(g);
            }
        }
    }
    Ok(p)
}

/// Times `f` once per sample (after a warm-up) and prints p50, p99 and max in µs.
fn measure(label: &str, n: usize, mut f: impl FnMut(usize) -> bool) {
    for i in 0..n.min(1000) {
        std::hint::black_box(f(i));
    }
    let mut allowed = 0usize;
    let mut us: Vec<f64> = (0..n)
        .map(|i| {
            let t = Instant::now();
            allowed += usize::from(std::hint::black_box(f(i)));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    let (p50, p99, p999) = (
        percentile(&mut us, 0.50),
        percentile(&mut us, 0.99),
        percentile(&mut us, 0.999),
    );
    let max = us.last().copied().unwrap_or(f64::NAN);
    println!(
        "| {label} | {n} | p50 {p50:.2} µs, p99 {p99:.2} µs, p99.9 {p999:.2} µs, max {max:.1} µs | {:.0} % allowed |",
        allowed as f64 * 100.0 / n as f64
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Args = clap::Parser::parse();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let p = policy(&a, &mut rng)?;
    println!(
        "policy: {} services × {} grants = {} grants, {} peers, default deny\n",
        a.services,
        a.grants,
        p.grants.len(),
        p.peers.len()
    );
    println!("| measurement | samples | latency | outcome |\n| --- | --- | --- | --- |");
    let t = Instant::now();
    p.validate()?;
    println!(
        "| validate the whole policy | 1 | {:.1} ms | |",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let eval = Evaluator::new(&p, DefaultRule::Deny, 1);
    println!(
        "| compile it (`Evaluator::new`) | 1 | {:.1} ms | |",
        t.elapsed().as_secs_f64() * 1e3
    );

    let services: Vec<ServiceName> = (0..a.services)
        .map(|s| format!("svc-{s}").parse())
        .collect::<Result<_, _>>()?;
    const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
    const PATHS: [&str; 5] = ["/", "/v1/models", "/api/generate", "/api/tags", "/metrics"];
    // Pre-drawn requests: the generator is not measured.
    let reqs: Vec<(usize, IpAddr, Option<String>, usize, usize)> = (0..a.samples)
        .map(|_| {
            let peer = rng.below(a.peers);
            let cert = (rng.below(10) == 0).then(|| format!("peer-{peer}"));
            (
                rng.below(a.services),
                peer_ip(peer),
                cert,
                rng.below(4),
                rng.below(5),
            )
        })
        .collect();
    measure(
        "decide: random peer, service, method, path",
        a.samples,
        |i| {
            let (s, ip, cert, m, path) = &reqs[i];
            let client = Client {
                ip: *ip,
                cert: cert.as_deref(),
            };
            eval.decide(client, &services[*s], METHODS[*m], PATHS[*path])
                .allowed
        },
    );
    let stranger = Client::from_ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    measure("decide: a client no grant names", a.samples, |i| {
        let (s, _, _, m, path) = &reqs[i];
        eval.decide(stranger, &services[*s], METHODS[*m], PATHS[*path])
            .allowed
    });
    measure(
        "decide: a path with escapes and dot segments",
        a.samples,
        |i| {
            let (s, ip, _, m, _) = &reqs[i];
            eval.decide(
                Client::from_ip(*ip),
                &services[*s],
                METHODS[*m],
                "/api/generate/%2e%2e/tags",
            )
            .allowed
        },
    );
    measure("visible (DNS, hide_names)", a.samples, |i| {
        let (s, ip, ..) = &reqs[i];
        eval.visible(*ip, &services[*s])
    });
    Ok(())
}
