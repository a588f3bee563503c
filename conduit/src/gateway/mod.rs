//! [`Gateway`]: the subsystems composed into one running gateway, the flow of DESIGN §2.
//!
//! ```text
//! services.json ─► FileRegistry ─┬─► DnsServer        (A/AAAA → the advertised address)
//!  (any process)                 ├─► ProxyServer      (route, health checks) ─► health_change ─┐
//!                                └─► certificate task (leaf issued, hot-installed) ─► cert_issue ┤
//!                                                                                   AuditLog ◄──┘
//! ```
//! Registrations are made by whoever writes the registry (the `conduit register` command,
//! the admin API of an embedding program); each of them audits its own change. The gateway
//! audits what it does itself: certificates issued and upstream health changes.
//!
//! Every task the gateway starts — servers, followers, the admin API's connections — is
//! spawned on one [`TaskTracker`] and stopped through one [`CancellationToken`]; `run`
//! returns when all of them have finished or the grace period is over.

mod handle;
mod recover;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use conduit_audit::AuditSink;
use conduit_ca::{CertManager, CertResolver};
use conduit_dns::DnsServer;
use conduit_monitor::{HostSource, MetricSource, Poller, Sample};
use conduit_proxy::ProxyServer;
use conduit_registry::{ListFilter, Registry, Revision};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use handle::GatewayHandle;

use crate::config::{ConduitConfig, ConfigError, MonitorSource};
use crate::state::StateDir;

