//! Samples: what every source produces, as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What a sample describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SampleKind {
    /// A host: CPU, memory, load, uptime, network.
    Host,
    /// One mounted filesystem of a host.
    Disk,
    /// One GPU.
    Gpu,
    /// One process using a GPU.
    GpuProcess,
    /// One container.
    Container,
}

impl SampleKind {
    /// The name used in JSON and in metric names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Disk => "disk",
            Self::Gpu => "gpu",
            Self::GpuProcess => "gpu_process",
            Self::Container => "container",
        }
    }
}

/// One metric's value. Fields a source cannot read are absent, never a sentinel number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A yes/no fact (`running`).
    Bool(bool),
    /// A number in base units (bytes, seconds, ratios 0-1, degrees Celsius, watts).
    Number(f64),
    /// A text (`name`, `uuid`, `state`).
    Text(String),
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Number(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Self::Number(v as f64)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::Number(f64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

/// One observation of one target:
/// `{"timestamp": "…Z", "target": "local", "type": "gpu", "metrics": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was taken (UTC, RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// What was sampled: `local`, a remote server's name.
    pub target: String,
    /// What the sample describes.
    #[serde(rename = "type")]
    pub kind: SampleKind,
    /// Metric name → value; names carry their unit (`memory_used_bytes`, `temperature_celsius`).
    pub metrics: BTreeMap<String, Value>,
}

impl Sample {
    /// An empty sample taken now.
    pub fn new(target: impl Into<String>, kind: SampleKind) -> Self {
        Self {
            timestamp: OffsetDateTime::now_utc(),
            target: target.into(),
            kind,
            metrics: BTreeMap::new(),
        }
    }

    /// Adds a metric (builder style).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.metrics.insert(name.to_owned(), value.into());
        self
    }

    /// Adds a metric when there is a value (absent otherwise).
    pub fn with_opt(mut self, name: &str, value: Option<impl Into<Value>>) -> Self {
        if let Some(v) = value {
            self.metrics.insert(name.to_owned(), v.into());
        }
        self
    }

    /// A number metric.
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.metrics.get(name) {
            Some(Value::Number(n)) => Some(*n),
            _ => None,
        }
    }

    /// A text metric.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.metrics.get(name) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// A yes/no metric.
    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.metrics.get(name) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }
}
