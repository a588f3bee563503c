//! Peers, grants and client certificates through the running gateway (the admin API's
//! `/v1/peers`, `/v1/grants`, `/v1/access/…`): each change stored in the registry's store
//! by compare-and-swap and audited as the caller; `access check` answered by the evaluator
//! the proxy runs.

use std::net::IpAddr;
use std::sync::Arc;

use conduit_registry::ServiceName;
use conduit_registry::access::{Client, Evaluator, Label, PeerCert, Reason, StoredPolicy};

use super::{GatewayError, GatewayHandle};
use crate::api::{AccessVerdict, GrantList, PeerCertificate, PeerList, PeerRevoked};
use crate::audited::{AuditedRegistry, PolicyChange};

/// What `evaluator` decides for a request from `from` (with a certificate of peer `cert`)
/// for `method` `path` on `service`: the proxy's own decision, explained.
pub fn access_verdict(
    evaluator: &Evaluator,
    from: IpAddr,
    cert: Option<&str>,
    service: &ServiceName,
    method: &str,
    path: &str,
) -> AccessVerdict {
    let d = evaluator.decide(Client { ip: from, cert }, service, method, path);
    let decided_by = match d.reason {
        Reason::Grant(_) => evaluator
            .grant(d.reason)
            .map_or_else(|| "a grant".to_owned(), ToString::to_string),
        Reason::CertRequired => "certificate".to_owned(),
        _ => "default".to_owned(),
    };
    AccessVerdict {
        allowed: d.allowed,
        decided_by,
        reason: evaluator.explain(d, service),
        revision: evaluator.revision(),
    }
}

fn label(kind: &'static str, s: &str) -> Result<Label, GatewayError> {
    Label::new(kind, s).map_err(|e| GatewayError::BadRequest {
        what: kind,
        reason: e.to_string(),
    })
}

impl GatewayHandle {
    /// Applies one policy change, audited as `caller`; in force when this returns.
    ///
    /// # Errors
    /// [`GatewayError::Policy`] naming why it was refused.
    pub async fn change_policy(
        &self,
        change: &PolicyChange,
        caller: &str,
    ) -> Result<Arc<StoredPolicy>, GatewayError> {
        let audited = AuditedRegistry::new(self.registry.clone(), self.audit.clone(), caller);
        let stored = audited.change_policy(change).await?;
        // The follower would apply it within moments; the caller sees it in force now.
        self.apply_policy(&stored);
        Ok(stored)
    }

    /// The policy in force, for `status`.
    ///
    /// # Errors
    /// A registry error.
    pub(super) async fn access_status(&self) -> Result<crate::api::AccessStatus, GatewayError> {
        let p = self.registry.access_policy().await?;
        Ok(crate::api::AccessStatus {
            default: self.settings.access.default,
            hide_names: self.settings.access.hide_names,
            revision: p.revision,
            peers: p.policy.peers.len(),
            grants: p.policy.grants.len(),
            require_cert: p
                .policy
                .require_cert
                .iter()
                .map(ToString::to_string)
                .collect(),
            denied: self.access.denied().iter().map(|(_, n)| n).sum(),
        })
    }

    /// Every peer.
    ///
    /// # Errors
    /// A registry error.
    pub async fn peers(&self) -> Result<PeerList, GatewayError> {
        let p = self.registry.access_policy().await?;
        Ok(PeerList {
            revision: p.revision,
            peers: p.policy.peers.clone(),
        })
    }

    /// The grants (of `service` only, when given), the default and the services requiring
    /// a client certificate.
    ///
    /// # Errors
    /// [`GatewayError::BadRequest`] for a malformed service name, a registry error.
    pub async fn grants(&self, service: Option<&str>) -> Result<GrantList, GatewayError> {
        let only = service
            .map(|s| {
                s.parse::<ServiceName>()
                    .map_err(|e| GatewayError::BadRequest {
                        what: "service",
                        reason: e.to_string(),
                    })
            })
            .transpose()?;
        let p = self.registry.access_policy().await?;
        let a = &self.settings.access;
        Ok(GrantList::of(&p, a.default, a.hide_names, only.as_ref()))
    }

