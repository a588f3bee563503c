//! The CA after downtime, with real processes and the clock moved by libfaketime (on the
//! gateway and on curl alike): a gateway that was off for longer than its intermediate's
//! life starts, renews the intermediate from the root, audits it, and serves a chain that
//! validates at once.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Site;
use conduit_test_support::have;
use conduit_test_support::process::{Killed, ok, wait_until};

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Whether curl and libfaketime are here (CI installs them; elsewhere the tests skip).
fn tools() -> bool {
    common::present(
        have("curl") && Path::new(FAKETIME).exists(),
        "curl and faketime",
    )
}

/// `cmd` with the clock `offset` ahead (`+10d`); the monotonic clock is left alone, so
/// timers and timeouts still work.
fn later<'a>(cmd: &'a mut Command, offset: &str) -> &'a mut Command {
    cmd.env("LD_PRELOAD", FAKETIME)
        .env("FAKETIME", offset)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
}

/// curl through the gateway's HTTPS listener with our root trusted, at the clock `offset`.
fn get(site: &Site, host: &str, offset: &str) -> (String, String) {
    let resolve = format!("{host}:{}:127.0.0.1", site.https);
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(site.state.join("tls/root.pem"))
        .args(["--resolve", &resolve])
        .arg(format!("https://{host}:{}/", site.https));
    let out = later(&mut c, offset).output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_gateway_off_for_ten_days_renews_its_intermediate_and_serves_at_once() {
    if !tools() {
        return;
    }
    let site = Site::new("");
    let web = common::upstream("hello\n");
    let gw = site.serve();
    site.register("web", &web);
    wait_until(Duration::from_secs(10), || {
        get(&site, "web.internal", "+0d").0.ends_with("\n200")
    });
    let intermediate = std::fs::read_to_string(site.state.join("tls/intermediate.pem")).unwrap();
    drop(gw);
    let _ = std::fs::remove_file(&site.socket);

    // Ten days later: the 7-day intermediate has expired while the gateway was off.
    let mut serve = site.cmd();
    serve
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _gw = Killed(later(&mut serve, "+10d").spawn().unwrap());
    wait_until(Duration::from_secs(10), || site.socket.exists());
    let mut last = (String::new(), String::new());
    let served = wait_until(Duration::from_secs(10), || {
        last = get(&site, "web.internal", "+10d");
        last.0.ends_with("\n200")
    });
    assert!(served < Duration::from_secs(10), "{last:?}");
    assert_eq!(last.0, "hello\n\n200");
    // a new intermediate, signed by the same root (curl trusted only the root)
    let renewed = std::fs::read_to_string(site.state.join("tls/intermediate.pem")).unwrap();
    assert_ne!(renewed, intermediate);
    // audited, with what happened
    let mut logs = site.cmd();
    logs.args(["logs", "--action", "ca_intermediate_renew", "--json"]);
    let out = ok(later(&mut logs, "+10d").output().unwrap());
    let records: Vec<conduit::api::AuditEntry> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{out}");
    assert_eq!(records[0].details["expired"], true, "{out}");
    assert!(records[0].message.contains("had expired"), "{out}");
}

/// `conduit …` at the clock `offset`, which must succeed; its stdout.
fn run_at(site: &Site, offset: &str, args: &[&str]) -> String {
    let mut c = site.cmd();
    c.args(args);
    ok(later(&mut c, offset).output().unwrap())
}

/// `conduit status --json` at `offset`: the CA part.
fn ca_status(site: &Site, offset: &str) -> conduit::api::CaStatus {
    let out = run_at(site, offset, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    serde_json::from_value(v["ca"].clone()).unwrap()
}

#[test]
fn with_the_root_offline_a_gateway_starts_says_issuance_is_blocked_and_a_signed_request_restores_it()
 {
    if !tools() {
        return;
    }
    let site = Site::new("");
    let vault = tempfile::tempdir().unwrap();
    let bundle = vault.path().join("root.bundle");
    let bundle_arg = bundle.to_str().unwrap();
    run_at(&site, "+0d", &["setup", "--offline-root", bundle_arg]);
    // No file in the state directory holds the key.
    let key_lines: Vec<String> = std::fs::read_to_string(&bundle)
        .unwrap()
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .map(str::to_owned)
        .collect();
    assert!(!key_lines.is_empty());
    for entry in walk(&site.state) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        for l in &key_lines {
            assert!(
                !text.contains(l.as_str()),
                "{} holds the root key",
                entry.display()
            );
        }
    }
    // Inside the state directory is refused.
    let mut c = site.cmd();
    c.args(["ca", "export-root-key", "--out"])
        .arg(site.state.join("copy"));
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("is inside the state directory"), "{why}");

    let web = common::upstream("hello\n");

    // Ten days later, the 7-day intermediate has expired and the root is not there: the
    // gateway starts anyway and says what to run.
    let mut serve = site.cmd();
    serve
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let gw = Killed(later(&mut serve, "+10d").spawn().unwrap());
    wait_until(Duration::from_secs(10), || site.socket.exists());
    let ca = ca_status(&site, "+10d");
    assert_eq!(ca.issuance, conduit::api::IssuanceState::Blocked, "{ca:?}");
    assert_eq!(ca.root_key_present, Some(false));
    let message = ca.message.unwrap();
    assert!(
        message.contains("conduit ca request-intermediate"),
        "{message}"
    );
    let metrics = run_at(&site, "+10d", &["status"]);
    assert!(metrics.contains("ISSUANCE BLOCKED"), "{metrics}");
    // It still serves: DNS answers, registration works (its certificate waits).
    run_at(
        &site,
        "+10d",
        &[
            "register",
            "--name",
            "web",
            "--upstream",
            &format!("127.0.0.1:{}", web.port),
        ],
    );

    // request → sign where the root is kept → install, all at +10d.
    let csr = vault.path().join("gw.csr");
    let crt = vault.path().join("gw.crt");
    run_at(
        &site,
        "+10d",
        &["ca", "request-intermediate", "--out", csr.to_str().unwrap()],
    );
    run_at(
        &site,
        "+10d",
        &[
            "ca",
            "sign-intermediate",
            "--root-key",
            bundle_arg,
            "--csr",
            csr.to_str().unwrap(),
            "--lifetime",
            "90d",
            "--out",
            crt.to_str().unwrap(),
        ],
    );
    let out = run_at(
        &site,
        "+10d",
        &["ca", "install-intermediate", crt.to_str().unwrap()],
    );
    assert!(out.contains("installed"), "{out}");
    let ca = ca_status(&site, "+10d");
    assert_eq!(ca.issuance, conduit::api::IssuanceState::Ready, "{ca:?}");
    // The service gets its certificate and is served, valid against the root alone.
    let mut last = (String::new(), String::new());
    wait_until(Duration::from_secs(10), || {
        last = get(&site, "web.internal", "+10d");
        last.0.ends_with("\n200")
    });
    assert_eq!(last.0, "hello\n\n200", "{last:?}");
    let audit = run_at(
        &site,
        "+10d",
        &["logs", "--action", "ca_intermediate_install"],
    );
    assert!(audit.contains("success"), "{audit}");
    let audit = run_at(&site, "+10d", &["logs", "--action", "ca_root_export"]);
    assert!(audit.contains("Moved the root key"), "{audit}");
    drop(gw);
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
}
