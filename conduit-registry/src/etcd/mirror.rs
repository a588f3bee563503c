//! The gateway's copy of the store: a full read (paginated, at one revision), catching up
//! on what changed since a revision, and the follower task that keeps the copy current
//! through etcd's watch, resuming after any break from the last revision it applied and
//! re-reading everything when that revision was compacted.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::client::{CallError, EtcdClient};
use super::config::EtcdConfig;
use super::keys::{KeyKind, Keys};
use super::wire::{
    KeyValue, RangeRequest, RangeResponse, TxnRequest, TxnResponse, WatchCreate, unb64,
};
use crate::access::StoredPolicy;
use crate::state::State;
use crate::table::Table;
use crate::{RegistryError, Revision, ServiceRecord, Snapshot, Timestamp};

/// Whether the shared store answers, as a gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreHealth {
    /// The store answered the last request or probe.
    pub reachable: bool,
    /// Since when it has been in this state.
    pub since: Timestamp,
    /// Why it is unreachable (the last failure).
    pub reason: Option<String>,
    /// The store revision the registry has applied up to.
    pub store_revision: u64,
}

/// Where the copy stands against the store.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Meta {
    /// Every change up to this store revision is applied.
    pub(crate) store_revision: u64,
    /// The policy key's last modification (0: none yet), the compare-and-swap point.
    pub(crate) policy_mod: u64,
}

/// What the registry and its follower share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: EtcdConfig,
    pub(crate) client: EtcdClient,
    pub(crate) keys: Keys,
    pub(crate) state: Arc<State>,
    pub(crate) meta: Mutex<Meta>,
    pub(crate) health: watch::Sender<StoreHealth>,
    pub(crate) checkpoints: watch::Sender<Checkpoints>,
}

/// The latest audit checkpoint each gateway published, by seal key (hex): the bytes as
/// published (the registry does not read them).
pub type Checkpoints = Arc<std::collections::BTreeMap<String, Arc<[u8]>>>;

const PAGE: u64 = 1_000;

