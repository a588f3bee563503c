//! `conduit`: the gateway and its command line.
//!
//! ```text
//! conduit serve                         the gateway (sets up an empty state directory first)
//! conduit setup                         state directory, CA, empty registry; trust commands
//! conduit register --name N --upstream HOST:PORT [--upstream …] [--health PATH] [--domain D]
//!                  [--no-proxy] [--no-tls]          (--host is an alias of --upstream)
//! conduit deregister --name N
//! conduit status [--json]               live from a running gateway, else from the files
//! conduit logs [--action A] [--since T] [--limit N] [--json] [--follow]
//! conduit monitor [--gpu] [--containers] [--server U@H]… [--json|--prometheus] [--watch]
//! conduit audit verify [--level structural|full|signatures] [--json]
//! conduit certs export-ca|trust|list|inspect N|rotate N|revoke N
//! conduit dns list|resolve NAME
//! conduit peer add NAME --address IP|CIDR [--tag T]… | list | remove NAME | cert NAME --out DIR | revoke NAME
//! conduit grant add SERVICE --to peer:N|tag:T|cidr:C|cert:N [--methods M,…] [--path P] | list [S] | remove S --to …
//! conduit access check --from IP SERVICE [METHOD PATH] | require-cert SERVICE [--off]
//! conduit config check [FILE] | show
//! ```
//! Global: `--dir` (`CONDUIT_CONFIG_DIR`, default `~/.config/qp-conduit`) is the state
//! directory; `--config FILE` (`CONDUIT_CONFIG`) the configuration, default `DIR/conduit.toml`.
//! The configuration is layered: `conduit.toml` < the original tool's `DIR/.env.conduit` <
//! environment variables < flags (docs/configuration.md). Exit codes: 0 ok, 1 failure,
//! 2 usage. Errors are one line.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program"
)]

/// mimalloc instead of the system allocator: per-thread free lists without glibc's arena
/// locks, which the proxy's and the audit writers' threads contend on (docs/gateway.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../signal.rs"]
mod signal;

mod access;
mod audit;
mod ca;
mod certs;
mod config;
mod dns;
mod docs;
mod events;
mod logs;
mod monitor;
mod register;
mod serve;
mod service_logs;
mod settings;
mod status;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use settings::Global;

#[derive(Parser)]
#[command(
    name = "conduit",
    version,
    about = "Conduit: DNS, TLS, routes, health checks and an audit trail for internal services"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the state directory (0700), the CA and an empty registry.
    Setup {
        /// Moves the new root key into FILE, to keep offline (never inside the state
        /// directory); the gateway then renews its intermediate through `conduit ca`.
        #[arg(long, value_name = "FILE")]
        offline_root: Option<std::path::PathBuf>,
    },
    /// Runs the gateway: DNS, HTTPS proxy, health checks, audit (sets up an empty state
    /// directory first).
    Serve(serve::Args),
    /// Registers a service (takes effect in a running gateway at once).
    Register(register::Args),
    /// Deregisters a service.
    Deregister {
        /// The service name.
        #[arg(long)]
        name: String,
    },
    /// Changes a registered service in place.
    Service {
        #[command(subcommand)]
        command: register::ServiceCommand,
    },
    /// Services, upstream health, certificate expiry.
    Status {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// The audit log.
    Logs(logs::Args),
    /// The running gateway's live events (services, health, certificates, alerts, audit).
    Events(events::Args),
    /// Hosts, GPUs and containers: one round, or `--watch` every 5 s.
    Monitor(monitor::Args),
    /// The sealed audit chain.
    Audit {
        #[command(subcommand)]
        command: audit::Command,
    },
    /// The certificate authority: a root kept offline, intermediates signed by it.
    Ca {
        #[command(subcommand)]
        command: ca::Command,
    },
    /// Certificates.
    Certs {
        #[command(subcommand)]
        command: certs::Command,
    },
    /// DNS.
    Dns {
        #[command(subcommand)]
        command: dns::Command,
    },
    /// Peers: clients known by their tunnel addresses or client certificates.
    Peer {
        #[command(subcommand)]
        command: access::PeerCommand,
    },
    /// Grants: which peers, tags and networks may reach which services.
    Grant {
        #[command(subcommand)]
        command: access::GrantCommand,
    },
    /// The access policy: check a request, require client certificates.
    Access {
        #[command(subcommand)]
        command: access::AccessCommand,
    },
    /// The admin API's named tokens (TCP listener).
    Token {
        #[command(subcommand)]
        command: token::Command,
    },
    /// The configuration.
    Config {
        #[command(subcommand)]
        command: config::Command,
    },
    /// Prints a shell completion script (`conduit completions bash >
    /// /usr/share/bash-completion/completions/conduit`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Writes the man pages (`conduit.1` and one per subcommand) into a directory.
    Man {
        /// The directory (created if missing).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,conduit_proxy::access=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conduit: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("conduit: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Generated from the definitions alone: no configuration is read.
    match &cli.command {
        Command::Completions { shell } => return docs::completions(*shell),
        Command::Man { out } => return docs::man(out),
        _ => {}
    }
    // `config check FILE` reads the file it is given, whatever --config says.
    if let Command::Config {
        command: config::Command::Check { file },
    } = &cli.command
    {
        return config::check(&cli.global, file.as_deref());
    }
    let (ctx, notices) = cli.global.load()?;
    match cli.command {
        Command::Setup { offline_root } => {
            let code = serve::setup(&ctx, true).await?;
            if let Some(out) = offline_root {
                ca::export_root_key(&ctx, &out).await?;
            }
            Ok(code)
        }
        Command::Ca { command } => ca::run(&ctx, command).await,
        Command::Serve(args) => {
            settings::warn(&notices);
            serve::serve(ctx, args).await
        }
        Command::Register(args) => register::register(&ctx, args).await,
        Command::Deregister { name } => register::deregister(&ctx, &name).await,
        Command::Service { command } => register::service(&ctx, command).await,
        Command::Events(args) => events::events(&ctx, args).await,
        Command::Peer { command } => access::peer(&ctx, command).await,
        Command::Grant { command } => access::grant(&ctx, command).await,
        Command::Access { command } => access::access(&ctx, command).await,
        Command::Token { command } => token::token(&ctx, command).await,
        Command::Status { json } => status::status(&ctx, json).await,
        Command::Logs(args) => logs::logs(&ctx, args).await,
        Command::Monitor(args) => monitor::monitor(&ctx, args).await,
        Command::Audit { command } => audit::run(&ctx, command).await,
        Command::Certs { command } => certs::run(&ctx, command).await,
        Command::Dns { command } => dns::run(&ctx, command).await,
        Command::Completions { .. } | Command::Man { .. } => Ok(ExitCode::SUCCESS),
        Command::Config { command } => {
            settings::warn(&notices);
            config::run(&ctx, command)
        }
    }
}
