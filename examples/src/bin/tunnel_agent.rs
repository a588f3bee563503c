//! `tunnel_agent`: what a WireGuard agent embeds. The gateway's DNS and HTTPS proxy bound to
//! the tunnel address (DNS answers that address for proxied names), and the agent's own events
//! (`tunnel_up`, `tunnel_down`) written to the same audit log and sealed chain as the
//! gateway's.
//!
//! ```text
//! tunnel_agent --dir DIR --tunnel-ip 10.8.0.1 [--dns-port 53] [--https-port 443] [--interface wg0]
//! ```
//! Registrations come from `conduit register --dir DIR …`. Stops on Ctrl-C or SIGTERM.
//! Example code: errors end the program with a message.
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

use anyhow::Context;
use clap::Parser;
use conduit::gateway::{Gateway, GatewayConfig};

#[derive(Parser)]
#[command(
    name = "tunnel_agent",
    about = "DNS and HTTPS for the services behind a WireGuard tunnel"
)]
struct Cli {
    /// The state directory (created by `conduit setup`).
    #[arg(long)]
    dir: PathBuf,
    /// The gateway's address inside the tunnel.
    #[arg(long)]
    tunnel_ip: IpAddr,
    /// DNS port on the tunnel address.
    #[arg(long, default_value_t = 53)]
    dns_port: u16,
    /// HTTPS port on the tunnel address.
    #[arg(long, default_value_t = 443)]
    https_port: u16,
    /// Plain-HTTP port on the tunnel address (`--no-tls` services, redirects to HTTPS);
    /// none when not given.
    #[arg(long)]
    http_port: Option<u16>,
    /// The WireGuard interface (recorded in the audit trail).
    #[arg(long, default_value = "wg0")]
    interface: String,
}

/// One of the agent's own records, in the gateway's log and chain.
async fn record(
    log: &dyn conduit::audit::AuditSink,
    action: conduit::audited::Action,
    message: String,
    interface: &str,
) {
    let details = serde_json::json!({ "interface": interface });
    conduit::audited::record(log, action, true, message, "tunnel-agent", details).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let stop = shutdown();
    let mut cfg = GatewayConfig::new(&cli.dir);
    let s = &mut cfg.settings;
    s.dns.listen = vec![SocketAddr::new(cli.tunnel_ip, cli.dns_port)];
    s.proxy.listen = vec![SocketAddr::new(cli.tunnel_ip, cli.https_port)];
    s.proxy.http_listen = cli
        .http_port
        .map(|p| SocketAddr::new(cli.tunnel_ip, p))
        .into_iter()
        .collect();
    s.dns.advertise = vec![cli.tunnel_ip];
    cfg.audit_user = "tunnel-agent".to_owned();
    let gateway = Gateway::start(cfg)
        .await
        .with_context(|| format!("cannot start on {}", cli.tunnel_ip))?;
    let log = gateway.audit_log();
    record(
        log.as_ref(),
        conduit::audited::Action::TunnelUp,
        format!(
            "Serving DNS and HTTPS on {} ({})",
            cli.tunnel_ip, cli.interface
        ),
        &cli.interface,
    )
    .await;
    println!(
        "dns {:?} https {:?}",
        gateway.dns_addrs(),
        gateway.https_addrs()
    );
    gateway.run(stop).await?;
    record(
        log.as_ref(),
        conduit::audited::Action::TunnelDown,
        format!("Stopped serving on {}", cli.tunnel_ip),
        &cli.interface,
    )
    .await;
    Ok(())
}
