//! Alerts delivered to Alertmanager (`[alerts] alertmanager`): what the gateway's own
//! events say is wrong (an upstream down, a certificate that could not be renewed or issued,
//! issuance blocked, an intermediate near its end with the root offline, a monitor alert, a
//! witness refusal) and certificates near expiry, posted to Alertmanager's v2 API with
//! stable labels, sent again every `resend_interval` while active, resolved when they clear.
//! Delivery retries with back-off in its own task and never holds anything else up; each
//! delivery is an `alert` event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conduit_ca::CertManager;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::ca::rfc3339;
use super::http_out::Target;
use crate::events::{Event, EventBus, EventKind};

/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between two tries of a failed delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a one-off alert (a witness refusal) stays active without news.
const ONE_OFF: time::Duration = time::Duration::hours(24);

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Postable {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
}

/// What an alert is, by its labels.
type Key = BTreeMap<String, String>;

fn key(name: &str, severity: &str, extra: &[(&str, &str)]) -> Key {
    let mut k = Key::new();
    k.insert("alertname".to_owned(), name.to_owned());
    k.insert("severity".to_owned(), severity.to_owned());
    k.insert("source".to_owned(), "conduit".to_owned());
    for (l, v) in extra {
        k.insert((*l).to_owned(), (*v).to_owned());
    }
    k
}

/// A change the events call for.
enum Change {
    Fire {
        key: Key,
        summary: String,
        one_off: bool,
    },
    Resolve(Key),
}

/// What an event means for the alerts, if anything.
fn changes(kind: &EventKind) -> Vec<Change> {
    let fire = |key: Key, summary: &str| Change::Fire {
        key,
        summary: summary.to_owned(),
        one_off: false,
    };
    match kind {
        EventKind::Health {
            service,
            upstream,
            healthy,
            reason,
        } => {
            let k = key(
                "ConduitUpstreamDown",
                "critical",
                &[("service", service), ("upstream", upstream)],
            );
            if *healthy {
                vec![Change::Resolve(k)]
            } else {
                vec![fire(
                    k,
                    &format!("{upstream} of {service} is down: {reason}"),
                )]
            }
        }
        EventKind::Certificate {
            change,
            name,
            message,
        } => {
            let renewal = || key("ConduitCertificateRenewalFailed", "warning", &[]);
            let issue = || {
                key(
                    "ConduitCertificateIssueFailed",
                    "warning",
                    &[("service", name)],
                )
            };
            let blocked = || key("ConduitIssuanceBlocked", "critical", &[]);
            let expiring = || key("ConduitIntermediateExpiring", "warning", &[]);
            match change.as_str() {
                "renewal_failed" => vec![fire(renewal(), message)],
                "renewed" => vec![Change::Resolve(renewal())],
                "issue_failed" => vec![fire(issue(), message)],
                "issued" => vec![Change::Resolve(issue())],
                "issuance_blocked" => vec![fire(blocked(), message), Change::Resolve(expiring())],
                "issuance_expiring" => vec![fire(expiring(), message), Change::Resolve(blocked())],
                "issuance_ready" => vec![Change::Resolve(blocked()), Change::Resolve(expiring())],
                "witness_alarm" | "witness_refused" => vec![Change::Fire {
                    key: key(
                        if change == "witness_alarm" {
                            "ConduitAuditWitnessAlarm"
                        } else {
                            "ConduitCheckpointRefused"
                        },
                        "critical",
                        &[("peer", name)],
                    ),
                    summary: message.clone(),
                    one_off: true,
                }],
                _ => Vec::new(),
            }
        }
        EventKind::Audit {
            action,
            success,
            message,
            ..
        } if action == "audit_verify" => {
            let k = key("ConduitAuditChainInvalid", "critical", &[]);
            if *success {
                vec![Change::Resolve(k)]
            } else {
                vec![fire(k, message)]
            }
        }
        EventKind::Monitor {
            raised,
            target,
            subject,
            message,
        } => {
            let k = key(
                "ConduitMonitorAlert",
                "warning",
                &[("target", target), ("subject", subject)],
            );
            if *raised {
                vec![fire(k, message)]
            } else {
                vec![Change::Resolve(k)]
            }
        }
        _ => Vec::new(),
    }
}

/// The active alerts and where they go.
pub(super) struct Alerter {
    targets: Vec<Target>,
    tls: Arc<rustls::ClientConfig>,
    resend: Duration,
    expiry_warning: Duration,
    certs: Arc<CertManager>,
    bus: EventBus,
    active: BTreeMap<Key, Postable>,
    /// Resolved alerts not yet delivered to every Alertmanager.
    resolved: Vec<Postable>,
}

