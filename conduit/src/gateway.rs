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

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use conduit_audit::{
    AuditEvent, AuditLog, CapsuleOptions, CapsuleSink, JsonlOptions, JsonlSink, SealKey,
};
use conduit_ca::{CaConfig, CertManager, CertResolver, IssueRequest, LocalCa};
use conduit_dns::{DnsHandle, DnsServer, ZoneConfig};
use conduit_monitor::{HostSource, MetricSource, Poller, Round, Sample};
use conduit_proxy::{ProxyConfig, ProxyHandle, ProxyServer};
use conduit_registry::{
    ChangeKind, DomainName, FileRegistry, ListFilter, Registry, Revision, Routing, ServiceRecord,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::audited::record;

/// Errors of the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The registry could not be opened or read.
    #[error(transparent)]
    Registry(#[from] conduit_registry::RegistryError),
    /// The CA could not be loaded or created.
    #[error(transparent)]
    Ca(#[from] conduit_ca::CaError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] conduit_audit::AuditError),
    /// The DNS server could not start.
    #[error(transparent)]
    Dns(#[from] conduit_dns::DnsError),
    /// The proxy could not start.
    #[error(transparent)]
    Proxy(#[from] conduit_proxy::ProxyError),
    /// The admin socket could not be bound.
    #[error("admin socket {path}: {source}")]
    Admin {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where the gateway keeps its state and what it listens on.
#[derive(Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// The state directory: `services.json`, `tls/`, `audit.log`, `capsules.db`, `key`.
    pub config_dir: PathBuf,
    /// The zone names are served in (default `internal`).
    pub zone: DomainName,
    /// DNS listeners (UDP and TCP).
    pub dns_listen: Vec<SocketAddr>,
    /// HTTPS listeners.
    pub https_listen: Vec<SocketAddr>,
    /// Plain-HTTP listeners that redirect to HTTPS.
    pub http_redirect: Vec<SocketAddr>,
    /// The addresses DNS gives for proxied names (the gateway's own).
    pub advertise: Vec<IpAddr>,
    /// Resolvers for names outside the zone (empty: REFUSED, the air-gapped default).
    pub dns_forwarders: Vec<SocketAddr>,
    /// The proxy's configuration.
    pub proxy: ProxyConfig,
    /// The admin API's unix socket (JSON over HTTP), if any.
    pub admin_socket: Option<PathBuf>,
    /// The admin API on TCP (for a dashboard on another host, say), if any: every request
    /// must carry this bearer token. Without a token the gateway refuses to start.
    pub admin_tcp: Option<(SocketAddr, Option<String>)>,
    /// The user named in the gateway's own audit records.
    pub audit_user: String,
    /// What the monitor samples (default: this host); empty disables monitoring.
    pub monitor_sources: Vec<Arc<dyn MetricSource>>,
    /// Time between monitor rounds (default 30 s).
    pub monitor_interval: Duration,
}

impl GatewayConfig {
    /// Defaults for a state directory: zone `internal`, DNS on 127.0.0.1:5353, HTTPS on
    /// 127.0.0.1:8443 (unprivileged ports), advertising 127.0.0.1.
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            config_dir: config_dir.into(),
            zone: DomainName::internal(),
            dns_listen: vec![SocketAddr::from(([127, 0, 0, 1], 5353))],
            https_listen: vec![SocketAddr::from(([127, 0, 0, 1], 8443))],
            http_redirect: Vec::new(),
            advertise: vec![IpAddr::from([127, 0, 0, 1])],
            dns_forwarders: Vec::new(),
            proxy: ProxyConfig::default(),
            admin_socket: None,
            admin_tcp: None,
            audit_user: "conduit".to_owned(),
            monitor_sources: vec![Arc::new(HostSource::new())],
            monitor_interval: Duration::from_secs(30),
        }
    }

    /// Checks everything that can be checked before a socket is bound.
    ///
    /// # Errors
    /// [`GatewayError::Config`] naming the problem.
    pub fn validate(&self) -> Result<(), GatewayError> {
        if self.https_listen.is_empty() && self.dns_listen.is_empty() {
            return Err(GatewayError::Config(
                "nothing to serve: give a DNS or an HTTPS listener".to_owned(),
            ));
        }
        if let Some((addr, token)) = &self.admin_tcp {
            match token {
                None => {
                    return Err(GatewayError::Config(format!(
                        "refusing the admin API on TCP {addr} without a token{}",
                        if addr.ip().is_loopback() {
                            ""
                        } else {
                            " (and it is not a loopback address)"
                        }
                    )));
                }
                Some(t) if t.len() < 16 => {
                    return Err(GatewayError::Config(
                        "the admin token must be at least 16 characters".to_owned(),
                    ));
                }
                Some(_) => {}
            }
        }
        if self.monitor_interval < Duration::from_secs(1) {
            return Err(GatewayError::Config(
                "monitor interval must be at least 1 s".to_owned(),
            ));
        }
        if self.advertise.is_empty() {
            return Err(GatewayError::Config(
                "no advertised address: DNS needs the gateway's address for proxied names"
                    .to_owned(),
            ));
        }
        self.proxy.validate()?;
        self.zone_config().validate()?;
        Ok(())
    }

    fn zone_config(&self) -> ZoneConfig {
        let mut z = ZoneConfig::new(vec![self.zone.clone()]).with_advertise(self.advertise.clone());
        if let Some(port) = self.https_listen.first().map(SocketAddr::port) {
            z = z.with_https_port(port);
        }
        z
    }
}

/// Paths inside a state directory.
pub mod paths {
    use std::path::{Path, PathBuf};

    /// The CA's directory.
    pub fn tls(dir: &Path) -> PathBuf {
        dir.join("tls")
    }
    /// The JSONL audit log.
    pub fn audit_log(dir: &Path) -> PathBuf {
        dir.join("audit.log")
    }
    /// The sealed chain.
    pub fn capsules(dir: &Path) -> PathBuf {
        dir.join("capsules.db")
    }
    /// The root certificate clients trust.
    pub fn root_pem(dir: &Path) -> PathBuf {
        tls(dir).join("root.pem")
    }
}

/// Opens the audit log of a state directory: JSONL, sealed into `capsules.db` with the
/// directory's key (created on first use).
///
/// # Errors
/// [`GatewayError::Audit`].
pub fn open_audit(dir: &Path) -> Result<AuditLog, GatewayError> {
    let key = SealKey::load_or_create(dir)?;
    Ok(AuditLog::new(
        JsonlSink::open(paths::audit_log(dir), JsonlOptions::default())?,
        Some(CapsuleSink::open(
            paths::capsules(dir),
            Some(key),
            CapsuleOptions::default(),
        )?),
    ))
}

/// Opens (or creates) the CA of a state directory for `zone`.
///
/// # Errors
/// [`GatewayError::Ca`].
pub fn open_ca(dir: &Path, zone: &DomainName) -> Result<LocalCa, GatewayError> {
    let mut config = CaConfig::default();
    config.zones = vec![zone.as_str().to_owned()];
    Ok(LocalCa::load_or_create(
        &paths::tls(dir),
        config,
        time::OffsetDateTime::now_utc(),
    )?)
}

/// A bound gateway: call [`Gateway::run`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use conduit::gateway::{Gateway, GatewayConfig};
/// use conduit::registry::{FileRegistry, Registry, ServiceRecord};
///
/// let dir = tempfile::tempdir()?;
/// let mut cfg = GatewayConfig::new(dir.path());
/// cfg.dns_listen = vec!["127.0.0.1:0".parse()?];   // any free port
/// cfg.https_listen = vec!["127.0.0.1:0".parse()?];
/// let gateway = Gateway::start(cfg).await?;        // state created: CA, registry, audit
/// let handle = gateway.handle();
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(gateway.run(async { let _ = stopped.await; }));
///
/// // Any process may write the registry; the gateway follows it.
/// let registry = FileRegistry::open(dir.path())?;
/// registry.register(ServiceRecord::new("grafana".parse()?, "10.0.1.50:3000".parse()?)).await?;
/// for _ in 0..200 {
///     let status = handle.status().await?;
///     if status["services"][0]["certificate_not_after"].is_string() { break; }
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
/// }
/// let status = handle.status().await?;
/// assert_eq!(status["services"][0]["domain"], "grafana.internal");
/// assert!(status["services"][0]["certificate_not_after"].is_string()); // issued, served
/// let _ = stop.send(());
/// running.await??;
/// # Ok(()) }
/// ```
pub struct Gateway {
    samples: Arc<std::sync::RwLock<Vec<Sample>>>,
    config: GatewayConfig,
    registry: Arc<FileRegistry>,
    certs: Arc<CertManager>,
    audit: Arc<AuditLog>,
    dns: Option<DnsServer>,
    proxy: Option<ProxyServer>,
    admin: Vec<crate::admin::Listener>,
    since: Revision,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("config_dir", &self.config_dir)
            .field("zone", &self.zone)
            .field("dns_listen", &self.dns_listen)
            .field("https_listen", &self.https_listen)
            .field("advertise", &self.advertise)
            .field("monitor_sources", &self.monitor_sources.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config_dir", &self.config.config_dir)
            .field("dns", &self.dns_addrs())
            .field("https", &self.https_addrs())
            .finish_non_exhaustive()
    }
}

/// What the admin API and embedders read from a running gateway.
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    config_dir: PathBuf,
    samples: Arc<std::sync::RwLock<Vec<Sample>>>,
    registry: Arc<FileRegistry>,
    certs: Arc<CertManager>,
    audit: Arc<AuditLog>,
    user: String,
    dns: Option<DnsHandle>,
    proxy: Option<ProxyHandle>,
}

impl Gateway {
    /// Validates the configuration, opens the state (registry, CA, audit), issues the
    /// certificates of the registered services and binds every listener.
    ///
    /// # Errors
    /// Any [`GatewayError`]; nothing is left bound on error.
    pub async fn start(config: GatewayConfig) -> Result<Self, GatewayError> {
        config.validate()?;
        let dir = config.config_dir.clone();
        let registry = Arc::new(FileRegistry::open(&dir)?);
        let ca = open_ca(&dir, &config.zone)?;
        let certs = Arc::new(CertManager::new(
            ca,
            Some(paths::tls(&dir)),
            Arc::new(CertResolver::new()),
            Arc::new(time::OffsetDateTime::now_utc),
        ));
        let audit = Arc::new(open_audit(&dir)?);
        let since = registry.revision().await?;
        for rec in registry.list(ListFilter::Active).await? {
            ensure_cert(&certs, &audit, &config.audit_user, &rec).await;
        }
        let dns = if config.dns_listen.is_empty() {
            None
        } else {
            let mut b = DnsServer::builder()
                .registry(registry.clone())
                .zones(config.zone_config())
                .forwarders(config.dns_forwarders.clone());
            for a in &config.dns_listen {
                b = b.listen(*a);
            }
            Some(b.bind().await?)
        };
        let proxy = if config.https_listen.is_empty() {
            None
        } else {
            let mut b = ProxyServer::builder()
                .registry(registry.clone())
                .certificates(certs.resolver().clone())
                .config(config.proxy.clone());
            for a in &config.https_listen {
                b = b.listen(*a);
            }
            for a in &config.http_redirect {
                b = b.listen_http_redirect(*a);
            }
            Some(b.bind().await?)
        };
        let mut admin = Vec::new();
        if let Some(path) = &config.admin_socket {
            admin.push(crate::admin::bind(path)?);
        }
        if let Some((addr, Some(token))) = &config.admin_tcp {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| GatewayError::Admin {
                    path: PathBuf::from(addr.to_string()),
                    source,
                })?;
            admin.push(crate::admin::Listener::Tcp(l, Arc::from(token.as_str())));
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

    /// The gateway's audit log: an embedding program (a tunnel agent) appends its own
    /// records to the same log and sealed chain.
    pub fn audit_log(&self) -> Arc<AuditLog> {
        self.audit.clone()
    }

    /// A handle on the running parts.
    pub fn handle(&self) -> GatewayHandle {
        GatewayHandle {
            config_dir: self.config.config_dir.clone(),
            samples: self.samples.clone(),
            registry: self.registry.clone(),
            certs: self.certs.clone(),
            audit: self.audit.clone(),
            user: self.config.audit_user.clone(),
            dns: self.dns.as_ref().map(DnsServer::handle),
            proxy: self.proxy.as_ref().map(ProxyServer::handle),
        }
    }

    /// Serves until `shutdown` completes, then drains (the proxy's grace period) and returns.
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
            since,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = tokio::task::JoinSet::new();
        let user = config.audit_user.clone();
        tasks.spawn(follow_certs(
            registry.clone(),
            certs.clone(),
            audit.clone(),
            user.clone(),
            since,
            stopped(stop_rx.clone()),
        ));
        tasks.spawn(renew_certs(
            certs.clone(),
            audit.clone(),
            user.clone(),
            stopped(stop_rx.clone()),
        ));
        if let Some(p) = &proxy {
            tasks.spawn(audit_health(
                p.handle(),
                audit.clone(),
                user.clone(),
                stopped(stop_rx.clone()),
            ));
        }
        if !config.monitor_sources.is_empty() {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let poller =
                Poller::new(config.monitor_sources.clone()).with_interval(config.monitor_interval);
            tasks.spawn(poller.run(tx, stopped(stop_rx.clone())));
            tasks.spawn(keep_rounds(
                rx,
                samples.clone(),
                audit.clone(),
                user.clone(),
            ));
        }
        for listener in admin {
            tasks.spawn(crate::admin::serve(
                listener,
                handle.clone(),
                stopped(stop_rx.clone()),
            ));
        }
        let mut servers = tokio::task::JoinSet::new();
        if let Some(d) = dns {
            let s = stopped(stop_rx.clone());
            servers.spawn(async move { d.run(s).await.map_err(GatewayError::from) });
        }
        if let Some(p) = proxy {
            let s = stopped(stop_rx.clone());
            servers.spawn(async move { p.run(s).await.map_err(GatewayError::from) });
        }
        tracing::info!(dir = %config.config_dir.display(), "gateway running");
        shutdown.await;
        tracing::info!("gateway stopping");
        let _ = stop_tx.send(true);
        let mut result = Ok(());
        while let Some(r) = servers.join_next().await {
            if let Ok(Err(e)) = r {
                result = Err(e);
            }
        }
        while tasks.join_next().await.is_some() {}
        if let Some(path) = &config.admin_socket {
            let _ = std::fs::remove_file(path);
        }
        result
    }
}

/// Issues the leaf of a proxied TLS service unless the one served already covers its domain.
async fn ensure_cert(certs: &Arc<CertManager>, log: &AuditLog, user: &str, rec: &ServiceRecord) {
    if rec.routing() != Routing::Proxied || !rec.tls() {
        return;
    }
    let name = rec.name().as_str().to_owned();
    let domain = rec.domain().as_str().to_owned();
    if let Some(current) = certs.current(&name)
        && conduit_ca::inspect_pem(
            &current.chain_pem,
            time::OffsetDateTime::now_utc(),
            &Default::default(),
        )
        .is_ok_and(|info| info.dns_names.contains(&domain))
    {
        return; // reused
    }
    let req = IssueRequest {
        dns_names: vec![domain.clone()],
        ..IssueRequest::default()
    };
    let mgr = certs.clone();
    let n = name.clone();
    let issued = tokio::task::spawn_blocking(move || mgr.ensure(&n, req)).await;
    match issued {
        Ok(Ok(_)) => {
            tracing::info!(service = %name, %domain, "certificate issued");
            record(
                log,
                "cert_issue",
                true,
                format!("Issued a certificate for {domain}"),
                user,
                json!({"name": name, "domain": domain}),
            )
            .await;
        }
        Ok(Err(e)) => {
            tracing::error!(service = %name, error = %e, "cannot issue the certificate");
            record(
                log,
                "cert_issue",
                false,
                format!("Cannot issue a certificate for {domain}: {e}"),
                user,
                json!({"name": name, "domain": domain}),
            )
            .await;
        }
        Err(e) => tracing::error!(service = %name, error = %e, "certificate task failed"),
    }
}

async fn follow_certs(
    registry: Arc<FileRegistry>,
    certs: Arc<CertManager>,
    audit: Arc<AuditLog>,
    user: String,
    since: Revision,
    stop: impl Future<Output = ()>,
) {
    let mut watch = registry.watch(since);
    tokio::pin!(stop);
    loop {
        let ev = tokio::select! {
            () = &mut stop => return,
            ev = watch.next() => ev,
        };
        let Some(ev) = ev else { return };
        match ev.kind {
            ChangeKind::Deregistered => certs.remove(ev.record.name().as_str()),
            _ if !ev.record.is_active() => certs.remove(ev.record.name().as_str()),
            _ => ensure_cert(&certs, &audit, &user, &ev.record).await,
        }
    }
}

/// Renews what is due every hour (leaves at 2/3 of their life, the intermediate when a third
/// is left); each renewal round that renewed something is audited as `cert_renew`.
async fn renew_certs(
    certs: Arc<CertManager>,
    log: Arc<AuditLog>,
    user: String,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
        let c = certs.clone();
        match tokio::task::spawn_blocking(move || c.renew_due()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                let msg = format!("Renewed {n} certificate(s)");
                record(&*log, "cert_renew", true, msg, &user, json!({"renewed": n})).await;
            }
            Ok(Err(e)) => {
                let msg = format!("Certificate renewal failed: {e}");
                record(&*log, "cert_renew", false, msg, &user, json!({})).await;
            }
            Err(e) => tracing::error!(error = %e, "certificate renewal task failed"),
        }
    }
}

