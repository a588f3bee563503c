//! What the package installs beside the binary, generated from the command's own
//! definitions: completions that bash and zsh load, and man pages that `man -l` renders,
//! one per subcommand.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "test code driving real processes"
)]

mod common;

use std::process::Command;

use conduit_test_support::have;
use conduit_test_support::process::ok;

fn conduit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conduit"))
}

#[test]
fn completions_load_in_bash_and_zsh() {
    if !common::present(have("bash") && have("zsh"), "bash and zsh") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh"] {
        let script = ok(conduit().args(["completions", shell]).output().unwrap());
        std::fs::write(dir.path().join(shell), script).unwrap();
    }
    let bash = ok(Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; complete -p conduit",
            dir.path().join("bash").display()
        ))
        .output()
        .unwrap());
    assert!(
        bash.contains("complete") && bash.trim_end().ends_with(" conduit"),
        "{bash}"
    );
    // The completion function offers the subcommands.
    let words = ok(Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(conduit c); COMP_CWORD=1; _conduit conduit c conduit; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            dir.path().join("bash").display()
        ))
        .output()
        .unwrap());
    for sub in ["ca", "certs", "config", "completions"] {
        assert!(
            words.lines().any(|w| w == sub),
            "{sub} not offered: {words}"
        );
    }
    let zsh = ok(Command::new("zsh")
        .arg("-c")
        .arg(format!(
            "autoload -U compinit && compinit -u && source {} && print -r -- ${{_comps[conduit]}}",
            dir.path().join("zsh").display()
        ))
        .output()
        .unwrap());
    assert_eq!(zsh.trim(), "_conduit");
}

#[test]
fn man_pages_render_one_per_subcommand() {
    if !common::present(have("man"), "man (man-db)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    ok(conduit()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap());
    for page in [
        "conduit.1",
        "conduit-register.1",
        "conduit-ca-sign-intermediate.1",
        "conduit-audit-checkpoint.1",
    ] {
        let out = ok(Command::new("man")
            .arg("-l")
            .arg(dir.path().join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap());
        assert!(out.contains("SYNOPSIS"), "{page}: {out}");
    }
    let sign = ok(Command::new("man")
        .arg("-l")
        .arg(dir.path().join("conduit-ca-sign-intermediate.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "200")
        .output()
        .unwrap());
    assert!(sign.contains("conduit ca sign-intermediate"), "{sign}");
    assert!(sign.contains("--root-key"), "{sign}");
}
