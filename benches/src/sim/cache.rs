//! The simulated prefix cache: prompts cut into blocks of [`BLOCK_TOKENS`] tokens, each
//! block keyed by a hash chained over the blocks before it (so a block matches only after
//! the same prefix), kept least-recently-used up to a capacity in tokens.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash as _, Hasher as _};

/// Tokens per cache block (vLLM's default block size).
pub const BLOCK_TOKENS: usize = 16;
/// Bytes of text per token (the simulator's tokenizer: every 4 bytes are a token).
pub const BYTES_PER_TOKEN: usize = 4;

/// An LRU set of chained block hashes.
#[derive(Debug)]
pub(crate) struct PrefixCache {
    capacity_blocks: usize,
    last_use: HashMap<u64, u64>,
    order: VecDeque<(u64, u64)>,
    clock: u64,
}

impl PrefixCache {
    pub(crate) fn new(capacity_tokens: usize) -> Self {
        Self {
            capacity_blocks: (capacity_tokens / BLOCK_TOKENS).max(1),
            last_use: HashMap::new(),
            order: VecDeque::new(),
            clock: 0,
        }
    }

    /// The chained hashes of `prompt`'s whole blocks.
    pub(crate) fn blocks(prompt: &[u8]) -> Vec<u64> {
        let mut prev = 0u64;
        prompt
            .chunks_exact(BLOCK_TOKENS * BYTES_PER_TOKEN)
            .map(|chunk| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                prev.hash(&mut h);
                chunk.hash(&mut h);
                prev = h.finish();
                prev
            })
            .collect()
    }

    /// Tokens of `blocks` already cached (the longest cached prefix), then caches them all.
    pub(crate) fn lookup_and_insert(&mut self, blocks: &[u64]) -> usize {
        let hit = blocks
            .iter()
            .take_while(|b| self.last_use.contains_key(b))
            .count();
        for &b in blocks {
            self.clock += 1;
            self.last_use.insert(b, self.clock);
            self.order.push_back((self.clock, b));
        }
        while self.last_use.len() > self.capacity_blocks {
            let Some((stamp, b)) = self.order.pop_front() else {
                break;
            };
            if self.last_use.get(&b) == Some(&stamp) {
                self.last_use.remove(&b);
            }
        }
        // Stale entries (a block used again later) are dropped as they reach the front.
        if self.order.len() > 4 * self.capacity_blocks {
            let live = &self.last_use;
            self.order.retain(|(s, b)| live.get(b) == Some(s));
        }
        hit * BLOCK_TOKENS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_the_longest_cached_prefix_and_evicts_the_oldest() {
        let mut c = PrefixCache::new(4 * BLOCK_TOKENS);
        let a = vec![b'a'; 3 * 64];
        let mut ab = a.clone();
        ab.extend(vec![b'b'; 64]);
        assert_eq!(c.lookup_and_insert(&PrefixCache::blocks(&a)), 0);
        assert_eq!(c.lookup_and_insert(&PrefixCache::blocks(&ab)), 3 * 16);
        // A different first block: nothing after it matches.
        let mut z = vec![b'z'; 64];
        z.extend(vec![b'a'; 2 * 64]);
        assert_eq!(c.lookup_and_insert(&PrefixCache::blocks(&z)), 0);
        // Capacity 4 blocks: `a`'s first blocks are gone.
        assert_eq!(c.lookup_and_insert(&PrefixCache::blocks(&a)), 0);
    }
}
