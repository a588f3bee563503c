//! The Debian package, installed for real on this machine (so only where that is wanted:
//! in CI, or with `CONDUIT_TEST_DPKG=1`): it installs, creates the `conduit` user and a 0700
//! state directory, its unit passes `systemd-analyze verify`, `conduit` runs as that user
//! and accepts the shipped configuration, an upgrade keeps an edited conffile, and a purge
//! removes everything. The maintainer scripts run here without systemd as PID 1.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "test code driving real processes"
)]

mod common;

use std::path::Path;
use std::process::Command;

use conduit_test_support::have;
use conduit_test_support::process::ok;

fn wanted() -> bool {
    let asked = std::env::var_os("CI").is_some() || std::env::var_os("CONDUIT_TEST_DPKG").is_some();
    if !asked {
        return false;
    }
    let root = ok(Command::new("id").arg("-u").output().unwrap()).trim() == "0";
    if !common::present(
        root && have("dpkg-deb") && have("systemd-analyze") && have("runuser"),
        "dpkg-deb, systemd (systemd-analyze) and runuser, running as root",
    ) {
        return false;
    }
    let installed = Command::new("dpkg")
        .args(["-s", "conduit"])
        .output()
        .unwrap()
        .status
        .success();
    assert!(
        !installed,
        "a conduit package is already installed here; remove it first"
    );
    true
}

fn build(revision: u32, out: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-deb.sh");
    ok(Command::new(script)
        .args(["--binary", env!("CARGO_BIN_EXE_conduit")])
        .args([
            "--compress",
            "none",
            "--revision",
            &revision.to_string(),
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap())
    .trim()
    .to_owned()
}

fn dpkg(args: &[&str]) -> String {
    ok(Command::new("dpkg")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap())
}

#[test]
fn the_package_installs_upgrades_keeping_the_conffile_and_purges_cleanly() {
    if !wanted() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let first = build(1, out.path());
    dpkg(&["-i", &first]);
    let purge = scopeguard(|| {
        let _ = Command::new("dpkg").args(["--purge", "conduit"]).output();
    });

    let user = ok(Command::new("getent")
        .args(["passwd", "conduit"])
        .output()
        .unwrap());
    assert!(user.contains("/var/lib/conduit"), "{user}");
    let state = ok(Command::new("stat")
        .args(["-c", "%a %U", "/var/lib/conduit"])
        .output()
        .unwrap());
    assert_eq!(state.trim(), "700 conduit");
    ok(Command::new("systemd-analyze")
        .args(["verify", "/lib/systemd/system/conduit.service"])
        .output()
        .unwrap());
    let version = ok(Command::new("runuser")
        .args(["-u", "conduit", "--", "/usr/bin/conduit", "--version"])
        .output()
        .unwrap());
    assert!(version.starts_with("conduit "), "{version}");
    let check = ok(Command::new("runuser")
        .args(["-u", "conduit", "--", "/usr/bin/conduit", "config", "check"])
        .arg("/etc/conduit/conduit.toml")
        .output()
        .unwrap());
    assert!(check.contains("ok"), "{check}");
    for f in [
        "/usr/share/bash-completion/completions/conduit",
        "/usr/share/zsh/vendor-completions/_conduit",
        "/usr/share/man/man1/conduit.1.gz",
        "/usr/share/man/man1/conduit-ca-sign-intermediate.1.gz",
    ] {
        assert!(Path::new(f).is_file(), "{f} not installed");
    }

    // An operator's edit survives an upgrade.
    let conf = Path::new("/etc/conduit/conduit.toml");
    let edited = format!(
        "{}# edited by the operator\n",
        std::fs::read_to_string(conf).unwrap()
    );
    std::fs::write(conf, &edited).unwrap();
    let second = build(2, out.path());
    dpkg(&["-i", &second]);
    assert!(dpkg(&["-s", "conduit"]).contains("Version: 0.1.0-2"));
    assert_eq!(std::fs::read_to_string(conf).unwrap(), edited);

    // Purge: nothing left.
    drop(purge);
    for p in ["/usr/bin/conduit", "/etc/conduit", "/var/lib/conduit"] {
        assert!(!Path::new(p).exists(), "{p} left after purge");
    }
    let gone = Command::new("getent")
        .args(["passwd", "conduit"])
        .output()
        .unwrap();
    // getent: 2 = no such key.
    assert_eq!(
        gone.status.code(),
        Some(2),
        "the conduit user is left after purge"
    );
}

/// Runs `f` when dropped (the purge, also when an assertion fails half-way).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
