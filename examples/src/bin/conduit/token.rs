//! `conduit token add|list|revoke`: the admin API's named tokens (for its TCP listener).
//! Only hashes are stored. With the gateway running the change goes through its API (and
//! is audited as `token_add` / `token_revoke` with who asked); else it is made here and
//! audited the same.

use std::process::ExitCode;

use conduit::admin::AdminError;
use conduit::audit::AuditSink as _;
use conduit::audited::Action;
use conduit::tokens::{Scope, TokenStore};

use crate::settings::{Context, user};

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

pub(crate) async fn token(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    let admin = ctx.admin();
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
            // Through the running gateway (audited with who asked), else here.
            let secret = match admin.add_token(&name, scope).await {
                Ok(t) => t.secret,
                Err(AdminError::NotRunning { .. }) => {
                    ctx.state.create()?;
                    let added = TokenStore::new(ctx.state.tokens()).add(&name, scope);
                    let message = match &added {
                        Ok(_) => format!("Added the {} token {name}", scope.as_str()),
                        Err(e) => format!("Cannot add the token {name}: {e}"),
                    };
                    let details = serde_json::json!({"name": name, "scope": scope.as_str()});
                    audit(ctx, Action::TokenAdd, added.is_ok(), message, details).await?;
                    added?
                }
                Err(e) => return Err(e.into()),
            };
            println!("{secret}");
        }
        Command::List => {
            let tokens = match admin.tokens().await {
                Ok(l) => l.tokens,
                Err(AdminError::NotRunning { .. }) => TokenStore::new(ctx.state.tokens())
                    .list()?
                    .into_iter()
                    .map(|t| conduit::api::TokenInfo {
                        name: t.name,
                        scope: t.scope,
                        created: t.created,
                    })
                    .collect(),
                Err(e) => return Err(e.into()),
            };
            for t in tokens {
                println!("{:<24} {:<7} {}", t.name, t.scope.as_str(), t.created);
            }
        }
        Command::Revoke { name } => {
            match admin.revoke_token(&name).await {
                Ok(_) => {}
                Err(AdminError::NotRunning { .. }) => {
                    let revoked = TokenStore::new(ctx.state.tokens()).revoke(&name);
                    let message = match &revoked {
                        Ok(()) => format!("Revoked the token {name}"),
                        Err(e) => format!("Cannot revoke the token {name}: {e}"),
                    };
                    let details = serde_json::json!({"name": name});
                    audit(ctx, Action::TokenRevoke, revoked.is_ok(), message, details).await?;
                    revoked?;
                }
                Err(e) => return Err(e.into()),
            }
            eprintln!("revoked {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Appends one record to the state directory's log (the gateway is not running).
async fn audit(
    ctx: &Context,
    action: Action,
    ok: bool,
    message: String,
    details: serde_json::Value,
) -> anyhow::Result<()> {
    let log = ctx.state.open_audit()?;
    let event = conduit::audited::event(action, ok, message, &user(), details)?;
    log.append(event).await?;
    Ok(())
}
