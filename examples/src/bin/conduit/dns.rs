//! `conduit dns`: the names served, and what the running DNS server answers.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use conduit::registry::{ListFilter, Registry as _, Routing};

use crate::settings::Context;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// The names served and what they answer.
    List,
    /// Asks the running gateway's DNS server (A and AAAA).
    Resolve {
        /// The name.
        name: String,
        /// The DNS server [default: the first `[dns] listen` address].
        #[arg(long)]
        server: Option<SocketAddr>,
    },
}

pub(crate) async fn run(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List => {
            // The running gateway's zone as served; the registry when it is stopped.
            match ctx.admin().dns().await {
                Ok(zone) => {
                    for r in zone
                        .records
                        .iter()
                        .filter(|r| r.rtype == "A" || r.rtype == "AAAA")
                    {
                        println!("{}\t{}", r.name.trim_end_matches('.'), r.data);
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                Err(conduit::admin::AdminError::NotRunning { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let reg = crate::register::registry(ctx).await?;
            for rec in reg.list(ListFilter::Active).await? {
                let answer = match rec.routing() {
                    Routing::Direct => rec
                        .endpoints()
                        .iter()
                        .map(|e| e.host().to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => ctx
                        .config
                        .dns
                        .advertise
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                println!("{}\t{answer}", rec.domain());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Resolve { name, server } => {
            let server = match server {
                Some(s) => s,
                None => conduit::probe::reachable(
                    ctx.config.dns.listen.first().copied().with_context(|| {
                        format!(
                            "no DNS listener is configured (`[dns] listen` in {})",
                            ctx.origin
                        )
                    })?,
                ),
            };
            let timeout = Duration::from_secs(2);
            let v4 = conduit::probe::lookup(server, &name, false, timeout).await?;
            let v6 = conduit::probe::lookup(server, &name, true, timeout).await?;
            if v4.addresses.is_empty() && v6.addresses.is_empty() {
                anyhow::bail!("{name}: {} from {server} (no address)", v4.code);
            }
            for a in v4.addresses.iter().chain(&v6.addresses) {
                println!("{a}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
