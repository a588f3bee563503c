//! The stored access policy: peers (who a client is), grants (what it may reach) and the
//! services that require a client certificate. Validated as a whole before it is stored.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Cidr, NameError, ServiceName};

/// A peer's name or a tag: one DNS-style label (`alice`, `gpu-admins`), upper case folded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(Box<str>);

impl Label {
    /// Parses a label; `kind` names it in the error (`peer name`, `tag`).
    ///
    /// # Errors
    /// [`NameError`] naming the rule that was broken.
    pub fn new(kind: &'static str, input: &str) -> Result<Self, NameError> {
        let mut out = String::with_capacity(input.len());
        crate::name::push_label(kind, input, input, &mut out)?;
        Ok(Self(out.into_boxed_str()))
    }

    /// The label, in lower case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Label {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new("name", &s)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> Self {
        l.0.into()
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client the policy knows: a WireGuard peer (its tunnel addresses are bound to its key),
/// a person, or a service holding a client certificate from our CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Peer {
    /// Its name (`peer:NAME` and `cert:NAME` in grants).
    pub name: Label,
    /// The addresses or networks its packets come from.
    #[serde(default)]
    pub addresses: Vec<Cidr>,
    /// Its tags (`tag:TAG` in grants).
    #[serde(default)]
    pub tags: Vec<Label>,
    /// Its WireGuard public key (base64), for the operator's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wg_key: Option<String>,
    /// The client certificates issued to it (revoked with it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<PeerCert>,
}

/// A client certificate issued to a peer, as the policy remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PeerCert {
    /// Its serial, lower-case hex.
    pub serial: String,
    /// When it expires, RFC 3339.
    pub not_after: String,
}

impl PeerCert {
    /// A certificate of `serial` valid until `not_after`.
    pub fn new(serial: impl Into<String>, not_after: impl Into<String>) -> Self {
        Self {
            serial: serial.into(),
            not_after: not_after.into(),
        }
    }
}

impl Peer {
    /// A peer with no address and no tag.
    pub fn new(name: Label) -> Self {
        Self {
            name,
            addresses: Vec::new(),
            tags: Vec::new(),
            wg_key: None,
            certs: Vec::new(),
        }
    }
}

/// Whom a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subject {
    /// `peer:NAME`: a client from one of the peer's addresses.
    Peer(Label),
    /// `tag:TAG`: a client from the addresses of any peer with the tag.
    Tag(Label),
    /// `cidr:NETWORK`: a client from the network, whoever it is.
    Cidr(Cidr),
    /// `cert:NAME`: a client presenting a valid certificate our CA issued to the peer.
    Cert(Label),
}

