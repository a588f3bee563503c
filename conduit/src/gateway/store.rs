//! The registry's store as the gateway opens, keeps and reports it: the state directory's
//! `services.json`, or (feature `etcd`) an etcd cluster shared with the site's other
//! gateways, with the signed last-known-good snapshot kept after every applied change and
//! the store's reachability in `status`, `/metrics` and a `registry` event.

use std::sync::Arc;

use conduit_registry::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::GatewayError;
use crate::config::ConduitConfig;
#[cfg(feature = "etcd")]
use crate::events::EventBus;
use crate::state::StateDir as State;

/// The shared store behind the registry, when there is one.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreLink {
    #[cfg(feature = "etcd")]
    etcd: Option<conduit_registry::etcd::EtcdRegistry>,
}

/// Opens the registry `settings` name: the state directory's, or the shared store (starting
/// from the last-known-good snapshot when the store is unreachable). The CLI uses it too,
/// with `snapshot` off: a command must not change what it cannot store.
///
/// # Errors
/// The state directory's registry cannot be opened; the store is unreachable with no
/// snapshot (or `snapshot` off); the snapshot does not verify.
pub async fn open_registry(
    state: &State,
    settings: &ConduitConfig,
    origin: &str,
) -> Result<Arc<dyn Registry>, GatewayError> {
    Ok(open(state, settings, origin, false).await?.0)
}

pub(crate) async fn open(
    state: &State,
    settings: &ConduitConfig,
    origin: &str,
    snapshot: bool,
) -> Result<(Arc<dyn Registry>, StoreLink), GatewayError> {
    #[cfg(feature = "etcd")]
    if let Some(cfg) = settings.registry.etcd(origin).map_err(|e| *e)? {
        let last_known_good = if snapshot {
            let key = state.seal_key_or_create()?;
            super::snapshot::read(state.path(), &key)?
        } else {
            None
        };
        let reg = conduit_registry::etcd::EtcdRegistry::connect(cfg, last_known_good).await?;
        return Ok((Arc::new(reg.clone()), StoreLink { etcd: Some(reg) }));
    }
    let _ = (settings, origin, snapshot);
    Ok((Arc::new(state.open_registry()?), StoreLink::default()))
}

impl StoreLink {
    /// Whether the registry lives in a store shared with other gateways.
    pub(crate) fn is_shared(&self) -> bool {
        #[cfg(feature = "etcd")]
        if self.etcd.is_some() {
            return true;
        }
        false
    }

    /// The store's state for `status` (`None`: the state directory's registry).
    pub(crate) fn status(&self) -> Option<crate::api::RegistryStore> {
        #[cfg(feature = "etcd")]
        if let Some(reg) = &self.etcd {
            let h = reg.health().borrow().clone();
            return Some(crate::api::RegistryStore {
                url: reg.store_url(),
                reachable: h.reachable,
                since: h.since.to_string(),
                reason: h.reason,
                store_revision: h.store_revision,
            });
        }
        None
    }

    /// Its series: reachable (1/0), since when it is unreachable, the store revision.
    pub(crate) fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let Some(s) = self.status() else { return };
        let stale = if s.reachable {
            0
        } else {
            conduit_registry::Timestamp::parse(&s.since).map_or(0, |t| t.unix_seconds())
        };
        let _ = writeln!(
            out,
            "# HELP conduit_registry_store_reachable Whether the shared registry store answers (0: serving the last-known state, changes refused).\n# TYPE conduit_registry_store_reachable gauge\nconduit_registry_store_reachable {}\n# HELP conduit_registry_store_stale_since_seconds Since when the store has been unreachable (Unix time; 0 while it answers).\n# TYPE conduit_registry_store_stale_since_seconds gauge\nconduit_registry_store_stale_since_seconds {stale}\n# HELP conduit_registry_store_revision The store revision the registry has applied.\n# TYPE conduit_registry_store_revision gauge\nconduit_registry_store_revision {}",
            u8::from(s.reachable),
            s.store_revision
        );
    }

    /// Publishes the audit checkpoint `c` for the site's other gateways to witness.
    pub(crate) async fn publish_checkpoint(
        &self,
        cp: &super::checkpoint::Checkpointer,
        c: &conduit_audit::Checkpoint,
    ) {
        #[cfg(feature = "etcd")]
        if let Some(reg) = &self.etcd {
            super::site_witness::publish(reg, cp, c).await;
        }
        let _ = (cp, c);
    }

    /// Starts keeping the snapshot (in `state`, signed with its seal key), reporting the
    /// store's reachability as `registry` events and witnessing the other gateways'
    /// checkpoints, until `token` is cancelled.
    pub(crate) fn spawn(
        &self,
        tracker: &TaskTracker,
        token: &CancellationToken,
        handle: &super::GatewayHandle,
        state: Option<&State>,
    ) -> Result<(), GatewayError> {
        #[cfg(feature = "etcd")]
        if let Some(reg) = &self.etcd {
            tracker.spawn(report_health(
                reg.clone(),
                handle.events.clone(),
                token.clone(),
            ));
            let own = state
                .map(State::seal_key_or_create)
                .transpose()?
                .map(|k| k.public_hex());
            tracker.spawn(super::site_witness::witness(
                reg.clone(),
                handle.clone(),
                own,
                token.clone(),
            ));
            if let Some(st) = state {
                let key = st.seal_key_or_create()?;
                tracker.spawn(keep_snapshot(
                    reg.clone(),
                    st.path().to_owned(),
                    key,
                    token.clone(),
                ));
            }
        }
        let _ = (tracker, token, handle, state);
        Ok(())
    }
}

/// Rewrites the snapshot after each change the registry applies (coalescing a burst).
#[cfg(feature = "etcd")]
async fn keep_snapshot(
    reg: conduit_registry::etcd::EtcdRegistry,
    dir: std::path::PathBuf,
    key: conduit_audit::SealKey,
    token: CancellationToken,
) {
    let mut changes = reg.watch(reg.snapshot().revision);
    let mut policy = reg.watch_access_policy();
    let mut written = None;
    loop {
        let snap = reg.snapshot();
        let mark = (snap.revision, snap.policy.revision);
        if written != Some(mark) {
            match super::snapshot::write(&dir, &key, &snap).await {
                Ok(()) => written = Some(mark),
                Err(error) => {
                    tracing::warn!(%error, "the last-known-good registry snapshot was not written")
                }
            }
        }
        tokio::select! {
            () = token.cancelled() => return,
            e = changes.next() => if e.is_none() { return },
            r = policy.changed() => if r.is_err() { return },
        }
        // A burst of changes is written once.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        while changes.try_next().is_some() {}
    }
}

/// Publishes a `registry` event each time the store becomes unreachable or answers again.
#[cfg(feature = "etcd")]
async fn report_health(
    reg: conduit_registry::etcd::EtcdRegistry,
    events: EventBus,
    token: CancellationToken,
) {
    let mut health = reg.health();
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            r = health.changed() => if r.is_err() { return },
        }
        let h = health.borrow_and_update().clone();
        let store = reg.store_url();
        let message = if h.reachable {
            format!("registry store {store} reachable again; changes made meanwhile are applied")
        } else {
            format!(
                "registry store {store} unreachable ({}); serving the last-known registry, changes refused",
                h.reason.as_deref().unwrap_or("no answer")
            )
        };
        events.publish(crate::events::EventKind::Registry {
            reachable: h.reachable,
            store,
            since: h.since.to_string(),
            message,
        });
    }
}
