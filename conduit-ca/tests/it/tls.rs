use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use conduit_ca::{
    CaConfig, CaError, CertResolver, IssueRequest, KeyAlgorithm, LocalCa, certified_key,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;

fn req(names: &[&str], ips: &[&str]) -> IssueRequest {
    IssueRequest {
        dns_names: names.iter().map(|s| (*s).to_owned()).collect(),
        ip_addresses: ips.iter().map(|s| s.parse::<IpAddr>().unwrap()).collect(),
        client_auth: false,
    }
}

/// A TLS server on 127.0.0.1:0 answering `HTTP/1.1 200` with `hello` to every connection,
/// certificates from `resolver`. Runs until the test process ends.
fn serve(resolver: Arc<CertResolver>) -> u16 {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(resolver),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

/// A rustls client trusting `root_pem`: the leaf it was served, or the handshake error.
fn rustls_get(root_pem: &str, port: u16, sni: &str) -> Result<CertificateDer<'static>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(("127.0.0.1", port)).unwrap());
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: {sni}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    let _ = tls.read_to_string(&mut body);
    if !body.ends_with("hello") {
        return Err(format!("no body: {body:?}"));
    }
    Ok(tls.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned())
}

fn first_cert(pem: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
}

/// Whether a real peer is installed; under CI a missing one fails the test.
use conduit_test_support::have;

/// Runs `cmd`: whether it succeeded, and its stdout then stderr.
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn curl(root: &Path, port: u16, host: &str) -> (bool, String) {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(root)
        .args([
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            &format!("https://{host}:{port}/"),
        ]))
}

fn python(root: &Path, port: u16, host: &str) -> (bool, String) {
    let script = format!(
        "import socket, ssl\nctx = ssl.create_default_context(cafile={root:?})\n\
         with socket.create_connection(('127.0.0.1', {port}), timeout=10) as s:\n\
         \x20   with ctx.wrap_socket(s, server_hostname={host:?}) as t:\n\
         \x20       t.sendall(b'GET / HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n')\n\
         \x20       data = b''\n\
         \x20       while True:\n\
         \x20           chunk = t.recv(4096)\n\
         \x20           if not chunk: break\n\
         \x20           data += chunk\n\
         print(data.decode().split('\\r\\n\\r\\n', 1)[1])\n",
        root = root.to_str().unwrap()
    );
    run(Command::new("python3").args(["-c", &script]))
}

fn openssl(root: &Path, port: u16, host: &str) -> (bool, String) {
    let (ok, text) = run(Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            host,
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(root)
        .stdin(std::process::Stdio::null()));
    (ok && text.contains("Verify return code: 0 (ok)"), text)
}

#[test]
fn every_client_accepts_a_p256_leaf_and_the_resolver_hot_swaps() {
    let now = OffsetDateTime::now_utc();
    let ca = LocalCa::generate(CaConfig::default(), now).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    let resolver = Arc::new(CertResolver::new());
    let leaf = ca
        .issue_at(
            &req(&["grafana.internal"], &["127.0.0.1"]),
            None,
            None,
            false,
            now,
        )
        .unwrap();
    resolver.install(
        &["grafana.internal".to_owned()],
        certified_key(&leaf).unwrap(),
    );
    let port = serve(Arc::clone(&resolver));

    assert_eq!(
        rustls_get(ca.root_pem(), port, "grafana.internal").unwrap(),
        first_cert(&leaf.chain_pem)
    );
    assert_eq!(
        rustls_get(ca.root_pem(), port, "GRAFANA.internal").unwrap(),
        first_cert(&leaf.chain_pem)
    );
    if have("curl") {
        let (ok, out) = curl(&root, port, "grafana.internal");
        assert!(ok && out.ends_with("hello"), "curl: {out}");
    }
    if have("python3") {
        let (ok, out) = python(&root, port, "grafana.internal");
        assert!(ok && out.trim_end().ends_with("hello"), "python: {out}");
    }
    if have("openssl") {
        let (ok, out) = openssl(&root, port, "grafana.internal");
        assert!(ok, "openssl: {out}");
    }

    // rotation: a new key and leaf are served from the next handshake, no restart
    let rotated = ca
        .issue_at(&req(&["grafana.internal"], &[]), None, None, false, now)
        .unwrap();
    assert_ne!(first_cert(&rotated.chain_pem), first_cert(&leaf.chain_pem));
    resolver.install(
        &["grafana.internal".to_owned()],
        certified_key(&rotated).unwrap(),
    );
    assert_eq!(
        rustls_get(ca.root_pem(), port, "grafana.internal").unwrap(),
        first_cert(&rotated.chain_pem)
    );
    // removal: no certificate, the handshake fails
    resolver.remove("grafana.internal");
    let err = rustls_get(ca.root_pem(), port, "grafana.internal").unwrap_err();
    assert!(
        err.contains("alert"),
        "the server has no certificate for it any more: {err}"
    );
}

