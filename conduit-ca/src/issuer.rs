//! [`LocalIssuer`]: the local CA behind [`CertIssuer`] as a running gateway uses it — its
//! files kept in a directory (a renewed intermediate and every revocation saved at once),
//! issuing at its clock's time, the signing work off the async threads.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use crate::{CaError, CertIssuer, IssueRequest, IssuedCert, LocalCa};

/// Where the current time comes from (injectable, so renewal is tested without sleeping).
pub type CertClock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// How long a CRL signed on revocation is valid.
const CRL_VALIDITY: Duration = Duration::from_secs(24 * 3600);

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
    crl: Mutex<Option<(Vec<u8>, String)>>,
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

    /// The CRL signed at the last revocation (DER, PEM), if there was one since start.
    pub fn last_crl(&self) -> Option<(Vec<u8>, String)> {
        self.crl
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
            ca.read()
                .unwrap_or_else(PoisonError::into_inner)
                .issue_at(&req, None, None, false, now)
        })
        .await
    }

    async fn revoke(&self, serial_hex: &str) -> Result<(), CaError> {
        let serial = serial_hex.to_owned();
        let crl = self
            .blocking("revoke a certificate", move |ca, now, dir| {
                let ca = ca.read().unwrap_or_else(PoisonError::into_inner);
                ca.revoke_at(&serial, now)?;
                // Sign first: it bumps the CRL number, which must never repeat after a
                // restart.
                let crl = ca.crl_at(now, CRL_VALIDITY)?;
                if let Some(dir) = dir {
                    ca.save_revocations(dir)?;
                }
                Ok(crl)
            })
            .await?;
        *self.crl.lock().unwrap_or_else(PoisonError::into_inner) = Some(crl);
        Ok(())
    }

    async fn maintain(&self) -> Result<bool, CaError> {
        self.blocking("renew the intermediate", |ca, now, dir| {
            let mut ca = ca.write().unwrap_or_else(PoisonError::into_inner);
            if !ca.intermediate_due(now) {
                return Ok(false);
            }
            ca.renew_intermediate(now)?;
            if let Some(dir) = dir {
                ca.save(dir)?;
            }
            tracing::info!("intermediate CA renewed");
            Ok(true)
        })
        .await
    }
}
