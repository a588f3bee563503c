//! A root kept offline: the key leaves the directory, the CA still loads and serves, says
//! when it cannot issue, and a request signed elsewhere with the root restores it; a crash
//! half-way through installing is finished at the next load.

use std::time::Duration;

use conduit_ca::{CaConfig, CaError, Issuance, IssueRequest, LocalCa, SignedIntermediate};
use time::OffsetDateTime;

fn req() -> IssueRequest {
    IssueRequest {
        dns_names: vec!["web.internal".into()],
        ..IssueRequest::default()
    }
}

fn config() -> CaConfig {
    let mut c = CaConfig::default();
    c.crl_url = Some("http://10.8.0.1:80/ca/crl.der".into());
    c.root_crl_url = Some("http://10.8.0.1:80/ca/root-crl.der".into());
    c
}

/// Every file under `dir`, read.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn the_root_key_moves_out_and_a_signed_request_restores_issuance() {
    let now = OffsetDateTime::now_utc();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("tls");
    let bundle = base.path().join("root.bundle");
    let mut ca = LocalCa::load_or_create(&dir, config(), now).unwrap();
    let key_pem = std::fs::read_to_string(dir.join("root.key")).unwrap();
    ca.export_root_key(&dir, &bundle).unwrap();
    assert!(!ca.root_key_present());

    // No file left in the directory holds the key (its base64 body, line by line).
    let body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for (name, bytes) in files(&dir) {
        let text = String::from_utf8_lossy(&bytes);
        for line in &body {
            assert!(!text.contains(line), "{name} holds the root key");
        }
    }
    // …and the bundle does, 0600, and is never overwritten.
    let bundle_text = std::fs::read_to_string(&bundle).unwrap();
    assert!(bundle_text.contains(body[0]));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let e = ca.export_root_key(&dir, &bundle).unwrap_err();
    assert!(matches!(e, CaError::RootOffline { .. }), "{e}");

    // Loaded without the root key, 10 days on: the intermediate expired; it loads, and says
    // what to run.
    let later = now + time::Duration::days(10);
    let mut ca = LocalCa::load_or_create(&dir, config(), later).unwrap();
    assert_eq!(ca.load_renewal(), None);
    let Issuance::Blocked { reason } = ca.issuance(later) else {
        panic!("{:?}", ca.issuance(later));
    };
    assert!(
        reason.contains("conduit ca request-intermediate"),
        "{reason}"
    );
    assert!(!reason.contains("LocalCa"), "{reason}");
    let e = ca.issue_at(&req(), None, None, false, later).unwrap_err();
    assert!(
        e.to_string().contains("conduit ca install-intermediate"),
        "{e}"
    );
    let e = ca.renew_intermediate(later).unwrap_err();
    assert!(matches!(e, CaError::RootOffline { .. }), "{e}");

    // request → sign where the root is → install
    let csr = ca.request_intermediate(&dir).unwrap();
    let signed = LocalCa::sign_intermediate(
        &bundle_text,
        &csr,
        Duration::from_secs(90 * 24 * 3600),
        later,
    )
    .unwrap();
    let signed = SignedIntermediate::from_pem(&signed.to_pem()).unwrap();
    ca.install_intermediate(&dir, &signed, later).unwrap();
    assert_eq!(ca.issuance(later), Issuance::Ready);
    let leaf = ca.issue_at(&req(), None, None, false, later).unwrap();
    let info = conduit_ca::inspect_pem(&leaf.chain_pem, later, &Default::default()).unwrap();
    assert_eq!(info.dns_names, vec!["web.internal".to_owned()]);
    assert!(!dir.join("intermediate.next.key").exists());
    // The intermediate names the root's CRL, and the root CRL came with it.
    assert_eq!(ca.root_crl(), Some(signed.root_crl_der.as_slice()));
    assert_eq!(
        std::fs::read(dir.join("root-crl.der")).unwrap(),
        signed.root_crl_der
    );

    // Reloaded: the same, still without the root key; 80 days on it warns (30 days left).
    let ca = LocalCa::load_or_create(&dir, config(), later).unwrap();
    assert_eq!(ca.issuance(later), Issuance::Ready);
    let warn_at = later + time::Duration::days(70);
    let Issuance::Expiring { warning } = ca.issuance(warn_at) else {
        panic!("{:?}", ca.issuance(warn_at));
    };
    assert!(warning.contains("in 19 days"), "{warning}");
}

