//! [`GatewayBuilder`]: a gateway composed over the subsystems' traits. Any part not given
//! is the state directory's default: `services.json` ([`FileRegistry`]), the CA in `tls/`
//! ([`LocalIssuer`] over [`LocalCa`]), `audit.log` sealed into `capsules.db` (the Capsule
//! audit log); metric sources default to what `[monitor]` names.
//!
//! [`FileRegistry`]: conduit_registry::FileRegistry
//! [`LocalCa`]: conduit_ca::LocalCa

use std::sync::Arc;

use conduit_audit::AuditSink;
use conduit_ca::{CertIssuer, CertManager, CertResolver, LocalIssuer};
use conduit_dns::DnsServer;
use conduit_monitor::MetricSource;
use conduit_proxy::ProxyServer;
use conduit_registry::{ListFilter, Registry};

use super::in_use::{self, IN_USE_WAIT, bind_waiting};
use super::{ADMIN_LEAF, Gateway, GatewayConfig, GatewayError, recover, sources, tasks};
use crate::config::ConfigError;

/// Composes a [`Gateway`] from its parts: see [`Gateway::builder`].
#[must_use = "a builder does nothing until `start` is called"]
pub struct GatewayBuilder {
    config: GatewayConfig,
    registry: Option<Arc<dyn Registry>>,
    issuer: Option<Arc<dyn CertIssuer>>,
    audit: Option<Arc<dyn AuditSink>>,
    sources: Option<Vec<Arc<dyn MetricSource>>>,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .field("issuer", &self.issuer)
            .field("audit", &self.audit)
            .field("sources", &self.sources.as_ref().map(Vec::len))
            .finish()
    }
}

impl GatewayBuilder {
    pub(super) fn new(config: GatewayConfig) -> Self {
        Self {
            config,
            registry: None,
            issuer: None,
            audit: None,
            sources: None,
        }
    }

    /// Where services are registered (files, etcd, memory); the gateway follows its
    /// changes.
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Where the services' certificates come from (the local CA, an HSM, an ACME client);
    /// the gateway's certificate manager issues, serves and renews through it.
    pub fn issuer(mut self, issuer: Arc<dyn CertIssuer>) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// Where the gateway's own records go.
    pub fn audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// A metric source to poll; once one is given, those `[monitor]` names are not built.
    pub fn metric_source(mut self, source: Arc<dyn MetricSource>) -> Self {
        self.sources.get_or_insert_with(Vec::new).push(source);
        self
    }

    /// Validates the configuration, opens what was not given from the state directory, puts
    /// right what a crash left undone (unsealed audit lines when the audit log is the state
    /// directory's, unaudited registry revisions), issues the certificates of the
    /// registered services and binds every listener. It raises the process's soft open-file
    /// limit to the hard one and fits every connection cap into it (see
    /// [`limits`](crate::limits)).
    ///
    /// # Errors
    /// Any [`GatewayError`]; a part missing with no state directory to open it from is
    /// [`GatewayError::Config`]. Nothing is left bound on error.
    pub async fn start(self) -> Result<Gateway, GatewayError> {
        let Self {
            config,
            registry,
            issuer,
            audit,
            sources,
        } = self;
        let s = &config.settings;
        s.validate(&config.origin)?;
        let state = config.state.as_ref();
        if let Some(st) = state
            && (registry.is_none() || issuer.is_none() || audit.is_none())
        {
            st.create()?;
        }
        let missing = |part: &str| {
            GatewayError::Config(ConfigError::Invalid {
                origin: config.origin.clone(),
                key: "state directory".to_owned(),
                problem: format!("none given, and no {part} either: give one or the other"),
            })
        };
        let (registry, store) = match (registry, state) {
            (Some(r), _) => (r, super::store::StoreLink::default()),
            (None, Some(st)) => super::store::open(st, s, &config.origin, true).await?,
            (None, None) => return Err(missing("registry")),
        };
        let mut renewal = None;
        let mut local_ca = None;
        let issuer: Arc<dyn CertIssuer> = match (issuer, state) {
            (Some(i), _) => i,
            (None, Some(st)) => {
                // An intermediate that expired while the gateway was off is renewed here,
                // from the root; audited below once the log is open.
                let ca = st.open_ca(s.ca_config())?;
                renewal = ca.load_renewal();
                let local = Arc::new(LocalIssuer::new(
                    ca,
                    Some(st.tls()),
                    Arc::new(time::OffsetDateTime::now_utc),
                ));
                local_ca = Some(local.clone());
                local
            }
            (None, None) => return Err(missing("certificate issuer")),
        };
        let mut checkpoints = None;
        let audit: Arc<dyn AuditSink> = match (audit, state) {
            (Some(a), _) => a,
            (None, Some(st)) => {
                let log: Arc<dyn AuditSink> = Arc::new(st.open_audit()?);
                // What a crash or a lock left undone: unsealed lines, records missing from
                // the log.
                recover::seal_and_report(st, log.as_ref(), &config.audit_user).await?;
                checkpoints = Some(Arc::new(super::checkpoint::Checkpointer::open(
                    st,
                    s.audit.checkpoint_every,
                )?));
                log
            }
            (None, None) => return Err(missing("audit sink")),
        };
        if let Some(r) = renewal {
            let when = |t: time::OffsetDateTime| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            };
            let (was, until) = (when(r.previous_not_after), when(r.not_after));
            let msg = if r.expired {
                format!(
                    "Renewed the intermediate CA from the root: it had expired at {was} while the gateway was off; valid until {until}"
                )
            } else {
                format!(
                    "Renewed the intermediate CA from the root (due; it expires at {was}); valid until {until}"
                )
            };
            let details = serde_json::json!({
                "expired": r.expired,
                "previous_not_after": was,
                "not_after": until,
            });
            crate::audited::record(
                &*audit,
                crate::audited::Action::CaIntermediateRenew,
                true,
                msg,
                &config.audit_user,
                details,
            )
            .await;
        }
        let monitor_sources = match sources {
            Some(given) => given,
            None => sources::from_settings(s, &config.origin)?,
        };
        let certs = Arc::new(CertManager::new(
            issuer,
            Arc::new(CertResolver::new()),
            Arc::new(time::OffsetDateTime::now_utc),
        ));
        // The CRL is signed before anything is served (a CA that cannot issue keeps the
        // last one).
        if let Err(error) = certs.issuer().maintain().await {
            tracing::error!(%error, "certificate issuer maintenance failed");
        }
        bind(
            config,
            (registry, store),
            (certs, local_ca),
            (audit, checkpoints),
            monitor_sources,
        )
        .await
    }
}

