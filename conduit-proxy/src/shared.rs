//! What every connection and task of one proxy shares ([`Shared`]: the route table, the
//! upstream connector, the configuration, the counters, health events) and what one client
//! connection tells its requests ([`ConnInfo`]).

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::broadcast;

use crate::config::ProxyConfig;
use crate::metrics::Counters;
use crate::routes::{Backend, CheckSource, HealthEvent, Route, RouteTable};
use crate::ssrf::GuardedResolver;

/// The upstream connector: TCP through the SSRF guard's resolver, TLS for `https://`.
pub(crate) type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// What every connection and task of one proxy shares.
pub(crate) struct Shared {
    pub(crate) routes: ArcSwap<RouteTable>,
    pub(crate) connector: Connector,
    pub(crate) config: ProxyConfig,
    pub(crate) counters: Arc<Counters>,
    pub(crate) health_tx: broadcast::Sender<HealthEvent>,
    pub(crate) tunnels: tokio::sync::watch::Sender<usize>,
    /// `Strict-Transport-Security` for HTTPS answers, when configured.
    pub(crate) hsts: Option<HeaderValue>,
    /// What the plain-HTTP listeners serve themselves (CRLs).
    pub(crate) published: crate::published::Published,
    /// The access policy in force (none: every request goes on).
    pub(crate) access: arc_swap::ArcSwapOption<crate::policy::Enforced>,
    /// Refused requests, for whoever reports them.
    pub(crate) access_tx: broadcast::Sender<crate::policy::AccessDenied>,
    /// The HTTPS configuration and what built it (an mTLS variant is built from them).
    pub(crate) tls: Option<crate::tls::TlsBase>,
    /// The site the proxy answers itself, when one is mounted.
    pub(crate) local: arc_swap::ArcSwapOption<crate::local::Mounted>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("routes", &self.routes.load().len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Counts one outcome on `backend` and publishes a transition.
    pub(crate) fn record(
        &self,
        route: &Route,
        backend: &Backend,
        ok: bool,
        source: CheckSource,
        reason: impl FnOnce() -> String,
    ) {
        if source == CheckSource::Passive && !ok {
            backend.count_failure();
        }
        if source == CheckSource::Passive && !self.config.health.passive {
            return;
        }
        let Some(healthy) = backend.record(ok, &route.health, source) else {
            return;
        };
        let reason = reason();
        if healthy {
            tracing::info!(service = %route.service, upstream = %backend.endpoint, %reason, "upstream is up");
        } else {
            tracing::warn!(service = %route.service, upstream = %backend.endpoint, ?source, %reason, "upstream is down");
        }
        let _ = self.health_tx.send(HealthEvent {
            at: std::time::SystemTime::now(),
            service: route.service.clone(),
            domain: route.domain.clone(),
            endpoint: backend.endpoint.clone(),
            healthy,
            source,
            reason,
        });
    }
}

/// Facts about the client connection a request came on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) client_ip: IpAddr,
    pub(crate) client_ip_header: HeaderValue,
    /// `for=…;proto=…`, the `Forwarded` value for this connection.
    pub(crate) forwarded_header: HeaderValue,
    /// The client is a trusted proxy: its forwarding headers are kept.
    pub(crate) trusted: bool,
    /// The listener's port when it is not the scheme's default (443, 80): upstreams get it
    /// in `Host`, so that the URLs they build point back at the gateway.
    pub(crate) port: Option<u16>,
    /// The connection's admission record (each request marks it as recently used).
    pub(crate) admitted: Option<Arc<crate::admission::ConnState>>,
    /// The SNI name of a TLS connection (lower case).
    pub(crate) sni: Option<Box<str>>,
    /// Who a verified client certificate says the client is.
    pub(crate) cert: Option<crate::policy::ClientIdentity>,
    pub(crate) https: bool,
    /// On a plain-HTTP connection: the HTTPS port that TLS services are redirected to.
    pub(crate) redirect_port: u16,
}

impl ConnInfo {
    pub(crate) fn new(client_ip: IpAddr, sni: Option<&str>, https: bool) -> Self {
        let client_ip = crate::ssrf::canonical(client_ip);
        let proto = if https { "https" } else { "http" };
        let forwarded = match client_ip {
            IpAddr::V4(ip) => format!("for={ip};proto={proto}"),
            IpAddr::V6(ip) => format!("for=\"[{ip}]\";proto={proto}"),
        };
        Self {
            client_ip,
            client_ip_header: HeaderValue::from_str(&client_ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_header: HeaderValue::from_str(&forwarded)
                .unwrap_or(HeaderValue::from_static("for=unknown")),
            trusted: false,
            port: None,
            admitted: None,
            sni: sni.map(|s| s.to_ascii_lowercase().into_boxed_str()),
            cert: None,
            https,
            redirect_port: 443,
        }
    }

    /// The listener's port (left out of `Host` when it is the scheme's default).
    pub(crate) fn on_port(mut self, port: u16) -> Self {
        let default = if self.https { 443 } else { 80 };
        self.port = (port != default).then_some(port);
        self
    }

    /// The admission record requests on this connection update.
    pub(crate) fn admitted(mut self, state: Arc<crate::admission::ConnState>) -> Self {
        self.admitted = Some(state);
        self
    }

    /// Marks the client as a trusted proxy when its address is in `trusted`.
    pub(crate) fn trusting(mut self, trusted: &[crate::Cidr]) -> Self {
        self.trusted = trusted.iter().any(|n| n.contains(self.client_ip));
        self
    }

    /// A plain-HTTP connection: services without TLS are served, the others redirected to
    /// HTTPS on `redirect_port`.
    pub(crate) fn plain(client_ip: IpAddr, redirect_port: u16) -> Self {
        Self {
            redirect_port,
            ..Self::new(client_ip, None, false)
        }
    }
}
