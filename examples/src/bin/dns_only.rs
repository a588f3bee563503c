//! `dns_only`: the DNS server alone, embedded. Serves the registry in `--dir` (followed
//! live: `conduit --dir DIR register …` is answered at once), or the names of a hosts file
//! (`--hosts FILE`, lines `IP NAME`, served as direct services) for benchmarks.
//!
//! ```text
//! dns_only [--dir DIR | --hosts FILE] [--listen ADDR:PORT]… [--zone Z]… [--advertise IP]…
//!          [--reverse-zone Z]… [--forward ADDR:PORT]… [--ttl SECONDS] [--https-port PORT]
//! ```
//! Defaults: `--listen 127.0.0.1:5353`, zone `internal`, the registry in the default config
//! directory. Prints `listening on udp ADDR, tcp ADDR` per address; runs on one thread;
//! stops on Ctrl-C or SIGTERM. Example code: errors end the program with a message.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program"
)]

#[path = "../signal.rs"]
mod signal;
use signal::shutdown;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use conduit_dns::{DnsServer, ZoneConfig};
use conduit_registry::{
    DomainName, Endpoint, FileRegistry, Host, InMemoryRegistry, Registry, Routing, ServiceName,
    ServiceRecord, default_config_dir,
};

/// The DNS server alone, serving a registry directory or a hosts file.
#[derive(Debug, clap::Parser)]
#[command(name = "dns_only", version)]
struct Options {
    /// The registry to serve (followed live).
    #[arg(long, conflicts_with = "hosts")]
    dir: Option<PathBuf>,
    /// A hosts file (`IP NAME` lines) served as direct services.
    #[arg(long)]
    hosts: Option<PathBuf>,
    /// Where to listen, UDP and TCP (repeat for more; default 127.0.0.1:5353).
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// A zone to serve (repeat for more; default `internal`).
    #[arg(long = "zone")]
    zones: Vec<DomainName>,
    /// A reverse zone to serve.
    #[arg(long = "reverse-zone")]
    reverse: Vec<DomainName>,
    /// The address proxied names resolve to.
    #[arg(long)]
    advertise: Vec<IpAddr>,
    /// Where names outside the zones are forwarded.
    #[arg(long)]
    forward: Vec<SocketAddr>,
    /// TTL of answers, seconds.
    #[arg(long)]
    ttl: Option<u32>,
    /// The HTTPS port SRV records give.
    #[arg(long)]
    https_port: Option<u16>,
}

/// Direct services from `IP NAME` lines (`#` comments and blank lines skipped).
fn hosts_services(text: &str) -> anyhow::Result<Vec<ServiceRecord>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(ip), Some(fqdn)) = (fields.next(), fields.next()) else {
            anyhow::bail!("hosts line {}: expected `IP NAME`", n + 1);
        };
        let ip: IpAddr = ip
            .parse()
            .with_context(|| format!("hosts line {}", n + 1))?;
        let domain: DomainName = fqdn
            .parse()
            .with_context(|| format!("hosts line {}", n + 1))?;
        let label = domain.labels().next().unwrap_or_default();
        let name = ServiceName::new(label).with_context(|| format!("hosts line {}", n + 1))?;
        let endpoint = Endpoint::new(conduit_registry::Scheme::Http, Host::Ip(ip), 80)?;
        out.push(
            ServiceRecord::new(name, endpoint)
                .with_domain(domain)
                .with_routing(Routing::Direct),
        );
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let o = <Options as clap::Parser>::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let registry: Arc<dyn Registry> = match &o.hosts {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let registry = InMemoryRegistry::new();
            let services = hosts_services(&text)?;
            runtime.block_on(async {
                for s in services {
                    registry.register(s).await?;
                }
                anyhow::Ok(())
            })?;
            Arc::new(registry)
        }
        None => {
            let dir = match &o.dir {
                Some(d) => d.clone(),
                None => {
                    default_config_dir().context("set CONDUIT_CONFIG_DIR or HOME, or pass --dir")?
                }
            };
            Arc::new(FileRegistry::open(&dir)?)
        }
    };
    let zones = if o.zones.is_empty() {
        vec![DomainName::internal()]
    } else {
        o.zones
    };
    let mut config = ZoneConfig::new(zones)
        .with_advertise(o.advertise)
        .with_reverse_zones(o.reverse);
    if let Some(ttl) = o.ttl {
        config = config.with_ttl(ttl).with_negative_ttl(ttl);
    }
    if let Some(port) = o.https_port {
        config = config.with_https_port(port);
    }
    let listen = if o.listen.is_empty() {
        vec!["127.0.0.1:5353".parse()?]
    } else {
        o.listen
    };
    runtime.block_on(async {
        let mut builder = DnsServer::builder()
            .registry(registry)
            .zones(config)
            .forwarders(o.forward);
        for addr in listen {
            builder = builder.listen(addr);
        }
        let server = builder.bind().await?;
        for (udp, tcp) in server.udp_addrs().iter().zip(server.tcp_addrs()) {
            println!("listening on udp {udp}, tcp {tcp}");
        }
        server.run(shutdown()).await?;
        anyhow::Ok(())
    })
}
