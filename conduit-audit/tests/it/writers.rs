//! Sealing pipelined with other writers on the same chain.

use std::sync::Arc;

use conduit_audit::{CapsuleOptions, CapsuleSink, CapsuleStore, Level, SealKey};

use crate::sink::event;

/// The sink prepares each batch on the head the batch before will leave; another writer on
/// the same file between them makes that head wrong, and the batch is sealed again on the
/// real one: one valid chain, every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_between_prepared_batches_leaves_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capsules.db");
    let key = SealKey::load_or_create(dir.path()).unwrap();
    let public = key.public_hex();
    let sink = Arc::new(CapsuleSink::open(&db, Some(key), CapsuleOptions::default()).unwrap());
    let other_db = db.clone();
    let other_key = SealKey::load_or_create(dir.path()).unwrap();
    let other = std::thread::spawn(move || {
        let mut store = CapsuleStore::open(&other_db).unwrap();
        for i in 0..100 {
            store
                .append(&[event("other_writer", i)], &other_key)
                .unwrap();
        }
    });
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let sink = Arc::clone(&sink);
            tokio::spawn(async move { sink.seal(event("service_register", i)).await.unwrap() })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().sequence);
    }
    other.join().unwrap();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 400, "a sequence was given twice");
    let r = CapsuleStore::open(&db)
        .unwrap()
        .verify(Level::Signatures, Some(&public))
        .unwrap();
    assert!(r.valid, "{:?}", r.errors);
    assert_eq!(r.total_capsules, 500);
}
