//! The witness's side: another gateway's checkpoint is kept when it extends the last one
//! seen from its sealing key, an anchor is asked for when that cannot be told, and a fork,
//! a rollback or a rewritten chain is refused with an audited alarm.

use conduit_audit::Checkpoint;
use http::StatusCode;
use serde_json::json;

use super::{GatewayError, GatewayHandle};
use crate::api::{WitnessOutcome, WitnessReply, WitnessRequest};
use crate::audited::{Action, record};
use crate::events::EventKind;

/// Why a witness did not accept a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The checkpoint's signature does not verify with the key it names.
    #[error("the checkpoint's signature does not verify: {0}")]
    Signature(conduit_audit::SignatureError),
    /// It does not extend the last checkpoint seen from that gateway: a fork, a rollback or
    /// a rewritten chain. Audited here as `audit_witness_alarm`.
    #[error("refused: {0}")]
    Refused(String),
    /// This gateway keeps no state directory to remember checkpoints in.
    #[error("this gateway has no state directory to keep witnessed checkpoints in")]
    NoState,
    /// The witnessed checkpoint could not be stored (nothing was accepted).
    #[error("cannot store the witnessed checkpoint in {}: {source}", dir.display())]
    Store {
        /// The directory.
        dir: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl WitnessError {
    /// Whose fault: the sender's (400), a refusal (409), or ours (500).
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Signature(_) => StatusCode::BAD_REQUEST,
            Self::Refused(_) => StatusCode::CONFLICT,
            Self::NoState | Self::Store { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl GatewayHandle {
    /// Witnesses `req`: stores it when it extends the last checkpoint seen from its key,
    /// asks for an anchor when that cannot be told, and refuses (audited as
    /// `audit_witness_alarm`, with an event) one that forks, goes back or rewrites.
    ///
    /// # Errors
    /// [`GatewayError::Witness`].
    pub async fn witness(
        &self,
        req: WitnessRequest,
        user: &str,
    ) -> Result<WitnessReply, GatewayError> {
        let c = &req.checkpoint;
        c.verify_signature().map_err(WitnessError::Signature)?;
        let dir = self
            .state
            .as_ref()
            .ok_or(WitnessError::NoState)?
            .witnessed();
        // The signature verified, so the key is 64 hex characters: a safe file name.
        let file = dir.join(format!("{}.json", c.public_key));
        let _one_at_a_time = self.witness_lock.lock().await;
        let last: Option<Checkpoint> = match tokio::fs::read(&file).await {
            Ok(b) => serde_json::from_slice(&b).ok(),
            Err(_) => None,
        };
        let refusal = match &last {
            None => None,
            Some(l) if c.sequence == l.sequence && c.head_hash == l.head_hash => None,
            Some(l) if c.sequence == l.sequence => Some(format!(
                "a fork: the head at sequence {} differs from the one seen on {}",
                l.sequence, l.created_at
            )),
            Some(l) if c.sequence < l.sequence => Some(format!(
                "it goes back from sequence {} (seen on {}) to {}: {} records missing, or the chain was replaced",
                l.sequence,
                l.created_at,
                c.sequence,
                l.sequence - c.sequence
            )),
            Some(l) => match &req.anchor {
                Some(a) if a.sequence == l.sequence && a.head_hash == l.head_hash => None,
                Some(a) if a.sequence == l.sequence => Some(format!(
                    "the chain was rewritten: its record {} is not the one seen on {}",
                    l.sequence, l.created_at
                )),
                _ => {
                    return Ok(WitnessReply {
                        outcome: WitnessOutcome::NeedAnchor,
                        sequence: l.sequence,
                    });
                }
            },
        };
        if let Some(why) = refusal {
            let message = format!(
                "Refused checkpoint {} of the gateway with sealing key {}: {why}",
                c.sequence,
                &c.public_key[..16.min(c.public_key.len())]
            );
            tracing::error!("{message}");
            self.events.publish(EventKind::Certificate {
                change: "witness_alarm".to_owned(),
                name: c.public_key.clone(),
                message: message.clone(),
            });
            let details = json!({
                "public_key": c.public_key,
                "offered_sequence": c.sequence,
                "offered_head_hash": c.head_hash,
                "seen_sequence": last.as_ref().map(|l| l.sequence),
                "seen_head_hash": last.as_ref().map(|l| l.head_hash.clone()),
            });
            record(
                &*self.audit,
                Action::AuditWitnessAlarm,
                false,
                message,
                user,
                details,
            )
            .await;
            return Err(WitnessError::Refused(why).into());
        }
        let bytes = serde_json::to_vec_pretty(c).unwrap_or_default();
        tokio::task::spawn_blocking(move || crate::state::write_atomic(&file, &bytes))
            .await
            .map_err(|source| GatewayError::Task {
                what: "witness store",
                source,
            })?
            .map_err(|source| WitnessError::Store { dir, source })?;
        Ok(WitnessReply {
            outcome: WitnessOutcome::Accepted,
            sequence: c.sequence,
        })
    }
}
