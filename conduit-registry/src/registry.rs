//! The [`Registry`] trait and [`InMemoryRegistry`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::access::{AccessPolicy, StoredPolicy};
use crate::state::State;
use crate::table::Table;
use crate::{RegistryError, Revision, ServiceName, ServiceRecord, Timestamp, Watch};

/// Which records [`Registry::list`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ListFilter {
    /// Active records only (the default).
    #[default]
    Active,
    /// Every record ever registered, inactive ones included, in registration order.
    All,
}

/// The condition under which [`Registry::update`] replaces a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precondition {
    /// Replace whatever is there (the caller asked explicitly to overwrite).
    Overwrite,
    /// Replace only if the record is still at this revision (compare-and-swap).
    Revision(Revision),
}

/// The service registry: the single source of truth every other subsystem follows.
///
/// Names are unique among active records, and so are domains. Deregistering never deletes:
/// the record stays with status inactive and `deregistered_at` set, and a later register of
/// the same name adds a new record. Every change bumps the registry [`Revision`] by one and
/// is delivered to every [`Watch`].
///
/// The trait is object-safe: the façade stores an `Arc<dyn Registry>`. Implementations:
/// [`InMemoryRegistry`], [`FileRegistry`](crate::FileRegistry); a distributed backend (etcd)
/// fits the same shape (revisions on records, watch from a revision).
#[async_trait]
pub trait Registry: Send + Sync + fmt::Debug {
    /// Stores a new active record and returns it as stored (status, timestamps, revisions).
    ///
    /// # Errors
    /// [`RegistryError::AlreadyExists`] for an active name, [`RegistryError::DomainTaken`]
    /// for an active domain, [`RegistryError::InvalidRecord`], or a storage failure.
    async fn register(&self, record: ServiceRecord) -> Result<Arc<ServiceRecord>, RegistryError>;

    /// Replaces the active record of the same name (upstreams, health check, domain, …); its
    /// registration time and creation revision are kept.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::Conflict`] when a
    /// [`Precondition::Revision`] does not hold, [`RegistryError::DomainTaken`],
    /// [`RegistryError::InvalidRecord`], or a storage failure.
    async fn update(
        &self,
        record: ServiceRecord,
        precondition: Precondition,
    ) -> Result<Arc<ServiceRecord>, RegistryError>;

    /// Marks the active record inactive and returns it.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] or a storage failure.
    async fn deregister(&self, name: &ServiceName) -> Result<Arc<ServiceRecord>, RegistryError>;

    /// The active record of that name, else its most recent inactive one.
    ///
    /// # Errors
    /// A storage failure.
    async fn get(&self, name: &ServiceName) -> Result<Option<Arc<ServiceRecord>>, RegistryError>;

    /// Records in registration order.
    ///
    /// # Errors
    /// A storage failure.
    async fn list(&self, filter: ListFilter) -> Result<Vec<Arc<ServiceRecord>>, RegistryError>;

    /// The current registry revision (the last change's).
    ///
    /// # Errors
    /// A storage failure.
    async fn revision(&self) -> Result<Revision, RegistryError>;

    /// Every change after `since`, in revision order; `Revision::ZERO` replays the state of
    /// every record, [`Registry::revision`] starts from now.
    fn watch(&self, since: Revision) -> Watch;

    /// The access policy: peers, grants, services requiring a client certificate. A
    /// backend that stores none has the empty policy (every service open).
    ///
    /// # Errors
    /// A storage failure.
    async fn access_policy(&self) -> Result<Arc<StoredPolicy>, RegistryError> {
        Ok(Arc::default())
    }

    /// Validates `policy` as a whole and stores it, if the stored one is still at revision
    /// `expected` (compare-and-swap); the stored revision becomes `expected + 1`.
    ///
    /// # Errors
    /// [`RegistryError::InvalidPolicy`], [`RegistryError::PolicyConflict`],
    /// [`RegistryError::Unsupported`] for a backend without a policy, or a storage failure.
    async fn set_access_policy(
        &self,
        policy: AccessPolicy,
        expected: u64,
    ) -> Result<Arc<StoredPolicy>, RegistryError> {
        let _ = (policy, expected);
        Err(RegistryError::Unsupported {
            what: "an access policy",
        })
    }

