//! The contract every [`MetricSource`] must meet, written once and run against each
//! source in the workspace (this host, containers through podman, a server over SSH, GPUs
//! through NVML, an embedder's own): call [`source_contract`] from a test. Panics name the
//! broken promise.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::missing_panics_doc,
    reason = "a test suite: a failed assertion is a failed contract"
)]

use crate::{MetricSource, Value};

/// Runs the whole contract: the source has a short printable name; two rounds in a row
/// both succeed (a source with nothing to report returns no samples, not an error); every
/// sample names its target, was taken within the last minute, and its metrics have
/// `lower_snake_case` names and finite numbers.
pub async fn source_contract(source: &dyn MetricSource) {
    let name = source.name();
    assert!(
        !name.is_empty() && name.len() <= 128 && !name.chars().any(char::is_control),
        "a short printable name: {name:?}"
    );
    for round in 0..2 {
        let samples = source
            .sample()
            .await
            .unwrap_or_else(|e| panic!("{name}: round {round} failed: {e}"));
        let now = time::OffsetDateTime::now_utc();
        for s in &samples {
            assert!(!s.target.is_empty(), "{name}: a sample without a target");
            let age = now - s.timestamp;
            assert!(
                age >= -time::Duration::seconds(5) && age <= time::Duration::minutes(1),
                "{name}: sample of {} taken {age} ago",
                s.target
            );
            for (metric, value) in &s.metrics {
                assert!(
                    !metric.is_empty()
                        && metric
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name}: metric name {metric:?} is not lower_snake_case"
                );
                if let Value::Number(n) = value {
                    assert!(n.is_finite(), "{name}: {metric} = {n}");
                }
            }
        }
    }
}
