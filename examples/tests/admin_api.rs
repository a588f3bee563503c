//! Service changes through the admin API, with real processes and clients: curl over the
//! unix socket, `dig` against the gateway's DNS, curl through its proxy with our root
//! trusted; every JSON answer checked against `docs/admin-api.yaml`.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Site, admin, dig};
use conduit_test_support::have;
use conduit_test_support::openapi::Document;
use conduit_test_support::process::{free_port, http_server, ok, wait_until};

fn status_of_dig(site: &Site, name: &str) -> String {
    let out = Command::new("dig")
        .args(["+time=1", "+tries=1", "-p"])
        .arg(site.dns.to_string())
        .args(["@127.0.0.1", name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_owned()
}

/// An upstream (python's http.server) answering `body` at `/`.
fn upstream(
    body: &str,
) -> (
    conduit_test_support::process::Killed,
    u16,
    tempfile::TempDir,
) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), body).unwrap();
    let port = free_port();
    let k = http_server(port, root.path());
    (k, port, root)
}

#[test]
fn services_change_through_the_api_and_are_served_at_once() {
    if !(have("curl") && have("dig") && have("python3")) {
        assert_eq!(std::env::var_os("CI"), None, "CI must install curl and dig");
        return;
    }
    let doc = Document::admin_api(env!("CARGO_MANIFEST_DIR")).unwrap();
    let site = Site::new("");
    let (_one, p1, _r1) = upstream("one\n");
    let (_two, p2, _r2) = upstream("two\n");
    let _gw = site.serve();
    let sock = &site.socket;

    // register → 201 with the record and its revision as ETag; served within a second
    let spec =
        format!(r#"{{"name":"web","upstreams":["127.0.0.1:{p1}"],"health":{{"path":"/"}}}}"#);
    let start = Instant::now();
    let a = admin(&doc, sock, "POST", "/v1/services", Some(&spec), &[]);
    assert_eq!(a.code, 201, "{}", a.body);
    let rev = a.json()["revision"].as_u64().unwrap();
    assert_eq!(a.header("etag"), Some(format!("\"{rev}\"")));
    wait_until(Duration::from_secs(1), || {
        dig(&site, "web.internal") == "127.0.0.1" && site.https("web.internal", "/").1 == "one\n"
    });
    let served_in = start.elapsed();
    assert!(served_in < Duration::from_secs(1), "{served_in:?}");

    // the same again: 409; a bad body: 400; an unknown service: 404 — each with its code
    let again = admin(&doc, sock, "POST", "/v1/services", Some(&spec), &[]);
    assert_eq!(
        (again.code, again.json()["error"]["code"].clone()),
        (409, "conflict".into())
    );
    let bad = admin(
        &doc,
        sock,
        "POST",
        "/v1/services",
        Some(r#"{"name":"x"}"#),
        &[],
    );
    assert_eq!(
        (bad.code, bad.json()["error"]["code"].clone()),
        (400, "bad_request".into())
    );
    let none = admin(&doc, sock, "GET", "/v1/services/nosuch", None, &[]);
    assert_eq!(
        (none.code, none.json()["error"]["code"].clone()),
        (404, "not_found".into())
    );

    // GET gives the same ETag; a stale If-Match → 412 and nothing changed
    let got = admin(&doc, sock, "GET", "/v1/services/web", None, &[]);
    assert_eq!(got.header("etag"), Some(format!("\"{rev}\"")));
    let moved =
        format!(r#"{{"name":"web","upstreams":["127.0.0.1:{p2}"],"health":{{"path":"/"}}}}"#);
    let stale = format!("If-Match: \"{}\"", rev - 1);
    let a = admin(
        &doc,
        sock,
        "PUT",
        "/v1/services/web",
        Some(&moved),
        &[&stale],
    );
    assert_eq!(
        (a.code, a.json()["error"]["code"].clone()),
        (412, "stale".into())
    );
    let still = admin(&doc, sock, "GET", "/v1/services/web", None, &[]);
    assert_eq!(still.json()["revision"].as_u64(), Some(rev));
    assert_eq!(site.https("web.internal", "/").1, "one\n");

    // update the upstreams while a client asks every 50 ms: not one request fails
    let stop = Arc::new(AtomicBool::new(false));
    let codes = Arc::new(Mutex::new(Vec::new()));
    let client = {
        let (stop, codes) = (stop.clone(), codes.clone());
        let (https, root) = (site.https, site.state.join("tls/root.pem"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = Command::new("curl")
                    .args([
                        "-sS",
                        "--max-time",
                        "5",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                    ])
                    .arg("--cacert")
                    .arg(&root)
                    .args(["--resolve", &format!("web.internal:{https}:127.0.0.1")])
                    .arg(format!("https://web.internal:{https}/"))
                    .output()
                    .unwrap();
                codes
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&out.stdout).into_owned());
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let current = format!("If-Match: \"{rev}\"");
    let a = admin(
        &doc,
        sock,
        "PUT",
        "/v1/services/web",
        Some(&moved),
        &[&current],
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let new_rev = a.json()["revision"].as_u64().unwrap();
    assert!(new_rev > rev);
    assert_eq!(a.header("etag"), Some(format!("\"{new_rev}\"")));
    wait_until(Duration::from_secs(2), || {
        site.https("web.internal", "/").1 == "two\n"
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    let codes = codes.lock().unwrap().clone();
    assert!(codes.len() >= 10, "{codes:?}");
    assert!(
        codes.iter().all(|c| c == "200"),
        "a request failed during the update: {codes:?}"
    );

    // a PUT naming another service is refused; DELETE deregisters: NXDOMAIN at once
    let renamed = format!(r#"{{"name":"other","upstreams":["127.0.0.1:{p2}"]}}"#);
    let a = admin(&doc, sock, "PUT", "/v1/services/web", Some(&renamed), &[]);
    assert_eq!(a.code, 400, "{}", a.body);
    let a = admin(&doc, sock, "DELETE", "/v1/services/web", None, &[]);
    assert_eq!((a.code, a.json()["active"].clone()), (200, false.into()));
    wait_until(Duration::from_secs(1), || {
        status_of_dig(&site, "web.internal") == "NXDOMAIN"
    });
    let list = admin(&doc, sock, "GET", "/v1/services", None, &[]);
    assert_eq!(list.json()["services"], serde_json::json!([]));

    // every change is audited as the peer's user (from the kernel), never as $USER
    let me = conduit::identity::current_user();
    let log = ok(site
        .cmd()
        .args(["logs", "--json", "--limit", "100"])
        .output()
        .unwrap());
    for action in ["service_register", "service_update", "service_deregister"] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("\"action\":\"{action}\"")) && l.contains("\"success\""))
            .unwrap_or_else(|| panic!("{action} not audited: {log}"));
        assert!(line.contains(&format!("\"user\":\"{me}\"")), "{line}");
    }
    // each zone the DNS server swapped in is audited too (the original tool's dns_reload),
    // by the gateway, with the serial it serves
    let reload = log
        .lines()
        .rfind(|l| l.contains("\"action\":\"dns_reload\""))
        .unwrap_or_else(|| panic!("no dns_reload: {log}"));
    let reload: conduit::api::AuditEntry = serde_json::from_str(reload).unwrap();
    assert!(reload.details["serial"].as_u64().unwrap() > 0, "{reload:?}");
    // the command line, with the gateway running, writes as the real user too
    let out = site
        .cmd()
        .env("USER", "mallory")
        .args([
            "register",
            "--name",
            "cli",
            "--upstream",
            &format!("127.0.0.1:{p1}"),
        ])
        .output()
        .unwrap();
    ok(out);
    let log = ok(site
        .cmd()
        .args(["logs", "--json", "--action", "service_register"])
        .output()
        .unwrap());
    assert!(!log.contains("mallory"), "{log}");
    assert!(log.contains(&format!("\"user\":\"{me}\"")), "{log}");
}

/// `curl -N` on the event stream, writing to a file, until dropped.
struct Stream {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Stream {
    fn open(
        site: &Site,
        query: &str,
        last_id: Option<&str>,
        dir: &std::path::Path,
        n: usize,
    ) -> Self {
        let out = dir.join(format!("stream-{n}.txt"));
        let file = std::fs::File::create(&out).unwrap();
        let mut c = Command::new("curl");
        c.args(["-sS", "-N", "--unix-socket"]).arg(&site.socket);
        if let Some(id) = last_id {
            c.args(["-H", &format!("Last-Event-ID: {id}")]);
        }
        let child = c
            .arg(format!("http://conduit/v1/events{query}"))
            .stdout(file)
            .spawn()
            .unwrap();
        let s = Self { child, out };
        s.wait_for(": conduit events", Duration::from_secs(5));
        s
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until the stream holds `what`.
    fn wait_for(&self, what: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.text().contains(what) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no {what:?} within {limit:?}:\n{}", self.text());
    }

    /// `(id, type)` of every event so far.
    fn events(&self) -> Vec<(String, String)> {
        self.text()
            .split("\n\n")
            .filter_map(|block| {
                let id = block.lines().find_map(|l| l.strip_prefix("id: "))?;
                let ty = block.lines().find_map(|l| l.strip_prefix("event: "))?;
                Some((id.to_owned(), ty.to_owned()))
            })
            .collect()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_event_stream_is_live_resumable_and_never_slows_the_gateway() {
    if !(have("curl") && have("python3")) {
        assert_eq!(std::env::var_os("CI"), None, "CI must install curl");
        return;
    }
    let doc = Document::admin_api(env!("CARGO_MANIFEST_DIR")).unwrap();
    let site = Site::new("");
    let tmp = tempfile::tempdir().unwrap();
    let (up, port, _root) = upstream("one\n");
    let gw = site.serve();
    let sock = &site.socket;

    // a client that never reads: the gateway must not wait for it
    let mut stuck = std::os::unix::net::UnixStream::connect(sock).unwrap();
    std::io::Write::write_all(
        &mut stuck,
        b"GET /v1/events HTTP/1.1\r\nHost: conduit\r\n\r\n",
    )
    .unwrap();

    let live = Stream::open(&site, "?types=service,health", None, tmp.path(), 1);
    let all = Stream::open(&site, "", None, tmp.path(), 2);
    let spec =
        format!(r#"{{"name":"web","upstreams":["127.0.0.1:{port}"],"health":{{"path":"/"}}}}"#);
    assert_eq!(
        admin(&doc, sock, "POST", "/v1/services", Some(&spec), &[]).code,
        201
    );
    live.wait_for("event: service", Duration::from_secs(2));
    // a new upstream gets traffic once its first check passes: that is a health event too
    wait_until(Duration::from_secs(5), || {
        site.https("web.internal", "/").1 == "one\n"
    });
    // the upstream dies: a health event follows the service event
    drop(up);
    live.wait_for("\"healthy\":false", Duration::from_secs(5));
    let seen = live.events();
    let types: Vec<&str> = seen.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(types, ["service", "health", "health"], "{}", live.text());
    // the unfiltered stream also has the audit records (as the caller) and the certificate
    all.wait_for("event: certificate", Duration::from_secs(2));
    let text = all.text();
    assert!(
        text.contains("event: audit") && text.contains("\"action\":\"service_register\""),
        "{text}"
    );

    // reconnecting after the first event gets exactly what came after it
    let again = Stream::open(
        &site,
        "?types=service,health",
        Some(&seen[0].0),
        tmp.path(),
        3,
    );
    wait_until(Duration::from_secs(2), || !again.events().is_empty());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(again.events(), seen[1..].to_vec());
    drop(again);

    // 200 registrations with the stuck client connected: none waits for it
    let start = Instant::now();
    for i in 0..200 {
        let one = format!(
            r#"{{"name":"s{i}","upstreams":["10.0.1.{}:80"]}}"#,
            i % 250 + 1
        );
        let t = Instant::now();
        assert_eq!(
            admin(&doc, sock, "POST", "/v1/services", Some(&one), &[]).code,
            201
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "registration {i} took {:?}",
            t.elapsed()
        );
    }
    eprintln!(
        "200 registrations in {:?} with a client that never reads",
        start.elapsed()
    );
    drop(stuck);

    // `conduit events` prints the stream
    let mut cli = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .arg("--config")
        .arg(&site.config)
        .arg("--dir")
        .arg(&site.state)
        .args(["events", "--json", "--types", "service"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let one = r#"{"name":"late","upstreams":["10.0.1.9:80"]}"#;
    assert_eq!(
        admin(&doc, sock, "POST", "/v1/services", Some(one), &[]).code,
        201
    );
    let mut first = String::new();
    let mut out = std::io::BufReader::new(cli.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    let _ = cli.kill();
    let _ = cli.wait();
    let ev: conduit::events::Event = serde_json::from_str(&first).unwrap();
    assert!(
        matches!(ev.kind, conduit::events::EventKind::Service { ref name, .. } if name == "late"),
        "{first}"
    );

    // after a restart, an old id gets `resync`
    let old = seen[0].0.clone();
    drop(gw);
    let _ = std::fs::remove_file(&site.socket); // the killed gateway's
    let _gw = site.serve();
    let after = Stream::open(&site, "", Some(&old), tmp.path(), 4);
    after.wait_for("event: resync", Duration::from_secs(2));
}

/// `[admin] socket_group`: the socket is 0660 and that group's; a non-root member of it
/// registers through the API and is audited by name (the kernel's SO_PEERCRED).
#[test]
fn a_member_of_the_socket_group_changes_services_and_is_audited_by_name() {
    if !(have("curl") && have("setpriv") && nix_is_root()) {
        assert_eq!(std::env::var_os("CI"), None, "CI runs as root with setpriv");
        return;
    }
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let site = Site::new("");
    // the socket where a non-root member can reach it
    let run = site.socket.parent().unwrap().to_owned();
    std::fs::create_dir_all(&run).unwrap();
    let text = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        text.replace("[admin]\n", "[admin]\nsocket_group = \"nogroup\"\n"),
    )
    .unwrap();
    for dir in [run.as_path(), run.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let _gw = site.serve();
    let meta = std::fs::metadata(&site.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let nogroup = nix_group("nogroup");
    assert_eq!(meta.gid(), nogroup);
    // nobody, in nogroup: allowed, and audited as nobody
    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "curl",
            "-sS",
        ])
        .args(["-o", "/dev/null", "-w", "%{http_code}", "--unix-socket"])
        .arg(&site.socket)
        .args(["-H", "content-type: application/json", "-d"])
        .arg(r#"{"name":"bygroup","upstreams":["10.0.1.7:80"]}"#)
        .arg("http://conduit/v1/services")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201", "{out:?}");
    let log = ok(site
        .cmd()
        .args(["logs", "--json", "--action", "service_register"])
        .output()
        .unwrap());
    assert!(log.contains("\"user\":\"nobody\""), "{log}");
    // nobody outside the group: refused by the socket's mode
    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=12345",
            "--clear-groups",
            "curl",
            "-sS",
        ])
        .args(["-o", "/dev/null", "-w", "%{http_code}", "--unix-socket"])
        .arg(&site.socket)
        .arg("http://conduit/v1/status")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000", "{out:?}");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

fn nix_group(name: &str) -> u32 {
    std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name)).then(|| f.nth(1).and_then(|g| g.parse().ok()))?
        })
        .unwrap()
}

/// `conduit logs --follow` with the gateway running reads through the admin API (here its
/// state directory is an empty one: every line must come from the gateway), prints each new
/// record from the event stream, and across a gateway restart catches up on what was
/// written while it was down, each record once.
#[test]
fn logs_follow_streams_from_the_gateway_and_survives_its_restart() {
    let site = Site::new("");
    let gw = site.serve();
    let register = |name: &str| {
        ok(site
            .cmd()
            .args(["register", "--name", name, "--upstream", "10.0.1.9:80"])
            .output()
            .unwrap())
    };
    register("first");
    let elsewhere = tempfile::tempdir().unwrap();
    let mut follow = common::conduit(&site.config)
        .arg("--dir")
        .arg(elsewhere.path())
        .args(["logs", "--follow", "--json", "--action", "service_register"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(elsewhere.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(elsewhere.path().join("stderr")).unwrap_or_default();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let reader = {
        let (lines, out) = (lines.clone(), follow.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        })
    };
    let printed = |domain: &str| {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&format!("Registered {domain} ")))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(5), || printed("first.internal") == 1)
            < Duration::from_secs(5),
        "the record before --follow started: {:?}",
        lines.lock().unwrap()
    );
    // a new record arrives from the stream, not from polling a file
    register("second");
    let took = wait_until(Duration::from_secs(3), || printed("second.internal") == 1);
    assert!(took < Duration::from_secs(3), "{:?}", lines.lock().unwrap());
    // the gateway stops; a change written while it is down is printed once it is back
    drop(gw);
    let _ = std::fs::remove_file(&site.socket);
    register("offline");
    let _gw = site.serve();
    let deadline = Instant::now() + Duration::from_secs(10);
    while printed("offline.internal") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        printed("offline.internal"),
        1,
        "{:?}\nstderr: {}",
        lines.lock().unwrap(),
        stderr()
    );
    register("third");
    wait_until(Duration::from_secs(3), || printed("third.internal") == 1);
    let _ = follow.kill();
    let _ = follow.wait();
    let _ = reader.join();
    for domain in ["first", "second", "offline", "third"] {
        let n = printed(&format!("{domain}.internal"));
        assert_eq!(n, 1, "{domain}: {:?}", lines.lock().unwrap());
    }
    // every line is the log's own JSON record, filtered by action
    for l in lines.lock().unwrap().iter() {
        let e: conduit::api::AuditEntry = serde_json::from_str(l).unwrap();
        assert_eq!(e.action, "service_register", "{l}");
    }
}
