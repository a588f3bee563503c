//! A root kept offline: moving its key out of the state directory, and the request →
//! sign → install round that gives a gateway a new intermediate from it (also how several
//! gateways share one root).

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CidrSubnet,
    DistinguishedName, DnType, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
    SanType,
};
use time::OffsetDateTime;

use super::storage::{NEXT_KEY, remove};
use super::{Authority, LocalCa, crl, random_serial, rcgen_err, to_time};
use crate::CaError;

/// An intermediate signed by a root kept offline, with the root's CRL signed at the same
/// time: what `conduit ca sign-intermediate` writes and `conduit ca install-intermediate`
/// reads, as one PEM file (the certificate, then the CRL).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedIntermediate {
    /// The intermediate certificate, PEM.
    pub cert_pem: String,
    /// The root's CRL signed with it, DER.
    pub root_crl_der: Vec<u8>,
    /// The same CRL, PEM.
    pub root_crl_pem: String,
    /// The root that signed them (PEM), for a gateway joining that root
    /// ([`LocalCa::join_root`]); `None` in files written by earlier versions.
    pub root_pem: Option<String>,
}

impl SignedIntermediate {
    /// The file's text: the certificate, then the CRL.
    pub fn to_pem(&self) -> String {
        format!(
            "{}{}{}",
            self.cert_pem,
            self.root_crl_pem,
            self.root_pem.as_deref().unwrap_or_default()
        )
    }

    /// Reads a file written by [`SignedIntermediate::to_pem`].
    ///
    /// # Errors
    /// [`CaError::Intermediate`] naming what is missing or unreadable.
    pub fn from_pem(text: &str) -> Result<Self, CaError> {
        use rustls::pki_types::CertificateRevocationListDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |reason: String| CaError::Intermediate {
            what: "the signed intermediate",
            reason,
        };
        let cert_pem = pem_section(text, "CERTIFICATE")
            .ok_or_else(|| bad("no certificate in it".to_owned()))?;
        let crl_pem = pem_section(text, "X509 CRL").ok_or_else(|| {
            bad(
                "no root CRL in it; pass the whole file `conduit ca sign-intermediate` wrote"
                    .to_owned(),
            )
        })?;
        let crl = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes())
            .map_err(|e| bad(format!("its root CRL cannot be read: {e}")))?;
        // The root, when given, is the second certificate.
        let after = &text[text.find(cert_pem).map_or(0, |at| at + cert_pem.len())..];
        let root_pem = pem_section(after, "CERTIFICATE").map(|r| format!("{r}\n"));
        Ok(Self {
            cert_pem: format!("{cert_pem}\n"),
            root_crl_pem: format!("{crl_pem}\n"),
            root_crl_der: crl.to_vec(),
            root_pem,
        })
    }
}

/// The first PEM block labelled `label` in `text`, markers included.
fn pem_section<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let a = text.find(&begin)?;
    let b = a + text[a..].find(&end)?;
    Some(&text[a..b + end.len()])
}

/// The name constraints written in `root`, to copy into an intermediate it signs.
fn root_constraints(root: &x509_parser::certificate::X509Certificate<'_>) -> NameConstraints {
    use x509_parser::extensions::GeneralName;
    let mut permitted = Vec::new();
    if let Ok(Some(nc)) = root.name_constraints() {
        for sub in nc.value.permitted_subtrees.iter().flatten() {
            match &sub.base {
                GeneralName::DNSName(d) => permitted.push(GeneralSubtree::DnsName((*d).to_owned())),
                GeneralName::IPAddress(b) if b.len() == 8 => {
                    let (a, m) = b.split_at(4);
                    if let (Ok(a), Ok(m)) = (<[u8; 4]>::try_from(a), <[u8; 4]>::try_from(m)) {
                        permitted.push(GeneralSubtree::IpAddress(CidrSubnet::V4(a, m)));
                    }
                }
                GeneralName::IPAddress(b) if b.len() == 32 => {
                    let (a, m) = b.split_at(16);
                    if let (Ok(a), Ok(m)) = (<[u8; 16]>::try_from(a), <[u8; 16]>::try_from(m)) {
                        permitted.push(GeneralSubtree::IpAddress(CidrSubnet::V6(a, m)));
                    }
                }
                _ => {}
            }
        }
    }
    NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: Vec::new(),
    }
}

/// Reads a root bundle (the root certificate and its key, as
/// [`LocalCa::export_root_key`] writes it).
fn load_root_bundle(text: &str) -> Result<Authority, CaError> {
    let (Some(cert), Some(key)) = (
        pem_section(text, "CERTIFICATE"),
        pem_section(text, "PRIVATE KEY"),
    ) else {
        return Err(CaError::Intermediate {
            what: "the root key file",
            reason: "it does not hold the root certificate and its PRIVATE KEY (give the file `conduit ca export-root-key` or `conduit setup --offline-root` wrote)".to_owned(),
        });
    };
    Authority::load("the root key file", cert, Some(key))
}

