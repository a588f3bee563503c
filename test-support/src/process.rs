//! Real processes in tests: free loopback ports, children killed on drop, polling with a
//! bound, command output that must succeed.

use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Output};
#[allow(clippy::disallowed_types, reason = "real processes, real time")]
use std::time::{Duration, Instant};

/// A port free for UDP and TCP on 127.0.0.1 (another process may still take it before the
/// caller binds it: callers retry on a bind failure).
///
/// # Panics
/// When no socket can be bound on loopback at all.
#[allow(clippy::expect_used, reason = "test support")]
pub fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = t.local_addr().expect("local address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 20 ms until it holds; how long that took. For synchronous tests that
/// drive processes (wall-clock time, a blocking sleep).
///
/// # Panics
/// When it does not hold within `limit`.
#[allow(
    clippy::panic,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test support: real processes, real time, no runtime"
)]
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("condition not met within {limit:?}");
}

/// Standard output and standard error of a command that must have succeeded.
///
/// # Panics
/// When it failed, with its output.
pub fn ok(out: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// `python3 -m http.server` on 127.0.0.1:`port`, serving `root` (killed when dropped).
///
/// # Panics
/// When python3 cannot be started.
#[allow(clippy::expect_used, reason = "test support")]
pub fn http_server(port: u16, root: &std::path::Path) -> Killed {
    Killed(
        std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m http.server"),
    )
}
