//! [`LocalCa`]: a name-constrained root → a short-lived intermediate → short-lived leaves,
//! on rcgen.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::{CaError, IssueRequest, IssuedCert};

/// The key type of a certificate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: what every browser accepts (the default).
    #[default]
    EcdsaP256,
    /// Ed25519: for service-to-service TLS only (browsers reject Ed25519 server certificates).
    Ed25519,
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// Longest leaf lifetime accepted.
pub const MAX_LEAF_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// Settings of a [`LocalCa`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CaConfig {
    /// Zones the CA may certify (name constraints): default `internal`.
    pub zones: Vec<String>,
    /// IP ranges the CA may certify (name constraints), as (network, prefix length).
    pub ip_ranges: Vec<(IpAddr, u8)>,
    /// Organisation written into the CA subjects.
    pub organization: String,
    /// Root lifetime (default 10 years).
    pub root_lifetime: Duration,
    /// Intermediate lifetime (default 7 days; renewed automatically).
    pub intermediate_lifetime: Duration,
    /// Default leaf lifetime (default 7 days, at most a year).
    pub leaf_lifetime: Duration,
    /// Key type of the CA certificates and default key type of leaves.
    pub key_algorithm: KeyAlgorithm,
    /// A CRL distribution point URL written into every leaf (for example the gateway's
    /// `http://ca.internal/crl`); `None` leaves it out.
    pub crl_url: Option<String>,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            zones: vec!["internal".to_owned()],
            ip_ranges: vec![
                (IpAddr::from([10, 0, 0, 0]), 8),
                (IpAddr::from([172, 16, 0, 0]), 12),
                (IpAddr::from([192, 168, 0, 0]), 16),
                (IpAddr::from([127, 0, 0, 0]), 8),
                (IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 0]), 8),
                (IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]), 128),
            ],
            organization: "Conduit".to_owned(),
            root_lifetime: Duration::from_secs(10 * 365 * 24 * 3600),
            intermediate_lifetime: Duration::from_secs(7 * 24 * 3600),
            leaf_lifetime: Duration::from_secs(7 * 24 * 3600),
            key_algorithm: KeyAlgorithm::EcdsaP256,
            crl_url: None,
        }
    }
}

/// A CA certificate with its key.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The key, PKCS#8 PEM, for saving (never printed, wiped from memory on drop).
    key_pem: zeroize::Zeroizing<String>,
    der: Vec<u8>,
    pem: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Authority {
    fn new(params: CertificateParams, key: KeyPair, cert: &rcgen::Certificate) -> Self {
        Self {
            key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
            der: cert.der().to_vec(),
            pem: cert.pem(),
            not_before: params.not_before,
            not_after: params.not_after,
            issuer: Issuer::new(params, key),
        }
    }

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

fn name_constraints(config: &CaConfig) -> NameConstraints {
    NameConstraints {
        permitted_subtrees: config
            .zones
            .iter()
            .map(|z| GeneralSubtree::DnsName(z.clone()))
            .chain(config.ip_ranges.iter().map(|(ip, len)| {
                GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(*ip, *len))
            }))
            .collect(),
        excluded_subtrees: Vec::new(),
    }
}

fn ca_params(
    config: &CaConfig,
    cn: &str,
    lifetime: Duration,
    path_len: u8,
    now: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, config.organization.clone());
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.name_constraints = Some(name_constraints(config));
    p.not_before = now - time::Duration::minutes(1);
    p.not_after = now + to_time(lifetime);
    p.serial_number = Some(random_serial()?);
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// A local certificate authority: root → intermediate → leaf, name-constrained to its zones.
///
/// Leaves are signed by the intermediate and carry SANs (DNS and IP), EKU serverAuth (and
/// clientAuth on request), KU digitalSignature, basicConstraints CA:false, SKI and AKI, a
/// random 128-bit serial, and a validity backdated by one minute.
pub struct LocalCa {
    config: CaConfig,
    root: Authority,
    intermediate: Authority,
    /// Revoked serials (lower-case hex) and when.
    revoked: std::sync::Mutex<std::collections::BTreeMap<String, OffsetDateTime>>,
    crl_number: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("zones", &self.config.zones)
            .field("root_not_after", &self.root.not_after)
            .field("intermediate_not_after", &self.intermediate.not_after)
            .field("keys", &"<redacted>")
            .finish()
    }
}

fn rcgen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> CaError {
    move |e| CaError::Backend {
        what,
        source: Box::new(e),
    }
}

/// 16 bytes from the crypto provider's secure random source.
pub(crate) fn random_bytes() -> Result<[u8; 16], CaError> {
    let mut b = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| CaError::Random)?;
    Ok(b)
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut b = random_bytes()?;
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // and a full 128 bits, never shortened by a leading zero
    Ok(SerialNumber::from_slice(&b))
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

