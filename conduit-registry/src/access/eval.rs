//! [`Evaluator`]: the policy compiled for the request path. Built once per policy change;
//! deciding takes no lock, allocates nothing for a plain path, and is the same code the proxy,
//! DNS and `conduit access check` run.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::policy::{AccessPolicy, Grant, Subject};
use crate::{Cidr, ServiceName, canonical_ip};

/// What happens to a service no grant names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DefaultRule {
    /// Reachable by every client (today's behaviour, for an upgraded site). A service with
    /// at least one grant is reachable only through its grants.
    #[default]
    Open,
    /// Reachable by nobody.
    Deny,
}

impl fmt::Display for DefaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Deny => "deny",
        })
    }
}

/// Why a request was allowed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The grant at this index of the policy's grants allowed it.
    Grant(usize),
    /// No grant names the service and the default is open.
    DefaultOpen,
    /// No grant names the service and the default is deny.
    DefaultDeny,
    /// The service has grants, and none matches this client, method and path.
    NoGrant,
    /// The service requires a client certificate and none was presented.
    CertRequired,
}

/// One decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
}

impl Decision {
    const fn allow(reason: Reason) -> Self {
        Self {
            allowed: true,
            reason,
        }
    }
    const fn deny(reason: Reason) -> Self {
        Self {
            allowed: false,
            reason,
        }
    }
}

/// Who is asking: the socket's peer address and, on a TLS connection with a verified
/// client certificate from our CA, the peer it was issued to.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The connection's source address (never a forwarded header).
    pub ip: IpAddr,
    /// The peer named by a verified client certificate.
    pub cert: Option<&'a str>,
}

impl<'a> Client<'a> {
    /// A client known by its address only.
    pub fn from_ip(ip: IpAddr) -> Self {
        Self { ip, cert: None }
    }
}

enum Match {
    /// A client from one of this peer's addresses.
    Peer(u32),
    /// A client from the addresses of a peer with this tag.
    Tag(u32),
    /// A client from this network.
    Net(Cidr),
    /// A client with a certificate of this peer; `id` is the peer (for DNS, which sees
    /// no certificate, its addresses count).
    Cert { peer: Box<str>, id: Option<u32> },
}

struct Compiled {
    index: usize,
    who: Match,
    methods: Box<[Box<str>]>,
    path: Option<Box<str>>,
}

#[derive(Default)]
struct Rules {
    /// In the policy's order (a decision names the first grant that allows).
    grants: Vec<Compiled>,
    /// The same grants by who they name.
    by_who: ByWho,
    require_cert: bool,
}

impl Compiled {
    /// Whether this grant lets `method` `path` (normalized) through.
    fn permits(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| **m == *method))
            && self.path.as_deref().is_none_or(|p| under(path, p))
    }
}

use super::index::{AddressIndex, ByWho, Map};
use super::path::{normalize, under};

/// The policy compiled for deciding.
pub struct Evaluator {
    default: DefaultRule,
    services: Map<ServiceName, Rules>,
    addresses: AddressIndex,
    /// Each peer's name.
    peer_names: Vec<Box<str>>,
    grants: Arc<[Grant]>,
    revision: u64,
}

impl fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evaluator")
            .field("default", &self.default)
            .field("revision", &self.revision)
            .field("services", &self.services.len())
            .field("grants", &self.grants.len())
            .finish()
    }
}

impl Default for Evaluator {
    /// No policy: every service open.
    fn default() -> Self {
        Self::new(&AccessPolicy::default(), DefaultRule::Open, 0)
    }
}

