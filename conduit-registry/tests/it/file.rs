//! FileRegistry on disk: the original tool's schema, corrupt files, permissions.

use std::fs;
use std::path::Path;

use conduit_registry::{
    FileRegistry, ListFilter, Registry, RegistryError, Revision, Routing, Scheme, ServiceRecord,
    Status,
};

const V1: &str = include_str!("../../../conformance/registry/services-v1.json");

fn rec(n: &str, up: &str) -> ServiceRecord {
    ServiceRecord::new(n.parse().unwrap(), up.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_original_tools_file_and_upgrades_it_on_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.json");
    fs::write(&path, V1).unwrap();

    let reg = FileRegistry::open(dir.path()).unwrap();
    let all = reg.list(ListFilter::All).await.unwrap();
    assert_eq!(all.len(), 3);
    let (old, cur, ollama) = (&all[0], &all[1], &all[2]);
    assert_eq!(
        (old.name().as_str(), old.status()),
        ("grafana", Status::Inactive)
    );
    assert_eq!(
        old.deregistered_at().unwrap().to_string(),
        "2026-01-16T08:00:00Z"
    );
    assert_eq!(old.registered_at().to_string(), "2026-01-15T10:30:00Z");
    assert_eq!(cur.endpoints()[0].to_string(), "https://10.0.1.51:3000");
    assert_eq!(cur.health().path, "/healthz");
    assert_eq!(cur.domain().as_str(), "grafana.internal");
    assert_eq!(ollama.name().as_str(), "ollama", "upper case is folded");
    assert_eq!(ollama.endpoints()[0].scheme(), Scheme::Http);
    assert_eq!(ollama.endpoints()[0].port(), 11434, "a string port is read");
    assert_eq!(ollama.routing(), Routing::Proxied);
    assert_eq!(reg.revision().await.unwrap(), Revision(3));
    // reading does not rewrite
    assert_eq!(fs::read_to_string(&path).unwrap(), V1);

    reg.register(rec("vllm", "10.0.3.5:8000")).await.unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("services.json.v1.bak")).unwrap(),
        V1
    );
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["revision"], 4);
    assert_eq!(v["services"][3]["name"], "vllm");
    assert_eq!(v["services"][3]["endpoints"][0]["host"], "10.0.3.5");

    let reopened = FileRegistry::open(dir.path()).unwrap();
    assert_eq!(
        reopened.list(ListFilter::All).await.unwrap(),
        reg.list(ListFilter::All).await.unwrap()
    );
}

fn assert_untouched(path: &Path, bytes: &[u8]) {
    assert_eq!(
        fs::read(path).unwrap(),
        bytes,
        "the file must never be rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_files_are_clear_errors_and_never_overwritten() {
    let cases: &[(&str, &str)] = &[
        ("{\"version\": 2, \"revision\": 1, \"services\": [", "EOF"),
        ("not json at all", "not a registry JSON object"),
        (
            r#"{"version": 1, "services": [{"name": "my_svc", "host": "10.0.0.1", "port": 80}]}"#,
            "'_' is not allowed",
        ),
        (
            r#"{"version": 1, "services": [{"name": "a", "host": "10.0.0.1", "port": 0}]}"#,
            "port",
        ),
        (
            r#"{"version": 1, "services": [{"name": "a", "host": "10.0.0.1", "port": 1},{"name": "a", "host": "10.0.0.2", "port": 1}]}"#,
            "both active for service a",
        ),
        (
            r#"{"version": 2, "revision": 0, "services": [], "extra": 1}"#,
            "unknown field `extra`",
        ),
    ];
    for (content, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("services.json");
        fs::write(&path, content).unwrap();
        let err = FileRegistry::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, RegistryError::Corrupt { .. }),
            "{content}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(needle) && msg.contains("services.json"),
            "{content}: {msg}"
        );
        assert_untouched(&path, content.as_bytes());
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.json");
    let future = r#"{"version": 9, "revision": 0, "services": []}"#;
    fs::write(&path, future).unwrap();
    let err = FileRegistry::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, RegistryError::UnsupportedVersion { version: 9, .. }),
        "{err}"
    );
    assert_untouched(&path, future.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_corrupted_while_open_blocks_writes_and_keeps_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let reg = FileRegistry::open(dir.path()).unwrap();
    reg.register(rec("grafana", "10.0.1.50:3000"))
        .await
        .unwrap();
    let path = reg.path().to_path_buf();
    fs::write(&path, b"{ garbage").unwrap();
    let err = reg
        .register(rec("ollama", "10.0.2.1:11434"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Corrupt { .. }), "{err}");
    assert_untouched(&path, b"{ garbage");
    assert!(matches!(
        reg.reload().await,
        Err(RegistryError::Corrupt { .. })
    ));
    // reads still serve the last good state
    assert_eq!(reg.list(ListFilter::Active).await.unwrap().len(), 1);
}

#[cfg(unix)]
#[test]
fn state_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("conf");
    let _reg = FileRegistry::open(&dir).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("services.json")), 0o600);
    assert_eq!(mode(&dir.join("services.json.lock")), 0o600);
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("services.json")).unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"version": 2, "revision": 0, "services": []})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_between_two_of_ours_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = conduit_registry::FileOptions::default();
    opts.follow = false; // nothing refreshes `a` behind its back
    let a = FileRegistry::open_with(dir.path(), opts.clone()).unwrap();
    let b = FileRegistry::open_with(dir.path(), opts).unwrap();
    a.register(rec("one", "10.0.0.1:1")).await.unwrap();
    b.register(rec("two", "10.0.0.2:1")).await.unwrap();
    a.register(rec("three", "10.0.0.3:1")).await.unwrap();
    let names: Vec<String> = FileRegistry::open(dir.path())
        .unwrap()
        .list(ListFilter::All)
        .await
        .unwrap()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    assert_eq!(names, ["one", "two", "three"]);
    // `a` learned of `two` while writing `three`
    assert_eq!(a.revision().await.unwrap(), Revision(3));
    assert_eq!(
        a.get(&"two".parse().unwrap())
            .await
            .unwrap()
            .map(|r| r.revision()),
        Some(Revision(2))
    );
}

/// The follower reloads the file on every notification, its own writes' too: a reload that
/// read the file just before one of our writes must never put the older table back (found
/// through the admin API: a registration vanished from memory, DNS and the proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_never_undoes_our_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let reg = FileRegistry::open(dir.path()).unwrap();
    for i in 0..300 {
        let name: conduit_registry::ServiceName = format!("s{i}").parse().unwrap();
        reg.register(ServiceRecord::new(
            name.clone(),
            "10.0.0.1:80".parse().unwrap(),
        ))
        .await
        .unwrap();
        // give the follower its notification, then look
        if i % 10 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert_eq!(
            reg.get(&name).await.unwrap().map(|r| r.name().clone()),
            Some(name.clone()),
            "s{i} vanished"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(reg.list(ListFilter::Active).await.unwrap().len(), 300);
}
