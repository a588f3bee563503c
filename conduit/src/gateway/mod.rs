//! [`Gateway`]: the subsystems composed into one running gateway, the flow of DESIGN §2.
//!
//! ```text
//! dyn Registry ─┬─► DnsServer        (A/AAAA → the advertised address)
//!  (services.json,├─► ProxyServer      (route, health checks) ─► health_change ─┐
//!   etcd, memory) └─► CertManager      (leaf from dyn CertIssuer, hot-installed) ─► cert_issue ┤
//!                                                                          dyn AuditSink ◄──┘
//! ```
//! Each consumer follows the registry through the one [`RegistryFollower`] loop (watch →
//! coalesce → list → rebuild → swap). The parts are chosen with [`Gateway::builder`]; what
//! is not given is the state directory's default.
//! Registrations are made by whoever writes the registry (the `conduit register` command,
//! the admin API of an embedding program); each of them audits its own change. The gateway
//! audits what it does itself: certificates issued and upstream health changes.
//!
//! [`RegistryFollower`]: conduit_registry::RegistryFollower
//!
//! Every task the gateway starts — servers, followers, the admin API's connections — is
//! spawned on one [`TaskTracker`] and stopped through one [`CancellationToken`]; `run`
//! returns when all of them have finished or the grace period is over.

mod access;
mod admin;
mod alerts;
mod builder;
mod ca;
mod cert_report;
mod checkpoint;
mod config;
mod dashboard;
mod error;
mod grants;
mod handle;
mod http_out;
mod in_use;
mod publish;
mod recover;
mod services;
#[cfg(feature = "etcd")]
mod site_witness;
#[cfg(feature = "etcd")]
mod snapshot;
mod sources;
mod sse;
mod store;
mod tasks;
mod tokens;
mod witness;
mod witnessed;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use conduit_audit::AuditSink;
use conduit_ca::CertManager;
use conduit_dns::DnsServer;
use conduit_monitor::{MetricSource, Poller, Sample};
use conduit_proxy::ProxyServer;
use conduit_registry::{Registry, Revision};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use access::peer_cert_name;
pub use builder::GatewayBuilder;
pub use ca::{CRL_PATH, ROOT_CRL_PATH, ROOT_PEM_PATH};
pub use config::GatewayConfig;
pub use error::GatewayError;
pub use grants::access_verdict;
pub use handle::GatewayHandle;
pub use http_out::{InvalidUrl, Target};
pub use services::Expect;
#[cfg(feature = "etcd")]
pub use snapshot::SnapshotError;
pub use store::open_registry;
pub use witness::WitnessUrl;
pub use witnessed::WitnessError;

use crate::state::StateDir;

/// The name the admin listener's certificate is managed under (not a service name: those
/// are DNS labels).
const ADMIN_LEAF: &str = "@admin";
/// The managed name of the address certificate (served without SNI).
const ADDRESS_LEAF: &str = "@address";

