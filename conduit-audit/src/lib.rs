//! # conduit-audit
//!
//! Conduit's tamper-evident audit trail:
//!
//! * [`AuditEvent`]: the original tool's six-field line (`timestamp action status message
//!   user details`), validated on the way in.
//! * [`JsonlSink`]: the append-only `audit.log` (0600, `flock`-shared with other processes,
//!   fsync each write or by group commit), with [`read_log`] and [`LogFollower`] to read it.
//! * [`CapsuleSink`] / [`CapsuleStore`] (feature `sqlite`): every event sealed as a Capsule
//!   (canonical JSON → SHA3-256 → Ed25519 over the hex hash, hash-chained) in `capsules.db`,
//!   byte-compatible with the reference verifier (`capsule verify`, qp-capsule 1.5.4), and
//!   verified in Rust at three [`Level`]s with the reference's messages. Signed
//!   [`Checkpoint`]s catch what the reference cannot: a chain cut short.
//! * [`AuditLog`]: JSONL always, sealing when it can; a sealing failure never stops the log.
//!
//! ```text
//!  append(event) ──► JsonlSink thread ──► audit.log      (flock, write, fsync per batch)
//!                └─► CapsuleSink threads ► capsules.db   (seal batch n+1 while batch n commits)
//! ```
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use conduit_audit::*;
//! # let dir = std::env::temp_dir().join(format!("conduit-audit-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let key = SealKey::load_or_create(&dir)?;
//! let public = key.public_hex();
//! let log = AuditLog::new(
//!     JsonlSink::open(dir.join("audit.log"), JsonlOptions::default())?,
//!     Some(CapsuleSink::open(dir.join("capsules.db"), Some(key), CapsuleOptions::default())?),
//! );
//! let event = AuditEvent::new("service_register", Outcome::Success, "Registered grafana", "admin", Default::default())?;
//! let receipt = log.append(event).await?;
//! assert_eq!(receipt.sealed.map(|s| s.sequence), Some(0));
//!
//! let report = CapsuleStore::open(dir.join("capsules.db"))?.verify(Level::Signatures, Some(&public))?;
//! assert!(report.valid);
//! let (events, _bad) = read_log(&dir.join("audit.log"), &LogFilter::default())?;
//! assert_eq!(events[0].action(), "service_register");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `sqlite` (default): the sealed chain ([`CapsuleStore`], [`CapsuleSink`], [`AuditLog`]),
//!   on bundled SQLite. Without it only the JSONL log and the Capsule model remain.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;

pub mod canonical;
mod capsule;
mod capsule_canon;
#[cfg(feature = "sqlite")]
mod chain;
#[cfg(feature = "sqlite")]
mod checkpoint;
#[cfg(feature = "sqlite")]
mod crosscheck;
mod event;
mod jsonl;
mod key;
#[cfg(feature = "sqlite")]
mod prepared;
mod seal;
mod shape;
#[cfg(feature = "sqlite")]
mod signers;
#[cfg(feature = "sqlite")]
mod sink;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod worker;

pub use capsule::{
    Capsule, CapsuleAuthority, CapsuleOutcome, Context, Execution, Reasoning, ReasoningOption,
    SPEC_VERSION, ToolCall, Trigger, content_hash,
};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use chain::{CapsuleStore, Level, VerifyFailure, VerifyReport};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use checkpoint::{Checkpoint, CheckpointFailure};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use crosscheck::{CrossCheck, LogLine, SealedRecord, cross_check};
pub use event::{AuditEvent, EventError, Outcome};
pub use jsonl::{BadLine, FsyncPolicy, JsonlOptions, JsonlSink, LogFilter, LogFollower, read_log};
pub use seal::{SealKey, Sealed, SignatureError, verify_signature};
pub use shape::{Category, ValidationError, validate_capsule};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sink::{AuditLog, CapsuleOptions, CapsuleSink};

/// Errors of the audit subsystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The sink is shut down.
    #[error("audit sink is closed")]
    Closed,
    /// An audit entry is malformed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A document cannot be canonicalised (a non-finite number).
    #[error(transparent)]
    Canonical(#[from] canonical::CanonicalError),
    /// A file operation failed.
    #[error("{path}: cannot {op}: {source}", path = path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The seal key file is not a 32-byte Ed25519 seed.
    #[error("{path}: not a 32-byte Ed25519 seed ({len} bytes)", path = path.display())]
    BadKey {
        /// The key file.
        path: std::path::PathBuf,
        /// Its length.
        len: usize,
    },
    /// Sealing was asked for but no seal key is available.
    #[error("no seal key: the event was not sealed")]
    NoKey,
    /// A batched write failed; every event of the batch gets the same error.
    #[error(transparent)]
    Batch(std::sync::Arc<Self>),
    /// The event is in `audit.log` but could not be sealed, after retrying (the chain was
    /// locked or broken). `conduit serve` seals such lines at its next start; `conduit
    /// audit verify` names them meanwhile.
    #[error("logged to audit.log but not sealed: {0}")]
    Unsealed(Box<Self>),
    /// The SQLite chain could not be read or written.
    #[error("{path}: capsule database error: {source}", path = path.display())]
    Database {
        /// The database file.
        path: std::path::PathBuf,
        /// The database's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where audit events go.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + fmt::Debug {
    /// Appends one event durably (per the sink's policy).
    ///
    /// # Errors
    /// [`AuditError`] when the event could not be stored.
    async fn append(&self, event: AuditEvent) -> Result<Receipt, AuditError>;

    /// Every event appended so far, oldest first, when the sink can give them back; `None`
    /// (the default) for a write-only sink. The gateway reads it at start to find registry
    /// changes that were never audited.
    ///
    /// # Errors
    /// [`AuditError`] when the events cannot be read.
    async fn history(&self) -> Result<Option<Vec<AuditEvent>>, AuditError> {
        Ok(None)
    }
}

/// What an append produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt {
    /// The sealed record, when the event was sealed.
    pub sealed: Option<Sealed>,
    /// Why the event was logged but not sealed, when sealing failed.
    pub seal_error: Option<String>,
}