/// Keeps the last round's samples for the admin API and audits each alert raised or cleared
/// as `monitor_alert`.
async fn keep_rounds(
    mut rounds: tokio::sync::mpsc::Receiver<Round>,
    samples: Arc<std::sync::RwLock<Vec<Sample>>>,
    log: Arc<AuditLog>,
    user: String,
) {
    while let Some(round) = rounds.recv().await {
        for a in &round.alerts {
            let details = json!({
                "kind": format!("{:?}", a.kind),
                "raised": a.raised,
                "target": a.target,
                "subject": a.subject,
                "value": a.value,
            });
            record(
                &*log,
                "monitor_alert",
                !a.raised,
                a.message.clone(),
                &user,
                details,
            )
            .await;
        }
        for (source, error) in &round.errors {
            tracing::debug!(%source, %error, "monitor source failed");
        }
        *samples
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = round.samples;
    }
}

async fn audit_health(
    proxy: ProxyHandle,
    audit_log: Arc<AuditLog>,
    user: String,
    stop: impl Future<Output = ()>,
) {
    let mut events = proxy.health_events();
    tokio::pin!(stop);
    loop {
        let ev = tokio::select! {
            () = &mut stop => return,
            ev = events.recv() => ev,
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "health events were dropped before being audited"
                );
                continue;
            }
            Err(_) => return,
        };
        let state = if ev.healthy { "healthy" } else { "unhealthy" };
        record(
            &*audit_log,
            "health_change",
            ev.healthy,
            format!(
                "{} upstream {} is {state}: {}",
                ev.service, ev.endpoint, ev.reason
            ),
            &user,
            json!({
                "name": ev.service.as_str(),
                "domain": ev.domain.as_str(),
                "upstream": ev.endpoint.to_string(),
                "healthy": ev.healthy,
                "reason": ev.reason,
            }),
        )
        .await;
    }
}