impl Inner {
    pub(crate) fn meta(&self) -> Meta {
        *self.meta.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn unavailable(&self, e: CallError) -> RegistryError {
        match e {
            CallError::Unreachable(reason) => {
                self.mark(false, Some(reason.clone()));
                RegistryError::Unavailable {
                    store: self.config.display_url(),
                    reason,
                }
            }
            other => RegistryError::Backend(Box::new(other)),
        }
    }

    /// Records the store's state; the first change of state is logged.
    pub(crate) fn mark(&self, reachable: bool, reason: Option<String>) {
        let store_revision = self.meta().store_revision;
        self.health.send_if_modified(|h| {
            let changed = h.reachable != reachable;
            if changed {
                h.reachable = reachable;
                h.since = Timestamp::now();
                if reachable {
                    tracing::info!(store = %self.config.display_url(), "registry store reachable; changes resynced");
                } else {
                    tracing::warn!(store = %self.config.display_url(), reason = reason.as_deref().unwrap_or(""), "registry store unreachable; serving the last-known state");
                }
            }
            h.reason = if reachable { None } else { reason };
            h.store_revision = store_revision;
            changed
        });
    }

    /// One range request; a store that does not answer is marked unreachable.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, RegistryError> {
        self.client
            .call("kv/range", &req)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// One transaction; a store that does not answer is marked unreachable.
    pub(crate) async fn txn(&self, req: &TxnRequest) -> Result<TxnResponse, RegistryError> {
        self.client
            .call("kv/txn", req)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// The error of a change that lost every race it was retried in.
    pub(crate) fn contended(&self, attempts: usize) -> RegistryError {
        RegistryError::Unavailable {
            store: self.config.display_url(),
            reason: format!("the change lost {attempts} races to other writers in a row"),
        }
    }

    /// Reads every key of the site at one revision and replaces the copy with it; the
    /// difference is published as changes.
    pub(crate) async fn load_all(&self) -> Result<(), RegistryError> {
        let (mut key, end) = self.keys.all();
        let mut at = 0;
        let mut kvs = Vec::new();
        loop {
            let page = self
                .range(RangeRequest {
                    key,
                    range_end: Some(end.clone()),
                    limit: PAGE,
                    revision: at,
                    ..RangeRequest::default()
                })
                .await?;
            if at == 0 {
                at = page.header.revision;
            }
            let next = page.kvs.last().and_then(|kv| unb64(&kv.key));
            kvs.extend(page.kvs);
            match next {
                Some(mut last) if page.more => {
                    last.push(0);
                    key = super::wire::b64(&last);
                }
                _ => break,
            }
        }
        let decoded = self.decode(&kvs)?;
        let revision = decoded
            .records
            .iter()
            .map(ServiceRecord::revision)
            .max()
            .unwrap_or_default()
            .max(decoded.counter);
        let table = Table::from_records(revision, decoded.records)
            .map_err(|reason| self.corrupt(reason))?;
        self.state.absorb(table);
        self.checkpoints
            .send_replace(Arc::new(decoded.checkpoints.into_iter().collect()));
        let mut policy_mod = 0;
        if let Some((stored, modified)) = decoded.policy {
            self.state.policy.absorb(stored);
            policy_mod = modified;
        }
        let mut m = self.meta.lock().unwrap_or_else(PoisonError::into_inner);
        m.store_revision = at;
        m.policy_mod = policy_mod;
        Ok(())
    }

    /// Applies every key changed after the copy's store revision (a write lost a race, or
    /// the follower fell behind).
    pub(crate) async fn catch_up(&self) -> Result<(), RegistryError> {
        let (key, end) = self.keys.all();
        let since = self.meta().store_revision;
        let page = self
            .range(RangeRequest {
                key,
                range_end: Some(end),
                min_mod_revision: since + 1,
                ..RangeRequest::default()
            })
            .await?;
        if page.more {
            return self.load_all().await;
        }
        let at = page.header.revision;
        if self.apply(&page.kvs, at).is_err() {
            return self.load_all().await;
        }
        Ok(())
    }

    /// Applies changed keys seen at store revision `at`.
    pub(crate) fn apply(&self, kvs: &[KeyValue], at: u64) -> Result<(), RegistryError> {
        let decoded = self.decode(kvs)?;
        self.state.absorb_remote(decoded.records)?;
        if !decoded.checkpoints.is_empty() {
            self.checkpoints.send_modify(|map| {
                let map = Arc::make_mut(map);
                map.extend(decoded.checkpoints);
            });
        }
        let mut m = self.meta.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((stored, modified)) = decoded.policy
            && modified > m.policy_mod
        {
            m.policy_mod = modified;
            if stored.revision > self.state.policy.get().revision {
                self.state.policy.absorb(stored);
            }
        }
        m.store_revision = m.store_revision.max(at);
        Ok(())
    }

    /// The copy as a snapshot.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let m = self.meta();
        let t = self.state.read();
        Snapshot {
            revision: t.revision(),
            records: t
                .records()
                .iter()
                .map(|r| ServiceRecord::clone(r))
                .collect(),
            policy: StoredPolicy::clone(&self.state.policy.get()),
            store_revision: m.store_revision,
        }
    }

    /// Starts the copy from a snapshot (the store is unreachable).
    pub(crate) fn restore(&self, snap: Snapshot) -> Result<(), RegistryError> {
        let table = Table::from_records(snap.revision, snap.records)
            .map_err(|reason| self.corrupt(format!("the snapshot: {reason}")))?;
        self.state.absorb(table);
        self.state.policy.absorb(snap.policy);
        let mut m = self.meta.lock().unwrap_or_else(PoisonError::into_inner);
        m.store_revision = snap.store_revision;
        Ok(())
    }

    fn corrupt(&self, reason: String) -> RegistryError {
        RegistryError::Backend(Box::new(StoreCorrupt {
            store: self.config.display_url(),
            reason,
        }))
    }

    fn decode(&self, kvs: &[KeyValue]) -> Result<Decoded, RegistryError> {
        let mut out = Decoded::default();
        for kv in kvs {
            let key = unb64(&kv.key).unwrap_or_default();
            let value = unb64(&kv.value).ok_or_else(|| {
                self.corrupt(format!(
                    "{}: the value is not base64",
                    String::from_utf8_lossy(&key)
                ))
            })?;
            let bad = |e: serde_json::Error| {
                self.corrupt(format!("{}: {e}", String::from_utf8_lossy(&key)))
            };
            match self.keys.kind(&key) {
                KeyKind::Counter => {
                    out.counter = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .map(Revision)
                        .ok_or_else(|| {
                            self.corrupt("the revision counter is not a number".into())
                        })?;
                }
                KeyKind::Record => out
                    .records
                    .push(serde_json::from_slice(&value).map_err(bad)?),
                KeyKind::Policy => {
                    out.policy = Some((
                        serde_json::from_slice(&value).map_err(bad)?,
                        kv.mod_revision,
                    ));
                }
                KeyKind::Checkpoint(signer) => out.checkpoints.push((signer, value.into())),
                KeyKind::Other => {}
            }
        }
        Ok(out)
    }
}

#[derive(Default)]
struct Decoded {
    counter: Revision,
    records: Vec<ServiceRecord>,
    policy: Option<(StoredPolicy, u64)>,
    checkpoints: Vec<(String, Arc<[u8]>)>,
}

/// The store holds something this registry cannot read; an operator must look at it.
#[derive(Debug, thiserror::Error)]
#[error(
    "registry store {store} holds unreadable data ({reason}); nothing was changed, inspect it with etcdctl"
)]
pub(crate) struct StoreCorrupt {
    store: String,
    reason: String,
}

