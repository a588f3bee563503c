//! [`CertManager`]: the leaves a gateway serves, issued through any [`CertIssuer`] and kept
//! fresh: leaves are renewed at 2/3 of their life (after the issuer's own maintenance, such
//! as an intermediate near its end), and each renewed certificate is served from the next
//! handshake on.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use crate::{
    CaError, CertClock, CertIssuer, CertResolver, IssueRequest, IssuedCert, certified_key,
};

struct Managed {
    req: IssueRequest,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    cert: IssuedCert,
}

/// Issues, installs and renews the leaves of a set of names through a [`CertIssuer`].
pub struct CertManager {
    issuer: Arc<dyn CertIssuer>,
    resolver: Arc<CertResolver>,
    leaves: Mutex<HashMap<String, Managed>>,
    clock: CertClock,
}

impl fmt::Debug for CertManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.leaves.lock().map(|l| l.len()).unwrap_or(0);
        f.debug_struct("CertManager")
            .field("issuer", &self.issuer)
            .field("leaves", &n)
            .finish_non_exhaustive()
    }
}

impl CertManager {
    /// A manager issuing through `issuer` and serving through `resolver`; `clock` decides
    /// when a leaf is due (the issuer's own clock decides its validity).
    pub fn new(issuer: Arc<dyn CertIssuer>, resolver: Arc<CertResolver>, clock: CertClock) -> Self {
        Self {
            issuer,
            resolver,
            leaves: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// The resolver that serves the leaves.
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// The issuer the leaves come from.
    pub fn issuer(&self) -> &Arc<dyn CertIssuer> {
        &self.issuer
    }

    async fn issue_and_install(
        &self,
        name: &str,
        req: IssueRequest,
        renew: bool,
    ) -> Result<IssuedCert, CaError> {
        let cert = if renew {
            self.issuer.renew(&req).await?
        } else {
            self.issuer.issue(&req).await?
        };
        let info = crate::inspect_pem(&cert.chain_pem, (self.clock)(), &Default::default())?;
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
    /// As the issuer's [`CertIssuer::issue`].
    pub async fn ensure(&self, name: &str, req: IssueRequest) -> Result<IssuedCert, CaError> {
        self.issue_and_install(name, req, false).await
    }

    /// A new key and leaf for `name`, served from the next handshake.
    ///
    /// # Errors
    /// [`CaError::Unknown`] for a name not managed here; as the issuer's
    /// [`CertIssuer::renew`].
    pub async fn rotate(&self, name: &str) -> Result<IssuedCert, CaError> {
        let req = self.request_of(name)?;
        self.issue_and_install(name, req, true).await
    }

    fn request_of(&self, name: &str) -> Result<IssueRequest, CaError> {
        self.leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|m| m.req.clone())
            .ok_or_else(|| CaError::Unknown {
                name: name.to_owned(),
            })
    }

    /// Revokes a serial through the issuer (which keeps it across a restart).
    ///
    /// # Errors
    /// As the issuer's [`CertIssuer::revoke`].
    pub async fn revoke(&self, serial_hex: &str) -> Result<(), CaError> {
        self.issuer.revoke(serial_hex).await
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

    /// Every managed leaf's name and expiry, sorted by name (for metrics).
    pub fn expiries(&self) -> Vec<(String, OffsetDateTime)> {
        let mut v: Vec<(String, OffsetDateTime)> = self
            .leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, m)| (n.clone(), m.not_after))
            .collect();
        v.sort();
        v
    }

    /// The current leaf of `name`.
    pub fn current(&self, name: &str) -> Option<IssuedCert> {
        self.leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|m| m.cert.clone())
    }

    /// Renews what is due now: first the issuer's own maintenance
    /// ([`CertIssuer::maintain`]: a local CA renews its intermediate when a third of its
    /// life is left), then every leaf past 2/3 of its life. Returns how many leaves were
    /// renewed. A failure on one leaf is logged and the others go on.
    ///
    /// # Errors
    /// The issuer's maintenance failed.
    pub async fn renew_due(&self) -> Result<usize, CaError> {
        // A new intermediate renews every leaf: the CRL the leaves name is now signed by
        // it, so leaves of the old one could no longer be checked.
        let all = self.issuer.maintain().await?;
        self.renew_where(|m, now| all || (m.not_after - now) * 3 < (m.not_after - m.not_before))
            .await
    }

    /// Renews every leaf now (after a new intermediate was installed).
    pub async fn renew_all(&self) -> usize {
        self.renew_where(|_, _| true).await.unwrap_or(0)
    }

    async fn renew_where(
        &self,
        due: impl Fn(&Managed, OffsetDateTime) -> bool,
    ) -> Result<usize, CaError> {
        let now = (self.clock)();
        let due: Vec<(String, IssueRequest)> = self
            .leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, m)| due(m, now))
            .map(|(n, m)| (n.clone(), m.req.clone()))
            .collect();
        let mut renewed = 0;
        for (name, req) in due {
            match self.issue_and_install(&name, req, true).await {
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
            let outcome = tokio::select! {
                () = &mut shutdown => return,
                outcome = self.renew_due() => outcome,
            };
            if let Err(error) = &outcome {
                tracing::error!(%error, "certificate renewal failed");
            }
            report(outcome).await;
        }
    }
}