impl Evaluator {
    /// Compiles `policy` (at `revision`) under `default`. The policy should have passed
    /// [`AccessPolicy::validate`]; a grant naming a missing peer matches nobody.
    pub fn new(policy: &AccessPolicy, default: DefaultRule, revision: u64) -> Self {
        let mut peer_ids: Map<&str, u32> = Map::default();
        let mut tag_ids: Map<&str, u32> = Map::default();
        let mut addresses = AddressIndex::default();
        let mut peer_tags = Vec::with_capacity(policy.peers.len());
        for (i, p) in policy.peers.iter().enumerate() {
            let id = u32::try_from(i).unwrap_or(u32::MAX);
            peer_ids.entry(p.name.as_str()).or_insert(id);
            for a in &p.addresses {
                addresses.insert(*a, id);
            }
            let next = u32::try_from(tag_ids.len()).unwrap_or(u32::MAX);
            let tags: Box<[u32]> = p
                .tags
                .iter()
                .map(|t| *tag_ids.entry(t.as_str()).or_insert(next))
                .collect();
            peer_tags.push(tags);
        }
        let peer_names = policy
            .peers
            .iter()
            .map(|p| p.name.as_str().into())
            .collect();
        let mut services: Map<ServiceName, Rules> = Map::default();
        for (index, g) in policy.grants.iter().enumerate() {
            let who = match &g.to {
                // A missing peer or tag matches nobody.
                Subject::Peer(n) => {
                    Match::Peer(peer_ids.get(n.as_str()).copied().unwrap_or(u32::MAX))
                }
                Subject::Tag(t) => Match::Tag(tag_ids.get(t.as_str()).copied().unwrap_or(u32::MAX)),
                Subject::Cidr(c) => Match::Net(*c),
                Subject::Cert(n) => Match::Cert {
                    peer: n.as_str().into(),
                    id: peer_ids.get(n.as_str()).copied(),
                },
            };
            services
                .entry(g.service.clone())
                .or_default()
                .grants
                .push(Compiled {
                    index,
                    who,
                    methods: g.methods.iter().map(|m| m.as_str().into()).collect(),
                    path: g.path.as_deref().map(Into::into),
                });
        }
        for s in &policy.require_cert {
            services.entry(s.clone()).or_default().require_cert = true;
        }
        let mut tagged: Map<u32, Vec<u32>> = Map::default();
        for (peer, tags) in peer_tags.iter().enumerate() {
            for t in tags.iter() {
                tagged
                    .entry(*t)
                    .or_default()
                    .push(u32::try_from(peer).unwrap_or(u32::MAX));
            }
        }
        for rules in services.values_mut() {
            let by = &mut rules.by_who;
            for (pos, g) in rules.grants.iter().enumerate() {
                let pos = u32::try_from(pos).unwrap_or(u32::MAX);
                match &g.who {
                    Match::Peer(id) => by.peers.push((*id, pos)),
                    Match::Tag(t) => {
                        for p in tagged.get(t).into_iter().flatten() {
                            by.peers.push((*p, pos));
                        }
                    }
                    Match::Net(n) => by.nets.push((*n, pos)),
                    Match::Cert { peer, id } => {
                        by.certs.push((peer.clone(), pos));
                        if let Some(id) = id {
                            by.cert_peers.push((*id, pos));
                        }
                    }
                }
            }
            by.sort();
        }
        Self {
            default,
            services,
            addresses,
            peer_names,
            grants: policy.grants.clone().into(),
            revision,
        }
    }

    /// The first peer (in the policy's order) whose addresses hold `ip`.
    pub fn peer_name(&self, ip: IpAddr) -> Option<&str> {
        let peers = self.addresses.lookup(canonical_ip(ip));
        let first = peers.as_slice().iter().min()?;
        self.peer_names.get(*first as usize).map(|n| &**n)
    }

    /// The policy revision this was built from.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The default rule.
    pub fn default_rule(&self) -> DefaultRule {
        self.default
    }

    /// Whether `service` requires a client certificate.
    pub fn requires_cert(&self, service: &ServiceName) -> bool {
        self.services.get(service).is_some_and(|r| r.require_cert)
    }

