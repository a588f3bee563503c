//! Sealing a batch in two steps, so that hashing and signing the next batch overlaps the
//! commit (and its fsync) of this one: [`prepare`] computes the capsules, hashes and
//! signatures on a predicted head; [`CapsuleStore::commit_prepared`] writes them in one
//! IMMEDIATE transaction after checking that the head is still the one predicted, and
//! computes them again on the real head when it is not (another writer, a failed commit).
//! The chain is therefore exactly what one-step sealing writes.

use std::borrow::Borrow;

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

    /// Whether `batches` chain one after the other from `head`: each prepared on the tail of
    /// the one before, the first on `head`.
    fn chain_from(batches: &[Self], head: &Head) -> bool {
        let mut at = head.clone();
        for b in batches {
            if b.after != at {
                return false;
            }
            at = b.tail();
        }
        !batches.is_empty()
    }
}

/// Capsules, hashes (in chain order) and signatures (on every core) of `events` after
/// `after`.
///
/// # Errors
/// [`AuditError`] when an event cannot be made canonical.
pub(crate) fn prepare<E: Borrow<AuditEvent>>(
    events: &[E],
    after: Head,
    key: &SealKey,
    id_salt: [u8; 16],
) -> Result<Prepared, AuditError> {
    prepare_with(events, after, id_salt, |hashes| sign_all(key, hashes))
}

/// [`prepare`], with the signatures made by `sign` (in order).
///
/// # Errors
/// [`AuditError`] when an event cannot be made canonical.
pub(crate) fn prepare_with<E: Borrow<AuditEvent>>(
    events: &[E],
    after: Head,
    id_salt: [u8; 16],
    sign: impl FnOnce(&[&str]) -> Vec<String>,
) -> Result<Prepared, AuditError> {
    let (mut seq, mut prev) = match &after {
        Some((s, h)) => (s + 1, Some(h.clone())),
        None => (0, None),
    };
    let mut hashed = Vec::with_capacity(events.len());
    for ev in events {
        let capsule = Capsule::for_event(ev.borrow(), seq, prev.clone(), id_salt);
        let data = capsule.canonical()?;
        let hash = crate::capsule::hex(&Sha3_256::digest(data.as_bytes()));
        prev = Some(hash.clone());
        seq += 1;
        hashed.push((capsule, data, hash));
    }
    let hashes: Vec<&str> = hashed.iter().map(|(_, _, h)| h.as_str()).collect();
    let signatures = sign(&hashes);
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

    /// Writes the `prepared` batches (made from `events`, in order) in one IMMEDIATE
    /// transaction; when there are none, or they do not chain from the real head (another
    /// writer, a failed commit), prepares `events` on the real head inside the transaction.
    /// Durable when this returns; nothing is written on error.
    ///
    /// # Errors
    /// [`AuditError::Database`], or an event that cannot be made canonical.
    pub(crate) fn commit_prepared<E: Borrow<AuditEvent>>(
        &mut self,
        events: &[E],
        prepared: Vec<Prepared>,
        key: &SealKey,
    ) -> Result<(Vec<Sealed>, Head), AuditError> {
        let path = self.path.clone();
        let id_salt = self.id_salt();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_err(&path, e))?;
        let now = head(&tx, &path)?;
        let prepared = if Prepared::chain_from(&prepared, &now) {
            prepared
        } else {
            vec![prepare(events, now.clone(), key, id_salt)?]
        };
        let tail = prepared.last().map_or(now, Prepared::tail);
        let mut out = Vec::with_capacity(events.len());
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO capsules (id, type, sequence, previous_hash, data, hash, signature, \
                     signature_pq, signed_at, signed_by, session_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '', ?8, ?9, NULL)",
                )
                .map_err(|e| db_err(&path, e))?;
            let signed_by = key.fingerprint();
            for batch in prepared {
                for row in batch.rows {
                    ins.execute(params![
                        row.capsule.id,
                        row.capsule.kind,
                        i64::try_from(row.capsule.sequence).unwrap_or(i64::MAX),
                        row.capsule.previous_hash,
                        row.data,
                        row.hash,
                        row.signature,
                        batch.signed_at,
                        signed_by
                    ])
                    .map_err(|e| db_err(&path, e))?;
                    out.push(Sealed {
                        sequence: row.capsule.sequence,
                        hash: row.hash,
                    });
                }
            }
        }
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok((out, tail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Level, Outcome};

    fn events(from: usize, n: usize) -> Vec<AuditEvent> {
        (from..from + n)
            .map(|i| {
                AuditEvent::new(
                    "service_register",
                    Outcome::Success,
                    format!("Registered svc-{i}"),
                    "test",
                    serde_json::Map::new(),
                )
                .unwrap()
            })
            .collect()
    }

    /// An empty chain in a temporary directory (kept while the guard lives) and its key.
    fn chain(seed: u8) -> (tempfile::TempDir, SealKey, CapsuleStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = CapsuleStore::open(dir.path().join("c.db")).unwrap();
        (dir, SealKey::from_seed(&[seed; 32]), store)
    }

    #[test]
    fn batches_prepared_one_after_another_commit_together_in_order() {
        let (_dir, key, mut store) = chain(3);
        let salt = store.id_salt();
        let (a, b) = (events(0, 3), events(3, 2));
        let first = prepare(&a, store.head().unwrap(), &key, salt).unwrap();
        let second = prepare(&b, first.tail(), &key, salt).unwrap();
        let expected = second.tail();
        let all: Vec<_> = a.iter().chain(&b).cloned().collect();
        let (sealed, tail) = store
            .commit_prepared(&all, vec![first, second], &key)
            .unwrap();
        assert_eq!(
            sealed.iter().map(|s| s.sequence).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(tail, expected);
        assert_eq!(store.head().unwrap(), expected);
        let report = store
            .verify(Level::Signatures, Some(&key.public_hex()))
            .unwrap();
        assert_eq!((report.valid, report.total_capsules), (true, 5));
    }

    #[test]
    fn batches_that_do_not_chain_from_the_head_are_sealed_again_on_it() {
        let (_dir, key, mut store) = chain(4);
        let salt = store.id_salt();
        let (a, b) = (events(0, 2), events(2, 2));
        let first = prepare(&a, store.head().unwrap(), &key, salt).unwrap();
        // Prepared on the empty chain too, as if the first had not been seen.
        let stale = prepare(&b, None, &key, salt).unwrap();
        let all: Vec<_> = a.iter().chain(&b).cloned().collect();
        let (sealed, _) = store
            .commit_prepared(&all, vec![first, stale], &key)
            .unwrap();
        assert_eq!(
            sealed.iter().map(|s| s.sequence).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        let report = store
            .verify(Level::Signatures, Some(&key.public_hex()))
            .unwrap();
        assert_eq!((report.valid, report.total_capsules), (true, 4));
        assert_eq!(
            store
                .events()
                .unwrap()
                .iter()
                .map(|(_, e)| e.clone())
                .collect::<Vec<_>>(),
            all.into_iter().map(Some).collect::<Vec<_>>()
        );
    }
}
