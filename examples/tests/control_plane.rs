//! The gateway as configured by one file (real processes, loopback only): `--config` outside
//! the state directory, `[admin] socket` elsewhere, `[proxy] first_byte_timeout`, `--no-tls`
//! services over plain HTTP, unknown keys refused, and the SSRF guard refusing a metadata
//! upstream in a network namespace that has nothing but loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code driving real processes in real time, no runtime"
)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;

use common::{Site, conduit};

use conduit_test_support::have;
use conduit_test_support::process::{Killed, free_port, ok, wait_until};

/// What `conduit status --json` prints.
#[derive(serde::Deserialize)]
struct StatusView {
    gateway: String,
    services: Vec<conduit::api::ServiceStatus>,
}

fn fails(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    text
}

/// An upstream with `/slow` (head after 3 s), `/stream` (head at 0.5 s, then a chunk every
/// 2 s, three in all) and everything else answered at once.
const UPSTREAM: &str = r#"
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def plain(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(3)
            return self.plain(b"late\n")
        if self.path == "/stream":
            time.sleep(0.5)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                if i:
                    time.sleep(2)
                data = ("data: %d\n\n" % i).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        self.plain(b"plain ok\n")
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

#[test]
fn one_configuration_file_drives_the_gateway_and_every_command() {
    if !(have("curl") && have("python3") && have("dig")) {
        return;
    }
    let site = Site::new("");
    // `serve` on an empty state directory sets it up first.
    assert!(!site.state.exists());
    let _gw = site.serve();
    assert!(site.state.join("tls/root.pem").is_file());
    assert!(
        !site.state.join("admin.sock").exists(),
        "the socket is where the file says"
    );

    let up = free_port();
    let _upstream = Killed(
        Command::new("python3")
            .args(["-c", UPSTREAM, &up.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", up)).is_ok()
    });
    let upstream = format!("127.0.0.1:{up}");
    ok(site
        .cmd()
        .args(["register", "--name", "llm", "--upstream", &upstream])
        .output()
        .unwrap());
    ok(site
        .cmd()
        .args([
            "register",
            "--name",
            "plain",
            "--upstream",
            &upstream,
            "--no-tls",
        ])
        .output()
        .unwrap());
    wait_until(Duration::from_secs(5), || {
        site.https("llm.internal", "/").0 == 200
    });

    // first_byte_timeout = 1s: a head that takes 3 s is a 504 after about 1 s …
    let (code, _, took) = site.https("llm.internal", "/slow");
    assert_eq!(code, 504);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // … while a stream whose head comes at 0.5 s and then a chunk every 2 s is not cut.
    let (code, body, took) = site.https("llm.internal", "/stream");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body.matches("data: ").count(), 3, "{body}");
    assert!(took >= Duration::from_secs(4), "{took:?}");

    // A --no-tls service answers over plain HTTP by name; TLS services are redirected there,
    // unknown names are not.
    wait_until(Duration::from_secs(5), || {
        site.http("plain.internal", "/").1 == "plain ok\n"
    });
    let (code, _, _) = site.http("llm.internal", "/a?b");
    assert_eq!(code, 308);
    let (code, _, _) = site.http("evil.example", "/");
    assert_eq!(code, 404);
    // DNS gives the plain-HTTP port for it, the HTTPS port for the others.
    let srv = |name: &str| {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &site.dns.to_string(),
                "+short",
                "SRV",
                name,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(
        srv("_http._tcp.plain.internal"),
        format!("0 0 {} plain.internal.", site.http)
    );
    assert_eq!(
        srv("_https._tcp.llm.internal"),
        format!("0 0 {} llm.internal.", site.https)
    );

    // Every command finds the gateway where the file says: no --admin-socket, no ports.
    let text = ok(site.cmd().args(["status", "--json"]).output().unwrap());
    let v: StatusView = serde_json::from_str(&text).unwrap();
    assert_eq!(v.gateway, "running", "{text}");
    let plain = v.services.iter().find(|s| s.name == "plain").unwrap();
    assert!(!plain.tls, "{text}");
    assert_eq!(plain.certificate_not_after, None, "{text}");
    let text = ok(site.cmd().args(["certs", "list"]).output().unwrap());
    assert!(
        text.contains("llm.internal") && text.contains("until 20"),
        "{text}"
    );
    let text = ok(site
        .cmd()
        .args(["certs", "inspect", "llm"])
        .output()
        .unwrap());
    let cert: conduit::ca::CertInfo = serde_json::from_str(&text).unwrap();
    assert_eq!(cert.dns_names, ["llm.internal"], "{text}");
    let text = ok(site
        .cmd()
        .args(["certs", "rotate", "llm"])
        .output()
        .unwrap());
    let rotated: conduit::api::CertificateInfo = serde_json::from_str(&text).unwrap();
    assert_ne!(rotated.serial, cert.serial);
    let text = ok(site
        .cmd()
        .args(["dns", "resolve", "llm.internal"])
        .output()
        .unwrap());
    assert_eq!(text.trim(), "127.0.0.1");
    let out = site
        .cmd()
        .args(["dns", "resolve", "nosuch.internal"])
        .output()
        .unwrap();
    assert!(fails(out).contains("NXDOMAIN"));
    let text = ok(site.cmd().args(["dns", "list"]).output().unwrap());
    assert!(text.contains("llm.internal\t127.0.0.1"), "{text}");
    let text = ok(site.cmd().args(["config", "show"]).output().unwrap());
    assert!(
        text.contains(&site.socket.display().to_string())
            && text.contains("first_byte_timeout = \"1s\""),
        "{text}"
    );
    // logs --follow prints what is there, then what is appended.
    let mut follow = Killed(
        site.cmd()
            .args(["logs", "--follow", "--action", "service_register"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    ok(site
        .cmd()
        .args(["register", "--name", "late", "--upstream", &upstream])
        .output()
        .unwrap());
    std::thread::sleep(Duration::from_millis(600));
    let _ = follow.0.kill();
    let out = follow.0.wait_with_output_ref();
    assert_eq!(out.matches("service_register").count(), 3, "{out}");
    assert!(out.contains("late"), "{out}");
}

/// `Child::wait_with_output` takes the child by value; `Killed` owns it.
trait WaitOutput {
    fn wait_with_output_ref(&mut self) -> String;
}

impl WaitOutput for std::process::Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read as _;
        let _ = self.wait();
        let mut s = String::new();
        if let Some(mut o) = self.stdout.take() {
            let _ = o.read_to_string(&mut s);
        }
        s
    }
}

#[test]
fn unknown_keys_are_refused_naming_the_key() {
    let site = Site::new("[proxy.tls]\n");
    // `[proxy.tls]` is a table where a key `tls` is not known.
    let out = site.cmd().args(["config", "check"]).output().unwrap();
    let err = fails(out);
    assert!(
        err.contains("conduit.toml") && err.contains("proxy.tls"),
        "{err}"
    );
    for (text, key) in [
        ("[proxy]\nfirst_byte = \"1s\"\n", "proxy.first_byte"),
        ("[health]\nintervall = \"1s\"\n", "health.intervall"),
        ("bogus = true\n", "bogus"),
        ("[monitor.thresholds]\ngpu = 1\n", "monitor.thresholds.gpu"),
    ] {
        let file = site.config.with_file_name(format!("{key}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = conduit(&file)
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap();
        let err = fails(out);
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains(&format!("`{key}`")), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        // `serve` refuses it too, before anything is created or bound.
        let out = conduit(&file)
            .arg("--dir")
            .arg(&site.state)
            .arg("serve")
            .output()
            .unwrap();
        assert!(fails(out).contains(&format!("`{key}`")));
        assert!(!site.state.exists(), "nothing created");
    }
    // A value that cannot be used names its key too.
    let file = site.config.with_file_name("lifetime.toml");
    std::fs::write(&file, "[ca]\nleaf_lifetime = \"5y\"\n").unwrap();
    let out = conduit(&file).args(["config", "check"]).output().unwrap();
    assert!(fails(out).contains("`ca.leaf_lifetime`"));
    // And a good file is ok.
    let good = site.config.with_file_name("good.toml");
    std::fs::write(&good, "[proxy]\nmax_body = \"10MiB\"\n").unwrap();
    let text = ok(conduit(&good).args(["config", "check"]).output().unwrap());
    assert!(text.trim().ends_with(": ok"), "{text}");
}

/// The gateway runs in a network namespace with only loopback, so a broken guard cannot
/// send a packet off the machine.
#[test]
fn metadata_upstreams_are_refused_before_any_check_or_lookup() {
    if !(have("unshare") && have("ip") && have("curl")) {
        return;
    }
    let site = Site::new("");
    let script = format!(
        r#"set -u
ip link set lo up
C="{bin} --config {config} --dir {state}"
$C serve >/dev/null 2>"{log}" &
GW=$!
for i in $(seq 100); do [ -S "{socket}" ] && break; sleep 0.05; done
echo "register-metadata:"
$C register --name meta --upstream 169.254.169.254:80; echo "rc=$?"
$C register --name meta6 --upstream '[fd00:ec2::254]:80'; echo "rc=$?"
$C register --name gname --upstream metadata.google.internal:80; echo "rc=$?"
$C register --name ll --upstream 169.254.10.1:80; echo "rc=$?"
curl -sS -o /dev/null -w "api=%{{http_code}}\n" --unix-socket "{socket}" -H 'content-type: application/json' -d '{{"name":"apimeta","upstreams":["169.254.169.254:80"]}}' http://conduit/v1/services
echo "written-by-another-process:"
touch "{ready}"
for i in $(seq 200); do [ -e "{written}" ] && break; sleep 0.05; done
for i in $(seq 50); do
  code=$(curl -sS -o /dev/null -w "%{{http_code}}" --cacert {state}/tls/root.pem --resolve sneaky.internal:{https}:127.0.0.1 https://sneaky.internal:{https}/)
  [ "$code" != 000 ] && break; sleep 0.1
done
echo "code=$code"
$C status --json
kill $GW; wait $GW
"#,
        bin = env!("CARGO_BIN_EXE_conduit"),
        ready = site.state.with_file_name("ready-for-sneaky").display(),
        written = site.state.with_file_name("sneaky-written").display(),
        config = site.config.display(),
        state = site.state.display(),
        socket = site.socket.display(),
        log = site.state.with_file_name("gateway.log").display(),
        https = site.https,
    );
    let child = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Another process (this one, outside the namespace) writes the registry while the
    // gateway runs.
    let ready = site.state.with_file_name("ready-for-sneaky");
    wait_until(Duration::from_secs(20), || ready.exists());
    common::write_behind_the_back(&site.state, "sneaky", "169.254.169.254:80");
    std::fs::write(site.state.with_file_name("sneaky-written"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Each refused by `register`, naming the address and why, nothing stored.
    assert_eq!(text.matches("rc=1").count(), 4, "{text}");
    assert!(
        text.contains("169.254.169.254") && text.contains("metadata"),
        "{text}"
    );
    assert!(text.contains("link-local"), "{text}");
    assert!(
        text.contains("allow_upstreams"),
        "names the key that allows it: {text}"
    );
    // Through the API: 422, and the refusal is audited.
    assert!(text.contains("api=422"), "{text}");
    let audit = ok(site
        .cmd()
        .args(["logs", "--json", "--action", "service_register"])
        .output()
        .unwrap());
    let refused = audit
        .lines()
        .find(|l| l.contains("apimeta"))
        .unwrap_or_else(|| panic!("the API's refusal is not audited: {audit}"));
    assert!(
        refused.contains("\"failure\"") && refused.contains("169.254.169.254"),
        "{refused}"
    );
    // Written into the registry behind the command's back: routed nowhere, no check run.
    assert!(text.contains("code=503"), "{text}");
    let json = &text[text.find("{\n").unwrap()..];
    let json = &json[..json.rfind('}').unwrap() + 1];
    let v: StatusView = serde_json::from_str(json).unwrap();
    let names: Vec<&str> = v.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["sneaky"], "{text}");
    assert_eq!(v.services[0].upstreams, [], "{text}");
    let log = std::fs::read_to_string(site.state.with_file_name("gateway.log")).unwrap();
    assert!(log.contains("refused by the SSRF policy"), "{log}");
    assert!(!log.contains("is down"), "no check was attempted: {log}");
}
