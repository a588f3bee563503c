//! Access-policy changes ([`PolicyChange`]): one operator command each, applied to the
//! stored policy by compare-and-swap (retried when another writer got there first) and
//! audited with who asked, refusals included.

use std::sync::Arc;

use conduit_audit::AuditError;
use conduit_registry::access::{AccessPolicy, Grant, Label, Peer, PeerCert, StoredPolicy, Subject};
use conduit_registry::{Registry, RegistryError, ServiceName};
use serde::Serialize;

use super::{Action, AuditedRegistry};

/// One change to the access policy, as an operator asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyChange {
    /// Adds a peer, or replaces the one of that name.
    AddPeer(Peer),
    /// Removes a peer (refused while a grant names it).
    RemovePeer(Label),
    /// Adds a grant.
    AddGrant(Grant),
    /// Removes the grants of `service` for `to`.
    RemoveGrant {
        /// The service.
        service: ServiceName,
        /// The subject.
        to: Subject,
    },
    /// Remembers a client certificate issued to a peer.
    CertIssued {
        /// The peer.
        peer: Label,
        /// The certificate.
        cert: PeerCert,
    },
    /// Forgets a peer's client certificates (they were revoked).
    CertsRevoked {
        /// The peer.
        peer: Label,
        /// Their serials.
        serials: Vec<String>,
    },
    /// Makes a service require a client certificate (`true`) or not.
    RequireCert {
        /// The service.
        service: ServiceName,
        /// Whether it requires one.
        required: bool,
    },
}

/// Why a policy change was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyChangeError {
    /// The store refused it (an invalid policy, a storage failure).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// No peer of that name.
    #[error("no peer named {0} (`conduit peer list` shows them)")]
    NoPeer(Label),
    /// The peer is still named by grants.
    #[error(
        "peer {peer} is named by {count} grant(s) ({services}); remove them first with `conduit grant remove SERVICE --to peer:{peer}`"
    )]
    PeerInUse {
        /// The peer.
        peer: Label,
        /// How many grants name it.
        count: usize,
        /// Their services.
        services: String,
    },
    /// No grant matched.
    #[error("no grant of {service} is for {to} (`conduit grant list {service}` shows them)")]
    NoGrant {
        /// The service.
        service: ServiceName,
        /// The subject.
        to: Subject,
    },
    /// Stored, but its audit record failed.
    #[error(
        "the access policy was changed (revision {revision}) but its audit record failed: {source}"
    )]
    NotAudited {
        /// The stored revision.
        revision: u64,
        /// The audit failure.
        source: AuditError,
    },
}

impl PolicyChange {
    /// The audit action.
    pub fn action(&self) -> Action {
        match self {
            Self::AddPeer(_) => Action::PeerAdd,
            Self::RemovePeer(_) => Action::PeerRemove,
            Self::AddGrant(_) => Action::GrantAdd,
            Self::RemoveGrant { .. } => Action::GrantRemove,
            Self::RequireCert { .. } => Action::AccessRequireCert,
            Self::CertIssued { .. } => Action::PeerCert,
            Self::CertsRevoked { .. } => Action::CertRevoke,
        }
    }

    /// What it does, in words (`add peer alice (127.0.0.2/32)`).
    pub fn describe(&self) -> String {
        match self {
            Self::AddPeer(p) => {
                let addrs: Vec<String> = p.addresses.iter().map(ToString::to_string).collect();
                format!("add peer {} ({})", p.name, addrs.join(", "))
            }
            Self::RemovePeer(n) => format!("remove peer {n}"),
            Self::AddGrant(g) => format!("grant {g}"),
            Self::RemoveGrant { service, to } => format!("remove the grants {to} → {service}"),
            Self::CertIssued { peer, cert } => format!(
                "issue a client certificate to {peer} (serial {}, until {})",
                cert.serial, cert.not_after
            ),
            Self::CertsRevoked { peer, serials } => format!(
                "revoke the client certificates of {peer} ({})",
                serials.join(", ")
            ),
            Self::RequireCert { service, required } => {
                if *required {
                    format!("require a client certificate for {service}")
                } else {
                    format!("stop requiring a client certificate for {service}")
                }
            }
        }
    }

