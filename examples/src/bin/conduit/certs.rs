//! `conduit certs`: the root, and each service's certificate as the running gateway serves it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::settings::Context;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Prints the root certificate (PEM) clients must trust.
    ExportCa,
    /// The certificate expiry of each service (from the running gateway).
    List,
    /// One service's certificate, as the running gateway serves it on its HTTPS listener.
    Inspect {
        /// The service name.
        name: String,
    },
    /// The commands that make the root trusted on each platform.
    Trust,
    /// A new key and certificate for a service (the running gateway serves it at once).
    Rotate {
        /// The service name.
        name: String,
    },
    /// Revokes a service's certificate (CRL) and serves a new one.
    Revoke {
        /// The service name.
        name: String,
    },
    /// Writes the current CRL (what leaves name as their CRL distribution point) to
    /// stdout: DER, or PEM with --pem.
    Crl {
        /// PEM instead of DER.
        #[arg(long)]
        pem: bool,
    },
}

pub(crate) async fn run(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::ExportCa => {
            let root = ctx.state.root_pem();
            let pem = std::fs::read_to_string(&root).with_context(|| {
                format!(
                    "no CA in {} (run `conduit setup`)",
                    ctx.state.path().display()
                )
            })?;
            print!("{pem}");
        }
        Command::Trust => {
            let root = ctx.state.root_pem();
            for step in conduit::ca::trust_instructions(&root, "Conduit Internal CA") {
                println!("{}:", step.platform);
                for c in step.commands {
                    println!("  {c}");
                }
                if let Some(n) = step.note {
                    println!("  ({n})");
                }
            }
        }
        Command::List => {
            for s in ctx.admin().status().await?.services {
                println!(
                    "{:<16} {:<28} until {}",
                    s.name,
                    s.domain,
                    s.certificate_not_after
                        .as_deref()
                        .unwrap_or("- (no certificate)")
                );
            }
        }
        Command::Rotate { name } => {
            let info = ctx.admin().rotate(&name).await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        Command::Revoke { name } => {
            let r = ctx.admin().revoke(&name).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Command::Inspect { name } => inspect(ctx, &name).await?,
        Command::Crl { pem } => {
            use std::io::Write as _;
            let path = ctx.state.tls().join(conduit::ca::CRL_FILE);
            let der = std::fs::read(&path).with_context(|| {
                format!(
                    "no CRL in {} yet (the gateway signs one when it starts: run `conduit serve`)",
                    path.display()
                )
            })?;
            let mut out = std::io::stdout().lock();
            if pem {
                out.write_all(conduit::ca::crl_pem(&der).as_bytes())?;
            } else {
                out.write_all(&der)?;
            }
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Connects to the configured HTTPS listener with the service's name, trusting only our
/// root, and prints the certificate served.
async fn inspect(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let status = ctx.admin().status().await?;
    let domain = status
        .services
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.domain.clone())
        .with_context(|| format!("no service {name:?} is registered (see `conduit status`)"))?;
    let listener = ctx.config.proxy.listen.first().copied().with_context(|| {
        format!(
            "no HTTPS listener is configured (`[proxy] listen` in {})",
            ctx.origin
        )
    })?;
    let info = conduit::probe::served_certificate(
        conduit::probe::reachable(listener),
        &domain,
        &ctx.state.root_pem(),
        Duration::from_secs(5),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(())
}
