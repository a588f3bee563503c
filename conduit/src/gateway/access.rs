//! The access policy in force. Followed from the registry's store and compiled once per
//! change (or CRL change), then handed to the proxy (with client-certificate checking
//! against this gateway's CA and its CRLs) and, under `[access] hide_names`, to DNS. Refused
//! requests become `access` events, a per-service count in `/metrics` and `access_denied`
//! audit records, at most one per client per `[access] denied_audit_interval`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use conduit_proxy::{AccessControl, AccessDenied, ClientAuth, ClientIdentity};
use conduit_registry::ServiceName;
use conduit_registry::access::{DefaultRule, Evaluator, StoredPolicy};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::GatewayHandle;
use super::tasks::Reporter;
use crate::audited::Action;
use crate::events::EventKind;

/// The label under the zone that peers' client certificates are named in:
/// `alice.peer.internal`.
pub(super) const PEER_LABEL: &str = "peer";

/// Clients tracked for rate-limiting `access_denied` records; past this the oldest
/// half is forgotten.
const TRACKED_CLIENTS: usize = 4096;

/// The most `access_denied` records per interval over all clients: a scan from many
/// addresses (an IPv6 /64 has 2^64) is one summary record per interval beyond this.
const RECORDS_PER_INTERVAL: u64 = 100;

/// The policy in force and what it refused.
#[derive(Debug, Default)]
pub(crate) struct AccessRuntime {
    evaluator: RwLock<Arc<Evaluator>>,
    /// Wakes the follower to apply the policy again (a new CRL).
    pub(crate) refresh: tokio::sync::Notify,
    denied: RwLock<HashMap<ServiceName, u64>>,
}

impl AccessRuntime {
    /// The policy as compiled now.
    pub(crate) fn evaluator(&self) -> Arc<Evaluator> {
        Arc::clone(
            &self
                .evaluator
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Refusals per service since start, sorted by service.
    pub(crate) fn denied(&self) -> Vec<(ServiceName, u64)> {
        let mut v: Vec<(ServiceName, u64)> = self
            .denied
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(s, n)| (s.clone(), *n))
            .collect();
        v.sort();
        v
    }
}

/// The name a peer's client certificate carries: `NAME.peer.ZONE`.
pub fn peer_cert_name(peer: &str, zone: &str) -> String {
    format!("{peer}.{PEER_LABEL}.{zone}")
}

impl GatewayHandle {
    /// Compiles `stored` and puts it in force in the proxy and DNS.
    pub(crate) fn apply_policy(&self, stored: &StoredPolicy) {
        let default = self.settings.access.default;
        let eval = Arc::new(Evaluator::new(&stored.policy, default, stored.revision));
        *self
            .access
            .evaluator
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&eval);
        let unrestricted = default == DefaultRule::Open
            && stored.policy.grants.is_empty()
            && stored.policy.require_cert.is_empty();
        if let Some(proxy) = &self.proxy {
            // Nothing to decide: the request path does not look (an upgraded site pays nothing).
            let control = (!unrestricted).then(|| AccessControl {
                evaluator: Arc::clone(&eval),
                client_auth: if eval.any_wants_cert() {
                    self.client_auth()
                } else {
                    None
                },
            });
            if let Err(error) = proxy.set_access(control) {
                tracing::error!(%error, "the access policy's TLS settings could not be built; the previous policy stays in force");
            }
        }
        if let Some(dns) = &self.dns {
            let hide = self.settings.access.hide_names && !unrestricted;
            dns.set_visibility(hide.then_some(eval));
        }
        tracing::info!(
            revision = stored.revision,
            peers = stored.policy.peers.len(),
            grants = stored.policy.grants.len(),
            default = %default,
            "access policy in force"
        );
    }

