//! `audit-verify`: verifies a Capsule chain (`capsules.db`) like the reference's
//! `capsule verify`, with the same levels, messages, JSON shape and exit codes.
//!
//! ```text
//! audit-verify --db PATH [--structural | --full | --signatures] [--pubkey HEX] [--json]
//!              [--checkpoint FILE]
//! ```
//! The default level is `--full` (the reference defaults to structural, which does not read
//! content). `--pubkey` implies `--signatures`; without it the key comes from `keyring.json`
//! (or `key`) next to the database. `--checkpoint` also checks a checkpoint exported earlier
//! (a chain cut short fails). Exit codes: 0 valid, 1 invalid, 2 usage or load error.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program"
)]

use std::path::PathBuf;
use std::process::ExitCode;

use conduit_audit::{CapsuleStore, Checkpoint, Level, SealKey};

/// Verifies a Capsule chain like the reference's `capsule verify`.
#[derive(Debug, clap::Parser)]
#[command(name = "audit-verify", version)]
struct Args {
    /// The chain (`capsules.db`).
    #[arg(long)]
    db: PathBuf,
    /// Links and hashes only.
    #[arg(long, group = "level")]
    structural: bool,
    /// Links, hashes and content (the default).
    #[arg(long, group = "level")]
    full: bool,
    /// Everything, and every signature.
    #[arg(long, group = "level")]
    signatures: bool,
    /// The public key (hex); implies `--signatures`.
    #[arg(long)]
    pubkey: Option<String>,
    /// One JSON object, the reference's shape.
    #[arg(long)]
    json: bool,
    /// A checkpoint exported earlier: a chain cut short fails.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

fn main() -> ExitCode {
    let Args {
        db,
        structural,
        full: _,
        signatures,
        mut pubkey,
        json,
        checkpoint,
    } = clap::Parser::parse();
    let level = if signatures || pubkey.is_some() {
        Level::Signatures
    } else if structural {
        Level::Structural
    } else {
        Level::Full
    };
    if !db.is_file() {
        eprintln!("audit-verify: {}: no such database", db.display());
        return ExitCode::from(2);
    }
    let dir = db.parent().map(PathBuf::from).unwrap_or_default();
    if level == Level::Signatures && pubkey.is_none() {
        pubkey = std::fs::read_to_string(dir.join("keyring.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                let active = v["active_epoch"].as_u64()?;
                v["epochs"]
                    .as_array()?
                    .iter()
                    .find(|e| e["epoch"].as_u64() == Some(active))?["public_key_hex"]
                    .as_str()
                    .map(str::to_owned)
            })
            .or_else(|| {
                dir.join("key")
                    .is_file()
                    .then(|| SealKey::load_or_create(&dir).ok())
                    .flatten()
                    .map(|k| k.public_hex())
            });
    }
    let store = match CapsuleStore::open(&db) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("audit-verify: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match store.verify(level, pubkey.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("audit-verify: {e}");
            return ExitCode::from(2);
        }
    };
    let mut valid = report.valid;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        for e in &report.errors {
            println!("✗ Capsule #{}: {}", e.sequence, e.error);
        }
        if report.valid {
            println!("PASS -- {} capsules verified", report.total_capsules);
        } else {
            println!(
                "FAIL -- {} of {} capsules verified",
                report.capsules_verified, report.total_capsules
            );
        }
    }
    if let Some(path) = checkpoint {
        let cp: Checkpoint = match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("audit-verify: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        match store.verify_checkpoint(&cp) {
            Ok(Ok(())) => eprintln!("checkpoint at sequence {} holds", cp.sequence),
            Ok(Err(why)) => {
                eprintln!("checkpoint FAILED: {why}");
                valid = false;
            }
            Err(e) => {
                eprintln!("audit-verify: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
