//! `/metrics` as Prometheus sees it: `promtool check metrics` accepts a live gateway's
//! exposition (every family with HELP and TYPE), and a real Prometheus on loopback scrapes
//! the admin TCP listener with a read-only token and answers queries on `conduit_` series.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Site;
use conduit_test_support::have;
use conduit_test_support::process::{free_port, ok, wait_until};

#[test]
fn promtool_accepts_the_exposition_and_a_real_prometheus_scrapes_it_with_a_read_only_token() {
    if !common::present(
        have("curl") && have("promtool") && have("prometheus"),
        "curl and Debian's prometheus (promtool)",
    ) {
        return;
    }
    let admin_port = free_port();
    let site = Site::with_admin(
        &format!("listen = \"127.0.0.1:{admin_port}\"\ntoken = \"admin-token-0123456789\"\n"),
        "",
    );
    let secret = ok(site
        .cmd()
        .args(["token", "add", "prometheus", "--read-only"])
        .output()
        .unwrap());
    let web = common::upstream("x\n");
    let _gw = site.serve();
    site.register("web", &web);
    // A request through the proxy, so that the latency histogram has samples.
    wait_until(Duration::from_secs(10), || {
        site.https("web.internal", "/").0 == 200
    });

    // promtool, on the text a read-only token gets over TCP.
    let metrics = ok(Command::new("curl")
        .args(["-sS", "--fail", "-H"])
        .arg(format!("Authorization: Bearer {}", secret.trim()))
        .arg(format!("http://127.0.0.1:{admin_port}/metrics"))
        .output()
        .unwrap());
    assert!(
        metrics.contains("conduit_proxy_requests_total"),
        "{metrics}"
    );
    for series in [
        "conduit_host_cpu_cores",
        "conduit_certificate_not_after_seconds{service=\"web\"}",
        "conduit_ca_issuance{state=\"ready\"} 1",
        "conduit_audit_last_sequence",
        "conduit_proxy_response_seconds_bucket",
        "conduit_dns_queries_total",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus scraping the admin listener every second with that token.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, secret.trim()).unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: conduit\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['127.0.0.1:{admin_port}']\n",
            token_file.display()
        ),
    )
    .unwrap();
    let (prom_port, _prometheus) = common::prometheus_server(
        "prometheus",
        &config,
        "--storage.tsdb.path",
        &dir.path().join("data"),
        &[],
    );
    let query = |q: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-G"])
            .arg(format!("http://127.0.0.1:{prom_port}/api/v1/query"))
            .args(["--data-urlencode", &format!("query={q}")])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let value = |v: &serde_json::Value| -> Option<f64> {
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let mut last = serde_json::Value::Null;
    wait_until(Duration::from_secs(30), || {
        last = query("up{job=\"conduit\"}");
        value(&last) == Some(1.0)
    });
    assert_eq!(value(&last), Some(1.0), "{last}");
    let families = query("count(count by (__name__) ({__name__=~\"conduit_.+\"}))");
    assert!(value(&families).is_some_and(|n| n >= 30.0), "{families}");
    let healthy = query("conduit_proxy_upstream_healthy{service=\"web\"}");
    assert_eq!(value(&healthy), Some(1.0), "{healthy}");
}
