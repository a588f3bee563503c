//! [`ServiceRecord`] and its parts: [`Routing`], [`Status`], [`MonitorTarget`] (its
//! [`HealthCheck`] is in `health`, [`Revision`] and [`Timestamp`] in `revision`).

use serde::{Deserialize, Serialize};

use crate::{
    DomainName, Endpoint, Engine, EngineOverride, HealthCheck, RegistryError, Revision,
    ServiceName, Timestamp,
};

/// How clients reach a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Routing {
    /// Through the gateway: DNS answers the gateway's address, the proxy terminates TLS,
    /// health-checks and forwards (the default).
    #[default]
    Proxied,
    /// Straight to the upstream (`--no-proxy`, for TCP services such as Postgres): DNS
    /// answers the upstream's own address and the proxy has no route.
    Direct,
}

/// Whether a record is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Served by DNS and the proxy.
    #[default]
    Active,
    /// Deregistered; kept for history with its `deregistered_at`.
    Inactive,
}

/// Where the monitor looks for the machine or container behind a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorTarget {
    /// `USER@HOST[:PORT]` for host metrics over SSH; `None` for the gateway's own host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<String>,
    /// The container name, for container metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Whether the target has GPUs worth sampling.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gpu: bool,
}

/// One registered service: everything DNS, the CA, the proxy and the monitor need.
///
/// Build one with [`ServiceRecord::new`] and the `with_*` methods; the registry fills in the
/// status, timestamps and revisions when it stores it.
///
/// ```
/// use conduit_registry::{HealthCheck, Routing, ServiceRecord};
/// let rec = ServiceRecord::new("grafana".parse()?, "10.0.1.50:3000".parse()?)
///     .with_health(HealthCheck::with_path("/api/health"));
/// assert_eq!(rec.domain().as_str(), "grafana.internal");
/// assert_eq!(rec.routing(), Routing::Proxied);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    name: ServiceName,
    domain: DomainName,
    endpoints: Vec<Endpoint>,
    #[serde(default)]
    health: HealthCheck,
    #[serde(default)]
    routing: Routing,
    #[serde(default = "yes")]
    tls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    monitor: Option<MonitorTarget>,
    /// The kind of its upstreams (plain HTTP unless a model server).
    #[serde(default, skip_serializing_if = "is_http")]
    kind: Engine,
    /// Upstreams of another kind than `kind`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kinds: Vec<EngineOverride>,
    status: Status,
    registered_at: Timestamp,
    updated_at: Timestamp,
    deregistered_at: Option<Timestamp>,
    create_revision: Revision,
    revision: Revision,
}

fn yes() -> bool {
    true
}

fn is_http(e: &Engine) -> bool {
    *e == Engine::Http
}

impl ServiceRecord {
    /// A proxied, TLS-terminated service at `<name>.internal` with one upstream and the
    /// default health check.
    pub fn new(name: ServiceName, endpoint: Endpoint) -> Self {
        let domain = DomainName::from(name.clone());
        let domain = DomainName::internal().child(&name).unwrap_or(domain);
        let now = Timestamp::now();
        Self {
            name,
            domain,
            endpoints: vec![endpoint],
            health: HealthCheck::default(),
            routing: Routing::Proxied,
            tls: true,
            monitor: None,
            kind: Engine::Http,
            kinds: Vec::new(),
            status: Status::Active,
            registered_at: now,
            updated_at: now,
            deregistered_at: None,
            create_revision: Revision::ZERO,
            revision: Revision::ZERO,
        }
    }

    /// Serve at `<name>.<zone>`.
    ///
    /// # Errors
    /// [`NameError::TooLong`](crate::NameError::TooLong) past 253 characters.
    pub fn in_zone(mut self, zone: &DomainName) -> Result<Self, crate::NameError> {
        self.domain = zone.child(&self.name)?;
        Ok(self)
    }

    /// Serve at an explicit domain.
    #[must_use]
    pub fn with_domain(mut self, domain: DomainName) -> Self {
        self.domain = domain;
        self
    }

    /// Replace the upstreams (the proxy balances across them).
    #[must_use]
    pub fn with_endpoints(mut self, endpoints: Vec<Endpoint>) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Set the health check.
    #[must_use]
    pub fn with_health(mut self, health: HealthCheck) -> Self {
        self.health = health;
        self
    }

