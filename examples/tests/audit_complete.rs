//! No change without its audit record, no audit line the chain does not vouch for (real
//! processes, loopback only, every loop bounded).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code driving real processes in real time, no runtime"
)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use conduit::audit::{LogFilter, read_log};
use conduit::registry::{FileRegistry, ListFilter, Registry as _};
use conduit_test_support::process::{Killed, free_port, ok, wait_until};

fn conduit(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_conduit"));
    c.arg("--dir").arg(dir).env("RUST_LOG", "error");
    c
}

/// Starts the gateway on free ports, waits until it serves, stops it.
fn start_and_stop(dir: &Path) {
    let mut c = conduit(dir);
    c.arg("serve")
        .arg(format!("--dns-listen=127.0.0.1:{}", free_port()))
        .arg(format!("--https-listen=127.0.0.1:{}", free_port()))
        .arg("--no-http")
        .stdout(Stdio::null());
    let gw = Killed(c.spawn().unwrap());
    wait_until(Duration::from_secs(15), || dir.join("admin.sock").exists());
    Command::new("kill")
        .arg(gw.0.id().to_string())
        .status()
        .unwrap();
    let mut gw = gw;
    assert!(gw.0.wait().unwrap().success());
}

/// (name, revision) of every audited registry change.
fn audited(dir: &Path) -> HashSet<(String, u64)> {
    let (events, bad) = read_log(&dir.join("audit.log"), &LogFilter::default()).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    events
        .iter()
        .filter(|e| {
            matches!(
                e.action(),
                "service_register" | "service_deregister" | "registry_recovered"
            )
        })
        .filter_map(|e| {
            Some((
                e.details().get("name")?.as_str()?.to_owned(),
                e.details().get("revision")?.as_u64()?,
            ))
        })
        .collect()
}

fn registry_revisions(dir: &Path) -> Vec<(String, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        FileRegistry::open(dir)
            .unwrap()
            .list(ListFilter::All)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.name().as_str().to_owned(), r.revision().0))
            .collect()
    })
}

#[test]
fn kill_9_during_registrations_leaves_every_revision_audited_after_restart() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("conduit");
    ok(conduit(&dir).arg("setup").output().unwrap());
    // 40 registrations, each killed after 0-39 ms: some before they store anything, some
    // between the registry write and the audit record, some after.
    let mut seed: u64 = 0x9e37_79b9;
    for i in 0..40 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let delay = (seed >> 33) % 40;
        let mut child = conduit(&dir)
            .args([
                "register",
                "--name",
                &format!("svc{i}"),
                "--upstream",
                "10.0.1.5:8080",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    let stored = registry_revisions(&dir);
    let before = audited(&dir);
    let unaudited = stored.iter().filter(|r| !before.contains(r)).count();
    eprintln!(
        "{} of 40 stored, {unaudited} of them without an audit record before the restart",
        stored.len()
    );
    start_and_stop(&dir);
    let after = audited(&dir);
    for r in &stored {
        assert!(after.contains(r), "{r:?} is not audited after the restart");
    }
    // and the log and the chain agree (the sealing backlog was sealed too)
    let text = ok(conduit(&dir).args(["audit", "verify"]).output().unwrap());
    assert!(text.starts_with("valid"), "{text}");
}

#[test]
fn a_change_written_behind_the_commands_back_is_audited_as_recovered() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("conduit");
    ok(conduit(&dir).arg("setup").output().unwrap());
    // another process writes services.json without auditing anything
    common::write_behind_the_back(&dir, "quiet", "10.0.1.9:80");
    start_and_stop(&dir);
    let text = ok(conduit(&dir)
        .args(["logs", "--action", "registry_recovered"])
        .output()
        .unwrap());
    assert!(
        text.contains("quiet.internal (revision 1, active)"),
        "{text}"
    );
    // a second start finds nothing more to recover
    start_and_stop(&dir);
    let text = ok(conduit(&dir)
        .args(["logs", "--action", "registry_recovered"])
        .output()
        .unwrap());
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn audit_verify_names_a_deleted_or_altered_log_line() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("conduit");
    ok(conduit(&dir).arg("setup").output().unwrap());
    for name in ["a", "b", "c"] {
        ok(conduit(&dir)
            .args(["register", "--name", name, "--upstream", "10.0.1.5:8080"])
            .output()
            .unwrap());
    }
    let text = ok(conduit(&dir).args(["audit", "verify"]).output().unwrap());
    assert!(text.starts_with("valid: 4 of 4"), "{text}");
    let log = dir.join("audit.log");
    let original = std::fs::read_to_string(&log).unwrap();
    // line 3 (the registration of b) removed
    let lines: Vec<&str> = original.lines().collect();
    let without: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&log, without).unwrap();
    let out = conduit(&dir).args(["audit", "verify"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("sealed record #2 is missing from audit.log") && text.contains("b.internal"),
        "{text}"
    );
    // line 4 (c's) altered: its upstream changed
    let altered = original.replacen("Registered c.internal", "Registered c.internal (edited)", 1);
    std::fs::write(&log, altered).unwrap();
    let out = conduit(&dir).args(["audit", "verify"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("audit.log line 4 was altered"), "{text}");
    // put back: valid again
    std::fs::write(&log, &original).unwrap();
    let text = ok(conduit(&dir).args(["audit", "verify"]).output().unwrap());
    assert!(text.starts_with("valid"), "{text}");
}
