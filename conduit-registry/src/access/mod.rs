//! Who may reach what: peers, grants, and the [`Evaluator`] the proxy, DNS and
//! `conduit access check` share.
//!
//! The policy ([`AccessPolicy`]) lives in the registry's store beside the services
//! ([`Registry::access_policy`](crate::Registry::access_policy)), so every gateway of a
//! site applies the same one. Identity comes from the transport only: the connection's
//! source address (on a WireGuard interface, bound to the peer's key) and a client
//! certificate verified against the site's CA.
//!
//! ```
//! use conduit_registry::access::{AccessPolicy, Client, DefaultRule, Evaluator, Grant, Label, Peer};
//!
//! let mut alice = Peer::new(Label::new("peer name", "alice")?);
//! alice.addresses.push("10.8.0.2".parse()?);
//! let mut policy = AccessPolicy::default();
//! policy.peers.push(alice);
//! policy.grants.push(Grant::new("ollama".parse()?, "peer:alice".parse()?).methods(["POST"]).path("/api/generate"));
//! policy.validate()?;
//!
//! let eval = Evaluator::new(&policy, DefaultRule::Deny, 1);
//! let ollama = "ollama".parse()?;
//! let alice_ip = Client::from_ip("10.8.0.2".parse()?);
//! assert!(eval.decide(alice_ip, &ollama, "POST", "/api/generate").allowed);
//! assert!(!eval.decide(alice_ip, &ollama, "DELETE", "/api/delete").allowed);
//! assert!(!eval.decide(Client::from_ip("10.8.0.3".parse()?), &ollama, "POST", "/api/generate").allowed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod eval;
mod index;
mod path;
mod policy;

pub use eval::{Client, Decision, DefaultRule, Evaluator, Reason};
pub use path::percent_decode;
pub use policy::{
    AccessPolicy, Grant, Label, Peer, PeerCert, PolicyError, StoredPolicy, Subject, SubjectError,
};

/// The stored policy now and each later one ([`Registry::watch_access_policy`](crate::Registry::watch_access_policy)).
pub type PolicyWatch = tokio::sync::watch::Receiver<std::sync::Arc<StoredPolicy>>;
