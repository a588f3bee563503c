//! Integration tests of conduit-monitor against real peers: this host (`free`, `df`), a
//! podman Docker-API socket, a real sshd on loopback, and an NVIDIA GPU when there is one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code"
)]

mod docker;
mod host;
mod nvml;
mod parse;
mod ssh;

use std::process::Command;

/// Whether a real peer is installed; under CI a missing one fails the test.
pub(crate) use conduit_test_support::have;

pub(crate) fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
