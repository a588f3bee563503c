//! The access policy over the admin API: `/v1/peers`, `/v1/grants`, `/v1/access/…`.

use conduit_registry::ServiceName;
use conduit_registry::access::{DefaultRule, Grant, Peer, StoredPolicy};
use serde::{Deserialize, Serialize};

/// The access policy in force, in `GET /v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessStatus {
    /// `[access] default`.
    pub default: DefaultRule,
    /// `[access] hide_names`.
    pub hide_names: bool,
    /// The policy revision in force.
    pub revision: u64,
    /// How many peers it knows.
    pub peers: usize,
    /// How many grants it has.
    pub grants: usize,
    /// Services that require a client certificate.
    pub require_cert: Vec<String>,
    /// Requests refused since the gateway started.
    pub denied: u64,
}

/// `GET /v1/peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerList {
    /// The policy revision read.
    pub revision: u64,
    /// Every peer.
    pub peers: Vec<Peer>,
}

/// `GET /v1/grants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantList {
    /// The policy revision read.
    pub revision: u64,
    /// `[access] default`: what a service no grant names gets.
    pub default: DefaultRule,
    /// Whether DNS hides names from clients that may not reach them.
    pub hide_names: bool,
    /// The grants (of one service with `?service=`).
    pub grants: Vec<Grant>,
    /// Services that require a client certificate.
    pub require_cert: Vec<String>,
}

impl GrantList {
    /// The grants of `stored` (of `only` when given) under these settings.
    pub fn of(
        stored: &StoredPolicy,
        default: DefaultRule,
        hide_names: bool,
        only: Option<&ServiceName>,
    ) -> Self {
        Self {
            revision: stored.revision,
            default,
            hide_names,
            grants: stored
                .policy
                .grants
                .iter()
                .filter(|g| only.is_none_or(|s| &g.service == s))
                .cloned()
                .collect(),
            require_cert: stored
                .policy
                .require_cert
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}

/// `DELETE /v1/grants`: which grants to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRemove {
    /// The service.
    pub service: String,
    /// The subject (`peer:alice`).
    pub to: String,
}

/// `POST /v1/access/require-cert`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireCert {
    /// The service.
    pub service: String,
    /// Whether it requires a client certificate from now on.
    pub required: bool,
}

/// `GET /v1/access/check?from=IP&service=S[&method=M&path=P][&cert=PEER]`: what the
/// proxy's evaluator decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessVerdict {
    /// Whether the request would reach the service.
    pub allowed: bool,
    /// The grant that decided (`peer:alice → web GET /v1/`), else `default` or
    /// `certificate`.
    pub decided_by: String,
    /// Why, in words.
    pub reason: String,
    /// The policy revision it was decided under.
    pub revision: u64,
}

/// `POST /v1/peers/{name}/cert`: a client certificate for the peer, issued by the
/// gateway's CA. The key is in this answer only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCertificate {
    /// The peer.
    pub peer: String,
    /// The certificate and its issuer, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The root to trust for the gateway's certificates, PEM.
    pub root_pem: String,
    /// Its serial, lower-case hex.
    pub serial: String,
    /// When it expires, RFC 3339.
    pub not_after: String,
}

/// `POST /v1/peers/{name}/revoke`: the serials revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRevoked {
    /// The peer.
    pub peer: String,
    /// The serials revoked (the CRL lists them from now on).
    pub serials: Vec<String>,
}
