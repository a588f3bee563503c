//! `conduit token add|list|revoke`: the admin API's named tokens (for its TCP listener).
//! Only hashes are stored; a running gateway picks changes up at once.

use std::process::ExitCode;

use conduit::tokens::{Scope, TokenStore};

use crate::settings::Context;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Adds a token and prints its secret, alone on one line, once.
    Add {
        /// Its name (audit records carry `token:NAME`).
        name: String,
        /// Only GET: every change is refused (403).
        #[arg(long, conflicts_with = "witness")]
        read_only: bool,
        /// Only POST /v1/audit/witness: for a gateway whose checkpoints this one witnesses
        /// (its `[audit] witness_token`).
        #[arg(long)]
        witness: bool,
    },
    /// Lists the tokens (names, scopes, when added; never secrets).
    List,
    /// Revokes a token: the next request with it is refused.
    Revoke {
        /// The token's name.
        name: String,
    },
}

pub(crate) fn token(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    ctx.state.create()?;
    let store = TokenStore::new(ctx.state.tokens());
    match command {
        Command::Add {
            name,
            read_only,
            witness,
        } => {
            let scope = match (read_only, witness) {
                (true, _) => Scope::Read,
                (_, true) => Scope::Witness,
                _ => Scope::Admin,
            };
            println!("{}", store.add(&name, scope)?);
        }
        Command::List => {
            for t in store.list()? {
                let scope = match t.scope {
                    Scope::Read => "read",
                    Scope::Admin => "admin",
                    Scope::Witness => "witness",
                };
                println!("{:<24} {scope:<7} {}", t.name, t.created);
            }
        }
        Command::Revoke { name } => {
            store.revoke(&name)?;
            eprintln!("revoked {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
