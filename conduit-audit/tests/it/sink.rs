//! The sinks end to end: concurrency and group commit, no key, the JSONL reader and
//! follower, checkpoints, a mixed Rust + Python chain, tampering (proptest), kill -9.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use conduit_audit::{
    AuditEvent, AuditLog, AuditSink, CapsuleOptions, CapsuleSink, CapsuleStore, FsyncPolicy,
    JsonlOptions, JsonlSink, Level, LogFilter, LogFollower, Outcome, SealKey, read_log,
};
use proptest::prelude::*;
use serde_json::json;

pub(crate) fn event(action: &str, i: usize) -> AuditEvent {
    let d = json!({"i": i, "x": 1e-5 * i as f64, "neg": -0.0, "s": "ü\u{7}𝄞"});
    AuditEvent::new(
        action,
        Outcome::Success,
        format!("event {i}"),
        "admin",
        d.as_object().unwrap().clone(),
    )
    .unwrap()
}

fn log_in(dir: &Path, key: Option<SealKey>) -> AuditLog {
    AuditLog::new(
        JsonlSink::open(dir.join("audit.log"), JsonlOptions::default()).unwrap(),
        Some(CapsuleSink::open(dir.join("capsules.db"), key, CapsuleOptions::default()).unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_logged_and_sealed_in_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let key = SealKey::load_or_create(dir.path()).unwrap();
    let public = key.public_hex();
    let log = Arc::new(log_in(dir.path(), Some(key)));
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.append(event("service_register", i)).await.unwrap() })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.seal_error, None);
        seqs.push(r.sealed.unwrap().sequence);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..300).collect::<Vec<u64>>());
    let (events, bad) = read_log(&dir.path().join("audit.log"), &LogFilter::default()).unwrap();
    assert_eq!((events.len(), bad.len()), (300, 0));
    let r = CapsuleStore::open(dir.path().join("capsules.db"))
        .unwrap()
        .verify(Level::Signatures, Some(&public))
        .unwrap();
    assert!(r.valid, "{:?}", r.errors);
    assert_eq!(r.total_capsules, 300);
}

#[tokio::test]
async fn without_a_key_the_jsonl_log_goes_on_and_the_failure_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path(), None);
    let r = log.append(event("service_register", 1)).await.unwrap();
    assert_eq!(r.sealed, None);
    assert_eq!(
        r.seal_error.as_deref(),
        Some("no seal key: the event was not sealed")
    );
    let (events, _) = read_log(&dir.path().join("audit.log"), &LogFilter::default()).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        CapsuleStore::open(dir.path().join("capsules.db"))
            .unwrap()
            .len()
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_log_never_interleave_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut each = JsonlOptions::default();
    each.fsync = FsyncPolicy::EachWrite;
    let a = JsonlSink::open(&path, each).unwrap();
    let b = JsonlSink::open(&path, JsonlOptions::default()).unwrap();
    let long = "y".repeat(8000);
    let ta = tokio::spawn(async move {
        for i in 0..100 {
            a.append(event(&format!("a{}", &long[..10]), i))
                .await
                .unwrap();
        }
    });
    let tb = tokio::spawn(async move {
        for i in 0..100 {
            b.append(event("b", i)).await.unwrap();
        }
    });
    ta.await.unwrap();
    tb.await.unwrap();
    let (events, bad) = read_log(&path, &LogFilter::default()).unwrap();
    assert_eq!((events.len(), bad.len()), (200, 0));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_filters_and_follower_sees_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    std::fs::write(
        &path,
        concat!(
            r#"{"timestamp":"2026-04-04T10:00:00Z","action":"setup","status":"success","message":"m","user":"u","details":{}}"#,
            "\n",
            "not json\n",
            r#"{"timestamp":"2026-04-05T10:00:00Z","action":"service_register","status":"failure","message":"m","user":"u","details":{"a":1}}"#,
            "\n",
            r#"{"timestamp":"2026-04-06T10:00:00Z","action":"service_register","status":"success","message":"m","user":"u","details":{}}"#,
            "\n"
        ),
    )
    .unwrap();
    let all = read_log(&path, &LogFilter::default()).unwrap();
    assert_eq!(all.0.len(), 3);
    assert_eq!(all.1.len(), 1);
    assert_eq!(all.1[0].line, 2);
    let mut f = LogFilter::default();
    f.action = Some("service_register".into());
    f.since = Some("2026-04-06T00:00:00Z".into());
    let got = read_log(&path, &f).unwrap().0;
    assert_eq!(
        got.iter().map(AuditEvent::timestamp).collect::<Vec<_>>(),
        ["2026-04-06T10:00:00Z"]
    );
    let mut f = LogFilter::default();
    f.limit = Some(2);
    assert_eq!(
        read_log(&path, &f).unwrap().0[0].timestamp(),
        "2026-04-05T10:00:00Z"
    );

    let mut follower = LogFollower::from_end(&path, LogFilter::default()).unwrap();
    let sink = JsonlSink::open(&path, JsonlOptions::default()).unwrap();
    sink.append(event("health_change", 7)).await.unwrap();
    let batch = tokio::time::timeout(std::time::Duration::from_secs(5), follower.next_batch())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        batch.iter().map(AuditEvent::action).collect::<Vec<_>>(),
        ["health_change"]
    );
}

