//! The `Registry` contract (`conduit_registry::testing`) run against each backend here.

use conduit_registry::testing::{policy_contract, registry_contract};
use conduit_registry::{
    FileOptions, FileRegistry, InMemoryRegistry, ListFilter, Registry, Revision,
};

#[tokio::test]
async fn in_memory_meets_the_contract() {
    registry_contract(&InMemoryRegistry::new()).await;
    policy_contract(&InMemoryRegistry::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let reg = FileRegistry::open(dir.path()).unwrap();
    registry_contract(&reg).await;
    // and everything survived on disk
    let again = FileRegistry::open(dir.path()).unwrap();
    assert_eq!(again.revision().await.unwrap(), Revision(7));
    assert_eq!(
        again.list(ListFilter::All).await.unwrap(),
        reg.list(ListFilter::All).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_without_follower_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = FileOptions::default();
    opts.follow = false;
    registry_contract(&FileRegistry::open_with(dir.path(), opts).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_keeps_the_access_policy_for_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let reg = FileRegistry::open(dir.path()).unwrap();
    let other = FileRegistry::open(dir.path()).unwrap();
    let mut seen = other.watch_access_policy();
    policy_contract(&reg).await;
    // Another handle (another process) follows the file.
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        seen.wait_for(|p| p.revision == 1),
    )
    .await
    .unwrap()
    .unwrap();
    // It survives a restart, and its changes are compare-and-swap against the file.
    let again = FileRegistry::open(dir.path()).unwrap();
    let stored = again.access_policy().await.unwrap();
    assert_eq!(stored.revision, 1);
    assert_eq!(stored.policy.grants[0].to.to_string(), "peer:alice");
    let file = dir.path().join("access.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // Damaged while open: the services still follow, the policy in force stays.
    std::fs::write(&file, b"{not json").unwrap();
    reg.register(conduit_registry::ServiceRecord::new(
        "late".parse().unwrap(),
        "10.0.0.9:80".parse().unwrap(),
    ))
    .await
    .unwrap();
    let mut services = other.watch(Revision::ZERO);
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(ev) = services.next().await {
            if ev.record.name().as_str() == "late" {
                break;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(other.access_policy().await.unwrap().revision, 1);
    // A damaged file is an error naming it, not an open site.
    std::fs::write(
        &file,
        b"{\"revision\": 2, \"grants\": [{\"service\": \"web\", \"to\": \"peer:nobody\"}]}",
    )
    .unwrap();
    let err = FileRegistry::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("access.json") && err.contains("nobody"),
        "{err}"
    );
}