#[test]
fn ed25519_leaves_work_for_service_to_service_tls() {
    let now = OffsetDateTime::now_utc();
    let mut cfg = CaConfig::default();
    cfg.key_algorithm = KeyAlgorithm::Ed25519;
    let ca = LocalCa::generate(cfg, now).unwrap();
    let resolver = Arc::new(CertResolver::new());
    let leaf = ca
        .issue_at(&req(&["api.internal"], &[]), None, None, true, now)
        .unwrap();
    resolver.install(&["api.internal".to_owned()], certified_key(&leaf).unwrap());
    let port = serve(resolver);
    assert_eq!(
        rustls_get(ca.root_pem(), port, "api.internal").unwrap(),
        first_cert(&leaf.chain_pem)
    );
}

#[test]
#[cfg(feature = "testing")] // the forging helper exists only there (CI runs --all-features)
fn a_certificate_forged_outside_the_name_constraints_is_rejected_by_clients() {
    let now = OffsetDateTime::now_utc();
    let ca = LocalCa::generate(CaConfig::default(), now).unwrap();
    // the API refuses it …
    let err = ca
        .issue_at(&req(&["example.com"], &[]), None, None, false, now)
        .unwrap_err();
    assert!(
        matches!(&err, CaError::OutsideConstraints { name } if name == "example.com"),
        "{err}"
    );
    // … and a leaf forged under the root, bypassing the API, is refused by clients that
    // enforce name constraints (rustls/webpki and OpenSSL, hence curl and Python, all do).
    let forged = ca.forge_unchecked_for_tests("example.com").unwrap();
    let resolver = Arc::new(CertResolver::new());
    resolver.install(&["example.com".to_owned()], certified_key(&forged).unwrap());
    let port = serve(resolver);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    let err = rustls_get(ca.root_pem(), port, "example.com").unwrap_err();
    assert!(
        err.contains("NameConstraint")
            || err.contains("name constraint")
            || err.contains("NotValidForName"),
        "rustls: {err}"
    );
    if have("curl") {
        let (ok, out) = curl(&root, port, "example.com");
        assert!(!ok, "curl accepted a name-constraint violation: {out}");
    }
    if have("python3") {
        let (ok, out) = python(&root, port, "example.com");
        assert!(
            !ok && out.contains("CERTIFICATE_VERIFY_FAILED"),
            "python: {out}"
        );
    }
    if have("openssl") {
        let (ok, out) = openssl(&root, port, "example.com");
        assert!(
            !ok && out.contains("permitted subtree violation"),
            "openssl: {out}"
        );
    }
}

#[test]
fn an_expired_leaf_is_rejected() {
    let now = OffsetDateTime::now_utc();
    let mut cfg = CaConfig::default();
    cfg.intermediate_lifetime = Duration::from_secs(90 * 24 * 3600);
    let ca = LocalCa::generate(cfg, now - time::Duration::days(60)).unwrap();
    let leaf = ca
        .issue_at(
            &req(&["old.internal"], &[]),
            Some(Duration::from_secs(7 * 24 * 3600)),
            None,
            false,
            now - time::Duration::days(30),
        )
        .unwrap();
    let resolver = Arc::new(CertResolver::new());
    resolver.install(&["old.internal".to_owned()], certified_key(&leaf).unwrap());
    let port = serve(resolver);
    let err = rustls_get(ca.root_pem(), port, "old.internal").unwrap_err();
    assert!(err.contains("certificate expired"), "rustls: {err}");
    if have("curl") {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root.pem");
        std::fs::write(&root, ca.root_pem()).unwrap();
        let (ok, out) = curl(&root, port, "old.internal");
        assert!(!ok && out.contains("expired"), "curl: {out}");
    }
}

