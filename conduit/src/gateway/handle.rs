//! [`GatewayHandle`]: what the admin API and embedders read from a running gateway, and the
//! certificate actions, all in the [`api`](crate::api) types.

use std::sync::Arc;

use conduit_audit::AuditSink;
use conduit_ca::CertManager;
use conduit_dns::DnsHandle;
use conduit_monitor::Sample;
use conduit_proxy::ProxyHandle;
use conduit_registry::{ListFilter, Registry, Routing, ServiceRecord};
use serde_json::json;

use super::GatewayError;
use crate::api::{
    AuditEntry, AuditTail, CertificateInfo, DnsCheck, DnsOutcome, DnsRecord, DnsZone, Revocation,
    ServiceStatus, StatusReport, UpstreamHealth,
};
use crate::audited::{Action, record};
use crate::state::StateDir;

/// What the admin API and embedders read from a running gateway.
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    pub(super) state: Option<StateDir>,
    pub(super) samples: Arc<std::sync::RwLock<Vec<Sample>>>,
    pub(super) registry: Arc<dyn Registry>,
    pub(super) certs: Arc<CertManager>,
    /// The gateway's own CA, when the issuer is it.
    pub(super) local_ca: Option<Arc<conduit_ca::LocalIssuer>>,
    /// Wakes the certificate follower to issue what could not be issued before.
    pub(super) cert_retry: Arc<tokio::sync::Notify>,
    /// The chain's checkpoints, when the audit log is the state directory's.
    pub(super) checkpoints: Option<Arc<super::checkpoint::Checkpointer>>,
    /// One witnessed checkpoint at a time.
    pub(super) witness_lock: Arc<tokio::sync::Mutex<()>>,
    pub(super) audit: Arc<dyn AuditSink>,
    pub(super) user: String,
    pub(super) dns: Option<DnsHandle>,
    /// Where the DNS server answers over UDP (what `resolve` asks).
    pub(super) dns_addr: Option<std::net::SocketAddr>,
    pub(super) proxy: Option<ProxyHandle>,
    /// The configuration services are checked against, and where it came from.
    pub(super) settings: Arc<crate::config::ConduitConfig>,
    pub(super) origin: Arc<str>,
    /// The SSRF policy every upstream given through the API passes.
    pub(super) ssrf: Arc<conduit_proxy::SsrfPolicy>,
    /// The live events.
    pub(super) events: crate::events::EventBus,
    /// Held alone while reading the audit log with the event cursor.
    pub(super) audit_gate: super::publish::AuditGate,
    /// The access policy in force and what it refused.
    pub(super) access: Arc<super::access::AccessRuntime>,
    /// What each witness did with this gateway's checkpoints.
    pub(super) witnesses: super::witness::WitnessBoard,
    /// The dashboard's URL once it is mounted.
    pub(super) dashboard: Arc<std::sync::OnceLock<String>>,
    /// The shared registry store, when the registry is one.
    pub(super) store: super::store::StoreLink,
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

impl GatewayHandle {
    /// Every active service: domain, what DNS answers, upstreams and their health,
    /// certificate expiry.
    ///
    /// # Errors
    /// A registry error.
    pub async fn status(&self) -> Result<StatusReport, GatewayError> {
        let services = self
            .registry
            .list(ListFilter::Active)
            .await?
            .iter()
            .map(|rec| self.service_status(rec))
            .collect();
        Ok(StatusReport {
            services,
            dns_serial: self.dns.as_ref().map(DnsHandle::serial),
            ca: self.ca_status(),
            access: self.access_status().await?,
            balance: self.settings.proxy.balance,
            dashboard: self.dashboard.get().cloned(),
            registry_store: self.store.status(),
        })
    }