impl Alerter {
    pub(super) fn new(
        urls: &[String],
        tls: Arc<rustls::ClientConfig>,
        (resend, expiry_warning): (Duration, Duration),
        certs: Arc<CertManager>,
        bus: EventBus,
    ) -> Result<Self, super::http_out::InvalidUrl> {
        let targets = urls
            .iter()
            .map(|u| {
                let t = Target::parse(u.trim_end_matches('/'))?;
                Ok(t.with_path("/api/v2/alerts"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            targets,
            tls,
            resend,
            expiry_warning,
            certs,
            bus,
            active: BTreeMap::new(),
            resolved: Vec::new(),
        })
    }

    /// Applies one change; whether anything changed.
    fn apply(&mut self, change: Change) -> bool {
        let now = time::OffsetDateTime::now_utc();
        match change {
            Change::Fire {
                key,
                summary,
                one_off,
            } => {
                let ends_at = one_off.then(|| rfc3339(now + ONE_OFF));
                if let Some(a) = self.active.get_mut(&key) {
                    if a.annotations.get("summary") == Some(&summary) && !one_off {
                        return false;
                    }
                    a.annotations.insert("summary".to_owned(), summary);
                    a.ends_at = ends_at;
                    return true;
                }
                let mut annotations = BTreeMap::new();
                annotations.insert("summary".to_owned(), summary);
                self.active.insert(
                    key.clone(),
                    Postable {
                        labels: key,
                        annotations,
                        starts_at: rfc3339(now),
                        ends_at,
                    },
                );
                true
            }
            Change::Resolve(key) => match self.active.remove(&key) {
                Some(mut a) => {
                    a.ends_at = Some(rfc3339(now));
                    self.resolved.push(a);
                    true
                }
                None => false,
            },
        }
    }

    /// Certificates that expire within the warning window (and those no longer do).
    fn check_expiry(&mut self) -> bool {
        let now = time::OffsetDateTime::now_utc();
        let window = time::Duration::try_from(self.expiry_warning).unwrap_or(time::Duration::DAY);
        let mut changed = false;
        for (name, not_after) in self.certs.expiries() {
            let k = key(
                "ConduitCertificateExpiring",
                "warning",
                &[("service", &name)],
            );
            let change = if not_after - now < window {
                Change::Fire {
                    key: k,
                    summary: format!(
                        "the certificate of {name} expires at {} and was not renewed",
                        rfc3339(not_after)
                    ),
                    one_off: false,
                }
            } else {
                Change::Resolve(k)
            };
            changed |= self.apply(change);
        }
        changed
    }

    /// Sends every active alert and the resolved ones to every Alertmanager; whether all
    /// of them took it. Each outcome is an `alert` event.
    async fn deliver(&mut self) -> bool {
        let batch: Vec<&Postable> = self.active.values().chain(&self.resolved).collect();
        if batch.is_empty() {
            return true;
        }
        let json = serde_json::to_vec(&batch).unwrap_or_default();
        let mut all = true;
        for t in &self.targets {
            let outcome = t
                .post_json(&self.tls, None, json.clone(), DELIVERY_TIMEOUT)
                .await;
            let (delivered, message) = match outcome {
                Ok((status, _)) if status.is_success() => (
                    true,
                    format!(
                        "{} firing, {} resolved, delivered to {t}",
                        self.active.len(),
                        self.resolved.len()
                    ),
                ),
                Ok((status, body)) => (
                    false,
                    format!("{t} answered {status}: {}", String::from_utf8_lossy(&body)),
                ),
                Err(e) => (false, e.to_string()),
            };
            if !delivered {
                tracing::warn!(%message, "alert delivery failed; trying again");
            }
            all &= delivered;
            self.bus.publish(EventKind::Alert {
                firing: u64::try_from(self.active.len()).unwrap_or(u64::MAX),
                resolved: u64::try_from(self.resolved.len()).unwrap_or(u64::MAX),
                delivered,
                message,
            });
        }
        if all {
            self.resolved.clear();
        }
        all
    }
}

/// Follows the events, keeps the alerts, delivers them: at once on a change, again every
/// `resend` while active, with back-off (1 s doubling to a minute) after a failure.
pub(super) async fn run(mut al: Alerter, stop: CancellationToken) {
    let mut events = al.bus.subscribe();
    let mut backoff = Duration::from_secs(1);
    let mut retry_in: Option<Duration> = None;
    loop {
        let wait = retry_in.unwrap_or(al.resend);
        let changed = tokio::select! {
            () = stop.cancelled() => return,
            ev = events.recv() => match ev {
                Ok(ev) => on_event(&mut al, &ev),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the alerter fell behind the events");
                    false
                }
                Err(RecvError::Closed) => return,
            },
            () = tokio::time::sleep(wait) => {
                al.check_expiry();
                true
            }
        };
        if !changed && retry_in.is_none() {
            continue;
        }
        if al.deliver().await {
            retry_in = None;
            backoff = Duration::from_secs(1);
        } else {
            retry_in = Some(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

fn on_event(al: &mut Alerter, ev: &Event) -> bool {
    let mut changed = false;
    for c in changes(&ev.kind) {
        changed |= al.apply(c);
    }
    changed
}

#[cfg(test)]
mod tests;
