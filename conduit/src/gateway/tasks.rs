//! The gateway's background tasks: certificates follow the registry, renewals, health
//! changes and monitor alerts into the audit log. Each stops on the gateway's token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use conduit_audit::AuditSink;
use conduit_ca::{CertManager, IssueRequest};
use conduit_monitor::{Round, Sample};
use conduit_proxy::ProxyHandle;
use conduit_registry::{Registry, Revision, Routing, ServiceRecord};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::audited::record;

/// The domain each managed service's leaf was issued for, so that a registry change that
/// does not touch a service's name or domain costs nothing.
pub(super) type Ensured = HashMap<String, String>;

/// Makes the managed leaves match the active services: a leaf for each proxied TLS service
/// whose domain is new or changed, none for a service that left (or stopped being proxied
/// with TLS). Each issue is audited as `cert_issue`; a failed one is tried again at the next
/// change.
pub(super) async fn reconcile_certs(
    certs: &CertManager,
    log: &dyn AuditSink,
    user: &str,
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
        if ensure_cert(certs, log, user, name, domain).await {
            ensured.insert(name.to_owned(), domain.to_owned());
        }
    }
}

/// Issues the leaf of `name` for `domain` unless the one served already covers it; whether
/// it is served now.
async fn ensure_cert(
    certs: &CertManager,
    log: &dyn AuditSink,
    user: &str,
    name: &str,
    domain: &str,
) -> bool {
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
            record(log, "cert_issue", true, msg, user, details).await;
            true
        }
        Err(e) => {
            tracing::error!(service = %name, error = %e, "cannot issue the certificate");
            let msg = format!("Cannot issue a certificate for {domain}: {e}");
            record(log, "cert_issue", false, msg, user, details).await;
            false
        }
    }
}

/// Issues or removes leaves as the registry changes (the registry's one follow loop).
pub(super) async fn follow_certs(
    registry: Arc<dyn Registry>,
    certs: Arc<CertManager>,
    audit: Arc<dyn AuditSink>,
    user: String,
    since: Revision,
    mut ensured: Ensured,
    stop: CancellationToken,
) {
    let mut follower = conduit_registry::RegistryFollower::new(registry, since, "certificates");
    loop {
        let active = tokio::select! {
            () = stop.cancelled() => return,
            active = follower.next() => active,
        };
        let Some(active) = active else { return };
        reconcile_certs(&certs, audit.as_ref(), &user, &active, &mut ensured).await;
    }
}

/// The certificate manager's renewal loop (leaves at 2/3 of their life, the intermediate
/// when a third is left); each round that renewed something or failed is audited as
/// `cert_renew`.
pub(super) async fn renew_certs(
    certs: Arc<CertManager>,
    interval: Duration,
    log: Arc<dyn AuditSink>,
    user: String,
    stop: CancellationToken,
) {
    certs
        .run_reporting(interval, stop.cancelled_owned(), |outcome| {
            let (log, user) = (log.clone(), user.clone());
            async move {
                match outcome {
                    Ok(0) => {}
                    Ok(n) => {
                        let msg = format!("Renewed {n} certificate(s)");
                        record(&*log, "cert_renew", true, msg, &user, json!({"renewed": n})).await;
                    }
                    Err(e) => {
                        let msg = format!("Certificate renewal failed: {e}");
                        record(&*log, "cert_renew", false, msg, &user, json!({})).await;
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
    log: Arc<dyn AuditSink>,
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
            let msg = a.message.clone();
            record(&*log, "monitor_alert", !a.raised, msg, &user, details).await;
        }
        for (source, error) in &round.errors {
            tracing::debug!(%source, %error, "monitor source failed");
        }
        *samples
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = round.samples;
    }
}

/// Audits every upstream health transition as `health_change`.
pub(super) async fn audit_health(
    proxy: ProxyHandle,
    audit_log: Arc<dyn AuditSink>,
    user: String,
    stop: CancellationToken,
) {
    let mut events = proxy.health_events();
    loop {
        let ev = tokio::select! {
            () = stop.cancelled() => return,
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
        record(
            &*audit_log,
            "health_change",
            ev.healthy,
            msg,
            &user,
            details,
        )
        .await;
    }
}
