//! Helpers shared by Conduit's test suites (not published).
//!
//! * [`have`] / [`which`]: whether a real peer (dig, curl, capsule…) is installed; under CI
//!   a missing one fails the test instead of skipping it.
//! * [`etcd`]: real etcd members and clusters on loopback.
//! * [`process`]: free loopback ports, children killed on drop, bounded polling.
//! * [`podman`]: podman's Docker-compatible API on a socket of the test's own, a busybox image.
//! * [`openapi::Document`]: `docs/admin-api.yaml`, and a check of a JSON answer against the
//!   schema it gives for a method, path and status.
//!
//! ```
//! let doc = conduit_test_support::openapi::Document::from_yaml(r#"
//! paths:
//!   /v1/health:
//!     get:
//!       responses:
//!         "200":
//!           content:
//!             application/json:
//!               schema: { type: object, required: [ok], additionalProperties: false,
//!                         properties: { ok: { type: boolean } } }
//! "#).unwrap();
//! doc.check("GET", "/v1/health", 200, &serde_json::json!({"ok": true})).unwrap();
//! assert!(doc.check("GET", "/v1/health", 200, &serde_json::json!({"ok": 1})).is_err());
//! ```

pub mod etcd;
pub mod openapi;
pub mod podman;
pub mod process;

use std::path::PathBuf;

/// The full path of `cmd` on `PATH`.
pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|f| f.is_file())
    })
}

/// Whether `cmd` is installed. Under CI (`CI` set) a missing peer is a failure: CI installs
/// every one of them.
///
/// # Panics
/// Under CI, when `cmd` is missing.
#[allow(clippy::panic, clippy::print_stderr, reason = "test support")]
pub fn have(cmd: &str) -> bool {
    let found = which(cmd).is_some();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("CI must install {cmd}");
        }
        eprintln!("skipping: {cmd} is not installed");
    }
    found
}
