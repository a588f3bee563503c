//! podman's Docker-compatible API for tests (../shared/notes/podman-docker-api.md): a
//! service on a socket of the test's own, a busybox image imported from a tarball (no
//! registry here), containers removed with the service.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test support: a test that cannot set podman up fails, naming why"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The image every test container runs: busybox's `sh`, `sleep`, `echo`, `true`, `false`.
pub const IMAGE: &str = "localhost/conduit-testbox:latest";

/// `podman --runtime runc ARGS`, which must succeed; its stdout.
///
/// # Panics
/// When podman fails (test code).
pub fn podman(args: &[&str]) -> String {
    let out = Command::new("podman")
        .args(["--runtime", "runc"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman: {e}"));
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Imports [`IMAGE`] from the host's busybox, once.
///
/// # Panics
/// When the import fails (test code).
pub fn ensure_image() {
    let exists = Command::new("podman")
        .args(["image", "exists", IMAGE])
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap_or_else(|e| panic!("{e}"));
    for c in ["sh", "sleep", "echo", "true", "false"] {
        std::os::unix::fs::symlink("busybox", bin.join(c)).unwrap_or_else(|e| panic!("{e}"));
    }
    let tar = dir.path().join("img.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-cf")
        .arg(&tar)
        .arg("bin")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tar failed");
    let tar = tar.to_string_lossy().into_owned();
    // Two tests may import at once: the loser's "already exists" is fine.
    let _ = Command::new("podman")
        .args(["import", &tar, IMAGE])
        .output();
}

/// A podman API service on its own socket; the containers named in `names` and the service
/// go when it is dropped.
#[derive(Debug)]
pub struct Service {
    child: Child,
    /// The socket's path.
    pub socket: PathBuf,
    /// Containers to remove.
    pub names: Vec<String>,
}

impl Service {
    /// Starts `podman system service` on `dir/podman.sock` and waits for the socket.
    ///
    /// # Panics
    /// When podman cannot start (test code).
    pub fn start(dir: &Path) -> Self {
        let socket = dir.join("podman.sock");
        let uri = format!("unix://{}", socket.display());
        let child = Command::new("podman")
            .args(["--runtime", "runc", "system", "service", "--time=0", &uri])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("podman system service: {e}"));
        crate::process::wait_until(Duration::from_secs(10), || socket.exists());
        Self {
            child,
            socket,
            names: Vec::new(),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("podman")
                .args(["--runtime", "runc", "rm", "-f", name])
                .output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
