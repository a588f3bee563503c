//! Services that require a client certificate from our CA: curl and Python `ssl` with a
//! peer's certificate, openssl showing on which names one is asked for, revocation.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::process::{Command, Stdio};

use common::Site;
use common::access::{BOB, check, conduit, req, running};
use conduit_test_support::process::{Killed, ok, wait_until};
use std::time::Duration;

/// Two requests on one kept-alive TLS connection to vault with a client certificate; the
/// second once the file `go` exists. Prints `STATUS BODY` per request.
const KEEP_ALIVE: &str = r#"
import http.client, os, socket, ssl, sys, time
cafile, crt, key, port, go = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
ctx.load_cert_chain(crt, key)
conn = http.client.HTTPSConnection("vault.internal", int(port), context=ctx)
conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))), server_hostname="vault.internal")
def get():
    conn.request("GET", "/")
    r = conn.getresponse()
    print(r.status, r.read().decode().strip(), flush=True)
get()
while not os.path.exists(go):
    time.sleep(0.05)
get()
"#;

/// openssl's view of the handshake for `sni`: whether the server asked for a certificate.
fn asks_for_certificate(site: &Site, sni: &str) -> bool {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", site.https),
            "-servername",
            sni,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.contains("Acceptable client certificate CA names") {
        true
    } else {
        assert!(
            text.contains("No client certificate CA names sent"),
            "{text}"
        );
        false
    }
}

#[test]
fn a_service_requiring_a_client_certificate_accepts_a_peers_and_refuses_a_revoked_one() {
    let Some(r) = running("", &["vault", "web"]) else {
        return;
    };
    let site = &r.site;
    ok(conduit(site, &["peer", "add", "alice"]));
    ok(conduit(site, &["access", "require-cert", "vault"]));
    ok(conduit(
        site,
        &["grant", "add", "vault", "--to", "cert:alice"],
    ));
    let certs = tempfile::tempdir().unwrap();
    let printed = ok(conduit(
        site,
        &[
            "peer",
            "cert",
            "alice",
            "--out",
            certs.path().to_str().unwrap(),
        ],
    ));
    assert!(
        printed.contains("client certificate for alice"),
        "{printed}"
    );
    let (crt, key) = (
        certs.path().join("alice.crt"),
        certs.path().join("alice.key"),
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let with_cert = [
        "--cert",
        crt.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];

    wait_until(Duration::from_secs(10), || {
        req(site, BOB, "GET", "vault", "/", &with_cert).0 == 200
    });
    assert_eq!(
        req(site, BOB, "GET", "vault", "/", &with_cert),
        (200, "GET /\n".to_owned())
    );
    let (code, body) = req(site, BOB, "GET", "vault", "/", &[]);
    assert_eq!(
        (code, body.trim()),
        (
            403,
            "access denied: vault.internal requires a client certificate issued by this site's CA"
        )
    );
    // Asked for only on vault's name; web (open by default) is served as before.
    assert!(asks_for_certificate(site, "vault.internal"));
    assert!(!asks_for_certificate(site, "web.internal"));
    assert_eq!(req(site, BOB, "GET", "web", "/", &[]).0, 200);
    assert_eq!(
        check(site, &["--from", BOB, "--cert", "alice", "vault"]),
        (0, "allow: grant cert:alice → vault".to_owned())
    );

    // A connection already open with it, to see what revocation does to it.
    let go = certs.path().join("go");
    let mut open = Killed(
        Command::new("python3")
            .args(["-c", KEEP_ALIVE])
            .arg(site.state.join("tls/root.pem"))
            .args([&crt, &key])
            .arg(site.https.to_string())
            .arg(&go)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(open.0.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "200 GET /");

    // Revoked: the next handshake with it fails, and the connection already open loses
    // that identity from its next request on.
    let revoked = ok(conduit(site, &["peer", "revoke", "alice"]));
    assert!(revoked.starts_with("revoked alice: "), "{revoked}");
    assert_eq!(
        req(site, BOB, "GET", "vault", "/", &with_cert).0,
        0,
        "a revoked certificate is refused"
    );
    std::fs::write(&go, b"").unwrap();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "403 access denied: vault.internal requires a client certificate, and this connection's was revoked"
    );
    assert_eq!(req(site, BOB, "GET", "web", "/", &[]).0, 200);
}
