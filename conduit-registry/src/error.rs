//! [`RegistryError`]: everything a registry operation can refuse or fail with.

use std::path::PathBuf;
use std::time::Duration;

use crate::{DomainName, EndpointError, NameError, Revision, ServiceName};

/// The error type of every [`Registry`](crate::Registry) operation.
///
/// Variants name the condition, never a backend type; an implementation outside this crate
/// reports its own failures through [`RegistryError::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A service name or domain broke the DNS rules.
    #[error(transparent)]
    Name(#[from] NameError),
    /// An upstream address is malformed.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A record is structurally invalid (no upstream, bad health check, …).
    #[error("service {name}: {reason}")]
    InvalidRecord {
        /// The service.
        name: ServiceName,
        /// What is wrong, in words.
        reason: String,
    },
    /// An active service already has this name.
    #[error(
        "service {name} is already registered (update it with overwrite, or deregister it first)"
    )]
    AlreadyExists {
        /// The name.
        name: ServiceName,
    },
    /// Another active service already answers at this domain.
    #[error("domain {domain} is already used by service {owner}")]
    DomainTaken {
        /// The domain.
        domain: DomainName,
        /// The active service holding it.
        owner: ServiceName,
    },
    /// No active service has this name.
    #[error("no active service named {name}")]
    NotFound {
        /// The name.
        name: ServiceName,
    },
    /// A conditional update lost a race: the record changed since it was read.
    #[error("service {name} changed concurrently: expected revision {expected}, found {actual}")]
    Conflict {
        /// The service.
        name: ServiceName,
        /// The revision the caller based its change on.
        expected: Revision,
        /// The revision found.
        actual: Revision,
    },
    /// The state file exists but cannot be understood; it is left untouched.
    #[error("{path}: corrupt registry file ({reason}); it was not modified, fix or restore it", path = path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's complaint, with line and column.
        reason: String,
    },
    /// The state file has a schema version this build does not know.
    #[error("{path}: registry schema version {version} is not supported (this build reads 1 and 2); it was not modified", path = path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u64,
    },
    /// Another process held the registry lock for too long.
    #[error("{path}: registry lock still held by another process after {waited:?}", path = path.display())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
    },
    /// An I/O operation on the state files failed.
    #[error("{path}: cannot {op}: {source}", path = path.display())]
    Io {
        /// What was being done (`read`, `write`, `rename`, `lock`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An access policy was refused as a whole (nothing was stored).
    #[error("access policy refused: {0}")]
    InvalidPolicy(#[from] crate::access::PolicyError),
    /// The access policy changed since it was read (compare-and-swap lost).
    #[error(
        "the access policy changed concurrently: expected revision {expected}, found {actual}; read it again and retry"
    )]
    PolicyConflict {
        /// The revision the caller based its change on.
        expected: u64,
        /// The revision found.
        actual: u64,
    },
    /// This backend does not store what was asked for.
    #[error("this registry backend cannot store {what}")]
    Unsupported {
        /// What (`an access policy`).
        what: &'static str,
    },
    /// The shared store (etcd) did not answer: the registry keeps serving what it last
    /// read, and changes are refused until the store answers again. Retrying later helps.
    #[error(
        "the registry store {store} is unreachable ({reason}); the gateway keeps serving what it last read, and changes are refused until the store answers again: retry then"
    )]
    Unavailable {
        /// The store, e.g. `etcd://10.0.0.5:2379/conduit`.
        store: String,
        /// The last failure.
        reason: String,
    },
    /// A background task of the registry stopped (the runtime is shutting down).
    #[error("registry worker stopped: {0}")]
    Worker(String),
    /// A failure inside a registry implementation outside this crate.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl RegistryError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether retrying the same call later may succeed (lock contention, lost races, I/O).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::LockTimeout { .. }
                | Self::Conflict { .. }
                | Self::PolicyConflict { .. }
                | Self::Io { .. }
                | Self::Unavailable { .. }
        )
    }
}
