//! What the UDP threads, the TCP connections and the registry follower share: the current
//! [`Authority`] (swapped whole on each rebuild), the forwarder, the counters; and the
//! forwarding of a query the zone does not answer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use crate::authority::Authority;
use crate::forward::Forwarder;
use crate::stats::Counters;

/// What every listener of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) authority: RwLock<Arc<Authority>>,
    pub(crate) forwarder: Option<Forwarder>,
    pub(crate) counters: Counters,
    /// Forwarded UDP queries in flight (spawned from the UDP threads); waited for at
    /// shutdown.
    pub(crate) forwards: tokio_util::task::TaskTracker,
    /// The last zone swapped in (for whoever watches reloads).
    pub(crate) reloads: tokio::sync::watch::Sender<Option<crate::ZoneReload>>,
    /// When set, names a client may not reach are hidden from it (split horizon).
    pub(crate) visibility: arc_swap::ArcSwapOption<conduit_registry::access::Evaluator>,
}

impl Shared {
    pub(crate) fn authority(&self) -> Arc<Authority> {
        match self.authority.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub(crate) fn install(&self, authority: Authority) {
        let authority = Arc::new(authority);
        match self.authority.write() {
            Ok(mut guard) => *guard = authority,
            Err(poisoned) => *poisoned.into_inner() = authority,
        }
    }
}

/// Whether a forwarded answer of `len` bytes is too big for the client's UDP limit.
pub(crate) fn response_needs_truncation(query: &[u8], len: usize) -> bool {
    len > crate::wire::udp_limit_of(query)
}

pub(crate) async fn forward_or_servfail(shared: &Shared, query: &[u8]) -> Vec<u8> {
    shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    let answer = match &shared.forwarder {
        Some(forwarder) => forwarder.forward(query).await,
        None => None,
    };
    answer.unwrap_or_else(|| {
        shared.counters.servfail.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        crate::wire::servfail(query, &mut out);
        out
    })
}