/// A bound gateway: call [`Gateway::run`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use conduit::gateway::{Gateway, GatewayConfig};
/// use conduit::registry::{FileRegistry, Registry, ServiceRecord};
///
/// let dir = tempfile::tempdir()?;
/// let mut cfg = GatewayConfig::new(dir.path());
/// cfg.settings.dns.listen = vec!["127.0.0.1:0".parse()?];   // any free port
/// cfg.settings.proxy.listen = vec!["127.0.0.1:0".parse()?];
/// cfg.settings.proxy.http_listen = vec!["127.0.0.1:0".parse()?];
/// let gateway = Gateway::start(cfg).await?;        // state created: CA, registry, audit
/// let handle = gateway.handle();
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(gateway.run(async { let _ = stopped.await; }));
///
/// // Any process may write the registry; the gateway follows it.
/// let registry = FileRegistry::open(dir.path())?;
/// registry.register(ServiceRecord::new("grafana".parse()?, "10.0.1.50:3000".parse()?)).await?;
/// let mut status = handle.status().await?;
/// for _ in 0..200 {
///     if status.services.first().is_some_and(|s| s.certificate_not_after.is_some()) { break; }
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
///     status = handle.status().await?;
/// }
/// assert_eq!(status.services[0].domain, "grafana.internal");
/// assert!(status.services[0].certificate_not_after.is_some()); // issued, served
/// let _ = stop.send(());
/// running.await??;
/// # Ok(()) }
/// ```
pub struct Gateway {
    samples: Arc<std::sync::RwLock<Vec<Sample>>>,
    ensured: tasks::Ensured,
    ssrf: Arc<conduit_proxy::SsrfPolicy>,
    events: crate::events::EventBus,
    audit_gate: publish::AuditGate,
    access: Arc<access::AccessRuntime>,
    witnesses: witness::WitnessBoard,
    /// The dashboard's URL once it is mounted.
    dashboard: Arc<std::sync::OnceLock<String>>,
    /// The shared registry store, when the registry is one.
    store: store::StoreLink,
    config: GatewayConfig,
    registry: Arc<dyn Registry>,
    certs: Arc<CertManager>,
    /// The gateway's own CA, when the issuer is it (offline-root operations need it).
    local_ca: Option<Arc<conduit_ca::LocalIssuer>>,
    /// Wakes the certificate follower to issue what could not be issued before.
    cert_retry: Arc<tokio::sync::Notify>,
    /// The chain's checkpoints, when the audit log is the state directory's.
    checkpoints: Option<Arc<checkpoint::Checkpointer>>,
    /// One witnessed checkpoint at a time.
    witness_lock: Arc<tokio::sync::Mutex<()>>,
    audit: Arc<dyn AuditSink>,
    dns: Option<DnsServer>,
    proxy: Option<ProxyServer>,
    admin: Vec<admin::Listener>,
    admin_socket: Option<PathBuf>,
    monitor_sources: Vec<Arc<dyn MetricSource>>,
    since: Revision,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("state", &self.config.state)
            .field("dns", &self.dns_addrs())
            .field("https", &self.https_addrs())
            .field("http", &self.http_addrs())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway to compose: give it any of its parts ([`GatewayBuilder::registry`],
    /// [`GatewayBuilder::issuer`], [`GatewayBuilder::audit`],
    /// [`GatewayBuilder::metric_source`]) and [`GatewayBuilder::start`] it; what is not given
    /// is opened from `config.state`.
    pub fn builder(config: GatewayConfig) -> GatewayBuilder {
        GatewayBuilder::new(config)
    }

    /// Starts a gateway of the state directory's default parts: [`Gateway::builder`] with
    /// nothing given.
    ///
    /// # Errors
    /// As [`GatewayBuilder::start`].
    pub async fn start(config: GatewayConfig) -> Result<Self, GatewayError> {
        Self::builder(config).start().await
    }

    /// The DNS listeners' addresses.
    pub fn dns_addrs(&self) -> Vec<SocketAddr> {
        self.dns
            .as_ref()
            .map(DnsServer::udp_addrs)
            .unwrap_or_default()
    }

    /// The HTTPS listeners' addresses.
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.proxy
            .as_ref()
            .map(ProxyServer::https_addrs)
            .unwrap_or_default()
    }