impl LocalCa {
    /// A new root and intermediate, valid from `now`.
    ///
    /// # Errors
    /// [`CaError::InvalidZone`] for a zone that is not a DNS name, [`CaError::Backend`].
    pub fn generate(config: CaConfig, now: OffsetDateTime) -> Result<Self, CaError> {
        for z in &config.zones {
            check_dns_name(z).map_err(|reason| CaError::InvalidZone {
                zone: z.clone(),
                reason,
            })?;
        }
        let key = KeyPair::generate_for(config.key_algorithm.rcgen())
            .map_err(rcgen_err("generate the root key"))?;
        let params = ca_params(
            &config,
            &format!("{} Root CA", config.organization),
            config.root_lifetime,
            1,
            now,
        )?;
        let cert = params
            .self_signed(&key)
            .map_err(rcgen_err("sign the root"))?;
        let root = Authority::new(params, key, &cert);
        let intermediate = Self::make_intermediate(&config, &root, now)?;
        Ok(Self::assemble(config, root, intermediate))
    }

    fn assemble(config: CaConfig, root: Authority, intermediate: Authority) -> Self {
        Self {
            config,
            root,
            intermediate,
            revoked: std::sync::Mutex::default(),
            crl_number: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn make_intermediate(
        config: &CaConfig,
        root: &Authority,
        now: OffsetDateTime,
    ) -> Result<Authority, CaError> {
        let key = KeyPair::generate_for(config.key_algorithm.rcgen())
            .map_err(rcgen_err("generate the intermediate key"))?;
        let mut params = ca_params(
            config,
            &format!("{} Intermediate CA", config.organization),
            config.intermediate_lifetime,
            0,
            now,
        )?;
        params.not_after = params.not_after.min(root.not_after);
        let cert = params
            .signed_by(&key, &root.issuer)
            .map_err(rcgen_err("sign the intermediate"))?;
        Ok(Authority::new(params, key, &cert))
    }

    /// Whether the intermediate has less than a third of its life left (or is expired): the
    /// point where [`LocalCa::renew_intermediate`] should run.
    pub fn intermediate_due(&self, now: OffsetDateTime) -> bool {
        let life = self.intermediate.not_after - self.intermediate.not_before;
        (self.intermediate.not_after - now) * 3 < life
    }

    /// Replaces the intermediate with a new key and certificate signed by the root, valid
    /// from `now`. Leaves issued before stay valid (their issuer's certificate is still
    /// served in their chains until they are renewed).
    ///
    /// # Errors
    /// [`CaError::RootExpired`], [`CaError::Backend`].
    pub fn renew_intermediate(&mut self, now: OffsetDateTime) -> Result<(), CaError> {
        if now >= self.root.not_after {
            return Err(CaError::RootExpired {
                not_after: self.root.not_after.to_string(),
            });
        }
        self.intermediate = Self::make_intermediate(&self.config, &self.root, now)?;
        tracing::info!(not_after = %self.intermediate.not_after, "intermediate CA renewed");
        Ok(())
    }

    /// Loads the CA from `dir` (`root.pem`, `root.key`, `intermediate.pem`,
    /// `intermediate.key`), or creates one there when the directory holds none of them.
    /// Renews a valid intermediate that is due, and saves it.
    ///
    /// # Errors
    /// [`CaError::Corrupt`] naming the unreadable file (nothing is overwritten),
    /// [`CaError::Incomplete`] when only some of the files exist, [`CaError::RootExpired`] and
    /// [`CaError::IssuerExpired`] for an expired root or intermediate (the CA refuses to start
    /// and says why), [`CaError::Io`].
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
        if now >= intermediate.not_after {
            return Err(CaError::IssuerExpired {
                not_after: intermediate.not_after.to_string(),
            });
        }
        let mut ca = Self::assemble(config, root, intermediate);
        ca.load_revocations(dir)?;
        if ca.intermediate_due(now) {
            ca.renew_intermediate(now)?;
            ca.save(dir)?;
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

    /// The root certificate, PEM (what clients trust).
    pub fn root_pem(&self) -> &str {
        &self.root.pem
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The intermediate certificate, PEM.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate.pem
    }

    /// When the intermediate expires.
    pub fn intermediate_not_after(&self) -> OffsetDateTime {
        self.intermediate.not_after
    }

    /// Checks a request against the CA's zones and IP ranges.
    ///
    /// # Errors
    /// [`CaError::InvalidName`], [`CaError::OutsideConstraints`], [`CaError::NoNames`].
    pub fn check_request(&self, req: &IssueRequest) -> Result<(), CaError> {
        if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
            return Err(CaError::NoNames);
        }
        for n in &req.dns_names {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            check_dns_name(bare).map_err(|reason| CaError::InvalidName {
                name: n.clone(),
                reason,
            })?;
            let inside = self
                .config
                .zones
                .iter()
                .any(|z| bare == z || bare.ends_with(&format!(".{z}")));
            if !inside {
                return Err(CaError::OutsideConstraints { name: n.clone() });
            }
        }
        for ip in &req.ip_addresses {
            let inside = self
                .config
                .ip_ranges
                .iter()
                .any(|(net, len)| in_range(*ip, *net, *len));
            if !inside {
                return Err(CaError::OutsideConstraints {
                    name: ip.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Issues a leaf valid from `now` (backdated one minute) for `lifetime` (when `None`, the
    /// configured default, cut to the intermediate's expiry), with a key of `key` (the CA's
    /// default when `None`).
    ///
    /// # Errors
    /// As [`LocalCa::check_request`], [`CaError::LifetimeTooLong`] when the leaf would outlive
    /// a year or its intermediate, [`CaError::Backend`].
    pub fn issue_at(
        &self,
        req: &IssueRequest,
        lifetime: Option<Duration>,
        key: Option<KeyAlgorithm>,
        client_auth: bool,
        now: OffsetDateTime,
    ) -> Result<IssuedCert, CaError> {
        self.check_request(req)?;
        // An explicit lifetime must fit under a year and the intermediate; the default one is
        // clamped to the intermediate's expiry (the leaf is renewed long before either ends).
        let not_after = match lifetime {
            Some(l) => {
                let not_after = now + to_time(l);
                if l > MAX_LEAF_LIFETIME || not_after > self.intermediate.not_after {
                    return Err(CaError::LifetimeTooLong {
                        requested: l,
                        limit: format!(
                            "one year and the intermediate's expiry ({})",
                            self.intermediate.not_after
                        ),
                    });
                }
                not_after
            }
            None => (now + to_time(self.config.leaf_lifetime)).min(self.intermediate.not_after),
        };
        if not_after <= now {
            return Err(CaError::IssuerExpired {
                not_after: self.intermediate.not_after.to_string(),
            });
        }
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            req.dns_names
                .first()
                .cloned()
                .unwrap_or_else(|| req.ip_addresses[0].to_string()),
        );
        p.distinguished_name = dn;
        for n in &req.dns_names {
            p.subject_alt_names.push(SanType::DnsName(
                n.clone()
                    .try_into()
                    .map_err(rcgen_err("encode a DNS name"))?,
            ));
        }
        for ip in &req.ip_addresses {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if client_auth {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        p.not_before = now - time::Duration::minutes(1);
        p.not_after = not_after;
        p.serial_number = Some(random_serial()?);
        p.use_authority_key_identifier_extension = true;
        if let Some(url) = &self.config.crl_url {
            p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        let alg = key.unwrap_or(self.config.key_algorithm);
        let leaf_key =
            KeyPair::generate_for(alg.rcgen()).map_err(rcgen_err("generate a leaf key"))?;
        let cert = p
            .signed_by(&leaf_key, &self.intermediate.issuer)
            .map_err(rcgen_err("sign a leaf"))?;
        Ok(IssuedCert {
            chain_pem: format!("{}{}", cert.pem(), self.intermediate.pem),
            key_pem: leaf_key.serialize_pem(),
        })
    }

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
    /// `validity`, with an increasing CRL number. Returns (DER, PEM).
    ///
    /// # Errors
    /// [`CaError::Backend`].
    pub fn crl_at(
        &self,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<(Vec<u8>, String), CaError> {
        let revoked = self
            .revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
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
            .signed_by(&self.intermediate.issuer)
            .map_err(rcgen_err("sign the CRL"))?;
        let pem = crl.pem().map_err(rcgen_err("encode the CRL"))?;
        Ok((crl.der().to_vec(), pem))
    }

    /// Signs an arbitrary leaf with the **root**, bypassing every check. Only for tests that
    /// show clients enforce name constraints.
    #[doc(hidden)]
    #[cfg(feature = "testing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
    pub fn forge_unchecked_for_tests(&self, dns_name: &str) -> Result<IssuedCert, CaError> {
        let mut p =
            CertificateParams::new(vec![dns_name.to_owned()]).map_err(rcgen_err("params"))?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("key"))?;
        let cert = p
            .signed_by(&key, &self.root.issuer)
            .map_err(rcgen_err("sign"))?;
        Ok(IssuedCert {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn in_range(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// DNS-name rules for SANs and zones: lower-case labels of `[a-z0-9-]`, 1-63 characters, no
/// leading or trailing `-`, at most 253 characters.
fn check_dns_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 253 {
        return Err(format!("length {} is not 1-253", n.len()));
    }
    for label in n.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label {label:?} is not 1-63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "character {c:?} is not allowed (lower-case a-z, 0-9, '-')"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}
