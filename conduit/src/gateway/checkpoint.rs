//! Scheduled checkpoints of the sealed chain: one every `[audit] checkpoint_every` records
//! (signed on the appending task once its record is committed: an Ed25519 signature, no
//! I/O, nothing on the chain's writer thread) and at least every `checkpoint_interval`
//! while records are added. The latest is kept in `checkpoint.json`, served at
//! `GET /v1/audit/checkpoint` and sent to the witnesses.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use conduit_audit::{AuditError, CapsuleStore, Checkpoint, SealKey, Sealed};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::witness::Witnesses;
use crate::state::StateDir;

/// Takes and keeps the checkpoints of the state directory's chain.
pub(super) struct Checkpointer {
    key: SealKey,
    every: u64,
    db: PathBuf,
    file: PathBuf,
    inner: Mutex<Inner>,
    due: Notify,
    /// What `checkpoint.json` holds; one write at a time, never an older one over a newer.
    kept: tokio::sync::Mutex<Option<Checkpoint>>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("every", &self.every)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// The chain's head: sequence and hash.
    head: Option<(u64, String)>,
    /// Records sealed since the latest checkpoint.
    since: u64,
    latest: Option<Checkpoint>,
}

impl Checkpointer {
    /// Reads the chain's head and the latest checkpoint kept.
    ///
    /// # Errors
    /// [`AuditError`] when the chain or the key cannot be read.
    pub(super) fn open(state: &StateDir, every: u64) -> Result<Self, AuditError> {
        let key = SealKey::load_or_create(state.path())?;
        let db = state.capsules_db();
        let head = CapsuleStore::open(&db)?
            .checkpoint(&key)?
            .map(|c| (c.sequence, c.head_hash));
        let file = state.checkpoint();
        let latest = match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<Checkpoint>(&bytes) {
                Ok(c) => Some(c),
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "the kept checkpoint cannot be read; a new one replaces it");
                    None
                }
            },
            Err(_) => None,
        };
        Ok(Self {
            key,
            every,
            db,
            file,
            inner: Mutex::new(Inner {
                head,
                since: 0,
                latest,
            }),
            due: Notify::new(),
            kept: tokio::sync::Mutex::new(None),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A record was sealed: a checkpoint when `every` records have been since the last.
    pub(super) fn observe(&self, sealed: &Sealed) {
        let mut i = self.inner();
        i.head = Some((sealed.sequence, sealed.hash.clone()));
        i.since += 1;
        if self.every > 0 && i.since >= self.every {
            self.sign(&mut i);
        }
    }

    fn sign(&self, i: &mut Inner) -> Option<Checkpoint> {
        let (sequence, hash) = i.head.clone()?;
        let c = Checkpoint::sign(sequence, hash, &self.key);
        i.latest = Some(c.clone());
        i.since = 0;
        self.due.notify_one();
        Some(c)
    }

    /// A checkpoint of the head now (`None` for an empty chain); kept and sent on.
    pub(super) fn take(&self) -> Option<Checkpoint> {
        self.sign(&mut self.inner())
    }

    /// The latest checkpoint.
    /// The sequence of the chain's last sealed record (`None`: nothing sealed yet).
    pub(super) fn head_sequence(&self) -> Option<u64> {
        self.inner().head.as_ref().map(|(seq, _)| *seq)
    }

    pub(super) fn latest(&self) -> Option<Checkpoint> {
        self.inner().latest.clone()
    }

    /// The chain's lines of `/metrics`: the head's sequence, the latest checkpoint's
    /// sequence and age.
    pub(super) fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let i = self.inner();
        if let Some((seq, _)) = &i.head {
            let _ = writeln!(
                out,
                "# HELP conduit_audit_last_sequence The sealed chain's head (records minus one).\n# TYPE conduit_audit_last_sequence gauge\nconduit_audit_last_sequence {seq}"
            );
        }
        if let Some(c) = &i.latest {
            let _ = writeln!(
                out,
                "# HELP conduit_audit_checkpoint_sequence The latest checkpoint's sequence.\n# TYPE conduit_audit_checkpoint_sequence gauge\nconduit_audit_checkpoint_sequence {}",
                c.sequence
            );
            if let Some(t) = checkpoint_time(&c.created_at) {
                let _ = writeln!(
                    out,
                    "# HELP conduit_audit_checkpoint_timestamp_seconds When the latest checkpoint was signed (Unix time).\n# TYPE conduit_audit_checkpoint_timestamp_seconds gauge\nconduit_audit_checkpoint_timestamp_seconds {t}"
                );
            }
        }
    }

    /// Whether records were sealed since the latest checkpoint.
    fn behind(&self) -> bool {
        let i = self.inner();
        match (&i.head, &i.latest) {
            (Some((seq, _)), Some(l)) => *seq != l.sequence,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The hash of this chain's record at `sequence` (a witness's anchor), read off the
    /// async threads.
    pub(super) async fn hash_at(&self, sequence: u64) -> Result<Option<String>, AuditError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || CapsuleStore::open(&db)?.hash_at(sequence))
            .await
            .map_err(|e| AuditError::Io {
                op: "read the chain",
                path: self.db.clone(),
                source: std::io::Error::other(e),
            })?
    }

    /// Writes `c` to `checkpoint.json` (crash-safe), off the async threads.
    pub(super) async fn keep(&self, c: &Checkpoint) {
        let mut kept = self.kept.lock().await;
        let newer = kept.as_ref().is_none_or(|k| {
            (c.sequence, c.created_at.as_str()) > (k.sequence, k.created_at.as_str())
        });
        if !newer {
            return;
        }
        let file = self.file.clone();
        let bytes = serde_json::to_vec_pretty(c).unwrap_or_default();
        let written =
            tokio::task::spawn_blocking(move || crate::state::write_atomic(&file, &bytes)).await;
        if matches!(written, Ok(Ok(()))) {
            *kept = Some(c.clone());
        } else {
            tracing::error!(file = %self.file.display(), "cannot keep the checkpoint");
        }
    }
}

