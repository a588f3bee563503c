//! Who may reach what, with real processes and clients: curl from two loopback source
//! addresses (127.0.0.2 is the peer alice, 127.0.0.3 is bob), `dig -b` against the gateway's
//! DNS with names hidden, curl and openssl with a client certificate from our CA, and the
//! `conduit` command deciding with the proxy's own evaluator.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Site, present};
use conduit_test_support::have;
use conduit_test_support::process::{Killed, free_port, ok, wait_until};

const ALICE: &str = "127.0.0.2";
const BOB: &str = "127.0.0.3";

/// An upstream answering every method with `METHOD PATH`, and `/stream` with 20 chunks
/// over 3 s.
const ECHO: &str = r#"
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(20):
                c = ("tick %d\n" % i).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                self.wfile.flush()
                time.sleep(0.15)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = ("%s %s\n" % (self.command, self.path)).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = answer
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn echo() -> (u16, Killed) {
    let port = free_port();
    let k = Killed(
        Command::new("python3")
            .args(["-c", ECHO, &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (port, k)
}

/// curl from `from` to `https://HOST.internal/PATH` with `METHOD`: status and body.
fn req(
    site: &Site,
    from: &str,
    method: &str,
    host: &str,
    path: &str,
    extra: &[&str],
) -> (u16, String) {
    let resolve = format!("{host}.internal:{}:127.0.0.1", site.https);
    let mut args = vec![
        "--interface",
        from,
        "--resolve",
        &resolve,
        "-X",
        method,
        "--path-as-is",
    ];
    args.extend_from_slice(extra);
    let (code, body, _) = site.curl(
        &args,
        format!("https://{host}.internal:{}{path}", site.https),
    );
    (code, body)
}

fn conduit(site: &Site, args: &[&str]) -> Output {
    site.cmd().args(args).output().unwrap()
}

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

/// `conduit access check`: its exit code and first line.
fn check(site: &Site, args: &[&str]) -> (i32, String) {
    let mut all = vec!["access", "check"];
    all.extend_from_slice(args);
    let out = conduit(site, &all);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.code().unwrap_or(-1), text)
}

/// The `access_denied` records for `client`.
fn denied_records(site: &Site, client: &str) -> Vec<serde_json::Value> {
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
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.to_string().contains(&format!("\"client\":\"{client}\"")))
        .collect()
}

fn tools() -> bool {
    present(
        have("curl") && have("dig") && have("openssl") && have("python3"),
        "curl, dig, openssl and python3",
    )
}

/// A running gateway with `extra` configuration and `services` registered on one echo
/// upstream (`None` without the tools).
struct Running {
    site: Site,
    port: u16,
    _gw: Killed,
    _echo: Killed,
}

fn running(extra: &str, services: &[&str]) -> Option<Running> {
    if !tools() {
        return None;
    }
    let site = Site::new(extra);
    ok(conduit(&site, &["setup"]));
    let gw = site.serve();
    let (port, echo) = echo();
    for name in services {
        let up = format!("127.0.0.1:{port}");
        ok(conduit(
            &site,
            &["register", "--name", name, "--upstream", &up],
        ));
    }
    Some(Running {
        site,
        port,
        _gw: gw,
        _echo: echo,
    })
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
    let r = records[0].to_string();
    assert!(
        r.contains("\"service\":\"web\"") && r.contains("\"path\":\"/x\""),
        "{r}"
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
    let first = out
        .lines()
        .next()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .unwrap_or_default();
    assert_eq!(first["type"], "access", "{first}");
    assert_eq!(first["change"], "denied", "{first}");
    assert_eq!(first["client"], ALICE, "{first}");
    assert_eq!(first["service"], "web", "{first}");

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
    let m = common::admin(
        &conduit_test_support::openapi::Document::admin_api(env!("CARGO_MANIFEST_DIR")).unwrap(),
        &site.socket,
        "GET",
        "/metrics",
        None,
        &[],
    );
    let line = m
        .body
        .lines()
        .find(|l| l.starts_with("conduit_access_denied_total{service=\"web\"}"))
        .unwrap_or_else(|| panic!("no per-service count:\n{}", m.body));
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
