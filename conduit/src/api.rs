//! The admin API's types: the only wire format between the gateway, its admin server, the
//! `conduit` command and any dashboard. `docs/admin-api.yaml` describes exactly these; a test
//! checks every live answer against it.
//!
//! ```
//! use conduit::api::StatusReport;
//! let report: StatusReport = serde_json::from_str(
//!     r#"{"services": [], "dns_serial": 7, "ca": {"issuance": "ready", "message": null,
//!         "root_key_present": true, "intermediate_not_after": null, "crl_url": null}}"#,
//! )?;
//! assert_eq!(report.dns_serial, Some(7));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::net::IpAddr;

mod access;
mod certs;
mod events;
mod lookup;
mod models;
mod services;
mod witnesses;
pub use access::{
    AccessStatus, AccessVerdict, GrantList, GrantRemove, PeerCertificate, PeerList, PeerRevoked,
    RequireCert,
};
pub use certs::{CaCertView, CertReport, LeafView};
pub use events::EventList;
pub use lookup::DnsLookup;
pub use models::{EngineState, ModelState};
pub use services::{ServiceList, ServiceView};
pub use witnesses::{WitnessList, WitnessStatus};

use conduit_monitor::Sample;
use conduit_registry::Routing;
use serde::{Deserialize, Serialize};

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `true` while the gateway runs.
    pub ok: bool,
}

/// `GET /v1/status`: every active service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The services, in registry order.
    pub services: Vec<ServiceStatus>,
    /// The zone's SOA serial; `null` when the gateway serves no DNS.
    pub dns_serial: Option<u32>,
    /// The certificate authority: whether it can issue.
    pub ca: CaStatus,
    /// The access policy in force.
    #[serde(default)]
    pub access: AccessStatus,
    /// How the proxy picks among a service's healthy upstreams (`p2c`, `round_robin`).
    #[serde(default)]
    pub balance: conduit_proxy::Balance,
    /// The dashboard's URL (`https://conduit.internal/`); `null` when it is not served.
    #[serde(default)]
    pub dashboard: Option<String>,
    /// The shared registry store; `null` when the registry is the state directory's.
    #[serde(default)]
    pub registry_store: Option<RegistryStore>,
}

/// The shared registry store (etcd) as the running gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryStore {
    /// `etcd://HOST:PORT[,…]/PREFIX`.
    pub url: String,
    /// Whether it answers; while it does not, the gateway serves its last-known registry
    /// and refuses changes with 503.
    pub reachable: bool,
    /// Since when it is in this state (`YYYY-MM-DDTHH:MM:SSZ`).
    pub since: String,
    /// Why it is unreachable; `null` while it answers.
    pub reason: Option<String>,
    /// The store revision the gateway has applied.
    pub store_revision: u64,
}

/// Whether the gateway's certificate issuer can issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuanceState {
    /// It issues.
    Ready,
    /// It issues, but needs an operator soon (`message` says what to run).
    Expiring,
    /// Nothing can be issued; the certificates already issued are still served.
    Blocked,
}

/// The certificate authority as the running gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaStatus {
    /// Whether it can issue.
    pub issuance: IssuanceState,
    /// What is wrong and the command that fixes it, in one line; `null` when ready.
    pub message: Option<String>,
    /// Whether the root key is in the state directory (`false`: kept offline); `null`
    /// when the issuer is not the gateway's own CA.
    pub root_key_present: Option<bool>,
    /// When the intermediate expires (RFC 3339); `null` when the issuer is not the
    /// gateway's own CA.
    pub intermediate_not_after: Option<String>,
    /// The URL of the CRL every leaf names; `null` when none is published (no plain-HTTP
    /// listener).
    pub crl_url: Option<String>,
}

/// One service as the running gateway serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service name.
    pub name: String,
    /// Its DNS name.
    pub domain: String,
    /// What the running DNS server answers for the name now; `null` without DNS.
    pub dns: Option<DnsCheck>,
    /// `proxied` (through the gateway) or `direct` (DNS gives the upstream itself).
    pub routing: Routing,
    /// Served over HTTPS with a certificate (`false`: plain HTTP on the HTTP listener).
    pub tls: bool,
    /// The kind of its upstreams (`http`, or a model server: `openai`, `vllm`, `ollama`).
    pub kind: conduit_registry::Engine,
    /// The health-check path.
    pub health_path: String,
    /// Whether at least one upstream is healthy; `null` for a direct service.
    pub healthy: Option<bool>,
    /// Its upstreams.
    pub upstreams: Vec<UpstreamHealth>,
    /// When its certificate expires (RFC 3339); `null` without one.
    pub certificate_not_after: Option<String>,
}

