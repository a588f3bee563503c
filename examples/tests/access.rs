//! Who may reach what, with real processes and clients: curl from two loopback source
//! addresses (127.0.0.2 is the peer alice, 127.0.0.3 is bob), `dig -b` against the gateway's
//! DNS with names hidden, and the `conduit` command deciding with the proxy's own evaluator.
//! Client certificates: `access_mtls.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Site;
use common::access::{ALICE, BOB, check, conduit, req, running};
use conduit::api::AuditEntry;
use conduit::events::{Event, EventKind};
use conduit_test_support::process::{Killed, ok, wait_until};

/// `dig -b FROM NAME TYPE`: the status word (`NOERROR`, `NXDOMAIN`) and the answer count.
fn dig(site: &Site, from: &str, name: &str, qtype: &str) -> (String, usize) {
    let out = Command::new("dig")
        .args(["+time=1", "+tries=1", "-b", from, "-p"])
        .arg(site.dns.to_string())
        .args(["@127.0.0.1", name, qtype])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_owned();
    let answers = text
        .split("ANSWER: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (status, answers)
}

/// The `access_denied` records for `client`.
fn denied_records(site: &Site, client: &str) -> Vec<AuditEntry> {
    let out = ok(conduit(
        site,
        &[
            "logs",
            "--action",
            "access_denied",
            "--json",
            "--limit",
            "1000",
        ],
    ));
    out.lines()
        .map(|l| serde_json::from_str::<AuditEntry>(l).unwrap())
        .filter(|e| e.details.get("client").and_then(|c| c.as_str()) == Some(client))
        .collect()
}

#[test]
fn grants_decide_in_the_proxy_in_dns_and_in_the_command_line() {
    let Some(r) = running(
        "[access]\ndefault = \"deny\"\nhide_names = true\n",
        &["web", "llm"],
    ) else {
        return;
    };
    let (site, web_port) = (&r.site, r.port);
    wait_until(Duration::from_secs(10), || {
        req(site, "127.0.0.1", "GET", "web", "/", &[]).0 == 403
    });

    // Every refusal is an `access` event.
    let events = site
        .cmd()
        .args(["events", "--types", "access", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let events = Killed(events);
    std::thread::sleep(Duration::from_millis(300));

    // Deny by default: nobody reaches a service no grant names, with a one-line reason
    // that names no upstream.
    let (code, body) = req(site, ALICE, "GET", "web", "/", &[]);
    assert_eq!(code, 403);
    assert_eq!(
        body.trim(),
        "access denied: 127.0.0.2 has no grant for GET / on web.internal"
    );
    assert!(!body.contains(&web_port.to_string()));

    ok(conduit(
        site,
        &["peer", "add", "alice", "--address", ALICE, "--tag", "ops"],
    ));
    ok(conduit(site, &["peer", "add", "bob", "--address", BOB]));
    ok(conduit(
        site,
        &["grant", "add", "web", "--to", "peer:alice"],
    ));
    assert_eq!(
        req(site, ALICE, "GET", "web", "/", &[]),
        (200, "GET /\n".to_owned())
    );
    let (code, body) = req(site, BOB, "GET", "web", "/x", &[]);
    assert_eq!(
        (code, body.trim()),
        (
            403,
            "access denied: 127.0.0.3 has no grant for GET /x on web.internal"
        )
    );

    // Refusals are audited, one record per client per interval, counting the rest.
    for _ in 0..4 {
        assert_eq!(req(site, BOB, "GET", "web", "/", &[]).0, 403);
    }
    wait_until(Duration::from_secs(5), || {
        !denied_records(site, BOB).is_empty()
    });
    let records = denied_records(site, BOB);
    assert_eq!(records.len(), 1, "rate-limited per client: {records:?}");
    let d = &records[0].details;
    assert_eq!(d["service"], "web", "{d:?}");
    assert_eq!(d["path"], "/x", "{d:?}");
    assert_eq!(
        d["refusals"], 1,
        "the first refusal is recorded at once: {d:?}"
    );

    // Methods and paths; tags and networks.
    ok(conduit(
        site,
        &[
            "grant",
            "add",
            "llm",
            "--to",
            "cidr:127.0.0.0/8",
            "--methods",
            "GET",
            "--path",
            "/v1/",
        ],
    ));
    ok(conduit(
        site,
        &[
            "grant",
            "add",
            "llm",
            "--to",
            "tag:ops",
            "--methods",
            "POST",
            "--path",
            "/api/generate",
        ],
    ));
    assert_eq!(req(site, BOB, "GET", "llm", "/v1/models", &[]).0, 200);
    assert_eq!(req(site, BOB, "POST", "llm", "/api/generate", &[]).0, 403);
    assert_eq!(
        req(site, ALICE, "POST", "llm", "/api/generate", &[]),
        (200, "POST /api/generate\n".to_owned())
    );
    assert_eq!(req(site, ALICE, "POST", "llm", "/api/delete", &[]).0, 403);
    assert_eq!(
        req(site, ALICE, "POST", "llm", "/api/generate/../delete", &[]).0,
        403
    );
    assert_eq!(
        req(site, ALICE, "POST", "llm", "/api/generate/%2e%2e/pull", &[]).0,
        403
    );

    // The command line explains each case with the proxy's evaluator.
    assert_eq!(
        check(site, &["--from", ALICE, "web"]),
        (0, "allow: grant peer:alice → web".to_owned())
    );
    let (code, text) = check(site, &["--from", BOB, "web"]);
    assert_eq!(
        (code, text.as_str()),
        (
            1,
            "deny: no grant of web matches this client, method and path"
        )
    );
    assert_eq!(
        check(site, &["--from", BOB, "llm", "GET", "/v1/models"]),
        (0, "allow: grant cidr:127.0.0.0/8 → llm GET /v1/".to_owned())
    );
    assert_eq!(
        check(site, &["--from", ALICE, "llm", "POST", "/api/delete"]).0,
        1
    );
    let (code, text) = check(site, &["--from", ALICE, "nothing"]);
    assert_eq!(
        (code, text.as_str()),
        (
            1,
            "deny: no grant names nothing; [access] default = \"deny\""
        )
    );

    // Split-horizon DNS: bob gets NXDOMAIN for every type of web's names, alice the answers.
    for (name, qtype) in [
        ("web.internal", "A"),
        ("web.internal", "AAAA"),
        ("web.internal", "ANY"),
        ("_https._tcp.web.internal", "SRV"),
    ] {
        assert_eq!(
            dig(site, BOB, name, qtype).0,
            "NXDOMAIN",
            "bob {name} {qtype}"
        );
        let (status, _) = dig(site, ALICE, name, qtype);
        assert_eq!(status, "NOERROR", "alice {name} {qtype}");
    }
    assert_eq!(dig(site, ALICE, "web.internal", "A").1, 1);
    assert_eq!(dig(site, ALICE, "_https._tcp.web.internal", "SRV").1, 1);
    assert_eq!(
        dig(site, BOB, "llm.internal", "A"),
        ("NOERROR".to_owned(), 1)
    );

    // The events stream saw the first refusal, with who and what.
    let mut events = events;
    let _ = events.0.kill();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut events.0.stdout.take().unwrap(), &mut out).unwrap();
    let first: Event = serde_json::from_str(out.lines().next().unwrap_or_default()).unwrap();
    match first.kind {
        EventKind::Access {
            change,
            client,
            service,
            ..
        } => assert_eq!(
            (change.as_str(), client.as_deref(), service.as_deref()),
            ("denied", Some(ALICE), Some("web"))
        ),
        other => panic!("not an access event: {other:?}"),
    }

    // `status` shows the policy in force.
    let status = ok(conduit(site, &["status"]));
    let line = status
        .lines()
        .find(|l| l.starts_with("access: "))
        .unwrap_or_default();
    assert!(
        line.starts_with(
            "access: default deny, names hidden, policy revision 5: 2 peers, 3 grants;"
        ),
        "{status}"
    );

    // Counted in /metrics.
    let m = common::metrics(site);
    let line = m
        .lines()
        .find(|l| l.starts_with("conduit_access_denied_total{service=\"web\"}"))
        .unwrap_or_else(|| panic!("no per-service count:\n{m}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 6, "{line}");
}

#[test]
fn a_policy_change_during_an_allowed_stream_does_not_cut_it() {
    let Some(r) = running("[access]\ndefault = \"deny\"\n", &["web"]) else {
        return;
    };
    let site = &r.site;
    ok(conduit(site, &["peer", "add", "alice", "--address", ALICE]));
    ok(conduit(
        site,
        &["grant", "add", "web", "--to", "peer:alice"],
    ));
    wait_until(Duration::from_secs(10), || {
        req(site, ALICE, "GET", "web", "/", &[]).0 == 200
    });
    let resolve = format!("web.internal:{}:127.0.0.1", site.https);
    let stream = Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--max-time",
            "20",
            "--interface",
            ALICE,
            "--resolve",
            &resolve,
        ])
        .arg("--cacert")
        .arg(site.state.join("tls/root.pem"))
        .arg(format!("https://web.internal:{}/stream", site.https))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // Alice loses her grant while her stream runs: new requests are refused at once…
    ok(conduit(
        site,
        &["grant", "remove", "web", "--to", "peer:alice"],
    ));
    assert_eq!(req(site, ALICE, "GET", "web", "/", &[]).0, 403);
    // …and the stream she was allowed to open ends whole.
    let out = stream.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 20, "{text}");
    assert_eq!(text.lines().last(), Some("tick 19"));
}