    fn details(&self) -> ChangeDetails<'_> {
        match self {
            Self::AddPeer(p) => ChangeDetails::Peer { peer: p },
            Self::RemovePeer(n) => ChangeDetails::PeerName { peer: n },
            Self::AddGrant(g) => ChangeDetails::Grant { grant: g },
            Self::RemoveGrant { service, to } => ChangeDetails::Grants { service, to },
            Self::RequireCert { service, required } => ChangeDetails::RequireCert {
                service,
                required: *required,
            },
            Self::CertIssued { peer, cert } => ChangeDetails::CertIssued {
                peer,
                certificate: cert,
            },
            Self::CertsRevoked { peer, serials } => ChangeDetails::CertsRevoked { peer, serials },
        }
    }

    /// The policy after this change (not yet validated as a whole).
    ///
    /// # Errors
    /// [`PolicyChangeError::NoPeer`], [`PolicyChangeError::PeerInUse`],
    /// [`PolicyChangeError::NoGrant`].
    pub fn apply(&self, current: &AccessPolicy) -> Result<AccessPolicy, PolicyChangeError> {
        let mut p = current.clone();
        match self {
            Self::AddPeer(peer) => {
                // The certificates a peer holds are the ones the CA issued to it, recorded by
                // `CertIssued` only: a peer given again keeps its own, a new one has none,
                // whatever the request says (a listed serial is revoked with the peer).
                let mut peer = peer.clone();
                match p.peers.iter_mut().find(|x| x.name == peer.name) {
                    Some(x) => {
                        peer.certs = std::mem::take(&mut x.certs);
                        *x = peer;
                    }
                    None => {
                        peer.certs.clear();
                        p.peers.push(peer);
                    }
                }
            }
            Self::CertIssued { peer, cert } => peer_mut(&mut p, peer)?.certs.push(cert.clone()),
            Self::CertsRevoked { peer, serials } => peer_mut(&mut p, peer)?
                .certs
                .retain(|c| !serials.contains(&c.serial)),
            Self::RemovePeer(name) => {
                if p.peer(name).is_none() {
                    return Err(PolicyChangeError::NoPeer(name.clone()));
                }
                let naming: Vec<&Grant> = p
                    .grants
                    .iter()
                    .filter(|g| matches!(&g.to, Subject::Peer(n) | Subject::Cert(n) if n == name))
                    .collect();
                if !naming.is_empty() {
                    let services: Vec<&str> = naming.iter().map(|g| g.service.as_str()).collect();
                    return Err(PolicyChangeError::PeerInUse {
                        peer: name.clone(),
                        count: naming.len(),
                        services: services.join(", "),
                    });
                }
                p.peers.retain(|x| &x.name != name);
            }
            Self::AddGrant(g) => p.grants.push(g.clone()),
            Self::RemoveGrant { service, to } => {
                let before = p.grants.len();
                p.grants.retain(|g| !(&g.service == service && &g.to == to));
                if p.grants.len() == before {
                    return Err(PolicyChangeError::NoGrant {
                        service: service.clone(),
                        to: to.clone(),
                    });
                }
            }
            Self::RequireCert { service, required } => {
                p.require_cert.retain(|s| s != service);
                if *required {
                    p.require_cert.push(service.clone());
                }
            }
        }
        Ok(p)
    }
}

/// A change's audit details: what it names, and the revision it made.
#[derive(Serialize)]
#[serde(untagged)]
enum ChangeDetails<'a> {
    Peer {
        peer: &'a Peer,
    },
    PeerName {
        peer: &'a Label,
    },
    Grant {
        grant: &'a Grant,
    },
    Grants {
        service: &'a ServiceName,
        to: &'a Subject,
    },
    RequireCert {
        service: &'a ServiceName,
        required: bool,
    },
    CertIssued {
        peer: &'a Label,
        certificate: &'a PeerCert,
    },
    CertsRevoked {
        peer: &'a Label,
        serials: &'a [String],
    },
}

/// What a change's audit record carries.
#[derive(Serialize)]
struct Recorded<'a> {
    #[serde(flatten)]
    change: ChangeDetails<'a>,
    /// The revision stored (absent for a refusal).
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
}

/// The audit details of a whole-policy replacement.
#[derive(Serialize)]
struct Replaced {
    peers: usize,
    grants: usize,
}

