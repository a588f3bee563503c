//! The file-descriptor budget: the gateway raises its soft `RLIMIT_NOFILE` to the hard
//! limit at start and sizes every connection cap from what it got, so that a crowd of
//! clients can never take the descriptors that upstreams, the state files and the audit
//! database need (`accept` failing with "Too many open files").
//!
//! ```
//! let b = conduit::limits::FdBudget::of(1024);
//! assert!(b.client_connections() + b.dns_tcp_connections() + b.upstream_connections() < 1024);
//! ```

/// What the gateway may spend its descriptors on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// The soft limit in force.
    pub limit: u64,
    /// The soft limit before it was raised, when it was.
    pub raised_from: Option<u64>,
}

/// Descriptors kept for everything but connections: state files, the audit database, the
/// registry watcher, listeners, the admin API, health checks, DNS forwarding.
const RESERVE: u64 = 160;

impl FdBudget {
    /// A budget for a process allowed `limit` descriptors.
    pub fn of(limit: u64) -> Self {
        Self {
            limit,
            raised_from: None,
        }
    }

    fn spendable(&self) -> u64 {
        self.limit.saturating_sub(RESERVE).max(64)
    }

    fn share(&self, percent: u64, at_least: u64) -> usize {
        usize::try_from((self.spendable() * percent / 100).max(at_least)).unwrap_or(usize::MAX)
    }

    /// Client connections of the proxy (45 %).
    pub fn client_connections(&self) -> usize {
        self.share(45, 32)
    }

    /// Client connections from one address (a quarter of them: a NATed office still fits).
    pub fn client_connections_per_address(&self) -> usize {
        (self.client_connections() / 4).max(8)
    }

    /// Connections to upstreams, all of them (40 %): each upstream gets at most this.
    pub fn upstream_connections(&self) -> usize {
        self.share(40, 16)
    }

    /// DNS-over-TCP connections (10 %).
    pub fn dns_tcp_connections(&self) -> usize {
        self.share(10, 16)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the budget it gives.
///
/// # Errors
/// The operating system's error when the limit cannot be read (setting it is best effort).
pub fn raise_nofile() -> std::io::Result<FdBudget> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft >= hard {
        return Ok(FdBudget::of(soft));
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Ok(FdBudget {
            limit: hard,
            raised_from: Some(soft),
        }),
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit");
            Ok(FdBudget::of(soft))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_fit_the_limit() {
        for limit in [256, 1024, 4096, 65_536, 1_048_576] {
            let b = FdBudget::of(limit);
            let spent = b.client_connections() + b.upstream_connections() + b.dns_tcp_connections();
            assert!(spent as u64 + 64 <= limit.max(256), "{limit}: {spent}");
            assert!(b.client_connections_per_address() <= b.client_connections());
        }
        assert_eq!(FdBudget::of(1024).client_connections(), 388);
    }

    #[test]
    fn raising_keeps_or_raises() {
        let b = raise_nofile().unwrap();
        assert!(b.limit >= 64);
        if let Some(from) = b.raised_from {
            assert!(from < b.limit);
        }
    }
}
