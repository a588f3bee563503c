//! # conduit-monitor
//!
//! Conduit's monitoring: hosts, GPUs, containers and remote servers as typed samples.
//!
//! This crate currently defines the [`MetricSource`] trait and [`Sample`]; the sources are the
//! subject of their own issue.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use conduit_monitor::{MetricSource, MonitorError, Sample};
//!
//! #[derive(Debug)]
//! struct Constant;
//! #[async_trait::async_trait]
//! impl MetricSource for Constant {
//!     fn name(&self) -> &str { "constant" }
//!     async fn sample(&self) -> Result<Vec<Sample>, MonitorError> {
//!         Ok(vec![Sample { target: "local".into(), kind: "host".into(), metrics: vec![("load1".into(), 0.5)] }])
//!     }
//! }
//! assert_eq!(Constant.sample().await.unwrap()[0].metrics[0].1, 0.5);
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::fmt;

/// One observation of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// What was sampled (`local`, `gpu-server`, a container name).
    pub target: String,
    /// The kind of sample (`host`, `gpu`, `container`).
    pub kind: String,
    /// Metric name and value pairs, in base units.
    pub metrics: Vec<(String, f64)>,
}

/// Errors of the monitoring subsystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The source could not be read.
    #[error("{source_name} is unavailable: {reason}")]
    Unavailable {
        /// The source.
        source_name: String,
        /// Why.
        reason: String,
    },
}

/// A source of samples.
#[async_trait::async_trait]
pub trait MetricSource: Send + Sync + fmt::Debug {
    /// A short name for logs and labels.
    fn name(&self) -> &str;

    /// Takes one round of samples.
    ///
    /// # Errors
    /// [`MonitorError`] when the source cannot be read.
    async fn sample(&self) -> Result<Vec<Sample>, MonitorError>;
}
