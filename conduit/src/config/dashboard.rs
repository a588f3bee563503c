//! `[dashboard]`: the admin dashboard the gateway serves at `https://NAME.ZONE/`.

use std::time::Duration;

use conduit_registry::DomainName;
use serde::{Deserialize, Serialize};

use super::ConfigError;

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

impl DashboardSettings {
    /// Its name below `zone` while it is enabled (`None` also for a name that is not a DNS
    /// label: [`validate`](Self::validate) says so).
    pub fn domain(&self, zone: &DomainName) -> Option<DomainName> {
        if !self.enabled {
            return None;
        }
        format!("{}.{zone}", self.name).parse().ok()
    }

    /// Checks the section (nothing, when it is disabled); the error names the key.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a name that is not a DNS label, a session shorter than
    /// a minute, or no login attempt allowed.
    pub fn validate(&self, zone: &DomainName, origin: &str) -> Result<(), Box<ConfigError>> {
        if !self.enabled {
            return Ok(());
        }
        let bad =
            |key: &str, problem: String| Err(Box::new(ConfigError::invalid(origin, key, problem)));
        let name = &self.name;
        if conduit_registry::ServiceName::new(name).is_err() || self.domain(zone).is_none() {
            return bad(
                "dashboard.name",
                format!("{name:?} is not a DNS label (letters, digits and '-', such as `conduit`)"),
            );
        }
        if self.session_lifetime < Duration::from_secs(60) {
            return bad(
                "dashboard.session_lifetime",
                "must be at least 1m".to_owned(),
            );
        }
        if self.login_attempts_per_minute == 0 {
            return bad(
                "dashboard.login_attempts_per_minute",
                "must be at least 1 (set `[dashboard] enabled = false` to turn logins off)"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(d: &DashboardSettings) -> Option<(String, String)> {
        match d
            .validate(&DomainName::internal(), "conduit.toml")
            .map_err(|e| *e)
        {
            Ok(()) => None,
            Err(ConfigError::Invalid { key, problem, .. }) => Some((key, problem)),
            Err(other) => Some(("?".into(), other.to_string())),
        }
    }

    #[test]
    fn each_setting_is_checked_and_named() {
        let mut d = DashboardSettings::default();
        assert_eq!(problem(&d), None);
        assert_eq!(
            d.domain(&DomainName::internal()).map(|n| n.to_string()),
            Some("conduit.internal".to_owned())
        );
        d.name = "not a label".into();
        assert_eq!(
            problem(&d).map(|(k, _)| k).as_deref(),
            Some("dashboard.name")
        );
        d.enabled = false;
        assert_eq!(problem(&d), None, "a disabled dashboard is not checked");
        assert_eq!(d.domain(&DomainName::internal()), None);
        let d = DashboardSettings {
            session_lifetime: Duration::from_secs(30),
            ..DashboardSettings::default()
        };
        assert_eq!(
            problem(&d),
            Some((
                "dashboard.session_lifetime".into(),
                "must be at least 1m".into()
            ))
        );
        let d = DashboardSettings {
            login_attempts_per_minute: 0,
            ..DashboardSettings::default()
        };
        assert_eq!(
            problem(&d).map(|(k, _)| k).as_deref(),
            Some("dashboard.login_attempts_per_minute")
        );
    }
}
