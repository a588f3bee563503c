//! # conduit-ca
//!
//! Conduit's internal certificate authority: a name-constrained root, a short-lived
//! intermediate and short-lived leaves for every registered service.
//!
//! This crate currently defines the [`CertIssuer`] trait; the rcgen-backed CA is the subject
//! of its own issue.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use conduit_ca::{CaError, CertIssuer, IssueRequest, IssuedCert};
//!
//! #[derive(Debug)]
//! struct Refuser;
//! #[async_trait::async_trait]
//! impl CertIssuer for Refuser {
//!     async fn issue(&self, req: &IssueRequest) -> Result<IssuedCert, CaError> {
//!         Err(CaError::OutsideConstraints { name: req.dns_names[0].clone() })
//!     }
//! }
//! let req = IssueRequest { dns_names: vec!["example.com".into()], ip_addresses: vec![] };
//! assert!(matches!(Refuser.issue(&req).await, Err(CaError::OutsideConstraints { .. })));
//! assert!(matches!(Refuser.revoke("01").await, Err(CaError::Unsupported("revoke"))));
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;
use std::net::IpAddr;

/// What to put in a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
}

/// A leaf certificate and its key, in PEM.
#[derive(Clone)]
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
    /// The requested name is outside the CA's name constraints.
    #[error("{name} is outside the zones this CA may certify")]
    OutsideConstraints {
        /// The refused name.
        name: String,
    },
    /// The issuer does not implement this optional operation.
    #[error("this issuer does not support {0}")]
    Unsupported(&'static str),
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
}