    /// Client-certificate checking: this gateway's root, its CRLs, peers named by their
    /// certificate's `NAME.peer.ZONE`. `None` (logged) when the issuer is not our own CA.
    fn client_auth(&self) -> Option<ClientAuth> {
        let Some(ca) = &self.local_ca else {
            tracing::warn!(
                "client certificates need the gateway's own CA; services requiring one refuse every client"
            );
            return None;
        };
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for der in
            rustls::pki_types::CertificateDer::pem_slice_iter(ca.root_pem().as_bytes()).flatten()
        {
            let _ = roots.add(der);
        }
        let crls = self.certs.issuer().crls();
        let crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>> =
            [crls.issuing, crls.root]
                .into_iter()
                .flatten()
                .map(Into::into)
                .collect();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status()
                .allow_unauthenticated()
                .build();
        let verifier = match verifier {
            Ok(v) => v,
            Err(error) => {
                tracing::error!(%error, "cannot check client certificates");
                return None;
            }
        };
        let suffix = format!(".{PEER_LABEL}.{}", self.settings.zone);
        let identify = Arc::new(move |leaf: &rustls::pki_types::CertificateDer<'_>| {
            let info =
                conduit_ca::inspect_der(leaf, time::OffsetDateTime::now_utc(), &Default::default())
                    .ok()?;
            let peer = info
                .dns_names
                .iter()
                .find_map(|d| d.strip_suffix(suffix.as_str()))
                .filter(|n| !n.is_empty() && !n.contains('.'))?;
            Some(ClientIdentity::new(peer, info.serial.as_str()))
        });
        Some(ClientAuth {
            verifier,
            identify,
            revoked: Arc::new(ca.revoked_serials()),
        })
    }
}

impl GatewayHandle {
    /// The access policy's series: its revision, and refusals per service.
    pub(super) fn access_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let eval = self.access.evaluator();
        let _ = writeln!(
            out,
            "# HELP conduit_access_policy_revision The access policy revision in force.\n# TYPE conduit_access_policy_revision gauge\nconduit_access_policy_revision {}",
            eval.revision()
        );
        let _ = writeln!(
            out,
            "# HELP conduit_access_denied_total Requests refused by the access policy, per service.\n# TYPE conduit_access_denied_total counter"
        );
        for (service, n) in self.access.denied() {
            let _ = writeln!(
                out,
                "conduit_access_denied_total{{service=\"{service}\"}} {n}"
            );
        }
    }
}

/// Applies every stored change of the policy (and again after each new CRL) until `stop`.
pub(super) async fn follow_policy(gw: GatewayHandle, stop: CancellationToken) {
    let mut watch = gw.registry.watch_access_policy();
    watch.mark_unchanged();
    loop {
        let refresh = tokio::select! {
            () = stop.cancelled() => return,
            changed = watch.changed() => if changed.is_err() {
                // The store keeps no policy updates: the one applied at start stays.
                stop.cancelled().await;
                return;
            } else {
                false
            },
            () = gw.access.refresh.notified() => true,
        };
        let stored = Arc::clone(&watch.borrow_and_update());
        // A change made through this gateway's API is in force already (compiled once).
        if refresh || gw.access.evaluator().revision() != stored.revision {
            gw.apply_policy(&stored);
        }
        gw.events.publish(EventKind::Access {
            change: "policy".to_owned(),
            client: None,
            service: None,
            message: format!(
                "access policy revision {} in force ({} peers, {} grants)",
                stored.revision,
                stored.policy.peers.len(),
                stored.policy.grants.len()
            ),
        });
    }
}