/// Keeps the copy current until the registry is dropped.
pub(crate) async fn follow(inner: Arc<Inner>, mut reload: bool) {
    const MAX_BACKOFF: Duration = Duration::from_secs(2);
    let mut backoff = Duration::from_millis(100);
    loop {
        if reload {
            match inner.load_all().await {
                Ok(()) => reload = false,
                Err(e) => {
                    tracing::debug!(error = %e, "registry store: full read failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let (key, range_end) = inner.keys.all();
        let from = inner.meta().store_revision + 1;
        let mut stream = match inner
            .client
            .watch(WatchCreate {
                key,
                range_end,
                start_revision: from,
            })
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let _ = inner.unavailable(e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        inner.mark(true, None);
        let mut probe = tokio::time::interval(inner.config.probe_interval);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        probe.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Ok(r) if r.canceled => {
                        tracing::info!(
                            compacted = r.compact_revision,
                            reason = %r.cancel_reason,
                            "registry store: the change stream was cancelled; re-reading everything"
                        );
                        reload = true;
                        break;
                    }
                    Ok(r) => {
                        let kvs: Vec<KeyValue> = r
                            .events
                            .into_iter()
                            .filter(|e| e.kind.as_deref() != Some("DELETE"))
                            .map(|e| e.kv)
                            .collect();
                        if let Err(e) = inner.apply(&kvs, r.header.revision) {
                            tracing::warn!(error = %e, "registry store: a change does not apply; re-reading everything");
                            reload = true;
                            break;
                        }
                        inner.mark(true, None);
                    }
                    Err(e) => {
                        let _ = inner.unavailable(e);
                        break;
                    }
                },
                _ = probe.tick() => {
                    if let Err(e) = probe_store(&inner).await {
                        let _ = inner.unavailable(e);
                        break;
                    }
                }
            }
        }
    }
}

async fn probe_store(inner: &Inner) -> Result<(), CallError> {
    let _: RangeResponse = inner
        .client
        .call(
            "kv/range",
            &RangeRequest {
                key: inner.keys.counter(),
                count_only: true,
                ..RangeRequest::default()
            },
        )
        .await?;
    Ok(())
}
