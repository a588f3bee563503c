//! Long-lived helper threads that sign a share of each sealed batch: the sink seals a batch
//! every few milliseconds, and starting threads for each one (as `sign_all` does for the rare
//! large calls) cost more than the signing they shared on a small machine.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::SealKey;

/// Batches shorter than this are signed on the calling thread alone (here and in
/// `sign_all`).
pub(crate) const SHARED_FROM: usize = 8;

/// One helper: its share of hashes goes in, their signatures come back, in order.
#[derive(Debug)]
struct Helper {
    jobs: Option<SyncSender<Vec<String>>>,
    done: Receiver<Vec<String>>,
    thread: Option<JoinHandle<()>>,
}

/// Signs batches with `key` on the calling thread and `helpers` more, which end when the
/// pool is dropped.
#[derive(Debug)]
pub(crate) struct SignPool {
    key: Arc<SealKey>,
    helpers: Vec<Helper>,
}

impl SignPool {
    /// A pool with up to `helpers` helper threads (fewer if the system refuses to start them;
    /// none signs on the caller alone).
    pub(crate) fn start(key: Arc<SealKey>, helpers: usize) -> Self {
        let mut started = Vec::with_capacity(helpers);
        for i in 0..helpers {
            let (jobs, inbox) = sync_channel::<Vec<String>>(1);
            let (outbox, done) = sync_channel::<Vec<String>>(1);
            let k = Arc::clone(&key);
            let thread = std::thread::Builder::new()
                .name(format!("conduit-audit-sign-{i}"))
                .spawn(move || {
                    while let Ok(hashes) = inbox.recv() {
                        let signed = hashes.iter().map(|h| k.sign_hash(h)).collect();
                        if outbox.send(signed).is_err() {
                            return;
                        }
                    }
                });
            match thread {
                Ok(thread) => started.push(Helper {
                    jobs: Some(jobs),
                    done,
                    thread: Some(thread),
                }),
                Err(error) => {
                    tracing::warn!(%error, "cannot start an audit signing thread; signing with fewer");
                    break;
                }
            }
        }
        Self {
            key,
            helpers: started,
        }
    }

    /// Ed25519 signatures of `hashes`, in order.
    pub(crate) fn sign(&self, hashes: &[&str]) -> Vec<String> {
        if self.helpers.is_empty() || hashes.len() < SHARED_FROM {
            return hashes.iter().map(|h| self.key.sign_hash(h)).collect();
        }
        let chunk = hashes.len().div_ceil(self.helpers.len() + 1);
        let mut parts = hashes.chunks(chunk);
        let mine = parts.next().unwrap_or_default();
        // Each helper's share, or None when it is gone (signed here instead).
        let mut given = Vec::with_capacity(self.helpers.len());
        for (helper, part) in self.helpers.iter().zip(parts) {
            let owned: Vec<String> = part.iter().map(|h| (*h).to_owned()).collect();
            let sent = helper.jobs.as_ref().is_some_and(|j| j.send(owned).is_ok());
            given.push((helper, part, sent));
        }
        let mut out: Vec<String> = mine.iter().map(|h| self.key.sign_hash(h)).collect();
        for (helper, part, sent) in given {
            match sent.then(|| helper.done.recv().ok()).flatten() {
                Some(signed) => out.extend(signed),
                None => out.extend(part.iter().map(|h| self.key.sign_hash(h))),
            }
        }
        out
    }
}

impl Drop for SignPool {
    fn drop(&mut self) {
        for h in &mut self.helpers {
            // Closing its inbox ends the helper's loop.
            h.jobs = None;
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_key_in_order_whatever_the_helpers() {
        let key = Arc::new(SealKey::from_seed(&[9; 32]));
        let hashes: Vec<String> = (0..37).map(|i| format!("{i:064x}")).collect();
        let refs: Vec<&str> = hashes.iter().map(String::as_str).collect();
        let expected: Vec<String> = refs.iter().map(|h| key.sign_hash(h)).collect();
        for helpers in [0, 1, 3] {
            let pool = SignPool::start(Arc::clone(&key), helpers);
            assert_eq!(pool.helpers.len(), helpers);
            // Twice: the helpers serve one batch after another.
            assert_eq!(pool.sign(&refs), expected, "{helpers} helpers");
            assert_eq!(
                pool.sign(&refs[..5]),
                expected[..5],
                "{helpers} helpers, short"
            );
            assert_eq!(pool.sign(&refs), expected, "{helpers} helpers, again");
        }
    }
}