/// Reports each refused request: an `access` event, the per-service count, and an
/// `access_denied` record at most once per client per `interval`.
pub(super) async fn report_denials(
    gw: GatewayHandle,
    rep: Reporter,
    interval: Duration,
    stop: CancellationToken,
) {
    let Some(proxy) = gw.proxy.clone() else {
        return;
    };
    let mut denials = proxy.access_denials();
    let mut clients: HashMap<IpAddr, (Option<Instant>, u64)> = HashMap::new();
    let mut window = Window::new(Instant::now());
    while let Some(d) = super::tasks::next(&mut denials, &stop, "refused requests").await {
        if let Some((refusals, clients)) = window.roll(Instant::now(), interval) {
            let msg = format!(
                "{refusals} more refused requests from {clients} client(s) were not recorded one by one (more than {RECORDS_PER_INTERVAL} records in {})",
                humantime::format_duration(interval)
            );
            let details = Unrecorded {
                unrecorded: refusals,
                clients,
            };
            rep.record(Action::AccessDenied, false, msg, details).await;
        }
        *gw.access
            .denied
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(d.service.clone())
            .or_default() += 1;
        let message = format!(
            "{} was refused {} {} on {}: {}",
            who(&d),
            d.method,
            d.path,
            d.domain,
            d.reason
        );
        gw.events.publish(EventKind::Access {
            change: "denied".to_owned(),
            client: Some(d.client.to_string()),
            service: Some(d.service.to_string()),
            message: message.clone(),
        });
        let now = Instant::now();
        let entry = clients.entry(d.client).or_insert((None, 0));
        entry.1 += 1;
        if entry
            .0
            .is_some_and(|last| now.duration_since(last) < interval)
        {
            continue;
        }
        if !window.admit(d.client, entry.1) {
            // Counted in the interval's summary instead.
            entry.1 = 0;
            entry.0 = Some(now);
            continue;
        }
        let refusals = std::mem::take(&mut entry.1);
        entry.0 = Some(now);
        if clients.len() > TRACKED_CLIENTS {
            forget_oldest(&mut clients);
        }
        let details = Denied {
            client: d.client,
            cert: d.cert.as_deref(),
            service: &d.service,
            domain: &d.domain,
            method: &d.method,
            path: &d.path,
            reason: &d.reason,
            refusals,
        };
        let message = if refusals > 1 {
            format!("{message} ({refusals} refusals of this client since its last record)")
        } else {
            message
        };
        rep.record(Action::AccessDenied, false, message, details)
            .await;
    }
}

/// The records written in the current interval, and what the cap left unrecorded.
struct Window {
    start: Instant,
    records: u64,
    unrecorded: u64,
    clients: std::collections::HashSet<IpAddr>,
}

impl Window {
    fn new(start: Instant) -> Self {
        Self {
            start,
            records: 0,
            unrecorded: 0,
            clients: std::collections::HashSet::new(),
        }
    }

    /// Starts a new interval when this one is over: what it left unrecorded, if anything
    /// (refusals, clients).
    fn roll(&mut self, now: Instant, interval: Duration) -> Option<(u64, usize)> {
        if now.duration_since(self.start) < interval {
            return None;
        }
        let left = (self.unrecorded > 0).then_some((self.unrecorded, self.clients.len()));
        *self = Self::new(now);
        left
    }

    /// Whether one more record fits in this interval; else the client's `refusals` are
    /// counted as unrecorded.
    fn admit(&mut self, client: IpAddr, refusals: u64) -> bool {
        if self.records < RECORDS_PER_INTERVAL {
            self.records += 1;
            return true;
        }
        self.unrecorded += refusals;
        if self.clients.len() < TRACKED_CLIENTS {
            self.clients.insert(client);
        }
        false
    }
}

/// An `access_denied` record's details.
#[derive(serde::Serialize)]
struct Denied<'a> {
    client: IpAddr,
    cert: Option<&'a str>,
    service: &'a ServiceName,
    domain: &'a conduit_registry::DomainName,
    method: &'a str,
    path: &'a str,
    reason: &'a str,
    /// The refusals of this client it stands for.
    refusals: u64,
}

/// The details of the summary record of an interval past the cap.
#[derive(serde::Serialize)]
struct Unrecorded {
    unrecorded: u64,
    clients: usize,
}

fn who(d: &AccessDenied) -> String {
    match &d.cert {
        Some(peer) => format!("{} (certificate of {peer})", d.client),
        None => d.client.to_string(),
    }
}

fn forget_oldest(clients: &mut HashMap<IpAddr, (Option<Instant>, u64)>) {
    let mut times: Vec<Option<Instant>> = clients.values().map(|v| v.0).collect();
    times.sort_unstable();
    let cut = times[times.len() / 2];
    clients.retain(|_, v| v.0 > cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_from_many_addresses_is_capped_per_interval_and_summarised() {
        let start = Instant::now();
        let interval = Duration::from_secs(60);
        let mut w = Window::new(start);
        let ip =
            |i: u32| IpAddr::from(std::net::Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(i)));
        let admitted = (0..250).filter(|i| w.admit(ip(*i), 2)).count();
        assert_eq!(admitted as u64, RECORDS_PER_INTERVAL);
        assert_eq!(w.roll(start + Duration::from_secs(59), interval), None);
        assert_eq!(w.roll(start + interval, interval), Some((300, 150)));
        // The next interval starts empty.
        assert!(w.admit(ip(1), 1));
        assert_eq!(w.roll(start + interval * 2, interval), None);
    }
}
