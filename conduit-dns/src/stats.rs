//! The server's counters: shared atomics, what one UDP thread or TCP connection counts
//! locally and adds in one go, and the [`DnsStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::Transport;

/// Counters of a running server (all since start).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) udp_queries: AtomicU64,
    pub(crate) tcp_queries: AtomicU64,
    pub(crate) nxdomain: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) formerr: AtomicU64,
    pub(crate) servfail: AtomicU64,
    pub(crate) truncated: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) rebuilds: AtomicU64,
}

impl Counters {
    /// The counters now.
    pub(crate) fn snapshot(&self) -> DnsStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DnsStats {
            udp_queries: get(&self.udp_queries),
            tcp_queries: get(&self.tcp_queries),
            nxdomain: get(&self.nxdomain),
            refused: get(&self.refused),
            formerr: get(&self.formerr),
            servfail: get(&self.servfail),
            truncated: get(&self.truncated),
            forwarded: get(&self.forwarded),
            dropped: get(&self.dropped),
            rebuilds: get(&self.rebuilds),
        }
    }
}

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsStats {
    /// Queries received over UDP.
    pub udp_queries: u64,
    /// Queries received over TCP.
    pub tcp_queries: u64,
    /// Answers with NXDOMAIN.
    pub nxdomain: u64,
    /// Answers with REFUSED.
    pub refused: u64,
    /// Answers with FORMERR.
    pub formerr: u64,
    /// Answers with SERVFAIL.
    pub servfail: u64,
    /// UDP answers sent truncated (TC).
    pub truncated: u64,
    /// Queries forwarded to an upstream resolver.
    pub forwarded: u64,
    /// Packets dropped without an answer.
    pub dropped: u64,
    /// Zone rebuilds after registry changes.
    pub rebuilds: u64,
}

/// Counters kept by one UDP thread or TCP connection and added to the shared ones in one
/// go (per UDP batch, per TCP query).
#[derive(Debug)]
pub(crate) struct LocalCounts {
    transport: Transport,
    pub(crate) queries: u64,
    nxdomain: u64,
    refused: u64,
    formerr: u64,
    servfail: u64,
    pub(crate) truncated: u64,
    pub(crate) dropped: u64,
}

impl LocalCounts {
    pub(crate) fn new(transport: Transport) -> Self {
        Self {
            transport,
            queries: 0,
            nxdomain: 0,
            refused: 0,
            formerr: 0,
            servfail: 0,
            truncated: 0,
            dropped: 0,
        }
    }

    /// Counts one query answered with `response` (its rcode and TC bit).
    pub(crate) fn add(&mut self, response: &[u8]) {
        self.queries += 1;
        if response.len() < 4 {
            return;
        }
        self.truncated += u64::from(response[2] & 0x02 != 0);
        match response[3] & 0x0f {
            1 => self.formerr += 1,
            2 => self.servfail += 1,
            3 => self.nxdomain += 1,
            5 => self.refused += 1,
            _ => {}
        }
    }

    pub(crate) fn flush(&mut self, c: &Counters) {
        let queries = match self.transport {
            Transport::Udp => &c.udp_queries,
            Transport::Tcp => &c.tcp_queries,
        };
        let pairs = [
            (queries, self.queries),
            (&c.nxdomain, self.nxdomain),
            (&c.refused, self.refused),
            (&c.formerr, self.formerr),
            (&c.servfail, self.servfail),
            (&c.truncated, self.truncated),
            (&c.dropped, self.dropped),
        ];
        for (counter, n) in pairs {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        *self = Self::new(self.transport);
    }
}
