//! The `AuditSink` contract (`conduit_audit::testing`) run against each sink here.

use std::sync::Arc;

use conduit_audit::testing::sink_contract;
use conduit_audit::{AuditLog, CapsuleOptions, CapsuleSink, JsonlOptions, JsonlSink, SealKey};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jsonl_log_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let sink = JsonlSink::open(dir.path().join("audit.log"), JsonlOptions::default()).unwrap();
    sink_contract(Arc::new(sink)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capsule_chain_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let key = SealKey::load_or_create(dir.path()).unwrap();
    let sink = CapsuleSink::open(
        dir.path().join("capsules.db"),
        Some(key),
        CapsuleOptions::default(),
    )
    .unwrap();
    sink_contract(Arc::new(sink)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_and_chain_together_meet_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let key = SealKey::load_or_create(dir.path()).unwrap();
    let log = AuditLog::new(
        JsonlSink::open(dir.path().join("audit.log"), JsonlOptions::default()).unwrap(),
        Some(
            CapsuleSink::open(
                dir.path().join("capsules.db"),
                Some(key),
                CapsuleOptions::default(),
            )
            .unwrap(),
        ),
    );
    sink_contract(Arc::new(log)).await;
}
