//! [`LocalIssuer`]: the local CA behind [`CertIssuer`] as a running gateway uses it — its
//! files kept in a directory (a renewed intermediate and every revocation saved at once),
//! issuing at its clock's time, the signing work off the async threads.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use crate::{
    CaError, CertIssuer, Crls, Issuance, IssueRequest, IssuedCert, LocalCa, SignedIntermediate,
};

/// Where the current time comes from (injectable, so renewal is tested without sleeping).
pub type CertClock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// How long a CRL is valid; it is signed again when half of that has passed (and on every
/// revocation).
const CRL_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// Where the current CRL is kept in the CA's directory (what `conduit certs crl` exports).
pub const CRL_FILE: &str = "crl.der";

/// A CRL signed by the intermediate.
#[derive(Clone)]
struct SignedCrl {
    der: Vec<u8>,
    pem: String,
    /// When it is signed again.
    refresh_at: OffsetDateTime,
}

/// A [`LocalCa`] as a [`CertIssuer`]: saves what changes to its directory (when it has one),
/// renews its intermediate when a third of its life is left ([`CertIssuer::maintain`]), signs
/// a CRL on every revocation, and does the signing on the blocking pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use conduit_ca::{CaConfig, CertIssuer, IssueRequest, LocalCa, LocalIssuer};
///
/// let dir = tempfile::tempdir()?;
/// let now = time::OffsetDateTime::now_utc();
/// let ca = LocalCa::load_or_create(dir.path(), CaConfig::default(), now)?;
/// let issuer = LocalIssuer::new(ca, Some(dir.path().into()), Arc::new(time::OffsetDateTime::now_utc));
/// let leaf = issuer
///     .issue(&IssueRequest { dns_names: vec!["grafana.internal".into()], ..Default::default() })
///     .await?;
/// let serial = conduit_ca::inspect_pem(&leaf.chain_pem, now, &Default::default())?.serial;
/// issuer.revoke(&serial).await?;
/// assert!(issuer.last_crl().is_some_and(|(_, pem)| pem.starts_with("-----BEGIN X509 CRL")));
/// assert!(std::fs::read_to_string(dir.path().join("revoked.json"))?.contains(&serial));
/// # Ok(()) }
/// ```
pub struct LocalIssuer {
    ca: Arc<RwLock<LocalCa>>,
    dir: Option<PathBuf>,
    clock: CertClock,
    crl: Mutex<Option<SignedCrl>>,
}

impl fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LocalIssuer {
    /// The CA `ca`, saving to `dir` (none: nothing is saved), at `clock`'s time.
    pub fn new(ca: LocalCa, dir: Option<PathBuf>, clock: CertClock) -> Self {
        Self {
            ca: Arc::new(RwLock::new(ca)),
            dir,
            clock,
            crl: Mutex::new(None),
        }
    }

    /// The root certificate clients trust, PEM.
    pub fn root_pem(&self) -> String {
        self.ca
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .root_pem()
            .to_owned()
    }

    /// The intermediate that signs leaves, PEM.
    pub fn intermediate_pem(&self) -> String {
        self.ca
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .intermediate_pem()
            .to_owned()
    }

    /// Whether the root key is in the directory (not kept offline).
    pub fn root_key_present(&self) -> bool {
        self.ca
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .root_key_present()
    }

    /// The serials revoked (lower-case hex): what the CRL lists.
    pub fn revoked_serials(&self) -> std::collections::HashSet<String> {
        self.ca
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revoked_serials()
    }

    /// When the intermediate expires.
    pub fn intermediate_not_after(&self) -> OffsetDateTime {
        self.ca
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .intermediate_not_after()
    }