impl LocalCa {
    /// Moves the root key out of `dir` into `out` (created 0600; an existing file is never
    /// overwritten), as one PEM file with the root certificate: what a security team keeps
    /// offline and what [`LocalCa::sign_intermediate`] reads. Afterwards no file in `dir`
    /// holds the key, and this CA can no longer renew its intermediate by itself.
    ///
    /// # Errors
    /// [`CaError::RootOffline`] when the key is not here, [`CaError::Io`].
    pub fn export_root_key(&mut self, dir: &Path, out: &Path) -> Result<(), CaError> {
        let signer = self.root.signer("export the root key")?;
        let bundle = zeroize::Zeroizing::new(format!("{}{}", self.root.pem, *signer.key_pem));
        crate::store::write_new_private(out, bundle.as_bytes())?;
        remove(dir, "root.key")?;
        self.root.signer = None;
        tracing::info!(out = %out.display(), "the root key moved out of the state directory");
        Ok(())
    }

    /// Starts a new intermediate for a root kept offline: a new key, saved in `dir` until
    /// the signed certificate is installed, and its certificate signing request (PEM). The
    /// request names where this CA serves the root's CRL, for the signer to write into the
    /// intermediate. A later request replaces a pending one.
    ///
    /// # Errors
    /// [`CaError::Backend`], [`CaError::Io`].
    pub fn request_intermediate(&self, dir: &Path) -> Result<String, CaError> {
        let key = KeyPair::generate_for(self.config.key_algorithm.rcgen())
            .map_err(rcgen_err("generate the intermediate key"))?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.config.organization.clone());
        dn.push(
            DnType::CommonName,
            format!("{} Intermediate CA", self.config.organization),
        );
        p.distinguished_name = dn;
        if let Some(url) = &self.config.root_crl_url {
            p.subject_alt_names = vec![SanType::URI(
                url.clone()
                    .try_into()
                    .map_err(rcgen_err("encode the root CRL's URL"))?,
            )];
        }
        let csr = p
            .serialize_request(&key)
            .map_err(rcgen_err("sign the request"))?;
        let pem = csr.pem().map_err(rcgen_err("encode the request"))?;
        let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
        crate::store::create_private_dir(dir)?;
        crate::store::write_private(&dir.join(NEXT_KEY), key_pem.as_bytes())?;
        Ok(pem)
    }

    /// Signs an intermediate request with a root kept offline (`root_bundle`: the file
    /// [`LocalCa::export_root_key`] wrote), valid from `now` for `lifetime` (cut to the
    /// root's own expiry), with the root's name constraints, and the root's CRL signed at the
    /// same time. Runs wherever the root is; needs no state directory.
    ///
    /// # Errors
    /// [`CaError::Intermediate`] for an unreadable bundle or request, [`CaError::Corrupt`]
    /// for a key that does not match its certificate, [`CaError::RootExpired`],
    /// [`CaError::Backend`].
    pub fn sign_intermediate(
        root_bundle: &str,
        csr_pem: &str,
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> Result<SignedIntermediate, CaError> {
        let root = load_root_bundle(root_bundle)?;
        if now >= root.not_after {
            return Err(CaError::RootExpired {
                not_after: root.not_after.to_string(),
            });
        }
        let (_, root_x509) =
            x509_parser::parse_x509_certificate(&root.der).map_err(|e| CaError::Intermediate {
                what: "the root key file",
                reason: e.to_string(),
            })?;
        let request = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            CaError::Intermediate {
                what: "the request",
                reason: format!("{e} (give the file `conduit ca request-intermediate` wrote)"),
            }
        })?;
        let mut p = CertificateParams::default();
        p.distinguished_name = request.params.distinguished_name.clone();
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.name_constraints = Some(root_constraints(&root_x509));
        p.not_before = now - time::Duration::minutes(1);
        p.not_after = (now + to_time(lifetime)).min(root.not_after);
        p.serial_number = Some(random_serial()?);
        p.use_authority_key_identifier_extension = true;
        for san in &request.params.subject_alt_names {
            if let SanType::URI(url) = san {
                p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                    uris: vec![url.as_str().to_owned()],
                }];
            }
        }
        let signer = root.signer("sign an intermediate")?;
        let signed = CertificateSigningRequestParams {
            params: p,
            public_key: request.public_key,
        }
        .signed_by(&signer.issuer)
        .map_err(rcgen_err("sign the intermediate"))?;
        let root_crl = crl::root_crl(&root, now)?;
        Ok(SignedIntermediate {
            cert_pem: signed.pem(),
            root_crl_der: root_crl.der().to_vec(),
            root_crl_pem: root_crl.pem().map_err(rcgen_err("encode the root's CRL"))?,
            root_pem: Some(root.pem.clone()),
        })
    }

    /// Installs an intermediate signed for this CA's pending request
    /// ([`LocalCa::request_intermediate`]) and the root CRL signed with it, after checking
    /// that the root signed both, that it is for the pending key and that it is valid at
    /// `now`; saved to `dir` crash-safely, used at once.
    ///
    /// # Errors
    /// [`CaError::Intermediate`] naming what does not fit (nothing is changed),
    /// [`CaError::Io`].
    pub fn install_intermediate(
        &mut self,
        dir: &Path,
        signed: &SignedIntermediate,
        now: OffsetDateTime,
    ) -> Result<(), CaError> {
        let intermediate = self.verified(&self.root, dir, signed, now)?;
        self.intermediate = intermediate;
        self.root_crl = Some(signed.root_crl_der.clone());
        self.save(dir)?;
        tracing::info!(not_after = %self.intermediate.not_after, "installed an intermediate signed by the offline root");
        Ok(())
    }

    /// Joins the root that signed `signed` (another gateway's, the site's): after the same
    /// checks as [`install_intermediate`](Self::install_intermediate) against that root
    /// (the file must carry it: `sign-intermediate` writes it), this CA's own root is
    /// dropped (its key deleted from `dir`), the site's root is kept without its key, and
    /// the intermediate is installed under it. Clients then trust the site's root for this
    /// gateway too.
    ///
    /// # Errors
    /// [`CaError::Intermediate`] naming what does not fit (nothing is changed),
    /// [`CaError::RootExpired`], [`CaError::Io`].
    pub fn join_root(
        &mut self,
        dir: &Path,
        signed: &SignedIntermediate,
        now: OffsetDateTime,
    ) -> Result<(), CaError> {
        let bad = |reason: String| CaError::Intermediate {
            what: "the signed intermediate",
            reason,
        };
        let Some(root_pem) = &signed.root_pem else {
            return Err(bad(
                "it carries no root certificate to join: sign the request again with `conduit ca sign-intermediate`".to_owned(),
            ));
        };
        let root = Authority::load("the site's root", root_pem, None)?;
        if now >= root.not_after {
            return Err(CaError::RootExpired {
                not_after: root.not_after.to_string(),
            });
        }
        let (_, root_x509) =
            x509_parser::parse_x509_certificate(&root.der).map_err(|e| bad(e.to_string()))?;
        if root_x509.verify_signature(None).is_err() || !root_x509.is_ca() {
            return Err(bad(
                "the root it carries is not a self-signed CA certificate".to_owned(),
            ));
        }
        let intermediate = self.verified(&root, dir, signed, now)?;
        // Checked; now the own root's key goes first, so that a crash leaves at worst the old
        // root without its key (loadable, offline), never a key beside another root.
        remove(dir, "root.key")?;
        self.root = root;
        self.intermediate = intermediate;
        self.root_crl = Some(signed.root_crl_der.clone());
        self.save(dir)?;
        tracing::info!(not_after = %self.intermediate.not_after, "joined the site's root with an intermediate it signed");
        Ok(())
    }

    /// The intermediate in `signed`, checked: for the pending request's key in `dir`, signed
    /// by `root` (its CRL too), valid at `now`.
    fn verified(
        &self,
        root: &Authority,
        dir: &Path,
        signed: &SignedIntermediate,
        now: OffsetDateTime,
    ) -> Result<Authority, CaError> {
        let bad = |reason: String| CaError::Intermediate {
            what: "the signed intermediate",
            reason,
        };
        let Some(key) = super::storage::read_optional(dir, NEXT_KEY)? else {
            return Err(bad(format!(
                "no request is pending in {}: run `conduit ca request-intermediate` first, and sign that request",
                dir.display()
            )));
        };
        let key = zeroize::Zeroizing::new(key);
        let intermediate = Authority::load("the signed intermediate", &signed.cert_pem, Some(&key))
            .map_err(|e| match e {
                CaError::Corrupt { reason, .. } if reason.contains("does not belong") => bad(
                    "it was not signed for this gateway's pending request (its key differs): sign the latest `conduit ca request-intermediate` output".to_owned(),
                ),
                other => other,
            })?;
        let (_, root_x509) =
            x509_parser::parse_x509_certificate(&root.der).map_err(|e| bad(e.to_string()))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&intermediate.der)
            .map_err(|e| bad(e.to_string()))?;
        x509.verify_signature(Some(root_x509.public_key()))
            .map_err(|_| bad("it is not signed by this gateway's root (to join another gateway's root instead, `conduit ca install-intermediate --join`)".to_owned()))?;
        if now >= intermediate.not_after || now < intermediate.not_before {
            return Err(bad(format!(
                "it is valid from {} to {}, not now",
                intermediate.not_before, intermediate.not_after
            )));
        }
        use x509_parser::prelude::FromDer as _;
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&signed.root_crl_der)
                .map_err(|e| bad(format!("its root CRL cannot be read: {e}")))?;
        crl.verify_signature(root_x509.public_key())
            .map_err(|_| bad("its root CRL is not signed by the same root".to_owned()))?;
        Ok(intermediate)
    }
}