    /// Whether a connection for `service` should be asked for a client certificate: it
    /// requires one, or a `cert:` grant names it.
    pub fn wants_cert(&self, service: &ServiceName) -> bool {
        self.services.get(service).is_some_and(|r| {
            r.require_cert || r.grants.iter().any(|g| matches!(g.who, Match::Cert { .. }))
        })
    }

    /// Whether any service wants a client certificate.
    pub fn any_wants_cert(&self) -> bool {
        self.services.keys().any(|s| self.wants_cert(s))
    }

    /// Decides whether `client` may send `method` `path` to `service`.
    pub fn decide(
        &self,
        client: Client<'_>,
        service: &ServiceName,
        method: &str,
        path: &str,
    ) -> Decision {
        let Some(rules) = self.services.get(service) else {
            return self.by_default();
        };
        if rules.require_cert && client.cert.is_none() {
            return Decision::deny(Reason::CertRequired);
        }
        if rules.grants.is_empty() {
            return self.by_default();
        }
        let ip = canonical_ip(client.ip);
        let path = normalize(path);
        let peers = self.addresses.lookup(ip);
        let by = &rules.by_who;
        // The first grant (in the policy's order) naming this client that lets it through.
        let mut best: Option<u32> = None;
        let mut consider = |pos: u32| {
            if best.is_none_or(|b| pos < b)
                && rules
                    .grants
                    .get(pos as usize)
                    .is_some_and(|g| g.permits(method, &path))
            {
                best = Some(pos);
            }
        };
        for p in peers.as_slice() {
            ByWho::of(&by.peers, *p).for_each(&mut consider);
        }
        for (net, pos) in &by.nets {
            if net.contains(ip) {
                consider(*pos);
            }
        }
        if let Some(cert) = client.cert {
            for (peer, pos) in &by.certs {
                if **peer == *cert {
                    consider(*pos);
                }
            }
        }
        if let Some(g) = best.and_then(|b| rules.grants.get(b as usize)) {
            return Decision::allow(Reason::Grant(g.index));
        }
        Decision::deny(Reason::NoGrant)
    }

    /// Whether the client at `ip` may reach `service` at all (some method, some path): what
    /// DNS answers under `hide_names`. A `cert:` grant counts for its peer's addresses.
    pub fn visible(&self, ip: IpAddr, service: &ServiceName) -> bool {
        let Some(rules) = self.services.get(service) else {
            return self.default == DefaultRule::Open;
        };
        if rules.grants.is_empty() {
            return self.default == DefaultRule::Open;
        }
        let ip = canonical_ip(ip);
        let by = &rules.by_who;
        let peers = self.addresses.lookup(ip);
        by.nets.iter().any(|(n, _)| n.contains(ip))
            || peers.as_slice().iter().any(|p| {
                ByWho::of(&by.peers, *p).next().is_some()
                    || ByWho::of(&by.cert_peers, *p).next().is_some()
            })
    }

    /// The grant a decision names.
    pub fn grant(&self, reason: Reason) -> Option<&Grant> {
        match reason {
            Reason::Grant(i) => self.grants.get(i),
            _ => None,
        }
    }

    /// One line saying why: `grant peer:alice → web`, `default open`, `no grant for …`.
    pub fn explain(&self, d: Decision, service: &ServiceName) -> String {
        match d.reason {
            Reason::Grant(_) => self
                .grant(d.reason)
                .map_or_else(|| "a grant".to_owned(), |g| format!("grant {g}")),
            Reason::DefaultOpen => format!("no grant names {service}; [access] default = \"open\""),
            Reason::DefaultDeny => format!("no grant names {service}; [access] default = \"deny\""),
            Reason::NoGrant => {
                format!("no grant of {service} matches this client, method and path")
            }
            Reason::CertRequired => {
                format!("{service} requires a client certificate from this site's CA")
            }
        }
    }

    fn by_default(&self) -> Decision {
        match self.default {
            DefaultRule::Open => Decision::allow(Reason::DefaultOpen),
            DefaultRule::Deny => Decision::deny(Reason::DefaultDeny),
        }
    }
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
