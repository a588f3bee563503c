//! [`ProxyHandle`]: a running proxy's counters, health events and upstream states, and its
//! [`Upstream`] picker.

use std::sync::Arc;

use conduit_registry::{DomainName, Endpoint};
use tokio::sync::broadcast;

use crate::Upstream;
use crate::metrics::ProxyStats;
use crate::routes::{HealthEvent, UpstreamStatus};
use crate::shared::Shared;

/// A handle on a running proxy: stats, health events, upstream states.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ProxyHandle {
    /// Serves `doc` at `path` on the plain-HTTP listeners from now on, for any `Host` that
    /// is not a plain-HTTP service (`None`: no longer). When this returns, the next
    /// request gets it.
    pub fn publish(&self, path: &str, doc: Option<crate::Document>) {
        self.shared.published.set(path, doc);
    }

    /// Answers requests for `name` with `site` from the next request on (`None`: no local
    /// site). The name is the site's alone: a service registered under it is not routed
    /// while the site is mounted. Plain-HTTP requests for it are redirected to HTTPS.
    pub fn set_local_site(&self, mount: Option<(&DomainName, Arc<dyn crate::LocalSite>)>) {
        self.shared
            .local
            .store(mount.map(|(name, site)| Arc::new(crate::local::Mounted::new(name, site))));
    }

    /// Enforces `control` from the next request on (`None`: every request goes on). A
    /// connection already open keeps its streams; each new request is decided by the
    /// policy in force when it arrives. With client authentication, connections whose SNI
    /// names a service that wants a certificate are asked for one.
    ///
    /// # Errors
    /// [`ProxyError::Tls`](crate::ProxyError::Tls) when the certificate-asking TLS
    /// configuration cannot be built; the previous policy stays in force.
    pub fn set_access(
        &self,
        control: Option<crate::AccessControl>,
    ) -> Result<(), crate::ProxyError> {
        let Some(control) = control else {
            self.shared.access.store(None);
            return Ok(());
        };
        let mtls = match (&control.client_auth, &self.shared.tls) {
            (Some(auth), Some(base)) if control.evaluator.any_wants_cert() => {
                Some(crate::policy::mtls_config(
                    &base.config,
                    Arc::clone(&base.certs),
                    base.versions,
                    Arc::clone(&auth.verifier),
                )?)
            }
            _ => None,
        };
        self.shared
            .access
            .store(Some(Arc::new(crate::policy::Enforced { control, mtls })));
        Ok(())
    }

    /// Every request refused by the access policy from now on.
    pub fn access_denials(&self) -> broadcast::Receiver<crate::AccessDenied> {
        self.shared.access_tx.subscribe()
    }

    /// The counters now.
    pub fn stats(&self) -> ProxyStats {
        self.shared.counters.snapshot()
    }

    /// Prometheus text: the counters, the latency histogram and each upstream's health.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write as _;
        let mut out = self.stats().prometheus();
        let _ = writeln!(
            out,
            "# HELP conduit_proxy_upstream_healthy Whether an upstream gets traffic.\n# TYPE conduit_proxy_upstream_healthy gauge"
        );
        let table = self.shared.routes.load();
        let mut routes: Vec<_> = table.routes().collect();
        routes.sort_by(|a, b| a.domain.cmp(&b.domain));
        for r in &routes {
            for b in r.backends.iter() {
                let _ = writeln!(
                    out,
                    "conduit_proxy_upstream_healthy{{service=\"{}\",upstream=\"{}\"}} {}",
                    r.service,
                    b.endpoint,
                    u8::from(b.is_healthy())
                );
            }
        }
        crate::llm::prometheus(&routes, &mut out);
        out
    }

    /// Every upstream transition from now on (up → down, down → up).
    pub fn health_events(&self) -> broadcast::Receiver<HealthEvent> {
        self.shared.health_tx.subscribe()
    }

    /// The domains routed now.
    pub fn routes(&self) -> Vec<DomainName> {
        let mut v: Vec<_> = self
            .shared
            .routes
            .load()
            .routes()
            .map(|r| r.domain.clone())
            .collect();
        v.sort();
        v
    }

    /// The upstreams of a domain and their state; `None` without a route.
    pub fn upstreams(&self, domain: &str) -> Option<Vec<UpstreamStatus>> {
        let table = self.shared.routes.load();
        let route = table.get(domain.trim_end_matches('.'))?;
        let last = route.models.as_ref().and_then(|m| m.last.load_full());
        Some(
            route
                .backends
                .iter()
                .map(|b| {
                    let (requests, failures) = b.counts();
                    UpstreamStatus {
                        endpoint: b.endpoint.clone(),
                        healthy: b.is_healthy(),
                        outstanding: b.outstanding(),
                        requests,
                        failures,
                        latency: b.latency(),
                        models: b
                            .engine_state()
                            .map(|st| crate::llm::UpstreamModels::of(b, st, last.as_deref())),
                    }
                })
                .collect(),
        )
    }
}

impl Upstream for ProxyHandle {
    fn select(&self, host: &DomainName) -> Option<Endpoint> {
        let table = self.shared.routes.load();
        let route = table.get(host.as_str())?;
        route
            .pick(self.shared.config.balance, &[])
            .map(|b| b.endpoint.clone())
    }
}