impl GatewayHandle {
    /// Per service: name, domain, routing, upstreams and their health, certificate expiry.
    ///
    /// # Errors
    /// A registry error.
    pub async fn status(&self) -> Result<Value, GatewayError> {
        let mut out = Vec::new();
        for rec in self.registry.list(ListFilter::Active).await? {
            let domain = rec.domain().as_str();
            let upstreams: Vec<Value> = match self.proxy.as_ref().and_then(|p| p.upstreams(domain)) {
                Some(ups) => ups
                    .iter()
                    .map(|u| json!({"endpoint": u.endpoint.to_string(), "healthy": u.healthy, "in_flight": u.outstanding}))
                    .collect(),
                None => rec
                    .endpoints()
                    .iter()
                    .map(|e| json!({"endpoint": e.to_string(), "healthy": Value::Null}))
                    .collect(),
            };
            let healthy = upstreams.iter().any(|u| u["healthy"] == Value::Bool(true));
            let cert = self.certs.current(rec.name().as_str()).and_then(|c| {
                conduit_ca::inspect_pem(
                    &c.chain_pem,
                    time::OffsetDateTime::now_utc(),
                    &Default::default(),
                )
                .ok()
            });
            // The DNS check: what the running server answers for the name now.
            let dns = self.dns.as_ref().map(|d| {
                use conduit_dns::{Answer, QueryType, Resolver as _};
                match d.resolve(rec.domain(), QueryType::A) {
                    Answer::Addresses(a) => {
                        json!(a.iter().map(ToString::to_string).collect::<Vec<_>>())
                    }
                    Answer::NoData => json!("NODATA"),
                    Answer::NxDomain => json!("NXDOMAIN"),
                    _ => json!("REFUSED"),
                }
            });
            out.push(json!({
                "name": rec.name().as_str(),
                "domain": domain,
                "dns": dns,
                "routing": rec.routing(),
                "tls": rec.tls(),
                "health_path": rec.health().path,
                "healthy": if rec.routing() == Routing::Proxied { Value::Bool(healthy) } else { Value::Null },
                "upstreams": upstreams,
                "certificate_not_after": cert.map(|c| c.not_after),
            }));
        }
        Ok(json!({
            "services": out,
            "dns_serial": self.dns.as_ref().map(DnsHandle::serial),
        }))
    }

