//! The CA's files: four PEM files (root and intermediate, certificate and key) and the
//! revocation list, each written to a temporary name, fsynced and renamed; a directory
//! with some of them missing or one unreadable is an error naming the file, never
//! overwritten.

use rcgen::{Issuer, KeyPair};
use time::OffsetDateTime;

use super::{Authority, CaConfig, IntermediateRenewal, LocalCa};
use crate::CaError;

impl Authority {
    /// Rebuilds an authority from its stored certificate and key; `file` names the
    /// certificate in errors.
    fn load(file: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
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
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::Corrupt {
            file: file.replace(".pem", ".key"),
            reason: e.to_string(),
        })?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(bad(
                "the key file does not belong to this certificate".to_owned()
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            issuer,
            key_pem: zeroize::Zeroizing::new(key_pem.to_owned()),
            der: der.to_vec(),
            pem: cert_pem.to_owned(),
            not_before,
            not_after,
        })
    }
}

impl LocalCa {
    /// Loads the CA from `dir` (`root.pem`, `root.key`, `intermediate.pem`,
    /// `intermediate.key`), or creates one there when the directory holds none of them.
    /// An intermediate that is due or already expired (a gateway powered off for longer
    /// than its life) is renewed from the root and saved; [`LocalCa::load_renewal`] says so,
    /// for the caller to audit.
    ///
    /// # Errors
    /// [`CaError::Corrupt`] naming the unreadable file (nothing is overwritten),
    /// [`CaError::Incomplete`] when only some of the files exist, [`CaError::RootExpired`]
    /// for an expired root (the CA refuses to start and says why), [`CaError::Io`].
    pub fn load_or_create(
        dir: &std::path::Path,
        config: CaConfig,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let files = [
            "root.pem",
            "root.key",
            "intermediate.pem",
            "intermediate.key",
        ];
        let present: Vec<bool> = files.iter().map(|f| dir.join(f).exists()).collect();
        if present.iter().all(|p| !p) {
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
            std::fs::read_to_string(dir.join(f)).map_err(|e| CaError::Io {
                op: "read",
                path: dir.join(f).display().to_string(),
                source: e,
            })
        };
        let root = Authority::load("root.pem", &read("root.pem")?, &read("root.key")?)?;
        let intermediate = Authority::load(
            "intermediate.pem",
            &read("intermediate.pem")?,
            &read("intermediate.key")?,
        )?;
        if now >= root.not_after {
            return Err(CaError::RootExpired {
                not_after: root.not_after.to_string(),
            });
        }
        let expired = now >= intermediate.not_after;
        let mut ca = Self::assemble(config, root, intermediate);
        ca.load_revocations(dir)?;
        if ca.intermediate_due(now) {
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
        }
        Ok(ca)
    }
    /// Writes the CA to `dir` (created 0700): keys and certificates 0600, each file written to
    /// a temporary name, fsynced and renamed.
    ///
    /// # Errors
    /// [`CaError::Io`].
    pub fn save(&self, dir: &std::path::Path) -> Result<(), CaError> {
        crate::store::create_private_dir(dir)?;
        for (name, text) in [
            ("root.key", self.root.key_pem.as_str()),
            ("intermediate.key", self.intermediate.key_pem.as_str()),
            ("root.pem", self.root.pem.as_str()),
            ("intermediate.pem", self.intermediate.pem.as_str()),
        ] {
            crate::store::write_private(&dir.join(name), text.as_bytes())?;
        }
        Ok(())
    }
    /// Writes the revoked serials and the CRL number to `dir/revoked.json` (0600, atomic).
    ///
    /// # Errors
    /// [`CaError::Io`].
    pub fn save_revocations(&self, dir: &std::path::Path) -> Result<(), CaError> {
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
    fn load_revocations(&mut self, dir: &std::path::Path) -> Result<(), CaError> {
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
