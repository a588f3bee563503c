//! `conduit ca`: a root kept offline. Moving its key out of the state directory, and the
//! request → sign → install round that gives a gateway a new intermediate from it (also
//! how several gateways share one root).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use conduit::audit::AuditSink as _;
use conduit::audited::Action;
use conduit_ca::{LocalCa, SignedIntermediate};

use crate::settings::{Context, user};

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Moves the root key out of the state directory into FILE, to keep offline (the
    /// gateway must be stopped).
    ExportRootKey {
        /// Where to write the root certificate and key (a new file, 0600; never inside the
        /// state directory).
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes a request for a new intermediate, to sign where the root key is kept.
    RequestIntermediate {
        /// Where to write the request (PEM); `-` prints it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Signs a gateway's intermediate request with the offline root key (runs anywhere;
    /// needs no state directory).
    SignIntermediate {
        /// The root key file (`conduit ca export-root-key` or `setup --offline-root`).
        #[arg(long)]
        root_key: PathBuf,
        /// The gateway's request (`conduit ca request-intermediate`).
        #[arg(long)]
        csr: PathBuf,
        /// How long the intermediate is valid (`90d`, `1y`).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "90d")]
        lifetime: std::time::Duration,
        /// Where to write the signed intermediate and the root's CRL (PEM).
        #[arg(long)]
        out: PathBuf,
    },
    /// Installs an intermediate signed by the offline root (the running gateway uses it at
    /// once and issues every certificate again under it).
    InstallIntermediate {
        /// The file `conduit ca sign-intermediate` wrote.
        cert: PathBuf,
        /// Join the root that signed it (another gateway's: one root for the site) instead
        /// of this gateway's own, whose key is then deleted; the gateway must be stopped.
        #[arg(long)]
        join: bool,
    },
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

pub(crate) async fn run(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::ExportRootKey { out } => {
            if ctx.admin().health().await.is_ok() {
                anyhow::bail!(
                    "the gateway is running and holds the root key in memory: stop it, run `conduit ca export-root-key --out {}` again, then start it",
                    out.display()
                );
            }
            export_root_key(ctx, &out).await?;
        }
        Command::RequestIntermediate { out } => {
            let ca = open(ctx)?;
            let csr = ca.request_intermediate(&ctx.state.tls())?;
            if out.as_os_str() == "-" {
                print!("{csr}");
            } else {
                std::fs::write(&out, &csr)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                eprintln!(
                    "wrote the request to {}; sign it where the root key is kept:\n  conduit ca sign-intermediate --root-key ROOT-KEY-FILE --csr {} --lifetime 90d --out gateway.crt\nthen install the result here:\n  conduit ca install-intermediate gateway.crt",
                    out.display(),
                    out.display()
                );
            }
        }
        Command::SignIntermediate {
            root_key,
            csr,
            lifetime,
            out,
        } => {
            let bundle = read(&root_key, "the root key file")?;
            let signed =
                LocalCa::sign_intermediate(&bundle, &read(&csr, "the request")?, lifetime, now())?;
            std::fs::write(&out, signed.to_pem())
                .with_context(|| format!("cannot write {}", out.display()))?;
            let info = conduit::ca::inspect_pem(&signed.cert_pem, now(), &Default::default())?;
            eprintln!(
                "signed an intermediate valid until {} into {}; on the gateway run `conduit ca install-intermediate {}`",
                info.not_after,
                out.display(),
                out.display()
            );
        }
        Command::InstallIntermediate { cert, join: true } => {
            if ctx.admin().health().await.is_ok() {
                anyhow::bail!(
                    "the gateway is running: stop it, run `conduit ca install-intermediate --join {}` again, then start it",
                    cert.display()
                );
            }
            join_offline(ctx, &read(&cert, "the signed intermediate")?).await?;
        }
        Command::InstallIntermediate { cert, join: false } => {
            let pem = read(&cert, "the signed intermediate")?;
            match ctx.admin().install_intermediate(&pem).await {
                Ok(done) => println!(
                    "installed; the intermediate is valid until {} ({} certificate(s) issued again)",
                    done.not_after, done.leaves_renewed
                ),
                Err(conduit::admin::AdminError::NotRunning { .. }) => {
                    install_offline(ctx, &pem).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open(ctx: &Context) -> anyhow::Result<LocalCa> {
    if !ctx.state.is_initialized() {
        anyhow::bail!(
            "no CA in {} (run `conduit setup`)",
            ctx.state.path().display()
        );
    }
    Ok(ctx.state.open_ca(ctx.config.ca_config())?)
}

/// Moves the root key into `out` and audits it.
pub(crate) async fn export_root_key(ctx: &Context, out: &Path) -> anyhow::Result<()> {
    let state_dir = std::fs::canonicalize(ctx.state.path())
        .with_context(|| format!("cannot read {}", ctx.state.path().display()))?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let parent = std::fs::canonicalize(parent)
        .with_context(|| format!("cannot write into {}", parent.display()))?;
    if parent.starts_with(&state_dir) {
        anyhow::bail!(
            "{} is inside the state directory {}: the point is to keep the root key elsewhere; give a path outside it",
            out.display(),
            state_dir.display()
        );
    }
    let mut ca = open(ctx)?;
    ca.export_root_key(&ctx.state.tls(), out)?;
    let log = ctx.state.open_audit()?;
    let event = conduit::audited::event(
        Action::CaRootExport,
        true,
        format!(
            "Moved the root key out of the state directory (kept offline from now on); the intermediate is valid until {}",
            rfc3339(ca.intermediate_not_after())
        ),
        &user(),
        serde_json::json!({}),
    )?;
    log.append(event).await?;
    eprintln!(
        "the root key is now only in {}: keep it offline. Before {}, renew the intermediate: `conduit ca request-intermediate`, then `conduit ca sign-intermediate` where the key is, then `conduit ca install-intermediate`.",
        out.display(),
        rfc3339(ca.intermediate_not_after())
    );
    Ok(())
}

/// Installs into the state directory directly (no gateway running) and audits it.
/// Joins the site's root with the intermediate it signed, and audits it.
async fn join_offline(ctx: &Context, pem: &str) -> anyhow::Result<()> {
    let mut ca = open(ctx)?;
    let signed = SignedIntermediate::from_pem(pem)?;
    let result = ca.join_root(&ctx.state.tls(), &signed, now());
    let message = match &result {
        Ok(()) => format!(
            "Joined the site's root with an intermediate it signed, valid until {}; this gateway's own root and its key are gone. Clients trust the site's root ({}) for this gateway too",
            rfc3339(ca.intermediate_not_after()),
            ctx.state.root_pem().display()
        ),
        Err(e) => format!("Cannot join the site's root: {e}"),
    };
    audited_install(ctx, result, message, true).await
}

async fn install_offline(ctx: &Context, pem: &str) -> anyhow::Result<()> {
    let mut ca = open(ctx)?;
    let signed = SignedIntermediate::from_pem(pem)?;
    let result = ca.install_intermediate(&ctx.state.tls(), &signed, now());
    let message = match &result {
        Ok(()) => format!(
            "Installed an intermediate CA signed by the offline root; valid until {}",
            rfc3339(ca.intermediate_not_after())
        ),
        Err(e) => format!("Cannot install the intermediate CA: {e}"),
    };
    audited_install(ctx, result, message, false).await
}

/// Audits an intermediate installed (or refused) with the gateway stopped as
/// `ca_intermediate_install` (`joined`: under another gateway's root), then reports it.
async fn audited_install(
    ctx: &Context,
    result: Result<(), conduit::ca::CaError>,
    message: String,
    joined: bool,
) -> anyhow::Result<()> {
    let details = if joined {
        serde_json::json!({ "joined_root": true })
    } else {
        serde_json::json!({})
    };
    let log = ctx.state.open_audit()?;
    let event = conduit::audited::event(
        Action::CaIntermediateInstall,
        result.is_ok(),
        message.clone(),
        &user(),
        details,
    )?;
    log.append(event).await?;
    result?;
    println!("{message}");
    Ok(())
}
