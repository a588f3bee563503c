//! [`AuditedRegistry`]: any registry, with every change written to an audit sink.
//!
//! Auditing is a decorator, not a concern of the registry crate: the gateway's command line
//! and an embedding program's admin API wrap their registry in one, and every
//! `register` / `update` / `deregister` — successful or refused — becomes one record
//! (`service_register`, `service_update`, `service_deregister`) naming the user.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use conduit::audit::{JsonlOptions, JsonlSink, read_log};
//! use conduit::audited::AuditedRegistry;
//! use conduit::registry::{InMemoryRegistry, Registry, RegistryError, ServiceRecord};
//!
//! let dir = tempfile::tempdir()?;
//! let sink = Arc::new(JsonlSink::open(dir.path().join("audit.log"), JsonlOptions::default())?);
//! let reg = AuditedRegistry::new(InMemoryRegistry::new(), sink, "alice");
//! reg.register(ServiceRecord::new("grafana".parse()?, "10.0.1.50:3000".parse()?)).await?;
//! let again = reg.register(ServiceRecord::new("grafana".parse()?, "10.0.1.51:3000".parse()?)).await;
//! assert!(matches!(again, Err(RegistryError::AlreadyExists { .. })));
//! let (events, _) = read_log(&dir.path().join("audit.log"), &Default::default())?;
//! assert_eq!(events.len(), 2);                       // the refusal is recorded too
//! assert_eq!((events[0].action(), events[0].user()), ("service_register", "alice"));
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use conduit_audit::{AuditError, AuditEvent, AuditSink, EventError, Outcome};
use conduit_registry::access::{AccessPolicy, StoredPolicy};
use conduit_registry::{
    ListFilter, Precondition, Registry, RegistryError, Revision, ServiceName, ServiceRecord, Watch,
};
use serde_json::{Map, Value, json};

mod action;
mod policy;
pub use action::Action;
pub use policy::{PolicyChange, PolicyChangeError};

/// A registry whose changes are audited. Reads pass through untouched.
pub struct AuditedRegistry<R> {
    inner: R,
    sink: Arc<dyn AuditSink>,
    user: String,
}

impl<R: fmt::Debug> fmt::Debug for AuditedRegistry<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditedRegistry")
            .field("inner", &self.inner)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl<R> AuditedRegistry<R> {
    /// Wraps `inner`; records name `user`.
    pub fn new(inner: R, sink: Arc<dyn AuditSink>, user: impl Into<String>) -> Self {
        Self {
            inner,
            sink,
            user: user.into(),
        }
    }

    /// The wrapped registry.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Appends one record of a change that is already durable (or refused).
    async fn record(
        &self,
        action: Action,
        ok: bool,
        message: String,
        details: impl serde::Serialize + Send,
    ) {
        record(self.sink.as_ref(), action, ok, message, &self.user, details).await;
    }

    /// Appends one record and says whether it was written.
    async fn record_checked(
        &self,
        action: Action,
        ok: bool,
        message: String,
        details: impl serde::Serialize + Send,
    ) -> Result<(), AuditError> {
        let ev = event(action, ok, message, &self.user, details)?;
        self.sink.append(ev).await.map(|_| ())
    }
}

/// Why a change made through [`AuditedRegistry::register_audited`] or
/// [`AuditedRegistry::deregister_audited`] did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditedError {
    /// The registry refused or failed (nothing changed; the refusal is audited).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The change is stored but its audit record could not be written (or sealed). It is
    /// not lost: the gateway audits every unaudited registry revision as
    /// `registry_recovered` when it starts.
    #[error("{} was changed (revision {}) but its audit record failed: {source}; `conduit serve` records it as recovered at its next start", record.domain(), record.revision())]
    NotAudited {
        /// The stored record.
        record: Arc<ServiceRecord>,
        /// Why the audit failed.
        source: AuditError,
    },
}

impl<R: Registry> AuditedRegistry<R> {
    /// Registers `record` and audits it; an audit failure is returned, not only logged (the
    /// change stays: see [`AuditedError::NotAudited`]).
    ///
    /// # Errors
    /// [`AuditedError`].
    pub async fn register_audited(
        &self,
        record: ServiceRecord,
    ) -> Result<Arc<ServiceRecord>, AuditedError> {
        let mut details = describe(&record);
        let domain = record.domain().clone();
        match self.inner.register(record).await {
            Ok(r) => {
                details["revision"] = json!(r.revision().0);
                let up = r
                    .endpoints()
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let msg = format!("Registered {domain} → {up}");
                match self
                    .record_checked(Action::ServiceRegister, true, msg, details)
                    .await
                {
                    Ok(()) => Ok(r),
                    Err(source) => Err(AuditedError::NotAudited { record: r, source }),
                }
            }
            Err(e) => {
                let msg = format!("Cannot register {domain}: {e}");
                self.record(Action::ServiceRegister, false, msg, details)
                    .await;
                Err(e.into())
            }
        }
    }

    /// Replaces the active record of the same name and audits it as `service_update`; an
    /// audit failure is returned (see [`AuditedRegistry::register_audited`]).
    ///
    /// # Errors
    /// [`AuditedError`].
    pub async fn update_audited(
        &self,
        record: ServiceRecord,
        precondition: Precondition,
    ) -> Result<Arc<ServiceRecord>, AuditedError> {
        let mut details = describe(&record);
        let domain = record.domain().clone();
        match self.inner.update(record, precondition).await {
            Ok(r) => {
                details["revision"] = json!(r.revision().0);
                let ups: Vec<String> = r.endpoints().iter().map(ToString::to_string).collect();
                let msg = format!("Updated {domain} → {}", ups.join(", "));
                match self
                    .record_checked(Action::ServiceUpdate, true, msg, details)
                    .await
                {
                    Ok(()) => Ok(r),
                    Err(source) => Err(AuditedError::NotAudited { record: r, source }),
                }
            }
            Err(e) => {
                let msg = format!("Cannot update {domain}: {e}");
                self.record(Action::ServiceUpdate, false, msg, details)
                    .await;
                Err(e.into())
            }
        }
    }

