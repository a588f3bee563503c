//! `ca_only`: the CA alone, embedded. Creates (or loads) a CA in `--dir`, issues a leaf for
//! `--name` (and `--ip`, e.g. a tunnel address), and serves `hello from <name>` over TLS 1.3
//! with a plain rustls server on `--listen`, taking its certificate from the `CertResolver`.
//!
//! ```text
//! ca_only --dir DIR --name grafana.internal [--ip 10.8.0.2] [--listen 127.0.0.1:8443]
//! ```
//! Prints `listening on ADDR` and the root's path; trust `DIR/root.pem` and connect. Stops on
//! Ctrl-C or SIGTERM. Example code: errors end the program with a message.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program"
)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use conduit_ca::{CaConfig, CertResolver, IssueRequest, LocalCa, certified_key};

/// The CA alone: a leaf for the names given, served over TLS 1.3.
#[derive(Debug, clap::Parser)]
#[command(name = "ca_only", version)]
struct Args {
    /// Where the CA is created or loaded.
    #[arg(long)]
    dir: PathBuf,
    /// A DNS name for the leaf (repeat for more).
    #[arg(long = "name")]
    names: Vec<String>,
    /// An IP address for the leaf (repeat for more).
    #[arg(long = "ip")]
    ips: Vec<IpAddr>,
    /// Where to serve.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let Args {
        dir,
        names,
        ips,
        listen,
    } = clap::Parser::parse();
    anyhow::ensure!(
        !names.is_empty() || !ips.is_empty(),
        "give at least one --name or --ip"
    );
    let now = time::OffsetDateTime::now_utc();
    let ca = LocalCa::load_or_create(&dir, CaConfig::default(), now)?;
    let req = IssueRequest {
        dns_names: names.clone(),
        ip_addresses: ips.clone(),
        client_auth: false,
    };
    let leaf = ca.issue_at(&req, None, None, false, now)?;
    let resolver = Arc::new(CertResolver::new());
    let mut served = names.clone();
    served.extend(ips.iter().map(ToString::to_string));
    resolver.install(&served, certified_key(&leaf)?);

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind(listen)?;
    println!("listening on {}", listener.local_addr()?);
    println!("root certificate: {}", dir.join("root.pem").display());
    let body = format!(
        "<html><body><h1>hello from {}</h1></body></html>",
        names.first().cloned().unwrap_or_default()
    );
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (config, body) = (Arc::clone(&config), body.clone());
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(reply.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        });
    }
    Ok(())
}
