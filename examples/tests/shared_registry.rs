//! Two gateways, one site: the registry in a real etcd 3.4 (Debian's `etcd-server`), each
//! gateway with its own state directory, intermediate CA under the site's one root, health
//! checks and audit chain. A change made
//! through either is served by both; with etcd down both keep answering DNS and proxying,
//! changes are refused with 503, a restarted gateway serves its signed last-known-good
//! snapshot, and once etcd is back changes made before and after the outage reach both. A
//! tampered snapshot is refused at start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: real processes, real time"
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Site, dig, metrics, upstream};
use conduit_test_support::etcd::Etcd;
use conduit_test_support::have;
use conduit_test_support::process::{ok, wait_until};

/// Whether `site` answers `name` in DNS and serves `body` for it over HTTPS.
fn serves(site: &Site, name: &str, body: &str) -> bool {
    dig(site, &format!("{name}.internal")) == "127.0.0.1"
        && site
            .https(&format!("{name}.internal"), "/")
            .1
            .contains(body)
}

/// Whether `site` no longer knows `name` (no DNS answer).
fn forgot(site: &Site, name: &str) -> bool {
    dig(site, &format!("{name}.internal")).is_empty()
}

fn fails(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "expected a failure: {text}");
    text
}

#[test]
fn two_gateways_share_one_registry_and_survive_the_store() {
    if !have("etcd") || !have("dig") || !have("curl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(tmp.path(), 1);
    // A checkpoint after every audit record, so the gateways witness each other at once.
    let registry = format!(
        "[registry]\nurl = \"{}\"\n[audit]\ncheckpoint_every = 1\n",
        etcd.url("site")
    );
    let (a, b) = (Site::new(&registry), Site::new(&registry));

    // A gateway joining a shared registry does not invent a root of its own.
    let refused = fails(b.cmd().arg("serve"));
    assert!(
        refused.contains("conduit setup") && refused.contains("conduit ca request-intermediate"),
        "{refused}"
    );
    // One root for the site: A's, kept offline; B sets up, then joins it with an
    // intermediate A's root signs (its own root and key are dropped).
    let bundle = tmp.path().join("site-root.pem");
    ok(a.cmd()
        .args(["setup", "--offline-root"])
        .arg(&bundle)
        .output()
        .unwrap());
    ok(b.cmd().arg("setup").output().unwrap());
    let (csr, crt) = (tmp.path().join("b.csr"), tmp.path().join("b.crt"));
    ok(b.cmd()
        .args(["ca", "request-intermediate", "--out"])
        .arg(&csr)
        .output()
        .unwrap());
    ok(b.cmd()
        .args(["ca", "sign-intermediate", "--root-key"])
        .arg(&bundle)
        .arg("--csr")
        .arg(&csr)
        .arg("--out")
        .arg(&crt)
        .output()
        .unwrap());
    let joined = ok(b
        .cmd()
        .args(["ca", "install-intermediate", "--join"])
        .arg(&crt)
        .output()
        .unwrap());
    assert!(joined.contains("Joined the site's root"), "{joined}");
    let root = |site: &Site| std::fs::read(site.state.join("tls/root.pem")).unwrap();
    assert_eq!(root(&a), root(&b), "one root for both gateways");
    assert_eq!(
        std::fs::read(b.state.join("tls/root.key"))
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::NotFound,
        "B keeps no root key"
    );
    let (_ga, mut gb) = (a.serve(), b.serve());
    let (one, two) = (upstream("one"), upstream("two"));

    // Registered through A: B answers DNS and serves HTTPS (with its own CA's leaf).
    let start = Instant::now();
    a.register("web", &one);
    let register_ms = wait_until(Duration::from_secs(5), || serves(&b, "web", "one"))
        .max(start.elapsed())
        .as_millis();
    // Updated through B: A follows.
    ok(b.cmd()
        .args(["service", "update", "web", "--upstream"])
        .arg(format!("127.0.0.1:{}", two.port))
        .output()
        .unwrap());
    wait_until(Duration::from_secs(5), || serves(&a, "web", "two"));
    // Deregistered through A: B forgets it.
    ok(a.cmd()
        .args(["deregister", "--name", "web"])
        .output()
        .unwrap());
    wait_until(Duration::from_secs(5), || forgot(&b, "web"));
    eprintln!("registered on A, served by B after {register_ms} ms (includes the CLI and curl)");

    // Each witnessed the other's audit checkpoints through the store.
    let witnessed = |site: &Site| -> Vec<String> {
        std::fs::read_dir(site.state.join("witnessed"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(5), || {
        !witnessed(&a).is_empty() && !witnessed(&b).is_empty()
    });
    assert!(
        witnessed(&a).iter().all(|k| !witnessed(&b).contains(k)),
        "each witnesses the other, not itself"
    );

    a.register("kept", &one);
    a.register("doomed", &two);
    wait_until(Duration::from_secs(5), || serves(&b, "doomed", "two"));
    // Just before the outage: a deregistration.
    ok(a.cmd()
        .args(["deregister", "--name", "doomed"])
        .output()
        .unwrap());

    etcd.members[0].kill();
    // Both keep serving; a change is refused with the store named.
    let down = fails(
        a.cmd()
            .args(["register", "--name", "late", "--upstream"])
            .arg(format!("127.0.0.1:{}", one.port)),
    );
    assert!(down.contains("unreachable"), "{down}");
    for site in [&a, &b] {
        assert!(serves(site, "kept", "one"));
        wait_until(Duration::from_secs(5), || {
            metrics(site).contains("conduit_registry_store_reachable 0")
        });
    }
    let status = ok(a.cmd().arg("status").output().unwrap());
    assert!(status.contains("UNREACHABLE"), "{status}");
    wait_until(Duration::from_secs(5), || forgot(&b, "doomed"));

    // B restarted while the store is down: it serves its last-known-good snapshot.
    drop(gb);
    gb = b.serve();
    wait_until(Duration::from_secs(10), || serves(&b, "kept", "one"));
    assert!(forgot(&b, "doomed"));

    // The store is back: a deregistration made now reaches both.
    etcd.members[0].spawn();
    etcd.wait_healthy();
    wait_until(Duration::from_secs(10), || {
        metrics(&a).contains("conduit_registry_store_reachable 1")
            && metrics(&b).contains("conduit_registry_store_reachable 1")
    });
    ok(a.cmd()
        .args(["deregister", "--name", "kept"])
        .output()
        .unwrap());
    wait_until(Duration::from_secs(5), || {
        forgot(&b, "kept") && forgot(&a, "kept")
    });

    // With B stopped, its CLI writes to the store itself; A serves it.
    drop(gb);
    b.register("direct", &two);
    wait_until(Duration::from_secs(5), || serves(&a, "direct", "two"));

    // A tampered snapshot is refused at start.
    let snap = b.state.join("registry-snapshot.json");
    let text = std::fs::read_to_string(&snap).unwrap();
    assert!(text.contains("kept"), "the snapshot holds the history");
    std::fs::write(&snap, text.replace("\"kept\"", "\"kepT\"")).unwrap();
    let refused = fails(b.cmd().arg("serve"));
    assert!(refused.contains("does not verify"), "{refused}");
}

/// A TCP relay from a loopback port to etcd that can be cut (every connection shut, new
/// ones refused) and restored: a partition between one gateway and the store while the
/// store and the other gateway carry on.
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn start(target: u16) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Self {
            port: listener.local_addr().unwrap().port(),
            cut: Default::default(),
            conns: Default::default(),
        };
        let (cut, conns) = (relay.cut.clone(), relay.conns.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if cut.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let Ok(out) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut held = conns.lock().unwrap();
                held.push(inbound.try_clone().unwrap());
                held.push(out.try_clone().unwrap());
                for (mut from, mut to) in [
                    (inbound.try_clone().unwrap(), out.try_clone().unwrap()),
                    (out, inbound),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        relay
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        if cut {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[test]
fn a_gateway_cut_off_across_a_compaction_resyncs_and_converges() {
    if !have("etcd") || !have("dig") || !have("curl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(tmp.path(), 1);
    let relay = Relay::start(etcd.members[0].client);
    let config = |endpoints: String| format!("[registry]\nurl = \"etcd://{endpoints}/site\"\n");
    let a = Site::new(&config(etcd.endpoints()));
    let b = Site::new(&config(format!("127.0.0.1:{}", relay.port)));
    for site in [&a, &b] {
        ok(site.cmd().arg("setup").output().unwrap());
    }
    let (_ga, _gb) = (a.serve(), b.serve());
    let (one, two) = (upstream("one"), upstream("two"));
    a.register("gone", &one);
    a.register("moved", &one);
    wait_until(Duration::from_secs(5), || {
        serves(&b, "gone", "one") && serves(&b, "moved", "one")
    });

    relay.set_cut(true);
    wait_until(Duration::from_secs(5), || {
        metrics(&b).contains("conduit_registry_store_reachable 0")
    });
    // While B is cut off: a deregistration, an update, a registration, then the history B
    // would resume from is compacted away.
    ok(a.cmd()
        .args(["deregister", "--name", "gone"])
        .output()
        .unwrap());
    ok(a.cmd()
        .args(["service", "update", "moved", "--upstream"])
        .arg(format!("127.0.0.1:{}", two.port))
        .output()
        .unwrap());
    a.register("new", &two);
    etcd.compact();
    assert!(serves(&b, "gone", "one"), "B serves what it last knew");

    relay.set_cut(false);
    wait_until(Duration::from_secs(10), || {
        forgot(&b, "gone") && serves(&b, "moved", "two") && serves(&b, "new", "two")
    });
    wait_until(Duration::from_secs(5), || {
        metrics(&b).contains("conduit_registry_store_reachable 1")
    });
}
