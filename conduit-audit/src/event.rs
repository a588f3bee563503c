//! [`AuditEvent`]: the six-field audit line of the original tool.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Whether the audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed.
    Failure,
}

impl Outcome {
    /// `"success"` or `"failure"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// Why an audit line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// Not a JSON object.
    #[error("audit entry is not a JSON object: {0}")]
    NotAnObject(String),
    /// A required field is absent.
    #[error("audit entry has no {0:?} field")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("audit entry field {field:?} must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The timestamp is not `YYYY-MM-DDTHH:MM:SSZ`.
    #[error("audit entry timestamp {0:?} is not YYYY-MM-DDTHH:MM:SSZ")]
    Timestamp(String),
    /// The status is neither success nor failure.
    #[error("audit entry status {0:?} is neither success nor failure")]
    Status(String),
    /// An empty action or user.
    #[error("audit entry field {0:?} is empty")]
    Empty(&'static str),
    /// A field contains a line break (each entry is one line).
    #[error("audit entry field {0:?} contains a line break")]
    Multiline(&'static str),
}

/// One audited action, compatible with the original tool's JSONL lines:
/// `{"timestamp","action","status","message","user","details"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    timestamp: String,
    action: String,
    status: Outcome,
    message: String,
    user: String,
    details: Map<String, Value>,
}

fn valid_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && time::PrimitiveDateTime::parse(
            &s[..19],
            &time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )
        .is_ok()
}

impl AuditEvent {
    /// An event stamped now.
    ///
    /// # Errors
    /// [`EventError`] for an empty action or user, or a line break in a field.
    pub fn new(
        action: impl Into<String>,
        status: Outcome,
        message: impl Into<String>,
        user: impl Into<String>,
        details: Map<String, Value>,
    ) -> Result<Self, EventError> {
        let now = time::OffsetDateTime::now_utc();
        let fmt =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let timestamp = now.format(&fmt).unwrap_or_default();
        Self::build(
            timestamp,
            action.into(),
            status,
            message.into(),
            user.into(),
            details,
        )
    }

    fn build(
        timestamp: String,
        action: String,
        status: Outcome,
        message: String,
        user: String,
        details: Map<String, Value>,
    ) -> Result<Self, EventError> {
        if !valid_timestamp(&timestamp) {
            return Err(EventError::Timestamp(timestamp));
        }
        for (name, v) in [("action", &action), ("user", &user)] {
            if v.trim().is_empty() {
                return Err(EventError::Empty(name));
            }
        }
        for (name, v) in [("action", &action), ("message", &message), ("user", &user)] {
            if v.contains(['\n', '\r']) {
                return Err(EventError::Multiline(name));
            }
        }
        Ok(Self {
            timestamp,
            action,
            status,
            message,
            user,
            details,
        })
    }

    /// Parses and validates one entry (a JSON object).
    ///
    /// # Errors
    /// [`EventError`] naming the first problem, in field order.
    pub fn from_value(v: &Value) -> Result<Self, EventError> {
        let Value::Object(m) = v else {
            return Err(EventError::NotAnObject(v.to_string()));
        };
        let string = |f: &'static str| -> Result<String, EventError> {
            match m.get(f) {
                None => Err(EventError::Missing(f)),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(EventError::WrongType {
                    field: f,
                    expected: "a string",
                }),
            }
        };
        let timestamp = string("timestamp")?;
        if !valid_timestamp(&timestamp) {
            return Err(EventError::Timestamp(timestamp));
        }
        let action = string("action")?;
        let status = match string("status")?.as_str() {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            other => return Err(EventError::Status(other.to_owned())),
        };
        let message = string("message")?;
        let user = string("user")?;
        let details = match m.get("details") {
            None => return Err(EventError::Missing("details")),
            Some(Value::Object(d)) => d.clone(),
            Some(_) => {
                return Err(EventError::WrongType {
                    field: "details",
                    expected: "an object",
                });
            }
        };
        Self::build(timestamp, action, status, message, user, details)
    }

    /// Parses one JSONL line.
    ///
    /// # Errors
    /// As [`AuditEvent::from_value`], or [`EventError::NotAnObject`] for invalid JSON.
    pub fn from_line(line: &str) -> Result<Self, EventError> {
        let v: Value =
            serde_json::from_str(line).map_err(|e| EventError::NotAnObject(e.to_string()))?;
        Self::from_value(&v)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }
    /// The action (`service_register`, `health_change`, …).
    pub fn action(&self) -> &str {
        &self.action
    }
    /// Success or failure.
    pub fn status(&self) -> Outcome {
        self.status
    }
    /// A one-line description.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Who did it.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// Structured details.
    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }

    /// The event as a JSON object, fields in the original's order.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The JSONL line (compact, raw UTF-8, no trailing newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_line())
    }
}
