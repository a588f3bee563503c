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
use conduit_audit::{AuditEvent, AuditSink, EventError, Outcome};
use conduit_registry::{
    ListFilter, Precondition, Registry, RegistryError, Revision, ServiceName, ServiceRecord, Watch,
};
use serde_json::{Map, Value, json};

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
    async fn record(&self, action: &str, ok: bool, message: String, details: Value) {
        record(self.sink.as_ref(), action, ok, message, &self.user, details).await;
    }
}

/// One audit record: `ok` is the outcome, `details` a JSON object (anything else is
/// recorded as no details).
///
/// # Errors
/// [`EventError`] for an empty action or user, or a line break in a field.
pub fn event(
    action: &str,
    ok: bool,
    message: impl Into<String>,
    user: &str,
    details: Value,
) -> Result<AuditEvent, EventError> {
    let details = match details {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let outcome = if ok {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    AuditEvent::new(action, outcome, message, user, details)
}

/// Appends one record of something that already happened: a failure to audit is logged
/// at error level, not returned (the action stands either way).
pub async fn record(
    sink: &dyn AuditSink,
    action: &str,
    ok: bool,
    message: impl Into<String>,
    user: &str,
    details: Value,
) {
    match event(action, ok, message, user, details) {
        Ok(ev) => {
            if let Err(error) = sink.append(ev).await {
                tracing::error!(%error, action, "cannot write the audit record");
            }
        }
        Err(error) => tracing::error!(%error, action, "invalid audit record"),
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
        let details = describe(&record);
        let domain = record.domain().clone();
        let result = self.inner.register(record).await;
        match &result {
            Ok(r) => {
                let up = r
                    .endpoints()
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                self.record(
                    "service_register",
                    true,
                    format!("Registered {domain} → {up}"),
                    details,
                )
                .await;
            }
            Err(e) => {
                self.record(
                    "service_register",
                    false,
                    format!("Cannot register {domain}: {e}"),
                    details,
                )
                .await;
            }
        }
        result
    }

    async fn update(
        &self,
        record: ServiceRecord,
        precondition: Precondition,
    ) -> Result<Arc<ServiceRecord>, RegistryError> {
        let details = describe(&record);
        let domain = record.domain().clone();
        let result = self.inner.update(record, precondition).await;
        let (ok, message) = match &result {
            Ok(_) => (true, format!("Updated {domain}")),
            Err(e) => (false, format!("Cannot update {domain}: {e}")),
        };
        self.record("service_update", ok, message, details).await;
        result
    }

    async fn deregister(&self, name: &ServiceName) -> Result<Arc<ServiceRecord>, RegistryError> {
        let result = self.inner.deregister(name).await;
        match &result {
            Ok(r) => {
                let msg = format!("Deregistered {}", r.domain());
                self.record("service_deregister", true, msg, describe(r))
                    .await;
            }
            Err(e) => {
                let msg = format!("Cannot deregister {name}: {e}");
                self.record(
                    "service_deregister",
                    false,
                    msg,
                    json!({"name": name.as_str()}),
                )
                .await;
            }
        }
        result
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
}
