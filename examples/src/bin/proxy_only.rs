//! `proxy_only`: the TLS reverse proxy alone, embedded. Routes come from the registry in
//! `--dir` (followed live: `registry --dir DIR register …` is routed at once) or from
//! `--route DOMAIN=UPSTREAM[,UPSTREAM…]` flags (for benchmarks); the certificate from
//! `--cert CHAIN.pem --key KEY.pem` (served for every name).
//!
//! ```text
//! proxy_only (--dir DIR | --route DOMAIN=UPSTREAM[,UPSTREAM…]…) --cert CHAIN.pem --key KEY.pem
//!            [--listen ADDR:PORT]… [--redirect ADDR:PORT]… [--health-path PATH] [--tls12]
//!            [--start-healthy] [--threads N] [--policy GRANTS [--policy-services N]]
//! ```
//! Defaults: `--listen 127.0.0.1:8443`, one serving thread per core this process may run on
//! (one when pinned to one core, which is how the peers are compared);
//! `RUST_LOG=conduit_proxy::access=info` prints an access log.
//! Stops on Ctrl-C or SIGTERM, draining requests in flight. Example code: errors end the
//! program with a message.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program"
)]

/// The allocator `conduit` runs with, so that the engine measures as it ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../signal.rs"]
mod signal;
use signal::shutdown;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use conduit_proxy::{ProxyConfig, ProxyServer, TlsVersions};
use conduit_registry::access::{AccessPolicy, DefaultRule, Evaluator, Grant, Label, Peer};
use conduit_registry::{
    DomainName, Endpoint, FileRegistry, HealthCheck, InMemoryRegistry, Registry, ServiceName,
    ServiceRecord, default_config_dir,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Parser)]
#[command(name = "proxy_only", about = "The TLS reverse proxy alone, embedded")]
struct Options {
    /// Follow the registry in this directory.
    #[arg(long, conflicts_with = "routes")]
    dir: Option<PathBuf>,
    /// A route, DOMAIN=UPSTREAM[,UPSTREAM…]; repeatable.
    #[arg(long = "route", value_parser = parse_route)]
    routes: Vec<(DomainName, Vec<Endpoint>)>,
    /// The certificate chain (PEM) served for every name.
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// An HTTPS listener; repeatable [default: 127.0.0.1:8443].
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// A plain-HTTP listener that redirects to HTTPS; repeatable.
    #[arg(long)]
    redirect: Vec<SocketAddr>,
    /// The health-check path of `--route` services [default: /health].
    #[arg(long)]
    health_path: Option<String>,
    /// Accept TLS 1.2 too.
    #[arg(long)]
    tls12: bool,
    /// Route to upstreams before their first health check.
    #[arg(long)]
    start_healthy: bool,
    /// Write an access log (one JSON line per request) to this file.
    #[arg(long)]
    access_log: Option<PathBuf>,
    /// Enforce an access policy: each routed service gets this many grants, the last of
    /// which (`cidr:127.0.0.0/8`) lets a local client in after every other one is tried (for
    /// measuring what a policy costs per request).
    #[arg(long, value_name = "GRANTS")]
    policy: Option<usize>,
    /// With `--policy`: this many more services, each with as many grants, in the policy.
    #[arg(long, default_value_t = 1000)]
    policy_services: usize,
    /// Threads serving connections (0: one per core this process may run on).
    #[arg(long, default_value_t = 0)]
    threads: u16,
}

/// The policy `--policy` enforces: `grants` peers; every service (the routed ones and
/// `fillers` more) granted to each peer, the routed ones to `cidr:127.0.0.0/8` last.
fn bench_policy(
    routes: &[(DomainName, Vec<Endpoint>)],
    grants: usize,
    fillers: usize,
) -> anyhow::Result<AccessPolicy> {
    let mut p = AccessPolicy::default();
    for i in 0..grants {
        let mut peer = Peer::new(Label::new("peer name", &format!("peer-{i}"))?);
        peer.addresses
            .push(format!("10.8.{}.{}", i / 250, i % 250 + 1).parse()?);
        p.peers.push(peer);
    }
    let routed = routes
        .iter()
        .map(|(d, _)| d.labels().next().unwrap_or_default().to_owned());
    let filler = (0..fillers).map(|i| format!("filler-{i}"));
    for (n, name) in routed.chain(filler).enumerate() {
        let service: ServiceName = name.parse()?;
        for i in 0..grants.saturating_sub(usize::from(n < routes.len())) {
            p.grants.push(Grant::new(
                service.clone(),
                format!("peer:peer-{i}").parse()?,
            ));
        }
        if n < routes.len() {
            p.grants
                .push(Grant::new(service.clone(), "cidr:127.0.0.0/8".parse()?));
        }
    }
    p.validate()?;
    Ok(p)
}