    /// A new key and leaf for service `name`, served from the next handshake; audited as
    /// `cert_rotate`.
    ///
    /// # Errors
    /// [`GatewayError::Ca`] (no certificate managed for `name`, or issuing failed).
    pub async fn rotate(&self, name: &str, user: &str) -> Result<Value, GatewayError> {
        let certs = self.certs.clone();
        let n = name.to_owned();
        let issued = tokio::task::spawn_blocking(move || certs.rotate(&n))
            .await
            .map_err(|e| GatewayError::Config(format!("rotation task failed: {e}")))?;
        let (ok, message) = match &issued {
            Ok(_) => (true, format!("Rotated the certificate of {name}")),
            Err(e) => (
                false,
                format!("Cannot rotate the certificate of {name}: {e}"),
            ),
        };
        record(
            &*self.audit,
            "cert_rotate",
            ok,
            message,
            user,
            json!({"name": name}),
        )
        .await;
        let cert = issued?;
        let info = conduit_ca::inspect_pem(
            &cert.chain_pem,
            time::OffsetDateTime::now_utc(),
            &Default::default(),
        )?;
        Ok(json!({"name": name, "serial": info.serial, "not_after": info.not_after}))
    }

    /// Revokes the leaf of service `name` (its serial goes on the CRL, saved at once) and
    /// serves a new one; audited as `cert_revoke`.
    ///
    /// # Errors
    /// [`GatewayError::Ca`]; nothing is revoked when the current leaf cannot be read.
    pub async fn revoke(&self, name: &str, user: &str) -> Result<Value, GatewayError> {
        let current = self.certs.current(name).ok_or_else(|| {
            GatewayError::Ca(conduit_ca::CaError::Unknown {
                name: name.to_owned(),
            })
        })?;
        let info = conduit_ca::inspect_pem(
            &current.chain_pem,
            time::OffsetDateTime::now_utc(),
            &Default::default(),
        )?;
        let certs = self.certs.clone();
        let serial = info.serial.clone();
        let revoked = tokio::task::spawn_blocking(move || certs.revoke(&serial))
            .await
            .map_err(|e| GatewayError::Config(format!("revocation task failed: {e}")))?;
        let (ok, message) = match &revoked {
            Ok(_) => (
                true,
                format!("Revoked certificate {} of {name}", info.serial),
            ),
            Err(e) => (
                false,
                format!("Cannot revoke certificate {} of {name}: {e}", info.serial),
            ),
        };
        record(
            &*self.audit,
            "cert_revoke",
            ok,
            message,
            user,
            json!({"name": name, "serial": info.serial}),
        )
        .await;
        revoked?;
        let fresh = self.rotate(name, user).await?;
        Ok(json!({"name": name, "revoked_serial": info.serial, "new": fresh}))
    }