#[test]
fn checkpoints_catch_truncation_and_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let key = SealKey::load_or_create(dir.path()).unwrap();
    let db = dir.path().join("capsules.db");
    let mut store = CapsuleStore::open(&db).unwrap();
    assert_eq!(store.checkpoint(&key).unwrap(), None);
    let evs: Vec<_> = (0..10).map(|i| event("x", i)).collect();
    store.append(&evs, &key).unwrap();
    let cp = store.checkpoint(&key).unwrap().unwrap();
    assert_eq!(cp.sequence, 9);
    let exported = serde_json::to_string(&cp).unwrap();
    let cp: conduit_audit::Checkpoint = serde_json::from_str(&exported).unwrap();
    assert_eq!(store.verify_checkpoint(&cp).unwrap(), Ok(()));
    // more appends are fine
    store.append(&evs[..2], &key).unwrap();
    assert_eq!(store.verify_checkpoint(&cp).unwrap(), Ok(()));
    // a forged checkpoint is refused
    let mut forged = cp.clone();
    forged.sequence = 3;
    assert!(
        store
            .verify_checkpoint(&forged)
            .unwrap()
            .unwrap_err()
            .to_string()
            .starts_with("checkpoint signature")
    );
    // deleting the tail: the reference's --full still passes, the checkpoint does not
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM capsules WHERE sequence >= 8", [])
        .unwrap();
    assert!(store.verify(Level::Full, None).unwrap().valid);
    assert_eq!(
        store.verify_checkpoint(&cp).unwrap(),
        Err(conduit_audit::CheckpointFailure::Truncated {
            records: 8,
            sequence: 9,
            missing: 2,
        })
    );
}

