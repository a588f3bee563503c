//! Alerts reach a real Alertmanager (Debian's `prometheus-alertmanager`) on loopback: an
//! upstream that goes down fires `ConduitUpstreamDown` there, and it is resolved when the
//! upstream comes back.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::Site;
use conduit_test_support::have;
use conduit_test_support::process::{free_port, http_server, wait_until};

/// The alerts Alertmanager holds as active, named `name`.
fn active(port: u16, name: &str) -> Vec<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-G"])
        .arg(format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .args(["--data-urlencode", &format!("filter=alertname=\"{name}\"")])
        .args(["--data-urlencode", "active=true"])
        .output()
        .unwrap();
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["status"]["state"] == "active")
        .collect()
}

#[test]
fn an_upstream_that_goes_down_fires_an_alert_in_alertmanager_and_resolves_it_when_back() {
    if !common::present(
        have("curl") && have("prometheus-alertmanager"),
        "curl and Debian's prometheus-alertmanager",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: quiet\n  group_wait: 0s\nreceivers:\n  - name: quiet\n",
    )
    .unwrap();
    let (am_port, _alertmanager) = common::prometheus_server(
        "prometheus-alertmanager",
        &config,
        "--storage.path",
        &dir.path().join("data"),
        &["--cluster.listen-address="],
    );
    let site = Site::new(&format!(
        "[alerts]\nalertmanager = [\"http://127.0.0.1:{am_port}\"]\nresend_interval = \"2s\"\n"
    ));
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "up\n").unwrap();
    let port = free_port();
    let upstream = http_server(port, www.path());
    let _gw = site.serve();
    let web = format!("127.0.0.1:{port}");
    conduit_test_support::process::ok(
        site.cmd()
            .args(["register", "--name", "web", "--upstream", &web])
            .output()
            .unwrap(),
    );
    wait_until(Duration::from_secs(10), || {
        site.https("web.internal", "/").0 == 200
    });

    // Down: the health checks (every 300 ms) mark it, the alert fires.
    drop(upstream);
    let mut alerts = Vec::new();
    wait_until(Duration::from_secs(20), || {
        alerts = active(am_port, "ConduitUpstreamDown");
        !alerts.is_empty()
    });
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["service"], "web", "{labels}");
    assert_eq!(labels["severity"], "critical", "{labels}");
    assert_eq!(labels["source"], "conduit", "{labels}");
    assert!(
        alerts[0]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("is down"),
        "{alerts:?}"
    );

    // Back: resolved.
    let _again = http_server(port, www.path());
    wait_until(Duration::from_secs(20), || {
        active(am_port, "ConduitUpstreamDown").is_empty()
    });
    assert!(active(am_port, "ConduitUpstreamDown").is_empty());
}