    fn service_status(&self, rec: &ServiceRecord) -> ServiceStatus {
        let domain = rec.domain().as_str();
        let proxied = rec.routing() == Routing::Proxied;
        let upstreams: Vec<UpstreamHealth> =
            match self.proxy.as_ref().and_then(|p| p.upstreams(domain)) {
                Some(ups) => ups
                    .iter()
                    .map(|u| UpstreamHealth {
                        endpoint: u.endpoint.to_string(),
                        healthy: Some(u.healthy),
                        in_flight: Some(u64::try_from(u.outstanding).unwrap_or(u64::MAX)),
                        requests: Some(u.requests),
                        failures: Some(u.failures),
                        latency_ms: u.latency.map(|d| d.as_secs_f64() * 1000.0),
                        engine: u.models.as_ref().map(crate::api::EngineState::from),
                    })
                    .collect(),
                None => rec
                    .endpoints()
                    .iter()
                    .map(|e| UpstreamHealth::unchecked(e.to_string()))
                    .collect(),
            };
        let healthy = upstreams.iter().any(|u| u.healthy == Some(true));
        let cert = self
            .certs
            .current(rec.name().as_str())
            .and_then(|c| conduit_ca::inspect_pem(&c.chain_pem, now(), &Default::default()).ok());
        // The DNS check: what the running server answers for the name now.
        let dns = self.dns.as_ref().map(|d| {
            use conduit_dns::{Answer, QueryType, Resolver as _};
            match d.resolve(rec.domain(), QueryType::A) {
                Answer::Addresses(a) => DnsCheck::Addresses(a.clone()),
                Answer::NoData => DnsCheck::Outcome(DnsOutcome::NoData),
                Answer::NxDomain => DnsCheck::Outcome(DnsOutcome::NxDomain),
                _ => DnsCheck::Outcome(DnsOutcome::Refused),
            }
        });
        ServiceStatus {
            name: rec.name().as_str().to_owned(),
            domain: domain.to_owned(),
            dns,
            routing: rec.routing(),
            tls: rec.tls(),
            kind: rec.kind(),
            health_path: rec.health().path.clone(),
            healthy: proxied.then_some(healthy),
            upstreams,
            certificate_not_after: cert.map(|c| c.not_after),
        }
    }

    /// A new key and leaf for service `name`, served from the next handshake; audited as
    /// `cert_rotate`.
    ///
    /// # Errors
    /// [`GatewayError::Ca`] (no certificate managed for `name`, or issuing failed).
    pub async fn rotate(&self, name: &str, user: &str) -> Result<CertificateInfo, GatewayError> {
        let issued = self.certs.rotate(name).await;
        let (ok, message) = match &issued {
            Ok(_) => (true, format!("Rotated the certificate of {name}")),
            Err(e) => (
                false,
                format!("Cannot rotate the certificate of {name}: {e}"),
            ),
        };
        let details = json!({"name": name});
        self.events.publish(crate::events::EventKind::Certificate {
            change: if ok { "rotated" } else { "rotate_failed" }.to_owned(),
            name: name.to_owned(),
            message: message.clone(),
        });
        record(&*self.audit, Action::CertRotate, ok, message, user, details).await;
        let info = conduit_ca::inspect_pem(&issued?.chain_pem, now(), &Default::default())?;
        Ok(CertificateInfo {
            name: name.to_owned(),
            serial: info.serial,
            not_after: info.not_after,
        })
    }

    /// Revokes the leaf of service `name` (its serial goes on the CRL, saved at once) and
    /// serves a new one; audited as `cert_revoke`.
    ///
    /// # Errors
    /// [`GatewayError::Ca`]; nothing is revoked when the current leaf cannot be read.
    pub async fn revoke(&self, name: &str, user: &str) -> Result<Revocation, GatewayError> {
        let current = self.certs.current(name).ok_or_else(|| {
            GatewayError::Ca(conduit_ca::CaError::Unknown {
                name: name.to_owned(),
            })
        })?;
        let info = conduit_ca::inspect_pem(&current.chain_pem, now(), &Default::default())?;
        let revoked = self.certs.revoke(&info.serial).await;
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
        let details = json!({"name": name, "serial": info.serial});
        self.events.publish(crate::events::EventKind::Certificate {
            change: if ok { "revoked" } else { "revoke_failed" }.to_owned(),
            name: name.to_owned(),
            message: message.clone(),
        });
        record(&*self.audit, Action::CertRevoke, ok, message, user, details).await;
        revoked?;
        // The CRL naming it is served before this returns.
        self.publish_crls();
        let new = self.rotate(name, user).await?;
        Ok(Revocation {
            name: name.to_owned(),
            revoked_serial: info.serial,
            new,
        })
    }

    /// The latest checkpoint of the sealed chain (`None`: the chain is empty, or the audit
    /// log is not the state directory's).
    pub fn checkpoint(&self) -> Option<conduit_audit::Checkpoint> {
        self.checkpoints.as_ref()?.latest()
    }

