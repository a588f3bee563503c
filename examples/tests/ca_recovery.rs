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
use conduit_test_support::process::{Killed, free_port, http_server, ok, wait_until};

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

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
    if !(have("curl") && Path::new(FAKETIME).exists()) {
        assert_eq!(
            std::env::var_os("CI"),
            None,
            "CI must install curl and faketime"
        );
        return;
    }
    let site = Site::new("");
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello\n").unwrap();
    let port = free_port();
    let _upstream = http_server(port, www.path());
    let gw = site.serve();
    ok(site
        .cmd()
        .args(["register", "--name", "web", "--upstream"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap());
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
