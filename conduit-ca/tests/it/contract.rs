//! The `CertIssuer` contract (`conduit_ca::testing`) run against each issuer here.

use std::sync::Arc;

use conduit_ca::testing::issuer_contract;
use conduit_ca::{CaConfig, LocalCa, LocalIssuer};

#[tokio::test(flavor = "current_thread")]
async fn the_local_ca_meets_the_contract() {
    let ca = LocalCa::generate(CaConfig::default(), time::OffsetDateTime::now_utc()).unwrap();
    let root = ca.root_pem().to_owned();
    issuer_contract(&ca, &root, "internal").await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_local_issuer_in_a_directory_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let ca = LocalCa::load_or_create(dir.path(), CaConfig::default(), now).unwrap();
    let root = ca.root_pem().to_owned();
    let issuer = LocalIssuer::new(
        ca,
        Some(dir.path().to_owned()),
        Arc::new(time::OffsetDateTime::now_utc),
    );
    issuer_contract(&issuer, &root, "internal").await;
    // what it revoked was saved
    let again = LocalCa::load_or_create(dir.path(), CaConfig::default(), now).unwrap();
    assert_eq!(again.revoked_serials().len(), 1);
}
