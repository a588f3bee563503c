//! [`GatewayConfig`]: where a gateway's state is, its configuration, who its own audit
//! records name.

use std::path::PathBuf;

use crate::config::ConduitConfig;
use crate::state::StateDir;

/// Everything a gateway is started with: where its state is, its configuration, who its
/// own audit records name.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// The state directory: where the builder opens the parts it was not given (the
    /// registry, the CA, the audit log), and where the admin socket goes by default. `None`
    /// for a gateway composed entirely of its own parts.
    pub state: Option<StateDir>,
    /// The configuration (`conduit.toml` with its overrides).
    pub settings: ConduitConfig,
    /// Where `settings` came from, for error messages (`/etc/conduit/conduit.toml`).
    pub origin: String,
    /// The user named in the gateway's own audit records.
    pub audit_user: String,
}

impl GatewayConfig {
    /// The defaults for a state directory (zone `internal`, DNS on 127.0.0.1:5353, HTTPS on
    /// 127.0.0.1:8443, plain HTTP on 127.0.0.1:8080, advertising 127.0.0.1).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_settings(StateDir::new(dir), ConduitConfig::default(), "defaults")
    }

    /// A state directory with a configuration read elsewhere.
    pub fn with_settings(state: StateDir, settings: ConduitConfig, origin: &str) -> Self {
        Self {
            state: Some(state),
            settings,
            origin: origin.to_owned(),
            audit_user: "conduit".to_owned(),
        }
    }

    /// A configuration for a gateway made of given parts, with no state directory (no admin
    /// socket unless `[admin] socket` names one).
    pub fn without_state(settings: ConduitConfig, origin: &str) -> Self {
        Self {
            state: None,
            settings,
            origin: origin.to_owned(),
            audit_user: "conduit".to_owned(),
        }
    }

    /// The admin socket: `[admin] socket`, else the state directory's.
    pub fn admin_socket(&self) -> Option<PathBuf> {
        self.settings
            .admin
            .socket
            .clone()
            .or_else(|| self.state.as_ref().map(StateDir::admin_socket))
    }
}