/// Why a subject (`peer:alice`) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// Not `KIND:VALUE` with a known kind.
    #[error("{input:?} is not peer:NAME, tag:TAG, cidr:NETWORK or cert:NAME")]
    Kind {
        /// What was given.
        input: String,
    },
    /// The value after the kind is invalid.
    #[error("{input:?}: {reason}")]
    Value {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl FromStr for Subject {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value_err = |reason: String| SubjectError::Value {
            input: s.to_owned(),
            reason,
        };
        let label = |kind, v: &str| Label::new(kind, v).map_err(|e| value_err(e.to_string()));
        match s.split_once(':') {
            Some(("peer", v)) => label("peer name", v).map(Self::Peer),
            Some(("tag", v)) => label("tag", v).map(Self::Tag),
            Some(("cert", v)) => label("peer name", v).map(Self::Cert),
            Some(("cidr", v)) => v
                .parse()
                .map(Self::Cidr)
                .map_err(|e: crate::CidrError| value_err(e.to_string())),
            _ => Err(SubjectError::Kind {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Peer(n) => write!(f, "peer:{n}"),
            Self::Tag(t) => write!(f, "tag:{t}"),
            Self::Cidr(c) => write!(f, "cidr:{c}"),
            Self::Cert(n) => write!(f, "cert:{n}"),
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One grant: `subject` may reach `service`, with these methods, under this path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Grant {
    /// The service.
    pub service: ServiceName,
    /// Whom it is for.
    pub to: Subject,
    /// The methods it allows (upper case); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// The path prefix it allows (`/v1/`); none: every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Grant {
    /// A grant of every method and path.
    pub fn new(service: ServiceName, to: Subject) -> Self {
        Self {
            service,
            to,
            methods: Vec::new(),
            path: None,
        }
    }

    /// Limited to `methods` (folded to upper case).
    #[must_use]
    pub fn methods<S: AsRef<str>>(mut self, methods: impl IntoIterator<Item = S>) -> Self {
        self.methods = methods
            .into_iter()
            .map(|m| m.as_ref().trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .collect();
        self
    }

    /// Limited to paths under `prefix`.
    #[must_use]
    pub fn path(mut self, prefix: impl Into<String>) -> Self {
        self.path = Some(prefix.into());
        self
    }

    /// Whether `other` grants the same thing (same service, subject, methods and path).
    pub fn same_as(&self, other: &Self) -> bool {
        self.service == other.service
            && self.to == other.to
            && self.methods == other.methods
            && self.path == other.path
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.to, self.service)?;
        if !self.methods.is_empty() {
            write!(f, " {}", self.methods.join(","))?;
        }
        if let Some(p) = &self.path {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

/// What the registry's store keeps: every peer, every grant, and the services that require
/// a client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessPolicy {
    /// The peers.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// The grants.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Services reachable only with a client certificate (mTLS).
    #[serde(default)]
    pub require_cert: Vec<ServiceName>,
}

/// Why a policy cannot be applied; the whole change is refused and nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Two peers share a name.
    #[error("peer {0} is defined twice")]
    DuplicatePeer(Label),
    /// A grant names a peer that does not exist.
    #[error(
        "grant {grant} names peer {peer}, which does not exist (add it with `conduit peer add {peer} --address IP`)"
    )]
    UnknownPeer {
        /// The grant, as text.
        grant: String,
        /// The missing peer.
        peer: Label,
    },
    /// The same grant twice.
    #[error("grant {0} already exists")]
    DuplicateGrant(String),
    /// A method is not an HTTP method token.
    #[error("grant {grant}: {method:?} is not an HTTP method")]
    BadMethod {
        /// The grant, as text.
        grant: String,
        /// The method.
        method: String,
    },
    /// A path prefix does not start with `/` or holds a dot segment.
    #[error("grant {grant}: path {path:?} must start with '/' and hold no '.' or '..' segment")]
    BadPath {
        /// The grant, as text.
        grant: String,
        /// The path.
        path: String,
    },
    /// A WireGuard key is not 32 bytes of base64.
    #[error("peer {peer}: {key:?} is not a WireGuard public key (44 characters of base64)")]
    BadKey {
        /// The peer.
        peer: Label,
        /// The key.
        key: String,
    },
}

impl AccessPolicy {
    /// Checks the whole policy: unique peers, grants naming existing peers, methods and
    /// paths well formed, no grant twice.
    ///
    /// # Errors
    /// The first [`PolicyError`] found.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut names = HashSet::new();
        for p in &self.peers {
            if !names.insert(&p.name) {
                return Err(PolicyError::DuplicatePeer(p.name.clone()));
            }
            if let Some(k) = &p.wg_key
                && !is_wg_key(k)
            {
                return Err(PolicyError::BadKey {
                    peer: p.name.clone(),
                    key: k.clone(),
                });
            }
        }
        let mut grants = HashSet::with_capacity(self.grants.len());
        for g in &self.grants {
            if let Subject::Peer(n) | Subject::Cert(n) = &g.to
                && !names.contains(n)
            {
                return Err(PolicyError::UnknownPeer {
                    grant: g.to_string(),
                    peer: n.clone(),
                });
            }
            if let Some(m) = g.methods.iter().find(|m| !is_token(m)) {
                return Err(PolicyError::BadMethod {
                    grant: g.to_string(),
                    method: m.clone(),
                });
            }
            if let Some(p) = &g.path
                && (!p.starts_with('/') || p.split('/').any(|s| s == "." || s == ".."))
            {
                return Err(PolicyError::BadPath {
                    grant: g.to_string(),
                    path: p.clone(),
                });
            }
            if !grants.insert(g) {
                return Err(PolicyError::DuplicateGrant(g.to_string()));
            }
        }
        Ok(())
    }

    /// The peer of that name.
    pub fn peer(&self, name: &Label) -> Option<&Peer> {
        self.peers.iter().find(|p| &p.name == name)
    }
}

fn is_token(m: &str) -> bool {
    !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

fn is_wg_key(k: &str) -> bool {
    k.len() == 44
        && k.ends_with('=')
        && k[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The policy as stored, with its own revision (bumped by every change; compare-and-swap
/// uses it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredPolicy {
    /// Bumped by every change; 0 before the first.
    pub revision: u64,
    /// The policy.
    #[serde(flatten)]
    pub policy: AccessPolicy,
}

impl StoredPolicy {
    /// `policy` at `revision`.
    pub fn new(revision: u64, policy: AccessPolicy) -> Self {
        Self { revision, policy }
    }
}