    /// Deregisters `name` and audits it; an audit failure is returned (see
    /// [`AuditedRegistry::register_audited`]).
    ///
    /// # Errors
    /// [`AuditedError`].
    pub async fn deregister_audited(
        &self,
        name: &ServiceName,
    ) -> Result<Arc<ServiceRecord>, AuditedError> {
        match self.inner.deregister(name).await {
            Ok(r) => {
                let mut details = describe(&r);
                details["revision"] = json!(r.revision().0);
                let msg = format!("Deregistered {}", r.domain());
                match self
                    .record_checked(Action::ServiceDeregister, true, msg, details)
                    .await
                {
                    Ok(()) => Ok(r),
                    Err(source) => Err(AuditedError::NotAudited { record: r, source }),
                }
            }
            Err(e) => {
                let msg = format!("Cannot deregister {name}: {e}");
                let details = json!({"name": name.as_str()});
                self.record(Action::ServiceDeregister, false, msg, details)
                    .await;
                Err(e.into())
            }
        }
    }
}

/// One audit record: `ok` is the outcome, `details` anything that serializes to a JSON
/// object (a typed struct, or `json!({…})`; anything else is recorded as no details).
///
/// # Errors
/// [`EventError`] for an empty action or user, or a line break in a field.
pub fn event(
    action: Action,
    ok: bool,
    message: impl Into<String>,
    user: &str,
    details: impl serde::Serialize,
) -> Result<AuditEvent, EventError> {
    let details = match serde_json::to_value(details) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let outcome = if ok {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    AuditEvent::new(action.as_str(), outcome, message, user, details)
}

/// Appends one record of something that already happened: a failure to audit is logged
/// at error level, not returned (the action stands either way).
pub async fn record(
    sink: &dyn AuditSink,
    action: Action,
    ok: bool,
    message: impl Into<String>,
    user: &str,
    details: impl serde::Serialize + Send,
) {
    match event(action, ok, message, user, details) {
        Ok(ev) => {
            if let Err(error) = sink.append(ev).await {
                tracing::error!(%error, %action, "cannot write the audit record");
            }
        }
        Err(error) => tracing::error!(%error, %action, "invalid audit record"),
    }
}

fn describe(r: &ServiceRecord) -> Value {
    json!({
        "name": r.name().as_str(),
        "domain": r.domain().as_str(),
        "upstreams": r.endpoints().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "routing": r.routing(),
        "tls": r.tls(),
        "health_path": r.health().path,
    })
}

#[async_trait]
impl<R: Registry> Registry for AuditedRegistry<R> {
    async fn register(&self, record: ServiceRecord) -> Result<Arc<ServiceRecord>, RegistryError> {
        match self.register_audited(record).await {
            Ok(r) => Ok(r),
            Err(AuditedError::Registry(e)) => Err(e),
            // Stored: the registry's answer stands; the record is recovered at the next start.
            Err(AuditedError::NotAudited { record, source }) => {
                tracing::error!(error = %source, name = %record.name(), "registered but not audited");
                Ok(record)
            }
        }
    }

    async fn update(
        &self,
        record: ServiceRecord,
        precondition: Precondition,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
        match self.update_audited(record, precondition).await {
            Ok(r) => Ok(r),
            Err(AuditedError::Registry(e)) => Err(e),
            Err(AuditedError::NotAudited { record, source }) => {
                tracing::error!(error = %source, name = %record.name(), "updated but not audited");
                Ok(record)
            }
        }
    }

    async fn deregister(&self, name: &ServiceName) -> Result<Arc<ServiceRecord>, RegistryError> {
        match self.deregister_audited(name).await {
            Ok(r) => Ok(r),
            Err(AuditedError::Registry(e)) => Err(e),
            Err(AuditedError::NotAudited { record, source }) => {
                tracing::error!(error = %source, name = %record.name(), "deregistered but not audited");
                Ok(record)
            }
        }
    }

    async fn get(&self, name: &ServiceName) -> Result<Option<Arc<ServiceRecord>>, RegistryError> {
        self.inner.get(name).await
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<Arc<ServiceRecord>>, RegistryError> {
        self.inner.list(filter).await
    }

    async fn revision(&self) -> Result<Revision, RegistryError> {
        self.inner.revision().await
    }

    fn watch(&self, since: Revision) -> Watch {
        self.inner.watch(since)
    }

    async fn access_policy(&self) -> Result<Arc<StoredPolicy>, RegistryError> {
        self.inner.access_policy().await
    }

    async fn set_access_policy(
        &self,
        policy: AccessPolicy,
        expected: u64,
    ) -> Result<Arc<StoredPolicy>, RegistryError> {
        self.set_policy_audited(policy, expected).await
    }

    fn watch_access_policy(&self) -> conduit_registry::access::PolicyWatch {
        self.inner.watch_access_policy()
    }
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn every_action_has_one_name_and_the_docs_list_it() {
        let docs = include_str!("../../docs/audit.md");
        let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.as_str()), Some(*a));
            assert!(
                docs.contains(&format!("`{a}`")),
                "docs/audit.md does not list {a}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
        assert_eq!(Action::from_name("setup"), None);
    }
}
