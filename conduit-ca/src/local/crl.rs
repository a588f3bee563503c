//! Revocation: revoked serials (kept with the CA's files) and the CRL signed by the
//! intermediate.

use std::time::Duration;

use time::OffsetDateTime;

use rcgen::SerialNumber;

use super::{Authority, LocalCa, rcgen_err, to_time};
use crate::CaError;

impl LocalCa {
    /// Revokes the leaf with this serial (lower-case hex, as [`inspect_pem`](crate::inspect_pem)
    /// shows it) from `now` on; it appears in every CRL after.
    ///
    /// # Errors
    /// [`CaError::InvalidSerial`] for a serial that is not 1-20 bytes of hex.
    pub fn revoke_at(&self, serial_hex: &str, now: OffsetDateTime) -> Result<(), CaError> {
        let s = serial_hex.to_ascii_lowercase();
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.len().is_multiple_of(2)
            && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(CaError::InvalidSerial {
                serial: serial_hex.to_owned(),
            });
        }
        self.revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(s)
            .or_insert(now);
        Ok(())
    }
    /// The revoked serials (lower-case hex).
    pub fn revoked_serials(&self) -> std::collections::HashSet<String> {
        self.revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
    /// A CRL of every revoked leaf, signed by the intermediate, valid from `now` for
    /// `validity`, with an increasing CRL number. Returns (DER, PEM). Serials revoked more
    /// than [`MAX_LEAF_LIFETIME`](super::MAX_LEAF_LIFETIME) ago are dropped first: their
    /// leaves have expired.
    ///
    /// # Errors
    /// [`CaError::Backend`].
    pub fn crl_at(
        &self,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<(Vec<u8>, String), CaError> {
        let revoked = {
            let mut r = self
                .revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // A leaf revoked longer ago than a leaf can live has expired: it leaves the
            // list (and the CRL), which would otherwise grow for as long as the CA runs.
            let horizon = now - to_time(super::MAX_LEAF_LIFETIME);
            r.retain(|_, at| *at > horizon);
            r.clone()
        };
        let mut certs = Vec::with_capacity(revoked.len());
        for (serial, at) in revoked {
            let bytes: Vec<u8> = (0..serial.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(&serial[i..i + 2], 16).ok())
                .collect();
            certs.push(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: at,
                reason_code: Some(rcgen::RevocationReason::Unspecified),
                invalidity_date: None,
            });
        }
        let number = self
            .crl_number
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + to_time(validity),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.intermediate.signer("sign the CRL")?.issuer)
            .map_err(rcgen_err("sign the CRL"))?;
        let pem = crl.pem().map_err(rcgen_err("encode the CRL"))?;
        Ok((crl.der().to_vec(), pem))
    }
}

/// How long a root CRL is valid: a year (the root may be offline until the next
/// intermediate is signed), never past the root itself.
const ROOT_CRL_VALIDITY: time::Duration = time::Duration::days(365);

/// A CRL signed by the root, revoking nothing (intermediates are replaced, not revoked),
/// numbered by its signing time so that CRLs signed on different machines still increase.
pub(super) fn root_crl(
    root: &Authority,
    now: OffsetDateTime,
) -> Result<rcgen::CertificateRevocationList, CaError> {
    let number = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(1),
        next_update: (now + ROOT_CRL_VALIDITY).min(root.not_after),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    params
        .signed_by(&root.signer("sign the root's CRL")?.issuer)
        .map_err(rcgen_err("sign the root's CRL"))
}

/// A CRL in PEM (`-----BEGIN X509 CRL-----`), from its DER.
pub fn crl_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("X509 CRL", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
