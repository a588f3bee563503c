//! A registered service as the admin API shows it: [`ServiceView`] (one) and
//! [`ServiceList`] (every active one).

use conduit_registry::Routing;
use serde::{Deserialize, Serialize};

/// A registered service as stored: `GET /v1/services/{name}` (with an `ETag` of its
/// revision), and the answer to `POST /v1/services`, `PUT` and `DELETE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceView {
    /// The service name.
    pub name: String,
    /// Its DNS name.
    pub domain: String,
    /// Its upstreams; one of another kind than the service's is prefixed with it
    /// (`ollama=http://10.0.0.7:11434`).
    pub upstreams: Vec<String>,
    /// The kind of its upstreams (`http`, `openai`, `vllm`, `ollama`).
    #[serde(default)]
    pub kind: conduit_registry::Engine,
    /// Its health check.
    pub health: conduit_registry::HealthCheck,
    /// Proxied or direct.
    pub routing: Routing,
    /// Whether the proxy serves it over TLS.
    pub tls: bool,
    /// `true` until it is deregistered.
    pub active: bool,
    /// The registry revision of its last change (its `ETag`).
    pub revision: u64,
    /// The registry revision that created it.
    pub create_revision: u64,
}

impl From<&conduit_registry::ServiceRecord> for ServiceView {
    fn from(r: &conduit_registry::ServiceRecord) -> Self {
        Self {
            name: r.name().as_str().to_owned(),
            domain: r.domain().as_str().to_owned(),
            upstreams: r
                .endpoints()
                .iter()
                .map(|e| match r.kind_of(e) {
                    k if k == r.kind() => e.to_string(),
                    k => format!("{k}={e}"),
                })
                .collect(),
            kind: r.kind(),
            health: r.health().clone(),
            routing: r.routing(),
            tls: r.tls(),
            active: r.is_active(),
            revision: r.revision().0,
            create_revision: r.create_revision().0,
        }
    }
}

/// `GET /v1/services`: every active service as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceList {
    /// The services, in registry order.
    pub services: Vec<ServiceView>,
    /// The registry revision they were read at.
    pub revision: u64,
}
