//! The `Registry` contract (`conduit_registry::testing`) run against each backend here.

use conduit_registry::testing::registry_contract;
use conduit_registry::{
    FileOptions, FileRegistry, InMemoryRegistry, ListFilter, Registry, Revision,
};

#[tokio::test]
async fn in_memory_meets_the_contract() {
    registry_contract(&InMemoryRegistry::new()).await;
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
