//! The CA's files: four PEM files (root and intermediate, certificate and key) and the
//! revocation list, each written to a temporary name, fsynced and renamed; a directory
//! with some of them missing or one unreadable is an error naming the file, never
//! overwritten.

use std::path::Path;

use rcgen::{Issuer, KeyPair};
use time::OffsetDateTime;

use super::{Authority, CaConfig, IntermediateRenewal, LocalCa, Signer};
use crate::CaError;

impl Authority {
    /// Rebuilds an authority from its stored certificate and key (none: a root kept
    /// offline); `file` names the certificate in errors.
    pub(super) fn load(file: &str, cert_pem: &str, key_pem: Option<&str>) -> Result<Self, CaError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |reason: String| CaError::Corrupt {
            file: file.to_owned(),
            reason,
        };
        let der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| bad(e.to_string()))?;
        let ts = |t: i64| OffsetDateTime::from_unix_timestamp(t).map_err(|e| bad(e.to_string()));
        let not_before = ts(x509.validity().not_before.timestamp())?;
        let not_after = ts(x509.validity().not_after.timestamp())?;
        if !x509.is_ca() {
            return Err(bad("not a CA certificate".to_owned()));
        }
        let signer = match key_pem {
            None => None,
            Some(key_pem) => {
                let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::Corrupt {
                    file: file.replace(".pem", ".key"),
                    reason: e.to_string(),
                })?;
                if !key_matches(&key, &x509) {
                    return Err(bad(
                        "the key file does not belong to this certificate".to_owned()
                    ));
                }
                let issuer =
                    Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| bad(e.to_string()))?;
                Some(Signer {
                    issuer,
                    key_pem: zeroize::Zeroizing::new(key_pem.to_owned()),
                })
            }
        };
        Ok(Self {
            signer,
            der: der.to_vec(),
            pem: cert_pem.to_owned(),
            not_before,
            not_after,
        })
    }
}

/// Whether `key` is the key of this certificate.
pub(super) fn key_matches(
    key: &KeyPair,
    x509: &x509_parser::certificate::X509Certificate<'_>,
) -> bool {
    key.public_key_raw() == x509.public_key().subject_public_key.data.as_ref()
}

/// Reads `dir/file`; `None` when it does not exist.
pub(super) fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, CaError> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CaError::Io {
            op: "read",
            path: path.display().to_string(),
            source: e,
        }),
    }
}

/// Removes `dir/file` (if there) and syncs the directory.
pub(super) fn remove(dir: &Path, file: &str) -> Result<(), CaError> {
    let path = dir.join(file);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(CaError::Io {
                op: "remove",
                path: path.display().to_string(),
                source: e,
            });
        }
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CaError::Io {
            op: "fsync",
            path: dir.display().to_string(),
            source: e,
        })
}

/// The key of an intermediate being installed (requested with
/// [`LocalCa::request_intermediate`], or a renewal being saved): written before the new
/// certificate, removed after it, so a crash in between is finished at the next load.
pub(super) const NEXT_KEY: &str = "intermediate.next.key";
/// The root's CRL, DER.
pub(super) const ROOT_CRL: &str = "root-crl.der";

