//! [`CertManager`]: the CA, the resolver and the leaves it serves, kept fresh: leaves are
//! renewed at 2/3 of their life and the intermediate when a third of its life is left, and
//! each renewed certificate is served from the next handshake on.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use crate::{CaError, CertResolver, IssueRequest, IssuedCert, LocalCa, certified_key};

/// Where the current time comes from (injectable, so renewal is tested without sleeping).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

struct Managed {
    req: IssueRequest,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    cert: IssuedCert,
}

/// Issues, installs and renews the leaves of a set of names.
pub struct CertManager {
    ca: RwLock<LocalCa>,
    dir: Option<PathBuf>,
    resolver: Arc<CertResolver>,
    leaves: Mutex<HashMap<String, Managed>>,
    clock: Clock,
}

impl fmt::Debug for CertManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.leaves.lock().map(|l| l.len()).unwrap_or(0);
        f.debug_struct("CertManager")
            .field("leaves", &n)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CertManager {
    /// A manager serving through `resolver`; `dir` is where a renewed intermediate is saved.
    pub fn new(
        ca: LocalCa,
        dir: Option<PathBuf>,
        resolver: Arc<CertResolver>,
        clock: Clock,
    ) -> Self {
        Self {
            ca: RwLock::new(ca),
            dir,
            resolver,
            leaves: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// The resolver that serves the leaves.
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    fn issue_and_install(&self, name: &str, req: IssueRequest) -> Result<IssuedCert, CaError> {
        let now = (self.clock)();
        let cert = self
            .ca
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .issue_at(&req, None, None, false, now)?;
        let info = crate::inspect_pem(&cert.chain_pem, now, &Default::default())?;
        let parse = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|e| {
                CaError::Pem {
                    what: "issued certificate",
                    reason: e.to_string(),
                }
            })
        };
        let mut served: Vec<String> = req.dns_names.clone();
        served.extend(req.ip_addresses.iter().map(ToString::to_string));
        self.resolver.install(&served, certified_key(&cert)?);
        let managed = Managed {
            not_before: parse(&info.not_before)?,
            not_after: parse(&info.not_after)?,
            req,
            cert: cert.clone(),
        };
        self.leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), managed);
        Ok(cert)
    }

    /// Issues (or reissues) the leaf of `name` for `req` and serves it.
    ///
    /// # Errors
    /// As [`LocalCa::issue_at`].
    pub fn ensure(&self, name: &str, req: IssueRequest) -> Result<IssuedCert, CaError> {
        self.issue_and_install(name, req)
    }

    /// A new key and leaf for `name`, served from the next handshake.
    ///
    /// # Errors
    /// [`CaError::Unknown`] for a name not managed here; as [`LocalCa::issue_at`].
    pub fn rotate(&self, name: &str) -> Result<IssuedCert, CaError> {
        let req = self
            .leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|m| m.req.clone())
            .ok_or_else(|| CaError::Unknown {
                name: name.to_owned(),
            })?;
        self.issue_and_install(name, req)
    }

    /// Revokes a serial and saves the revocation list at once (a revocation survives a
    /// restart); returns the new CRL (DER, PEM), valid for a day.
    ///
    /// # Errors
    /// As [`LocalCa::revoke_at`], [`LocalCa::save_revocations`], [`LocalCa::crl_at`].
    pub fn revoke(&self, serial_hex: &str) -> Result<(Vec<u8>, String), CaError> {
        let now = (self.clock)();
        let ca = self.ca.read().unwrap_or_else(PoisonError::into_inner);
        ca.revoke_at(serial_hex, now)?;
        // Sign first: it bumps the CRL number, which must never repeat after a restart.
        let crl = ca.crl_at(now, Duration::from_secs(24 * 3600))?;
        if let Some(dir) = &self.dir {
            ca.save_revocations(dir)?;
        }
        Ok(crl)
    }

    /// Stops serving and renewing `name`.
    pub fn remove(&self, name: &str) {
        if let Some(m) = self
            .leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
        {
            for n in m
                .req
                .dns_names
                .iter()
                .cloned()
                .chain(m.req.ip_addresses.iter().map(ToString::to_string))
            {
                self.resolver.remove(&n);
            }
        }
    }

    /// The current leaf of `name`.
    pub fn current(&self, name: &str) -> Option<IssuedCert> {
        self.leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|m| m.cert.clone())
    }

    /// Renews what is due now: the intermediate when a third of its life is left (saved to
    /// the directory), then every leaf past 2/3 of its life. Returns how many leaves were
    /// renewed. A failure on one leaf is logged and the others go on.
    ///
    /// # Errors
    /// An error renewing or saving the intermediate.
    pub fn renew_due(&self) -> Result<usize, CaError> {
        let now = (self.clock)();
        {
            let mut ca = self.ca.write().unwrap_or_else(PoisonError::into_inner);
            if ca.intermediate_due(now) {
                ca.renew_intermediate(now)?;
                if let Some(dir) = &self.dir {
                    ca.save(dir)?;
                }
            }
        }
        let due: Vec<(String, IssueRequest)> = self
            .leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, m)| (m.not_after - now) * 3 < (m.not_after - m.not_before))
            .map(|(n, m)| (n.clone(), m.req.clone()))
            .collect();
        let mut renewed = 0;
        for (name, req) in due {
            match self.issue_and_install(&name, req) {
                Ok(_) => renewed += 1,
                Err(error) => {
                    tracing::error!(%error, name, "leaf renewal failed; the old certificate stays")
                }
            }
        }
        if renewed > 0 {
            tracing::info!(renewed, "leaf certificates renewed");
        }
        Ok(renewed)
    }

    /// Runs [`CertManager::renew_due`] every `interval` until `shutdown` completes.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future between two checks loses nothing.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: impl Future<Output = ()>) {
        self.run_reporting(interval, shutdown, |_| async {}).await;
    }

    /// As [`CertManager::run`], handing each round's outcome (certificates renewed, or the
    /// error) to `report` (an auditor, a metrics counter) before the next round.
    pub async fn run_reporting<F, Fut>(
        self: Arc<Self>,
        interval: Duration,
        shutdown: impl Future<Output = ()>,
        mut report: F,
    ) where
        F: FnMut(Result<usize, CaError>) -> Fut,
        Fut: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(interval) => {}
            }
            let me = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || me.renew_due()).await {
                Ok(outcome) => {
                    if let Err(error) = &outcome {
                        tracing::error!(%error, "certificate renewal failed");
                    }
                    report(outcome).await;
                }
                Err(error) => tracing::error!(%error, "certificate renewal task failed"),
            }
        }
    }
}
