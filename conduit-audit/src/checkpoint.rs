//! Checkpoints: a signed statement of the chain's head, and the check that the chain still
//! reaches it unchanged (what the reference verifier cannot see: records cut off the end).

use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::chain::db_err;
use crate::{AuditError, CapsuleStore, SealKey};

/// A signed statement of the chain's head at a moment: sequence, head hash and time.
///
/// The reference cannot see records deleted from the end of a chain (spec §5). Export a
/// checkpoint now and then (to another machine, a ticket, paper); verifying the chain against
/// it later proves that it still reaches that sequence with the same hash, so nothing
/// was cut off or rewritten up to there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The head's sequence when the checkpoint was taken.
    pub sequence: u64,
    /// The head's content hash.
    pub head_hash: String,
    /// When (`YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`).
    pub created_at: String,
    /// The sealing public key (hex).
    pub public_key: String,
    /// Ed25519 over [`Checkpoint::message`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// A checkpoint of the head `sequence` with hash `head_hash`, now, signed with `key`
    /// (an Ed25519 signature: microseconds, no I/O).
    pub fn sign(sequence: u64, head_hash: String, key: &SealKey) -> Self {
        let mut c = Self {
            sequence,
            head_hash,
            created_at: crate::capsule::isoformat_now(),
            public_key: key.public_hex(),
            signature: String::new(),
        };
        c.signature = key.sign_message(c.message().as_bytes());
        c
    }

    /// Whether its signature verifies with its own public key.
    ///
    /// # Errors
    /// The [`SignatureError`](crate::SignatureError).
    pub fn verify_signature(&self) -> Result<(), crate::SignatureError> {
        crate::seal::verify_message(&self.public_key, self.message().as_bytes(), &self.signature)
    }

    /// The signed bytes: `conduit-checkpoint-v1:<sequence>:<head_hash>:<created_at>`.
    pub fn message(&self) -> String {
        format!(
            "conduit-checkpoint-v1:{}:{}:{}",
            self.sequence, self.head_hash, self.created_at
        )
    }
}

impl CapsuleStore {
    /// A checkpoint of the current head, signed with `key`; `None` for an empty chain.
    ///
    /// # Errors
    /// [`AuditError::Database`].
    pub fn checkpoint(&self, key: &SealKey) -> Result<Option<Checkpoint>, AuditError> {
        let head: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT sequence, hash FROM capsules ORDER BY sequence DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| db_err(&self.path, e))?;
        Ok(head.map(|(seq, hash)| Checkpoint::sign(u64::try_from(seq).unwrap_or(0), hash, key)))
    }

    /// The hash of the record at `sequence`, if the chain has it.
    ///
    /// # Errors
    /// [`AuditError::Database`].
    pub fn hash_at(&self, sequence: u64) -> Result<Option<String>, AuditError> {
        let seq = i64::try_from(sequence).unwrap_or(i64::MAX);
        self.conn
            .query_row(
                "SELECT hash FROM capsules WHERE sequence = ?1",
                [seq],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_err(&self.path, e))
    }

    /// Checks the chain against a checkpoint: its signature, then that the record at its
    /// sequence still exists with the same hash. Run [`CapsuleStore::verify`] too: this checks
    /// the tail, `verify` the links.
    ///
    /// # Errors
    /// [`AuditError::Database`]; a failed check is `Ok(Err(`[`CheckpointFailure`]`))`.
    pub fn verify_checkpoint(
        &self,
        c: &Checkpoint,
    ) -> Result<Result<(), CheckpointFailure>, AuditError> {
        if let Err(e) = c.verify_signature() {
            return Ok(Err(CheckpointFailure::Signature(e)));
        }
        Ok(match self.hash_at(c.sequence)? {
            None => {
                let records = self.len()?;
                Err(CheckpointFailure::Truncated {
                    records,
                    sequence: c.sequence,
                    // Sequences start at 0: the checkpoint saw `sequence + 1` records.
                    missing: (c.sequence + 1).saturating_sub(records),
                })
            }
            Some(h) if h != c.head_hash => Err(CheckpointFailure::Rewritten {
                sequence: c.sequence,
            }),
            Some(_) => Ok(()),
        })
    }
}

/// Why a chain does not hold up to a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointFailure {
    /// The checkpoint's own signature does not verify.
    #[error("checkpoint signature: {0}")]
    Signature(crate::SignatureError),
    /// The chain ends before the checkpoint's record.
    #[error(
        "chain truncated: {missing} records missing (it has {records} records, the checkpoint saw sequence {sequence})"
    )]
    Truncated {
        /// Records in the chain now.
        records: u64,
        /// The checkpoint's sequence.
        sequence: u64,
        /// How many records the checkpoint saw that the chain no longer has.
        missing: u64,
    },
    /// The checkpoint's record has another hash now.
    #[error("record {sequence} was rewritten since the checkpoint (its head hash differs)")]
    Rewritten {
        /// The checkpoint's sequence.
        sequence: u64,
    },
}