/// What DNS answers for a name: its addresses, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DnsCheck {
    /// The addresses answered.
    Addresses(Vec<IpAddr>),
    /// No address.
    Outcome(DnsOutcome),
}

/// Why DNS answered no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DnsOutcome {
    /// The name exists without an address of that type.
    #[serde(rename = "NODATA")]
    NoData,
    /// The name does not exist.
    #[serde(rename = "NXDOMAIN")]
    NxDomain,
    /// The name is not in a zone the server answers for.
    #[serde(rename = "REFUSED")]
    Refused,
}

impl DnsOutcome {
    /// `NODATA`, `NXDOMAIN` or `REFUSED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoData => "NODATA",
            Self::NxDomain => "NXDOMAIN",
            Self::Refused => "REFUSED",
        }
    }
}

/// One upstream of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamHealth {
    /// `host:port` or a URL.
    pub endpoint: String,
    /// Its state; `null` when the proxy does not check it (direct services, no proxy).
    pub healthy: Option<bool>,
    /// Requests in flight to it now; `null` when not proxied.
    pub in_flight: Option<u64>,
    /// Requests sent to it since its route was last built; `null` when not proxied.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Of those, the ones it failed (no answer, or a failure status); `null` when not
    /// proxied.
    #[serde(default)]
    pub failures: Option<u64>,
    /// Its time to a response head in milliseconds, a moving average over its answers;
    /// `null` before its first answer or when not proxied.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// A model server's models, readiness and load; `null` for a plain HTTP upstream.
    pub engine: Option<EngineState>,
}

impl UpstreamHealth {
    /// An upstream nobody checks (a direct service, or no proxy running).
    pub fn unchecked(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            healthy: None,
            in_flight: None,
            requests: None,
            failures: None,
            latency_ms: None,
            engine: None,
        }
    }
}

/// A service's certificate after `rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// The service.
    pub name: String,
    /// The serial number (hex).
    pub serial: String,
    /// Expiry (RFC 3339).
    pub not_after: String,
}

/// `GET /v1/tokens`: the admin API's named tokens (never their secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    /// The tokens, in the order they were added.
    pub tokens: Vec<TokenInfo>,
}

/// One named token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Its name (audit records carry `token:NAME`).
    pub name: String,
    /// What it may do.
    pub scope: crate::tokens::Scope,
    /// When it was added (RFC 3339).
    pub created: String,
}

/// `POST /v1/tokens`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAdd {
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scope: crate::tokens::Scope,
}

/// `POST /v1/tokens`: the token added, with its secret (shown this once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scope: crate::tokens::Scope,
    /// The secret: `Authorization: Bearer SECRET`. Not stored anywhere (only its hash).
    pub secret: String,
}

/// `POST /v1/audit/witness`'s body: a gateway's checkpoint, and what ties it to the last one
/// this witness accepted from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessRequest {
    /// The checkpoint, signed with the sending gateway's sealing key.
    pub checkpoint: conduit_audit::Checkpoint,
    /// The sender's record at the sequence the witness last saw from it (what the witness
    /// asked for with `need_anchor`); `null` otherwise.
    pub anchor: Option<Anchor>,
}

/// A record of the sender's chain: its sequence and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The record's sequence.
    pub sequence: u64,
    /// Its hash.
    pub head_hash: String,
}

/// What a witness did with a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WitnessOutcome {
    /// Stored: it extends the last one seen from that gateway.
    Accepted,
    /// Send it again with the `anchor` at `sequence` (the last sequence seen).
    NeedAnchor,
}

/// `POST /v1/audit/witness`'s answer (a fork or a rollback is a 409 instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessReply {
    /// Accepted, or the anchor needed.
    pub outcome: WitnessOutcome,
    /// The sequence stored (accepted), or the one to anchor at.
    pub sequence: u64,
}