/// Errors of the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration cannot be used (the operator's to fix; a retry does not help).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state directory cannot be created or read.
    #[error("state directory {}: {source}", path.display())]
    State {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The registry could not be opened or read.
    #[error(transparent)]
    Registry(#[from] conduit_registry::RegistryError),
    /// The CA could not be loaded or created, or a certificate action failed.
    #[error(transparent)]
    Ca(#[from] conduit_ca::CaError),
    /// The audit log could not be opened or read.
    #[error(transparent)]
    Audit(#[from] conduit_audit::AuditError),
    /// The DNS server could not start.
    #[error(transparent)]
    Dns(#[from] conduit_dns::DnsError),
    /// The proxy could not start.
    #[error(transparent)]
    Proxy(#[from] conduit_proxy::ProxyError),
    /// The monitor could not be set up.
    #[error(transparent)]
    Monitor(#[from] conduit_monitor::MonitorError),
    /// The admin socket could not be bound.
    #[error("admin listener {address}: {source}")]
    Admin {
        /// The socket path or TCP address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not available from this gateway (it was composed without that part).
    #[error("{what} is not available here")]
    Unavailable {
        /// What.
        what: &'static str,
    },
    /// A background task of ours failed (a bug: report it).
    #[error("internal error: the {what} task failed: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why.
        source: tokio::task::JoinError,
    },
}

impl GatewayError {
    /// Whether the same call may succeed later without anybody changing anything (the
    /// store was busy, a file was locked); `false` for configuration and input errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Registry(e) => e.is_transient(),
            Self::Audit(_) | Self::Admin { .. } => true,
            _ => false,
        }
    }
}

/// Everything a gateway is started with: where its state is, its configuration, who its
/// own audit records name.
#[derive(Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// The state directory: where [`Gateway::start`] opens the registry, the CA and the
    /// audit log, and where the admin socket goes by default. `None` for a gateway composed
    /// of its own parts ([`Gateway::start_with`]).
    pub state: Option<StateDir>,
    /// The configuration (`conduit.toml` with its overrides).
    pub settings: ConduitConfig,
    /// Where `settings` came from, for error messages (`/etc/conduit/conduit.toml`).
    pub origin: String,
    /// The user named in the gateway's own audit records.
    pub audit_user: String,
    /// Metric sources to use instead of those `settings.monitor` names (an embedder's own).
    pub monitor_sources: Option<Vec<Arc<dyn MetricSource>>>,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("state", &self.state)
            .field("settings", &self.settings)
            .field("origin", &self.origin)
            .field("audit_user", &self.audit_user)
            .field(
                "monitor_sources",
                &self.monitor_sources.as_ref().map(Vec::len),
            )
            .finish()
    }
}

impl GatewayConfig {
    /// The defaults for a state directory (zone `internal`, DNS on 127.0.0.1:5353, HTTPS on
    /// 127.0.0.1:8443, plain HTTP on 127.0.0.1:8080, advertising 127.0.0.1).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_settings(StateDir::new(dir), ConduitConfig::default(), "defaults")
    }

    /// A state directory with a configuration read elsewhere.
    pub fn with_settings(state: StateDir, settings: ConduitConfig, origin: &str) -> Self {
        Self {
            state: Some(state),
            settings,
            origin: origin.to_owned(),
            audit_user: "conduit".to_owned(),
            monitor_sources: None,
        }
    }

    /// A configuration for a gateway made of given parts, with no state directory (no admin
    /// socket unless `[admin] socket` names one).
    pub fn without_state(settings: ConduitConfig, origin: &str) -> Self {
        Self {
            state: None,
            settings,
            origin: origin.to_owned(),
            audit_user: "conduit".to_owned(),
            monitor_sources: None,
        }
    }

    /// The admin socket: `[admin] socket`, else the state directory's.
    pub fn admin_socket(&self) -> Option<PathBuf> {
        self.settings
            .admin
            .socket
            .clone()
            .or_else(|| self.state.as_ref().map(StateDir::admin_socket))
    }

    /// The metric sources `settings.monitor` names. GPU monitoring is skipped quietly on a
    /// host without NVML; a source this build lacks is a configuration error.
    ///
    /// # Errors
    /// [`GatewayError::Config`] or [`GatewayError::Monitor`].
    pub fn build_monitor_sources(&self) -> Result<Vec<Arc<dyn MetricSource>>, GatewayError> {
        if let Some(s) = &self.monitor_sources {
            return Ok(s.clone());
        }
        let m = &self.settings.monitor;
        let missing = |what: &str, feature: &str| {
            GatewayError::Config(ConfigError::Invalid {
                origin: self.origin.clone(),
                key: "monitor.sources".to_owned(),
                problem: format!(
                    "{what} monitoring is not in this build (cargo feature `{feature}`)"
                ),
            })
        };
        let mut out: Vec<Arc<dyn MetricSource>> = Vec::new();
        for source in &m.sources {
            match source {
                MonitorSource::Host => out.push(Arc::new(HostSource::new())),
                MonitorSource::Gpu => {
                    #[cfg(feature = "gpu")]
                    {
                        let nvml = conduit_monitor::NvmlSource::new();
                        if nvml.is_available() {
                            out.push(Arc::new(nvml));
                        }
                    }
                }
                MonitorSource::Docker => {
                    #[cfg(feature = "docker")]
                    out.push(Arc::new(match &m.docker_socket {
                        Some(p) => conduit_monitor::DockerSource::new(&p.to_string_lossy())?,
                        None => conduit_monitor::DockerSource::from_env()?,
                    }));
                    #[cfg(not(feature = "docker"))]
                    return Err(missing("container", "docker"));
                }
            }
        }
        for target in &m.ssh {
            #[cfg(feature = "ssh")]
            out.push(Arc::new(conduit_monitor::SshSource::new(
                conduit_monitor::RemoteTarget::parse(target)?,
            )));
            #[cfg(not(feature = "ssh"))]
            {
                let _ = target;
                return Err(missing("remote (SSH)", "ssh"));
            }
        }
        let _ = missing;
        Ok(out)
    }
}

/// What a gateway is made of, behind the subsystems' traits: any [`Registry`] (files, etcd,
/// memory), the certificate manager (issuing through the CA it was given) and any
/// [`AuditSink`]. [`Parts::open`] gives the defaults of a state directory.
#[derive(Clone)]
#[non_exhaustive]
pub struct Parts {
    /// Where services are registered; the gateway follows its changes.
    pub registry: Arc<dyn Registry>,
    /// Issues, serves and renews the services' certificates.
    pub certs: Arc<CertManager>,
    /// Where the gateway's own records go.
    pub audit: Arc<dyn AuditSink>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("certs", &self.certs)
            .finish_non_exhaustive()
    }
}

