//! [`EtcdRegistry`]: the registry kept in etcd, shared by every gateway of a site.
//!
//! Each gateway holds a full copy (the same table the other backends use) and follows the
//! store's watch, so reads never wait on the network and a gateway keeps serving when the
//! store is unreachable. A change is computed on the copy and committed as one etcd
//! transaction that succeeds only if the registry revision is still the one the copy is at;
//! a writer that lost a race catches up and tries again, so duplicate names and domains are
//! refused across gateways exactly as within one (two gateways registering one name: one
//! wins, the other gets `AlreadyExists`).
//!
//! It speaks etcd's v3 JSON gateway (etcd 3.4 and later) over the HTTP client the workspace
//! already has, rather than gRPC: no protobuf compiler at build time, no second HTTP stack.

mod client;
mod config;
mod keys;
mod mirror;
mod wire;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

pub use config::{EtcdConfig, EtcdConfigError, EtcdTls};
pub use mirror::{Checkpoints, StoreHealth};

use self::client::EtcdClient;
use self::keys::Keys;
use self::mirror::{Inner, Meta};
use self::wire::{Compare, Put, RequestOp, TxnRequest, b64};
use crate::access::{AccessPolicy, PolicyWatch, StoredPolicy};
use crate::state::{State, next_policy};
use crate::table::Table;
use crate::{
    Clock, ListFilter, Precondition, Registry, RegistryError, RegistryEvent, Revision, ServiceName,
    ServiceRecord, Snapshot, Timestamp, Watch,
};

/// How many times a change is recomputed after losing a race to another gateway.
const ATTEMPTS: usize = 32;

/// The registry in etcd. Cheap to clone; the follower task stops when the last clone is
/// dropped.
#[derive(Debug, Clone)]
pub struct EtcdRegistry {
    inner: Arc<Inner>,
    clock: Clock,
    writes: Arc<tokio::sync::Mutex<()>>,
    _follower: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl EtcdRegistry {
    /// Reads the registry from the store and starts following it. When the store cannot be
    /// reached and `last_known_good` is given, the registry starts from it instead (marked
    /// unreachable, refusing changes) and reads the store once it answers, publishing what
    /// changed meanwhile. Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// [`RegistryError::Unavailable`] when the store cannot be reached and there is no
    /// snapshot; [`RegistryError::Backend`] for bad TLS files or unreadable data.
    pub async fn connect(
        config: EtcdConfig,
        last_known_good: Option<Snapshot>,
    ) -> Result<Self, RegistryError> {
        let client = EtcdClient::new(&config).map_err(|e| RegistryError::Backend(Box::new(e)))?;
        let inner = Arc::new(Inner {
            keys: Keys::new(&config.prefix),
            config,
            client,
            state: State::new(Table::default()),
            meta: Mutex::new(Meta::default()),
            checkpoints: watch::Sender::new(Checkpoints::default()),
            health: watch::Sender::new(StoreHealth {
                reachable: true,
                since: Timestamp::now(),
                reason: None,
                store_revision: 0,
            }),
        });
        let reload = match (inner.load_all().await, last_known_good) {
            (Ok(()), _) => false,
            (Err(RegistryError::Unavailable { store, reason }), Some(snap)) => {
                tracing::warn!(%store, %reason, revision = %snap.revision, "registry store unreachable at start; serving the last-known-good snapshot");
                inner.restore(snap)?;
                inner.mark(false, Some(reason));
                true
            }
            (Err(e), _) => return Err(e),
        };
        if !reload {
            inner.mark(true, None);
        }
        let follower = tokio::spawn(mirror::follow(Arc::clone(&inner), reload));
        Ok(Self {
            inner,
            clock: Clock::system(),
            writes: Arc::new(tokio::sync::Mutex::new(())),
            _follower: Arc::new(AbortOnDrop(follower)),
        })
    }

    /// Stamps records with `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether the store answers; changes whenever that flips.
    pub fn health(&self) -> watch::Receiver<StoreHealth> {
        self.inner.health.subscribe()
    }

    /// Everything the registry holds now, to keep as the last-known-good.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.snapshot()
    }