/// A checkpoint's `created_at` (`2026-11-23T10:00:00.123456+00:00`) as Unix seconds.
fn checkpoint_time(created_at: &str) -> Option<i64> {
    time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// Takes a checkpoint every `interval` while records are added, keeps each one, and sends
/// it to the witnesses (again at the next round when one could not be reached).
pub(super) async fn run(
    cp: Arc<Checkpointer>,
    interval: Duration,
    (mut witnesses, store): (Witnesses, super::store::StoreLink),
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {
                if cp.behind() {
                    cp.take();
                }
            }
            () = cp.due.notified() => {}
        }
        let Some(latest) = cp.latest() else { continue };
        cp.keep(&latest).await;
        witnesses.send(&cp, &latest).await;
        store.publish_checkpoint(&cp, &latest).await;
    }
}

/// Verifies the chain every `interval` on the blocking pool (every record's hash and link,
/// then the latest kept checkpoint), and audits a failure as `audit_verify` (and the
/// recovery after one); the record is also an `audit` event, which the alerter turns into
/// `ConduitAuditChainInvalid`.
pub(super) async fn verify(
    cp: Arc<Checkpointer>,
    interval: Duration,
    rep: super::tasks::Reporter,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let db = cp.db.clone();
        let latest = cp.latest();
        let checked = tokio::task::spawn_blocking(move || -> Result<Option<String>, AuditError> {
            let store = CapsuleStore::open(&db)?;
            let report = store.verify(conduit_audit::Level::Full, None)?;
            if let Some(e) = report.errors.first() {
                return Ok(Some(format!("{} (capsule {})", e.error, e.capsule_id)));
            }
            if let Some(c) = latest
                && let Err(why) = store.verify_checkpoint(&c)?
            {
                return Ok(Some(why.to_string()));
            }
            Ok(None)
        })
        .await;
        let problem = match checked {
            Ok(Ok(p)) => p,
            Ok(Err(error)) => {
                tracing::warn!(%error, "the sealed chain could not be read for verification");
                continue;
            }
            Err(_) => continue,
        };
        match (problem, failing) {
            (Some(why), _) => {
                tracing::error!(%why, "the sealed audit chain does not verify");
                let msg = format!("The sealed audit chain does not verify: {why}");
                rep.audit_verify(false, msg, &why).await;
                failing = true;
            }
            (None, true) => {
                rep.audit_verify(true, "The sealed audit chain verifies again".to_owned(), "")
                    .await;
                failing = false;
            }
            (None, false) => {}
        }
    }
}
