//! Named admin tokens change through the running gateway, audited with who asked
//! (`token_add`, `token_revoke`), the secret never in a record; with the gateway stopped the
//! command makes the change itself and audits it the same. Answers are checked against
//! docs/admin-api.yaml.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "test code driving real processes"
)]

mod common;

use common::{Site, admin};
use conduit_test_support::have;
use conduit_test_support::openapi::Document;
use conduit_test_support::process::ok;

fn records(site: &Site, action: &str) -> Vec<conduit::api::AuditEntry> {
    ok(site
        .cmd()
        .args(["logs", "--action", action, "--json"])
        .output()
        .unwrap())
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

#[test]
fn tokens_are_added_and_revoked_through_the_gateway_and_audited_without_their_secret() {
    if !common::present(have("curl"), "curl") {
        return;
    }
    let doc = Document::admin_api(env!("CARGO_MANIFEST_DIR")).unwrap();
    let site = Site::new("");
    // Stopped: the command audits it itself.
    let first = ok(site
        .cmd()
        .args(["token", "add", "before"])
        .output()
        .unwrap());
    let gw = site.serve();
    let secret = ok(site
        .cmd()
        .args(["token", "add", "prometheus", "--read-only"])
        .output()
        .unwrap());
    let secret = secret.trim();
    assert!(secret.len() >= 32, "{secret}");
    let listed = ok(site.cmd().args(["token", "list"]).output().unwrap());
    assert!(
        listed.contains("prometheus") && listed.contains("read"),
        "{listed}"
    );
    assert!(
        listed.contains("before") && listed.contains("admin"),
        "{listed}"
    );

    // The API's own answers: a taken name 409, a bad one 400, an unknown revoke 404.
    let body = r#"{"name":"prometheus","scope":"read"}"#;
    let a = admin(&doc, &site.socket, "POST", "/v1/tokens", Some(body), &[]);
    assert_eq!(a.code, 409, "{}", a.body);
    let a = admin(
        &doc,
        &site.socket,
        "POST",
        "/v1/tokens",
        Some(r#"{"name":"no spaces","scope":"admin"}"#),
        &[],
    );
    assert_eq!(a.code, 400, "{}", a.body);
    let a = admin(&doc, &site.socket, "DELETE", "/v1/tokens/nobody", None, &[]);
    assert_eq!(a.code, 404, "{}", a.body);
    let a = admin(&doc, &site.socket, "GET", "/v1/tokens", None, &[]);
    assert_eq!(a.code, 200, "{}", a.body);

    ok(site
        .cmd()
        .args(["token", "revoke", "prometheus"])
        .output()
        .unwrap());
    drop(gw);
    let _ = std::fs::remove_file(&site.socket);

    let added = records(&site, "token_add");
    let names: Vec<(&str, bool)> = added
        .iter()
        .map(|r| {
            (
                r.details["name"].as_str().unwrap(),
                r.status == conduit::audit::Outcome::Success,
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("before", true),
            ("prometheus", true),
            ("prometheus", false),
            ("no spaces", false)
        ],
        "{added:?}"
    );
    assert_eq!(added[1].details["scope"], "read");
    let revoked = records(&site, "token_revoke");
    let revoked: Vec<(&str, bool)> = revoked
        .iter()
        .map(|r| {
            (
                r.details["name"].as_str().unwrap(),
                r.status == conduit::audit::Outcome::Success,
            )
        })
        .collect();
    assert_eq!(revoked, [("nobody", false), ("prometheus", true)]);
    // No record anywhere holds a secret.
    let log = std::fs::read_to_string(site.state.join("audit.log")).unwrap();
    assert!(!log.contains(secret) && !log.contains(first.trim()));
    // Each change is by the user who asked (the socket's peer, or this process's user).
    let user = added[1].user.clone();
    assert!(!user.is_empty() && !user.starts_with("token:"), "{user}");
}
