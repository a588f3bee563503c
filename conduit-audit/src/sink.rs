//! The sinks behind [`AuditSink`](crate::AuditSink): [`CapsuleSink`] (sealed chain, one
//! writer thread, group commit) and [`AuditLog`] (JSONL always, sealing when it can).

use std::path::Path;

use std::sync::{Arc, Mutex, PoisonError};

use crate::prepared::{Head, Prepared, prepare_with};
use crate::signers::SignPool;
use crate::worker::{Reply, Worker, reply_all};

/// A batch on its way to the commit thread: its events, prepared, and their callers.
type Batch = (Vec<Arc<AuditEvent>>, Prepared, Vec<Reply<Sealed>>);
use crate::{AuditError, AuditEvent, AuditSink, CapsuleStore, JsonlSink, Receipt, SealKey, Sealed};

/// How many prepared batches one transaction commits at most.
const MERGED: usize = 4;

/// Settings of a [`CapsuleSink`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CapsuleOptions {
    /// How many events may wait for the writer before `append` waits (back-pressure).
    pub queue: usize,
    /// The most events sealed in one transaction (group commit).
    pub max_batch: usize,
}

impl Default for CapsuleOptions {
    fn default() -> Self {
        Self {
            queue: 8192,
            max_batch: 1024,
        }
    }
}

/// Seals every event into `capsules.db`. What is queued is taken as one batch, in queue
/// order: one thread hashes and signs it on the head the batch before will leave, while a
/// second, which owns the SQLite connection, commits that batch before in one IMMEDIATE
/// transaction (re-sealing a batch whose head another writer changed), so the chain stays
/// strictly ordered; callers await their own record's sequence and hash, once committed.
#[derive(Debug, Clone)]
pub struct CapsuleSink {
    worker: Worker<Arc<AuditEvent>, Sealed>,
}

impl CapsuleSink {
    /// Opens the chain at `db` and starts the writer. Without a key every append fails with
    /// [`AuditError::NoKey`] (the [`AuditLog`] keeps the JSONL log going and reports it).
    ///
    /// # Errors
    /// [`AuditError::Database`], [`AuditError::Io`].
    pub fn open(
        db: impl AsRef<Path>,
        key: Option<SealKey>,
        options: CapsuleOptions,
    ) -> Result<Self, AuditError> {
        let mut store = CapsuleStore::open(db)?;
        let Some(key) = key else {
            let worker = Worker::spawn(
                "conduit-audit-seal",
                options.queue,
                options.max_batch,
                |_| Err(AuditError::NoKey),
            )?;
            return Ok(Self { worker });
        };
        // Two threads: this batch is hashed and signed (on the head the last batch will
        // leave) while the ones before commit; the batches that queued up during a commit
        // (at most MERGED) are committed together in the next transaction, so a slow commit
        // makes the next one larger instead of leaving writers waiting one fsync each.
        let id_salt = store.id_salt();
        let mut predicted = store.head()?;
        let actual: Arc<Mutex<Option<Head>>> = Arc::default();
        let (to_commit, committing) = std::sync::mpsc::sync_channel::<Batch>(MERGED);
        let key = Arc::new(key);
        let commit_key = Arc::clone(&key);
        // The seal thread signs with a helper on each other core (measured on 2 cores: one
        // helper beside the commit thread seals more than none).
        let signers = SignPool::start(key, crate::chain::cores().saturating_sub(1));
        let told = Arc::clone(&actual);
        std::thread::Builder::new()
            .name("conduit-audit-commit".to_owned())
            .spawn(move || {
                while let Ok((mut events, first, mut replies)) = committing.recv() {
                    let mut prepared = vec![first];
                    while prepared.len() < MERGED {
                        let Ok((more, next, waiting)) = committing.try_recv() else {
                            break;
                        };
                        events.extend(more);
                        prepared.push(next);
                        replies.extend(waiting);
                    }
                    let expected = prepared.last().and_then(Prepared::tail);
                    let result = store.commit_prepared(&events, prepared, &commit_key);
                    // The next batch was prepared on `expected`: say so when the chain ended
                    // elsewhere (another writer, a failed commit).
                    let now = match &result {
                        Ok((_, tail)) => Some(tail.clone()),
                        Err(_) => store.head().ok(),
                    };
                    if let Some(now) = now.filter(|n| *n != expected) {
                        *told.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
                    }
                    reply_all(replies, result.map(|(sealed, _)| sealed));
                }
            })
            .map_err(|e| AuditError::Io {
                op: "start writer thread",
                path: "conduit-audit-commit".into(),
                source: e,
            })?;
        let worker = Worker::spawn_with(
            "conduit-audit-seal",
            options.queue,
            options.max_batch,
            move |events, replies| {
                if let Some(now) = actual.lock().unwrap_or_else(PoisonError::into_inner).take() {
                    predicted = now;
                }
                match prepare_with(&events, predicted.clone(), id_salt, |h| signers.sign(h)) {
                    Ok(prepared) => {
                        predicted = prepared.tail();
                        // Fails only once the commit thread is gone (it never leaves first).
                        if let Err(std::sync::mpsc::SendError((_, _, replies))) =
                            to_commit.send((events, prepared, replies))
                        {
                            reply_all(replies, Err(AuditError::Closed));
                        }
                    }
                    Err(e) => reply_all(replies, Err(e)),
                }
            },
        )?;
        Ok(Self { worker })
    }

