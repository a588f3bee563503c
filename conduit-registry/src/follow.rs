//! [`RegistryFollower`]: the one loop every consumer of the registry runs (the DNS zone, the
//! proxy's routes, the gateway's certificates): wait for a change, coalesce whatever else is
//! already queued, read the active services once; the consumer rebuilds and swaps.

use std::fmt;
use std::sync::Arc;

use crate::{ListFilter, Registry, Revision, ServiceRecord, Watch};

/// Follows a registry's active services from a revision.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use conduit_registry::{InMemoryRegistry, Registry, RegistryFollower, Revision, ServiceRecord};
///
/// let reg = Arc::new(InMemoryRegistry::new());
/// let mut follower = RegistryFollower::new(reg.clone(), Revision::ZERO, "example");
/// reg.register(ServiceRecord::new("grafana".parse()?, "10.0.1.50:3000".parse()?)).await?;
/// reg.register(ServiceRecord::new("ollama".parse()?, "10.0.1.51:11434".parse()?)).await?;
/// // Both changes, read once.
/// let active = follower.next().await.expect("open");
/// assert_eq!(active.len(), 2);
/// # Ok(()) }
/// ```
pub struct RegistryFollower {
    registry: Arc<dyn Registry>,
    watch: Watch,
    what: &'static str,
}

impl fmt::Debug for RegistryFollower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryFollower")
            .field("registry", &self.registry)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl RegistryFollower {
    /// Follows `registry` from `since`; `what` names the consumer in the logs (`"DNS zone"`,
    /// `"routes"`).
    pub fn new(registry: Arc<dyn Registry>, since: Revision, what: &'static str) -> Self {
        let watch = registry.watch(since);
        Self {
            registry,
            watch,
            what,
        }
    }

    /// Waits for the next change (and takes every change queued behind it together), then
    /// returns the active services as they are now. A failed read is logged and waited out
    /// until the next change (the consumer keeps its last state). `None` once the registry
    /// is closed (dropped).
    ///
    /// # Cancel safety
    /// Cancel-safe: a change seen by a cancelled call is seen again by the next list.
    pub async fn next(&mut self) -> Option<Vec<Arc<ServiceRecord>>> {
        loop {
            if self.watch.next().await.is_none() {
                tracing::info!(what = self.what, "registry closed; keeping the last state");
                return None;
            }
            while self.watch.try_next().is_some() {}
            match self.registry.list(ListFilter::Active).await {
                Ok(services) => return Some(services),
                Err(error) => tracing::warn!(
                    %error,
                    what = self.what,
                    "cannot read the registry; keeping the last state"
                ),
            }
        }
    }
}
