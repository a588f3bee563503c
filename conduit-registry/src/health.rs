//! [`HealthCheck`]: how the proxy checks a service's upstreams, and why a check is
//! refused ([`HealthCheckError`]).

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The active health check of a proxied service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    /// Path requested on each upstream (default `/health`).
    pub path: String,
    /// Time between checks (default 30 s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Time allowed for one check (default 5 s, at most the interval).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failures that mark an upstream down (default 2).
    pub unhealthy_threshold: NonZeroU32,
    /// Consecutive successes that mark it up again (default 1).
    pub healthy_threshold: NonZeroU32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: "/health".to_owned(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            unhealthy_threshold: NonZeroU32::MIN.saturating_add(1),
            healthy_threshold: NonZeroU32::MIN,
        }
    }
}

impl HealthCheck {
    /// The defaults with another path.
    pub fn with_path(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Checks the path and the timings.
    ///
    /// # Errors
    /// [`HealthCheckError`] naming the problem.
    pub fn validate(&self) -> Result<(), HealthCheckError> {
        if !self.path.starts_with('/') {
            return Err(HealthCheckError::PathNotAbsolute(self.path.clone()));
        }
        if self.path.len() > 1024 {
            return Err(HealthCheckError::PathTooLong);
        }
        if let Some(c) = self
            .path
            .chars()
            .find(|c| c.is_whitespace() || c.is_control())
        {
            return Err(HealthCheckError::PathCharacter {
                path: self.path.clone(),
                character: c,
            });
        }
        if self.interval < Duration::from_millis(100) {
            return Err(HealthCheckError::IntervalTooShort(self.interval));
        }
        if self.timeout.is_zero() || self.timeout > self.interval {
            return Err(HealthCheckError::TimeoutOutOfRange {
                timeout: self.timeout,
                interval: self.interval,
            });
        }
        Ok(())
    }
}

/// Why a [`HealthCheck`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HealthCheckError {
    /// The path is not absolute.
    #[error("health path {0:?} must start with '/'")]
    PathNotAbsolute(String),
    /// The path is too long.
    #[error("health path is longer than 1024 characters")]
    PathTooLong,
    /// The path has a space or a control character.
    #[error("health path {path:?} contains {character:?}")]
    PathCharacter {
        /// The path.
        path: String,
        /// The character.
        character: char,
    },
    /// Checks would come too often.
    #[error("health interval {0:?} is shorter than 100ms")]
    IntervalTooShort(Duration),
    /// The timeout is zero or longer than the interval.
    #[error("health timeout {timeout:?} must be positive and at most the interval {interval:?}")]
    TimeoutOutOfRange {
        /// The timeout.
        timeout: Duration,
        /// The interval.
        interval: Duration,
    },
}
