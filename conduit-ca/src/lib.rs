//! # conduit-ca
//!
//! Conduit's internal certificate authority: a name-constrained root → a short-lived
//! intermediate → short-lived leaves for every registered service, and a rustls
//! [`CertResolver`] that serves them by SNI and swaps them without a restart.
//!
//! * [`CertIssuer`]: the trait (issue; revoke, renew and maintenance defaulted), implemented
//!   by [`LocalCa`] (issuing now, in memory) and [`LocalIssuer`] (the CA kept in a directory,
//!   what the gateway runs); [`CertManager`] serves and renews leaves through any issuer.
//! * [`LocalCa`] (feature `rcgen`): ECDSA P-256 by default (what browsers accept), Ed25519
//!   per CA or per leaf for service-to-service TLS; name constraints limited to the
//!   configured zones and IP ranges, and requests outside them refused.
//! * [`CertResolver`]: `rustls::server::ResolvesServerCert` over an atomically replaced map.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use conduit_ca::*;
//! let ca = LocalCa::generate(CaConfig::default(), time::OffsetDateTime::now_utc())?;
//! let mut req = IssueRequest::default();
//! req.dns_names = vec!["grafana.internal".into()];
//! req.ip_addresses = vec!["10.8.0.2".parse()?];
//! let leaf = ca.issue(&req).await?;
//! assert_eq!(leaf.chain_pem.matches("BEGIN CERTIFICATE").count(), 2); // leaf + intermediate
//!
//! let resolver = CertResolver::new();
//! let key = certified_key(&leaf)?;
//! resolver.install(&req.dns_names, key.clone());
//! assert!(std::sync::Arc::ptr_eq(&resolver.lookup("Grafana.Internal").unwrap(), &key));
//!
//! req.dns_names = vec!["example.com".into()];
//! assert!(matches!(ca.issue(&req).await, Err(CaError::OutsideConstraints { .. })));
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `rcgen` (default): [`LocalCa`], [`CertResolver`] (rcgen, rustls with aws-lc-rs,
//!   x509-parser). Without it only the trait and its types remain.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;
use std::net::IpAddr;

#[cfg(feature = "rcgen")]
mod inspect;
#[cfg(feature = "rcgen")]
mod issuer;
#[cfg(feature = "rcgen")]
mod local;
#[cfg(feature = "rcgen")]
mod manager;
#[cfg(feature = "rcgen")]
mod resolver;
#[cfg(feature = "rcgen")]
mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(feature = "rcgen")]
mod trust;

#[cfg(feature = "rcgen")]
#[cfg_attr(docsrs, doc(cfg(feature = "rcgen")))]
pub use inspect::{CertInfo, CertStatus, inspect_der, inspect_pem};
#[cfg(feature = "rcgen")]
#[cfg_attr(docsrs, doc(cfg(feature = "rcgen")))]
pub use issuer::{CRL_FILE, CertClock, LocalIssuer};
#[cfg(feature = "rcgen")]
#[cfg_attr(docsrs, doc(cfg(feature = "rcgen")))]
pub use local::{
    CaConfig, IntermediateRenewal, KeyAlgorithm, LocalCa, MAX_LEAF_LIFETIME, OFFLINE_ROOT_WARNING,
    SignedIntermediate, crl_pem,
};
#[cfg(feature = "rcgen")]
#[cfg_attr(docsrs, doc(cfg(feature = "rcgen")))]
pub use manager::CertManager;
#[cfg(feature = "rcgen")]
#[cfg_attr(docsrs, doc(cfg(feature = "rcgen")))]
pub use resolver::{CertResolver, certified_key};
#[cfg(feature = "rcgen")]
#[cfg_attr(docsrs, doc(cfg(feature = "rcgen")))]
pub use trust::{LinuxTrustStore, TrustStep, mobileconfig, trust_instructions};

/// What to put in a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IssueRequest {
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// A client certificate too (the `clientAuth` extended key usage, for mTLS), not only
    /// a server one.
    pub client_auth: bool,
}

