//! # conduit-registry
//!
//! The service registry every other Conduit subsystem follows: DNS answers its names, the CA
//! issues certificates for them, the proxy routes them, the monitor samples their hosts.
//!
//! ```text
//!   register / update / deregister ──► Registry ──► ChangeFeed ──► Watch (dns, proxy, ca, …)
//!                                        │
//!                       InMemoryRegistry │ FileRegistry (services.json, locked, atomic)
//! ```
//!
//! * Vocabulary types, validated on the way in: [`ServiceName`] (one DNS label, upper case
//!   folded), [`DomainName`] (zones and FQDNs), [`Endpoint`] (`[scheme://]host:port`),
//!   [`HealthCheck`], [`ServiceRecord`].
//! * The [`Registry`] trait: register, update (only with an explicit [`Precondition`]),
//!   deregister (a soft delete: history is never lost), get, list, and [`Registry::watch`],
//!   a change stream that resumes from any [`Revision`].
//! * Backends: [`InMemoryRegistry`] and, with the `file` feature, [`FileRegistry`].
//!
//! ## Getting started
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use conduit_registry::{InMemoryRegistry, ListFilter, Registry, Revision, ServiceRecord};
//!
//! let reg = InMemoryRegistry::new();
//! let mut changes = reg.watch(Revision::ZERO);
//!
//! let grafana = ServiceRecord::new("Grafana".parse()?, "10.0.1.50:3000".parse()?);
//! let stored = reg.register(grafana).await?;
//! assert_eq!(stored.domain().as_str(), "grafana.internal");
//! assert_eq!(reg.get(&"grafana".parse()?).await?.map(|r| r.endpoints()[0].port()), Some(3000));
//!
//! reg.deregister(&"grafana".parse()?).await?;
//! assert!(reg.list(ListFilter::Active).await?.is_empty());
//! assert_eq!(reg.list(ListFilter::All).await?.len(), 1); // history is kept
//!
//! assert_eq!(changes.next().await.map(|e| e.revision), Some(Revision(1)));
//! assert_eq!(changes.next().await.map(|e| e.revision), Some(Revision(2)));
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `file` (default): [`FileRegistry`], the crash-safe multi-process `services.json` backend.
//! - `notify` (default): notice other processes' writes through inotify at once; without
//!   it the file is polled.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]
// Loading, absorbing and I/O helpers serve the file backend only.
#![cfg_attr(not(feature = "file"), allow(dead_code))]

pub mod access;
mod cidr;
mod endpoint;
mod engine;
mod error;
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub mod etcd;
#[cfg(feature = "file")]
mod file;
mod follow;
mod health;
mod name;
mod record;
mod registry;
mod revision;
mod snapshot;
mod state;
mod table;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod watch;

pub use cidr::{Cidr, CidrError, canonical_ip};
pub use endpoint::{Endpoint, EndpointError, Host, Scheme};
pub use engine::{Engine, EngineError, EngineOverride};
pub use error::RegistryError;
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub use file::{FileOptions, FileRegistry, SCHEMA_VERSION, SERVICES_FILE, default_config_dir};
pub use follow::RegistryFollower;
pub use health::{HealthCheck, HealthCheckError};
pub use name::{DomainName, MAX_DOMAIN_LEN, MAX_LABEL_LEN, NameError, ServiceName};
pub use record::{MonitorTarget, Routing, ServiceRecord, Status};
pub use registry::{Clock, InMemoryRegistry, ListFilter, Precondition, Registry};
pub use revision::{Revision, Timestamp, TimestampError};
pub use snapshot::Snapshot;
pub use watch::{
    ChangeFeed, ChangeKind, Compactor, DEFAULT_JOURNAL_CAPACITY, RegistryEvent, Watch,
};

/// Hooks for the fuzz targets in `fuzz/`; not part of the stable API.
#[doc(hidden)]
pub mod internal {
    #[cfg(feature = "file")]
    pub use crate::file::fuzz_parse_services_json;
}
