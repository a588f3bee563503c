//! Checkpoints and witnesses with real processes: a checkpoint taken through the gateway
//! catches a chain cut short by 3 records (naming the 3) that the reference verifier still
//! passes; a second gateway witnesses the first's checkpoints and refuses, with an audited
//! alarm, one from a chain that was cut and grew again.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Site;
use conduit_test_support::have;
use conduit_test_support::process::{free_port, ok, wait_until};

/// Deletes the chain's last `n` records, and the log's last `n` lines with them (what an
/// intruder covering their tracks would do).
fn cut_last(state: &Path, n: usize) {
    let script = format!(
        "import sqlite3\n\
         c = sqlite3.connect({db:?})\n\
         c.execute('DELETE FROM capsules WHERE sequence > (SELECT MAX(sequence) FROM capsules) - {n}')\n\
         c.commit()\n",
        db = state.join("capsules.db").display().to_string()
    );
    ok(Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap());
    let log = state.join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&log, format!("{}\n", lines[..lines.len() - n].join("\n"))).unwrap();
}

fn records(state: &Path) -> u64 {
    let script = format!(
        "import sqlite3\nprint(sqlite3.connect({:?}).execute('SELECT COUNT(*) FROM capsules').fetchone()[0])\n",
        state.join("capsules.db").display().to_string()
    );
    ok(Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap())
    .trim()
    .parse()
    .unwrap()
}

fn tools() -> bool {
    common::present(
        have("python3") && have("capsule"),
        "python3 and the reference verifier (capsule)",
    )
}

