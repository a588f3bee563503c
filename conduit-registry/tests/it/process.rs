//! Several processes on one registry: races, kill -9 during writes, cross-process watch.
//!
//! Child processes are this test binary started again on the ignored `child` test, with the
//! work to do in environment variables.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use conduit_registry::{
    ChangeKind, FileOptions, FileRegistry, ListFilter, Registry, RegistryError, ServiceRecord,
};

fn spawn_child(dir: &Path, task: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "process::child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env("CONDUIT_TEST_CHILD", task)
    .env("CONDUIT_TEST_DIR", dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    c
}

fn rec(n: &str, port: u16) -> ServiceRecord {
    ServiceRecord::new(
        n.parse().unwrap(),
        format!("10.9.0.1:{port}").parse().unwrap(),
    )
}

/// The child process body: `register:NAME` once, or `loop:PREFIX` forever, printing
/// `ack NAME` after each acknowledged write.
#[test]
#[ignore = "child process of the multi-process tests; they start it themselves"]
fn child() {
    let (Ok(task), Ok(dir)) = (
        std::env::var("CONDUIT_TEST_CHILD"),
        std::env::var("CONDUIT_TEST_DIR"),
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut opts = FileOptions::default();
    opts.follow = false;
    let reg = FileRegistry::open_with(&dir, opts).unwrap();
    if let Some(name) = task.strip_prefix("register:") {
        match rt.block_on(reg.register(rec(name, 80))) {
            Ok(_) => println!("ack {name}"),
            Err(RegistryError::AlreadyExists { .. }) => std::process::exit(3),
            Err(e) => {
                println!("err {e}");
                std::process::exit(4)
            }
        }
    } else if let Some(prefix) = task.strip_prefix("loop:") {
        for i in 0.. {
            let name = format!("{prefix}-{i}");
            rt.block_on(reg.register(rec(&name, 80))).unwrap();
            println!("ack {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_processes_all_land() {
    let dir = tempfile::tempdir().unwrap();
    FileRegistry::open(dir.path()).unwrap();
    let n = 8;
    let kids: Vec<_> = (0..n)
        .map(|i| {
            spawn_child(dir.path(), &format!("register:race-{i}"))
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let reg = FileRegistry::open(dir.path()).unwrap();
    let mut names: Vec<String> = reg
        .list(ListFilter::Active)
        .await
        .unwrap()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    names.sort();
    let mut expect: Vec<String> = (0..n).map(|i| format!("race-{i}")).collect();
    expect.sort();
    assert_eq!(names, expect);
    assert_eq!(reg.revision().await.unwrap().0, n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_for_one_name_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    FileRegistry::open(dir.path()).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| spawn_child(dir.path(), "register:same").spawn().unwrap())
        .collect();
    let codes: Vec<i32> = kids
        .into_iter()
        .map(|k| k.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 0).count(), 1, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|&&c| c == 3).count(),
        3,
        "the others get AlreadyExists: {codes:?}"
    );
    let reg = FileRegistry::open(dir.path()).unwrap();
    assert_eq!(reg.list(ListFilter::All).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    FileRegistry::open(dir.path()).unwrap();
    let mut acked: Vec<String> = Vec::new();
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    for round in 0..12u32 {
        let mut k = spawn_child(dir.path(), &format!("loop:crash{round}"))
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(k.stdout.take().unwrap()).lines();
        // Let it acknowledge a few writes, then kill it at a varying point of the next one.
        let wanted = 2 + (seed.wrapping_add(round * 7919) % 6) as usize;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(name) = line.strip_prefix("ack ") {
                acked.push(name.to_owned());
                if acked
                    .iter()
                    .filter(|a| a.starts_with(&format!("crash{round}-")))
                    .count()
                    >= wanted
                {
                    break;
                }
            }
        }
        k.kill().unwrap(); // SIGKILL
        // Whatever it acknowledged before dying counts too.
        for line in lines.map_while(Result::ok) {
            if let Some(name) = line.strip_prefix("ack ") {
                acked.push(name.to_owned());
            }
        }
        k.wait().unwrap();
        let reg = FileRegistry::open(dir.path()).expect("the file always parses after kill -9");
        let present = reg.list(ListFilter::All).await.unwrap();
        for a in &acked {
            assert!(
                present.iter().any(|r| r.name().as_str() == a),
                "round {round}: acknowledged {a} is missing"
            );
        }
    }
    assert!(acked.len() >= 12 * 2);
}

async fn noticed_across_processes(notifications: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = FileOptions::default();
    opts.notifications = notifications;
    let reg = FileRegistry::open_with(dir.path(), opts).unwrap();
    let mut w = reg.watch(reg.revision().await.unwrap());
    let out = spawn_child(dir.path(), "register:from-child")
        .output()
        .unwrap();
    assert!(out.status.success());
    let written = SystemTime::now();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("noticed within 5 s")
        .unwrap();
    assert_eq!(
        (ev.kind, ev.record.name().as_str()),
        (ChangeKind::Registered, "from-child")
    );
    let got = reg.get(&"from-child".parse().unwrap()).await.unwrap();
    assert_eq!(got.map(|r| r.revision()), Some(ev.revision));
    written.elapsed().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_write_reaches_watchers_by_notification() {
    let lag = noticed_across_processes(true).await;
    eprintln!("cross-process change noticed {lag:?} after the writer exited (inotify)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_write_reaches_watchers_by_polling() {
    let lag = noticed_across_processes(false).await;
    eprintln!("cross-process change noticed {lag:?} after the writer exited (polling)");
}
