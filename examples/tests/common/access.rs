//! What the access-policy suites share: an echo upstream, a gateway with services on it,
//! curl from a chosen source address, `conduit access check`.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use conduit_test_support::have;
use conduit_test_support::process::{Killed, free_port, ok, wait_until};

use super::{Site, present};

/// The peer alice's address.
pub(crate) const ALICE: &str = "127.0.0.2";
/// The peer bob's address.
pub(crate) const BOB: &str = "127.0.0.3";

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

pub(crate) fn echo() -> (u16, Killed) {
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
pub(crate) fn req(
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

pub(crate) fn conduit(site: &Site, args: &[&str]) -> Output {
    site.cmd().args(args).output().unwrap()
}

/// `conduit access check`: its exit code and first line.
pub(crate) fn check(site: &Site, args: &[&str]) -> (i32, String) {
    let mut all = vec!["access", "check"];
    all.extend_from_slice(args);
    let out = conduit(site, &all);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.code().unwrap_or(-1), text)
}

pub(crate) fn tools() -> bool {
    present(
        have("curl") && have("dig") && have("openssl") && have("python3"),
        "curl, dig, openssl and python3",
    )
}

/// A running gateway with `extra` configuration and `services` registered on one echo
/// upstream (`None` without the tools).
pub(crate) struct Running {
    pub(crate) site: Site,
    pub(crate) port: u16,
    _gw: Killed,
    _echo: Killed,
}

pub(crate) fn running(extra: &str, services: &[&str]) -> Option<Running> {
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
