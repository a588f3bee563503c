//! `conduit audit verify`: the sealed chain, checked like the reference verifier.

use std::process::ExitCode;

use conduit::audit::{CapsuleStore, Level, SealKey, VerifyReport, cross_check};
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
    // audit.log (what `logs` and the admin API show) against the chain (what proves it).
    let log = cross_check(&ctx.state.audit_log(), &store)?;
    let log_problems = log.problems();
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
