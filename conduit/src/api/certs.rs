//! `GET /v1/certs`: the certificate authority and every certificate the gateway serves,
//! for the dashboard's TLS view and `conduit certs`.

use serde::{Deserialize, Serialize};

use super::CaStatus;

/// The CA's certificates, what it may certify, and every managed leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertReport {
    /// Whether it can issue, and what to run when it cannot.
    pub ca: CaStatus,
    /// The root (what clients trust); `null` when the issuer is not the gateway's own CA.
    pub root: Option<CaCertView>,
    /// The intermediate that signs leaves; `null` as for `root`.
    pub intermediate: Option<CaCertView>,
    /// The names and address ranges the CA may certify (its name constraints).
    pub name_constraints: Vec<String>,
    /// Every certificate the gateway serves, by managed name.
    pub leaves: Vec<LeafView>,
    /// Serials on the issuing CA's revocation list (lower-case hex).
    pub revoked: Vec<String>,
}

/// A CA certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaCertView {
    /// Its subject.
    pub subject: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// SHA-256 of its DER, colon-separated upper-case hex (as `openssl x509 -fingerprint
    /// -sha256` prints it).
    pub sha256_fingerprint: String,
}

/// A leaf certificate the gateway serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafView {
    /// The service (or `@admin`, `@address`, `@dashboard` for the gateway's own).
    pub name: String,
    /// Its serial, lower-case hex.
    pub serial: String,
    /// Its DNS names and addresses.
    pub names: Vec<String>,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// The share of its lifetime left, 0 to 1 (renewed at a third; under a third is late).
    pub life_left: f64,
}