    /// The current CRL (DER, PEM): signed at the last revocation or maintenance, if there
    /// was one since start.
    pub fn last_crl(&self) -> Option<(Vec<u8>, String)> {
        self.crl
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|c| (c.der.clone(), c.pem.clone()))
    }

    /// Starts a new intermediate for a root kept offline: see
    /// [`LocalCa::request_intermediate`]. Returns the request, PEM.
    ///
    /// # Errors
    /// As [`LocalCa::request_intermediate`]; [`CaError::Unsupported`] without a directory.
    pub async fn request_intermediate(&self) -> Result<String, CaError> {
        self.blocking("request an intermediate", |ca, _, dir| {
            let dir = dir.ok_or(CaError::Unsupported(
                "an intermediate request without a directory",
            ))?;
            ca.read()
                .unwrap_or_else(PoisonError::into_inner)
                .request_intermediate(dir)
        })
        .await
    }

    /// Installs an intermediate signed by the offline root (see
    /// [`LocalCa::install_intermediate`]) and signs a new CRL with it.
    ///
    /// # Errors
    /// As [`LocalCa::install_intermediate`]; [`CaError::Unsupported`] without a directory.
    pub async fn install_intermediate(&self, signed: SignedIntermediate) -> Result<(), CaError> {
        self.blocking("install an intermediate", move |ca, now, dir| {
            let dir = dir.ok_or(CaError::Unsupported(
                "installing an intermediate without a directory",
            ))?;
            ca.write()
                .unwrap_or_else(PoisonError::into_inner)
                .install_intermediate(dir, &signed, now)
        })
        .await?;
        self.refresh_crl(true).await
    }

    /// Signs a new CRL when there is none, when half its validity has passed, or when
    /// `force`d (a revocation, a new intermediate), and keeps it (in memory and in the
    /// directory).
    async fn refresh_crl(&self, force: bool) -> Result<(), CaError> {
        let now = (self.clock)();
        let fresh = self
            .crl
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|c| now < c.refresh_at);
        if fresh && !force {
            return Ok(());
        }
        let crl = self
            .blocking("sign the CRL", |ca, now, dir| {
                let ca = ca.read().unwrap_or_else(PoisonError::into_inner);
                // Sign first: it bumps the CRL number, which must never repeat after a
                // restart.
                let (der, pem) = ca.crl_at(now, CRL_VALIDITY)?;
                if let Some(dir) = dir {
                    ca.save_revocations(dir)?;
                    crate::store::write_private(&dir.join(CRL_FILE), &der)?;
                }
                Ok(SignedCrl {
                    der,
                    pem,
                    refresh_at: now + crate::local::to_time(CRL_VALIDITY / 2),
                })
            })
            .await?;
        *self.crl.lock().unwrap_or_else(PoisonError::into_inner) = Some(crl);
        Ok(())
    }

    /// Runs `f` on the CA on the blocking pool.
    async fn blocking<T, F>(&self, what: &'static str, f: F) -> Result<T, CaError>
    where
        T: Send + 'static,
        F: FnOnce(&RwLock<LocalCa>, OffsetDateTime, Option<&std::path::Path>) -> Result<T, CaError>
            + Send
            + 'static,
    {
        let ca = Arc::clone(&self.ca);
        let dir = self.dir.clone();
        let now = (self.clock)();
        tokio::task::spawn_blocking(move || f(&ca, now, dir.as_deref()))
            .await
            .map_err(|e| CaError::Backend {
                what,
                source: Box::new(e),
            })?
    }
}

#[async_trait::async_trait]
impl CertIssuer for LocalIssuer {
    async fn issue(&self, req: &IssueRequest) -> Result<IssuedCert, CaError> {
        let req = req.clone();
        self.blocking("issue a certificate", move |ca, now, _| {
            ca.read().unwrap_or_else(PoisonError::into_inner).issue_at(
                &req,
                None,
                None,
                req.client_auth,
                now,
            )
        })
        .await
    }

    async fn revoke(&self, serial_hex: &str) -> Result<(), CaError> {
        let serial = serial_hex.to_owned();
        self.blocking("revoke a certificate", move |ca, now, dir| {
            let ca = ca.read().unwrap_or_else(PoisonError::into_inner);
            ca.revoke_at(&serial, now)?;
            if let Some(dir) = dir {
                ca.save_revocations(dir)?;
            }
            Ok(())
        })
        .await?;
        self.refresh_crl(true).await
    }

    async fn maintain(&self) -> Result<bool, CaError> {
        let renewed = self
            .blocking("renew the intermediate", |ca, now, dir| {
                let mut ca = ca.write().unwrap_or_else(PoisonError::into_inner);
                // With the root offline, `issuance` warns instead (the operator renews it).
                if !ca.intermediate_due(now) || !ca.root_key_present() {
                    return Ok(false);
                }
                ca.renew_intermediate(now)?;
                if let Some(dir) = dir {
                    ca.save(dir)?;
                }
                tracing::info!("intermediate CA renewed");
                Ok(true)
            })
            .await?;
        // An expired intermediate cannot sign a CRL: the last one stays until it can.
        if !matches!(self.issuance(), Issuance::Blocked { .. }) {
            self.refresh_crl(renewed).await?;
        }
        Ok(renewed)
    }

    fn issuance(&self) -> Issuance {
        self.ca
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .issuance((self.clock)())
    }

    fn crls(&self) -> Crls {
        let mut c = Crls::default();
        c.issuing = self
            .crl
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|c| c.der.clone());
        c.root = self
            .ca
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .root_crl()
            .map(<[u8]>::to_vec);
        c
    }
}
