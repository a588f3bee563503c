//! Sealing a batch in two steps, so that hashing and signing the next batch overlaps the
//! commit (and its fsync) of this one: [`prepare`] computes the capsules, hashes and
//! signatures on a predicted head; [`CapsuleStore::commit_prepared`] writes them in one
//! IMMEDIATE transaction after checking that the head is still the one predicted, and
//! computes them again on the real head when it is not (another writer, a failed commit).
//! The chain is therefore exactly what one-step sealing writes.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use sha3::{Digest, Sha3_256};

use crate::chain::{db_err, sign_all};
use crate::{AuditError, AuditEvent, Capsule, CapsuleStore, SealKey, Sealed};

/// The last record of a chain: its sequence and hash (`None`: the chain is empty).
pub(crate) type Head = Option<(u64, String)>;

/// A batch hashed and signed on the head it expects.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The head it chains on.
    pub(crate) after: Head,
    rows: Vec<Row>,
    signed_at: String,
}

#[derive(Debug)]
struct Row {
    capsule: Capsule,
    data: String,
    hash: String,
    signature: String,
}

impl Prepared {
    /// The head once it is written.
    pub(crate) fn tail(&self) -> Head {
        match self.rows.last() {
            Some(r) => Some((r.capsule.sequence, r.hash.clone())),
            None => self.after.clone(),
        }
    }
}

/// Capsules, hashes (in chain order) and signatures (on every core) of `events` after
/// `after`.
///
/// # Errors
/// [`AuditError`] when an event cannot be made canonical.
pub(crate) fn prepare(
    events: &[AuditEvent],
    after: Head,
    key: &SealKey,
    id_salt: [u8; 16],
) -> Result<Prepared, AuditError> {
    let (mut seq, mut prev) = match &after {
        Some((s, h)) => (s + 1, Some(h.clone())),
        None => (0, None),
    };
    let mut hashed = Vec::with_capacity(events.len());
    for ev in events {
        let capsule = Capsule::for_event(ev, seq, prev.clone(), id_salt);
        let data = capsule.canonical()?;
        let hash = crate::capsule::hex(&Sha3_256::digest(data.as_bytes()));
        prev = Some(hash.clone());
        seq += 1;
        hashed.push((capsule, data, hash));
    }
    let signatures = sign_all(key, hashed.iter().map(|(_, _, h)| h.as_str()).collect());
    let rows = hashed
        .into_iter()
        .zip(signatures)
        .map(|((capsule, data, hash), signature)| Row {
            capsule,
            data,
            hash,
            signature,
        })
        .collect();
    Ok(Prepared {
        after,
        rows,
        // One instant per batch.
        signed_at: crate::capsule::isoformat_now(),
    })
}

fn head(tx: &Transaction<'_>, path: &std::path::Path) -> Result<Head, AuditError> {
    tx.query_row(
        "SELECT sequence, hash FROM capsules ORDER BY sequence DESC LIMIT 1",
        [],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )
    .optional()
    .map(|h| h.map(|(s, h)| (u64::try_from(s).unwrap_or(0), h)))
    .map_err(|e| db_err(path, e))
}

impl CapsuleStore {
    /// The chain's last record now.
    ///
    /// # Errors
    /// [`AuditError::Database`].
    pub(crate) fn head(&mut self) -> Result<Head, AuditError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| db_err(&path, e))?;
        let h = head(&tx, &path)?;
        drop(tx);
        Ok(h)
    }

    /// Writes `prepared` (made from `events`) in one IMMEDIATE transaction; when there is
    /// none, or the head is no longer the one it was prepared on, prepares `events` on the
    /// real head inside the transaction. Durable when this returns; nothing is written on
    /// error.
    ///
    /// # Errors
    /// [`AuditError::Database`], or an event that cannot be made canonical.
    pub(crate) fn commit_prepared(
        &mut self,
        events: &[AuditEvent],
        prepared: Option<Prepared>,
        key: &SealKey,
    ) -> Result<(Vec<Sealed>, Head), AuditError> {
        let path = self.path.clone();
        let id_salt = self.id_salt();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_err(&path, e))?;
        let now = head(&tx, &path)?;
        let prepared = match prepared {
            Some(p) if p.after == now => p,
            _ => prepare(events, now, key, id_salt)?,
        };
        let tail = prepared.tail();
        let mut out = Vec::with_capacity(prepared.rows.len());
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO capsules (id, type, sequence, previous_hash, data, hash, signature, \
                     signature_pq, signed_at, signed_by, session_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '', ?8, ?9, NULL)",
                )
                .map_err(|e| db_err(&path, e))?;
            let signed_by = key.fingerprint();
            for row in prepared.rows {
                ins.execute(params![
                    row.capsule.id,
                    row.capsule.kind,
                    i64::try_from(row.capsule.sequence).unwrap_or(i64::MAX),
                    row.capsule.previous_hash,
                    row.data,
                    row.hash,
                    row.signature,
                    prepared.signed_at,
                    signed_by
                ])
                .map_err(|e| db_err(&path, e))?;
                out.push(Sealed {
                    sequence: row.capsule.sequence,
                    hash: row.hash,
                });
            }
        }
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok((out, tail))
    }
}