/// `POST /v1/ca/intermediate`'s body: the file `conduit ca sign-intermediate` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntermediateInstall {
    /// The intermediate certificate and the root CRL signed with it, PEM.
    pub pem: String,
}

/// `POST /v1/ca/intermediate`: the intermediate installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntermediateInstalled {
    /// When it expires (RFC 3339).
    pub not_after: String,
    /// How many leaves were issued again under it.
    pub leaves_renewed: u64,
}

/// `POST /v1/certs/{name}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The service.
    pub name: String,
    /// The serial now on the CRL.
    pub revoked_serial: String,
    /// The certificate served from now on.
    pub new: CertificateInfo,
}

/// `GET /v1/dns`: the zone as served now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsZone {
    /// The SOA serial; `null` when the gateway serves no DNS.
    pub serial: Option<u32>,
    /// Every record, sorted.
    pub records: Vec<DnsRecord>,
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// The owner name (fully qualified, with the trailing dot).
    pub name: String,
    /// Time to live, seconds.
    pub ttl: u32,
    /// The type: `A`, `AAAA`, `SRV`, `SOA`, `NS`, `PTR`, …
    #[serde(rename = "type")]
    pub rtype: String,
    /// The data in presentation format.
    pub data: String,
}

/// `GET /v1/monitor`: the last monitor round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorSnapshot {
    /// Its samples (host, GPUs, containers, remote hosts).
    pub samples: Vec<Sample>,
}

/// `GET /v1/audit?limit=N`: the most recent records, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditTail {
    /// The records.
    pub events: Vec<AuditEntry>,
    /// How many records the log holds (every line, including any that cannot be read):
    /// a client that counts the records streamed to it knows, on reconnecting, how many
    /// of the newest it has not seen.
    pub total: u64,
    /// The event stream's id as of this read: `GET /v1/events?types=audit` with this as
    /// `Last-Event-ID` streams exactly the records appended after these (what
    /// `conduit logs --follow` does).
    pub cursor: String,
    /// The position of the first record here among the log's readable records (from 0).
    #[serde(default)]
    pub first: u64,
    /// How many of the log's readable records are sealed into the chain (the first ones,
    /// in order: a record at position `first + i` is sealed when that is below this);
    /// `null` when this gateway's log is not sealed here.
    #[serde(default)]
    pub sealed: Option<u64>,
}

/// One audit record, the six fields of the log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub timestamp: String,
    /// `service_register`, `health_change`, `cert_issue`, …
    pub action: String,
    /// `success` or `failure`.
    pub status: conduit_audit::Outcome,
    /// One line for people.
    pub message: String,
    /// Who did it.
    pub user: String,
    /// The action's own fields. The audit format leaves them free-form (records written by
    /// other tools and older versions keep theirs), so they stay JSON here.
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl From<&conduit_audit::AuditEvent> for AuditEntry {
    fn from(e: &conduit_audit::AuditEvent) -> Self {
        Self {
            timestamp: e.timestamp().to_owned(),
            action: e.action().to_owned(),
            status: e.status(),
            message: e.message().to_owned(),
            user: e.user().to_owned(),
            details: e.details().clone(),
        }
    }
}

/// Every answer that is not a success: `{"error": {"code", "message", "retryable"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    /// What went wrong.
    pub error: ApiErrorBody,
}

/// What went wrong, whose fault, and whether to retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiErrorBody {
    /// A stable, machine-readable code, one per HTTP status: `bad_request` (400),
    /// `unauthorized` (401), `forbidden` (403), `not_found` (404), `method_not_allowed`
    /// (405), `conflict` (409), `stale` (412), `refused` (422), `internal` (500),
    /// `not_ready` (503).
    pub code: String,
    /// What went wrong, naming the command or setting that fixes it where there is one.
    pub message: String,
    /// Whether the same request may succeed later (the gateway was busy, a store was down).
    pub retryable: bool,
}

impl ApiError {
    /// An error of `code` saying `message`.
    pub fn new(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            error: ApiErrorBody {
                code: code.to_owned(),
                message: message.into(),
                retryable,
            },
        }
    }
}
