//! A named OS thread that owns a blocking resource (a file, a SQLite connection) and serves
//! async callers in batches: group commit with back-pressure, never a silent drop.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::AuditError;

/// Where one caller's result goes.
pub(crate) type Reply<R> = oneshot::Sender<Result<R, Arc<AuditError>>>;

/// Answers every caller of a batch: each its own result, or all the same error.
pub(crate) fn reply_all<R>(replies: Vec<Reply<R>>, result: Result<Vec<R>, AuditError>) {
    match result {
        Ok(results) => {
            for (reply, res) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(res));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, batch = replies.len(), "audit write failed");
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(Arc::clone(&e)));
            }
        }
    }
}

/// The caller side: a bounded queue to the worker thread.
#[derive(Debug)]
pub(crate) struct Worker<T, R> {
    tx: mpsc::Sender<(T, Reply<R>)>,
}

impl<T, R> Clone for Worker<T, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Worker<T, R> {
    /// Starts the thread. `handle` gets up to `max_batch` queued items at once and returns
    /// one result per item, in order; an `Err` fails the whole batch.
    pub(crate) fn spawn(
        name: &str,
        capacity: usize,
        max_batch: usize,
        mut handle: impl FnMut(&[T]) -> Result<Vec<R>, AuditError> + Send + 'static,
    ) -> Result<Self, AuditError> {
        Self::spawn_with(name, capacity, max_batch, move |items, replies| {
            reply_all(replies, handle(&items));
        })
    }

    /// Starts the thread. `handle` gets up to `max_batch` queued items at once with their
    /// callers' replies, and answers them itself (now, or later from another thread).
    pub(crate) fn spawn_with(
        name: &str,
        capacity: usize,
        max_batch: usize,
        mut handle: impl FnMut(Vec<T>, Vec<Reply<R>>) + Send + 'static,
    ) -> Result<Self, AuditError> {
        let (tx, mut rx) = mpsc::channel::<(T, Reply<R>)>(capacity.max(1));
        let max_batch = max_batch.max(1);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Ends when every sender is gone and the queue is drained.
                while let Some(first) = rx.blocking_recv() {
                    let mut items = Vec::with_capacity(max_batch);
                    let mut replies = Vec::with_capacity(max_batch);
                    let (t, r) = first;
                    items.push(t);
                    replies.push(r);
                    while items.len() < max_batch {
                        match rx.try_recv() {
                            Ok((t, r)) => {
                                items.push(t);
                                replies.push(r);
                            }
                            Err(_) => break,
                        }
                    }
                    handle(items, replies);
                }
            })
            .map_err(|e| AuditError::Io {
                op: "start writer thread",
                path: name.into(),
                source: e,
            })?;
        Ok(Self { tx })
    }

    /// Queues `item` (waiting for room when the queue is full) and awaits its result.
    ///
    /// # Cancel safety
    /// Not cancel safe: once queued, the item is written even if the caller stops waiting.
    pub(crate) async fn call(&self, item: T) -> Result<R, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((item, reply))
            .await
            .map_err(|_| AuditError::Closed)?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(AuditError::Batch(e)),
            Err(_) => Err(AuditError::Closed),
        }
    }

    /// The blocking form, for callers outside a runtime.
    pub(crate) fn call_blocking(&self, item: T) -> Result<R, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send((item, reply))
            .map_err(|_| AuditError::Closed)?;
        match rx.blocking_recv() {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(AuditError::Batch(e)),
            Err(_) => Err(AuditError::Closed),
        }
    }
}