/// The peer of that name, to change.
fn peer_mut<'a>(p: &'a mut AccessPolicy, name: &Label) -> Result<&'a mut Peer, PolicyChangeError> {
    p.peers
        .iter_mut()
        .find(|x| &x.name == name)
        .ok_or_else(|| PolicyChangeError::NoPeer(name.clone()))
}

/// How many times a change is retried when another writer changed the policy in between.
const CAS_ATTEMPTS: usize = 8;

impl<R: Registry> AuditedRegistry<R> {
    /// Applies `change` to the stored policy (compare-and-swap, retried on a lost race) and
    /// audits it, refused or made.
    ///
    /// # Errors
    /// As [`PolicyChange::apply`], the store's refusal ([`RegistryError::InvalidPolicy`]),
    /// or [`PolicyChangeError::NotAudited`] when stored but not audited.
    pub async fn change_policy(
        &self,
        change: &PolicyChange,
    ) -> Result<Arc<StoredPolicy>, PolicyChangeError> {
        let result = self.try_change(change).await;
        let mut details = Recorded {
            change: change.details(),
            revision: None,
        };
        match &result {
            Ok(stored) => {
                details.revision = Some(stored.revision);
                let msg = format!("Access policy: {}", change.describe());
                self.record_checked(change.action(), true, msg, details)
                    .await
                    .map_err(|source| PolicyChangeError::NotAudited {
                        revision: stored.revision,
                        source,
                    })?;
            }
            Err(e) => {
                let msg = format!("Cannot {}: {e}", change.describe());
                self.record(change.action(), false, msg, details).await;
            }
        }
        result
    }

    async fn try_change(
        &self,
        change: &PolicyChange,
    ) -> Result<Arc<StoredPolicy>, PolicyChangeError> {
        let mut attempt = 0;
        loop {
            let current = self.inner.access_policy().await?;
            let next = change.apply(&current.policy)?;
            match self.inner.set_access_policy(next, current.revision).await {
                Err(RegistryError::PolicyConflict { .. }) if attempt + 1 < CAS_ATTEMPTS => {
                    attempt += 1;
                }
                other => return other.map_err(Into::into),
            }
        }
    }

    /// Replaces the whole policy (compare-and-swap on `expected`), audited as
    /// `access_policy`.
    ///
    /// # Errors
    /// As [`Registry::set_access_policy`].
    pub async fn set_policy_audited(
        &self,
        policy: AccessPolicy,
        expected: u64,
    ) -> Result<Arc<StoredPolicy>, RegistryError> {
        let counts = Replaced {
            peers: policy.peers.len(),
            grants: policy.grants.len(),
        };
        let result = self.inner.set_access_policy(policy, expected).await;
        let (ok, msg) = match &result {
            Ok(s) => (
                true,
                format!("Replaced the access policy (revision {})", s.revision),
            ),
            Err(e) => (false, format!("Cannot replace the access policy: {e}")),
        };
        self.record(Action::AccessPolicy, ok, msg, counts).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_registry::access::PeerCert;

    #[test]
    fn a_peer_given_again_keeps_its_certificates_and_a_new_one_cannot_claim_any() {
        let name = Label::new("peer name", "alice").unwrap();
        let mut claimed = Peer::new(name.clone());
        claimed
            .certs
            .push(PeerCert::new("0bad", "2030-01-01T00:00:00Z"));
        let p = PolicyChange::AddPeer(claimed.clone())
            .apply(&AccessPolicy::default())
            .unwrap();
        assert!(p.peers[0].certs.is_empty(), "serials come from the CA only");
        let issued = PeerCert::new("0a1b", "2026-12-06T00:00:00Z");
        let p = PolicyChange::CertIssued {
            peer: name.clone(),
            cert: issued.clone(),
        }
        .apply(&p)
        .unwrap();
        let mut again = Peer::new(name);
        again.addresses.push("10.8.0.9".parse().unwrap());
        let p = PolicyChange::AddPeer(again).apply(&p).unwrap();
        assert_eq!(p.peers[0].certs, vec![issued]);
        assert_eq!(p.peers[0].addresses[0].to_string(), "10.8.0.9/32");
    }
}
