//! The simulated engine: a batch of at most `max_batch` sequences with a FIFO queue behind
//! it, one prefill at a time at `prefill_tokens_per_s` for the prompt's tokens not in the
//! prefix cache, then `decode_tokens_per_s` per sequence until `max_tokens`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::SimParams;
use super::cache::{BYTES_PER_TOKEN, PrefixCache};

/// What an engine has done, for tests and the benchmark.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Requests served (completions, chats, generations), by model.
    pub by_model: Mutex<Vec<(String, u64)>>,
    /// Prompt tokens seen.
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens found in the prefix cache.
    pub cached_tokens: AtomicU64,
    /// Request body bytes received, over all requests, counted as they arrive.
    pub body_bytes: AtomicU64,
    /// The last request body's length and [`body_digest`](super::body_digest).
    pub last_body: Mutex<Option<(usize, u64)>>,
}

impl SimStats {
    /// Requests served for `model`.
    pub fn served(&self, model: &str) -> u64 {
        self.by_model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(m, _)| m == model)
            .map_or(0, |(_, n)| *n)
    }

    /// Requests served for any model.
    pub fn total(&self) -> u64 {
        self.by_model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, n)| n)
            .sum()
    }

    pub(crate) fn count_request(&self, model: &str) {
        let mut v = self.by_model.lock().unwrap_or_else(PoisonError::into_inner);
        match v.iter_mut().find(|(m, _)| m == model) {
            Some((_, n)) => *n += 1,
            None => v.push((model.to_owned(), 1)),
        }
    }
}

/// One engine's scheduler state.
pub(crate) struct Engine {
    pub(crate) params: SimParams,
    pub(crate) started: Instant,
    batch: Arc<Semaphore>,
    prefill: AsyncMutex<()>,
    cache: Mutex<PrefixCache>,
    pub(crate) waiting: AtomicUsize,
    pub(crate) running: AtomicUsize,
    /// Tokens held by running sequences (their KV cache).
    kv_tokens: AtomicUsize,
    pub(crate) stats: Arc<SimStats>,
}

/// A sequence admitted to the batch; its slot and KV tokens are freed when dropped.
pub(crate) struct Running {
    engine: Arc<Engine>,
    _slot: OwnedSemaphorePermit,
    kv: usize,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.engine.running.fetch_sub(1, Ordering::Relaxed);
        self.engine.kv_tokens.fetch_sub(self.kv, Ordering::Relaxed);
    }
}

impl Running {
    /// The time after the first token at which token `i` (from 1) is out.
    pub(crate) fn token_at(&self, i: u32) -> Duration {
        Duration::from_secs_f64(f64::from(i) / self.engine.params.decode_tokens_per_s)
    }
}

impl Engine {
    pub(crate) fn new(params: SimParams, stats: Arc<SimStats>) -> Self {
        Self {
            batch: Arc::new(Semaphore::new(params.max_batch)),
            prefill: AsyncMutex::new(()),
            cache: Mutex::new(PrefixCache::new(params.prefix_cache_tokens)),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            kv_tokens: AtomicUsize::new(0),
            started: Instant::now(),
            params,
            stats,
        }
    }

    /// Whether the model is loaded yet.
    pub(crate) fn loaded(&self) -> bool {
        self.started.elapsed() >= self.params.load_time
    }

    /// KV-cache use, 0 to 1.
    pub(crate) fn kv_use(&self) -> f64 {
        let held = self.kv_tokens.load(Ordering::Relaxed) as f64;
        (held / self.params.prefix_cache_tokens as f64).min(1.0)
    }

    /// Queues a request for `model` with `prompt`, waits for a batch slot and its prefill;
    /// returns when the first token is out.
    pub(crate) async fn admit(self: &Arc<Self>, model: &str, prompt: &[u8]) -> Option<Running> {
        self.stats.count_request(model);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::clone(&self.batch).acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let slot = slot.ok()?;
        self.running.fetch_add(1, Ordering::Relaxed);
        let tokens = prompt.len().div_ceil(BYTES_PER_TOKEN);
        self.kv_tokens.fetch_add(tokens, Ordering::Relaxed);
        let running = Running {
            engine: Arc::clone(self),
            _slot: slot,
            kv: tokens,
        };
        let _prefill = self.prefill.lock().await;
        let blocks = PrefixCache::blocks(prompt);
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lookup_and_insert(&blocks)
            .min(tokens);
        self.stats
            .prompt_tokens
            .fetch_add(tokens as u64, Ordering::Relaxed);
        self.stats
            .cached_tokens
            .fetch_add(cached as u64, Ordering::Relaxed);
        let work = (tokens - cached) as f64 / self.params.prefill_tokens_per_s;
        tokio::time::sleep(Duration::from_secs_f64(work)).await;
        Some(running)
    }
}
