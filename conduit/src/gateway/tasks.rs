//! The gateway's background tasks: certificates follow the registry, renewals, health
//! changes and monitor alerts into the audit log. Each stops on the gateway's token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use conduit_audit::AuditSink;
use conduit_ca::{CertManager, IssueRequest};
use conduit_dns::DnsHandle;
use conduit_monitor::{Round, Sample};
use conduit_proxy::ProxyHandle;
use conduit_registry::{Registry, Revision, Routing, ServiceRecord};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::audited::{Action, record};
use crate::events::{EventBus, EventKind};

/// Where the gateway's own actions go: an audit record (as the gateway's user) and, for the
/// typed events, the event bus.
#[derive(Debug, Clone)]
pub(super) struct Reporter {
    pub(super) log: Arc<dyn AuditSink>,
    pub(super) user: String,
    pub(super) bus: EventBus,
}

impl Reporter {
    pub(super) async fn record(
        &self,
        action: Action,
        ok: bool,
        msg: String,
        details: impl serde::Serialize + Send,
    ) {
        record(&*self.log, action, ok, msg, &self.user, details).await;
    }

    /// Audits a scheduled chain check (`audit_verify`).
    pub(super) async fn audit_verify(&self, ok: bool, msg: String, problem: &str) {
        self.record(Action::AuditVerify, ok, msg, json!({"problem": problem}))
            .await;
    }

    fn certificate(&self, change: &str, name: &str, message: &str) {
        self.bus.publish(EventKind::Certificate {
            change: change.to_owned(),
            name: name.to_owned(),
            message: message.to_owned(),
        });
    }
}

/// The domain each managed service's leaf was issued for, so that a registry change that
/// does not touch a service's name or domain costs nothing.
pub(super) type Ensured = HashMap<String, String>;

/// Makes the managed leaves match the active services: a leaf for each proxied TLS service
/// whose domain is new or changed, none for a service that left (or stopped being proxied
/// with TLS). Each issue is audited as `cert_issue`; a failed one is tried again at the next
/// change.
pub(super) async fn reconcile_certs(
    certs: &CertManager,
    rep: &Reporter,
    active: &[Arc<ServiceRecord>],
    ensured: &mut Ensured,
) {
    let wanted: HashMap<&str, &str> = active
        .iter()
        .filter(|r| r.is_active() && r.routing() == Routing::Proxied && r.tls())
        .map(|r| (r.name().as_str(), r.domain().as_str()))
        .collect();
    ensured.retain(|name, _| {
        let keep = wanted.contains_key(name.as_str());
        if !keep {
            certs.remove(name);
        }
        keep
    });
    for (name, domain) in wanted {
        if ensured.get(name).is_some_and(|d| d == domain) {
            continue;
        }
        if ensure_cert(certs, rep, name, domain).await {
            ensured.insert(name.to_owned(), domain.to_owned());
        }
    }
}

/// Issues the leaf of `name` for `domain` unless the one served already covers it; whether
/// it is served now.
async fn ensure_cert(certs: &CertManager, rep: &Reporter, name: &str, domain: &str) -> bool {
    if let Some(current) = certs.current(name)
        && conduit_ca::inspect_pem(
            &current.chain_pem,
            time::OffsetDateTime::now_utc(),
            &Default::default(),
        )
        .is_ok_and(|info| info.dns_names.iter().any(|d| d == domain))
    {
        return true; // reused
    }
    let req = IssueRequest {
        dns_names: vec![domain.to_owned()],
        ..IssueRequest::default()
    };
    let details = json!({"name": name, "domain": domain});
    match certs.ensure(name, req).await {
        Ok(_) => {
            tracing::info!(service = %name, %domain, "certificate issued");
            let msg = format!("Issued a certificate for {domain}");
            rep.certificate("issued", name, &msg);
            rep.record(Action::CertIssue, true, msg, details).await;
            true
        }
        Err(e) => {
            tracing::error!(service = %name, error = %e, "cannot issue the certificate");
            let msg = format!("Cannot issue a certificate for {domain}: {e}");
            rep.certificate("issue_failed", name, &msg);
            rep.record(Action::CertIssue, false, msg, details).await;
            false
        }
    }
}

/// Issues or removes leaves as the registry changes (the registry's one follow loop).
///
/// `retry` tries the services whose leaf could not be issued again (after a new
/// intermediate was installed, and after each renewal round).
pub(super) async fn follow_certs(
    registry: Arc<dyn Registry>,
    certs: Arc<CertManager>,
    rep: Reporter,
    since: Revision,
    mut ensured: Ensured,
    (retry, stop): (Arc<tokio::sync::Notify>, CancellationToken),
) {
    let mut follower =
        conduit_registry::RegistryFollower::new(registry.clone(), since, "certificates");
    let mut last: Vec<Arc<ServiceRecord>> = Vec::new();
    loop {
        let active = tokio::select! {
            () = stop.cancelled() => return,
            active = follower.next() => active,
            () = retry.notified() => Some(last.clone()),
        };
        let Some(active) = active else { return };
        reconcile_certs(&certs, &rep, &active, &mut ensured).await;
        last = active;
    }
}

