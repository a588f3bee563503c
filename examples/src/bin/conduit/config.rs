//! `conduit config check [FILE]` and `conduit config show`.

use std::path::Path;
use std::process::ExitCode;

use conduit::config::ConduitConfig;

use crate::settings::{Context, Global, warn};

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Validates a configuration file [default: --config, else DIR/conduit.toml]: exit 0, or
    /// exit 1 with one line naming the file, the key and the problem.
    Check {
        /// The file.
        file: Option<std::path::PathBuf>,
    },
    /// Prints the effective configuration (file, .env.conduit, environment), secrets
    /// redacted.
    Show,
}

/// Checks `file` alone when given; else everything `serve` would read.
pub(crate) fn check(global: &Global, file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (config, origin, notices) = match file {
        Some(f) => {
            let (c, n) = ConduitConfig::load(f, true)?;
            (c, f.display().to_string(), n)
        }
        None => {
            let (ctx, n) = global.load()?;
            (ctx.config, ctx.origin, n)
        }
    };
    warn(&notices);
    config.validate(&origin)?;
    println!("{origin}: ok");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { .. } => unreachable_check(),
        Command::Show => {
            print!("{}", ctx.config.to_toml()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `check` is answered before the configuration is loaded (see `main`).
fn unreachable_check() -> anyhow::Result<ExitCode> {
    anyhow::bail!("internal: `config check` is handled before loading the configuration")
}