    /// The plain-HTTP listeners' addresses.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.proxy
            .as_ref()
            .map(ProxyServer::http_addrs)
            .unwrap_or_default()
    }

    /// The admin API's unix socket, if it has one.
    pub fn admin_socket(&self) -> Option<&std::path::Path> {
        self.admin_socket.as_deref()
    }

    /// The gateway's audit sink: an embedding program (a tunnel agent) appends its own
    /// records to the same log and sealed chain.
    pub fn audit_log(&self) -> Arc<dyn AuditSink> {
        self.audit.clone()
    }

    /// A handle on the running parts.
    pub fn handle(&self) -> GatewayHandle {
        GatewayHandle {
            state: self.config.state.clone(),
            samples: self.samples.clone(),
            registry: self.registry.clone(),
            certs: self.certs.clone(),
            local_ca: self.local_ca.clone(),
            cert_retry: self.cert_retry.clone(),
            checkpoints: self.checkpoints.clone(),
            witness_lock: self.witness_lock.clone(),
            audit: self.audit.clone(),
            user: self.config.audit_user.clone(),
            dns: self.dns.as_ref().map(DnsServer::handle),
            dns_addr: self
                .dns
                .as_ref()
                .and_then(|d| d.udp_addrs().first().copied()),
            proxy: self.proxy.as_ref().map(ProxyServer::handle),
            settings: Arc::new(self.config.settings.clone()),
            origin: Arc::from(self.config.origin.as_str()),
            ssrf: self.ssrf.clone(),
            events: self.events.clone(),
            audit_gate: self.audit_gate.clone(),
            access: self.access.clone(),
            witnesses: self.witnesses.clone(),
            dashboard: self.dashboard.clone(),
            store: self.store.clone(),
        }
    }

    /// Serves until `shutdown` completes, then stops every task (the proxy drains within
    /// its grace period) and returns when all of them have finished.
    ///
    /// # Errors
    /// A server's fatal error.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
        let handle = self.handle();
        let Self {
            samples,
            config,
            registry,
            certs,
            local_ca: _,
            cert_retry,
            checkpoints,
            witness_lock: _,
            audit,
            dns,
            proxy,
            admin,
            admin_socket,
            monitor_sources,
            since,
            ensured,
            ssrf: _,
            events,
            audit_gate: _,
            access: _,
            witnesses: _,
            dashboard: _,
            store,
        } = self;
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let rep = tasks::Reporter {
            log: audit.clone(),
            user: config.audit_user.clone(),
            bus: events.clone(),
        };
        let s = &config.settings;
        store.spawn(&tracker, &token, &handle, config.state.as_ref())?;
        tracker.spawn(publish::registry_events(
            registry.clone(),
            events.clone(),
            since,
            token.clone(),
        ));
        tracker.spawn(tasks::follow_certs(
            registry.clone(),
            certs.clone(),
            rep.clone(),
            since,
            ensured,
            (cert_retry, token.clone()),
        ));
        tracker.spawn(tasks::renew_certs(
            handle.clone(),
            s.ca.renew_check_interval,
            rep.clone(),
            token.clone(),
        ));
        if !s.alerts.alertmanager.is_empty() {
            let roots = http_out::trusted_roots(&config, s.alerts.ca.as_ref());
            let tls = http_out::tls_client(&roots).map_err(|source| GatewayError::TlsClient {
                what: "Alertmanagers",
                source,
            })?;
            let alerter = alerts::Alerter::new(
                &s.alerts.alertmanager,
                tls,
                (
                    s.alerts.resend_interval,
                    s.alerts.certificate_expiry_warning,
                ),
                certs.clone(),
                events.clone(),
            )
            .map_err(|e| {
                GatewayError::Config(crate::config::ConfigError::invalid(
                    &config.origin,
                    "alerts.alertmanager",
                    e.to_string(),
                ))
            })?;
            tracker.spawn(alerts::run(alerter, token.clone()));
        }
        if let Some(cp) = checkpoints {
            let roots = http_out::trusted_roots(&config, s.audit.witness_ca.as_ref());
            let witnesses = witness::Witnesses::new(
                &s.audit.witnesses,
                s.audit.witness_token.clone(),
                &roots,
                events.clone(),
                handle.witnesses.clone(),
            )?;
            tracker.spawn(checkpoint::verify(
                cp.clone(),
                s.audit.verify_interval,
                rep.clone(),
                token.clone(),
            ));
            tracker.spawn(checkpoint::run(
                cp,
                s.audit.checkpoint_interval,
                (witnesses, store.clone()),
                token.clone(),
            ));
        }
        if let Some(p) = &proxy {
            tracker.spawn(tasks::audit_health(p.handle(), rep.clone(), token.clone()));
            tracker.spawn(access::report_denials(
                handle.clone(),
                rep.clone(),
                s.access.denied_audit_interval,
                token.clone(),
            ));
        }
        tracker.spawn(access::follow_policy(handle.clone(), token.clone()));
        if let Some(d) = &dns {
            tracker.spawn(tasks::audit_reloads(d.handle(), rep.clone(), token.clone()));
        }
        if !monitor_sources.is_empty() {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let poller = Poller::new(monitor_sources)
                .with_interval(s.monitor.interval)
                .with_thresholds(s.monitor.thresholds.clone());
            tracker.spawn(poller.run(tx, token.clone().cancelled_owned()));
            tracker.spawn(tasks::keep_rounds(rx, samples.clone(), rep.clone()));
        }
        for listener in admin {
            tracker.spawn(admin::serve(
                listener,
                handle.clone(),
                token.clone(),
                tracker.clone(),
            ));
        }
        let mounted = proxy
            .as_ref()
            .and_then(|p| dashboard::mount(p, &handle, &token, &tracker));
        let mut servers = Vec::new();
        if let Some(d) = dns {
            let stop = token.clone().cancelled_owned();
            servers
                .push(tracker.spawn(async move { d.run(stop).await.map_err(GatewayError::from) }));
        }
        if let Some(p) = proxy {
            let stop = token.clone().cancelled_owned();
            servers
                .push(tracker.spawn(async move { p.run(stop).await.map_err(GatewayError::from) }));
        }
        tracker.close();
        tracing::info!(dir = ?config.state.as_ref().map(StateDir::path), "gateway running");
        shutdown.await;
        tracing::info!("gateway stopping");
        token.cancel();
        if let Some(p) = mounted {
            p.set_local_site(None);
        }
        let mut result = Ok(());
        for server in servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(source) => {
                    result = Err(GatewayError::Task {
                        what: "server",
                        source,
                    });
                }
            }
        }
        // The servers drained within the proxy's grace period; what is left is short.
        if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = tracker.len(),
                "gateway tasks still running after shutdown"
            );
        }
        if let Some(path) = &admin_socket {
            let _ = std::fs::remove_file(path);
        }
        result
    }
}
