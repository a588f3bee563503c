//! [`GatewayError`]: what can go wrong starting or running a gateway, and whether a retry
//! helps.

use crate::config::ConfigError;

/// Errors of the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration cannot be used (the operator's to fix; a retry does not help).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A part of the state directory cannot be opened.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The admin tokens cannot be read or written.
    #[error(transparent)]
    Tokens(#[from] crate::tokens::TokenError),
    /// The open-file limit cannot be read or raised.
    #[error("cannot raise the open-file limit: {source}")]
    Limits {
        /// Why.
        source: std::io::Error,
    },
    /// The registry could not be opened or read.
    #[error(transparent)]
    Registry(#[from] conduit_registry::RegistryError),
    /// The last-known-good registry snapshot cannot be read, written or trusted.
    #[cfg(feature = "etcd")]
    #[error(transparent)]
    Snapshot(#[from] super::SnapshotError),
    /// A service as given cannot be registered (bad input, or refused by the SSRF policy).
    #[error(transparent)]
    Spec(Box<crate::spec::SpecError>),
    /// A change was stored but its audit record failed (it is audited as recovered at the
    /// next start).
    #[error(transparent)]
    Audited(crate::audited::AuditedError),
    /// The CA could not be loaded or created, or a certificate action failed.
    #[error(transparent)]
    Ca(#[from] conduit_ca::CaError),
    /// The audit log could not be opened or read.
    #[error(transparent)]
    Audit(#[from] conduit_audit::AuditError),
    /// The DNS server could not start.
    #[error(transparent)]
    Dns(#[from] conduit_dns::DnsError),
    /// The proxy could not start.
    #[error(transparent)]
    Proxy(#[from] conduit_proxy::ProxyError),
    /// The monitor could not be set up.
    #[error(transparent)]
    Monitor(#[from] conduit_monitor::MonitorError),
    /// The admin socket could not be bound.
    #[error("admin listener {address}: {source}")]
    Admin {
        /// The socket path or TCP address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// A TLS client for outgoing connections (witnesses, Alertmanager) cannot be built.
    #[error("TLS to the {what}: {source}")]
    TlsClient {
        /// For what.
        what: &'static str,
        /// Why.
        source: rustls::Error,
    },
    /// A witnessed checkpoint was refused or could not be stored.
    #[error(transparent)]
    Witness(#[from] super::witnessed::WitnessError),
    /// An access-policy change was refused (an unknown peer or grant, a peer still named by
    /// grants, an invalid policy) or could not be stored.
    #[error(transparent)]
    Policy(#[from] crate::audited::PolicyChangeError),
    /// A request's input is malformed (the caller's to fix).
    #[error("{what}: {reason}")]
    BadRequest {
        /// Which input.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Not available from this gateway (it was composed without that part).
    #[error("{what} is not available here")]
    Unavailable {
        /// What.
        what: &'static str,
    },
    /// A background task of ours failed (a bug: report it).
    #[error("internal error: the {what} task failed: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why.
        source: tokio::task::JoinError,
    },
}

impl GatewayError {
    /// Whether the same call may succeed later without anybody changing anything (the
    /// store was busy, a file was locked); `false` for configuration and input errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Registry(e) => e.is_transient(),
            Self::State(e) => e.is_retryable(),
            Self::Audited(_) => true,
            Self::Policy(crate::audited::PolicyChangeError::Registry(e)) => e.is_transient(),
            Self::Policy(crate::audited::PolicyChangeError::NotAudited { .. }) => true,
            Self::Audit(_) | Self::Admin { .. } => true,
            _ => false,
        }
    }
}

impl From<crate::spec::SpecError> for GatewayError {
    fn from(e: crate::spec::SpecError) -> Self {
        Self::Spec(Box::new(e))
    }
}