    /// What the policy in force decides for this request.
    ///
    /// # Errors
    /// [`GatewayError::BadRequest`] for a malformed service or peer name.
    pub fn access_check(
        &self,
        from: IpAddr,
        cert: Option<&str>,
        service: &str,
        method: &str,
        path: &str,
    ) -> Result<AccessVerdict, GatewayError> {
        let service: ServiceName =
            service
                .parse()
                .map_err(|e: conduit_registry::NameError| GatewayError::BadRequest {
                    what: "service",
                    reason: e.to_string(),
                })?;
        let cert = cert.map(|c| label("peer name", c)).transpose()?;
        let eval = self.access.evaluator();
        Ok(access_verdict(
            &eval,
            from,
            cert.as_ref().map(Label::as_str),
            &service,
            &method.to_ascii_uppercase(),
            path,
        ))
    }

    /// Issues a client certificate to the peer `name` (remembered in the policy, so that
    /// revoking the peer revokes it), audited as `peer_cert`.
    ///
    /// # Errors
    /// [`GatewayError::Unavailable`] when the issuer is not the gateway's own CA, the peer
    /// unknown, the CA's refusal.
    pub async fn peer_cert(
        &self,
        name: &str,
        caller: &str,
    ) -> Result<PeerCertificate, GatewayError> {
        let Some(ca) = &self.local_ca else {
            return Err(GatewayError::Unavailable {
                what: "client certificates (this gateway's issuer is not its own CA)",
            });
        };
        let peer = label("peer name", name)?;
        let policy = self.registry.access_policy().await?;
        if policy.policy.peer(&peer).is_none() {
            return Err(crate::audited::PolicyChangeError::NoPeer(peer).into());
        }
        let req = conduit_ca::IssueRequest {
            dns_names: vec![super::peer_cert_name(
                peer.as_str(),
                self.settings.zone.as_str(),
            )],
            client_auth: true,
            ..conduit_ca::IssueRequest::default()
        };
        let issued = self.certs.issuer().issue(&req).await?;
        let info = conduit_ca::inspect_pem(
            &issued.chain_pem,
            time::OffsetDateTime::now_utc(),
            &Default::default(),
        )?;
        let change = PolicyChange::CertIssued {
            peer: peer.clone(),
            cert: PeerCert::new(info.serial.clone(), info.not_after.clone()),
        };
        self.change_policy(&change, caller).await?;
        Ok(PeerCertificate {
            peer: peer.to_string(),
            chain_pem: issued.chain_pem,
            key_pem: issued.key_pem,
            root_pem: ca.root_pem(),
            serial: info.serial,
            not_after: info.not_after,
        })
    }

    /// Removes the peer `name` (refused while a grant names it), revoking its client
    /// certificates first; audited as `cert_revoke` and `peer_remove`.
    ///
    /// # Errors
    /// The peer unknown or still named by grants, the CA's refusal.
    pub async fn remove_peer(&self, name: &str, caller: &str) -> Result<(), GatewayError> {
        let peer = label("peer name", name)?;
        let change = PolicyChange::RemovePeer(peer);
        // Refused before anything is revoked, when it would be refused after.
        if let Err(e) = change.apply(&self.registry.access_policy().await?.policy) {
            let audited = AuditedRegistry::new(self.registry.clone(), self.audit.clone(), caller);
            audited.change_policy(&change).await?;
            return Err(e.into());
        }
        self.revoke_peer(name, caller).await?;
        self.change_policy(&change, caller).await?;
        Ok(())
    }

    /// Revokes every client certificate issued to the peer `name`: the CRL lists them and
    /// the proxy refuses them from the next handshake on; audited as `cert_revoke`.
    ///
    /// # Errors
    /// The peer unknown, the CA's refusal.
    pub async fn revoke_peer(&self, name: &str, caller: &str) -> Result<PeerRevoked, GatewayError> {
        let peer = label("peer name", name)?;
        let policy = self.registry.access_policy().await?;
        let Some(p) = policy.policy.peer(&peer) else {
            return Err(crate::audited::PolicyChangeError::NoPeer(peer).into());
        };
        let serials: Vec<String> = p.certs.iter().map(|c| c.serial.clone()).collect();
        for s in &serials {
            self.certs.issuer().revoke(s).await?;
        }
        self.publish_crls();
        if !serials.is_empty() {
            let change = PolicyChange::CertsRevoked {
                peer: peer.clone(),
                serials: serials.clone(),
            };
            self.change_policy(&change, caller).await?;
        }
        Ok(PeerRevoked {
            peer: peer.to_string(),
            serials,
        })
    }
}