impl LocalCa {
    /// Loads the CA from `dir` (`root.pem`, `intermediate.pem`, `intermediate.key`, and
    /// `root.key` unless the root is kept offline), or creates one there when the directory
    /// holds none of them. An intermediate that is due or already expired (a gateway
    /// powered off for longer than its life) is renewed from the root and saved when the
    /// root key is here; [`LocalCa::load_renewal`] says so, for the caller to audit. With
    /// the root offline the CA loads anyway: it serves what it has, and
    /// [`LocalCa::issuance`] says whether it can still issue.
    ///
    /// # Errors
    /// [`CaError::Corrupt`] naming the unreadable file (nothing is overwritten),
    /// [`CaError::Incomplete`] when only some of the files exist, [`CaError::RootExpired`]
    /// for an expired root (the CA refuses to start and says why), [`CaError::Io`].
    pub fn load_or_create(
        dir: &Path,
        config: CaConfig,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let files = ["root.pem", "intermediate.pem", "intermediate.key"];
        let present: Vec<bool> = files.iter().map(|f| dir.join(f).exists()).collect();
        if present.iter().all(|p| !p) && !dir.join("root.key").exists() {
            let ca = Self::generate(config, now)?;
            ca.save(dir)?;
            tracing::info!(dir = %dir.display(), "created a new CA");
            return Ok(ca);
        }
        if let Some(i) = present.iter().position(|p| !p) {
            return Err(CaError::Incomplete {
                dir: dir.display().to_string(),
                missing: files[i],
            });
        }
        let read = |f: &str| {
            read_optional(dir, f)?.ok_or_else(|| CaError::Incomplete {
                dir: dir.display().to_string(),
                missing: "intermediate.pem",
            })
        };
        let root_key = read_optional(dir, "root.key")?;
        let root = Authority::load("root.pem", &read("root.pem")?, root_key.as_deref())?;
        let intermediate_pem = read("intermediate.pem")?;
        let intermediate = match Authority::load(
            "intermediate.pem",
            &intermediate_pem,
            Some(&read("intermediate.key")?),
        ) {
            Ok(i) => i,
            // A crash between writing a new intermediate's certificate and its key: the
            // key is still under its temporary name.
            Err(e) => match read_optional(dir, NEXT_KEY)? {
                Some(next) => {
                    let i = Authority::load("intermediate.pem", &intermediate_pem, Some(&next))
                        .map_err(|_| e)?;
                    crate::store::write_private(&dir.join("intermediate.key"), next.as_bytes())?;
                    remove(dir, NEXT_KEY)?;
                    tracing::warn!("finished installing an intermediate interrupted by a crash");
                    i
                }
                None => return Err(e),
            },
        };
        if now >= root.not_after {
            return Err(CaError::RootExpired {
                not_after: root.not_after.to_string(),
            });
        }
        let expired = now >= intermediate.not_after;
        let mut ca = Self::assemble(config, root, intermediate);
        ca.root_crl = std::fs::read(dir.join(ROOT_CRL)).ok();
        ca.load_revocations(dir)?;
        if ca.intermediate_due(now) && ca.root_key_present() {
            let previous_not_after = ca.intermediate.not_after;
            ca.renew_intermediate(now)?;
            ca.save(dir)?;
            if expired {
                tracing::warn!(expired_at = %previous_not_after, not_after = %ca.intermediate.not_after, "the intermediate CA had expired (the gateway was off for longer than its life); renewed from the root");
            }
            ca.load_renewal = Some(IntermediateRenewal {
                previous_not_after,
                not_after: ca.intermediate.not_after,
                expired,
            });
        } else if let crate::Issuance::Blocked { reason } = ca.issuance(now) {
            tracing::error!("{reason}");
        }
        Ok(ca)
    }
    /// Writes the CA to `dir` (created 0700): keys and certificates 0600, each file written to
    /// a temporary name, fsynced and renamed; the intermediate's key goes first under a
    /// temporary name, so a crash never leaves a certificate with the wrong key. The root
    /// key is written only when it is here.
    ///
    /// # Errors
    /// [`CaError::Io`].
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        crate::store::create_private_dir(dir)?;
        let key = self.intermediate.signer("save the intermediate")?;
        crate::store::write_private(&dir.join(NEXT_KEY), key.key_pem.as_bytes())?;
        if let Some(root) = &self.root.signer {
            crate::store::write_private(&dir.join("root.key"), root.key_pem.as_bytes())?;
        }
        crate::store::write_private(&dir.join("root.pem"), self.root.pem.as_bytes())?;
        if let Some(crl) = &self.root_crl {
            crate::store::write_private(&dir.join(ROOT_CRL), crl)?;
        }
        crate::store::write_private(
            &dir.join("intermediate.pem"),
            self.intermediate.pem.as_bytes(),
        )?;
        crate::store::write_private(&dir.join("intermediate.key"), key.key_pem.as_bytes())?;
        remove(dir, NEXT_KEY)
    }
    /// Writes the revoked serials and the CRL number to `dir/revoked.json` (0600, atomic).
    ///
    /// # Errors
    /// [`CaError::Io`].
    pub fn save_revocations(&self, dir: &Path) -> Result<(), CaError> {
        let revoked = self
            .revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let entries: serde_json::Map<String, serde_json::Value> = revoked
            .into_iter()
            .map(|(serial, at)| {
                let at = at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                (serial, serde_json::Value::String(at))
            })
            .collect();
        let doc = serde_json::json!({
            "crl_number": self.crl_number.load(std::sync::atomic::Ordering::Relaxed),
            "revoked": entries,
        });
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        crate::store::create_private_dir(dir)?;
        crate::store::write_private(&dir.join("revoked.json"), text.as_bytes())
    }
    fn load_revocations(&mut self, dir: &Path) -> Result<(), CaError> {
        let path = dir.join("revoked.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(CaError::Io {
                    op: "read",
                    path: path.display().to_string(),
                    source: e,
                });
            }
        };
        let bad = |reason: String| CaError::Corrupt {
            file: "revoked.json".to_owned(),
            reason,
        };
        let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let number = doc["crl_number"]
            .as_u64()
            .ok_or_else(|| bad("crl_number is not a number".to_owned()))?;
        let entries = doc["revoked"]
            .as_object()
            .ok_or_else(|| bad("revoked is not an object".to_owned()))?;
        let mut revoked = std::collections::BTreeMap::new();
        for (serial, at) in entries {
            let at = at
                .as_str()
                .and_then(|a| {
                    OffsetDateTime::parse(a, &time::format_description::well_known::Rfc3339).ok()
                })
                .ok_or_else(|| bad(format!("revocation time of {serial} is not RFC 3339")))?;
            revoked.insert(serial.clone(), at);
        }
        *self
            .revoked
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = revoked;
        *self.crl_number.get_mut() = number;
        Ok(())
    }
}
