//! The admin dashboard in a real browser: headless Chromium from Debian, driven by
//! Playwright for Python (`tests/dashboard/drive.py`), against a real gateway, its root
//! trusted through NSS. Logs in with a named token, registers from the Services view (the
//! Dashboard and DNS views show it, `dig` answers it), watches an upstream die without a
//! reload, rotates a certificate from the TLS view (a new serial is served), refuses a
//! read-only token's and another origin's changes, finds the registration in the Audit view
//! under the token's name, makes no request while idle, and writes a screenshot of every
//! view. Around the browser: DNS answers the dashboard's name, the name cannot be
//! registered, and every login is audited.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes"
)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Site;
use conduit_test_support::have;
use conduit_test_support::process::ok;
use serde::Deserialize;

/// What the browser run measured (`drive.py`'s last line).
#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "the timings are printed (Debug), not asserted")]
#[serde(deny_unknown_fields)]
struct Report {
    screenshots: Vec<String>,
    first_page_ms: u64,
    first_page_bytes: u64,
    down_ms: u64,
    event_ms: u64,
    idle_requests: i64,
    requests_while_changing: i64,
    rotated: Vec<String>,
    cross_origin_status: u16,
    read_only_post_status: u16,
    bad_login_statuses: Vec<u16>,
    banner_text: String,
    resumed_ms: u64,
}

fn token(site: &Site, name: &str, extra: &[&str]) -> String {
    let out = site
        .cmd()
        .args(["token", "add", name])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn playwright() -> bool {
    Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_dashboard_works_in_a_real_browser() {
    let tools = have("chromium") && have("certutil") && have("dig") && have("python3");
    if !common::present(
        tools && playwright(),
        "chromium, libnss3-tools, dig and Playwright for Python",
    ) {
        return;
    }
    let site = Site::new("[dashboard]\nlogin_attempts_per_minute = 3\n");
    // The browser run restarts it under the open page (and stops the one it started).
    let gateway = site.serve();
    let admin = token(&site, "ops", &[]);
    let read = token(&site, "viewer", &["--read-only"]);

    // DNS answers the dashboard's name like a proxied service; the name is the gateway's.
    let dig = ok(Command::new("dig")
        .args([
            "+short",
            "-p",
            &site.dns.to_string(),
            "@127.0.0.1",
            "conduit.internal",
            "A",
        ])
        .output()
        .unwrap());
    assert_eq!(dig.trim(), "127.0.0.1");
    let refused = site
        .cmd()
        .args(["register", "--name", "conduit", "--upstream", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("reserved for the gateway's dashboard"),
        "{why}"
    );
    // `conduit status` says where it is.
    let status = ok(site.cmd().arg("status").output().unwrap());
    let url = format!("dashboard: https://conduit.internal:{}/", site.https);
    assert!(status.lines().any(|l| l == url), "{status}");
    // Without a session: the login form, and the API says so.
    let (code, body, _) = site.https("conduit.internal", "/");
    assert_eq!(code, 200);
    assert!(body.contains(r#"<input id="token" name="token""#), "{body}");
    let (code, _, _) = site.https("conduit.internal", "/v1/status");
    assert_eq!(code, 401);
    // A change refused unread still gets its answer over HTTP/2 (the body is discarded,
    // not left to reset the stream).
    let resolve = format!("conduit.internal:{}:127.0.0.1", site.https);
    let (code, body, _) = site.curl(
        &[
            "--http2",
            "--resolve",
            &resolve,
            "--data",
            r#"{"name":"x","upstreams":["127.0.0.1:9"]}"#,
        ],
        format!("https://conduit.internal:{}/v1/services", site.https),
    );
    assert_eq!(code, 401, "{body}");
    // Plain HTTP is sent to HTTPS.
    let (code, _, _) = site.http("conduit.internal", "/");
    assert_eq!(code, 308);

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let args = format!(
        "--config\t{}\t--dir\t{}",
        site.config.display(),
        site.state.display()
    );
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/dashboard/drive.py"
        ))
        .env("DASH_PORT", site.https.to_string())
        .env("DNS_PORT", site.dns.to_string())
        .env("ROOT_PEM", site.state.join("tls/root.pem"))
        .env("ADMIN_TOKEN", &admin)
        .env("READ_TOKEN", &read)
        .env("ARTIFACTS", &artifacts)
        .env("ACCESS_LOG", site.state.join("access.log"))
        .env("CONDUIT", env!("CARGO_BIN_EXE_conduit"))
        .env("CONDUIT_ARGS", args)
        // [health] interval 300 ms (the site's), unhealthy after 2 failures.
        .env("HEALTH_MS", "600")
        .env("GATEWAY_PID", gateway.0.id().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    eprintln!("{report:#?}");
    assert_eq!(
        report.screenshots.len(),
        9,
        "every view, and the phone width"
    );
    for shot in &report.screenshots {
        let len = std::fs::metadata(shot).unwrap().len();
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
    // What the page weighs is a fact of the build; how fast things go is measured, not
    // asserted (the note has the figures), except what the issue makes a behaviour: a dead
    // upstream shows within the health thresholds (300 ms × 2) + 2 s.
    assert!(report.first_page_bytes < 100_000, "{report:?}");
    assert!(report.down_ms <= 2600, "{report:?}");
    assert_eq!(report.idle_requests, 0);
    assert!(
        report.requests_while_changing > 0,
        "the log counts the page's requests"
    );
    assert_ne!(report.rotated[0], report.rotated[1]);
    assert_eq!(report.cross_origin_status, 403);
    assert_eq!(report.read_only_post_status, 403);
    assert_eq!(report.bad_login_statuses, [401, 401, 401, 429]);

    assert!(
        report.banner_text.starts_with("Lost the connection"),
        "{report:?}"
    );
    drop(gateway);

    // Another site's no-cors POST changed nothing; logins are audited with who and from where.
    let registered = ok(site
        .cmd()
        .args(["logs", "--action", "service_register"])
        .output()
        .unwrap());
    assert!(!registered.contains("evil"), "{registered}");
    assert!(registered.contains("web.internal"), "{registered}");
    let logins: Vec<conduit::api::AuditEntry> = ok(site
        .cmd()
        .args(["logs", "--action", "dashboard_login", "--json"])
        .output()
        .unwrap())
    .lines()
    .filter_map(|l| serde_json::from_str(l).ok())
    .collect();
    let users: Vec<(&str, conduit::audit::Outcome)> =
        logins.iter().map(|e| (e.user.as_str(), e.status)).collect();
    use conduit::audit::Outcome::{Failure, Success};
    assert_eq!(
        users,
        [
            ("token:ops", Success),
            ("token:viewer", Success),
            ("unknown", Failure),
            ("unknown", Failure),
            ("unknown", Failure),
        ],
        "two logins, three refusals (the fourth try was refused before its token was read)"
    );
    assert_eq!(
        logins[4].message,
        "Refused a dashboard login from 127.0.0.1: unknown or revoked token (no more tries this minute)"
    );
}
