//! `[dashboard]`: the admin dashboard the gateway serves at `https://NAME.ZONE/`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[dashboard]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DashboardSettings {
    /// Serve it (default on; it needs an HTTPS listener, `[proxy] listen`, and the named
    /// tokens of a state directory to log in with).
    pub enabled: bool,
    /// Its name below the zone (default `conduit`, so `https://conduit.internal/`); no
    /// service may be registered under it.
    pub name: String,
    /// How long a login lasts (default 12 h); a session also ends when its token is revoked.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// Failed logins allowed per client address per minute before it is made to wait
    /// (default 5).
    pub login_attempts_per_minute: u32,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            name: "conduit".to_owned(),
            session_lifetime: Duration::from_secs(12 * 3600),
            login_attempts_per_minute: 5,
        }
    }
}