impl Parts {
    /// The given parts.
    pub fn new(
        registry: Arc<dyn Registry>,
        certs: Arc<CertManager>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        Self {
            registry,
            certs,
            audit,
        }
    }

    /// A state directory's parts: `services.json` (FileRegistry), the CA in `tls/`
    /// (LocalCa), `audit.log` sealed into `capsules.db` (AuditLog).
    ///
    /// # Errors
    /// [`GatewayError`] opening any of them.
    pub fn open(state: &StateDir, settings: &ConduitConfig) -> Result<Self, GatewayError> {
        state.create()?;
        Ok(Self {
            registry: Arc::new(state.open_registry()?),
            certs: Arc::new(CertManager::new(
                state.open_ca(settings.ca_config())?,
                Some(state.tls()),
                Arc::new(CertResolver::new()),
                Arc::new(time::OffsetDateTime::now_utc),
            )),
            audit: Arc::new(state.open_audit()?),
        })
    }
}

/// The name the admin listener's certificate is managed under (not a service name: those
/// are DNS labels).
const ADMIN_LEAF: &str = "@admin";

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
    config: GatewayConfig,
    registry: Arc<dyn Registry>,
    certs: Arc<CertManager>,
    audit: Arc<dyn AuditSink>,
    dns: Option<DnsServer>,
    proxy: Option<ProxyServer>,
    admin: Vec<crate::admin::Listener>,
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
    /// Validates the configuration, opens the state (registry, CA, audit), puts right what
    /// a crash left undone (unsealed audit lines, unaudited registry revisions), issues the
    /// certificates of the registered services and binds every listener. It raises the
    /// process's soft open-file limit to the hard one and fits every connection cap into it
    /// (see [`limits`](crate::limits)).
    ///
    /// # Errors
    /// Any [`GatewayError`]; nothing is left bound on error.
    pub async fn start(config: GatewayConfig) -> Result<Self, GatewayError> {
        config.settings.validate(&config.origin)?;
        let state = config.state.clone().ok_or_else(|| {
            GatewayError::Config(ConfigError::Invalid {
                origin: config.origin.clone(),
                key: "state directory".to_owned(),
                problem: "none given: use Gateway::start_with and its own parts".to_owned(),
            })
        })?;
        let parts = Parts::open(&state, &config.settings)?;
        // What a crash or a lock left undone: unsealed lines, unaudited revisions.
        recover::seal_and_report(&state, parts.audit.as_ref(), &config.audit_user).await?;
        Self::start_with(config, parts).await
    }

    /// As [`Gateway::start`], with the given parts instead of a state directory's: an
    /// embedder brings its own registry (etcd, in memory), CA and audit sink.
    ///
    /// # Errors
    /// Any [`GatewayError`]; nothing is left bound on error.
    pub async fn start_with(config: GatewayConfig, parts: Parts) -> Result<Self, GatewayError> {
        let s = &config.settings;
        s.validate(&config.origin)?;
        let mut proxy_config = s.proxy_config(&config.origin)?;
        // Every connection cap fits the descriptors this process may open.
        let budget = crate::limits::raise_nofile().map_err(|source| GatewayError::State {
            path: PathBuf::from("RLIMIT_NOFILE"),
            source,
        })?;
        let l = &mut proxy_config.limits;
        l.max_connections = l.max_connections.min(budget.client_connections());
        l.max_connections_per_client = l
            .max_connections_per_client
            .min(budget.client_connections_per_address());
        l.max_conns_per_upstream = l.max_conns_per_upstream.min(budget.upstream_connections());
        let mut dns_tcp = conduit_dns::TcpSettings::default();
        dns_tcp.max_connections = dns_tcp.max_connections.min(budget.dns_tcp_connections());
        tracing::info!(
            open_files = budget.limit,
            raised_from = ?budget.raised_from,
            client_connections = l.max_connections,
            per_client = l.max_connections_per_client,
            per_upstream = l.max_conns_per_upstream,
            dns_tcp = dns_tcp.max_connections,
            "descriptor budget"
        );
        let monitor_sources = config.build_monitor_sources()?;
        let Parts {
            registry,
            certs,
            audit,
        } = parts;
        // Every registry revision without an audit record is audited now.
        recover::audit_unaudited_revisions(registry.as_ref(), audit.as_ref(), &config.audit_user)
            .await?;
        let since = registry.revision().await?;
        for rec in registry.list(ListFilter::Active).await? {
            tasks::ensure_cert(&certs, audit.as_ref(), &config.audit_user, &rec).await;
        }
        let dns = if s.dns.listen.is_empty() {
            None
        } else {
            let mut b = DnsServer::builder()
                .registry(registry.clone())
                .zones(s.zone_config())
                .forwarders(s.dns.forwarders.clone())
                .tcp_settings(dns_tcp);
            for a in &s.dns.listen {
                b = b.listen(*a);
            }
            Some(b.bind().await?)
        };
        let proxy = if s.proxy.listen.is_empty() {
            None
        } else {
            let mut b = ProxyServer::builder()
                .registry(registry.clone())
                .certificates(certs.resolver().clone())
                .config(proxy_config);
            for a in &s.proxy.listen {
                b = b.listen(*a);
            }
            for a in &s.proxy.http_listen {
                b = b.listen_http(*a);
            }
            Some(b.bind().await?)
        };
        let admin_socket = config.admin_socket();
        let mut admin = Vec::new();
        if let Some(path) = &admin_socket {
            admin.push(crate::admin::bind_unix(path)?);
        }
        if let Some(addr) = s.admin.listen
            && let Some(token) = s.admin_token(&config.origin)?
        {
            let tls = if s.admin_tls() {
                // A leaf from our CA for the listener's address (and a name), renewed with
                // the others.
                let mut req = conduit_ca::IssueRequest {
                    dns_names: vec![format!("conduit-admin.{}", s.zone)],
                    ..conduit_ca::IssueRequest::default()
                };
                if !addr.ip().is_unspecified() {
                    req.ip_addresses.push(addr.ip());
                }
                let mgr = certs.clone();
                tokio::task::spawn_blocking(move || mgr.ensure(ADMIN_LEAF, req))
                    .await
                    .map_err(|source| GatewayError::Task {
                        what: "admin certificate",
                        source,
                    })??;
                Some(certs.resolver().clone())
            } else {
                None
            };
            admin.push(crate::admin::bind_tcp(addr, token, tls).await?);
        }
        Ok(Self {
            samples: Arc::default(),
            config,
            registry,
            certs,
            audit,
            dns,
            proxy,
            admin,
            admin_socket,
            monitor_sources,
            since,
        })
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
            audit: self.audit.clone(),
            user: self.config.audit_user.clone(),
            dns: self.dns.as_ref().map(DnsServer::handle),
            proxy: self.proxy.as_ref().map(ProxyServer::handle),
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
            audit,
            dns,
            proxy,
            admin,
            admin_socket,
            monitor_sources,
            since,
        } = self;
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let user = config.audit_user.clone();
        let s = &config.settings;
        tracker.spawn(tasks::follow_certs(
            registry.clone(),
            certs.clone(),
            audit.clone(),
            user.clone(),
            since,
            token.clone(),
        ));
        tracker.spawn(tasks::renew_certs(
            certs.clone(),
            s.ca.renew_check_interval,
            audit.clone(),
            user.clone(),
            token.clone(),
        ));
        if let Some(p) = &proxy {
            tracker.spawn(tasks::audit_health(
                p.handle(),
                audit.clone(),
                user.clone(),
                token.clone(),
            ));
        }
        if !monitor_sources.is_empty() {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let poller = Poller::new(monitor_sources)
                .with_interval(s.monitor.interval)
                .with_thresholds(s.monitor.thresholds.clone());
            tracker.spawn(poller.run(tx, token.clone().cancelled_owned()));
            tracker.spawn(tasks::keep_rounds(
                rx,
                samples.clone(),
                audit.clone(),
                user.clone(),
            ));
        }
        for listener in admin {
            tracker.spawn(crate::admin::serve(
                listener,
                handle.clone(),
                token.clone(),
                tracker.clone(),
            ));
        }
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
