//! [`Evaluator`]: the policy compiled for the request path. Built once per policy change;
//! deciding takes no lock, allocates nothing for a plain path, and is the same code the proxy,
//! DNS and `conduit access check` run.

use std::borrow::Cow;
use std::collections::HashMap;
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
    /// From any of these networks (a peer's addresses, a tag's peers', a `cidr:`).
    Nets(Box<[Cidr]>),
    /// With a certificate issued to this peer; `nets` are its addresses (for DNS, which
    /// sees no certificate).
    Cert { peer: Box<str>, nets: Box<[Cidr]> },
}

struct Compiled {
    index: usize,
    who: Match,
    methods: Box<[Box<str>]>,
    path: Option<Box<str>>,
}

#[derive(Default)]
struct Rules {
    grants: Vec<Compiled>,
    require_cert: bool,
}

/// The policy compiled for deciding.
pub struct Evaluator {
    default: DefaultRule,
    services: HashMap<ServiceName, Rules>,
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
        let nets_of = |pred: &dyn Fn(&super::Peer) -> bool| -> Box<[Cidr]> {
            policy
                .peers
                .iter()
                .filter(|p| pred(p))
                .flat_map(|p| p.addresses.iter().copied())
                .collect()
        };
        let mut services: HashMap<ServiceName, Rules> = HashMap::new();
        for (index, g) in policy.grants.iter().enumerate() {
            let who = match &g.to {
                Subject::Peer(n) => Match::Nets(nets_of(&|p| &p.name == n)),
                Subject::Tag(t) => Match::Nets(nets_of(&|p| p.tags.contains(t))),
                Subject::Cidr(c) => Match::Nets(Box::new([*c])),
                Subject::Cert(n) => Match::Cert {
                    peer: n.as_str().into(),
                    nets: nets_of(&|p| &p.name == n),
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
        Self {
            default,
            services,
            grants: policy.grants.clone().into(),
            revision,
        }
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
        for g in &rules.grants {
            let who = match &g.who {
                Match::Nets(nets) => nets.iter().any(|n| n.contains(ip)),
                Match::Cert { peer, .. } => client.cert == Some(&**peer),
            };
            if who
                && (g.methods.is_empty() || g.methods.iter().any(|m| **m == *method))
                && g.path.as_deref().is_none_or(|p| under(&path, p))
            {
                return Decision::allow(Reason::Grant(g.index));
            }
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
        rules.grants.iter().any(|g| match &g.who {
            Match::Nets(nets) | Match::Cert { nets, .. } => nets.iter().any(|n| n.contains(ip)),
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

/// Whether `path` is `prefix` or below it (segment-wise: `/api/gen` is not under
/// `/api/generate`, and `/api/generatex` is not under it either).
fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// The path as the upstream will read it: percent-escapes of unreserved characters and `/`
/// decoded, `.` and `..` segments resolved, the query left out. A plain path is borrowed.
fn normalize(path: &str) -> Cow<'_, str> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if !path.contains('%') && !path.contains("/.") && !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let decoded = percent_decode(path);
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(decoded.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if decoded.ends_with('/') || s.is_empty() {
        s.push('/');
    }
    Cow::Owned(s)
}

/// `s` with its `%XX` escapes decoded (invalid ones kept as they are; invalid UTF-8
/// replaced): how the evaluator reads a path before matching grants.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