    /// Proxied or direct.
    #[must_use]
    pub fn with_routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }

    /// Whether the gateway terminates TLS for this name (`--no-tls` turns it off).
    #[must_use]
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Set the monitoring target.
    #[must_use]
    pub fn with_monitor(mut self, monitor: Option<MonitorTarget>) -> Self {
        self.monitor = monitor;
        self
    }

    /// The kind of its upstreams, and those of another kind (each must be one of its
    /// endpoints).
    #[must_use]
    pub fn with_kind(mut self, kind: Engine, overrides: Vec<EngineOverride>) -> Self {
        self.kind = kind;
        self.kinds = overrides;
        self
    }

    /// The service name.
    pub fn name(&self) -> &ServiceName {
        &self.name
    }
    /// The FQDN clients use.
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }
    /// The upstreams, at least one.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
    /// The health check.
    pub fn health(&self) -> &HealthCheck {
        &self.health
    }
    /// Proxied or direct.
    pub fn routing(&self) -> Routing {
        self.routing
    }
    /// Whether the gateway terminates TLS for it.
    pub fn tls(&self) -> bool {
        self.tls
    }
    /// The monitoring target, if any.
    pub fn monitor(&self) -> Option<&MonitorTarget> {
        self.monitor.as_ref()
    }
    /// The kind of its upstreams.
    pub fn kind(&self) -> Engine {
        self.kind
    }
    /// The upstreams of another kind than [`ServiceRecord::kind`].
    pub fn kind_overrides(&self) -> &[EngineOverride] {
        &self.kinds
    }
    /// The kind of one upstream.
    pub fn kind_of(&self, endpoint: &Endpoint) -> Engine {
        self.kinds
            .iter()
            .find(|o| o.endpoint == *endpoint)
            .map_or(self.kind, |o| o.kind)
    }
    /// Active or inactive.
    pub fn status(&self) -> Status {
        self.status
    }
    /// Whether the record is active.
    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }
    /// When it was registered.
    pub fn registered_at(&self) -> Timestamp {
        self.registered_at
    }
    /// When it last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    /// When it was deregistered, for an inactive record.
    pub fn deregistered_at(&self) -> Option<Timestamp> {
        self.deregistered_at
    }
    /// The registry revision that created it.
    pub fn create_revision(&self) -> Revision {
        self.create_revision
    }
    /// The registry revision of its last change.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Checks what types cannot: at least one upstream, no duplicates, a sane health check,
    /// consistent status and timestamps.
    ///
    /// # Errors
    /// [`RegistryError::InvalidRecord`] naming the problem.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidRecord {
            name: self.name.clone(),
            reason,
        };
        if self.endpoints.is_empty() {
            return Err(invalid("needs at least one upstream".to_owned()));
        }
        if self.endpoints.len() > 64 {
            return Err(invalid(format!(
                "has {} upstreams (at most 64)",
                self.endpoints.len()
            )));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            if self.endpoints[..i].contains(e) {
                return Err(invalid(format!("upstream {e} is listed twice")));
            }
        }
        if self.routing == Routing::Direct && self.endpoints.iter().all(|e| e.host().ip().is_none())
        {
            return Err(invalid(
                "a direct (--no-proxy) service needs an IP upstream for DNS to answer".to_owned(),
            ));
        }
        for (i, o) in self.kinds.iter().enumerate() {
            if !self.endpoints.contains(&o.endpoint) {
                return Err(invalid(format!(
                    "the kind of {} is given, but it is not an upstream",
                    o.endpoint
                )));
            }
            if self.kinds[..i].iter().any(|p| p.endpoint == o.endpoint) {
                return Err(invalid(format!(
                    "the kind of {} is given twice",
                    o.endpoint
                )));
            }
        }
        let models = self
            .endpoints
            .iter()
            .any(|e| self.kind_of(e).is_model_server());
        if models && self.routing == Routing::Direct {
            return Err(invalid(
                "a model server needs the gateway's routing (drop --no-proxy)".to_owned(),
            ));
        }
        self.health.validate().map_err(|e| invalid(e.to_string()))?;
        if let Some(m) = &self.monitor {
            for s in [&m.ssh, &m.container].into_iter().flatten() {
                if s.is_empty()
                    || s.len() > 255
                    || s.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(invalid(format!("monitor target {s:?} is malformed")));
                }
            }
        }
        match (self.status, self.deregistered_at) {
            (Status::Active, Some(_)) => {
                Err(invalid("is active but has deregistered_at".to_owned()))
            }
            (Status::Inactive, None) => {
                Err(invalid("is inactive without deregistered_at".to_owned()))
            }
            _ => Ok(()),
        }
    }

    // Registry-internal transitions.

    pub(crate) fn stamp_registered(&mut self, rev: Revision, now: Timestamp) {
        self.status = Status::Active;
        self.deregistered_at = None;
        self.registered_at = now;
        self.updated_at = now;
        self.create_revision = rev;
        self.revision = rev;
    }

    pub(crate) fn stamp_updated(&mut self, prev: &Self, rev: Revision, now: Timestamp) {
        self.status = Status::Active;
        self.deregistered_at = None;
        self.registered_at = prev.registered_at;
        self.create_revision = prev.create_revision;
        self.updated_at = now;
        self.revision = rev;
    }

    pub(crate) fn stamp_deregistered(&mut self, rev: Revision, now: Timestamp) {
        self.status = Status::Inactive;
        self.deregistered_at = Some(now);
        self.updated_at = now;
        self.revision = rev;
    }
}
