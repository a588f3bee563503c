//! The contract every [`CertIssuer`] must meet, written once and run against each issuer in
//! the workspace (the local CA directly and kept in a directory; an HSM- or ACME-backed one
//! an embedder writes): call [`issuer_contract`] from a test with the root clients trust
//! and a zone the issuer may certify. Panics name the broken promise.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::missing_panics_doc,
    reason = "a test suite: a failed assertion is a failed contract"
)]

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{CaError, CertIssuer, CertStatus, IssueRequest, IssuedCert, certified_key};

fn request(names: &[&str]) -> IssueRequest {
    IssueRequest {
        dns_names: names.iter().map(|n| (*n).to_owned()).collect(),
        ..IssueRequest::default()
    }
}

/// Checks that `leaf` is a server certificate for `name` that a TLS client trusting only
/// `root_pem` accepts now, with the intermediates it carries.
fn accepted(root_pem: &str, leaf: &IssuedCert, name: &str) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    assert!(chain.len() >= 2, "the leaf comes with its intermediate");
    let server = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server, &[], UnixTime::now())
        .unwrap_or_else(|e| panic!("a client trusting the root refuses the leaf of {name}: {e}"));
}

/// Runs the whole contract:
/// - a leaf for a name in `zone` is accepted by a client trusting only `root_pem`, names
///   exactly what was asked, is valid now, and its key matches it (it can be served);
/// - a name outside the issuer's zones is [`CaError::OutsideConstraints`], a request with
///   no name [`CaError::NoNames`], before anything is signed;
/// - a renewal is a new certificate with a new key for the same names;
/// - revocation either works or is [`CaError::Unsupported`]; maintenance succeeds.
pub async fn issuer_contract(issuer: &dyn CertIssuer, root_pem: &str, zone: &str) {
    let name = format!("contract.{zone}");
    let leaf = issuer.issue(&request(&[&name])).await.unwrap();
    accepted(root_pem, &leaf, &name);
    let now = time::OffsetDateTime::now_utc();
    let info = crate::inspect_pem(&leaf.chain_pem, now, &Default::default()).unwrap();
    assert_eq!(
        info.dns_names,
        [name.as_str()],
        "names exactly what was asked"
    );
    assert_eq!(info.status, CertStatus::Valid);
    certified_key(&leaf).unwrap_or_else(|e| panic!("the key does not match the leaf: {e}"));

    let outside = issuer.issue(&request(&["contract.example.com"])).await;
    assert!(
        matches!(outside, Err(CaError::OutsideConstraints { .. })),
        "a name outside the zones is refused: {outside:?}"
    );
    let none = issuer.issue(&IssueRequest::default()).await;
    assert!(matches!(none, Err(CaError::NoNames)), "{none:?}");

    let renewed = issuer.renew(&request(&[&name])).await.unwrap();
    accepted(root_pem, &renewed, &name);
    let again = crate::inspect_pem(&renewed.chain_pem, now, &Default::default()).unwrap();
    assert_ne!(again.serial, info.serial, "a renewal is a new certificate");
    assert_ne!(renewed.key_pem, leaf.key_pem, "with a new key");

    match issuer.revoke(&info.serial).await {
        Ok(()) | Err(CaError::Unsupported(_)) => {}
        Err(e) => panic!("revoking a leaf it issued failed: {e}"),
    }
    issuer.maintain().await.unwrap();
}
