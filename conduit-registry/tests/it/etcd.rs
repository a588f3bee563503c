//! `EtcdRegistry` against a real etcd 3.4 (Debian's `etcd-server`): the contract, two
//! registries racing, the store killed and back, a partition across a compaction, a start
//! from the last-known-good snapshot.

use std::sync::Arc;
use std::time::Duration;

use conduit_registry::etcd::{EtcdConfig, EtcdRegistry};
use conduit_registry::testing::{policy_contract, registry_contract};
use conduit_registry::{
    ChangeKind, ListFilter, Registry, RegistryError, Revision, ServiceRecord, Status, Watch,
};
use conduit_test_support::etcd::Etcd;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

fn rec(n: &str, up: &str) -> ServiceRecord {
    ServiceRecord::new(n.parse().unwrap(), up.parse().unwrap())
}

fn etcd(dir: &std::path::Path) -> Option<Etcd> {
    conduit_test_support::have("etcd").then(|| Etcd::start(dir, 1))
}

async fn connect(url: &str) -> EtcdRegistry {
    EtcdRegistry::connect(EtcdConfig::from_url(url).unwrap(), None)
        .await
        .unwrap()
}

async fn next(w: &mut Watch) -> (u64, ChangeKind, String) {
    let e = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("a change within 5 s")
        .expect("the registry is alive");
    (e.revision.0, e.kind, e.record.name().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = etcd(dir.path()) else { return };
    registry_contract(&connect(&etcd.url("contract")).await).await;
    policy_contract(&connect(&etcd.url("policy")).await).await;
    // A second registry on the same prefix reads the same state from the store.
    let again = connect(&etcd.url("contract")).await;
    assert_eq!(again.revision().await.unwrap(), Revision(7));
    let names: Vec<(String, Status)> = again
        .list(ListFilter::All)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.name().to_string(), r.status()))
        .collect();
    assert_eq!(
        names,
        [
            ("grafana".into(), Status::Inactive),
            ("ollama".into(), Status::Inactive),
            ("grafana".into(), Status::Active)
        ]
    );
    assert_eq!(
        connect(&etcd.url("policy"))
            .await
            .access_policy()
            .await
            .unwrap()
            .revision,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registries_see_each_other_and_one_wins_a_race() {
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = etcd(dir.path()) else { return };
    let url = etcd.url("site");
    let (a, b) = (connect(&url).await, connect(&url).await);
    let mut seen_by_b = b.watch(Revision::ZERO);
    a.register(rec("grafana", "10.0.1.50:3000")).await.unwrap();
    assert_eq!(
        next(&mut seen_by_b).await,
        (1, ChangeKind::Registered, "grafana".into())
    );
    b.deregister(&"grafana".parse().unwrap()).await.unwrap();
    let mut seen_by_a = a.watch(Revision(1));
    assert_eq!(
        next(&mut seen_by_a).await,
        (2, ChangeKind::Deregistered, "grafana".into())
    );

    // A policy changed through one is in force on the other.
    let mut policy_on_b = b.watch_access_policy();
    let mut policy = conduit_registry::access::AccessPolicy::default();
    policy.peers.push(conduit_registry::access::Peer::new(
        conduit_registry::access::Label::new("peer name", "alice").unwrap(),
    ));
    a.set_access_policy(policy.clone(), 0).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        policy_on_b.wait_for(|p| p.revision == 1),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(b.access_policy().await.unwrap().policy, policy);
    // …and a stale revision through the other conflicts.
    assert!(matches!(
        b.set_access_policy(policy, 0).await,
        Err(RegistryError::PolicyConflict {
            expected: 0,
            actual: 1
        })
    ));

    // Eight writers (four on each registry) race for each of 10 names: exactly one wins
    // each name, the others are told it exists; no revision is used twice.
    let regs = [Arc::new(a), Arc::new(b)];
    let mut tasks = JoinSet::new();
    for w in 0..8 {
        let reg = Arc::clone(&regs[w % 2]);
        tasks.spawn(async move {
            let mut won = Vec::new();
            for n in 0..10 {
                match reg
                    .register(rec(&format!("race{n}"), &format!("10.0.2.{}:80", w + 1)))
                    .await
                {
                    Ok(r) => won.push(r.revision().0),
                    Err(RegistryError::AlreadyExists { .. }) => {}
                    Err(e) => panic!("writer {w}: {e}"),
                }
            }
            won
        });
    }
    let mut revs: Vec<u64> = tasks.join_all().await.into_iter().flatten().collect();
    revs.sort_unstable();
    assert_eq!(revs, (3..13).collect::<Vec<_>>(), "one winner per name");
    for reg in &regs {
        tokio::time::timeout(Duration::from_secs(5), async {
            while reg.revision().await.unwrap() < Revision(12) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(reg.list(ListFilter::Active).await.unwrap().len(), 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_refuses_changes_and_serves_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut etcd) = etcd(dir.path()) else {
        return;
    };
    let reg = connect(&etcd.url("site")).await;
    let mut health = reg.health();
    let grafana = reg
        .register(rec("grafana", "10.0.1.50:3000"))
        .await
        .unwrap();
    let snapshot = reg.snapshot();
    assert_eq!(snapshot.revision, Revision(1));

    etcd.members[0].kill();
    let err = reg
        .register(rec("ollama", "10.0.2.10:11434"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Unavailable { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(err.to_string().contains("unreachable"), "{err}");
    tokio::time::timeout(Duration::from_secs(5), health.wait_for(|h| !h.reachable))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        reg.get(&"grafana".parse().unwrap()).await.unwrap(),
        Some(grafana)
    );

    // A second registry starting now serves the snapshot.
    let cold = EtcdRegistry::connect(
        EtcdConfig::from_url(&etcd.url("site")).unwrap(),
        Some(snapshot),
    )
    .await
    .unwrap();
    assert!(!cold.health().borrow().reachable);
    assert_eq!(cold.list(ListFilter::Active).await.unwrap().len(), 1);
    let no_snapshot = EtcdRegistry::connect(EtcdConfig::from_url(&etcd.url("site")).unwrap(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(no_snapshot, RegistryError::Unavailable { .. }),
        "{no_snapshot}"
    );

    etcd.members[0].spawn();
    etcd.wait_healthy();
    tokio::time::timeout(Duration::from_secs(10), health.wait_for(|h| h.reachable))
        .await
        .unwrap()
        .unwrap();
    reg.register(rec("ollama", "10.0.2.10:11434"))
        .await
        .unwrap();
    let mut w = cold.watch(Revision(1));
    assert_eq!(
        next(&mut w).await,
        (2, ChangeKind::Registered, "ollama".into())
    );
    assert!(cold.health().borrow().reachable);
}

/// A TCP relay to etcd that can be cut (every connection dropped, new ones refused) and
/// restored: a network partition between one registry and the store.
struct Relay {
    port: u16,
    target: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(target: u16) -> Self {
        let port = conduit_test_support::process::free_port();
        let mut r = Self {
            port,
            target,
            task: None,
        };
        r.restore().await;
        r
    }

    async fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        }));
    }

    fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_registry_resyncs_across_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = etcd(dir.path()) else { return };
    let mut relay = Relay::start(etcd.members[0].client).await;
    let a = connect(&etcd.url("site")).await;
    let b = connect(&format!("etcd://127.0.0.1:{}/site", relay.port)).await;
    for n in ["keep", "gone", "moved"] {
        a.register(rec(n, "10.0.1.1:80")).await.unwrap();
    }
    let mut seen = b.watch(Revision::ZERO);
    for _ in 0..3 {
        next(&mut seen).await;
    }
    let mut health = b.health();

    relay.cut();
    tokio::time::timeout(Duration::from_secs(5), health.wait_for(|h| !h.reachable))
        .await
        .unwrap()
        .unwrap();
    // While b cannot see the store: a deregistration, an update, a registration, and
    // enough churn that the compaction below drops b's resume point.
    a.deregister(&"gone".parse().unwrap()).await.unwrap();
    a.update(
        rec("moved", "10.0.1.2:80"),
        conduit_registry::Precondition::Overwrite,
    )
    .await
    .unwrap();
    a.register(rec("new", "10.0.1.3:80")).await.unwrap();
    etcd.compact();
    assert!(matches!(
        b.register(rec("refused", "10.0.1.4:80")).await,
        Err(RegistryError::Unavailable { .. })
    ));

    relay.restore().await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut seen).await);
    }
    assert_eq!(
        got,
        [
            (4, ChangeKind::Deregistered, "gone".into()),
            (5, ChangeKind::Updated, "moved".into()),
            (6, ChangeKind::Registered, "new".into()),
        ]
    );
    assert_eq!(
        b.list(ListFilter::All).await.unwrap(),
        a.list(ListFilter::All).await.unwrap()
    );
    tokio::time::timeout(Duration::from_secs(5), health.wait_for(|h| h.reachable))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_during_a_register_loop_loses_no_acknowledged_registration() {
    let dir = tempfile::tempdir().unwrap();
    if !conduit_test_support::have("etcd") {
        return;
    }
    let mut etcd = Etcd::start(dir.path(), 3);
    let url = etcd.url("site");
    let writer = Arc::new(connect(&url).await);
    let reader = connect(&url).await;
    let (tx, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let loop_writer = Arc::clone(&writer);
    let writes = tokio::spawn(async move {
        let mut refused = 0;
        for n in 0..120 {
            let r = rec(&format!("s{n}"), "10.0.3.1:80");
            loop {
                match loop_writer.register(r.clone()).await {
                    Ok(_) => {
                        tx.send(n).unwrap();
                        break;
                    }
                    // Committed by an attempt whose answer was lost: not acknowledged.
                    Err(RegistryError::AlreadyExists { .. }) => break,
                    Err(e) if e.is_transient() => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("s{n}: {e}"),
                }
            }
        }
        refused
    });
    let mut seen = Vec::new();
    while seen.len() < 30 {
        seen.push(acked.recv().await.unwrap());
    }
    let leader = etcd.leader();
    etcd.members[leader].kill();
    let refused = writes.await.unwrap();
    while let Ok(n) = acked.try_recv() {
        seen.push(n);
    }
    eprintln!(
        "leader m{leader} killed after 30 registrations; {} acknowledged, {refused} attempts refused during the election",
        seen.len()
    );
    etcd.members[leader].spawn();
    etcd.wait_healthy();
    // Every acknowledged registration is in the store and reaches every registry.
    let fresh = connect(&url).await;
    for reg in [&*writer, &reader, &fresh] {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let names: Vec<String> = reg
                    .list(ListFilter::Active)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.name().to_string())
                    .collect();
                if seen.iter().all(|n| names.contains(&format!("s{n}"))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("every acknowledged registration converges");
    }
    assert_eq!(
        reader.list(ListFilter::All).await.unwrap(),
        fresh.list(ListFilter::All).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_and_refusals_that_name_the_problem() {
    use conduit_registry::etcd::EtcdTls;
    use conduit_test_support::etcd::TlsFiles;
    let dir = tempfile::tempdir().unwrap();
    if !conduit_test_support::have("etcd") || !conduit_test_support::have("openssl") {
        return;
    }
    let files = TlsFiles::make(&dir.path().join("pki"));
    let etcd = Etcd::start_with(dir.path(), 1, Some(&files));
    let url = etcd.url("site");
    let tls = EtcdTls::new(&files.ca).with_client_cert(&files.client.0, &files.client.1);
    let reg = EtcdRegistry::connect(
        EtcdConfig::from_url(&url).unwrap().with_tls(tls.clone()),
        None,
    )
    .await
    .unwrap();
    reg.register(rec("grafana", "10.0.1.50:3000"))
        .await
        .unwrap();
    assert_eq!(reg.revision().await.unwrap(), Revision(1));

    // Without the client certificate etcd refuses the handshake: unreachable, with why.
    let err = EtcdRegistry::connect(
        EtcdConfig::from_url(&url)
            .unwrap()
            .with_tls(EtcdTls::new(&files.ca)),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unavailable { .. }), "{err}");
    // Plain HTTP to a TLS port, likewise.
    let err = connect_err(&url).await;
    assert!(matches!(err, RegistryError::Unavailable { .. }), "{err}");
    // A CA file that holds no certificate is the operator's to fix, named.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = EtcdRegistry::connect(
        EtcdConfig::from_url(&url)
            .unwrap()
            .with_tls(EtcdTls::new(&empty)),
        None,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("empty.pem") && err.contains("no certificate"),
        "{err}"
    );
}

async fn connect_err(url: &str) -> RegistryError {
    EtcdRegistry::connect(EtcdConfig::from_url(url).unwrap(), None)
        .await
        .unwrap_err()
}