#[test]
fn bad_requests_are_typed_errors() {
    let now = OffsetDateTime::now_utc();
    let ca = LocalCa::generate(CaConfig::default(), now).unwrap();
    let e = ca
        .issue_at(&req(&["Bad_Name.internal"], &[]), None, None, false, now)
        .unwrap_err();
    assert!(matches!(e, CaError::InvalidName { .. }), "{e}");
    let e = ca
        .issue_at(&req(&[], &[]), None, None, false, now)
        .unwrap_err();
    assert!(matches!(e, CaError::NoNames), "{e}");
    let e = ca
        .issue_at(&req(&[], &["8.8.8.8"]), None, None, false, now)
        .unwrap_err();
    assert!(
        matches!(&e, CaError::OutsideConstraints { name } if name == "8.8.8.8"),
        "{e}"
    );
    let e = ca
        .issue_at(
            &req(&["a.internal"], &[]),
            Some(Duration::from_secs(30 * 24 * 3600)),
            None,
            false,
            now,
        )
        .unwrap_err();
    assert!(
        matches!(e, CaError::LifetimeTooLong { .. }),
        "longer than the 7-day intermediate: {e}"
    );
    let e = ca
        .issue_at(
            &req(&["a.internal"], &[]),
            Some(Duration::from_secs(400 * 24 * 3600)),
            None,
            false,
            now,
        )
        .unwrap_err();
    assert!(matches!(e, CaError::LifetimeTooLong { .. }), "{e}");
    // the default lifetime is cut to the intermediate's expiry, never refused
    let later = now + time::Duration::days(3);
    let leaf = ca
        .issue_at(&req(&["b.internal"], &[]), None, None, false, later)
        .unwrap();
    assert!(leaf.chain_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    // an expired intermediate issues nothing, and says why
    let e = ca
        .issue_at(
            &req(&["b.internal"], &[]),
            None,
            None,
            false,
            now + time::Duration::days(8),
        )
        .unwrap_err();
    assert!(matches!(e, CaError::IssuerExpired { .. }), "{e}");
    // a wildcard one label below the zone and tunnel IPs are fine
    let leaf = ca
        .issue_at(
            &req(&["*.lab.internal"], &["10.8.0.2", "fd00::2"]),
            None,
            None,
            false,
            now,
        )
        .unwrap();
    assert!(
        leaf.chain_pem.matches("BEGIN CERTIFICATE").count() == 2,
        "leaf + intermediate"
    );
    let mut bad = CaConfig::default();
    bad.zones = vec!["Not A Zone".into()];
    assert!(matches!(
        LocalCa::generate(bad, now),
        Err(CaError::InvalidZone { .. })
    ));
}

#[test]
fn inspect_reports_the_profile_and_the_status() {
    use std::collections::HashSet;
    let now = OffsetDateTime::now_utc();
    let ca = LocalCa::generate(CaConfig::default(), now).unwrap();
    let leaf = ca
        .issue_at(
            &req(&["grafana.internal"], &["10.8.0.2"]),
            Some(Duration::from_secs(3 * 24 * 3600)),
            None,
            false,
            now,
        )
        .unwrap();
    let none = HashSet::new();
    let info = conduit_ca::inspect_pem(&leaf.chain_pem, now, &none).unwrap();
    assert_eq!(info.dns_names, ["grafana.internal"]);
    assert_eq!(info.ip_addresses, ["10.8.0.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(info.key_algorithm, "ECDSA P-256");
    assert_eq!(info.serial.len(), 32, "128-bit serial: {}", info.serial);
    assert_eq!(info.issuer, "O=Conduit, CN=Conduit Intermediate CA");
    assert_eq!(info.sha256_fingerprint.len(), 64);
    assert!(!info.is_ca);
    assert_eq!(info.status, conduit_ca::CertStatus::Valid);
    // 2/3 of the way through its life it is due for renewal; past the end it is expired
    let at = |d: i64| {
        conduit_ca::inspect_pem(&leaf.chain_pem, now + time::Duration::hours(d), &none)
            .unwrap()
            .status
    };
    assert_eq!(at(49), conduit_ca::CertStatus::Expiring);
    assert_eq!(at(73), conduit_ca::CertStatus::Expired);
    let revoked: HashSet<String> = [info.serial.clone()].into();
    assert_eq!(
        conduit_ca::inspect_pem(&leaf.chain_pem, now, &revoked)
            .unwrap()
            .status,
        conduit_ca::CertStatus::Revoked
    );
    let root = conduit_ca::inspect_pem(ca.root_pem(), now, &none).unwrap();
    assert!(root.is_ca);
    assert_eq!(root.subject, "O=Conduit, CN=Conduit Root CA");
    let err = conduit_ca::inspect_pem(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        now,
        &none,
    )
    .unwrap_err();
    assert!(matches!(err, CaError::Pem { .. }), "{err}");

    // replace_all swaps the whole map at once
    let resolver = CertResolver::new();
    let key = certified_key(&leaf).unwrap();
    resolver.replace_all((0..1000).map(|i| (format!("s{i}.internal"), key.clone())));
    assert_eq!(resolver.len(), 1000);
    assert!(Arc::ptr_eq(
        &resolver.lookup("S999.internal").unwrap(),
        &key
    ));
}

#[test]
fn a_revoked_serial_is_in_the_crl_and_openssl_rejects_the_leaf() {
    let now = OffsetDateTime::now_utc();
    let mut cfg = CaConfig::default();
    cfg.crl_url = Some("http://ca.internal/crl".to_owned());
    let ca = LocalCa::generate(cfg, now).unwrap();
    let leaf = ca
        .issue_at(&req(&["grafana.internal"], &[]), None, None, false, now)
        .unwrap();
    let none = std::collections::HashSet::new();
    let serial = conduit_ca::inspect_pem(&leaf.chain_pem, now, &none)
        .unwrap()
        .serial;
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n);
    let mut parts = leaf
        .chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n");
    std::fs::write(path("leaf.pem"), parts.next().unwrap()).unwrap();
    std::fs::write(path("inter.pem"), ca.intermediate_pem()).unwrap();
    std::fs::write(path("root.pem"), ca.root_pem()).unwrap();
    let verify = |crl: &str| {
        std::fs::write(path("crl.pem"), crl).unwrap();
        run(Command::new("openssl")
            .args(["verify", "-crl_check", "-CAfile"])
            .arg(path("root.pem"))
            .arg("-untrusted")
            .arg(path("inter.pem"))
            .arg("-CRLfile")
            .arg(path("crl.pem"))
            .arg(path("leaf.pem")))
    };
    let (der, pem) = ca.crl_at(now, Duration::from_secs(24 * 3600)).unwrap();
    assert!(!der.is_empty() && pem.starts_with("-----BEGIN X509 CRL-----"));
    if !have("openssl") {
        return;
    }
    let (ok, out) = verify(&pem);
    assert!(ok, "not revoked yet: {out}");
    // the leaf names where its CRL lives
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(path("leaf.pem"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("URI:http://ca.internal/crl"));

    ca.revoke_at(&serial, now).unwrap();
    assert!(ca.revoked_serials().contains(&serial));
    assert_eq!(
        conduit_ca::inspect_pem(&leaf.chain_pem, now, &ca.revoked_serials())
            .unwrap()
            .status,
        conduit_ca::CertStatus::Revoked
    );
    let (_, pem) = ca.crl_at(now, Duration::from_secs(24 * 3600)).unwrap();
    std::fs::write(path("crl.pem"), &pem).unwrap();
    let out = Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(path("crl.pem"))
        .output()
        .unwrap();
    let crl_text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        crl_text.contains(&serial.to_uppercase()),
        "openssl crl lists the serial: {crl_text}"
    );
    assert!(crl_text.contains("X509v3 CRL Number"), "{crl_text}");
    let (ok, out) = verify(&pem);
    assert!(
        !ok && out.contains("certificate revoked"),
        "openssl verify -crl_check: {out}"
    );
    let e = ca.revoke_at("not-hex", now).unwrap_err();
    assert!(matches!(e, CaError::InvalidSerial { .. }), "{e}");

    // A serial revoked longer ago than any leaf lives leaves the list with its next CRL.
    let old = "0badc0de";
    ca.revoke_at(old, now - time::Duration::days(400)).unwrap();
    assert!(ca.revoked_serials().contains(old));
    ca.crl_at(now, Duration::from_secs(24 * 3600)).unwrap();
    assert!(!ca.revoked_serials().contains(old));
    assert!(ca.revoked_serials().contains(&serial));
}

#[test]
fn the_ca_is_stored_privately_reloaded_and_never_overwritten() {
    let now = OffsetDateTime::now_utc();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("tls");
    let ca = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for f in [
            "root.key",
            "intermediate.key",
            "root.pem",
            "intermediate.pem",
        ] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
    }
    assert!(
        !format!("{ca:?}").contains("PRIVATE KEY"),
        "keys never reach Debug"
    );

    // reloaded: same root, and a leaf from the reloaded CA verifies against the first root
    let again = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap();
    assert_eq!(again.root_pem(), ca.root_pem());
    assert_eq!(again.intermediate_pem(), ca.intermediate_pem());
    let leaf = again
        .issue_at(&req(&["reloaded.internal"], &[]), None, None, false, now)
        .unwrap();
    let resolver = Arc::new(CertResolver::new());
    resolver.install(
        &["reloaded.internal".to_owned()],
        certified_key(&leaf).unwrap(),
    );
    let port = serve(resolver);
    assert_eq!(
        rustls_get(ca.root_pem(), port, "reloaded.internal").unwrap(),
        first_cert(&leaf.chain_pem)
    );

    // a corrupt file is a typed error naming it, and stays as it was
    let root_pem = dir.join("root.pem");
    let good = std::fs::read(&root_pem).unwrap();
    std::fs::write(
        &root_pem,
        b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap_err();
    assert!(
        matches!(&e, CaError::Corrupt { file, .. } if file == "root.pem"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&root_pem).unwrap(),
        b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"
    );
    std::fs::write(&root_pem, &good).unwrap();

    // a key that does not belong to its certificate
    let inter_key = dir.join("intermediate.key");
    let inter_good = std::fs::read(&inter_key).unwrap();
    std::fs::copy(dir.join("root.key"), &inter_key).unwrap();
    let e = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap_err();
    assert!(
        matches!(&e, CaError::Corrupt { file, .. } if file == "intermediate.pem"),
        "{e}"
    );
    std::fs::write(&inter_key, &inter_good).unwrap();

    // a missing file is never papered over by a new CA
    std::fs::remove_file(dir.join("intermediate.pem")).unwrap();
    let e = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap_err();
    assert!(
        matches!(
            e,
            CaError::Incomplete {
                missing: "intermediate.pem",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(std::fs::read(&root_pem).unwrap(), good);
}

#[test]
fn an_expired_root_refuses_to_start_and_a_due_or_expired_intermediate_is_renewed() {
    let now = OffsetDateTime::now_utc();
    let base = tempfile::tempdir().unwrap();

    let dir = base.path().join("expired-root");
    let mut cfg = CaConfig::default();
    cfg.root_lifetime = Duration::from_secs(24 * 3600);
    LocalCa::load_or_create(&dir, cfg.clone(), now - time::Duration::days(2)).unwrap();
    let e = LocalCa::load_or_create(&dir, cfg, now).unwrap_err();
    assert!(matches!(e, CaError::RootExpired { .. }), "{e}");
    assert!(e.to_string().contains("roll over"), "{e}");

    // Off for 10 days, longer than the intermediate's 7: renewed from the root at load,
    // saved, said so, and it issues leaves that chain to the same root.
    let dir = base.path().join("expired-intermediate");
    let before =
        LocalCa::load_or_create(&dir, CaConfig::default(), now - time::Duration::days(10)).unwrap();
    assert_eq!(before.load_renewal(), None);
    let back = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap();
    let renewal = back.load_renewal().unwrap();
    assert!(renewal.expired);
    assert_eq!(
        renewal.previous_not_after.unix_timestamp(),
        before.intermediate_not_after().unix_timestamp()
    );
    assert_eq!(renewal.not_after, back.intermediate_not_after());
    assert!(back.intermediate_not_after() > now + time::Duration::days(6));
    assert_eq!(back.root_pem(), before.root_pem());
    let reloaded = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap();
    assert_eq!(reloaded.intermediate_pem(), back.intermediate_pem());
    assert_eq!(reloaded.load_renewal(), None);
    let leaf = back
        .issue_at(&req(&["back.internal"], &[]), None, None, false, now)
        .unwrap();
    let resolver = Arc::new(CertResolver::new());
    resolver.install(&["back.internal".to_owned()], certified_key(&leaf).unwrap());
    let port = serve(resolver);
    assert_eq!(
        rustls_get(before.root_pem(), port, "back.internal").unwrap(),
        first_cert(&leaf.chain_pem)
    );

    // 5 of 7 days gone: renewed on load, saved, and the root is unchanged
    let dir = base.path().join("due");
    let old =
        LocalCa::load_or_create(&dir, CaConfig::default(), now - time::Duration::days(5)).unwrap();
    assert!(old.intermediate_due(now));
    assert!(!old.intermediate_due(now - time::Duration::days(5)));
    let renewed = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap();
    assert_eq!(renewed.load_renewal().map(|r| r.expired), Some(false));
    assert_eq!(renewed.root_pem(), old.root_pem());
    assert_ne!(renewed.intermediate_pem(), old.intermediate_pem());
    assert!(renewed.intermediate_not_after() > old.intermediate_not_after());
    assert_eq!(
        std::fs::read_to_string(dir.join("intermediate.pem")).unwrap(),
        renewed.intermediate_pem()
    );
    // and its leaves chain to the same root
    let leaf = renewed
        .issue_at(&req(&["after.internal"], &[]), None, None, false, now)
        .unwrap();
    let resolver = Arc::new(CertResolver::new());
    resolver.install(
        &["after.internal".to_owned()],
        certified_key(&leaf).unwrap(),
    );
    let port = serve(resolver);
    assert_eq!(
        rustls_get(old.root_pem(), port, "after.internal").unwrap(),
        first_cert(&leaf.chain_pem)
    );
}

#[test]
fn trust_distribution_instructions_profile_and_store() {
    let now = OffsetDateTime::now_utc();
    let ca = LocalCa::generate(CaConfig::default(), now).unwrap();
    let steps =
        conduit_ca::trust_instructions(Path::new("/etc/conduit/root.pem"), "Conduit Root CA");
    let platforms: Vec<&str> = steps.iter().map(|s| s.platform).collect();
    assert_eq!(
        platforms,
        [
            "Debian/Ubuntu",
            "RHEL/Fedora",
            "macOS",
            "Windows",
            "Firefox (NSS)",
            "iOS"
        ]
    );
    assert_eq!(
        steps[0].commands,
        [
            "sudo cp /etc/conduit/root.pem /usr/local/share/ca-certificates/conduit-root-ca.crt",
            "sudo update-ca-certificates"
        ]
    );
    assert!(steps[3].commands[0].starts_with("certutil -addstore -f Root"));

    // the profile is a valid property list carrying exactly the root's DER
    let profile =
        conduit_ca::mobileconfig(ca.root_der(), "Conduit Root CA", "internal.conduit").unwrap();
    if have("python3") {
        let dir = tempfile::tempdir().unwrap();
        let (p, d) = (
            dir.path().join("root.mobileconfig"),
            dir.path().join("root.der"),
        );
        std::fs::write(&p, &profile).unwrap();
        std::fs::write(&d, ca.root_der()).unwrap();
        let script = format!(
            "import plistlib\npl = plistlib.load(open({p:?}, 'rb'))\nc = pl['PayloadContent'][0]\n\
             assert c['PayloadType'] == 'com.apple.security.root'\nassert c['PayloadContent'] == open({d:?}, 'rb').read()\n\
             assert pl['PayloadType'] == 'Configuration' and pl['PayloadUUID'] != c['PayloadUUID']\nprint('ok')",
            p = p.to_str().unwrap(),
            d = d.to_str().unwrap()
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ok",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // installing into a store (a temporary one here; the real one needs root)
    let dir = tempfile::tempdir().unwrap();
    let store = conduit_ca::LinuxTrustStore::new(dir.path(), "crt", vec!["true".into()]);
    let target = store.install(ca.root_pem(), "conduit-root").unwrap();
    assert_eq!(target, dir.path().join("conduit-root.crt"));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), ca.root_pem());
    let failing = conduit_ca::LinuxTrustStore::new(dir.path(), "crt", vec!["false".into()]);
    let e = failing.install(ca.root_pem(), "conduit-root").unwrap_err();
    assert!(matches!(e, CaError::TrustInstall { .. }), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn renewal_at_two_thirds_is_served_without_a_restart() {
    use std::sync::atomic::{AtomicI64, Ordering};
    // The simulated timeline starts five days ago, so that "five days in" is the real present
    // and the real TLS clients accept every certificate's validity.
    let start = OffsetDateTime::now_utc() - time::Duration::days(5);
    let offset = Arc::new(AtomicI64::new(0));
    let o = Arc::clone(&offset);
    let clock: conduit_ca::CertClock =
        Arc::new(move || start + time::Duration::seconds(o.load(Ordering::SeqCst)));
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("tls");
    let ca = LocalCa::load_or_create(&dir, CaConfig::default(), start).unwrap();
    let root = ca.root_pem().to_owned();
    let first_intermediate = ca.intermediate_pem().to_owned();
    let resolver = Arc::new(CertResolver::new());
    let issuer = Arc::new(conduit_ca::LocalIssuer::new(
        ca,
        Some(dir.clone()),
        clock.clone(),
    ));
    let manager = conduit_ca::CertManager::new(issuer, Arc::clone(&resolver), clock);
    let leaf = manager
        .ensure("grafana", req(&["grafana.internal"], &[]))
        .await
        .unwrap();
    let port = serve(Arc::clone(&resolver));
    let get = |name: &'static str| {
        let root = root.clone();
        tokio::task::spawn_blocking(move || rustls_get(&root, port, name).unwrap())
    };
    assert_eq!(
        get("grafana.internal").await.unwrap(),
        first_cert(&leaf.chain_pem)
    );

    // four days in: nothing is due (less than 2/3 of seven days)
    offset.store(4 * 86_400, Ordering::SeqCst);
    assert_eq!(manager.renew_due().await.unwrap(), 0);
    assert_eq!(manager.current("grafana").unwrap(), leaf);

    // five days in: the intermediate and the leaf are renewed; the next handshake (same
    // server, no restart) gets the new leaf, which still chains to the same root
    offset.store(5 * 86_400, Ordering::SeqCst);
    assert_eq!(manager.renew_due().await.unwrap(), 1);
    let renewed = manager.current("grafana").unwrap();
    assert_ne!(first_cert(&renewed.chain_pem), first_cert(&leaf.chain_pem));
    assert!(
        !renewed.chain_pem.contains(&first_intermediate),
        "issued by the new intermediate"
    );
    assert_ne!(
        std::fs::read_to_string(dir.join("intermediate.pem")).unwrap(),
        first_intermediate,
        "saved"
    );
    assert_eq!(
        get("grafana.internal").await.unwrap(),
        first_cert(&renewed.chain_pem)
    );

    // rotation and removal
    let rotated = manager.rotate("grafana").await.unwrap();
    assert_eq!(
        get("grafana.internal").await.unwrap(),
        first_cert(&rotated.chain_pem)
    );
    assert!(matches!(
        manager.rotate("nope").await,
        Err(CaError::Unknown { .. })
    ));
    manager.remove("grafana");
    assert_eq!(resolver.len(), 0, "nothing is served after removal");
}

#[tokio::test(flavor = "current_thread")]
async fn a_revocation_survives_a_restart() {
    let now = OffsetDateTime::now_utc();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("tls");
    let clock: conduit_ca::CertClock = Arc::new(OffsetDateTime::now_utc);
    let ca = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap();
    let issuer = Arc::new(conduit_ca::LocalIssuer::new(
        ca,
        Some(dir.clone()),
        clock.clone(),
    ));
    let manager =
        conduit_ca::CertManager::new(issuer.clone(), Arc::new(CertResolver::new()), clock);
    let leaf = manager
        .ensure("grafana", req(&["grafana.internal"], &[]))
        .await
        .unwrap();
    let serial = conduit_ca::inspect_pem(&leaf.chain_pem, now, &Default::default())
        .unwrap()
        .serial;
    manager.revoke(&serial).await.unwrap();
    let (_, crl) = issuer.last_crl().unwrap();
    assert!(crl.starts_with("-----BEGIN X509 CRL-----"));
    // restart: load the CA again from disk
    let again = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap();
    assert!(again.revoked_serials().contains(&serial));
    let status = conduit_ca::inspect_pem(&leaf.chain_pem, now, &again.revoked_serials())
        .unwrap()
        .status;
    assert_eq!(status, conduit_ca::CertStatus::Revoked);
    // a corrupt revocation list is an error naming it, never silently emptied
    std::fs::write(dir.join("revoked.json"), "{").unwrap();
    let e = LocalCa::load_or_create(&dir, CaConfig::default(), now).unwrap_err();
    assert!(
        matches!(&e, CaError::Corrupt { file, .. } if file == "revoked.json"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("revoked.json")).unwrap(),
        "{"
    );
}