#[test]
fn a_checkpoint_names_the_records_cut_off_the_chain_that_the_reference_verifier_misses() {
    if !tools() {
        return;
    }
    let site = Site::new("");
    let web = common::upstream("x\n");
    let gw = site.serve();
    for name in ["a", "b", "c"] {
        site.register(name, &web);
    }
    // Through the running gateway: it keeps what it hands out.
    let via_gateway = site.state.join("../via-gateway.json");
    ok(site
        .cmd()
        .args(["audit", "checkpoint", "--out"])
        .arg(&via_gateway)
        .output()
        .unwrap());
    let exported: conduit::audit::Checkpoint =
        serde_json::from_slice(&std::fs::read(&via_gateway).unwrap()).unwrap();
    let kept: conduit::audit::Checkpoint =
        serde_json::from_slice(&std::fs::read(site.state.join("checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(kept, exported);
    drop(gw);
    let _ = std::fs::remove_file(&site.socket);

    // With the gateway stopped, from the state directory: the head as it is now.
    let cp_file = site.state.join("../exported-checkpoint.json");
    ok(site
        .cmd()
        .args(["audit", "checkpoint", "--out"])
        .arg(&cp_file)
        .output()
        .unwrap());
    let c: conduit::audit::Checkpoint =
        serde_json::from_slice(&std::fs::read(&cp_file).unwrap()).unwrap();
    assert_eq!(c.sequence + 1, records(&site.state));
    assert!(c.sequence >= exported.sequence);
    let out = ok(site
        .cmd()
        .args(["audit", "verify", "--checkpoint"])
        .arg(&cp_file)
        .output()
        .unwrap());
    assert!(out.starts_with("valid:"), "{out}");

    cut_last(&site.state, 3);
    // The reference verifier passes the shorter chain…
    let key = conduit::audit::SealKey::load_or_create(&site.state).unwrap();
    let reference = Command::new("capsule")
        .args(["verify", "--db"])
        .arg(site.state.join("capsules.db"))
        .args(["--pubkey", &key.public_hex(), "--json"])
        .env("QUANTUMPIPES_DATA_DIR", &site.state)
        .output()
        .unwrap();
    assert_eq!(
        reference.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&reference.stdout)
    );
    // …the checkpoint does not, and says how many records are gone.
    let out = site
        .cmd()
        .args(["audit", "verify", "--checkpoint"])
        .arg(&cp_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("3 records missing"), "{text}");
}

#[test]
fn a_witness_keeps_each_checkpoint_and_refuses_one_from_a_cut_chain_with_an_audited_alarm() {
    if !tools() || !have("curl") {
        return;
    }
    // B, the witness: its admin API on loopback TCP, a witness token for A.
    let b_port = free_port();
    let b = Site::with_admin(
        &format!("listen = \"127.0.0.1:{b_port}\"\ntoken = \"b-admin-token-0123456789\"\n"),
        "",
    );
    let secret = ok(b
        .cmd()
        .args(["token", "add", "gateway-a", "--witness"])
        .output()
        .unwrap());
    let secret = secret.trim().to_owned();
    let _b_gw = b.serve();

    // A, sending a checkpoint after every record.
    let a = Site::new(&format!(
        "[audit]\ncheckpoint_every = 1\ncheckpoint_interval = \"1s\"\nwitnesses = [\"http://127.0.0.1:{b_port}/v1/audit/witness\"]\nwitness_token = \"{secret}\"\n"
    ));
    let web = common::upstream("x\n");
    let a_gw = a.serve();
    a.register("web", &web);
    let key = conduit::audit::SealKey::load_or_create(&a.state).unwrap();
    let witnessed = b.state.join(format!("witnessed/{}.json", key.public_hex()));
    // B has a checkpoint of A's whole chain (A may still seal records of its own, the
    // registration's certificate among them: each is witnessed in turn).
    let mut seen = None;
    wait_until(Duration::from_secs(10), || {
        seen = std::fs::read(&witnessed)
            .ok()
            .and_then(|b| serde_json::from_slice::<conduit::audit::Checkpoint>(&b).ok())
            .filter(|c| c.sequence + 1 == records(&a.state));
        seen.is_some()
    });
    let seen = seen.unwrap();
    // A's admin API shows what the witness did.
    let doc =
        conduit_test_support::openapi::Document::admin_api(env!("CARGO_MANIFEST_DIR")).unwrap();
    let board = |a: &Site| -> conduit::api::WitnessStatus {
        let answer = common::admin(&doc, &a.socket, "GET", "/v1/audit/witnesses", None, &[]);
        let mut list: conduit::api::WitnessList = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(list.witnesses.len(), 1);
        list.witnesses.remove(0)
    };
    let mut shown = board(&a);
    wait_until(Duration::from_secs(5), || {
        shown = board(&a);
        shown.accepted >= Some(seen.sequence)
    });
    assert!(shown.accepted >= Some(seen.sequence), "{shown:?}");
    assert_eq!((shown.refused, shown.last_error), (false, None));

    // The witness token can do nothing else; a forged checkpoint is a 400.
    let url = format!("http://127.0.0.1:{b_port}");
    let (code, _, _) = b.curl(
        &["-H", &format!("Authorization: Bearer {secret}")],
        format!("{url}/v1/status"),
    );
    assert_eq!(code, 403);
    let mut forged = seen.clone();
    forged.head_hash = "00".repeat(32);
    let body = serde_json::json!({"checkpoint": forged, "anchor": null}).to_string();
    let (code, text, _) = b.curl(
        &[
            "-H",
            &format!("Authorization: Bearer {secret}"),
            "-H",
            "Content-Type: application/json",
            "--data",
            &body,
        ],
        format!("{url}/v1/audit/witness"),
    );
    assert_eq!(code, 400, "{text}");

    // A's chain loses its last 3 records while A is down, and grows again after.
    drop(a_gw);
    // The last checkpoint B accepted from A before the cut.
    let before_cut: conduit::audit::Checkpoint =
        serde_json::from_slice(&std::fs::read(&witnessed).unwrap()).unwrap();
    assert!(before_cut.sequence >= seen.sequence);
    let _ = std::fs::remove_file(&a.socket);
    cut_last(&a.state, 3);
    let _a_gw = a.serve();
    a.register("web2", &web);
    let mut alarm = String::new();
    wait_until(Duration::from_secs(15), || {
        alarm = ok(b
            .cmd()
            .args(["logs", "--action", "audit_witness_alarm"])
            .output()
            .unwrap());
        !alarm.is_empty()
    });
    assert!(alarm.contains("failure"), "{alarm}");
    assert!(
        alarm.contains("goes back") || alarm.contains("rewritten") || alarm.contains("fork"),
        "{alarm}"
    );
    let mut shown = board(&a);
    wait_until(Duration::from_secs(5), || {
        shown = board(&a);
        shown.refused
    });
    assert!(shown.refused, "{shown:?}");
    assert!(
        shown
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("refused: ")),
        "{shown:?}"
    );
    // What B keeps is still the checkpoint it saw before.
    let kept: conduit::audit::Checkpoint =
        serde_json::from_slice(&std::fs::read(&witnessed).unwrap()).unwrap();
    assert_eq!(kept, before_cut);
}

#[test]
fn the_gateway_notices_a_tampered_chain_and_audits_it() {
    if !tools() {
        return;
    }
    let site = Site::new("[audit]\nverify_interval = \"1s\"\n");
    let web = common::upstream("x\n");
    let _gw = site.serve();
    site.register("web", &web);
    // Someone edits a sealed record behind the gateway's back.
    let script = format!(
        "import sqlite3\n\
         c = sqlite3.connect({db:?})\n\
         n = c.execute(\"UPDATE capsules SET data = replace(data, 'Initialized', 'Initialised') WHERE sequence = 0\").rowcount\n\
         c.commit()\n\
         assert n == 1 and c.execute(\"SELECT data LIKE '%Initialised%' FROM capsules WHERE sequence = 0\").fetchone()[0] == 1\n\
         c.commit()\n",
        db = site.state.join("capsules.db").display().to_string()
    );
    ok(Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap());
    let mut out = String::new();
    wait_until(Duration::from_secs(15), || {
        out = ok(site
            .cmd()
            .args(["logs", "--action", "audit_verify"])
            .output()
            .unwrap());
        !out.is_empty()
    });
    assert!(out.contains("failure"), "{out}");
    assert!(out.contains("does not verify"), "{out}");
}
