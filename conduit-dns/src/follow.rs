//! The zone follows the registry: the registry's one follow loop, each change rebuilt into
//! a new [`Authority`] off the async threads and swapped in whole.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use conduit_registry::{ListFilter, Registry, Revision, ServiceRecord};

use crate::DnsError;
use crate::authority::Authority;
use crate::shared::Shared;
use crate::zone_config::ZoneConfig;

pub(crate) async fn load(
    registry: &dyn Registry,
) -> Result<(Vec<Arc<ServiceRecord>>, Revision), DnsError> {
    // The revision first: a change between the two calls is then seen again by the watch.
    let revision = registry.revision().await.map_err(DnsError::Registry)?;
    let services = registry
        .list(ListFilter::Active)
        .await
        .map_err(DnsError::Registry)?;
    Ok((services, revision))
}

/// A SOA serial that always increases: one more than the last, or the time in seconds when
/// that is larger (so it also increases across restarts).
pub(crate) fn next_serial(previous: u32) -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0);
    previous.wrapping_add(1).max(now)
}

/// Rebuilds the zone on every registry change (the registry's one follow loop) and swaps it
/// in.
pub(crate) async fn follow(
    registry: Arc<dyn Registry>,
    config: ZoneConfig,
    shared: Arc<Shared>,
    since: Revision,
) {
    answer(&shared).await;
    let mut follower = conduit_registry::RegistryFollower::new(registry, since, "DNS zone");
    while let Some(services) = follower.next().await {
        rebuild(&config, &shared, services).await;
    }
}

/// Precomputes the answers of the zone the server started with (it answers meanwhile,
/// through the general path), off the async threads.
pub(crate) async fn answer(shared: &Arc<Shared>) {
    let target = Arc::clone(shared);
    let done = tokio::task::spawn_blocking(move || {
        let answered = target.authority().answered();
        let names = answered.name_count();
        target.install(answered);
        names
    })
    .await;
    match done {
        Ok(names) => tracing::debug!(names, "zone answers precomputed"),
        Err(e) => tracing::warn!(error = %e, "zone precompute task failed; answering without it"),
    }
}

async fn rebuild(config: &ZoneConfig, shared: &Arc<Shared>, services: Vec<Arc<ServiceRecord>>) {
    let forwarding = shared.forwarder.is_some();
    let cfg = config.clone();
    let target = Arc::clone(shared);
    // Built and swapped in off the async threads: the state it replaces is freed there too.
    let built = tokio::task::spawn_blocking(move || {
        let previous = target.authority();
        let serial = next_serial(previous.serial());
        let authority = Authority::rebuild(&previous, &cfg, &services, serial, forwarding)?;
        drop(previous);
        let built = (
            authority.serial(),
            authority.name_count(),
            authority.was_patched(),
        );
        target.install(authority);
        Ok::<_, DnsError>(built)
    })
    .await;
    match built {
        Ok(Ok((serial, names, patched))) => {
            tracing::debug!(serial, names, patched, "zone rebuilt");
            shared.counters.rebuilds.fetch_add(1, Ordering::Relaxed);
            shared
                .reloads
                .send_replace(Some(crate::ZoneReload { serial, names }));
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot rebuild the zone; serving the last state")
        }
        Err(e) => {
            tracing::warn!(error = %e, "zone rebuild task failed; serving the last state")
        }
    }
}
