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
//! sink.append(AuditEvent { action: "service_register".into(), success: true, message: "grafana".into() }).await.unwrap();
//! assert_eq!(sink.0.lock().unwrap().len(), 1);
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;

pub mod canonical;

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The action (`service_register`, `health_change`, …).
    pub action: String,
    /// Whether it succeeded.
    pub success: bool,
    /// A one-line description.
    pub message: String,
}

/// Errors of the audit subsystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The sink is shut down.
    #[error("audit sink is closed")]
    Closed,
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
