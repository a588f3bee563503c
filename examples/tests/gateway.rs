//! End to end: the `conduit` binary as an operator runs it (real processes, loopback only):
//! setup → serve → register → dig + curl + Python ssl → upstream down → 503 and an audited
//! health change → deregister → NXDOMAIN → logs, `audit verify` and the reference verifier →
//! restart with the same state.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "test code"
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use conduit_test_support::openapi::Document;
use conduit_test_support::process::{Killed, free_port, ok, wait_until};
use conduit_test_support::{have, which};
use tokio::time::Instant;

fn conduit(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_conduit"));
    c.arg("--dir").arg(dir).env("RUST_LOG", "warn");
    c
}

/// `METHOD path` on the admin socket (see `common::admin`): the status and the body.
fn admin_call(doc: &Document, socket: &Path, method: &str, path: &str) -> (u16, String) {
    let a = common::admin(doc, socket, method, path, None, &[]);
    (a.code, a.body)
}

fn upstream(port: u16, root: &Path) -> Killed {
    conduit_test_support::process::http_server(port, root)
}

/// Starts `conduit serve` on these ports; `None` when it exited (a port taken meanwhile by
/// another test: the caller picks others).
fn try_serve(dir: &Path, dns: u16, https: u16) -> Option<Killed> {
    let child = conduit(dir)
        .args(["serve", "--advertise", "127.0.0.1"])
        .arg(format!("--dns-listen=127.0.0.1:{dns}"))
        .args(["--https-listen", &format!("127.0.0.1:{https}")])
        .arg(format!("--http-listen=127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut k = Killed(child);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect(("127.0.0.1", https)).is_ok() {
            return Some(k);
        }
        if k.0.try_wait().unwrap().is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the gateway did not open 127.0.0.1:{https} within 10 s");
}

/// `conduit serve` on free ports: (process, DNS port, HTTPS port).
fn serve_anywhere(dir: &Path) -> (Killed, u16, u16) {
    for _ in 0..5 {
        let (dns, https) = (free_port(), free_port());
        if let Some(k) = try_serve(dir, dns, https) {
            return (k, dns, https);
        }
    }
    panic!("the gateway could not bind free ports five times");
}

/// `conduit serve` again on the ports it had (just released).
fn serve(dir: &Path, dns: u16, https: u16) -> Killed {
    for _ in 0..20 {
        if let Some(k) = try_serve(dir, dns, https) {
            return k;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the gateway could not bind 127.0.0.1:{dns}/{https} again");
}

fn dig(dns: u16, name: &str) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &dns.to_string(),
            "+tries=1",
            "+time=1",
            name,
        ])
        .output()
        .unwrap();
    // each line's whitespace runs as single spaces (dig pads names with tabs)
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// (HTTP status, body) through the gateway with our root trusted; status 0 when curl failed.
fn curl(root: &Path, https: u16, host: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("{host}:{https}:127.0.0.1")])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://{host}:{https}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_whole_flow_with_real_processes() {
    if !(have("dig") && have("curl") && have("python3")) {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("conduit");
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from grafana\n").unwrap();
    let root = dir.join("tls/root.pem");

    let text = ok(conduit(&dir).arg("setup").output().unwrap());
    assert!(text.contains("Trust the root") && root.exists(), "{text}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // conduit.toml: unknown keys are refused with the key named, before anything runs
    std::fs::write(
        dir.join("conduit.toml"),
        "domain = \"internal\"\nhttps_port = 443\n",
    )
    .unwrap();
    let out = conduit(&dir).args(["status"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("conduit.toml") && err.contains("https_port"),
        "{err}"
    );
    std::fs::write(
        dir.join("conduit.toml"),
        "domain = \"internal\"\nhealth_interval = \"300ms\"\n",
    )
    .unwrap();

    let up = free_port();
    let mut upstream_proc = Some(upstream(up, www.path()));
    let (g, dns, https) = serve_anywhere(&dir);
    let mut gateway = Some(g);

    // register → served (DNS and HTTPS) without a restart
    let start = Instant::now();
    ok(conduit(&dir)
        .args([
            "register",
            "--name",
            "grafana",
            "--host",
            &format!("127.0.0.1:{up}"),
            "--health",
            "/",
        ])
        .env("CONDUIT_HEALTH_INTERVAL", "300ms")
        .output()
        .unwrap());
    wait_until(Duration::from_secs(5), || {
        dig(dns, "grafana.internal").contains("grafana.internal. 30 IN A 127.0.0.1")
    });
    wait_until(Duration::from_secs(5), || {
        curl(&root, https, "grafana.internal", "/")
            .1
            .contains("hello from grafana")
    });
    eprintln!("register → DNS and HTTPS served in {:?}", start.elapsed());

    // Python ssl trusts the chain too
    let py = Command::new("python3")
        .arg("-c")
        .arg(
            "import ssl,socket,sys\n\
             ctx=ssl.create_default_context(cafile=sys.argv[1])\n\
             s=ctx.wrap_socket(socket.create_connection(('127.0.0.1',int(sys.argv[2]))),server_hostname='grafana.internal')\n\
             s.sendall(b'GET / HTTP/1.1\\r\\nHost: grafana.internal\\r\\nConnection: close\\r\\n\\r\\n')\n\
             d=b''\n\
             while True:\n\
             \x20   c=s.recv(65536)\n\
             \x20   if not c: break\n\
             \x20   d+=c\n\
             print(d.decode())",
        )
        .arg(&root)
        .arg(https.to_string())
        .output()
        .unwrap();
    let text = ok(py);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("hello from grafana"),
        "{text}"
    );

    // the other read-only commands against the running gateway
    let text = ok(conduit(&dir)
        .args([
            "dns",
            "resolve",
            "grafana.internal",
            "--server",
            &format!("127.0.0.1:{dns}"),
        ])
        .output()
        .unwrap());
    assert_eq!(text.trim(), "127.0.0.1");
    let text = ok(conduit(&dir).args(["certs", "list"]).output().unwrap());
    assert!(
        text.contains("grafana.internal") && text.contains("until 20"),
        "{text}"
    );
    let text = ok(conduit(&dir).args(["monitor", "--json"]).output().unwrap());
    assert!(
        text.lines().any(|l| l.contains("\"type\":\"host\"")),
        "{text}"
    );

    // rotate and revoke through the running gateway: a new certificate is served at once
    let before = ok(conduit(&dir)
        .args(["certs", "inspect", "grafana"])
        .env("CONDUIT_HTTPS_PORT", https.to_string())
        .output()
        .unwrap());
    let text = ok(conduit(&dir)
        .args(["certs", "revoke", "grafana"])
        .output()
        .unwrap());
    assert!(text.contains("revoked_serial"), "{text}");
    let after = ok(conduit(&dir)
        .args(["certs", "inspect", "grafana"])
        .env("CONDUIT_HTTPS_PORT", https.to_string())
        .output()
        .unwrap());
    let serial = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap()["serial"].clone();
    assert_ne!(serial(&before), serial(&after));
    assert_eq!(curl(&root, https, "grafana.internal", "/").0, 200);
    let out = conduit(&dir)
        .args(["certs", "rotate", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // the admin API: monitor samples and Prometheus metrics from the running gateway
    let doc = Document::admin_api(env!("CARGO_MANIFEST_DIR")).unwrap();
    let socket = dir.join("admin.sock");
    let admin = |path: &str| admin_call(&doc, &socket, "GET", path).1;
    wait_until(Duration::from_secs(5), || {
        admin("/v1/monitor").contains("\"type\":\"host\"")
    });
    let metrics = admin("/metrics");
    assert!(
        metrics.contains("conduit_proxy_requests_total") && metrics.contains("conduit_host_"),
        "{metrics}"
    );
    assert!(admin("/v1/nope").contains("no such endpoint"));
    assert!(
        admin("/v1/dns").contains("grafana.internal."),
        "DNS records"
    );
    assert!(
        admin("/v1/audit?limit=1000").contains("service_register"),
        "audit tail"
    );
    // every other answer the API gives, checked against the document too
    assert!(admin("/v1/health").contains("true"));
    assert!(admin("/v1/status").contains("grafana.internal"));
    assert_eq!(admin_call(&doc, &socket, "DELETE", "/v1/status").0, 405);
    assert_eq!(
        admin_call(&doc, &socket, "POST", "/v1/certs/nosuch/rotate").0,
        404
    );
    assert_eq!(admin_call(&doc, &socket, "POST", "/v1/nothing").0, 404);
    let (code, body) = admin_call(&doc, &socket, "POST", "/v1/certs/grafana/rotate");
    assert_eq!(code, 200, "{body}");

    // status --json: live from the gateway, healthy, with the certificate's expiry
    let text = ok(conduit(&dir).args(["status", "--json"]).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["gateway"], "running", "{text}");
    let svc = &v["services"][0];
    assert_eq!(
        (svc["name"].as_str(), svc["healthy"].as_bool()),
        (Some("grafana"), Some(true)),
        "{text}"
    );
    assert!(svc["certificate_not_after"].is_string(), "{text}");
    assert_eq!(svc["dns"], serde_json::json!(["127.0.0.1"]), "{text}");

    // the upstream stops → unhealthy after two failed checks, 503, audited
    drop(upstream_proc.take());
    wait_until(Duration::from_secs(5), || {
        curl(&root, https, "grafana.internal", "/").0 == 503
    });
    wait_until(Duration::from_secs(5), || {
        let t = ok(conduit(&dir)
            .args(["logs", "--action", "health_change"])
            .output()
            .unwrap());
        t.contains("is unhealthy")
    });
    // and back
    let _back = upstream(up, www.path());
    wait_until(Duration::from_secs(5), || {
        curl(&root, https, "grafana.internal", "/").0 == 200
    });

    // deregister → NXDOMAIN and no route
    ok(conduit(&dir)
        .args(["deregister", "--name", "grafana"])
        .output()
        .unwrap());
    wait_until(Duration::from_secs(5), || {
        dig(dns, "grafana.internal").contains("NXDOMAIN")
    });
    wait_until(Duration::from_secs(5), || {
        curl(&root, https, "grafana.internal", "/").0 != 200
    });

    // every action is in the log, and the chain verifies (ours and the reference's)
    let text = ok(conduit(&dir).arg("logs").output().unwrap());
    for action in [
        "setup",
        "service_register",
        "cert_issue",
        "health_change",
        "service_deregister",
    ] {
        assert!(text.contains(action), "{action} missing from:\n{text}");
    }
    let text = ok(conduit(&dir)
        .args(["audit", "verify", "--level", "signatures"])
        .output()
        .unwrap());
    assert!(text.starts_with("valid"), "{text}");
    if let Some(capsule) = which("capsule") {
        let out = Command::new(capsule)
            .args(["verify", "--db"])
            .arg(dir.join("capsules.db"))
            .args(["--full", "--json"])
            .env("QUANTUMPIPES_DATA_DIR", &dir)
            .output()
            .unwrap();
        let text = ok(out);
        assert!(
            text.contains("\"valid\": true") || text.contains("\"valid\":true"),
            "{text}"
        );
    } else {
        assert_eq!(
            std::env::var_os("CI"),
            None,
            "CI must install the reference verifier"
        );
    }

    // registered while the gateway is down → served after the restart, same state
    let g = gateway.take().unwrap();
    let pid = g.0.id();
    Command::new("kill").arg(pid.to_string()).status().unwrap();
    drop(g);
    ok(conduit(&dir)
        .args([
            "register",
            "--name",
            "loki",
            "--upstream",
            &format!("127.0.0.1:{up}"),
            "--health",
            "/",
        ])
        .output()
        .unwrap());
    let text = ok(conduit(&dir).args(["status", "--json"]).output().unwrap());
    assert!(
        text.contains("\"stopped\"") && text.contains("loki"),
        "{text}"
    );
    let _gateway = serve(&dir, dns, https);
    wait_until(Duration::from_secs(5), || {
        curl(&root, https, "loki.internal", "/")
            .1
            .contains("hello from grafana")
    });
    assert!(dig(dns, "grafana.internal").contains("NXDOMAIN"));
}

#[test]
fn admin_tcp_needs_a_token() {
    if !have("curl") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("conduit");
    ok(conduit(&dir).arg("setup").output().unwrap());
    let (dns, https, admin) = (free_port(), free_port(), free_port());
    let args = |c: &mut Command| {
        c.args(["serve", "--advertise", "127.0.0.1"])
            .arg(format!("--dns-listen=127.0.0.1:{dns}"))
            .arg(format!("--https-listen=127.0.0.1:{https}"))
            .arg(format!("--admin-listen=127.0.0.1:{admin}"))
            .arg("--no-http");
    };
    // no token: refused before anything is bound
    let mut c = conduit(&dir);
    args(&mut c);
    let out = c.env_remove("CONDUIT_ADMIN_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a token"));
    // with a token: 401 without it, 200 with it
    let mut c = conduit(&dir);
    args(&mut c);
    let _gw = Killed(
        c.env("CONDUIT_ADMIN_TOKEN", "s3cret-token-for-tests")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    let code = |auth: Option<&str>| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
        if let Some(a) = auth {
            c.args(["-H", a]);
        }
        let out = c
            .arg(format!("http://127.0.0.1:{admin}/v1/status"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(code(None), "401");
    assert_eq!(
        code(Some("Authorization: Bearer wrong-token-of-same-len")),
        "401"
    );
    assert_eq!(
        code(Some("Authorization: Bearer s3cret-token-for-tests")),
        "200"
    );
    // named tokens: stored hashed, read-only ones refused every change, revoked ones at once
    let add = |name: &str, read_only: bool| {
        let mut c = conduit(&dir);
        c.args(["token", "add", name]);
        if read_only {
            c.arg("--read-only");
        }
        ok(c.output().unwrap()).trim().to_owned()
    };
    let reader = add("dashboard", true);
    let writer = add("deploy", false);
    let stored = std::fs::read_to_string(dir.join("tokens.json")).unwrap();
    assert!(
        !stored.contains(&reader[4..]) && !stored.contains(&writer[4..]),
        "hashes only"
    );
    assert!(
        stored.contains("\"legacy\""),
        "the configured token is imported as legacy"
    );
    let call = |secret: &str, method: &str, body: Option<&str>| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
            .args(["-H", &format!("Authorization: Bearer {secret}")]);
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "-d", b]);
        }
        let out = c
            .arg(format!("http://127.0.0.1:{admin}/v1/services"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let spec = r#"{"name":"viatoken","upstreams":["10.0.1.5:8080"]}"#;
    assert_eq!(call(&reader, "GET", None), "200");
    assert_eq!(call(&reader, "POST", Some(spec)), "403");
    assert_eq!(call(&writer, "POST", Some(spec)), "201");
    let log = ok(conduit(&dir)
        .args(["logs", "--json", "--action", "service_register"])
        .output()
        .unwrap());
    assert!(log.contains("\"user\":\"token:deploy\""), "{log}");
    let list = ok(conduit(&dir).args(["token", "list"]).output().unwrap());
    assert!(
        list.contains("dashboard") && list.contains("read") && !list.contains(&reader),
        "{list}"
    );
    ok(conduit(&dir)
        .args(["token", "revoke", "deploy"])
        .output()
        .unwrap());
    assert_eq!(
        call(&writer, "GET", None),
        "401",
        "revoked without a restart"
    );
}

#[test]
fn tunnel_agent_shares_the_audit_chain() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("conduit");
    ok(conduit(&dir).arg("setup").output().unwrap());
    let (dns, https) = (free_port(), free_port());
    let agent = Command::new(env!("CARGO_BIN_EXE_tunnel_agent"))
        .arg("--dir")
        .arg(&dir)
        .args(["--tunnel-ip", "127.0.0.1", "--interface", "wg-test"])
        .args([
            "--dns-port",
            &dns.to_string(),
            "--https-port",
            &https.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Killed(agent);
    wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
    });
    ok(conduit(&dir)
        .args(["register", "--name", "api", "--upstream", "10.0.1.5:8080"])
        .output()
        .unwrap());
    if have("dig") {
        wait_until(Duration::from_secs(5), || {
            dig(dns, "api.internal").contains("api.internal. 30 IN A 127.0.0.1")
        });
    }
    Command::new("kill")
        .arg(agent.0.id().to_string())
        .status()
        .unwrap();
    let mut agent = agent;
    let status = agent.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let text = ok(conduit(&dir).arg("logs").output().unwrap());
    for action in ["tunnel_up", "service_register", "cert_issue", "tunnel_down"] {
        assert!(text.contains(action), "{action} missing from:\n{text}");
    }
    let text = ok(conduit(&dir).args(["audit", "verify"]).output().unwrap());
    assert!(text.starts_with("valid"), "{text}");
}
