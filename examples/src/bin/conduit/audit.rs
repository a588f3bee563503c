//! `conduit audit verify`: the sealed chain, checked like the reference verifier.

use std::process::ExitCode;

use conduit::audit::{CapsuleStore, Level, SealKey};

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
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum VerifyLevel {
    Structural,
    Full,
    Signatures,
}

pub(crate) fn run(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    let Command::Verify { level, json } = command;
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
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else if report.valid {
        println!(
            "valid: {} of {} capsules verified",
            report.capsules_verified, report.total_capsules
        );
    } else {
        for e in &report.errors {
            println!("invalid: {} (capsule {})", e.error, e.capsule_id);
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