    /// The zone's records as served now (presentation format) and the SOA serial.
    pub fn dns(&self) -> Value {
        match &self.dns {
            Some(d) => json!({"serial": d.serial(), "records": d.authority().records()}),
            None => json!({"serial": null, "records": []}),
        }
    }

    /// The last `limit` audit records (most recent last), as the log's JSON objects.
    ///
    /// # Errors
    /// [`GatewayError::Audit`] when the log cannot be read.
    pub async fn audit_tail(&self, limit: usize) -> Result<Value, GatewayError> {
        let path = paths::audit_log(&self.config_dir);
        let events = tokio::task::spawn_blocking(move || {
            let mut filter = conduit_audit::LogFilter::default();
            filter.limit = Some(limit);
            conduit_audit::read_log(&path, &filter)
        })
        .await
        .map_err(|e| GatewayError::Config(format!("audit read task failed: {e}")))??
        .0;
        Ok(Value::Array(
            events.iter().map(AuditEvent::to_value).collect(),
        ))
    }

    /// The last monitor round's samples.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The user the gateway's own records name.
    pub fn audit_user(&self) -> &str {
        &self.user
    }

    /// Prometheus text: the proxy's and the DNS server's counters.
    pub fn metrics(&self) -> String {
        use std::fmt::Write as _;
        let mut out = self
            .proxy
            .as_ref()
            .map(ProxyHandle::prometheus)
            .unwrap_or_default();
        out.push_str(&conduit_monitor::render::prometheus(&self.samples()));
        if let Some(d) = &self.dns {
            let s = d.stats();
            let _ = writeln!(
                out,
                "# HELP conduit_dns_queries_total DNS queries received.\n# TYPE conduit_dns_queries_total counter\nconduit_dns_queries_total{{transport=\"udp\"}} {}\nconduit_dns_queries_total{{transport=\"tcp\"}} {}",
                s.udp_queries, s.tcp_queries
            );
        }
        out
    }
}
