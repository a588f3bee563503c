//! `conduit audit verify`: the sealed chain, checked like the reference verifier (and
//! against a checkpoint); `conduit audit checkpoint`: a signed checkpoint of its head now.

use std::process::ExitCode;

use conduit::audit::{CapsuleStore, Checkpoint, Level, SealKey, VerifyReport, cross_check};
use serde::Serialize;

use crate::settings::Context;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Verifies capsules.db like the reference verifier.
    Verify {
        /// How deep.
        #[arg(long, value_enum, default_value = "full")]
        level: VerifyLevel,
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// A checkpoint taken earlier (`conduit audit checkpoint --out FILE`, or a
        /// witness's copy): the chain must still reach its head unchanged.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<std::path::PathBuf>,
    },
    /// A signed checkpoint of the chain's head now (from the running gateway, which also
    /// keeps it and sends it to its witnesses; else from the state directory).
    Checkpoint {
        /// Where to write it (JSON); stdout when not given.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum VerifyLevel {
    Structural,
    Full,
    Signatures,
}

pub(crate) async fn run(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Verify {
            level,
            json,
            checkpoint,
        } => verify(ctx, level, json, checkpoint.as_deref()),
        Command::Checkpoint { out } => checkpoint(ctx, out.as_deref()).await,
    }
}

async fn checkpoint(ctx: &Context, out: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let c: Checkpoint = match ctx.admin().checkpoint().await {
        Ok(c) => c,
        Err(conduit::admin::AdminError::NotRunning { .. }) => {
            let key = SealKey::load_or_create(ctx.state.path())?;
            CapsuleStore::open(ctx.state.capsules_db())?
                .checkpoint(&key)?
                .context("the sealed chain is empty: nothing to checkpoint yet")?
        }
        Err(e) => return Err(e.into()),
    };
    let text = format!("{}\n", serde_json::to_string_pretty(&c)?);
    match out {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "checkpoint at sequence {} written to {}; later: conduit audit verify --checkpoint {}",
                c.sequence,
                path.display(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(
    ctx: &Context,
    level: VerifyLevel,
    json: bool,
    checkpoint: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let store = CapsuleStore::open(ctx.state.capsules_db())?;
    let level = match level {
        VerifyLevel::Structural => Level::Structural,
        VerifyLevel::Full => Level::Full,
        VerifyLevel::Signatures => Level::Signatures,
    };
    let key = (level == Level::Signatures)
        .then(|| SealKey::load_or_create(ctx.state.path()))
        .transpose()?;
    let report = store.verify(level, key.as_ref().map(SealKey::public_hex).as_deref())?;
    // audit.log (what `logs` and the admin API show) against the chain (what proves it).
    let log = cross_check(&ctx.state.audit_log(), &store)?;
    let mut log_problems = log.problems();
    if let Some(path) = checkpoint {
        let text = std::fs::read(path)
            .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
        let c: Checkpoint = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a checkpoint", path.display()))?;
        if let Err(why) = store.verify_checkpoint(&c)? {
            log_problems.push(format!("checkpoint {}: {why}", path.display()));
        }
    }
    let valid = report.valid && log_problems.is_empty();
    if json {
        /// The reference verifier's report, and what differs between audit.log and it.
        #[derive(Serialize)]
        struct Output<'a> {
            #[serde(flatten)]
            chain: &'a VerifyReport,
            log_problems: &'a [String],
        }
        let out = Output {
            chain: &report,
            log_problems: &log_problems,
        };
        println!("{}", serde_json::to_string(&out)?);
    } else {
        if report.valid {
            println!(
                "valid: {} of {} capsules verified",
                report.capsules_verified, report.total_capsules
            );
        } else {
            for e in &report.errors {
                println!("invalid: {} (capsule {})", e.error, e.capsule_id);
            }
        }
        for p in &log_problems {
            println!("invalid: {p}");
        }
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
