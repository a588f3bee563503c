//! `proxy_only`: the TLS reverse proxy alone, embedded. Routes come from the registry in
//! `--dir` (followed live: `registry --dir DIR register …` is routed at once) or from
//! `--route DOMAIN=UPSTREAM[,UPSTREAM…]` flags (for benchmarks); the certificate from
//! `--cert CHAIN.pem --key KEY.pem` (served for every name).
//!
//! ```text
//! proxy_only (--dir DIR | --route DOMAIN=UPSTREAM[,UPSTREAM…]…) --cert CHAIN.pem --key KEY.pem
//!            [--listen ADDR:PORT]… [--redirect ADDR:PORT]… [--health-path PATH] [--tls12]
//!            [--start-healthy] [--threads N]
//! ```
//! Defaults: `--listen 127.0.0.1:8443`, one runtime thread (the proxy pinned to one core is
//! how the peers are compared); `RUST_LOG=conduit_proxy::access=info` prints an access log.
//! Stops on Ctrl-C or SIGTERM, draining requests in flight. Example code: errors end the
//! program with a message.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program"
)]

#[path = "../signal.rs"]
mod signal;
use signal::shutdown;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use conduit_proxy::{ProxyConfig, ProxyServer, TlsVersions};
use conduit_registry::{
    DomainName, Endpoint, FileRegistry, HealthCheck, InMemoryRegistry, Registry, ServiceName,
    ServiceRecord, default_config_dir,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const USAGE: &str = "usage: proxy_only (--dir DIR | --route DOMAIN=UPSTREAM[,UPSTREAM…]…) \
--cert CHAIN.pem --key KEY.pem [--listen ADDR:PORT]… [--redirect ADDR:PORT]… \
[--health-path PATH] [--tls12] [--start-healthy] [--threads N]";

#[derive(Default)]
struct Options {
    dir: Option<PathBuf>,
    routes: Vec<(DomainName, Vec<Endpoint>)>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    listen: Vec<SocketAddr>,
    redirect: Vec<SocketAddr>,
    health_path: Option<String>,
    tls12: bool,
    start_healthy: bool,
    threads: usize,
}

fn parse_route(v: &str) -> anyhow::Result<(DomainName, Vec<Endpoint>)> {
    let (domain, ups) = v
        .split_once('=')
        .with_context(|| format!("--route {v:?}: expected DOMAIN=UPSTREAM[,UPSTREAM…]"))?;
    let domain: DomainName = domain.parse().with_context(|| format!("--route {v:?}"))?;
    let ups = ups
        .split(',')
        .map(|u| u.trim().parse::<Endpoint>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--route {v:?}"))?;
    anyhow::ensure!(!ups.is_empty(), "--route {v:?}: no upstream");
    Ok((domain, ups))
}

fn parse() -> anyhow::Result<Options> {
    let mut o = Options {
        threads: 1,
        ..Options::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if a.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--dir" => o.dir = Some(value()?.into()),
            "--route" => o.routes.push(parse_route(&value()?)?),
            "--cert" => o.cert = Some(value()?.into()),
            "--key" => o.key = Some(value()?.into()),
            "--listen" => o.listen.push(value()?.parse().context("--listen")?),
            "--redirect" => o.redirect.push(value()?.parse().context("--redirect")?),
            "--health-path" => o.health_path = Some(value()?),
            "--tls12" => o.tls12 = true,
            "--start-healthy" => o.start_healthy = true,
            "--threads" => o.threads = value()?.parse().context("--threads")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown option {other}\n{USAGE}"),
        }
    }
    anyhow::ensure!(
        o.dir.is_none() || o.routes.is_empty(),
        "give --dir or --route, not both"
    );
    anyhow::ensure!(o.threads >= 1, "--threads must be at least 1");
    Ok(o)
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
    let o = parse()?;
    let (Some(cert), Some(key)) = (&o.cert, &o.key) else {
        anyhow::bail!("--cert and --key are required\n{USAGE}");
    };
    let certs = Arc::new(rustls::sign::SingleCertAndKey::from(load_cert(cert, key)?));
    let runtime = if o.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()?
    };
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
    if o.tls12 {
        config.tls = TlsVersions::Tls12And13;
    }
    config.health.start_unhealthy = !o.start_healthy;
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