/// The address certificate: one leaf for the advertised addresses and the listeners'
/// own, served to clients that send no SNI (`https://10.8.0.1/`, routed by `Host`).
/// Addresses the CA may not certify (public ones) are left out, with a warning.
async fn address_certificate(s: &crate::config::ConduitConfig, certs: &CertManager) {
    if matches!(
        certs.issuer().issuance(),
        conduit_ca::Issuance::Blocked { .. }
    ) {
        return;
    }
    let ca = s.ca_config();
    let mut ips: Vec<std::net::IpAddr> = Vec::new();
    let listeners = s
        .proxy
        .listen
        .iter()
        .chain(s.admin.listen.iter())
        .map(|a| a.ip());
    for ip in s.dns.advertise.iter().copied().chain(listeners) {
        if ip.is_unspecified() || ips.contains(&ip) {
            continue;
        }
        if !ca.permits_ip(ip) {
            tracing::warn!(%ip, "left out of the address certificate: outside the IP ranges the CA may certify");
            continue;
        }
        ips.push(ip);
    }
    let Some(first) = ips.first().map(ToString::to_string) else {
        return;
    };
    let req = conduit_ca::IssueRequest {
        ip_addresses: ips,
        ..conduit_ca::IssueRequest::default()
    };
    match certs.ensure(super::ADDRESS_LEAF, req).await {
        Ok(_) => certs.resolver().set_no_sni(Some(&first)),
        Err(error) => {
            tracing::warn!(%error, "no address certificate: clients that reach the gateway by address get none");
        }
    }
}