#[test]
fn an_intermediate_that_does_not_fit_is_refused_and_nothing_changes() {
    let now = OffsetDateTime::now_utc();
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (base.path().join("a"), base.path().join("b"));
    let mut ca = LocalCa::load_or_create(&a, config(), now).unwrap();
    let mut other = LocalCa::load_or_create(&b, config(), now).unwrap();
    ca.export_root_key(&a, &base.path().join("a.root")).unwrap();
    other
        .export_root_key(&b, &base.path().join("b.root"))
        .unwrap();
    let a_root = std::fs::read_to_string(base.path().join("a.root")).unwrap();
    let b_root = std::fs::read_to_string(base.path().join("b.root")).unwrap();
    let before = std::fs::read(a.join("intermediate.pem")).unwrap();
    let life = Duration::from_secs(30 * 24 * 3600);

    // Nothing requested yet.
    let csr = other.request_intermediate(&b).unwrap();
    let signed = LocalCa::sign_intermediate(&b_root, &csr, life, now).unwrap();
    let e = ca.install_intermediate(&a, &signed, now).unwrap_err();
    assert!(e.to_string().contains("no request is pending"), "{e}");

    // Signed by another root, for another request.
    ca.request_intermediate(&a).unwrap();
    let e = ca.install_intermediate(&a, &signed, now).unwrap_err();
    assert!(e.to_string().contains("pending request"), "{e}");
    // Our request, signed by another root.
    let csr = ca.request_intermediate(&a).unwrap();
    let foreign = LocalCa::sign_intermediate(&b_root, &csr, life, now).unwrap();
    let e = ca.install_intermediate(&a, &foreign, now).unwrap_err();
    assert!(
        e.to_string().contains("not signed by this gateway's root"),
        "{e}"
    );
    // Not a request at all; not a root key file.
    let e = LocalCa::sign_intermediate(&a_root, "garbage", life, now).unwrap_err();
    assert!(e.to_string().contains("the request"), "{e}");
    let e = LocalCa::sign_intermediate(&csr, &csr, life, now).unwrap_err();
    assert!(e.to_string().contains("PRIVATE KEY"), "{e}");
    assert_eq!(std::fs::read(a.join("intermediate.pem")).unwrap(), before);

    // The right one goes in.
    let good = LocalCa::sign_intermediate(&a_root, &csr, life, now).unwrap();
    ca.install_intermediate(&a, &good, now).unwrap();
    assert_ne!(std::fs::read(a.join("intermediate.pem")).unwrap(), before);
}

#[test]
fn a_crash_between_the_new_certificate_and_its_key_is_finished_at_the_next_load() {
    let now = OffsetDateTime::now_utc();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("tls");
    let bundle = base.path().join("root.bundle");
    let mut ca = LocalCa::load_or_create(&dir, config(), now).unwrap();
    ca.export_root_key(&dir, &bundle).unwrap();
    let csr = ca.request_intermediate(&dir).unwrap();
    let root = std::fs::read_to_string(&bundle).unwrap();
    let signed =
        LocalCa::sign_intermediate(&root, &csr, Duration::from_secs(3600 * 24 * 60), now).unwrap();
    // The certificate written, the crash before its key: what `save` leaves at that point.
    std::fs::write(dir.join("intermediate.pem"), &signed.cert_pem).unwrap();
    let ca = LocalCa::load_or_create(&dir, config(), now).unwrap();
    assert_eq!(ca.intermediate_pem(), signed.cert_pem);
    assert!(!dir.join("intermediate.next.key").exists());
    ca.issue_at(&req(), None, None, false, now).unwrap();
}

#[test]
fn a_gateway_joins_another_gateways_root_and_keeps_none_of_its_own() {
    let now = OffsetDateTime::now_utc();
    let base = tempfile::tempdir().unwrap();
    let (site, joiner) = (base.path().join("site"), base.path().join("joiner"));
    let mut first = LocalCa::load_or_create(&site, config(), now).unwrap();
    let bundle = base.path().join("site.root");
    first.export_root_key(&site, &bundle).unwrap();
    let site_root = std::fs::read_to_string(&bundle).unwrap();
    let mut ca = LocalCa::load_or_create(&joiner, config(), now).unwrap();
    let own_key = std::fs::read(joiner.join("root.key")).unwrap();
    let own_root = ca.root_pem().to_owned();

    let csr = ca.request_intermediate(&joiner).unwrap();
    let life = Duration::from_secs(90 * 24 * 3600);
    let signed = LocalCa::sign_intermediate(&site_root, &csr, life, now).unwrap();
    // The file carries the root; a plain install says how to join instead.
    let signed = SignedIntermediate::from_pem(&signed.to_pem()).unwrap();
    assert_eq!(signed.root_pem.as_deref(), Some(first.root_pem()));
    let e = ca.install_intermediate(&joiner, &signed, now).unwrap_err();
    assert!(e.to_string().contains("--join"), "{e}");
    // A file without the root (an earlier version's) cannot be joined; nothing changes.
    let mut bare = signed.clone();
    bare.root_pem = None;
    let e = ca.join_root(&joiner, &bare, now).unwrap_err();
    assert!(e.to_string().contains("no root certificate"), "{e}");
    assert_eq!(std::fs::read(joiner.join("root.key")).unwrap(), own_key);
    assert_eq!(ca.root_pem(), own_root);

    ca.join_root(&joiner, &signed, now).unwrap();
    assert_eq!(ca.root_pem(), first.root_pem());
    assert_ne!(ca.root_pem(), own_root);
    assert!(!ca.root_key_present());
    assert_eq!(
        std::fs::read(joiner.join("root.key")).unwrap_err().kind(),
        std::io::ErrorKind::NotFound,
        "the own root's key is gone"
    );
    assert_eq!(ca.issuance(now), Issuance::Ready);
    // Reloaded: the site's root, the joined intermediate; its leaves chain to the site root.
    let ca = LocalCa::load_or_create(&joiner, config(), now).unwrap();
    assert_eq!(ca.root_pem(), first.root_pem());
    let leaf = ca.issue_at(&req(), None, None, false, now).unwrap();
    accepted_by(first.root_pem(), &leaf.chain_pem, "web.internal");
}

/// A TLS client trusting only `root_pem` accepts `chain_pem` for `name`.
fn accepted_by(root_pem: &str, chain_pem: &str, name: &str) {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    )
    .build()
    .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap();
}