/// The certificate manager's renewal loop (leaves at 2/3 of their life, the intermediate
/// when a third is left); each round that renewed something or failed is audited as
/// `cert_renew`.
pub(super) async fn renew_certs(
    gw: super::GatewayHandle,
    interval: Duration,
    rep: Reporter,
    stop: CancellationToken,
) {
    let certs = gw.certs.clone();
    let retry = gw.cert_retry.clone();
    let last = Arc::new(std::sync::Mutex::new(None));
    gw.report_issuance(
        &mut last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    certs
        .run_reporting(interval, stop.cancelled_owned(), |outcome| {
            let rep = rep.clone();
            // Each round may have signed a new CRL, or changed what the CA can do.
            gw.publish_crls();
            gw.report_issuance(
                &mut last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            retry.notify_one();
            async move {
                match outcome {
                    Ok(0) => {}
                    Ok(n) => {
                        let msg = format!("Renewed {n} certificate(s)");
                        rep.certificate("renewed", "*", &msg);
                        rep.record(Action::CertRenew, true, msg, json!({"renewed": n}))
                            .await;
                    }
                    Err(e) => {
                        let msg = format!("Certificate renewal failed: {e}");
                        rep.certificate("renewal_failed", "*", &msg);
                        rep.record(Action::CertRenew, false, msg, json!({})).await;
                    }
                }
            }
        })
        .await;
}

/// Keeps the last round's samples for the admin API and audits each alert raised or cleared
/// as `monitor_alert`. Ends when the poller does.
pub(super) async fn keep_rounds(
    mut rounds: tokio::sync::mpsc::Receiver<Round>,
    samples: Arc<std::sync::RwLock<Vec<Sample>>>,
    rep: Reporter,
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
            rep.bus.publish(EventKind::Monitor {
                raised: a.raised,
                target: a.target.clone(),
                subject: a.subject.clone(),
                message: a.message.clone(),
            });
            rep.record(Action::MonitorAlert, !a.raised, a.message.clone(), details)
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

/// Audits each zone the DNS server swaps in as `dns_reload` (the original tool's record of
/// a zone reload). A burst of changes is one record for the newest zone: the watch keeps
/// only the latest.
pub(super) async fn audit_reloads(dns: DnsHandle, rep: Reporter, stop: CancellationToken) {
    let mut reloads = dns.reloads();
    reloads.mark_unchanged();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = reloads.changed() => if changed.is_err() { return },
        }
        let Some(reload) = *reloads.borrow_and_update() else {
            continue;
        };
        let msg = format!(
            "DNS zone reloaded: serial {}, {} names",
            reload.serial, reload.names
        );
        let details = json!({"serial": reload.serial, "names": reload.names});
        rep.record(Action::DnsReload, true, msg, details).await;
    }
}

/// The next item of a broadcast channel, until `stop` or the sender's end. Items the
/// receiver fell behind on are logged as dropped (naming `what`) and skipped.
pub(super) async fn next<T: Clone>(
    rx: &mut tokio::sync::broadcast::Receiver<T>,
    stop: &CancellationToken,
    what: &str,
) -> Option<T> {
    loop {
        let got = tokio::select! {
            () = stop.cancelled() => return None,
            got = rx.recv() => got,
        };
        match got {
            Ok(item) => return Some(item),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "{what} were dropped before being reported");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// Audits every upstream health transition as `health_change`.
pub(super) async fn audit_health(proxy: ProxyHandle, rep: Reporter, stop: CancellationToken) {
    let mut events = proxy.health_events();
    while let Some(ev) = next(&mut events, &stop, "health events").await {
        let state = if ev.healthy { "healthy" } else { "unhealthy" };
        let msg = format!(
            "{} upstream {} is {state}: {}",
            ev.service, ev.endpoint, ev.reason
        );
        let details = json!({
            "name": ev.service.as_str(),
            "domain": ev.domain.as_str(),
            "upstream": ev.endpoint.to_string(),
            "healthy": ev.healthy,
            "reason": ev.reason,
        });
        rep.bus.publish(EventKind::Health {
            service: ev.service.to_string(),
            upstream: ev.endpoint.to_string(),
            healthy: ev.healthy,
            reason: ev.reason.clone(),
        });
        rep.record(Action::HealthChange, ev.healthy, msg, details)
            .await;
    }
}