    /// Every configured witness and what it last did with a checkpoint of this gateway's.
    pub fn witnesses(&self) -> crate::api::WitnessList {
        crate::api::WitnessList {
            witnesses: self
                .witnesses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    /// A checkpoint of the chain's head now, kept in `checkpoint.json` before this returns,
    /// and sent to the witnesses.
    pub async fn checkpoint_now(&self) -> Option<conduit_audit::Checkpoint> {
        let cp = self.checkpoints.as_ref()?;
        let c = cp.take()?;
        cp.keep(&c).await;
        Some(c)
    }

    /// The zone's records as served now and the SOA serial.
    pub fn dns(&self) -> DnsZone {
        match &self.dns {
            Some(d) => DnsZone {
                serial: Some(d.serial()),
                records: d
                    .authority()
                    .record_entries()
                    .into_iter()
                    .map(|r| DnsRecord {
                        name: r.name,
                        ttl: r.ttl,
                        rtype: r.rtype,
                        data: r.data,
                    })
                    .collect(),
            },
            None => DnsZone {
                serial: None,
                records: Vec::new(),
            },
        }
    }

    /// Asks the running DNS server, over UDP as any client would, for the `A` (or, with
    /// `ipv6`, `AAAA`) records of `name`.
    ///
    /// # Errors
    /// [`GatewayError::Unavailable`] when the gateway serves no DNS;
    /// [`GatewayError::BadRequest`] for a name that is not one, or no answer.
    pub async fn resolve(
        &self,
        name: &str,
        ipv6: bool,
    ) -> Result<crate::api::DnsLookup, GatewayError> {
        let server =
            self.dns_addr
                .map(crate::probe::reachable)
                .ok_or(GatewayError::Unavailable {
                    what: "DNS (this gateway has no DNS listener)",
                })?;
        let timeout = std::time::Duration::from_secs(2);
        let found = crate::probe::lookup(server, name, ipv6, timeout)
            .await
            .map_err(|e| match e {
                crate::probe::ProbeError::BadName { reason, .. } => GatewayError::BadRequest {
                    what: "name",
                    reason,
                },
                _ => GatewayError::Unavailable {
                    what: "an answer from this gateway's DNS server",
                },
            })?;
        Ok(crate::api::DnsLookup {
            server: server.to_string(),
            name: name.to_owned(),
            rtype: if ipv6 { "AAAA" } else { "A" }.to_owned(),
            code: found.code,
            addresses: found.addresses,
        })
    }

    /// The last `limit` audit records (most recent last), from the state directory's
    /// `audit.log`.
    ///
    /// # Errors
    /// [`GatewayError::Audit`] when the log cannot be read; [`GatewayError::Unavailable`]
    /// for a gateway composed without a state directory (its sink is its own to read).
    pub async fn audit_tail(&self, limit: usize) -> Result<AuditTail, GatewayError> {
        let path = self
            .state
            .as_ref()
            .ok_or(GatewayError::Unavailable {
                what: "the audit log (this gateway has no state directory)",
            })?
            .audit_log();
        // No append in between: the cursor is exactly where these records end.
        let _alone = self.audit_gate.write().await;
        let (mut events, bad) = tokio::task::spawn_blocking(move || {
            conduit_audit::read_log(&path, &conduit_audit::LogFilter::default())
        })
        .await
        .map_err(|source| GatewayError::Task {
            what: "audit read",
            source,
        })??;
        let total = (events.len() + bad.len()) as u64;
        let first = events.len().saturating_sub(limit);
        events.drain(..first);
        let sealed = self
            .checkpoints
            .as_ref()
            .map(|c| c.head_sequence().map_or(0, |s| s + 1));
        Ok(AuditTail {
            events: events.iter().map(AuditEntry::from).collect(),
            total,
            cursor: self.events.cursor(),
            first: first as u64,
            sealed,
        })
    }

    /// The last monitor round's samples.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The gateway's live events (what `GET /v1/events` streams): an embedder subscribes
    /// or publishes its own.
    pub fn events(&self) -> &crate::events::EventBus {
        &self.events
    }

    /// The user the gateway's own audit records name.
    pub fn audit_user(&self) -> &str {
        &self.user
    }

    /// Prometheus text: the proxy's and the DNS server's counters, the monitor's samples.
    pub fn metrics(&self) -> String {
        use std::fmt::Write as _;
        let mut out = self
            .proxy
            .as_ref()
            .map(ProxyHandle::prometheus)
            .unwrap_or_default();
        out.push_str(&conduit_monitor::render::prometheus(&self.samples()));
        self.ca_metrics(&mut out);
        if let Some(cp) = &self.checkpoints {
            cp.metrics(&mut out);
        }
        self.access_metrics(&mut out);
        self.store.metrics(&mut out);
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
