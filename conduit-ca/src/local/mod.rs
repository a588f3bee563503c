//! [`LocalCa`]: a name-constrained root → a short-lived intermediate → short-lived leaves,
//! on rcgen. Its configuration is in `config`, its files in `storage`, the names it may
//! certify in `constraints`, revocation and CRLs in `crl`.

mod config;
mod constraints;
mod crl;
mod offline;
mod storage;

use std::fmt;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::{CaError, Issuance, IssueRequest, IssuedCert};

pub use config::{CaConfig, KeyAlgorithm, MAX_LEAF_LIFETIME};
use constraints::{check_dns_name, name_constraints};
pub use crl::crl_pem;
pub use offline::SignedIntermediate;

/// A CA certificate, with its key when the key is here (a root kept offline has none).
struct Authority {
    signer: Option<Signer>,
    der: Vec<u8>,
    pem: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// What signs for an authority: rcgen's issuer and the key's PEM for saving.
struct Signer {
    issuer: Issuer<'static, KeyPair>,
    /// The key, PKCS#8 PEM, for saving (never printed, wiped from memory on drop).
    key_pem: zeroize::Zeroizing<String>,
}

impl Authority {
    fn new(params: CertificateParams, key: KeyPair, cert: &rcgen::Certificate) -> Self {
        Self {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            not_before: params.not_before,
            not_after: params.not_after,
            signer: Some(Signer {
                key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
                issuer: Issuer::new(params, key),
            }),
        }
    }

    /// The signer, or [`CaError::RootOffline`] naming what needed it.
    fn signer(&self, action: &'static str) -> Result<&Signer, CaError> {
        self.signer.as_ref().ok_or(CaError::RootOffline { action })
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
    /// The renewal [`LocalCa::load_or_create`] did, if any.
    load_renewal: Option<IntermediateRenewal>,
    /// The root's latest CRL (DER), signed whenever the root signs an intermediate.
    root_crl: Option<Vec<u8>>,
}

/// How long before its intermediate expires a CA whose root is offline starts warning.
pub const OFFLINE_ROOT_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// The commands that give a gateway whose root key is offline a new intermediate.
pub(crate) const OFFLINE_RENEWAL: &str = "run `conduit ca request-intermediate --out gateway.csr`, sign it where the root key is kept (`conduit ca sign-intermediate --root-key FILE --csr gateway.csr --lifetime 90d --out gateway.crt`), then `conduit ca install-intermediate gateway.crt`";

/// An intermediate renewed from the root when the CA was loaded: it was due, or had
/// expired while the gateway was off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntermediateRenewal {
    /// When the replaced intermediate expires (or expired).
    pub previous_not_after: OffsetDateTime,
    /// When the new one expires.
    pub not_after: OffsetDateTime,
    /// Whether the replaced one had already expired.
    pub expired: bool,
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

pub(super) fn rcgen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> CaError {
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

pub(super) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut b = random_bytes()?;
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // and a full 128 bits, never shortened by a leading zero
    Ok(SerialNumber::from_slice(&b))
}

pub(crate) fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

impl LocalCa {
    /// A new root and intermediate, valid from `now`.
    ///
    /// # Errors
    /// [`CaError::InvalidZone`] for a zone that is not a DNS name, [`CaError::Backend`].
    pub fn generate(config: CaConfig, now: OffsetDateTime) -> Result<Self, CaError> {
        for z in &config.zones {
            check_dns_name(z).map_err(|p| CaError::InvalidZone {
                zone: z.clone(),
                reason: p.to_string(),
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
        let root_crl = crl::root_crl(&root, now)?;
        let mut ca = Self::assemble(config, root, intermediate);
        ca.root_crl = Some(root_crl.der().to_vec());
        Ok(ca)
    }
    fn assemble(config: CaConfig, root: Authority, intermediate: Authority) -> Self {
        Self {
            config,
            root,
            intermediate,
            revoked: std::sync::Mutex::default(),
            crl_number: std::sync::atomic::AtomicU64::new(0),
            load_renewal: None,
            root_crl: None,
        }
    }

    /// Whether the root's key is here (not moved offline with
    /// [`LocalCa::export_root_key`]).
    pub fn root_key_present(&self) -> bool {
        self.root.signer.is_some()
    }

    /// The root's latest CRL (DER): signed whenever the root signs an intermediate, valid
    /// for a year (the root may be offline), served where intermediates name it.
    pub fn root_crl(&self) -> Option<&[u8]> {
        self.root_crl.as_deref()
    }

    /// Whether this CA can issue at `now`, and what an operator must do when it cannot
    /// (or soon will not).
    pub fn issuance(&self, now: OffsetDateTime) -> Issuance {
        let until = self.intermediate.not_after;
        let at = until
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        if now >= until {
            let reason = if self.root_key_present() {
                format!(
                    "the intermediate CA expired at {at}; nothing can be issued until it is renewed from the root: restart the gateway (`conduit serve` renews it)"
                )
            } else {
                format!(
                    "the intermediate CA expired at {at} and the root key is offline, so nothing can be issued: {OFFLINE_RENEWAL}"
                )
            };
            return Issuance::Blocked { reason };
        }
        if !self.root_key_present() && until - now < to_time(OFFLINE_ROOT_WARNING) {
            let days = (until - now).whole_days();
            return Issuance::Expiring {
                warning: format!(
                    "the intermediate CA expires at {at} (in {days} days) and the root key is offline: {OFFLINE_RENEWAL}"
                ),
            };
        }
        Issuance::Ready
    }

    /// The intermediate renewal done when this CA was loaded, if any (what a gateway
    /// audits as `ca_intermediate_renew`).
    pub fn load_renewal(&self) -> Option<IntermediateRenewal> {
        self.load_renewal
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
        if let Some(url) = &config.root_crl_url {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        let cert = params
            .signed_by(&key, &root.signer("sign an intermediate")?.issuer)
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
    /// [`CaError::RootExpired`], [`CaError::RootOffline`], [`CaError::Backend`].
    pub fn renew_intermediate(&mut self, now: OffsetDateTime) -> Result<(), CaError> {
        if now >= self.root.not_after {
            return Err(CaError::RootExpired {
                not_after: self.root.not_after.to_string(),
            });
        }
        self.intermediate = Self::make_intermediate(&self.config, &self.root, now)?;
        self.root_crl = Some(crl::root_crl(&self.root, now)?.der().to_vec());
        tracing::info!(not_after = %self.intermediate.not_after, "intermediate CA renewed");
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
                remedy: if self.root_key_present() {
                    "restart the gateway (`conduit serve` renews it from the root)"
                } else {
                    OFFLINE_RENEWAL
                },
            });
        }
        let mut p = CertificateParams::default();
        // An address-only leaf has an empty subject (its SANs are then critical): a CN
        // holding an address is read as a host name by OpenSSL and fails the DNS name
        // constraints.
        let mut dn = DistinguishedName::new();
        if let Some(first) = req.dns_names.first() {
            dn.push(DnType::CommonName, first.clone());
        }
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
            .signed_by(&leaf_key, &self.intermediate.signer("sign a leaf")?.issuer)
            .map_err(rcgen_err("sign a leaf"))?;
        Ok(IssuedCert {
            chain_pem: format!("{}{}", cert.pem(), self.intermediate.pem),
            key_pem: leaf_key.serialize_pem(),
        })
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
            .signed_by(&key, &self.root.signer("sign")?.issuer)
            .map_err(rcgen_err("sign"))?;
        Ok(IssuedCert {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