/// A leaf certificate and its key, in PEM.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuedCert {
    /// The leaf followed by its issuers, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM (never printed by `Debug`).
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("chain_pem", &self.chain_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Errors of the CA subsystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A requested name is outside the zones and IP ranges this CA may certify.
    #[error("{name} is outside the zones and IP ranges this CA may certify")]
    OutsideConstraints {
        /// The refused name or address.
        name: String,
    },
    /// A requested DNS name is malformed.
    #[error("{name:?} is not a valid DNS name: {reason}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A configured zone is malformed.
    #[error("zone {zone:?} is not a valid DNS name: {reason}")]
    InvalidZone {
        /// The zone.
        zone: String,
        /// Why.
        reason: String,
    },
    /// A request with neither a DNS name nor an IP address.
    #[error("a certificate needs at least one DNS name or IP address")]
    NoNames,
    /// The requested lifetime is longer than allowed.
    #[error("leaf lifetime {requested:?} is longer than {limit}")]
    LifetimeTooLong {
        /// What was asked for.
        requested: std::time::Duration,
        /// The limit, in words.
        limit: String,
    },
    /// The intermediate has expired: nothing can be issued until it is renewed (loading a
    /// stored CA whose root key is there renews it).
    #[error(
        "the intermediate CA expired at {not_after}; nothing can be issued until it is renewed: {remedy}"
    )]
    IssuerExpired {
        /// When it expired.
        not_after: String,
        /// What the operator runs to renew it.
        remedy: &'static str,
    },
    /// The root key is kept offline: what needs it must be done where it is.
    #[error(
        "cannot {action}: the root key is offline (kept outside the state directory); sign a request with it: `conduit ca request-intermediate`, `conduit ca sign-intermediate`, `conduit ca install-intermediate`"
    )]
    RootOffline {
        /// What needed the root key.
        action: &'static str,
    },
    /// A certificate offered as this CA's intermediate (or a request to sign one) cannot be
    /// used; nothing was changed.
    #[error("{what}: {reason}")]
    Intermediate {
        /// What was being read or checked.
        what: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
    /// The root has expired: the CA refuses to start (a root rollover is needed, see
    /// `docs/ca.md`).
    #[error("the root CA expired at {not_after}; roll over to a new root (docs/ca.md)")]
    RootExpired {
        /// When it expired.
        not_after: String,
    },
    /// A stored CA file cannot be used; it was left untouched.
    #[error("tls/{file}: {reason}; it was not modified, restore it from a backup")]
    Corrupt {
        /// The file, relative to the CA directory.
        file: String,
        /// Why.
        reason: String,
    },
    /// Some CA files exist but not all: the CA is not regenerated over them.
    #[error(
        "{dir}: {missing} is missing while other CA files exist; restore it or move the directory away"
    )]
    Incomplete {
        /// The CA directory.
        dir: String,
        /// The first missing file.
        missing: &'static str,
    },
    /// A file operation failed.
    #[error("{path}: cannot {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The trust store's refresh command failed.
    #[error("`{command}` failed: {output}")]
    TrustInstall {
        /// The command.
        command: String,
        /// What it printed.
        output: String,
    },
    /// No certificate is managed under this name.
    #[error("no certificate is managed for {name}")]
    Unknown {
        /// The name.
        name: String,
    },
    /// A serial number that is not 1-20 bytes of hex.
    #[error("serial {serial:?} is not 1-20 bytes of hex")]
    InvalidSerial {
        /// The refused serial.
        serial: String,
    },
    /// PEM data could not be read.
    #[error("cannot read the {what}: {reason}")]
    Pem {
        /// What was being read.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The system's random source failed.
    #[error("the random number generator failed")]
    Random,
    /// The certificate library failed.
    #[error("cannot {what}: {source}")]
    Backend {
        /// What was being done.
        what: &'static str,
        /// The library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The issuer does not implement this optional operation.
    #[error("this issuer does not support {0}")]
    Unsupported(&'static str),
}

/// Whether an issuer can issue, and what an operator must do when it cannot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Issuance {
    /// It issues.
    #[default]
    Ready,
    /// It issues, but needs an operator soon (an intermediate near its end with the root
    /// offline): the warning names the command to run.
    Expiring {
        /// What will stop and what to run, in one line.
        warning: String,
    },
    /// Nothing can be issued; certificates already issued are still served.
    Blocked {
        /// Why, and the command that fixes it, in one line.
        reason: String,
    },
}

/// The CRLs an issuer publishes, DER.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Crls {
    /// The CRL of the CA that signs leaves (what leaves' CRL distribution point names).
    pub issuing: Option<Vec<u8>>,
    /// The root's CRL (what the intermediate's CRL distribution point names).
    pub root: Option<Vec<u8>>,
}

/// Issues leaf certificates for registered services.
#[async_trait::async_trait]
pub trait CertIssuer: Send + Sync + fmt::Debug {
    /// Issues a leaf for the request.
    ///
    /// # Errors
    /// [`CaError`] naming why the leaf cannot be issued.
    async fn issue(&self, req: &IssueRequest) -> Result<IssuedCert, CaError>;

    /// Revokes a certificate by serial (hex). Optional.
    ///
    /// # Errors
    /// [`CaError::Unsupported`] unless the issuer implements it.
    async fn revoke(&self, _serial_hex: &str) -> Result<(), CaError> {
        Err(CaError::Unsupported("revoke"))
    }

    /// Issues a fresh leaf for the same names (a new key), for renewal at 2/3 of life and for
    /// rotation. The default simply issues again.
    ///
    /// # Errors
    /// As [`CertIssuer::issue`].
    async fn renew(&self, req: &IssueRequest) -> Result<IssuedCert, CaError> {
        self.issue(req).await
    }

    /// Renews what the issuer itself needs to go on issuing (an intermediate near the end of
    /// its life); called before each renewal round. Returns whether anything changed. The
    /// default has nothing to do.
    ///
    /// # Errors
    /// [`CaError`] naming what could not be renewed or saved.
    async fn maintain(&self) -> Result<bool, CaError> {
        Ok(false)
    }

    /// Whether the issuer can issue now. The default always can.
    fn issuance(&self) -> Issuance {
        Issuance::Ready
    }

    /// The CRLs to publish, current (signed again before they go stale by
    /// [`CertIssuer::maintain`] or a revocation). The default has none.
    fn crls(&self) -> Crls {
        Crls::default()
    }
}

#[cfg(feature = "rcgen")]
#[async_trait::async_trait]
impl CertIssuer for LocalCa {
    async fn issue(&self, req: &IssueRequest) -> Result<IssuedCert, CaError> {
        self.issue_at(
            req,
            None,
            None,
            req.client_auth,
            time::OffsetDateTime::now_utc(),
        )
    }

    async fn revoke(&self, serial_hex: &str) -> Result<(), CaError> {
        self.revoke_at(serial_hex, time::OffsetDateTime::now_utc())
    }
}
