//! # conduit
//!
//! The façade over Conduit's subsystems. Each one is a crate of its own behind a cargo
//! feature, so a program embeds only what it needs (a tunnel agent may take `ca` and
//! `proxy` alone):
//!
//! | feature | module | crate |
//! | --- | --- | --- |
//! | `registry` | [`registry`] | `conduit-registry` |
//! | `dns` | `dns` | `conduit-dns` |
//! | `ca` | `ca` | `conduit-ca` |
//! | `proxy` | `proxy` | `conduit-proxy` |
//! | `monitor` | `monitor` | `conduit-monitor` |
//! | `audit` | `audit` | `conduit-audit` |
//! | `registry` + `audit` | `audited`: `AuditedRegistry`, every registry change audited | |
//! | `gateway` | `gateway` (`Gateway`: the subsystems composed), `config` (`conduit.toml`), `state` (`StateDir`: every path), `api` (the admin API's types), `admin` (its server and client) | registry, dns, ca, proxy, audit, monitor |
//! | `full` | all of the above (and `gpu`, `docker`, `ssh` monitor backends) | |
//!
//! The [`prelude`] re-exports the six subsystem traits under the same features.
//!
//! `Gateway` is the flow a user meets first: a registry change (from any process) becomes a
//! DNS record, a certificate issued and hot-installed, a route with health checks, and audit
//! records — see `gateway` for an example with a temporary state directory.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # #[cfg(feature = "registry")] {
//! use conduit::prelude::*;
//! use conduit::registry::{InMemoryRegistry, ServiceRecord};
//! let reg = InMemoryRegistry::new();
//! reg.register(ServiceRecord::new("grafana".parse()?, "10.0.1.50:3000".parse()?)).await?;
//! assert_eq!(reg.list(Default::default()).await?.len(), 1);
//! # }
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "registry")]
#[cfg_attr(docsrs, doc(cfg(feature = "registry")))]
pub use conduit_registry as registry;

#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub use conduit_dns as dns;

#[cfg(feature = "ca")]
#[cfg_attr(docsrs, doc(cfg(feature = "ca")))]
pub use conduit_ca as ca;

#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub use conduit_proxy as proxy;

#[cfg(feature = "monitor")]
#[cfg_attr(docsrs, doc(cfg(feature = "monitor")))]
pub use conduit_monitor as monitor;

#[cfg(feature = "audit")]
#[cfg_attr(docsrs, doc(cfg(feature = "audit")))]
pub use conduit_audit as audit;

#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod admin;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod api;
#[cfg(all(feature = "registry", feature = "audit"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "registry", feature = "audit"))))]
pub mod audited;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod config;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod events;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod gateway;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod identity;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod limits;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod probe;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod spec;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod state;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod tokens;
#[cfg(feature = "gateway")]
pub use gateway::{Gateway, GatewayConfig, GatewayError, GatewayHandle};

/// The subsystem traits, each under its feature.
pub mod prelude {
    #[cfg(feature = "audit")]
    pub use conduit_audit::AuditSink;
    #[cfg(feature = "ca")]
    pub use conduit_ca::CertIssuer;
    #[cfg(feature = "dns")]
    pub use conduit_dns::Resolver;
    #[cfg(feature = "monitor")]
    pub use conduit_monitor::MetricSource;
    #[cfg(feature = "proxy")]
    pub use conduit_proxy::Upstream;
    #[cfg(feature = "registry")]
    pub use conduit_registry::Registry;
}
