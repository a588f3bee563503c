//! [`inspect_pem`]: a certificate as a typed, serialisable summary (x509-parser).

use std::collections::HashSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::CaError;

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CertStatus {
    /// Within its validity, more than a third of its life left.
    Valid,
    /// Within its validity, less than a third of its life left (renewal is due).
    Expiring,
    /// Past `not_after` (or before `not_before`).
    Expired,
    /// Its serial is on the revocation list.
    Revoked,
}

/// What `conduit certs inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CertInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// `ECDSA P-256`, `Ed25519`, `RSA 2048`, …
    pub key_algorithm: String,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256_fingerprint: String,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// Valid, expiring, expired or revoked at the time of inspection.
    pub status: CertStatus,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rfc3339(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Summarises the first certificate of `pem` as seen at `now`; a serial (lower-case hex) in
/// `revoked` makes it [`CertStatus::Revoked`].
///
/// # Errors
/// [`CaError::Pem`] naming what could not be read.
pub fn inspect_pem(
    pem: &str,
    now: OffsetDateTime,
    revoked: &HashSet<String>,
) -> Result<CertInfo, CaError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| CaError::Pem {
            what: "certificate",
            reason: "no certificate in the PEM".to_owned(),
        })?
        .map_err(|e| CaError::Pem {
            what: "certificate",
            reason: e.to_string(),
        })?;
    inspect_der(&der, now, revoked)
}

/// As [`inspect_pem`], from DER.
///
/// # Errors
/// [`CaError::Pem`] when the DER is not a certificate.
pub fn inspect_der(
    der: &[u8],
    now: OffsetDateTime,
    revoked: &HashSet<String>,
) -> Result<CertInfo, CaError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CaError::Pem {
        what: "certificate",
        reason: e.to_string(),
    })?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => {
                        ip_addresses.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()))
                    }
                    16 => ip_addresses
                        .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let spki = cert.public_key();
    let key_algorithm = match spki.parsed() {
        Ok(PublicKey::EC(ec)) => format!("ECDSA P-{}", ec.key_size()),
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => "Ed25519".to_owned(),
        _ => spki.algorithm.algorithm.to_id_string(),
    };
    let serial = hex(cert.raw_serial());
    let (nb, na) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    let t = now.unix_timestamp();
    let status = if revoked.contains(&serial) {
        CertStatus::Revoked
    } else if t < nb || t > na {
        CertStatus::Expired
    } else if (na - t) * 3 < (na - nb) {
        CertStatus::Expiring
    } else {
        CertStatus::Valid
    };
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        dns_names,
        ip_addresses,
        serial,
        not_before: rfc3339(nb),
        not_after: rfc3339(na),
        key_algorithm,
        sha256_fingerprint: hex(&Sha256::digest(der)),
        is_ca: cert.is_ca(),
        status,
    })
}
