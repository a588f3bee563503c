//! The sealed SQLite chain: append, verify at three levels, tamper detection, and the
//! reference verifier when it is installed.

use conduit_audit::{AuditEvent, CapsuleStore, Level, Outcome, SealKey};
use serde_json::json;

fn event(i: usize) -> AuditEvent {
    let details = json!({"name": format!("svc-{i}"), "port": 3000 + i, "ratio": 0.5 + i as f64, "tls": true, "note": "é😀\u{1}"});
    AuditEvent::new(
        "service_register",
        Outcome::Success,
        format!("Registered svc-{i}"),
        "admin",
        details.as_object().unwrap().clone(),
    )
    .unwrap()
}

fn sealed_db(n: usize) -> (tempfile::TempDir, SealKey) {
    let dir = tempfile::tempdir().unwrap();
    let key = SealKey::load_or_create(dir.path()).unwrap();
    let mut store = CapsuleStore::open(dir.path().join("capsules.db")).unwrap();
    let events: Vec<AuditEvent> = (0..n).map(event).collect();
    // two transactions: a group and single appends
    let first = store.append(&events[..n / 2], &key).unwrap();
    assert_eq!(first.first().map(|s| s.sequence), Some(0));
    for e in &events[n / 2..] {
        store.append(std::slice::from_ref(e), &key).unwrap();
    }
    assert_eq!(store.len().unwrap(), n as u64);
    (dir, key)
}

#[test]
fn appended_chain_verifies_at_every_level() {
    let (dir, key) = sealed_db(20);
    let store = CapsuleStore::open(dir.path().join("capsules.db")).unwrap();
    for level in [Level::Structural, Level::Full, Level::Signatures] {
        let r = store.verify(level, Some(&key.public_hex())).unwrap();
        assert!(r.valid, "{level:?}: {:?}", r.errors);
        assert_eq!((r.capsules_verified, r.total_capsules), (20, 20));
    }
    // key is reloaded, not regenerated
    assert_eq!(
        SealKey::load_or_create(dir.path()).unwrap().public_hex(),
        key.public_hex()
    );
}

#[test]
fn tampering_is_found_at_the_right_sequence() {
    let (dir, key) = sealed_db(10);
    let db = dir.path().join("capsules.db");
    let conn = rusqlite_conn(&db);
    conn.execute(
        "UPDATE capsules SET data = replace(data, 'svc-6', 'svc-X') WHERE sequence = 6",
        [],
    )
    .unwrap();
    let store = CapsuleStore::open(&db).unwrap();
    let structural = store.verify(Level::Structural, None).unwrap();
    assert!(
        structural.valid,
        "structural does not read content, like the reference"
    );
    let full = store.verify(Level::Full, None).unwrap();
    assert_eq!(full.capsules_verified, 6);
    assert_eq!(full.errors[0].error, "Content hash mismatch at sequence 6");

    // a forged signature with a correct hash
    let (dir, key2) = sealed_db(5);
    let db = dir.path().join("capsules.db");
    let conn = rusqlite_conn(&db);
    let sig: String = conn
        .query_row(
            "SELECT signature FROM capsules WHERE sequence = 3",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { '1' } else { '0' },
        &sig[1..]
    );
    conn.execute(
        "UPDATE capsules SET signature = ?1 WHERE sequence = 3",
        [flipped],
    )
    .unwrap();
    let store = CapsuleStore::open(&db).unwrap();
    assert!(store.verify(Level::Full, None).unwrap().valid);
    let r = store
        .verify(Level::Signatures, Some(&key2.public_hex()))
        .unwrap();
    assert_eq!(
        r.errors[0].error,
        "Signature verification failed at sequence 3: invalid signature"
    );
    // the wrong key fails at the genesis
    let r = store
        .verify(Level::Signatures, Some(&key.public_hex()))
        .unwrap();
    assert_eq!(r.capsules_verified, 0);
}

fn rusqlite_conn(p: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(p).unwrap()
}

/// The reference verifier (PyPI qp-capsule 1.5.4, installed by scripts/test.sh) accepts a
/// chain written by Rust at --full and with --pubkey, and rejects a tampered copy.
#[test]
fn reference_verifier_accepts_our_chain_and_rejects_tampering() {
    let Some(capsule) = which("capsule") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install the reference verifier (capsule)"
        );
        eprintln!(
            "skipping: the reference `capsule` CLI is not installed (scripts/test.sh installs it)"
        );
        return;
    };
    let (dir, key) = sealed_db(12);
    let db = dir.path().join("capsules.db");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&capsule)
            .args(args)
            .env("QUANTUMPIPES_DATA_DIR", dir.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let db_s = db.to_str().unwrap();
    let (rc, out) = run(&["verify", "--db", db_s, "--full", "--json"]);
    assert_eq!(rc, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["valid"].as_bool(), v["total_capsules"].as_u64()),
        (Some(true), Some(12))
    );
    let (rc, out) = run(&[
        "verify",
        "--db",
        db_s,
        "--pubkey",
        &key.public_hex(),
        "--json",
    ]);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = run(&["verify", "--db", db_s, "--signatures", "--json"]);
    assert_eq!(rc, 0, "keyring.json is read by the reference: {out}");

    rusqlite_conn(&db)
        .execute(
            "UPDATE capsules SET data = replace(data, 'svc-4', 'svc-Y') WHERE sequence = 4",
            [],
        )
        .unwrap();
    let (rc, out) = run(&["verify", "--db", db_s, "--full", "--json"]);
    assert_eq!(rc, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["errors"][0]["error"],
        "Content hash mismatch at sequence 4"
    );
    let ours = CapsuleStore::open(&db)
        .unwrap()
        .verify(Level::Full, None)
        .unwrap();
    assert_eq!(
        ours.errors[0].error,
        v["errors"][0]["error"].as_str().unwrap()
    );
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(cmd))
        .find(|p| p.is_file())
}
