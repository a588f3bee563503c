//! `GET /v1/audit/witnesses`: where this gateway's checkpoints went, and what each witness
//! did with them.

use serde::{Deserialize, Serialize};

/// Every configured witness (`[audit] witnesses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessList {
    /// In the configuration's order.
    pub witnesses: Vec<WitnessStatus>,
}

/// One witness as this gateway last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessStatus {
    /// Its URL.
    pub url: String,
    /// The last checkpoint it accepted (its sequence); `null` before the first.
    pub accepted: Option<u64>,
    /// When a checkpoint was last offered to it (RFC 3339); `null` before the first.
    pub last_attempt: Option<String>,
    /// Why the last offer failed (unreachable, refused); `null` when it was accepted.
    pub last_error: Option<String>,
    /// The last offer was refused: the witness saw a fork or a rollback (an alarm).
    pub refused: bool,
}