    /// Seals one event; returns once it is committed.
    ///
    /// # Errors
    /// [`AuditError::Batch`] with the transaction's error, [`AuditError::Closed`].
    pub async fn seal(&self, event: AuditEvent) -> Result<Sealed, AuditError> {
        self.worker.call(Arc::new(event)).await
    }

    /// [`CapsuleSink::seal`] of an event shared with another writer (no copy).
    pub(crate) async fn seal_shared(&self, event: Arc<AuditEvent>) -> Result<Sealed, AuditError> {
        self.worker.call(event).await
    }
}

#[async_trait::async_trait]
impl AuditSink for CapsuleSink {
    async fn append(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        let sealed = self.seal(event).await?;
        Ok(Receipt {
            sealed: Some(sealed),
            seal_error: None,
        })
    }
}

#[async_trait::async_trait]
impl AuditSink for JsonlSink {
    async fn append(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        Self::append(self, event).await?;
        Ok(Receipt::default())
    }

    async fn history(&self) -> Result<Option<Vec<AuditEvent>>, AuditError> {
        let path = self.path().to_path_buf();
        let read = tokio::task::spawn_blocking(move || {
            crate::read_log(&path, &crate::LogFilter::default())
        })
        .await
        .map_err(|_| AuditError::Closed)??;
        Ok(Some(read.0))
    }
}

/// The first pause before sealing again.
const SEAL_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(200);
/// How long sealing is retried before the append fails.
const SEAL_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// The error itself when it came for a whole batch.
fn unbatched(e: &AuditError) -> &AuditError {
    match e {
        AuditError::Batch(inner) => unbatched(inner),
        other => other,
    }
}

/// What Conduit writes: every event to `audit.log`, then sealed into `capsules.db` when a
/// capsule sink is configured. A sealing failure never stops the JSONL log. A chain that is
/// locked or failing is tried again for up to 30 s; if it still fails, `append` returns
/// [`AuditError::Unsealed`] (the event is in the log, not in the chain: never silently). A
/// sink without a key logs and reports it in the [`Receipt`].
#[derive(Debug, Clone)]
pub struct AuditLog {
    jsonl: JsonlSink,
    capsules: Option<CapsuleSink>,
}

impl AuditLog {
    /// A log writing to `jsonl` and, when given, sealing with `capsules`.
    pub fn new(jsonl: JsonlSink, capsules: Option<CapsuleSink>) -> Self {
        Self { jsonl, capsules }
    }
}

#[async_trait::async_trait]
impl AuditSink for AuditLog {
    async fn append(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        let Some(capsules) = &self.capsules else {
            self.jsonl.append(event).await?;
            return Ok(Receipt::default());
        };
        // Both writers work at once; the event is in the log whatever happens to the seal.
        let event = Arc::new(event);
        let (logged, sealed) = tokio::join!(
            self.jsonl.append_shared(Arc::clone(&event)),
            capsules.seal_shared(Arc::clone(&event))
        );
        logged?;
        let mut sealed = sealed;
        // A locked or busy chain (another writer, a backup holding it) is waited out: the
        // event is sealed late rather than never. Each try already waits out SQLite's own
        // busy timeout.
        let mut pause = SEAL_RETRY_FIRST;
        let mut waited = std::time::Duration::ZERO;
        while let Err(e) = &sealed {
            if matches!(unbatched(e), AuditError::NoKey | AuditError::Closed)
                || waited >= SEAL_RETRY_FOR
            {
                break;
            }
            tracing::warn!(error = %e, "audit event logged, sealing failed; trying again");
            tokio::time::sleep(pause).await;
            waited += pause;
            pause = (pause * 2).min(std::time::Duration::from_secs(5));
            sealed = capsules.seal_shared(Arc::clone(&event)).await;
        }
        match sealed {
            Ok(s) => Ok(Receipt {
                sealed: Some(s),
                seal_error: None,
            }),
            // A configuration without a key: the log goes on, the receipt says why.
            Err(e) if matches!(unbatched(&e), AuditError::NoKey) => {
                tracing::error!(error = %e, "audit event logged but not sealed");
                Ok(Receipt {
                    sealed: None,
                    seal_error: Some(e.to_string()),
                })
            }
            Err(e) => {
                tracing::error!(error = %e, "audit event logged but not sealed");
                Err(AuditError::Unsealed(Box::new(e)))
            }
        }
    }

    async fn history(&self) -> Result<Option<Vec<AuditEvent>>, AuditError> {
        AuditSink::history(&self.jsonl).await
    }
}