    /// Publishes this gateway's latest audit checkpoint (`json`, opaque to the registry)
    /// under its seal key `signer` (hex), for the site's other gateways to witness.
    ///
    /// # Errors
    /// [`RegistryError::Unavailable`] when the store does not answer;
    /// [`RegistryError::Unsupported`] for a `signer` that is not hex.
    pub async fn publish_checkpoint(&self, signer: &str, json: &[u8]) -> Result<(), RegistryError> {
        if signer.is_empty() || !signer.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RegistryError::Unsupported {
                what: "a checkpoint whose key is not hex",
            });
        }
        let txn = TxnRequest {
            compare: Vec::new(),
            success: vec![put(self.inner.keys.checkpoint(signer), json)],
        };
        self.inner.txn(&txn).await?;
        Ok(())
    }

    /// The latest checkpoint of every gateway of the site (this one's included); changes
    /// whenever one is published.
    pub fn checkpoints(&self) -> watch::Receiver<Checkpoints> {
        self.inner.checkpoints.subscribe()
    }

    /// The store as configured, e.g. `etcd://10.0.0.5:2379/conduit`.
    pub fn store_url(&self) -> String {
        self.inner.config.display_url()
    }

    /// Computes a change on a copy of the table and commits it if the store is still at
    /// the copy's revision; otherwise catches up and recomputes.
    async fn write(
        &self,
        op: impl Fn(&mut Table, Timestamp) -> Result<RegistryEvent, RegistryError>,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
        let _one_at_a_time = self.writes.lock().await;
        for _ in 0..ATTEMPTS {
            let mut table = self.inner.state.read().clone();
            let base = table.revision();
            let ev = op(&mut table, self.clock.now())?;
            let json =
                serde_json::to_vec(&*ev.record).map_err(|e| RegistryError::Backend(Box::new(e)))?;
            let keys = &self.inner.keys;
            let txn = TxnRequest {
                compare: vec![counter_is(keys, base)],
                success: vec![
                    put(keys.counter(), ev.revision.0.to_string().as_bytes()),
                    put(keys.record(ev.record.create_revision().0), &json),
                ],
            };
            let res = self.inner.txn(&txn).await?;
            if res.succeeded {
                self.inner
                    .state
                    .absorb_remote(vec![ServiceRecord::clone(&ev.record)])?;
                return Ok(ev.record);
            }
            self.inner.catch_up().await?;
        }
        Err(self.inner.contended(ATTEMPTS))
    }
}

fn put(key: String, value: &[u8]) -> RequestOp {
    RequestOp::Put(Put {
        key,
        value: b64(value),
    })
}

/// The registry revision is still `rev` (for 0: the counter does not exist yet).
fn counter_is(keys: &Keys, rev: Revision) -> Compare {
    if rev == Revision::ZERO {
        Compare {
            key: keys.counter(),
            result: "EQUAL",
            target: "VERSION",
            value: None,
            mod_revision: None,
            version: Some(0),
        }
    } else {
        Compare {
            key: keys.counter(),
            result: "EQUAL",
            target: "VALUE",
            value: Some(b64(rev.0.to_string().as_bytes())),
            mod_revision: None,
            version: None,
        }
    }
}

#[async_trait]
impl Registry for EtcdRegistry {
    async fn register(&self, record: ServiceRecord) -> Result<Arc<ServiceRecord>, RegistryError> {
        self.write(|t, now| t.register(record.clone(), now)).await
    }

    async fn update(
        &self,
        record: ServiceRecord,
        precondition: Precondition,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
        self.write(|t, now| t.update(record.clone(), precondition, now))
            .await
    }

    async fn deregister(&self, name: &ServiceName) -> Result<Arc<ServiceRecord>, RegistryError> {
        self.write(|t, now| t.deregister(name, now)).await
    }

    async fn get(&self, name: &ServiceName) -> Result<Option<Arc<ServiceRecord>>, RegistryError> {
        Ok(self.inner.state.read().get(name))
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<Arc<ServiceRecord>>, RegistryError> {
        Ok(self.inner.state.read().list(filter))
    }

    async fn revision(&self) -> Result<Revision, RegistryError> {
        Ok(self.inner.state.read().revision())
    }

    fn watch(&self, since: Revision) -> Watch {
        self.inner.state.watch(since)
    }

    async fn access_policy(&self) -> Result<Arc<StoredPolicy>, RegistryError> {
        Ok(self.inner.state.policy.get())
    }

    async fn set_access_policy(
        &self,
        policy: AccessPolicy,
        expected: u64,
    ) -> Result<Arc<StoredPolicy>, RegistryError> {
        let _one_at_a_time = self.writes.lock().await;
        let keys = &self.inner.keys;
        for _ in 0..ATTEMPTS {
            let next = next_policy(&self.inner.state.policy.get(), policy.clone(), expected)?;
            let json =
                serde_json::to_vec(&*next).map_err(|e| RegistryError::Backend(Box::new(e)))?;
            let txn = TxnRequest {
                compare: vec![Compare {
                    key: keys.policy(),
                    result: "EQUAL",
                    target: "MOD",
                    value: None,
                    mod_revision: Some(self.inner.meta().policy_mod),
                    version: None,
                }],
                success: vec![put(keys.policy(), &json)],
            };
            let res = self.inner.txn(&txn).await?;
            if res.succeeded {
                self.inner.state.policy.absorb(StoredPolicy::clone(&next));
                let mut m = self
                    .inner
                    .meta
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                m.policy_mod = m.policy_mod.max(res.header.revision);
                return Ok(next);
            }
            self.inner.catch_up().await?;
        }
        Err(self.inner.contended(ATTEMPTS))
    }

    fn watch_access_policy(&self) -> PolicyWatch {
        self.inner.state.policy.subscribe()
    }
}