/// Binds every listener of a gateway made of these parts.
async fn bind(
    config: GatewayConfig,
    (registry, store): (Arc<dyn Registry>, super::store::StoreLink),
    (certs, local_ca): (Arc<CertManager>, Option<Arc<LocalIssuer>>),
    (audit, checkpoints): (
        Arc<dyn AuditSink>,
        Option<Arc<super::checkpoint::Checkpointer>>,
    ),
    monitor_sources: Vec<Arc<dyn MetricSource>>,
) -> Result<Gateway, GatewayError> {
    let s = &config.settings;
    let mut proxy_config = s.proxy_config(&config.origin)?;
    if s.proxy.access_log
        && let Some(st) = &config.state
    {
        let mut options = conduit_proxy::AccessLogOptions::default();
        options.max_bytes = s.proxy.access_log_max_size.unwrap_or(u64::MAX);
        options.keep = s.proxy.access_log_keep;
        proxy_config.access_log = Some(Arc::new(st.open_access_log(options)?));
    }
    let ssrf = Arc::new(s.ssrf_policy(&config.origin)?);
    // Every record the gateway audits from here on is also an `audit` event.
    let events = crate::events::EventBus::new();
    let audit_gate = super::publish::AuditGate::default();
    let audit: Arc<dyn AuditSink> = Arc::new(super::publish::PublishingSink::new(
        audit,
        events.clone(),
        audit_gate.clone(),
        checkpoints.clone(),
    ));
    // Every connection cap fits the descriptors this process may open.
    let budget = crate::limits::raise_nofile().map_err(|source| GatewayError::Limits { source })?;
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
    // Every registry revision without an audit record is audited now. Not for a shared
    // registry: its changes are audited by whichever gateway (or command) made them, in
    // that gateway's own chain.
    if !store.is_shared() {
        recover::audit_unaudited_revisions(registry.as_ref(), audit.as_ref(), &config.audit_user)
            .await?;
    }
    let since = registry.revision().await?;
    let mut ensured = tasks::Ensured::default();
    let active = registry.list(ListFilter::Active).await?;
    let rep = tasks::Reporter {
        log: audit.clone(),
        user: config.audit_user.clone(),
        bus: events.clone(),
    };
    tasks::reconcile_certs(&certs, &rep, &active, &mut ensured).await;
    // An address in use is tried again for a while (in_use.rs: a restart by hand).
    let dns = if s.dns.listen.is_empty() {
        None
    } else {
        let bind = async || {
            let mut b = DnsServer::builder()
                .registry(registry.clone())
                .zones(s.zone_config())
                .forwarders(s.dns.forwarders.clone())
                .tcp_settings(dns_tcp);
            for a in &s.dns.listen {
                b = b.listen(*a);
            }
            b.bind().await
        };
        Some(bind_waiting(IN_USE_WAIT, bind, in_use::dns_in_use).await?)
    };
    let proxy = if s.proxy.listen.is_empty() {
        None
    } else {
        let bind = async || {
            let mut b = ProxyServer::builder()
                .registry(registry.clone())
                .certificates(certs.resolver().clone())
                .config(proxy_config.clone());
            for a in &s.proxy.listen {
                b = b.listen(*a);
            }
            for a in &s.proxy.http_listen {
                b = b.listen_http(*a);
            }
            b.bind().await
        };
        Some(bind_waiting(IN_USE_WAIT, bind, in_use::proxy_in_use).await?)
    };
    let admin_socket = config.admin_socket();
    let mut admin = Vec::new();
    if let Some(path) = &admin_socket {
        admin.push(super::admin::bind_unix(
            path,
            s.admin.socket_group.as_deref(),
        )?);
    }
    if let Some(addr) = s.admin.listen
        && let Some(token) = s.admin_token(&config.origin)?
    {
        let tls = if s.admin_tls() {
            // A leaf from our CA for the listener's address (and a name), renewed with the
            // others.
            let mut req = conduit_ca::IssueRequest {
                dns_names: vec![format!("conduit-admin.{}", s.zone)],
                ..conduit_ca::IssueRequest::default()
            };
            if !addr.ip().is_unspecified() {
                req.ip_addresses.push(addr.ip());
            }
            certs.ensure(ADMIN_LEAF, req).await?;
            Some(certs.resolver().clone())
        } else {
            None
        };
        // Named tokens live in the state directory; the configuration's one token is
        // imported there as `legacy` (an admin token).
        let store = config
            .state
            .as_ref()
            .map(|st| crate::tokens::TokenStore::new(st.tokens()));
        let legacy = match &store {
            Some(st) => {
                if st.import("legacy", token.expose(), crate::tokens::Scope::Admin)? {
                    tracing::info!(
                        "the configured admin token is imported as the admin token `legacy`"
                    );
                }
                None
            }
            None => Some(token),
        };
        let auth = super::admin::Auth { store, legacy };
        admin.push(super::admin::bind_tcp(addr, auth, tls).await?);
    }
    if proxy.is_some() {
        address_certificate(s, &certs).await;
        super::dashboard::certificate(s, &certs, &active).await;
    }
    let gateway = Gateway {
        samples: Arc::default(),
        config,
        registry,
        certs,
        local_ca,
        cert_retry: Arc::default(),
        checkpoints,
        witness_lock: Arc::default(),
        audit,
        dns,
        proxy,
        admin,
        admin_socket,
        monitor_sources,
        since,
        ensured,
        ssrf,
        events,
        audit_gate,
        access: Arc::default(),
        witnesses: Arc::default(),
        dashboard: Arc::default(),
        store,
    };
    let handle = gateway.handle();
    handle.publish_crls();
    // In force before the first connection: a policy that cannot be read stops the start
    // (serving without it would open every service).
    let policy = handle.registry.access_policy().await?;
    handle.apply_policy(&policy);
    Ok(gateway)
}