fn capsule_cli() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("capsule"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install the reference verifier (capsule)"
        );
        eprintln!(
            "skipping: the reference `capsule` CLI is not installed (scripts/test.sh installs it)"
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_chain_rust_then_python_then_rust_verifies_in_both() {
    let Some(capsule) = capsule_cli() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = SealKey::load_or_create(dir.path()).unwrap();
    let public = key.public_hex();
    let db = dir.path().join("capsules.db");
    let mut store = CapsuleStore::open(&db).unwrap();
    store
        .append(&(0..5).map(|i| event("rust", i)).collect::<Vec<_>>(), &key)
        .unwrap();
    drop(store);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/capsule-reference.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "append",
            db.to_str().unwrap(),
            dir.path().to_str().unwrap(),
            "5",
        ])
        .env("QUANTUMPIPES_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut store = CapsuleStore::open(&db).unwrap();
    store.append(&[event("rust-again", 99)], &key).unwrap();
    let ours = store.verify(Level::Signatures, Some(&public)).unwrap();
    assert!(ours.valid, "{:?}", ours.errors);
    assert_eq!(ours.total_capsules, 11);
    let out = Command::new(&capsule)
        .args([
            "verify",
            "--db",
            db.to_str().unwrap(),
            "--pubkey",
            &public,
            "--json",
        ])
        .env("QUANTUMPIPES_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any appended sequence verifies; flipping any byte of any row's data, hash or signature
    /// fails verification at exactly that row.
    #[test]
    fn any_chain_verifies_and_any_flipped_byte_fails_at_its_row(
        n in 1usize..12,
        row_pick in any::<prop::sample::Index>(),
        col in 0usize..3,
        byte_pick in any::<prop::sample::Index>(),
        bit in 0u8..7,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let key = SealKey::load_or_create(dir.path()).unwrap();
        let db = dir.path().join("capsules.db");
        let mut store = CapsuleStore::open(&db).unwrap();
        let evs: Vec<_> = (0..n).map(|i| event("p", i)).collect();
        store.append(&evs, &key).unwrap();
        prop_assert!(store.verify(Level::Signatures, Some(&key.public_hex())).unwrap().valid);

        let row = row_pick.index(n) as i64;
        let column = ["data", "hash", "signature"][col];
        let conn = rusqlite::Connection::open(&db).unwrap();
        let text: String = conn.query_row(&format!("SELECT {column} FROM capsules WHERE sequence = ?1"), [row], |r| r.get(0)).unwrap();
        let mut bytes = text.into_bytes();
        // flip one low bit of an ASCII byte (keeps the text valid UTF-8): step back from a
        // byte inside a multi-byte character to the ASCII byte before it
        let mut at = byte_pick.index(bytes.len());
        while bytes[at] >= 0x80 {
            at -= 1;
        }
        bytes[at] ^= 1 << bit;
        let changed = String::from_utf8(bytes).unwrap();
        conn.execute(&format!("UPDATE capsules SET {column} = ?1 WHERE sequence = ?2"), rusqlite::params![changed, row]).unwrap();
        let r = store.verify(Level::Signatures, Some(&key.public_hex())).unwrap();
        prop_assert!(!r.valid);
        prop_assert_eq!(r.errors[0].sequence, row as u64, "{:?}", r.errors);
    }
}

/// Child process: seals events in a burst forever, printing `ack SEQ` after each commit.
#[test]
#[ignore = "child process of the kill -9 test; it starts it itself"]
fn child() {
    let Ok(dir) = std::env::var("CONDUIT_AUDIT_CHILD_DIR") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = Path::new(&dir);
    let log = log_in(dir, Some(SealKey::load_or_create(dir).unwrap()));
    let pid = std::process::id();
    rt.block_on(async {
        for i in 0.. {
            let d = json!({"i": i});
            let msg = format!("burst {pid}-{i}");
            let ev = AuditEvent::new(
                "burst",
                Outcome::Success,
                msg.clone(),
                "admin",
                d.as_object().unwrap().clone(),
            )
            .unwrap();
            let r = log.append(ev).await.unwrap();
            println!("ack {} {msg}", r.sealed.unwrap().sequence);
        }
    });
}

#[test]
fn kill_9_during_a_burst_keeps_a_valid_chain_with_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let key = SealKey::load_or_create(dir.path()).unwrap();
    // (sequence, message) of every acknowledged event
    let mut acked: Vec<(u64, String)> = Vec::new();
    let parse = |line: &str| -> Option<(u64, String)> {
        let (seq, msg) = line.strip_prefix("ack ")?.split_once(' ')?;
        Some((seq.parse().ok()?, msg.to_owned()))
    };
    for round in 0..8usize {
        let mut k = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sink::child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env("CONDUIT_AUDIT_CHILD_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(k.stdout.take().unwrap()).lines();
        let want = 3 + round * 5;
        let mut here = 0;
        for line in lines.by_ref() {
            if let Some(a) = parse(&line.unwrap()) {
                acked.push(a);
                here += 1;
                if here >= want {
                    break;
                }
            }
        }
        k.kill().unwrap(); // SIGKILL, somewhere in the next append
        acked.extend(lines.map_while(Result::ok).filter_map(|l| parse(&l)));
        k.wait().unwrap();

        let store = CapsuleStore::open(dir.path().join("capsules.db")).unwrap();
        let r = store
            .verify(Level::Signatures, Some(&key.public_hex()))
            .unwrap();
        assert!(r.valid, "round {round}: {:?}", r.errors);
        let (events, bad) = read_log(&dir.path().join("audit.log"), &LogFilter::default()).unwrap();
        for (seq, msg) in &acked {
            assert!(
                *seq < r.total_capsules,
                "round {round}: sealed event {seq} lost"
            );
            assert!(
                events.iter().any(|e| e.message() == msg),
                "round {round}: logged event {msg:?} lost"
            );
        }
        // a line cut by the kill is reported, never fatal; at most one per round
        assert!(bad.len() <= round + 1);
    }
    assert!(acked.len() >= (0..8).map(|r| 3 + r * 5).sum::<usize>());
}

#[tokio::test]
async fn a_torn_last_line_never_swallows_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let good = event("setup", 0).to_line();
    // a writer killed mid-line
    std::fs::write(&path, format!("{good}\n{{\"timestamp\":\"2026-0")).unwrap();
    let sink = JsonlSink::open(&path, JsonlOptions::default()).unwrap();
    sink.append(event("after_crash", 1)).await.unwrap();
    let (events, bad) = read_log(&path, &LogFilter::default()).unwrap();
    assert_eq!(
        events.iter().map(AuditEvent::action).collect::<Vec<_>>(),
        ["setup", "after_crash"]
    );
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].line, 2);
}
