//! The contract every [`AuditSink`] must meet, written once and run against each sink in
//! the workspace (the JSONL log, the Capsule chain, the two together, an embedder's own):
//! call [`sink_contract`] on a fresh, empty sink from a tokio test. Panics name the
//! broken promise.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::missing_panics_doc,
    reason = "a test suite: a failed assertion is a failed contract"
)]

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use crate::{AuditEvent, AuditSink, Outcome};

fn event(action: &str, i: usize) -> AuditEvent {
    let d = json!({"i": i, "x": 1e-5 * i as f64, "s": "ü\u{7}𝄞", "nested": {"a": [1, null]}});
    AuditEvent::new(
        action,
        if i.is_multiple_of(7) {
            Outcome::Failure
        } else {
            Outcome::Success
        },
        format!("event {i}"),
        "contract",
        d.as_object().cloned().unwrap_or_default(),
    )
    .unwrap()
}

/// Runs the whole contract against a fresh, empty sink:
/// - every append of a valid event succeeds, sequential and concurrent (64 tasks);
/// - a sealing sink's receipts number the records without gaps or repeats, and a sink that
///   seals reports no seal error;
/// - a sink that gives its history back gives exactly what was appended, each event intact
///   (details, Unicode, outcome), sequential appends in their order.
pub async fn sink_contract(sink: Arc<dyn AuditSink>) {
    let mut sequences = Vec::new();
    let mut sealing = None;
    for i in 0..3 {
        let r = sink.append(event("contract_sequential", i)).await.unwrap();
        assert_eq!(r.seal_error, None, "append {i} was not sealed");
        let sealed = r.sealed.is_some();
        assert!(
            sealing.is_none_or(|s| s == sealed),
            "a sink seals every event or none"
        );
        sealing = Some(sealed);
        if let Some(s) = r.sealed {
            sequences.push(s.sequence);
        }
    }
    let tasks: Vec<_> = (3..67)
        .map(|i| {
            let sink = Arc::clone(&sink);
            tokio::spawn(async move { sink.append(event("contract_concurrent", i)).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.seal_error, None);
        if let Some(s) = r.sealed {
            sequences.push(s.sequence);
        }
    }
    if sealing == Some(true) {
        assert!(
            sequences[..3].windows(2).all(|w| w[0] < w[1]),
            "sequential appends are sealed in order: {sequences:?}"
        );
        let mut sorted = sequences.clone();
        sorted.sort_unstable();
        let first = sorted[0];
        assert_eq!(
            sorted,
            (first..first + 67).collect::<Vec<u64>>(),
            "no gap, no repeat"
        );
    }
    if let Some(history) = sink.history().await.unwrap() {
        assert_eq!(history.len(), 67, "exactly what was appended");
        for (i, e) in history.iter().take(3).enumerate() {
            let want = event("contract_sequential", i);
            assert_eq!(
                (e.action(), e.status(), e.message(), e.user(), e.details()),
                (
                    want.action(),
                    want.status(),
                    want.message(),
                    want.user(),
                    want.details()
                ),
                "sequential append {i} comes back first, in order, intact"
            );
        }
        let messages: HashSet<&str> = history.iter().map(AuditEvent::message).collect();
        for i in 0..67 {
            assert!(
                messages.contains(format!("event {i}").as_str()),
                "event {i} lost"
            );
        }
        let last = history.iter().find(|e| e.message() == "event 66").unwrap();
        assert_eq!(last.details(), event("contract_concurrent", 66).details());
        assert_eq!(last.user(), "contract");
    }
}
