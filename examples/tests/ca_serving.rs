//! What the CA serves to clients, with real clients: the CRL a leaf names (curl fetches it,
//! `openssl verify -crl_check` rejects a revoked leaf and passes a fresh one), the root's
//! CRL the intermediate names, and the address certificate a client without SNI gets
//! (curl and Python's `ssl` by IP, routed by `Host`).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Site;
use conduit_test_support::have;
use conduit_test_support::process::{ok, wait_until};

/// The leaf the HTTPS listener serves for `host`, PEM (openssl s_client).
fn served_leaf(site: &Site, host: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", site.https)])
        .args(["-servername", host, "-showcerts"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = text[start..].find("-----END CERTIFICATE-----").unwrap() + start + 25;
    format!("{}\n", &text[start..end])
}

/// `openssl verify -crl_check` of `leaf` against our root, intermediate and `crl_der`.
fn verify_with_crl(site: &Site, dir: &Path, leaf: &str, crl_der: &[u8]) -> (bool, String) {
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    std::fs::write(dir.join("crl.der"), crl_der).unwrap();
    ok(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in"])
        .arg(dir.join("crl.der"))
        .arg("-out")
        .arg(dir.join("crl.pem"))
        .output()
        .unwrap());
    let out = Command::new("openssl")
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(site.state.join("tls/root.pem"))
        .arg("-untrusted")
        .arg(site.state.join("tls/intermediate.pem"))
        .arg("-CRLfile")
        .arg(dir.join("crl.pem"))
        .arg(dir.join("leaf.pem"))
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The CRL distribution point a certificate names.
fn crl_url(dir: &Path, pem: &str) -> String {
    std::fs::write(dir.join("cert.pem"), pem).unwrap();
    let out = ok(Command::new("openssl")
        .args(["x509", "-noout", "-ext", "crlDistributionPoints", "-in"])
        .arg(dir.join("cert.pem"))
        .output()
        .unwrap());
    out.lines()
        .find_map(|l| l.trim().strip_prefix("URI:"))
        .unwrap_or_else(|| panic!("no CRL distribution point: {out}"))
        .to_owned()
}

fn fetch(url: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn a_revoked_leaf_is_on_the_crl_its_own_distribution_point_serves_and_openssl_rejects_it() {
    if !(have("curl") && have("openssl")) {
        assert_eq!(
            std::env::var_os("CI"),
            None,
            "CI must install curl and openssl"
        );
        return;
    }
    let site = Site::new("");
    let web = common::upstream("hello\n");
    let _gw = site.serve();
    site.register("web", &web);
    wait_until(Duration::from_secs(10), || {
        site.https("web.internal", "/").0 == 200
    });
    let work = tempfile::tempdir().unwrap();
    let old = served_leaf(&site, "web.internal");
    let url = crl_url(work.path(), &old);
    assert_eq!(url, format!("http://127.0.0.1:{}/ca/crl.der", site.http));
    let (valid, why) = verify_with_crl(&site, work.path(), &old, &fetch(&url));
    assert!(valid, "{why}");

    // Revoked: when the command returns, the CRL at that URL lists it.
    let out = ok(site
        .cmd()
        .args(["certs", "revoke", "web"])
        .output()
        .unwrap());
    let r: conduit::api::Revocation = serde_json::from_str(&out).unwrap();
    let crl = fetch(&url);
    let (valid, why) = verify_with_crl(&site, work.path(), &old, &crl);
    assert!(!valid, "{why}");
    assert!(why.contains("certificate revoked"), "{why}");
    let listed = ok(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(work.path().join("crl.der"))
        .output()
        .unwrap());
    assert!(
        listed.contains(&r.revoked_serial.to_ascii_uppercase()),
        "{listed}"
    );
    // The fresh leaf passes the same check.
    let new = served_leaf(&site, "web.internal");
    assert_ne!(new, old);
    let (valid, why) = verify_with_crl(&site, work.path(), &new, &crl);
    assert!(valid, "{why}");
    // `certs crl --pem` exports the one served.
    let pem = ok(site.cmd().args(["certs", "crl", "--pem"]).output().unwrap());
    assert_eq!(
        pem,
        std::fs::read_to_string(work.path().join("crl.pem")).unwrap()
    );

    // The intermediate names the root's CRL, served too, and both CRLs together pass
    // `-crl_check_all`.
    let intermediate = std::fs::read_to_string(site.state.join("tls/intermediate.pem")).unwrap();
    let root_url = crl_url(work.path(), &intermediate);
    assert_eq!(
        root_url,
        format!("http://127.0.0.1:{}/ca/root-crl.der", site.http)
    );
    std::fs::write(work.path().join("root-crl.der"), fetch(&root_url)).unwrap();
    ok(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in"])
        .arg(work.path().join("root-crl.der"))
        .arg("-out")
        .arg(work.path().join("root-crl.pem"))
        .output()
        .unwrap());
    std::fs::write(work.path().join("leaf.pem"), &new).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-crl_check_all", "-CAfile"])
        .arg(site.state.join("tls/root.pem"))
        .arg("-untrusted")
        .arg(site.state.join("tls/intermediate.pem"))
        .arg("-CRLfile")
        .arg(work.path().join("crl.pem"))
        .arg("-CRLfile")
        .arg(work.path().join("root-crl.pem"))
        .arg(work.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_client_that_reaches_the_gateway_by_address_without_sni_gets_a_valid_certificate_and_is_routed_by_host()
 {
    if !(have("curl") && have("python3")) {
        assert_eq!(
            std::env::var_os("CI"),
            None,
            "CI must install curl and python3"
        );
        return;
    }
    let site = Site::new("");
    let web = common::upstream("by address\n");
    let _gw = site.serve();
    site.register("web", &web);
    let url = format!("https://127.0.0.1:{}/", site.https);
    let mut last = (0, String::new(), Duration::ZERO);
    wait_until(Duration::from_secs(10), || {
        last = site.curl(&["-H", "Host: web.internal"], url.clone());
        last.0 == 200
    });
    assert_eq!((last.0, last.1.as_str()), (200, "by address\n"), "{last:?}");
    // Python's ssl sends no SNI for an address either, and checks the IP SAN.
    let script = format!(
        "import ssl, http.client\n\
         ctx = ssl.create_default_context(cafile={root:?})\n\
         c = http.client.HTTPSConnection('127.0.0.1', {https}, context=ctx)\n\
         c.request('GET', '/', headers={{'Host': 'web.internal'}})\n\
         r = c.getresponse()\n\
         print(r.status, r.read().decode().strip())\n",
        root = site.state.join("tls/root.pem").display().to_string(),
        https = site.https
    );
    let out = ok(Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap());
    assert_eq!(out.trim(), "200 by address");
}
