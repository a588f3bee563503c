//! `conduit logs --service NAME`: the requests the proxy served for the service (its access
//! log, one JSON line each, written when the response ends) and its audit records, merged in
//! time order; `--since` takes a duration; `--follow` prints new requests as they are made.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::Site;
use conduit_test_support::have;
use conduit_test_support::process::{Killed, ok, wait_until};

#[test]
fn a_services_requests_and_audit_records_come_merged_in_time_order_and_follow() {
    if !common::present(have("curl"), "curl") {
        return;
    }
    let site = Site::new("");
    let web = common::upstream("hello\n");
    let other = common::upstream("other\n");
    let _gw = site.serve();
    site.register("web", &web);
    site.register("other", &other);
    wait_until(Duration::from_secs(10), || {
        site.https("web.internal", "/").0 == 200 && site.https("other.internal", "/").0 == 200
    });
    for path in ["/a", "/b", "/index.html"] {
        site.https("web.internal", path);
    }
    site.https("other.internal", "/not-ours");

    let mut out = String::new();
    wait_until(Duration::from_secs(5), || {
        out = ok(site
            .cmd()
            .args(["logs", "--service", "web", "--since", "1h"])
            .output()
            .unwrap());
        out.contains(" /index.html ")
    });
    let lines: Vec<&str> = out.lines().collect();
    let register = lines
        .iter()
        .position(|l| l.contains("audit") && l.contains("service_register"))
        .unwrap_or_else(|| panic!("no registration:\n{out}"));
    let first = lines
        .iter()
        .position(|l| l.contains("access  GET /a 404"))
        .unwrap_or_else(|| panic!("no request for /a:\n{out}"));
    assert!(register < first, "not in time order:\n{out}");
    assert!(out.contains("GET /index.html 200 6 bytes"), "{out}");
    assert!(
        !out.contains("/not-ours"),
        "another service's request:\n{out}"
    );
    assert!(!out.contains("other.internal"), "{out}");

    // JSON, one object per line, with its source.
    let json = ok(site
        .cmd()
        .args(["logs", "--service", "web", "--json"])
        .output()
        .unwrap());
    let access: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["source"] == "access")
        .collect();
    let last = access.last().unwrap();
    assert_eq!(last["record"]["path"], "/index.html");
    assert_eq!(last["record"]["status"], 200);
    assert_eq!(last["record"]["bytes"], 6);
    assert!(
        last["record"]["duration_us"].as_u64().unwrap()
            >= last["record"]["ttfb_us"].as_u64().unwrap()
    );

    // --follow: a request made after it started is printed.
    let mut follower = site.cmd();
    follower
        .args(["logs", "--service", "web", "--follow", "--since", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = follower.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let _child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    site.https("web.internal", "/followed");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            let done = l.contains("GET /followed 404");
            seen.push(l);
            if done {
                break;
            }
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("GET /followed 404")),
        "{seen:#?}"
    );
}

#[test]
fn a_services_container_output_is_merged_with_its_requests() {
    if !common::present(
        have("curl") && have("podman") && std::path::Path::new("/bin/busybox").exists(),
        "curl, podman and busybox",
    ) {
        return;
    }
    use conduit_test_support::podman::{IMAGE, Service, ensure_image, podman};
    ensure_image();
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Service::start(dir.path());
    let container = format!("conduit-logs-{}", std::process::id());
    engine.names.push(container.clone());
    // The container belongs to the service by its label; it writes one line, then another.
    let site = Site::with_monitor(&format!(
        "docker_socket = \"{}\"\n",
        engine.socket.display()
    ));
    podman(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        "conduit.service=web",
        "--name",
        &container,
        IMAGE,
        "/bin/sh",
        "-c",
        "echo hello from the container; sleep 1; echo still here; sleep 300",
    ]);
    let web = common::upstream("hello\n");
    let _gw = site.serve();
    site.register("web", &web);
    wait_until(Duration::from_secs(30), || {
        site.https("web.internal", "/").0 == 200
    });
    let mut out = String::new();
    wait_until(Duration::from_secs(30), || {
        out = ok(site
            .cmd()
            .args(["logs", "--service", "web"])
            .output()
            .unwrap());
        out.contains("still here") && out.contains("access  GET / 200")
    });
    let at = |needle: &str| {
        out.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in:\n{out}"))
    };
    assert!(
        out.contains(&format!("{container} stdout: hello from the container")),
        "{out}"
    );
    // Time order: the container's first line came before its second.
    assert!(at("hello from the container") < at("still here"), "{out}");
}
