//! Every configuration example in the docs parses and validates, and `docs/configuration.md`
//! documents every key the configuration has.
#![cfg(feature = "gateway")]
#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use std::path::{Path, PathBuf};

use conduit::config::ConduitConfig;

fn docs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "docs/commands"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    files
}

/// The ```toml blocks of a Markdown text.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == "```toml" => current = Some(String::new()),
            Some(block) if line.trim_start() == "```" => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_example_configuration_parses_and_validates() {
    // The examples name a token file; a real one stands in for it.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let mut seen = 0;
    for file in docs() {
        let text = std::fs::read_to_string(&file).unwrap();
        // Cargo manifests in the docs are not gateway configurations.
        let cargo = |b: &str| {
            ["[dependencies]", "[package]", "[features]", "[workspace"]
                .iter()
                .any(|t| b.contains(t))
        };
        for block in toml_blocks(&text).into_iter().filter(|b| !cargo(b)) {
            let block = block.replace("/etc/conduit/admin.token", &token.display().to_string());
            let (cfg, notices) = ConduitConfig::from_toml(&block, &file)
                .unwrap_or_else(|e| panic!("{}: {e}\n{block}", file.display()));
            assert!(
                notices.is_empty(),
                "{}: old keys in an example: {notices:?}",
                file.display()
            );
            cfg.validate(&file.display().to_string())
                .unwrap_or_else(|e| panic!("{e}\n{block}"));
            seen += 1;
        }
    }
    assert!(seen >= 3, "only {seen} examples found");
}

#[test]
fn every_key_is_documented() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .unwrap();
    let shown = ConduitConfig::default().to_toml().unwrap();
    let table: toml::Table = toml::from_str(&shown).unwrap();
    fn walk(prefix: &str, t: &toml::Table, doc: &str) {
        for (k, v) in t {
            match v {
                toml::Value::Table(inner) => {
                    let name = format!("{prefix}{k}");
                    assert!(
                        doc.contains(&format!("**`[{name}]`**")),
                        "[{name}] is not documented"
                    );
                    walk(&format!("{name}."), inner, doc);
                }
                _ => assert!(
                    doc.contains(&format!("| `{k}` |")),
                    "{prefix}{k} is not in docs/configuration.md"
                ),
            }
        }
    }
    walk("", &table, &doc);
    // The keys that are absent by default are documented too.
    for k in [
        "hsts",
        "docker_socket",
        "listen",
        "token_file",
        "token",
        "socket",
        "witness_token",
        "witness_ca",
        "ca",
        "probe_authorization",
    ] {
        assert!(doc.contains(&format!("| `{k}` |")), "{k}");
    }
}
