//! The CA as the running gateway shows and changes it: whether it can issue (status,
//! metrics, events), the CRLs it publishes on the plain-HTTP listener, and installing an
//! intermediate signed by a root kept offline.

use conduit_ca::{Issuance, SignedIntermediate};
use conduit_proxy::Document;
use serde_json::json;

use super::{GatewayError, GatewayHandle};
use crate::api::{CaStatus, IntermediateInstalled, IssuanceState};
use crate::audited::{Action, record};
use crate::events::EventKind;

/// Where the plain-HTTP listeners serve the issuing CA's CRL (named in every leaf).
pub const CRL_PATH: &str = "/ca/crl.der";
/// Where they serve the root certificate (to install it; check its fingerprint first).
pub const ROOT_PEM_PATH: &str = "/ca/root.pem";
/// Where they serve the root's CRL (named in the intermediate).
pub const ROOT_CRL_PATH: &str = "/ca/root-crl.der";

const CRL_TYPE: &str = "application/pkix-crl";

/// A time as RFC 3339 (what the API and alerts carry).
pub(super) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The state and its one-line message.
fn state(issuance: &Issuance) -> (IssuanceState, Option<String>) {
    match issuance {
        Issuance::Blocked { reason } => (IssuanceState::Blocked, Some(reason.clone())),
        Issuance::Expiring { warning } => (IssuanceState::Expiring, Some(warning.clone())),
        _ => (IssuanceState::Ready, None),
    }
}

impl GatewayHandle {
    /// Whether the certificate issuer can issue, and what to run when it cannot.
    pub fn ca_status(&self) -> CaStatus {
        let (issuance, message) = state(&self.certs.issuer().issuance());
        CaStatus {
            issuance,
            message,
            root_key_present: self.local_ca.as_ref().map(|c| c.root_key_present()),
            intermediate_not_after: self
                .local_ca
                .as_ref()
                .map(|c| rfc3339(c.intermediate_not_after())),
            crl_url: self
                .proxy
                .as_ref()
                .and(self.settings.crl_urls())
                .map(|(crl, _)| crl),
        }
    }

    /// Serves the issuer's current CRLs on the plain-HTTP listeners; when this returns the
    /// next fetch gets them.
    pub fn publish_crls(&self) {
        let Some(proxy) = &self.proxy else { return };
        let crls = self.certs.issuer().crls();
        let doc = |der: Option<Vec<u8>>| {
            der.map(|d| Document {
                content_type: CRL_TYPE,
                body: d.into(),
            })
        };
        if let Some(ca) = &self.local_ca {
            proxy.publish(
                ROOT_PEM_PATH,
                Some(Document {
                    content_type: "application/x-pem-file",
                    body: ca.root_pem().into_bytes().into(),
                }),
            );
        }
        proxy.publish(CRL_PATH, doc(crls.issuing));
        proxy.publish(ROOT_CRL_PATH, doc(crls.root));
        // Client certificates are checked against the new CRLs.
        self.access.refresh.notify_one();
    }

    /// Installs an intermediate signed by the offline root (the file `conduit ca
    /// sign-intermediate` wrote), issues every leaf again under it and publishes its CRLs;
    /// audited as `ca_intermediate_install`.
    ///
    /// # Errors
    /// [`GatewayError::Ca`]: the file does not fit this gateway's pending request or root
    /// (nothing was changed), or the issuer is not the gateway's own CA.
    pub async fn install_intermediate(
        &self,
        pem: &str,
        user: &str,
    ) -> Result<IntermediateInstalled, GatewayError> {
        let Some(ca) = &self.local_ca else {
            return Err(GatewayError::Ca(conduit_ca::CaError::Unsupported(
                "installing an intermediate (this gateway's issuer is not its own CA)",
            )));
        };
        let installed = match SignedIntermediate::from_pem(pem) {
            Ok(signed) => ca.install_intermediate(signed).await,
            Err(e) => Err(e),
        };
        let until = rfc3339(ca.intermediate_not_after());
        let (ok, message) = match &installed {
            Ok(()) => (
                true,
                format!(
                    "Installed an intermediate CA signed by the offline root; valid until {until}"
                ),
            ),
            Err(e) => (false, format!("Cannot install the intermediate CA: {e}")),
        };
        self.events.publish(EventKind::Certificate {
            change: if ok {
                "intermediate_installed"
            } else {
                "intermediate_install_failed"
            }
            .to_owned(),
            name: "*".to_owned(),
            message: message.clone(),
        });
        let details = json!({"not_after": until});
        record(
            &*self.audit,
            Action::CaIntermediateInstall,
            ok,
            message,
            user,
            details,
        )
        .await;
        installed?;
        let renewed = self.certs.renew_all().await;
        self.publish_crls();
        // Services registered while nothing could be issued get their leaves now.
        self.cert_retry.notify_one();
        Ok(IntermediateInstalled {
            not_after: until,
            leaves_renewed: u64::try_from(renewed).unwrap_or(u64::MAX),
        })
    }

    /// Publishes a `certificate` event when the issuance state changed since `last` (and
    /// at the first call), naming what to run.
    pub(super) fn report_issuance(&self, last: &mut Option<Issuance>) {
        let now = self.certs.issuer().issuance();
        if last.as_ref() == Some(&now) {
            return;
        }
        let (s, message) = state(&now);
        if last.is_some() || s != IssuanceState::Ready {
            let change = match s {
                IssuanceState::Ready => "issuance_ready",
                IssuanceState::Expiring => "issuance_expiring",
                IssuanceState::Blocked => "issuance_blocked",
            };
            let message = message.unwrap_or_else(|| "The CA can issue again".to_owned());
            match s {
                IssuanceState::Blocked => tracing::error!("{message}"),
                IssuanceState::Expiring => tracing::warn!("{message}"),
                IssuanceState::Ready => tracing::info!("{message}"),
            }
            self.events.publish(EventKind::Certificate {
                change: change.to_owned(),
                name: "*".to_owned(),
                message,
            });
        }
        *last = Some(now);
    }

    /// The CA's lines of `/metrics`.
    pub(super) fn ca_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let status = self.ca_status();
        let _ = writeln!(
            out,
            "# HELP conduit_ca_issuance Whether the CA can issue (1 on the current state).\n# TYPE conduit_ca_issuance gauge"
        );
        for (name, s) in [
            ("ready", IssuanceState::Ready),
            ("expiring", IssuanceState::Expiring),
            ("blocked", IssuanceState::Blocked),
        ] {
            let v = u8::from(status.issuance == s);
            let _ = writeln!(out, "conduit_ca_issuance{{state=\"{name}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP conduit_certificate_not_after_seconds When each served certificate expires (Unix time); `@admin` and `@address` are the gateway's own.\n# TYPE conduit_certificate_not_after_seconds gauge"
        );
        for (name, not_after) in self.certs.expiries() {
            let _ = writeln!(
                out,
                "conduit_certificate_not_after_seconds{{service=\"{name}\"}} {}",
                not_after.unix_timestamp()
            );
        }
        if let Some(ca) = &self.local_ca {
            let _ = writeln!(
                out,
                "# HELP conduit_ca_intermediate_not_after_seconds When the intermediate expires (Unix time).\n# TYPE conduit_ca_intermediate_not_after_seconds gauge\nconduit_ca_intermediate_not_after_seconds {}\n# HELP conduit_ca_root_key_present Whether the root key is in the state directory (0: kept offline).\n# TYPE conduit_ca_root_key_present gauge\nconduit_ca_root_key_present {}",
                ca.intermediate_not_after().unix_timestamp(),
                u8::from(ca.root_key_present())
            );
        }
    }
}
