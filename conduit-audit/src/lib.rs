//! # conduit-audit
//!
//! Conduit's tamper-evident audit trail: an append-only JSONL log and, optionally, a sealed
//! hash chain compatible with the Capsule Protocol reference verifier.
//!
//! This crate currently defines the [`AuditSink`] trait and [`AuditEvent`]; the sinks are the
//! subject of their own issue.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Mutex;
//! use conduit_audit::{AuditError, AuditEvent, AuditSink};
//!
//! #[derive(Debug, Default)]
//! struct Memory(Mutex<Vec<AuditEvent>>);
//! #[async_trait::async_trait]
//! impl AuditSink for Memory {
//!     async fn append(&self, event: AuditEvent) -> Result<(), AuditError> {
//!         self.0.lock().map_err(|_| AuditError::Closed)?.push(event);
//!         Ok(())
//!     }
//! }
//! let sink = Memory::default();
//! let ev = AuditEvent::new("service_register", conduit_audit::Outcome::Success, "Registered grafana", "admin", Default::default()).unwrap();
//! sink.append(ev).await.unwrap();
//! assert_eq!(sink.0.lock().unwrap().len(), 1);
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;

pub mod canonical;
mod capsule;
#[cfg(feature = "sqlite")]
mod chain;
mod event;
mod key;

pub use capsule::{
    Authority, Capsule, CapsuleOutcome, Context, Execution, Reasoning, ReasoningOption,
    SPEC_VERSION, SealKey, ToolCall, Trigger, content_hash, verify_signature,
};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use chain::{CapsuleStore, Level, Sealed, VerifyFailure, VerifyReport};
pub use event::{AuditEvent, EventError, Outcome};

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
    async fn append(&self, event: AuditEvent) -> Result<(), AuditError>;
}