fn parse_route(v: &str) -> Result<(DomainName, Vec<Endpoint>), String> {
    let (domain, ups) = v
        .split_once('=')
        .ok_or_else(|| format!("{v:?}: expected DOMAIN=UPSTREAM[,UPSTREAM…]"))?;
    let domain: DomainName = domain.parse().map_err(|e| format!("{v:?}: {e}"))?;
    let ups = ups
        .split(',')
        .map(|u| u.trim().parse::<Endpoint>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{v:?}: {e}"))?;
    Ok((domain, ups))
}

/// The one certificate served for every name.
fn load_cert(cert: &PathBuf, key: &PathBuf) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: invalid PEM", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let ck = rustls::sign::CertifiedKey::from_der(certs, key, &provider)
        .context("the key does not match the certificate")?;
    Ok(Arc::new(ck))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let o = Options::parse();
    let certs = Arc::new(rustls::sign::SingleCertAndKey::from(load_cert(
        &o.cert, &o.key,
    )?));
    // The proxy's own threads (`--threads`) serve beside this one.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut health = HealthCheck::default();
    if let Some(p) = &o.health_path {
        health.path.clone_from(p);
    }
    let registry: Arc<dyn Registry> = if o.routes.is_empty() {
        let dir = match &o.dir {
            Some(d) => d.clone(),
            None => {
                default_config_dir().context("set CONDUIT_CONFIG_DIR or HOME, or pass --dir")?
            }
        };
        Arc::new(FileRegistry::open(&dir)?)
    } else {
        let registry = InMemoryRegistry::new();
        runtime.block_on(async {
            for (domain, ups) in &o.routes {
                let label = domain.labels().next().unwrap_or_default();
                let rec = ServiceRecord::new(ServiceName::new(label)?, ups[0].clone())
                    .with_domain(domain.clone())
                    .with_endpoints(ups.clone())
                    .with_health(health.clone());
                registry.register(rec).await?;
            }
            anyhow::Ok(())
        })?;
        Arc::new(registry)
    };
    let mut config = ProxyConfig::default();
    if let Some(path) = &o.access_log {
        let log = conduit_proxy::AccessLog::open(path, conduit_proxy::AccessLogOptions::default())
            .with_context(|| format!("cannot open the access log {}", path.display()))?;
        config.access_log = Some(Arc::new(log));
    }
    if o.tls12 {
        config.tls = TlsVersions::Tls12And13;
    }
    config.health.start_unhealthy = !o.start_healthy;
    config.threads = usize::from(o.threads);
    let listen = if o.listen.is_empty() {
        vec!["127.0.0.1:8443".parse()?]
    } else {
        o.listen
    };
    runtime.block_on(async {
        let mut builder = ProxyServer::builder()
            .registry(registry)
            .certificates(certs)
            .config(config);
        for addr in listen {
            builder = builder.listen(addr);
        }
        for addr in o.redirect {
            builder = builder.listen_http_redirect(addr);
        }
        let server = builder.bind().await?;
        if let Some(grants) = o.policy {
            let p = bench_policy(&o.routes, grants, o.policy_services)?;
            let evaluator = Arc::new(Evaluator::new(&p, DefaultRule::Deny, 1));
            server
                .handle()
                .set_access(Some(conduit_proxy::AccessControl {
                    evaluator,
                    client_auth: None,
                }))?;
            println!(
                "access policy: {} grants over {} services, {} peers",
                p.grants.len(),
                o.routes.len() + o.policy_services,
                p.peers.len()
            );
        }
        for addr in server.https_addrs() {
            println!("listening on https {addr}");
        }
        for addr in server.http_addrs() {
            println!("redirecting http {addr}");
        }
        server.run(shutdown()).await?;
        anyhow::Ok(())
    })
}