    /// The policy now, then every stored change (the latest one wins).
    fn watch_access_policy(&self) -> crate::access::PolicyWatch {
        tokio::sync::watch::channel(Arc::default()).1
    }
}

/// A shared registry is a registry: `Arc<dyn Registry>` can be wrapped (an audited
/// registry over whatever backend the gateway was given).
#[async_trait]
impl<T: Registry + ?Sized> Registry for Arc<T> {
    async fn register(&self, record: ServiceRecord) -> Result<Arc<ServiceRecord>, RegistryError> {
        (**self).register(record).await
    }

    async fn update(
        &self,
        record: ServiceRecord,
        precondition: Precondition,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
        (**self).update(record, precondition).await
    }

    async fn deregister(&self, name: &ServiceName) -> Result<Arc<ServiceRecord>, RegistryError> {
        (**self).deregister(name).await
    }

    async fn get(&self, name: &ServiceName) -> Result<Option<Arc<ServiceRecord>>, RegistryError> {
        (**self).get(name).await
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<Arc<ServiceRecord>>, RegistryError> {
        (**self).list(filter).await
    }

    async fn revision(&self) -> Result<Revision, RegistryError> {
        (**self).revision().await
    }

    fn watch(&self, since: Revision) -> Watch {
        (**self).watch(since)
    }

    async fn access_policy(&self) -> Result<Arc<StoredPolicy>, RegistryError> {
        (**self).access_policy().await
    }

    async fn set_access_policy(
        &self,
        policy: AccessPolicy,
        expected: u64,
    ) -> Result<Arc<StoredPolicy>, RegistryError> {
        (**self).set_access_policy(policy, expected).await
    }

    fn watch_access_policy(&self) -> crate::access::PolicyWatch {
        (**self).watch_access_policy()
    }
}

/// A registry held in memory: for tests, embedding, and as the model the file backend follows.
///
/// Cloning gives another handle to the same registry.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use conduit_registry::{InMemoryRegistry, Registry, Revision, ServiceRecord};
/// let reg = InMemoryRegistry::new();
/// let mut changes = reg.watch(Revision::ZERO);
/// reg.register(ServiceRecord::new("grafana".parse()?, "10.0.1.50:3000".parse()?)).await?;
/// let ev = changes.next().await.expect("registry alive");
/// assert_eq!(ev.record.domain().as_str(), "grafana.internal");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryRegistry {
    state: Arc<State>,
    clock: Clock,
}

/// A source of the current time (injectable for tests).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(Timestamp::now))
    }

    /// A clock that reads `f`.
    pub fn from_fn(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

impl Default for InMemoryRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            state: State::new(Table::default()),
            clock: Clock::system(),
        }
    }

    /// The same registry reading time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

#[async_trait]
impl Registry for InMemoryRegistry {
    async fn register(&self, record: ServiceRecord) -> Result<Arc<ServiceRecord>, RegistryError> {
        let now = self.clock.now();
        self.state.apply(|t| t.register(record, now))
    }

    async fn update(
        &self,
        record: ServiceRecord,
        precondition: Precondition,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
        let now = self.clock.now();
        self.state.apply(|t| t.update(record, precondition, now))
    }

    async fn deregister(&self, name: &ServiceName) -> Result<Arc<ServiceRecord>, RegistryError> {
        let now = self.clock.now();
        self.state.apply(|t| t.deregister(name, now))
    }

    async fn get(&self, name: &ServiceName) -> Result<Option<Arc<ServiceRecord>>, RegistryError> {
        Ok(self.state.read().get(name))
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<Arc<ServiceRecord>>, RegistryError> {
        Ok(self.state.read().list(filter))
    }

    async fn revision(&self) -> Result<Revision, RegistryError> {
        Ok(self.state.read().revision())
    }

    fn watch(&self, since: Revision) -> Watch {
        self.state.watch(since)
    }

    async fn access_policy(&self) -> Result<Arc<StoredPolicy>, RegistryError> {
        Ok(self.state.policy.get())
    }

    async fn set_access_policy(
        &self,
        policy: AccessPolicy,
        expected: u64,
    ) -> Result<Arc<StoredPolicy>, RegistryError> {
        self.state.policy.replace(policy, expected)
    }

    fn watch_access_policy(&self) -> crate::access::PolicyWatch {
        self.state.policy.subscribe()
    }
}
